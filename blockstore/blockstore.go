// Package blockstore defines the block storage Bitswap reads and writes, and
// a default implementation on any go-datastore.
//
// The Blockstore interface has the method set of boxo's
// blockstore.Blockstore (v0.34.0 and later, which dropped HashOnRead), so an
// application can hand a boxo blockstore to Bitswap as is, and one of ours
// to boxo wherever it takes a blockstore.Blockstore. To check blocks against
// their CIDs as they are read, wrap a Blockstore with NewValidating.
// Missing blocks are reported with go-ipld-format's ErrNotFound, as boxo does,
// so callers test with ipld.IsNotFound. This package knows nothing of peers
// or the protocol.
package blockstore

import (
	"context"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
)

// Blockstore stores blocks by CID. Blocks are keyed by multihash, so the same
// bytes under CIDv0 and CIDv1 are one entry. Implementations must be safe for
// concurrent use.
type Blockstore interface {
	DeleteBlock(context.Context, cid.Cid) error
	Has(context.Context, cid.Cid) (bool, error)
	// Get returns the block, or an ipld.ErrNotFound error.
	Get(context.Context, cid.Cid) (blocks.Block, error)
	// GetSize returns the size of the block's data, or an ipld.ErrNotFound error.
	GetSize(context.Context, cid.Cid) (int, error)
	Put(context.Context, blocks.Block) error
	PutMany(context.Context, []blocks.Block) error
	// AllKeysChan returns a channel of every stored key; it closes when the
	// listing ends or ctx is cancelled.
	AllKeysChan(ctx context.Context) (<-chan cid.Cid, error)
}

package blockstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
)

// ErrHashMismatch is wrapped by the error a Blockstore from NewValidating
// returns from Get when the stored data does not hash to the CID asked for.
// Test for it with errors.Is.
var ErrHashMismatch = errors.New("block data does not match its CID")

// NewValidating returns bs with every block Get returns checked against the
// CID asked for: its data is hashed with the CID's hash function, and if the
// digest differs Get returns no block and an error that names the CID and
// wraps ErrHashMismatch. It is what HashOnRead(true) used to do, as boxo's
// ValidatingBlockstore replaced its HashOnRead in v0.34.0. The other methods
// are bs's own. Blocks Bitswap receives need no such check (they are hashed
// as they are decoded); use it against storage that may rot or be written
// behind the blockstore's back.
//
// The returned Blockstore has only the methods of the interface: optional
// ones of bs (such as BloomFilled, see WithBloomFilter) are reached through
// bs itself.
func NewValidating(bs Blockstore) Blockstore { return validating{bs} }

type validating struct{ Blockstore }

func (v validating) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	b, err := v.Blockstore.Get(ctx, c)
	if err != nil {
		return nil, err
	}
	if err := verify(c, b.RawData()); err != nil {
		return nil, err
	}
	return b, nil
}

// verify checks that data hashes to c's multihash.
func verify(c cid.Cid, data []byte) error {
	got, err := c.Prefix().Sum(data)
	if err != nil {
		return fmt.Errorf("blockstore: get %s: cannot verify hash: %w", c, err)
	}
	if !bytes.Equal(got.Hash(), c.Hash()) {
		return fmt.Errorf("blockstore: get %s: stored data hashes to %s: %w", c, got.Hash().B58String(), ErrHashMismatch)
	}
	return nil
}

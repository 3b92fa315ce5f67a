// Package pebblerepo opens go-ds-pebble datastores tuned for holding blocks,
// as the bitswap command's repositories do. It owns nothing but the pebble
// options; use blockstore.New on the datastore it returns.
package pebblerepo

import (
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	pebbleds "github.com/ipfs/go-ds-pebble"
)

// BloomBitsPerKey is the size of the bloom filter written into every table:
// 10 bits per key, about 1 % false positives.
const BloomBitsPerKey = 10

// Options returns pebble's defaults plus a bloom filter on every level.
// Without one, pebble answers a Get, Has or GetSize for a key it lacks by
// reading the data block where the key would be, and with 256 KiB blocks
// that block is a whole 256 KiB value: a Bitswap server asked for blocks it
// lacks (every peer that broadcasts its wants does that; a flood of 200
// peers × 1,024 wants did it 204,800 times) spent 80 % of its CPU reading
// and checksumming. Tables written before the filter was set get one only
// when compaction rewrites them.
func Options() *pebble.Options {
	o := &pebble.Options{}
	o.Levels[0].FilterPolicy = bloom.FilterPolicy(BloomBitsPerKey)
	return o
}

// Open opens (creating if needed) the pebble datastore in dir with Options,
// then opts.
func Open(dir string, opts ...pebbleds.Option) (*pebbleds.Datastore, error) {
	return pebbleds.NewDatastore(dir, append([]pebbleds.Option{pebbleds.WithPebbleOpts(Options())}, opts...)...)
}

package blockstore

import (
	"context"
	"sync"

	"github.com/bits-and-blooms/bloom/v3"
	dsq "github.com/ipfs/go-datastore/query"
	mh "github.com/multiformats/go-multihash"
)

// BloomFalsePositives is the false-positive rate WithBloomFilter sizes its
// filter for.
const BloomFalsePositives = 0.01

// WithBloomFilter keeps a bloom filter of the stored blocks, sized for
// expected of them (about 1.2 bytes each at BloomFalsePositives), so that
// Has and GetSize for a block that is not there are answered without the
// datastore. That is most of a public server's questions (peers broadcast
// their wants to everyone), and on an LSM store it is the costly one:
// go-ds-pebble answers it by reading the data block where the key would be,
// a whole 256 KiB value with blocks that large (200 peers × 1,024 wants for
// blocks we lack took 80 % of a server's CPU in the attack suite; pebble's
// own filters are not used on its last level). boxo's cached blockstore
// offers the same, off by default in Kubo. The filter is filled in the
// background by listing the datastore's keys, which costs a pass over the
// repository; until that ends every question goes to the datastore, and if
// it fails the filter is never used. Put and PutMany add to it; deleted
// blocks stay in it (a false positive, which asks the datastore). The
// Blockstore then has a method BloomFilled() <-chan struct{}, closed when the
// filter is in use. expected <= 0 leaves the filter out (the default).
func WithBloomFilter(expected int) Option {
	return func(c *config) { c.bloomExpected = expected }
}

// keyFilter is the bloom filter of stored multihashes.
type keyFilter struct {
	mu     sync.RWMutex
	f      *bloom.BloomFilter
	ready  bool          // filled: a miss means the block is not stored
	filled chan struct{} // closed once ready
}

func newKeyFilter(expected int) *keyFilter {
	return &keyFilter{
		f:      bloom.NewWithEstimates(uint(expected), BloomFalsePositives),
		filled: make(chan struct{}),
	}
}

func (k *keyFilter) add(h mh.Multihash) {
	k.mu.Lock()
	k.f.Add(h)
	k.mu.Unlock()
}

// rulesOut reports whether the block with multihash h is surely not stored.
func (k *keyFilter) rulesOut(h mh.Multihash) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.ready && !k.f.Test(h)
}

// fill adds every stored key and then puts the filter in use, unless the
// listing fails. Blocks put meanwhile are added by Put.
func (bs *dsBlockstore) fill(k *keyFilter) {
	res, err := bs.ds.Query(context.Background(), dsq.Query{Prefix: bs.prefixOrRoot(), KeysOnly: true})
	if err != nil {
		return
	}
	defer res.Close()
	for r := range res.Next() {
		if r.Error != nil {
			return
		}
		if h, ok := bs.parseKey(r.Key); ok {
			k.add(h)
		}
	}
	k.mu.Lock()
	k.ready = true
	k.mu.Unlock()
	close(k.filled)
}

// BloomFilled returns a channel closed once the bloom filter is in use (see
// WithBloomFilter); nil without one.
func (bs *dsBlockstore) BloomFilled() <-chan struct{} {
	if bs.keys == nil {
		return nil
	}
	return bs.keys.filled
}

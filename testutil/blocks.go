package testutil

import (
	"fmt"
	"math/rand/v2"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// RandomBlocks returns n blocks of size random bytes each, as CIDv1 raw
// sha2-256 blocks. The same seed always gives the same blocks. The blocks
// have distinct multihashes, so none aliases another in a blockstore;
// RandomBlocks panics if size is too small for n distinct blocks (for
// example more than 256 blocks of one byte).
func RandomBlocks(seed int64, n, size int) []blocks.Block {
	if n < 0 || size < 0 {
		panic(fmt.Sprintf("testutil.RandomBlocks(%d, %d, %d): negative count or size", seed, n, size))
	}
	g := newGenerator(seed, n)
	out := make([]blocks.Block, n)
	for i := range out {
		out[i] = g.block(size, cid.Raw, 1)
	}
	return out
}

// MixedBlocks returns n blocks in a repeating cycle of three kinds: CIDv1
// raw, CIDv1 dag-pb and CIDv0 (which is always dag-pb), all sha2-256. Their
// sizes step evenly from minSize for the first block to maxSize for the last,
// both included. The same seed always gives the same blocks, and all have
// distinct multihashes (see RandomBlocks). The dag-pb data is random bytes,
// not valid protobuf: Bitswap only hashes bytes, never decodes them.
func MixedBlocks(seed int64, n, minSize, maxSize int) []blocks.Block {
	if n < 0 || minSize < 0 || maxSize < minSize {
		panic(fmt.Sprintf("testutil.MixedBlocks(%d, %d, %d, %d): need n >= 0 and 0 <= minSize <= maxSize",
			seed, n, minSize, maxSize))
	}
	kinds := [...]struct {
		codec   uint64
		version int
	}{{cid.Raw, 1}, {cid.DagProtobuf, 1}, {cid.DagProtobuf, 0}}
	g := newGenerator(seed, n)
	out := make([]blocks.Block, n)
	for i := range out {
		size := minSize
		if n > 1 {
			size += (maxSize - minSize) * i / (n - 1)
		}
		k := kinds[i%len(kinds)]
		out[i] = g.block(size, k.codec, k.version)
	}
	return out
}

// generator makes random blocks with distinct multihashes.
type generator struct {
	rng  *rand.Rand
	seen map[string]struct{}
}

func newGenerator(seed int64, n int) *generator {
	return &generator{
		rng:  rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)),
		seen: make(map[string]struct{}, n),
	}
}

func (g *generator) block(size int, codec uint64, version int) blocks.Block {
	data := make([]byte, size)
	// Retry on a repeated multihash, which only small sizes make likely;
	// give up once far more attempts than the possible contents were made.
	for tries := 0; ; tries++ {
		for i := range data {
			data[i] = byte(g.rng.Uint32())
		}
		h, err := mh.Sum(data, mh.SHA2_256, -1)
		if err != nil {
			panic(err) // sha2-256 is always available
		}
		if _, dup := g.seen[string(h)]; !dup {
			g.seen[string(h)] = struct{}{}
			c := cid.NewCidV1(codec, h)
			if version == 0 {
				c = cid.NewCidV0(h)
			}
			b, err := blocks.NewBlockWithCid(data, c)
			if err != nil {
				panic(err)
			}
			return b
		}
		if size < 4 && tries > 64<<(8*size) {
			panic(fmt.Sprintf("testutil: cannot make %d distinct blocks of %d bytes", len(g.seen)+1, size))
		}
	}
}

package testutil_test

import (
	"slices"
	"testing"

	"github.com/gobitswap/bitswap/testutil"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

func cids(bls []blocks.Block) []cid.Cid {
	out := make([]cid.Cid, len(bls))
	for i, b := range bls {
		out[i] = b.Cid()
	}
	return out
}

// checkBlocks fails unless every block's data hashes to its CID and no two
// blocks share a multihash.
func checkBlocks(t *testing.T, bls []blocks.Block) {
	t.Helper()
	seen := map[string]int{}
	for i, b := range bls {
		c, err := b.Cid().Prefix().Sum(b.RawData())
		if err != nil || !c.Equals(b.Cid()) {
			t.Fatalf("block %d: data does not hash to %s", i, b.Cid())
		}
		if j, dup := seen[string(b.Cid().Hash())]; dup {
			t.Fatalf("blocks %d and %d share a multihash", j, i)
		}
		seen[string(b.Cid().Hash())] = i
	}
}

func TestRandomBlocksAreDeterministicRawV1Sha256OfTheGivenSize(t *testing.T) {
	bls := testutil.RandomBlocks(42, 100, 1024)
	if len(bls) != 100 {
		t.Fatalf("got %d blocks, want 100", len(bls))
	}
	for i, b := range bls {
		p := b.Cid().Prefix()
		if p.Version != 1 || p.Codec != cid.Raw || p.MhType != mh.SHA2_256 || len(b.RawData()) != 1024 {
			t.Fatalf("block %d: %s of %d bytes, want CIDv1 raw sha2-256 of 1024 bytes", i, b.Cid(), len(b.RawData()))
		}
	}
	checkBlocks(t, bls)

	if again := testutil.RandomBlocks(42, 100, 1024); !slices.EqualFunc(cids(bls), cids(again), cid.Cid.Equals) {
		t.Fatal("the same seed gave different blocks")
	}
	if other := testutil.RandomBlocks(43, 1, 1024); other[0].Cid().Equals(bls[0].Cid()) {
		t.Fatal("different seeds gave the same first block")
	}
}

func TestRandomBlocksAreDistinctEvenWhenTiny(t *testing.T) {
	checkBlocks(t, testutil.RandomBlocks(1, 256, 1)) // every possible byte
	if got := testutil.RandomBlocks(1, 1, 0); len(got[0].RawData()) != 0 {
		t.Fatal("size 0 block has data")
	}
	for _, c := range []struct{ n, size int }{{257, 1}, {2, 0}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RandomBlocks(_, %d, %d) did not panic, yet cannot be distinct", c.n, c.size)
				}
			}()
			testutil.RandomBlocks(1, c.n, c.size)
		}()
	}
}

func TestMixedBlocksCycleKindsAndSpanBothSizeBounds(t *testing.T) {
	const minSize, maxSize = 10, 10_000
	bls := testutil.MixedBlocks(7, 31, minSize, maxSize)
	checkBlocks(t, bls)

	type kind struct {
		version int
		codec   uint64
	}
	kinds := map[kind]int{}
	for i, b := range bls {
		p := b.Cid().Prefix()
		kinds[kind{int(p.Version), p.Codec}]++
		if p.MhType != mh.SHA2_256 {
			t.Fatalf("block %d hashed with %x, want sha2-256", i, p.MhType)
		}
		if n := len(b.RawData()); n < minSize || n > maxSize {
			t.Fatalf("block %d has %d bytes, outside [%d, %d]", i, n, minSize, maxSize)
		}
		if i > 0 && len(b.RawData()) < len(bls[i-1].RawData()) {
			t.Fatalf("sizes do not step up: block %d has %d bytes, block %d %d", i, len(b.RawData()), i-1, len(bls[i-1].RawData()))
		}
	}
	want := map[kind]int{{1, cid.Raw}: 11, {1, cid.DagProtobuf}: 10, {0, cid.DagProtobuf}: 10}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("%d blocks of CIDv%d codec %x, want %d (all: %v)", kinds[k], k.version, k.codec, n, kinds)
		}
	}
	if first, last := len(bls[0].RawData()), len(bls[len(bls)-1].RawData()); first != minSize || last != maxSize {
		t.Errorf("first and last sizes %d and %d, want %d and %d", first, last, minSize, maxSize)
	}

	if again := testutil.MixedBlocks(7, 31, minSize, maxSize); !slices.EqualFunc(cids(bls), cids(again), cid.Cid.Equals) {
		t.Fatal("the same seed gave different blocks")
	}
}

func TestMixedBlocksOfOneTakesTheMinimumSize(t *testing.T) {
	if got := testutil.MixedBlocks(1, 1, 5, 9); len(got) != 1 || len(got[0].RawData()) != 5 {
		t.Fatalf("got %d blocks, first of %d bytes; want one of 5", len(got), len(got[0].RawData()))
	}
}

func TestPeerIDsAreDeterministicAndDistinct(t *testing.T) {
	if testutil.PeerID(1) != testutil.PeerID(1) || testutil.PeerID(1) == testutil.PeerID(2) {
		t.Fatal("PeerID is not a deterministic injection")
	}
	if err := testutil.PeerID(0).Validate(); err != nil {
		t.Fatal(err)
	}
	vn := testutil.NewVirtualNetwork()
	defer vn.Close()
	if got := vn.NewPeer().Self(); got != testutil.PeerID(0) {
		t.Fatalf("first peer is %s, want PeerID(0) %s", got, testutil.PeerID(0))
	}
}

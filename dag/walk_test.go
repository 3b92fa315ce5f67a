package dag_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/dag"
	"github.com/gobitswap/bitswap/testutil"
)

// The walk asks for every link known so far at once, so a DAG of depth d
// costs d round trips plus the transfer time, not one round trip a block.
func TestWalkDepth3TakesThreeRoundTripsPlusTransfer(t *testing.T) {
	const (
		oneWay    = 25 * time.Millisecond // 50 ms round trip
		bandwidth = 100_000_000 / 8       // 100 Mbit/s in bytes/s
	)
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		var bss []blockstore.Blockstore
		var nodes []*bitswap.Bitswap
		for range 2 {
			vp := vn.NewPeer()
			bs := blockstore.NewMemory()
			bss = append(bss, bs)
			nodes = append(nodes, bitswap.New(context.Background(), vp, bs))
		}
		defer func() {
			for _, n := range nodes {
				n.Close()
			}
		}()
		vn.ConnectAll()

		// root -> 8 dag-pb nodes -> 64 raw leaves of 16 KiB: depth 3.
		data := make([]byte, 64*16<<10)
		_, _ = rand.Read(data)
		file, err := testutil.BuildFileDAG(bytes.NewReader(data), 16<<10, 8)
		if err != nil {
			t.Fatal(err)
		}
		if file.Depth != 3 || len(file.Blocks) != 73 {
			t.Fatalf("depth %d, %d blocks", file.Depth, len(file.Blocks))
		}
		total := 0
		for _, b := range file.Blocks {
			total += len(b.RawData())
		}
		_ = bss[0].PutMany(context.Background(), file.Blocks)
		time.Sleep(time.Millisecond) // let connection events settle

		got := map[cid.Cid]blocks.Block{}
		start := time.Now()
		sess := nodes[1].NewSession(context.Background())
		err = dag.Walk(context.Background(), sess, file.Root, func(b blocks.Block) error {
			got[b.Cid()] = b
			return nil
		})
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := testutil.ReadFile(file.Root, func(c cid.Cid) (blocks.Block, bool) { b, ok := got[c]; return b, ok }, &out); err != nil {
			t.Fatal(err)
		}
		if len(got) != 73 || !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("got %d blocks; file equal: %v", len(got), bytes.Equal(out.Bytes(), data))
		}
		bound := 3*2*oneWay + time.Duration(float64(total)/bandwidth*float64(time.Second))
		ratio := float64(took) / float64(bound)
		t.Logf("depth-3 DAG, 73 blocks, %d bytes: %v; 3 round trips + transfer = %v; ratio %.3f", total, took, bound, ratio)
		if ratio > 1.3 {
			t.Fatalf("took %v, over 1.3 × %v", took, bound)
		}
		// Walking one block at a time would have cost at least one round
		// trip per level-2 node and leaf batch; make sure the test can tell.
		if took >= 73*2*oneWay/4 {
			t.Fatalf("took %v: not pipelined", took)
		}
	})
}

// mapFetcher serves blocks from a map; missing ones never come.
type mapFetcher map[cid.Cid]blocks.Block

func (m mapFetcher) GetBlocks(ctx context.Context, cids []cid.Cid) (<-chan blocks.Block, error) {
	ch := make(chan blocks.Block, len(cids))
	go func() {
		defer close(ch)
		for _, c := range cids {
			if b, ok := m[c]; ok {
				ch <- b
			}
		}
		<-ctx.Done()
	}()
	return ch, nil
}

func TestWalkNamesMissingBlocks(t *testing.T) {
	root, blks, err := testutil.MixedDAG(1, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	m := mapFetcher{}
	for _, b := range blks {
		m[b.Cid()] = b
	}
	gone := blks[len(blks)-2].Cid() // a leaf of the file DAG
	delete(m, gone)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	n := 0
	err = dag.Walk(ctx, m, root, func(blocks.Block) error { n++; return nil })
	me, ok := err.(*dag.MissingError)
	if !ok || len(me.Missing) != 1 || me.Missing[0] != gone {
		t.Fatalf("err %v, want a MissingError naming %s", err, gone)
	}
	if n != len(blks)-1 {
		t.Fatalf("visited %d blocks, want %d", n, len(blks)-1)
	}
}

// countingFetcher serves a map and records the most CIDs asked for and not
// yet delivered at any time.
type countingFetcher struct {
	mapFetcher
	mu             sync.Mutex
	out, most, max int
	calls          int
}

func (f *countingFetcher) GetBlocks(ctx context.Context, cids []cid.Cid) (<-chan blocks.Block, error) {
	f.mu.Lock()
	f.calls++
	f.out += len(cids)
	f.most = max(f.most, f.out)
	f.mu.Unlock()
	ch := make(chan blocks.Block)
	go func() {
		defer close(ch)
		for _, c := range cids {
			b, ok := f.mapFetcher[c]
			if !ok {
				continue
			}
			// Counted as delivered before it is handed over: the walk may
			// ask for more as soon as it has it.
			f.mu.Lock()
			f.out--
			f.mu.Unlock()
			select {
			case ch <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// Every codec's links are followed, each block is visited once, and the
// walk never has more CIDs asked for than its bound, however wide the DAG.
func TestWalkVisitsEveryBlockOnceWithinItsBound(t *testing.T) {
	root, blks, err := testutil.MixedDAG(2, 1<<20) // 64 leaves under 16 + 4 + 1 nodes
	if err != nil {
		t.Fatal(err)
	}
	for _, bound := range []int{1, 3, 16, -1} {
		f := &countingFetcher{mapFetcher: mapFetcher{}}
		for _, b := range blks {
			f.mapFetcher[b.Cid()] = b
		}
		seen := map[cid.Cid]int{}
		err := dag.Walk(context.Background(), f, root, func(b blocks.Block) error {
			seen[b.Cid()]++
			return nil
		}, dag.WithMaxInFlight(bound))
		if err != nil {
			t.Fatalf("bound %d: %v", bound, err)
		}
		if len(seen) != len(blks) {
			t.Fatalf("bound %d: visited %d distinct blocks of %d", bound, len(seen), len(blks))
		}
		for c, n := range seen {
			if n != 1 {
				t.Fatalf("bound %d: %s visited %d times", bound, c, n)
			}
		}
		if bound > 0 && f.most > bound {
			t.Fatalf("bound %d: %d CIDs asked for at once", bound, f.most)
		}
		t.Logf("bound %d: at most %d CIDs outstanding, %d GetBlocks calls", bound, f.most, f.calls)
	}
}

// A links function decides what is followed: one that stops at dag-pb
// nodes prunes the file.
func TestWalkWithLinksPrunes(t *testing.T) {
	root, blks, err := testutil.MixedDAG(3, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	m := mapFetcher{}
	for _, b := range blks {
		m[b.Cid()] = b
	}
	var got []cid.Cid
	err = dag.Walk(context.Background(), m, root, func(b blocks.Block) error {
		got = append(got, b.Cid())
		return nil
	}, dag.WithLinks(func(b blocks.Block) ([]cid.Cid, error) {
		if b.Cid().Prefix().Codec == cid.DagProtobuf {
			return nil, nil
		}
		return dag.Links(b)
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 { // root, dag-json, raw, the file's root
		t.Fatalf("visited %d blocks, want 4 (the file's leaves pruned)", len(got))
	}
}

// A block that does not decode under its codec stops the walk with an
// error naming it.
func TestWalkStopsAtUndecodableBlock(t *testing.T) {
	bad, err := blocks.NewBlockWithCid([]byte("not cbor \xff"), mustSum(t, cid.DagCBOR, []byte("not cbor \xff")))
	if err != nil {
		t.Fatal(err)
	}
	err = dag.Walk(context.Background(), mapFetcher{bad.Cid(): bad}, bad.Cid(), func(blocks.Block) error { return nil })
	if err == nil || !strings.Contains(err.Error(), bad.Cid().String()) {
		t.Fatalf("err = %v, want one naming %s", err, bad.Cid())
	}
}

func mustSum(t *testing.T, codec uint64, data []byte) cid.Cid {
	t.Helper()
	c, err := cid.Prefix{Version: 1, Codec: codec, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

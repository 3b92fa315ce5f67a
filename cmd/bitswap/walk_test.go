package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
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
		dag, err := buildFileDAG(bytes.NewReader(data), 16<<10, 8)
		if err != nil {
			t.Fatal(err)
		}
		if dag.Depth != 3 || len(dag.Blocks) != 73 {
			t.Fatalf("depth %d, %d blocks", dag.Depth, len(dag.Blocks))
		}
		total := 0
		for _, b := range dag.Blocks {
			total += len(b.RawData())
		}
		_ = bss[0].PutMany(context.Background(), dag.Blocks)
		time.Sleep(time.Millisecond) // let connection events settle

		got := map[cid.Cid]blocks.Block{}
		start := time.Now()
		sess := nodes[1].NewSession(context.Background())
		err = Walk(context.Background(), sess, dag.Root, func(b blocks.Block) error {
			got[b.Cid()] = b
			return nil
		})
		took := time.Since(start)
		if err != nil {
			t.Fatal(err)
		}
		var file bytes.Buffer
		if err := readFile(dag.Root, func(c cid.Cid) (blocks.Block, bool) { b, ok := got[c]; return b, ok }, &file); err != nil {
			t.Fatal(err)
		}
		if len(got) != 73 || !bytes.Equal(file.Bytes(), data) {
			t.Fatalf("got %d blocks; file equal: %v", len(got), bytes.Equal(file.Bytes(), data))
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
	d := makeTestDAG(t, 64<<10)
	m := mapFetcher{}
	for _, b := range d.blocks {
		m[b.Cid()] = b
	}
	gone := d.blocks[len(d.blocks)-2].Cid() // a leaf of the file DAG
	delete(m, gone)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	n := 0
	err := Walk(ctx, m, d.root, func(blocks.Block) error { n++; return nil })
	me, ok := err.(*MissingError)
	if !ok || len(me.Missing) != 1 || me.Missing[0] != gone {
		t.Fatalf("err %v, want a MissingError naming %s", err, gone)
	}
	if n != len(sortedKeys(d.blocks))-1 {
		t.Fatalf("visited %d blocks, want %d", n, len(sortedKeys(d.blocks))-1)
	}
}

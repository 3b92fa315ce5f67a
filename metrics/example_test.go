package metrics_test

import (
	"context"
	"fmt"

	blocks "github.com/ipfs/go-block-format"
	"github.com/prometheus/client_golang/prometheus"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/metrics"
	"github.com/gobitswap/bitswap/testutil"
)

// Export a node's metrics to Prometheus: the Option feeds the histograms,
// the Collector reads them and Stat on every scrape. (Two nodes on the
// in-memory network of testutil here; network.NewFromHost's works alike.)
func Example() {
	ctx := context.Background()
	vn := testutil.NewVirtualNetwork()
	seedNet, leechNet := vn.NewPeer(), vn.NewPeer()
	blk := blocks.NewBlock([]byte("measured"))
	seedStore := blockstore.NewMemory()
	_ = seedStore.Put(ctx, blk)
	seed := bitswap.New(ctx, seedNet, seedStore)
	defer seed.Close()

	m := metrics.New(metrics.WithNamespace("ipfs")) // ipfs_bitswap_..., as in Kubo
	leech := bitswap.New(ctx, leechNet, blockstore.NewMemory(), m.Option())
	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer
	reg.MustRegister(m.Collector(leech))
	vn.ConnectAll()

	if _, err := leech.GetBlock(ctx, blk.Cid()); err != nil {
		panic(err)
	}
	leech.Close() // waits for the message that brought the block to be handled

	mfs, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "ipfs_bitswap_blocks_received_total":
			fmt.Println(mf.GetName(), mf.GetMetric()[0].GetCounter().GetValue())
		case "ipfs_bitswap_want_to_block_seconds", "ipfs_bitswap_recv_all_blocks_bytes":
			fmt.Println(mf.GetName(), "count", mf.GetMetric()[0].GetHistogram().GetSampleCount())
		}
	}
	// Output:
	// ipfs_bitswap_blocks_received_total 1
	// ipfs_bitswap_recv_all_blocks_bytes count 1
	// ipfs_bitswap_want_to_block_seconds count 1
}

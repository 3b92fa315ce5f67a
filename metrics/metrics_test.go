package metrics_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/metrics"
	"github.com/gobitswap/bitswap/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// node is a Bitswap on the virtual network with its metrics in a registry
// of its own.
type node struct {
	bs  blockstore.Blockstore
	b   *bitswap.Bitswap
	reg *prometheus.Registry
}

func newNode(t *testing.T, vp *testutil.VirtualPeer, opts ...bitswap.Option) *node {
	t.Helper()
	m := metrics.New()
	n := &node{bs: blockstore.NewMemory(), reg: prometheus.NewRegistry()}
	n.b = bitswap.New(context.Background(), vp, n.bs, append(opts, m.Option())...)
	n.reg.MustRegister(m.Collector(n.b))
	return n
}

// scrape gathers the registry: per metric family, its samples' count (a
// histogram's observations, summed over its label values) and, for
// counters and gauges, their value.
func (n *node) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				out[mf.GetName()] += float64(m.GetHistogram().GetSampleCount())
				out[mf.GetName()+"_sum"] += m.GetHistogram().GetSampleSum()
			case dto.MetricType_COUNTER:
				out[mf.GetName()] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[mf.GetName()] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// A scrape during a fetch shows the histograms moving: after the first
// blocks have been read, every client histogram has observations, and
// more by the end; the server's have too.
func TestScrapeDuringFetchShowsHistogramsMoving(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(10*time.Millisecond), testutil.WithBandwidth(10<<20))
		seedVP, leechVP := vn.NewPeer(), vn.NewPeer()
		// A small window, so that wants wait at the seed's send queue.
		seed, leech := newNode(t, seedVP), newNode(t, leechVP, bitswap.WithPeerWantWindow(16))
		defer seed.b.Close()
		defer leech.b.Close()
		vn.ConnectAll()
		blks := testutil.RandomBlocks(1, 200, 8<<10)
		if err := seed.bs.PutMany(context.Background(), blks); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond) // let the connection events settle

		before := leech.scrape(t)
		keys := make([]cid.Cid, len(blks))
		for i, b := range blks {
			keys[i] = b.Cid()
		}
		ch, err := leech.b.GetBlocks(context.Background(), keys)
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			<-ch
		}
		during := leech.scrape(t)
		got := 50
		for range ch {
			got++
		}
		if got != len(blks) {
			t.Fatalf("got %d of %d blocks", got, len(blks))
		}
		synctest.Wait()
		after := leech.scrape(t)

		moving := []string{
			"bitswap_message_size_bytes",    // wantlists out, blocks in
			"bitswap_message_blocks",        // blocks per message in
			"bitswap_want_to_block_seconds", // want-to-block latency
			"bitswap_send_queue_wants",      // the seed's send queue
			"bitswap_recv_all_blocks_bytes", // boxo's
		}
		for _, name := range moving {
			if !(before[name] < during[name] && during[name] < after[name]) {
				t.Errorf("%s: %v observations before, %v during, %v after the fetch; want it moving", name, before[name], during[name], after[name])
			}
		}
		if n := after["bitswap_want_to_block_seconds"]; n != float64(len(blks)) {
			t.Errorf("want_to_block_seconds has %v observations, want one per block, %d", n, len(blks))
		}
		if n := after["bitswap_recv_all_blocks_bytes"]; n != after["bitswap_blocks_received_total"] {
			t.Errorf("recv_all_blocks_bytes has %v observations, blocks_received_total is %v", n, after["bitswap_blocks_received_total"])
		}
		if sum := after["bitswap_want_to_block_seconds_sum"]; sum < float64(len(blks))*0.020 {
			t.Errorf("want-to-block latency sums to %.3f s over %d blocks, under one 20 ms round trip each", sum, len(blks))
		}
		if sum := after["bitswap_send_queue_wants_sum"]; sum == 0 {
			t.Error("no want ever waited for the window of 16, with 200 wanted")
		}

		server := seed.scrape(t)
		for _, name := range []string{"bitswap_sent_all_blocks_bytes", "bitswap_send_times", "bitswap_message_size_bytes"} {
			if server[name] == 0 {
				t.Errorf("server's %s has no observations after serving %d blocks", name, len(blks))
			}
		}
		if server["bitswap_blocks_sent_total"] != float64(len(blks)) {
			t.Errorf("bitswap_blocks_sent_total = %v, want %d", server["bitswap_blocks_sent_total"], len(blks))
		}
	})
}

// Duplicates show under boxo's name with the BlockRouter's count and sum.
func TestDuplicatesAreBoxosHistogramOfCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(10 * time.Millisecond))
		a, b := vn.NewPeer(), vn.NewPeer()
		leech := newNode(t, a)
		defer leech.b.Close()
		vn.ConnectAll()
		blk := testutil.RandomBlocks(2, 1, 1000)[0]
		_ = leech.bs.Put(context.Background(), blk)
		// A bare peer sends the block we already have: a duplicate.
		b.Start(nopReceiver{})
		defer b.Stop()
		time.Sleep(time.Millisecond)
		if err := b.SendMessage(context.Background(), a.Self(), blockMessage(blk)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // a one-way trip and more
		synctest.Wait()
		got := leech.scrape(t)
		if got["bitswap_recv_dup_blocks_bytes"] != 1 || got["bitswap_recv_dup_blocks_bytes_sum"] != 1000 {
			t.Fatalf("recv_dup_blocks_bytes: count %v, sum %v; want 1 and 1000", got["bitswap_recv_dup_blocks_bytes"], got["bitswap_recv_dup_blocks_bytes_sum"])
		}
	})
}

// WithNamespace gives the names Kubo gives boxo's metrics.
func TestNamespace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		m := metrics.New(metrics.WithNamespace("ipfs"))
		b := bitswap.New(context.Background(), vn.NewPeer(), blockstore.NewMemory(), m.Option())
		defer b.Close()
		reg := prometheus.NewRegistry()
		reg.MustRegister(m.Collector(b))
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		names := make(map[string]bool)
		for _, mf := range mfs {
			names[mf.GetName()] = true
		}
		for _, want := range []string{"ipfs_bitswap_recv_all_blocks_bytes", "ipfs_bitswap_recv_dup_blocks_bytes", "ipfs_bitswap_sent_all_blocks_bytes", "ipfs_bitswap_send_times", "ipfs_bitswap_wantlist_total", "ipfs_bitswap_peers"} {
			if !names[want] {
				t.Errorf("no %s among %v", want, names)
			}
		}
	})
}

type nopReceiver struct{}

func (nopReceiver) ReceiveMessage(context.Context, peer.ID, *message.Message) error { return nil }
func (nopReceiver) ReceiveError(peer.ID, error)                                     {}
func (nopReceiver) PeerConnected(peer.ID)                                           {}
func (nopReceiver) PeerDisconnected(peer.ID)                                        {}

func blockMessage(blks ...blocks.Block) *message.Message { return &message.Message{Blocks: blks} }

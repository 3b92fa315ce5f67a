package bitswap_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"go.uber.org/goleak"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// inbox is a bare protocol peer: it records what it receives.
type inbox struct {
	mu   sync.Mutex
	msgs []*message.Message
}

func (r *inbox) ReceiveMessage(_ context.Context, _ peer.ID, m *message.Message) error {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	return nil
}
func (r *inbox) ReceiveError(peer.ID, error)  {}
func (r *inbox) PeerConnected(peer.ID)        {}
func (r *inbox) PeerDisconnected(peer.ID)     {}
func (r *inbox) received() []*message.Message { r.mu.Lock(); defer r.mu.Unlock(); return r.msgs }

func blocksIn(msgs []*message.Message) map[string][]byte {
	out := make(map[string][]byte)
	for _, m := range msgs {
		for _, b := range m.Blocks {
			out[b.Cid().KeyString()] = b.RawData()
		}
	}
	return out
}

// A peer that asks our server for blocks gets them in one round trip plus
// transfer time, and the server's counters, ledger and wantlist view agree
// with what crossed the (virtual) wire.
func TestServerOverVirtualNetwork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const oneWay = 25 * time.Millisecond
		const bandwidth = 100 << 20 // bytes/s
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		serverNet, client := vn.NewPeer(), vn.NewPeer()
		vn.ConnectAll()

		ctx := context.Background()
		bs := blockstore.NewMemory()
		blks := testutil.RandomBlocks(1, 64, 64<<10)
		if err := bs.PutMany(ctx, blks); err != nil {
			t.Fatal(err)
		}
		bsw := bitswap.New(ctx, serverNet, bs)
		defer bsw.Close()
		in := &inbox{}
		client.Start(in)
		defer client.Stop()

		want := &message.Message{}
		for _, b := range blks {
			want.Wantlist = append(want.Wantlist, message.Entry{Cid: b.Cid(), Priority: 1, WantType: message.WantBlock})
		}
		start := time.Now()
		if err := client.SendMessage(ctx, serverNet.Self(), want); err != nil {
			t.Fatal(err)
		}
		total := 64 * (64 << 10)
		// Two one-way trips, the payload at link speed, and a little for
		// framing and the want message itself.
		bound := 2*oneWay + time.Duration(float64(total)/bandwidth*float64(time.Second))
		time.Sleep(bound * 12 / 10)
		synctest.Wait()

		got := blocksIn(in.received())
		if len(got) != len(blks) {
			t.Fatalf("received %d of %d blocks within %v (bound %v)", len(got), len(blks), time.Since(start), bound)
		}
		for _, b := range blks {
			if !bytes.Equal(got[b.Cid().KeyString()], b.RawData()) {
				t.Fatalf("block %s differs", b.Cid())
			}
		}
		st, _ := bsw.Stat()
		if st.BlocksSent != 64 || st.DataSent != uint64(total) {
			t.Fatalf("Stat: %d blocks / %d bytes sent, want 64 / %d", st.BlocksSent, st.DataSent, total)
		}
		if cs := client.Stats(); cs.BytesReceived != st.Network.BytesSent {
			t.Fatalf("client received %d framed bytes, server network says it sent %d", cs.BytesReceived, st.Network.BytesSent)
		}
		if r := bsw.LedgerForPeer(client.Self()); r.Sent != uint64(total) || r.BlocksSent != 64 {
			t.Fatalf("ledger: %+v", r)
		}
		if wl := bsw.WantlistForPeer(client.Self()); len(wl) != 0 {
			t.Fatalf("%d wants left after everything was served", len(wl))
		}
	})
}

// A want for a block the server lacks stays until NotifyNewBlocks, and is
// forgotten when the peer disconnects.
func TestServerWaitsForBlocksAndForgetsDisconnectedPeers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(10 * time.Millisecond))
		serverNet, client, other := vn.NewPeer(), vn.NewPeer(), vn.NewPeer()
		vn.ConnectAll()
		ctx := context.Background()
		bs := blockstore.NewMemory()
		bsw := bitswap.New(ctx, serverNet, bs)
		defer bsw.Close()
		in := &inbox{}
		client.Start(in)
		defer client.Stop()
		other.Start(&inbox{})
		defer other.Stop()

		late := blocks.NewBlock([]byte("arrives later"))
		missing := blocks.NewBlock([]byte("never arrives"))
		for _, p := range []*testutil.VirtualPeer{client, other} {
			_ = p.SendMessage(ctx, serverNet.Self(), &message.Message{Wantlist: []message.Entry{
				{Cid: late.Cid(), WantType: message.WantBlock},
				{Cid: missing.Cid(), WantType: message.WantBlock},
			}})
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(bsw.WantlistForPeer(client.Self())); n != 2 {
			t.Fatalf("server holds %d wants for the client, want 2", n)
		}
		if len(in.received()) != 0 {
			t.Fatal("server answered although it has nothing and no DONT_HAVE was asked for")
		}

		_ = bs.Put(ctx, late)
		_ = bsw.NotifyNewBlocks(ctx, late)
		time.Sleep(time.Second)
		synctest.Wait()
		if got := blocksIn(in.received()); len(got) != 1 {
			t.Fatalf("client got %d blocks after NotifyNewBlocks, want 1", len(got))
		}

		_ = other.DisconnectFrom(ctx, serverNet.Self())
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(bsw.WantlistForPeer(other.Self())); n != 0 {
			t.Fatalf("server still holds %d wants for a disconnected peer", n)
		}
		if st, _ := bsw.Stat(); st.Server.Wants != 1 {
			t.Fatalf("server holds %d wants in all, want 1 (client's missing block)", st.Server.Wants)
		}
	})
}

// Cancelling New's context closes Bitswap.
func TestContextCancelCloses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		p := vn.NewPeer()
		ctx, cancel := context.WithCancel(context.Background())
		bitswap.New(ctx, p, blockstore.NewMemory())
		cancel()
		synctest.Wait() // every goroutine of Bitswap must have exited
	})
}

// Abuse is reported to the network, which counts it against the sender:
// wants for CIDs over the size limit, and unrequested blocks past
// WithMaxUnrequested (net of the wanted blocks the peer sent). Honest
// messages are not.
func TestAbusiveMessagesAreRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(time.Millisecond))
		serverNet, pusher := vn.NewPeer(), vn.NewPeer()
		vn.ConnectAll()
		ctx := context.Background()
		bsw := bitswap.New(ctx, serverNet, blockstore.NewMemory(), bitswap.WithMaxUnrequested(4))
		defer bsw.Close()
		pusher.Start(&inbox{})
		defer pusher.Stop()

		send := func(m *message.Message) {
			if err := pusher.SendMessage(ctx, serverNet.Self(), m); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
			synctest.Wait()
		}
		rejected := func() uint64 { return vn.TrafficBetween(pusher.Self(), serverNet.Self()).Rejected }

		blks := testutil.RandomBlocks(9, 8, 64)
		send(&message.Message{Blocks: blks[:4]}) // 4 unrequested: at the limit
		if got := rejected(); got != 0 {
			t.Fatalf("%d rejected at the limit, want 0", got)
		}
		send(&message.Message{Blocks: blks[4:5]})
		if got := rejected(); got != 1 {
			t.Fatalf("%d rejected past the limit, want 1", got)
		}
		big, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.IDENTITY, MhLength: -1}.Sum(make([]byte, 1024))
		if err != nil {
			t.Fatal(err)
		}
		send(&message.Message{Wantlist: []message.Entry{{Cid: big, WantType: message.WantBlock}}})
		if got := rejected(); got != 2 {
			t.Fatalf("%d rejected after a want for a 1 KiB CID, want 2", got)
		}
		send(&message.Message{Wantlist: []message.Entry{{Cid: blks[7].Cid(), WantType: message.WantHave, SendDontHave: true}}})
		if got := rejected(); got != 2 {
			t.Fatalf("an honest want was rejected (%d)", got)
		}
	})
}

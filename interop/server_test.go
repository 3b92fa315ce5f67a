package interop

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	boxobs "github.com/ipfs/boxo/bitswap"
	bsmsg "github.com/ipfs/boxo/bitswap/message"
	pb "github.com/ipfs/boxo/bitswap/message/pb"
	bsnetiface "github.com/ipfs/boxo/bitswap/network"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/network"
)

// A boxo client fetches 1,000 blocks of every kind from our server, on each
// protocol version, and gets the same bytes.
func TestBoxoClientFetchesFromOurServer(t *testing.T) {
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			ours := startOurs(t, ctx, []network.Option{network.WithProtocols(v)})
			theirs := startBoxo(t, ctx, boxoProtocols(v))

			want := mixedBlocks(t, uint64(v)+1, 1000)
			if v == message.V100 {
				// 1.0.0 sends raw bytes and the receiver derives a CIDv0 from
				// them: only sha2-256 dag-pb CIDv0 blocks can be asked for by
				// CID on that version, so that is what a 1.0.0 peer fetches.
				want = onlyV0(want)
			}
			if err := ours.bs.PutMany(ctx, want); err != nil {
				t.Fatal(err)
			}
			connect(t, ctx, theirs.h, ours.h)

			start := time.Now()
			ch, err := theirs.b.GetBlocks(ctx, cidsOf(want))
			if err != nil {
				t.Fatal(err)
			}
			got := make(map[cid.Cid]blocks.Block)
			for b := range ch {
				got[b.Cid()] = b
			}
			if len(got) != len(want) {
				t.Fatalf("boxo got %d of %d blocks", len(got), len(want))
			}
			total := 0
			for _, b := range want {
				g, ok := got[b.Cid()]
				if !ok || !bytes.Equal(g.RawData(), b.RawData()) {
					t.Fatalf("block %s missing or different", b.Cid())
				}
				total += len(b.RawData())
			}
			t.Logf("%s: %d blocks, %d bytes in %v", v, len(want), total, time.Since(start))
			r := ours.b.LedgerForPeer(theirs.h.ID())
			if r.Sent < uint64(total) {
				t.Fatalf("ledger says %d bytes sent, at least %d were", r.Sent, total)
			}
		})
	}
}

func onlyV0(bs []blocks.Block) []blocks.Block {
	var out []blocks.Block
	for _, b := range bs {
		if b.Cid().Version() == 0 {
			out = append(out, b)
		}
	}
	return out
}

// On 1.0.0 a CIDv1 block cannot be matched by the receiver, so we test the
// remaining kinds of that version separately: every kind that can work does.
func TestBoxoClientFetchesCidV1OnOneZeroAsV0(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ours := startOurs(t, ctx, []network.Option{network.WithProtocols(message.V100)})
	theirs := startBoxo(t, ctx, boxoProtocols(message.V100))
	all := mixedBlocks(t, 99, 30)
	if err := ours.bs.PutMany(ctx, all); err != nil {
		t.Fatal(err)
	}
	connect(t, ctx, theirs.h, ours.h)
	// A CIDv1 dag-pb sha2-256 block is the same bytes as a CIDv0: asked for
	// as CIDv0 it arrives.
	for _, b := range all {
		if b.Cid().Version() == 1 && b.Cid().Type() == cid.DagProtobuf {
			v0 := cid.NewCidV0(b.Cid().Hash())
			got, err := theirs.b.GetBlock(ctx, v0)
			if err != nil {
				t.Fatalf("GetBlock(%s): %v", v0, err)
			}
			if !bytes.Equal(got.RawData(), b.RawData()) {
				t.Fatalf("block %s differs", v0)
			}
		}
	}
}

// A boxo client asking for 20,000 × 4 KiB blocks in one GetBlocks call is
// served without ever waiting on its rebroadcast timer, though that is far
// more wants than boxo's own server would hold.
func TestBoxoClientTwentyThousandBlocksInOneCall(t *testing.T) {
	measureStalls(t, fourKiBBlocks(20000), func(t *testing.T, ctx context.Context) fetchPair {
		ours := startOurs(t, ctx, nil)
		theirs := startBoxo(t, ctx, nil)
		t.Cleanup(func() {
			if st, _ := ours.b.Stat(); st.Server.WantsDropped != 0 {
				t.Errorf("server dropped %d wants", st.Server.WantsDropped)
			}
		})
		return fetchPair{ours.bs, ours.h, theirs.b, theirs.h, func() string { return diagPair(ours, theirs) }, nil}
	})
}

// presenceReceiver records what boxo's network layer hands up.
type presenceReceiver struct {
	mu   sync.Mutex
	msgs []bsmsg.BitSwapMessage
	sig  chan struct{}
}

func (r *presenceReceiver) ReceiveMessage(_ context.Context, _ peer.ID, m bsmsg.BitSwapMessage) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.sig <- struct{}{}:
	default:
	}
}
func (r *presenceReceiver) ReceiveError(error)       {}
func (r *presenceReceiver) PeerConnected(peer.ID)    {}
func (r *presenceReceiver) PeerDisconnected(peer.ID) {}

// next waits for the next message boxo receives.
func (r *presenceReceiver) next(t *testing.T, ctx context.Context, seen int) bsmsg.BitSwapMessage {
	t.Helper()
	for {
		r.mu.Lock()
		if len(r.msgs) > seen {
			m := r.msgs[seen]
			r.mu.Unlock()
			return m
		}
		r.mu.Unlock()
		select {
		case <-r.sig:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no answer from our server")
		}
	}
}

// With boxo's own network layer and codec on 1.2.0, want-have with
// sendDontHave gets DONT_HAVE for a block we lack, HAVE for a large block we
// have and the block itself for a small one.
func TestBoxoWantHaveAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ours := startOurs(t, ctx, nil)
	h, _ := newHost(t)
	bnet := bsnet.NewFromIpfsHost(h, bsnet.SupportedProtocols(boxoProtocols(message.V120)))
	rec := &presenceReceiver{sig: make(chan struct{}, 1)}
	bnet.Start(rec)
	t.Cleanup(bnet.Stop)
	connect(t, ctx, h, ours.h)

	small := blocks.NewBlock(bytes.Repeat([]byte("s"), 1024))
	large := blocks.NewBlock(bytes.Repeat([]byte("L"), 1025))
	missing := blocks.NewBlock([]byte("nobody has this"))
	if err := ours.bs.PutMany(ctx, []blocks.Block{small, large}); err != nil {
		t.Fatal(err)
	}

	ask := func(c cid.Cid) {
		m := bsmsg.New(false)
		m.AddEntry(c, 1, pb.Message_Wantlist_Have, true)
		if err := bnet.SendMessage(ctx, ours.h.ID(), m); err != nil {
			t.Fatal(err)
		}
	}
	seen := 0
	check := func(name string, c cid.Cid, ok func(bsmsg.BitSwapMessage) bool) {
		t.Helper()
		ask(c)
		m := rec.next(t, ctx, seen)
		seen++
		if !ok(m) {
			t.Fatalf("%s: unexpected answer: haves %v, dont-haves %v, %d blocks", name, m.Haves(), m.DontHaves(), len(m.Blocks()))
		}
	}
	check("missing block", missing.Cid(), func(m bsmsg.BitSwapMessage) bool {
		return len(m.DontHaves()) == 1 && m.DontHaves()[0].Equals(missing.Cid())
	})
	check("large block", large.Cid(), func(m bsmsg.BitSwapMessage) bool {
		return len(m.Haves()) == 1 && m.Haves()[0].Equals(large.Cid())
	})
	check("small block", small.Cid(), func(m bsmsg.BitSwapMessage) bool {
		return len(m.Blocks()) == 1 && bytes.Equal(m.Blocks()[0].RawData(), small.RawData())
	})

	// The want for the missing block is still held; once the block arrives
	// the waiting peer hears HAVE without asking again.
	if err := ours.bs.Put(ctx, missing); err != nil {
		t.Fatal(err)
	}
	if err := ours.b.NotifyNewBlocks(ctx, missing); err != nil {
		t.Fatal(err)
	}
	m := rec.next(t, ctx, seen)
	if len(m.Blocks()) != 1 || !m.Blocks()[0].Cid().Equals(missing.Cid()) {
		t.Fatalf("after NotifyNewBlocks: haves %v, blocks %d; want the (small) block", m.Haves(), len(m.Blocks()))
	}
}

var _ bsnetiface.Receiver = (*presenceReceiver)(nil)

// A boxo client still waiting in GetBlock gets a block added later through
// NotifyNewBlocks.
func TestBoxoClientGetsBlockAddedLater(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ours := startOurs(t, ctx, nil)
	theirs := startBoxo(t, ctx, nil, boxobs.WithServerEnabled(false))
	connect(t, ctx, theirs.h, ours.h)

	late := blocks.NewBlock(bytes.Repeat([]byte("late"), 1000))
	done := make(chan error, 1)
	go func() {
		b, err := theirs.b.GetBlock(ctx, late.Cid())
		if err == nil && !bytes.Equal(b.RawData(), late.RawData()) {
			err = context.Canceled
		}
		done <- err
	}()
	// Wait until our server holds boxo's want, then add the block.
	for len(ours.b.WantlistForPeer(theirs.h.ID())) == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("boxo's want never reached our server")
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := ours.bs.Put(ctx, late); err != nil {
		t.Fatal(err)
	}
	if err := ours.b.NotifyNewBlocks(ctx, late); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("boxo GetBlock: %v", err)
	}
}

var _ = network.WithProtocols

package engine

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"go.uber.org/goleak"

	"github.com/gobitswap/bitswap/ledger"
	"github.com/gobitswap/bitswap/message"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeStore serves blocks of given sizes, sharing one buffer: the Engine
// never hashes what it sends, so the bytes need not match the CID.
type fakeStore struct {
	mu     sync.Mutex
	sizes  map[cid.Cid]int
	fail   error            // returned for every call when set
	vanish map[cid.Cid]bool // GetSize finds these, Get does not (deleted in between)
	buf    []byte
}

func newFakeStore() *fakeStore {
	return &fakeStore{sizes: make(map[cid.Cid]int), buf: make([]byte, 2<<20)}
}

func (s *fakeStore) put(c cid.Cid, size int) {
	s.mu.Lock()
	s.sizes[c] = size
	s.mu.Unlock()
}

func (s *fakeStore) GetSize(_ context.Context, c cid.Cid) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	n, ok := s.sizes[c]
	if !ok {
		return 0, ipld.ErrNotFound{Cid: c}
	}
	return n, nil
}

func (s *fakeStore) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	n, err := s.GetSize(ctx, c)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	gone := s.vanish[c]
	s.mu.Unlock()
	if gone {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	return blocks.NewBlockWithCid(s.buf[:n], c)
}

type sent struct {
	to  peer.ID
	msg *message.Message
}

// recorder is a Sender that records messages; when gate is set, each send
// waits for a token on it.
type recorder struct {
	mu   sync.Mutex
	msgs []sent
	gate chan struct{}
	fail error
	sig  chan struct{}
}

func newRecorder() *recorder { return &recorder{sig: make(chan struct{}, 1)} }

func (r *recorder) SendMessage(ctx context.Context, p peer.ID, m *message.Message) error {
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.msgs = append(r.msgs, sent{p, m})
	select {
	case r.sig <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) snapshot() []sent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sent(nil), r.msgs...)
}

// waitFor lets the Engine do all it can (every test runs in a synctest
// bubble, so that is until its goroutines are durably blocked), then
// checks cond on the recorded messages.
func (r *recorder) waitFor(t *testing.T, what string, cond func([]sent) bool) []sent {
	t.Helper()
	synctest.Wait()
	s := r.snapshot()
	if !cond(s) {
		t.Fatalf("the Engine went idle without %s; %d messages sent", what, len(s))
	}
	return s
}

func countBlocks(msgs []sent, p peer.ID) int {
	n := 0
	for _, s := range msgs {
		if s.to == p {
			n += len(s.msg.Blocks)
		}
	}
	return n
}

func wantBlocks(cids []cid.Cid) *message.Message {
	m := &message.Message{}
	for i, c := range cids {
		m.Wantlist = append(m.Wantlist, message.Entry{Cid: c, Priority: int32(len(cids) - i), WantType: message.WantBlock})
	}
	return m
}

func storeBlocks(t *testing.T, s *fakeStore, from, n, size int) []cid.Cid {
	var out []cid.Cid
	for i := from; i < from+n; i++ {
		c := testCid(t, i)
		s.put(c, size)
		out = append(out, c)
	}
	return out
}

func TestEngineServesPeersInterleaved(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec := newFakeStore(), newRecorder()
		rec.gate = make(chan struct{})
		e := New(store, rec, ledger.New(), WithTaskWorkerCount(1), WithTargetMessageSize(4096))
		e.Start()
		defer e.Close()

		ctx := context.Background()
		e.MessageReceived(ctx, "a", wantBlocks(storeBlocks(t, store, 0, 100, 4096)))
		e.MessageReceived(ctx, "b", wantBlocks(storeBlocks(t, store, 100, 100, 4096)))
		close(rec.gate) // both wantlists are in before anything is sent

		msgs := rec.waitFor(t, "200 blocks", func(s []sent) bool { return countBlocks(s, "a")+countBlocks(s, "b") == 200 })
		// The worker may have popped a's first message before b arrived; after
		// that the two must alternate.
		for i := 2; i < len(msgs); i++ {
			if msgs[i].to == msgs[i-1].to && countBlocks(msgs[:i], "a") < 100 && countBlocks(msgs[:i], "b") < 100 {
				t.Fatalf("message %d went to %s again while the other peer was waiting", i, msgs[i].to)
			}
		}
	})
}

func TestEngineNewPeerServedWhileAnotherKeepsServerBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec := newFakeStore(), newRecorder()
		rec.gate = make(chan struct{})
		e := New(store, rec, ledger.New())
		e.Start()
		defer e.Close()

		ctx := context.Background()
		e.MessageReceived(ctx, "busy", wantBlocks(storeBlocks(t, store, 0, 1024, 256<<10)))
		// Let the busy peer's transfer get going.
		for range 10 {
			rec.gate <- struct{}{}
		}
		rec.waitFor(t, "busy transfer to start", func(s []sent) bool { return len(s) == 10 })
		e.MessageReceived(ctx, "new", wantBlocks(storeBlocks(t, store, 5000, 1, 256<<10)))
		// With 8 workers, 8 sends of the busy peer may already be waiting at the
		// gate; the newcomer must come within the next round of turns after them.
		const rounds = DefaultTaskWorkerCount + 2
		for range rounds {
			rec.gate <- struct{}{}
		}
		msgs := rec.waitFor(t, "sends after newcomer", func(s []sent) bool { return len(s) == 10+rounds })
		if countBlocks(msgs, "new") != 1 {
			t.Fatalf("new peer not served within %d messages while another peer had 1,024 × 256 KiB queued", rounds)
		}
		close(rec.gate)
	})
}

func TestEngineLedgerEqualsBytesSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec := newFakeStore(), newRecorder()
		l := ledger.New()
		e := New(store, rec, l)
		e.Start()
		defer e.Close()

		var cids []cid.Cid
		total := 0
		for i := range 300 {
			size := 1 + i*997%300000
			store.put(testCid(t, i), size)
			cids = append(cids, testCid(t, i))
			total += size
		}
		e.MessageReceived(context.Background(), "p", wantBlocks(cids))
		msgs := rec.waitFor(t, "all blocks", func(s []sent) bool { return countBlocks(s, "p") == 300 })
		onWire := 0
		for _, m := range msgs {
			for _, b := range m.msg.Blocks {
				onWire += len(b.RawData())
			}
		}
		r := l.Receipt("p")
		if onWire != total || r.Sent != uint64(total) || r.BlocksSent != 300 {
			t.Fatalf("sent %d bytes, ledger says %d bytes / %d blocks; want %d / 300", onWire, r.Sent, r.BlocksSent, total)
		}
		if st := e.Stat(); st.DataSent != uint64(total) || st.BlocksSent != 300 {
			t.Fatalf("Stat says %d bytes / %d blocks", st.DataSent, st.BlocksSent)
		}
	})
}

// A client that asks for 20,000 blocks at once (boxo's GetBlocks does) is
// served all of them with default options, though that is far more than the
// 1,024 active wants per peer.
func TestEngineServesWantlistLargerThanActiveCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec := newFakeStore(), newRecorder()
		e := New(store, rec, ledger.New())
		e.Start()
		defer e.Close()

		cids := storeBlocks(t, store, 0, 20000, 4096)
		e.MessageReceived(context.Background(), "p", wantBlocks(cids))
		rec.waitFor(t, "20,000 blocks", func(s []sent) bool { return countBlocks(s, "p") == 20000 })
		if st := e.Stat(); st.WantsDropped != 0 {
			t.Fatalf("%d wants dropped", st.WantsDropped)
		}
	})
}

func TestEngineDontHaveThenBlockArrives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec := newFakeStore(), newRecorder()
		e := New(store, rec, ledger.New())
		e.Start()
		defer e.Close()

		c := testCid(t, 1)
		ctx := context.Background()
		e.MessageReceived(ctx, "p", &message.Message{Wantlist: []message.Entry{{Cid: c, WantType: message.WantBlock, SendDontHave: true}}})
		msgs := rec.waitFor(t, "DONT_HAVE", func(s []sent) bool { return len(s) == 1 })
		if bp := msgs[0].msg.BlockPresences; len(bp) != 1 || bp[0].Type != message.DontHave || !bp[0].Cid.Equals(c) {
			t.Fatalf("first answer %+v, want DONT_HAVE for %s", msgs[0].msg, c)
		}
		store.put(c, 10)
		blk, _ := blocks.NewBlockWithCid(make([]byte, 10), c)
		e.NotifyNewBlocks(ctx, blk)
		rec.waitFor(t, "the block after NotifyNewBlocks", func(s []sent) bool { return countBlocks(s, "p") == 1 })
		if wl := e.WantlistForPeer("p"); len(wl) != 0 {
			t.Fatalf("wantlist after serving = %v", wl)
		}
	})
}

func TestEngineRequestFilter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec := newFakeStore(), newRecorder()
		e := New(store, rec, ledger.New(), WithPeerBlockRequestFilter(func(p peer.ID, _ cid.Cid) bool { return p != "refused" }))
		e.Start()
		defer e.Close()

		c := storeBlocks(t, store, 0, 1, 100)[0]
		m := &message.Message{Wantlist: []message.Entry{{Cid: c, WantType: message.WantBlock, SendDontHave: true}}}
		e.MessageReceived(context.Background(), "refused", m)
		e.MessageReceived(context.Background(), "welcome", m)
		msgs := rec.waitFor(t, "two answers", func(s []sent) bool { return len(s) == 2 })
		for _, s := range msgs {
			gotBlock := len(s.msg.Blocks) == 1
			if gotBlock != (s.to == "welcome") {
				t.Fatalf("peer %s got block=%v", s.to, gotBlock)
			}
		}
	})
}

func TestEngineBlockstoreFailureKeepsWant(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec := newFakeStore(), newRecorder()
		store.fail = errors.New("disk on fire")
		e := New(store, rec, ledger.New())
		e.Start()
		defer e.Close()

		c := testCid(t, 1)
		e.MessageReceived(context.Background(), "p", &message.Message{Wantlist: []message.Entry{{Cid: c, WantType: message.WantBlock, SendDontHave: true}}})
		if st := e.Stat(); st.BlockstoreErr != 1 {
			t.Fatalf("BlockstoreErr = %d, want 1", st.BlockstoreErr)
		}
		if len(rec.snapshot()) != 0 {
			t.Fatal("a DONT_HAVE was sent although the blockstore only failed")
		}
		if wl := e.WantlistForPeer("p"); len(wl) != 1 {
			t.Fatal("the want was lost on a blockstore failure")
		}
	})
}

func TestEngineForgetsPeerOnDisconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec := newFakeStore(), newRecorder()
		e := New(store, rec, ledger.New())
		e.Start()
		defer e.Close()

		var cids []cid.Cid
		for i := range 50 {
			cids = append(cids, testCid(t, i)) // none stored: they stay parked
		}
		e.MessageReceived(context.Background(), "p", wantBlocks(cids))
		if n := len(e.WantlistForPeer("p")); n != 50 {
			t.Fatalf("wantlist holds %d, want 50", n)
		}
		e.PeerDisconnected("p")
		if st := e.Stat(); st.Wants != 0 || st.Peers != 0 {
			t.Fatalf("after disconnect the engine holds %d wants for %d peers", st.Wants, st.Peers)
		}
	})
}

// Found by FuzzCore's seeds: a turn whose blocks had all vanished from the
// blockstore sent nothing, and the worker then did not refill the peer, so
// wants waiting for the active slots that turn freed were never looked up.
func TestEngineEmptyTurnStillRefills(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec := newFakeStore(), newRecorder()
		cids := storeBlocks(t, store, 0, 2, 100)
		store.vanish = map[cid.Cid]bool{cids[0]: true}
		e := New(store, rec, ledger.New(), WithMaxActiveWantsPerPeer(1), WithTaskWorkerCount(1))
		e.Start()
		defer e.Close()

		e.MessageReceived(context.Background(), "p", wantBlocks(cids))
		rec.waitFor(t, "the second block after the first vanished", func(s []sent) bool { return countBlocks(s, "p") == 1 })
	})
}

// Wants for CIDs over the size limit are dropped and reported as an error
// naming the peer (the network counts it against the peer); the rest of the
// wantlist is served.
func TestEngineRejectsOversizedCids(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec := newFakeStore(), newRecorder()
		e := New(store, rec, ledger.New(), WithMaxCidSize(64))
		e.Start()
		defer e.Close()

		good := storeBlocks(t, store, 0, 1, 100)[0]
		big, err := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.IDENTITY, MhLength: -1}.Sum(make([]byte, 200))
		if err != nil {
			t.Fatal(err)
		}
		m := &message.Message{Wantlist: []message.Entry{
			{Cid: big, WantType: message.WantBlock},
			{Cid: good, WantType: message.WantBlock},
		}}
		err = e.MessageReceived(context.Background(), "p", m)
		if !errors.Is(err, ErrCidTooLarge) || !strings.Contains(err.Error(), "p") {
			t.Fatalf("err = %v, want ErrCidTooLarge", err)
		}
		rec.waitFor(t, "the good block", func(s []sent) bool { return countBlocks(s, "p") == 1 })
		if err := e.MessageReceived(context.Background(), "p", wantBlocks([]cid.Cid{good})); err != nil {
			t.Fatalf("a normal wantlist: %v", err)
		}
	})
}

// WithMaxParkedWants caps wants for blocks we lack across peers; Stat
// counts the evicted ones.
func TestEngineMaxParkedWants(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store, rec := newFakeStore(), newRecorder()
		e := New(store, rec, ledger.New(), WithMaxParkedWants(10))
		e.Start()
		defer e.Close()

		for i, p := range []peer.ID{"a", "b", "c"} {
			var cids []cid.Cid
			for j := range 8 {
				cids = append(cids, testCid(t, 100*i+j)) // none stored: they park
			}
			if err := e.MessageReceived(context.Background(), p, wantBlocks(cids)); err != nil {
				t.Fatal(err)
			}
		}
		st := e.Stat()
		if st.Wants != 10 || st.WantsEvicted != 14 || st.WantsDropped != 0 || st.Peers != 2 {
			t.Fatalf("held %d wants of %d peers, evicted %d, dropped %d; want 10 of 2, 14, 0",
				st.Wants, st.Peers, st.WantsEvicted, st.WantsDropped)
		}
	})
}

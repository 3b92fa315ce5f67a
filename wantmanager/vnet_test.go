package wantmanager_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/testutil"
	"github.com/gobitswap/bitswap/wantmanager"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// client plays the rest of Bitswap around a WantManager: it reports
// connections and answers to it, and, as session s1 would, drops its
// references to what arrived (CancelAll) and to what a peer lacks (Cancel).
type client struct {
	wm *wantmanager.WantManager

	mu        sync.Mutex
	blocks    int
	dontHaves int
	last      time.Time
}

func (c *client) ReceiveMessage(_ context.Context, from peer.ID, msg *message.Message) error {
	var bs, haves, dontHaves []cid.Cid
	for _, b := range msg.Blocks {
		bs = append(bs, b.Cid())
	}
	for _, bp := range msg.BlockPresences {
		if bp.Type == message.Have {
			haves = append(haves, bp.Cid)
		} else {
			dontHaves = append(dontHaves, bp.Cid)
		}
	}
	c.wm.ReceivedFrom(from, bs, haves, dontHaves)
	c.wm.CancelAll(s1, bs)
	c.wm.Cancel(s1, from, dontHaves)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.blocks += len(bs)
	c.dontHaves += len(dontHaves)
	c.last = time.Now()
	return nil
}

func (c *client) ReceiveError(peer.ID, error) {}
func (c *client) PeerConnected(p peer.ID)     { c.wm.PeerConnected(p) }
func (c *client) PeerDisconnected(p peer.ID)  { c.wm.PeerDisconnected(p) }
func (c *client) counts() (blocks, dontHaves int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blocks, c.dontHaves
}

// server plays a boxo-like server: it keeps each client's wantlist as the
// messages say (Full replaces it, cancels remove), records the most wants it
// ever held, answers want-blocks it can serve with the block and the others
// with DONT_HAVE when asked to, and forgets wants it sent a block for. It
// keeps wants it answered DONT_HAVE to, as boxo does.
type server struct {
	vp     *testutil.VirtualPeer
	blocks map[cid.Cid]blocks.Block

	mu       sync.Mutex
	held     map[cid.Cid]bool
	answered map[cid.Cid]bool // DONT_HAVE sent
	maxHeld  int
	cancels  int
}

func newServer(vp *testutil.VirtualPeer, bs []blocks.Block) *server {
	s := &server{vp: vp, blocks: make(map[cid.Cid]blocks.Block), held: make(map[cid.Cid]bool), answered: make(map[cid.Cid]bool)}
	for _, b := range bs {
		s.blocks[b.Cid()] = b
	}
	return s
}

func (s *server) ReceiveMessage(ctx context.Context, from peer.ID, msg *message.Message) error {
	var reply message.Message
	s.mu.Lock()
	if msg.Full {
		clear(s.held)
	}
	for _, e := range msg.Wantlist {
		if e.Cancel {
			delete(s.held, e.Cid)
			s.cancels++
			continue
		}
		s.held[e.Cid] = true
	}
	s.maxHeld = max(s.maxHeld, len(s.held))
	for _, e := range msg.Wantlist {
		if e.Cancel || !s.held[e.Cid] {
			continue
		}
		if b, ok := s.blocks[e.Cid]; ok {
			reply.Blocks = append(reply.Blocks, b)
			delete(s.held, e.Cid)
		} else if e.SendDontHave && !s.answered[e.Cid] {
			reply.BlockPresences = append(reply.BlockPresences, message.BlockPresence{Cid: e.Cid, Type: message.DontHave})
			s.answered[e.Cid] = true
		}
	}
	s.mu.Unlock()
	if len(reply.Blocks)+len(reply.BlockPresences) > 0 {
		_ = s.vp.SendMessage(ctx, from, &reply)
	}
	return nil
}

func (s *server) ReceiveError(peer.ID, error) {}
func (s *server) PeerConnected(peer.ID)       {}
func (s *server) PeerDisconnected(peer.ID)    {}

func (s *server) stats() (maxHeld, held, cancels int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxHeld, len(s.held), s.cancels
}

// fetchSetup connects a client (with a WantManager of window 512) to a
// server holding bs, over links of one-way latency lat, and returns them.
// The caller must Close vn and then the WantManager.
func fetchSetup(t *testing.T, lat time.Duration, bs []blocks.Block) (*testutil.VirtualNetwork, *client, *server, peer.ID) {
	t.Helper()
	vn := testutil.NewVirtualNetwork(testutil.WithLatency(lat))
	a, b := vn.NewPeer(), vn.NewPeer()
	cl := &client{wm: wantmanager.New(a, wantmanager.WithPeerWantWindow(512))}
	sv := newServer(b, bs)
	a.Start(cl)
	b.Start(sv)
	if err := a.Connect(t.Context(), peer.AddrInfo{ID: b.Self()}); err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
	return vn, cl, sv, b.Self()
}

func TestFetching2000BlocksFromOnePeerNeverOverfillsItsWantlist(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, lat = 2000, 50 * time.Millisecond
		bs := testutil.RandomBlocks(1, n, 64)
		vn, cl, sv, p := fetchSetup(t, lat, bs)
		defer cl.wm.Close()
		defer vn.Close()

		cs := make([]cid.Cid, n)
		for i, b := range bs {
			cs[i] = b.Cid()
		}
		start := time.Now()
		cl.wm.WantBlocks(s1, p, cs)
		time.Sleep(10 * time.Second)

		if got, _ := cl.counts(); got != n {
			t.Fatalf("received %d blocks, want %d", got, n)
		}
		maxHeld, held, cancels := sv.stats()
		if maxHeld > 512 {
			t.Errorf("server held up to %d of our wants, over the window of 512", maxHeld)
		}
		if held != 0 || cancels != 0 {
			t.Errorf("server holds %d wants and got %d cancels; want none (blocks answered them)", held, cancels)
		}
		// ceil(2000/512) = 4 windows, one round trip each.
		rtt := 2 * lat
		took := cl.last.Sub(start)
		if took > 4*rtt || took <= 3*rtt {
			t.Errorf("fetch took %v, want 4 round trips (%v)", took, 4*rtt)
		}
		t.Logf("%d blocks in %v of virtual time, server held at most %d wants", n, took, maxHeld)
		if st := cl.wm.Stat(); st.Wants != 0 || st.Queued != 0 || st.WantsSent != n {
			t.Errorf("Stat = %+v; want nothing left and %d wants sent", st, n)
		}
	})
}

func TestCancelsAfterDontHavesKeepTheWindowMoving(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, lat = 2000, 50 * time.Millisecond
		vn, cl, sv, p := fetchSetup(t, lat, nil) // the server has nothing
		defer cl.wm.Close()
		defer vn.Close()

		cl.wm.WantBlocks(s1, p, makeCids(1, n))
		time.Sleep(10 * time.Second)

		if _, got := cl.counts(); got != n {
			t.Fatalf("received %d DONT_HAVEs, want %d", got, n)
		}
		maxHeld, held, cancels := sv.stats()
		if maxHeld > 512 {
			t.Errorf("server held up to %d of our wants, over the window of 512", maxHeld)
		}
		if held != 0 || cancels != n {
			t.Errorf("server holds %d wants after %d cancels; want 0 after %d", held, cancels, n)
		}
	})
}

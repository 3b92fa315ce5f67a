package session

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/peerrouter"
	"github.com/gobitswap/bitswap/wantmanager"
)

// fakeDeps stand in for the WantManager, routers and blockstore around a
// Session: they write down what the Session asks for, with the virtual time
// it asked, and deliver nothing by themselves.
type fakeDeps struct {
	start time.Time
	peers []peer.ID

	mu     sync.Mutex
	log    []string
	wanted map[cid.Cid]int // BlockRouter.Want minus Unwant
	// gate, if set, holds every blockstore Get until it is closed.
	gate chan struct{}
}

func (f *fakeDeps) add(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, fmt.Sprintf("%v ", time.Since(f.start))+fmt.Sprintf(format, args...))
}

func (f *fakeDeps) lines() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func (f *fakeDeps) WantBlocks(_ wantmanager.SessionID, p peer.ID, cs []cid.Cid) {
	f.add("want-block %s %d", string(p), len(cs))
}
func (f *fakeDeps) WantHaves(_ wantmanager.SessionID, p peer.ID, cs []cid.Cid) {
	f.add("want-have %s %d", string(p), len(cs))
}
func (f *fakeDeps) Cancel(_ wantmanager.SessionID, p peer.ID, cs []cid.Cid) {
	f.add("cancel %s %d", string(p), len(cs))
}
func (f *fakeDeps) CancelAll(_ wantmanager.SessionID, cs []cid.Cid) { f.add("cancel-all %d", len(cs)) }
func (f *fakeDeps) Resend(p peer.ID, cs []cid.Cid)                  { f.add("resend %s %d", string(p), len(cs)) }

func (f *fakeDeps) Register(uint64, Sink) {}
func (f *fakeDeps) Unregister(uint64)     {}
func (f *fakeDeps) Want(_ uint64, cs []cid.Cid) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.wanted == nil {
		f.wanted = make(map[cid.Cid]int)
	}
	for _, c := range cs {
		f.wanted[c]++
	}
}
func (f *fakeDeps) Unwant(_ uint64, cs []cid.Cid) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		if f.wanted[c]--; f.wanted[c] <= 0 {
			delete(f.wanted, c)
		}
	}
}

type fakePeerRouter struct{ *fakeDeps }

func (f fakePeerRouter) Attach(s peerrouter.Sink) {
	for _, p := range f.peers {
		s.PeerConnected(p, peerrouter.PeerInfo{Local: true})
	}
}

func (f *fakeDeps) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, ipld.ErrNotFound{Cid: c}
}

func (f *fakeDeps) deps() Deps {
	return Deps{WantManager: f, BlockRouter: f, PeerRouter: fakePeerRouter{f}, Blockstore: f}
}

// A peer that stays silent with wants outstanding times out at its
// deadline, not at the next poll after it. With peers of 400 ms latency
// the timeout is 3 × 400 ms = 1.2 s: both peers get two of the four wants
// at once, neither answers, and at 1.2 s (a Session polling every quarter
// of the 1 s PeerTimeout noticed at 1.25 s) the first is suspended and its
// wants go to the second, which, having no alternative left, is asked
// again at once.
func TestSessionTimeoutFiresAtItsDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeDeps{start: time.Now(), peers: []peer.ID{"a", "b"}}
		d := f.deps()
		d.Latency = func(peer.ID) time.Duration { return 400 * time.Millisecond }
		s := New(t.Context(), 1, d, DefaultConfig(), false)
		defer s.Close()
		if _, err := s.GetBlocks(t.Context(), cids(t, 4)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		got := strings.Join(f.lines(), "\n")
		want := strings.Join([]string{
			"0s want-block a 2",
			"0s want-block b 2",
			"1.2s cancel a 2",
			"1.2s resend b 2",
			"1.2s want-block b 2",
		}, "\n")
		if got != want {
			t.Fatalf("the Session asked:\n%s\nwant:\n%s", got, want)
		}
	})
}

// Nothing wanted, nothing armed: a Session whose request is served from
// nowhere and cancelled leaves no timer behind, and a Session with no wants
// never ticks.
func TestSessionIdleHasNoDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeDeps{start: time.Now(), peers: []peer.ID{"a"}}
		s := New(t.Context(), 1, f.deps(), DefaultConfig(), false)
		defer s.Close()
		ctx, cancel := context.WithCancel(t.Context())
		if _, err := s.GetBlocks(ctx, cids(t, 1)); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		cancel()
		synctest.Wait()
		n := len(f.lines())
		time.Sleep(time.Hour)
		if extra := f.lines()[n:]; len(extra) > 0 {
			t.Fatalf("an idle Session acted: %v", extra)
		}
	})
}

// The blockstore is read off the Session's goroutine. A request cancelled
// while its local lookup is still under way leaves nothing behind: the
// BlockRouter is told the Session no longer wants its CIDs, and no want
// ever goes out for them.
func TestSessionRequestCancelledDuringLocalLookup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeDeps{start: time.Now(), peers: []peer.ID{"a"}, gate: make(chan struct{})}
		s := New(t.Context(), 1, f.deps(), DefaultConfig(), false)
		defer s.Close()
		ctx, cancel := context.WithCancel(t.Context())
		ch, err := s.GetBlocks(ctx, cids(t, 3))
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the lookup holds at the gate; the Session is idle
		f.mu.Lock()
		n := len(f.wanted)
		f.mu.Unlock()
		if n != 3 {
			t.Fatalf("%d CIDs registered with the BlockRouter during the lookup, want 3", n)
		}
		cancel()
		synctest.Wait()
		if _, open := <-ch; open {
			t.Fatal("the cancelled request's channel yielded a block")
		}
		close(f.gate) // the lookup finds nothing and reports
		time.Sleep(time.Minute)
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.wanted) != 0 {
			t.Fatalf("the BlockRouter still holds %d CIDs for the Session", len(f.wanted))
		}
		if len(f.log) != 0 {
			t.Fatalf("the Session asked for blocks nobody wants: %v", f.log)
		}
	})
}

// fakeTagger writes tag calls into the fakeDeps' log.
type fakeTagger struct{ *fakeDeps }

func (f fakeTagger) TagPeer(p peer.ID, tag string, v int) {
	f.add("tag %s %s %d", string(p), tag, v)
}
func (f fakeTagger) UntagPeer(p peer.ID, tag string) { f.add("untag %s %s", string(p), tag) }

// A Session tags the peers that send it blocks or HAVEs (once each), not
// those that only said DONT_HAVE or were only asked, and a block from no
// peer (the application's) tags nobody; it untags a peer when it
// disconnects and the rest when it ends.
func TestSessionTagsItsPeersUntilItEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeDeps{start: time.Now(), peers: []peer.ID{"a", "b", "c"}}
		d := f.deps()
		d.Tagger, d.TagValue = fakeTagger{f}, 5
		s := New(t.Context(), 7, d, DefaultConfig(), false)
		blks := make([]blocks.Block, 4)
		cs := make([]cid.Cid, len(blks))
		for i := range blks {
			blks[i] = blocks.NewBlock(fmt.Appendf(nil, "tagged %d", i))
			cs[i] = blks[i].Cid()
		}
		if _, err := s.GetBlocks(t.Context(), cs); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		k := sink{s}
		k.Presences("a", cs[:2], nil)
		k.Presences("a", cs[2:3], nil)
		k.Presences("c", nil, cs)
		k.ReceiveBlocks("b", blks[:1])
		k.ReceiveBlocks("b", blks[1:2])
		k.ReceiveBlocks("", blks[2:3])
		synctest.Wait()
		k.PeerDisconnected("b")
		synctest.Wait()
		s.Close()
		var tags []string
		for _, l := range f.lines() {
			if _, rest, _ := strings.Cut(l, " "); strings.HasPrefix(rest, "tag ") || strings.HasPrefix(rest, "untag ") {
				tags = append(tags, rest)
			}
		}
		want := []string{
			"tag a bs-ses-7 5",
			"tag b bs-ses-7 5",
			"untag b bs-ses-7",
			"untag a bs-ses-7",
		}
		if strings.Join(tags, "\n") != strings.Join(want, "\n") {
			t.Fatalf("tag calls:\n%s\nwant:\n%s", strings.Join(tags, "\n"), strings.Join(want, "\n"))
		}
	})
}

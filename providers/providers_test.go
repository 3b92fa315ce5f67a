package providers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/gobitswap/bitswap/providers"
)

// Every test runs in a synctest bubble: the router's delays and the
// queries' timeouts pass in virtual time, so each count and instant
// asserted is exact.

// Five Sessions asking for the same CID while its query runs cost one
// lookup; every provider found is handed on once, for that CID.
func TestAsksForOneCIDShareOneQuery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRouter(time.Second)
		cs := cids(1)
		r.set(cs[0], ai(1), ai(2))
		got := &found{cids: cs}
		f := providers.New(r, &dialer{self: self}, got.hand, providers.Config{})
		defer f.Close()

		var outcomes []providers.Outcome
		for range 5 {
			outcomes = append(outcomes, f.Find(t.Context(), cs[0]))
		}
		want := []providers.Outcome{providers.Started, providers.Joined, providers.Joined, providers.Joined, providers.Joined}
		if !slices.Equal(outcomes, want) {
			t.Fatalf("outcomes %v, want %v", outcomes, want)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(r.lookups()); n != 1 {
			t.Errorf("%d lookups for one CID asked 5 times, want 1", n)
		}
		if g, w := got.list(), []string{"p1@0", "p2@0"}; !slices.Equal(g, w) {
			t.Errorf("handed on %v, want %v (each provider once)", g, w)
		}
		st := f.Stat()
		if st.Started != 1 || st.Joined != 4 || st.Connected != 2 || st.Running != 0 {
			t.Errorf("Stat %+v, want 1 started, 4 joined, 2 connected, none running", st)
		}
		// Once the query has ended, a new ask starts a new one.
		if o := f.Find(t.Context(), cs[0]); o != providers.Started {
			t.Errorf("ask after the query ended: %v, want started", o)
		}
	})
}

// With MaxConcurrent 3, five asks for five CIDs run three lookups at
// once; the other two wait and start, in the order asked, as slots free:
// all five are done after two lookup delays.
func TestConcurrentQueriesAreCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = time.Second
		r := newRouter(delay)
		cs := cids(5)
		for i, c := range cs {
			r.set(c, ai(i+1))
		}
		got := &found{cids: cs}
		f := providers.New(r, &dialer{self: self}, got.hand, providers.Config{MaxConcurrent: 3})
		defer f.Close()
		start := time.Now()
		var outcomes []providers.Outcome
		for _, c := range cs {
			outcomes = append(outcomes, f.Find(t.Context(), c))
		}
		want := []providers.Outcome{providers.Started, providers.Started, providers.Started, providers.Queued, providers.Queued}
		if !slices.Equal(outcomes, want) {
			t.Fatalf("outcomes %v, want %v", outcomes, want)
		}
		synctest.Wait()
		if st := f.Stat(); st.Running != 3 || st.Waiting != 2 {
			t.Fatalf("running %d, waiting %d; want 3 and 2", st.Running, st.Waiting)
		}
		if active, _, _ := r.stats(); active != 3 {
			t.Fatalf("%d lookups under way, want 3", active)
		}
		time.Sleep(2 * delay)
		synctest.Wait()
		_, peak, ended := r.stats()
		if peak != 3 {
			t.Errorf("at most %d lookups at once, want 3", peak)
		}
		// The first three asked ran first (in any order: each query's
		// goroutine calls the router), the two waiting after them.
		if l := r.lookups(); len(l) != 5 || !sameSet(l[:3], cs[:3]) || !sameSet(l[3:], cs[3:]) {
			t.Errorf("lookups %v, want %v first", l, cs[:3])
		}
		if last := ended[len(ended)-1].Sub(start); last != 2*delay {
			t.Errorf("last lookup ended after %v, want %v (two rounds)", last, 2*delay)
		}
		if n := len(got.list()); n != 5 {
			t.Errorf("%d providers handed on, want 5", n)
		}
		if st := f.Stat(); st.Started != 5 || st.Queued != 2 || st.Running != 0 || st.Waiting != 0 {
			t.Errorf("Stat %+v", st)
		}
	})
}

// When the queue is full, the oldest waiting query makes room for the new
// one, and is counted.
func TestFullQueueDropsTheOldestWaitingQuery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRouter(time.Second)
		cs := cids(4)
		f := providers.New(r, &dialer{self: self}, nil, providers.Config{MaxConcurrent: 1, MaxQueued: 2})
		defer f.Close()
		for _, c := range cs {
			f.Find(t.Context(), c)
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got, want := r.lookups(), []cid.Cid{cs[0], cs[2], cs[3]}; !slices.Equal(got, want) {
			t.Errorf("looked up %v, want %v (cs[1], the oldest waiting, dropped)", got, want)
		}
		if st := f.Stat(); st.Dropped != 1 || st.Started != 3 {
			t.Errorf("Stat %+v, want 1 dropped, 3 started", st)
		}
	})
}

// A query that content routing does not answer in time ends at its
// timeout, and the query waiting for its slot starts then.
func TestTimeoutEndsAQuery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRouter(time.Minute) // slower than any timeout
		cs := cids(2)
		r.set(cs[0], ai(1))
		got := &found{cids: cs}
		f := providers.New(r, &dialer{self: self}, got.hand, providers.Config{MaxConcurrent: 1, Timeout: 10 * time.Second})
		defer f.Close()
		start := time.Now()
		f.Find(t.Context(), cs[0])
		f.Find(t.Context(), cs[1])
		time.Sleep(25 * time.Second)
		synctest.Wait()
		_, _, ended := r.stats()
		if len(ended) != 2 || ended[0].Sub(start) != 10*time.Second || ended[1].Sub(start) != 20*time.Second {
			t.Fatalf("lookups ended at %v after the start, want 10s and 20s", since(start, ended))
		}
		if g := got.list(); len(g) != 0 {
			t.Errorf("handed on %v from queries that timed out", g)
		}
		if st := f.Stat(); st.TimedOut != 2 || st.Running != 0 {
			t.Errorf("Stat %+v, want 2 timed out, none running", st)
		}
	})
}

func sameSet(a, b []cid.Cid) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	cmp := func(x, y cid.Cid) int { return strings.Compare(x.KeyString(), y.KeyString()) }
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.Equal(a, b)
}

func since(start time.Time, ts []time.Time) []time.Duration {
	var out []time.Duration
	for _, t := range ts {
		out = append(out, t.Sub(start))
	}
	return out
}

// Peers on the ignore list, and this node, are never dialled nor handed
// on, wherever content routing names them.
func TestIgnoredPeersAreNeverDialledNorHandedOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRouter(time.Second)
		cs := cids(1)
		r.set(cs[0], ai(1), peer.AddrInfo{ID: self}, ai(2), ai(3))
		d := &dialer{self: self}
		got := &found{cids: cs}
		f := providers.New(r, d, got.hand, providers.Config{Ignore: []peer.ID{p(1), p(3)}})
		defer f.Close()
		f.Find(t.Context(), cs[0])
		time.Sleep(time.Second)
		synctest.Wait()
		if g := d.dialled(); !slices.Equal(g, []peer.ID{p(2)}) {
			t.Errorf("dialled %v, want only p2", g)
		}
		if g, w := got.list(), []string{"p2@0"}; !slices.Equal(g, w) {
			t.Errorf("handed on %v, want %v", g, w)
		}
		if st := f.Stat(); st.Records != 4 || st.Ignored != 3 {
			t.Errorf("Stat %+v, want 4 records, 3 ignored", st)
		}
	})
}

// A provider whose recorded addresses are stale is looked up with
// FindPeer and dialled again at the addresses found, once.
func TestStaleProviderIsFoundByFindPeerAndConnected(t *testing.T) {
	stale := ma.StringCast("/ip4/10.0.0.1/tcp/4001")
	fresh := ma.StringCast("/ip4/10.0.0.2/tcp/4001")
	tests := []struct {
		name      string
		findPeer  map[peer.ID][]ma.Multiaddr // nil: the router has no FindPeer
		wantFound []string
		wantDials int
		wantStat  providers.Stat
	}{
		{"fresh addresses rescue it", map[peer.ID][]ma.Multiaddr{p(1): {fresh}},
			[]string{"p1@0"}, 2, providers.Stat{FindPeers: 1, Rescued: 1, Connected: 1}},
		{"no retry when FindPeer knows nothing new", map[peer.ID][]ma.Multiaddr{p(1): {stale}},
			nil, 1, providers.Stat{FindPeers: 1, ConnectFailed: 1}},
		{"no retry when FindPeer fails", map[peer.ID][]ma.Multiaddr{},
			nil, 1, providers.Stat{FindPeers: 1, ConnectFailed: 1}},
		{"no FindPeer without peer routing", nil,
			nil, 1, providers.Stat{ConnectFailed: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRouter(time.Second)
				cs := cids(1)
				r.set(cs[0], ai(1, stale))
				d := &dialer{self: self, only: map[peer.ID]ma.Multiaddr{p(1): fresh}}
				got := &found{cids: cs}
				var mu sync.Mutex
				var told []string // what Config.Unreachable heard
				cfg := providers.Config{Unreachable: func(q peer.ID, c cid.Cid, err error) {
					mu.Lock()
					defer mu.Unlock()
					told = append(told, fmt.Sprintf("%v %v %v", q == p(1), c == cs[0], err != nil))
				}}
				var f *providers.Finder
				if tt.findPeer != nil {
					f = providers.New(peerRouter{r, tt.findPeer}, d, got.hand, cfg)
				} else {
					f = providers.New(r, d, got.hand, cfg)
				}
				defer f.Close()
				f.Find(t.Context(), cs[0])
				time.Sleep(time.Second)
				synctest.Wait()
				if g := got.list(); !slices.Equal(g, tt.wantFound) {
					t.Errorf("handed on %v, want %v", g, tt.wantFound)
				}
				if n := len(d.dialled()); n != tt.wantDials {
					t.Errorf("%d dials, want %d", n, tt.wantDials)
				}
				st := f.Stat()
				if st.FindPeers != tt.wantStat.FindPeers || st.Rescued != tt.wantStat.Rescued ||
					st.Connected != tt.wantStat.Connected || st.ConnectFailed != tt.wantStat.ConnectFailed {
					t.Errorf("Stat %+v, want %+v", st, tt.wantStat)
				}
				// Told once for each provider given up on, naming it and
				// its CID, with the dial's error.
				mu.Lock()
				defer mu.Unlock()
				if want := slices.Repeat([]string{"true true true"}, int(tt.wantStat.ConnectFailed)); !slices.Equal(told, want) {
					t.Errorf("Unreachable heard %q, want %q", told, want)
				}
			})
		})
	}
}

// A query hands on at most MaxProviders providers, then stops content
// routing.
func TestAQueryHandsOnAtMostMaxProviders(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRouter(time.Second)
		cs := cids(1)
		var recs []peer.AddrInfo
		for i := range 15 {
			recs = append(recs, ai(i+1))
		}
		r.set(cs[0], recs...)
		got := &found{cids: cs}
		f := providers.New(r, &dialer{self: self}, got.hand, providers.Config{})
		defer f.Close()
		f.Find(t.Context(), cs[0])
		time.Sleep(time.Second)
		synctest.Wait()
		if n := len(got.list()); n != providers.DefaultMaxProviders {
			t.Errorf("%d providers handed on, want %d", n, providers.DefaultMaxProviders)
		}
		if active, _, _ := r.stats(); active != 0 {
			t.Errorf("content routing still asked after enough providers")
		}
	})
}

// A query whose every asker has left is cancelled, running or waiting; one
// that another asker still waits on goes on.
func TestAQueryEndsWhenItsLastAskerLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRouter(time.Minute)
		cs := cids(3)
		f := providers.New(r, &dialer{self: self}, nil, providers.Config{MaxConcurrent: 2, Timeout: -1})
		defer f.Close()
		a, cancelA := context.WithCancel(t.Context())
		b, cancelB := context.WithCancel(t.Context())
		defer cancelB()
		f.Find(a, cs[0])
		f.Find(b, cs[0]) // joins
		f.Find(a, cs[1])
		f.Find(a, cs[2]) // waits
		start := time.Now()
		time.Sleep(time.Second)
		cancelA()
		synctest.Wait()
		st := f.Stat()
		if st.Abandoned != 2 || st.Running != 1 || st.Waiting != 0 {
			t.Errorf("Stat %+v, want 2 abandoned (cs[1] running, cs[2] waiting), cs[0] still running", st)
		}
		_, _, ended := r.stats()
		if len(ended) != 1 || ended[0].Sub(start) != time.Second {
			t.Errorf("lookups ended at %v, want cs[1]'s at 1s", since(start, ended))
		}
		if got, want := r.lookups(), cs[:2]; !sameSet(got, want) {
			t.Errorf("looked up %v, want %v (the waiting query never started)", got, want)
		}
	})
}

// Close cancels every query and waits for their goroutines; asks after it
// are refused, as are asks with an ended context or an undefined CID.
func TestCloseEndsEveryQuery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRouter(time.Hour)
		cs := cids(3)
		f := providers.New(r, &dialer{self: self}, nil, providers.Config{MaxConcurrent: 1, Timeout: -1})
		for _, c := range cs {
			f.Find(t.Context(), c)
		}
		f.Close()
		synctest.Wait()
		if active, _, _ := r.stats(); active != 0 {
			t.Errorf("%d lookups still running after Close", active)
		}
		if o := f.Find(t.Context(), cs[0]); o != providers.Refused {
			t.Errorf("ask after Close: %v", o)
		}
		f.Close() // again: a no-op
		g := providers.New(r, &dialer{self: self}, nil, providers.Config{})
		defer g.Close()
		done, cancel := context.WithCancel(t.Context())
		cancel()
		if o := g.Find(done, cs[0]); o != providers.Refused {
			t.Errorf("ask with an ended context: %v", o)
		}
		if o := g.Find(t.Context(), cid.Undef); o != providers.Refused {
			t.Errorf("ask for an undefined CID: %v", o)
		}
	})
}

// A query reads at most 10 × MaxProviders records: a router that names
// peer after unreachable peer cannot keep it dialling.
func TestAQueryReadsABoundedNumberOfRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRouter(time.Second)
		cs := cids(1)
		d := &dialer{self: self, only: map[peer.ID]ma.Multiaddr{}}
		var recs []peer.AddrInfo
		for i := range 50 {
			recs = append(recs, ai(i+1))
			d.only[p(i+1)] = ma.StringCast("/ip4/10.9.9.9/tcp/1") // never named: unreachable
		}
		r.set(cs[0], recs...)
		f := providers.New(r, d, nil, providers.Config{MaxProviders: 2})
		defer f.Close()
		f.Find(t.Context(), cs[0])
		time.Sleep(time.Second)
		synctest.Wait()
		if st := f.Stat(); st.Records != 20 || st.ConnectFailed != 20 || st.Running != 0 {
			t.Errorf("Stat %+v, want 20 records read and failed, the query ended", st)
		}
	})
}

// Twenty Sessions asking at once, from twenty goroutines, for twenty CIDs
// with MaxConcurrent 4: four lookups run at any moment, the rest wait, and
// all are done after five lookup delays.
func TestConcurrentAsksRespectTheCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = time.Second
		r := newRouter(delay)
		cs := cids(20)
		f := providers.New(r, &dialer{self: self}, nil, providers.Config{MaxConcurrent: 4})
		defer f.Close()
		start := time.Now()
		var wg sync.WaitGroup
		for _, c := range cs {
			wg.Go(func() { f.Find(t.Context(), c) })
		}
		wg.Wait()
		synctest.Wait()
		if st := f.Stat(); st.Running != 4 || st.Waiting != 16 {
			t.Fatalf("running %d, waiting %d; want 4 and 16", st.Running, st.Waiting)
		}
		time.Sleep(5 * delay)
		synctest.Wait()
		_, peak, ended := r.stats()
		if peak != 4 || len(ended) != 20 || ended[19].Sub(start) != 5*delay {
			t.Errorf("peak %d lookups at once, %d ended, the last after %v; want 4, 20, %v",
				peak, len(ended), ended[len(ended)-1].Sub(start), 5*delay)
		}
	})
}

package session

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// These tests drive the Policy step by step with a fake clock: each input,
// then the Actions it must produce.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func cids(t testing.TB, n int) []cid.Cid {
	t.Helper()
	out := make([]cid.Cid, n)
	for i := range out {
		h, err := mh.Sum([]byte(fmt.Sprint("block ", i)), mh.SHA2_256, -1)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = cid.NewCidV1(cid.Raw, h)
	}
	return out
}

func peers(n int) []peer.ID {
	out := make([]peer.ID, n)
	for i := range out {
		out[i] = peer.ID(fmt.Sprintf("peer-%03d", i))
	}
	return out
}

func withPeers(ps []peer.ID) *Policy {
	p := NewPolicy(DefaultConfig())
	for _, id := range ps {
		p.PeerConnected(t0, id, PeerInfo{Latency: 50 * time.Millisecond, Local: true})
	}
	return p
}

func count(m map[peer.ID][]cid.Cid) int {
	n := 0
	for _, v := range m {
		n += len(v)
	}
	return n
}

func TestPolicyOnePeerGetsEveryWantAtOnce(t *testing.T) {
	ps := peers(1)
	p := withPeers(ps)
	a := p.Add(t0, cids(t, 1000))
	if n := len(a.WantBlocks[ps[0]]); n != 1000 {
		t.Fatalf("%d want-blocks to the only peer, want all 1000 in the first step", n)
	}
	if len(a.WantHaves) != 0 {
		t.Fatal("want-haves sent although the want-blocks reach every peer")
	}
}

func TestPolicySpreadsFirstWaveEvenlyWithoutWantHaves(t *testing.T) {
	ps := peers(10)
	p := withPeers(ps)
	a := p.Add(t0, cids(t, 1000))
	for _, id := range ps {
		if n := len(a.WantBlocks[id]); n != 100 {
			t.Fatalf("peer %s asked for %d blocks, want 100 each", id, n)
		}
	}
	if count(a.WantBlocks) != 1000 || len(a.WantHaves) != 0 {
		t.Fatalf("%d want-blocks and %d want-haves; each CID must be asked of exactly one peer", count(a.WantBlocks), count(a.WantHaves))
	}
}

func TestPolicySingleWantAmongManyPeersAsksTheRestWantHave(t *testing.T) {
	ps := peers(100)
	p := withPeers(ps)
	c := cids(t, 1)
	a := p.Add(t0, c)
	// At most BroadcastMaxPeers peers asked, the want-block's included.
	if count(a.WantBlocks) != 1 || count(a.WantHaves) != DefaultBroadcastMaxPeers-1 {
		t.Fatalf("%d want-blocks, %d want-haves; want 1 and %d", count(a.WantBlocks), count(a.WantHaves), DefaultBroadcastMaxPeers-1)
	}
	asked := p.Assigned(c[0])
	holder := ps[42]
	if asked == holder {
		holder = ps[43]
	}
	// Another peer says HAVE before the asked one answers: the want moves
	// to it, and the want-block is cancelled where it was (servers hold
	// it until then).
	a = p.Presences(t0.Add(50*time.Millisecond), holder, c, nil)
	if got := a.WantBlocks[holder]; len(got) != 1 {
		t.Fatalf("after HAVE from %s: want-blocks %v", holder, a.WantBlocks)
	}
	if got := a.Cancels[asked]; len(got) != 1 {
		t.Fatalf("the want-block was not cancelled at %s", asked)
	}
}

func TestPolicyUsefulPeersAreAskedFirst(t *testing.T) {
	ps := peers(100)
	p := withPeers(ps)
	first := cids(t, 1)
	p.Add(t0, first)
	server := p.Assigned(first[0])
	p.BlocksReceived(t0.Add(60*time.Millisecond), server, first)

	more := cids(t, 51)[1:]
	a := p.Add(t0.Add(61*time.Millisecond), more)
	if n := len(a.WantBlocks[server]); n != 50 || count(a.WantBlocks) != 50 || len(a.WantHaves) != 0 {
		t.Fatalf("after %s served us: want-blocks %d to it, %d in all, %d want-haves; want all 50 to it and nothing else",
			server, n, count(a.WantBlocks), count(a.WantHaves))
	}
}

func TestPolicyBlockReceivedCancelsEverywhere(t *testing.T) {
	ps := peers(2)
	p := withPeers(ps)
	c := cids(t, 1)
	p.Add(t0, c)
	a := p.BlocksReceived(t0.Add(time.Millisecond), p.Assigned(c[0]), c)
	if len(a.Received) != 1 || len(a.CancelAll) != 1 || p.Wants() != 0 {
		t.Fatalf("received %v, cancel-all %v, %d wants left", a.Received, a.CancelAll, p.Wants())
	}
}

func TestPolicySilentPeerIsBypassedAfterItsTimeout(t *testing.T) {
	ps := peers(2)
	p := withPeers(ps)
	c := cids(t, 10)
	p.Add(t0, c)
	// ps[1] answers everything it was asked; ps[0] stays silent.
	var silent []cid.Cid
	for _, x := range c {
		if p.Assigned(x) == ps[1] {
			p.BlocksReceived(t0.Add(60*time.Millisecond), ps[1], []cid.Cid{x})
		} else {
			silent = append(silent, x)
		}
	}
	timeout := p.timeout(p.peers[ps[0]])
	if a := p.Tick(t0.Add(timeout - time.Millisecond)); count(a.WantBlocks) != 0 {
		t.Fatal("wants moved before the timeout")
	}
	a := p.Tick(t0.Add(timeout + time.Millisecond))
	if len(a.WantBlocks[ps[1]]) != len(silent) || len(a.Cancels[ps[0]]) != len(silent) {
		t.Fatalf("after %v: moved %d of %d wants to %s, cancelled %d at the silent peer",
			timeout, len(a.WantBlocks[ps[1]]), len(silent), ps[1], len(a.Cancels[ps[0]]))
	}
	if timeout != DefaultConfig().PeerTimeout {
		t.Fatalf("timeout %v for a 50 ms peer, want the 1 s floor", timeout)
	}
}

func TestPolicySearchesProvidersAtOnceWhenEveryPeerDeclined(t *testing.T) {
	ps := peers(3)
	p := withPeers(ps)
	c := cids(t, 1)
	p.Add(t0, c)
	now := t0.Add(10 * time.Millisecond)
	var a Actions
	for i, id := range ps {
		a = p.Presences(now, id, nil, c)
		if i < len(ps)-1 && len(a.FindProvs) != 0 {
			t.Fatalf("searched after %d of %d peers declined", i+1, len(ps))
		}
	}
	if len(a.FindProvs) != 1 || !a.FindProvs[0].Equals(c[0]) {
		t.Fatalf("FindProvs = %v after every connected peer said DONT_HAVE", a.FindProvs)
	}
	prov := peer.ID("provider")
	p.ProvidersFound(now.Add(time.Millisecond), c[0], []peer.ID{prov})
	// The want waits 10 ms for other providers of the search, then goes.
	a = p.Tick(now.Add(11 * time.Millisecond))
	if len(a.WantBlocks[prov]) != 1 {
		t.Fatalf("the provider was not asked for the block: %v", a.WantBlocks)
	}
}

func TestPolicySearchesProvidersAfterDelayWithoutAnyHave(t *testing.T) {
	p := withPeers(peers(2))
	p.Add(t0, cids(t, 1))
	if a := p.Tick(t0.Add(DefaultConfig().ProviderSearchDelay - time.Millisecond)); len(a.FindProvs) != 0 {
		t.Fatal("searched before the delay although peers may still answer")
	}
	if a := p.Tick(t0.Add(DefaultConfig().ProviderSearchDelay)); len(a.FindProvs) != 1 {
		t.Fatal("no search after the delay")
	}
	if a := p.Tick(t0.Add(DefaultConfig().ProviderSearchDelay + time.Second)); len(a.FindProvs) != 0 {
		t.Fatal("searched again before the search interval")
	}
}

func TestPolicyRebroadcastsStuckWants(t *testing.T) {
	// Three peers: a is asked for the block and declines, b declines the
	// want-have, c never answers. At the rebroadcast only c is asked
	// again: a refusal stands, silence is forgiven.
	ps := peers(3)
	p := withPeers(ps)
	c := cids(t, 1)
	a := p.Add(t0, c)
	if count(a.WantBlocks) != 1 || count(a.WantHaves) != 2 {
		t.Fatalf("first step: %d want-blocks, %d want-haves; want 1 and 2", count(a.WantBlocks), count(a.WantHaves))
	}
	asked := p.Assigned(c[0])
	var others []peer.ID
	for _, id := range ps {
		if id != asked {
			others = append(others, id)
		}
	}
	p.Presences(t0.Add(time.Millisecond), asked, nil, c)
	p.Presences(t0.Add(time.Millisecond), others[0], nil, c)
	cfg := DefaultConfig()
	if a := p.Tick(t0.Add(cfg.RebroadcastInterval - time.Millisecond)); count(a.WantHaves)+count(a.WantBlocks) != 0 {
		t.Fatal("rebroadcast before the interval")
	}
	at := t0.Add(cfg.RebroadcastInterval)
	a = p.Tick(at)
	if count(a.WantHaves) != 1 || len(a.WantHaves[others[1]]) != 1 || count(a.WantBlocks) != 0 {
		t.Fatalf("rebroadcast: want-haves %v, %d want-blocks; want only the silent %s asked want-have", a.WantHaves, count(a.WantBlocks), others[1])
	}
	a = p.Presences(at.Add(50*time.Millisecond), others[1], c, nil)
	if len(a.WantBlocks[others[1]]) != 1 {
		t.Fatalf("after a HAVE the want was not asked of that peer: %v", a.WantBlocks)
	}
}

func TestPolicyDisconnectMovesWants(t *testing.T) {
	ps := peers(2)
	p := withPeers(ps)
	c := cids(t, 20)
	p.Add(t0, c)
	a := p.PeerDisconnected(t0.Add(time.Millisecond), ps[0])
	if n := len(a.WantBlocks[ps[1]]); n != 10 {
		t.Fatalf("%d wants moved to the remaining peer, want 10", n)
	}
}

func TestPolicyPrefersFasterPeer(t *testing.T) {
	ps := peers(2)
	p := NewPolicy(DefaultConfig())
	p.PeerConnected(t0, ps[0], PeerInfo{Latency: 10 * time.Millisecond, Local: true})
	p.PeerConnected(t0, ps[1], PeerInfo{Latency: 500 * time.Millisecond, Local: true})
	c := cids(t, 1)
	if a := p.Add(t0, c); len(a.WantBlocks[ps[0]]) != 1 {
		t.Fatalf("want went to %v, want the 10 ms peer", a.WantBlocks)
	}
}

// A server can lose our wants or its blocks (seen with boxo under libp2p's
// resource manager): the only peer is asked again at once the first time it
// falls silent; after that it is waited for, twice as long each time (a
// popular server is slow for each client, and cancelling would only put our
// wants at the back of its queue), and asked again once a rebroadcast
// interval has passed.
func TestPolicyOnlyPeerIsRetried(t *testing.T) {
	ps := peers(1)
	p := withPeers(ps)
	c := cids(t, 3)
	p.Add(t0, c)
	timeout := p.timeout(p.peers[ps[0]])
	at := t0.Add(timeout + time.Millisecond)
	a := p.Tick(at)
	if len(a.Resends[ps[0]]) != 3 || len(a.Cancels) != 0 {
		t.Fatalf("first timeout: %d resends, %d cancels; want the 3 wants sent again, no cancel", len(a.Resends[ps[0]]), len(a.Cancels))
	}
	// Silent again: not suspended (no other peer could stand in), nothing
	// cancelled or sent; waited for twice as long, then twice as long
	// again, and asked again only after the longest wait.
	at2 := at.Add(timeout + time.Millisecond)
	if a := p.Tick(at2); count(a.Cancels) != 0 || count(a.Resends) != 0 || count(a.WantBlocks) != 0 {
		t.Fatalf("second timeout: %d cancels, %d resends, %d want-blocks; want none", count(a.Cancels), count(a.Resends), count(a.WantBlocks))
	}
	pi := p.peers[ps[0]]
	if pi.suspended || pi.patience != 2*timeout {
		t.Fatalf("suspended %v, patience %v; want not suspended, %v", pi.suspended, pi.patience, 2*timeout)
	}
	at3 := at2
	resent := false
	for range 10 {
		at3 = at3.Add(p.timeout(pi) + time.Millisecond)
		a := p.Tick(at3)
		if count(a.Cancels) != 0 {
			t.Fatal("a lone peer's wants were cancelled")
		}
		if len(a.Resends[ps[0]]) == 3 {
			resent = true
			break
		}
	}
	if !resent || at3.Sub(at) < p.cfg.RebroadcastInterval {
		t.Fatalf("resent %v after %v; want the wants sent again once a rebroadcast interval (%v) had passed", resent, at3.Sub(at), p.cfg.RebroadcastInterval)
	}
	// An answer ends it all.
	p.BlocksReceived(at3.Add(time.Second), ps[0], c[:1])
	if pi.suspended || pi.penalty != 0 || pi.patience != 0 {
		t.Fatal("an answer did not end the wait")
	}
}

// Found by FuzzPolicy: Tick walked the wants and the peers in map order, so
// the lone peer's resends came out in any order, and which of two peers
// timing out together was retried rather than suspended varied from run to
// run. Actions' lists keep the order in which CIDs were first wanted.
func TestPolicyTickIsDeterministic(t *testing.T) {
	c := cids(t, 8)
	for range 20 {
		p := withPeers(peers(1))
		p.Add(t0, c)
		a := p.Tick(t0.Add(p.timeout(p.peers[peers(1)[0]]) + time.Millisecond))
		if fmt.Sprint(a.Resends[peers(1)[0]]) != fmt.Sprint(c) {
			t.Fatalf("resends %v, want them in the order wanted %v", a.Resends, c)
		}
	}
	var first string
	for i := range 20 {
		ps := peers(2)
		p := withPeers(ps)
		p.Add(t0, c)
		a := p.Tick(t0.Add(p.timeout(p.peers[ps[0]]) + time.Millisecond))
		got := render(a, nil) + fmt.Sprint(a.Cancels, a.Resends, a.WantBlocks)
		if i == 0 {
			first = got
		} else if got != first {
			t.Fatalf("two peers timing out together: Actions differ between runs:\n%s\n%s", first, got)
		}
	}
}

// Found by FuzzPolicy: the queue was compacted only on Tick, and a Session
// whose wants all end between two ticks stops its timer, so a long-lived
// Session fetching one block at a time kept every want it ever had.
func TestPolicyQueueShrinksWithoutTicks(t *testing.T) {
	ps := peers(1)
	p := withPeers(ps)
	for i, c := range cids(t, 1000) {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		p.Add(at, []cid.Cid{c})
		p.BlocksReceived(at, ps[0], []cid.Cid{c})
	}
	if len(p.queue) != 0 {
		t.Fatalf("queue holds %d entries with no want left", len(p.queue))
	}
}

// Seen while deriving FuzzPolicy's invariants (its corpus catches it): a
// provider search could go to a CID no longer wanted (still in the lazily
// compacted queue), spending the search interval on it.
func TestPolicySearchesOnlyWantedCids(t *testing.T) {
	ps := peers(2)
	p := withPeers(ps)
	c := cids(t, 3)
	p.Add(t0, c)
	p.Remove(t0, c[:1])
	a := p.Presences(t0.Add(DefaultConfig().ProviderSearchDelay), p.Assigned(c[1]), nil, c[1:2])
	if len(a.FindProvs) != 1 || !a.FindProvs[0].Equals(c[1]) {
		t.Fatalf("searched for %v, want the oldest wanted CID %s", a.FindProvs, c[1])
	}
}

// Seen while deriving FuzzPolicy's invariants (it finds it in seconds when
// the fix is undone): a want kept the DONT_HAVEs of peers that had left, so
// its state grew with peer churn, and a peer that came back (its server
// state, our wantlist, gone) was not asked again until the next rebroadcast.
func TestPolicyForgetsDontHavesOfDepartedPeers(t *testing.T) {
	ps := peers(1)
	p := withPeers(ps)
	c := cids(t, 1)
	p.Add(t0, c)
	p.Presences(t0.Add(50*time.Millisecond), ps[0], nil, c)
	p.PeerDisconnected(t0.Add(60*time.Millisecond), ps[0])
	if n := len(p.wants[c[0]].dontHaves); n != 0 {
		t.Fatalf("want holds %d DONT_HAVEs after the peer left", n)
	}
	a := p.PeerConnected(t0.Add(70*time.Millisecond), ps[0], PeerInfo{Latency: 50 * time.Millisecond, Local: true})
	if len(a.WantBlocks[ps[0]]) != 1 {
		t.Fatalf("the returning peer was not asked: %v", a.WantBlocks)
	}
}

// The zero Config is the defaults, field by field: a zero or negative
// knob takes its default, any other is kept.
func TestZeroConfigIsTheDefaults(t *testing.T) {
	if got := NewPolicy(Config{}).cfg; !reflect.DeepEqual(got, DefaultConfig()) {
		t.Fatalf("zero Config became %+v, want the defaults %+v", got, DefaultConfig())
	}
	c := Config{PeerTimeout: 3 * time.Second, RebroadcastInterval: -1}
	got := NewPolicy(c).cfg
	want := DefaultConfig()
	want.PeerTimeout = 3 * time.Second
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Config %+v became %+v, want %+v", c, got, want)
	}
}

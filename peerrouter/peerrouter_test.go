package peerrouter_test

import (
	"slices"
	"sync"
	"testing"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/peerrouter"
	"github.com/gobitswap/bitswap/testutil"
)

// sink is a fake Session: it records every call in order.
type sink struct {
	mu        sync.Mutex
	events    []string // "+p" for connected, "-p" for disconnected
	presences []presence
	providers []string // "p@cid"
}

func (s *sink) ProviderFound(p peer.ID, c cid.Cid) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.providers = append(s.providers, name(p)+"@"+c.String())
}

func (s *sink) gotProviders() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.providers)
}

type presence struct {
	from             peer.ID
	haves, dontHaves []cid.Cid
}

func (s *sink) PeerConnected(p peer.ID, _ peerrouter.PeerInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, "+"+name(p))
}

func (s *sink) PeerDisconnected(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, "-"+name(p))
}

func (s *sink) Presences(from peer.ID, haves, dontHaves []cid.Cid) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.presences = append(s.presences, presence{from, slices.Clone(haves), slices.Clone(dontHaves)})
}

func (s *sink) gotEvents() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.events)
}

func (s *sink) gotPresences() []presence {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.presences)
}

// Test peers, named for readable event logs.
var peers = map[string]peer.ID{
	"p1": testutil.PeerID(1),
	"p2": testutil.PeerID(2),
	"p3": testutil.PeerID(3),
}

func name(p peer.ID) string {
	for n, id := range peers {
		if id == p {
			return n
		}
	}
	return p.String()
}

func names(ps []peer.ID) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = name(p)
	}
	slices.Sort(out)
	return out
}

// apply runs events such as "+p1" (connected) and "-p1" (disconnected).
func apply(t *testing.T, r *peerrouter.PeerRouter, events []string) {
	t.Helper()
	for _, e := range events {
		p, ok := peers[e[1:]]
		if !ok {
			t.Fatalf("unknown peer in event %q", e)
		}
		switch e[0] {
		case '+':
			r.PeerConnected(p, false, false)
		case '-':
			r.PeerDisconnected(p)
		default:
			t.Fatalf("bad event %q", e)
		}
	}
}

func TestAttachTellsOfThePeersConnectedAtThatMoment(t *testing.T) {
	tests := []struct {
		name   string
		before []string
		want   []string
	}{
		{"no peers", nil, nil},
		{"connected peers", []string{"+p1", "+p2"}, []string{"+p1", "+p2"}},
		{"a disconnected peer is not told of", []string{"+p1", "+p2", "-p1"}, []string{"+p2"}},
		{"a reconnected peer is told of once", []string{"+p1", "-p1", "+p1", "+p1"}, []string{"+p1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := newIndex()
			r := peerrouter.New(idx)
			apply(t, r, tt.before)
			s := &sink{}
			idx.start(r, 1, s)
			if got := s.gotEvents(); !slices.Equal(got, tt.want) {
				t.Errorf("attached sink heard %v, want %v (the peers connected now, not the history)", got, tt.want)
			}
		})
	}
}

func TestConnectionChangesReachEveryRegisteredSinkOnce(t *testing.T) {
	tests := []struct {
		name   string
		events []string
		want   []string
	}{
		{"connect", []string{"+p1"}, []string{"+p1"}},
		{"connect then disconnect", []string{"+p1", "-p1"}, []string{"+p1", "-p1"}},
		{"repeated connect is not re-announced", []string{"+p1", "+p1", "+p1"}, []string{"+p1"}},
		{"repeated disconnect is not re-announced", []string{"+p1", "-p1", "-p1"}, []string{"+p1", "-p1"}},
		{"disconnect of an unknown peer is ignored", []string{"-p2"}, nil},
		{"reconnect is announced again", []string{"+p1", "-p1", "+p1"}, []string{"+p1", "-p1", "+p1"}},
		{"several peers in order", []string{"+p1", "+p2", "-p1", "+p3", "-p2"}, []string{"+p1", "+p2", "-p1", "+p3", "-p2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := newIndex()
			r := peerrouter.New(idx)
			sinks := []*sink{{}, {}, {}}
			for i, s := range sinks {
				idx.start(r, uint64(i), s)
			}
			apply(t, r, tt.events)
			for i, s := range sinks {
				if got := s.gotEvents(); !slices.Equal(got, tt.want) {
					t.Errorf("sink %d got %v, want %v", i, got, tt.want)
				}
			}
		})
	}
}

func TestSinkRegisteredLaterGetsOnlyLaterChanges(t *testing.T) {
	idx := newIndex()
	r := peerrouter.New(idx)
	early := &sink{}
	idx.start(r, 1, early)
	apply(t, r, []string{"+p1", "+p2"})
	late := &sink{}
	idx.start(r, 2, late)
	apply(t, r, []string{"-p1", "+p3"})

	if got, want := early.gotEvents(), []string{"+p1", "+p2", "-p1", "+p3"}; !slices.Equal(got, want) {
		t.Errorf("early sink got %v, want %v", got, want)
	}
	if got, want := late.gotEvents(), []string{"+p1", "+p2", "-p1", "+p3"}; !slices.Equal(got, want) {
		t.Errorf("late sink got %v, want %v", got, want)
	}
}

func TestUnregisteredSinkGetsNoConnectionChanges(t *testing.T) {
	idx := newIndex()
	r := peerrouter.New(idx)
	gone, stays := &sink{}, &sink{}
	idx.start(r, 1, gone)
	idx.start(r, 2, stays)
	apply(t, r, []string{"+p1"})
	idx.Unregister(1)
	apply(t, r, []string{"-p1", "+p2"})

	if got, want := gone.gotEvents(), []string{"+p1"}; !slices.Equal(got, want) {
		t.Errorf("unregistered sink got %v, want only %v from before", got, want)
	}
	if got, want := stays.gotEvents(), []string{"+p1", "-p1", "+p2"}; !slices.Equal(got, want) {
		t.Errorf("registered sink got %v, want %v", got, want)
	}
}

func TestConnectedPeersReflectsConnectionChanges(t *testing.T) {
	tests := []struct {
		name   string
		events []string
		want   []string
	}{
		{"none", nil, []string{}},
		{"connected", []string{"+p1", "+p2"}, []string{"p1", "p2"}},
		{"disconnected", []string{"+p1", "+p2", "-p2"}, []string{"p1"}},
		{"all gone", []string{"+p1", "-p1"}, []string{}},
		{"repeats", []string{"+p1", "+p1", "-p2", "+p3"}, []string{"p1", "p3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := newIndex()
			r := peerrouter.New(idx)
			apply(t, r, tt.events)
			if got := names(r.ConnectedPeers()); !slices.Equal(got, tt.want) {
				t.Errorf("ConnectedPeers = %v, want %v", got, tt.want)
			}
		})
	}
}

// testCIDs returns n distinct CIDv1 raw CIDs.
func testCIDs(seed int64, n int) []cid.Cid {
	out := make([]cid.Cid, n)
	for i, b := range testutil.RandomBlocks(seed, n, 16) {
		out[i] = b.Cid()
	}
	return out
}

func v0(c cid.Cid) cid.Cid { return cid.NewCidV0(c.Hash()) }

func cidStrings(cs []cid.Cid) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.String()
	}
	slices.Sort(out)
	return out
}

func TestPresencesGoOnlyToSinksInterestedInThatCID(t *testing.T) {
	c := testCIDs(1, 4)
	from := peers["p1"]
	tests := []struct {
		name             string
		interest         map[uint64][]cid.Cid
		haves, dontHaves []cid.Cid
		// want per sink: haves and dontHaves it receives; absent or
		// nil means no call at all.
		want map[uint64][2][]cid.Cid
	}{
		{
			name:     "haves and dontHaves are split per sink",
			interest: map[uint64][]cid.Cid{1: {c[0], c[1]}},
			haves:    []cid.Cid{c[0]}, dontHaves: []cid.Cid{c[1]},
			want: map[uint64][2][]cid.Cid{1: {{c[0]}, {c[1]}}},
		},
		{
			name:     "each sink gets only its CIDs",
			interest: map[uint64][]cid.Cid{1: {c[0]}, 2: {c[1]}, 3: {c[3]}},
			haves:    []cid.Cid{c[0], c[1]}, dontHaves: []cid.Cid{c[2]},
			want: map[uint64][2][]cid.Cid{1: {{c[0]}, nil}, 2: {{c[1]}, nil}},
		},
		{
			name:     "a CID wanted by two sinks goes to both",
			interest: map[uint64][]cid.Cid{1: {c[0]}, 2: {c[0], c[1]}},
			haves:    nil, dontHaves: []cid.Cid{c[0], c[1]},
			want: map[uint64][2][]cid.Cid{1: {nil, {c[0]}}, 2: {nil, {c[0], c[1]}}},
		},
		{
			name:     "CIDv0 interest gets a CIDv1 presence (same multihash)",
			interest: map[uint64][]cid.Cid{1: {v0(c[0])}},
			haves:    []cid.Cid{c[0]},
			want:     map[uint64][2][]cid.Cid{1: {{c[0]}, nil}},
		},
		{
			name:      "CIDv1 interest gets a CIDv0 presence (same multihash)",
			interest:  map[uint64][]cid.Cid{1: {c[0]}},
			dontHaves: []cid.Cid{v0(c[0])},
			want:      map[uint64][2][]cid.Cid{1: {nil, {v0(c[0])}}},
		},
		{
			name:     "nobody interested: no calls",
			interest: map[uint64][]cid.Cid{1: {c[3]}},
			haves:    []cid.Cid{c[0]}, dontHaves: []cid.Cid{c[1]},
		},
		{
			name:     "empty presences: no calls",
			interest: map[uint64][]cid.Cid{1: {c[0]}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idx := newIndex()
			r := peerrouter.New(idx)
			sinks := map[uint64]*sink{}
			for id, cs := range tt.interest {
				sinks[id] = &sink{}
				idx.start(r, id, sinks[id])
				idx.Interest(id, cs)
			}
			r.ReceivePresences(from, tt.haves, tt.dontHaves)
			for id, s := range sinks {
				got := s.gotPresences()
				want, ok := tt.want[id]
				if !ok {
					if len(got) != 0 {
						t.Errorf("sink %d got %d calls, want none", id, len(got))
					}
					continue
				}
				if len(got) != 1 {
					t.Errorf("sink %d got %d calls, want 1", id, len(got))
					continue
				}
				if got[0].from != from {
					t.Errorf("sink %d: presence from %s, want %s", id, got[0].from, from)
				}
				if g, w := cidStrings(got[0].haves), cidStrings(want[0]); !slices.Equal(g, w) {
					t.Errorf("sink %d haves = %v, want %v", id, g, w)
				}
				if g, w := cidStrings(got[0].dontHaves), cidStrings(want[1]); !slices.Equal(g, w) {
					t.Errorf("sink %d dontHaves = %v, want %v", id, g, w)
				}
			}
		})
	}
}

func TestUninterestStopsPresences(t *testing.T) {
	c := testCIDs(2, 2)
	from := peers["p1"]
	idx := newIndex()
	r := peerrouter.New(idx)
	a, b := &sink{}, &sink{}
	idx.start(r, 1, a)
	idx.start(r, 2, b)
	idx.Interest(1, c)
	idx.Interest(2, c[:1])

	idx.Uninterest(1, c[:1])
	idx.Uninterest(1, c[:1]) // twice is harmless
	r.ReceivePresences(from, c, nil)

	if got := a.gotPresences(); len(got) != 1 || !slices.Equal(cidStrings(got[0].haves), cidStrings(c[1:])) {
		t.Errorf("sink 1 got %+v, want one call with haves [%s]", got, c[1])
	}
	if got := b.gotPresences(); len(got) != 1 || !slices.Equal(cidStrings(got[0].haves), cidStrings(c[:1])) {
		t.Errorf("sink 2 got %+v, want one call with haves [%s] (another sink's Uninterest must not affect it)", got, c[0])
	}

	// Uninterest by CIDv0 withdraws a CIDv1 interest: both name one multihash.
	idx.Uninterest(1, []cid.Cid{v0(c[1])})
	r.ReceivePresences(from, c[1:], nil)
	if got := a.gotPresences(); len(got) != 1 {
		t.Errorf("sink 1 got %d calls after withdrawing all interest, want still 1", len(got))
	}
}

func TestUnregisteredSinkGetsNoPresences(t *testing.T) {
	c := testCIDs(3, 1)
	idx := newIndex()
	r := peerrouter.New(idx)
	gone, stays := &sink{}, &sink{}
	idx.start(r, 1, gone)
	idx.start(r, 2, stays)
	idx.Interest(1, c)
	idx.Interest(2, c)
	idx.Unregister(1) // without Uninterest

	r.ReceivePresences(peers["p1"], c, nil)

	if got := gone.gotPresences(); len(got) != 0 {
		t.Errorf("unregistered sink got %+v", got)
	}
	if got := stays.gotPresences(); len(got) != 1 {
		t.Errorf("registered sink got %d calls, want 1", len(got))
	}
}

func TestConcurrentUse(t *testing.T) {
	const workers = 8
	const rounds = 100
	idx := newIndex()
	r := peerrouter.New(idx)
	c := testCIDs(4, 16)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			id := uint64(w)
			for n := range rounds {
				idx.start(r, id, &sink{})
				mine := c[(w+n)%len(c) : (w+n)%len(c)+1]
				idx.Interest(id, mine)
				r.ReceivePresences(testutil.PeerID(w), c[:4], c[4:8])
				r.ConnectedPeers()
				idx.Uninterest(id, mine)
				if n%5 == 0 {
					idx.Unregister(id)
				}
			}
		})
		// Connection events for one peer come one at a time (the network
		// promises it), so each worker owns one peer.
		wg.Go(func() {
			p := testutil.PeerID(100 + w)
			for range rounds {
				r.PeerConnected(p, false, false)
				r.PeerConnected(p, false, false)
				r.PeerDisconnected(p)
			}
		})
	}
	// A sink started midway hears, for each peer, what happened after:
	// connections and disconnections alternating, and ending disconnected.
	// Two things are allowed, no-ops to a Session: events between its
	// registration and Attach reach it, and Attach then repeats a
	// connection it already heard of (one "++"); and its first event may
	// be a disconnection of a peer connected before it registered.
	s := &sink{}
	idx.start(r, 1000, s)
	wg.Wait()

	if ps := r.ConnectedPeers(); len(ps) != 0 {
		t.Errorf("ConnectedPeers = %v after every peer disconnected", names(ps))
	}
	heard := map[string][]byte{}
	for _, e := range s.gotEvents() {
		heard[e[1:]] = append(heard[e[1:]], e[0])
	}
	for p, evs := range heard {
		if evs[0] == '-' {
			evs = evs[1:]
		}
		repeats := 0
		for i := 1; i < len(evs); i++ {
			if evs[i] != evs[i-1] {
				continue
			}
			if repeats++; evs[i] == '-' || repeats > 1 {
				t.Fatalf("sink heard %s: %q", p, evs)
			}
		}
		if len(evs) > 0 && evs[len(evs)-1] != '-' {
			t.Errorf("sink still thinks %s is connected", p)
		}
	}
}

// A provider found by content routing reaches every Session that wants its
// CID, whichever of them asked for the search, under the CID found, and
// no other Session.
func TestProviderFoundGoesToEverySinkWantingTheCID(t *testing.T) {
	c := testCIDs(4, 2)
	idx := newIndex()
	r := peerrouter.New(idx)
	sinks := []*sink{{}, {}, {}, {}}
	for i, s := range sinks {
		idx.start(r, uint64(i), s)
	}
	idx.Interest(0, c[:1])
	idx.Interest(1, c)
	idx.Interest(2, []cid.Cid{v0(c[0])}) // the same multihash
	idx.Interest(3, c[1:])

	r.ProviderFound(peers["p2"], c[0])
	want := []string{"p2@" + c[0].String()}
	for i, s := range sinks[:3] {
		if got := s.gotProviders(); !slices.Equal(got, want) {
			t.Errorf("sink %d heard %v, want %v", i, got, want)
		}
	}
	if got := sinks[3].gotProviders(); len(got) != 0 {
		t.Errorf("sink 3, which does not want %s, heard %v", c[0], got)
	}
}

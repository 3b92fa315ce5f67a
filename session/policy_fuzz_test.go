package session

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// FuzzPolicy drives a Policy with random sequences of inputs over a small
// universe (8 peers, 32 CIDs, so that events collide) and checks, after every
// step, invariants derived from policy.go against a model of what the
// Session has been told to do:
//
//   - no panic;
//   - the Policy wants exactly the CIDs added and neither removed nor
//     received, and knows exactly the peers connected, or heard from (a
//     presence), or named as providers, and not disconnected since;
//   - nothing is asked of (want-block, want-have, resend) or cancelled at
//     a peer the Policy does not know, and nothing is asked for a CID that
//     is not wanted (a received or removed CID is never asked again);
//   - a received or removed CID is cancelled everywhere (CancelAll), at
//     once, and Received lists exactly the wanted CIDs among those that
//     arrived;
//   - each wanted CID is outstanding as want-block at exactly the peer it
//     is assigned to, or at none while it is pending; cancels and resends
//     name only outstanding want-blocks; a want-block is never repeated to
//     a peer that has it outstanding, and no want-have goes to the peer
//     asked for the block;
//   - per-peer inflight counts equal the wants assigned to the peer, the
//     pending heap holds exactly the unassigned wants, and the per-want
//     peer sets name only known peers (so they shrink when peers leave);
//   - the seq-ordered queue holds every live want once and at most twice as
//     many entries as there are wants (after a Tick, exactly the wants);
//   - want-block, want-have and resend lists are in the order CIDs were
//     first wanted; at most one provider search per step, and none within
//     ProviderSearchInterval of the previous one;
//   - the same inputs produce the same Actions (the run is repeated);
//   - no want is stuck: after the inputs, with only the clock running
//     (Ticks at the Session's interval), every wanted CID is asked of some
//     peer (want-block, want-have or resend) if any peer is known and not
//     every known peer has said DONT_HAVE for it (a refusal stands until
//     something changes), and content routing is asked otherwise.
//
// The Policy has no per-peer limit of its own (the WantManager's window
// bounds outstanding wants per peer), so there is no cap to check here.
//
// Gaps, by design or left open (reported, not asserted):
//
//   - "Known" includes peers heard from by a presence or named as providers:
//     the Policy adds them (events can race a connect). A presence or
//     provider event handled after the peer's disconnect therefore brings
//     it back for good: it is asked (the WantManager holds wants for a peer
//     that is not connected), counts as an alternative to a lone silent
//     peer and keeps allDeclined from starting an early provider search,
//     until a disconnect that never comes.
//
//   - A rebroadcast's want-have and the want-block it unblocks may go to one
//     peer in one step (see check); harmless with the WantManager.
//
//   - With no peer at all, only the oldest want is searched for, once per
//     ProviderSearchInterval (the providers of one block of a DAG usually
//     have the rest), so only "some search happens" is asserted then.
//
// To look for more inputs:
//
//	go test -run '^$' -fuzz=FuzzPolicy -fuzztime=60s -parallel=1 ./session
func FuzzPolicy(f *testing.F) {
	for _, seed := range policySeeds() {
		f.Add(encodePolicyEvents(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		evs := decodePolicyEvents(data)
		first := runPolicy(t, evs)
		second := runPolicy(t, evs)
		if !reflect.DeepEqual(first, second) {
			for i := range min(len(first), len(second)) {
				if !reflect.DeepEqual(first[i], second[i]) {
					t.Fatalf("step %d gave different Actions on the same inputs:\n%s\n%s\ntrace:\n%s",
						i, showActions(first[i]), showActions(second[i]), traceOf(evs))
				}
			}
			t.Fatalf("the same inputs gave %d and %d steps", len(first), len(second))
		}
	})
}

const (
	fuzzPeers = 8
	fuzzCids  = 32
	// maxPolicySteps bounds one input's length, to keep each run fast.
	maxPolicySteps = 256
)

type policyEventKind uint8

const (
	pConnect policyEventKind = iota
	pDisconnect
	pAdd
	pRemove
	pBlocks
	pPresences
	pProviders
	pTick
	pWait // time passes without a Tick (events arrive between ticks)
	numPolicyEventKinds
)

var (
	fuzzLatencies = []time.Duration{0, time.Millisecond, 50 * time.Millisecond, 300 * time.Millisecond}
	fuzzDeltas    = []time.Duration{0, time.Millisecond, 10 * time.Millisecond, 40 * time.Millisecond,
		100 * time.Millisecond, 260 * time.Millisecond, time.Second, 3 * time.Second, 11 * time.Second}
)

type policyEvent struct {
	kind  policyEventKind
	peer  int
	lat   int   // index in fuzzLatencies
	dt    int   // index in fuzzDeltas
	cids  []int // add, remove, blocks, HAVEs; the provided CID is cids[0]
	dont  []int // DONT_HAVEs
	peers []int // providers
}

func (e policyEvent) String() string {
	switch e.kind {
	case pConnect:
		return fmt.Sprintf("connect p%d latency=%v", e.peer, fuzzLatencies[e.lat])
	case pDisconnect:
		return fmt.Sprintf("disconnect p%d", e.peer)
	case pAdd:
		return fmt.Sprintf("add %v", e.cids)
	case pRemove:
		return fmt.Sprintf("remove %v", e.cids)
	case pBlocks:
		return fmt.Sprintf("blocks p%d %v", e.peer, e.cids)
	case pPresences:
		return fmt.Sprintf("presences p%d have=%v dont=%v", e.peer, e.cids, e.dont)
	case pProviders:
		return fmt.Sprintf("providers c%d %v", e.cids[0], e.peers)
	case pTick:
		return fmt.Sprintf("tick +%v", fuzzDeltas[e.dt])
	case pWait:
		return fmt.Sprintf("wait +%v", fuzzDeltas[e.dt])
	}
	return "?"
}

func traceOf[E fmt.Stringer](evs []E) string {
	var b strings.Builder
	for i, e := range evs {
		fmt.Fprintf(&b, "  %3d %v\n", i, e)
	}
	return b.String()
}

// fuzzBytes reads a fuzz input; past its end it reads zeros.
type fuzzBytes []byte

func (r *fuzzBytes) next() int {
	if len(*r) == 0 {
		return 0
	}
	b := (*r)[0]
	*r = (*r)[1:]
	return int(b)
}

func (r *fuzzBytes) list(n, universe int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = r.next() % universe
	}
	return out
}

// decodePolicyEvents turns fuzz bytes into inputs; encodePolicyEvents is
// its inverse (for the seeds).
func decodePolicyEvents(data []byte) []policyEvent {
	r := fuzzBytes(data)
	var evs []policyEvent
	for len(r) > 0 && len(evs) < maxPolicySteps {
		e := policyEvent{kind: policyEventKind(r.next() % int(numPolicyEventKinds))}
		switch e.kind {
		case pConnect:
			e.peer = r.next() % fuzzPeers
			e.lat = r.next() % len(fuzzLatencies)
		case pDisconnect:
			e.peer = r.next() % fuzzPeers
		case pAdd, pRemove:
			e.cids = r.list(r.next()%4+1, fuzzCids)
		case pBlocks:
			e.peer = r.next() % fuzzPeers
			e.cids = r.list(r.next()%4+1, fuzzCids)
		case pPresences:
			e.peer = r.next() % fuzzPeers
			e.cids = r.list(r.next()%4, fuzzCids)
			e.dont = r.list(r.next()%4, fuzzCids)
		case pProviders:
			e.cids = []int{r.next() % fuzzCids}
			e.peers = r.list(r.next()%3+1, fuzzPeers)
		case pTick, pWait:
			e.dt = r.next() % len(fuzzDeltas)
		}
		evs = append(evs, e)
	}
	return evs
}

func encodePolicyEvents(evs []policyEvent) []byte {
	var b []byte
	list := func(xs []int) {
		b = append(b, byte(len(xs)))
		for _, x := range xs {
			b = append(b, byte(x))
		}
	}
	listPlus1 := func(xs []int) {
		b = append(b, byte(len(xs)-1))
		for _, x := range xs {
			b = append(b, byte(x))
		}
	}
	for _, e := range evs {
		b = append(b, byte(e.kind))
		switch e.kind {
		case pConnect:
			b = append(b, byte(e.peer), byte(e.lat))
		case pDisconnect:
			b = append(b, byte(e.peer))
		case pAdd, pRemove:
			listPlus1(e.cids)
		case pBlocks:
			b = append(b, byte(e.peer))
			listPlus1(e.cids)
		case pPresences:
			b = append(b, byte(e.peer))
			list(e.cids)
			list(e.dont)
		case pProviders:
			b = append(b, byte(e.cids[0]))
			listPlus1(e.peers)
		case pTick, pWait:
			b = append(b, byte(e.dt))
		}
	}
	return b
}

// policySeeds cover every kind of input and the paths through the Policy
// the unit tests walk: a first wave, HAVE/DONT_HAVE moves, timeouts and the
// lone peer's retry, provider searches, rebroadcasts, disconnects, removal.
func policySeeds() [][]policyEvent {
	ev := func(k policyEventKind) policyEvent { return policyEvent{kind: k} }
	connect := func(p, lat int) policyEvent { e := ev(pConnect); e.peer, e.lat = p, lat; return e }
	disconnect := func(p int) policyEvent { e := ev(pDisconnect); e.peer = p; return e }
	add := func(cs ...int) policyEvent { e := ev(pAdd); e.cids = cs; return e }
	remove := func(cs ...int) policyEvent { e := ev(pRemove); e.cids = cs; return e }
	blocks := func(p int, cs ...int) policyEvent { e := ev(pBlocks); e.peer, e.cids = p, cs; return e }
	have := func(p int, cs ...int) policyEvent { e := ev(pPresences); e.peer, e.cids = p, cs; return e }
	dont := func(p int, cs ...int) policyEvent { e := ev(pPresences); e.peer, e.dont = p, cs; return e }
	provs := func(c int, ps ...int) policyEvent { e := ev(pProviders); e.cids, e.peers = []int{c}, ps; return e }
	tick := func(dt int) policyEvent { e := ev(pTick); e.dt = dt; return e }
	wait := func(dt int) policyEvent { e := ev(pWait); e.dt = dt; return e }
	return [][]policyEvent{
		// First wave over two peers, one serves, the other stays silent.
		{connect(0, 2), connect(1, 2), add(1, 2, 3, 4), wait(3), blocks(0, 1, 3), tick(6), tick(5), tick(6)},
		// One want among many peers: want-haves, a HAVE, a DONT_HAVE.
		{connect(0, 2), connect(1, 2), connect(2, 2), connect(3, 1), add(7), wait(3), have(2, 7), dont(0, 7), dont(1, 7), blocks(2, 7)},
		// Every peer declines: providers at once, a provider serves.
		{connect(0, 2), connect(1, 2), add(5), wait(2), dont(0, 5), dont(1, 5), provs(5, 6), wait(3), blocks(6, 5)},
		// The lone peer: retried, then suspended, then the last resort.
		{connect(0, 2), add(1, 2, 3), tick(6), tick(5), tick(6), tick(6), tick(7), tick(8), blocks(0, 2)},
		// Disconnects move wants; a reconnect; removal cancels.
		{connect(0, 1), connect(1, 3), add(1, 2, 3, 4), disconnect(0), wait(1), connect(0, 0), remove(2, 4), tick(6), disconnect(1), disconnect(0), tick(8), tick(8)},
		// Rebroadcast of stuck wants, presences from an unknown peer.
		{connect(0, 2), connect(1, 2), add(9, 10), dont(0, 9, 10), dont(1, 9, 10), tick(8), have(4, 10), tick(3), blocks(4, 9, 10)},
		// No peers at all: only content routing can help.
		{add(0, 1, 2, 3), tick(5), tick(6), tick(8), provs(1, 2, 3), tick(3)},
		// Found by the fuzzer: a rebroadcast's want-have and the want-block
		// it unblocks go to one peer in the same step.
		{add(7), have(1, 7), dont(0, 7)},
		// A DONT_HAVE, then the peer leaves: the want forgets it.
		{add(16, 10), dont(0, 16), disconnect(0)},
		// A block from a peer that was never asked; a re-added CID.
		{connect(0, 2), connect(1, 2), add(3, 3, 4), blocks(1, 3), blocks(2, 4), add(3, 4), wait(4), tick(6)},
	}
}

// policyRun is one Policy under test and the model it is checked against.
type policyRun struct {
	t      *testing.T
	evs    []policyEvent
	step   int
	p      *Policy
	cfg    Config
	now    time.Time
	cidOf  []cid.Cid
	idxOf  map[cid.Cid]int
	peerOf []peer.ID

	known      map[peer.ID]bool             // peers the Policy should know
	wanted     map[cid.Cid]uint64           // wanted CIDs and the order they were first wanted
	seq        uint64                       // of the model's wants
	outB, outH map[peer.ID]map[cid.Cid]bool // want-blocks and want-haves outstanding, as the Session sent them
	lastSearch time.Time
	quietTicks int     // ticks since the inputs ended
	last       Actions // of the step being checked

	log []Actions
}

func newPolicyRun(t *testing.T, evs []policyEvent) *policyRun {
	r := &policyRun{
		t: t, evs: evs, cfg: DefaultConfig(), now: t0,
		known: make(map[peer.ID]bool), wanted: make(map[cid.Cid]uint64),
		outB: make(map[peer.ID]map[cid.Cid]bool), outH: make(map[peer.ID]map[cid.Cid]bool),
	}
	r.p = NewPolicy(r.cfg)
	r.cidOf, r.idxOf = fuzzUniverse()
	r.peerOf = make([]peer.ID, fuzzPeers)
	for i := range r.peerOf {
		r.peerOf[i] = peer.ID(fmt.Sprintf("p%d", i))
	}
	return r
}

func runPolicy(t *testing.T, evs []policyEvent) []Actions {
	r := newPolicyRun(t, evs)
	for i, e := range evs {
		r.step = i
		r.apply(e)
	}
	r.quiet()
	return r.log
}

func (r *policyRun) fatalf(format string, args ...any) {
	r.t.Helper()
	where := fmt.Sprintf("step %d", r.step)
	if r.quietTicks > 0 {
		where = fmt.Sprintf("after the inputs, quiet tick %d (at +%v)", r.quietTicks, r.now.Sub(t0))
	}
	r.t.Fatalf("%s: %s\nits Actions: %s\ntrace:\n%s", where, fmt.Sprintf(format, args...), showActions(r.last), traceOf(r.evs[:min(r.step+1, len(r.evs))]))
}

func (r *policyRun) cs(xs []int) []cid.Cid {
	out := make([]cid.Cid, len(xs))
	for i, x := range xs {
		out[i] = r.cidOf[x]
	}
	return out
}

func (r *policyRun) ps(xs []int) []peer.ID {
	out := make([]peer.ID, len(xs))
	for i, x := range xs {
		out[i] = r.peerOf[x]
	}
	return out
}

// wantedAmong returns the CIDs of cs that are wanted, once each, in order.
func (r *policyRun) wantedAmong(cs []cid.Cid) []cid.Cid {
	var out []cid.Cid
	for _, c := range cs {
		if _, ok := r.wanted[c]; ok && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func (r *policyRun) apply(e policyEvent) {
	var a Actions
	var wantCancelAll, wantReceived []cid.Cid
	isTick := false
	switch e.kind {
	case pConnect:
		a = r.p.PeerConnected(r.now, r.peerOf[e.peer], PeerInfo{Latency: fuzzLatencies[e.lat], Local: e.peer%2 == 0})
		r.known[r.peerOf[e.peer]] = true
	case pDisconnect:
		id := r.peerOf[e.peer]
		a = r.p.PeerDisconnected(r.now, id)
		delete(r.known, id)
		delete(r.outB, id) // the WantManager forgets a departed peer's wants
		delete(r.outH, id)
	case pAdd:
		a = r.p.Add(r.now, r.cs(e.cids))
		for _, c := range r.cs(e.cids) {
			if _, ok := r.wanted[c]; !ok {
				r.seq++
				r.wanted[c] = r.seq
			}
		}
	case pRemove:
		cs := r.cs(e.cids)
		wantCancelAll = r.wantedAmong(cs)
		a = r.p.Remove(r.now, cs)
		for _, c := range wantCancelAll {
			delete(r.wanted, c)
		}
	case pBlocks:
		cs := r.cs(e.cids)
		wantReceived = r.wantedAmong(cs)
		wantCancelAll = wantReceived
		a = r.p.BlocksReceived(r.now, r.peerOf[e.peer], cs)
		for _, c := range wantReceived {
			delete(r.wanted, c)
		}
	case pPresences:
		id := r.peerOf[e.peer]
		a = r.p.Presences(r.now, id, r.cs(e.cids), r.cs(e.dont))
		r.known[id] = true
		for _, c := range append(r.cs(e.cids), r.cs(e.dont)...) {
			delete(r.outH[id], c) // a want-have is answered
		}
	case pProviders:
		a = r.p.ProvidersFound(r.now, r.cidOf[e.cids[0]], r.ps(e.peers))
		for _, id := range r.ps(e.peers) {
			r.known[id] = true
		}
	case pTick:
		r.now = r.now.Add(fuzzDeltas[e.dt])
		a = r.p.Tick(r.now)
		isTick = true
	case pWait:
		r.now = r.now.Add(fuzzDeltas[e.dt])
	}
	r.log = append(r.log, a)
	r.last = a
	r.check(a, wantCancelAll, wantReceived, isTick)
}

// check verifies one step's Actions and the state after it.
func (r *policyRun) check(a Actions, wantCancelAll, wantReceived []cid.Cid, isTick bool) {
	r.t.Helper()
	if !slices.Equal(a.CancelAll, wantCancelAll) {
		r.fatalf("CancelAll = %v, want %v", r.names(a.CancelAll), r.names(wantCancelAll))
	}
	if !slices.Equal(a.Received, wantReceived) {
		r.fatalf("Received = %v, want %v", r.names(a.Received), r.names(wantReceived))
	}
	// Every action names a known peer, and every ask a wanted CID, each
	// once per list, in the order the CIDs were first wanted.
	for kind, m := range map[string]map[peer.ID][]cid.Cid{
		"want-block": a.WantBlocks, "want-have": a.WantHaves, "resend": a.Resends, "cancel": a.Cancels,
	} {
		for id, cs := range m {
			if !r.known[id] {
				r.fatalf("%s %v to %s, which is not connected", kind, r.names(cs), string(id))
			}
			if len(cs) == 0 {
				r.fatalf("empty %s list for %s", kind, string(id))
			}
			for i, c := range cs {
				if slices.Contains(cs[:i], c) {
					r.fatalf("%s to %s names %s twice: %v", kind, string(id), r.name(c), r.names(cs))
				}
				if kind == "cancel" {
					continue // a DONT_HAVE's cancels follow its order
				}
				if _, ok := r.wanted[c]; !ok {
					r.fatalf("%s %s to %s, which is not wanted", kind, r.name(c), string(id))
				}
				if i > 0 && r.wanted[cs[i-1]] > r.wanted[c] {
					r.fatalf("%s to %s is not in the order the CIDs were wanted: %v", kind, string(id), r.names(cs))
				}
			}
		}
	}
	if len(a.FindProvs) > 1 {
		r.fatalf("%d provider searches in one step: %v", len(a.FindProvs), r.names(a.FindProvs))
	}
	for _, c := range a.FindProvs {
		if _, ok := r.wanted[c]; !ok {
			r.fatalf("provider search for %s, which is not wanted", r.name(c))
		}
		if !r.lastSearch.IsZero() && r.now.Sub(r.lastSearch) < r.cfg.ProviderSearchInterval {
			r.fatalf("provider search %v after the previous one, interval is %v", r.now.Sub(r.lastSearch), r.cfg.ProviderSearchInterval)
		}
		r.lastSearch = r.now
	}

	// Carry the Actions out on the model, in the Session's order.
	for _, c := range a.CancelAll {
		for _, m := range r.outB {
			delete(m, c)
		}
		for _, m := range r.outH {
			delete(m, c)
		}
	}
	for id, cs := range a.Cancels {
		for _, c := range cs {
			if !r.outB[id][c] {
				r.fatalf("cancel %s at %s, which was not asked for it", r.name(c), string(id))
			}
			delete(r.outB[id], c)
			delete(r.outH[id], c)
		}
	}
	for id, cs := range a.Resends {
		for _, c := range cs {
			if !r.outB[id][c] {
				r.fatalf("resend %s to %s, which was not asked for it", r.name(c), string(id))
			}
		}
	}
	for id, cs := range a.WantBlocks {
		for _, c := range cs {
			if r.outB[id][c] {
				r.fatalf("want-block %s to %s again while it is outstanding there", r.name(c), string(id))
			}
			set(r.outB, id, c)
			delete(r.outH[id], c)
		}
	}
	for id, cs := range a.WantHaves {
		for _, c := range cs {
			// A rebroadcast's want-have and the want-block it unblocks (the
			// refusals it forgets) can go to one peer in the same step. The
			// WantManager takes want-blocks first and never downgrades one,
			// so that want-have is redundant, not wrong; in any later step
			// it would be a bug.
			if r.outB[id][c] && !slices.Contains(a.WantBlocks[id], c) {
				r.fatalf("want-have %s to %s, which was asked for the block", r.name(c), string(id))
			}
			set(r.outH, id, c)
		}
	}
	r.checkState(isTick)
}

func set(m map[peer.ID]map[cid.Cid]bool, id peer.ID, c cid.Cid) {
	if m[id] == nil {
		m[id] = make(map[cid.Cid]bool)
	}
	m[id][c] = true
}

// checkState compares the Policy's state with the model and checks its
// internal consistency.
func (r *policyRun) checkState(afterTick bool) {
	r.t.Helper()
	p := r.p
	if p.Wants() != len(r.wanted) {
		r.fatalf("Policy wants %d CIDs, model %d", p.Wants(), len(r.wanted))
	}
	if len(p.peers) != len(r.known) {
		r.fatalf("Policy knows %d peers %v, model %d", len(p.peers), pids(peersOf(p.peers)), len(r.known))
	}
	for id := range r.known {
		if p.peers[id] == nil {
			r.fatalf("Policy forgot peer %s", string(id))
		}
	}
	for _, c := range r.cidOf {
		_, want := r.wanted[c]
		if p.Has(c) != want {
			r.fatalf("Policy.Has(%s) = %v, model %v", r.name(c), p.Has(c), want)
		}
		var at []peer.ID
		for id, m := range r.outB {
			if m[c] {
				at = append(at, id)
			}
		}
		if !want {
			if len(at) > 0 {
				r.fatalf("%s is not wanted but still asked of %v", r.name(c), pids(at))
			}
			for id, m := range r.outH {
				if m[c] {
					r.fatalf("%s is not wanted but a want-have for it is still outstanding at %s", r.name(c), string(id))
				}
			}
			continue
		}
		// No want lost: it is asked of exactly its assigned peer, or pending.
		w := p.wants[c]
		switch {
		case w.assigned == "" && len(at) > 0:
			r.fatalf("%s is pending but still asked of %v", r.name(c), pids(at))
		case w.assigned != "" && (len(at) != 1 || at[0] != w.assigned):
			r.fatalf("%s is assigned to %s but outstanding at %v", r.name(c), string(w.assigned), pids(at))
		case w.assigned != "" && p.peers[w.assigned] == nil:
			r.fatalf("%s is assigned to %s, which the Policy does not know", r.name(c), string(w.assigned))
		case w.assigned == "" && w.pidx < 0:
			r.fatalf("%s is neither assigned nor pending: lost", r.name(c))
		case w.assigned != "" && w.pidx >= 0:
			r.fatalf("%s is assigned to %s and pending too", r.name(c), string(w.assigned))
		}
		if w.pidx >= 0 && (w.pidx >= p.pending.Len() || p.pending.At(w.pidx) != w) {
			r.fatalf("%s's pending index %d is stale", r.name(c), w.pidx)
		}
		if _, no := w.dontHaves[w.assigned]; no && w.assigned != "" {
			r.fatalf("%s is assigned to %s, which said DONT_HAVE", r.name(c), string(w.assigned))
		}
		for id := range w.haves {
			if p.peers[id] == nil {
				r.fatalf("%s's HAVEs name %s, which the Policy does not know", r.name(c), string(id))
			}
			if _, no := w.dontHaves[id]; no {
				r.fatalf("%s: %s said both HAVE and DONT_HAVE", r.name(c), string(id))
			}
		}
		for id := range w.askedHave {
			if p.peers[id] == nil {
				r.fatalf("%s's want-haves name %s, which the Policy does not know", r.name(c), string(id))
			}
		}
		for id := range w.dontHaves {
			if p.peers[id] == nil {
				r.fatalf("%s's DONT_HAVEs name %s, which the Policy does not know", r.name(c), string(id))
			}
		}
	}
	inflight := make(map[peer.ID]int)
	unassigned := 0
	for _, w := range p.wants {
		if w.assigned == "" {
			unassigned++
		} else {
			inflight[w.assigned]++
		}
	}
	for id, pi := range p.peers {
		if pi.inflight != inflight[id] {
			r.fatalf("peer %s: inflight %d, but %d wants are assigned to it", string(id), pi.inflight, inflight[id])
		}
	}
	if p.pending.Len() != unassigned {
		r.fatalf("%d wants pending, %d unassigned", p.pending.Len(), unassigned)
	}
	live := 0
	for _, w := range p.queue {
		if p.wants[w.c] == w {
			live++
		}
	}
	if live != len(p.wants) {
		r.fatalf("the queue holds %d of the %d wants", live, len(p.wants))
	}
	if len(p.queue) > 2*len(p.wants) || (afterTick && len(p.queue) != len(p.wants)) {
		r.fatalf("the queue holds %d entries for %d wants", len(p.queue), len(p.wants))
	}
}

// quiet lets only the clock run, ticking as the Session does, and checks
// that every want is asked of some peer (or content routing is asked, with
// no peer to ask): nothing may wait forever for an input that will never
// come.
func (r *policyRun) quiet() {
	if len(r.wanted) == 0 {
		return
	}
	p := r.p
	var horizon time.Duration
	for _, pi := range p.peers {
		horizon = max(horizon, 4*p.timeout(pi)+4*p.lat(pi))
	}
	horizon += 4*r.cfg.RebroadcastInterval + r.cfg.ProviderSearchInterval
	// The Session's interval, or coarser when measured latencies make the
	// horizon long (waits of many seconds do): at most 400 ticks.
	step := max(r.cfg.PeerTimeout/4, 10*time.Millisecond, horizon/400)
	asked := make(map[cid.Cid]bool)
	searched := false
	withPeers := len(p.peers) > 0
	r.step = len(r.evs) - 1
	for end := r.now.Add(horizon); r.now.Before(end); {
		r.now = r.now.Add(step)
		r.quietTicks++
		a := r.p.Tick(r.now)
		r.log = append(r.log, a)
		r.last = a
		r.check(a, nil, nil, true)
		for _, m := range []map[peer.ID][]cid.Cid{a.WantBlocks, a.WantHaves, a.Resends} {
			for _, cs := range m {
				for _, c := range cs {
					asked[c] = true
				}
			}
		}
		searched = searched || len(a.FindProvs) > 0
	}
	if !withPeers {
		if !searched {
			r.fatalf("no peer and, in %v of ticks, no provider search for %d wants", horizon, len(r.wanted))
		}
		return
	}
	for c := range r.wanted {
		if !asked[c] {
			w := p.wants[c]
			declined := true
			for id := range p.peers {
				if _, no := w.dontHaves[id]; !no {
					declined = false
				}
			}
			if declined && searched {
				continue // every peer said DONT_HAVE: only content routing can help
			}
			r.fatalf("%s (assigned to %q) was not asked of any of the %d peers in %v of ticks: stuck",
				r.name(c), w.assigned, len(p.peers), horizon)
		}
	}
}

func (r *policyRun) name(c cid.Cid) string       { return cidName(c) }
func (r *policyRun) names(cs []cid.Cid) []string { return cidNames(cs) }

var universe = sync.OnceValues(func() ([]cid.Cid, map[cid.Cid]int) {
	cs := make([]cid.Cid, fuzzCids)
	idx := make(map[cid.Cid]int, len(cs))
	for i := range cs {
		h, err := mh.Sum([]byte(fmt.Sprint("block ", i)), mh.SHA2_256, -1)
		if err != nil {
			panic(err)
		}
		cs[i] = cid.NewCidV1(cid.Raw, h)
		idx[cs[i]] = i
	}
	return cs, idx
})

// fuzzUniverse returns the fuzz tests' CIDs and their indices.
func fuzzUniverse() ([]cid.Cid, map[cid.Cid]int) { return universe() }

func cidName(c cid.Cid) string {
	if _, idx := universe(); idx != nil {
		if i, ok := idx[c]; ok {
			return fmt.Sprintf("c%d", i)
		}
	}
	return c.String()
}

func cidNames(cs []cid.Cid) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = cidName(c)
	}
	return out
}

// showActions prints Actions with short names, keeping every list's order.
func showActions(a Actions) string {
	var b strings.Builder
	perPeer := func(kind string, m map[peer.ID][]cid.Cid) {
		for _, id := range a.Peers() {
			if cs, ok := m[id]; ok {
				fmt.Fprintf(&b, "%s %s: %v; ", kind, string(id), cidNames(cs))
			}
		}
	}
	perPeer("want-block", a.WantBlocks)
	perPeer("want-have", a.WantHaves)
	perPeer("resend", a.Resends)
	perPeer("cancel", a.Cancels)
	fmt.Fprintf(&b, "cancel-all %v; received %v; find-providers %v", cidNames(a.CancelAll), cidNames(a.Received), cidNames(a.FindProvs))
	return b.String()
}

func pids(ids []peer.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

package engine

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/gobitswap/bitswap/message"
)

// FuzzCore drives the server's core with random sequences of what the
// Engine feeds it — wantlists (full or incremental, want-block or want-have,
// with or without sendDontHave, cancels) from several peers, lookups and
// their results (have, don't have, error; in any order, late or for wants
// that changed since), turns popped from the task queue and reported sent or
// failed, arriving blocks, departing peers — over a small universe (4 peers,
// 12 CIDs, among them CIDv0/v1 pairs of one multihash and CIDs over the size
// limit) and small random limits, and checks after every step:
//
//   - no panic;
//   - the wants held for each peer are exactly those of a model that applies
//     the same messages: accepted while within MaxWantsPerPeer,
//     MaxWantsTotal and the CID size limit, dropped by cancels and full
//     wantlists, served by a popped block or HAVE, evicted over
//     MaxParkedWants (the core reports each eviction, and the model checks
//     that the want was held and parked before any want still parked),
//     restored after a failed send unless the peer cancelled them meanwhile
//     (or was removed), all forgotten after removePeer or MaxSendFailures
//     failed sends. So nothing the peer still wants is silently forgotten,
//     and nothing it cancelled comes back;
//   - per peer at most MaxWantsPerPeer wants, in all at most MaxWantsTotal,
//     and the total and the hash index agree with the wantlists;
//   - every held want is in exactly one state: unchecked (in the peer's
//     heap), checking (a lookup handed out for it is unanswered), queued
//     (its task is in the task queue) or parked (none of these); at most
//     MaxActiveWantsPerPeer are checking or queued, and active counts them;
//   - the parked list holds exactly the parked wants, each once, soundly
//     linked, in the order they were parked, counted right, at most
//     MaxParkedWants of them when that is set; the eviction counter counts
//     the evictions reported;
//   - the task queue holds tasks only for queued wants, its ring exactly the
//     peers with tasks, and each peer's outstanding bytes equal what was
//     popped for it and not yet reported done;
//   - a popped turn is at least one task, within the target size unless it
//     is one task, within the outstanding-byte cap unless it is the first
//     of an idle peer; pending is the rest of the peer's queue; every task
//     answers a want the peer holds, with what its lookup found (a block or
//     HAVE only if we have it, DONT_HAVE only if we lack it and the peer
//     asked for one);
//   - blocksArrived wakes exactly the parked wants for those multihashes,
//     and names each of their peers once;
//   - removePeer frees the peer's wants and queued tasks;
//   - the same inputs produce the same outputs (the run is repeated);
//     inputs without a parked cap are run again with a small one;
//   - nothing is wedged: when the inputs end, the harness keeps doing what
//     the Engine's goroutines do (answer lookups, refill when the core says
//     a peer has lookups to do, pop and send) until nothing is left, and then
//     every want still held must be parked.
//
// Left as they are (the model follows the core): a restored want is
// dropped, and counted, if the peer's new wants filled its cap meanwhile; a
// failed send popped before removePeer counts against the peer's next
// wantlist if it is back by then; a peer whose last send failed keeps an
// empty entry until a send succeeds or it disconnects. A want evicted while
// its DONT_HAVE is in flight is restored if that send fails, like a served
// one (the peer has not heard the DONT_HAVE), unless it asked again
// meanwhile.
//
//	go test -run '^$' -fuzz=FuzzCore -fuzztime=60s -parallel=1 ./engine
func FuzzCore(f *testing.F) {
	for _, seed := range coreSeeds() {
		f.Add(encodeCoreInput(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := decodeCoreInput(data)
		runCoreTwice(t, in)
		if in.parked == 0 {
			// Inputs without a parked cap (most of them, the older ones
			// all) run again under a small one, so evictions are
			// exercised as often as the rest.
			in.parked = 1 + (in.perPeer+in.total)%3
			runCoreTwice(t, in)
		}
	})
}

// runCoreTwice runs in twice and checks that both runs agree.
func runCoreTwice(t *testing.T, in coreInput) {
	first := runCore(t, in)
	second := runCore(t, in)
	if !reflect.DeepEqual(first, second) {
		for i := range min(len(first), len(second)) {
			if first[i] != second[i] {
				t.Fatalf("output %d differs between two runs of the same inputs:\n%s\n%s\ninputs:\n%s", i, first[i], second[i], in)
			}
		}
		t.Fatalf("two runs of the same inputs gave %d and %d outputs", len(first), len(second))
	}
}

const (
	corePeers    = 4
	coreCids     = 12
	maxCoreSteps = 256
)

type coreEventKind uint8

const (
	cReceive coreEventKind = iota
	cLookups
	cLookupDone
	cPop
	cDone
	cArrived
	cRemove
	numCoreEventKinds
)

var (
	fuzzSizes   = []int{0, 1, 100, 1024, 1025, 5000}
	fuzzTargets = []int{1, 40, 1000, 1 << 20}
	fuzzOutst   = []int{1, 100, 2000, 1 << 20}
	fuzzReplace = []int{0, 100, 1024}
	fuzzCidSize = []int{40, 168}
)

type coreEntry struct {
	cid                int
	block, sdh, cancel bool
	prio               int
}

type coreResult struct {
	pick      int // which of the peer's unanswered lookups
	have, err bool
	size      int // index in fuzzSizes
}

type coreEvent struct {
	kind    coreEventKind
	peer    int
	full    bool
	entries []coreEntry
	n       int          // lookups: how many at most; pop: target index; done: which batch
	results []coreResult // lookupDone
	sent    bool         // done
	empty   bool         // done: every block of the turn vanished (the Engine sent nothing)
	cids    []int        // arrived
}

type coreInput struct {
	// limits, as indices or small numbers; parked 0 is no cap
	perPeer, total, active, failures, cidSize, replace, outst, parked int
	evs                                                               []coreEvent
}

func (in coreInput) limits() limits {
	return limits{
		maxWantsPerPeer:  in.perPeer,
		maxWantsTotal:    in.total,
		maxActivePerPeer: in.active,
		maxCidSize:       fuzzCidSize[in.cidSize],
		maxReplaceSize:   fuzzReplace[in.replace],
		maxOutstanding:   fuzzOutst[in.outst],
		maxSendFailures:  in.failures,
		maxParked:        in.parked,
	}
}

func (in coreInput) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  limits %+v\n", in.limits())
	for i, e := range in.evs {
		fmt.Fprintf(&b, "  %3d %v\n", i, e)
	}
	return b.String()
}

func (e coreEvent) String() string {
	switch e.kind {
	case cReceive:
		var parts []string
		for _, x := range e.entries {
			s := fmt.Sprintf("c%d", x.cid)
			switch {
			case x.cancel:
				s += ":cancel"
			case x.block:
				s += ":block"
			default:
				s += ":have"
			}
			if x.sdh && !x.cancel {
				s += "+dh"
			}
			if x.prio != 0 {
				s += fmt.Sprintf("@%d", x.prio)
			}
			parts = append(parts, s)
		}
		full := ""
		if e.full {
			full = " full"
		}
		return fmt.Sprintf("receive p%d%s [%s]", e.peer, full, strings.Join(parts, " "))
	case cLookups:
		return fmt.Sprintf("refill p%d max=%d", e.peer, e.n)
	case cLookupDone:
		var parts []string
		for _, r := range e.results {
			s := fmt.Sprintf("#%d:", r.pick)
			switch {
			case r.err:
				s += "err"
			case r.have:
				s += fmt.Sprintf("have(%d)", fuzzSizes[r.size])
			default:
				s += "missing"
			}
			parts = append(parts, s)
		}
		return fmt.Sprintf("lookupDone p%d [%s]", e.peer, strings.Join(parts, " "))
	case cPop:
		return fmt.Sprintf("pop target=%d", fuzzTargets[e.n])
	case cDone:
		what := "failed"
		if e.sent {
			what = "sent"
			if e.empty {
				what = "sent nothing"
			}
		}
		return fmt.Sprintf("done turn #%d %s", e.n, what)
	case cArrived:
		return fmt.Sprintf("blocksArrived %v", e.cids)
	case cRemove:
		return fmt.Sprintf("removePeer p%d", e.peer)
	}
	return "?"
}

type fuzzBytes []byte

func (r *fuzzBytes) next() int {
	if len(*r) == 0 {
		return 0
	}
	b := (*r)[0]
	*r = (*r)[1:]
	return int(b)
}

// decodeCoreInput turns fuzz bytes into limits and inputs;
// encodeCoreInput is its inverse (for the seeds).
//
// The parked cap came later: it is a fifth header byte, present only when
// the top bit of the first is set (a bit perPeer never read, clear in every
// input of the committed corpus), so older inputs decode as they did, with
// no cap; a missing fifth byte is no cap too.
func decodeCoreInput(data []byte) coreInput {
	r := fuzzBytes(data)
	b := r.next()
	in := coreInput{perPeer: b%8 + 1, total: r.next()%16 + 1}
	hasParked := b&0x80 != 0
	b = r.next()
	in.active, in.failures, in.cidSize = b%4+1, ((b>>2)&3)%3+1, (b>>4)&1
	b = r.next()
	in.replace, in.outst = b%3, (b>>2)%4
	if hasParked {
		in.parked = r.next() % 9
	}
	for len(r) > 0 && len(in.evs) < maxCoreSteps {
		e := coreEvent{kind: coreEventKind(r.next() % int(numCoreEventKinds))}
		switch e.kind {
		case cReceive:
			e.peer = r.next() % corePeers
			b := r.next()
			e.full = b&1 != 0
			for range (b >> 1) % 6 {
				x := coreEntry{cid: r.next() % coreCids}
				f := r.next()
				x.block, x.sdh, x.cancel, x.prio = f&1 != 0, f&2 != 0, (f>>2)&3 == 3, (f>>4)%4
				e.entries = append(e.entries, x)
			}
		case cLookups:
			e.peer = r.next() % corePeers
			e.n = r.next()%4 + 1
		case cLookupDone:
			e.peer = r.next() % corePeers
			for range r.next() % 6 {
				x := coreResult{pick: r.next()}
				f := r.next()
				x.have, x.err, x.size = f&1 != 0, f&2 != 0, (f>>2)%len(fuzzSizes)
				if x.err {
					x.have = false
				}
				e.results = append(e.results, x)
			}
		case cPop:
			e.n = r.next() % len(fuzzTargets)
		case cDone:
			e.n = r.next()
			f := r.next()
			e.sent, e.empty = f&1 != 0, f&2 != 0 && f&1 != 0
		case cArrived:
			for range r.next()%3 + 1 {
				e.cids = append(e.cids, r.next()%coreCids)
			}
		case cRemove:
			e.peer = r.next() % corePeers
		}
		in.evs = append(in.evs, e)
	}
	return in
}

func encodeCoreInput(in coreInput) []byte {
	b := []byte{byte(in.perPeer - 1), byte(in.total - 1),
		byte(in.active-1) | byte(in.failures-1)<<2 | byte(in.cidSize)<<4,
		byte(in.replace) | byte(in.outst)<<2}
	if in.parked > 0 {
		b[0] |= 0x80
		b = append(b, byte(in.parked))
	}
	bit := func(v bool, n uint) byte {
		if v {
			return 1 << n
		}
		return 0
	}
	for _, e := range in.evs {
		b = append(b, byte(e.kind))
		switch e.kind {
		case cReceive:
			b = append(b, byte(e.peer), bit(e.full, 0)|byte(len(e.entries))<<1)
			for _, x := range e.entries {
				f := bit(x.block, 0) | bit(x.sdh, 1) | byte(x.prio)<<4
				if x.cancel {
					f |= 3 << 2
				}
				b = append(b, byte(x.cid), f)
			}
		case cLookups:
			b = append(b, byte(e.peer), byte(e.n-1))
		case cLookupDone:
			b = append(b, byte(e.peer), byte(len(e.results)))
			for _, x := range e.results {
				b = append(b, byte(x.pick), bit(x.have, 0)|bit(x.err, 1)|byte(x.size)<<2)
			}
		case cPop:
			b = append(b, byte(e.n))
		case cDone:
			b = append(b, byte(e.n), bit(e.sent, 0)|bit(e.empty, 1))
		case cArrived:
			b = append(b, byte(len(e.cids)-1))
			for _, x := range e.cids {
				b = append(b, byte(x))
			}
		case cRemove:
			b = append(b, byte(e.peer))
		}
	}
	return b
}

// coreSeeds cover every kind of input and the paths the unit tests walk.
func coreSeeds() []coreInput {
	recv := func(p int, full bool, xs ...coreEntry) coreEvent {
		return coreEvent{kind: cReceive, peer: p, full: full, entries: xs}
	}
	blk := func(c int, sdh bool) coreEntry { return coreEntry{cid: c, block: true, sdh: sdh} }
	hav := func(c int, sdh bool) coreEntry { return coreEntry{cid: c, sdh: sdh} }
	cancel := func(c int) coreEntry { return coreEntry{cid: c, cancel: true} }
	refill := func(p, n int) coreEvent { return coreEvent{kind: cLookups, peer: p, n: n} }
	answer := func(p int, rs ...coreResult) coreEvent { return coreEvent{kind: cLookupDone, peer: p, results: rs} }
	have := func(size int) coreResult { return coreResult{have: true, size: size} }
	missing := coreResult{}
	failed := coreResult{err: true}
	pop := func(target int) coreEvent { return coreEvent{kind: cPop, n: target} }
	done := func(turn int, sent bool) coreEvent { return coreEvent{kind: cDone, n: turn, sent: sent} }
	empty := func(turn int) coreEvent { return coreEvent{kind: cDone, n: turn, sent: true, empty: true} }
	arrived := func(cs ...int) coreEvent { return coreEvent{kind: cArrived, cids: cs} }
	remove := func(p int) coreEvent { return coreEvent{kind: cRemove, peer: p} }
	roomy := coreInput{perPeer: 8, total: 16, active: 4, failures: 3, cidSize: 1, replace: 2, outst: 3}
	tight := coreInput{perPeer: 3, total: 5, active: 1, failures: 1, cidSize: 0, replace: 1, outst: 1}
	parked2 := coreInput{perPeer: 8, total: 16, active: 4, failures: 3, cidSize: 1, replace: 2, outst: 3, parked: 2}
	parked1 := coreInput{perPeer: 8, total: 16, active: 4, failures: 3, cidSize: 1, replace: 2, outst: 3, parked: 1}
	with := func(l coreInput, evs ...coreEvent) coreInput { l.evs = evs; return l }
	return []coreInput{
		// Each kind of answer: block, small block for a want-have, HAVE,
		// DONT_HAVE, silence.
		with(roomy, recv(0, false, blk(0, false), hav(1, false), hav(2, true), blk(3, true), blk(4, false)),
			refill(0, 4), answer(0, have(5), have(2), have(5), missing), refill(0, 4), answer(0, missing),
			pop(3), done(0, true), pop(3), done(0, true)),
		// A block that arrives after a DONT_HAVE, under the other CID version.
		with(roomy, recv(1, false, hav(8, true)), refill(1, 1), answer(1, missing), pop(3), done(0, true),
			arrived(0), refill(1, 1), answer(1, have(5)), pop(3), done(0, true)),
		// Cancels while checking, queued and in flight; a full wantlist.
		with(roomy, recv(0, false, blk(0, false), blk(1, false), blk(2, true)), refill(0, 4),
			answer(0, have(2)), recv(0, false, cancel(0)), answer(0, have(2), missing), pop(3),
			recv(0, false, cancel(1)), done(0, false), recv(0, true, blk(5, false)), refill(0, 4), pop(3)),
		// Limits: per peer, total, active, CID size; several peers.
		with(tight, recv(0, false, blk(0, false), blk(1, false), blk(2, false), blk(3, false)),
			recv(1, false, blk(4, true), blk(10, true), blk(5, true), blk(6, true)),
			refill(0, 4), refill(1, 4), answer(0, have(3)), answer(1, missing), pop(2), pop(2), done(0, true), done(0, true)),
		// Failed sends: restored, then the peer's wants dropped.
		with(roomy, recv(2, false, blk(0, false), hav(1, true)), refill(2, 4), answer(2, have(1), missing),
			pop(3), done(0, false), refill(2, 4), answer(2, have(1), missing), pop(3), done(0, false),
			refill(2, 4), answer(2, have(1), missing), pop(3), done(0, false)),
		// A peer removed while its lookups and sends are in flight, then back.
		with(roomy, recv(3, false, blk(0, false), blk(1, false)), refill(3, 2), answer(3, have(3)), pop(3),
			remove(3), recv(3, false, blk(1, true)), answer(3, have(3)), done(0, false), refill(3, 2),
			answer(3, failed), pop(0), done(0, true)),
		// Every block of a turn vanished before it was read.
		with(tight, recv(0, false, blk(0, false), blk(1, false)), refill(0, 1), answer(0, have(5)), refill(0, 1), pop(3), empty(0)),
		// One multihash wanted by every peer, by p0 under both CID versions;
		// p0 leaves, and the block arrives: the wake order must not depend
		// on the order p0's wants were forgotten in.
		with(roomy, recv(0, false, blk(0, false)), recv(1, false, blk(0, false)), recv(0, false, blk(8, false)),
			recv(2, false, blk(0, false)), recv(3, false, blk(0, false)),
			refill(0, 4), answer(0, missing, missing), refill(1, 4), answer(1, missing), refill(2, 4), answer(2, missing),
			refill(3, 4), answer(3, missing), remove(0), arrived(0)),
		// Updates: a changed want, a repeated parked want, priorities.
		with(roomy, recv(0, false, hav(0, false), coreEntry{cid: 1, block: true, prio: 3}), refill(0, 4),
			recv(0, false, blk(0, true)), answer(0, missing, missing), refill(0, 4), answer(0, missing, missing),
			recv(0, false, coreEntry{cid: 1, block: true, prio: 1}), refill(0, 4), answer(0, have(5)), pop(3), done(0, true)),
		// The parked cap: p0's parked wants evicted by p1's, one of them
		// with its DONT_HAVE in flight; the send fails and it comes back.
		with(parked2, recv(0, false, hav(0, true), blk(1, false)), refill(0, 4), answer(0, missing, missing), pop(3),
			recv(1, false, blk(2, false), blk(3, false)), refill(1, 4), answer(1, missing, missing), done(0, false),
			refill(0, 4), answer(0, missing), pop(3), done(0, true), arrived(2), recv(1, false, blk(3, false))),
		// Room for one parked want: unparked by arrival, cancel and a repeat
		// before others park; a peer evicted of all it held, and back.
		with(parked1, recv(0, false, blk(0, false)), refill(0, 4), answer(0, missing), arrived(0),
			recv(1, false, blk(1, false)), refill(1, 4), answer(1, missing), recv(1, false, cancel(1)),
			recv(2, false, blk(2, true), blk(4, true)), refill(2, 4), answer(2, missing, missing), pop(3), pop(3),
			recv(2, false, blk(4, true)), recv(3, false, blk(5, false)), refill(3, 4), answer(3, missing),
			remove(3), recv(0, false, blk(6, false)), refill(0, 4), answer(0, missing, missing), done(0, true), done(0, false)),
	}
}

var coreUniverse = sync.OnceValue(func() []cid.Cid {
	out := make([]cid.Cid, coreCids)
	for i := range 8 {
		h, err := mh.Sum([]byte(fmt.Sprintf("block %d", i)), mh.SHA2_256, -1)
		if err != nil {
			panic(err)
		}
		out[i] = cid.NewCidV1(cid.Raw, h)
	}
	out[8], out[9] = cid.NewCidV0(out[0].Hash()), cid.NewCidV0(out[1].Hash())
	for i := 10; i < 12; i++ {
		h, err := mh.Sum([]byte(fmt.Sprintf("long %d", i)), mh.SHA2_512, -1)
		if err != nil {
			panic(err)
		}
		out[i] = cid.NewCidV1(cid.Raw, h)
	}
	return out
})

// batch is a turn popped and not yet reported done.
type batch struct {
	p     peer.ID
	tasks []*task
}

// coreRun is one core under test, the Engine's side of the conversation,
// and the model it is checked against.
type coreRun struct {
	t      *testing.T
	in     coreInput
	step   int
	l      limits
	c      *core
	cidOf  []cid.Cid
	nameOf map[cid.Cid]string
	peerOf []peer.ID

	lookups map[peer.ID][]lookup     // handed out, unanswered
	results map[uint64]lookupResult  // by seq: what each answered lookup found
	types   map[uint64]message.Entry // by seq: the want as it was when looked up
	due     map[peer.ID]bool         // the Engine would refill this peer
	batches []batch

	// model
	held        map[peer.ID]map[cid.Cid]bool
	restorable  map[peer.ID]map[cid.Cid]uint64 // popped, in flight, not cancelled since: task seq
	failures    map[peer.ID]int
	outstanding map[peer.ID]int // bytes popped and not done
	evictions   uint64          // evictions the core reported
	// parkedAt is when (in checks) each want, at one seq, was first seen
	// parked: evictions must take the oldest first.
	parkedAt map[parkKey]int
	checks   int
	draining bool

	out []string // every output, for the determinism check
}

func runCore(t *testing.T, in coreInput) []string {
	r := &coreRun{
		t: t, in: in, l: in.limits(), cidOf: coreUniverse(), nameOf: make(map[cid.Cid]string),
		lookups: make(map[peer.ID][]lookup), results: make(map[uint64]lookupResult),
		types: make(map[uint64]message.Entry), due: make(map[peer.ID]bool),
		held: make(map[peer.ID]map[cid.Cid]bool), restorable: make(map[peer.ID]map[cid.Cid]uint64),
		failures: make(map[peer.ID]int), outstanding: make(map[peer.ID]int),
		parkedAt: make(map[parkKey]int),
	}
	r.c = newCore(r.l)
	r.c.recordEvicted = true
	for i, c := range r.cidOf {
		r.nameOf[c] = fmt.Sprintf("c%d", i)
	}
	for i := range corePeers {
		r.peerOf = append(r.peerOf, peer.ID(fmt.Sprintf("p%d", i)))
	}
	for i, e := range in.evs {
		r.step = i
		r.apply(e)
		r.check()
	}
	r.drain()
	return r.out
}

func (r *coreRun) fatalf(format string, args ...any) {
	r.t.Helper()
	where := fmt.Sprintf("step %d", r.step)
	if r.draining {
		where = "after the inputs, serving what is left"
	}
	in := r.in
	in.evs = in.evs[:min(r.step+1, len(in.evs))]
	msg := fmt.Sprintf("%s: %s\ninputs:\n%s", where, fmt.Sprintf(format, args...), in)
	for i, p := range r.peerOf { // peer IDs print in base58
		msg = strings.ReplaceAll(msg, p.String(), fmt.Sprintf("p%d", i))
	}
	r.t.Fatal(msg)
}

func (r *coreRun) name(c cid.Cid) string { return r.nameOf[c] }

func (r *coreRun) emit(format string, args ...any) {
	r.out = append(r.out, fmt.Sprintf(format, args...))
}

func (r *coreRun) heldOf(p peer.ID) map[cid.Cid]bool {
	if r.held[p] == nil {
		r.held[p] = make(map[cid.Cid]bool)
	}
	return r.held[p]
}

func (r *coreRun) total() int {
	n := 0
	for _, m := range r.held {
		n += len(m)
	}
	return n
}

// modelWant applies one want to the model as the limits allow.
func (r *coreRun) modelWant(p peer.ID, c cid.Cid) {
	h := r.heldOf(p)
	if h[c] || c.ByteLen() > r.l.maxCidSize {
		return
	}
	if len(h) >= r.l.maxWantsPerPeer {
		return
	}
	if r.total() >= r.l.maxWantsTotal && !r.displaced(p, c) {
		return
	}
	h[c] = true
}

// displaced applies the core's next displacement if it made room for p's
// want c: the victim was held, by a peer holding at least two more than p,
// and is held no more. Which peer among the largest and which of its
// unchecked wants are the core's choice.
func (r *coreRun) displaced(p peer.ID, c cid.Cid) bool {
	log := r.c.displacedLog
	if len(log) == 0 || log[0].for_ != (wantRef{p, c}) {
		return false
	}
	d := log[0]
	r.c.displacedLog = log[1:]
	v := d.victim
	if !r.held[v.peer][v.cid] {
		r.fatalf("displaced %s of %s, which the peer does not hold", r.name(v.cid), v.peer)
	}
	if len(r.held[v.peer]) < len(r.held[p])+2 {
		r.fatalf("displaced %s of %s (holding %d) for %s (holding %d)", r.name(v.cid), v.peer, len(r.held[v.peer]), p, len(r.held[p]))
	}
	if pw := r.c.peers[v.peer]; pw != nil && pw.wants[v.cid] == v {
		r.fatalf("displaced %s of %s, still in its wantlist", r.name(v.cid), v.peer)
	}
	delete(r.held[v.peer], v.cid)
	r.emit("displaced %s:%s for %s:%s", v.peer, r.name(v.cid), p, r.name(c))
	return true
}

func (r *coreRun) modelCancel(p peer.ID, c cid.Cid) {
	delete(r.held[p], c)
	delete(r.restorable[p], c)
}

func (r *coreRun) modelRemove(p peer.ID) {
	delete(r.held, p)
	delete(r.restorable, p)
	delete(r.failures, p)
}

func (r *coreRun) apply(e coreEvent) {
	switch e.kind {
	case cReceive:
		p := r.peerOf[e.peer]
		entries := make([]message.Entry, len(e.entries))
		for i, x := range e.entries {
			entries[i] = message.Entry{Cid: r.cidOf[x.cid], Priority: int32(x.prio), Cancel: x.cancel, SendDontHave: x.sdh}
			if x.block {
				entries[i].WantType = message.WantBlock
			} else {
				entries[i].WantType = message.WantHave
			}
		}
		// The core first, then the model, which checks the core's
		// displacements (over the total cap) as it goes.
		known := r.c.peers[p] != nil
		eff := r.c.receive(p, e.full, entries)
		r.emit("receive %s: %+v", p, eff)
		r.checkEffects("receive", p, eff)
		if e.full && known {
			keep := make(map[cid.Cid]bool)
			for _, x := range entries {
				if !x.Cancel {
					keep[x.Cid] = true
				}
			}
			for c := range r.held[p] {
				if !keep[c] {
					r.modelCancel(p, c)
				}
			}
			for c := range r.restorable[p] {
				if !keep[c] {
					delete(r.restorable[p], c)
				}
			}
		}
		for _, x := range entries {
			if x.Cancel {
				r.modelCancel(p, x.Cid)
			} else {
				r.modelWant(p, x.Cid)
			}
		}
		if n := len(r.c.displacedLog); n > 0 {
			r.fatalf("%d displacements the model did not expect", n)
		}
		if len(eff.lookup) > 0 {
			r.due[p] = true
		}
	case cLookups:
		p := r.peerOf[e.peer]
		if !r.due[p] {
			return // the Engine refills a peer only when told to
		}
		r.refillOnce(p, e.n)
	case cLookupDone:
		p := r.peerOf[e.peer]
		var res []lookupResult
		for _, x := range e.results {
			ls := r.lookups[p]
			if len(ls) == 0 {
				break
			}
			i := x.pick % len(ls)
			res = append(res, lookupResult{lookup: ls[i], have: x.have, size: fuzzSizes[x.size]})
			if x.err {
				res[len(res)-1].err = fmt.Errorf("blockstore failed")
			}
			r.lookups[p] = slices.Delete(ls, i, i+1)
		}
		if len(res) == 0 {
			return
		}
		r.answer(p, res)
	case cPop:
		r.pop(fuzzTargets[e.n])
	case cDone:
		if len(r.batches) == 0 {
			return
		}
		i := e.n % len(r.batches)
		b := r.batches[i]
		r.batches = slices.Delete(r.batches, i, i+1)
		empty := e.empty
		for _, t := range b.tasks {
			if t.kind != sendBlock {
				empty = false // a presence always makes a message
			}
		}
		r.done(b, e.sent, empty)
	case cArrived:
		keys := make([]cid.Cid, len(e.cids))
		for i, x := range e.cids {
			keys[i] = r.cidOf[x]
		}
		r.arrived(keys)
	case cRemove:
		p := r.peerOf[e.peer]
		r.modelRemove(p)
		r.c.removePeer(p)
		r.emit("removePeer %s", p)
		if r.c.peers[p] != nil {
			r.fatalf("removePeer(%s) left its wantlist", p)
		}
		if pq := r.c.tq.peers[p]; pq != nil && (pq.tasks.Len() > 0 || len(pq.byCid) > 0 || pq.inRing) {
			r.fatalf("removePeer(%s) left %d tasks queued", p, pq.tasks.Len())
		}
	}
}

// refillOnce does one round of the Engine's refill loop for p: it reports
// whether lookups were handed out.
func (r *coreRun) refillOnce(p peer.ID, max int) bool {
	ls := r.c.nextLookups(p, max)
	var names []string
	for _, l := range ls {
		names = append(names, fmt.Sprintf("%s#%d", r.name(l.cid), l.seq))
	}
	r.emit("nextLookups %s %d: %v", p, max, names)
	if len(ls) == 0 {
		r.due[p] = false // the refill loop ends
		return false
	}
	if len(ls) > max {
		r.fatalf("nextLookups(%s, %d) handed out %d", p, max, len(ls))
	}
	pw := r.c.peers[p]
	for _, l := range ls {
		w := pw.wants[l.cid]
		if w == nil || w.seq != l.seq || w.state != wantChecking {
			r.fatalf("lookup %s seq %d handed out for no checking want", r.name(l.cid), l.seq)
		}
		r.types[l.seq] = message.Entry{Cid: w.cid, WantType: w.wantType, SendDontHave: w.sendDontHave}
	}
	r.lookups[p] = append(r.lookups[p], ls...)
	return true
}

func (r *coreRun) answer(p peer.ID, res []lookupResult) {
	for _, x := range res {
		r.results[x.seq] = x
	}
	eff := r.c.lookupDone(p, res)
	r.emit("lookupDone %s: %+v", p, eff)
	r.checkEffects("lookupDone", p, eff)
	r.takeEvictions()
	// The driver's refill loop goes on only if the core asks for p's
	// lookups: if it has unchecked wants and does not say so, they wedge
	// (drain finds them).
	r.due[p] = len(eff.lookup) > 0
}

// checkEffects checks the effects of a call for p that can only make p's
// lookups due: they name p alone, exactly when it has unchecked wants, and
// ready (if set) means that a turn is ready.
func (r *coreRun) checkEffects(call string, p peer.ID, eff effects) {
	pw := r.c.peers[p]
	due := pw != nil && pw.unchecked.Len() > 0
	if len(eff.lookup) > 1 || len(eff.lookup) == 1 && eff.lookup[0] != p || (len(eff.lookup) == 1) != due {
		r.fatalf("%s(%s) asks for the lookups of %v; %s has unchecked wants: %v", call, p, eff.lookup, p, due)
	}
	if eff.ready && call != "lookupDone" && !r.c.tq.ready() {
		r.fatalf("%s(%s) says a turn is ready, and none is", call, p)
	}
}

func (r *coreRun) pop(target int) {
	ready := r.c.tq.ready()
	before := make(map[peer.ID]int)
	for id, pq := range r.c.tq.peers {
		before[id] = pq.outstanding
	}
	p, tasks, pending, ok := r.c.pop(target)
	r.emit("pop %d: %s %v %d %v", target, p, r.kinds(tasks), pending, ok)
	if ok != ready {
		r.fatalf("pop: ok=%v but ready()=%v", ok, ready)
	}
	if !ok {
		return
	}
	if len(tasks) == 0 {
		r.fatalf("pop gave %s an empty turn", p)
	}
	size := 0
	for _, t := range tasks {
		size += t.size
	}
	if size > target && len(tasks) > 1 {
		r.fatalf("pop gave %s %d bytes in %d tasks over the target %d", p, size, len(tasks), target)
	}
	if before[p] > 0 && before[p] >= r.l.maxOutstanding {
		r.fatalf("pop served %s with %d bytes outstanding, cap %d", p, before[p], r.l.maxOutstanding)
	}
	if before[p]+size > r.l.maxOutstanding && len(tasks) > 1 {
		r.fatalf("pop took %s to %d bytes outstanding in %d tasks, cap %d", p, before[p]+size, len(tasks), r.l.maxOutstanding)
	}
	rest := 0
	if pq := r.c.tq.peers[p]; pq != nil {
		for i := range pq.tasks.Len() {
			rest += pq.tasks.At(i).size
		}
	}
	if pending != rest {
		r.fatalf("pop reported %d bytes pending for %s, %d are queued", pending, p, rest)
	}
	for _, t := range tasks {
		if !r.held[p][t.cid] {
			r.fatalf("task %s %s for %s, which does not hold that want (cancelled?)", r.kinds([]*task{t}), r.name(t.cid), p)
		}
		res, ok := r.results[t.seq]
		ent := r.types[t.seq]
		if !ok {
			r.fatalf("task for %s seq %d answers no lookup", r.name(t.cid), t.seq)
		}
		switch t.kind {
		case sendBlock, sendHave:
			if !res.have {
				r.fatalf("%s sent for %s, which the lookup did not find", r.kinds([]*task{t}), r.name(t.cid))
			}
			if t.kind == sendBlock && ent.WantType == message.WantHave && res.size > r.l.maxReplaceSize {
				r.fatalf("block of %d bytes sent for a want-have of %s (replace size %d)", res.size, r.name(t.cid), r.l.maxReplaceSize)
			}
		case sendDontHave:
			if res.have || res.err != nil || !ent.SendDontHave {
				r.fatalf("DONT_HAVE for %s: lookup have=%v err=%v, sendDontHave=%v", r.name(t.cid), res.have, res.err, ent.SendDontHave)
			}
		}
		if r.restorable[p] == nil {
			r.restorable[p] = make(map[cid.Cid]uint64)
		}
		r.restorable[p][t.cid] = t.seq
		if t.kind != sendDontHave {
			delete(r.held[p], t.cid) // served
		}
	}
	r.outstanding[p] += size
	r.batches = append(r.batches, batch{p: p, tasks: tasks})
	// After the loop above: parking a DONT_HAVE of this turn may have
	// evicted another of the same turn.
	r.takeEvictions()
}

type parkKey struct {
	w   *want
	seq uint64
}

// takeEvictions applies the evictions the core reports to the model: each
// evicted want was held and parked, is held no more, and was parked before
// every want still parked (as far as checks can tell: wants first seen
// parked at the same check are not ordered among themselves). A send in
// flight for it stays restorable.
func (r *coreRun) takeEvictions() {
	c := r.c
	if len(c.evicted) == 0 {
		return
	}
	oldestLeft, stampedLeft := 0, false
	for w := c.parked.head; w != nil; w = w.next {
		if at, ok := r.parkedAt[parkKey{w, w.seq}]; ok && (!stampedLeft || at < oldestLeft) {
			oldestLeft, stampedLeft = at, true
		}
	}
	var names []string
	for _, w := range c.evicted {
		p := w.peer
		names = append(names, fmt.Sprintf("%s:%s", p, r.name(w.cid)))
		if !r.held[p][w.cid] {
			r.fatalf("evicted %s of %s, which the peer does not hold", r.name(w.cid), p)
		}
		if pw := c.peers[p]; pw != nil && pw.wants[w.cid] == w {
			r.fatalf("evicted %s of %s, still in its wantlist", r.name(w.cid), p)
		}
		if c.parked.contains(w) || w.prev != nil || w.next != nil {
			r.fatalf("evicted %s of %s, still linked into the parked list", r.name(w.cid), p)
		}
		k := parkKey{w, w.seq}
		at, ok := r.parkedAt[k]
		switch {
		case ok && stampedLeft && at > oldestLeft:
			r.fatalf("evicted %s of %s, parked at check %d, before a want parked at check %d", r.name(w.cid), p, at, oldestLeft)
		case !ok && stampedLeft:
			r.fatalf("evicted %s of %s, parked just now, before a want parked at check %d", r.name(w.cid), p, oldestLeft)
		}
		delete(r.parkedAt, k)
		delete(r.held[p], w.cid)
		r.evictions++
	}
	r.emit("evicted %v", names)
	c.evicted = c.evicted[:0]
}

func (r *coreRun) done(b batch, sent, empty bool) {
	p := b.p
	for _, t := range b.tasks {
		r.outstanding[p] -= t.size // also for turns popped before a removePeer
	}
	if r.c.peers[p] != nil {
		switch {
		case sent:
			r.failures[p] = 0
			for _, t := range b.tasks {
				if r.restorable[p][t.cid] == t.seq {
					delete(r.restorable[p], t.cid)
				}
			}
		case r.failures[p]+1 >= r.l.maxSendFailures:
			r.modelRemove(p)
		default:
			r.failures[p]++
			for _, t := range b.tasks {
				if s, ok := r.restorable[p][t.cid]; ok && s == t.seq {
					delete(r.restorable[p], t.cid)
					r.modelWant(p, t.cid)
				}
			}
		}
	}
	eff := r.c.done(p, b.tasks, sent)
	r.emit("done %s %s sent=%v: %+v", p, r.kinds(b.tasks), sent, eff)
	r.checkEffects("done", p, eff)
	if eff.ready != r.c.tq.ready() {
		r.fatalf("done(%s) says a turn is ready: %v; one is: %v", p, eff.ready, r.c.tq.ready())
	}
	// What the Engine's worker does next: refill when the core says so,
	// whether or not the turn's message was empty (Engine.worker once
	// refilled only after a message went out, so an empty turn wedged the
	// peer's unchecked wants).
	_ = empty
	if len(eff.lookup) > 0 {
		r.due[p] = true
	}
}

func (r *coreRun) arrived(keys []cid.Cid) {
	hashes := make(map[string]bool)
	for _, k := range keys {
		hashes[string(k.Hash())] = true
	}
	wake := make(map[peer.ID]bool)
	woken := make(map[*want]bool)
	for p, pw := range r.c.peers {
		for _, w := range pw.wants {
			if w.state == wantParked && hashes[string(w.cid.Hash())] {
				wake[p] = true
				woken[w] = true
			}
		}
	}
	eff := r.c.blocksArrived(keys)
	ps := eff.lookup
	r.emit("blocksArrived: %+v", eff)
	if eff.ready {
		r.fatalf("blocksArrived says a turn is ready: it queues nothing")
	}
	if len(ps) != len(wake) {
		r.fatalf("blocksArrived woke %v, want the peers of parked wants %v", ps, wake)
	}
	for i, p := range ps {
		if !wake[p] || slices.Contains(ps[:i], p) {
			r.fatalf("blocksArrived woke %v, want the peers of parked wants %v", ps, wake)
		}
		r.due[p] = true
	}
	for w := range woken {
		if w.state != wantUnchecked {
			r.fatalf("parked want %s not woken by its block", r.name(w.cid))
		}
	}
}

func (r *coreRun) kinds(tasks []*task) string {
	var parts []string
	for _, t := range tasks {
		parts = append(parts, [...]string{"block", "have", "dont-have"}[t.kind]+":"+r.name(t.cid))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// check compares the core with the model and checks its consistency.
func (r *coreRun) check() {
	r.t.Helper()
	c := r.c
	if len(c.evicted) > 0 {
		r.fatalf("%d evictions outside lookupDone and pop", len(c.evicted))
	}
	if c.evictedWants != r.evictions {
		r.fatalf("evictedWants=%d, %d evictions reported", c.evictedWants, r.evictions)
	}
	// The parked list: sound links, each want once, held and parked, in
	// the order first seen parked.
	r.checks++
	inList := make(map[*want]bool)
	stamps := make(map[parkKey]int)
	var prev *want
	last := 0
	for w := c.parked.head; w != nil; w = w.next {
		if inList[w] {
			r.fatalf("%s of %s twice in the parked list", r.name(w.cid), w.peer)
		}
		inList[w] = true
		if w.prev != prev {
			r.fatalf("parked list: %s of %s has a wrong prev", r.name(w.cid), w.peer)
		}
		if pw := c.peers[w.peer]; pw == nil || pw.wants[w.cid] != w {
			r.fatalf("parked list holds %s of %s, which is not held", r.name(w.cid), w.peer)
		}
		if w.state != wantParked {
			r.fatalf("parked list holds %s of %s in state %d", r.name(w.cid), w.peer, w.state)
		}
		k := parkKey{w, w.seq}
		at, ok := r.parkedAt[k]
		if !ok {
			at = r.checks
		}
		if at < last {
			r.fatalf("parked list: %s of %s, parked at check %d, after one parked at check %d", r.name(w.cid), w.peer, at, last)
		}
		stamps[k], last = at, at
		prev = w
	}
	r.parkedAt = stamps
	if c.parked.tail != prev {
		r.fatalf("parked list's tail is not its last want")
	}
	if c.parked.n != len(inList) {
		r.fatalf("parked list counts %d, holds %d", c.parked.n, len(inList))
	}
	if r.l.maxParked > 0 && len(inList) > r.l.maxParked {
		r.fatalf("%d wants parked, cap %d", len(inList), r.l.maxParked)
	}
	total := 0
	refs := make(map[string]int)
	for p, pw := range c.peers {
		total += len(pw.wants)
		if len(pw.wants) > r.l.maxWantsPerPeer {
			r.fatalf("%s holds %d wants, cap %d", p, len(pw.wants), r.l.maxWantsPerPeer)
		}
		if len(pw.wants) == 0 && pw.active == 0 && pw.sendFailures == 0 && c.tq.peers[p] == nil {
			r.fatalf("%s's empty wantlist was kept", p)
		}
		active := 0
		outLookups := make(map[uint64]bool)
		for _, l := range r.lookups[p] {
			outLookups[l.seq] = true
		}
		pq := c.tq.peers[p]
		for k, w := range pw.wants {
			if w.cid != k {
				r.fatalf("%s's want %s filed under %s", p, r.name(w.cid), r.name(k))
			}
			refs[string(k.Hash())+string(p)+k.KeyString()]++
			inHeap := w.index >= 0 && int(w.index) < pw.unchecked.Len() && pw.unchecked.At(int(w.index)) == w
			var qt *task
			if pq != nil {
				qt = pq.byCid[k]
			}
			switch w.state {
			case wantUnchecked:
				if !inHeap {
					r.fatalf("%s's unchecked want %s is not in its heap", p, r.name(k))
				}
			case wantChecking:
				active++
				if !outLookups[w.seq] {
					r.fatalf("%s's want %s is checking but no lookup for it is out: it will never be answered", p, r.name(k))
				}
			case wantQueued:
				active++
				if qt == nil || qt.seq != w.seq || qt.index < 0 || pq.tasks.At(qt.index) != qt {
					r.fatalf("%s's want %s is queued but has no task", p, r.name(k))
				}
			case wantParked:
				if !inList[w] {
					r.fatalf("%s's parked want %s is not in the parked list", p, r.name(k))
				}
			default:
				r.fatalf("%s's want %s in state %d", p, r.name(k), w.state)
			}
			if w.peer != p {
				r.fatalf("%s's want %s names %s as its peer", p, r.name(k), w.peer)
			}
			if w.state != wantParked && (w.prev != nil || w.next != nil || c.parked.head == w) {
				r.fatalf("%s's want %s in state %d is linked into the parked list", p, r.name(k), w.state)
			}
			if w.state != wantUnchecked && (w.index >= 0 || inHeap) {
				r.fatalf("%s's want %s in state %d is also in the unchecked heap", p, r.name(k), w.state)
			}
			if w.state != wantQueued && qt != nil {
				r.fatalf("%s's want %s in state %d has a task queued", p, r.name(k), w.state)
			}
		}
		if active != pw.active {
			r.fatalf("%s: active=%d, %d wants checking or queued", p, pw.active, active)
		}
		if active > r.l.maxActivePerPeer {
			r.fatalf("%s: %d wants active, cap %d", p, active, r.l.maxActivePerPeer)
		}
		for i := range pw.unchecked.Len() {
			w := pw.unchecked.At(i)
			if pw.wants[w.cid] != w || int(w.index) != i {
				r.fatalf("%s's unchecked heap holds a stale want %s", p, r.name(w.cid))
			}
		}
	}
	if total != c.total {
		r.fatalf("core.total=%d, %d wants held", c.total, total)
	}
	if total > r.l.maxWantsTotal {
		r.fatalf("%d wants held, cap %d", total, r.l.maxWantsTotal)
	}
	n := 0
	for h, head := range c.byHash {
		if head == nil {
			r.fatalf("empty hash index entry")
		}
		for w, steps := head, 0; w != nil; w, steps = w.sameHash, steps+1 {
			if steps > total {
				r.fatalf("hash index chain for %x loops", h)
			}
			n++
			pw := c.peers[w.peer]
			if pw == nil || pw.wants[w.cid] != w || string(w.cid.Hash()) != h {
				r.fatalf("hash index names %s of %s, which is not held", r.name(w.cid), w.peer)
			}
			refs[h+string(w.peer)+w.cid.KeyString()]--
		}
	}
	for _, v := range refs {
		if v != 0 {
			r.fatalf("hash index and wantlists disagree")
		}
	}
	if n != total {
		r.fatalf("hash index holds %d refs for %d wants", n, total)
	}
	// The model: exactly the wants the peer asked for and still holds.
	for _, p := range r.peerOf {
		var got []string
		if pw := c.peers[p]; pw != nil {
			for k := range pw.wants {
				got = append(got, r.name(k))
			}
		}
		var want []string
		for k := range r.held[p] {
			want = append(want, r.name(k))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			r.fatalf("%s's wantlist is %v, the peer's wants held should be %v", p, got, want)
		}
	}
	// The task queue.
	inRing := make(map[peer.ID]bool)
	for _, pq := range c.tq.ring {
		if inRing[pq.id] || !pq.inRing || pq.tasks.Len() == 0 || c.tq.peers[pq.id] != pq {
			r.fatalf("task queue ring is inconsistent at %s", pq.id)
		}
		inRing[pq.id] = true
	}
	// next may be len(ring): the turn after the last peer's, which goes to
	// a peer that joins the ring before it wraps.
	if c.tq.next > len(c.tq.ring) || c.tq.next < 0 {
		r.fatalf("task queue's next turn %d past its ring of %d", c.tq.next, len(c.tq.ring))
	}
	for id, pq := range c.tq.peers {
		if pq.tasks.Len() > 0 != inRing[id] || len(pq.byCid) != pq.tasks.Len() {
			r.fatalf("task queue for %s: %d tasks, %d by CID, in ring %v", id, pq.tasks.Len(), len(pq.byCid), inRing[id])
		}
		if pq.tasks.Len() == 0 && pq.outstanding == 0 {
			r.fatalf("task queue keeps idle %s", id)
		}
		pw := c.peers[id]
		for i := range pq.tasks.Len() {
			t := pq.tasks.At(i)
			if pq.byCid[t.cid] != t || t.index != i {
				r.fatalf("task queue for %s: task %s misfiled", id, r.name(t.cid))
			}
			if pw == nil || pw.wants[t.cid] == nil || pw.wants[t.cid].seq != t.seq {
				r.fatalf("task %s queued for %s answers no want it holds", r.name(t.cid), id)
			}
		}
	}
	for _, p := range r.peerOf {
		got := 0
		if pq := c.tq.peers[p]; pq != nil {
			got = pq.outstanding
		}
		if got != r.outstanding[p] {
			r.fatalf("%s: %d bytes outstanding, %d popped and not done", p, got, r.outstanding[p])
		}
	}
}

// drain does what the Engine's goroutines would go on doing once no more
// messages arrive: answer every lookup (the blockstore has c0, c3, c6, c8
// ... of assorted sizes), refill peers the core said have lookups to do,
// pop and send every turn. Then every want still held must be parked.
func (r *coreRun) drain() {
	r.draining = true
	for round := 0; ; round++ {
		if round > 10000 {
			r.fatalf("the core never settles")
		}
		progress := false
		for _, p := range r.peerOf {
			if ls := r.lookups[p]; len(ls) > 0 {
				res := make([]lookupResult, len(ls))
				for i, l := range ls {
					idx := slices.Index(r.cidOf, l.cid)
					res[i] = lookupResult{lookup: l, have: idx%3 == 0, size: fuzzSizes[idx%len(fuzzSizes)]}
				}
				r.lookups[p] = nil
				r.answer(p, res)
				progress = true
			}
		}
		for _, p := range r.peerOf {
			if r.due[p] && r.refillOnce(p, r.l.maxActivePerPeer) {
				progress = true
			}
		}
		if len(r.batches) > 0 {
			b := r.batches[0]
			r.batches = r.batches[1:]
			r.done(b, true, false)
			progress = true
		} else if r.c.tq.ready() {
			r.pop(1 << 20)
			progress = true
		}
		r.check()
		if !progress {
			break
		}
	}
	for p, pw := range r.c.peers {
		for k, w := range pw.wants {
			if w.state != wantParked {
				r.fatalf("%s's want %s is left in state %d with nothing left to move it: wedged", p, r.name(k), w.state)
			}
		}
	}
	if len(r.c.tq.peers) > 0 {
		r.fatalf("task queue still holds %d peers", len(r.c.tq.peers))
	}
}

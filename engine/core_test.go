package engine

import (
	"context"
	"fmt"
	"sync"
	"testing"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/gobitswap/bitswap/message"
)

// These tests drive the server's decision logic step by step: messages in,
// lookups answered by a map standing in for the blockstore, tasks out.

func testCid(t testing.TB, i int) cid.Cid {
	t.Helper()
	h, err := mh.Sum([]byte(fmt.Sprintf("block %d", i)), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

func defaultLimits() limits {
	return limits{
		maxWantsPerPeer:  DefaultMaxWantsPerPeer,
		maxWantsTotal:    DefaultMaxWantsTotal,
		maxActivePerPeer: DefaultMaxActiveWantsPerPeer,
		maxCidSize:       DefaultMaxCidSize,
		maxReplaceSize:   DefaultWantHaveReplaceSize,
		maxOutstanding:   DefaultMaxOutstandingBytes,
		maxSendFailures:  defaultMaxSendFailures,
		maxParked:        DefaultMaxParkedWants,
	}
}

// harness runs core through the Engine's driver against a map of block
// sizes, synchronously: a turn with nothing ready returns at once, and
// refills queued by arriving blocks run before arrived returns.
type harness struct {
	t     *testing.T
	c     *core
	d     *driver
	sizes map[cid.Cid]int // what the "blockstore" holds
}

func newHarness(t *testing.T, l limits) *harness {
	h := &harness{t: t, c: newCore(l), sizes: make(map[cid.Cid]int)}
	h.d = newDriver(h.c, &sync.Mutex{}, h.lookup, false)
	return h
}

// lookup is the driver's blockstore: the map of sizes.
func (h *harness) lookup(_ context.Context, _ peer.ID, todo []lookup) []lookupResult {
	res := make([]lookupResult, len(todo))
	for i, l := range todo {
		size, ok := h.sizes[l.cid]
		res[i] = lookupResult{lookup: l, have: ok, size: size}
	}
	return res
}

// receive gives the driver a wantlist and does the lookups it asks for,
// as MessageReceived does.
func (h *harness) receive(p peer.ID, full bool, entries ...message.Entry) {
	eff, _, _ := h.d.receive(p, full, entries)
	h.d.apply(context.Background(), eff)
}

// pop runs one turn, sent, as a worker does.
func (h *harness) pop(target int) (peer.ID, []*task, bool) {
	var got turn
	ok := h.d.runTurn(context.Background(), target, func(t turn) sendOutcome {
		got = t
		return sendOutcome{sent: true}
	})
	return got.p, got.tasks, ok
}

// finish reports how a turn held since h.d.pop went, and does the lookups
// that asks for, as a worker does.
func (h *harness) finish(t turn, sent bool) {
	h.d.apply(context.Background(), h.d.done(t, sendOutcome{sent: sent}))
}

// arrived tells the driver that blocks arrived and runs the refills that
// queues, as the Engine's refiller does.
func (h *harness) arrived(keys ...cid.Cid) effects {
	eff := h.d.arrived(keys)
	h.d.runRefills(context.Background())
	return eff
}

func wantEntry(c cid.Cid, wt message.WantType, sendDontHave bool) message.Entry {
	return message.Entry{Cid: c, Priority: 1, WantType: wt, SendDontHave: sendDontHave}
}

func kinds(tasks []*task) string {
	s := ""
	for _, t := range tasks {
		s += [...]string{"block ", "have ", "dont-have "}[t.kind]
	}
	return s
}

func TestCoreAnswers(t *testing.T) {
	const p = peer.ID("peer")
	small, big, missing := testCid(t, 1), testCid(t, 2), testCid(t, 3)
	cases := []struct {
		name  string
		entry message.Entry
		want  string // kinds of tasks queued
		kept  bool   // the want stays in the wantlist afterwards
	}{
		{"want-block for a block we have gets the block", wantEntry(big, message.WantBlock, false), "block ", false},
		{"want-have for a small block gets the block itself", wantEntry(small, message.WantHave, false), "block ", false},
		{"want-have for a large block gets HAVE", wantEntry(big, message.WantHave, false), "have ", false},
		{"want-have with sendDontHave for a missing block gets DONT_HAVE", wantEntry(missing, message.WantHave, true), "dont-have ", true},
		{"want-block with sendDontHave for a missing block gets DONT_HAVE", wantEntry(missing, message.WantBlock, true), "dont-have ", true},
		{"want-block for a missing block waits silently", wantEntry(missing, message.WantBlock, false), "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, defaultLimits())
			h.sizes[small] = 1024
			h.sizes[big] = 1025
			h.receive(p, false, tc.entry)
			_, tasks, _ := h.pop(1 << 20)
			if got := kinds(tasks); got != tc.want {
				t.Fatalf("tasks = %q, want %q", got, tc.want)
			}
			if kept := len(h.c.wantlist(p)) == 1; kept != tc.kept {
				t.Fatalf("want kept = %v, want %v", kept, tc.kept)
			}
		})
	}
}

func TestCoreServesBlockThatArrivesLater(t *testing.T) {
	const p = peer.ID("peer")
	c := testCid(t, 1)
	h := newHarness(t, defaultLimits())
	h.receive(p, false, wantEntry(c, message.WantHave, true))
	if _, tasks, _ := h.pop(1 << 20); kinds(tasks) != "dont-have " {
		t.Fatalf("first answer = %q, want DONT_HAVE", kinds(tasks))
	}
	// Nothing more is said while the block is missing.
	if _, _, ok := h.pop(1 << 20); ok {
		t.Fatal("a second answer was queued for a block that is still missing")
	}
	h.sizes[c] = 5000
	h.arrived(c)
	if _, tasks, _ := h.pop(1 << 20); kinds(tasks) != "have " {
		t.Fatalf("answer after arrival = %q, want HAVE", kinds(tasks))
	}
	if n := len(h.c.wantlist(p)); n != 0 {
		t.Fatalf("wantlist holds %d entries after HAVE, want 0", n)
	}
}

func TestCoreArrivalUnderOtherCidVersionServesWant(t *testing.T) {
	const p = peer.ID("peer")
	v1 := testCid(t, 1)
	v0 := cid.NewCidV0(v1.Hash())
	h := newHarness(t, defaultLimits())
	h.receive(p, false, wantEntry(v0, message.WantBlock, false))
	h.sizes[v0] = 10 // the blockstore keys by multihash
	peers := h.arrived(v1).lookup
	if len(peers) != 1 || peers[0] != p {
		t.Fatalf("blocksArrived woke %v, want [%s]", peers, p)
	}
	_, tasks, _ := h.pop(1 << 20)
	if len(tasks) != 1 || !tasks[0].cid.Equals(v0) {
		t.Fatalf("served %v, want the block under the CID asked for (%s)", tasks, v0)
	}
}

func TestCoreCancelAndFullWantlist(t *testing.T) {
	const p = peer.ID("peer")
	a, b, c := testCid(t, 1), testCid(t, 2), testCid(t, 3)
	h := newHarness(t, defaultLimits())
	h.receive(p, false, wantEntry(a, message.WantBlock, false), wantEntry(b, message.WantBlock, false))

	// A cancel removes a want even after its task was queued.
	h.sizes[a] = 100
	h.receive(p, false, wantEntry(a, message.WantBlock, false))
	h.receive(p, false, message.Entry{Cid: a, Cancel: true})
	if _, _, ok := h.pop(1 << 20); ok {
		t.Fatal("a cancelled want was still served")
	}

	// A full wantlist replaces everything before it.
	h.receive(p, true, wantEntry(c, message.WantBlock, false))
	got := h.c.wantlist(p)
	if len(got) != 1 || !got[0].Equals(c) {
		t.Fatalf("wantlist after full update = %v, want [%s]", got, c)
	}
	if h.c.total != 1 || len(h.c.byHash) != 1 {
		t.Fatalf("index holds %d wants / %d hashes, want 1/1", h.c.total, len(h.c.byHash))
	}
}

func TestCoreLimits(t *testing.T) {
	l := defaultLimits()
	l.maxWantsPerPeer, l.maxWantsTotal, l.maxCidSize = 3, 5, 40
	h := newHarness(t, l)
	var entries []message.Entry
	for i := range 10 {
		entries = append(entries, wantEntry(testCid(t, i), message.WantBlock, false))
	}
	h.receive("a", false, entries...)
	h.receive("b", false, entries...)
	h.receive("c", false, entries...)
	if n := len(h.c.wantlist("a")); n != 3 {
		t.Fatalf("peer a holds %d wants, want the per-peer cap 3", n)
	}
	if h.c.total != 5 {
		t.Fatalf("total wants held = %d, want the global cap 5", h.c.total)
	}
	if h.c.droppedWants != 25 {
		t.Fatalf("dropped = %d, want 25", h.c.droppedWants)
	}

	long, _ := mh.Sum([]byte("x"), mh.SHA2_512, -1) // CID of 4+64 bytes > 40
	h.receive("d", false, wantEntry(cid.NewCidV1(cid.Raw, long), message.WantBlock, false))
	if n := len(h.c.wantlist("d")); n != 0 {
		t.Fatalf("a CID over the size limit was accepted")
	}
}

// A peer that asks for far more than the active cap, with the first wants
// naming blocks we lack, is still served everything we have.
func TestCoreOverflowNeverWedges(t *testing.T) {
	const p = peer.ID("flood")
	l := defaultLimits()
	l.maxActivePerPeer = 100
	h := newHarness(t, l)
	var entries []message.Entry
	for i := range 5000 {
		c := testCid(t, i)
		if i >= 200 { // the first 200 (two full windows) are missing
			h.sizes[c] = 4096
		}
		entries = append(entries, message.Entry{Cid: c, Priority: int32(5000 - i), WantType: message.WantBlock})
	}
	h.receive(p, false, entries...)
	if a := h.c.peers[p].active; a > 100 {
		t.Fatalf("%d wants active, cap is 100", a)
	}
	served := 0
	for {
		_, tasks, ok := h.pop(16 << 10)
		if !ok {
			break
		}
		served += len(tasks)
	}
	if served != 4800 {
		t.Fatalf("served %d blocks, want 4800", served)
	}
	if n := len(h.c.wantlist(p)); n != 200 {
		t.Fatalf("%d wants left, want the 200 missing ones", n)
	}
}

func TestCoreSendFailureRestoresWants(t *testing.T) {
	const p = peer.ID("peer")
	c := testCid(t, 1)
	h := newHarness(t, defaultLimits())
	h.sizes[c] = 10
	h.receive(p, false, wantEntry(c, message.WantBlock, false))
	for i := 1; i <= defaultMaxSendFailures; i++ {
		tn, ok := h.d.pop(1 << 20)
		if !ok || tn.p != p {
			t.Fatalf("attempt %d: nothing to send", i)
		}
		h.finish(tn, false)
		restored := len(h.c.wantlist(p)) == 1
		if i < defaultMaxSendFailures && !restored {
			t.Fatalf("after failure %d the want was lost", i)
		}
		if i == defaultMaxSendFailures && restored {
			t.Fatalf("after %d failures the peer's wants were kept", i)
		}
	}
}

func TestCorePeerRemovedWhileSending(t *testing.T) {
	const p = peer.ID("peer")
	c := testCid(t, 1)
	h := newHarness(t, defaultLimits())
	h.sizes[c] = 10
	h.receive(p, false, wantEntry(c, message.WantBlock, false))
	tn, _ := h.d.pop(1 << 20)
	h.c.removePeer(p)
	h.finish(tn, false)
	if len(h.c.peers) != 0 || len(h.c.tq.peers) != 0 {
		t.Fatal("state for a disconnected peer came back after its send failed")
	}
}

func TestTaskQueueTakesTurnsAcrossPeers(t *testing.T) {
	q := newTaskQueue(1 << 20)
	for i := range 100 {
		q.push("a", &task{cid: testCid(t, i), size: 4096, seq: uint64(i)})
		q.push("b", &task{cid: testCid(t, 1000+i), size: 4096, seq: uint64(1000 + i)})
	}
	var order []peer.ID
	for {
		p, tasks, _, ok := q.pop(4096)
		if !ok {
			break
		}
		q.done(p, tasks)
		order = append(order, p)
	}
	if len(order) != 200 {
		t.Fatalf("%d turns, want 200", len(order))
	}
	for i := 1; i < len(order); i++ {
		if order[i] == order[i-1] {
			t.Fatalf("peer %s served twice in a row at turn %d: %v", order[i], i, order)
		}
	}
}

func TestTaskQueueNewcomerServedPromptly(t *testing.T) {
	q := newTaskQueue(1 << 20)
	for i := range 1024 {
		q.push("busy", &task{cid: testCid(t, i), size: 256 << 10, priority: 100, seq: uint64(i)})
	}
	// The busy peer is mid-transfer: some of its work is in flight.
	p, inflight, _, _ := q.pop(16 << 10)
	if p != "busy" {
		t.Fatal("expected busy peer first")
	}
	q.push("new", &task{cid: testCid(t, 5000), size: 256 << 10, priority: 1, seq: 5000})
	for turn := 1; turn <= 2; turn++ {
		p, tasks, _, ok := q.pop(16 << 10)
		if !ok {
			t.Fatal("queue stalled")
		}
		q.done(p, tasks)
		if p == "new" {
			q.done("busy", inflight)
			return
		}
	}
	t.Fatal("the new peer was not served within 2 turns")
}

func TestTaskQueueOutstandingCap(t *testing.T) {
	q := newTaskQueue(100 << 10)
	for i := range 10 {
		q.push("a", &task{cid: testCid(t, i), size: 64 << 10, seq: uint64(i)})
	}
	p, first, _, _ := q.pop(16 << 10)
	if _, _, _, ok := q.pop(16 << 10); !ok {
		t.Fatal("second 64 KiB task refused while only 64 KiB of 100 KiB is in flight")
	}
	if _, _, _, ok := q.pop(16 << 10); ok {
		t.Fatal("third task popped with 128 KiB in flight over a 100 KiB cap")
	}
	q.done(p, first)
	if !q.ready() {
		t.Fatal("peer not ready after its in-flight work completed")
	}

	// A task larger than the cap still goes when nothing else is in flight.
	q2 := newTaskQueue(1 << 20)
	q2.push("a", &task{cid: testCid(t, 1), size: 2 << 20})
	if _, tasks, _, ok := q2.pop(16 << 10); !ok || len(tasks) != 1 {
		t.Fatal("a 2 MiB block never fits under a 1 MiB cap and must go alone")
	}
}

func TestTaskQueueHonoursPriority(t *testing.T) {
	q := newTaskQueue(1 << 20)
	for i, prio := range []int32{1, 5, 3} {
		q.push("a", &task{cid: testCid(t, i), priority: prio, size: 10, seq: uint64(i)})
	}
	_, tasks, _, _ := q.pop(1 << 20)
	var got []int32
	for _, t := range tasks {
		got = append(got, t.priority)
	}
	if fmt.Sprint(got) != "[5 3 1]" {
		t.Fatalf("popped priorities %v, want [5 3 1]", got)
	}
}

func TestTaskQueueSendsPresencesBeforeBlocks(t *testing.T) {
	q := newTaskQueue(1 << 20)
	q.push("a", &task{cid: testCid(t, 1), kind: sendBlock, priority: 9, size: 256 << 10, seq: 1})
	q.push("a", &task{cid: testCid(t, 2), kind: sendDontHave, priority: 1, size: 36, seq: 2})
	q.push("a", &task{cid: testCid(t, 3), kind: sendHave, priority: 1, size: 36, seq: 3})
	_, tasks, _, _ := q.pop(16 << 10)
	if kinds(tasks) != "dont-have have " {
		t.Fatalf("first message carries %q; presences must not wait behind blocks", kinds(tasks))
	}
	q.done("a", tasks)
	if _, tasks, _, _ = q.pop(16 << 10); kinds(tasks) != "block " {
		t.Fatalf("second message carries %q, want the block", kinds(tasks))
	}
}

// A block that arrives after we said DONT_HAVE for a want-block is
// announced with HAVE, not pushed: the client has most likely fetched it
// elsewhere meanwhile. Asked again, we send it.
func TestCoreLateLargeBlockAfterDontHaveIsAnnouncedNotPushed(t *testing.T) {
	const p = peer.ID("peer")
	c := testCid(t, 1)
	h := newHarness(t, defaultLimits())
	h.receive(p, false, wantEntry(c, message.WantBlock, true))
	if _, tasks, _ := h.pop(1 << 20); kinds(tasks) != "dont-have " {
		t.Fatalf("first answer %q", kinds(tasks))
	}
	h.sizes[c] = 256 << 10
	h.arrived(c)
	if _, tasks, _ := h.pop(1 << 20); kinds(tasks) != "have " {
		t.Fatalf("after the block arrived: %q, want HAVE", kinds(tasks))
	}
	h.receive(p, false, wantEntry(c, message.WantBlock, true))
	if _, tasks, _ := h.pop(1 << 20); kinds(tasks) != "block " {
		t.Fatalf("asked again: %q, want the block", kinds(tasks))
	}
}

// Found by a FuzzCore seed: a want cancelled while its block was being sent came
// back when the send failed, and was served again.
func TestCoreCancelDuringFailedSendStaysCancelled(t *testing.T) {
	const p = peer.ID("peer")
	a, b := testCid(t, 1), testCid(t, 2)
	h := newHarness(t, defaultLimits())
	h.sizes[a], h.sizes[b] = 10, 10
	h.receive(p, false, wantEntry(a, message.WantBlock, false), wantEntry(b, message.WantBlock, true))
	tn, _ := h.d.pop(1 << 20)
	h.receive(p, false, message.Entry{Cid: a, Cancel: true})
	h.finish(tn, false)
	got := h.c.wantlist(p)
	if len(got) != 1 || !got[0].Equals(b) {
		t.Fatalf("wantlist after the failed send = %v, want only %s (the peer cancelled %s)", got, b, a)
	}
	// The one it did not cancel is restored as it was asked: with sendDontHave.
	if w := h.c.peers[p].wants[b]; !w.sendDontHave || w.wantType != message.WantBlock {
		t.Fatalf("restored want: type %v sendDontHave %v", w.wantType, w.sendDontHave)
	}
}

// Found by a FuzzCore seed: a peer removed while a send to it was in flight, and
// back with a new wantlist before the send failed, had its old wants
// restored into the new wantlist.
func TestCoreFailedSendFromBeforeRemovalRestoresNothing(t *testing.T) {
	const p = peer.ID("peer")
	a, b := testCid(t, 1), testCid(t, 2)
	h := newHarness(t, defaultLimits())
	h.sizes[a] = 10
	h.receive(p, false, wantEntry(a, message.WantBlock, false))
	tn, _ := h.d.pop(1 << 20)
	h.c.removePeer(p)
	h.receive(p, false, wantEntry(b, message.WantBlock, false))
	h.finish(tn, false)
	got := h.c.wantlist(p)
	if len(got) != 1 || !got[0].Equals(b) {
		t.Fatalf("wantlist = %v, want only the new %s", got, b)
	}
}

// Found while modelling the core for FuzzCore: removePeer zeroed the peer's outstanding bytes while
// its turns were still being sent; when the peer came back, those turns'
// done subtracted their bytes from its new ones, and its cap was exceeded.
func TestCoreOutstandingBytesOutliveRemovePeer(t *testing.T) {
	const p = peer.ID("peer")
	l := defaultLimits()
	l.maxOutstanding = 1000
	h := newHarness(t, l)
	a, b := testCid(t, 1), testCid(t, 2)
	h.sizes[a], h.sizes[b] = 1000, 1000
	h.receive(p, false, wantEntry(a, message.WantBlock, false))
	old, _ := h.d.pop(1 << 20)
	h.c.removePeer(p)
	h.receive(p, false, wantEntry(b, message.WantBlock, false))
	if _, ok := h.d.pop(1 << 20); ok {
		t.Fatal("a second turn popped with the first's 1000 bytes still in flight, cap 1000")
	}
	h.finish(old, false)
	cur, ok := h.d.pop(1 << 20)
	if !ok {
		t.Fatal("nothing popped once the first turn was done")
	}
	if n := h.c.tq.peers[p].outstanding; n != 1000 {
		t.Fatalf("%d bytes outstanding, 1000 in flight", n)
	}
	h.finish(cur, true)
	if len(h.c.tq.peers) != 0 {
		t.Fatal("task queue state left after every turn was done")
	}
}

// The hash index keeps its order when wants leave it, so which peers a block
// wakes first (and the seqs their wants get) does not depend on the order in
// which other wants were forgotten, which removePeer and full wantlists take
// from a map. (FuzzCore checks that two runs of the same inputs agree.)
func TestCoreWakeOrderDoesNotDependOnForgetOrder(t *testing.T) {
	v1 := testCid(t, 1)
	v0 := cid.NewCidV0(v1.Hash())
	woken := func(first, second cid.Cid) []peer.ID {
		h := newHarness(t, defaultLimits())
		h.receive("p0", false, wantEntry(v1, message.WantBlock, false))
		h.receive("p1", false, wantEntry(v1, message.WantBlock, false))
		h.receive("p0", false, wantEntry(v0, message.WantBlock, false))
		h.receive("p2", false, wantEntry(v1, message.WantBlock, false))
		h.receive("p3", false, wantEntry(v1, message.WantBlock, false))
		h.receive("p0", false, message.Entry{Cid: first, Cancel: true}, message.Entry{Cid: second, Cancel: true})
		return h.c.blocksArrived([]cid.Cid{v1}).lookup
	}
	a, b := woken(v1, v0), woken(v0, v1)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("a block woke %v or %v depending on the order another peer's wants were cancelled in", a, b)
	}
}

// hashKey is the multihash of every CID version, without copying it.
func TestHashKeyIsTheMultihash(t *testing.T) {
	h, err := mh.Sum([]byte("data"), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []cid.Cid{
		cid.NewCidV0(h),
		cid.NewCidV1(cid.DagProtobuf, h),
		cid.NewCidV1(cid.Raw, h),
		cid.NewCidV1(0x300000, h), // a codec of several varint bytes
	} {
		if got := hashKey(c); got != string(h) {
			t.Errorf("hashKey(%s) = %x, want %x", c, got, []byte(h))
		}
	}
	if got := hashKey(cid.Undef); got != "" {
		t.Errorf("hashKey(Undef) = %q", got)
	}
}

// parkedWants lists the parked wants, oldest first, as peer:cid-index
// names, and checks the list's links on the way.
func parkedWants(t *testing.T, c *core, names map[cid.Cid]string) []string {
	t.Helper()
	var out []string
	var prev *want
	for w := c.parked.head; w != nil; w = w.next {
		if w.prev != prev || w.state != wantParked {
			t.Fatalf("parked list broken at %s", names[w.cid])
		}
		out = append(out, string(w.peer)+":"+names[w.cid])
		prev = w
	}
	if c.parked.tail != prev || c.parked.n != len(out) {
		t.Fatalf("parked list: tail or count (%d) does not match its %d wants", c.parked.n, len(out))
	}
	return out
}

func testCids(t *testing.T, n int) ([]cid.Cid, map[cid.Cid]string) {
	cs := make([]cid.Cid, n)
	names := make(map[cid.Cid]string)
	for i := range cs {
		cs[i] = testCid(t, i)
		names[cs[i]] = fmt.Sprintf("c%d", i)
	}
	return cs, names
}

// Parked wants, for blocks we lack, are capped for all peers together: past
// the cap the oldest parked want is forgotten, whoever's it is, and counted.
// A peer left with nothing is forgotten too. New wants are never refused
// for it.
func TestCoreParkedWantsCappedAcrossPeersOldestFirst(t *testing.T) {
	l := defaultLimits()
	l.maxParked = 4
	h := newHarness(t, l)
	cs, names := testCids(t, 9)
	for i, p := range []peer.ID{"a", "b", "c"} {
		for _, c := range cs[3*i : 3*i+3] {
			h.receive(p, false, wantEntry(c, message.WantBlock, false))
			if n := h.c.parked.n; n > 4 {
				t.Fatalf("%d wants parked, cap 4", n)
			}
		}
	}
	if got := fmt.Sprint(parkedWants(t, h.c, names)); got != "[b:c5 c:c6 c:c7 c:c8]" {
		t.Fatalf("parked = %s, want the newest four, oldest first", got)
	}
	if h.c.evictedWants != 5 || h.c.droppedWants != 0 {
		t.Fatalf("evicted %d, dropped %d; want 5 evicted, none dropped", h.c.evictedWants, h.c.droppedWants)
	}
	if h.c.total != 4 || len(h.c.byHash) != 4 {
		t.Fatalf("%d wants held, %d hashes indexed; want 4, 4", h.c.total, len(h.c.byHash))
	}
	if _, ok := h.c.peers["a"]; ok {
		t.Fatal("peer a, all of whose wants were evicted, is still kept")
	}
	if got := h.c.wantlist("b"); len(got) != 1 || !got[0].Equals(cs[5]) {
		t.Fatalf("b's wantlist = %v, want only its newest want", got)
	}
}

// Only parked wants are evicted: a peer whose want was evicted but that
// still has wants being looked up or served keeps them.
func TestCoreEvictionLeavesOtherWantsOfThePeer(t *testing.T) {
	l := defaultLimits()
	l.maxParked = 1
	h := newHarness(t, l)
	cs, _ := testCids(t, 3)
	h.sizes[cs[1]] = 10
	h.receive("a", false, wantEntry(cs[0], message.WantBlock, false)) // parked
	h.receive("a", false, wantEntry(cs[1], message.WantBlock, false)) // queued
	h.receive("b", false, wantEntry(cs[2], message.WantBlock, false)) // parks, evicts a's
	if h.c.evictedWants != 1 {
		t.Fatalf("evicted %d, want 1", h.c.evictedWants)
	}
	if got := h.c.wantlist("a"); len(got) != 1 || !got[0].Equals(cs[1]) {
		t.Fatalf("a's wantlist = %v, want its queued want only", got)
	}
	if p, tasks, _ := h.pop(1 << 20); p != "a" || kinds(tasks) != "block " {
		t.Fatalf("popped %s %q, want a's block", p, kinds(tasks))
	}
}

// A want leaves the parked list when its block arrives, when it is
// cancelled, and when the peer asks for it again; so the cap counts only
// wants still parked, and those wants are not evicted for others.
func TestCoreUnparkedWantsLeaveTheParkedList(t *testing.T) {
	cs, names := testCids(t, 3)
	x := cs[0]
	cases := []struct {
		name   string
		unpark func(h *harness)
		held   bool // a still holds x afterwards (not parked)
	}{
		{"block arrives", func(h *harness) { h.c.blocksArrived([]cid.Cid{x}) }, true},
		{"cancelled", func(h *harness) { h.c.receive("a", false, []message.Entry{{Cid: x, Cancel: true}}) }, false},
		{"asked again", func(h *harness) {
			h.c.receive("a", false, []message.Entry{wantEntry(x, message.WantBlock, false)})
		}, true},
		{"asked again, changed", func(h *harness) {
			h.c.receive("a", false, []message.Entry{wantEntry(x, message.WantHave, true)})
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := defaultLimits()
			l.maxParked = 2
			h := newHarness(t, l)
			h.receive("a", false, wantEntry(x, message.WantBlock, false))
			tc.unpark(h) // no lookup yet: x waits, unchecked
			if got := parkedWants(t, h.c, names); len(got) != 0 {
				t.Fatalf("parked = %v after x left parking", got)
			}
			h.receive("b", false, wantEntry(cs[1], message.WantBlock, false), wantEntry(cs[2], message.WantBlock, false))
			if got := fmt.Sprint(parkedWants(t, h.c, names)); got != "[b:c1 b:c2]" || h.c.evictedWants != 0 {
				t.Fatalf("parked = %s, %d evicted; want b's two and none evicted", got, h.c.evictedWants)
			}
			held := len(h.c.wantlist("a")) == 1
			if held != tc.held {
				t.Fatalf("a holds x: %v, want %v", held, tc.held)
			}
			if held && h.c.peers["a"].wants[x].state != wantUnchecked {
				t.Fatalf("x in state %d, want unchecked", h.c.peers["a"].wants[x].state)
			}
		})
	}
}

// An evicted want is forgotten as if cancelled: asked again, it is a new
// want, looked up afresh.
func TestCoreEvictedWantAskedAgainIsLookedUpAfresh(t *testing.T) {
	l := defaultLimits()
	l.maxParked = 1
	h := newHarness(t, l)
	cs, _ := testCids(t, 2)
	h.receive("a", false, wantEntry(cs[0], message.WantBlock, false))
	h.receive("b", false, wantEntry(cs[1], message.WantBlock, false)) // evicts a's
	h.sizes[cs[0]] = 10
	h.receive("a", false, wantEntry(cs[0], message.WantBlock, false))
	if p, tasks, _ := h.pop(1 << 20); p != "a" || kinds(tasks) != "block " {
		t.Fatalf("popped %s %q, want a's block", p, kinds(tasks))
	}
}

// A want evicted while its DONT_HAVE is being sent: the peer keeps its
// entry (the send is in flight), and if the send fails the want comes back,
// is looked up, and the peer hears DONT_HAVE after all; parking it again
// evicts the oldest other, and the list stays sound.
func TestCoreWantEvictedWhileItsDontHaveIsInFlight(t *testing.T) {
	for _, sent := range []bool{true, false} {
		t.Run(fmt.Sprintf("sent=%v", sent), func(t *testing.T) {
			l := defaultLimits()
			l.maxParked = 1
			h := newHarness(t, l)
			cs, names := testCids(t, 2)
			x, y := cs[0], cs[1]
			h.receive("a", false, wantEntry(x, message.WantHave, true))
			tn, _ := h.d.pop(1 << 20)
			if kinds(tn.tasks) != "dont-have " {
				t.Fatalf("popped %q, want DONT_HAVE", kinds(tn.tasks))
			}
			h.receive("b", false, wantEntry(y, message.WantBlock, false)) // evicts x
			if got := fmt.Sprint(parkedWants(t, h.c, names)); got != "[b:c1]" || h.c.evictedWants != 1 {
				t.Fatalf("parked = %s, %d evicted; want b's y, 1", got, h.c.evictedWants)
			}
			if h.c.peers["a"] == nil {
				t.Fatal("a was forgotten with its DONT_HAVE in flight")
			}
			h.finish(tn, sent)
			if sent {
				if h.c.peers["a"] != nil {
					t.Fatal("a, with nothing left, is still kept after the send")
				}
				return
			}
			if got := h.c.wantlist("a"); len(got) != 1 || !got[0].Equals(x) {
				t.Fatalf("after the failed send a's wantlist = %v, want x back", got)
			}
			_, tasks, _ := h.pop(1 << 20)
			if kinds(tasks) != "dont-have " {
				t.Fatalf("popped %q, want DONT_HAVE said again", kinds(tasks))
			}
			if got := fmt.Sprint(parkedWants(t, h.c, names)); got != "[a:c0]" || h.c.evictedWants != 2 {
				t.Fatalf("parked = %s, %d evicted; want a's x, 2", got, h.c.evictedWants)
			}
			if h.c.peers["b"] != nil {
				t.Fatal("b, whose only want was evicted, is still kept")
			}
		})
	}
}

// Two DONT_HAVEs in one turn with room for one parked want: parking the
// second evicts the first, of the peer being popped, which stays.
func TestCoreEvictionWithinOneTurn(t *testing.T) {
	l := defaultLimits()
	l.maxParked = 1
	h := newHarness(t, l)
	cs, names := testCids(t, 2)
	h.receive("a", false, wantEntry(cs[0], message.WantHave, true), wantEntry(cs[1], message.WantHave, true))
	tn, _ := h.d.pop(1 << 20)
	if kinds(tn.tasks) != "dont-have dont-have " {
		t.Fatalf("popped %q, want two DONT_HAVEs", kinds(tn.tasks))
	}
	if got := fmt.Sprint(parkedWants(t, h.c, names)); got != "[a:c1]" || h.c.evictedWants != 1 {
		t.Fatalf("parked = %s, %d evicted; want a's c1, 1", got, h.c.evictedWants)
	}
	h.finish(tn, true)
	if got := h.c.wantlist("a"); len(got) != 1 || !got[0].Equals(cs[1]) {
		t.Fatalf("a's wantlist = %v, want c1 only", got)
	}
}

// With no cap (0, as in limits{}), parked wants are only bounded by the
// wantlist caps.
func TestCoreParkedUncappedByDefaultInLimits(t *testing.T) {
	l := defaultLimits()
	l.maxParked = 0
	h := newHarness(t, l)
	cs, _ := testCids(t, 50)
	for _, c := range cs {
		h.receive("a", false, wantEntry(c, message.WantBlock, false))
	}
	if h.c.parked.n != 50 || h.c.evictedWants != 0 {
		t.Fatalf("%d parked, %d evicted; want 50, 0", h.c.parked.n, h.c.evictedWants)
	}
}

// A peer that cancels most of the blocks queued for it (a client toggling
// its wants) gets one turn in wastefulSitOut+1 while another peer waits,
// every turn when it is alone, and an equal share again once it takes more
// blocks than it cancels; its counts go when it leaves.
func TestTaskQueueWastefulPeerSitsOutTurns(t *testing.T) {
	q := newTaskQueue(1 << 30)
	seq := uint64(0)
	push := func(p peer.ID, n int) {
		for range n {
			seq++
			q.push(p, &task{cid: testCid(t, int(seq)), kind: sendBlock, size: 4096, seq: seq})
		}
	}
	turns := func(n int) map[peer.ID]int {
		got := map[peer.ID]int{}
		for range n {
			p, tasks, _, ok := q.pop(4096)
			if !ok {
				t.Fatal("nothing to pop")
			}
			q.done(p, tasks)
			got[p]++
		}
		return got
	}
	// The toggler has 100 blocks queued and cancels every one.
	first := seq + 1
	push("toggler", 100)
	for i := range 100 {
		q.recall("toggler", testCid(t, int(first)+i))
	}

	push("toggler", 200)
	if got := turns(8); got["toggler"] != 8 {
		t.Fatalf("alone, the toggler got %d of 8 turns", got["toggler"])
	}
	push("honest", 200)
	got := turns(64)
	// One turn in 8, give or take where the count starts.
	if share := 64 / (wastefulSitOut + 1); got["toggler"] < share-1 || got["toggler"] > share {
		t.Fatalf("turns %v, want the toggler to get 1 in %d", got, wastefulSitOut+1)
	}
	// Taking more blocks than it cancelled makes it a peer like others.
	q.clear("honest")
	push("toggler", 100)
	for q.recalls["toggler"].wasteful() {
		turns(1)
	}
	push("honest", 10)
	got = turns(20)
	if got["toggler"] != 10 || got["honest"] != 10 {
		t.Fatalf("turns %v once the toggler takes more than it cancels, want equal", got)
	}
	q.clear("toggler")
	if _, ok := q.recalls["toggler"]; ok {
		t.Fatal("counts kept after the peer left")
	}
}

// Through the core: a cancel of a want whose block is queued counts as a
// recall; a cancel of a want still waiting for its lookup does not.
func TestCoreCancelOfQueuedBlockIsARecall(t *testing.T) {
	const p = peer.ID("toggler")
	h := newHarness(t, defaultLimits())
	var queued, waiting []message.Entry
	for i := range 10 {
		c := testCid(t, i)
		h.sizes[c] = 4096
		queued = append(queued, wantEntry(c, message.WantBlock, false))
		waiting = append(waiting, wantEntry(testCid(t, 100+i), message.WantBlock, false))
	}
	h.receive(p, false, queued...)
	h.c.receive(p, false, waiting) // not looked up yet
	var cancels []message.Entry
	for _, e := range append(queued, waiting...) {
		cancels = append(cancels, message.Entry{Cid: e.Cid, Cancel: true})
	}
	h.receive(p, false, cancels...)
	if r := h.c.tq.recalls[p]; r == nil || r.recalled != 10 || r.served != 0 {
		t.Fatalf("recall counts %+v, want 10 recalled (the queued blocks only)", r)
	}
}

// Over the total cap, a new want takes the place of an unchecked want of
// the peer holding the most, as long as that peer holds at least two more:
// a peer that floods the server first fills the total, and each peer that
// asks later still gets its share.
func TestCoreTotalCapDisplacesTheLargestPeersWants(t *testing.T) {
	l := defaultLimits()
	l.maxWantsPerPeer, l.maxWantsTotal = 100, 10
	h := newHarness(t, l)
	ask := func(p peer.ID, from, n int) {
		var entries []message.Entry
		for i := from; i < from+n; i++ {
			entries = append(entries, wantEntry(testCid(t, i), message.WantBlock, false))
		}
		h.c.receive(p, false, entries) // no lookups: the wants stay unchecked
	}
	held := func() string {
		return fmt.Sprintf("flood %d, b %d, c %d", len(h.c.wantlist("flood")), len(h.c.wantlist("b")), len(h.c.wantlist("c")))
	}
	ask("flood", 0, 50)
	if got := held(); got != "flood 10, b 0, c 0" {
		t.Fatalf("after the flood: %s", got)
	}
	ask("b", 100, 4)
	if got := held(); got != "flood 6, b 4, c 0" {
		t.Fatalf("after b asked for 4: %s", got)
	}
	ask("c", 200, 10)
	// c displaces while the largest holds at least two more than c: flood
	// 6→4 as c grows to 2, then one of the two holding 4 (which one at a
	// tie is the heap's business) for c's third; 4 < 3+2 stops it.
	if h.c.total != 10 || len(h.c.wantlist("c")) != 3 || len(h.c.wantlist("flood"))+len(h.c.wantlist("b")) != 7 {
		t.Fatalf("after c asked for 10: %s, total %d", held(), h.c.total)
	}
	if h.c.displaced != 7 || h.c.droppedWants != 40+7 {
		t.Fatalf("displaced %d, dropped %d; want 7 and 47", h.c.displaced, h.c.droppedWants)
	}
	// Looked-up wants are not displaced: with every want parked, a new
	// peer is refused.
	for _, p := range []peer.ID{"flood", "b", "c"} {
		h.d.refill(context.Background(), p)
	}
	ask("d", 300, 1)
	if n := len(h.c.wantlist("d")); n != 0 || h.c.displaced != 7 {
		t.Fatalf("d holds %d, displaced %d: a parked want was displaced", n, h.c.displaced)
	}
}

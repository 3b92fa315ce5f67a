package blockrouter_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	"github.com/gobitswap/bitswap/blockrouter"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/ledger"
	"github.com/gobitswap/bitswap/testutil"
)

// sink is a fake Session: it records every delivery.
type sink struct {
	mu         sync.Mutex
	deliveries []delivery
}

type delivery struct {
	from peer.ID
	blks []blocks.Block
}

func (s *sink) ReceiveBlocks(from peer.ID, blks []blocks.Block) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliveries = append(s.deliveries, delivery{from, slices.Clone(blks)})
}

// received returns every block delivered, in order, across deliveries.
func (s *sink) received() []blocks.Block {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []blocks.Block
	for _, d := range s.deliveries {
		out = append(out, d.blks...)
	}
	return out
}

// count returns how many times a block with c's exact CID was delivered.
func (s *sink) count(c cid.Cid) int {
	n := 0
	for _, b := range s.received() {
		if b.Cid().Equals(c) {
			n++
		}
	}
	return n
}

// notifier is a fake Engine: it records the blocks of every call.
type notifier struct {
	mu    sync.Mutex
	calls [][]cid.Cid
}

func (n *notifier) NotifyNewBlocks(_ context.Context, blks ...blocks.Block) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, cidsOf(blks))
}

// notified returns every CID notified, in order, across calls.
func (n *notifier) notified() []cid.Cid {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []cid.Cid
	for _, c := range n.calls {
		out = append(out, c...)
	}
	return out
}

func byKey(a, b cid.Cid) int { return strings.Compare(a.KeyString(), b.KeyString()) }

func cidsOf(blks []blocks.Block) []cid.Cid {
	out := make([]cid.Cid, len(blks))
	for i, b := range blks {
		out[i] = b.Cid()
	}
	return out
}

// fixture is a BlockRouter over a memory blockstore, a fresh ledger and a
// recording notifier.
type fixture struct {
	r      *blockrouter.BlockRouter
	bs     blockstore.Blockstore
	ledger *ledger.Ledger
	notify *notifier
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, blockstore.NewMemory())
}

func newFixtureWith(t *testing.T, bs blockstore.Blockstore) *fixture {
	t.Helper()
	f := &fixture{bs: bs, ledger: ledger.New(), notify: &notifier{}}
	f.r = blockrouter.New(bs, f.ledger, f.notify, slog.New(slog.DiscardHandler))
	return f
}

// session registers a recording sink as Session id wanting cids.
func (f *fixture) session(id uint64, cids ...cid.Cid) *sink {
	s := &sink{}
	f.r.Register(id, s)
	f.r.Want(id, cids)
	return s
}

func (f *fixture) stored(t *testing.T, c cid.Cid) bool {
	t.Helper()
	ok, err := f.bs.Has(context.Background(), c)
	if err != nil {
		t.Fatalf("blockstore Has(%s): %v", c, err)
	}
	return ok
}

var (
	peerA = testutil.PeerID(1)
	peerB = testutil.PeerID(2)
)

func size(blks ...blocks.Block) uint64 {
	var n uint64
	for _, b := range blks {
		n += uint64(len(b.RawData()))
	}
	return n
}

func TestWantedBlockIsDeliveredOnceToEverySessionThatWantsIt(t *testing.T) {
	blks := testutil.RandomBlocks(1, 3, 100)
	x, y, z := blks[0], blks[1], blks[2]
	tests := []struct {
		name     string
		wants    map[uint64][]blocks.Block // session -> blocks it wants
		arriving []blocks.Block
		want     map[uint64][]blocks.Block // session -> blocks delivered
	}{
		{
			name:     "one session, one block",
			wants:    map[uint64][]blocks.Block{1: {x}},
			arriving: []blocks.Block{x},
			want:     map[uint64][]blocks.Block{1: {x}},
		},
		{
			name:     "two sessions wanting one CID each get it",
			wants:    map[uint64][]blocks.Block{1: {x}, 2: {x}},
			arriving: []blocks.Block{x},
			want:     map[uint64][]blocks.Block{1: {x}, 2: {x}},
		},
		{
			name:     "each session gets only what it wanted from a message",
			wants:    map[uint64][]blocks.Block{1: {x, y}, 2: {y, z}, 3: {z}},
			arriving: []blocks.Block{x, y, z},
			want:     map[uint64][]blocks.Block{1: {x, y}, 2: {y, z}, 3: {z}},
		},
		{
			name:     "a session wanting nothing that arrived gets nothing",
			wants:    map[uint64][]blocks.Block{1: {x}, 2: {y}},
			arriving: []blocks.Block{x},
			want:     map[uint64][]blocks.Block{1: {x}, 2: nil},
		},
		{
			name:     "a block repeated within one message is delivered once",
			wants:    map[uint64][]blocks.Block{1: {x}},
			arriving: []blocks.Block{x, x},
			want:     map[uint64][]blocks.Block{1: {x}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			sinks := map[uint64]*sink{}
			for id, bs := range tt.wants {
				sinks[id] = f.session(id, cidsOf(bs)...)
			}
			f.r.ReceiveBlocks(context.Background(), peerA, tt.arriving)
			for id, s := range sinks {
				got := cidsOf(s.received())
				want := cidsOf(tt.want[id])
				slices.SortFunc(got, byKey)
				slices.SortFunc(want, byKey)
				if !slices.EqualFunc(got, want, cid.Cid.Equals) {
					t.Errorf("session %d received %v, want %v", id, got, want)
				}
				s.mu.Lock()
				for _, d := range s.deliveries {
					if d.from != peerA {
						t.Errorf("session %d: delivery from %s, want %s", id, d.from, peerA)
					}
				}
				if len(tt.want[id]) > 0 && len(s.deliveries) != 1 {
					t.Errorf("session %d: %d deliveries for one message, want 1", id, len(s.deliveries))
				}
				s.mu.Unlock()
			}
		})
	}
}

func TestWantedBlockIsStoredRecordedNotifiedAndNoLongerWanted(t *testing.T) {
	f := newFixture(t)
	b := testutil.RandomBlocks(2, 1, 300)[0]
	f.session(1, b.Cid())
	f.session(2, b.Cid())

	f.r.ReceiveBlocks(context.Background(), peerA, []blocks.Block{b})

	if !f.stored(t, b.Cid()) {
		t.Error("wanted block was not stored")
	}
	rc := f.ledger.Receipt(peerA)
	if rc.BlocksReceived != 1 || rc.Recv != 300 {
		t.Errorf("ledger for sender: %d blocks / %d bytes received, want 1 / 300", rc.BlocksReceived, rc.Recv)
	}
	if got := f.notify.notified(); len(got) != 1 || !got[0].Equals(b.Cid()) {
		t.Errorf("notifier told %v, want exactly [%s] (once, though two sessions wanted it)", got, b.Cid())
	}
	if f.r.IsWanted(b.Cid()) {
		t.Error("IsWanted is still true after the block arrived")
	}
	want := blockrouter.Stat{BlocksReceived: 1, DataReceived: 300}
	if got := f.r.Stat(); got != want {
		t.Errorf("Stat = %+v, want %+v", got, want)
	}
	if got := f.r.Unrequested(peerA); got != 0 {
		t.Errorf("Unrequested(sender) = %d, want 0 for a wanted block", got)
	}
}

func TestLaterCopyOfReceivedBlockIsDuplicateAndNotDeliveredAgain(t *testing.T) {
	for _, second := range []struct {
		name string
		from peer.ID
	}{{"from the same peer", peerA}, {"from another peer", peerB}} {
		t.Run(second.name, func(t *testing.T) {
			f := newFixture(t)
			b := testutil.RandomBlocks(3, 1, 250)[0]
			s := f.session(1, b.Cid())
			ctx := context.Background()

			f.r.ReceiveBlocks(ctx, peerA, []blocks.Block{b})
			f.r.ReceiveBlocks(ctx, second.from, []blocks.Block{b})

			if n := s.count(b.Cid()); n != 1 {
				t.Errorf("block delivered %d times, want 1", n)
			}
			if n := len(f.notify.notified()); n != 1 {
				t.Errorf("notifier told %d times, want 1", n)
			}
			want := blockrouter.Stat{
				BlocksReceived: 2, DataReceived: 500,
				DupBlksReceived: 1, DupDataReceived: 250,
			}
			if got := f.r.Stat(); got != want {
				t.Errorf("Stat = %+v, want %+v", got, want)
			}
			if got := f.r.Unrequested(second.from); got != 0 {
				t.Errorf("sender of a duplicate charged %d unrequested blocks, want 0", got)
			}
		})
	}
}

func TestUnwantedBlockIsDroppedCountedAndChargedToSender(t *testing.T) {
	f := newFixture(t)
	blks := testutil.RandomBlocks(4, 3, 64)
	wanted, unwanted1, unwanted2 := blks[0], blks[1], blks[2]
	s := f.session(1, wanted.Cid())
	ctx := context.Background()

	f.r.ReceiveBlocks(ctx, peerA, []blocks.Block{unwanted1, unwanted2})

	for _, b := range []blocks.Block{unwanted1, unwanted2} {
		if f.stored(t, b.Cid()) {
			t.Errorf("unwanted block %s was stored", b.Cid())
		}
	}
	if got := s.received(); len(got) != 0 {
		t.Errorf("session received %v, want nothing", cidsOf(got))
	}
	if got := f.notify.notified(); len(got) != 0 {
		t.Errorf("notifier told %v, want nothing", got)
	}
	want := blockrouter.Stat{
		BlocksReceived: 2, DataReceived: 128,
		UnwantedBlocks: 2, UnwantedData: 128,
	}
	if got := f.r.Stat(); got != want {
		t.Errorf("Stat = %+v, want %+v", got, want)
	}
	if got := f.r.Unrequested(peerA); got != 2 {
		t.Errorf("Unrequested(sender) = %d, want 2", got)
	}
	if got := f.r.Unrequested(peerB); got != 0 {
		t.Errorf("Unrequested(other peer) = %d, want 0", got)
	}
	if !f.r.IsWanted(wanted.Cid()) {
		t.Error("an unwanted block changed what is wanted")
	}

	f.r.Forget(peerA)
	if got := f.r.Unrequested(peerA); got != 0 {
		t.Errorf("Unrequested after Forget = %d, want 0", got)
	}
	f.r.ReceiveBlocks(ctx, peerA, []blocks.Block{unwanted1})
	if got := f.r.Unrequested(peerA); got != 1 {
		t.Errorf("Unrequested after Forget and one more unwanted block = %d, want 1", got)
	}
}

// cidVersions returns the same multihash as a CIDv0, a CIDv1 dag-pb and a
// CIDv1 raw CID, with the data that hashes to it.
func cidVersions(t *testing.T, data []byte) (v0, v1pb, v1raw cid.Cid) {
	t.Helper()
	h, err := mh.Sum(data, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV0(h), cid.NewCidV1(cid.DagProtobuf, h), cid.NewCidV1(cid.Raw, h)
}

func TestBlockIsDeliveredUnderTheCIDThatWasAskedFor(t *testing.T) {
	data := []byte("the same bytes under several CIDs")
	v0, v1pb, v1raw := cidVersions(t, data)
	tests := []struct {
		name            string
		asked, arriving cid.Cid
	}{
		{"wanted as CIDv1 dag-pb, arrives as CIDv0", v1pb, v0},
		{"wanted as CIDv0, arrives as CIDv1 dag-pb", v0, v1pb},
		{"wanted as CIDv1 dag-pb, arrives as CIDv1 raw", v1pb, v1raw},
		{"wanted and arrives as the same CID", v1pb, v1pb},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			s := f.session(1, tt.asked)
			b, err := blocks.NewBlockWithCid(data, tt.arriving)
			if err != nil {
				t.Fatal(err)
			}
			if !f.r.IsWanted(tt.arriving) {
				t.Errorf("IsWanted(%s) = false while %s is wanted (same multihash)", tt.arriving, tt.asked)
			}

			f.r.ReceiveBlocks(context.Background(), peerA, []blocks.Block{b})

			got := s.received()
			if len(got) != 1 {
				t.Fatalf("session received %d blocks, want 1", len(got))
			}
			if !got[0].Cid().Equals(tt.asked) {
				t.Errorf("delivered as %s, want %s (the CID asked for)", got[0].Cid(), tt.asked)
			}
			if string(got[0].RawData()) != string(data) {
				t.Errorf("delivered data %q, want %q", got[0].RawData(), data)
			}
			if !f.stored(t, tt.asked) {
				t.Error("block not stored")
			}
			if f.r.Stat().UnwantedBlocks != 0 {
				t.Error("block counted as unwanted")
			}
		})
	}
}

func TestUnwantWithdrawsInterest(t *testing.T) {
	b := testutil.RandomBlocks(5, 1, 80)[0]
	tests := []struct {
		name          string
		unwant        []uint64 // sessions that withdraw
		wantDelivered []uint64
		wantStillWant bool
	}{
		{"no session withdraws", nil, []uint64{1, 2}, true},
		{"one of two withdraws: the other still gets it", []uint64{1}, []uint64{2}, true},
		{"both withdraw: nobody gets it and it is unwanted", []uint64{1, 2}, nil, false},
		{"withdrawing twice is harmless", []uint64{1, 1}, []uint64{2}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			sinks := map[uint64]*sink{1: f.session(1, b.Cid()), 2: f.session(2, b.Cid())}
			for _, id := range tt.unwant {
				f.r.Unwant(id, []cid.Cid{b.Cid()})
			}
			if got := f.r.IsWanted(b.Cid()); got != tt.wantStillWant {
				t.Errorf("IsWanted = %v, want %v", got, tt.wantStillWant)
			}

			f.r.ReceiveBlocks(context.Background(), peerA, []blocks.Block{b})

			for id, s := range sinks {
				want := 0
				if slices.Contains(tt.wantDelivered, id) {
					want = 1
				}
				if got := s.count(b.Cid()); got != want {
					t.Errorf("session %d got the block %d times, want %d", id, got, want)
				}
			}
			wantUnwanted := uint64(0)
			if len(tt.wantDelivered) == 0 {
				wantUnwanted = 1
			}
			if got := f.r.Stat().UnwantedBlocks; got != wantUnwanted {
				t.Errorf("UnwantedBlocks = %d, want %d", got, wantUnwanted)
			}
			if got := f.stored(t, b.Cid()); got != (wantUnwanted == 0) {
				t.Errorf("stored = %v, want %v", got, wantUnwanted == 0)
			}
		})
	}
}

func TestUnwantOfOneCIDKeepsTheSessionsOtherWants(t *testing.T) {
	f := newFixture(t)
	blks := testutil.RandomBlocks(6, 2, 50)
	s := f.session(1, blks[0].Cid(), blks[1].Cid())
	f.r.Unwant(1, []cid.Cid{blks[0].Cid()})

	f.r.ReceiveBlocks(context.Background(), peerA, blks)

	if got := cidsOf(s.received()); len(got) != 1 || !got[0].Equals(blks[1].Cid()) {
		t.Errorf("session received %v, want only [%s]", got, blks[1].Cid())
	}
}

func TestUnregisteredSessionGetsNoDeliveries(t *testing.T) {
	f := newFixture(t)
	blks := testutil.RandomBlocks(7, 2, 50)
	gone := f.session(1, blks[0].Cid())
	stays := f.session(2, blks[0].Cid())
	f.r.Unregister(1)

	f.r.ReceiveBlocks(context.Background(), peerA, blks[:1])

	if got := gone.received(); len(got) != 0 {
		t.Errorf("unregistered session received %v", cidsOf(got))
	}
	if n := stays.count(blks[0].Cid()); n != 1 {
		t.Errorf("registered session got the block %d times, want 1", n)
	}

	// Registering again under the same id restores deliveries.
	back := &sink{}
	f.r.Register(1, back)
	f.r.Want(1, cidsOf(blks[1:]))
	f.r.ReceiveBlocks(context.Background(), peerA, blks[1:])
	if n := back.count(blks[1].Cid()); n != 1 {
		t.Errorf("re-registered session got the block %d times, want 1", n)
	}
}

// failingStore is a Blockstore whose PutMany always fails.
type failingStore struct {
	blockstore.Blockstore
	puts int
}

func (s *failingStore) PutMany(context.Context, []blocks.Block) error {
	s.puts++
	return errors.New("disk full")
}

func TestFailingBlockstoreStillDeliversAndCountsTheError(t *testing.T) {
	bs := &failingStore{Blockstore: blockstore.NewMemory()}
	f := newFixtureWith(t, bs)
	blks := testutil.RandomBlocks(8, 2, 40)
	s := f.session(1, cidsOf(blks)...)

	f.r.ReceiveBlocks(context.Background(), peerA, blks)

	if bs.puts != 1 {
		t.Errorf("PutMany called %d times, want 1 per message", bs.puts)
	}
	for _, b := range blks {
		if n := s.count(b.Cid()); n != 1 {
			t.Errorf("block %s delivered %d times, want 1", b.Cid(), n)
		}
	}
	if got := f.r.Stat().BlockstoreErrors; got != 1 {
		t.Errorf("BlockstoreErrors = %d, want 1", got)
	}
	if rc := f.ledger.Receipt(peerA); rc.BlocksReceived != 2 {
		t.Errorf("ledger recorded %d blocks, want 2", rc.BlocksReceived)
	}
}

func TestLedgerRecordsEveryReceivedBlockWithItsSize(t *testing.T) {
	blks := testutil.MixedBlocks(9, 3, 10, 1000) // sizes 10, 505, 1000
	tests := []struct {
		name   string
		wanted []blocks.Block
		msgs   [][]blocks.Block
	}{
		{"wanted", blks, [][]blocks.Block{blks}},
		{"unwanted", nil, [][]blocks.Block{blks}},
		{"wanted then duplicate", blks[:1], [][]blocks.Block{blks[:1], blks[:1]}},
		{"mixed in one message", blks[1:2], [][]blocks.Block{blks}},
		{"empty message", blks, [][]blocks.Block{{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.session(1, cidsOf(tt.wanted)...)
			var wantBlocks, wantBytes uint64
			for _, m := range tt.msgs {
				f.r.ReceiveBlocks(context.Background(), peerA, m)
				wantBlocks += uint64(len(m))
				wantBytes += size(m...)
			}
			rc := f.ledger.Receipt(peerA)
			if rc.BlocksReceived != wantBlocks || rc.Recv != wantBytes {
				t.Errorf("ledger: %d blocks / %d bytes, want %d / %d",
					rc.BlocksReceived, rc.Recv, wantBlocks, wantBytes)
			}
			st := f.r.Stat()
			if st.BlocksReceived != wantBlocks || st.DataReceived != wantBytes {
				t.Errorf("Stat: %d blocks / %d bytes, want %d / %d",
					st.BlocksReceived, st.DataReceived, wantBlocks, wantBytes)
			}
			if rc := f.ledger.Receipt(peerB); rc.BlocksReceived != 0 {
				t.Errorf("ledger charged another peer %d blocks", rc.BlocksReceived)
			}
		})
	}
}

func TestNilNotifierIsAllowed(t *testing.T) {
	r := blockrouter.New(blockstore.NewMemory(), ledger.New(), nil, nil)
	b := testutil.RandomBlocks(10, 1, 10)[0]
	s := &sink{}
	r.Register(1, s)
	r.Want(1, []cid.Cid{b.Cid()})
	r.ReceiveBlocks(context.Background(), peerA, []blocks.Block{b})
	if n := s.count(b.Cid()); n != 1 {
		t.Errorf("delivered %d times, want 1", n)
	}
}

// gatedStore is a Blockstore whose PutMany waits for release, so a test can
// act while a block is being stored.
type gatedStore struct {
	blockstore.Blockstore
	entered chan struct{}
	release chan struct{}
}

func (s *gatedStore) PutMany(ctx context.Context, blks []blocks.Block) error {
	s.entered <- struct{}{}
	<-s.release
	return s.Blockstore.PutMany(ctx, blks)
}

// Peers asked for the same block often answer at once. The copy that
// arrives while the first is still being stored is a duplicate: the peer
// sent what we asked for and must not be charged for an unrequested block.
func TestCopyArrivingWhileFirstIsBeingStoredIsDuplicateNotUnrequested(t *testing.T) {
	bs := &gatedStore{
		Blockstore: blockstore.NewMemory(),
		entered:    make(chan struct{}),
		release:    make(chan struct{}),
	}
	f := newFixtureWith(t, bs)
	b := testutil.RandomBlocks(11, 1, 70)[0]
	s := f.session(1, b.Cid())
	ctx := context.Background()

	done := make(chan struct{})
	go func() {
		defer close(done)
		f.r.ReceiveBlocks(ctx, peerA, []blocks.Block{b})
	}()
	select {
	case <-bs.entered: // peerA's copy is being stored
	case <-done:
		t.Fatal("the wanted block was not stored")
	case <-time.After(10 * time.Second):
		t.Fatal("ReceiveBlocks neither stored the wanted block nor returned")
	}
	f.r.ReceiveBlocks(ctx, peerB, []blocks.Block{b})
	close(bs.release)
	<-done

	if got := f.r.Unrequested(peerB); got != 0 {
		t.Errorf("Unrequested(second sender) = %d, want 0", got)
	}
	st := f.r.Stat()
	if st.DupBlksReceived != 1 || st.DupDataReceived != 70 || st.UnwantedBlocks != 0 {
		t.Errorf("Stat = %+v, want 1 duplicate of 70 bytes and no unwanted block", st)
	}
	if n := s.count(b.Cid()); n != 1 {
		t.Errorf("delivered %d times, want 1", n)
	}
	// Once stored, a further copy is still a duplicate.
	f.r.ReceiveBlocks(ctx, peerB, []blocks.Block{b})
	if got := f.r.Stat().DupBlksReceived; got != 2 {
		t.Errorf("DupBlksReceived after a later copy = %d, want 2", got)
	}
}

func TestConcurrentWantUnwantAndReceive(t *testing.T) {
	const sessions = 8
	const rounds = 50
	f := newFixture(t)
	blks := testutil.RandomBlocks(12, 64, 32)
	sinks := make([]*sink, sessions)
	for i := range sinks {
		sinks[i] = &sink{}
		f.r.Register(uint64(i), sinks[i])
	}
	ctx := context.Background()
	var sent atomic.Uint64
	var wg sync.WaitGroup
	for i := range sessions {
		wg.Go(func() {
			id := uint64(i)
			for n := range rounds {
				c := blks[(i+n)%len(blks)].Cid()
				f.r.Want(id, []cid.Cid{c})
				f.r.IsWanted(c)
				if n%3 == 0 {
					f.r.Unwant(id, []cid.Cid{c})
				}
			}
		})
	}
	for p := range 4 {
		wg.Go(func() {
			from := testutil.PeerID(100 + p)
			for n := range rounds {
				lo := (p*7 + n) % len(blks)
				msg := blks[lo:min(lo+3, len(blks))]
				sent.Add(uint64(len(msg)))
				f.r.ReceiveBlocks(ctx, from, msg)
				f.r.Stat()
				f.r.Unrequested(from)
				if n%10 == 0 {
					f.r.Forget(from)
				}
			}
		})
	}
	wg.Go(func() {
		for n := range rounds {
			id := uint64(sessions + n%2)
			f.r.Register(id, &sink{})
			f.r.Unregister(id)
		}
	})
	wg.Wait()

	st := f.r.Stat()
	if st.BlocksReceived != sent.Load() {
		t.Errorf("BlocksReceived = %d, want %d", st.BlocksReceived, sent.Load())
	}
	if got := st.DupBlksReceived + st.UnwantedBlocks; got > st.BlocksReceived {
		t.Errorf("duplicates and unwanted (%d) exceed blocks received (%d)", got, st.BlocksReceived)
	}
	// Every delivered block was stored.
	for i, s := range sinks {
		for _, b := range s.received() {
			if !f.stored(t, b.Cid()) {
				t.Errorf("session %d received %s, which was not stored", i, b.Cid())
			}
		}
	}
}

// A peer may send unrequested blocks up to the limit, net of the wanted
// blocks it sends; past it ReceiveBlocks reports ErrUnrequested, naming the
// peer, for every further message with unrequested blocks, while wanted
// blocks in those messages are still delivered. Forget starts afresh.
func TestUnrequestedBlocksPastTheLimitAreRejected(t *testing.T) {
	bs := blockstore.NewMemory()
	f := &fixture{bs: bs, ledger: ledger.New(), notify: &notifier{}}
	f.r = blockrouter.New(bs, f.ledger, f.notify, slog.New(slog.DiscardHandler), blockrouter.WithMaxUnrequested(3))
	blks := testutil.RandomBlocks(5, 10, 32)
	junk, wanted := blks[:8], blks[8:]
	s := f.session(1, wanted[0].Cid(), wanted[1].Cid())
	ctx := context.Background()

	if err := f.r.ReceiveBlocks(ctx, peerA, junk[:3]); err != nil {
		t.Fatalf("3 unrequested blocks, limit 3: %v", err)
	}
	// A wanted block takes one off: 3 - 1 + 1 = 3, still within.
	if err := f.r.ReceiveBlocks(ctx, peerA, []blocks.Block{wanted[0], junk[3]}); err != nil {
		t.Fatalf("after a wanted block: %v", err)
	}
	err := f.r.ReceiveBlocks(ctx, peerA, []blocks.Block{junk[4], junk[5], wanted[1]}) // 3 - 1 + 2
	if !errors.Is(err, blockrouter.ErrUnrequested) || !strings.Contains(err.Error(), peerA.String()) {
		t.Fatalf("over the limit: err = %v, want ErrUnrequested naming %s", err, peerA)
	}
	if got := len(s.received()); got != 2 {
		t.Fatalf("session got %d blocks, want both wanted ones", got)
	}
	if err := f.r.ReceiveBlocks(ctx, peerB, junk[6:7]); err != nil {
		t.Fatalf("another peer is charged separately: %v", err)
	}
	f.r.Forget(peerA)
	if err := f.r.ReceiveBlocks(ctx, peerA, junk[6:8]); err != nil {
		t.Fatalf("after Forget: %v", err)
	}
}

// WithMaxUnrequested(-1) tolerates any number.
func TestMaxUnrequestedNegativeNeverRejects(t *testing.T) {
	bs := blockstore.NewMemory()
	r := blockrouter.New(bs, ledger.New(), nil, slog.New(slog.DiscardHandler), blockrouter.WithMaxUnrequested(-1))
	if err := r.ReceiveBlocks(context.Background(), peerA, testutil.RandomBlocks(6, blockrouter.DefaultMaxUnrequested+10, 8)); err != nil {
		t.Fatal(err)
	}
}

// The received-block notifier hears each message's wanted blocks, with the
// sender and how long since the first Session still wanting each asked for
// it; blocks nobody wanted, and late copies, are not reported.
func TestReceivedNotifierTellsSenderAndDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		type call struct {
			from   peer.ID
			cids   []cid.Cid
			delays []time.Duration
		}
		var calls []call
		r := blockrouter.New(blockstore.NewMemory(), ledger.New(), nil, slog.New(slog.DiscardHandler),
			blockrouter.WithReceivedNotifier(func(from peer.ID, blks []blockrouter.Received) {
				c := call{from: from}
				for _, b := range blks {
					c.cids = append(c.cids, b.Cid())
					c.delays = append(c.delays, b.Delay)
				}
				calls = append(calls, c)
			}))
		blks := testutil.RandomBlocks(1, 4, 100)
		x, y, z, nobody := blks[0], blks[1], blks[2], blks[3]
		r.Register(1, &sink{})
		r.Register(2, &sink{})
		r.Want(1, []cid.Cid{x.Cid()})
		time.Sleep(100 * time.Millisecond)
		r.Want(2, []cid.Cid{x.Cid(), y.Cid()}) // x: the earlier Want counts
		time.Sleep(50 * time.Millisecond)
		r.Want(1, []cid.Cid{z.Cid()})
		r.Unwant(1, []cid.Cid{z.Cid()}) // no longer wanted: not reported
		time.Sleep(250 * time.Millisecond)

		r.ReceiveBlocks(ctx, peerA, []blocks.Block{x, nobody, z})
		r.ReceiveBlocks(ctx, peerB, []blocks.Block{y, x}) // x again: a late copy

		want := []call{
			{peerA, []cid.Cid{x.Cid()}, []time.Duration{400 * time.Millisecond}},
			{peerB, []cid.Cid{y.Cid()}, []time.Duration{300 * time.Millisecond}},
		}
		if len(calls) != len(want) {
			t.Fatalf("notifier called %d times (%+v), want %d", len(calls), calls, len(want))
		}
		for i, c := range calls {
			w := want[i]
			if c.from != w.from || !slices.Equal(c.cids, w.cids) || !slices.Equal(c.delays, w.delays) {
				t.Errorf("call %d: %+v, want %+v", i, c, w)
			}
		}
	})
}

// Deliver hands blocks stored by the application to the Sessions wanting
// them, under the CID each asked for, from no peer, and nothing else: no
// store, count, ledger entry or notice.
func TestDeliverHandsStoredBlocksToWantersOnly(t *testing.T) {
	ctx := context.Background()
	rec := 0
	bs := blockstore.NewMemory()
	n := &notifier{}
	l := ledger.New()
	r := blockrouter.New(bs, l, n, slog.New(slog.DiscardHandler),
		blockrouter.WithReceivedNotifier(func(peer.ID, []blockrouter.Received) { rec++ }))
	blks := testutil.RandomBlocks(5, 3, 100)
	x, y, nobody := blks[0], blks[1], blks[2]
	xv0 := cid.NewCidV0(x.Cid().Hash())
	s1, s2 := &sink{}, &sink{}
	r.Register(1, s1)
	r.Register(2, s2)
	r.Want(1, []cid.Cid{x.Cid(), y.Cid()})
	r.Want(2, []cid.Cid{xv0})

	r.Deliver([]blocks.Block{x, nobody})
	if got := s1.deliveries; len(got) != 1 || got[0].from != "" || len(got[0].blks) != 1 || !got[0].blks[0].Cid().Equals(x.Cid()) {
		t.Fatalf("session 1 got %+v, want x from no peer", got)
	}
	if got := s2.deliveries; len(got) != 1 || !got[0].blks[0].Cid().Equals(xv0) {
		t.Fatalf("session 2 got %+v, want x under its CIDv0", got)
	}
	if r.IsWanted(x.Cid()) || !r.IsWanted(y.Cid()) {
		t.Fatalf("wanted after Deliver: x %v, y %v; want only y", r.IsWanted(x.Cid()), r.IsWanted(y.Cid()))
	}
	if ok, _ := bs.Has(ctx, x.Cid()); ok {
		t.Fatal("Deliver stored the block")
	}
	if st := r.Stat(); st != (blockrouter.Stat{}) || rec != 0 || len(n.notified()) != 0 || l.Receipt("").Recv != 0 {
		t.Fatalf("Deliver counted %+v, notified %d/%d times", st, rec, len(n.notified()))
	}
	// A copy from the network afterwards is a late one.
	_ = bs.Put(ctx, x)
	r.ReceiveBlocks(ctx, peerA, []blocks.Block{x})
	if st := r.Stat(); st.DupBlksReceived != 1 || len(s1.deliveries) != 1 {
		t.Fatalf("late network copy: %+v, %d deliveries; want a duplicate, none", st, len(s1.deliveries))
	}
}

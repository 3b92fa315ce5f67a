package ledger_test

import (
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gobitswap/bitswap/ledger"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
)

// testPeer returns a deterministic, valid-looking peer ID for index i.
func testPeer(i int) peer.ID {
	h, err := mh.Sum(fmt.Appendf(nil, "ledger test peer %d", i), mh.SHA2_256, -1)
	if err != nil {
		panic(err)
	}
	return peer.ID(h)
}

func TestReceiptFiguresEqualTheSizesPassed(t *testing.T) {
	l := ledger.New()
	p := testPeer(1)
	l.SentBlock(p, 100)
	l.SentBlock(p, 300)
	l.ReceivedBlock(p, 49)

	got := l.Receipt(p)
	got.LastExchange = time.Time{}
	want := ledger.Receipt{
		Peer:           p.String(),
		Value:          400.0 / 50.0, // Sent/(Recv+1), as boxo defines it
		Sent:           400,
		Recv:           49,
		BlocksSent:     2,
		BlocksReceived: 1,
		Exchanged:      3,
	}
	if got != want {
		t.Fatalf("Receipt = %+v\nwant      %+v", got, want)
	}
}

func TestUnknownPeerHasZeroReceiptWithPeerSet(t *testing.T) {
	l := ledger.New()
	p := testPeer(7)
	if got, want := l.Receipt(p), (ledger.Receipt{Peer: p.String()}); got != want {
		t.Fatalf("Receipt = %+v, want %+v", got, want)
	}
	if ps := l.Peers(); len(ps) != 0 {
		t.Fatalf("Receipt must not create an account; Peers = %v", ps)
	}
}

func TestValueWithNothingReceivedIsBytesSent(t *testing.T) {
	l := ledger.New()
	p := testPeer(1)
	l.SentBlock(p, 1000)
	if v := l.Receipt(p).Value; v != 1000 {
		t.Fatalf("Value = %v, want 1000 (1000/(0+1))", v)
	}
}

func TestNegativeSizeCountsAsZeroBytesButOneBlock(t *testing.T) {
	l := ledger.New()
	p := testPeer(1)
	l.ReceivedBlock(p, -5)
	r := l.Receipt(p)
	if r.Recv != 0 || r.BlocksReceived != 1 || r.Exchanged != 1 {
		t.Fatalf("Receipt = %+v, want Recv 0, BlocksReceived 1, Exchanged 1", r)
	}
}

func TestLastExchangeIsTimeOfLatestBlockInEitherDirection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := ledger.New()
		p := testPeer(1)
		l.SentBlock(p, 1)
		first := time.Now()
		if got := l.Receipt(p).LastExchange; !got.Equal(first) {
			t.Fatalf("LastExchange = %v, want %v", got, first)
		}
		time.Sleep(time.Minute)
		l.ReceivedBlock(p, 1)
		if got, want := l.Receipt(p).LastExchange, first.Add(time.Minute); !got.Equal(want) {
			t.Fatalf("LastExchange = %v, want %v", got, want)
		}
		time.Sleep(time.Minute)
		l.Receipt(p) // reading is not an exchange
		if got, want := l.Receipt(p).LastExchange, first.Add(time.Minute); !got.Equal(want) {
			t.Fatalf("after Receipt, LastExchange = %v, want unchanged %v", got, want)
		}
	})
}

func TestPeersAreListedOldestExchangeFirst(t *testing.T) {
	l := ledger.New()
	a, b, c := testPeer(1), testPeer(2), testPeer(3)
	l.SentBlock(a, 1)
	l.SentBlock(b, 1)
	l.SentBlock(c, 1)
	l.ReceivedBlock(a, 1) // a is now the most recent
	if got, want := l.Peers(), []peer.ID{b, c, a}; !slices.Equal(got, want) {
		t.Fatalf("Peers = %v, want %v", got, want)
	}
}

func TestFullLedgerForgetsThePeerWithTheOldestExchange(t *testing.T) {
	l := ledger.New(ledger.WithMaxPeers(3))
	a, b, c, d, e := testPeer(1), testPeer(2), testPeer(3), testPeer(4), testPeer(5)
	l.SentBlock(a, 10)
	l.SentBlock(b, 10)
	l.SentBlock(c, 10)
	l.ReceivedBlock(a, 10) // refresh a: b is now the oldest

	l.SentBlock(d, 10) // evicts b
	if got, want := l.Peers(), []peer.ID{c, a, d}; !slices.Equal(got, want) {
		t.Fatalf("after adding d: Peers = %v, want %v", got, want)
	}
	if r := l.Receipt(b); r.Exchanged != 0 {
		t.Fatalf("evicted peer still has an account: %+v", r)
	}

	l.ReceivedBlock(e, 10) // evicts c
	if got, want := l.Peers(), []peer.ID{a, d, e}; !slices.Equal(got, want) {
		t.Fatalf("after adding e: Peers = %v, want %v", got, want)
	}
	if r := l.Receipt(a); r.Sent != 10 || r.Recv != 10 {
		t.Fatalf("surviving peer lost its figures: %+v", r)
	}

	l.SentBlock(b, 5) // b comes back with a fresh account, evicting a
	if r := l.Receipt(b); r.Sent != 5 || r.Exchanged != 1 {
		t.Fatalf("returning peer should start afresh: %+v", r)
	}
	if got, want := l.Peers(), []peer.ID{d, e, b}; !slices.Equal(got, want) {
		t.Fatalf("after b returns: Peers = %v, want %v", got, want)
	}
}

func TestMaxPeersOfOneKeepsOnlyTheLatest(t *testing.T) {
	l := ledger.New(ledger.WithMaxPeers(1))
	for i := range 10 {
		l.SentBlock(testPeer(i), 1)
	}
	if got, want := l.Peers(), []peer.ID{testPeer(9)}; !slices.Equal(got, want) {
		t.Fatalf("Peers = %v, want %v", got, want)
	}
}

// WithMaxPeers(0) or a negative n keeps the default instead of making a
// ledger that can hold nothing.
func TestWithMaxPeersBelowOneKeepsTheDefault(t *testing.T) {
	for _, n := range []int{0, -1} {
		l := ledger.New(ledger.WithMaxPeers(n))
		for i := range 3 {
			l.SentBlock(testPeer(i), 10)
		}
		if got := len(l.Peers()); got != 3 {
			t.Fatalf("WithMaxPeers(%d): %d peers remembered, want all 3", n, got)
		}
	}
}

func TestConcurrentUpdatesAreAllCounted(t *testing.T) {
	const (
		peers      = 8
		goroutines = 16
		perG       = 500
	)
	l := ledger.New()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				p := testPeer((g + i) % peers)
				l.SentBlock(p, 2)
				l.ReceivedBlock(p, 3)
				_ = l.Receipt(p)
				if i%50 == 0 {
					_ = l.Peers()
				}
			}
		})
	}
	wg.Wait()

	var sent, recv, exchanged uint64
	for i := range peers {
		r := l.Receipt(testPeer(i))
		sent += r.Sent
		recv += r.Recv
		exchanged += r.Exchanged
	}
	const ops = goroutines * perG
	if sent != 2*ops || recv != 3*ops || exchanged != 2*ops {
		t.Fatalf("totals sent=%d recv=%d exchanged=%d, want %d %d %d", sent, recv, exchanged, 2*ops, 3*ops, 2*ops)
	}
}

func TestConcurrentChurnStaysWithinMaxPeers(t *testing.T) {
	const maxPeers = 32
	l := ledger.New(ledger.WithMaxPeers(maxPeers))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				l.ReceivedBlock(testPeer(g*1000+i), 1)
			}
		})
	}
	wg.Wait()
	if n := len(l.Peers()); n != maxPeers {
		t.Fatalf("len(Peers) = %d, want %d", n, maxPeers)
	}
}

// BenchmarkBytesPerPeer measures the memory cost of one remembered peer, the
// figure documented on WithMaxPeers.
func BenchmarkBytesPerPeer(b *testing.B) {
	const n = 1 << 16
	ids := make([]peer.ID, n)
	for i := range ids {
		ids[i] = testPeer(i)
	}
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l := ledger.New()
		for _, p := range ids {
			l.SentBlock(p, 1)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		// ids are shared with the caller here, so add their size back.
		perPeer := float64(after.HeapAlloc-before.HeapAlloc)/n + float64(len(ids[0])+16)
		b.ReportMetric(perPeer, "bytes/peer")
		runtime.KeepAlive(l)
	}
}

func BenchmarkSentBlockWithEviction(b *testing.B) {
	ids := make([]peer.ID, 1<<12)
	for i := range ids {
		ids[i] = testPeer(i)
	}
	l := ledger.New(ledger.WithMaxPeers(1 << 10))
	i := 0
	for b.Loop() {
		l.SentBlock(ids[i%len(ids)], 1024)
		i++
	}
}

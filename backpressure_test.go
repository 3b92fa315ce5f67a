package bitswap_test

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/testutil"
)

// synthStore holds n blocks of size bytes without keeping their data: a
// block's bytes are made from its index when it is read. It lets tests
// serve a gigabyte without holding one.
type synthStore struct {
	nullStore
	index map[string]int // multihash -> block index
	cids  []cid.Cid
	size  int
}

func synthData(i, size int) []byte {
	data := make([]byte, size)
	for off := 0; off+8 <= size; off += 8 {
		binary.LittleEndian.PutUint64(data[off:], uint64(i)<<32|uint64(off))
	}
	return data
}

func newSynthStore(t testing.TB, n, size int) *synthStore {
	s := &synthStore{index: make(map[string]int, n), size: size}
	for i := range n {
		h, err := mh.Sum(synthData(i, size), mh.SHA2_256, -1)
		if err != nil {
			t.Fatal(err)
		}
		c := cid.NewCidV1(cid.Raw, h)
		s.index[string(h)] = i
		s.cids = append(s.cids, c)
	}
	return s
}

func (s *synthStore) Has(_ context.Context, c cid.Cid) (bool, error) {
	_, ok := s.index[string(c.Hash())]
	return ok, nil
}

func (s *synthStore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	i, ok := s.index[string(c.Hash())]
	if !ok {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	return blocks.NewBlockWithCid(synthData(i, s.size), c)
}

func (s *synthStore) GetSize(_ context.Context, c cid.Cid) (int, error) {
	if _, ok := s.index[string(c.Hash())]; !ok {
		return 0, ipld.ErrNotFound{Cid: c}
	}
	return s.size, nil
}

// nullStore keeps nothing: a leech that only passes blocks on.
type nullStore struct{}

func (nullStore) DeleteBlock(context.Context, cid.Cid) error    { return nil }
func (nullStore) Has(context.Context, cid.Cid) (bool, error)    { return false, nil }
func (nullStore) Put(context.Context, blocks.Block) error       { return nil }
func (nullStore) PutMany(context.Context, []blocks.Block) error { return nil }
func (nullStore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	return nil, ipld.ErrNotFound{Cid: c}
}
func (nullStore) GetSize(_ context.Context, c cid.Cid) (int, error) {
	return 0, ipld.ErrNotFound{Cid: c}
}
func (nullStore) AllKeysChan(context.Context) (<-chan cid.Cid, error) {
	ch := make(chan cid.Cid)
	close(ch)
	return ch, nil
}

// A request read slowly holds no more than its buffer of blocks the reader
// has not taken, and slows only itself: another request of the same node,
// from the same seed, runs at the speed the link leaves it.
func TestSlowReaderHoldsOnlyItsBufferAndSlowsOnlyItself(t *testing.T) {
	if testing.Short() {
		t.Skip("moves a gigabyte")
	}
	const (
		n, size   = 4096, 256 << 10
		fastN     = 400
		buffer    = 16 << 20
		readEvery = 10 * time.Millisecond // 25.6 MB/s
		link      = 1_000_000_000 / 8     // 1 Gbit/s
	)
	slowStore := newSynthStore(t, n, size)
	fastStore := newSynthStore(t, fastN, size+1) // other blocks: the second request's own

	// alone is how long the second request takes with nothing else going.
	run := func(withSlow bool) (fast time.Duration, maxHeld int64, slowDone int) {
		synctest.Test(t, func(t *testing.T) {
			vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(link))
			seedVP, leechVP := vn.NewPeer(), vn.NewPeer()
			both := &unionStore{slowStore, fastStore}
			seed := bitswap.New(context.Background(), seedVP, both)
			leech := bitswap.New(context.Background(), leechVP, nullStore{}, bitswap.WithRequestBuffer(buffer))
			defer seed.Close()
			defer leech.Close()
			vn.ConnectAll()
			time.Sleep(time.Millisecond)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// taken counts the bytes both readers took: what arrived and was
			// not taken is held by the requests (the second one's reader
			// takes at once).
			var taken atomic.Int64
			slowEnded := make(chan int)
			if withSlow {
				ch, err := leech.GetBlocks(ctx, slowStore.cids)
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					got := 0
					for range ch {
						got++
						st, _ := leech.Stat()
						if held := int64(st.DataReceived) - taken.Add(size); held > maxHeld {
							maxHeld = held
						}
						time.Sleep(readEvery)
					}
					slowEnded <- got
				}()
				time.Sleep(time.Second) // the slow request is in its steady state
			}
			start := time.Now()
			ch, err := leech.GetBlocks(context.Background(), fastStore.cids)
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for range ch {
				got++
				taken.Add(size + 1)
			}
			fast = time.Since(start)
			if got != fastN {
				t.Fatalf("second request got %d of %d blocks", got, fastN)
			}
			if withSlow {
				cancel()
				slowDone = <-slowEnded
			}
		})
		return fast, maxHeld, slowDone
	}
	alone, _, _ := run(false)
	shared, held, slowGot := run(true)
	t.Logf("second request of %d × %d KiB: %v alone, %v beside a request read at one block per %v (%d blocks read); most undelivered data held: %.1f MiB (buffer %d MiB)",
		fastN, size>>10, alone, shared, readEvery, slowGot, float64(held)/(1<<20), buffer>>20)
	if held > buffer {
		t.Errorf("the slow request held %d bytes undelivered, over its buffer of %d", held, buffer)
	}
	// The slow reader takes 25.6 MB/s of the 125 MB/s link; the rest is the
	// second request's.
	limit := time.Duration(float64(alone) * 125 / (125 - 25.6) * 1.1)
	if shared > limit {
		t.Errorf("second request took %v beside the slow one, over %v (its share of the link, +10%%)", shared, limit)
	}
}

// unionStore reads from two synthStores.
type unionStore struct{ a, b *synthStore }

func (u *unionStore) pick(c cid.Cid) *synthStore {
	if _, ok := u.a.index[string(c.Hash())]; ok {
		return u.a
	}
	return u.b
}
func (u *unionStore) DeleteBlock(context.Context, cid.Cid) error    { return nil }
func (u *unionStore) Put(context.Context, blocks.Block) error       { return nil }
func (u *unionStore) PutMany(context.Context, []blocks.Block) error { return nil }
func (u *unionStore) AllKeysChan(ctx context.Context) (<-chan cid.Cid, error) {
	return nullStore{}.AllKeysChan(ctx)
}
func (u *unionStore) Has(ctx context.Context, c cid.Cid) (bool, error) { return u.pick(c).Has(ctx, c) }
func (u *unionStore) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	return u.pick(c).Get(ctx, c)
}
func (u *unionStore) GetSize(ctx context.Context, c cid.Cid) (int, error) {
	return u.pick(c).GetSize(ctx, c)
}

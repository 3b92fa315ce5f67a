package bitswap_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"go.uber.org/goleak"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/session"
	"github.com/gobitswap/bitswap/testutil"
)

// Every way a request ends, for the facade's one-off requests (each runs a
// Session of its own) and for the requests of a NewSession Session. However
// a request ends, its channel closes having delivered the right blocks, a
// one-off Session ends with it (a NewSession Session lives on), nothing it
// wanted is still wanted, and no goroutine it started is left.

// world is a leech connected to a seed. The seed holds held; nobody holds
// missing; the leech's own blockstore holds local.
type world struct {
	seed, leech          *node
	held, missing, local []blocks.Block
	sess                 *session.Session // nil: requests are one-off
	endSess              context.CancelFunc
	idle, withSess       goleak.Option // goroutines running before any Session, and once sess runs
	seedOnly             goleak.Option // goroutines running before the leech started
	getBlocks            func(context.Context, []cid.Cid) (<-chan blocks.Block, error)
	getBlock             func(context.Context, cid.Cid) (blocks.Block, error)
}

// eachKind runs f in virtual time twice: with one-off requests (the facade's
// GetBlocks and GetBlock) and with the requests of a NewSession Session.
func eachKind(t *testing.T, f func(t *testing.T, w *world)) {
	for _, withSession := range []bool{false, true} {
		name := "one-off"
		if withSession {
			name = "NewSession"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newWorld(t, withSession)
				defer w.close()
				f(t, w)
			})
		})
	}
}

// oneOff runs f in virtual time with one-off requests only.
func oneOff(t *testing.T, f func(t *testing.T, w *world)) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, false)
		defer w.close()
		f(t, w)
	})
}

// withSession runs f in virtual time with a NewSession Session only.
func withSession(t *testing.T, f func(t *testing.T, w *world)) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, true)
		defer w.close()
		f(t, w)
	})
}

func newWorld(t *testing.T, withSession bool) *world {
	t.Helper()
	vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
	seed := newNodes(t, vn, 1)[0]
	synctest.Wait()
	seedOnly := goleak.IgnoreCurrent()
	leech := newNodes(t, vn, 1)[0]
	vn.ConnectAll()
	w := &world{
		seed: seed, leech: leech, seedOnly: seedOnly,
		held:    testutil.RandomBlocks(20, 3, 1<<10),
		missing: testutil.RandomBlocks(21, 2, 1<<10),
		local:   testutil.RandomBlocks(22, 3, 1<<10),
	}
	ctx := context.Background()
	if err := w.seed.bs.PutMany(ctx, w.held); err != nil {
		t.Fatal(err)
	}
	if err := w.leech.bs.PutMany(ctx, w.local); err != nil {
		t.Fatal(err)
	}
	synctest.Wait() // connection events are delivered at once
	if st, _ := w.leech.b.Stat(); len(st.Peers) != 1 {
		t.Fatalf("the leech sees %d peers, want the seed", len(st.Peers))
	}
	w.idle = goleak.IgnoreCurrent()
	w.getBlocks, w.getBlock = w.leech.b.GetBlocks, w.leech.b.GetBlock
	if withSession {
		var sctx context.Context
		sctx, w.endSess = context.WithCancel(ctx)
		w.sess = w.leech.b.NewSession(sctx)
		w.getBlocks, w.getBlock = w.sess.GetBlocks, w.sess.GetBlock
		synctest.Wait()
		w.withSess = goleak.IgnoreCurrent()
	}
	return w
}

func (w *world) close() {
	if w.endSess != nil {
		w.endSess()
	}
	closeAll([]*node{w.seed, w.leech})
}

// request starts a request for blks' CIDs.
func (w *world) request(t *testing.T, ctx context.Context, blks ...[]blocks.Block) <-chan blocks.Block {
	t.Helper()
	ch, err := w.getBlocks(ctx, keysOf(blks...))
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// startRunning requests the local, held and missing blocks and returns
// while the request runs: the local blocks have been delivered, and the
// wants for the rest are on the wire to the seed, unanswered (no virtual
// time has passed).
func (w *world) startRunning(t *testing.T, ctx context.Context) (<-chan blocks.Block, map[cid.Cid]blocks.Block) {
	t.Helper()
	ch := w.request(t, ctx, w.local, w.held, w.missing)
	got := make(map[cid.Cid]blocks.Block)
	for range w.local {
		receive(t, ch, got)
	}
	w.wantsOut(t, len(w.held)+len(w.missing))
	return ch, got
}

// wantsOut checks that n wants have been sent and are still held at the
// WantManager, so that the checks on cancelling mean something.
func (w *world) wantsOut(t *testing.T, n int) {
	t.Helper()
	synctest.Wait()
	if st, _ := w.leech.b.Stat(); st.Wants.Wants != n || st.Wants.WantsSent != uint64(n) {
		t.Fatalf("the WantManager holds %d wants and sent %d, want %d", st.Wants.Wants, st.Wants.WantsSent, n)
	}
}

// cancelsSent checks that n cancels have gone out to the seed, for the
// wants it still held.
func (w *world) cancelsSent(t *testing.T, n int) {
	t.Helper()
	synctest.Wait()
	if st, _ := w.leech.b.Stat(); st.Wants.CancelsSent != uint64(n) {
		t.Errorf("%d cancels sent, want %d", st.Wants.CancelsSent, n)
	}
}

// requestLeftNothing checks what is left once a request has ended: a
// one-off Session has ended with it while a NewSession Session lives on,
// nothing is wanted, and no goroutine is running that was not before the
// request.
func (w *world) requestLeftNothing(t *testing.T) {
	t.Helper()
	if w.sess == nil {
		w.sessionLeftNothing(t)
		return
	}
	w.leftNothing(t, 1, w.withSess)
	select {
	case <-w.sess.Done():
		t.Fatal("the NewSession Session ended with its request")
	default:
	}
}

// sessionLeftNothing checks that the Session, of whichever kind, has ended
// and left nothing behind: it is not counted, nothing is wanted, and no
// goroutine is running that was not before it.
func (w *world) sessionLeftNothing(t *testing.T) {
	t.Helper()
	w.leftNothing(t, 0, w.idle)
	if w.sess != nil {
		select {
		case <-w.sess.Done():
		default:
			t.Fatal("the NewSession Session is still running")
		}
	}
}

// leechLeftNothing checks that no goroutine is running that was not before
// the leech started: Bitswap.Close ended them all.
func (w *world) leechLeftNothing(t *testing.T) {
	t.Helper()
	synctest.Wait()
	if err := goleak.Find(w.seedOnly); err != nil {
		t.Error(err)
	}
}

func (w *world) leftNothing(t *testing.T, sessions int, before goleak.Option) {
	t.Helper()
	synctest.Wait() // whatever the end of the request set off has run
	st, _ := w.leech.b.Stat()
	if st.Sessions != sessions {
		t.Errorf("Stat counts %d Sessions, want %d", st.Sessions, sessions)
	}
	if len(st.Wantlist) != 0 || st.Wants.Wants != 0 || st.Wants.Queued != 0 {
		t.Errorf("still wanted: %d CIDs in the wantlist, WantManager %+v", len(st.Wantlist), st.Wants)
	}
	if err := goleak.Find(before); err != nil {
		t.Error(err)
	}
}

// receive reads one block from ch into got; it fails if ch closes, the
// block comes twice, or nothing comes within a (virtual) minute.
func receive(t *testing.T, ch <-chan blocks.Block, got map[cid.Cid]blocks.Block) {
	t.Helper()
	select {
	case b, ok := <-ch:
		if !ok {
			t.Fatalf("the channel closed after %d blocks", len(got))
		}
		if _, dup := got[b.Cid()]; dup {
			t.Fatalf("%s delivered twice", b.Cid())
		}
		got[b.Cid()] = b
	case <-time.After(time.Minute):
		t.Fatalf("no block within a minute, after %d blocks", len(got))
	}
}

// drain reads ch into got until it closes; it fails if a block comes twice
// or ch is still open a (virtual) minute later.
func drain(t *testing.T, ch <-chan blocks.Block, got map[cid.Cid]blocks.Block) map[cid.Cid]blocks.Block {
	t.Helper()
	if got == nil {
		got = make(map[cid.Cid]blocks.Block)
	}
	timeout := time.After(time.Minute)
	for {
		select {
		case b, ok := <-ch:
			if !ok {
				return got
			}
			if _, dup := got[b.Cid()]; dup {
				t.Fatalf("%s delivered twice", b.Cid())
			}
			got[b.Cid()] = b
		case <-timeout:
			t.Fatalf("the channel is still open a minute later, after %d blocks", len(got))
		}
	}
}

// sameBlocks checks that got is exactly want, byte for byte.
func sameBlocks(t *testing.T, got map[cid.Cid]blocks.Block, want ...[]blocks.Block) {
	t.Helper()
	n := 0
	for _, bs := range want {
		for _, b := range bs {
			n++
			if g, ok := got[b.Cid()]; !ok || !bytes.Equal(g.RawData(), b.RawData()) {
				t.Fatalf("block %s missing or different", b.Cid())
			}
		}
	}
	if len(got) != n {
		t.Fatalf("%d blocks delivered, want %d", len(got), n)
	}
}

func keysOf(blks ...[]blocks.Block) []cid.Cid {
	var out []cid.Cid
	for _, bs := range blks {
		for _, b := range bs {
			out = append(out, b.Cid())
		}
	}
	return out
}

// An empty request (nil or no CIDs) is done at once: its channel is closed
// when GetBlocks returns, and a one-off Session ends with it.
func TestEmptyRequestEndsAtOnce(t *testing.T) {
	for name, cids := range map[string][]cid.Cid{"nil": nil, "empty": {}} {
		t.Run(name, func(t *testing.T) {
			eachKind(t, func(t *testing.T, w *world) {
				ch, err := w.getBlocks(context.Background(), cids)
				if err != nil {
					t.Fatal(err)
				}
				select {
				case _, ok := <-ch:
					if ok {
						t.Fatal("an empty request delivered a block")
					}
				default:
					t.Fatal("the channel of an empty request is open")
				}
				w.requestLeftNothing(t)
			})
		})
	}
}

// A request for blocks already in the blockstore is served from it, without
// asking any peer.
func TestRequestForLocalBlocksIsServedFromTheBlockstore(t *testing.T) {
	eachKind(t, func(t *testing.T, w *world) {
		sameBlocks(t, drain(t, w.request(t, context.Background(), w.local), nil), w.local)
		if st, _ := w.leech.b.Stat(); st.Wants.WantsSent != 0 {
			t.Errorf("%d wants sent for blocks the leech holds", st.Wants.WantsSent)
		}
		w.requestLeftNothing(t)
	})
}

// A request for blocks a peer holds (and some held locally) ends once all
// have arrived.
func TestRequestEndsWhenAPeerHasDeliveredEverything(t *testing.T) {
	eachKind(t, func(t *testing.T, w *world) {
		sameBlocks(t, drain(t, w.request(t, context.Background(), w.held, w.local), nil), w.held, w.local)
		w.requestLeftNothing(t)
	})
}

// A request whose context is cancelled mid-way closes its channel, delivers
// nothing more, and cancels what it still wanted.
func TestCancellingTheRequestContextEndsTheRequest(t *testing.T) {
	eachKind(t, func(t *testing.T, w *world) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch, got := w.startRunning(t, ctx)
		cancel()
		sameBlocks(t, drain(t, ch, got), w.local)
		w.requestLeftNothing(t)
		w.cancelsSent(t, len(w.held)+len(w.missing))
	})
}

// A request whose context is already cancelled ends at once, asking no
// peer for anything.
func TestRequestWithACancelledContextEndsAtOnce(t *testing.T) {
	eachKind(t, func(t *testing.T, w *world) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		sameBlocks(t, drain(t, w.request(t, ctx, w.held, w.missing), nil))
		if st, _ := w.leech.b.Stat(); st.Wants.WantsSent != 0 {
			t.Errorf("%d wants sent for a cancelled request", st.Wants.WantsSent)
		}
		w.requestLeftNothing(t)
	})
}

// Bitswap.Close mid-request closes the request's channel and ends its
// Session, one-off or not, and every goroutine of the leech.
func TestClosingBitswapEndsARunningRequest(t *testing.T) {
	eachKind(t, func(t *testing.T, w *world) {
		ch, got := w.startRunning(t, context.Background())
		if err := w.leech.b.Close(); err != nil {
			t.Fatal(err)
		}
		sameBlocks(t, drain(t, ch, got), w.local)
		w.sessionLeftNothing(t)
		w.leechLeftNothing(t)
	})
}

// Closing a NewSession Session mid-request closes the request's channel and
// cancels what it still wanted.
func TestClosingTheSessionEndsARunningRequest(t *testing.T) {
	withSession(t, func(t *testing.T, w *world) {
		ch, got := w.startRunning(t, context.Background())
		w.sess.Close()
		sameBlocks(t, drain(t, ch, got), w.local)
		w.sessionLeftNothing(t)
		w.cancelsSent(t, len(w.held)+len(w.missing))
	})
}

// Cancelling the context a NewSession Session was made with is closing it:
// a running request ends with it.
func TestCancellingTheSessionContextEndsARunningRequest(t *testing.T) {
	withSession(t, func(t *testing.T, w *world) {
		ch, got := w.startRunning(t, context.Background())
		w.endSess()
		sameBlocks(t, drain(t, ch, got), w.local)
		w.sessionLeftNothing(t)
		w.cancelsSent(t, len(w.held)+len(w.missing))
	})
}

// A CID asked for more than once in a request is delivered once, and the
// request ends when every distinct CID has come.
func TestDuplicateCidsAreDeliveredOnce(t *testing.T) {
	eachKind(t, func(t *testing.T, w *world) {
		keys := keysOf(w.held, w.local, w.held, w.local[:1])
		ch, err := w.getBlocks(context.Background(), keys)
		if err != nil {
			t.Fatal(err)
		}
		sameBlocks(t, drain(t, ch, nil), w.held, w.local)
		w.requestLeftNothing(t)
	})
}

// A request with an undefined CID is refused, and a one-off Session made
// for it ends.
func TestRequestWithAnUndefinedCidIsRefused(t *testing.T) {
	eachKind(t, func(t *testing.T, w *world) {
		if _, err := w.getBlocks(context.Background(), []cid.Cid{w.held[0].Cid(), cid.Undef}); err == nil {
			t.Fatal("GetBlocks took an undefined CID")
		}
		w.requestLeftNothing(t)
	})
}

// GetBlock returns a block in the local blockstore without asking a peer.
func TestGetBlockFromTheBlockstore(t *testing.T) {
	eachKind(t, func(t *testing.T, w *world) {
		b, err := w.getBlock(context.Background(), w.local[0].Cid())
		if err != nil || !bytes.Equal(b.RawData(), w.local[0].RawData()) {
			t.Fatalf("GetBlock = %v, %v", b, err)
		}
		w.requestLeftNothing(t)
	})
}

// GetBlock returns a block a peer holds.
func TestGetBlockFromAPeer(t *testing.T) {
	eachKind(t, func(t *testing.T, w *world) {
		b, err := w.getBlock(context.Background(), w.held[0].Cid())
		if err != nil || !bytes.Equal(b.RawData(), w.held[0].RawData()) {
			t.Fatalf("GetBlock = %v, %v", b, err)
		}
		w.requestLeftNothing(t)
	})
}

// getBlockMissing runs GetBlock for a block nobody has and returns once it
// is waiting; the channel yields its error.
func (w *world) getBlockMissing(t *testing.T, ctx context.Context) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		_, err := w.getBlock(ctx, w.missing[0].Cid())
		errc <- err
	}()
	w.wantsOut(t, 1)
	return errc
}

// GetBlock returns the context's error when its context is cancelled while
// it waits, and cancels its want.
func TestGetBlockEndsWithItsContext(t *testing.T) {
	eachKind(t, func(t *testing.T, w *world) {
		ctx, cancel := context.WithCancel(context.Background())
		errc := w.getBlockMissing(t, ctx)
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("GetBlock = %v, want context.Canceled", err)
		}
		w.requestLeftNothing(t)
		w.cancelsSent(t, 1)
	})
}

// GetBlock returns an error when Bitswap closes while it waits.
func TestGetBlockEndsWhenBitswapCloses(t *testing.T) {
	eachKind(t, func(t *testing.T, w *world) {
		errc := w.getBlockMissing(t, context.Background())
		_ = w.leech.b.Close()
		// One ErrClosed, whether the request was on a Session or not.
		if err := <-errc; !errors.Is(err, bitswap.ErrClosed) || !errors.Is(err, session.ErrClosed) {
			t.Fatalf("GetBlock = %v, want ErrClosed", err)
		}
		w.sessionLeftNothing(t)
		w.leechLeftNothing(t)
	})
}

// GetBlock refuses an undefined CID, and a one-off Session made for it ends.
func TestGetBlockRefusesAnUndefinedCid(t *testing.T) {
	eachKind(t, func(t *testing.T, w *world) {
		if _, err := w.getBlock(context.Background(), cid.Undef); err == nil {
			t.Fatal("GetBlock took an undefined CID")
		}
		w.requestLeftNothing(t)
	})
}

// After Close, a one-off request is refused and leaves no Session behind.
func TestRequestAfterCloseIsRefused(t *testing.T) {
	oneOff(t, func(t *testing.T, w *world) {
		_ = w.leech.b.Close()
		if _, err := w.leech.b.GetBlocks(context.Background(), keysOf(w.held)); !errors.Is(err, bitswap.ErrClosed) {
			t.Fatalf("GetBlocks after Close = %v, want ErrClosed", err)
		}
		if _, err := w.leech.b.GetBlock(context.Background(), w.held[0].Cid()); !errors.Is(err, bitswap.ErrClosed) {
			t.Fatalf("GetBlock after Close = %v, want ErrClosed", err)
		}
		w.sessionLeftNothing(t)
	})
}

package vtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	boxobs "github.com/ipfs/boxo/bitswap"
	boxobstore "github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/testutil"
)

// fetcher is what both implementations' Bitswap and sessions offer.
type fetcher interface {
	GetBlocks(ctx context.Context, keys []cid.Cid) (<-chan blocks.Block, error)
}

// node is one Bitswap instance on a virtual peer.
type node interface {
	fetcher
	newSession(ctx context.Context) fetcher
	close()
	nativeBytes() uint64
}

type ourNode struct{ b *bitswap.Bitswap }

func (n ourNode) GetBlocks(ctx context.Context, keys []cid.Cid) (<-chan blocks.Block, error) {
	return n.b.GetBlocks(ctx, keys)
}
func (n ourNode) newSession(ctx context.Context) fetcher { return n.b.NewSession(ctx) }
func (n ourNode) close()                                 { _ = n.b.Close() }
func (n ourNode) nativeBytes() uint64                    { return 0 }

type boxoNode struct {
	b   *boxobs.Bitswap
	bs  boxobstore.Blockstore
	net *BoxoNetwork
}

func (n boxoNode) GetBlocks(ctx context.Context, keys []cid.Cid) (<-chan blocks.Block, error) {
	return n.b.GetBlocks(ctx, keys)
}
func (n boxoNode) newSession(ctx context.Context) fetcher { return n.b.NewSession(ctx) }
func (n boxoNode) close()                                 { _ = n.b.Close() }
func (n boxoNode) nativeBytes() uint64                    { return n.net.NativeBytes() }

// newNode builds impl's Bitswap on vp, with content in its blockstore
// before it starts, and router, if set, as its content routing.
func newNode(ctx context.Context, impl Impl, vp *testutil.VirtualPeer, content []blocks.Block, router *testutil.ContentRouter) (node, error) {
	var cr routing.ContentDiscovery // nil unless router is: a nil *ContentRouter is not
	if router != nil {
		cr = router
	}
	switch impl {
	case Ours:
		bs := blockstore.NewMemory()
		if err := bs.PutMany(ctx, content); err != nil {
			return nil, err
		}
		var opts []bitswap.Option
		if cr != nil {
			opts = append(opts, bitswap.WithContentRouting(cr))
		}
		return ourNode{b: bitswap.New(ctx, vp, bs, opts...)}, nil
	case Boxo, BoxoBC:
		bs := boxobstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
		if err := bs.PutMany(ctx, content); err != nil {
			return nil, err
		}
		var opts []boxobs.Option
		if impl == BoxoBC {
			opts = boxoBroadcastControl
		}
		net := NewBoxoNetwork(vp)
		return boxoNode{b: boxobs.New(ctx, net, cr, bs, opts...), bs: bs, net: net}, nil
	}
	return nil, fmt.Errorf("vtime: unknown implementation %q", impl)
}

// closeBubble ends a run: every node, then the network and the context,
// then a virtual minute, so that boxo's timers (rebroadcast, provider
// search, DONT_HAVE timeouts) fire and its goroutines exit before the
// bubble ends.
func closeBubble(nodes []node, vn *testutil.VirtualNetwork, cancel context.CancelFunc) {
	for _, n := range nodes {
		n.close()
	}
	vn.Close()
	cancel()
	time.Sleep(time.Minute)
}

// Run runs one scenario with one implementation in its own synctest bubble.
func Run(t *testing.T, s Scenario, impl Impl) Result {
	t.Helper()
	var r Result
	synctest.Test(t, func(t *testing.T) {
		r = RunInBubble(s, impl)
	})
	return r
}

// RunAll runs every scenario with both implementations, each run in its own
// bubble, and logs each result.
func RunAll(t *testing.T, p Params) []Result {
	t.Helper()
	var out []Result
	for _, s := range Scenarios(p) {
		for _, impl := range Impls {
			r := Run(t, s, impl)
			t.Log(r)
			out = append(out, r)
		}
	}
	return out
}

// RunInBubble runs one scenario with one implementation. It must be called
// inside a testing/synctest bubble, which it leaves with no goroutine of its
// own running: every node is closed, the network closed, and a virtual
// minute slept so that boxo's timers fire and its goroutines exit.
func RunInBubble(s Scenario, impl Impl) Result {
	r := Result{Scenario: s.Name, Impl: impl, Bound: s.LowerBound()}
	err := run(s, impl, &r)
	if err != nil {
		r.Err = err.Error()
	} else {
		r.Completed = true
	}
	if r.Bound > 0 {
		r.Ratio = float64(r.Time) / float64(r.Bound)
	}
	if r.BlocksNeeded > 0 {
		r.DupPercent = 100 * float64(r.DupBlocks) / float64(r.BlocksNeeded)
	}
	if r.PayloadBytes > 0 {
		r.WirePerPayload = float64(r.WireBytes) / float64(r.PayloadBytes)
	}
	return r
}

func run(s Scenario, impl Impl, r *Result) (err error) {
	p := s.Params
	ctx, cancel := context.WithCancel(context.Background())
	vn := p.network()
	var nodes []node
	defer func() { closeBubble(nodes, vn, cancel) }()

	c := newContent(s)
	seedVPs := make([]*testutil.VirtualPeer, s.Seeds)
	leechVPs := make([]*testutil.VirtualPeer, s.Leeches)
	for i := range seedVPs {
		seedVPs[i] = vn.NewPeer()
	}
	for i := range leechVPs {
		leechVPs[i] = vn.NewPeer()
	}
	if s.SeedUplink > 0 {
		for _, sp := range seedVPs {
			vn.SetAccessLink(sp.Self(), s.SeedUplink, 0)
		}
	}
	if s.LeechDownlink > 0 {
		for _, lp := range leechVPs {
			vn.SetAccessLink(lp.Self(), 0, s.LeechDownlink)
		}
	}
	for i, sp := range seedVPs {
		if i >= s.Seeds-s.SlowSeeds {
			for _, lp := range leechVPs {
				vn.SetLink(sp.Self(), lp.Self(), s.seedRTT(i)/2, p.Bandwidth)
			}
		}
		n, err := newNode(ctx, impl, sp, c.seedBlocks(i), nil)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	leeches := make([]node, s.Leeches)
	for i, lp := range leechVPs {
		n, err := newNode(ctx, impl, lp, nil, nil)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		leeches[i] = n
	}
	if s.Strangers {
		var ids []peer.ID
		for _, lp := range leechVPs {
			ids = append(ids, lp.Self())
		}
		for _, sp := range seedVPs {
			if err := vn.ConnectPairs(sp.Self(), ids...); err != nil {
				return err
			}
		}
	} else {
		vn.ConnectAll()
	}
	time.Sleep(time.Millisecond) // let connection events settle

	before := vn.Traffic()
	var beforeTo []testutil.Traffic
	for _, lp := range leechVPs {
		beforeTo = append(beforeTo, vn.TrafficTo(lp.Self()))
	}
	var nativeBefore uint64
	for _, n := range nodes {
		nativeBefore += n.nativeBytes()
	}

	start := time.Now()
	for i := range s.Leaving {
		vn.ScheduleChurn(seedVPs[i].Self(), s.LeaveAt, 0)
	}
	fctx, fcancel := context.WithTimeout(ctx, p.Timeout)
	defer fcancel()
	var wg sync.WaitGroup
	errs := make([]error, s.Leeches)
	var mu sync.Mutex
	var last time.Time
	for i, l := range leeches {
		wg.Go(func() {
			errs[i] = c.fetch(fctx, l)
			mu.Lock()
			if now := time.Now(); now.After(last) {
				last = now
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	r.Time = last.Sub(start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	time.Sleep(time.Second) // let blocks in flight land, to count them

	after := vn.Traffic()
	r.WireBytes = after.Sent.Bytes - before.Sent.Bytes
	r.Messages = after.Sent.Messages - before.Sent.Messages
	r.Aborted = after.Aborted - before.Aborted
	for i, lp := range leechVPs {
		to := vn.TrafficTo(lp.Self())
		r.BlocksDelivered += to.Delivered.Blocks - beforeTo[i].Delivered.Blocks
	}
	r.BlocksNeeded = uint64(s.Leeches) * uint64(len(c.all))
	r.PayloadBytes = uint64(s.Leeches) * c.bytes
	if r.BlocksDelivered > r.BlocksNeeded {
		r.DupBlocks = r.BlocksDelivered - r.BlocksNeeded
	}
	if impl == Boxo {
		for _, n := range nodes {
			r.NativeWireBytes += n.nativeBytes()
		}
		r.NativeWireBytes -= nativeBefore
	}
	return nil
}

package vtime

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	boxobs "github.com/ipfs/boxo/bitswap"
	boxoclient "github.com/ipfs/boxo/bitswap/client"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/testutil"
)

// BoxoBC is boxo with broadcast control on, as Kubo v0.43 configures it
// by default (Internal.Bitswap.BroadcastControl: enabled, no peer limit, no
// random peers, no sends to peers with pending wants), on a network where
// no peer is local or peered: Kubo exempts those from the control, which
// needs a libp2p host to tell, so here the control covers them too (the
// virtual network has no addresses). Boxo is its library default:
// broadcast control off.
const BoxoBC Impl = "boxo-bc"

// ScaleImpls are the implementations the scale scenarios compare.
var ScaleImpls = []Impl{Ours, Boxo, BoxoBC}

// ScaleScenario is the public network's shape: many connected peers that
// hold nothing, a few that hold the data, or many leeches of one seed.
type ScaleScenario struct {
	Name string
	// Quiet peers are connected to every leech and hold nothing: they
	// answer DONT_HAVE when asked to, or, Silent, never answer at all.
	Quiet  int
	Silent bool
	// Holders hold all of the content, and content routing (a fake router
	// with RouterDelay) names them as providers of every block, as the DHT
	// would. Routed: they are not connected at the start, so only the
	// router leads to them.
	Holders     int
	Routed      bool
	RouterDelay time.Duration
	// Leeches fetch the content at once, each connected to the holders
	// only (and to the quiet peers); SeedUplink, when set, is the
	// holders' access link, shared by all their connections.
	Leeches    int
	SeedUplink int

	Blocks, BlockSize int
	RTT               time.Duration
	Bandwidth         int
	Timeout           time.Duration
}

// ScaleScenarios are the issue's, at full size or (short) at a size for
// CI. Full: a leech among 1,000 peers of which 3 hold the data, and one
// seed serving 100 leeches.
func ScaleScenarios(short bool) []ScaleScenario {
	peers, leeches, nBlocks := 1000, 100, 100
	if short {
		peers, leeches, nBlocks = 100, 20, 20
	}
	base := ScaleScenario{Blocks: nBlocks, BlockSize: 256 << 10, RTT: 50 * time.Millisecond,
		Bandwidth: 100_000_000 / 8, Timeout: 10 * time.Minute, Leeches: 1, Holders: 3,
		RouterDelay: 100 * time.Millisecond}
	dontHave := base
	dontHave.Name = fmt.Sprintf("%d peers, 3 hold the data, the rest say DONT_HAVE", peers)
	dontHave.Quiet = peers - 3
	silentRouted := base
	silentRouted.Name = fmt.Sprintf("%d silent peers, 3 holders found through the router", peers-3)
	silentRouted.Quiet, silentRouted.Silent, silentRouted.Routed = peers-3, true, true
	fan := base
	fan.Name = fmt.Sprintf("1 seed → %d leeches, shared uplink", leeches)
	fan.Holders, fan.Leeches, fan.SeedUplink = 1, leeches, base.Bandwidth
	fan.Blocks = max(nBlocks/5, 4)
	return []ScaleScenario{dontHave, silentRouted, fan}
}

// LowerBound is the least time in which every leech can have every block:
// one round trip before the first byte, after a router lookup when there
// are quiet peers, then the holders' links, or the seed's shared uplink, at
// full rate. Among quiet peers a leech cannot tell the holders but by
// asking every peer (what the entry targets forbid) or content routing, so
// the lookup is part of the least time; with no quiet peers, and holders
// connected, it is not.
func (s ScaleScenario) LowerBound() time.Duration {
	payload := float64(s.Blocks) * float64(s.BlockSize)
	start := s.RTT
	if s.Routed || s.Quiet > 0 {
		start += s.RouterDelay
	}
	rate := float64(s.Holders) * float64(s.Bandwidth) // each holder's own link to a leech
	t := payload / rate
	if s.SeedUplink > 0 {
		t = math.Max(t, float64(s.Leeches)*payload/(float64(s.Holders)*float64(s.SeedUplink)))
	}
	return start + time.Duration(t*float64(time.Second))
}

// ScaleResult is what one run measured. Entries, messages and bytes are
// those the leeches sent: their wantlists (leeches serve nothing).
type ScaleResult struct {
	Scenario  string `json:"scenario"`
	Impl      Impl   `json:"impl"`
	Completed bool   `json:"completed"`
	Err       string `json:"error,omitempty"`

	Time  time.Duration `json:"time_ns"` // until every leech had every block
	Bound time.Duration `json:"bound_ns"`
	Ratio float64       `json:"ratio"`

	Blocks          uint64  `json:"blocks"`            // blocks the leeches needed, together
	Entries         uint64  `json:"entries"`           // wantlist entries sent by the leeches
	EntriesPerQuiet float64 `json:"entries_per_quiet"` // of those, sent to quiet peers, per quiet peer
	Messages        uint64  `json:"messages"`          // messages sent by the leeches
	MessagesPerBlk  float64 `json:"messages_per_block"`
	WantBytesPerBlk float64 `json:"wantlist_bytes_per_block"` // framed bytes sent by the leeches, per block
	DupBlocks       uint64  `json:"dup_blocks"`

	// Each leech's finish time against the mean of all (fairness).
	MeanTime   time.Duration `json:"mean_time_ns"`
	MaxPerMean float64       `json:"max_per_mean"`
	MinPerMean float64       `json:"min_per_mean"`
}

func (r ScaleResult) String() string {
	if !r.Completed {
		return fmt.Sprintf("%-52s %-7s NOT COMPLETED: %s", r.Scenario, r.Impl, r.Err)
	}
	return fmt.Sprintf("%-52s %-7s time %7.3fs  bound %7.3fs  ratio %5.2f  entries %7d (%.2f per quiet peer)  msgs/block %6.2f  want bytes/block %8.1f  dups %d  leech finish max/mean %.3f",
		r.Scenario, r.Impl, r.Time.Seconds(), r.Bound.Seconds(), r.Ratio, r.Entries, r.EntriesPerQuiet,
		r.MessagesPerBlk, r.WantBytesPerBlk, r.DupBlocks, r.MaxPerMean)
}

// RunScale runs one scale scenario with one implementation in a synctest
// bubble of its own.
func RunScale(t *testing.T, s ScaleScenario, impl Impl) ScaleResult {
	t.Helper()
	var r ScaleResult
	synctest.Test(t, func(t *testing.T) {
		r = ScaleResult{Scenario: s.Name, Impl: impl, Bound: s.LowerBound()}
		if err := runScale(s, impl, &r); err != nil {
			r.Err = err.Error()
		} else {
			r.Completed = true
		}
		if r.Bound > 0 {
			r.Ratio = float64(r.Time) / float64(r.Bound)
		}
	})
	return r
}

// boxoBroadcastControl is BoxoBC's configuration (see BoxoBC).
var boxoBroadcastControl = []boxobs.Option{
	boxobs.WithClientOption(boxoclient.BroadcastControlEnable(true)),
	boxobs.WithClientOption(boxoclient.BroadcastControlMaxPeers(-1)),
	boxobs.WithClientOption(boxoclient.BroadcastControlLocalPeers(true)),
	boxobs.WithClientOption(boxoclient.BroadcastControlPeeredPeers(true)),
	boxobs.WithClientOption(boxoclient.BroadcastControlMaxRandomPeers(0)),
	boxobs.WithClientOption(boxoclient.BroadcastControlSendToPendingPeers(false)),
}

func runScale(s ScaleScenario, impl Impl, r *ScaleResult) error {
	ctx, cancel := context.WithCancel(context.Background())
	vn := testutil.NewVirtualNetwork(testutil.WithLatency(s.RTT/2), testutil.WithBandwidth(s.Bandwidth))
	var nodes []node
	defer func() { closeBubble(nodes, vn, cancel) }()

	content := testutil.RandomBlocks(int64(s.Blocks), s.Blocks, s.BlockSize)
	keys := make([]cid.Cid, len(content))
	for i, b := range content {
		keys[i] = b.Cid()
	}
	router := testutil.NewContentRouter(vn, s.RouterDelay)

	holders := make([]*testutil.VirtualPeer, s.Holders)
	for i := range holders {
		holders[i] = vn.NewPeer()
		if s.SeedUplink > 0 {
			vn.SetAccessLink(holders[i].Self(), s.SeedUplink, 0)
		}
		// Holders are boxo nodes for boxo's runs and ours for ours: the
		// server side is part of what is compared.
		n, err := newNode(ctx, impl, holders[i], content, nil)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		for _, k := range keys {
			router.AddProvider(k, holders[i].Self())
		}
	}
	// Quiet peers are ours in every run (they are the network, not what is
	// compared): an empty blockstore answers DONT_HAVE; silent ones swallow
	// every message.
	quiet := make([]peer.ID, s.Quiet)
	for i := range quiet {
		vp := vn.NewPeer()
		quiet[i] = vp.Self()
		if s.Silent {
			vn.SetUnresponsive(vp.Self(), true)
			vp.Start(nopReceiver{})
			continue
		}
		n, err := newNode(ctx, Ours, vp, nil, nil)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	leechVPs := make([]*testutil.VirtualPeer, s.Leeches)
	leeches := make([]node, s.Leeches)
	for i := range leechVPs {
		leechVPs[i] = vn.NewPeer()
		// The public network: no peer is local to the leech (the virtual
		// network's peers are, as on loopback, unless marked remote).
		vn.SetRemote(leechVPs[i].Self(), true)
		n, err := newNode(ctx, impl, leechVPs[i], nil, router.ForPeer(leechVPs[i].Self()))
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		leeches[i] = n
		if err := vn.ConnectPairs(leechVPs[i].Self(), quiet...); err != nil {
			return err
		}
		if !s.Routed {
			for _, h := range holders {
				if err := vn.ConnectPairs(leechVPs[i].Self(), h.Self()); err != nil {
					return err
				}
			}
		}
	}
	time.Sleep(time.Millisecond) // let connection events settle

	before := make([]testutil.Traffic, s.Leeches)
	beforeQuiet := make([]uint64, s.Leeches)
	// toQuiet counts the wantlist entries l sent to the quiet peers.
	toQuiet := func(l peer.ID) uint64 {
		var sum uint64
		for _, q := range quiet {
			sum += vn.TrafficBetween(l, q).Sent.Entries
		}
		return sum
	}
	for i, lp := range leechVPs {
		before[i] = vn.TrafficFrom(lp.Self())
		beforeQuiet[i] = toQuiet(lp.Self())
	}

	start := time.Now()
	fctx, fcancel := context.WithTimeout(ctx, s.Timeout)
	defer fcancel()
	var wg sync.WaitGroup
	errs := make([]error, s.Leeches)
	took := make([]time.Duration, s.Leeches)
	for i, l := range leeches {
		wg.Go(func() {
			ch, err := l.GetBlocks(fctx, keys)
			if err != nil {
				errs[i] = err
				return
			}
			seen := cid.NewSet()
			for b := range ch {
				seen.Add(b.Cid())
			}
			took[i] = time.Since(start)
			if seen.Len() != len(keys) {
				errs[i] = fmt.Errorf("leech %d got %d of %d blocks (%v)", i, seen.Len(), len(keys), fctx.Err())
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var sum time.Duration
	for _, d := range took {
		sum += d
		r.Time = max(r.Time, d)
	}
	r.MeanTime = sum / time.Duration(len(took))
	r.MinPerMean = math.Inf(1)
	for _, d := range took {
		f := float64(d) / float64(r.MeanTime)
		r.MaxPerMean = math.Max(r.MaxPerMean, f)
		r.MinPerMean = math.Min(r.MinPerMean, f)
	}
	time.Sleep(time.Second) // cancels and late answers land, and count

	var entries, quietEntries, msgs, bytes, delivered uint64
	for i, lp := range leechVPs {
		after := vn.TrafficFrom(lp.Self())
		entries += after.Sent.Entries - before[i].Sent.Entries
		msgs += after.Sent.Messages - before[i].Sent.Messages
		bytes += after.Sent.Bytes - before[i].Sent.Bytes
		quietEntries += toQuiet(lp.Self()) - beforeQuiet[i]
		delivered += vn.TrafficTo(lp.Self()).Delivered.Blocks
	}
	r.Blocks = uint64(s.Leeches) * uint64(len(keys))
	r.Entries, r.Messages = entries, msgs
	if s.Quiet > 0 {
		r.EntriesPerQuiet = float64(quietEntries) / float64(s.Quiet*s.Leeches)
	}
	r.MessagesPerBlk = float64(msgs) / float64(r.Blocks)
	r.WantBytesPerBlk = float64(bytes) / float64(r.Blocks)
	if delivered > r.Blocks {
		r.DupBlocks = delivered - r.Blocks
	}
	return nil
}

// nopReceiver is a silent peer's: it never sees a message (the network
// swallows them) and ignores connection events.
type nopReceiver struct{}

func (nopReceiver) ReceiveMessage(context.Context, peer.ID, *message.Message) error { return nil }
func (nopReceiver) ReceiveError(peer.ID, error)                                     {}
func (nopReceiver) PeerConnected(peer.ID)                                           {}
func (nopReceiver) PeerDisconnected(peer.ID)                                        {}

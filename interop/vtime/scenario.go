// Package vtime is the virtual-time benchmark suite: it runs the same
// scenarios with our Bitswap and with boxo's, both on the testutil virtual
// network (identical links: latency, bandwidth, framed wire bytes), inside
// testing/synctest bubbles, so every figure is deterministic and free of
// scheduling noise.
//
// boxo joins the virtual network through BoxoNetwork, an implementation of
// boxo's BitSwapNetwork over a testutil.VirtualPeer. Every figure is taken
// from the virtual network's Traffic, so both implementations are measured
// the same way.
//
// synctest needs a *testing.T, so the suite runs from tests: RunAll (or Run
// for one scenario) takes one. The package's tests expose the suite:
// TestVirtualTimeSuiteShort (every scenario, small sizes, asserts only that
// each completed), TestOursTargets (the targets, ours only) and
// TestVirtualTimeSuite (full size, run only with -vtime.full, optionally
// writing JSON to -vtime.json).
package vtime

import (
	"fmt"
	"math"
	"time"

	"github.com/gobitswap/bitswap/testutil"
)

// Impl names a Bitswap implementation.
type Impl string

// The implementations compared.
const (
	Ours Impl = "ours"
	Boxo Impl = "boxo"
)

// Impls lists both, ours first.
var Impls = []Impl{Ours, Boxo}

// Params are the link and content parameters shared by the scenarios.
type Params struct {
	RTT       time.Duration // round-trip time of a link (one way = RTT/2)
	Bandwidth int           // bytes/s of a link, in each direction
	Blocks    int           // blocks fetched by each leech (DAG: leaves, rounded up to a cube)
	BlockSize int           // bytes per block (DAG: per leaf)
	// Timeout is the virtual time after which a fetch is abandoned and the
	// run reported as not completed.
	Timeout time.Duration
	// SendBuffer is each link's send buffer (testutil.WithSendBuffer):
	// how far a sender may get ahead of the wire before a send blocks.
	SendBuffer int
}

// network is a virtual network with p's links.
func (p Params) network() *testutil.VirtualNetwork {
	return testutil.NewVirtualNetwork(testutil.WithLatency(p.RTT/2), testutil.WithBandwidth(p.Bandwidth),
		testutil.WithSendBuffer(p.SendBuffer))
}

// DefaultParams are the issue's: 50 ms RTT, 100 Mbit/s, 1,000 × 256 KiB.
func DefaultParams() Params {
	return Params{
		RTT:        50 * time.Millisecond,
		Bandwidth:  100_000_000 / 8,
		Blocks:     1000,
		BlockSize:  256 << 10,
		Timeout:    30 * time.Minute,
		SendBuffer: testutil.DefaultSendBuffer,
	}
}

// ShortParams are DefaultParams with 100 blocks, for smoke tests.
func ShortParams() Params {
	p := DefaultParams()
	p.Blocks = 100
	return p
}

// Scenario is one topology and workload. Seeds hold the content (all of it,
// or disjoint equal parts); leeches fetch all of it at the same time.
type Scenario struct {
	Name    string
	Seeds   int
	Leeches int
	// Disjoint gives each seed an equal, disjoint part of the content
	// instead of all of it.
	Disjoint bool
	// SlowSeeds is how many of the seeds (the last ones) have links to the
	// leeches with SlowFactor times the round-trip time.
	SlowSeeds  int
	SlowFactor int
	// Leaving is how many seeds (the first ones) leave for good LeaveAt
	// after the fetch starts.
	Leaving int
	LeaveAt time.Duration
	// DAGDepth > 0 makes the content a dag-pb tree of that depth below the
	// root, with raw leaves, fetched by walking links from the root (only
	// the root's CID is known up front).
	DAGDepth int
	// LeechDownlink and SeedUplink, when set, give every leech (seed) an
	// access link of that many bytes/s shared by all its connections
	// (testutil.WithAccessLinks), on top of the per-pair links.
	LeechDownlink, SeedUplink int
	// Strangers connects each leech to the seeds only, not to the other
	// leeches: clients of one server that do not know each other, so
	// they cannot trade.
	Strangers bool

	Params Params
}

// Scenarios returns the suite for p, in the order of the issue.
func Scenarios(p Params) []Scenario {
	payload := float64(p.Blocks) * float64(p.BlockSize)
	// Half of what four seeds need to send everything.
	leaveAt := time.Duration(payload / float64(4*p.Bandwidth) / 2 * float64(time.Second))
	return []Scenario{
		{Name: "1 seed → 1 leech", Seeds: 1, Leeches: 1, Params: p},
		{Name: "DAG depth 3, 1 seed → 1 leech", Seeds: 1, Leeches: 1, DAGDepth: 3, Params: p},
		{Name: "10 seeds → 1 leech", Seeds: 10, Leeches: 1, Params: p},
		{Name: "10 seeds → 1 leech, shared downlink", Seeds: 10, Leeches: 1, LeechDownlink: p.Bandwidth, Params: p},
		{Name: "1 seed → 10 leeches", Seeds: 1, Leeches: 10, Params: p},
		{Name: "1 seed → 10 strangers, shared uplink", Seeds: 1, Leeches: 10, SeedUplink: p.Bandwidth, Strangers: true, Params: p},
		{Name: "4 seeds, disjoint quarters", Seeds: 4, Leeches: 1, Disjoint: true, Params: p},
		{Name: "9 fast + 1 slow (10× RTT) seeds", Seeds: 10, Leeches: 1, SlowSeeds: 1, SlowFactor: 10, Params: p},
		{Name: "4 seeds, 2 leave mid-transfer", Seeds: 4, Leeches: 1, Leaving: 2, LeaveAt: leaveAt, Params: p},
	}
}

// dagFanout is the fanout of the DAG scenario's tree: the least whose
// depth-th power reaches p.Blocks leaves.
func (s Scenario) dagFanout() int {
	f := int(math.Ceil(math.Pow(float64(s.Params.Blocks), 1/float64(s.DAGDepth)) - 1e-9))
	return max(f, 1)
}

// leafCount is how many payload blocks each leech fetches.
func (s Scenario) leafCount() int {
	if s.DAGDepth > 0 {
		n := 1
		for range s.DAGDepth {
			n *= s.dagFanout()
		}
		return n
	}
	return s.Params.Blocks
}

// seedRTT is the round-trip time from seed i to a leech.
func (s Scenario) seedRTT(i int) time.Duration {
	if i >= s.Seeds-s.SlowSeeds {
		return s.Params.RTT * time.Duration(s.SlowFactor)
	}
	return s.Params.RTT
}

// LowerBound is the least time in which every leech can have every payload
// byte, ignoring framing, CIDs and the internal nodes of a DAG:
//
//   - the first payload byte from a seed cannot arrive before one round trip
//     on its link (want out, block back); after that the link carries at
//     most Bandwidth bytes/s (or the seed's uplink, if slower), until the
//     seed leaves (churn);
//   - without access links every directed link has its own bandwidth, so
//     leeches fetching at once do not slow each other; a swarm in which
//     leeches also trade with each other could in principle beat this
//     bound (Strangers rules that out);
//   - a leech's downlink (LeechDownlink) carries at most that many bytes/s
//     from all seeds together, from the earliest round trip on;
//   - a seed's uplink (SeedUplink) carries at most that many bytes/s to all
//     leeches together, so the leeches' bytes from it, all together, take
//     that long; this holds only if leeches cannot get bytes from each
//     other, so scenarios with a seed uplink use Strangers;
//   - with disjoint parts, each part comes only from its seed; otherwise any
//     seed may send any byte, and the bound is the least T by which the
//     seeds can deliver it all;
//   - a DAG of depth d adds d round trips: the leaves' CIDs are only known
//     once their parents, d levels below the root, have arrived.
func (s Scenario) LowerBound() time.Duration {
	p := s.Params
	payload := float64(s.leafCount()) * float64(p.BlockSize)
	leeches := float64(max(s.Leeches, 1))
	extra := time.Duration(s.DAGDepth) * p.RTT
	// A window is a source feeding at rate bytes/s from from until to.
	type window struct{ rate, from, to float64 }
	seed := func(i int, rate int) window {
		w := window{rate: float64(rate), from: s.seedRTT(i).Seconds(), to: math.Inf(1)}
		if i < s.Leaving {
			w.to = s.LeaveAt.Seconds()
		}
		return w
	}
	linkRate := p.Bandwidth
	if s.SeedUplink > 0 {
		linkRate = min(linkRate, s.SeedUplink)
	}
	// fill is the least T by which the windows together deliver bytes.
	fill := func(bytes float64, ws []window) float64 {
		delivered := func(t float64) float64 {
			var sum float64
			for _, w := range ws {
				if d := math.Min(t, w.to) - w.from; d > 0 {
					sum += w.rate * d
				}
			}
			return sum
		}
		lo, hi := 0.0, 1.0
		for delivered(hi) < bytes {
			hi *= 2
			if hi > 1e9 {
				return math.Inf(1)
			}
		}
		for range 200 {
			mid := (lo + hi) / 2
			if delivered(mid) >= bytes {
				hi = mid
			} else {
				lo = mid
			}
		}
		return hi
	}
	var t float64
	all := make([]window, s.Seeds)
	earliest := math.Inf(1)
	for i := range s.Seeds {
		all[i] = seed(i, linkRate)
		earliest = math.Min(earliest, all[i].from)
	}
	if s.Disjoint {
		for i := range s.Seeds {
			lo, hi := s.part(i, s.leafCount())
			part := float64(hi-lo) * float64(p.BlockSize)
			t = math.Max(t, fill(part, []window{all[i]}))
			if s.SeedUplink > 0 {
				t = math.Max(t, fill(leeches*part, []window{seed(i, s.SeedUplink)}))
			}
		}
	} else {
		t = fill(payload, all)
		if s.SeedUplink > 0 {
			up := make([]window, s.Seeds)
			for i := range up {
				up[i] = seed(i, s.SeedUplink)
			}
			t = math.Max(t, fill(leeches*payload, up))
		}
	}
	if s.LeechDownlink > 0 {
		t = math.Max(t, fill(payload, []window{{rate: float64(s.LeechDownlink), from: earliest, to: math.Inf(1)}}))
	}
	return extra + time.Duration(math.Round(t*float64(time.Second)))
}

// part is the range of the n blocks held by seed i when they are disjoint.
func (s Scenario) part(i, n int) (lo, hi int) {
	return i * n / s.Seeds, (i + 1) * n / s.Seeds
}

// Result is what one run of a scenario with one implementation measured.
// Traffic figures cover every link of the network, from the start of the
// fetch to one virtual second after the last leech finished (so that
// blocks already in flight are counted).
type Result struct {
	Scenario  string `json:"scenario"`
	Impl      Impl   `json:"impl"`
	Completed bool   `json:"completed"`
	Err       string `json:"error,omitempty"`

	Time  time.Duration `json:"time_ns"`  // virtual time until every leech had every block
	Bound time.Duration `json:"bound_ns"` // Scenario.LowerBound
	Ratio float64       `json:"ratio"`    // Time / Bound

	PayloadBytes    uint64  `json:"payload_bytes"`    // block bytes the leeches needed, all leeches together
	BlocksNeeded    uint64  `json:"blocks_needed"`    // blocks the leeches needed, all leeches together
	BlocksDelivered uint64  `json:"blocks_delivered"` // blocks delivered to leeches
	DupBlocks       uint64  `json:"dup_blocks"`       // BlocksDelivered − BlocksNeeded
	DupPercent      float64 `json:"dup_percent"`      // 100 · DupBlocks / BlocksNeeded

	WireBytes      uint64  `json:"wire_bytes"`       // framed bytes sent on every link
	WirePerPayload float64 `json:"wire_per_payload"` // WireBytes / PayloadBytes
	Messages       uint64  `json:"messages"`         // messages sent on every link
	// Aborted counts messages sent (and counted above) but cut off in
	// flight by a disconnection: the churn scenario's leaving seeds.
	Aborted uint64 `json:"aborted"`
	// NativeWireBytes (boxo only) is what boxo's own encoder produced for
	// the messages it sent; the links carry, and WireBytes counts, our
	// encoder's bytes for the same messages.
	NativeWireBytes uint64 `json:"native_wire_bytes,omitempty"`
}

// String is one line for logs.
func (r Result) String() string {
	if !r.Completed {
		return fmt.Sprintf("%-34s %-4s NOT COMPLETED: %s", r.Scenario, r.Impl, r.Err)
	}
	return fmt.Sprintf("%-34s %-4s time %9.3fs  bound %9.3fs  ratio %6.3f  dups %5d (%5.2f%%)  wire/payload %.4f  msgs %6d",
		r.Scenario, r.Impl, r.Time.Seconds(), r.Bound.Seconds(), r.Ratio, r.DupBlocks, r.DupPercent, r.WirePerPayload, r.Messages)
}

package vtime

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/testutil"
)

// quietRun is one leech fetching a DAG from one seed while connected to
// many quiet peers that hold nothing: silent ones (they never answer,
// like most of the public network) or ones that answer DONT_HAVE.
type quietRun struct {
	impl    Impl
	quiet   int  // quiet peers
	silent  bool // they never answer (else: our Bitswap with nothing)
	missing bool // the seed lacks one leaf: the fetch cannot end
	// window is how long a fetch with a missing block runs; the traffic
	// is counted up to then.
	window time.Duration
}

type quietResult struct {
	took      time.Duration // until the walk ended (complete, or the window)
	completed bool
	// Entries and messages the leech sent to the quiet peers, in all, and
	// the most any one of them got (entries).
	entries, messages, maxEntries uint64
}

func (r quietResult) perPeer(n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(r.entries) / float64(n)
}

func (q quietRun) String() string {
	kind := "DONT_HAVE"
	if q.silent {
		kind = "silent"
	}
	s := fmt.Sprintf("%s, %d %s peers", q.impl, q.quiet, kind)
	if q.missing {
		s += fmt.Sprintf(", a block missing for %v", q.window)
	}
	return s
}

// quietDAG is the content: a 20 MiB DAG of 81 blocks, a root
// (3.7 KB: too large for a server to send instead of a HAVE) and 80
// leaves of 256 KiB, on 50 ms, 100 Mbit/s links.
var quietDAG = Scenario{Name: "quiet peers", Seeds: 1, Leeches: 1, DAGDepth: 1, Params: Params{
	RTT: 50 * time.Millisecond, Bandwidth: 100_000_000 / 8, Blocks: 80, BlockSize: 256 << 10,
	Timeout: time.Minute, SendBuffer: testutil.DefaultSendBuffer,
}}

// runQuiet runs q in a synctest bubble.
func runQuiet(t *testing.T, q quietRun) quietResult {
	t.Helper()
	var r quietResult
	synctest.Test(t, func(t *testing.T) {
		var err error
		r, err = runQuietInBubble(q)
		if err != nil {
			t.Fatalf("%v: %v", q, err)
		}
	})
	return r
}

func runQuietInBubble(q quietRun) (r quietResult, err error) {
	s := quietDAG
	p := s.Params
	ctx, cancel := context.WithCancel(context.Background())
	vn := p.network()
	var nodes []node
	defer func() { closeBubble(nodes, vn, cancel) }()
	c := newContent(s)
	held := c.all
	if q.missing {
		held = append(held[:0:0], c.all[1:]...) // the first leaf
	}
	// The seed has the highest peer ID, so that no tie between equal
	// links is broken in its favour: the quiet peers come first wherever
	// IDs order the choice.
	vps := make([]*testutil.VirtualPeer, q.quiet+2)
	for i := range vps {
		vps[i] = vn.NewPeer()
	}
	slices.SortFunc(vps, func(a, b *testutil.VirtualPeer) int { return strings.Compare(string(a.Self()), string(b.Self())) })
	seedVP, leechVP := vps[len(vps)-1], vps[len(vps)-2]
	quiet := make([]peer.ID, q.quiet)
	for i := range quiet {
		vp := vps[i]
		quiet[i] = vp.Self()
		n, err := newNode(ctx, Ours, vp, nil, nil)
		if err != nil {
			return r, err
		}
		nodes = append(nodes, n)
		if q.silent {
			vn.SetUnresponsive(vp.Self(), true)
		}
	}
	seed, err := newNode(ctx, Ours, seedVP, held, nil)
	if err != nil {
		return r, err
	}
	nodes = append(nodes, seed)
	leech, err := newNode(ctx, q.impl, leechVP, nil, nil)
	if err != nil {
		return r, err
	}
	nodes = append(nodes, leech)
	vn.ConnectAll()
	time.Sleep(time.Millisecond) // let connection events settle

	before := make([]testutil.Counts, len(quiet))
	for i, id := range quiet {
		before[i] = vn.TrafficBetween(leechVP.Self(), id).Sent
	}
	timeout := p.Timeout
	if q.missing {
		timeout = q.window + time.Second
	}
	fctx, fcancel := context.WithTimeout(ctx, timeout)
	defer fcancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		got, err := walk(fctx, leech.newSession(fctx), c.root)
		if err == nil && got != len(c.all) {
			err = fmt.Errorf("walked %d of %d blocks", got, len(c.all))
		}
		done <- err
	}()
	var werr error
	if q.missing {
		// Counted at the end of the window, before the fetch gives up
		// (its cancels at the end are not part of the cost of waiting).
		time.Sleep(q.window)
		r.took = q.window
	} else {
		werr = <-done
		r.took = time.Since(start)
		r.completed = werr == nil
		time.Sleep(time.Second) // let what is in flight land, to count it
	}
	for i, id := range quiet {
		got := vn.TrafficBetween(leechVP.Self(), id).Sent
		e := got.Entries - before[i].Entries
		r.entries += e
		r.messages += got.Messages - before[i].Messages
		r.maxEntries = max(r.maxEntries, e)
	}
	if q.missing {
		fcancel()
		<-done
	}
	return r, werr
}

// The "Done when", first bullet, in virtual time: with 50 silent
// connected peers the fetch takes about as long as with the seed alone
// (and within 1.5× boxo's client in the same setting); a want nobody has
// costs each quiet peer at most 3 entries in 25 s, whether the quiet peers
// are silent or answer DONT_HAVE.
func TestQuietPeers(t *testing.T) {
	const quiet = 50
	alone := runQuiet(t, quietRun{impl: Ours})
	t.Logf("ours, seed alone: %v", alone.took)
	for _, silent := range []bool{true, false} {
		q := quietRun{impl: Ours, quiet: quiet, silent: silent}
		r := runQuiet(t, q)
		t.Logf("%v: took %v, %.2f entries per quiet peer (most %d), %d messages to them",
			q, r.took, r.perPeer(quiet), r.maxEntries, r.messages)
		if !r.completed {
			t.Fatalf("%v: did not complete", q)
		}
		if limit := alone.took + alone.took/10; r.took > limit {
			t.Errorf("%v: took %v, seed alone %v (limit %v)", q, r.took, alone.took, limit)
		}
		b := runQuiet(t, quietRun{impl: Boxo, quiet: quiet, silent: silent})
		t.Logf("boxo, same: took %v, %.2f entries per quiet peer (most %d), %d messages to them",
			b.took, b.perPeer(quiet), b.maxEntries, b.messages)
		if r.took > b.took*3/2 {
			t.Errorf("%v: took %v, more than 1.5× boxo's %v", q, r.took, b.took)
		}
	}
	for _, silent := range []bool{true, false} {
		q := quietRun{impl: Ours, quiet: quiet, silent: silent, missing: true, window: 25 * time.Second}
		r := runQuiet(t, q)
		t.Logf("%v: %.2f entries per quiet peer (most %d), %d messages to them",
			q, r.perPeer(quiet), r.maxEntries, r.messages)
		if r.maxEntries > 3 {
			t.Errorf("%v: a quiet peer got %d entries (target ≤ 3)", q, r.maxEntries)
		}
		if testing.Short() {
			continue
		}
		bq := q
		bq.impl = Boxo
		b := runQuiet(t, bq)
		t.Logf("%v: %.2f entries per quiet peer (most %d), %d messages to them",
			bq, b.perPeer(quiet), b.maxEntries, b.messages)
	}
}

// The public network: every peer remote (not local), none proven, 50
// silent; the seed is found through content routing (100 ms a query).
// With broadcast control (the default) only the random draw of quiet
// peers hears of the want, and the fetch takes about as long as without
// it, when every peer does: nobody asked is more than a guess, so content
// routing is asked at once, and the provider it names takes the root's
// want-block from the silent guess that had it.
func TestQuietRemotePeersBroadcastControl(t *testing.T) {
	const quiet = 50
	times := map[bool]time.Duration{}
	for _, control := range []bool{true, false} {
		var took time.Duration
		var entries, most uint64
		asked := 0
		synctest.Test(t, func(t *testing.T) {
			s := quietDAG
			p := s.Params
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			vn := p.network()
			defer vn.Close()
			cr := testutil.NewContentRouter(vn, 100*time.Millisecond)
			c := newContent(s)
			var closers []func() error
			defer func() {
				for _, f := range closers {
					_ = f()
				}
			}()
			vps := make([]*testutil.VirtualPeer, quiet+2)
			for i := range vps {
				vps[i] = vn.NewPeer()
				vn.SetRemote(vps[i].Self(), true)
			}
			slices.SortFunc(vps, func(a, b *testutil.VirtualPeer) int { return strings.Compare(string(a.Self()), string(b.Self())) })
			seedVP, leechVP := vps[len(vps)-1], vps[len(vps)-2]
			for _, vp := range vps[:quiet] {
				b := bitswap.New(ctx, vp, blockstore.NewMemory())
				closers = append(closers, b.Close)
				vn.SetUnresponsive(vp.Self(), true)
			}
			sbs := blockstore.NewMemory()
			_ = sbs.PutMany(ctx, c.all)
			seed := bitswap.New(ctx, seedVP, sbs)
			closers = append(closers, seed.Close)
			for _, b := range c.all {
				cr.AddProvider(b.Cid(), seedVP.Self())
			}
			leech := bitswap.New(ctx, leechVP, blockstore.NewMemory(),
				bitswap.WithContentRouting(cr.ForPeer(leechVP.Self())), bitswap.WithBroadcastControl(control))
			closers = append(closers, leech.Close)
			vn.ConnectAll()
			time.Sleep(time.Millisecond)
			start := time.Now()
			got, err := walk(ctx, leech.NewSession(ctx), c.root)
			if err != nil || got != len(c.all) {
				t.Fatalf("walked %d of %d blocks: %v", got, len(c.all), err)
			}
			took = time.Since(start)
			time.Sleep(time.Second)
			for _, vp := range vps[:quiet] {
				e := vn.TrafficBetween(leechVP.Self(), vp.Self()).Sent.Entries
				entries += e
				most = max(most, e)
				if e > 0 {
					asked++
				}
			}
		})
		t.Logf("broadcast control %v: took %v, %d of %d quiet peers asked, %.2f entries per quiet peer (most %d)",
			control, took, asked, quiet, float64(entries)/quiet, most)
		if control && asked > 3 {
			t.Errorf("broadcast control on: %d quiet peers asked, want at most the 3 drawn", asked)
		}
		times[control] = took
	}
	if on, off := times[true], times[false]; on > off+quietDAG.Params.RTT*3 {
		t.Errorf("with broadcast control the fetch took %v, without %v: more than 3 round trips longer", on, off)
	}
}

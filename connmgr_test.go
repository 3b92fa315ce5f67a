package bitswap_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/dag"
	"github.com/gobitswap/bitswap/engine"
	"github.com/gobitswap/bitswap/testutil"
	"github.com/gobitswap/bitswap/wantmanager"
)

// Connection-manager scenarios on the virtual network, whose peers keep
// and record what they are told (testutil.VirtualPeer.Tags etc.).

// sessionTags returns the Session tags ("bs-ses-<id>") vp holds on p.
func sessionTags(vp *testutil.VirtualPeer, p peer.ID) map[string]int {
	out := make(map[string]int)
	for tag, v := range vp.Tags(p) {
		if strings.HasPrefix(tag, "bs-ses-") {
			out[tag] = v
		}
	}
	return out
}

// callsAbout returns vp's connection-manager calls about p, as strings.
func callsAbout(vp *testutil.VirtualPeer, p peer.ID) []string {
	var out []string
	for _, c := range vp.ConnMgrCalls() {
		if c.Peer == p {
			out = append(out, fmt.Sprintf("%s %s %d", c.Op, c.Tag, c.Value))
		}
	}
	return out
}

// requireReleased fails t if any node still holds a tag or a protection.
func requireReleased(t *testing.T, when string, nodes []*node) {
	t.Helper()
	for i, n := range nodes {
		if ps := n.vp.TaggedPeers(); len(ps) > 0 {
			for _, p := range ps {
				t.Errorf("%s: node %d still holds tags %v, protections %v on %s", when, i, n.vp.Tags(p), n.vp.Protections(p), p)
			}
		}
	}
}

// During a transfer the leech's Session tags the seed and the WantManager
// protects it, and the seed's server tags the leech; idle peers, which
// only ever hear want-haves and answer DONT_HAVE, keep no tag. After the
// transfer everything is released: the Session's tag and the protection as
// the request ends, the server's tag 5 s after its last block.
func TestTransferTagsAndProtectsItsPeersAndReleasesThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		nodes := newNodes(t, vn, 5)
		defer closeAll(nodes)
		vn.ConnectAll()
		seed, leech, idle := nodes[0], nodes[1], nodes[2:]
		blks := testutil.RandomBlocks(1, 64, 64<<10) // 4 MiB
		_ = seed.bs.PutMany(context.Background(), blks)
		time.Sleep(time.Millisecond)

		keys := make([]cid.Cid, len(blks))
		for i, b := range blks {
			keys[i] = b.Cid()
		}
		ch, err := leech.b.GetBlocks(context.Background(), keys)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range ch {
			if n++; n != len(blks)/2 {
				continue
			}
			// Half way.
			if got := sessionTags(leech.vp, seed.vp.Self()); len(got) != 1 || fmt.Sprint(got) == "" {
				t.Errorf("half way: the leech's Session tags on the seed are %v, want one bs-ses-<id>", got)
			} else {
				for tag, v := range got {
					if v != bitswap.DefaultSessionPeerTagValue {
						t.Errorf("half way: %s = %d, want %d", tag, v, bitswap.DefaultSessionPeerTagValue)
					}
				}
			}
			if got := leech.vp.Protections(seed.vp.Self()); fmt.Sprint(got) != fmt.Sprint([]string{wantmanager.ProtectTag}) {
				t.Errorf("half way: the seed is protected by the leech under %v, want [%s]", got, wantmanager.ProtectTag)
			}
			if got := seed.vp.Tags(leech.vp.Self()); got[engine.TagQueued] != bitswap.DefaultServerPeerTagValue || len(got) != 1 {
				t.Errorf("half way: the seed's tags on the leech are %v, want %s=%d", got, engine.TagQueued, bitswap.DefaultServerPeerTagValue)
			}
			if ls, _ := leech.b.Stat(); ls.Wants.Protected != 1 {
				t.Errorf("half way: the leech's Stat counts %d peers protected, want 1", ls.Wants.Protected)
			}
			if ss, _ := seed.b.Stat(); ss.Server.PeersTagged != 1 {
				t.Errorf("half way: the seed's Stat counts %d peers tagged, want 1", ss.Server.PeersTagged)
			}
			for _, o := range idle {
				if tags, prot := leech.vp.Tags(o.vp.Self()), leech.vp.Protections(o.vp.Self()); tags != nil || prot != nil {
					t.Errorf("half way: the leech holds tags %v, protections %v on an idle peer", tags, prot)
				}
			}
		}
		if n != len(blks) {
			t.Fatalf("got %d of %d blocks", n, len(blks))
		}
		synctest.Wait() // the one-off Session ends with its request
		if ps := leech.vp.TaggedPeers(); len(ps) > 0 {
			t.Errorf("after the request the leech still holds tags on %v: %v %v", ps, leech.vp.Tags(ps[0]), leech.vp.Protections(ps[0]))
		}
		if got := seed.vp.Tags(leech.vp.Self()); got[engine.TagQueued] == 0 {
			t.Errorf("the seed's tag on the leech went with its last block, want it to linger")
		}
		time.Sleep(engine.DefaultTagLinger)
		requireReleased(t, "5 s after the transfer", nodes)
		if ls, _ := leech.b.Stat(); ls.Wants.Protected != 0 {
			t.Errorf("after: the leech's Stat counts %d peers protected", ls.Wants.Protected)
		}
		if ss, _ := seed.b.Stat(); ss.Server.PeersTagged != 0 {
			t.Errorf("after: the seed's Stat counts %d peers tagged", ss.Server.PeersTagged)
		}
		for _, o := range idle {
			for _, c := range callsAbout(leech.vp, o.vp.Self()) {
				if !strings.HasPrefix(c, string(testutil.OpProtect)) && !strings.HasPrefix(c, string(testutil.OpUnprotect)) {
					t.Errorf("the leech told its connection manager of an idle peer: %s", c)
				}
			}
		}
		t.Logf("the leech on the seed: %v", callsAbout(leech.vp, seed.vp.Self()))
		t.Logf("the seed on the leech: %v", callsAbout(seed.vp, leech.vp.Self()))
		t.Logf("the leech on an idle peer: %v", callsAbout(leech.vp, idle[0].vp.Self()))
		t.Logf("an idle peer on the leech: %v", callsAbout(idle[0].vp, leech.vp.Self()))
	})
}

// fetchAll reads ch to its end, checking that n blocks came.
func fetchAll(t *testing.T, ch <-chan blocks.Block, n int) {
	t.Helper()
	got := 0
	for range ch {
		got++
	}
	if got != n {
		t.Fatalf("got %d of %d blocks", got, n)
	}
}

// The options: tagging off tells the connection manager nothing;
// protection off and a Session value of -1 leave only the server's tag;
// values set are the values used.
func TestPeerTaggingOptions(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       []bitswap.Option
		leechCalls []string // the leech's calls about the seed
		seedCalls  []string // the seed's about the leech
	}{
		{"off", []bitswap.Option{bitswap.WithPeerTagging(false)}, nil, nil},
		{"values", []bitswap.Option{bitswap.WithSessionPeerTagValue(20), bitswap.WithServerPeerTagValue(7)},
			[]string{"protect bs-wants 0", "tag bs-ses-1 20", "unprotect bs-wants 0", "untag bs-ses-1 0"},
			[]string{"tag bs-engine-queued 7", "untag bs-engine-queued 0"}},
		{"no protection, no session tag", []bitswap.Option{bitswap.WithPeerProtection(false), bitswap.WithSessionPeerTagValue(-1)},
			nil,
			[]string{"tag bs-engine-queued 3", "untag bs-engine-queued 0"}},
		{"no server tag", []bitswap.Option{bitswap.WithServerPeerTagValue(-1)},
			[]string{"protect bs-wants 0", "tag bs-ses-1 5", "unprotect bs-wants 0", "untag bs-ses-1 0"},
			nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
				nodes := newNodes(t, vn, 2, tc.opts...)
				seed, leech := nodes[0], nodes[1]
				vn.ConnectAll()
				blks := testutil.RandomBlocks(2, 16, 64<<10)
				_ = seed.bs.PutMany(context.Background(), blks)
				time.Sleep(time.Millisecond)
				ch, err := leech.b.GetBlocks(context.Background(), keysOf(blks))
				if err != nil {
					t.Fatal(err)
				}
				fetchAll(t, ch, len(blks))
				time.Sleep(engine.DefaultTagLinger + time.Second)
				requireReleased(t, "after the transfer", nodes)
				if got := callsAbout(leech.vp, seed.vp.Self()); fmt.Sprint(got) != fmt.Sprint(tc.leechCalls) {
					t.Errorf("the leech told of the seed %q, want %q", got, tc.leechCalls)
				}
				if got := callsAbout(seed.vp, leech.vp.Self()); fmt.Sprint(got) != fmt.Sprint(tc.seedCalls) {
					t.Errorf("the seed told of the leech %q, want %q", got, tc.seedCalls)
				}
				closeAll(nodes)
			})
		})
	}
}

// Two Sessions fetching from one seed at once tag it each with its own
// tag, and one protection covers both: it lasts while either still has a
// want-block there, and the first Session's end takes only its own tag.
func TestSessionsShareTheProtectionAndTagApart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		nodes := newNodes(t, vn, 2)
		defer closeAll(nodes)
		seed, leech := nodes[0], nodes[1]
		vn.ConnectAll()
		blks := testutil.RandomBlocks(3, 64, 64<<10)
		_ = seed.bs.PutMany(context.Background(), blks)
		time.Sleep(time.Millisecond)

		ctx1, end1 := context.WithCancel(context.Background())
		s1 := leech.b.NewSession(ctx1)
		s2 := leech.b.NewSession(context.Background())
		ch1, err := s1.GetBlocks(ctx1, keysOf(blks[:8]))
		if err != nil {
			t.Fatal(err)
		}
		fetchAll(t, ch1, 8)
		ch2, err := s2.GetBlocks(context.Background(), keysOf(blks[8:]))
		if err != nil {
			t.Fatal(err)
		}
		<-ch2 // s2 is under way, with want-blocks at the seed
		if got := sessionTags(leech.vp, seed.vp.Self()); len(got) != 2 {
			t.Fatalf("tags on the seed while both Sessions run: %v, want two", got)
		}
		end1()
		synctest.Wait()
		if got := sessionTags(leech.vp, seed.vp.Self()); len(got) != 1 {
			t.Fatalf("tags on the seed once the first Session ended: %v, want one", got)
		}
		if got := leech.vp.Protections(seed.vp.Self()); len(got) != 1 {
			t.Fatalf("the seed is protected under %v while the second Session fetches, want [bs-wants]", got)
		}
		fetchAll(t, ch2, len(blks)-9)
		synctest.Wait()
		if got := leech.vp.Protections(seed.vp.Self()); got != nil {
			t.Fatalf("the seed is still protected under %v with no want-block outstanding", got)
		}
		s2.Close()
		if got := leech.vp.Tags(seed.vp.Self()); got != nil {
			t.Fatalf("tags on the seed after both Sessions ended: %v", got)
		}
		var protects, unprotects int
		for _, c := range leech.vp.ConnMgrCalls() {
			switch c.Op {
			case testutil.OpProtect:
				protects++
			case testutil.OpUnprotect:
				unprotects++
			}
		}
		if protects != unprotects || protects == 0 {
			t.Fatalf("%d protects, %d unprotects", protects, unprotects)
		}
	})
}

// A DAG walk of 4 MiB (depth 3) while both ends trim every 20 ms, from
// the root's arrival on, down to 2 connections, each connected to 6 idle Bitswap peers besides the
// other: the walk completes, neither end ever cuts the other, and idle
// peers are cut. Between the DAG's levels the seed has no work for the
// leech for a round trip; its tag lingers through it, so the leech is
// still worth more than an idle peer.
func TestDAGWalkSurvivesTrimmingInVirtualTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork(testutil.WithLatency(oneWay), testutil.WithBandwidth(bandwidth))
		nodes := newNodes(t, vn, 8)
		defer closeAll(nodes)
		vn.ConnectAll()
		seed, leech := nodes[0], nodes[1]
		data := make([]byte, 4<<20)
		for i := range data {
			data[i] = byte(i * 7 / 3)
		}
		file, err := testutil.BuildFileDAG(bytes.NewReader(data), 64<<10, 8)
		if err != nil {
			t.Fatal(err)
		}
		_ = seed.bs.PutMany(context.Background(), file.Blocks)
		time.Sleep(time.Millisecond)

		// The trims start once the root has come: before any peer has
		// answered, nothing says which one holds the DAG (libp2p's grace
		// period, a minute by default, spares new connections that long).
		started, done := make(chan struct{}), make(chan struct{})
		trimmed := make(chan map[string]int)
		go func() {
			cuts := make(map[string]int)
			select {
			case <-started:
			case <-done:
				trimmed <- cuts
				return
			}
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					trimmed <- cuts
					return
				case <-tick.C:
				}
				for _, side := range []struct {
					name      string
					me, other *node
				}{{"leech", leech, seed}, {"seed", seed, leech}} {
					for _, p := range side.me.vp.TrimConnections(2) {
						if p == side.other.vp.Self() {
							cuts[side.name+" cut the transfer"]++
						} else {
							cuts[side.name+" cut an idle peer"]++
						}
					}
				}
			}
		}()

		got := make(map[cid.Cid]blocks.Block)
		// Virtual time: a walk that hangs fails at once in real time.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		sess := leech.b.NewSession(ctx)
		err = dag.Walk(ctx, sess, file.Root, func(b blocks.Block) error {
			if len(got) == 0 {
				close(started)
			}
			got[b.Cid()] = b
			return nil
		})
		close(done)
		cuts := <-trimmed
		sess.Close()
		if err != nil {
			t.Fatalf("%v after %d of %d blocks; trims: %v", err, len(got), len(file.Blocks), cuts)
		}
		var out bytes.Buffer
		if err := testutil.ReadFile(file.Root, func(c cid.Cid) (blocks.Block, bool) { b, ok := got[c]; return b, ok }, &out); err != nil || !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("the file read back is not the file (%v); %d of %d blocks", err, len(got), len(file.Blocks))
		}
		t.Logf("trims: %v", cuts)
		if cuts["leech cut the transfer"]+cuts["seed cut the transfer"] > 0 {
			t.Fatalf("a trim cut the transfer: %v", cuts)
		}
		if cuts["leech cut an idle peer"] == 0 || cuts["seed cut an idle peer"] == 0 {
			t.Fatalf("the trims cut no idle peer on one side: %v", cuts)
		}
		time.Sleep(engine.DefaultTagLinger)
		requireReleased(t, "after the walk", nodes)
	})
}

package testutil_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/gobitswap/bitswap/testutil"
)

func TestVirtualPeerKeepsAndRecordsTagsAndProtections(t *testing.T) {
	vn := testutil.NewVirtualNetwork()
	defer vn.Close()
	vp := vn.NewPeer()
	a, b := testutil.PeerID(100), testutil.PeerID(101)

	vp.TagPeer(a, "x", 1)
	vp.TagPeer(a, "x", 4) // replaces
	vp.TagPeer(a, "y", 2)
	vp.Protect(b, "p")
	vp.Protect(b, "q")
	if got := fmt.Sprint(vp.Tags(a)); got != "map[x:4 y:2]" {
		t.Fatalf("tags on a: %s", got)
	}
	if got := fmt.Sprint(vp.Protections(b)); got != "[p q]" {
		t.Fatalf("protections of b: %s", got)
	}
	if got := vp.TaggedPeers(); len(got) != 2 {
		t.Fatalf("tagged peers: %v", got)
	}
	if !vp.Unprotect(b, "p") {
		t.Fatal("Unprotect with another tag left said b is unprotected")
	}
	if vp.Unprotect(b, "q") {
		t.Fatal("the last Unprotect said b is still protected")
	}
	vp.UntagPeer(a, "x")
	vp.UntagPeer(a, "y")
	if got := vp.TaggedPeers(); len(got) != 0 {
		t.Fatalf("tagged peers after releasing all: %v", got)
	}
	if n := len(vp.ConnMgrCalls()); n != 9 {
		t.Fatalf("%d calls recorded, want 9", n)
	}
	if c := vp.ConnMgrCalls()[1]; c != (testutil.ConnMgrCall{Op: testutil.OpTag, Peer: a, Tag: "x", Value: 4}) {
		t.Fatalf("second call recorded as %+v", c)
	}
}

func TestTrimConnectionsCutsTheLeastWorthUnprotectedPeers(t *testing.T) {
	vn := testutil.NewVirtualNetwork()
	defer vn.Close()
	ps := testutil.NewSwarm(vn, 6)
	vn.ConnectAll()
	me := ps[0]
	me.TagPeer(ps[1].Self(), "a", 10)
	me.TagPeer(ps[2].Self(), "a", 1)
	me.TagPeer(ps[2].Self(), "b", 1)
	me.Protect(ps[3].Self(), "p")
	// Unprotected: ps[1] (10), ps[2] (2), ps[4] and ps[5] (0). Keep 2.
	cut := me.TrimConnections(2)
	if len(cut) != 2 || !slices.Contains(cut, ps[4].Self()) || !slices.Contains(cut, ps[5].Self()) {
		t.Fatalf("cut %v, want the two untagged peers", cut)
	}
	for _, p := range ps[1:4] {
		if !me.IsConnected(p.Self()) {
			t.Fatalf("%s was cut", p)
		}
	}
	if cut := me.TrimConnections(2); len(cut) != 0 {
		t.Fatalf("a second trim cut %v", cut)
	}
}

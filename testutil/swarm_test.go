package testutil_test

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"

	"github.com/gobitswap/bitswap/testutil"
)

func TestPeerLookupAndPeersInCreationOrder(t *testing.T) {
	vn := testutil.NewVirtualNetwork()
	defer vn.Close()
	ps := testutil.NewSwarm(vn, 3)
	for _, p := range ps {
		if vn.Peer(p.Self()) != p {
			t.Errorf("Peer(%s) is not that peer", p)
		}
	}
	if vn.Peer(testutil.PeerID(42)) != nil {
		t.Error("Peer of an unknown ID is not nil")
	}
	ps[1].Stop()
	if vn.Peer(ps[1].Self()) != ps[1] {
		t.Error("a stopped peer is no longer found")
	}
	if got := vn.Peers(); !slices.Equal(got, ps) {
		t.Errorf("Peers = %v, want %v", got, ps)
	}
}

func TestConnectPairsConnectsOnePeerToMany(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		ps := []*testutil.VirtualPeer{vn.NewPeer(), vn.NewPeer(), vn.NewPeer(), vn.NewPeer()}
		if err := vn.ConnectPairs(ps[0].Self(), ps[1].Self(), ps[2].Self()); err != nil {
			t.Fatal(err)
		}
		if !ps[0].IsConnected(ps[1].Self()) || !ps[2].IsConnected(ps[0].Self()) ||
			ps[0].IsConnected(ps[3].Self()) || ps[1].IsConnected(ps[2].Self()) {
			t.Error("ConnectPairs connected the wrong pairs")
		}
		err := vn.ConnectPairs(ps[3].Self(), testutil.PeerID(99), ps[1].Self())
		if !errors.Is(err, testutil.ErrUnknownPeer) {
			t.Errorf("err = %v, want ErrUnknownPeer", err)
		}
		if !ps[3].IsConnected(ps[1].Self()) {
			t.Error("ConnectPairs gave up at the first error")
		}
		if err := vn.ConnectPairs(testutil.PeerID(99)); !errors.Is(err, testutil.ErrUnknownPeer) {
			t.Errorf("ConnectPairs from an unknown peer: err = %v", err)
		}
	})
}

// node stands for a component under test built over a VirtualPeer.
type node struct {
	i   int
	net *testutil.VirtualPeer
	rec *recorder
}

func TestSwarmOfBuildsOneNodePerConnectedPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vn := testutil.NewVirtualNetwork()
		defer vn.Close()
		nodes := testutil.SwarmOf(vn, 3, func(i int, p *testutil.VirtualPeer) *node {
			n := &node{i: i, net: p, rec: newRecorder(nil)}
			p.Start(n.rec)
			return n
		})
		synctest.Wait()
		for i, n := range nodes {
			if n.i != i || vn.Peer(n.net.Self()) != n.net {
				t.Fatalf("node %d built over the wrong peer", i)
			}
			if got := len(n.rec.Events()); got != 2 {
				t.Errorf("node %d saw %d connections, want 2", i, got)
			}
		}
	})
}

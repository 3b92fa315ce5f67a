package peerrouter_test

import (
	"sync"
	"testing"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/peerrouter"
	"github.com/gobitswap/bitswap/testutil"
)

// infoSink records the PeerInfo of every PeerConnected.
type infoSink struct {
	mu    sync.Mutex
	infos []peerrouter.PeerInfo
}

func (s *infoSink) PeerConnected(_ peer.ID, info peerrouter.PeerInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.infos = append(s.infos, info)
}
func (s *infoSink) PeerDisconnected(peer.ID)                {}
func (s *infoSink) Presences(peer.ID, []cid.Cid, []cid.Cid) {}
func (s *infoSink) ProviderFound(peer.ID, cid.Cid)          {}

func (s *infoSink) got() []peerrouter.PeerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]peerrouter.PeerInfo(nil), s.infos...)
}

// The PeerRouter owns what the node knows of each connected peer: local
// (as the network says at the connect), protected (named by the
// application), proven (a HAVE, or a block some Session wants, since it
// connected). Every Session hears each change once, as a PeerConnected
// with the new PeerInfo; a disconnect forgets it all.
func TestPeerInfoLocalProtectedProven(t *testing.T) {
	x := newIndex()
	p1, p2 := peers["p1"], peers["p2"]
	r := peerrouter.New(x, peerrouter.WithProtected(p2))
	s := &infoSink{}
	x.start(r, 1, s)
	blks := testutil.RandomBlocks(1, 2, 10)
	wanted, unwanted := blks[0].Cid(), blks[1].Cid()
	x.Interest(1, []cid.Cid{wanted})

	r.PeerConnected(p1, true, false)
	r.PeerConnected(p2, false, false)
	if info, _ := r.Info(p1); info != (peerrouter.PeerInfo{Local: true}) {
		t.Fatalf("p1: %+v, want local only", info)
	}
	if info, _ := r.Info(p2); info != (peerrouter.PeerInfo{Protected: true}) {
		t.Fatalf("p2: %+v, want protected only", info)
	}

	// A block nobody wants proves nothing; DONT_HAVEs prove nothing.
	r.ReceiveBlocks(p1, []cid.Cid{unwanted})
	r.ReceivePresences(p1, nil, []cid.Cid{wanted})
	if info, _ := r.Info(p1); info.Proven {
		t.Fatal("p1 proven by an unwanted block or a DONT_HAVE")
	}
	r.ReceiveBlocks(p1, []cid.Cid{wanted})
	r.ReceiveBlocks(p1, []cid.Cid{wanted}) // told once
	r.ReceivePresences(p2, []cid.Cid{unwanted}, nil)
	got := s.got()
	want := []peerrouter.PeerInfo{{Local: true}, {Protected: true}, {Local: true, Proven: true}, {Protected: true, Proven: true}}
	if len(got) != len(want) {
		t.Fatalf("the Session heard %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("the Session heard %+v, want %+v", got, want)
		}
	}

	r.PeerDisconnected(p1)
	if _, connected := r.Info(p1); connected {
		t.Fatal("p1 still known after its disconnect")
	}
	r.PeerConnected(p1, false, false)
	if info, _ := r.Info(p1); info.Proven {
		t.Fatal("p1 proven again after a reconnect: what it proved went with its connection")
	}
}

// A peer the network says the application chose (an HTTP endpoint) is
// Protected, as the peers of WithProtected are; it stays so only while
// connected as such.
func TestPeerInfoNamedByTheNetworkIsProtected(t *testing.T) {
	x := newIndex()
	p1 := peers["p1"]
	r := peerrouter.New(x)
	r.PeerConnected(p1, false, true)
	if info, _ := r.Info(p1); info != (peerrouter.PeerInfo{Protected: true}) {
		t.Fatalf("named p1: %+v, want protected only", info)
	}
	r.PeerDisconnected(p1)
	r.PeerConnected(p1, false, false)
	if info, _ := r.Info(p1); info.Protected {
		t.Fatal("p1 still protected after reconnecting unnamed")
	}
}

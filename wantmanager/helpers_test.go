package wantmanager_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/testutil"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeNet is a Network that records every message sent, per peer, and
// answers Version from a table (1.2.0 by default). Sends can be made to
// fail, or to wait on a gate so that tests can change the wantlist while a
// message is in flight.
type fakeNet struct {
	mu       sync.Mutex
	versions map[peer.ID]message.Version
	sent     map[peer.ID][]*message.Message
	asked    map[peer.ID]int // Version calls
	failNext map[peer.ID]int // sends to fail
	gate     chan struct{}   // if set, each send first receives from it
}

func newFakeNet() *fakeNet {
	return &fakeNet{
		versions: make(map[peer.ID]message.Version),
		sent:     make(map[peer.ID][]*message.Message),
		asked:    make(map[peer.ID]int),
		failNext: make(map[peer.ID]int),
	}
}

var errSendFailed = errors.New("fake send failure")

func (n *fakeNet) SendMessage(ctx context.Context, p peer.ID, msg *message.Message) error {
	n.mu.Lock()
	gate := n.gate
	n.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failNext[p] > 0 {
		n.failNext[p]--
		return errSendFailed
	}
	// Keep a copy: the WantManager must not rely on us not keeping it, and
	// we must not see later changes.
	cp := *msg
	cp.Wantlist = append([]message.Entry(nil), msg.Wantlist...)
	n.sent[p] = append(n.sent[p], &cp)
	return nil
}

func (n *fakeNet) Version(ctx context.Context, p peer.ID) (message.Version, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.asked[p]++
	if v, ok := n.versions[p]; ok {
		return v, nil
	}
	return message.V120, nil
}

func (n *fakeNet) setVersion(p peer.ID, v message.Version) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.versions[p] = v
}

// setGate makes every later send wait to receive from gate.
func (n *fakeNet) setGate(gate chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gate = gate
}

func (n *fakeNet) failSends(p peer.ID, k int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.failNext[p] = k
}

func (n *fakeNet) versionCalls(p peer.ID) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.asked[p]
}

// messages returns the messages sent to p so far and forgets them, so that
// each call sees only what is new.
func (n *fakeNet) messages(p peer.ID) []*message.Message {
	n.mu.Lock()
	defer n.mu.Unlock()
	ms := n.sent[p]
	delete(n.sent, p)
	return ms
}

// entries returns the entries sent to p since the last call, in order.
func (n *fakeNet) entries(p peer.ID) []message.Entry {
	var es []message.Entry
	for _, m := range n.messages(p) {
		es = append(es, m.Wantlist...)
	}
	return es
}

// makeCids returns n distinct CIDv1 raw CIDs, deterministic for seed.
func makeCids(seed, n int) []cid.Cid {
	cs := make([]cid.Cid, n)
	for i := range cs {
		h, err := mh.Sum(fmt.Appendf(nil, "wantmanager test %d/%d", seed, i), mh.SHA2_256, -1)
		if err != nil {
			panic(err)
		}
		cs[i] = cid.NewCidV1(cid.Raw, h)
	}
	return cs
}

// peers returns the first n deterministic test peer IDs.
func peers(n int) []peer.ID {
	ps := make([]peer.ID, n)
	for i := range ps {
		ps[i] = testutil.PeerID(i)
	}
	return ps
}

// split sorts entries into wants and cancels.
func split(es []message.Entry) (wants, cancels []message.Entry) {
	for _, e := range es {
		if e.Cancel {
			cancels = append(cancels, e)
		} else {
			wants = append(wants, e)
		}
	}
	return wants, cancels
}

// cidsOf returns the CIDs of es, in order.
func cidsOf(es []message.Entry) []cid.Cid {
	cs := make([]cid.Cid, len(es))
	for i, e := range es {
		cs[i] = e.Cid
	}
	return cs
}

// sameCids fails t unless got and want hold the same CIDs in the same order.
func sameCids(t *testing.T, what string, got, want []cid.Cid) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d CIDs, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !got[i].Equals(want[i]) {
			t.Fatalf("%s: CID %d is %s, want %s", what, i, got[i], want[i])
		}
	}
}

package providers_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/gobitswap/bitswap/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// router is fake content routing: each lookup answers after delay (of
// virtual time, under synctest) with the records set for its CID. It
// writes down every lookup, how many run at once, and when each ended.
type router struct {
	delay time.Duration

	mu      sync.Mutex
	records map[cid.Cid][]peer.AddrInfo
	asked   []cid.Cid
	active  int
	peak    int         // most lookups running at once
	ended   []time.Time // when each lookup's channel closed, in order
}

func newRouter(delay time.Duration) *router {
	return &router{delay: delay, records: make(map[cid.Cid][]peer.AddrInfo)}
}

func (r *router) set(c cid.Cid, ais ...peer.AddrInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records[c] = ais
}

func (r *router) FindProvidersAsync(ctx context.Context, c cid.Cid, _ int) <-chan peer.AddrInfo {
	r.mu.Lock()
	r.asked = append(r.asked, c)
	r.active++
	r.peak = max(r.peak, r.active)
	recs := slices.Clone(r.records[c])
	r.mu.Unlock()
	out := make(chan peer.AddrInfo)
	go func() {
		defer func() {
			r.mu.Lock()
			r.active--
			r.ended = append(r.ended, time.Now())
			r.mu.Unlock()
			close(out)
		}()
		t := time.NewTimer(r.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		for _, ai := range recs {
			select {
			case out <- ai:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (r *router) lookups() []cid.Cid {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.asked)
}

func (r *router) stats() (active, peak int, ended []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active, r.peak, slices.Clone(r.ended)
}

// peerRouter is the router with FindPeer too, as a DHT has: it answers
// with the addresses set for each peer, at once.
type peerRouter struct {
	*router
	addrs map[peer.ID][]ma.Multiaddr
}

func (r peerRouter) FindPeer(_ context.Context, p peer.ID) (peer.AddrInfo, error) {
	if a, ok := r.addrs[p]; ok {
		return peer.AddrInfo{ID: p, Addrs: a}, nil
	}
	return peer.AddrInfo{}, errors.New("routing: not found")
}

// dialer is a fake network: every peer is reachable, at any address,
// except those in only, reachable at that address alone.
type dialer struct {
	self peer.ID
	only map[peer.ID]ma.Multiaddr

	mu    sync.Mutex
	dials []peer.AddrInfo
}

func (d *dialer) Self() peer.ID { return d.self }

func (d *dialer) Connect(ctx context.Context, ai peer.AddrInfo) error {
	d.mu.Lock()
	d.dials = append(d.dials, ai)
	d.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if a, ok := d.only[ai.ID]; ok && !slices.ContainsFunc(ai.Addrs, a.Equal) {
		return fmt.Errorf("failed to dial %s: all dials failed", ai.ID)
	}
	return nil
}

func (d *dialer) dialled() []peer.ID {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []peer.ID
	for _, ai := range d.dials {
		out = append(out, ai.ID)
	}
	return out
}

// found records what the Finder hands on, as "peer name@cid index".
type found struct {
	mu   sync.Mutex
	cids []cid.Cid
	got  []string
}

func (f *found) hand(p peer.ID, c cid.Cid) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, fmt.Sprintf("%s@%d", name(p), slices.Index(f.cids, c)))
}

func (f *found) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.got)
	slices.Sort(out)
	return out
}

// Test peers: self is this node; p1... are others.
var self = testutil.PeerID(100)

func p(i int) peer.ID { return testutil.PeerID(i) }

func name(id peer.ID) string {
	if id == self {
		return "self"
	}
	for i := range 100 {
		if testutil.PeerID(i) == id {
			return fmt.Sprintf("p%d", i)
		}
	}
	return id.String()
}

func ai(i int, addrs ...ma.Multiaddr) peer.AddrInfo { return peer.AddrInfo{ID: p(i), Addrs: addrs} }

func cids(n int) []cid.Cid {
	out := make([]cid.Cid, n)
	for i, b := range testutil.RandomBlocks(1, n, 10) {
		out[i] = b.Cid()
	}
	return out
}

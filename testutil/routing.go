package testutil

import (
	"context"
	"errors"
	"sync"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
)

// ContentRouter is a fake content routing system (a DHT, say) for the peers
// of a VirtualNetwork: a shared table of which peers provide which content,
// answering lookups after a fixed delay of (virtual, under synctest) time.
// Records are keyed by multihash, as the DHT keys them, so a CIDv0 and a
// CIDv1 of the same data find the same providers.
//
// NewContentRouter returns the shared table; ForPeer returns a view of it
// for one peer, which is what that peer's node should be given: its Provide
// announces that peer. Both implement routing.ContentRouting. Lookups return
// exactly the recorded providers, in the order they were first recorded,
// whether or not they are connected, live or the asker itself, as a DHT
// returns records of peers that may have gone; a node connects to them with
// VirtualPeer.Connect(ctx, peer.AddrInfo{ID: id}).
//
// Its methods are safe for concurrent use. Lookups in progress end when the
// VirtualNetwork is closed.
type ContentRouter struct {
	*routerState
	self peer.ID // "" for the shared table itself
}

type routerState struct {
	vn    *VirtualNetwork
	delay time.Duration

	mu        sync.Mutex
	providers map[string][]peer.ID // by multihash
	queries   []query
}

type query struct {
	by peer.ID
	c  cid.Cid
}

var _ routing.ContentRouting = (*ContentRouter)(nil)

// ErrNoSelf is returned by Provide on the shared table of a ContentRouter,
// which has no peer to announce: use ForPeer, or SetProviders.
var ErrNoSelf = errors.New("testutil: Provide on a ContentRouter with no peer: use ForPeer")

// NewContentRouter returns an empty content router for the peers of vn,
// whose lookups answer after delay.
func NewContentRouter(vn *VirtualNetwork, delay time.Duration) *ContentRouter {
	return &ContentRouter{routerState: &routerState{
		vn:        vn,
		delay:     delay,
		providers: make(map[string][]peer.ID),
	}}
}

// ForPeer returns the view of the router for peer p: same records and
// queries, but Provide announces p, and Queries returns only p's lookups.
func (cr *ContentRouter) ForPeer(p peer.ID) *ContentRouter {
	return &ContentRouter{routerState: cr.routerState, self: p}
}

// SetProviders replaces the providers of c with ps (none forgets them).
func (cr *ContentRouter) SetProviders(c cid.Cid, ps ...peer.ID) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	k := string(c.Hash())
	if len(ps) == 0 {
		delete(cr.providers, k)
		return
	}
	cr.providers[k] = dedupe(ps)
}

// AddProvider records that p provides c, in addition to any others.
func (cr *ContentRouter) AddProvider(c cid.Cid, p peer.ID) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	k := string(c.Hash())
	cr.providers[k] = dedupe(append(cr.providers[k], p))
}

func dedupe(ps []peer.ID) []peer.ID {
	out := make([]peer.ID, 0, len(ps))
	seen := make(map[peer.ID]bool, len(ps))
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// Providers returns the recorded providers of c.
func (cr *ContentRouter) Providers(c cid.Cid) []peer.ID {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	return append([]peer.ID(nil), cr.providers[string(c.Hash())]...)
}

// Provide records, when announce is set, that this view's peer provides c,
// at once. Without announce it does nothing: the content would only be in
// the local accounting of the peer. On the shared table (not a ForPeer
// view) it fails with ErrNoSelf.
func (cr *ContentRouter) Provide(ctx context.Context, c cid.Cid, announce bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if cr.self == "" {
		return ErrNoSelf
	}
	if announce {
		cr.AddProvider(c, cr.self)
	}
	return nil
}

// FindProvidersAsync records the query and returns a channel on which, after
// the router's delay, the providers of c recorded at that time arrive as
// peer.AddrInfo values with only the ID set: at most count of them, or all
// if count is 0. The channel is closed after the last one, or early when ctx
// ends or the network is closed.
func (cr *ContentRouter) FindProvidersAsync(ctx context.Context, c cid.Cid, count int) <-chan peer.AddrInfo {
	cr.mu.Lock()
	cr.queries = append(cr.queries, query{by: cr.self, c: c})
	cr.mu.Unlock()

	out := make(chan peer.AddrInfo)
	vn := cr.vn
	started := vn.background(func() {
		defer close(out)
		t := time.NewTimer(cr.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		case <-vn.done:
			return
		}
		ps := cr.Providers(c)
		if count > 0 && len(ps) > count {
			ps = ps[:count]
		}
		for _, p := range ps {
			select {
			case out <- peer.AddrInfo{ID: p}:
			case <-ctx.Done():
				return
			case <-vn.done:
				return
			}
		}
	})
	if !started {
		close(out)
	}
	return out
}

// Queries returns the CIDs looked up with FindProvidersAsync so far, in
// order: all of them on the shared table, only this peer's on a ForPeer
// view.
func (cr *ContentRouter) Queries() []cid.Cid {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	var out []cid.Cid
	for _, q := range cr.queries {
		if cr.self == "" || q.by == cr.self {
			out = append(out, q.c)
		}
	}
	return out
}

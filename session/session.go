// Package session fetches blocks for one request (a GetBlocks call) or one
// long-lived Session from NewSession. It owns every decision about where and
// when to send wants: the Policy decides over plain data, and the Session
// carries its Actions out through the WantManager and content routing, and
// delivers blocks to the callers.
//
// A Session never touches per-peer send queues (the WantManager's), never
// talks to the network, and never stores blocks (the BlockRouter does,
// before handing them to the Session).
package session

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/peerrouter"
	"github.com/gobitswap/bitswap/wantmanager"
)

// WantManager sends our wants. *wantmanager.WantManager satisfies it.
type WantManager interface {
	WantBlocks(s wantmanager.SessionID, p peer.ID, cids []cid.Cid)
	WantHaves(s wantmanager.SessionID, p peer.ID, cids []cid.Cid)
	Cancel(s wantmanager.SessionID, p peer.ID, cids []cid.Cid)
	CancelAll(s wantmanager.SessionID, cids []cid.Cid)
	Resend(p peer.ID, cids []cid.Cid)
}

// BlockRouter delivers wanted blocks to the Session. It owns the registry
// of running Sessions and the index of which Session wants which CID; the
// PeerRouter asks it whom to tell of peer events and presences, so
// Register, Want and Unwant are the Session's only registration. The
// facade adapts *blockrouter.BlockRouter to it.
type BlockRouter interface {
	Register(id uint64, s Sink)
	Unregister(id uint64)
	Want(id uint64, cids []cid.Cid)
	Unwant(id uint64, cids []cid.Cid)
}

// Sink is how the routers reach a Session: blocks from the BlockRouter,
// peer events and presences from the PeerRouter. Its methods only post to
// the Session's inbox, so they never block.
type Sink interface {
	peerrouter.Sink
	ReceiveBlocks(from peer.ID, blks []blocks.Block)
}

// PeerRouter tells the Session of the peers connected when it starts
// (later events reach it through its registration with the BlockRouter).
// *peerrouter.PeerRouter satisfies it.
type PeerRouter interface {
	Attach(s peerrouter.Sink)
}

// Getter reads the local blockstore.
type Getter interface {
	Get(context.Context, cid.Cid) (blocks.Block, error)
}

// ProviderFinder finds and connects to providers of c; the channel closes
// when the search ends.
type ProviderFinder interface {
	FindProviders(ctx context.Context, c cid.Cid) <-chan peer.ID
}

// Deps are what a Session works with.
type Deps struct {
	WantManager WantManager
	BlockRouter BlockRouter
	PeerRouter  PeerRouter
	Blockstore  Getter
	Providers   ProviderFinder // nil: no content routing
	// Latency returns a peer's measured latency, or 0.
	Latency func(peer.ID) time.Duration
	// OnClose, if set, is called once the Session has ended.
	OnClose func()
}

// ErrClosed is returned by a Session that has ended, and by requests to a
// Bitswap after Close (bitswap.ErrClosed is this value).
var ErrClosed = errors.New("bitswap: closed")

// Session fetches blocks. Its methods are safe for concurrent use; all of
// its state is owned by one goroutine, fed through an inbox.
type Session struct {
	id     uint64
	deps   Deps
	policy *Policy
	ctx    context.Context
	cancel context.CancelFunc
	oneOff bool // ends with its request, however that ends
	done   chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex // guards inbox and closed
	inbox  []event
	closed bool
	wake   chan struct{}

	// owned by the run goroutine
	requests map[*request]struct{}
	byCid    map[cid.Cid][]*request
	// lookingUp holds the CIDs whose local lookup is under way: the
	// routers already know the Session wants them, the Policy not yet.
	lookingUp map[cid.Cid]struct{}
	tick      *time.Timer
	armed     time.Time // when tick fires; zero when it is stopped
}

type request struct {
	ctx       context.Context
	out       chan blocks.Block
	remaining map[cid.Cid]struct{}
	stop      func() bool
}

type event struct {
	kind      int
	req       *request
	cids      []cid.Cid
	from      peer.ID
	blks      []blocks.Block
	haves     []cid.Cid
	dontHaves []cid.Cid
}

const (
	evRequest = iota
	evCancelRequest
	evBlocks
	evPresences
	evConnected
	evDisconnected
	evProviders
	evLocal // a chunk of a request's local lookup: blks found, cids not
)

// New starts a Session. It ends when ctx is cancelled or Close is called;
// a oneOff Session also ends with its first request, however that ends.
func New(ctx context.Context, id uint64, deps Deps, cfg Config, oneOff bool) *Session {
	ctx, cancel := context.WithCancel(ctx)
	s := &Session{
		id: id, deps: deps, policy: NewPolicy(cfg), ctx: ctx, cancel: cancel, oneOff: oneOff,
		done: make(chan struct{}), wake: make(chan struct{}, 1),
		requests: make(map[*request]struct{}), byCid: make(map[cid.Cid][]*request),
		lookingUp: make(map[cid.Cid]struct{}),
	}
	deps.BlockRouter.Register(id, sink{s})
	deps.PeerRouter.Attach(sink{s})
	go s.run()
	return s
}

// GetBlock fetches one block.
func (s *Session) GetBlock(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	ch, err := s.GetBlocks(ctx, []cid.Cid{c})
	if err != nil {
		return nil, err
	}
	// The request's channel closes when ctx ends, so waiting on it alone
	// never misses a block that arrived as ctx ended.
	if b, ok := <-ch; ok {
		return b, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bitswap: getting %s: %w", c, err)
	}
	return nil, fmt.Errorf("bitswap: getting %s: %w", c, ErrClosed)
}

// GetBlocks fetches blocks. The channel yields each block once, in arrival
// order, and closes when all have been delivered, ctx ends or the Session
// ends. Blocks already in the blockstore come without the network.
func (s *Session) GetBlocks(ctx context.Context, cids []cid.Cid) (<-chan blocks.Block, error) {
	uniq := make(map[cid.Cid]struct{}, len(cids))
	list := make([]cid.Cid, 0, len(cids))
	for _, c := range cids {
		if !c.Defined() {
			s.ended()
			return nil, errors.New("bitswap: GetBlocks: undefined CID")
		}
		if _, dup := uniq[c]; !dup {
			uniq[c] = struct{}{}
			list = append(list, c)
		}
	}
	// The buffer holds every block, so delivering never blocks the Session
	// on a slow reader; it is bounded by the request itself.
	r := &request{ctx: ctx, out: make(chan blocks.Block, len(list)), remaining: uniq}
	if len(list) == 0 {
		close(r.out)
		s.ended()
		return r.out, nil
	}
	// Registered before the request is posted, so the run goroutine sees
	// r.stop; if ctx is already done, addRequest notices.
	r.stop = context.AfterFunc(ctx, func() { s.post(event{kind: evCancelRequest, req: r}) })
	if !s.post(event{kind: evRequest, req: r, cids: list}) {
		r.stop()
		return nil, ErrClosed
	}
	return r.out, nil
}

// Close ends the Session: wants are cancelled and open requests' channels
// closed. It waits for the Session's goroutines.
func (s *Session) Close() {
	s.cancel()
	<-s.done
	s.wg.Wait()
}

// Done is closed when the Session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// sink is how the routers reach a Session: what they deliver becomes an
// event in its inbox. It is a type of its own so that the Session's public
// methods are only those an application may call: no one else can inject
// blocks or peer events.
type sink struct{ s *Session }

// ReceiveBlocks implements the BlockRouter's sink.
func (k sink) ReceiveBlocks(from peer.ID, blks []blocks.Block) {
	k.s.post(event{kind: evBlocks, from: from, blks: blks})
}

// Presences implements peerrouter.Sink.
func (k sink) Presences(from peer.ID, haves, dontHaves []cid.Cid) {
	k.s.post(event{kind: evPresences, from: from, haves: haves, dontHaves: dontHaves})
}

// PeerConnected implements peerrouter.Sink.
func (k sink) PeerConnected(p peer.ID) { k.s.post(event{kind: evConnected, from: p}) }

// PeerDisconnected implements peerrouter.Sink.
func (k sink) PeerDisconnected(p peer.ID) { k.s.post(event{kind: evDisconnected, from: p}) }

func (s *Session) post(e event) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.inbox = append(s.inbox, e)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

func (s *Session) run() {
	defer close(s.done)
	if s.deps.OnClose != nil {
		defer s.deps.OnClose()
	}
	s.tick = time.NewTimer(time.Hour)
	s.tick.Stop()
	defer s.tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			s.shutdown()
			return
		case <-s.wake:
			s.mu.Lock()
			evs := s.inbox
			s.inbox = nil
			s.mu.Unlock()
			for _, e := range evs {
				s.handle(e)
			}
		case <-s.tick.C:
			s.armed = time.Time{}
			s.apply(s.policy.Tick(time.Now()))
		}
		s.arm()
	}
}

// arm sets the Session's one timer for the Policy's next deadline, or
// stops it when there is none. The deadline is absolute, so re-arming it
// after every event never postpones a timeout.
func (s *Session) arm() {
	d := s.policy.Deadline(time.Now())
	switch {
	case d.IsZero():
		if !s.armed.IsZero() {
			s.tick.Stop()
			s.armed = time.Time{}
		}
	case !d.Equal(s.armed):
		s.tick.Reset(time.Until(d))
		s.armed = d
	}
}

// ended is called once a request has ended, however it ended (refused,
// empty, served, cancelled or cut short by the Session's end): a one-off
// Session ends with its request.
func (s *Session) ended() {
	if s.oneOff {
		s.cancel()
	}
}

func (s *Session) handle(e event) {
	now := time.Now()
	switch e.kind {
	case evRequest:
		s.addRequest(e.req, e.cids)
	case evCancelRequest:
		s.endRequest(e.req)
	case evBlocks:
		cids := make([]cid.Cid, len(e.blks))
		for i, b := range e.blks {
			cids[i] = b.Cid()
		}
		s.apply(s.policy.BlocksReceived(now, e.from, cids))
		for _, b := range e.blks {
			s.deliver(b)
		}
	case evPresences:
		s.apply(s.policy.Presences(now, e.from, e.haves, e.dontHaves))
	case evConnected:
		var lat time.Duration
		if s.deps.Latency != nil {
			lat = s.deps.Latency(e.from)
		}
		s.apply(s.policy.PeerConnected(now, e.from, lat))
	case evDisconnected:
		s.apply(s.policy.PeerDisconnected(now, e.from))
	case evLocal:
		s.local(e.blks, e.cids)
	case evProviders:
		if len(e.cids) == 1 {
			s.apply(s.policy.ProvidersFound(now, e.cids[0], []peer.ID{e.from}))
		}
	}
}

func (s *Session) addRequest(r *request, cids []cid.Cid) {
	if r.ctx.Err() != nil {
		s.finish(r) // cancelled before it started
		return
	}
	s.requests[r] = struct{}{}
	var fresh []cid.Cid
	for _, c := range cids {
		if len(s.byCid[c]) == 0 && !s.policy.Has(c) {
			fresh = append(fresh, c)
		}
		s.byCid[c] = append(s.byCid[c], r)
	}
	if len(fresh) == 0 {
		return
	}
	// Register interest before looking locally, so that a block arriving
	// in between is not missed (a double delivery is filtered per request).
	s.deps.BlockRouter.Want(s.id, fresh)
	for _, c := range fresh {
		s.lookingUp[c] = struct{}{}
	}
	// The blockstore is read on a goroutine of its own, in chunks, so that
	// this goroutine, which owns the Session's state, keeps handling
	// blocks and presences meanwhile, and the first wants go out after one
	// chunk's lookups rather than all of them.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for len(fresh) > 0 {
			chunk := fresh[:min(len(fresh), localChunk)]
			fresh = fresh[len(chunk):]
			e := event{kind: evLocal}
			for _, c := range chunk {
				if b, err := s.deps.Blockstore.Get(s.ctx, c); err == nil {
					e.blks = append(e.blks, b)
				} else {
					e.cids = append(e.cids, c)
				}
			}
			if !s.post(e) {
				return
			}
		}
	}()
}

// localChunk is how many CIDs the local lookup reads before it reports.
const localChunk = 256

// local handles a chunk of a request's local lookup: blocks found are
// delivered, and the CIDs not found become wants, as far as some request
// still waits for them (one may have been cancelled, or the block may have
// come from the network, in the meantime).
func (s *Session) local(found []blocks.Block, missing []cid.Cid) {
	for _, b := range found {
		if _, ok := s.lookingUp[b.Cid()]; ok {
			s.deliver(b) // and, no longer looking it up, unwants it
		}
	}
	var add []cid.Cid
	for _, c := range missing {
		if _, ok := s.lookingUp[c]; ok {
			delete(s.lookingUp, c)
			add = append(add, c)
		}
	}
	if len(add) > 0 {
		s.apply(s.policy.Add(time.Now(), add))
	}
}

// deliver hands b to every request still waiting for it.
func (s *Session) deliver(b blocks.Block) {
	c := b.Cid()
	s.lookedUp(c)
	for _, r := range s.byCid[c] {
		if _, ok := r.remaining[c]; !ok {
			continue
		}
		delete(r.remaining, c)
		r.out <- b // never blocks: buffered for the whole request
		if len(r.remaining) == 0 {
			s.finish(r)
		}
	}
	delete(s.byCid, c)
}

// endRequest abandons a request whose context ended: its CIDs that no other
// request wants are cancelled.
func (s *Session) endRequest(r *request) {
	if _, ok := s.requests[r]; !ok {
		return
	}
	var drop []cid.Cid
	for c := range r.remaining {
		rs := s.byCid[c]
		for i, x := range rs {
			if x == r {
				rs = append(rs[:i], rs[i+1:]...)
				break
			}
		}
		if len(rs) == 0 {
			delete(s.byCid, c)
			s.lookedUp(c)
			drop = append(drop, c)
		} else {
			s.byCid[c] = rs
		}
	}
	s.finish(r)
	if len(drop) > 0 {
		s.apply(s.policy.Remove(time.Now(), drop))
	}
}

// lookedUp tells the routers that c, if its local lookup was still under
// way, is no longer wanted: it was delivered, or its requests ended, before
// the Policy ever had it (the Policy's own wants end through CancelAll).
func (s *Session) lookedUp(c cid.Cid) {
	if _, ok := s.lookingUp[c]; !ok {
		return
	}
	delete(s.lookingUp, c)
	s.deps.BlockRouter.Unwant(s.id, []cid.Cid{c})
}

func (s *Session) finish(r *request) {
	delete(s.requests, r)
	close(r.out)
	if r.stop != nil {
		r.stop()
	}
	s.ended()
}

// apply carries out a Policy step.
func (s *Session) apply(a Actions) {
	id := wantmanager.SessionID(s.id)
	if len(a.CancelAll) > 0 {
		s.deps.WantManager.CancelAll(id, a.CancelAll)
		s.deps.BlockRouter.Unwant(s.id, a.CancelAll)
	}
	for _, p := range a.Peers() {
		if cs := a.Cancels[p]; len(cs) > 0 {
			s.deps.WantManager.Cancel(id, p, cs)
		}
	}
	for _, p := range a.Peers() {
		if cs := a.Resends[p]; len(cs) > 0 {
			s.deps.WantManager.Resend(p, cs)
		}
	}
	for _, p := range a.Peers() {
		if cs := a.WantBlocks[p]; len(cs) > 0 {
			s.deps.WantManager.WantBlocks(id, p, cs)
		}
	}
	for _, p := range a.Peers() {
		if cs := a.WantHaves[p]; len(cs) > 0 {
			s.deps.WantManager.WantHaves(id, p, cs)
		}
	}
	for _, c := range a.FindProvs {
		s.findProviders(c)
	}
}

func (s *Session) findProviders(c cid.Cid) {
	if s.deps.Providers == nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, s.policy.cfg.ProviderSearchTimeout)
		defer cancel()
		for p := range s.deps.Providers.FindProviders(ctx, c) {
			s.post(event{kind: evProviders, from: p, cids: []cid.Cid{c}})
		}
	}()
}

func (s *Session) shutdown() {
	s.mu.Lock()
	s.closed = true
	s.inbox = nil
	s.mu.Unlock()
	var open []cid.Cid
	for c := range s.byCid {
		open = append(open, c)
	}
	if len(open) > 0 {
		s.deps.WantManager.CancelAll(wantmanager.SessionID(s.id), open)
		s.deps.BlockRouter.Unwant(s.id, open)
	}
	for r := range s.requests {
		s.finish(r)
	}
	s.deps.BlockRouter.Unregister(s.id)
}

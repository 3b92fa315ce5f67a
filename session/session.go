// Package session fetches blocks for one request (a GetBlocks call) or one
// long-lived Session from NewSession. It owns every decision about where and
// when to send wants: the Policy decides over plain data, and the Session
// carries its Actions out through the WantManager and the provider search
// (Deps.Providers), and delivers blocks to the callers. It traces its life
// and its requests as OpenTelemetry spans (see Spans).
//
// A Session never touches per-peer send queues (the WantManager's), never
// talks to the network, and never stores blocks (the BlockRouter does,
// before handing them to the Session).
package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

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

// ProviderFinder asks content routing for providers of c on the Session's
// behalf (the facade's is package providers' Finder, shared by all
// Sessions). It must return at once. The providers it finds and connects
// to reach the Session through the PeerRouter (Sink.ProviderFound), as
// they reach every other Session that wants c; the ask stands until ctx,
// the Session's, ends.
type ProviderFinder interface {
	FindProviders(ctx context.Context, c cid.Cid)
}

// PeerTagger marks peers in the connection manager, so that a trim keeps
// them; network.Network satisfies it.
type PeerTagger interface {
	TagPeer(p peer.ID, tag string, value int)
	UntagPeer(p peer.ID, tag string)
}

// TagPrefix starts the tag a Session puts on its peers: TagPrefix and the
// Session's ID ("bs-ses-7"), as boxo's client names its sessions' tags.
const TagPrefix = "bs-ses-"

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
	// Tracer starts the Session's OpenTelemetry spans (see Spans); nil:
	// none.
	Tracer trace.Tracer
	// Tagger, if set with a TagValue > 0, is told of the Session's peers:
	// each peer that sends it a block or a HAVE is tagged TagPrefix+ID
	// with TagValue, until it disconnects or the Session ends (the peers
	// delivering blocks are also protected, by the WantManager, while
	// they hold want-blocks). Peers that were only asked are not tagged:
	// a Session may ask every connected peer.
	Tagger   PeerTagger
	TagValue int
}

// ErrClosed is returned by a Session that has ended, and by requests to a
// Bitswap after Close (bitswap.ErrClosed is this value).
var ErrClosed = errors.New("bitswap: closed")

// Spans. A Session traces itself through Deps.Tracer, with the names boxo's
// client gives the same operations (so that dashboards and scripts made for
// boxo's traces read ours), and one of its own for the Session's life,
// which boxo's traces do not have:
//
//   - "Bitswap.Client.Session" (attribute ID): from New until the Session
//     has ended, a child of the span in New's context. The spans below
//     that the Session starts itself are its children.
//   - "Bitswap.Client.Session.FindMorePeers" (attribute cid): one provider
//     search, an event "FoundPeer" (attribute peer) for each provider found
//     and connected. The search is the provider layer's (Deps.Providers),
//     shared by every Session that asks for the CID while it runs, so it
//     is started there, as a child of the span in the context of the
//     first Session that asked: a child of that Session's span.
//   - "Bitswap.Client.Session.GetBlocks" (attribute NumKeys) and
//     "Bitswap.Client.Session.GetBlock": one call, until it returns, a
//     child of the span in the call's context.
//   - "Bitswap.Client.Getter.handleIncoming": one request's delivery, a
//     child of its GetBlocks span, from the call until the request's
//     channel closes, with an event "received block" (attribute cid) for
//     each block as it is handed to the reader.
//
// With a tracer that records nothing (OpenTelemetry's no-op, the default)
// the cost is a few allocations per request and none per block.

// Session fetches blocks. Its methods are safe for concurrent use; all of
// its state is owned by one goroutine, fed through an inbox.
type Session struct {
	id     uint64
	deps   Deps
	tracer trace.Tracer
	span   trace.Span // the Session's life; ended by run
	policy *Policy
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	// kill ends when the Session is closed or its parent context ends, not
	// when a one-off Session ends with its request: pumps stop on it, so
	// a one-off request's reader still gets the blocks queued for it.
	kill   context.Context
	unkill context.CancelFunc
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
	// largest is the size of the largest block delivered, which admit
	// assumes of the blocks it asks for.
	largest int
	// tagged holds the peers this Session has tagged (see Deps.Tagger);
	// tag is the tag, "" when the Session tags nobody.
	tagged map[peer.ID]struct{}
	tag    string
}

type event struct {
	kind      int
	req       *request
	cids      []cid.Cid
	from      peer.ID
	blks      []blocks.Block
	haves     []cid.Cid
	dontHaves []cid.Cid
	size      int                 // evTaken: bytes the reader took
	info      peerrouter.PeerInfo // evConnected
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
	evTaken // a request's reader took a block of size bytes
)

// New starts a Session. It ends when ctx is cancelled or Close is called;
// a oneOff Session also ends with its first request, however that ends.
func New(ctx context.Context, id uint64, deps Deps, cfg Config, oneOff bool) *Session {
	cfg = cfg.withDefaults()
	tracer := deps.Tracer
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer("")
	}
	// The Session's context carries its span, so that what it starts
	// (blockstore reads, the provider searches it asks for) is traced as
	// its children.
	ctx, span := tracer.Start(ctx, "Bitswap.Client.Session",
		trace.WithAttributes(attribute.String("ID", strconv.FormatUint(id, 10))))
	kill, unkill := context.WithCancel(ctx)
	ctx, cancel := context.WithCancel(kill)
	s := &Session{
		id: id, deps: deps, tracer: tracer, span: span,
		cfg: cfg, policy: NewPolicy(cfg), ctx: ctx, cancel: cancel,
		kill: kill, unkill: unkill, oneOff: oneOff,
		done: make(chan struct{}), wake: make(chan struct{}, 1),
		requests: make(map[*request]struct{}), byCid: make(map[cid.Cid][]*request),
		lookingUp: make(map[cid.Cid]struct{}),
	}
	if deps.Tagger != nil && deps.TagValue > 0 {
		s.tag = TagPrefix + strconv.FormatUint(id, 10)
		s.tagged = make(map[peer.ID]struct{})
	}
	deps.BlockRouter.Register(id, sink{s})
	deps.PeerRouter.Attach(sink{s})
	go s.run()
	return s
}

// GetBlock fetches one block.
func (s *Session) GetBlock(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	ctx, span := s.tracer.Start(ctx, "Bitswap.Client.Session.GetBlock")
	defer span.End()
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
// is closed. Blocks already in the blockstore come without the network.
//
// The request holds at most Config.RequestBuffer bytes of blocks its
// reader has not taken (the blocks it waits for are counted at the
// largest block size seen, at least 256 KiB, so the bound holds unless a
// block is larger than any before): it asks for more as the reader takes
// them. Read the
// channel to its end or cancel ctx; a channel left unread holds its
// buffer and a goroutine until then.
func (s *Session) GetBlocks(ctx context.Context, cids []cid.Cid) (<-chan blocks.Block, error) {
	ctx, span := s.tracer.Start(ctx, "Bitswap.Client.Session.GetBlocks",
		trace.WithAttributes(attribute.Int("NumKeys", len(cids))))
	defer span.End()
	uniq := make(map[cid.Cid]bool, len(cids))
	list := make([]cid.Cid, 0, len(cids))
	for _, c := range cids {
		if !c.Defined() {
			s.ended()
			err := errors.New("bitswap: GetBlocks: undefined CID")
			span.SetStatus(codes.Error, err.Error())
			return nil, err
		}
		if _, dup := uniq[c]; !dup {
			uniq[c] = false
			list = append(list, c)
		}
	}
	r := &request{ctx: ctx, out: make(chan blocks.Block), remaining: uniq, pending: list,
		pump: pump{wake: make(chan struct{}, 1), abort: make(chan struct{})}}
	if len(list) == 0 {
		close(r.out)
		s.ended()
		return r.out, nil
	}
	// Registered before the request is posted, so the run goroutine sees
	// r.stop; if ctx is already done, addRequest notices.
	r.stop = context.AfterFunc(ctx, func() { s.post(event{kind: evCancelRequest, req: r}) })
	s.mu.Lock()
	closed := s.closed
	if !closed {
		// Counted while the inbox is open, so that run's final wait
		// covers it.
		s.wg.Add(1)
	}
	s.mu.Unlock()
	// The request's delivery span, a child of this call's: set before the
	// pump starts, and from then on the pump's alone.
	_, r.span = s.tracer.Start(ctx, "Bitswap.Client.Getter.handleIncoming")
	if closed || !s.post(event{kind: evRequest, req: r}) {
		if !closed {
			s.wg.Done()
		}
		r.stop()
		r.span.End()
		span.SetStatus(codes.Error, ErrClosed.Error())
		return nil, ErrClosed
	}
	go s.runPump(r)
	return r.out, nil
}

// Close ends the Session: wants are cancelled and open requests' channels
// closed, blocks not yet taken dropped. It waits for the Session's
// goroutines.
func (s *Session) Close() {
	s.unkill()
	<-s.done
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
func (k sink) PeerConnected(p peer.ID, info peerrouter.PeerInfo) {
	k.s.post(event{kind: evConnected, from: p, info: info})
}

// PeerDisconnected implements peerrouter.Sink.
func (k sink) PeerDisconnected(p peer.ID) { k.s.post(event{kind: evDisconnected, from: p}) }

// ProviderFound implements peerrouter.Sink.
func (k sink) ProviderFound(p peer.ID, c cid.Cid) {
	k.s.post(event{kind: evProviders, from: p, cids: []cid.Cid{c}})
}

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
	// Ended before OnClose, so that a Bitswap's Close, which waits for
	// it, returns with every Session's span ended.
	defer s.span.End()
	// Lookups and pumps end with s.ctx or s.kill, or
	// (a one-off request's pump) when its reader has taken the last
	// block: the Session has ended only when they have.
	defer s.wg.Wait()
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
		s.addRequest(e.req)
	case evTaken:
		if _, ok := s.requests[e.req]; ok {
			e.req.held -= e.size
			s.admit(e.req)
		}
	case evCancelRequest:
		s.endRequest(e.req)
	case evBlocks:
		s.tagPeer(e.from)
		cids := make([]cid.Cid, len(e.blks))
		for i, b := range e.blks {
			cids[i] = b.Cid()
		}
		s.apply(s.policy.BlocksReceived(now, e.from, cids))
		for _, b := range e.blks {
			s.deliver(b)
		}
	case evPresences:
		if len(e.haves) > 0 {
			s.tagPeer(e.from)
		}
		s.apply(s.policy.Presences(now, e.from, e.haves, e.dontHaves))
	case evConnected:
		var lat time.Duration
		if s.deps.Latency != nil {
			lat = s.deps.Latency(e.from)
		}
		s.apply(s.policy.PeerConnected(now, e.from, PeerInfo{
			Latency: lat, Local: e.info.Local, Proven: e.info.Proven, Protected: e.info.Protected,
		}))
	case evDisconnected:
		s.untagPeer(e.from)
		s.apply(s.policy.PeerDisconnected(now, e.from))
	case evLocal:
		s.local(e.blks, e.cids)
	case evProviders:
		if len(e.cids) == 1 {
			s.apply(s.policy.ProvidersFound(now, e.cids[0], []peer.ID{e.from}))
		}
	}
}

func (s *Session) addRequest(r *request) {
	if r.ctx.Err() != nil {
		s.finish(r, false) // cancelled before it started
		return
	}
	s.requests[r] = struct{}{}
	for _, c := range r.pending {
		s.byCid[c] = append(s.byCid[c], r)
	}
	s.admit(r)
}

// lookUp starts getting fresh CIDs, which the Session is not getting yet:
// from the blockstore, then (s.local) from peers.
func (s *Session) lookUp(fresh []cid.Cid) {
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

// deliver hands b to every request still waiting for it, admitted or not:
// the block is here either way.
func (s *Session) deliver(b blocks.Block) {
	c := b.Cid()
	s.lookedUp(c)
	n := len(b.RawData())
	s.largest = max(s.largest, n)
	for _, r := range s.byCid[c] {
		admitted, ok := r.remaining[c]
		if !ok {
			continue
		}
		delete(r.remaining, c)
		if admitted {
			r.inflight--
		}
		r.held += n
		r.pump.push(b)
		if len(r.remaining) == 0 {
			s.finish(r, true)
		} else {
			s.admit(r)
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
	for c, admitted := range r.remaining {
		rs := slices.DeleteFunc(s.byCid[c], func(x *request) bool { return x == r })
		if len(rs) == 0 {
			delete(s.byCid, c)
		} else {
			s.byCid[c] = rs
		}
		// Still wanted if another request has asked for it; one that only
		// waits for room will ask afresh.
		if admitted && !slices.ContainsFunc(rs, func(x *request) bool { return x.remaining[c] }) {
			s.lookedUp(c)
			drop = append(drop, c)
		}
	}
	s.finish(r, false)
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

// finish ends r: complete, its reader still gets what is queued; cut
// short, not.
func (s *Session) finish(r *request, complete bool) {
	delete(s.requests, r)
	r.pump.finish(complete)
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

// findProviders hands c to the provider search, which runs one query per
// CID for all Sessions; what it finds comes back as evProviders, through
// the PeerRouter. The ask lasts as long as the Session (s.ctx carries its
// span, the search's parent).
func (s *Session) findProviders(c cid.Cid) {
	if s.deps.Providers != nil {
		s.deps.Providers.FindProviders(s.ctx, c)
	}
}

func (s *Session) shutdown() {
	s.mu.Lock()
	s.closed = true
	dropped := s.inbox
	s.inbox = nil
	s.mu.Unlock()
	for _, e := range dropped {
		if e.kind == evRequest {
			s.finish(e.req, false) // posted as the Session ended
		}
	}
	var open []cid.Cid
	for c := range s.byCid {
		open = append(open, c)
	}
	if len(open) > 0 {
		s.deps.WantManager.CancelAll(wantmanager.SessionID(s.id), open)
		s.deps.BlockRouter.Unwant(s.id, open)
	}
	for r := range s.requests {
		s.finish(r, false)
	}
	for p := range s.tagged {
		s.untagPeer(p)
	}
	s.deps.BlockRouter.Unregister(s.id)
}

// tagPeer tags p as one of the Session's peers, once (a block delivered
// from the blockstore or the application comes from no peer).
func (s *Session) tagPeer(p peer.ID) {
	if s.tag == "" || p == "" {
		return
	}
	if _, ok := s.tagged[p]; ok {
		return
	}
	s.tagged[p] = struct{}{}
	s.deps.Tagger.TagPeer(p, s.tag, s.deps.TagValue)
}

// untagPeer removes the Session's tag from p, if it has tagged it.
func (s *Session) untagPeer(p peer.ID) {
	if _, ok := s.tagged[p]; !ok {
		return
	}
	delete(s.tagged, p)
	s.deps.Tagger.UntagPeer(p, s.tag)
}

// Package providers asks content routing (a DHT, a delegated router) for
// the providers of blocks that Sessions lack, on behalf of all Sessions at
// once: one query per CID however many Sessions ask for it (a second ask
// while a query runs or waits joins it), at most Config.MaxConcurrent
// queries at a time (the rest wait in a bounded queue), each bounded in
// time and in providers. Each provider found is connected to (its
// addresses first; if they fail, one FindPeer and a retry with the
// addresses it gives) and then handed to the function the Finder was
// given: in the library, the PeerRouter's ProviderFound, which tells every
// Session that wants the CID. Providers on the ignore list, and this node,
// are never connected to nor handed on.
//
// It owns the queries, running and waiting, and who waits on each. It
// never touches wants, Sessions, the blockstore or the wire: it knows
// Sessions only as contexts that ask, and it announces nothing.
package providers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	ma "github.com/multiformats/go-multiaddr"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Defaults (see Config).
const (
	// DefaultMaxConcurrent is boxo's providerquerymanager default.
	DefaultMaxConcurrent = 8
	// DefaultMaxQueued bounds the queries waiting for a slot.
	DefaultMaxQueued = 256
	// DefaultTimeout is boxo's providerquerymanager default.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxProviders is what boxo's Bitswap client asks of its
	// providerquerymanager (defaults.BitswapMaxProvidersPerRequest).
	DefaultMaxProviders = 10
)

// Config tunes a Finder. Its zero value works: every field left at 0 takes
// its default, and a negative number means none where the field says what
// none is (the library's rule for every option).
type Config struct {
	// MaxConcurrent caps the queries running at once (default 8;
	// negative: no cap). Further queries wait, in the order asked.
	MaxConcurrent int
	// MaxQueued caps the queries waiting for a slot (default 256;
	// negative: no bound). When it is reached, the oldest waiting query
	// is dropped (counted in Stat.Dropped) to make room for the new one:
	// a Session asks again, later, for what it still lacks, and the
	// oldest wait is the likeliest to be answered already.
	MaxQueued int
	// Timeout bounds one query, from when it starts running (default
	// 10 s; negative: none, it ends when content routing has nothing
	// more, or its last asker leaves).
	Timeout time.Duration
	// MaxProviders is how many providers one query connects to and hands
	// on before it stops (default 10; negative: no cap). At most this
	// many are dialled at once (10 if there is no cap), and a query reads
	// at most 10 times as many records from content routing (1,000 if
	// there is no cap), so that a router naming peer after unreachable
	// peer cannot keep it dialling.
	MaxProviders int
	// Ignore lists peers never connected to nor handed on, however
	// content routing names them. This node is always ignored.
	Ignore []peer.ID
	// PeerRouting is asked for fresh addresses of a provider that could
	// not be connected to with those content routing gave (one FindPeer,
	// then one more dial if it gave an address not tried yet). nil: the
	// content router, if it implements routing.PeerRouting (a DHT does),
	// else no retry.
	PeerRouting routing.PeerRouting
	// Tracer starts each query's span (see Finder); nil: none.
	Tracer trace.Tracer
	// Logger hears, at debug level, of providers that could not be
	// connected to; nil: slog.Default().
	Logger *slog.Logger
	// Unreachable, if set, is told of each provider that could not be
	// connected to (after the FindPeer retry, if any), with the CID of the
	// query that found it and why. It runs in the query's goroutines and
	// must return quickly.
	Unreachable func(p peer.ID, c cid.Cid, err error)
}

// Dialer connects to peers: the library's network.Network is one.
type Dialer interface {
	// Self is this node, never dialled.
	Self() peer.ID
	// Connect dials ai.ID at ai.Addrs (or addresses it knows), if not
	// connected yet.
	Connect(ctx context.Context, ai peer.AddrInfo) error
}

// Outcome is what became of an ask.
type Outcome int

const (
	// Refused: the Finder is closed, the ask's context had ended, or the
	// CID is undefined.
	Refused Outcome = iota
	// Started: a query for the CID started.
	Started
	// Queued: a query for the CID waits for a slot.
	Queued
	// Joined: a query for the CID was running or waiting; the ask joined
	// it.
	Joined
)

func (o Outcome) String() string {
	switch o {
	case Started:
		return "started"
	case Queued:
		return "queued"
	case Joined:
		return "joined"
	default:
		return "refused"
	}
}

// Stat holds a Finder's counters (since New) and gauges (now).
type Stat struct {
	Started   uint64 // queries started (a waiting one counts when it starts)
	Joined    uint64 // asks that joined a query running or waiting
	Queued    uint64 // queries that had to wait for a slot
	Dropped   uint64 // waiting queries dropped for a newer one (MaxQueued)
	Abandoned uint64 // queries whose every asker left before they ended
	TimedOut  uint64 // queries that ran out of time (Timeout)

	Records       uint64 // provider records content routing returned
	Ignored       uint64 // records of ignored peers (the ignore list, this node)
	Connected     uint64 // providers connected and handed on
	ConnectFailed uint64 // providers that could not be connected to, even after FindPeer
	FindPeers     uint64 // FindPeer lookups after a failed dial
	Rescued       uint64 // providers connected only with FindPeer's addresses

	Running int // queries running now
	Waiting int // queries waiting for a slot now
}

// Finder runs provider queries. The zero value is not usable; call New.
// Its methods are safe for concurrent use.
//
// Each query is traced through Config.Tracer as a span
// "Bitswap.Client.Session.FindMorePeers" (boxo's name for a Session's
// provider search; attribute cid), a child of the span in the first
// asker's context, from when it starts until it ends, with an event
// "FoundPeer" (attribute peer) for each provider connected and handed on,
// "JoinQuery" for each later ask that joined it, "RetryAfterFindPeer"
// for each dial retried with FindPeer's addresses, and "TimedOut" if its
// time ran out; its attribute providers is how many it handed on.
type Finder struct {
	router  routing.ContentDiscovery
	peers   routing.PeerRouting // nil: no FindPeer retry
	dialer  Dialer
	found   func(p peer.ID, c cid.Cid)
	ignore  map[peer.ID]struct{}
	timeout time.Duration // 0: none
	max     int           // providers per query; 0: no cap
	dials   int           // dials at once per query
	records int           // records read per query
	tracer  trace.Tracer
	logger  *slog.Logger

	unreachable func(peer.ID, cid.Cid, error) // nil: nobody told

	ctx    context.Context // ends with Close; every query runs under it
	cancel context.CancelFunc
	wg     sync.WaitGroup // the queries' goroutines

	mu     sync.Mutex // guards core and closed
	core   core
	closed bool
}

// New returns a Finder that asks r for providers, connects to them through
// d and hands each to found (nil: nobody), with c the CID of the query
// that found it. found is called from the query's goroutines, one call per
// provider and query, and must not block for long.
func New(r routing.ContentDiscovery, d Dialer, found func(p peer.ID, c cid.Cid), cfg Config) *Finder {
	f := &Finder{router: r, dialer: d, found: found, peers: cfg.PeerRouting,
		tracer: cfg.Tracer, logger: cfg.Logger, unreachable: cfg.Unreachable, ignore: make(map[peer.ID]struct{})}
	if f.found == nil {
		f.found = func(peer.ID, cid.Cid) {}
	}
	if f.peers == nil {
		f.peers, _ = r.(routing.PeerRouting)
	}
	if f.tracer == nil {
		f.tracer = noop.NewTracerProvider().Tracer("")
	}
	if f.logger == nil {
		f.logger = slog.Default()
	}
	for _, p := range cfg.Ignore {
		f.ignore[p] = struct{}{}
	}
	f.ignore[d.Self()] = struct{}{}
	f.timeout = pick(cfg.Timeout, DefaultTimeout)
	f.max = pick(cfg.MaxProviders, DefaultMaxProviders)
	f.dials, f.records = f.max, 10*f.max
	if f.max == 0 {
		f.dials, f.records = DefaultMaxProviders, 1000
	}
	f.core = newCore(pick(cfg.MaxConcurrent, DefaultMaxConcurrent), pick(cfg.MaxQueued, DefaultMaxQueued))
	f.ctx, f.cancel = context.WithCancel(context.Background())
	return f
}

// pick applies the library's rule: 0 is the default, negative is none (0
// here).
func pick[T int | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// Find asks for the providers of c on behalf of ctx's owner (a Session),
// and returns at once. The providers reach found, not the caller. The ask
// stands until ctx ends: a query whose every asker has left is cancelled
// (or, waiting, dropped from the queue), so a Session that ends takes its
// queries with it unless another Session still waits on them. Asks are
// joined per CID: two CID versions of one multihash are two queries.
func (f *Finder) Find(ctx context.Context, c cid.Cid) Outcome {
	if !c.Defined() || ctx.Err() != nil {
		return Refused
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return Refused
	}
	q, o, dropped := f.core.ask(c)
	switch o {
	case Joined:
		if q.span != nil {
			q.span.AddEvent("JoinQuery")
		}
	default:
		q.parent = trace.SpanFromContext(ctx)
	}
	if o == Started {
		f.startLocked(q)
	}
	q.stops = append(q.stops, context.AfterFunc(ctx, func() { f.leave(q) }))
	q.askedBy = append(q.askedBy, ctx)
	if dropped != nil {
		release(dropped)
	}
	return o
}

// Stat returns the Finder's counters.
func (f *Finder) Stat() Stat {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.core.snapshot()
}

// Close cancels every query, forgets those waiting, and returns once every
// query's goroutine has ended. Later asks are refused. It is safe to call
// more than once.
func (f *Finder) Close() {
	f.mu.Lock()
	if !f.closed {
		f.closed = true
		for _, q := range f.core.clear() {
			release(q)
		}
		f.cancel()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

// release forgets the askers of q, which has ended: their leaving no
// longer matters.
func release(q *query) {
	for _, stop := range q.stops {
		stop()
	}
	q.stops = nil
	q.askedBy = nil
}

func (f *Finder) leave(q *query) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.core.leave(q) {
		q.cancel()
	}
	if q.state == ended {
		release(q)
	}
}

// startLocked starts q's goroutine; q has just become running in the core.
func (f *Finder) startLocked(q *query) {
	ctx, cancel := context.WithCancel(f.ctx)
	if f.timeout > 0 {
		ctx, cancel = context.WithTimeout(f.ctx, f.timeout)
	}
	q.cancel = cancel
	_, q.span = f.tracer.Start(trace.ContextWithSpan(ctx, q.parent), "Bitswap.Client.Session.FindMorePeers",
		trace.WithAttributes(attribute.String("cid", q.c.String())))
	f.wg.Add(1)
	go f.run(ctx, q)
}

// run is one query: it reads provider records, dials up to f.dials of
// them at once, hands on those connected, and ends when content routing
// has no more, f.max have been handed on, its time runs out, its askers
// have all left or the Finder closes.
func (f *Finder) run(ctx context.Context, q *query) {
	defer f.wg.Done()
	span := q.span
	var (
		dials sync.WaitGroup
		slots = make(chan struct{}, f.dials)
		seen  = make(map[peer.ID]struct{})
		mu    sync.Mutex // guards handed
		// handed counts providers handed on; at f.max the query is done.
		handed int
	)
	recs := f.router.FindProvidersAsync(ctx, q.c, 0) // 0: all; the query stops itself at f.max
read:
	for {
		var ai peer.AddrInfo
		var ok bool
		select {
		case ai, ok = <-recs:
		case <-ctx.Done():
			break read
		}
		if !ok {
			break read
		}
		if _, dup := seen[ai.ID]; dup || ai.ID == "" {
			continue
		}
		if len(seen) == f.records {
			break read // enough records: this router is not naming reachable providers
		}
		seen[ai.ID] = struct{}{}
		if !f.record(ai.ID) {
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			break read
		}
		dials.Add(1)
		go func() {
			defer dials.Done()
			defer func() { <-slots }()
			if err := f.connect(ctx, span, q.c, ai); err != nil {
				if ctx.Err() == nil {
					f.count(func(s *Stat) { s.ConnectFailed++ })
					f.logger.Debug("bitswap: provider not reachable", "err", err)
					if f.unreachable != nil {
						f.unreachable(ai.ID, q.c, err)
					}
				}
				return
			}
			mu.Lock()
			if f.max > 0 && handed >= f.max {
				mu.Unlock()
				return
			}
			handed++
			full := f.max > 0 && handed == f.max
			mu.Unlock()
			f.count(func(s *Stat) { s.Connected++ })
			span.AddEvent("FoundPeer", trace.WithAttributes(attribute.String("peer", ai.ID.String())))
			f.found(ai.ID, q.c)
			if full {
				q.cancel() // enough: stop content routing and the other dials
			}
		}()
	}
	dials.Wait()
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	span.SetAttributes(attribute.Int("providers", handed))
	if timedOut {
		span.AddEvent("TimedOut")
	}
	span.End()
	q.cancel()
	f.mu.Lock()
	defer f.mu.Unlock()
	next := f.core.finished(q, timedOut, asked)
	release(q)
	for _, n := range next {
		f.startLocked(n)
	}
}

// asked says whether some asker of q still waits on it.
func asked(q *query) bool {
	return slices.ContainsFunc(q.askedBy, func(ctx context.Context) bool { return ctx.Err() == nil })
}

// record counts a provider record and says whether to dial its peer.
func (f *Finder) record(p peer.ID) bool {
	_, ignored := f.ignore[p]
	f.count(func(s *Stat) {
		s.Records++
		if ignored {
			s.Ignored++
		}
	})
	return !ignored
}

func (f *Finder) count(fn func(*Stat)) {
	f.mu.Lock()
	fn(&f.core.stat)
	f.mu.Unlock()
}

// connect dials ai; when that fails and there is peer routing, it asks
// for fresh addresses once and, if they hold one not tried yet, dials
// again.
func (f *Finder) connect(ctx context.Context, span trace.Span, c cid.Cid, ai peer.AddrInfo) error {
	err := f.dialer.Connect(ctx, ai)
	if err == nil {
		return nil
	}
	err = fmt.Errorf("connecting to %s, a provider of %s: %w", ai.ID, c, err)
	if f.peers == nil || ctx.Err() != nil {
		return err
	}
	f.count(func(s *Stat) { s.FindPeers++ })
	fresh, ferr := f.peers.FindPeer(ctx, ai.ID)
	if ferr != nil {
		return errors.Join(err, fmt.Errorf("finding peer %s, a provider of %s: %w", ai.ID, c, ferr))
	}
	if !hasNewAddrs(fresh.Addrs, ai.Addrs) {
		return fmt.Errorf("%w (FindPeer gave no new address)", err)
	}
	span.AddEvent("RetryAfterFindPeer", trace.WithAttributes(attribute.String("peer", ai.ID.String())))
	fresh.ID = ai.ID
	if rerr := f.dialer.Connect(ctx, fresh); rerr != nil {
		return errors.Join(err, fmt.Errorf("connecting to %s, a provider of %s, at FindPeer's addresses: %w", ai.ID, c, rerr))
	}
	f.count(func(s *Stat) { s.Rescued++ })
	return nil
}

// hasNewAddrs says whether candidate holds an address not in tried.
func hasNewAddrs(candidate, tried []ma.Multiaddr) bool {
	for _, a := range candidate {
		fresh := true
		for _, t := range tried {
			if a.Equal(t) {
				fresh = false
				break
			}
		}
		if fresh {
			return true
		}
	}
	return false
}

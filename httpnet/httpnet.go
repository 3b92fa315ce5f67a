// Package httpnet is a network.Network whose peers are HTTP endpoints
// speaking the Trustless Gateway protocol (block requests only). To the
// rest of Bitswap an endpoint is a peer like any other: its wants go out
// through SendMessage and its answers come back to the Receiver as
// synthesized Bitswap messages.
//
//   - A want-block for CID c becomes GET base/ipfs/{c}?format=raw with
//     Accept: application/vnd.ipld.raw. A 200 body is read up to the cap
//     (WithMaxBlockSize, 2 MiB), hashed and compared with c before anyone
//     sees it; a match is delivered as a message holding the block. A
//     body that does not match, or is over the cap, is dropped, counted
//     (Stats().MalformedReceived, HTTPStats().WrongBodies) and answered
//     with DONT_HAVE so the Session asks elsewhere at once; after
//     WithMaxWrongBodies of them the endpoint is disconnected and banned.
//   - A want-have becomes HEAD of the same URL; 200 is delivered as HAVE.
//   - 404, 410, 403, 451 and redirects mean the endpoint does not have the
//     block: DONT_HAVE when the entry asked for it (sendDontHave), else
//     nothing.
//   - 429, 503, 502 and 504 put the endpoint's host in a cooldown until its
//     Retry-After (seconds or an HTTP date; capped by WithCooldown's max;
//     WithCooldown's backoff when it names none). Requests to a host in a
//     cooldown wait for its end (a cancel or Stop ends the wait), then go
//     out; a want throttled more than WithMaxRetries times is answered with
//     DONT_HAVE. Waiting rather than answering DONT_HAVE at once keeps a
//     fetch whose only source is throttled going; with other sources, the
//     Session's own timeout moves the want on as it would from a slow peer.
//   - Other failures (transport errors, other statuses) answer DONT_HAVE
//     and count against the endpoint; WithMaxServerErrors in a row
//     disconnect it. A 500 whose body says the block is missing (some
//     gateways answer so) is taken as a 404.
//   - A cancel entry aborts the CID's in-flight request (or its wait for a
//     slot or a cooldown); no answer follows.
//
// Connect probes GET base/ipfs/bafkqaaa?format=raw (the empty identity
// block) on each of the peer's HTTP addresses in turn and reports
// PeerConnected for the first that answers 200 with the right (empty)
// body; its round trip seeds the endpoint's latency, which every later
// answer the server understood (200, 404) updates (a moving average of
// the time to response headers). Requests per endpoint are bounded
// (WithMaxInFlight); connections are kept alive and reused; https://
// endpoints speak HTTP/2 (ALPN) or HTTP/1.1, plain http:// ones HTTP/1.1
// or, with WithUnencryptedHTTP2, h2c.
//
// Peer identity: an HTTP provider record names a peer ID and /http or
// /tls/http multiaddrs, used as they are. A bare URL has no peer ID; it
// gets the pseudo ID PeerIDFromURL derives from its origin.
//
// This package imports only the network and message packages of this
// module, and never boxo.
package httpnet

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/network"
)

// Errors returned by the Network.
var (
	ErrStopped      = errors.New("httpnet: stopped")
	ErrNotConnected = errors.New("httpnet: endpoint not connected")
	ErrBanned       = errors.New("httpnet: endpoint banned for sending wrong blocks")
	ErrProbeFailed  = errors.New("httpnet: endpoint probe failed")
)

// probeCid is the empty identity block, which every trustless gateway can
// serve without storage.
var probeCid = cid.MustParse("bafkqaaa")

const rawType = "application/vnd.ipld.raw"

// HTTPStats counts what the HTTP network did, beyond network.Stats.
type HTTPStats struct {
	Requests     uint64 // GET and HEAD requests sent (probes excluded)
	Blocks       uint64 // verified blocks delivered
	Haves        uint64 // HAVEs delivered (HEAD 200)
	NotFound     uint64 // answers meaning "not here" (404 etc.)
	WrongBodies  uint64 // bodies dropped: hash mismatch or over the cap
	Oversize     uint64 // of WrongBodies, those over the cap
	Throttled    uint64 // 429/503/502/504 answers
	ServerErrors uint64 // transport errors and other statuses
	Cancelled    uint64 // requests aborted by a cancel entry
	Probes       uint64 // connect probes sent
	ProbeFails   uint64 // probes that failed
	Dropped      uint64 // endpoints disconnected for misbehaving
	Banned       uint64 // of Dropped, those banned (wrong bodies)
}

// Network is a network.Network over HTTP endpoints. Build it with New;
// it is usable alone (bitswap.New(ctx, httpnet.New(), bs)) or beside a
// libp2p network under a Router.
type Network struct {
	cfg    config
	tlsC   *http.Client // https://
	plainC *http.Client // http://

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// evMu orders connection events: held across a state change and the
	// Receiver call that reports it.
	evMu sync.Mutex

	mu        sync.Mutex
	state     int // 0 new, 1 started, 2 stopped
	receiver  network.Receiver
	endpoints map[peer.ID]*endpoint // connected endpoints
	banned    map[peer.ID]time.Time
	cooldown  map[string]cooldown // by host:port

	requests, blocksN, haves, notFound, wrong, oversize  atomic.Uint64
	throttled, serverErrs, cancelled, probes, probeFails atomic.Uint64
	dropped, bannedN, msgsRecv, bytesRecv, bytesSent     atomic.Uint64
}

// endpoint is one connected HTTP peer.
type endpoint struct {
	id    peer.ID
	base  *url.URL
	host  string // base.Host: the cooldown and host-list key
	slots chan struct{}
	ctx   context.Context // cancelled when disconnected
	stop  context.CancelFunc

	// deliverMu makes the Receiver see this peer's messages one at a time.
	deliverMu sync.Mutex

	// Guarded by Network.mu.
	inflight  map[reqKey]*inflight
	wrong     int
	errsInRow int
	latency   time.Duration
}

type reqKey struct {
	c    string // cid.KeyString
	have bool
}

type inflight struct {
	cancel context.CancelFunc
}

var _ network.Network = (*Network)(nil)

// New returns an HTTP network. Nothing runs until Start.
func New(opts ...Option) *Network {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.self == "" {
		cfg.self = PeerIDFromURL(&url.URL{Scheme: "http", Host: "self"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Network{
		cfg:       cfg,
		ctx:       ctx,
		cancel:    cancel,
		endpoints: make(map[peer.ID]*endpoint),
		banned:    make(map[peer.ID]time.Time),
		cooldown:  make(map[string]cooldown),
	}
	n.tlsC, n.plainC = n.clients()
	return n
}

// clients builds the two HTTP clients. Redirects are not followed: a
// trustless gateway answers a block request itself.
func (n *Network) clients() (tlsC, plainC *http.Client) {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	base := func() *http.Transport {
		return &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   n.cfg.maxInFlight,
			MaxConnsPerHost:       0,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: n.cfg.requestTimeout,
			DisableCompression:    true, // blocks are hashed as sent
		}
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if n.cfg.transport != nil {
		c := &http.Client{Transport: n.cfg.transport, CheckRedirect: noRedirect}
		return c, c
	}

	t := base()
	if n.cfg.tlsConfig != nil {
		t.TLSClientConfig = n.cfg.tlsConfig.Clone()
	} else {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	t.Protocols = new(http.Protocols)
	t.Protocols.SetHTTP1(true)
	t.Protocols.SetHTTP2(true)

	p := base()
	p.Protocols = new(http.Protocols)
	if n.cfg.h2c {
		p.Protocols.SetUnencryptedHTTP2(true)
	} else {
		p.Protocols.SetHTTP1(true)
	}
	return &http.Client{Transport: t, CheckRedirect: noRedirect},
		&http.Client{Transport: p, CheckRedirect: noRedirect}
}

func (n *Network) client(u *url.URL) *http.Client {
	if u.Scheme == "https" {
		return n.tlsC
	}
	return n.plainC
}

// Self returns the ID set by WithSelf, or the network's own pseudo ID.
func (n *Network) Self() peer.ID { return n.cfg.self }

// Start records r; answers and connection events go to it from now on.
// It panics if called twice or after Stop.
func (n *Network) Start(r network.Receiver) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != 0 {
		panic("httpnet: Start called twice or after Stop")
	}
	n.state, n.receiver = 1, r
}

// Stop aborts every request and wait, waits for their goroutines and
// closes idle connections. Once it returns the Receiver gets no more
// calls. It must not be called from a Receiver method.
func (n *Network) Stop() {
	// evMu first: a connection event being reported finishes before Stop
	// goes on, and none starts after.
	n.evMu.Lock()
	n.mu.Lock()
	if n.state == 2 {
		n.mu.Unlock()
		n.evMu.Unlock()
		return
	}
	n.state = 2
	n.mu.Unlock()
	n.evMu.Unlock()
	n.cancel()
	n.wg.Wait()
	n.tlsC.CloseIdleConnections()
	n.plainC.CloseIdleConnections()
}

// Has reports whether p is a connected endpoint of this network.
func (n *Network) Has(p peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.endpoints[p]
	return ok
}

// hostAllowed applies the allow and deny lists to a URL's host.
func (n *Network) hostAllowed(u *url.URL) bool {
	h := strings.ToLower(u.Hostname())
	if n.cfg.deny[h] {
		return false
	}
	return n.cfg.allow == nil || n.cfg.allow[h]
}

// Connect probes ai's HTTP addresses in turn and reports the peer
// connected at the first that answers the probe. ai.ID may be empty: the
// pseudo ID of the first usable address's URL is used. Addresses that are
// not HTTP, or whose host the allow/deny lists refuse, are skipped;
// ErrNoHTTPAddresses when none is left. Connecting a connected peer does
// nothing.
func (n *Network) Connect(ctx context.Context, ai peer.AddrInfo) error {
	var urls []*url.URL
	var lastErr error
	for _, a := range ai.Addrs {
		if !IsHTTPAddr(a) {
			continue
		}
		u, id, err := URLOf(a)
		if err != nil {
			lastErr = err
			continue
		}
		if id != "" && ai.ID != "" && id != ai.ID {
			continue // an address of another peer
		}
		if !n.hostAllowed(u) {
			lastErr = fmt.Errorf("%w: host %s not allowed", ErrNoHTTPAddresses, u.Hostname())
			continue
		}
		urls = append(urls, u)
	}
	if len(urls) == 0 {
		if lastErr != nil {
			return lastErr
		}
		return ErrNoHTTPAddresses
	}
	id := ai.ID
	if id == "" {
		id = PeerIDFromURL(urls[0])
	}
	return n.connect(ctx, id, urls)
}

// ConnectURL connects the endpoint at an http:// or https:// URL (a base
// path allowed), under its pseudo peer ID, which it returns.
func (n *Network) ConnectURL(ctx context.Context, s string) (peer.ID, error) {
	u, err := ParseURL(s)
	if err != nil {
		return "", err
	}
	if !n.hostAllowed(u) {
		return "", fmt.Errorf("%w: host %s not allowed", ErrNoHTTPAddresses, u.Hostname())
	}
	id := PeerIDFromURL(u)
	return id, n.connect(ctx, id, []*url.URL{u})
}

func (n *Network) connect(ctx context.Context, id peer.ID, urls []*url.URL) error {
	n.mu.Lock()
	switch {
	case n.state != 1:
		n.mu.Unlock()
		return ErrStopped
	case n.endpoints[id] != nil:
		n.mu.Unlock()
		return nil
	}
	if until, ok := n.banned[id]; ok {
		if n.cfg.clock.Now().Before(until) {
			n.mu.Unlock()
			return fmt.Errorf("%w: %s", ErrBanned, id)
		}
		delete(n.banned, id)
	}
	n.mu.Unlock()

	ctx, cancel := mergeCancel(ctx, n.ctx)
	defer cancel()
	var errs []string // one line in all
	for _, u := range urls {
		lat, err := n.probe(ctx, u)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return n.register(id, u, lat)
	}
	return fmt.Errorf("%w: %s", ErrProbeFailed, strings.Join(errs, "; "))
}

// register makes id a connected endpoint at u and reports it.
func (n *Network) register(id peer.ID, u *url.URL, lat time.Duration) error {
	n.evMu.Lock()
	defer n.evMu.Unlock()
	n.mu.Lock()
	if n.state != 1 {
		n.mu.Unlock()
		return ErrStopped
	}
	if n.endpoints[id] != nil {
		n.mu.Unlock()
		return nil // a concurrent Connect won
	}
	ctx, stop := context.WithCancel(n.ctx)
	n.endpoints[id] = &endpoint{
		id: id, base: u, host: u.Host,
		slots:    make(chan struct{}, n.cfg.maxInFlight),
		ctx:      ctx,
		stop:     stop,
		inflight: make(map[reqKey]*inflight),
		latency:  lat,
	}
	r := n.receiver
	n.mu.Unlock()
	n.cfg.logger.Debug("httpnet: connected", "peer", id, "url", u.String(), "latency", lat)
	r.PeerConnected(id)
	return nil
}

// probe asks u for the empty identity block and returns the round trip.
func (n *Network) probe(ctx context.Context, u *url.URL) (time.Duration, error) {
	n.probes.Add(1)
	ctx, cancel := context.WithTimeout(ctx, n.cfg.requestTimeout)
	defer cancel()
	req, err := n.newRequest(ctx, http.MethodGet, u, probeCid)
	if err != nil {
		n.probeFails.Add(1)
		return 0, err
	}
	start := n.cfg.clock.Now()
	resp, err := n.client(u).Do(req)
	if err != nil {
		n.probeFails.Add(1)
		return 0, fmt.Errorf("probing %s: %w", u, err)
	}
	lat := n.cfg.clock.Now().Sub(start)
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(body) != 0 {
		n.probeFails.Add(1)
		if err == nil {
			err = fmt.Errorf("probing %s: status %d, %d bytes (want 200 and an empty block)", u, resp.StatusCode, len(body))
		}
		return 0, err
	}
	return lat, nil
}

func (n *Network) newRequest(ctx context.Context, method string, base *url.URL, c cid.Cid) (*http.Request, error) {
	u := *base
	u.Path = base.Path + "/ipfs/" + c.String()
	u.RawQuery = "format=raw"
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", rawType)
	req.Header.Set("User-Agent", n.cfg.userAgent)
	return req, nil
}

// DisconnectFrom forgets p: its requests are aborted and PeerDisconnected
// is reported. It may be connected again.
func (n *Network) DisconnectFrom(_ context.Context, p peer.ID) error {
	n.disconnect(p, false, false)
	return nil
}

// disconnect drops p, counting it as dropped for misbehaving if bad, and
// banning it for the ban duration if ban. It reports false if p was not
// connected.
func (n *Network) disconnect(p peer.ID, bad, ban bool) bool {
	n.evMu.Lock()
	defer n.evMu.Unlock()
	n.mu.Lock()
	ep := n.endpoints[p]
	if ep == nil {
		n.mu.Unlock()
		return false
	}
	delete(n.endpoints, p)
	if bad {
		n.dropped.Add(1)
	}
	if ban {
		n.bannedN.Add(1)
		if n.cfg.banFor > 0 {
			n.banned[p] = n.cfg.clock.Now().Add(n.cfg.banFor)
		}
	}
	r, started := n.receiver, n.state == 1
	n.mu.Unlock()
	ep.stop()
	if started {
		r.PeerDisconnected(p)
	}
	return true
}

// Version is V120 for every endpoint: it answers want-haves (HEAD) and
// sends DONT_HAVE (404).
func (n *Network) Version(_ context.Context, p peer.ID) (message.Version, error) {
	if !n.Has(p) {
		return 0, ErrNotConnected
	}
	return message.V120, nil
}

// Latency is the moving average of p's time to response headers.
func (n *Network) Latency(p peer.ID) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ep := n.endpoints[p]; ep != nil {
		return ep.latency
	}
	return 0
}

// Named reports whether p is a connected endpoint: the application (or its
// content routing) chose every endpoint this network reaches, so Bitswap
// asks it as it asks peers the application names (bitswap's
// WithBroadcastPeers), not as a random guess.
func (n *Network) Named(p peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.endpoints[p] != nil
}

// Local reports whether p is a connected endpoint whose host is a
// loopback, private (LAN) or link-local IP address, or "localhost". A
// host name is not resolved: a gateway named by DNS is not local.
func (n *Network) Local(p peer.ID) bool {
	n.mu.Lock()
	ep := n.endpoints[p]
	n.mu.Unlock()
	if ep == nil {
		return false
	}
	h := ep.base.Hostname()
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && (ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast())
}

// The connection manager knows nothing of HTTP endpoints: tags and
// protections do nothing.
func (n *Network) TagPeer(peer.ID, string, int)   {}
func (n *Network) UntagPeer(peer.ID, string)      {}
func (n *Network) Protect(peer.ID, string)        {}
func (n *Network) Unprotect(peer.ID, string) bool { return false }

// Stats maps the HTTP counters onto network.Stats: a request is a message
// sent, an answer delivered a message received, a wrong body a malformed
// message, an endpoint dropped a disconnection (and a ban, for wrong
// bodies).
func (n *Network) Stats() network.Stats {
	return network.Stats{
		MessagesSent:      n.requests.Load(),
		MessagesReceived:  n.msgsRecv.Load(),
		BytesSent:         n.bytesSent.Load(),
		BytesReceived:     n.bytesRecv.Load(),
		MalformedReceived: n.wrong.Load(),
		PeersDisconnected: n.dropped.Load(),
		PeersBanned:       n.bannedN.Load(),
	}
}

// HTTPStats returns the HTTP network's own counters.
func (n *Network) HTTPStats() HTTPStats {
	return HTTPStats{
		Requests: n.requests.Load(), Blocks: n.blocksN.Load(), Haves: n.haves.Load(),
		NotFound: n.notFound.Load(), WrongBodies: n.wrong.Load(), Oversize: n.oversize.Load(),
		Throttled: n.throttled.Load(), ServerErrors: n.serverErrs.Load(),
		Cancelled: n.cancelled.Load(), Probes: n.probes.Load(), ProbeFails: n.probeFails.Load(),
		Dropped: n.dropped.Load(), Banned: n.bannedN.Load(),
	}
}

// SendMessage turns msg's wantlist into requests to p and returns at once:
// the answers come to the Receiver. Blocks and presences in msg (which an
// endpoint never asks for) are ignored. A full wantlist aborts the
// requests for CIDs it does not name.
func (n *Network) SendMessage(_ context.Context, p peer.ID, msg *message.Message) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.state != 1 {
		return ErrStopped
	}
	ep := n.endpoints[p]
	if ep == nil {
		return fmt.Errorf("%w: %s", ErrNotConnected, p)
	}
	if msg.Full {
		named := make(map[string]bool, len(msg.Wantlist))
		for _, e := range msg.Wantlist {
			if !e.Cancel {
				named[e.Cid.KeyString()] = true
			}
		}
		for k, f := range ep.inflight {
			if !named[k.c] {
				f.cancel()
				delete(ep.inflight, k)
			}
		}
	}
	for _, e := range msg.Wantlist {
		k := e.Cid.KeyString()
		if e.Cancel {
			for _, have := range []bool{false, true} {
				if f := ep.inflight[reqKey{k, have}]; f != nil {
					f.cancel()
					delete(ep.inflight, reqKey{k, have})
					n.cancelled.Add(1)
				}
			}
			continue
		}
		key := reqKey{k, e.WantType == message.WantHave}
		if ep.inflight[key] != nil {
			continue // already asked
		}
		ctx, cancel := context.WithCancel(ep.ctx)
		f := &inflight{cancel: cancel}
		ep.inflight[key] = f
		n.wg.Add(1)
		go n.run(ctx, ep, key, f, e)
	}
	return nil
}

// outcome of one request.
type outcome int

const (
	gotBlock outcome = iota
	gotHave
	gotNotFound
	gotThrottled
	gotWrong
	gotError
	gotCancelled
)

// run carries one want to its answer.
func (n *Network) run(ctx context.Context, ep *endpoint, key reqKey, f *inflight, e message.Entry) {
	defer n.wg.Done()
	defer f.cancel()
	for attempt := 0; ; attempt++ {
		if !n.waitCooldown(ctx, ep.host) {
			return
		}
		select {
		case ep.slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		out, blk, err := n.do(ctx, ep, e)
		<-ep.slots
		if out == gotCancelled {
			return
		}
		if out == gotThrottled && attempt < n.cfg.maxRetries {
			continue
		}
		if !n.done(ep, key, f) {
			return // cancelled meanwhile
		}
		n.answer(ep, e, out, blk, err)
		if n.cfg.onDone != nil {
			n.cfg.onDone(e)
		}
		return
	}
}

// done removes f from ep's in-flight requests, reporting false if it was
// no longer there (a cancel took it).
func (n *Network) done(ep *endpoint, key reqKey, f *inflight) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ep.inflight[key] != f {
		return false
	}
	delete(ep.inflight, key)
	return true
}

// answer hands the Receiver what the request came to, and keeps the
// endpoint's score.
func (n *Network) answer(ep *endpoint, e message.Entry, out outcome, blk blocks.Block, err error) {
	var msg message.Message
	dontHave := func() {
		if e.SendDontHave {
			msg.BlockPresences = []message.BlockPresence{{Cid: e.Cid, Type: message.DontHave}}
		}
	}
	drop, ban := false, false
	n.mu.Lock()
	switch out {
	case gotBlock:
		ep.errsInRow = 0
		msg.Blocks = []blocks.Block{blk}
	case gotHave:
		ep.errsInRow = 0
		msg.BlockPresences = []message.BlockPresence{{Cid: e.Cid, Type: message.Have}}
	case gotNotFound:
		ep.errsInRow = 0
		dontHave()
	case gotWrong:
		ep.wrong++
		dontHave()
		if n.cfg.maxWrongBodies >= 0 && ep.wrong >= n.cfg.maxWrongBodies {
			drop, ban = true, true
		}
	case gotThrottled, gotError:
		ep.errsInRow++
		dontHave()
		if n.cfg.maxServerErrors >= 0 && ep.errsInRow >= n.cfg.maxServerErrors {
			drop = true
		}
	}
	r := n.receiver
	n.mu.Unlock()
	if err != nil {
		n.cfg.logger.Debug("httpnet: request failed", "peer", ep.id, "cid", e.Cid, "err", err)
	}
	if out == gotWrong {
		r.ReceiveError(ep.id, fmt.Errorf("%w: %v", message.ErrMalformed, err))
	}
	if len(msg.Blocks) > 0 || len(msg.BlockPresences) > 0 {
		n.deliver(ep, &msg)
	}
	if drop && n.disconnect(ep.id, true, ban) {
		n.cfg.logger.Warn("httpnet: dropped endpoint", "peer", ep.id, "url", ep.base.String(), "banned", ban, "err", err)
	}
}

// deliver hands msg to the Receiver, one message of ep's at a time, unless
// ep was disconnected or the network stopped.
func (n *Network) deliver(ep *endpoint, msg *message.Message) {
	ep.deliverMu.Lock()
	defer ep.deliverMu.Unlock()
	if ep.ctx.Err() != nil {
		return
	}
	n.msgsRecv.Add(1)
	if err := n.receiver.ReceiveMessage(n.ctx, ep.id, msg); err != nil {
		n.cfg.logger.Debug("httpnet: message rejected", "peer", ep.id, "err", err)
	}
}

// do sends one request and classifies its answer. A block is returned
// only when its body hashes to e.Cid.
func (n *Network) do(ctx context.Context, ep *endpoint, e message.Entry) (outcome, blocks.Block, error) {
	method := http.MethodGet
	if e.WantType == message.WantHave {
		method = http.MethodHead
	}
	rctx, cancel := context.WithTimeout(ctx, n.cfg.requestTimeout)
	defer cancel()
	req, err := n.newRequest(rctx, method, ep.base, e.Cid)
	if err != nil {
		return gotError, nil, err
	}
	n.requests.Add(1)
	n.bytesSent.Add(uint64(len(method) + len(req.URL.RequestURI()) + 64))
	start := n.cfg.clock.Now()
	resp, err := n.client(ep.base).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return gotCancelled, nil, ctx.Err()
		}
		n.serverErrs.Add(1)
		return gotError, nil, err
	}
	defer resp.Body.Close()
	lat := n.cfg.clock.Now().Sub(start)

	switch resp.StatusCode {
	case http.StatusOK:
		n.observeLatency(ep, lat)
		n.clearCooldown(ep.host, start)
		if method == http.MethodHead {
			n.haves.Add(1)
			return gotHave, nil, nil
		}
		if resp.ContentLength > n.cfg.maxBlockSize {
			n.oversize.Add(1)
			n.wrong.Add(1)
			return gotWrong, nil, fmt.Errorf("body of %d bytes over the %d-byte cap", resp.ContentLength, n.cfg.maxBlockSize)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, n.cfg.maxBlockSize+1))
		n.bytesRecv.Add(uint64(len(body)))
		if err != nil {
			if ctx.Err() != nil {
				return gotCancelled, nil, ctx.Err()
			}
			n.serverErrs.Add(1)
			return gotError, nil, fmt.Errorf("reading body: %w", err)
		}
		if int64(len(body)) > n.cfg.maxBlockSize {
			n.oversize.Add(1)
			n.wrong.Add(1)
			return gotWrong, nil, fmt.Errorf("body over the %d-byte cap", n.cfg.maxBlockSize)
		}
		got, err := e.Cid.Prefix().Sum(body)
		if err != nil || !bytes.Equal(got.Hash(), e.Cid.Hash()) {
			n.wrong.Add(1)
			return gotWrong, nil, fmt.Errorf("body of %d bytes does not hash to %s", len(body), e.Cid)
		}
		blk, err := blocks.NewBlockWithCid(body, e.Cid)
		if err != nil {
			n.wrong.Add(1)
			return gotWrong, nil, err
		}
		n.blocksN.Add(1)
		return gotBlock, blk, nil
	case http.StatusNotFound, http.StatusGone, http.StatusForbidden, http.StatusUnavailableForLegalReasons,
		http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		discard(resp.Body)
		n.observeLatency(ep, lat)
		n.clearCooldown(ep.host, start)
		n.notFound.Add(1)
		return gotNotFound, nil, nil
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		discard(resp.Body)
		n.throttled.Add(1)
		d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), n.cfg.clock.Now())
		if !ok {
			d = n.cfg.backoff
		}
		n.setCooldown(ep.host, min(d, n.cfg.maxCooldown))
		return gotThrottled, nil, fmt.Errorf("status %d, cooldown %s", resp.StatusCode, d)
	default:
		head, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		discard(resp.Body)
		if resp.StatusCode == http.StatusInternalServerError && saysNotFound(head) {
			// Some gateways answer a block they lack with a 500 whose
			// body says so: a DONT_HAVE, not a failing server.
			n.observeLatency(ep, lat)
			n.notFound.Add(1)
			return gotNotFound, nil, nil
		}
		n.serverErrs.Add(1)
		return gotError, nil, fmt.Errorf("status %d: %q", resp.StatusCode, oneLine(head))
	}
}

// saysNotFound reports whether an error body says the block is missing.
func saysNotFound(body []byte) bool {
	b := strings.ToLower(string(body))
	for _, s := range []string{"not found", "could not find", "does not have", "no such block"} {
		if strings.Contains(b, s) {
			return true
		}
	}
	return false
}

// oneLine keeps an error body quotable in a log line.
func oneLine(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

// discard reads a little of an unwanted body so the connection can be
// reused.
func discard(r io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10)) }

// observeLatency folds one measurement into ep's moving average.
func (n *Network) observeLatency(ep *endpoint, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if ep.latency == 0 {
		ep.latency = d
		return
	}
	ep.latency = (ep.latency*4 + d) / 5
}

// cooldown is a host's pause: no request goes to it before until. set is
// when the throttling answer came, so that only answers to requests sent
// after it (not those already in flight) end the pause early.
type cooldown struct{ until, set time.Time }

func (n *Network) setCooldown(host string, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.cfg.clock.Now()
	if until := now.Add(d); until.After(n.cooldown[host].until) {
		n.cooldown[host] = cooldown{until: until, set: now}
	}
}

// clearCooldown ends host's cooldown after a good answer to a request
// sent at sent, if that was after the cooldown began.
func (n *Network) clearCooldown(host string, sent time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if cd, ok := n.cooldown[host]; ok && sent.After(cd.set) {
		delete(n.cooldown, host)
	}
}

// waitCooldown waits for host's cooldown to end, reporting false if ctx
// ended first.
func (n *Network) waitCooldown(ctx context.Context, host string) bool {
	for {
		n.mu.Lock()
		cd, ok := n.cooldown[host]
		until := cd.until
		now := n.cfg.clock.Now()
		if ok && !now.Before(until) {
			delete(n.cooldown, host)
			ok = false
		}
		n.mu.Unlock()
		if !ok {
			return ctx.Err() == nil
		}
		select {
		case <-n.cfg.clock.After(until.Sub(now)):
		case <-ctx.Done():
			return false
		}
	}
}

// parseRetryAfter reads a Retry-After value: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// mergeCancel returns a context that ends when either a or b does.
func mergeCancel(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(a)
	stop := context.AfterFunc(b, cancel)
	return ctx, func() { stop(); cancel() }
}

// Package gateway serves a blockstore over HTTP as a Trustless Gateway
// (specs.ipfs.tech/http-gateways/trustless-gateway): GET and HEAD of
// /ipfs/{cid} as a raw block (application/vnd.ipld.raw) or as a CARv1
// stream of the DAG under it (application/vnd.ipld.car), walked from the
// blockstore depth first.
//
// It owns the requests in flight: which are admitted (at most
// MaxConcurrent at once, MaxPerClient of one client's, handed out in turn
// among waiting clients), the bytes of blocks read and not yet written
// (MaxBytesInFlight), and each CAR walk's own state (the path from the root
// and, for dups=n, the CIDs already written: bounded by MaxCARPending and
// MaxCARBlocks).
// It never writes to the blockstore, never deserializes (no UnixFS files,
// directories or paths below the CID) and knows nothing of Bitswap or
// libp2p: it serves whatever Blockstore it is given.
package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"

	"github.com/gobitswap/bitswap/blockstore"
)

// Media types served.
const (
	MediaRaw = "application/vnd.ipld.raw"
	MediaCAR = "application/vnd.ipld.car"
)

// Cache-Control of every successful response: what is under an /ipfs/ CID
// never changes (the value boxo's gateway uses: 48 weeks).
const immutableCache = "public, max-age=29030400, immutable"

// Defaults of Options' zero values.
const (
	DefaultMaxConcurrent    = 128
	DefaultMaxPerClient     = 32
	DefaultMaxWaiting       = 1024
	DefaultMaxBytesInFlight = 64 << 20
	DefaultWriteTimeout     = 30 * time.Second
	DefaultQueueTimeout     = 5 * time.Second
	DefaultMaxRequestBytes  = 8 << 10
	DefaultMaxCARBlocks     = 1 << 20
	DefaultMaxCARPending    = 1 << 16
)

// Options configures a Handler. The zero value of every field means its
// default.
type Options struct {
	// MaxConcurrent bounds the requests served at once, all clients
	// together (DefaultMaxConcurrent). Requests past it wait their turn.
	MaxConcurrent int
	// MaxPerClient bounds the requests of one client served at once
	// (DefaultMaxPerClient; boxo's httpnet client sends up to 64 at a
	// time, which then queue here). Clients are told apart by ClientKey.
	MaxPerClient int
	// MaxWaiting bounds the requests waiting for a slot, all clients
	// together (DefaultMaxWaiting); one client may hold at most
	// 2 × MaxPerClient of them. Past either, the answer is 429 Too Many
	// Requests with Retry-After.
	MaxWaiting int
	// QueueTimeout is how long a request waits for a slot before it is
	// answered 503 Service Unavailable with Retry-After
	// (DefaultQueueTimeout).
	QueueTimeout time.Duration
	// MaxBytesInFlight bounds the bytes of blocks read from the blockstore
	// and not yet written to their clients, all requests together
	// (DefaultMaxBytesInFlight). A request reserves a block's size before
	// reading it and gives it back once the block is written.
	MaxBytesInFlight int64
	// WriteTimeout is the deadline of each block's write to the client
	// (DefaultWriteTimeout): a client that does not take a block within it
	// loses its connection, and its slot and bytes go to others.
	WriteTimeout time.Duration
	// MaxRequestBytes bounds the request target (path and query); longer
	// ones are answered 414 (DefaultMaxRequestBytes). Requests carry no
	// body: one that announces a body is answered 413.
	MaxRequestBytes int
	// MaxCARBlocks bounds the blocks of one CAR response, and with them
	// the walk's state (DefaultMaxCARBlocks); a walk past it is cut, as
	// a missing block is.
	MaxCARBlocks int
	// MaxCARPending bounds the links a CAR walk has found and not yet
	// visited (DefaultMaxCARPending, about 4 MiB of CIDs); a walk past it
	// is cut.
	MaxCARPending int
	// ClientKey names the client of a request, for MaxPerClient and the
	// turns (default: the IP address of r.RemoteAddr). Behind a proxy,
	// give one that reads the proxy's header.
	ClientKey func(r *http.Request) string
	// Logger receives a line per stream cut or server error (default
	// slog.Default()).
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	fill(&o.MaxConcurrent, DefaultMaxConcurrent)
	fill(&o.MaxPerClient, DefaultMaxPerClient)
	fill(&o.MaxWaiting, DefaultMaxWaiting)
	fill(&o.QueueTimeout, DefaultQueueTimeout)
	fill(&o.MaxBytesInFlight, DefaultMaxBytesInFlight)
	fill(&o.WriteTimeout, DefaultWriteTimeout)
	fill(&o.MaxRequestBytes, DefaultMaxRequestBytes)
	fill(&o.MaxCARBlocks, DefaultMaxCARBlocks)
	fill(&o.MaxCARPending, DefaultMaxCARPending)
	if o.ClientKey == nil {
		o.ClientKey = remoteIP
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// fill sets *v to def when it is zero or negative.
func fill[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

func remoteIP(r *http.Request) string {
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// Handler is the http.Handler of a Trustless Gateway over a Blockstore.
// Mount it at the root of a server (it answers /ipfs/...).
type Handler struct {
	bs     blockstore.Blockstore
	opts   Options
	lim    *limiter
	budget *byteBudget

	blocks, bytes, notFound, rejected, timedOut, cut atomic.Int64
}

// New returns a Handler serving bs.
func New(bs blockstore.Blockstore, opts Options) *Handler {
	o := opts.withDefaults()
	return &Handler{
		bs:     bs,
		opts:   o,
		lim:    newLimiter(o.MaxConcurrent, o.MaxPerClient, o.MaxWaiting, 2*o.MaxPerClient),
		budget: &byteBudget{max: o.MaxBytesInFlight},
	}
}

// NewServer returns an http.Server for h with the timeouts a public
// server needs (headers within 10 s, at most 16 KiB of them, idle
// connections closed after a minute). Writes are bounded by h's own
// per-block deadline, not by the server's WriteTimeout, so a long CAR
// stream to a client that keeps reading is not cut. It speaks HTTP/1.1,
// HTTP/2 over TLS (ServeTLS), and HTTP/2 with prior knowledge over plain
// TCP (h2c), so a client can multiplex its requests on one connection
// even without TLS.
func NewServer(addr string, h http.Handler) *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{
		Protocols:         &p,
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
}

// Stat is a snapshot of a Handler's counters.
type Stat struct {
	Active        int   // requests holding a slot
	PeakActive    int   // the most Active has been
	Waiting       int   // requests waiting for one
	Clients       int   // clients with requests active or waiting
	BytesInFlight int64 // block bytes reserved and not yet written
	PeakBytes     int64 // the most BytesInFlight has been
	Blocks        int64 // blocks written (raw and in CARs)
	Bytes         int64 // block bytes written
	NotFound      int64 // 404s for a missing block
	Rejected      int64 // 429s: the waiting room was full
	TimedOut      int64 // 503s: no slot within QueueTimeout
	Cut           int64 // CAR streams cut (a block missing, a limit, a write failed)
}

// Stat returns the Handler's counters.
func (h *Handler) Stat() Stat {
	var s Stat
	s.Active, s.PeakActive, s.Waiting, s.Clients = h.lim.stat()
	s.BytesInFlight, s.PeakBytes = h.budget.stat()
	s.Blocks, s.Bytes = h.blocks.Load(), h.bytes.Load()
	s.NotFound, s.Rejected = h.notFound.Load(), h.rejected.Load()
	s.TimedOut, s.Cut = h.timedOut.Load(), h.cut.Load()
	return s
}

// format is a negotiated response format.
type format struct {
	car   bool
	dups  bool // car: duplicates sent (dups=y)
	query bool // named by ?format= (else by Accept: Content-Location is set)
}

const supported = "supported: application/vnd.ipld.raw (?format=raw) and application/vnd.ipld.car;version=1;order=dfs;dups=y|n (?format=car); this is a trustless gateway, it serves no deserialized responses\n"

// textError answers code with a one-line text body. What was set for a
// successful response goes: an error is not immutable, nor cached as one.
func textError(w http.ResponseWriter, code int, msg string) {
	hd := w.Header()
	for _, k := range []string{"Content-Length", "Etag", "Cache-Control", "Content-Disposition", "Content-Location", "X-Ipfs-Path", "X-Ipfs-Roots"} {
		hd.Del(k)
	}
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprint(w, msg)
}

// ServeHTTP answers GET and HEAD of /ipfs/{cid}.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Every write of this response has a deadline, the headers' and an
	// error's included (each block's write sets its own). It also replaces
	// a deadline left on a kept-alive connection by its previous response.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		textError(w, http.StatusMethodNotAllowed, "only GET and HEAD are served\n")
		return
	}
	if len(r.RequestURI) > h.opts.MaxRequestBytes || len(r.URL.RawQuery)+len(r.URL.Path) > h.opts.MaxRequestBytes {
		textError(w, http.StatusRequestURITooLong, fmt.Sprintf("request target longer than %d bytes\n", h.opts.MaxRequestBytes))
		return
	}
	if r.ContentLength > 0 || len(r.TransferEncoding) > 0 {
		textError(w, http.StatusRequestEntityTooLarge, "requests carry no body\n")
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/ipfs/")
	if !ok {
		if strings.HasPrefix(r.URL.Path, "/ipns/") {
			textError(w, http.StatusNotImplemented, "IPNS is not served here, only /ipfs/{cid}\n")
			return
		}
		textError(w, http.StatusNotFound, "not found: this trustless gateway serves /ipfs/{cid}\n")
		return
	}
	cidStr, subpath, _ := strings.Cut(rest, "/")
	c, err := cid.Decode(cidStr)
	if err != nil {
		textError(w, http.StatusBadRequest, fmt.Sprintf("invalid CID %q: %v\n", cidStr, err))
		return
	}
	f, code, msg := negotiate(r)
	if code != 0 {
		textError(w, code, msg)
		return
	}
	if subpath != "" {
		if f.car {
			textError(w, http.StatusNotImplemented, "paths below the CID are not supported: ask for the CID at the end of the path (/ipfs/{cid})\n")
		} else {
			textError(w, http.StatusBadRequest, "a raw block is requested by its CID alone: /ipfs/{cid}, no path below it\n")
		}
		return
	}
	scope := scopeAll
	if f.car {
		switch s := r.URL.Query().Get("dag-scope"); s {
		case "", "all":
		case "entity":
			scope = scopeEntity
		case "block":
			scope = scopeBlock
		default:
			textError(w, http.StatusBadRequest, fmt.Sprintf("bad dag-scope %q: block, entity or all\n", s))
			return
		}
		if r.URL.Query().Has("entity-bytes") {
			textError(w, http.StatusNotImplemented, "entity-bytes is not supported\n")
			return
		}
	}

	hd := w.Header()
	etag := etagOf(c, f, scope)
	hd.Set("Etag", etag)
	hd.Set("Cache-Control", immutableCache)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Ipfs-Path", "/ipfs/"+cidStr)
	hd.Set("X-Ipfs-Roots", c.String())
	hd.Set("Vary", "Accept")
	if !f.query {
		if f.car {
			hd.Set("Content-Location", "/ipfs/"+cidStr+"?format=car")
		} else {
			hd.Set("Content-Location", "/ipfs/"+cidStr+"?format=raw")
		}
	}
	if matchesETag(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}

	// Identity CIDs cost nothing: no slot, no lookup (the probe).
	if c.Prefix().MhType != mh.IDENTITY {
		key := h.opts.ClientKey(r)
		ctx, cancel := contextWithTimeout(r, h.opts.QueueTimeout)
		err := h.lim.acquire(ctx, key)
		cancel()
		if err != nil {
			hd.Set("Retry-After", "1")
			if errors.Is(err, errBusy) {
				h.rejected.Add(1)
				textError(w, http.StatusTooManyRequests, "too many requests waiting; retry later\n")
			} else {
				h.timedOut.Add(1)
				textError(w, http.StatusServiceUnavailable, "busy: no slot in time; retry later\n")
			}
			return
		}
		defer h.lim.release(key)
	}
	onlyCached := strings.Contains(r.Header.Get("Cache-Control"), "only-if-cached")
	if f.car {
		h.serveCAR(w, r, c, f, scope, onlyCached)
	} else {
		h.serveRaw(w, r, c, onlyCached)
	}
}

func (h *Handler) notFoundError(w http.ResponseWriter, c cid.Cid, onlyCached bool) {
	h.notFound.Add(1)
	if onlyCached {
		textError(w, http.StatusPreconditionFailed, fmt.Sprintf("block %s is not in this gateway's store\n", c))
		return
	}
	textError(w, http.StatusNotFound, fmt.Sprintf("block %s is not in this gateway's store\n", c))
}

func (h *Handler) serverError(w http.ResponseWriter, c cid.Cid, err error) {
	h.opts.Logger.Error("gateway: blockstore", "cid", c, "err", err)
	textError(w, http.StatusInternalServerError, "blockstore error\n")
}

func (h *Handler) serveRaw(w http.ResponseWriter, r *http.Request, c cid.Cid, onlyCached bool) {
	hd := w.Header()
	hd.Set("Content-Type", MediaRaw)
	hd.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", c.String()+".bin"))
	if c.Prefix().MhType == mh.IDENTITY {
		data := identityData(c)
		hd.Set("Content-Length", strconv.Itoa(len(data)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(data)
		}
		return
	}
	size, err := h.bs.GetSize(r.Context(), c)
	if err != nil {
		if ipld.IsNotFound(err) {
			h.notFoundError(w, c, onlyCached)
			return
		}
		h.serverError(w, c, err)
		return
	}
	if r.Method == http.MethodHead {
		hd.Set("Content-Length", strconv.Itoa(size))
		return
	}
	n, err := h.budget.reserve(r.Context(), int64(size))
	if err != nil {
		return // the client left
	}
	defer h.budget.give(n)
	blk, err := h.bs.Get(r.Context(), c)
	if err != nil {
		if ipld.IsNotFound(err) { // deleted since GetSize
			h.notFoundError(w, c, onlyCached)
			return
		}
		h.serverError(w, c, err)
		return
	}
	data := blk.RawData()
	hd.Set("Content-Length", strconv.Itoa(len(data)))
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(h.opts.WriteTimeout))
	if _, err := w.Write(data); err == nil {
		h.blocks.Add(1)
		h.bytes.Add(int64(len(data)))
	}
}

// identityData is what an identity CID holds: its digest.
func identityData(c cid.Cid) []byte {
	dm, err := mh.Decode(c.Hash())
	if err != nil {
		return nil
	}
	return dm.Digest
}

func etagOf(c cid.Cid, f format, scope dagScope) string {
	if !f.car {
		return `"` + c.String() + `.raw"`
	}
	dups := "n"
	if f.dups {
		dups = "y"
	}
	return fmt.Sprintf(`W/"%s.car.%s.dfs.%s"`, c, scope, dups)
}

func matchesETag(inm, etag string) bool {
	if inm == "" {
		return false
	}
	weak := strings.TrimPrefix(etag, "W/")
	for _, t := range strings.Split(inm, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == weak {
			return true
		}
	}
	return false
}

// negotiate picks the response format: ?format= first (the spec's
// precedence), else the Accept header's most preferred type we serve. It
// returns a status and message when there is none: 400 when nothing names
// a format (a strict trustless gateway has no default), 406 when what is
// named is not served.
func negotiate(r *http.Request) (format, int, string) {
	q := r.URL.Query()
	var f format
	accept := r.Header.Get("Accept")
	best, carParams := bestAccepted(accept)
	switch fv := q.Get("format"); fv {
	case "raw":
		f.query = true
	case "car":
		f.query, f.car = true, true
	case "":
		switch {
		case strings.TrimSpace(accept) == "":
			return f, http.StatusBadRequest, "no format asked for: send ?format=raw or ?format=car, or an Accept header; " + supported
		case best == MediaRaw:
		case best == MediaCAR:
			f.car = true
		default:
			return f, http.StatusNotAcceptable, fmt.Sprintf("not acceptable: %q; %s", accept, supported)
		}
	default:
		return f, http.StatusNotAcceptable, fmt.Sprintf("format %q is not served; %s", fv, supported)
	}
	if !f.car {
		return f, 0, ""
	}
	// The CAR's variant: Accept's parameters (of its preferred CAR entry
	// we serve), each overridden by its query parameter (the spec's
	// precedence).
	version, order, dups := carParams["version"], carParams["order"], carParams["dups"]
	if q.Has("car-version") {
		version = q.Get("car-version")
	}
	if q.Has("car-order") {
		order = q.Get("car-order")
	}
	if q.Has("car-dups") {
		dups = q.Get("car-dups")
	}
	if !carVariantOK(version, order, dups) {
		return f, http.StatusBadRequest, fmt.Sprintf("CAR variant version=%q order=%q dups=%q is not served; %s", version, order, dups, supported)
	}
	f.dups = dups == "y"
	return f, 0, ""
}

// bestAccepted returns the media type of accept's most preferred entry
// that we serve ("" if none), and the parameters of its most preferred
// CAR entry that we serve. Equal preferences go to the first listed.
func bestAccepted(accept string) (best string, carParams map[string]string) {
	bestQ, carQ := 0.0, 0.0
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		qv := 1.0
		if s, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(s, 64); err == nil {
				qv = v
			}
		}
		if qv <= 0 {
			continue
		}
		switch mt {
		case MediaRaw:
		case MediaCAR:
			if !carVariantOK(params["version"], params["order"], params["dups"]) {
				continue
			}
			if qv > carQ {
				carQ, carParams = qv, params
			}
		default:
			continue
		}
		if qv > bestQ {
			best, bestQ = mt, qv
		}
	}
	return best, carParams
}

// carVariantOK: we write CARv1 in depth-first order, with or without
// duplicates. order=unk (or none) is answered with dfs, a valid instance.
func carVariantOK(version, order, dups string) bool {
	return (version == "" || version == "1") &&
		(order == "" || order == "dfs" || order == "unk") &&
		(dups == "" || dups == "y" || dups == "n")
}

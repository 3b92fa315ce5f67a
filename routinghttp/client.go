// Package routinghttp finds providers through the Delegated Routing V1 HTTP
// API (ipfs/specs, routing/http-routing-v1): GET
// /routing/v1/providers/{cid}, and a peer's addresses with GET
// /routing/v1/peers/{peer-id}, answered in JSON or NDJSON, as Kubo's
// gateway (Gateway.ExposeRoutingAPI), someguy and cid.contact serve it.
// A Client is a routing.ContentDiscovery and a routing.PeerRouting, so it
// plugs into bitswap.WithContentRouting and bitswap.WithPeerRouting.
//
// It owns its HTTP requests and nothing else: it never dials the providers
// it returns.
//
// Why a client of our own: the one well-kept Go client is boxo's
// (routing/http/client), and the library never imports boxo. This one
// does only what finding providers needs, with bounded reads of every
// answer.
package routinghttp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	ma "github.com/multiformats/go-multiaddr"
)

// Client asks one Routing V1 endpoint for providers.
type Client struct {
	base     string // without a trailing slash
	hc       *http.Client
	timeout  time.Duration
	max      int
	all      bool
	gateways bool // GatewayHTTP records too
	onError  func(error)
}

var (
	_ routing.ContentDiscovery = (*Client)(nil)
	_ routing.PeerRouting      = (*Client)(nil)
)

// Defaults.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultMaxProviders = 100
	// MaxResponseBytes bounds what one answer is read for: at a few hundred
	// bytes a record, far more than DefaultMaxProviders.
	MaxResponseBytes = 4 << 20
	maxLineBytes     = 64 << 10
)

// Bitswap is the protocol name the API gives Bitswap providers.
const Bitswap = "transport-bitswap"

// GatewayHTTP is the protocol name the API gives trustless-gateway
// providers (their addresses are /https or /tls/http multiaddrs).
const GatewayHTTP = "transport-ipfs-gateway-http"

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sends the requests with hc (default: a client of its
// own with keep-alive).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithTimeout bounds each query, headers and body (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithMaxProviders bounds the providers one query returns (default
// DefaultMaxProviders); FindProvidersAsync's count, when smaller, wins.
func WithMaxProviders(n int) Option { return func(c *Client) { c.max = n } }

// WithAnyProtocol returns providers of any transport. By default only
// records that name transport-bitswap, or name no protocol, are returned.
func WithAnyProtocol() Option { return func(c *Client) { c.all = true } }

// WithGatewayProviders also returns providers whose records name
// transport-ipfs-gateway-http (GatewayHTTP), for a node that can fetch
// over HTTP (package httpnet, under a Router).
func WithGatewayProviders() Option { return func(c *Client) { c.gateways = true } }

// WithErrorHandler is called with the error of every query that failed
// (FindProvidersAsync has no other way to say so); FindProviders returns
// it instead.
func WithErrorHandler(f func(error)) Option { return func(c *Client) { c.onError = f } }

// New returns a Client of the endpoint at baseURL (e.g.
// "https://delegated-ipfs.dev"; a path prefix is kept).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("routing URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("routing URL %q: want http:// or https:// and a host", baseURL)
	}
	c := &Client{
		base:    strings.TrimSuffix(u.String(), "/"),
		timeout: DefaultTimeout,
		max:     DefaultMaxProviders,
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	return c, nil
}

// String returns the endpoint's URL.
func (c *Client) String() string { return c.base }

// FindProviders returns the providers the endpoint knows for k, at most
// the Client's maximum. No providers is not an error.
func (c *Client) FindProviders(ctx context.Context, k cid.Cid) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	err := c.query(ctx, k, c.max, func(ai peer.AddrInfo) bool {
		out = append(out, ai)
		return true
	})
	return out, err
}

// FindProvidersAsync streams the providers of k, at most count (0: the
// Client's maximum), and closes the channel at the end of the answer, a
// failure (given to the error handler) or ctx's end.
func (c *Client) FindProvidersAsync(ctx context.Context, k cid.Cid, count int) <-chan peer.AddrInfo {
	n := c.max
	if count > 0 && count < n {
		n = count
	}
	out := make(chan peer.AddrInfo)
	go func() {
		defer close(out)
		err := c.query(ctx, k, n, func(ai peer.AddrInfo) bool {
			select {
			case out <- ai:
				return true
			case <-ctx.Done():
				return false
			}
		})
		if err != nil && c.onError != nil && ctx.Err() == nil {
			c.onError(err)
		}
	}()
	return out
}

// record is a provider record: schema "peer" (current), or "bitswap"
// (the first version of the API), which names one protocol.
type record struct {
	Schema    string
	ID        string
	Addrs     []string
	Protocols []string
	Protocol  string
}

func (c *Client) query(ctx context.Context, k cid.Cid, max int, yield func(peer.AddrInfo) bool) error {
	if max <= 0 {
		return nil
	}
	n := 0
	return c.get(ctx, "/routing/v1/providers/"+k.String(), "providers of "+k.String(), func(r record) bool {
		ai, ok := c.addrInfo(r, true)
		if !ok {
			return true
		}
		n++
		return yield(ai) && n < max
	})
}

// FindPeer asks the endpoint for p's addresses (GET /routing/v1/peers/{id},
// the ID as a libp2p-key CID, as the spec asks). Without an answer naming
// p with an address, it returns an error wrapping routing.ErrNotFound. A
// Client is so a routing.PeerRouting: the provider queries' retry for a
// provider whose addresses failed (or that came without any).
func (c *Client) FindPeer(ctx context.Context, p peer.ID) (peer.AddrInfo, error) {
	out := peer.AddrInfo{ID: p}
	err := c.get(ctx, "/routing/v1/peers/"+peer.ToCid(p).String(), "peer "+p.String(), func(r record) bool {
		if ai, ok := c.addrInfo(r, false); ok && ai.ID == p {
			out.Addrs = append(out.Addrs, ai.Addrs...)
		}
		return true
	})
	if err != nil {
		return out, err
	}
	if len(out.Addrs) == 0 {
		return out, fmt.Errorf("routing %s: peer %s: %w", c.base, p, routing.ErrNotFound)
	}
	return out, nil
}

// get asks the endpoint for path and gives each record of the answer
// (JSON or NDJSON, read up to MaxResponseBytes) to yield until it returns
// false. what names the query in errors. Not found is no records, not an
// error.
func (c *Client) get(ctx context.Context, path, what string, yield func(record) bool) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/x-ndjson, application/json;q=0.9")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("routing %s: %s: %w", c.base, what, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil // the spec's "none"
	case resp.StatusCode != http.StatusOK:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("routing %s: %s: HTTP %s", c.base, what, resp.Status)
	}
	body := io.LimitReader(resp.Body, MaxResponseBytes)
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/x-ndjson" {
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 4<<10), maxLineBytes)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" {
				continue
			}
			var r record
			if json.Unmarshal([]byte(line), &r) != nil {
				continue // a bogus record costs only itself
			}
			if !yield(r) {
				return nil
			}
		}
		if err := sc.Err(); err != nil && ctx.Err() == nil {
			return fmt.Errorf("routing %s: %s: reading the answer: %w", c.base, what, err)
		}
		return ctxErr(ctx, c.base, what)
	}
	// Providers answer under "Providers", peers under "Peers".
	var doc struct{ Providers, Peers []json.RawMessage }
	if err := json.NewDecoder(body).Decode(&doc); err != nil {
		if ctx.Err() != nil {
			return ctxErr(ctx, c.base, what)
		}
		return fmt.Errorf("routing %s: %s: not a JSON answer: %w", c.base, what, err)
	}
	for _, raw := range append(doc.Providers, doc.Peers...) {
		var r record
		if json.Unmarshal(raw, &r) != nil {
			continue
		}
		if !yield(r) {
			return nil
		}
	}
	return nil
}

func ctxErr(ctx context.Context, base, what string) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("routing %s: %s: no complete answer in time", base, what)
	}
	return nil
}

// addrInfo turns a record into a peer, or says it is not one we use:
// another schema, an ID that does not parse, or (for a provider, when
// transport is set) another transport.
func (c *Client) addrInfo(r record, transport bool) (peer.AddrInfo, bool) {
	protos := r.Protocols
	switch r.Schema {
	case "peer":
	case "bitswap":
		protos = []string{r.Protocol}
	default:
		return peer.AddrInfo{}, false
	}
	if transport && !c.all && len(protos) > 0 && !slices.Contains(protos, Bitswap) &&
		!(c.gateways && slices.Contains(protos, GatewayHTTP)) {
		return peer.AddrInfo{}, false
	}
	id, err := peer.Decode(r.ID)
	if err != nil {
		return peer.AddrInfo{}, false
	}
	ai := peer.AddrInfo{ID: id}
	for _, s := range r.Addrs {
		if a, err := ma.NewMultiaddr(s); err == nil {
			ai.Addrs = append(ai.Addrs, a)
		}
	}
	return ai, true
}

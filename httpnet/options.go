package httpnet

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/message"
)

// Defaults of the options.
const (
	// DefaultMaxInFlight is how many requests run at once per endpoint;
	// the rest of its wants wait (in the order they came) for a slot.
	DefaultMaxInFlight = 32
	// DefaultMaxBlockSize is the body cap: a response body longer than
	// this is cut off, dropped and counted as a wrong body. It is the
	// Bitswap block size limit (message.MaxBlockSize), 2 MiB.
	DefaultMaxBlockSize = 2 << 20
	// DefaultMaxWrongBodies is how many bodies that do not match their CID
	// (or are over the cap) an endpoint may send before it is disconnected
	// and banned.
	DefaultMaxWrongBodies = 3
	// DefaultMaxServerErrors is how many failures in a row (transport
	// errors, 5xx other than throttling, throttling past the retries) an
	// endpoint may have before it is disconnected (not banned: it may
	// come back).
	DefaultMaxServerErrors = 8
	// DefaultMaxRetries is how many times a want answered with 429, 503,
	// 502 or 504 is sent again, each after the host's cooldown, before it
	// is answered with DONT_HAVE.
	DefaultMaxRetries = 2
	// DefaultBackoff is the cooldown after a throttling answer that names
	// no Retry-After.
	DefaultBackoff = time.Second
	// DefaultMaxCooldown caps a Retry-After: a server cannot freeze our
	// requests to it for longer.
	DefaultMaxCooldown = time.Minute
	// DefaultRequestTimeout bounds one request, from sending to the end of
	// its body.
	DefaultRequestTimeout = 30 * time.Second
	// DefaultBanDuration is how long an endpoint disconnected for wrong
	// bodies is refused by Connect.
	DefaultBanDuration = 10 * time.Minute
)

type config struct {
	self            peer.ID
	maxInFlight     int
	maxBlockSize    int64
	maxWrongBodies  int
	maxServerErrors int
	maxRetries      int
	backoff         time.Duration
	maxCooldown     time.Duration
	requestTimeout  time.Duration
	banFor          time.Duration
	allow, deny     map[string]bool
	h2c             bool
	tlsConfig       *tls.Config
	transport       http.RoundTripper
	userAgent       string
	logger          *slog.Logger
	clock           clock
	onDone          func(message.Entry) // tests: after each want's answer
}

func defaultConfig() config {
	return config{
		maxInFlight:     DefaultMaxInFlight,
		maxBlockSize:    DefaultMaxBlockSize,
		maxWrongBodies:  DefaultMaxWrongBodies,
		maxServerErrors: DefaultMaxServerErrors,
		maxRetries:      DefaultMaxRetries,
		backoff:         DefaultBackoff,
		maxCooldown:     DefaultMaxCooldown,
		requestTimeout:  DefaultRequestTimeout,
		banFor:          DefaultBanDuration,
		userAgent:       "gobitswap",
		logger:          slog.Default(),
		clock:           realClock{},
	}
}

// Option configures New.
type Option func(*config)

// WithSelf sets the ID Self returns (a Router uses the libp2p host's). The
// default is a pseudo ID of its own, PeerIDFromURL of "http://self".
func WithSelf(id peer.ID) Option { return func(c *config) { c.self = id } }

// WithMaxInFlight bounds the requests running at once per endpoint
// (DefaultMaxInFlight). It also sizes the idle connections kept per host.
func WithMaxInFlight(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxInFlight = n
		}
	}
}

// WithMaxBlockSize sets the body cap (DefaultMaxBlockSize).
func WithMaxBlockSize(n int64) Option {
	return func(c *config) {
		if n > 0 {
			c.maxBlockSize = n
		}
	}
}

// WithMaxWrongBodies sets how many wrong bodies disconnect and ban an
// endpoint (DefaultMaxWrongBodies); n < 0 never.
func WithMaxWrongBodies(n int) Option { return func(c *config) { c.maxWrongBodies = n } }

// WithMaxServerErrors sets how many failures in a row disconnect an
// endpoint (DefaultMaxServerErrors); n < 0 never.
func WithMaxServerErrors(n int) Option { return func(c *config) { c.maxServerErrors = n } }

// WithMaxRetries sets how often a throttled want is sent again
// (DefaultMaxRetries).
func WithMaxRetries(n int) Option {
	return func(c *config) {
		if n >= 0 {
			c.maxRetries = n
		}
	}
}

// WithCooldown sets the cooldown after a throttling answer without
// Retry-After, and the cap on any cooldown (DefaultBackoff,
// DefaultMaxCooldown).
func WithCooldown(backoff, max time.Duration) Option {
	return func(c *config) {
		if backoff > 0 {
			c.backoff = backoff
		}
		if max > 0 {
			c.maxCooldown = max
		}
	}
}

// WithRequestTimeout bounds each request (DefaultRequestTimeout).
func WithRequestTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.requestTimeout = d
		}
	}
}

// WithBanDuration sets how long an endpoint dropped for wrong bodies is
// refused (DefaultBanDuration); 0: not at all.
func WithBanDuration(d time.Duration) Option { return func(c *config) { c.banFor = d } }

// WithAllowlist restricts the endpoints to these hosts (names or IP
// addresses, without port, matched exactly and case-insensitively). Empty:
// every host not denied.
func WithAllowlist(hosts ...string) Option {
	return func(c *config) { c.allow = hostSet(hosts) }
}

// WithDenylist refuses these hosts (as WithAllowlist matches them); it
// wins over the allowlist.
func WithDenylist(hosts ...string) Option {
	return func(c *config) { c.deny = hostSet(hosts) }
}

func hostSet(hosts []string) map[string]bool {
	if len(hosts) == 0 {
		return nil
	}
	m := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		m[strings.ToLower(strings.Trim(h, "[]"))] = true
	}
	return m
}

// WithUnencryptedHTTP2 makes requests to plain http:// endpoints use
// HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1, for a loopback
// or private server known to speak it. https:// endpoints always
// negotiate HTTP/2 by ALPN, falling back to HTTP/1.1.
func WithUnencryptedHTTP2(on bool) Option { return func(c *config) { c.h2c = on } }

// WithTLSConfig sets the TLS client configuration (root CAs for a private
// gateway, say). The default is the system's.
func WithTLSConfig(t *tls.Config) Option { return func(c *config) { c.tlsConfig = t } }

// WithTransport sends every request through rt instead of the network's
// own transports (so WithTLSConfig and WithUnencryptedHTTP2 no longer
// apply): a proxy, instrumentation, or an in-memory endpoint that
// simulates latency and bandwidth, which under testing/synctest costs no
// real time.
func WithTransport(rt http.RoundTripper) Option { return func(c *config) { c.transport = rt } }

// WithUserAgent sets the User-Agent header ("gobitswap").
func WithUserAgent(ua string) Option { return func(c *config) { c.userAgent = ua } }

// WithLogger sets the logger (slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// clock is time as the network sees it; tests replace it.
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

func withClock(k clock) Option { return func(c *config) { c.clock = k } }

func withOnDone(f func(message.Entry)) Option { return func(c *config) { c.onDone = f } }

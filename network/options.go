package network

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/gobitswap/bitswap/message"
)

// Defaults used by NewFromHost when no Option overrides them.
const (
	// DefaultSendTimeoutBase is the part of every send timeout that does not
	// depend on the message size: room for opening a stream and for one
	// round of latency and scheduling delays.
	DefaultSendTimeoutBase = 10 * time.Second
	// DefaultSendMinRate is the slowest write rate, in bytes per second, that
	// a healthy peer is expected to sustain. A 4 MiB message therefore gets
	// about 10 s + 41 s before the send is abandoned.
	DefaultSendMinRate = 100 << 10
	// DefaultMaxRetries is how many times a failed write is retried on a
	// fresh stream before SendMessage gives up (so 3 attempts in all).
	DefaultMaxRetries = 2
)

// config is the immutable configuration of a Libp2pNetwork, filled in by
// NewFromHost from the defaults and the options.
type config struct {
	versions       []message.Version // enabled versions, newest first
	prefix         protocol.ID       // before every protocol ID; "" none
	maxMessageSize int               // inbound frame body limit
	sendBase       time.Duration     // send timeout floor; also bounds stream opens and closes
	sendMinRate    int               // bytes per second; 0 means no size-dependent term
	maxRetries     int               // retries after the first failed attempt
	logger         *slog.Logger
	maxMalformed   int           // malformed or rejected messages per connection before disconnecting; < 0 never
	banFor         time.Duration // how long a disconnected misbehaving peer is refused; 0 never
	maxAbandoned   int           // connections ending mid block send before a ban; < 0 never
	wantRate       int           // wantlist entries per second per peer; 0 no pacing
	wantBurst      int
}

func defaultConfig() config {
	return config{
		versions:       []message.Version{message.V120, message.V110, message.V100},
		maxMessageSize: message.MaxMessageSize,
		sendBase:       DefaultSendTimeoutBase,
		sendMinRate:    DefaultSendMinRate,
		maxRetries:     DefaultMaxRetries,
		logger:         slog.Default(),
		maxMalformed:   DefaultMaxMalformed,
		banFor:         DefaultBanDuration,
		maxAbandoned:   DefaultMaxAbandoned,
		wantRate:       DefaultWantlistRate,
		wantBurst:      DefaultWantlistBurst,
	}
}

// sendTimeout is the time allowed for one attempt at sending a message whose
// frame is size bytes: the base (stream open, latency, scheduling) plus the
// time to move size bytes at the minimum rate. The rule is linear with no
// cap, so a slow but steady peer can always finish a maximum-size message.
func (c *config) sendTimeout(size int) time.Duration {
	t := c.sendBase
	if c.sendMinRate > 0 {
		t += time.Duration(int64(size) * int64(time.Second) / int64(c.sendMinRate))
	}
	return t
}

// Option configures NewFromHost.
type Option func(*config)

// WithProtocols restricts the Bitswap versions this node speaks: only their
// protocol IDs get stream handlers and only they are offered when opening
// streams. V100 stands for both /ipfs/bitswap/1.0.0 and /ipfs/bitswap. The
// default is every version. It panics if vs holds no known version.
func WithProtocols(vs ...message.Version) Option {
	var keep []message.Version
	for _, v := range vs {
		if v >= message.V100 && v <= message.V120 && !slices.Contains(keep, v) {
			keep = append(keep, v)
		}
	}
	if len(keep) == 0 {
		panic(fmt.Sprintf("network: WithProtocols(%v) enables no known Bitswap version", vs))
	}
	// Newest first: that is the order in which versions are offered.
	slices.Sort(keep)
	slices.Reverse(keep)
	return func(c *config) { c.versions = keep }
}

// WithProtocolPrefix puts prefix before every Bitswap protocol ID this node
// registers and offers, as boxo's bsnet.Prefix does: with "/celestia" they
// are /celestia/ipfs/bitswap/1.2.0, /celestia/ipfs/bitswap/1.1.0,
// /celestia/ipfs/bitswap/1.0.0 and /celestia/ipfs/bitswap. The prefix is
// prepended as given, as boxo does, so that the IDs match theirs: start it
// with "/" and do not end it with one. Such a node exchanges blocks only
// with nodes that use the same prefix, ours or boxo's, and the plain IDs
// are not spoken at all. Lift the host's stream limits for the prefixed IDs
// (AddResourceLimits or ResourceManagerWithPrefix with the same prefix).
// "" (the default) is no prefix.
func WithProtocolPrefix(prefix protocol.ID) Option {
	return func(c *config) { c.prefix = prefix }
}

// WithMaxMessageSize sets the largest inbound message body accepted, in
// bytes (the default is message.MaxMessageSize). A longer length prefix is
// reported to Receiver.ReceiveError and the stream is reset before any of
// the body is read. Values <= 0 keep the default. Outbound messages are
// always held to message.MaxMessageSize, the limit every peer enforces.
func WithMaxMessageSize(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.maxMessageSize = n
		}
	}
}

// WithSendTimeout sets the send timeout rule: one attempt at writing a
// message of n framed bytes may take base + n/minBytesPerSec seconds
// (defaults DefaultSendTimeoutBase and DefaultSendMinRate). base also bounds
// opening a stream and closing one. base <= 0 keeps the default base;
// minBytesPerSec <= 0 drops the size-dependent term.
func WithSendTimeout(base time.Duration, minBytesPerSec int) Option {
	return func(c *config) {
		if base > 0 {
			c.sendBase = base
		}
		c.sendMinRate = max(minBytesPerSec, 0)
	}
}

// WithMaxRetries sets how many times SendMessage retries, each time on a
// freshly opened stream, after a write or stream-open failure (default
// DefaultMaxRetries). Timeouts, cancellation and unsupported protocols are
// not retried. 0 keeps the default; n < 0 means no retries.
func WithMaxRetries(n int) Option {
	return func(c *config) {
		switch {
		case n < 0:
			c.maxRetries = 0
		case n > 0:
			c.maxRetries = n
		}
	}
}

// WithLogger sets the logger for what the network reports on its own, such
// as a host whose resource limits lose Bitswap streams (default
// slog.Default()). A nil l keeps the default.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

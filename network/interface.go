// Package network moves Bitswap messages between peers. It owns protocol
// negotiation (/ipfs/bitswap/1.2.0, 1.1.0, 1.0.0 and /ipfs/bitswap, each
// under an optional prefix: WithProtocolPrefix), the inbound stream read
// loops, one reusable outbound sender per peer, send timeouts and
// connection events, and the libp2p host settings Bitswap's traffic needs
// (ResourceManager's stream limits, Security's batched TLS writes).
//
// It never interprets a message: wantlists, blocks and presences are handed
// to a Receiver as decoded message.Message values, and what to send is
// decided by the caller. It imports only the message package of this module.
package network

import (
	"context"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Network is what the rest of Bitswap needs from the transport. The libp2p
// implementation is built by NewFromHost; testutil provides an in-memory one.
type Network interface {
	// Self is the local peer ID.
	Self() peer.ID

	// Start begins delivering inbound messages and connection events to r.
	// It must be called once, before any message is sent.
	Start(r Receiver)

	// Stop resets every stream, drops every sender and stops delivering
	// events. Once it returns, r receives no more calls.
	Stop()

	// SendMessage sends msg to p, reusing the peer's outbound stream and
	// opening one (dialling if needed) when there is none. The message is
	// encoded for the protocol version negotiated with p: presences and
	// want-haves are never sent to a peer on 1.0.0/1.1.0. It returns when the
	// message has been written, or with an error after the send timeout.
	SendMessage(ctx context.Context, p peer.ID, msg *message.Message) error

	// Connect dials the peer if not connected.
	Connect(ctx context.Context, ai peer.AddrInfo) error

	// DisconnectFrom closes all connections to p.
	DisconnectFrom(ctx context.Context, p peer.ID) error

	// Version returns the protocol version negotiated with p, opening an
	// outbound stream to find out if necessary.
	Version(ctx context.Context, p peer.ID) (message.Version, error)

	// Latency returns the latest measured latency to p, or 0 if unknown.
	Latency(p peer.ID) time.Duration

	// Local reports whether p is on the local network: connected on a
	// loopback, private (LAN) or link-local address. Broadcast control
	// always asks local peers by default.
	Local(p peer.ID) bool

	// Stats returns counters of messages and bytes moved so far.
	Stats() Stats

	// PeerTagger tells the host's connection manager which peers matter,
	// so that a trim keeps them.
	PeerTagger
}

// PeerTagger is the part of libp2p's connection manager
// (host.ConnManager(), a core/connmgr.ConnManager) through which Bitswap says
// which peers matter: tags add to a peer's value, and a trim closes the
// connections of the peers of least value first; a protected peer is never
// trimmed. The components that know which peers matter (Sessions, the
// WantManager, the Engine) reach it through small interfaces of their own,
// which the facade fills with the Network.
//
// A tag or protection is keyed by (peer, tag): setting a tag again replaces
// its value, and Protect is not counted (one Unprotect undoes any number of
// Protect calls with the same tag), so each caller uses a tag of its own.
// The calls work in any state of the Network, before Start and after Stop
// included, so that their owners can release what they hold as they shut
// down.
type PeerTagger interface {
	// TagPeer sets the tag's value on p.
	TagPeer(p peer.ID, tag string, value int)
	// UntagPeer removes the tag from p.
	UntagPeer(p peer.ID, tag string)
	// Protect keeps p's connections from being trimmed until Unprotect
	// with the same tag.
	Protect(p peer.ID, tag string)
	// Unprotect removes the tag's protection of p and reports whether p is
	// still protected by another tag.
	Unprotect(p peer.ID, tag string) bool
}

// Receiver is told about inbound messages and peer connectivity. Messages
// from one peer arrive one at a time, in the order they were read (across
// all its streams), after PeerConnected for that peer. Connection events
// come one at a time, in order. Calls for different peers may be
// concurrent. Implementations must not block for long: a slow
// ReceiveMessage delays only that peer's messages (and, once a bounded
// queue of them fills, the reading of its streams), but a blocked
// PeerConnected delays every event and every new inbound stream.
type Receiver interface {
	// ReceiveMessage is called with each decoded inbound message. ctx is
	// cancelled when the network stops. A non-nil error rejects the
	// message as abuse (an honest peer would not have sent it): it counts
	// against the peer like a malformed message (see WithMaxMalformed).
	ReceiveMessage(ctx context.Context, from peer.ID, msg *message.Message) error
	// ReceiveError is called when an inbound stream fails in the middle of
	// a message, or carries a message that is over the size limit
	// (message.ErrTooLarge) or does not decode (message.ErrMalformed); the
	// stream is reset and the error says which peer and why. A stream that
	// ends or is reset between messages is not an error.
	ReceiveError(from peer.ID, err error)
	// PeerConnected is called when p becomes connected.
	PeerConnected(p peer.ID)
	// PeerDisconnected is called when the last connection to p closes.
	PeerDisconnected(p peer.ID)
}

// Stats counts traffic through a Network.
type Stats struct {
	MessagesSent     uint64
	MessagesReceived uint64
	BytesSent        uint64 // framed bytes written, length prefixes included
	BytesReceived    uint64 // framed bytes read, length prefixes included
	// MalformedReceived counts inbound frames that did not decode or were
	// over the size limit.
	MalformedReceived uint64
	// PeersDisconnected counts peers disconnected for sending too many
	// malformed or rejected messages (WithMaxMalformed).
	PeersDisconnected uint64
	// RejectedReceived counts messages the Receiver rejected.
	RejectedReceived uint64
	// ThrottledMessages counts messages held back because their peer sent
	// wantlist entries faster than WithWantlistRate allows.
	ThrottledMessages uint64
	// StreamsRefused counts inbound streams reset because their peer was
	// banned for misbehaving.
	StreamsRefused uint64
	// AbandonedSends counts connections on which a message with blocks
	// failed because the peer reset the stream or closed the connection
	// (once per connection; see WithMaxAbandoned).
	AbandonedSends uint64
	// PeersBanned counts bans, for malformed or rejected messages (those
	// peers are also in PeersDisconnected) or for abandoned transfers.
	PeersBanned uint64
}

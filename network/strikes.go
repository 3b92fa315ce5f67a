package network

import (
	"errors"

	"github.com/gobitswap/bitswap/message"
	"github.com/libp2p/go-libp2p/core/peer"
)

// DefaultMaxMalformed is how many malformed inbound messages (frames that do
// not decode, or are over the size limit) a peer may send during one
// connection before it is disconnected, unless WithMaxMalformed says
// otherwise. An honest peer sends none: every Bitswap implementation we
// know encodes what the spec says, so a few are already a broken or hostile
// peer, and decoding its garbage costs CPU that honest peers need.
const DefaultMaxMalformed = 8

// WithMaxMalformed sets how many malformed messages a peer may send during
// one connection before the network closes its connections (logged with the
// last reason, counted in Stats.PeersDisconnected). n < 0 never disconnects;
// 0 keeps DefaultMaxMalformed.
func WithMaxMalformed(n int) Option {
	return func(c *config) {
		if n != 0 {
			c.maxMalformed = n
		}
	}
}

// malformed reports that p sent input that is not a Bitswap message: it is
// counted, reported to the Receiver, and at the limit p is disconnected.
// Errors that are not about the input (a stream reset mid-frame by a peer
// that went away) are only reported.
func (n *Libp2pNetwork) malformed(p peer.ID, err error) {
	n.receiver.ReceiveError(p, err)
	if !errors.Is(err, message.ErrMalformed) && !errors.Is(err, message.ErrTooLarge) {
		return
	}
	n.malformedRecv.Add(1)
	if n.cfg.maxMalformed < 0 {
		return
	}
	n.mu.Lock()
	if n.state != stateStarted {
		n.mu.Unlock()
		return
	}
	n.strikes[p]++
	strikes := n.strikes[p]
	if strikes >= n.cfg.maxMalformed {
		// Start afresh at once rather than when the disconnect is seen:
		// a peer that reconnects before the event goroutine notices would
		// otherwise keep a count past the limit and never reach it again.
		delete(n.strikes, p)
	}
	n.mu.Unlock()
	if strikes < n.cfg.maxMalformed {
		return
	}
	n.peersDropped.Add(1)
	n.cfg.logger.Warn("bitswap: disconnecting a peer that keeps sending malformed messages",
		"peer", p, "malformed", strikes, "last", err)
	_ = n.host.Network().ClosePeer(p)
}

// forgetStrikes starts p's count afresh; the event goroutine calls it when
// p is no longer connected, so the map holds connected peers only.
func (n *Libp2pNetwork) forgetStrikes(p peer.ID) {
	n.mu.Lock()
	delete(n.strikes, p)
	n.mu.Unlock()
}

package engine

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// PeerTagger is the part of the connection manager through which the
// Engine marks the peers it has work queued for; network.Network satisfies
// it.
type PeerTagger interface {
	TagPeer(p peer.ID, tag string, value int)
	UntagPeer(p peer.ID, tag string)
}

// TagQueued is the tag the Engine puts on peers it has work for (see
// WithPeerTagger).
const TagQueued = "bs-engine-queued"

// DefaultTagLinger is how long a peer keeps TagQueued after its work ran
// out, unless WithTagLinger says otherwise.
const DefaultTagLinger = 5 * time.Second

// WithPeerTagger has the Engine tag, in t, with TagQueued and value, every
// peer it has work for: wants being looked up or waiting for a lookup,
// blocks and presences queued or being sent (wants parked for blocks we
// lack are no work). So a connection manager that trims connections keeps
// the peers we are serving over idle ones. Once the peer's work has run
// out, the tag stays a while (WithTagLinger) if we sent it a block or a
// HAVE meanwhile: a client fetching a DAG leaves us without wants for a
// round trip between levels, and should keep its tag through it. A peer
// that only heard DONT_HAVEs, or nothing, is untagged at once, so that
// peers asking us for what we lack hold a tag only while we look. It is
// removed at once when the peer
// disconnects, and from every peer on Close. t is called with the Engine's
// lock held and must not call back into it. nil, or value <= 0: none (the
// default).
func WithPeerTagger(t PeerTagger, value int) Option {
	return func(c *config) { c.tagger, c.tagValue = t, value }
}

// WithTagLinger sets how long a peer keeps its tag after its work ran out
// (default DefaultTagLinger; negative: none, the tag goes as the work
// does).
func WithTagLinger(d time.Duration) Option {
	return func(c *config) {
		switch {
		case d < 0:
			c.tagLinger = 0
		case d > 0:
			c.tagLinger = d
		}
	}
}

// peerTags keeps TagQueued on the peers the core has work for. It is the
// driver's, guarded by the driver's mu; its timers take mu themselves.
type peerTags struct {
	t      PeerTagger // nil: no tagging
	value  int
	linger time.Duration
	mu     sync.Locker
	closed bool
	// tagged holds every peer we tagged and have not untagged; its value's
	// timer is set while the peer's work has run out and the tag lingers.
	tagged map[peer.ID]*tagged
}

type tagged struct {
	linger *time.Timer
	// served is set once a block or a HAVE went to the peer since it was
	// tagged: only then does the tag linger.
	served bool
}

// served notes that a block or a HAVE went to p.
func (pt *peerTags) served(p peer.ID) {
	if tg := pt.tagged[p]; tg != nil {
		tg.served = true
	}
}

// update brings p's tag in line with whether the core has work for it.
func (pt *peerTags) update(c *core, p peer.ID) {
	if pt.t == nil || pt.closed {
		return
	}
	busy := c.busy(p)
	tg := pt.tagged[p]
	switch {
	case busy && tg == nil:
		pt.t.TagPeer(p, TagQueued, pt.value)
		pt.tagged[p] = &tagged{}
	case busy && tg.linger != nil:
		tg.linger.Stop()
		tg.linger = nil
	case !busy && tg != nil && tg.linger == nil:
		if pt.linger <= 0 || !tg.served {
			pt.untag(p)
			return
		}
		var timer *time.Timer
		timer = time.AfterFunc(pt.linger, func() {
			pt.mu.Lock()
			defer pt.mu.Unlock()
			// Only the timer still current may untag: one stopped too
			// late, after the peer had work again, finds another (or
			// none) in its place.
			if cur := pt.tagged[p]; cur != nil && cur.linger == timer && !pt.closed {
				pt.untag(p)
			}
		})
		tg.linger = timer
	}
}

// untag removes p's tag now, if it has one.
func (pt *peerTags) untag(p peer.ID) {
	tg := pt.tagged[p]
	if tg == nil {
		return
	}
	if tg.linger != nil {
		tg.linger.Stop()
	}
	delete(pt.tagged, p)
	pt.t.UntagPeer(p, TagQueued)
}

// close untags every peer; nothing is tagged afterwards.
func (pt *peerTags) close() {
	if pt.t == nil || pt.closed {
		return
	}
	for p := range pt.tagged {
		pt.untag(p)
	}
	pt.closed = true
}

// busy reports whether the core has work for p: wants unchecked, being
// looked up, queued, or being sent. Parked wants are not work.
func (c *core) busy(p peer.ID) bool {
	pw := c.peers[p]
	return pw != nil && (pw.active > 0 || pw.unchecked.Len() > 0 || len(pw.sending) > 0)
}

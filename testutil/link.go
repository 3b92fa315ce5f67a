package testutil

import (
	"fmt"
	"sync"
	"time"

	"github.com/gobitswap/bitswap/message"
)

// event is what a link carries to its receiving peer.
type event int

const (
	evConnected event = iota
	evMessage
	evDisconnected
)

type item struct {
	ev        event
	frame     []byte    // evMessage: one length-prefixed message
	deliverAt time.Time // evMessage: when the last byte arrives
}

// link is one direction of a connection, from one peer to another. A single
// goroutine (run) delivers its items in order, so every Receiver call about
// the sender is made in order. A closed link is never reused: reconnecting
// makes a new one, whose goroutine first waits for the previous link in the
// same direction to finish, keeping calls about one peer ordered across
// reconnections.
type link struct {
	from, to *VirtualPeer
	prev     *link // previous link from the same peer to the same peer, or nil

	mu        sync.Mutex
	queue     []item
	busyUntil time.Time // when the link finishes sending what is queued
	lastAt    time.Time // deliverAt of the newest message, to keep order
	closed    bool

	wake    chan struct{} // capacity 1: "look at the queue again"
	closing chan struct{} // closed by close: abandon the message in flight
	exited  chan struct{} // closed when run returns
}

// newLink makes the link from vp to to, queues PeerConnected and starts its
// goroutine. vn.mu must be held.
func (vp *VirtualPeer) newLink(to *VirtualPeer) *link {
	l := &link{
		from:    vp,
		to:      to,
		prev:    vp.lastOut[to.id],
		queue:   []item{{ev: evConnected}},
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		exited:  make(chan struct{}),
	}
	vp.lastOut[to.id] = l
	// Both ends wait for this goroutine on Stop. Neither is stopped (callers
	// check under vn.mu), so these Adds happen before any Wait that could
	// see a zero count.
	vp.links.Add(1)
	to.links.Add(1)
	go l.run()
	return l
}

// enqueue queues a message frame and reports whether the link was open. The
// frame starts onto the link when the link is free, takes size/bandwidth to
// send, and arrives latency later. Messages queue behind each other for
// bandwidth, but their latencies overlap, as on a real pipe.
func (l *link) enqueue(frame []byte, p linkParams) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	start := later(time.Now(), l.busyUntil)
	l.busyUntil = start.Add(p.serialisation(len(frame)))
	// If SetLink lowered the latency, a new message must still not overtake
	// an earlier one.
	at := later(l.busyUntil.Add(p.latency), l.lastAt)
	l.lastAt = at
	l.queue = append(l.queue, item{ev: evMessage, frame: frame, deliverAt: at})
	l.mu.Unlock()
	l.signal()
	return true
}

// close shuts the link: queued messages are dropped and, if notify is set,
// PeerDisconnected is queued after any events still pending; otherwise
// (the receiving peer is stopping) everything is dropped. vn.mu must be held.
func (l *link) close(notify bool) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	var kept []item
	if notify {
		for _, it := range l.queue {
			if it.ev != evMessage {
				kept = append(kept, it)
			}
		}
		kept = append(kept, item{ev: evDisconnected})
	}
	l.queue = kept
	l.mu.Unlock()
	close(l.closing)
	l.signal()
}

func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

func (l *link) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// next returns the next item, waiting for one; false once the link is
// closed and empty.
func (l *link) next() (item, bool) {
	for {
		l.mu.Lock()
		if len(l.queue) > 0 {
			it := l.queue[0]
			l.queue[0] = item{}
			l.queue = l.queue[1:]
			l.mu.Unlock()
			return it, true
		}
		closed := l.closed
		l.mu.Unlock()
		if closed {
			return item{}, false
		}
		<-l.wake
	}
}

func (l *link) isClosed() bool {
	select {
	case <-l.closing:
		return true
	default:
		return false
	}
}

// run is the link's goroutine: the one place where anything is delivered to
// the receiving peer. Loss and churn, when added, hook in here.
func (l *link) run() {
	defer l.to.links.Done()
	defer l.from.links.Done()
	defer close(l.exited)

	if l.prev != nil {
		<-l.prev.exited
		l.prev = nil // let the old link be collected
	}
	// Wait for the receiver to exist. A link closed before its receiving
	// peer ever started has no one to tell.
	select {
	case <-l.to.started:
	case <-l.closing:
		select {
		case <-l.to.started:
		default:
			return
		}
	}

	r := l.to.receiver
	from := l.from.id
	for {
		it, ok := l.next()
		if !ok {
			return
		}
		if it.ev == evMessage && !l.sleepUntil(it.deliverAt) {
			continue // the connection closed while the message was in flight
		}
		if l.to.stopping.Load() {
			continue // drain without delivering; Stop is waiting for us
		}
		switch it.ev {
		case evConnected:
			r.PeerConnected(from)
		case evDisconnected:
			r.PeerDisconnected(from)
		case evMessage:
			l.deliver(it.frame)
		}
	}
}

// sleepUntil waits until t and reports whether the link is still open.
func (l *link) sleepUntil(t time.Time) bool {
	if d := time.Until(t); d > 0 {
		timer := time.NewTimer(d)
		select {
		case <-timer.C:
		case <-l.closing:
			timer.Stop()
			return false
		}
	}
	return !l.isClosed()
}

// deliver decodes a frame as the libp2p network's stream reader would, and
// hands the message, or the error, to the receiver.
func (l *link) deliver(frame []byte) {
	to, from := l.to, l.from.id
	to.bytesRecv.Add(uint64(len(frame)))
	body, rest, err := message.ParseFrame(frame, message.MaxMessageSize)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d bytes after the frame", len(rest))
	}
	var msg *message.Message
	if err == nil {
		msg, err = message.Unmarshal(body)
	}
	if err != nil {
		to.receiver.ReceiveError(from, fmt.Errorf("testutil: message from %s: %w", from, err))
		return
	}
	to.msgsRecv.Add(1)
	to.receiver.ReceiveMessage(to.ctx, from, msg)
}

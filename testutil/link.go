package testutil

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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
	frame     []byte           // evMessage: one length-prefixed message
	msg       *message.Message // evMessage: frame decoded, or nil
	err       error            // evMessage: why frame does not decode
	counts    Counts           // evMessage: what frame carries
	lost      bool             // evMessage: lost on the way (see WithLoss)
	deliverAt time.Time        // evMessage: when the last byte arrives
	// abort is set when the sender gave up on the send before the frame
	// was all on the wire: it arrives incomplete, as from a reset stream.
	abort *atomic.Bool
}

// messageItem decodes a frame as the libp2p network's stream reader would,
// once, at the sender, so that Traffic can count what it carries; the
// receiver is handed the decoded message (or the error) on delivery.
func messageItem(frame []byte) item {
	it := item{ev: evMessage, frame: frame}
	body, rest, err := message.ParseFrame(frame, message.MaxMessageSize)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%d bytes after the frame", len(rest))
	}
	if err == nil {
		it.msg, err = message.Unmarshal(body)
	}
	it.err = err
	it.counts = countFrame(len(frame), it.msg)
	return it
}

// link is one direction of a connection, from one peer to another. A single
// goroutine (run) delivers its items in order, so every Receiver call about
// the sender is made in order. A closed link is never reused: reconnecting
// makes a new one, whose goroutine first waits for the previous link in the
// same direction to finish, keeping calls about one peer ordered across
// reconnections.
type link struct {
	from, to *VirtualPeer
	prev     *link    // previous link from the same peer to the same peer, or nil
	tr       *Traffic // of the directed pair, guarded by vn.tmu

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
		tr:      vp.vn.trafficOf(vp.id, to.id),
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

// enqueue queues a message item (see messageItem) and reports whether the
// link was open, when the sender may go on (see WithSendBuffer), and the
// flag that aborts the frame if the sender gives up before then. The frame
// starts onto the wire when the link and both access links are free, goes
// at the slowest one's rate, and arrives latency after its last byte left.
// Messages queue behind each other for bandwidth, but their latencies
// overlap, as on a real pipe.
func (l *link) enqueue(it item, p linkParams) (release time.Time, abort *atomic.Bool, ok bool) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return time.Time{}, nil, false
	}
	vn, size := l.from.vn, len(it.frame)
	now := time.Now()
	vn.amu.Lock()
	up, down := vn.accessOf(l.from.id).up, vn.accessOf(l.to.id).down
	start := later(now, l.busyUntil)
	if up > 0 {
		start = later(start, l.from.upBusy)
	}
	if down > 0 {
		start = later(start, l.to.downBusy)
	}
	rate := slowest(p.bandwidth, up, down)
	end := start.Add(transmit(size, rate))
	l.busyUntil = start.Add(p.serialisation(size))
	if up > 0 {
		l.from.upBusy = start.Add(transmit(size, up))
	}
	if down > 0 {
		l.to.downBusy = start.Add(transmit(size, down))
	}
	vn.amu.Unlock()
	// If SetLink lowered the latency, a new message must still not overtake
	// an earlier one.
	at := later(end.Add(p.latency), l.lastAt)
	l.lastAt = at
	it.deliverAt = at
	it.abort = new(atomic.Bool)
	l.queue = append(l.queue, it)
	l.account(func(t *Traffic) { t.Sent.add(it.counts) })
	l.mu.Unlock()
	l.signal()
	release = now
	if buf := vn.sendBuffer; buf >= 0 && rate > 0 {
		// The bytes still to go onto the wire at t are rate·(end − t).
		release = later(now, end.Add(-transmit(buf, rate)))
	}
	return release, it.abort, true
}

// waitRoom blocks until release, failing if ctx ends or the link closes
// first.
func (l *link) waitRoom(ctx context.Context, release time.Time) error {
	d := time.Until(release)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-l.closing:
		return ErrNotConnected
	}
}

// account updates the traffic of the link's directed pair.
func (l *link) account(f func(*Traffic)) {
	vn := l.from.vn
	vn.tmu.Lock()
	f(l.tr)
	vn.tmu.Unlock()
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
	aborted := 0
	for _, it := range l.queue {
		switch {
		case it.ev == evMessage:
			aborted++
		case notify:
			kept = append(kept, it)
		}
	}
	if notify {
		kept = append(kept, item{ev: evDisconnected})
	}
	l.queue = kept
	if aborted > 0 {
		l.account(func(t *Traffic) { t.Aborted += uint64(aborted) })
	}
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
// the receiving peer, and where each message meets its fate (see Traffic).
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
			// The connection closed while the message was in flight.
			l.account(func(t *Traffic) { t.Aborted++ })
			continue
		}
		if l.to.stopping.Load() {
			// Drain without delivering; Stop is waiting for us.
			if it.ev == evMessage {
				l.account(func(t *Traffic) { t.Aborted++ })
			}
			continue
		}
		switch it.ev {
		case evConnected:
			r.PeerConnected(from)
		case evDisconnected:
			r.PeerDisconnected(from)
		case evMessage:
			switch {
			case it.abort != nil && it.abort.Load():
				l.account(func(t *Traffic) { t.Aborted++ })
				r.ReceiveError(from, fmt.Errorf("testutil: message from %s: the sender gave up mid-frame: %w", from, message.ErrIncomplete))
			case it.lost:
				l.account(func(t *Traffic) { t.Dropped++ })
				r.ReceiveError(from, fmt.Errorf("testutil: message from %s: %w (%w)", from, ErrMessageLost, message.ErrIncomplete))
			case l.to.unresponsive.Load():
				l.account(func(t *Traffic) { t.Swallowed++ })
			default:
				l.deliver(it)
			}
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

// deliver hands the decoded message, or the decoding error, to the
// receiver, as the libp2p network's stream reader would.
func (l *link) deliver(it item) {
	to, from := l.to, l.from.id
	to.bytesRecv.Add(uint64(len(it.frame)))
	if it.err != nil {
		l.account(func(t *Traffic) { t.Delivered.Bytes += uint64(len(it.frame)) })
		to.receiver.ReceiveError(from, fmt.Errorf("testutil: message from %s: %w", from, it.err))
		return
	}
	to.msgsRecv.Add(1)
	l.account(func(t *Traffic) { t.Delivered.add(it.counts) })
	if err := to.receiver.ReceiveMessage(to.ctx, from, it.msg); err != nil {
		l.account(func(t *Traffic) { t.Rejected++ })
	}
}

package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/multiformats/go-multistream"
)

// maxKeptBuffer is the largest encoding buffer a sender keeps between
// messages. Larger ones (a message full of blocks) are dropped after use so
// that idle senders do not each pin megabytes.
const maxKeptBuffer = 256 << 10

// minWriteInPlace is the size from which block data is written to the
// stream from where it lies rather than copied into the encoding buffer
// first (the stream copies it anyway). Smaller blocks are copied, so that a
// message of many small blocks stays one write.
const minWriteInPlace = 64 << 10

// A peer's messages travel on lanes, each a stream of its own: lane 0
// carries every message without blocks (wantlists, presences), in the order
// they were sent, and blockLanes more carry messages with blocks, whichever
// is free. Control messages never wait behind megabytes of blocks, and
// blocks go out on two streams at once, which matters because a libp2p
// muxer gives each stream a flow-control window of its own: on loopback,
// two streams carried 10–30 % more than one. Messages on different lanes
// may overtake each other; Bitswap receivers (boxo opens a stream per
// message) do not rely on their order, and every wantlist change goes on
// lane 0.
const blockLanes = 2

// senderKey names one lane to one peer.
type senderKey struct {
	to   peer.ID
	lane int
}

// sender is one lane to one peer: one stream, reused for every message
// until it fails or the peer disconnects.
type sender struct {
	senderKey
	// lock is held by whoever uses the fields below (a SendMessage or
	// Version call, the goroutine dropping the sender, or Stop). It is a
	// channel of capacity 1 rather than a mutex so that waiting for it can
	// honour a context. Every holder gives it back within a send timeout,
	// and promptly once the network is stopping.
	lock    chan struct{}
	stream  network.Stream // nil until opened, and after a failure
	version message.Version
	buf     []byte   // encoding buffer reused across messages
	parts   [][]byte // the frame being written, reused across messages
	dropped bool     // removed from the senders map: look up a new sender
}

// discard resets the stream and retires the sender. Hold s.lock.
func (s *sender) discard() {
	if s.stream != nil {
		_ = s.stream.Reset()
		s.stream = nil
	}
	s.dropped = true
	s.buf = nil
}

// lockSender returns the sender of lane k, created if needed, with its lock
// held.
func (n *Libp2pNetwork) lockSender(ctx context.Context, k senderKey) (*sender, error) {
	s, _, err := n.lockSenderIf(ctx, k, true)
	return s, err
}

// lockSenderIf is lockSender, except that without wait it returns ok false
// at once if the lane is busy.
func (n *Libp2pNetwork) lockSenderIf(ctx context.Context, k senderKey, wait bool) (s *sender, ok bool, err error) {
	for {
		n.mu.Lock()
		if n.state == stateStopped {
			n.mu.Unlock()
			return nil, false, ErrStopped
		}
		s := n.senders[k]
		if s == nil {
			s = &sender{senderKey: k, lock: make(chan struct{}, 1)}
			n.senders[k] = s
		}
		n.mu.Unlock()

		if wait {
			select {
			case s.lock <- struct{}{}:
			case <-ctx.Done():
				return nil, false, ctx.Err()
			case <-n.ctx.Done():
				return nil, false, ErrStopped
			}
		} else {
			select {
			case s.lock <- struct{}{}:
			default:
				return nil, false, nil
			}
		}
		if !s.dropped {
			return s, true, nil
		}
		<-s.lock // retired while we waited: start over with a new one
	}
}

// lockLane locks the lane msg goes on: lane 0 for a message without blocks,
// else the first free block lane, or, if all are busy, a block lane picked
// in turn (one counter for all peers), waiting for it.
func (n *Libp2pNetwork) lockLane(ctx context.Context, p peer.ID, msg *message.Message) (*sender, error) {
	if len(msg.Blocks) == 0 {
		return n.lockSender(ctx, senderKey{p, 0})
	}
	for lane := 1; lane <= blockLanes; lane++ {
		s, ok, err := n.lockSenderIf(ctx, senderKey{p, lane}, false)
		if err != nil || ok {
			return s, err
		}
	}
	lane := 1 + int(n.laneTurn.Add(1)%blockLanes)
	return n.lockSender(ctx, senderKey{p, lane})
}

// unlockSender gives back s.lock. A sender left without a stream (its
// peer could not be reached, or the write failed for good) is retired, so
// that the senders map only holds peers with a live stream and cannot grow
// with peers that were never reached.
func (n *Libp2pNetwork) unlockSender(s *sender) {
	if s.stream == nil && !s.dropped {
		n.mu.Lock()
		if n.senders[s.senderKey] == s {
			delete(n.senders, s.senderKey)
		}
		n.mu.Unlock()
		s.dropped, s.buf = true, nil
	}
	<-s.lock
}

// SendMessage writes msg to p on one of p's reused streams (see
// blockLanes), encoded for the version negotiated on that stream. Sends on
// one stream are serialised; waiting for its turn honours ctx. Each attempt opens a stream if there is none
// (bounded by the send timeout base) and writes the frame under a write
// deadline of the send timeout for its size (see WithSendTimeout). If ctx
// ends first the stream is reset and ctx's error returned. A failed attempt
// resets the stream; write and open failures are retried on a fresh stream
// up to WithMaxRetries times, but a timeout, cancellation, an unsupported
// protocol or a message over message.MaxMessageSize is not. Errors name the
// peer. After Stop it fails with ErrStopped.
func (n *Libp2pNetwork) SendMessage(ctx context.Context, p peer.ID, msg *message.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s, err := n.lockLane(ctx, p, msg)
	if err != nil {
		return fmt.Errorf("bitswap: sending message to %s: %w", p, err)
	}
	defer n.unlockSender(s)

	for attempt := 0; ; attempt++ {
		err = n.sendOnce(ctx, s, msg)
		if err == nil {
			return nil
		}
		if attempt >= n.cfg.maxRetries || !n.retryable(ctx, err) {
			return fmt.Errorf("bitswap: sending message to %s (attempt %d): %w", p, attempt+1, err)
		}
	}
}

// sendOnce makes one attempt at sending msg. Hold s.lock.
func (n *Libp2pNetwork) sendOnce(ctx context.Context, s *sender, msg *message.Message) error {
	if s.stream == nil {
		if err := n.openStream(ctx, s); err != nil {
			return err
		}
	}
	if size := msg.Size(s.version); size > message.MaxMessageSize {
		return fmt.Errorf("message of %d bytes is over the %d-byte limit: %w",
			size, message.MaxMessageSize, message.ErrTooLarge)
	}
	parts, buf := message.FrameParts(s.parts[:0], s.buf, msg, s.version, minWriteInPlace)
	if cap(buf) <= maxKeptBuffer {
		s.buf = buf
	} else {
		s.buf = nil
	}
	size, err := n.writeFrame(ctx, s.stream, parts)
	clear(parts) // do not pin the blocks until the next message
	s.parts = parts[:0]
	if err != nil {
		if len(msg.Blocks) > 0 && walkedAway(ctx, err) {
			n.abandoned(s.to, s.stream.Conn())
		}
		_ = s.stream.Reset()
		s.stream = nil
		return err
	}
	n.msgsSent.Add(1)
	n.bytesSent.Add(uint64(size))
	return nil
}

// writeFrame writes the parts of a frame to st, in order, within the send
// timeout for its size, and returns the size. If ctx ends or the network
// stops meanwhile, st is reset, which unblocks the write, and the error is
// ctx's (or ErrStopped). ctx's deadline is left to ctx rather than folded
// into the write deadline, so that the caller sees its own context error.
func (n *Libp2pNetwork) writeFrame(ctx context.Context, st network.Stream, parts [][]byte) (int, error) {
	size := 0
	for _, p := range parts {
		size += len(p)
	}
	if err := st.SetWriteDeadline(time.Now().Add(n.cfg.sendTimeout(size))); err != nil {
		return 0, err
	}
	reset := func() { _ = st.Reset() }
	stopCtx := context.AfterFunc(ctx, reset)
	stopNet := context.AfterFunc(n.ctx, reset)
	var err error
	for _, p := range parts {
		if _, err = st.Write(p); err != nil {
			break
		}
	}
	if !stopNet() {
		return 0, ErrStopped
	}
	if !stopCtx() {
		return 0, ctx.Err()
	}
	return size, err
}

// openStream opens a stream to s.to, offering the enabled protocols newest
// first, within the send timeout base. Hold s.lock.
func (n *Libp2pNetwork) openStream(ctx context.Context, s *sender) error {
	octx, cancel := context.WithTimeout(ctx, n.cfg.sendBase)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel)
	defer stop()

	st, err := n.host.NewStream(octx, s.to, n.protos...)
	if err != nil {
		if n.ctx.Err() != nil {
			return ErrStopped
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("opening stream: %w", err)
	}
	v, ok := versionOf(n.cfg.prefix, st.Protocol())
	if !ok {
		_ = st.Reset()
		return fmt.Errorf("opening stream: unexpected protocol %q", st.Protocol())
	}
	s.stream, s.version = st, v
	n.events.mark(s.to, true, nil) // it speaks Bitswap: report it if not yet
	return nil
}

// walkedAway says whether a failed write means the peer reset the stream or
// closed the connection: not our timeout, cancellation or Stop.
func walkedAway(ctx context.Context, err error) bool {
	var ne net.Error
	switch {
	case ctx.Err() != nil, errors.Is(err, ErrStopped),
		errors.Is(err, context.Canceled),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return false
	}
	return true
}

// retryable says whether a failed attempt is worth repeating on a new
// stream: not if the caller or the network gave up, the peer was too slow
// (another attempt would double the wait), it does not speak Bitswap, or
// the message can never be sent.
func (n *Libp2pNetwork) retryable(ctx context.Context, err error) bool {
	var ne net.Error
	var unsupported multistream.ErrNotSupported[protocol.ID]
	switch {
	case ctx.Err() != nil, n.ctx.Err() != nil,
		errors.Is(err, ErrStopped),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout(),
		errors.As(err, &unsupported),
		errors.Is(err, message.ErrTooLarge):
		return false
	}
	return true
}

// Version returns the protocol version of p's outbound stream (lane 0),
// opening one (and dialling if needed) if there is none.
func (n *Libp2pNetwork) Version(ctx context.Context, p peer.ID) (message.Version, error) {
	s, err := n.lockSender(ctx, senderKey{p, 0})
	if err != nil {
		return 0, fmt.Errorf("bitswap: protocol version of %s: %w", p, err)
	}
	defer n.unlockSender(s)
	if s.stream == nil {
		if err := n.openStream(ctx, s); err != nil {
			return 0, fmt.Errorf("bitswap: protocol version of %s: %w", p, err)
		}
	}
	return s.version, nil
}

// dropSender retires p's senders, if any, after p's last connection
// closed: their streams are closed and the next send to p starts new
// senders. It runs in goroutines of their own because a sender may be busy.
// If p is connected again by the time a sender is free, it is kept.
func (n *Libp2pNetwork) dropSender(p peer.ID) {
	for lane := 0; lane <= blockLanes; lane++ {
		k := senderKey{p, lane}
		n.mu.Lock()
		s := n.senders[k]
		n.mu.Unlock()
		if s != nil {
			n.goTracked(func() { n.dropLane(s) })
		}
	}
}

func (n *Libp2pNetwork) dropLane(s *sender) {
	// Waiting without a context is fine: every holder returns the lock
	// within a send timeout, and at once when stopping.
	s.lock <- struct{}{}
	defer func() { <-s.lock }()
	if s.dropped || n.ctx.Err() != nil {
		return // Stop resets the streams of the senders it finds
	}
	if n.host.Network().Connectedness(s.to) == network.Connected {
		return
	}
	n.mu.Lock()
	if n.senders[s.senderKey] == s {
		delete(n.senders, s.senderKey)
	}
	n.mu.Unlock()
	st := s.stream
	s.stream, s.dropped, s.buf = nil, true, nil
	if st != nil {
		// Close (not reset) so that anything still buffered gets out if
		// it can; bounded by a deadline and by Stop.
		_ = st.SetDeadline(time.Now().Add(n.cfg.sendBase))
		stop := context.AfterFunc(n.ctx, func() { _ = st.Reset() })
		_ = st.Close()
		stop()
	}
}

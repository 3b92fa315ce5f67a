package network

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// handleStream is the stream handler for every enabled protocol. It runs in
// the goroutine libp2p starts for the stream and reads messages from it
// until the remote closes or resets it, or the network stops.
func (n *Libp2pNetwork) handleStream(s network.Stream) {
	from := s.Conn().RemotePeer()
	n.mu.Lock()
	if n.state != stateStarted {
		n.mu.Unlock()
		_ = s.Reset()
		return
	}
	if n.isBanned(from) {
		n.refuse(s, from) // unlocks n.mu
		return
	}
	n.inbound[s] = struct{}{}
	n.wg.Add(1)
	n.mu.Unlock()
	defer n.wg.Done()

	if !n.awaitReported(from) {
		n.resetInbound(s)
		return
	}
	n.readLoop(s, from)
}

// readLoop reads uvarint-framed messages from s and hands them to the
// Receiver. It owns s until it returns, then either s is reset or its close
// has been handed to another goroutine.
func (n *Libp2pNetwork) readLoop(s network.Stream, from peer.ID) {
	br := bufio.NewReader(s)
	limit := uint64(n.cfg.maxMessageSize)
	for {
		// Between frames, the end of the stream is the normal way for a
		// peer to stop, and a reset is not worth reporting (it is what a
		// closing connection does to its streams).
		if _, err := br.ReadByte(); err != nil {
			if errors.Is(err, io.EOF) {
				n.closeInboundAsync(s)
			} else {
				n.resetInbound(s)
			}
			return
		}
		_ = br.UnreadByte()

		size, err := binary.ReadUvarint(br)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("%w: %w", message.ErrMalformed, err) // varint overflow
			}
			n.failInbound(s, from, fmt.Errorf("bitswap: reading frame length from %s: %w", from, err))
			return
		}
		if size > limit {
			n.failInbound(s, from, fmt.Errorf("bitswap: frame of %d bytes from %s is over the %d-byte limit: %w",
				size, from, limit, message.ErrTooLarge))
			return
		}
		// A frame must arrive as fast as we require of our own sends, so
		// that a peer trickling bytes holds a stream and its buffer for a
		// bounded time only. Between frames a stream may idle: Kubo and
		// our sender keep one open for all their messages.
		_ = s.SetReadDeadline(time.Now().Add(n.cfg.sendTimeout(int(size))))
		body, err := readBody(br, from, int(size), &n.reserve)
		_ = s.SetReadDeadline(time.Time{})
		if err != nil {
			n.failInbound(s, from, fmt.Errorf("bitswap: reading %d-byte message from %s: %w", size, from, err))
			return
		}
		n.msgsRecv.Add(1)
		n.bytesRecv.Add(uint64(uvarintLen(size)) + size)
		// Decoding, which hashes every block, happens in the peer's drain
		// goroutine: the stream keeps being read meanwhile, so the sender
		// is not held up by our hashing.
		if !n.enqueue(from, body) {
			n.resetInbound(s)
			return
		}
	}
}

// maxHeld bounds the streams of banned peers held unread at once.
const maxHeld = 64

// refuse handles a stream from a banned peer; the caller holds n.mu, which
// refuse releases. The first such stream of a peer is held open, unread,
// until the ban ends: a peer that writes on one stream after another (every
// flood we have seen) then waits on flow control once the muxer's window
// (256 KiB) is full, instead of reconnecting, handshake after handshake, as
// fast as we close it. Further streams are reset, and past maxHeld held
// streams the peer is disconnected instead.
func (n *Libp2pNetwork) refuse(s network.Stream, from peer.ID) {
	n.refused.Add(1)
	_, holding := n.held[from]
	if holding || len(n.held) >= maxHeld {
		n.mu.Unlock()
		_ = s.Reset()
		if !holding {
			_ = n.host.Network().ClosePeer(from)
		}
		return
	}
	end := n.banned[from]
	n.held[from] = struct{}{}
	n.inbound[s] = struct{}{} // Stop resets it
	n.wg.Add(1)
	n.mu.Unlock()
	defer n.wg.Done()
	t := time.NewTimer(time.Until(end))
	defer t.Stop()
	select {
	case <-t.C:
	case <-n.ctx.Done():
	}
	n.mu.Lock()
	delete(n.held, from)
	n.mu.Unlock()
	n.resetInbound(s)
}

// failInbound resets s and reports err, unless the failure is Stop's doing.
func (n *Libp2pNetwork) failInbound(s network.Stream, from peer.ID, err error) {
	n.resetInbound(s)
	if n.ctx.Err() == nil {
		n.malformed(from, err)
	}
}

// resetInbound resets s and forgets it.
func (n *Libp2pNetwork) resetInbound(s network.Stream) {
	_ = s.Reset()
	n.forgetInbound(s)
}

func (n *Libp2pNetwork) forgetInbound(s network.Stream) {
	n.mu.Lock()
	delete(n.inbound, s)
	n.mu.Unlock()
}

// closeInboundAsync closes s from a goroutine of its own, so that a close
// that has to wait for the remote never holds up the read loop. The close
// is bounded by a deadline of the send timeout base, and Stop resets the
// stream (it stays in n.inbound until closed) if it is still pending.
func (n *Libp2pNetwork) closeInboundAsync(s network.Stream) {
	ok := n.goTracked(func() {
		_ = s.SetDeadline(time.Now().Add(n.cfg.sendBase))
		_ = s.Close()
		n.forgetInbound(s)
	})
	if !ok { // stopping: Stop resets what it found in n.inbound
		n.resetInbound(s)
	}
}

// uvarintLen is the length of x encoded as a uvarint.
func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// bodyChunk is the largest body allocated at its announced size without a
// share of the reserve, and the first buffer of a body that grows as its
// bytes arrive: small, because growing happens when the reserve is spent,
// which is when many streams announce large frames at once, as trickling
// attackers do; an honest large body doubles its way up at the cost of a
// few copies.
const bodyChunk = 4 << 10

// maxReserved bounds the bytes allocated, across all streams, for message
// bodies whose bytes have not all arrived yet; maxReservedPerPeer bounds one
// peer's share, so that a single peer announcing large frames on many
// streams (and trickling their bytes) cannot hold all of it.
const (
	maxReserved        = 32 << 20
	maxReservedPerPeer = 4 << 20
)

// bodyReserve counts the bytes allocated ahead of arrival, in all and per
// peer. A body that fits the reserve is allocated once at its announced
// size: no re-allocation, no copy, no zeroing of buffers that are thrown
// away, which is most of the client's cost per byte apart from decryption
// and hashing. One that does not fit grows as its bytes arrive, so a peer
// announcing 4 MiB on many streams and then trickling bytes makes us hold
// at most its share plus what was actually sent. It is taken once per
// large frame, so a mutex costs nothing that matters.
type bodyReserve struct {
	mu   sync.Mutex
	used int64
	per  map[peer.ID]int64
}

func (r *bodyReserve) take(p peer.ID, n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.used+int64(n) > maxReserved || r.per[p]+int64(n) > maxReservedPerPeer {
		return false
	}
	if r.per == nil {
		r.per = make(map[peer.ID]int64)
	}
	r.used += int64(n)
	r.per[p] += int64(n)
	return true
}

func (r *bodyReserve) give(p peer.ID, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.used -= int64(n)
	if r.per[p] -= int64(n); r.per[p] == 0 {
		delete(r.per, p)
	}
}

// inUse returns the bytes reserved in all and by p.
func (r *bodyReserve) inUse(p peer.ID) (all, mine int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.used, r.per[p]
}

// readBody reads a size-byte body from p into a buffer of its own:
// Unmarshal keeps sub-slices of it.
func readBody(r io.Reader, p peer.ID, size int, res *bodyReserve) ([]byte, error) {
	if size > bodyChunk {
		if !res.take(p, size) {
			return growBody(r, size)
		}
		defer res.give(p, size)
	}
	body := make([]byte, size)
	_, err := io.ReadFull(r, body)
	return body, err
}

// growBody reads a size-byte body into a buffer that grows as bytes arrive.
func growBody(r io.Reader, size int) ([]byte, error) {
	body := make([]byte, 0, min(size, bodyChunk))
	for len(body) < size {
		if len(body) == cap(body) {
			body = append(body, make([]byte, min(cap(body), size-len(body)))...)[:len(body)]
		}
		n, err := io.ReadFull(r, body[len(body):min(cap(body), size)])
		body = body[:len(body)+n]
		if err != nil {
			return nil, err
		}
	}
	return body, nil
}

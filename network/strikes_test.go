package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gobitswap/bitswap/message"
	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// garbage is a frame body that is not a Bitswap message (field 1 with the
// reserved wire type 7).
var garbage = []byte{0x0f, 0x01, 0x02}

// A peer that keeps sending frames that do not decode is disconnected at the
// limit, logged with the reason and counted; each frame is reported to the
// Receiver as it comes.
func TestPeerSendingMalformedMessagesIsDisconnected(t *testing.T) {
	var log bytes.Buffer
	a := newNode(t)
	b := newNode(t, WithMaxMalformed(3), WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	connect(t, a.h, b.h)
	b.rec.waitFor(t, 1, "connected")

	s := openRaw(t, a.h, b.h.ID(), ProtocolBitswap)
	for range 3 {
		writeRaw(t, s, uint64(len(garbage)), garbage)
	}
	b.rec.waitFor(t, 1, "disconnected")
	if errs := b.rec.snapshot("err"); len(errs) != 3 {
		t.Fatalf("%d errors reported, want one per malformed frame (3): %v", len(errs), errs)
	}
	st := b.net.Stats()
	if st.MalformedReceived != 3 || st.PeersDisconnected != 1 {
		t.Fatalf("stats %+v: want 3 malformed, 1 peer disconnected", st)
	}
	if got := b.h.Network().Connectedness(a.h.ID()); got == network.Connected {
		t.Fatalf("peer still connected (%v)", got)
	}
	if !strings.Contains(log.String(), "malformed") || !strings.Contains(log.String(), a.h.ID().String()) {
		t.Fatalf("log does not name the peer and the reason: %q", log.String())
	}
}

// Below the limit a peer stays connected and its good messages still
// arrive; a frame over the size limit counts as malformed too.
func TestMalformedMessagesBelowTheLimitKeepThePeer(t *testing.T) {
	a := newNode(t)
	b := newNode(t, WithMaxMalformed(3), WithMaxMessageSize(1024))
	connect(t, a.h, b.h)
	b.rec.waitFor(t, 1, "connected")

	s := openRaw(t, a.h, b.h.ID(), ProtocolBitswap)
	writeRaw(t, s, uint64(len(garbage)), garbage)
	writeFrames(t, s, wantMsg(blocks.NewBlock([]byte("good")), 1))
	b.rec.waitFor(t, 1, "msg")
	writeRaw(t, s, 4096, nil) // over the 1 KiB limit: the stream is reset
	b.rec.waitFor(t, 2, "err")

	if st := b.net.Stats(); st.MalformedReceived != 2 || st.PeersDisconnected != 0 {
		t.Fatalf("stats %+v: want 2 malformed, no peer disconnected", st)
	}
	if got := b.h.Network().Connectedness(a.h.ID()); got != network.Connected {
		t.Fatalf("peer disconnected below the limit (%v)", got)
	}
	if d := b.rec.snapshot("disconnected"); len(d) != 0 {
		t.Fatalf("reported disconnected: %v", d)
	}
}

// WithMaxMalformed(-1) never disconnects.
func TestMaxMalformedNegativeNeverDisconnects(t *testing.T) {
	a := newNode(t)
	b := newNode(t, WithMaxMalformed(-1))
	connect(t, a.h, b.h)
	b.rec.waitFor(t, 1, "connected")
	s := openRaw(t, a.h, b.h.ID(), ProtocolBitswap)
	for range DefaultMaxMalformed + 2 {
		writeRaw(t, s, uint64(len(garbage)), garbage)
	}
	b.rec.waitFor(t, DefaultMaxMalformed+2, "err")
	if st := b.net.Stats(); st.PeersDisconnected != 0 {
		t.Fatalf("stats %+v: want no peer disconnected", st)
	}
}

// A frame must arrive within the send timeout its size gets: a peer that
// announces a frame and then trickles (here: stops) has the stream reset
// and the failure reported, though it is not counted as malformed. Between
// frames a stream may idle for as long as it likes.
func TestTricklingFrameIsCutOff(t *testing.T) {
	a := newNode(t)
	b := newNode(t, WithSendTimeout(50*time.Millisecond, 0))
	connect(t, a.h, b.h)
	b.rec.waitFor(t, 1, "connected")

	idle := openRaw(t, a.h, b.h.ID(), ProtocolBitswap)
	writeFrames(t, idle, wantMsg(blocks.NewBlock([]byte("first")), 1))
	b.rec.waitFor(t, 1, "msg")

	s := openRaw(t, a.h, b.h.ID(), ProtocolBitswap)
	writeRaw(t, s, 100, make([]byte, 10))
	errs := b.rec.waitFor(t, 1, "err")
	var ne net.Error
	if !errors.As(errs[0].err, &ne) || !ne.Timeout() {
		t.Fatalf("reported %v, want a deadline error", errs[0].err)
	}
	if st := b.net.Stats(); st.MalformedReceived != 0 {
		t.Fatalf("stats %+v: a slow frame is not malformed", st)
	}
	// The stream that idled between frames all along still works.
	writeFrames(t, idle, wantMsg(blocks.NewBlock([]byte("second")), 1))
	b.rec.waitFor(t, 2, "msg")
}

// Every connection gets the same allowance: a peer that reconnects at once
// after being disconnected, before the disconnect is even noticed, is
// disconnected again at the limit (here with bans off).
func TestReconnectingMalformedPeerIsDisconnectedAgain(t *testing.T) {
	a := newNode(t)
	b := newNode(t, WithMaxMalformed(2), WithBanDuration(-1))
	for round := 1; round <= 3; round++ {
		connect(t, a.h, b.h)
		s := openRaw(t, a.h, b.h.ID(), ProtocolBitswap)
		for range 2 {
			writeRaw(t, s, uint64(len(garbage)), garbage)
		}
		deadline := time.Now().Add(waitTimeout)
		for b.net.Stats().PeersDisconnected < uint64(round) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: stats %+v", round, b.net.Stats())
			}
			time.Sleep(5 * time.Millisecond)
		}
		// Until a has seen the close too, its next Connect would reuse
		// the dying connection, and the next round's frames die with it.
		waitUntil(t, func() bool { return a.h.Network().Connectedness(b.h.ID()) != network.Connected })
	}
}

// A peer disconnected for misbehaving is banned: when it reconnects, its
// first Bitswap stream is held open and never read (its writes end up
// waiting on flow control), any further stream is reset, nothing it sends is
// delivered, and each refusal is counted in StreamsRefused. Stop releases
// the held stream.
func TestDisconnectedPeerIsBanned(t *testing.T) {
	a := newNode(t)
	b := newNode(t, WithMaxMalformed(2), WithBanDuration(time.Hour))
	connect(t, a.h, b.h)
	s := openRaw(t, a.h, b.h.ID(), ProtocolBitswap)
	for range 2 {
		writeRaw(t, s, uint64(len(garbage)), garbage)
	}
	waitStats(t, b.net, func(st Stats) bool { return st.PeersDisconnected == 1 })
	// Reconnect only once a has seen the close, or it may reuse the dying
	// connection.
	waitUntil(t, func() bool { return a.h.Network().Connectedness(b.h.ID()) != network.Connected })

	connect(t, a.h, b.h)
	held := openRaw(t, a.h, b.h.ID(), ProtocolBitswap)
	writeFrames(t, held, wantMsg(blocks.NewBlock([]byte("while banned")), 1))
	waitStats(t, b.net, func(st Stats) bool { return st.StreamsRefused == 1 })

	second := openRaw(t, a.h, b.h.ID(), ProtocolBitswap)
	_, _ = second.Write(message.AppendFrame(nil, wantMsg(blocks.NewBlock([]byte("again")), 1), message.V120))
	_ = second.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := second.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("second stream of a banned peer: read %v, want a reset", err)
	}
	waitStats(t, b.net, func(st Stats) bool { return st.StreamsRefused == 2 })
	if msgs := b.rec.snapshot("msg"); len(msgs) != 0 {
		t.Fatalf("%d messages of a banned peer delivered", len(msgs))
	}
	if got := b.h.Network().Connectedness(a.h.ID()); got != network.Connected {
		t.Fatalf("banned peer with a held stream was disconnected (%v)", got)
	}

	b.net.Stop()
	_ = held.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := held.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("held stream after Stop: read %v, want a reset", err)
	}
}

// A ban ends after its duration; the list never holds more than maxBanned
// peers, dropping the ban closest to its end first.
func TestBansExpireAndAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := pacedNetwork(WithBanDuration(time.Minute))
		defer n.cancel()
		n.mu.Lock()
		defer n.mu.Unlock()
		n.ban("first")
		time.Sleep(time.Second)
		for i := range maxBanned {
			n.ban(peer.ID(fmt.Sprint("p", i)))
		}
		if len(n.banned) != maxBanned || n.isBanned("first") {
			t.Fatalf("%d bans, first banned %v: want %d, the earliest dropped", len(n.banned), n.isBanned("first"), maxBanned)
		}
		if !n.isBanned("p0") {
			t.Fatal("p0 not banned")
		}
		time.Sleep(time.Minute)
		if n.isBanned("p0") {
			t.Fatal("p0 still banned after the ban duration")
		}
	})
}

// A message the Receiver rejects counts like a malformed one: at the limit
// the peer is disconnected, and each rejection is counted.
func TestRejectedMessagesDisconnectThePeer(t *testing.T) {
	a := newNode(t)
	b := newNode(t, WithMaxMalformed(3))
	b.rec.reject.Store(true)
	connect(t, a.h, b.h)
	b.rec.waitFor(t, 1, "connected")
	s := openRaw(t, a.h, b.h.ID(), ProtocolBitswap)
	for i := range 3 {
		writeFrames(t, s, wantMsg(blocks.NewBlock([]byte{byte(i)}), 1))
	}
	b.rec.waitFor(t, 1, "disconnected")
	st := b.net.Stats()
	if st.RejectedReceived != 3 || st.PeersDisconnected != 1 || st.MalformedReceived != 0 {
		t.Fatalf("stats %+v: want 3 rejected, 1 peer disconnected, none malformed", st)
	}
	if errs := b.rec.snapshot("err"); len(errs) != 0 {
		t.Fatalf("rejections reported as stream errors: %v", errs)
	}
}

func waitStats(t *testing.T, n *Libp2pNetwork, ok func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !ok(n.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", n.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A peer that asks for blocks and then closes the connection while they are
// on their way, reconnecting to do it again, is banned once it has
// abandoned WithMaxAbandoned transfers, each connection counted once. A send
// that times out on a peer that stops reading is not abandonment.
func TestPeerAbandoningTransfersIsBanned(t *testing.T) {
	const limit = 3
	b := newNode(t, WithMaxAbandoned(limit), WithMaxRetries(-1))
	a := newHost(t)
	a.SetStreamHandler(ProtocolBitswap, func(s network.Stream) {
		_, _ = io.ReadFull(s, make([]byte, 1024)) // the start of the blocks, then away
		_ = a.Network().ClosePeer(b.h.ID())
	})
	big := &message.Message{Blocks: []blocks.Block{blocks.NewBlock(bytes.Repeat([]byte{1}, 2<<20))}}
	for i := range limit {
		connect(t, a, b.h)
		conn := b.h.Network().ConnsToPeer(a.ID())[0]
		if err := b.net.SendMessage(context.Background(), a.ID(), big); err == nil {
			t.Fatalf("send %d succeeded to a peer that closed the connection", i)
		}
		// Every other send that was on its way over the same connection
		// fails the same way; the connection counts once.
		b.net.abandoned(a.ID(), conn)
		if st := b.net.Stats(); st.AbandonedSends != uint64(i+1) {
			t.Fatalf("after %d connections: %d abandoned sends counted, want %d", i+1, st.AbandonedSends, i+1)
		}
		if i < limit-1 && isBanned(b.net, a.ID()) {
			t.Fatalf("banned after %d abandoned transfers, limit %d", i+1, limit)
		}
		waitUntil(t, func() bool { return b.h.Network().Connectedness(a.ID()) != network.Connected })
	}
	if st := b.net.Stats(); st.PeersBanned != 1 || !isBanned(b.net, a.ID()) {
		t.Fatalf("stats %+v: want the peer banned once", b.net.Stats())
	}
}

func TestSendTimeoutIsNotAbandonment(t *testing.T) {
	b := newNode(t, WithMaxAbandoned(1), WithSendTimeout(200*time.Millisecond, 0))
	a := newHost(t)
	held := make(chan struct{})
	defer close(held)
	a.SetStreamHandler(ProtocolBitswap, func(s network.Stream) { <-held; _ = s.Reset() })
	connect(t, a, b.h)
	big := &message.Message{Blocks: []blocks.Block{blocks.NewBlock(bytes.Repeat([]byte{1}, 2<<20))}}
	if err := b.net.SendMessage(context.Background(), a.ID(), big); err == nil {
		t.Fatal("send to a peer that never reads succeeded")
	}
	if st := b.net.Stats(); st.AbandonedSends != 0 || st.PeersBanned != 0 || isBanned(b.net, a.ID()) {
		t.Fatalf("stats %+v: a timeout counted as abandonment", st)
	}
}

func isBanned(n *Libp2pNetwork, p peer.ID) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.isBanned(p)
}

package network

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/network"
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
// disconnected again at the limit.
func TestReconnectingMalformedPeerIsDisconnectedAgain(t *testing.T) {
	a := newNode(t)
	b := newNode(t, WithMaxMalformed(2))
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
	}
}

package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobitswap/bitswap/message"
	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

func TestMessagesFlowBothWays(t *testing.T) {
	a, b := connectedPair(t, nil, nil)
	blk := blocks.NewBlock([]byte("hello bitswap"))
	other := blocks.NewBlock([]byte("something else"))

	// a asks b for the block and whether it has another one.
	want := &message.Message{Full: true, Wantlist: []message.Entry{
		{Cid: blk.Cid(), Priority: 5, WantType: message.WantBlock, SendDontHave: true},
		{Cid: other.Cid(), Priority: 1, WantType: message.WantHave},
	}}
	send(t, a, b.h.ID(), want)
	got := b.rec.waitFor(t, 1, "msg")[0]
	if got.from != a.h.ID() || !got.msg.Full || !slices.Equal(got.msg.Wantlist, want.Wantlist) {
		t.Fatalf("b got %+v from %s, want %+v from %s", got.msg, got.from, want, a.h.ID())
	}

	// b answers with the block and a DONT_HAVE.
	reply := &message.Message{
		Blocks:         []blocks.Block{blk},
		BlockPresences: []message.BlockPresence{{Cid: other.Cid(), Type: message.DontHave}},
	}
	send(t, b, a.h.ID(), reply)
	got = a.rec.waitFor(t, 1, "msg")[0]
	if got.from != b.h.ID() || len(got.msg.Blocks) != 1 || !got.msg.Blocks[0].Cid().Equals(blk.Cid()) ||
		!bytes.Equal(got.msg.Blocks[0].RawData(), blk.RawData()) ||
		!slices.Equal(got.msg.BlockPresences, reply.BlockPresences) {
		t.Fatalf("a got %+v, want %+v", got.msg, reply)
	}

	// Both sides count framed bytes, length prefixes included.
	wantFrame := len(message.AppendFrame(nil, want, message.V120))
	replyFrame := len(message.AppendFrame(nil, reply, message.V120))
	if s := a.net.Stats(); s != (Stats{MessagesSent: 1, MessagesReceived: 1,
		BytesSent: uint64(wantFrame), BytesReceived: uint64(replyFrame)}) {
		t.Errorf("a stats %+v; frames %d sent, %d received", s, wantFrame, replyFrame)
	}
	if s := b.net.Stats(); s != (Stats{MessagesSent: 1, MessagesReceived: 1,
		BytesSent: uint64(replyFrame), BytesReceived: uint64(wantFrame)}) {
		t.Errorf("b stats %+v; frames %d sent, %d received", s, replyFrame, wantFrame)
	}
	if errs := append(a.rec.snapshot("err"), b.rec.snapshot("err")...); len(errs) > 0 {
		t.Errorf("unexpected errors: %v", errs)
	}
}

func TestVersionIsNewestCommonAndOldPeersGetNoHaves(t *testing.T) {
	blk := blocks.NewBlock([]byte("a CIDv0 block, as 1.0.0 requires"))
	wanted := blocks.NewBlock([]byte("wanted"))
	probe := blocks.NewBlock([]byte("probe"))
	full := &message.Message{
		Wantlist: []message.Entry{
			{Cid: wanted.Cid(), Priority: 2, WantType: message.WantBlock},
			{Cid: probe.Cid(), Priority: 1, WantType: message.WantHave},
		},
		Blocks:         []blocks.Block{blk},
		BlockPresences: []message.BlockPresence{{Cid: probe.Cid(), Type: message.Have}},
	}
	for _, v := range []message.Version{message.V100, message.V110, message.V120} {
		for _, restricted := range []string{"receiver", "sender"} {
			t.Run(v.String()+"/"+restricted, func(t *testing.T) {
				var optsA, optsB []Option
				if restricted == "receiver" {
					optsB = []Option{WithProtocols(v)}
				} else {
					optsA = []Option{WithProtocols(v)}
				}
				a, b := connectedPair(t, optsA, optsB)
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				defer cancel()
				for _, pair := range [][2]*node{{a, b}, {b, a}} {
					got, err := pair[0].net.Version(ctx, pair[1].h.ID())
					if err != nil || got != v {
						t.Fatalf("Version = %v, %v; want %v", got, err, v)
					}
				}

				send(t, a, b.h.ID(), full)
				m := b.rec.waitFor(t, 1, "msg")[0].msg
				if len(m.Blocks) != 1 || !m.Blocks[0].Cid().Equals(blk.Cid()) {
					t.Errorf("blocks %v, want [%s]", m.Blocks, blk.Cid())
				}
				wantList := full.Wantlist
				var wantPresences []message.BlockPresence
				if v.SupportsHave() {
					wantPresences = full.BlockPresences
				} else {
					wantList = wantList[:1] // the want-have is dropped
				}
				if !slices.Equal(m.Wantlist, wantList) || !slices.Equal(m.BlockPresences, wantPresences) {
					t.Errorf("got wantlist %v presences %v; want %v and %v",
						m.Wantlist, m.BlockPresences, wantList, wantPresences)
				}
			})
		}
	}
}

func TestNoCommonVersionMeansNoPeerAndFailedSends(t *testing.T) {
	a := newNode(t, WithProtocols(message.V120))
	b := newNode(t, WithProtocols(message.V100))
	connectNoPeers(t, a, b)
}

// connectNoPeers connects a to b, which share no Bitswap protocol ID, and
// checks that neither reports the other and that a cannot send to b.
func connectNoPeers(t *testing.T, a, b *node) {
	t.Helper()
	connect(t, a.h, b.h)
	// Wait until a has b's identify, then give the event goroutine time.
	waitUntil(t, func() bool { p, _ := a.h.Peerstore().GetProtocols(b.h.ID()); return len(p) > 0 })
	time.Sleep(100 * time.Millisecond)

	err := a.net.SendMessage(context.Background(), b.h.ID(), &message.Message{})
	if err == nil || !strings.Contains(err.Error(), b.h.ID().String()) {
		t.Fatalf("SendMessage to a peer without a common protocol: err = %v, want one naming the peer", err)
	}
	if ev := append(a.rec.snapshot("connected"), b.rec.snapshot("connected")...); len(ev) > 0 {
		t.Errorf("reported %v, a peer it cannot talk to", ev)
	}
}

func TestInboundStreamCarriesManyMessages(t *testing.T) {
	b := newNode(t)
	raw := newHost(t)
	connect(t, raw, b.h)
	x, y, z := blocks.NewBlock([]byte("x")), blocks.NewBlock([]byte("y")), blocks.NewBlock([]byte("z"))

	s := openRaw(t, raw, b.h.ID(), ProtocolBitswap)
	writeFrames(t, s, wantMsg(x, 1), wantMsg(y, 2))
	b.rec.waitFor(t, 2, "msg")
	writeFrames(t, s, wantMsg(z, 3)) // a follow-up on the same, still open stream
	_ = s.CloseWrite()

	recs := b.rec.waitFor(t, 4)
	// The peer is reported before its first message, and messages keep
	// their order.
	if recs[0].kind != "connected" || recs[0].from != raw.ID() {
		t.Fatalf("first record %v, want connected %s", recs[0], raw.ID())
	}
	for i, blk := range []blocks.Block{x, y, z} {
		if r := recs[i+1]; r.kind != "msg" || !r.msg.Wantlist[0].Cid.Equals(blk.Cid()) {
			t.Errorf("record %d = %v, want the message for %s", i+1, r, blk.Cid())
		}
	}
	// The stream is closed, not reset, once the peer is done.
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("reading after CloseWrite: %v, want EOF", err)
	}
}

func TestInboundStreamPerMessage(t *testing.T) {
	b := newNode(t)
	raw := newHost(t)
	connect(t, raw, b.h)
	var want []blocks.Block
	for i := range 5 {
		blk := blocks.NewBlock([]byte{byte(i)})
		want = append(want, blk)
		s := openRaw(t, raw, b.h.ID(), ProtocolBitswapOneOne) // an old peer
		writeFrames(t, s, wantMsg(blk, int32(i)))
		_ = s.Close()
		b.rec.waitFor(t, i+1, "msg") // one message per stream, in order
	}
	recs := b.rec.snapshot("msg")
	for i, blk := range want {
		if !recs[i].msg.Wantlist[0].Cid.Equals(blk.Cid()) {
			t.Errorf("message %d is for %s, want %s", i, recs[i].msg.Wantlist[0].Cid, blk.Cid())
		}
	}
	if ev := b.rec.snapshot("connected"); len(ev) != 1 {
		t.Errorf("connected events %v, want exactly one", ev)
	}
}

func TestOversizedFrameIsRejectedBeforeReading(t *testing.T) {
	b := newNode(t, WithMaxMessageSize(1024))
	raw := newHost(t)
	connect(t, raw, b.h)
	good := openRaw(t, raw, b.h.ID(), ProtocolBitswap)
	writeFrames(t, good, wantMsg(blocks.NewBlock([]byte("before")), 1))
	b.rec.waitFor(t, 1, "msg")

	bad := openRaw(t, raw, b.h.ID(), ProtocolBitswap)
	writeRaw(t, bad, 1025, []byte("only the start of a body"))
	rec := b.rec.waitFor(t, 1, "err")[0]
	if rec.from != raw.ID() || !errors.Is(rec.err, message.ErrTooLarge) ||
		!strings.Contains(rec.err.Error(), raw.ID().String()) {
		t.Fatalf("ReceiveError(%s, %v); want ErrTooLarge naming %s", rec.from, rec.err, raw.ID())
	}
	// The bad stream is reset ...
	_ = bad.SetReadDeadline(time.Now().Add(waitTimeout))
	if _, err := bad.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("reading the oversized stream: %v, want a reset", err)
	}
	// ... and the other stream still works.
	writeFrames(t, good, wantMsg(blocks.NewBlock([]byte("after")), 2))
	b.rec.waitFor(t, 2, "msg")
}

func TestMalformedBodyIsReported(t *testing.T) {
	b := newNode(t)
	raw := newHost(t)
	connect(t, raw, b.h)
	s := openRaw(t, raw, b.h.ID(), ProtocolBitswap)
	junk := []byte{0x0a, 0x05, 0xff, 0xff} // wantlist field claiming 5 bytes, with 2
	writeRaw(t, s, uint64(len(junk)), junk)
	rec := b.rec.waitFor(t, 1, "err")[0]
	if rec.from != raw.ID() || !errors.Is(rec.err, message.ErrMalformed) ||
		!strings.Contains(rec.err.Error(), raw.ID().String()) {
		t.Fatalf("ReceiveError(%s, %v); want ErrMalformed naming %s", rec.from, rec.err, raw.ID())
	}
	if msgs := b.rec.snapshot("msg"); len(msgs) > 0 {
		t.Errorf("delivered %d messages from junk", len(msgs))
	}
}

func TestSendTimesOutWhenRemoteNeverReads(t *testing.T) {
	const timeout = 300 * time.Millisecond
	a := newNode(t, WithSendTimeout(timeout, 0))
	stuck := newHost(t)
	held := make(chan struct{})
	defer close(held)
	var streams atomic.Int32
	stuck.SetStreamHandler(ProtocolBitswap, func(s network.Stream) { streams.Add(1); <-held; _ = s.Reset() })
	connect(t, a.h, stuck)

	// Far more than yamux's 256 KiB stream window, so the write blocks.
	big := &message.Message{Blocks: []blocks.Block{blocks.NewBlock(bytes.Repeat([]byte{1}, 2<<20))}}
	start := time.Now()
	err := a.net.SendMessage(context.Background(), stuck.ID(), big)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), stuck.ID().String()) {
		t.Fatalf("SendMessage = %v, want an error naming %s", err, stuck.ID())
	}
	// The slack only absorbs a loaded machine; without the timeout the
	// send would hang for as long as the remote holds the stream.
	if took < timeout || took > timeout+5*time.Second {
		t.Errorf("SendMessage failed after %v, want about %v", took, timeout)
	}
	// A timeout is not retried: one stream was tried.
	if n := streams.Load(); n != 1 {
		t.Errorf("%d streams opened, want 1", n)
	}
	t.Logf("failed after %v: %v", took, err)
}

func TestSendHonoursContext(t *testing.T) {
	a := newNode(t) // default timeout: tens of seconds for this message
	stuck := newHost(t)
	held := make(chan struct{})
	defer close(held)
	stuck.SetStreamHandler(ProtocolBitswap, func(s network.Stream) { <-held; _ = s.Reset() })
	connect(t, a.h, stuck)

	big := &message.Message{Blocks: []blocks.Block{blocks.NewBlock(bytes.Repeat([]byte{2}, 2<<20))}}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := a.net.SendMessage(ctx, stuck.ID(), big)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("SendMessage = %v after %v, want DeadlineExceeded after ~200ms", err, time.Since(start))
	}
}

func TestSenderReusesOneStream(t *testing.T) {
	a := newNode(t)
	remote := newHost(t)
	rs := serveRaw(remote, ProtocolBitswap)
	connect(t, a.h, remote)

	const n = 20
	for i := range n {
		send(t, a, remote.ID(), wantMsg(blocks.NewBlock([]byte{byte(i)}), int32(i)))
	}
	for i := range n {
		if m := rs.next(t); m.Wantlist[0].Priority != int32(i) {
			t.Fatalf("message %d has priority %d", i, m.Wantlist[0].Priority)
		}
	}
	if got := rs.streams.Load(); got != 1 {
		t.Errorf("%d messages opened %d streams, want 1", n, got)
	}
}

func TestSenderReplacesAResetStream(t *testing.T) {
	a := newNode(t)
	remote := newHost(t)
	got := make(chan int32, 10)
	// The remote reads one message per stream and resets it.
	remote.SetStreamHandler(ProtocolBitswap, func(s network.Stream) {
		m, err := readOne(s)
		if err == nil {
			got <- m.Wantlist[0].Priority
		}
		_ = s.Reset()
	})
	connect(t, a.h, remote)

	send(t, a, remote.ID(), wantMsg(blocks.NewBlock([]byte("one")), 1))
	if p := <-got; p != 1 {
		t.Fatalf("first message priority %d", p)
	}
	waitUntil(t, func() bool { return senderStreamReset(a.net, remote.ID()) }) // the reset reached a
	send(t, a, remote.ID(), wantMsg(blocks.NewBlock([]byte("two")), 2))
	select {
	case p := <-got:
		if p != 2 {
			t.Fatalf("second message priority %d", p)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the message after a reset was lost")
	}
}

func TestConnectionEventsInOrder(t *testing.T) {
	a, b := connectedPair(t, nil, nil)
	ctx := context.Background()
	if err := a.net.DisconnectFrom(ctx, b.h.ID()); err != nil {
		t.Fatal(err)
	}
	a.rec.waitFor(t, 1, "disconnected")
	b.rec.waitFor(t, 1, "disconnected")
	if err := b.net.Connect(ctx, peer.AddrInfo{ID: a.h.ID(), Addrs: a.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	a.rec.waitFor(t, 2, "connected")
	b.rec.waitFor(t, 2, "connected")

	for _, n := range []struct {
		name string
		rec  *recorder
		peer peer.ID
	}{{"a", a.rec, b.h.ID()}, {"b", b.rec, a.h.ID()}} {
		var got []string
		for _, r := range n.rec.snapshot() {
			if r.from != n.peer {
				t.Errorf("%s: event about unknown peer: %v", n.name, r)
			}
			got = append(got, r.kind)
		}
		if want := []string{"connected", "disconnected", "connected"}; !slices.Equal(got, want) {
			t.Errorf("%s saw %v, want %v", n.name, got, want)
		}
	}

	// Messages flow again after the reconnection.
	send(t, a, b.h.ID(), wantMsg(blocks.NewBlock([]byte("again")), 1))
	b.rec.waitFor(t, 1, "msg")
}

func TestPeersWithoutBitswapAreNotReported(t *testing.T) {
	a := newNode(t)
	plain := newHost(t)
	connect(t, plain, a.h)
	waitUntil(t, func() bool { p, _ := a.h.Peerstore().GetProtocols(plain.ID()); return len(p) > 0 })
	time.Sleep(100 * time.Millisecond)
	if ev := a.rec.snapshot(); len(ev) > 0 {
		t.Errorf("events for a peer without Bitswap: %v", ev)
	}
}

func TestPeersConnectedBeforeStartAreReported(t *testing.T) {
	ha, hb := newHost(t), newHost(t)
	b := NewFromHost(hb)
	b.Start(newRecorder())
	t.Cleanup(b.Stop)
	connect(t, ha, hb)
	waitUntil(t, func() bool { p, _ := ha.Peerstore().SupportsProtocols(hb.ID(), ProtocolBitswap); return len(p) > 0 })

	a, rec := NewFromHost(ha), newRecorder()
	a.Start(rec)
	t.Cleanup(a.Stop)
	if got := rec.waitFor(t, 1, "connected")[0].from; got != hb.ID() {
		t.Fatalf("connected %s, want %s", got, hb.ID())
	}
}

func TestLatencyAndSelf(t *testing.T) {
	a, b := connectedPair(t, nil, nil)
	if a.net.Self() != a.h.ID() {
		t.Errorf("Self = %s, want %s", a.net.Self(), a.h.ID())
	}
	a.h.Peerstore().RecordLatency(b.h.ID(), 5*time.Millisecond)
	if got := a.net.Latency(b.h.ID()); got != 5*time.Millisecond {
		t.Errorf("Latency = %v after one 5ms sample", got)
	}
	if got := a.net.Latency("unknown"); got != 0 {
		t.Errorf("Latency of an unknown peer = %v, want 0", got)
	}
}

func TestSendTimeoutRule(t *testing.T) {
	c := defaultConfig()
	for _, tc := range []struct {
		size int
		want time.Duration
	}{
		{0, 10 * time.Second},
		{100 << 10, 11 * time.Second},
		{message.MaxMessageSize, 50960 * time.Millisecond}, // 10 s + 4 MiB at 100 KiB/s
	} {
		if got := c.sendTimeout(tc.size); got != tc.want {
			t.Errorf("sendTimeout(%d) = %v, want %v", tc.size, got, tc.want)
		}
	}
	WithSendTimeout(time.Second, 0)(&c)
	if got := c.sendTimeout(message.MaxMessageSize); got != time.Second {
		t.Errorf("without a rate term: %v, want 1s", got)
	}
}

func TestSendToOversizedMessageFailsWithoutRetry(t *testing.T) {
	a, b := connectedPair(t, nil, nil)
	var blks []blocks.Block
	for i := range 5 {
		blks = append(blks, blocks.NewBlock(bytes.Repeat([]byte{byte(i)}, 1<<20)))
	}
	err := a.net.SendMessage(context.Background(), b.h.ID(), &message.Message{Blocks: blks})
	if !errors.Is(err, message.ErrTooLarge) {
		t.Fatalf("SendMessage of a 5 MiB message = %v, want ErrTooLarge", err)
	}
	send(t, a, b.h.ID(), &message.Message{}) // the sender is still usable
	b.rec.waitFor(t, 1, "msg")
}

// waitUntil polls cond until it holds, failing after waitTimeout.
func waitUntil(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSlowPeerDoesNotHoldUpOthers(t *testing.T) {
	a, b := connectedPair(t, []Option{WithSendTimeout(time.Minute, 0)}, nil)
	stuck := newHost(t)
	held := make(chan struct{})
	defer close(held)
	stuck.SetStreamHandler(ProtocolBitswap, func(s network.Stream) { <-held; _ = s.Reset() })
	connect(t, a.h, stuck)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	blocked := make(chan error, blockLanes)
	big := &message.Message{Blocks: []blocks.Block{blocks.NewBlock(bytes.Repeat([]byte{4}, 2<<20))}}
	for range blockLanes {
		go func() { blocked <- a.net.SendMessage(ctx, stuck.ID(), big) }()
	}
	time.Sleep(100 * time.Millisecond)

	// Another message with blocks to the stuck peer waits for a free lane,
	// and gives up with its context ...
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	if err := a.net.SendMessage(short, stuck.ID(), big); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("third send of blocks to the stuck peer = %v, want DeadlineExceeded", err)
	}
	// ... a message without blocks does not wait behind them ...
	if err := a.net.SendMessage(context.Background(), stuck.ID(), &message.Message{}); err != nil {
		t.Errorf("wantlist to the stuck peer = %v, want it written on its own stream", err)
	}
	// ... while sends to other peers go through.
	send(t, a, b.h.ID(), wantMsg(blocks.NewBlock([]byte("meanwhile")), 1))
	b.rec.waitFor(t, 1, "msg")

	cancel()
	for range blockLanes {
		if err := <-blocked; !errors.Is(err, context.Canceled) {
			t.Errorf("blocked send after cancel = %v, want Canceled", err)
		}
	}
}

func TestUnreachablePeerLeavesNoSender(t *testing.T) {
	a := newNode(t, WithSendTimeout(time.Second, 0))
	gone := newHost(t)
	id := gone.ID()
	_ = gone.Close()

	err := a.net.SendMessage(context.Background(), id, &message.Message{})
	if err == nil || !strings.Contains(err.Error(), id.String()) {
		t.Fatalf("SendMessage to a peer with no address = %v, want an error naming it", err)
	}
	a.net.mu.Lock()
	n := len(a.net.senders)
	a.net.mu.Unlock()
	if n != 0 {
		t.Errorf("%d senders kept for a peer that was never reached", n)
	}
}

func TestSenderIsDroppedWhenPeerDisconnects(t *testing.T) {
	a, b := connectedPair(t, nil, nil)
	send(t, a, b.h.ID(), &message.Message{})
	b.rec.waitFor(t, 1, "msg")
	if err := a.net.DisconnectFrom(context.Background(), b.h.ID()); err != nil {
		t.Fatal(err)
	}
	a.rec.waitFor(t, 1, "disconnected")
	waitUntil(t, func() bool {
		a.net.mu.Lock()
		defer a.net.mu.Unlock()
		return len(a.net.senders) == 0
	})
	// The next send dials again and opens a new stream.
	send(t, a, b.h.ID(), &message.Message{})
	b.rec.waitFor(t, 2, "msg")
}

// senderStreamReset reports whether p's sender holds a stream that its
// remote has reset, by reading from it briefly.
func senderStreamReset(n *Libp2pNetwork, p peer.ID) bool {
	s, err := n.lockSender(context.Background(), senderKey{p, 0})
	if err != nil {
		return false
	}
	defer n.unlockSender(s)
	if s.stream == nil {
		return false
	}
	_ = s.stream.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	_, err = s.stream.Read(make([]byte, 1))
	var ne interface{ Timeout() bool }
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestWithProtocolsOffersNewestFirst(t *testing.T) {
	c := defaultConfig()
	WithProtocols(message.V100, message.V120, message.V100)(&c)
	got := protocolIDs(c.prefix, c.versions)
	want := []protocol.ID{ProtocolBitswap, ProtocolBitswapOneZero, ProtocolBitswapNoVers}
	if !slices.Equal(got, want) {
		t.Errorf("protocols %v, want %v", got, want)
	}
	defer func() {
		if recover() == nil {
			t.Error("WithProtocols with no known version did not panic")
		}
	}()
	WithProtocols(message.Version(7))
}

func TestStopWithoutStart(t *testing.T) {
	n := NewFromHost(newHost(t))
	n.Stop()
	if err := n.SendMessage(context.Background(), "someone", &message.Message{}); !errors.Is(err, ErrStopped) {
		t.Errorf("SendMessage after Stop = %v, want ErrStopped", err)
	}
}

func TestReadBody(t *testing.T) {
	var full bodyReserve
	for i := range maxReserved / maxReservedPerPeer { // every body takes the growing path
		if !full.take(peer.ID(fmt.Sprint("other", i)), maxReservedPerPeer) {
			t.Fatal("could not fill the reserve")
		}
	}
	for _, res := range []*bodyReserve{{}, &full} {
		for _, size := range []int{0, 1, bodyChunk, bodyChunk + 1, 3*bodyChunk + 17, 4 << 20} {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i * 7)
			}
			used, _ := res.inUse("p")
			got, err := readBody(bytes.NewReader(data), "p", size, res)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("size %d: err %v, equal %v", size, err, bytes.Equal(got, data))
			}
			if after, mine := res.inUse("p"); after != used || mine != 0 {
				t.Fatalf("size %d: reserve %d (%d of the peer's) after the read, %d before", size, after, mine, used)
			}
		}
	}
}

// firstRead signals on each Read before reading.
type firstRead struct {
	io.Reader
	c chan<- struct{}
}

func (f firstRead) Read(p []byte) (int, error) {
	select {
	case f.c <- struct{}{}:
	default:
	}
	return f.Reader.Read(p)
}

// A peer that announces 4 MiB bodies and trickles bytes holds its share of
// the reserve, and past it each such body costs one chunk, not 4 MiB;
// another peer's bodies are still allocated at once from the rest.
func TestReadBodyTrickleIsBounded(t *testing.T) {
	var res bodyReserve
	var stalled []*io.PipeWriter
	defer func() {
		for _, w := range stalled {
			w.Close()
		}
	}()
	done := make(chan error)
	reading := make(chan struct{}, 8)
	stall := func(p peer.ID) {
		r, w := io.Pipe()
		stalled = append(stalled, w)
		go func() {
			_, err := readBody(firstRead{r, reading}, p, 4<<20, &res)
			done <- err
		}()
		<-reading // allocated (or not) and waiting for bytes
	}
	for range maxReservedPerPeer / (4 << 20) {
		stall("trickler")
	}
	if _, mine := res.inUse("trickler"); mine != maxReservedPerPeer {
		t.Fatalf("the trickler holds %d bytes of the reserve, want its share %d", mine, maxReservedPerPeer)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readBody(bytes.NewReader(make([]byte, 10)), "trickler", 4<<20, &res)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated body: err = %v, want unexpected EOF", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Fatalf("a 10-byte trickle announced as 4 MiB, past the peer's share, allocated %d bytes", n)
	}
	stall("honest")
	if all, mine := res.inUse("honest"); mine != 4<<20 || all != maxReservedPerPeer+4<<20 {
		t.Fatalf("another peer's body: %d reserved for it, %d in all; want 4 MiB, %d", mine, all, maxReservedPerPeer+4<<20)
	}
	for _, w := range stalled {
		w.Close()
	}
	for range stalled {
		if err := <-done; !errors.Is(err, io.EOF) {
			t.Fatalf("stalled body: err = %v, want EOF", err)
		}
	}
	stalled = nil
	if all, _ := res.inUse(""); all != 0 || len(res.per) != 0 {
		t.Fatalf("reserve holds %d bytes (%d peers) after every read ended", all, len(res.per))
	}
}

// With a protocol prefix every version is spoken under the prefixed ID, and
// only there: two prefixed nodes talk on the version they share.
func TestProtocolPrefixOnEveryVersion(t *testing.T) {
	const prefix = "/celestia"
	for _, v := range []message.Version{message.V100, message.V110, message.V120} {
		t.Run(v.String(), func(t *testing.T) {
			a, b := connectedPair(t, []Option{WithProtocolPrefix(prefix)}, []Option{WithProtocolPrefix(prefix), WithProtocols(v)})
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			if got, err := a.net.Version(ctx, b.h.ID()); err != nil || got != v {
				t.Fatalf("Version = %v, %v; want %v", got, err, v)
			}
			blk := blocks.NewBlock([]byte("prefixed"))
			send(t, a, b.h.ID(), &message.Message{Blocks: []blocks.Block{blk}})
			if m := b.rec.waitFor(t, 1, "msg")[0].msg; len(m.Blocks) != 1 || !m.Blocks[0].Cid().Equals(blk.Cid()) {
				t.Fatalf("received blocks %v, want [%s]", m.Blocks, blk.Cid())
			}
			registered := b.h.Mux().Protocols()
			for _, id := range protocolIDs("", []message.Version{v}) {
				if !slices.Contains(registered, prefix+id) {
					t.Errorf("%s not registered (host has %v)", prefix+id, registered)
				}
				if slices.Contains(registered, id) {
					t.Errorf("the plain %s is registered too", id)
				}
			}
		})
	}
}

// A node with a prefix and one without are not Bitswap peers of each other.
func TestProtocolPrefixMismatchMeansNoPeer(t *testing.T) {
	a := newNode(t, WithProtocolPrefix("/celestia"))
	for _, other := range []*node{newNode(t), newNode(t, WithProtocolPrefix("/other"))} {
		connectNoPeers(t, a, other)
	}
}

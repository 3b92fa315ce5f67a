package network

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobitswap/bitswap/message"
	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// waitTimeout bounds every wait for something that should happen promptly.
const waitTimeout = 10 * time.Second

// newHost returns a libp2p host listening on loopback TCP, closed when the
// test ends.
func newHost(t testing.TB) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// connect dials b from a.
func connect(t testing.TB, a, b host.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// record is one call made to a recorder.
type record struct {
	kind string // "msg", "err", "connected", "disconnected"
	from peer.ID
	msg  *message.Message
	err  error
}

func (r record) String() string { return fmt.Sprintf("%s %s", r.kind, r.from.ShortString()) }

// recorder is a Receiver that logs every call in order.
type recorder struct {
	mu      sync.Mutex
	log     []record
	changed chan struct{}

	stopped atomic.Bool  // set by the test once Stop returned
	late    atomic.Int32 // calls made after stopped was set
	reject  atomic.Bool  // ReceiveMessage rejects every message
}

// errRejected is what a recorder told to reject returns.
var errRejected = errors.New("rejected by the test's receiver")

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) add(rec record) {
	if r.stopped.Load() {
		r.late.Add(1)
	}
	r.mu.Lock()
	r.log = append(r.log, rec)
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) ReceiveMessage(_ context.Context, from peer.ID, msg *message.Message) error {
	r.add(record{kind: "msg", from: from, msg: msg})
	if r.reject.Load() {
		return errRejected
	}
	return nil
}
func (r *recorder) ReceiveError(from peer.ID, err error) {
	r.add(record{kind: "err", from: from, err: err})
}
func (r *recorder) PeerConnected(p peer.ID)    { r.add(record{kind: "connected", from: p}) }
func (r *recorder) PeerDisconnected(p peer.ID) { r.add(record{kind: "disconnected", from: p}) }

// snapshot returns the records so far of the given kinds (all if none).
func (r *recorder) snapshot(kinds ...string) []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []record
	for _, rec := range r.log {
		if len(kinds) == 0 || containsStr(kinds, rec.kind) {
			out = append(out, rec)
		}
	}
	return out
}

func containsStr(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// waitFor waits until at least n records of the given kinds exist and
// returns them, failing the test after waitTimeout.
func (r *recorder) waitFor(t testing.TB, n int, kinds ...string) []record {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		if recs := r.snapshot(kinds...); len(recs) >= n {
			return recs
		}
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %d %v records; have %v", n, kinds, r.snapshot())
		}
	}
}

// node is a started Libp2pNetwork with its host and recorder.
type node struct {
	h   host.Host
	net *Libp2pNetwork
	rec *recorder
}

// newNode starts a network on a fresh host; it is stopped when the test
// ends (before the host closes).
func newNode(t testing.TB, opts ...Option) *node {
	t.Helper()
	h := newHost(t)
	n := &node{h: h, net: NewFromHost(h, opts...), rec: newRecorder()}
	n.net.Start(n.rec)
	t.Cleanup(n.net.Stop)
	return n
}

// connectedPair returns two started nodes that have reported each other.
func connectedPair(t testing.TB, optsA, optsB []Option) (a, b *node) {
	t.Helper()
	a, b = newNode(t, optsA...), newNode(t, optsB...)
	connect(t, a.h, b.h)
	a.rec.waitFor(t, 1, "connected")
	b.rec.waitFor(t, 1, "connected")
	return a, b
}

// send sends msg from a to p, failing the test on error.
func send(t testing.TB, n *node, p peer.ID, msg *message.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := n.net.SendMessage(ctx, p, msg); err != nil {
		t.Fatal(err)
	}
}

// openRaw opens a raw stream from h to p on proto, for writing frames by
// hand.
func openRaw(t testing.TB, h host.Host, p peer.ID, proto protocol.ID) network.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	s, err := h.NewStream(ctx, p, proto)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// writeFrames writes each message as one V120 frame.
func writeFrames(t testing.TB, s network.Stream, msgs ...*message.Message) {
	t.Helper()
	for _, m := range msgs {
		if _, err := s.Write(message.AppendFrame(nil, m, message.V120)); err != nil {
			t.Fatal(err)
		}
	}
}

// writeRaw writes a length prefix of size followed by body.
func writeRaw(t testing.TB, s network.Stream, size uint64, body []byte) {
	t.Helper()
	frame := binary.AppendUvarint(nil, size)
	if _, err := s.Write(append(frame, body...)); err != nil {
		t.Fatal(err)
	}
}

// rawServer is a plain libp2p stream handler standing in for a remote
// Bitswap peer: it counts streams and decodes the frames it reads.
type rawServer struct {
	streams atomic.Int32
	msgs    chan *message.Message
}

func serveRaw(h host.Host, proto protocol.ID) *rawServer {
	rs := &rawServer{msgs: make(chan *message.Message, 100)}
	h.SetStreamHandler(proto, func(s network.Stream) {
		rs.streams.Add(1)
		br := bufio.NewReader(s)
		for {
			size, err := binary.ReadUvarint(br)
			if err != nil {
				_ = s.Reset()
				return
			}
			body := make([]byte, size)
			if _, err := io.ReadFull(br, body); err != nil {
				_ = s.Reset()
				return
			}
			m, err := message.Unmarshal(body)
			if err != nil {
				_ = s.Reset()
				return
			}
			rs.msgs <- m
		}
	})
	return rs
}

func (rs *rawServer) next(t testing.TB) *message.Message {
	t.Helper()
	select {
	case m := <-rs.msgs:
		return m
	case <-time.After(waitTimeout):
		t.Fatal("raw server: no message")
		return nil
	}
}

// wantMsg is a message whose wantlist names blk, so receipt can be matched.
func wantMsg(blk blocks.Block, prio int32) *message.Message {
	return &message.Message{Wantlist: []message.Entry{{Cid: blk.Cid(), Priority: prio}}}
}

// ourGoroutines returns the stacks of goroutines running this package's
// network code (not the tests).
func ourGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var ours []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "bitswap/network.(*Libp2pNetwork)") ||
			strings.Contains(g, "bitswap/network.(*eventQueue)") {
			ours = append(ours, g)
		}
	}
	return ours
}

// readOne reads and decodes one frame from r.
func readOne(r io.Reader) (*message.Message, error) {
	br := bufio.NewReader(r)
	size, err := binary.ReadUvarint(br)
	if err != nil {
		return nil, err
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	return message.Unmarshal(body)
}

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/gobitswap/bitswap/message"
)

// The quiet suite's quiet-peers child: one process hosting N libp2p hosts
// (TCP on 127.0.0.1, libp2p's defaults) that speak Bitswap and hold
// nothing. Each reads every message it is sent, decodes it with package
// message and counts, per CID, the want-have and want-block entries and the
// cancels it got. In mode "silent" it never answers; in mode "donthave" it
// answers every entry that asks for it (sendDontHave, on 1.2.0) with a
// DONT_HAVE, on a stream of its own to the asking peer, and counts the wants
// for a CID that reach it after it sent its DONT_HAVE for that CID (the
// asker has no reason to ask again: nothing changed). The child prints
// "peer <multiaddr>/p2p/<id>" per host, then "ready"; when its stdin closes
// or it gets SIGTERM or SIGINT, it prints a quietResult as JSON and exits.

// Modes of the quiet peers.
const (
	quietSilent   = "silent"
	quietDontHave = "donthave"
)

// quietProtos are the Bitswap protocols the quiet hosts speak, newest first.
var quietProtos = []protocol.ID{"/ipfs/bitswap/1.2.0", "/ipfs/bitswap/1.1.0", "/ipfs/bitswap/1.0.0", "/ipfs/bitswap"}

// quietCounts is what one host got for one CID (or for all, summed).
type quietCounts struct {
	WantHave  int `json:"want_have,omitempty"`
	WantBlock int `json:"want_block,omitempty"`
	Cancel    int `json:"cancel,omitempty"`
	// DontHave counts the DONT_HAVEs the host sent (mode donthave).
	DontHave int `json:"dont_have,omitempty"`
	// AfterDontHave counts the wants (have or block) that arrived after
	// the host had sent a DONT_HAVE for the CID.
	AfterDontHave int `json:"after_dont_have,omitempty"`
}

// entries is every wantlist entry, cancels included.
func (c quietCounts) entries() int { return c.WantHave + c.WantBlock + c.Cancel }

func (c *quietCounts) add(o quietCounts) {
	c.WantHave += o.WantHave
	c.WantBlock += o.WantBlock
	c.Cancel += o.Cancel
	c.DontHave += o.DontHave
	c.AfterDontHave += o.AfterDontHave
}

// quietEvent is one entry received, or one DONT_HAVE sent, with its time.
type quietEvent struct {
	Host int    `json:"host"`
	At   int64  `json:"at"` // Unix nanoseconds (the parent runs on the same clock)
	Cid  string `json:"cid"`
	// Kind is want-have, want-block, cancel (entries received) or
	// dont-have (a DONT_HAVE sent).
	Kind         string `json:"kind"`
	SendDontHave bool   `json:"sdh,omitempty"`
}

// quietHostResult is one host's counts.
type quietHostResult struct {
	ID       string `json:"id"`
	Messages int    `json:"messages"`
	// Full counts the messages whose wantlist was marked full.
	Full int `json:"full,omitempty"`
	// Protocols counts the messages per protocol they came on.
	Protocols map[string]int         `json:"protocols,omitempty"`
	Total     quietCounts            `json:"total"`
	Cids      map[string]quietCounts `json:"cids,omitempty"`
}

// quietResult is what a quiet-peers child prints when it stops.
type quietResult struct {
	Mode  string            `json:"mode"`
	Hosts []quietHostResult `json:"hosts"`
	// Events lists entries received and DONT_HAVEs sent, in order, up to
	// quietMaxEvents; EventsDropped counts the rest.
	Events        []quietEvent `json:"events,omitempty"`
	EventsDropped int          `json:"events_dropped,omitempty"`
	// BadMessages counts messages that did not decode, SendErrors the
	// DONT_HAVE messages that could not be sent.
	BadMessages int `json:"bad_messages,omitempty"`
	SendErrors  int `json:"send_errors,omitempty"`
}

const quietMaxEvents = 20000

// quietPeers is the child's hosts, usable in-process (the unit test).
type quietPeers struct {
	mode   string
	hosts  []*quietHost
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu            sync.Mutex
	events        []quietEvent
	eventsDropped int
	bad, sendErrs int
}

type quietHost struct {
	qp  *quietPeers
	idx int
	h   host.Host

	mu        sync.Mutex
	messages  int
	full      int
	protocols map[string]int
	cids      map[string]*quietCounts
	answered  map[string]bool // a DONT_HAVE for the CID has been sent
	senders   map[peer.ID]*quietSender
}

// quietSender sends one host's DONT_HAVEs to one peer, in order, on one
// stream (opened again after a failure).
type quietSender struct {
	mu      sync.Mutex
	pending []message.BlockPresence
	wake    chan struct{}
}

func newQuietPeers(n int, mode string) (*quietPeers, error) {
	if mode != quietSilent && mode != quietDontHave {
		return nil, fmt.Errorf("quiet peers: unknown mode %q", mode)
	}
	ctx, cancel := context.WithCancel(context.Background())
	qp := &quietPeers{mode: mode, ctx: ctx, cancel: cancel}
	for i := range n {
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
		if err != nil {
			qp.close()
			return nil, err
		}
		qh := &quietHost{qp: qp, idx: i, h: h, protocols: map[string]int{}, cids: map[string]*quietCounts{},
			answered: map[string]bool{}, senders: map[peer.ID]*quietSender{}}
		for _, p := range quietProtos {
			h.SetStreamHandler(p, qh.handle)
		}
		qp.hosts = append(qp.hosts, qh)
	}
	return qp, nil
}

// addrs are the hosts' multiaddrs, with /p2p/ID.
func (qp *quietPeers) addrs() []string {
	out := make([]string, len(qp.hosts))
	for i, qh := range qp.hosts {
		out[i] = fmt.Sprintf("%s/p2p/%s", qh.h.Addrs()[0], qh.h.ID())
	}
	return out
}

// close stops every host; the counts stay readable.
func (qp *quietPeers) close() {
	qp.cancel()
	for _, qh := range qp.hosts {
		_ = qh.h.Close()
	}
	qp.wg.Wait()
}

func (qp *quietPeers) event(ev quietEvent) {
	qp.mu.Lock()
	defer qp.mu.Unlock()
	if len(qp.events) >= quietMaxEvents {
		qp.eventsDropped++
		return
	}
	qp.events = append(qp.events, ev)
}

// result is the counts so far.
func (qp *quietPeers) result() quietResult {
	r := quietResult{Mode: qp.mode}
	for _, qh := range qp.hosts {
		qh.mu.Lock()
		hr := quietHostResult{ID: qh.h.ID().String(), Messages: qh.messages, Full: qh.full,
			Protocols: map[string]int{}, Cids: map[string]quietCounts{}}
		for p, n := range qh.protocols {
			hr.Protocols[p] = n
		}
		for c, n := range qh.cids {
			hr.Cids[c] = *n
			hr.Total.add(*n)
		}
		qh.mu.Unlock()
		r.Hosts = append(r.Hosts, hr)
	}
	qp.mu.Lock()
	r.Events = append([]quietEvent(nil), qp.events...)
	r.EventsDropped, r.BadMessages, r.SendErrors = qp.eventsDropped, qp.bad, qp.sendErrs
	qp.mu.Unlock()
	return r
}

// handle reads one inbound stream to its end.
func (qh *quietHost) handle(s network.Stream) {
	from, proto := s.Conn().RemotePeer(), s.Protocol()
	readMessages(s, func(msg *message.Message, err error) {
		if err != nil {
			qh.qp.mu.Lock()
			qh.qp.bad++
			qh.qp.mu.Unlock()
			return
		}
		qh.onMessage(from, proto, msg)
	})
}

func (qh *quietHost) counts(c string) *quietCounts {
	n := qh.cids[c]
	if n == nil {
		n = &quietCounts{}
		qh.cids[c] = n
	}
	return n
}

// onMessage counts msg's entries and, in mode donthave, queues the
// DONT_HAVEs it asks for.
func (qh *quietHost) onMessage(from peer.ID, proto protocol.ID, msg *message.Message) {
	now := time.Now().UnixNano()
	var answers []message.BlockPresence
	qh.mu.Lock()
	qh.messages++
	qh.protocols[string(proto)]++
	if msg.Full {
		qh.full++
	}
	for _, e := range msg.Wantlist {
		c := e.Cid.String()
		n := qh.counts(c)
		ev := quietEvent{Host: qh.idx, At: now, Cid: c, SendDontHave: e.SendDontHave}
		switch {
		case e.Cancel:
			n.Cancel++
			ev.Kind = "cancel"
		case e.WantType == message.WantHave:
			n.WantHave++
			ev.Kind = "want-have"
		default:
			n.WantBlock++
			ev.Kind = "want-block"
		}
		if !e.Cancel && qh.answered[c] {
			n.AfterDontHave++
		}
		qh.qp.event(ev)
		if !e.Cancel && e.SendDontHave && qh.qp.mode == quietDontHave && proto == quietProtos[0] {
			answers = append(answers, message.BlockPresence{Cid: e.Cid, Type: message.DontHave})
		}
	}
	var snd *quietSender
	if len(answers) > 0 {
		snd = qh.senders[from]
		if snd == nil {
			snd = &quietSender{wake: make(chan struct{}, 1)}
			qh.senders[from] = snd
			qh.qp.wg.Add(1)
			go qh.send(from, snd)
		}
	}
	qh.mu.Unlock()
	if snd != nil {
		snd.mu.Lock()
		snd.pending = append(snd.pending, answers...)
		snd.mu.Unlock()
		select {
		case snd.wake <- struct{}{}:
		default:
		}
	}
}

// send writes the queued DONT_HAVEs to p, all that are queued in one
// message, and marks each CID answered once its message is written.
func (qh *quietHost) send(p peer.ID, snd *quietSender) {
	defer qh.qp.wg.Done()
	ctx := qh.qp.ctx
	var s network.Stream
	defer func() {
		if s != nil {
			_ = s.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-snd.wake:
		}
		snd.mu.Lock()
		pres := snd.pending
		snd.pending = nil
		snd.mu.Unlock()
		if len(pres) == 0 {
			continue
		}
		err := func() error {
			if s == nil {
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				ns, err := qh.h.NewStream(sctx, p, quietProtos[0])
				if err != nil {
					return err
				}
				s = ns
			}
			return writeCtx(ctx, s, message.AppendFrame(nil, &message.Message{BlockPresences: pres}, message.V120))
		}()
		if err != nil {
			if s != nil {
				_ = s.Reset()
				s = nil
			}
			qh.qp.mu.Lock()
			qh.qp.sendErrs++
			qh.qp.mu.Unlock()
			continue
		}
		now := time.Now().UnixNano()
		qh.mu.Lock()
		for _, bp := range pres {
			c := bp.Cid.String()
			qh.answered[c] = true
			qh.counts(c).DontHave++
		}
		qh.mu.Unlock()
		for _, bp := range pres {
			qh.qp.event(quietEvent{Host: qh.idx, At: now, Cid: bp.Cid.String(), Kind: "dont-have"})
		}
	}
}

// childQuietPeers runs s.N quiet hosts of mode s.Mode until its stdin
// closes or a signal comes, then prints their counts.
func childQuietPeers(s childSpec) error {
	qp, err := newQuietPeers(s.N, s.Mode)
	if err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	for _, a := range qp.addrs() {
		fmt.Printf("peer %s\n", a)
	}
	fmt.Println("ready")
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	select {
	case <-eof:
	case <-sig:
	}
	qp.close()
	return json.NewEncoder(os.Stdout).Encode(qp.result())
}

// quietProc is a running quiet-peers child.
type quietProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	addrs  []string
	stderr *tailBuffer
	rest   chan []byte // its stdout after "ready", once it ends
}

// startQuietPeers starts a quiet-peers child of n hosts in mode and waits
// for their addresses.
func startQuietPeers(n int, mode string) (*quietProc, error) {
	q := &quietProc{stderr: &tailBuffer{}, rest: make(chan []byte, 1)}
	cmd, stdin, stdout, err := startChild(childSpec{Role: "quiet-peers", N: n, Mode: mode}, q.stderr)
	if err != nil {
		return nil, err
	}
	q.cmd, q.stdin = cmd, stdin
	ready := make(chan error, 1)
	go func() {
		br := bufio.NewReader(stdout)
		sent := false
		for !sent {
			line, err := br.ReadString('\n')
			line = strings.TrimSpace(line)
			if a, ok := strings.CutPrefix(line, "peer "); ok {
				q.addrs = append(q.addrs, a)
			} else if line == "ready" {
				ready <- nil
				sent = true
			}
			if err != nil && !sent {
				ready <- errors.New("quiet peers exited before they were ready")
				q.rest <- nil
				return
			}
		}
		b, _ := io.ReadAll(br)
		q.rest <- b
	}()
	select {
	case err = <-ready:
	case <-time.After(2 * time.Minute):
		err = errors.New("quiet peers not ready after 2 minutes")
	}
	if err == nil && len(q.addrs) != n {
		err = fmt.Errorf("quiet peers printed %d addresses, want %d", len(q.addrs), n)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%w; stderr: %s", err, q.stderr)
	}
	return q, nil
}

// stop tells the child to stop and returns its counts.
func (q *quietProc) stop() (quietResult, error) {
	var r quietResult
	_ = q.stdin.Close()
	var out []byte
	select {
	case out = <-q.rest:
	case <-time.After(time.Minute):
		_ = q.cmd.Process.Kill()
		out = <-q.rest
	}
	if err := q.cmd.Wait(); err != nil {
		return r, fmt.Errorf("quiet peers exit: %w; stderr: %s", err, q.stderr)
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return r, fmt.Errorf("quiet peers output (%d bytes): %w; stderr: %s", len(out), err, q.stderr)
	}
	return r, nil
}

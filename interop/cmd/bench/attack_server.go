package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/gobitswap/bitswap/message"
	bsnetwork "github.com/gobitswap/bitswap/network"
)

// The attackers of the attack suite's server attacks. Each runs in this
// (the parent) process on real libp2p hosts and writes uvarint-framed
// Bitswap messages, encoded with our message package, on raw
// /ipfs/bitswap/1.2.0 streams.

// attackEnv is what every attack is given.
type attackEnv struct {
	sz   atkSizes
	cids []cid.Cid // the server's blocks
	seed uint64    // their data is genData(seed, i)
	logf func(format string, args ...any)

	mu    sync.Mutex
	cache map[string][][]byte // prepared frames, shared by both implementations' runs
}

// frames returns the frames cached under key, building them once.
func (e *attackEnv) frames(key string, build func() [][]byte) [][]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	if f, ok := e.cache[key]; ok {
		return f
	}
	if e.cache == nil {
		e.cache = map[string][][]byte{}
	}
	f := build()
	e.cache[key] = f
	return f
}

// attackCtl lets an attack mark phases in the server's samples and say
// when it is armed (fully under way), which starts the clock for the
// honest client.
type attackCtl struct {
	srv       *serverProc
	armedOnce sync.Once
	armedCh   chan struct{}
}

func (c *attackCtl) mark(label string) { c.srv.mark(label) }

func (c *attackCtl) armed() {
	c.armedOnce.Do(func() {
		c.srv.mark("armed")
		close(c.armedCh)
	})
}

// attackReport is what an attacker says about its run.
type attackReport struct {
	// Dropped counts the attacker's connections that the server closed
	// (-1: not applicable, the attacker closes them itself).
	Dropped int64
	Note    string // what the attacker did and got
}

// serverAttack is one row of the server attacks.
type serverAttack struct {
	id, name string
	fullOnly bool // not run with -short
	run      func(ctx context.Context, e *attackEnv, srv peer.AddrInfo, ctl *attackCtl) (attackReport, error)
}

const bitswapProto = bsnetwork.ProtocolBitswap

// attacker is a libp2p host attacking one server. It dials out only (no
// listen address), so a server cannot dial it back once disconnected.
type attacker struct {
	h       host.Host
	srv     peer.AddrInfo
	dropped atomic.Int64 // connections to srv closed while we were not closing
	closing atomic.Bool
	recv    atomic.Int64 // bytes the server sent us

	mu   sync.Mutex
	held []network.Stream // streams opened by the server that we keep and never read
}

// newAttacker starts an attacking host; handler serves the streams the
// server opens to it (nil: read and discard).
func newAttacker(srv peer.AddrInfo, handler func(*attacker, network.Stream)) (*attacker, error) {
	h, err := libp2p.New(libp2p.NoListenAddrs, libp2p.ResourceManager(&network.NullResourceManager{}),
		libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		return nil, err
	}
	a := &attacker{h: h, srv: srv}
	h.Network().Notify(&network.NotifyBundle{DisconnectedF: func(_ network.Network, c network.Conn) {
		if !a.closing.Load() && c.RemotePeer() == srv.ID {
			a.dropped.Add(1)
		}
	}})
	if handler == nil {
		handler = (*attacker).discard
	}
	h.SetStreamHandler(bitswapProto, func(s network.Stream) { handler(a, s) })
	return a, nil
}

func (a *attacker) close() {
	a.closing.Store(true)
	a.mu.Lock()
	for _, s := range a.held {
		_ = s.Reset()
	}
	a.held = nil
	a.mu.Unlock()
	_ = a.h.Close()
}

// discard reads what the server sends and throws it away.
func (a *attacker) discard(s network.Stream) {
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		a.recv.Add(int64(n))
		if err != nil {
			_ = s.Reset()
			return
		}
	}
}

// hold keeps the stream open and never reads it.
func (a *attacker) hold(s network.Stream) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing.Load() {
		_ = s.Reset()
		return
	}
	a.held = append(a.held, s)
}

// connect dials the server unless connected.
func (a *attacker) connect(ctx context.Context) error {
	if a.h.Network().Connectedness(a.srv.ID) == network.Connected {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return a.h.Connect(cctx, a.srv)
}

// stream connects if needed and opens a Bitswap stream to the server.
func (a *attacker) stream(ctx context.Context) (network.Stream, error) {
	if err := a.connect(ctx); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return a.h.NewStream(sctx, a.srv.ID, bitswapProto)
}

// writeCtx writes b to s; ctx ending resets s, which ends a blocked write.
func writeCtx(ctx context.Context, s network.Stream, b []byte) error {
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	_, err := s.Write(b)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// floodStats counts what a flood wrote.
type floodStats struct {
	frames, bytes  int64
	streams        int64 // streams opened
	failed         int64 // writes that failed (the server reset the stream or closed the connection)
	connectsFailed int64
}

// flood writes frames, in turn, to the server until ctx ends: perStream
// frames per stream (0: as many as it takes), opening a new stream, and
// reconnecting, whenever the server resets one or closes the connection.
// The writes block while the server does not read: it paces the flood.
func (a *attacker) flood(ctx context.Context, frames [][]byte, perStream int, st *floodStats) {
	var s network.Stream
	onStream := 0
	for i := 0; ctx.Err() == nil; i++ {
		if s == nil {
			var err error
			if s, err = a.stream(ctx); err != nil {
				st.connectsFailed++
				sleepCtx(ctx, 20*time.Millisecond)
				continue
			}
			st.streams++
			onStream = 0
		}
		f := frames[i%len(frames)]
		if err := writeCtx(ctx, s, f); err != nil {
			_ = s.Reset()
			s = nil
			if ctx.Err() == nil {
				st.failed++
			}
			continue
		}
		st.frames++
		st.bytes += int64(len(f))
		if onStream++; perStream > 0 && onStream >= perStream {
			_ = s.Close()
			s = nil
		}
	}
	if s != nil {
		_ = s.Reset()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// randomCid is a CIDv1 (raw, sha2-256) of no block: a random digest.
func randomCid(r *rand.Rand) cid.Cid {
	var d [32]byte
	for i := 0; i < len(d); i += 8 {
		binary.LittleEndian.PutUint64(d[i:], r.Uint64())
	}
	h, err := mh.Encode(d[:], mh.SHA2_256)
	if err != nil {
		panic(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

func frame(m *message.Message) []byte { return message.AppendFrame(nil, m, message.V120) }

// wantFrames are the frames of the want floods: messages of
// sz.entriesPerMsg entries, sz.floodEntries in all, where one entry in
// presentEvery names a block the server has (taken in turn) and the rest
// random CIDs it does not.
func (e *attackEnv) wantFrames(typ message.WantType, sendDontHave bool) [][]byte {
	key := fmt.Sprintf("want-%d-%v", typ, sendDontHave)
	return e.frames(key, func() [][]byte {
		r := rand.New(rand.NewPCG(uint64(typ)+1, 99))
		per := e.sz.entriesPerMsg
		var out [][]byte
		for f := 0; f < e.sz.floodEntries/per; f++ {
			entries := make([]message.Entry, per)
			for j := range entries {
				k := f*per + j
				c := randomCid(r)
				if k%presentEvery == 0 {
					c = e.cids[(k/presentEvery)%len(e.cids)]
				}
				entries[j] = message.Entry{Cid: c, Priority: int32(per - j), WantType: typ, SendDontHave: sendDontHave}
			}
			out = append(out, frame(&message.Message{Wantlist: entries}))
		}
		return out
	})
}

// presentEvery: one entry in this many of a want flood names a block the
// server has.
const presentEvery = 1000

func mibOf(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func floodNote(st *floodStats, what string, perFrame int, a *attacker) string {
	s := fmt.Sprintf("sent %s %s in %d messages (%s)", countName(int(st.frames)*perFrame), what, st.frames, mibOf(st.bytes))
	if st.failed > 0 {
		s += fmt.Sprintf("; %d writes failed", st.failed)
	}
	if a != nil && a.recv.Load() > 0 {
		s += "; got back " + mibOf(a.recv.Load())
	}
	return s
}

// singleFlood is an attack by one peer writing frames in turn.
func singleFlood(frames func(*attackEnv) [][]byte, perStream int, note func(*floodStats, *attacker) string) func(context.Context, *attackEnv, peer.AddrInfo, *attackCtl) (attackReport, error) {
	return func(ctx context.Context, e *attackEnv, srv peer.AddrInfo, ctl *attackCtl) (attackReport, error) {
		fr := frames(e)
		a, err := newAttacker(srv, nil)
		if err != nil {
			return attackReport{}, err
		}
		defer a.close()
		if err := a.connect(ctx); err != nil {
			return attackReport{}, err
		}
		ctl.armed()
		var st floodStats
		a.flood(ctx, fr, perStream, &st)
		a.closing.Store(true)
		return attackReport{Dropped: a.dropped.Load(), Note: note(&st, a)}, nil
	}
}

func serverAttacks() []serverAttack {
	return []serverAttack{
		{id: "1", name: "want-block flood, 50,000 per message", run: singleFlood(
			func(e *attackEnv) [][]byte { return e.wantFrames(message.WantBlock, false) }, 0,
			func(st *floodStats, a *attacker) string {
				return floodNote(st, "want-block entries (1 in 1,000 for a block it has)", 50000, a)
			})},
		{id: "2", name: "want-have flood with sendDontHave", run: singleFlood(
			func(e *attackEnv) [][]byte { return e.wantFrames(message.WantHave, true) }, 0,
			func(st *floodStats, a *attacker) string {
				return floodNote(st, "want-have+sendDontHave entries (1 in 1,000 for a block it has)", 50000, a)
			})},
		{id: "3", name: "200 streams trickling 1 byte/s", run: trickle},
		{id: "4a", name: "8 MiB frames (limit 4 MiB)", run: singleFlood(
			func(e *attackEnv) [][]byte { return e.frames("oversize", oversizeFrame) }, 1,
			func(st *floodStats, _ *attacker) string {
				return fmt.Sprintf("%d frames announcing 8 MiB, one per stream", st.frames+st.failed)
			})},
		{id: "4b", name: "garbage frames", run: singleFlood(
			func(e *attackEnv) [][]byte { return e.frames("garbage", garbageFrames) }, 0,
			func(st *floodStats, _ *attacker) string {
				return fmt.Sprintf("%s frames that do not decode (100 wants, then a bad tag), in rounds of 1,000; %d streams", countName(int(st.frames)), st.streams)
			})},
		{id: "4c", name: "10 KiB CIDs in wantlists", run: singleFlood(
			func(e *attackEnv) [][]byte { return e.frames("bigcids", bigCidFrames) }, 0,
			func(st *floodStats, a *attacker) string {
				return floodNote(st, "wants of 10 KiB CIDs", bigCidsPerMsg, a)
			})},
		{id: "4d", name: "wants every block, never reads", run: neverReads},
		{id: "5", name: "unrequested 4 KiB blocks pushed", run: singleFlood(
			func(e *attackEnv) [][]byte { return e.frames("unrequested", unrequestedFrames) }, 0,
			func(st *floodStats, _ *attacker) string {
				return floodNote(st, "unrequested 4 KiB blocks", smallPerMsg, nil)
			})},
		{id: "6", name: "blocks with wrong data (256 KiB)", run: singleFlood(
			func(e *attackEnv) [][]byte { return e.frames("wrongdata", e.wrongDataFrames) }, 0,
			func(st *floodStats, _ *attacker) string {
				return floodNote(st, "256 KiB blocks, each a server block with one byte changed", bigPerMsg, nil)
			})},
		{id: "7", name: "many peers × 1,024 wants", run: manyPeers(0)},
		// 7 fills the server host's inbound connections (libp2p's default
		// resource limits admit about 250 here), which locks the honest
		// client out; 7b leaves it room, to see what the wants cost.
		{id: "7b", name: "200 peers × 1,024 wants", run: manyPeers(200), fullOnly: true},
		{id: "8", name: "disconnects mid-transfer, repeatedly", run: disconnects},
		{id: "9", name: "want/cancel toggling", run: singleFlood(
			func(e *attackEnv) [][]byte { return e.frames("toggle", e.toggleFrames) }, 0,
			func(st *floodStats, a *attacker) string {
				return floodNote(st, "entries, alternately want-block+sendDontHave and cancel for the same 1,000 CIDs (100 it has)", 1000, a)
			})},
	}
}

// oversizeFrame is one frame announcing 8 MiB, with its 8 MiB.
func oversizeFrame() [][]byte {
	const size = 8 << 20
	b := protowire.AppendVarint(nil, size)
	return [][]byte{append(b, make([]byte, size)...)}
}

// garbageFrames are 1,000 frames that do not decode: a wantlist of 100
// wants, then a tag of the reserved wire type 7, so a decoder reads the
// wants before it finds out.
func garbageFrames() [][]byte {
	r := rand.New(rand.NewPCG(4, 2))
	out := make([][]byte, 1000)
	for i := range out {
		entries := make([]message.Entry, 100)
		for j := range entries {
			entries[j] = message.Entry{Cid: randomCid(r), Priority: 1}
		}
		body, _, err := message.ParseFrame(frame(&message.Message{Wantlist: entries}), 0)
		if err != nil {
			panic(err)
		}
		body = append(body, 0x0f) // field 1, wire type 7
		out[i] = append(protowire.AppendVarint(nil, uint64(len(body))), body...)
	}
	return out
}

const bigCidsPerMsg = 400 // 400 × 10 KiB fits in the 4 MiB limit

// bigCidFrames are messages of 400 want-block entries, each for a CID of
// 10 KiB (an identity multihash of 10 KiB of random bytes).
func bigCidFrames() [][]byte {
	r := rand.New(rand.NewPCG(5, 2))
	var out [][]byte
	digest := make([]byte, 10<<10)
	for range 4 {
		entries := make([]message.Entry, bigCidsPerMsg)
		for j := range entries {
			for k := 0; k < len(digest); k += 8 {
				binary.LittleEndian.PutUint64(digest[k:], r.Uint64())
			}
			h, err := mh.Sum(digest, mh.IDENTITY, -1)
			if err != nil {
				panic(err)
			}
			entries[j] = message.Entry{Cid: cid.NewCidV1(cid.Raw, h), Priority: 1, SendDontHave: true}
		}
		out = append(out, frame(&message.Message{Wantlist: entries}))
	}
	return out
}

const (
	smallPerMsg = 900 // 900 × 4 KiB blocks per message
	bigPerMsg   = 15  // 15 × 256 KiB
)

// unrequestedFrames are 4 messages of 900 random 4 KiB blocks each.
func unrequestedFrames() [][]byte {
	var out [][]byte
	for f := range 4 {
		out = append(out, frame(&message.Message{Blocks: genBlocks(uint64(100+f), smallPerMsg, 4<<10)}))
	}
	return out
}

// wrongDataFrames are 4 messages of 15 blocks each, every block a server
// block with its first byte changed: on 1.1.0+ a block carries only its
// CID prefix, so the receiver hashes it to a CID that no one asked for.
func (e *attackEnv) wrongDataFrames() [][]byte {
	var out [][]byte
	for f := range 4 {
		bl := make([]blocks.Block, bigPerMsg)
		for j := range bl {
			data := make([]byte, e.sz.size)
			genData(e.seed, (f*bigPerMsg+j)%len(e.cids), data)
			data[0] ^= 0xff
			b, err := blocks.NewBlockWithCid(data, rawCid(data))
			if err != nil {
				panic(err)
			}
			bl[j] = b
		}
		out = append(out, frame(&message.Message{Blocks: bl}))
	}
	return out
}

// toggleFrames want, then cancel, the same 1,000 CIDs: 100 of the server's
// blocks and 900 it lacks.
func (e *attackEnv) toggleFrames() [][]byte {
	r := rand.New(rand.NewPCG(9, 2))
	want := make([]message.Entry, 1000)
	cancel := make([]message.Entry, 1000)
	for i := range want {
		c := randomCid(r)
		if i%10 == 0 {
			c = e.cids[(i/10)%len(e.cids)]
		}
		want[i] = message.Entry{Cid: c, Priority: 1, SendDontHave: true}
		cancel[i] = message.Entry{Cid: c, Cancel: true}
	}
	return [][]byte{frame(&message.Message{Wantlist: want}), frame(&message.Message{Wantlist: cancel})}
}

// trickle opens 200 streams, announces a 4 MiB frame on each (the largest
// allowed) and then writes 1 byte per second to each. A stream the server
// resets is opened again.
func trickle(ctx context.Context, e *attackEnv, srv peer.AddrInfo, ctl *attackCtl) (attackReport, error) {
	a, err := newAttacker(srv, nil)
	if err != nil {
		return attackReport{}, err
	}
	defer a.close()
	prefix := protowire.AppendVarint(nil, message.MaxMessageSize)
	streams := make([]network.Stream, e.sz.trickleStreams)
	var opened, resets, bytes int64
	open := func(i int) {
		s, err := a.stream(ctx)
		if err != nil {
			return
		}
		if err := writeCtx(ctx, s, prefix); err != nil {
			_ = s.Reset()
			return
		}
		streams[i] = s
		opened++
	}
	for i := range streams {
		open(i)
	}
	ctl.armed()
	one := []byte{0x0a}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-t.C:
			for i, s := range streams {
				if s != nil {
					wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
					err := writeCtx(wctx, s, one)
					cancel()
					if err == nil {
						bytes++
						continue
					}
					_ = s.Reset()
					streams[i] = nil
					if ctx.Err() == nil {
						resets++
					}
				}
				if ctx.Err() == nil {
					open(i)
				}
			}
		}
	}
	for _, s := range streams {
		if s != nil {
			_ = s.Reset()
		}
	}
	a.closing.Store(true)
	return attackReport{Dropped: a.dropped.Load(),
		Note: fmt.Sprintf("%d streams opened, each announcing 4 MiB; %d bytes trickled; %d streams reset by the server", opened, bytes, resets)}, nil
}

// neverReads wants every block of the server (want-block, sendDontHave)
// and accepts the streams the server opens to send them, but never reads
// them, so the server's writes back up. It repeats its wantlist every 2 s.
func neverReads(ctx context.Context, e *attackEnv, srv peer.AddrInfo, ctl *attackCtl) (attackReport, error) {
	a, err := newAttacker(srv, (*attacker).hold)
	if err != nil {
		return attackReport{}, err
	}
	defer a.close()
	entries := make([]message.Entry, len(e.cids))
	for i, c := range e.cids {
		entries[i] = message.Entry{Cid: c, Priority: int32(len(e.cids) - i), SendDontHave: true}
	}
	f := frame(&message.Message{Full: true, Wantlist: entries})
	var s network.Stream
	sent := 0
	for ctx.Err() == nil {
		if s == nil {
			if s, err = a.stream(ctx); err != nil {
				sleepCtx(ctx, 100*time.Millisecond)
				continue
			}
		}
		if err := writeCtx(ctx, s, f); err != nil {
			_ = s.Reset()
			s = nil
			continue
		}
		sent++
		ctl.armed()
		sleepCtx(ctx, 2*time.Second)
	}
	if s != nil {
		_ = s.Reset()
	}
	a.closing.Store(true)
	a.mu.Lock()
	held := len(a.held)
	a.mu.Unlock()
	return attackReport{Dropped: a.dropped.Load(),
		Note: fmt.Sprintf("wanted all %s blocks, %d times; the server opened %d streams to it, none read", countName(len(e.cids)), sent, held)}, nil
}

// manyPeers connects count hosts (0: sz.peers), 8 dials at a time, then
// each sends 1,024 want-block entries for blocks the server lacks and holds
// them.
func manyPeers(count int) func(context.Context, *attackEnv, peer.AddrInfo, *attackCtl) (attackReport, error) {
	return func(ctx context.Context, e *attackEnv, srv peer.AddrInfo, ctl *attackCtl) (attackReport, error) {
		n := count
		if n == 0 {
			n = e.sz.peers
		}
		return manyPeersRun(ctx, n, srv, ctl)
	}
}

func manyPeersRun(ctx context.Context, count int, srv peer.AddrInfo, ctl *attackCtl) (attackReport, error) {
	as := make([]*attacker, count)
	defer func() {
		for _, a := range as {
			if a != nil {
				a.close()
			}
		}
	}()
	for i := range as {
		a, err := newAttacker(srv, nil)
		if err != nil {
			return attackReport{}, err
		}
		as[i] = a
	}
	ctl.mark("hosts up")
	var connected atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, a := range as {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if a.connect(ctx) == nil {
				connected.Add(1)
			}
		}()
	}
	wg.Wait()
	ctl.mark("connected")
	var wanting atomic.Int64
	for i, a := range as {
		if a.h.Network().Connectedness(srv.ID) != network.Connected {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := rand.New(rand.NewPCG(7, uint64(i)))
			entries := make([]message.Entry, 1024)
			for j := range entries {
				entries[j] = message.Entry{Cid: randomCid(r), Priority: 1}
			}
			s, err := a.h.NewStream(ctx, srv.ID, bitswapProto)
			if err != nil {
				return
			}
			if writeCtx(ctx, s, frame(&message.Message{Wantlist: entries})) == nil {
				wanting.Add(1)
			}
			_ = s.Close()
		}()
	}
	wg.Wait()
	ctl.armed()
	<-ctx.Done()
	var dropped int64
	for _, a := range as {
		a.closing.Store(true)
		dropped += a.dropped.Load()
	}
	return attackReport{Dropped: dropped,
		Note: fmt.Sprintf("%d hosts in this process, %d connected%s, %d sent 1,024 wants each", len(as), connected.Load(),
			map[bool]string{true: " (the server host's libp2p resource manager refused the rest)", false: ""}[connected.Load() < int64(len(as))],
			wanting.Load())}, nil
}

// disconnects wants 8 of the server's blocks, reads 64 KiB of the answer,
// closes the connection, reconnects and does it again, until the end.
func disconnects(ctx context.Context, e *attackEnv, srv peer.AddrInfo, ctl *attackCtl) (attackReport, error) {
	part := make(chan struct{}, 1)
	a, err := newAttacker(srv, func(a *attacker, s network.Stream) {
		n, _ := io.ReadFull(s, make([]byte, 64<<10))
		a.recv.Add(int64(n))
		select {
		case part <- struct{}{}:
		default:
		}
		a.hold(s)
	})
	if err != nil {
		return attackReport{}, err
	}
	defer a.close()
	var cycles, partial, fails int64
	for k := 0; ctx.Err() == nil; k++ {
		s, err := a.stream(ctx)
		if err != nil {
			fails++
			sleepCtx(ctx, 20*time.Millisecond)
			continue
		}
		entries := make([]message.Entry, 8)
		for j := range entries {
			entries[j] = message.Entry{Cid: e.cids[(k*8+j)%len(e.cids)], Priority: 1, SendDontHave: true}
		}
		if err := writeCtx(ctx, s, frame(&message.Message{Wantlist: entries})); err != nil {
			_ = s.Reset()
			fails++
			continue
		}
		ctl.armed()
		t := time.NewTimer(5 * time.Second)
		select {
		case <-part:
			partial++
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		a.closing.Store(true)
		_ = a.h.Network().ClosePeer(srv.ID)
		a.mu.Lock()
		for _, s := range a.held {
			_ = s.Reset()
		}
		a.held = nil
		a.mu.Unlock()
		a.closing.Store(false)
		cycles++
	}
	a.closing.Store(true)
	return attackReport{Dropped: -1,
		Note: fmt.Sprintf("%d cycles of connect, want 8 blocks, read 64 KiB (%d got it), disconnect; %d failed to connect", cycles, partial, fails)}, nil
}

var errNotArmed = errors.New("the attack ended before it was under way")

package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/message"
)

// The client attacks: our client fetches every block from our honest
// server and a hostile peer at once. The hostile peer is a libp2p host in
// this process that reads the client's wantlists and answers as its kind
// says.

type clientAttack struct {
	id, kind, name string
}

var clientAttacks = []clientAttack{
	{"C1", "wrong", "hostile sends wrong blocks"},
	{"C2", "flood", "hostile floods unrequested blocks"},
	{"C3", "have", "hostile says HAVE, never sends"},
	{"C4", "flip", "hostile flips HAVE and DONT_HAVE"},
}

// hostile is the hostile peer of one client run.
type hostile struct {
	kind   string
	h      host.Host
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	pool   []blocks.Block // blocks of the right size and wrong data

	mu    sync.Mutex
	peers map[peer.ID]*hostilePeer

	wants, blocksSent, presencesSent atomic.Int64
}

type hostilePeer struct {
	out chan *message.Message

	mu      sync.Mutex
	wanted  map[string]cid.Cid // kind flip: every CID ever wanted
	started bool               // kinds flood and flip: the pusher runs
	next    int                // the next pool block
}

func newHostile(kind string, size int) (*hostile, error) {
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.ResourceManager(&network.NullResourceManager{}), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	x := &hostile{kind: kind, h: h, ctx: ctx, cancel: cancel, peers: map[peer.ID]*hostilePeer{},
		pool: genBlocks(200, 4*bigPerMsg, size)}
	h.SetStreamHandler(bitswapProto, x.handle)
	return x, nil
}

func (x *hostile) addr() string { return fmt.Sprintf("%s/p2p/%s", x.h.Addrs()[0], x.h.ID()) }

func (x *hostile) close() {
	x.cancel()
	_ = x.h.Close()
	x.wg.Wait()
}

func (x *hostile) note() string {
	switch x.kind {
	case "wrong":
		return fmt.Sprintf("hostile: %s wants seen, %s wrong blocks sent", countName(int(x.wants.Load())), countName(int(x.blocksSent.Load())))
	case "flood":
		return fmt.Sprintf("hostile: %s unrequested 256 KiB blocks sent", countName(int(x.blocksSent.Load())))
	default:
		return fmt.Sprintf("hostile: %s wants seen, %s presences sent", countName(int(x.wants.Load())), countName(int(x.presencesSent.Load())))
	}
}

// handle reads the client's messages from one stream.
func (x *hostile) handle(s network.Stream) {
	from := s.Conn().RemotePeer()
	readMessages(s, func(msg *message.Message, err error) {
		if err == nil {
			x.onMessage(from, msg)
		}
	})
}

// readMessages decodes the length-prefixed messages of s until it ends or
// a frame is over the limit (then s is reset), handing each to f with its
// decoding error.
func readMessages(s network.Stream, f func(*message.Message, error)) {
	br := bufio.NewReader(s)
	for {
		size, err := binary.ReadUvarint(br)
		if err != nil || size > message.MaxMessageSize {
			_ = s.Reset()
			return
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(br, body); err != nil {
			_ = s.Reset()
			return
		}
		f(message.Unmarshal(body))
	}
}

func (x *hostile) peer(p peer.ID) *hostilePeer {
	x.mu.Lock()
	defer x.mu.Unlock()
	hp := x.peers[p]
	if hp == nil {
		hp = &hostilePeer{out: make(chan *message.Message, 4), wanted: map[string]cid.Cid{}}
		x.peers[p] = hp
		x.wg.Add(1)
		go x.sender(p, hp)
	}
	return hp
}

func (x *hostile) send(hp *hostilePeer, m *message.Message) {
	select {
	case hp.out <- m:
	case <-x.ctx.Done():
	}
}

// sender writes the messages for p on one stream, opened again after a
// failure.
func (x *hostile) sender(p peer.ID, hp *hostilePeer) {
	defer x.wg.Done()
	var s network.Stream
	defer func() {
		if s != nil {
			_ = s.Reset()
		}
	}()
	for {
		var m *message.Message
		select {
		case <-x.ctx.Done():
			return
		case m = <-hp.out:
		}
		if s == nil {
			var err error
			sctx, cancel := context.WithTimeout(x.ctx, 10*time.Second)
			s, err = x.h.NewStream(sctx, p, bitswapProto)
			cancel()
			if err != nil {
				s = nil
				continue
			}
		}
		if err := writeCtx(x.ctx, s, frame(m)); err != nil {
			_ = s.Reset()
			s = nil
			continue
		}
		x.blocksSent.Add(int64(len(m.Blocks)))
		x.presencesSent.Add(int64(len(m.BlockPresences)))
	}
}

func (x *hostile) onMessage(p peer.ID, msg *message.Message) {
	hp := x.peer(p)
	var wants []message.Entry
	for _, e := range msg.Wantlist {
		if !e.Cancel {
			wants = append(wants, e)
		}
	}
	x.wants.Add(int64(len(wants)))
	switch x.kind {
	case "wrong": // a block of wrong data for every want-block, HAVE for every want-have
		var pres []message.BlockPresence
		var bl []blocks.Block
		hp.mu.Lock()
		for _, e := range wants {
			if e.WantType == message.WantHave {
				pres = append(pres, message.BlockPresence{Cid: e.Cid, Type: message.Have})
				continue
			}
			bl = append(bl, x.pool[hp.next%len(x.pool)])
			hp.next++
		}
		hp.mu.Unlock()
		if len(pres) > 0 {
			x.send(hp, &message.Message{BlockPresences: pres})
		}
		for i := 0; i < len(bl); i += bigPerMsg {
			x.send(hp, &message.Message{Blocks: bl[i:min(i+bigPerMsg, len(bl))]})
		}
	case "have": // HAVE for everything
		pres := make([]message.BlockPresence, len(wants))
		for i, e := range wants {
			pres[i] = message.BlockPresence{Cid: e.Cid, Type: message.Have}
		}
		if len(pres) > 0 {
			x.send(hp, &message.Message{BlockPresences: pres})
		}
	case "flood": // unrequested blocks, as fast as they go
		if x.startOnce(hp) {
			x.wg.Add(1)
			go func() {
				defer x.wg.Done()
				for k := 0; x.ctx.Err() == nil; k++ {
					i := (k * bigPerMsg) % len(x.pool)
					x.send(hp, &message.Message{Blocks: x.pool[i : i+bigPerMsg]})
				}
			}()
		}
	case "flip": // HAVE, then DONT_HAVE, for every CID ever wanted, every 10 ms
		hp.mu.Lock()
		for _, e := range wants {
			hp.wanted[e.Cid.KeyString()] = e.Cid
		}
		hp.mu.Unlock()
		if x.startOnce(hp) {
			x.wg.Add(1)
			go func() {
				defer x.wg.Done()
				t := time.NewTicker(10 * time.Millisecond)
				defer t.Stop()
				for k := 0; ; k++ {
					select {
					case <-x.ctx.Done():
						return
					case <-t.C:
					}
					typ := message.Have
					if k%2 == 1 {
						typ = message.DontHave
					}
					hp.mu.Lock()
					pres := make([]message.BlockPresence, 0, len(hp.wanted))
					for _, c := range hp.wanted {
						pres = append(pres, message.BlockPresence{Cid: c, Type: typ})
					}
					hp.mu.Unlock()
					x.send(hp, &message.Message{BlockPresences: pres})
				}
			}()
		}
	}
}

func (x *hostile) startOnce(hp *hostilePeer) bool {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	if hp.started {
		return false
	}
	hp.started = true
	return true
}

// clientRun is one fetch of our client, with or without a hostile peer.
type clientRun struct {
	res     clientResult
	hostile string // the hostile peer's note
	err     error
}

func (ar *attackRunner) runClient(srv *serverProc, kind string) *clientRun {
	sz := ar.env.sz
	r := &clientRun{}
	spec := childSpec{Role: "attacked-client", N: sz.fetchN, Size: sz.size, CidsFile: ar.cidsFile, Addr: srv.addrS, Timeout: sz.clientTimeout}
	if kind != "" {
		x, err := newHostile(kind, sz.size)
		if err != nil {
			r.err = err
			return r
		}
		defer x.close()
		spec.Hostile = x.addr()
		defer func() { r.hostile = x.note() }()
	}
	r.err = runChildJSON(spec, &r.res)
	return r
}

func (r *clientRun) growth() (rssMiB, heapMiB float64) {
	p := r.res.Peak
	return mib(p.PeakRSS - min(p.PeakRSS, r.res.IdleRSS)), mib(p.PeakHeap - min(p.PeakHeap, r.res.IdleHeap))
}

// runClientAttacks runs the client attacks against one honest server of
// ours, interleaved within each repeat, and returns their rows.
func runClientAttacks(cfg Config, ar *attackRunner) ([]Row, []string) {
	sz := ar.env.sz
	attacks := clientAttacks
	if only := os.Getenv(attacksEnv); only != "" {
		keep := strings.Split(only, ",")
		attacks = slices.DeleteFunc(slices.Clone(attacks), func(a clientAttack) bool { return !slices.Contains(keep, a.id) })
		if len(attacks) == 0 {
			return nil, nil
		}
	}
	srv, err := startServer(ours, ar.repo, "")
	if err != nil {
		return nil, []string{"client attacks: starting the honest server: " + err.Error()}
	}
	defer func() { _, _, _ = srv.finish() }()
	all := append([]clientAttack{{"C0", "", "no hostile peer"}}, attacks...)
	runs := map[string][]*clientRun{}
	var errs []string
	for rep := range sz.clientReps {
		for i := range all {
			a := all[(i+rep)%len(all)]
			t0 := time.Now()
			r := ar.runClient(srv, a.kind)
			took := time.Since(t0)
			runs[a.id] = append(runs[a.id], r)
			rg, hg := r.growth()
			if r.err != nil {
				errs = append(errs, fmt.Sprintf("client attack %s (%s): %v", a.id, a.name, r.err))
			}
			cfg.logf("attack %s (%s), repeat %d/%d, %.1f s: complete %v in %.2f s; client +%.1f MiB RSS, +%.1f MiB heap; %d unwanted blocks; %s; err %v",
				a.id, a.name, rep+1, sz.clientReps, took.Seconds(), r.res.Completed, r.res.Seconds, rg, hg, r.res.Unwanted, r.hostile, r.err)
		}
	}
	return clientAttackRows(all, runs), errs
}

func clientAttackRows(all []clientAttack, runs map[string][]*clientRun) []Row {
	var rows []Row
	var base float64
	for _, a := range all {
		label := a.id + ". " + a.name
		complete := Row{Case: label + ": " + mComplete}
		fetchRow := Row{Case: label + ": " + mCFetch, Unit: "s"}
		ratio := Row{Case: label + ": " + mCRatio, Unit: "×"}
		rss := Row{Case: label + ": " + mRSS, Unit: "MiB"}
		heap := Row{Case: label + ": " + mHeap, Unit: "MiB"}
		notes := Row{Case: label + ": " + mNotes}
		done, total := 0, 0
		var unwanted, dups, received []string
		var hostile, failed string
		for _, r := range runs[a.id] {
			total++
			if r.err != nil && r.res.Seconds == 0 {
				failed = r.err.Error()
				continue
			}
			rg, hg := r.growth()
			rss.Ours.add(rg)
			heap.Ours.add(hg)
			if r.res.Completed {
				done++
				fetchRow.Ours.add(r.res.Seconds)
			} else {
				failed = r.res.Err
			}
			unwanted = append(unwanted, countName(int(r.res.Unwanted)))
			dups = append(dups, countName(int(r.res.Dups)))
			received = append(received, countName(int(r.res.Received)))
			hostile = r.hostile
		}
		fetchRow.Ours.finish()
		if a.kind == "" && fetchRow.Ours.ok() {
			base = fetchRow.Ours.Median
		}
		for _, s := range fetchRow.Ours.Samples {
			if base > 0 {
				ratio.Ours.add(s / base)
			}
		}
		complete.Ours.Text = fmt.Sprintf("yes, %d of %d", done, total)
		if done < total {
			complete.Ours.Text = fmt.Sprintf("NO, %d of %d", done, total)
		}
		if !fetchRow.Ours.ok() {
			fetchRow.Ours.Text, ratio.Ours.Text = "incomplete", "incomplete"
		}
		if !rss.Ours.ok() {
			rss.Ours.Text, heap.Ours.Text = "error", "error"
		}
		n := []string{fmt.Sprintf("blocks received per run %s, of them unwanted %s, duplicates %s",
			strings.Join(received, "/"), strings.Join(unwanted, "/"), strings.Join(dups, "/"))}
		if hostile != "" {
			n = append(n, hostile)
		}
		if failed != "" {
			n = append(n, "failed: "+shorten(failed))
		}
		notes.Ours.Text = strings.Join(n, "; ")
		for _, row := range []*Row{&complete, &fetchRow, &ratio, &rss, &heap, &notes} {
			row.Boxo.Text = "n/a (our client)"
		}
		if a.kind == "" {
			rows = append(rows, fetchRow, rss, heap, notes)
			continue
		}
		rows = append(rows, complete, fetchRow, ratio, rss, heap, notes)
	}
	return rows
}

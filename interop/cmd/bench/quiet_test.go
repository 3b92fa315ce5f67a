package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/gobitswap/bitswap/message"
)

// quietAsker is a libp2p host that sends wantlists to quiet peers and
// collects the presences they send back.
type quietAsker struct {
	h    host.Host
	pres chan message.BlockPresence
}

func newQuietAsker(t *testing.T) *quietAsker {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	a := &quietAsker{h: h, pres: make(chan message.BlockPresence, 64)}
	h.SetStreamHandler(quietProtos[0], func(s network.Stream) {
		br := bufio.NewReader(s)
		for {
			size, err := binary.ReadUvarint(br)
			if err != nil {
				return
			}
			body := make([]byte, size)
			if _, err := io.ReadFull(br, body); err != nil {
				return
			}
			m, err := message.Unmarshal(body)
			if err != nil {
				t.Errorf("the quiet peer sent a message that does not decode: %v", err)
				return
			}
			if len(m.Wantlist) > 0 || len(m.Blocks) > 0 {
				t.Errorf("the quiet peer sent wants or blocks: %+v", m)
			}
			for _, bp := range m.BlockPresences {
				a.pres <- bp
			}
		}
	})
	return a
}

// stream opens a stream on proto to the quiet host qh.
func (a *quietAsker) stream(t *testing.T, qh *quietHost, proto protocol.ID) network.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.h.Connect(ctx, peer.AddrInfo{ID: qh.h.ID(), Addrs: qh.h.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := a.h.NewStream(ctx, qh.h.ID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func send(t *testing.T, s network.Stream, v message.Version, entries ...message.Entry) {
	t.Helper()
	if _, err := s.Write(message.AppendFrame(nil, &message.Message{Wantlist: entries}, v)); err != nil {
		t.Fatal(err)
	}
}

// waitMessages waits until host i of qp has counted n messages.
func waitMessages(t *testing.T, qp *quietPeers, i, n int) quietResult {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := qp.result()
		if r.Hosts[i].Messages >= n {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %d counted %d messages, want %d", i, r.Hosts[i].Messages, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// presences collects the presences that arrive within d.
func (a *quietAsker) presences(d time.Duration, n int) []message.BlockPresence {
	var out []message.BlockPresence
	timeout := time.After(d)
	for len(out) < n {
		select {
		case bp := <-a.pres:
			out = append(out, bp)
		case <-timeout:
			return out
		}
	}
	return out
}

// The quiet peers count every entry by kind and CID, answer exactly the
// entries with sendDontHave on 1.2.0 with a DONT_HAVE (mode donthave),
// count the wants that come after their DONT_HAVE, and never answer in
// mode silent.
func TestQuietPeersCount(t *testing.T) {
	c := make([]cid.Cid, 5)
	for i := range c {
		c[i] = rawCid([]byte{byte(i), 'q'})
	}
	qp, err := newQuietPeers(2, quietDontHave)
	if err != nil {
		t.Fatal(err)
	}
	defer qp.close()
	a := newQuietAsker(t)
	start := time.Now()

	s := a.stream(t, qp.hosts[0], quietProtos[0])
	send(t, s, message.V120,
		message.Entry{Cid: c[0], WantType: message.WantHave, SendDontHave: true},
		message.Entry{Cid: c[1], WantType: message.WantBlock, SendDontHave: true},
		message.Entry{Cid: c[2], WantType: message.WantBlock},
		message.Entry{Cid: c[3], Cancel: true})
	got := a.presences(10*time.Second, 2)
	if len(got) != 2 {
		t.Fatalf("DONT_HAVEs %v, want 2", got)
	}
	for _, bp := range got {
		if bp.Type != message.DontHave || !(bp.Cid.Equals(c[0]) || bp.Cid.Equals(c[1])) || got[0].Cid.Equals(got[1].Cid) {
			t.Errorf("presences %v, want DONT_HAVE for %s and %s", got, c[0], c[1])
		}
	}
	// Asked again after its DONT_HAVE: c[0] a want (counted), c[1] a cancel
	// (not a want).
	send(t, s, message.V120,
		message.Entry{Cid: c[0], WantType: message.WantHave, SendDontHave: true},
		message.Entry{Cid: c[1], Cancel: true})
	if again := a.presences(10*time.Second, 1); len(again) != 1 || !again[0].Cid.Equals(c[0]) {
		t.Errorf("after the second message: presences %v, want one DONT_HAVE for %s", again, c[0])
	}
	// On 1.0.0 there is no DONT_HAVE to send.
	s0 := a.stream(t, qp.hosts[1], quietProtos[2])
	send(t, s0, message.V100, message.Entry{Cid: c[4], WantType: message.WantBlock, SendDontHave: true})
	waitMessages(t, qp, 1, 1)
	waitMessages(t, qp, 0, 2)
	if extra := a.presences(300*time.Millisecond, 1); len(extra) > 0 {
		t.Errorf("unexpected presences %v", extra)
	}
	r := qp.result()

	h0 := r.Hosts[0]
	want := map[cid.Cid]quietCounts{
		c[0]: {WantHave: 2, DontHave: 2, AfterDontHave: 1},
		c[1]: {WantBlock: 1, Cancel: 1, DontHave: 1},
		c[2]: {WantBlock: 1},
		c[3]: {Cancel: 1},
	}
	for k, w := range want {
		if g := h0.Cids[k.String()]; g != w {
			t.Errorf("host 0, %s: counts %+v, want %+v", k, g, w)
		}
	}
	if h0.Messages != 2 || h0.Protocols[string(quietProtos[0])] != 2 || h0.Total.entries() != 6 {
		t.Errorf("host 0: %d messages (%v), %d entries; want 2 on 1.2.0, 6 entries", h0.Messages, h0.Protocols, h0.Total.entries())
	}
	h1 := r.Hosts[1]
	if g := h1.Cids[c[4].String()]; g != (quietCounts{WantBlock: 1}) || h1.Protocols[string(quietProtos[2])] != 1 {
		t.Errorf("host 1: %+v on %v, want one want-block on 1.0.0 and no DONT_HAVE", g, h1.Protocols)
	}
	if sum, most, asked := r.perPeer(c[0]); sum.entries() != 2 || most != 2 || asked != 1 {
		t.Errorf("perPeer(%s): %+v, most %d, asked %d; want 2 entries, most 2, 1 asked", c[0], sum, most, asked)
	}
	if sum, most, asked := r.perPeer(cid.Undef); sum.entries() != 7 || most != 6 || asked != 2 {
		t.Errorf("perPeer(all): %+v, most %d, asked %d; want 7 entries, most 6, 2 asked", sum, most, asked)
	}
	if most, sum := r.mostReasks(cid.Undef); most != 1 || sum != 1 {
		t.Errorf("mostReasks: most %d, sum %d; want 1, 1", most, sum)
	}
	if tl := r.timeline(start, c[0], 8); !strings.HasPrefix(tl, "want-have ×2 +") || !strings.Contains(tl, ", dont-have ×2 +") {
		t.Errorf("timeline of %s: %q", c[0], tl)
	}

	// Silent: counted, never answered.
	sq, err := newQuietPeers(1, quietSilent)
	if err != nil {
		t.Fatal(err)
	}
	defer sq.close()
	ss := a.stream(t, sq.hosts[0], quietProtos[0])
	send(t, ss, message.V120, message.Entry{Cid: c[0], WantType: message.WantHave, SendDontHave: true},
		message.Entry{Cid: c[1], WantType: message.WantBlock, SendDontHave: true})
	sr := waitMessages(t, sq, 0, 1)
	if extra := a.presences(300*time.Millisecond, 1); len(extra) > 0 {
		t.Errorf("silent peer answered %v", extra)
	}
	if g := sr.Hosts[0].Total; g != (quietCounts{WantHave: 1, WantBlock: 1}) {
		t.Errorf("silent host: %+v, want one want-have and one want-block", g)
	}
}

// The missing-block CAR has the same root and every block but the one
// left out.
func TestCopyCARWithout(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "a.car"), filepath.Join(dir, "b.car")
	info, err := buildUnixFS(src, 3, 10*1024, 1024)
	if err != nil {
		t.Fatal(err)
	}
	dropped, size, err := copyCARWithout(src, dst, func(c cid.Cid) bool { return c.Prefix().Codec == cid.Raw })
	if err != nil {
		t.Fatal(err)
	}
	roots, bl := readCAR(t, dst)
	_, all := readCAR(t, src)
	if len(roots) != 1 || !roots[0].Equals(info.root) || len(bl) != info.blocks-1 || size != 1024 {
		t.Fatalf("roots %v (want %s), %d blocks (want %d), dropped %d bytes", roots, info.root, len(bl), info.blocks-1, size)
	}
	if _, ok := bl[dropped]; ok {
		t.Errorf("%s still in the copy", dropped)
	}
	if _, ok := all[dropped]; !ok || dropped.Prefix().Codec != cid.Raw {
		t.Errorf("dropped %s: not a leaf of the DAG", dropped)
	}
}

// The targets hold ours to the goals on the quiet rows.
func TestQuietTargets(t *testing.T) {
	rows := func(silentOurs, overNone, missMost, reask float64) []Row {
		st := func(v float64) Stat { return Stat{Samples: []float64{v}} }
		miss := "a want nobody has (the seed lacks one leaf), 50 %s peers, 25s timeout: "
		rs := []Row{
			{Case: "UnixFS 20 MiB in 256 KiB chunks, 50 silent peers: " + qE2E, Ours: st(silentOurs), Boxo: st(1)},
			{Case: "UnixFS 20 MiB in 256 KiB chunks, 50 silent peers: " + qOverNone, Ours: st(2.3), Boxo: st(1.8)},
			{Case: "UnixFS 20 MiB in 256 KiB chunks, 50 silent peers: " + qOverNoneSelf, Ours: st(overNone), Boxo: st(1)},
			{Case: "UnixFS 20 MiB in 256 KiB chunks, 50 DONT_HAVE peers: " + qReasks, Ours: st(0), Boxo: st(0)},
			{Case: strings.Replace(miss, "%s", "silent", 1) + qMissMost, Ours: st(2), Boxo: st(2)},
			{Case: strings.Replace(miss, "%s", "DONT_HAVE", 1) + qMissMost, Ours: st(missMost), Boxo: st(2)},
			{Case: strings.Replace(miss, "%s", "DONT_HAVE", 1) + qMissReasks, Ours: st(reask), Boxo: st(0)},
		}
		for i := range rs {
			rs[i].finish()
		}
		return rs
	}
	met := func(rs []Row) []bool {
		ts := targets([]SuiteResult{{Name: "quiet", Rows: rs}}, false)
		var out []bool
		for _, tg := range ts {
			out = append(out, tg.Met)
		}
		return out
	}
	if got := met(rows(1.2, 1.1, 3, 0)); len(got) != 4 || !got[0] || !got[1] || !got[2] || !got[3] {
		t.Errorf("all within the goals: met %v, want 4 × true", got)
	}
	if got := met(rows(1.6, 1.6, 4, 1)); len(got) != 4 || got[0] || got[1] || got[2] || got[3] {
		t.Errorf("all outside the goals: met %v, want 4 × false", got)
	}
}

package interop

// Byte-for-byte compatibility of package message with boxo's
// bitswap/message (the encoder and decoder Kubo uses), without a network.
//
// Boxo keeps a message's wantlist, blocks and presences in maps, so the order
// of repeated fields in its encoding is random. Messages with one element
// per repeated field are compared exactly as boxo writes them, framing
// included; for longer ones the decoded boxo protobuf is sorted before it is
// re-marshalled with the same protobuf library, and ours is built in the
// same order.

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"testing"

	bsmsg "github.com/ipfs/boxo/bitswap/message"
	bspb "github.com/ipfs/boxo/bitswap/message/pb"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
	"google.golang.org/protobuf/proto"

	"github.com/gobitswap/bitswap/message"
)

// compatCase is one message, described once and built with both libraries.
type compatCase struct {
	name string
	msg  message.Message
}

// boxo builds c with boxo's API. Boxo's Cancel always has priority 0 and
// want type Block, so the cases write cancels that way too.
func (c *compatCase) boxo(t *testing.T) bsmsg.BitSwapMessage {
	t.Helper()
	m := bsmsg.New(c.msg.Full)
	for _, e := range c.msg.Wantlist {
		if e.Cancel {
			if e.Priority != 0 || e.WantType != message.WantBlock || e.SendDontHave {
				t.Fatalf("%s: boxo cannot express cancel %+v", c.name, e)
			}
			m.Cancel(e.Cid)
			continue
		}
		m.AddEntry(e.Cid, e.Priority, bspb.Message_Wantlist_WantType(e.WantType), e.SendDontHave)
	}
	for _, b := range c.msg.Blocks {
		m.AddBlock(b)
	}
	for _, p := range c.msg.BlockPresences {
		m.AddBlockPresence(p.Cid, bspb.Message_BlockPresenceType(p.Type))
	}
	m.SetPendingBytes(c.msg.PendingBytes)
	return m
}

// single reports whether every repeated field has at most one element, so
// that boxo's encoding is deterministic.
func (c *compatCase) single() bool {
	return len(c.msg.Wantlist) <= 1 && len(c.msg.Blocks) <= 1 && len(c.msg.BlockPresences) <= 1
}

func compatBlock(t *testing.T, p cid.Prefix, data string) blocks.Block {
	t.Helper()
	c, err := p.Sum([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	b, err := blocks.NewBlockWithCid([]byte(data), c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	compatPrefixV0       = cid.Prefix{Version: 0, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}
	compatPrefixRaw      = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}
	compatPrefixDagPB    = cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}
	compatPrefixIdentity = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.IDENTITY, MhLength: -1}
	compatPrefixBlake3   = cid.Prefix{Version: 1, Codec: cid.DagCBOR, MhType: mh.BLAKE3, MhLength: -1}
)

// compatCases are the messages compared. Those that use 1.2.0 features are
// compared for 1.2.0 only (see TestBoxoEncodingDifferences for the others).
func compatCases(t *testing.T) (all []compatCase, withoutHave []compatCase) {
	c := func(p cid.Prefix, i int) cid.Cid { return compatBlock(t, p, fmt.Sprint("cid ", i)).Cid() }
	v0, raw, pb, id, b3 := c(compatPrefixV0, 0), c(compatPrefixRaw, 1), c(compatPrefixDagPB, 2), c(compatPrefixIdentity, 3), c(compatPrefixBlake3, 4)
	blk := func(p cid.Prefix, s string) blocks.Block { return compatBlock(t, p, s) }

	withoutHave = []compatCase{
		{"empty", message.Message{}},
		{"empty full", message.Message{Full: true}},
		{"want-block CIDv0", message.Message{Wantlist: []message.Entry{{Cid: v0, Priority: 7}}}},
		{"want-block CIDv1 raw", message.Message{Wantlist: []message.Entry{{Cid: raw, Priority: 1}}}},
		{"want-block priority 0", message.Message{Wantlist: []message.Entry{{Cid: pb}}}},
		{"want-block negative priority", message.Message{Wantlist: []message.Entry{{Cid: pb, Priority: -3}}}},
		{"want-block sendDontHave", message.Message{Wantlist: []message.Entry{{Cid: id, Priority: 2, SendDontHave: true}}}},
		{"cancel", message.Message{Wantlist: []message.Entry{{Cid: raw, Cancel: true}}}},
		{"full wantlist", message.Message{Full: true, Wantlist: []message.Entry{{Cid: b3, Priority: 1 << 30}}}},
		{"block CIDv0", message.Message{Blocks: []blocks.Block{blk(compatPrefixV0, "dag-pb v0")}}},
		{"block CIDv1 raw", message.Message{Blocks: []blocks.Block{blk(compatPrefixRaw, "raw v1")}}},
		{"block CIDv1 dag-pb", message.Message{Blocks: []blocks.Block{blk(compatPrefixDagPB, "dag-pb v1")}}},
		{"block identity", message.Message{Blocks: []blocks.Block{blk(compatPrefixIdentity, "inline")}}},
		{"block blake3 dag-cbor", message.Message{Blocks: []blocks.Block{blk(compatPrefixBlake3, "cbor")}}},
		{"empty block", message.Message{Blocks: []blocks.Block{blk(compatPrefixRaw, "")}}},
		{"one of each", message.Message{
			Full:     true,
			Wantlist: []message.Entry{{Cid: v0, Priority: 3, SendDontHave: true}},
			Blocks:   []blocks.Block{blk(compatPrefixRaw, "one of each")},
		}},
		{"many wants and blocks", message.Message{
			Wantlist: []message.Entry{
				{Cid: v0, Priority: 5}, {Cid: raw, Cancel: true}, {Cid: pb, Priority: 3, SendDontHave: true},
				{Cid: id, Priority: 2}, {Cid: b3, Cancel: true},
			},
			Blocks: []blocks.Block{
				blk(compatPrefixV0, "a"), blk(compatPrefixRaw, "b"), blk(compatPrefixDagPB, "c"), blk(compatPrefixIdentity, "d"),
			},
		}},
	}
	all = append(all, withoutHave...)
	all = append(all, []compatCase{
		{"want-have", message.Message{Wantlist: []message.Entry{{Cid: raw, Priority: 4, WantType: message.WantHave}}}},
		{"want-have sendDontHave", message.Message{Wantlist: []message.Entry{{Cid: v0, WantType: message.WantHave, SendDontHave: true}}}},
		{"have", message.Message{BlockPresences: []message.BlockPresence{{Cid: raw, Type: message.Have}}}},
		{"dont-have", message.Message{BlockPresences: []message.BlockPresence{{Cid: v0, Type: message.DontHave}}}},
		{"pending bytes", message.Message{PendingBytes: 1 << 20}},
		{"negative pending bytes", message.Message{PendingBytes: -1}},
		{"one of everything", message.Message{
			Full:           true,
			Wantlist:       []message.Entry{{Cid: pb, Priority: 9, WantType: message.WantHave, SendDontHave: true}},
			Blocks:         []blocks.Block{blk(compatPrefixDagPB, "everything")},
			BlockPresences: []message.BlockPresence{{Cid: id, Type: message.DontHave}},
			PendingBytes:   4096,
		}},
		{"many of everything", message.Message{
			Full: true,
			Wantlist: []message.Entry{
				{Cid: v0, Priority: 5, WantType: message.WantHave}, {Cid: raw, Cancel: true},
				{Cid: pb, Priority: 3, SendDontHave: true}, {Cid: id, Priority: 2, WantType: message.WantHave, SendDontHave: true},
			},
			Blocks:         []blocks.Block{blk(compatPrefixRaw, "x"), blk(compatPrefixBlake3, "y"), blk(compatPrefixV0, "z")},
			BlockPresences: []message.BlockPresence{{Cid: b3, Type: message.Have}, {Cid: c(compatPrefixRaw, 9), Type: message.DontHave}},
			PendingBytes:   77,
		}},
	}...)
	return all, withoutHave
}

// sortedPB sorts the repeated fields of a boxo protobuf message in place.
func sortedPB(m *bspb.Message) *bspb.Message {
	if m.Wantlist != nil {
		slices.SortFunc(m.Wantlist.Entries, func(a, b *bspb.Message_Wantlist_Entry) int { return bytes.Compare(a.Block, b.Block) })
	}
	slices.SortFunc(m.Blocks, bytes.Compare)
	slices.SortFunc(m.Payload, func(a, b *bspb.Message_Block) int {
		return cmp.Or(bytes.Compare(a.Data, b.Data), bytes.Compare(a.Prefix, b.Prefix))
	})
	slices.SortFunc(m.BlockPresences, func(a, b *bspb.Message_BlockPresence) int { return bytes.Compare(a.Cid, b.Cid) })
	return m
}

// sortedOurs returns a copy of m with its lists in the order of sortedPB.
func sortedOurs(m *message.Message) *message.Message {
	s := *m
	s.Wantlist = slices.SortedFunc(slices.Values(m.Wantlist), func(a, b message.Entry) int {
		return bytes.Compare(a.Cid.Bytes(), b.Cid.Bytes())
	})
	s.Blocks = slices.SortedFunc(slices.Values(m.Blocks), func(a, b blocks.Block) int {
		return cmp.Or(bytes.Compare(a.RawData(), b.RawData()), bytes.Compare(a.Cid().Prefix().Bytes(), b.Cid().Prefix().Bytes()))
	})
	s.BlockPresences = slices.SortedFunc(slices.Values(m.BlockPresences), func(a, b message.BlockPresence) int {
		return bytes.Compare(a.Cid.Bytes(), b.Cid.Bytes())
	})
	return &s
}

// boxoBytes marshals boxo's protobuf for v the way boxo's network does, with
// repeated fields sorted.
func boxoBytes(t *testing.T, bm bsmsg.BitSwapMessage, v message.Version) []byte {
	t.Helper()
	pbm := bm.ToProtoV1()
	if v == message.V100 {
		pbm = bm.ToProtoV0()
	}
	data, err := proto.Marshal(sortedPB(pbm))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// boxoFrame is the exact frame boxo's network writes for v.
func boxoFrame(t *testing.T, bm bsmsg.BitSwapMessage, v message.Version) []byte {
	t.Helper()
	var buf bytes.Buffer
	write := bm.ToNetV1
	if v == message.V100 {
		write = bm.ToNetV0
	}
	if err := write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestCompatOurEncodingIsBoxos(t *testing.T) {
	all, withoutHave := compatCases(t)
	check := func(t *testing.T, tc compatCase, v message.Version) {
		bm := tc.boxo(t)
		ours := sortedOurs(&tc.msg)
		if got, want := ours.Marshal(v), boxoBytes(t, bm, v); !bytes.Equal(got, want) {
			t.Fatalf("our encoding differs from boxo's\nours: % x\nboxo: % x", got, want)
		}
		if tc.single() {
			if got, want := message.AppendFrame(nil, &tc.msg, v), boxoFrame(t, bm, v); !bytes.Equal(got, want) {
				t.Fatalf("our frame differs from boxo's\nours: % x\nboxo: % x", got, want)
			}
		}
	}
	for _, tc := range withoutHave {
		for _, v := range []message.Version{message.V100, message.V110} {
			t.Run(v.String()+"/"+tc.name, func(t *testing.T) { check(t, tc, v) })
		}
	}
	for _, tc := range all {
		t.Run(message.V120.String()+"/"+tc.name, func(t *testing.T) { check(t, tc, message.V120) })
	}
}

// compatView is a message reduced to what both libraries agree on, keyed by
// CID because boxo's lists come out of maps.
type compatView struct {
	full      bool
	pending   int32
	wants     map[cid.Cid]message.Entry
	blocks    map[cid.Cid]string
	presences map[cid.Cid]message.PresenceType
}

func viewOurs(m *message.Message) compatView {
	v := compatView{full: m.Full, pending: m.PendingBytes,
		wants: map[cid.Cid]message.Entry{}, blocks: map[cid.Cid]string{}, presences: map[cid.Cid]message.PresenceType{}}
	for _, e := range m.Wantlist {
		v.wants[e.Cid] = e
	}
	for _, b := range m.Blocks {
		v.blocks[b.Cid()] = string(b.RawData())
	}
	for _, p := range m.BlockPresences {
		v.presences[p.Cid] = p.Type
	}
	return v
}

func viewBoxo(m bsmsg.BitSwapMessage) compatView {
	v := compatView{full: m.Full(), pending: m.PendingBytes(),
		wants: map[cid.Cid]message.Entry{}, blocks: map[cid.Cid]string{}, presences: map[cid.Cid]message.PresenceType{}}
	for _, e := range m.Wantlist() {
		v.wants[e.Cid] = message.Entry{Cid: e.Cid, Priority: e.Priority, Cancel: e.Cancel,
			WantType: message.WantType(e.WantType), SendDontHave: e.SendDontHave}
	}
	for _, b := range m.Blocks() {
		v.blocks[b.Cid()] = string(b.RawData())
	}
	for _, p := range m.BlockPresences() {
		v.presences[p.Cid] = message.PresenceType(p.Type)
	}
	return v
}

func (a compatView) diff(b compatView) string {
	switch {
	case a.full != b.full:
		return fmt.Sprintf("full %v vs %v", a.full, b.full)
	case a.pending != b.pending:
		return fmt.Sprintf("pendingBytes %d vs %d", a.pending, b.pending)
	case !mapsEqual(a.wants, b.wants):
		return fmt.Sprintf("wantlist %v vs %v", a.wants, b.wants)
	case !mapsEqual(a.blocks, b.blocks):
		return fmt.Sprintf("blocks %v vs %v", a.blocks, b.blocks)
	case !mapsEqual(a.presences, b.presences):
		return fmt.Sprintf("presences %v vs %v", a.presences, b.presences)
	}
	return ""
}

func mapsEqual[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// sentTo is what a peer speaking v receives of m: before 1.2.0 we drop
// want-haves and presences, and 1.0.0 blocks arrive as CIDv0.
func sentTo(m *message.Message, v message.Version) *message.Message {
	out := &message.Message{Full: m.Full, PendingBytes: m.PendingBytes}
	for _, e := range m.Wantlist {
		if v.SupportsHave() || e.Cancel || e.WantType != message.WantHave {
			out.Wantlist = append(out.Wantlist, e)
		}
	}
	for _, b := range m.Blocks {
		if v == message.V100 {
			b = blocks.NewBlock(b.RawData())
		}
		out.Blocks = append(out.Blocks, b)
	}
	if v.SupportsHave() {
		out.BlockPresences = m.BlockPresences
	}
	return out
}

func TestCompatBoxoDecodesOurMessages(t *testing.T) {
	all, _ := compatCases(t)
	for _, tc := range all {
		for _, v := range []message.Version{message.V100, message.V110, message.V120} {
			t.Run(v.String()+"/"+tc.name, func(t *testing.T) {
				frame := message.AppendFrame(nil, &tc.msg, v)
				bm, n, err := bsmsg.FromNet(bytes.NewReader(frame))
				if err != nil {
					t.Fatalf("boxo rejects our message: %v", err)
				}
				if n != tc.msg.Size(v) {
					t.Errorf("boxo read %d bytes, Size(%s) = %d", n, v, tc.msg.Size(v))
				}
				if d := viewOurs(sentTo(&tc.msg, v)).diff(viewBoxo(bm)); d != "" {
					t.Fatalf("boxo decodes differently: %s", d)
				}
			})
		}
	}
}

func TestCompatWeDecodeBoxoMessages(t *testing.T) {
	all, _ := compatCases(t)
	for _, tc := range all {
		for _, v := range []message.Version{message.V100, message.V110, message.V120} {
			t.Run(v.String()+"/"+tc.name, func(t *testing.T) {
				bm := tc.boxo(t)
				body, rest, err := message.ParseFrame(boxoFrame(t, bm, v), message.MaxMessageSize)
				if err != nil || len(rest) != 0 {
					t.Fatalf("ParseFrame: %v, %d bytes left", err, len(rest))
				}
				got, err := message.Unmarshal(body)
				if err != nil {
					t.Fatalf("we reject boxo's message: %v", err)
				}
				// Boxo filters nothing by version at this layer: it sends
				// 1.1.0 peers everything, and 1.0.0 peers everything but
				// presences and pending bytes.
				want := &tc.msg
				if v == message.V100 {
					want = sentTo(&tc.msg, v)
					want.Wantlist = tc.msg.Wantlist
					want.PendingBytes = 0
				}
				if d := viewOurs(want).diff(viewOurs(got)); d != "" {
					t.Fatalf("we decode differently: %s", d)
				}
				if d := viewBoxo(bm).diff(viewOurs(got)); v != message.V100 && d != "" {
					t.Fatalf("we decode differently from boxo's own view: %s", d)
				}
			})
		}
	}
}

// TestCompatBoxoEncodingDifferences pins where boxo's encoder differs from
// ours, so that a change in boxo shows up here. Boxo leaves filtering by
// version to its callers (the client's message queue drops want-haves for
// peers without HAVE support); we filter in the encoder.
func TestCompatBoxoEncodingDifferences(t *testing.T) {
	c := compatBlock(t, compatPrefixRaw, "difference").Cid()
	tc := compatCase{"difference", message.Message{
		Wantlist:       []message.Entry{{Cid: c, WantType: message.WantHave}},
		BlockPresences: []message.BlockPresence{{Cid: c, Type: message.Have}},
		PendingBytes:   10,
	}}
	bm := tc.boxo(t)

	v0 := bm.ToProtoV0()
	if len(v0.Wantlist.Entries) != 1 || v0.Wantlist.Entries[0].WantType != bspb.Message_Wantlist_Have {
		t.Error("boxo's 1.0.0 encoding no longer keeps want-have entries; we drop them")
	}
	if len(v0.BlockPresences) != 0 || v0.PendingBytes != 0 {
		t.Error("boxo's 1.0.0 encoding now carries presences or pendingBytes")
	}
	if ours, err := message.Unmarshal(tc.msg.Marshal(message.V100)); err != nil || len(ours.Wantlist) != 0 || ours.PendingBytes != 10 {
		t.Errorf("our 1.0.0 encoding should drop the want-have and keep pendingBytes: %+v, %v", ours, err)
	}

	v1 := bm.ToProtoV1()
	if len(v1.Wantlist.Entries) != 1 || len(v1.BlockPresences) != 1 {
		t.Error("boxo's 1.1.0 encoding no longer carries want-haves and presences; we drop them")
	}
	if got, want := tc.msg.Marshal(message.V120), boxoBytes(t, bm, message.V110); !bytes.Equal(got, want) {
		t.Errorf("boxo's 1.1.0 encoding should equal our 1.2.0 one\nours: % x\nboxo: % x", got, want)
	}

	// Both always write the wantlist field, even when it is empty.
	empty, err := proto.Marshal(bsmsg.New(false).ToProtoV1())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(empty, []byte{0x0a, 0x00}) {
		t.Errorf("boxo encodes an empty message as % x", empty)
	}
}

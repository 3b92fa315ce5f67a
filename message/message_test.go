package message

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
)

func TestEmptyMessageEncodesToAnEmptyWantlistField(t *testing.T) {
	for _, v := range allVersions {
		t.Run(v.String(), func(t *testing.T) {
			var m Message
			got := m.Marshal(v)
			if want := []byte{0x0a, 0x00}; !bytes.Equal(got, want) {
				t.Fatalf("Marshal = % x, want % x", got, want)
			}
			if n := m.Size(v); n != 2 {
				t.Fatalf("Size = %d, want 2", n)
			}
			dec, err := Unmarshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if d := diffMessages(&m, dec); d != "" {
				t.Fatal(d)
			}
		})
	}
}

// TestGoldenEncoding pins the wire bytes of every field, worked out by hand
// from the schema, independently of any other implementation.
func TestGoldenEncoding(t *testing.T) {
	// CIDv1, raw, identity multihash of "a": 01 55 00 01 61.
	c := newBlock(t, prefixIdentity, "a").Cid()
	cidBytes := []byte{0x01, 0x55, 0x00, 0x01, 0x61}
	if !bytes.Equal(c.Bytes(), cidBytes) {
		t.Fatalf("test CID is % x", c.Bytes())
	}
	blk := newBlock(t, prefixIdentity, "a")

	tests := []struct {
		name string
		m    Message
		v    Version
		want []byte
	}{{
		name: "every field",
		m: Message{
			Full:           true,
			Wantlist:       []Entry{{Cid: c, Priority: 1, Cancel: true, WantType: WantHave, SendDontHave: true}},
			Blocks:         []blocks.Block{blk},
			BlockPresences: []BlockPresence{{Cid: c, Type: DontHave}},
			PendingBytes:   7,
		},
		v: V120,
		want: cat(
			[]byte{0x0a, 0x13}, // wantlist, 19 bytes
			[]byte{0x0a, 0x0f}, //   entry, 15 bytes
			[]byte{0x0a, 0x05}, // block (CID), 5 bytes
			cidBytes,
			[]byte{0x10, 0x01}, // priority 1
			[]byte{0x18, 0x01}, // cancel
			[]byte{0x20, 0x01}, // wantType Have
			[]byte{0x28, 0x01}, // sendDontHave
			[]byte{0x10, 0x01}, //   full
			[]byte{0x1a, 0x09}, // payload, 9 bytes
			[]byte{0x0a, 0x04, 0x01, 0x55, 0x00, 0x01}, // prefix
			[]byte{0x12, 0x01, 0x61},                   // data
			[]byte{0x22, 0x09},                         // blockPresences, 9 bytes
			[]byte{0x0a, 0x05},                         // cid, 5 bytes
			cidBytes,
			[]byte{0x10, 0x01}, // type DontHave
			[]byte{0x28, 0x07}, // pendingBytes 7
		),
	}, {
		name: "defaults are left out",
		m: Message{
			Wantlist:       []Entry{{Cid: c}},
			BlockPresences: []BlockPresence{{Cid: c, Type: Have}},
		},
		v: V120,
		want: cat(
			[]byte{0x0a, 0x09, 0x0a, 0x07, 0x0a, 0x05}, cidBytes,
			[]byte{0x22, 0x07, 0x0a, 0x05}, cidBytes,
		),
	}, {
		name: "negative int32 is sign-extended to ten bytes",
		m:    Message{Wantlist: []Entry{{Cid: c, Priority: -1}}, PendingBytes: -2},
		v:    V120,
		want: cat(
			[]byte{0x0a, 0x14, 0x0a, 0x12, 0x0a, 0x05}, cidBytes,
			[]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
			[]byte{0x28, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		),
	}, {
		name: "1.0.0 blocks are raw data in field 2",
		m:    Message{Blocks: []blocks.Block{blk}},
		v:    V100,
		want: []byte{0x0a, 0x00, 0x12, 0x01, 0x61},
	}, {
		name: "empty block data is left out of the payload",
		m:    Message{Blocks: []blocks.Block{newBlock(t, prefixRaw, "")}},
		v:    V110,
		want: []byte{0x0a, 0x00, 0x1a, 0x06, 0x0a, 0x04, 0x01, 0x55, 0x12, 0x20},
	}, {
		name: "CIDv0 prefix",
		m:    Message{Blocks: []blocks.Block{newBlock(t, prefixV0, "")}},
		v:    V110,
		want: []byte{0x0a, 0x00, 0x1a, 0x06, 0x0a, 0x04, 0x00, 0x70, 0x12, 0x20},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.m.Marshal(tt.v)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("Marshal =\n% x\nwant\n% x", got, tt.want)
			}
		})
	}
}

// roundTripCases are messages exercising every field.
func roundTripCases(t testing.TB) []struct {
	name string
	m    *Message
} {
	c0 := testCid(t, prefixV0, 0)
	c1 := testCid(t, prefixRaw, 1)
	c2 := testCid(t, prefixDagPB, 2)
	c3 := testCid(t, prefixIdentity, 3)
	c4 := testCid(t, prefixBlake3, 4)
	var allBlocks []blocks.Block
	for i, p := range allBlockPrefixes {
		allBlocks = append(allBlocks, newBlock(t, p, fmt.Sprintf("block %d", i)))
	}
	return []struct {
		name string
		m    *Message
	}{
		{"empty", &Message{}},
		{"full empty wantlist", &Message{Full: true}},
		{"want-block CIDv0", &Message{Wantlist: []Entry{{Cid: c0, Priority: 10}}}},
		{"want-block CIDv1 raw", &Message{Wantlist: []Entry{{Cid: c1, Priority: 1}}}},
		{"want-block sendDontHave", &Message{Wantlist: []Entry{{Cid: c2, SendDontHave: true}}}},
		{"want-have", &Message{Wantlist: []Entry{{Cid: c1, WantType: WantHave, SendDontHave: true}}}},
		{"cancel", &Message{Wantlist: []Entry{{Cid: c0, Cancel: true}}}},
		{"cancel of want-have", &Message{Wantlist: []Entry{{Cid: c1, Cancel: true, WantType: WantHave}}}},
		{"priority extremes", &Message{Wantlist: []Entry{
			{Cid: c0, Priority: math.MaxInt32}, {Cid: c1, Priority: math.MinInt32}, {Cid: c2, Priority: -1},
		}}},
		{"full wantlist of every kind", &Message{Full: true, Wantlist: []Entry{
			{Cid: c0, Priority: 5},
			{Cid: c1, Priority: 4, WantType: WantHave},
			{Cid: c2, Priority: 3, SendDontHave: true},
			{Cid: c3, Priority: 2, WantType: WantHave, SendDontHave: true},
			{Cid: c4, Cancel: true},
		}}},
		{"blocks of every prefix", &Message{Blocks: allBlocks}},
		{"empty block", &Message{Blocks: []blocks.Block{newBlock(t, prefixRaw, "")}}},
		{"presences", &Message{BlockPresences: []BlockPresence{
			{Cid: c0, Type: Have}, {Cid: c1, Type: DontHave}, {Cid: c3, Type: Have},
		}}},
		{"pending bytes", &Message{PendingBytes: 1 << 20}},
		{"negative pending bytes", &Message{PendingBytes: -5}},
		{"everything", &Message{
			Full:           true,
			Wantlist:       []Entry{{Cid: c0, Priority: 1}, {Cid: c1, WantType: WantHave}, {Cid: c2, Cancel: true}},
			Blocks:         allBlocks[:3],
			BlockPresences: []BlockPresence{{Cid: c3, Type: DontHave}, {Cid: c4}},
			PendingBytes:   12345,
		}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tt := range roundTripCases(t) {
		for _, v := range allVersions {
			t.Run(tt.name+"/"+v.String(), func(t *testing.T) {
				data := tt.m.Marshal(v)
				if n := tt.m.Size(v); n != len(data) {
					t.Errorf("Size = %d, len(Marshal) = %d", n, len(data))
				}
				got, err := Unmarshal(data)
				if err != nil {
					t.Fatalf("Unmarshal: %v", err)
				}
				if d := diffMessages(asSeenBy(tt.m, v), got); d != "" {
					t.Fatal(d)
				}
			})
		}
	}
}

func TestVersionsBefore120DropWantHavesAndPresencesButKeepCancels(t *testing.T) {
	want := testCid(t, prefixRaw, 1)
	have := testCid(t, prefixRaw, 2)
	cancelHave := testCid(t, prefixRaw, 3)
	cancelBlock := testCid(t, prefixRaw, 4)
	m := &Message{
		Wantlist: []Entry{
			{Cid: want, Priority: 2, SendDontHave: true},
			{Cid: have, WantType: WantHave},
			{Cid: cancelHave, WantType: WantHave, Cancel: true},
			{Cid: cancelBlock, Cancel: true},
		},
		BlockPresences: []BlockPresence{{Cid: have, Type: Have}, {Cid: want, Type: DontHave}},
	}
	for _, v := range []Version{V100, V110} {
		t.Run(v.String(), func(t *testing.T) {
			got, err := Unmarshal(m.Marshal(v))
			if err != nil {
				t.Fatal(err)
			}
			wantMsg := &Message{Wantlist: []Entry{m.Wantlist[0], m.Wantlist[2], m.Wantlist[3]}}
			if d := diffMessages(wantMsg, got); d != "" {
				t.Fatal(d)
			}
		})
	}
	t.Run(V120.String(), func(t *testing.T) {
		got, err := Unmarshal(m.Marshal(V120))
		if err != nil {
			t.Fatal(err)
		}
		if d := diffMessages(m, got); d != "" {
			t.Fatal(d)
		}
	})
}

func TestV100BlocksAreReceivedAsCIDv0(t *testing.T) {
	blk := newBlock(t, prefixRaw, "raw leaf")
	got, err := Unmarshal((&Message{Blocks: []blocks.Block{blk}}).Marshal(V100))
	if err != nil {
		t.Fatal(err)
	}
	c := got.Blocks[0].Cid()
	if c.Version() != 0 || c.Prefix().Codec != cid.DagProtobuf {
		t.Fatalf("received CID %s, want a CIDv0", c)
	}
	if string(got.Blocks[0].RawData()) != "raw leaf" {
		t.Fatalf("data = %q", got.Blocks[0].RawData())
	}
}

func TestMaxSizeBlockRoundTrips(t *testing.T) {
	data := make([]byte, MaxBlockSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	for _, p := range []cid.Prefix{prefixV0, prefixRaw} {
		m := &Message{Blocks: []blocks.Block{newBlock(t, p, string(data))}}
		for _, v := range allVersions {
			t.Run(fmt.Sprintf("%s/%s", m.Blocks[0].Cid(), v), func(t *testing.T) {
				enc := m.Marshal(v)
				if len(enc) > MaxMessageSize {
					t.Fatalf("encoded %d bytes", len(enc))
				}
				got, err := Unmarshal(enc)
				if err != nil {
					t.Fatal(err)
				}
				if d := diffMessages(asSeenBy(m, v), got); d != "" {
					t.Fatal(d)
				}
			})
		}
	}
}

func TestAppendMarshalAppendsToDst(t *testing.T) {
	m := roundTripCases(t)[len(roundTripCases(t))-1].m
	dst := []byte("prefix")
	got := m.AppendMarshal(dst, V120)
	if !bytes.HasPrefix(got, []byte("prefix")) || !bytes.Equal(got[len("prefix"):], m.Marshal(V120)) {
		t.Fatal("AppendMarshal did not append the encoding to dst")
	}
}

func TestAppendMarshalIntoRoomyBufferDoesNotAllocate(t *testing.T) {
	m := roundTripCases(t)[len(roundTripCases(t))-1].m
	buf := make([]byte, 0, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		buf = m.AppendMarshal(buf[:0], V120)
	})
	if allocs != 0 {
		t.Fatalf("AppendMarshal allocated %v times per call", allocs)
	}
}

// randomMessage builds a message with a random mix of every kind of item.
func randomMessage(t testing.TB, r *rand.Rand, maxItems int) *Message {
	m := &Message{Full: r.IntN(2) == 0}
	if r.IntN(3) == 0 {
		m.PendingBytes = r.Int32() - math.MaxInt32/2
	}
	for i := range r.IntN(maxItems + 1) {
		m.Wantlist = append(m.Wantlist, Entry{
			Cid:          testCid(t, allBlockPrefixes[r.IntN(len(allBlockPrefixes))], i),
			Priority:     r.Int32() - math.MaxInt32/2,
			Cancel:       r.IntN(4) == 0,
			WantType:     WantType(r.IntN(2)),
			SendDontHave: r.IntN(2) == 0,
		})
	}
	for i := range r.IntN(maxItems/4 + 1) {
		data := strings.Repeat("x", r.IntN(600)) + fmt.Sprint(i)
		m.Blocks = append(m.Blocks, newBlock(t, allBlockPrefixes[r.IntN(len(allBlockPrefixes))], data))
	}
	for i := range r.IntN(maxItems + 1) {
		m.BlockPresences = append(m.BlockPresences, BlockPresence{
			Cid:  testCid(t, allBlockPrefixes[r.IntN(len(allBlockPrefixes))], 1000+i),
			Type: PresenceType(r.IntN(2)),
		})
	}
	return m
}

func TestSizeIsTheEncodedLength(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		m := randomMessage(t, r, 40)
		for _, v := range allVersions {
			if got, want := m.Size(v), len(m.Marshal(v)); got != want {
				t.Fatalf("message %d, %s: Size = %d, len(Marshal) = %d", i, v, got, want)
			}
		}
	}
}

func TestRandomMessagesRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 200 {
		m := randomMessage(t, r, 20)
		for _, v := range allVersions {
			got, err := Unmarshal(m.Marshal(v))
			if err != nil {
				t.Fatalf("message %d, %s: %v", i, v, err)
			}
			if d := diffMessages(asSeenBy(m, v), got); d != "" {
				t.Fatalf("message %d, %s: %s", i, v, d)
			}
		}
	}
}

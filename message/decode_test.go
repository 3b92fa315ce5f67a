package message

import (
	"bytes"
	"errors"
	"runtime"
	"strings"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
)

func TestUnmarshalRejectsInvalidInput(t *testing.T) {
	c := testCid(t, prefixRaw, 1)
	cidField := lenField(1, c.Bytes())
	entry := func(fields ...[]byte) []byte { return lenField(1, lenField(1, fields...)) }
	payload := func(fields ...[]byte) []byte { return lenField(3, fields...) }
	presence := func(fields ...[]byte) []byte { return lenField(4, fields...) }
	overflow := bytes.Repeat([]byte{0xff}, 10) // 10th byte has more than one bit

	tests := []struct {
		name  string
		input []byte
		is    error
		msg   string // substring of the error message
	}{
		{"too large", make([]byte, MaxMessageSize+1), ErrTooLarge, "4194305 bytes, limit is 4194304"},

		// Structure.
		{"truncated tag", []byte{0x80}, ErrMalformed, "at byte 0: bad field tag: unexpected EOF"},
		{"field number 0", []byte{0x00, 0x00}, ErrMalformed, "at byte 0: bad field tag: invalid field number"},
		{"tag varint overflow", overflow, ErrMalformed, "bad field tag: variable length integer overflow"},
		{"truncated length", []byte{0x0a}, ErrMalformed, "at byte 0: field 1 (bytes): unexpected EOF"},
		{"length past end", []byte{0x0a, 0x05, 0x0a}, ErrMalformed, "at byte 0: field 1 (bytes): unexpected EOF"},
		{"huge length", cat(tag(1, 2), varint(1<<63), []byte{0}), ErrMalformed, "field 1 (bytes): unexpected EOF"},
		{"length varint overflow", cat(tag(1, 2), overflow), ErrMalformed, "field 1 (bytes): variable length integer overflow"},
		{"truncated varint value", []byte{0x28, 0x80}, ErrMalformed, "at byte 0: field 5 (varint): unexpected EOF"},
		{"truncated fixed64", cat(tag(9, 1), []byte{1, 2, 3}), ErrMalformed, "field 9 (fixed64): unexpected EOF"},
		{"unterminated group", cat(tag(9, 3), varintField(1, 1)), ErrMalformed, "field 9 (start group): unexpected EOF"},
		{"stray end group", tag(9, 4), ErrMalformed, "field 9 (end group): mismatching end group marker"},
		{"error offset inside later field", cat(lenField(1), []byte{0x0a}), ErrMalformed, "at byte 2: field 1 (bytes)"},

		// Wrong wire types for known fields.
		{"wantlist as varint", varintField(1, 1), ErrMalformed, "field 1 (wantlist) has wire type varint, want bytes"},
		{"blocks as varint", varintField(2, 1), ErrMalformed, "field 2 (blocks) has wire type varint, want bytes"},
		{"payload as fixed32", cat(tag(3, 5), []byte{1, 2, 3, 4}), ErrMalformed, "field 3 (payload) has wire type fixed32, want bytes"},
		{"presence as varint", varintField(4, 0), ErrMalformed, "field 4 (blockPresences) has wire type varint, want bytes"},
		{"pendingBytes as bytes", lenField(5), ErrMalformed, "field 5 (pendingBytes) has wire type bytes, want varint"},
		{"full as bytes", lenField(1, lenField(2)), ErrMalformed, "wantlist: at byte 2: field 2 (full) has wire type bytes, want varint"},
		{"entries as varint", lenField(1, varintField(1, 3)), ErrMalformed, "wantlist: at byte 2: field 1 (entries) has wire type varint, want bytes"},
		{"entry block as varint", entry(varintField(1, 1)), ErrMalformed, "wantlist entry 0: at byte 4: field 1 (block) has wire type varint"},
		{"entry priority as bytes", entry(cidField, lenField(2)), ErrMalformed, "wantlist entry 0: at byte 42: field 2 (priority) has wire type bytes"},
		{"entry cancel as bytes", entry(lenField(3)), ErrMalformed, "field 3 (cancel) has wire type bytes"},
		{"entry wantType as bytes", entry(lenField(4)), ErrMalformed, "field 4 (wantType) has wire type bytes"},
		{"entry sendDontHave as bytes", entry(lenField(5)), ErrMalformed, "field 5 (sendDontHave) has wire type bytes"},
		{"payload prefix as varint", payload(varintField(1, 1)), ErrMalformed, "block 0: at byte 2: field 1 (prefix) has wire type varint"},
		{"payload data as varint", payload(varintField(2, 1)), ErrMalformed, "block 0: at byte 2: field 2 (data) has wire type varint"},
		{"presence cid as varint", presence(varintField(1, 1)), ErrMalformed, "block presence 0: at byte 2: field 1 (cid) has wire type varint"},
		{"presence type as bytes", presence(lenField(2)), ErrMalformed, "block presence 0: at byte 2: field 2 (type) has wire type bytes"},

		// Truncation inside nested messages.
		{"truncated entry", lenField(1, []byte{0x0a, 0x05, 0x0a}), ErrMalformed, "wantlist: at byte 2: field 1 (bytes): unexpected EOF"},
		{"truncated entry field", entry([]byte{0x0a, 0x22, 0x01}), ErrMalformed, "wantlist entry 0: at byte 4: field 1 (bytes): unexpected EOF"},
		{"truncated payload field", payload([]byte{0x12, 0x09}), ErrMalformed, "block 0: at byte 2: field 2 (bytes): unexpected EOF"},
		{"truncated presence field", presence([]byte{0x10}), ErrMalformed, "block presence 0: at byte 2: field 2 (varint): unexpected EOF"},

		// CIDs.
		{"entry without CID", entry(varintField(2, 1)), ErrMalformed, "wantlist entry 0: missing CID"},
		{"entry with bad CID", entry(lenField(1, []byte{0x01, 0x55, 0x12})), ErrMalformed, "wantlist entry 0: invalid CID 015512: "},
		{"entry with trailing CID bytes", entry(lenField(1, c.Bytes(), []byte{0})), ErrMalformed, "wantlist entry 0: invalid CID"},
		{"entry with CID version 2", entry(lenField(1, []byte{0x02, 0x55, 0x00, 0x00})), ErrMalformed, "wantlist entry 0: invalid CID"},
		{"second entry with bad CID", lenField(1, lenField(1, cidField), lenField(1, lenField(1, []byte{0xff}))), ErrMalformed, "wantlist entry 1: invalid CID ff"},
		{"presence without CID", presence(varintField(2, 1)), ErrMalformed, "block presence 0: missing CID"},
		{"presence with bad CID", presence(lenField(1, []byte{0x12, 0x20, 0x01})), ErrMalformed, "block presence 0: invalid CID 122001"},

		// Enum values.
		{"unknown want type", entry(cidField, varintField(4, 2)), ErrMalformed, "wantlist entry 0: " + c.String() + ": unknown want type 2"},
		{"want type beyond int32", entry(cidField, varintField(4, 1<<32|1)), ErrMalformed, "unknown want type 4294967297"},
		{"unknown presence type", presence(lenField(1, c.Bytes()), varintField(2, 7)), ErrMalformed, "block presence 0: " + c.String() + ": unknown presence type 7"},

		// Block prefixes.
		{"payload without prefix", payload(lenField(2, []byte("data"))), ErrMalformed, "block 0: missing CID prefix"},
		{"truncated prefix", payload(lenField(1, []byte{0x01, 0x55})), ErrMalformed, "block 0: invalid CID prefix 0155: "},
		{"prefix with trailing bytes", payload(lenField(1, []byte{0x01, 0x55, 0x12, 0x20, 0x00})), ErrMalformed, "block 0: invalid CID prefix 0155122000: trailing bytes"},
		{"non-minimal prefix varint", payload(lenField(1, []byte{0x81, 0x00, 0x55, 0x12, 0x20})), ErrMalformed, "block 0: invalid CID prefix"},
		{"unsupported hash function", payload(lenField(1, []byte{0x01, 0x55, 0xb4, 0x24, 0x20})), ErrMalformed, "block 0: cannot compute CID for prefix {version 1, codec 0x55, hash 0x1234, length 32}: "},
		{"digest longer than the hash", payload(lenField(1, []byte{0x01, 0x55, 0x12, 0x21})), ErrMalformed, "cannot compute CID for prefix {version 1, codec 0x55, hash 0x12, length 33}"},
		{"CIDv0 prefix with another hash", payload(lenField(1, []byte{0x00, 0x70, 0x13, 0x40})), ErrMalformed, "block 0: cannot compute CID for prefix {version 0, codec 0x70, hash 0x13, length 64}: "},
		{"CID version 2 prefix", payload(lenField(1, []byte{0x02, 0x55, 0x12, 0x20})), ErrMalformed, "cannot compute CID for prefix {version 2"},
		{"second block bad", cat(lenField(2, []byte("v0 block")), payload(lenField(1, []byte{0x01}))), ErrMalformed, "block 1: invalid CID prefix 01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Unmarshal(tt.input)
			if err == nil {
				t.Fatalf("Unmarshal succeeded: %+v", m)
			}
			if m != nil {
				t.Errorf("Unmarshal returned a message with error %v", err)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %q", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
			if want := tt.is.Error() + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
}

func TestUnmarshalKeepsTheCIDErrorInTheChain(t *testing.T) {
	_, err := Unmarshal(lenField(1, lenField(1, lenField(1, []byte{0xff}))))
	var cidErr cid.ErrInvalidCid
	if !errors.As(err, &cidErr) {
		t.Fatalf("error %v does not wrap cid.ErrInvalidCid", err)
	}
}

func TestUnmarshalAcceptsMaxMessageSize(t *testing.T) {
	// An unknown field padding the message to exactly the limit.
	pad := MaxMessageSize - len(cat(tag(15, 2), varint(MaxMessageSize)))
	input := cat(tag(15, 2), varint(uint64(pad)), make([]byte, pad))
	if len(input) != MaxMessageSize {
		t.Fatalf("test input is %d bytes", len(input))
	}
	if _, err := Unmarshal(input); err != nil {
		t.Fatal(err)
	}
}

func TestUnmarshalSkipsUnknownFields(t *testing.T) {
	c := testCid(t, prefixRaw, 1)
	blk := newBlock(t, prefixRaw, "data")
	unknown := cat(
		varintField(15, 300),
		cat(tag(16, 1), make([]byte, 8)),
		lenField(17, []byte("future")),
		cat(tag(18, 3), varintField(1, 1), lenField(2, []byte("x")), tag(18, 4)),
		cat(tag(19, 5), make([]byte, 4)),
	)
	input := cat(
		unknown,
		lenField(1, unknown, lenField(1, unknown, lenField(1, c.Bytes()), unknown, varintField(2, 9)), unknown),
		lenField(3, unknown, lenField(1, blk.Cid().Prefix().Bytes()), lenField(2, blk.RawData()), unknown),
		lenField(4, unknown, lenField(1, c.Bytes()), varintField(2, 1)),
		unknown,
	)
	got, err := Unmarshal(input)
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{
		Wantlist:       []Entry{{Cid: c, Priority: 9}},
		Blocks:         []blocks.Block{blk},
		BlockPresences: []BlockPresence{{Cid: c, Type: DontHave}},
	}
	if d := diffMessages(want, got); d != "" {
		t.Fatal(d)
	}
}

func TestUnmarshalAcceptsBothBlockEncodingsInOneMessage(t *testing.T) {
	v0 := newBlock(t, prefixV0, "sent as 1.0.0")
	v1 := newBlock(t, prefixRaw, "sent as 1.1.0")
	input := cat(
		lenField(1),
		lenField(3, lenField(1, v1.Cid().Prefix().Bytes()), lenField(2, v1.RawData())),
		lenField(2, v0.RawData()),
	)
	got, err := Unmarshal(input)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffMessages(&Message{Blocks: []blocks.Block{v1, v0}}, got); d != "" {
		t.Fatal(d)
	}
}

func TestUnmarshalMergesRepeatedFieldsTheProtobufWay(t *testing.T) {
	c1 := testCid(t, prefixRaw, 1)
	c2 := testCid(t, prefixRaw, 2)
	input := cat(
		lenField(1, lenField(1, lenField(1, c1.Bytes())), varintField(2, 1)),
		varintField(5, 10),
		// A second wantlist adds its entries; leaving out full does not
		// reset it, as on the wire an absent field is a default value.
		lenField(1, lenField(1, lenField(1, c2.Bytes()), varintField(2, 3), varintField(2, 4))),
		varintField(5, 20),
	)
	got, err := Unmarshal(input)
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{Full: true, Wantlist: []Entry{{Cid: c1}, {Cid: c2, Priority: 4}}, PendingBytes: 20}
	if d := diffMessages(want, got); d != "" {
		t.Fatal(d)
	}
}

func TestUnmarshalReadsScalarsLikeProtobuf(t *testing.T) {
	c := testCid(t, prefixRaw, 1)
	input := cat(
		// Any non-zero varint is true; int32 keeps the low 32 bits.
		lenField(1, lenField(1, lenField(1, c.Bytes()), varintField(2, 1<<32|5), varintField(3, 2), varintField(5, 300)), varintField(2, 7)),
		varintField(5, 0xffffffff),
	)
	got, err := Unmarshal(input)
	if err != nil {
		t.Fatal(err)
	}
	want := &Message{Full: true, Wantlist: []Entry{{Cid: c, Priority: 5, Cancel: true, SendDontHave: true}}, PendingBytes: -1}
	if d := diffMessages(want, got); d != "" {
		t.Fatal(d)
	}
}

func TestUnmarshalAcceptsAMessageWithoutWantlist(t *testing.T) {
	// We always send the wantlist field, but do not require it.
	for _, input := range [][]byte{nil, {}, varintField(5, 1)} {
		if _, err := Unmarshal(input); err != nil {
			t.Errorf("Unmarshal(% x): %v", input, err)
		}
	}
}

func TestUnmarshalSharesBlockDataWithTheInput(t *testing.T) {
	blk := newBlock(t, prefixRaw, "shared")
	for _, v := range []Version{V100, V120} {
		input := (&Message{Blocks: []blocks.Block{blk}}).Marshal(v)
		got, err := Unmarshal(input)
		if err != nil {
			t.Fatal(err)
		}
		data := got.Blocks[0].RawData()
		i := bytes.Index(input, []byte("shared"))
		if &data[0] != &input[i] {
			t.Errorf("%s: block data was copied; Unmarshal documents that it is not", v)
		}
	}
}

func TestUnmarshalOfTinyInvalidEntriesAllocatesLittle(t *testing.T) {
	// A megabyte of empty entries: Unmarshal must fail on the first one
	// without first reserving room for half a million.
	input := lenField(1, bytes.Repeat([]byte{0x0a, 0x00}, 1<<19))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := Unmarshal(input)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "wantlist entry 0: missing CID") {
		t.Fatalf("err = %v", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10 {
		t.Fatalf("Unmarshal allocated %d bytes", n)
	}
}

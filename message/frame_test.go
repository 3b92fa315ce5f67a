package message

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	blocks "github.com/ipfs/go-block-format"
)

func TestFramesRoundTripThroughAStream(t *testing.T) {
	cases := roundTripCases(t)
	var stream []byte
	for _, tt := range cases {
		stream = AppendFrame(stream, tt.m, V120)
	}
	rest := stream
	for _, tt := range cases {
		body, next, err := ParseFrame(rest, MaxMessageSize)
		if err != nil {
			t.Fatalf("%s: ParseFrame: %v", tt.name, err)
		}
		if !bytes.Equal(body, tt.m.Marshal(V120)) {
			t.Fatalf("%s: frame body is not the message encoding", tt.name)
		}
		got, err := Unmarshal(body)
		if err != nil {
			t.Fatalf("%s: Unmarshal: %v", tt.name, err)
		}
		if d := diffMessages(tt.m, got); d != "" {
			t.Fatalf("%s: %s", tt.name, d)
		}
		rest = next
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes left after the last frame", len(rest))
	}
}

func TestAppendFrameIsLengthThenBody(t *testing.T) {
	got := AppendFrame([]byte{0xaa}, &Message{}, V100)
	if want := []byte{0xaa, 0x02, 0x0a, 0x00}; !bytes.Equal(got, want) {
		t.Fatalf("AppendFrame = % x, want % x", got, want)
	}
}

func TestParseFrame(t *testing.T) {
	big := make([]byte, 300)
	tests := []struct {
		name  string
		buf   []byte
		limit int
		body  []byte
		rest  []byte
		is    error
		msg   string
	}{
		{name: "whole frame", buf: []byte{0x02, 0x0a, 0x00}, limit: 10, body: []byte{0x0a, 0x00}, rest: []byte{}},
		{name: "frame then more", buf: []byte{0x01, 0x07, 0x03, 0x09}, limit: 10, body: []byte{0x07}, rest: []byte{0x03, 0x09}},
		{name: "empty frame", buf: []byte{0x00, 0x05}, limit: 10, body: []byte{}, rest: []byte{0x05}},
		{name: "two-byte length", buf: cat([]byte{0xac, 0x02}, big), limit: 300, body: big, rest: []byte{}},
		{name: "exactly the limit", buf: []byte{0x03, 1, 2, 3}, limit: 3, body: []byte{1, 2, 3}, rest: []byte{}},
		{name: "non-minimal length is read", buf: []byte{0x81, 0x00, 0x07}, limit: 10, body: []byte{0x07}, rest: []byte{}},

		{name: "empty buffer", buf: nil, limit: 10, is: ErrIncomplete, msg: "length prefix not complete (0 bytes)"},
		{name: "partial length", buf: []byte{0xac}, limit: 1000, is: ErrIncomplete, msg: "length prefix not complete (1 bytes)"},
		{name: "partial body", buf: []byte{0x05, 1, 2}, limit: 10, is: ErrIncomplete, msg: "have 3 of 6 frame bytes"},
		{name: "over the limit", buf: []byte{0x04, 1, 2, 3, 4}, limit: 3, is: ErrTooLarge, msg: "frame of 4 bytes, limit is 3"},
		{name: "over the limit before the body arrives", buf: varint(1 << 40), limit: 10, is: ErrTooLarge, msg: "frame of 1099511627776 bytes"},
		{name: "huge limit", buf: cat(varint(math.MaxInt64), []byte{1}), limit: math.MaxInt, is: ErrIncomplete, msg: "have 10 of 9223372036854775816 frame bytes"},
		{name: "zero limit means MaxMessageSize", buf: varint(MaxMessageSize + 1), limit: 0, is: ErrTooLarge, msg: "limit is 4194304"},
		{name: "length overflows 64 bits", buf: bytes.Repeat([]byte{0xff}, 10), limit: 10, is: ErrMalformed, msg: "frame length prefix: variable length integer overflow"},
		{name: "length longer than ten bytes", buf: bytes.Repeat([]byte{0x80}, 11), limit: 10, is: ErrMalformed, msg: "frame length prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, rest, err := ParseFrame(tt.buf, tt.limit)
			if tt.is != nil {
				if !errors.Is(err, tt.is) {
					t.Fatalf("error %v is not %v", err, tt.is)
				}
				if !strings.Contains(err.Error(), tt.msg) {
					t.Errorf("error %q does not contain %q", err, tt.msg)
				}
				if body != nil || !bytes.Equal(rest, tt.buf) {
					t.Errorf("on error got body % x, rest % x; want nil and the whole buffer", body, rest)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, tt.body) || !bytes.Equal(rest, tt.rest) {
				t.Fatalf("got body % x rest % x, want body % x rest % x", body, rest, tt.body, tt.rest)
			}
		})
	}
}

func TestParseFrameBodyCannotGrowIntoRest(t *testing.T) {
	buf := []byte{0x01, 0x07, 0x01, 0x08}
	body, rest, err := ParseFrame(buf, 10)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(body, 0xff)
	if rest[0] != 0x01 {
		t.Fatal("appending to body overwrote the next frame")
	}
}

func TestFramePartsAreTheFrame(t *testing.T) {
	big := newBlock(t, prefixRaw, strings.Repeat("b", 5000))
	cases := roundTripCases(t)
	cases = append(cases, struct {
		name string
		m    *Message
	}{"large and small blocks with presences", &Message{
		Blocks:         []blocks.Block{big, newBlock(t, prefixV0, "small"), big},
		BlockPresences: []BlockPresence{{Cid: big.Cid(), Type: Have}},
	}})
	for _, tt := range cases {
		data := map[*byte]bool{}
		for _, b := range tt.m.Blocks {
			if len(b.RawData()) > 0 {
				data[&b.RawData()[0]] = true
			}
		}
		for _, v := range allVersions {
			for _, minRef := range []int{0, 100, 1 << 20} {
				want := AppendFrame(nil, tt.m, v)
				buf := make([]byte, 0, 8)
				parts, buf := FrameParts(nil, buf, tt.m, v, minRef)
				if got := bytes.Join(parts, nil); !bytes.Equal(got, want) {
					t.Fatalf("%s, %s, minRef %d: parts join to\n% x\nwant\n% x", tt.name, v, minRef, got, want)
				}
				// Large data is referenced, never copied into buf.
				copied, large := 0, 0
				for _, p := range parts {
					if len(p) > 0 && data[&p[0]] {
						if len(p) < max(minRef, 1) {
							t.Fatalf("%s, %s, minRef %d: a %d-byte block is referenced", tt.name, v, minRef, len(p))
						}
						continue
					}
					copied += len(p)
				}
				for _, b := range tt.m.Blocks {
					if n := len(b.RawData()); n >= max(minRef, 1) {
						large += n
					}
				}
				if len(buf) != copied || copied+large != len(want) {
					t.Fatalf("%s, %s, minRef %d: buf holds %d bytes, copied parts %d, large data %d, frame %d",
						tt.name, v, minRef, len(buf), copied, large, len(want))
				}
			}
		}
	}
}

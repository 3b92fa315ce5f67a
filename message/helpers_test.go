package message

import (
	"bytes"
	"fmt"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

var allVersions = []Version{V100, V110, V120}

// Prefixes used to build test blocks and CIDs.
var (
	prefixV0         = cid.Prefix{Version: 0, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}
	prefixRaw        = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}
	prefixDagPB      = cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}
	prefixIdentity   = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.IDENTITY, MhLength: -1}
	prefixBlake3     = cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.BLAKE3, MhLength: -1}
	prefixTruncSHA   = cid.Prefix{Version: 1, Codec: cid.DagCBOR, MhType: mh.SHA2_256, MhLength: 20}
	allBlockPrefixes = []cid.Prefix{prefixV0, prefixRaw, prefixDagPB, prefixIdentity, prefixBlake3, prefixTruncSHA}
)

// newBlock makes a block of data addressed with prefix.
func newBlock(tb testing.TB, p cid.Prefix, data string) blocks.Block {
	tb.Helper()
	c, err := p.Sum([]byte(data))
	if err != nil {
		tb.Fatalf("sum %q: %v", data, err)
	}
	b, err := blocks.NewBlockWithCid([]byte(data), c)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// testCid returns a distinct CID for each i, using prefix p.
func testCid(tb testing.TB, p cid.Prefix, i int) cid.Cid {
	tb.Helper()
	return newBlock(tb, p, fmt.Sprintf("cid %d", i)).Cid()
}

// asSeenBy returns what a peer speaking v decodes from m.Marshal(v).
func asSeenBy(m *Message, v Version) *Message {
	out := &Message{Full: m.Full, PendingBytes: m.PendingBytes}
	for _, e := range m.Wantlist {
		if e.sentIn(v) {
			out.Wantlist = append(out.Wantlist, e)
		}
	}
	for _, b := range m.Blocks {
		if v == V100 {
			// Only the data travels; the receiver hashes it as a CIDv0.
			b = blocks.NewBlock(b.RawData())
		}
		out.Blocks = append(out.Blocks, b)
	}
	if v.SupportsHave() {
		out.BlockPresences = append(out.BlockPresences, m.BlockPresences...)
	}
	return out
}

// diffMessages describes the first difference between want and got, or
// returns "" when they are equal. Nil and empty slices are equal.
func diffMessages(want, got *Message) string {
	if want.Full != got.Full {
		return fmt.Sprintf("Full = %v, want %v", got.Full, want.Full)
	}
	if want.PendingBytes != got.PendingBytes {
		return fmt.Sprintf("PendingBytes = %d, want %d", got.PendingBytes, want.PendingBytes)
	}
	if len(want.Wantlist) != len(got.Wantlist) {
		return fmt.Sprintf("%d entries, want %d", len(got.Wantlist), len(want.Wantlist))
	}
	for i := range want.Wantlist {
		if want.Wantlist[i] != got.Wantlist[i] {
			return fmt.Sprintf("entry %d = %+v, want %+v", i, got.Wantlist[i], want.Wantlist[i])
		}
	}
	if len(want.Blocks) != len(got.Blocks) {
		return fmt.Sprintf("%d blocks, want %d", len(got.Blocks), len(want.Blocks))
	}
	for i := range want.Blocks {
		w, g := want.Blocks[i], got.Blocks[i]
		if !w.Cid().Equals(g.Cid()) {
			return fmt.Sprintf("block %d CID = %s, want %s", i, g.Cid(), w.Cid())
		}
		if !bytes.Equal(w.RawData(), g.RawData()) {
			return fmt.Sprintf("block %d data differs (%d bytes, want %d)", i, len(g.RawData()), len(w.RawData()))
		}
	}
	if len(want.BlockPresences) != len(got.BlockPresences) {
		return fmt.Sprintf("%d presences, want %d", len(got.BlockPresences), len(want.BlockPresences))
	}
	for i := range want.BlockPresences {
		if want.BlockPresences[i] != got.BlockPresences[i] {
			return fmt.Sprintf("presence %d = %+v, want %+v", i, got.BlockPresences[i], want.BlockPresences[i])
		}
	}
	return ""
}

// varint, tag and field build hand-written wire bytes for decoding tests.
func varint(v uint64) []byte {
	var b []byte
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func tag(num, wireType int) []byte { return varint(uint64(num<<3 | wireType)) }

// lenField is a length-delimited field: tag, length, then the parts.
func lenField(num int, parts ...[]byte) []byte {
	body := bytes.Join(parts, nil)
	return cat(tag(num, 2), varint(uint64(len(body))), body)
}

// varintField is a varint field.
func varintField(num int, v uint64) []byte { return cat(tag(num, 0), varint(v)) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

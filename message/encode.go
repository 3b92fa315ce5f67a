package message

import (
	"slices"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the Bitswap protobuf schema (ipfs/specs, boxo's
// bitswap/message/pb/message.proto).
const (
	// Message
	fieldWantlist       protowire.Number = 1
	fieldBlocks         protowire.Number = 2 // 1.0.0: raw block data
	fieldPayload        protowire.Number = 3 // 1.1.0+: prefix + data
	fieldBlockPresences protowire.Number = 4
	fieldPendingBytes   protowire.Number = 5

	// Message.Wantlist
	fieldWantlistEntries protowire.Number = 1
	fieldWantlistFull    protowire.Number = 2

	// Message.Wantlist.Entry
	fieldEntryBlock        protowire.Number = 1
	fieldEntryPriority     protowire.Number = 2
	fieldEntryCancel       protowire.Number = 3
	fieldEntryWantType     protowire.Number = 4
	fieldEntrySendDontHave protowire.Number = 5

	// Message.Block
	fieldBlockPrefix protowire.Number = 1
	fieldBlockData   protowire.Number = 2

	// Message.BlockPresence
	fieldPresenceCid  protowire.Number = 1
	fieldPresenceType protowire.Number = 2
)

// tagLen is the encoded size of every tag in the schema: all field numbers
// are below 16, so each tag fits in one byte.
const tagLen = 1

// sentIn reports whether e is written for peers speaking v. Peers before
// 1.2.0 would read a want-have as a want for the whole block, so it is
// dropped; a cancel is kept whatever its type because it only revokes.
func (e *Entry) sentIn(v Version) bool {
	return v.SupportsHave() || e.Cancel || e.WantType != WantHave
}

// bodySize is the size of the encoded Entry message, without its tag and
// length.
func (e *Entry) bodySize() int {
	n := sizeBytesField(e.Cid.ByteLen())
	if e.Priority != 0 {
		n += tagLen + protowire.SizeVarint(uint64(e.Priority))
	}
	if e.Cancel {
		n += tagLen + 1
	}
	if e.WantType != 0 {
		n += tagLen + protowire.SizeVarint(uint64(e.WantType))
	}
	if e.SendDontHave {
		n += tagLen + 1
	}
	return n
}

// fieldSize is the size of e as one element of Wantlist.entries, or 0 when
// e is not sent in v.
func (e *Entry) fieldSize(v Version) int {
	if !e.sentIn(v) {
		return 0
	}
	return tagLen + protowire.SizeBytes(e.bodySize())
}

func (e *Entry) appendField(b []byte) []byte {
	b = protowire.AppendTag(b, fieldWantlistEntries, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(e.bodySize()))
	if s := e.Cid.KeyString(); s != "" {
		b = protowire.AppendTag(b, fieldEntryBlock, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	if e.Priority != 0 {
		b = protowire.AppendTag(b, fieldEntryPriority, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(e.Priority))
	}
	if e.Cancel {
		b = protowire.AppendTag(b, fieldEntryCancel, protowire.VarintType)
		b = append(b, 1)
	}
	if e.WantType != 0 {
		b = protowire.AppendTag(b, fieldEntryWantType, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(e.WantType))
	}
	if e.SendDontHave {
		b = protowire.AppendTag(b, fieldEntrySendDontHave, protowire.VarintType)
		b = append(b, 1)
	}
	return b
}

// prefixSize is the length of cid.Prefix.Bytes for p, computed without
// allocating.
func prefixSize(p cid.Prefix) int {
	return protowire.SizeVarint(p.Version) + protowire.SizeVarint(p.Codec) +
		protowire.SizeVarint(p.MhType) + protowire.SizeVarint(uint64(p.MhLength))
}

// appendPrefix appends the same bytes as cid.Prefix.Bytes (the multiformats
// unsigned varint is the protobuf varint), without the allocation.
func appendPrefix(b []byte, p cid.Prefix) []byte {
	b = protowire.AppendVarint(b, p.Version)
	b = protowire.AppendVarint(b, p.Codec)
	b = protowire.AppendVarint(b, p.MhType)
	return protowire.AppendVarint(b, uint64(p.MhLength))
}

// blockFieldSize is the size of blk as one element of Message.blocks (V100)
// or Message.payload (V110+).
func blockFieldSize(blk blocks.Block, v Version) int {
	if v == V100 {
		return tagLen + protowire.SizeBytes(len(blk.RawData()))
	}
	return tagLen + protowire.SizeBytes(payloadBodySize(blk))
}

func payloadBodySize(blk blocks.Block) int {
	return sizeBytesField(prefixSize(blk.Cid().Prefix())) + sizeBytesField(len(blk.RawData()))
}

func appendBlockField(b []byte, blk blocks.Block, v Version, pp *parts) []byte {
	data := blk.RawData()
	if v == V100 {
		b = protowire.AppendTag(b, fieldBlocks, protowire.BytesType)
		return pp.appendBytes(b, data)
	}
	p := blk.Cid().Prefix()
	b = protowire.AppendTag(b, fieldPayload, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(sizeBytesField(prefixSize(p))+sizeBytesField(len(data))))
	// A prefix always has four varints, so it is never empty.
	b = protowire.AppendTag(b, fieldBlockPrefix, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(prefixSize(p)))
	b = appendPrefix(b, p)
	if len(data) > 0 {
		b = protowire.AppendTag(b, fieldBlockData, protowire.BytesType)
		b = pp.appendBytes(b, data)
	}
	return b
}

func (p *BlockPresence) bodySize() int {
	n := sizeBytesField(p.Cid.ByteLen())
	if p.Type != 0 {
		n += tagLen + protowire.SizeVarint(uint64(p.Type))
	}
	return n
}

// fieldSize is the size of p as one element of Message.blockPresences, or 0
// when v cannot carry presences.
func (p *BlockPresence) fieldSize(v Version) int {
	if !v.SupportsHave() {
		return 0
	}
	return tagLen + protowire.SizeBytes(p.bodySize())
}

func (p *BlockPresence) appendField(b []byte) []byte {
	b = protowire.AppendTag(b, fieldBlockPresences, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(p.bodySize()))
	if s := p.Cid.KeyString(); s != "" {
		b = protowire.AppendTag(b, fieldPresenceCid, protowire.BytesType)
		b = protowire.AppendString(b, s)
	}
	if p.Type != 0 {
		b = protowire.AppendTag(b, fieldPresenceType, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(p.Type))
	}
	return b
}

// sizeBytesField is the size of a singular proto3 bytes field holding n
// bytes: proto3 leaves out empty values.
func sizeBytesField(n int) int {
	if n == 0 {
		return 0
	}
	return tagLen + protowire.SizeBytes(n)
}

// pendingBytesSize is the size of the pendingBytes field, 0 when it is left
// out.
func pendingBytesSize(n int32) int {
	if n == 0 {
		return 0
	}
	return tagLen + protowire.SizeVarint(uint64(n))
}

// wantlistInnerSize is the size of the Wantlist message body as sent in v.
func (m *Message) wantlistInnerSize(v Version) int {
	n := 0
	if m.Full {
		n = tagLen + 1
	}
	for i := range m.Wantlist {
		n += m.Wantlist[i].fieldSize(v)
	}
	return n
}

// Size returns the exact length of Marshal(v), computed without encoding.
// Callers use it to pack messages under a target size.
func (m *Message) Size(v Version) int {
	n := tagLen + protowire.SizeBytes(m.wantlistInnerSize(v))
	for _, blk := range m.Blocks {
		n += blockFieldSize(blk, v)
	}
	for i := range m.BlockPresences {
		n += m.BlockPresences[i].fieldSize(v)
	}
	return n + pendingBytesSize(m.PendingBytes)
}

// Marshal returns the protobuf encoding of m for peers speaking v. See
// AppendMarshal for what each version carries.
func (m *Message) Marshal(v Version) []byte {
	return m.appendMarshal(make([]byte, 0, m.Size(v)), v, nil)
}

// AppendMarshal appends the protobuf encoding of m for peers speaking v to
// dst and returns the extended slice. It grows dst at most once.
//
// The encoding is the one the official Go protobuf library produces
// deterministically for the same message (fields in ascending number,
// proto3 default values left out), with one exception: the wantlist field is
// always written, even when empty, because older Kubo releases reject
// messages without it.
//
// What is written depends on v:
//   - V100 writes blocks as raw data (field 2); the receiver derives a CIDv0
//     (dag-pb, sha2-256) from the data, so send V100 peers only such blocks.
//   - V110 and later write blocks as CID prefix + data (field 3).
//   - Before V120, block presences and want-have entries are dropped: those
//     peers cannot understand them, and would read a want-have as a
//     want-block. Cancels are kept whatever their want type.
//
// Neither AppendMarshal nor Marshal checks MaxMessageSize; use Split to
// keep messages under it. Entries and presences must have defined CIDs, or
// peers will reject the message.
func (m *Message) AppendMarshal(dst []byte, v Version) []byte {
	return m.appendMarshal(slices.Grow(dst, m.Size(v)), v, nil)
}

// appendMarshal encodes m; the caller has made room for it. With pp, large
// block data is referenced in pp instead of copied (see FrameParts).
func (m *Message) appendMarshal(b []byte, v Version, pp *parts) []byte {
	b = protowire.AppendTag(b, fieldWantlist, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(m.wantlistInnerSize(v)))
	for i := range m.Wantlist {
		if e := &m.Wantlist[i]; e.sentIn(v) {
			b = e.appendField(b)
		}
	}
	if m.Full {
		b = protowire.AppendTag(b, fieldWantlistFull, protowire.VarintType)
		b = append(b, 1)
	}
	for _, blk := range m.Blocks {
		b = appendBlockField(b, blk, v, pp)
	}
	if v.SupportsHave() {
		for i := range m.BlockPresences {
			b = m.BlockPresences[i].appendField(b)
		}
	}
	if m.PendingBytes != 0 {
		b = protowire.AppendTag(b, fieldPendingBytes, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(m.PendingBytes))
	}
	return b
}

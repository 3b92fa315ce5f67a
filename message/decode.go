package message

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"google.golang.org/protobuf/encoding/protowire"
)

// Unmarshal decodes and validates one Bitswap message (the body of a frame,
// without its length prefix) of any protocol version.
//
// Input longer than MaxMessageSize fails with an error wrapping
// ErrTooLarge. Any other invalid input fails with an error wrapping
// ErrMalformed that says what is wrong and where, for example
//
//	malformed bitswap message: wantlist entry 3: invalid CID 01551220: ...
//
// Entries, blocks and presences are numbered from 0 in the order they appear
// on the wire; byte offsets count from the start of data; the CID is named
// when it is known. Rejected are:
// truncated or overflowing varints and lengths, a known field with the wrong
// wire type, missing or invalid CIDs, unknown want and presence types, block
// prefixes that do not parse or name an unsupported hash function. Unknown
// fields are skipped so that newer peers can extend the schema. A field that
// occurs more than once is merged the protobuf way: repeated elements
// accumulate, the last scalar wins.
//
// Blocks may arrive both as 1.0.0 raw data (given a CIDv0) and as 1.1.0
// prefix + data in the same message; either way the CID is computed from
// the data, so a decoded block always matches its CID.
//
// The returned blocks' data are sub-slices of data, not copies: the caller
// must not modify or reuse data while the message is in use.
func Unmarshal(data []byte) (*Message, error) {
	if len(data) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes, limit is %d", ErrTooLarge, len(data), MaxMessageSize)
	}
	d := decoder{data: data}
	d.presize()
	if err := d.message(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return &d.msg, nil
}

type decoder struct {
	data []byte
	msg  Message
	// nBlocks counts blocks of both encodings, to number them in errors.
	nBlocks int
}

// field is one decoded field: its number, wire type, value and the offset of
// its tag in the message.
type field struct {
	num   protowire.Number
	typ   protowire.Type
	bytes []byte // value of a BytesType field
	value uint64 // value of a VarintType field
	off   int    // offset of the tag in the message
	// valOff is the offset of bytes in the message, to locate errors
	// inside it.
	valOff int
}

// nextField decodes the field at b[off:], where b is a region of the message
// starting at base, and returns it with the offset of the next field. Values
// of other wire types than varint and bytes are consumed but not kept: no
// field of the schema uses them.
func nextField(b []byte, off, base int) (field, int, error) {
	f := field{off: base + off}
	num, typ, n := protowire.ConsumeTag(b[off:])
	if n < 0 {
		return f, 0, fmt.Errorf("at byte %d: bad field tag: %w", f.off, wireError(n))
	}
	f.num, f.typ = num, typ
	off += n
	switch typ {
	case protowire.VarintType:
		f.value, n = protowire.ConsumeVarint(b[off:])
	case protowire.BytesType:
		f.bytes, n = protowire.ConsumeBytes(b[off:])
		f.valOff = base + off + n - len(f.bytes)
	default:
		n = protowire.ConsumeFieldValue(num, typ, b[off:])
	}
	if n < 0 {
		return f, 0, fmt.Errorf("at byte %d: field %d (%s): %w", f.off, num, wireTypeName(typ), wireError(n))
	}
	return f, off + n, nil
}

// wireError turns a negative protowire result into an error. Truncation
// is io.ErrUnexpectedEOF. protowire words other errors as "proto: " and a
// space that is randomly a non-breaking one, to stop callers matching the
// text; only the stable part is kept so that our messages read the same
// every time.
func wireError(n int) error {
	err := protowire.ParseError(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return io.ErrUnexpectedEOF
	}
	msg := strings.TrimPrefix(err.Error(), "proto:")
	return errors.New(strings.TrimLeftFunc(msg, unicode.IsSpace))
}

// want checks that a known field has the wire type the schema gives it.
func (f *field) want(name string, typ protowire.Type) error {
	if f.typ != typ {
		return fmt.Errorf("at byte %d: field %d (%s) has wire type %s, want %s",
			f.off, f.num, name, wireTypeName(f.typ), wireTypeName(typ))
	}
	return nil
}

func wireTypeName(t protowire.Type) string {
	switch t {
	case protowire.VarintType:
		return "varint"
	case protowire.Fixed64Type:
		return "fixed64"
	case protowire.BytesType:
		return "bytes"
	case protowire.StartGroupType:
		return "start group"
	case protowire.EndGroupType:
		return "end group"
	case protowire.Fixed32Type:
		return "fixed32"
	}
	return fmt.Sprintf("wire type %d", t)
}

func (d *decoder) message() error {
	b := d.data
	for off := 0; off < len(b); {
		f, next, err := nextField(b, off, 0)
		if err != nil {
			return err
		}
		off = next
		switch f.num {
		case fieldWantlist:
			if err := f.want("wantlist", protowire.BytesType); err != nil {
				return err
			}
			if err := d.wantlist(f.bytes, f.valOff); err != nil {
				return err
			}
		case fieldBlocks:
			if err := f.want("blocks", protowire.BytesType); err != nil {
				return err
			}
			// 1.0.0 blocks are always CIDv0: dag-pb, sha2-256.
			d.msg.Blocks = append(d.msg.Blocks, blocks.NewBlock(f.bytes))
			d.nBlocks++
		case fieldPayload:
			if err := f.want("payload", protowire.BytesType); err != nil {
				return err
			}
			blk, err := d.payload(f.bytes, f.valOff)
			if err != nil {
				return fmt.Errorf("block %d: %w", d.nBlocks, err)
			}
			d.msg.Blocks = append(d.msg.Blocks, blk)
			d.nBlocks++
		case fieldBlockPresences:
			if err := f.want("blockPresences", protowire.BytesType); err != nil {
				return err
			}
			p, err := d.presence(f.bytes, f.valOff)
			if err != nil {
				return fmt.Errorf("block presence %d: %w", len(d.msg.BlockPresences), err)
			}
			d.msg.BlockPresences = append(d.msg.BlockPresences, p)
		case fieldPendingBytes:
			if err := f.want("pendingBytes", protowire.VarintType); err != nil {
				return err
			}
			// int32 fields travel sign-extended to 64 bits; truncate as
			// protobuf does.
			d.msg.PendingBytes = int32(f.value)
		}
	}
	return nil
}

func (d *decoder) wantlist(b []byte, base int) error {
	for off := 0; off < len(b); {
		f, next, err := nextField(b, off, base)
		if err != nil {
			return fmt.Errorf("wantlist: %w", err)
		}
		off = next
		switch f.num {
		case fieldWantlistEntries:
			if err := f.want("entries", protowire.BytesType); err != nil {
				return fmt.Errorf("wantlist: %w", err)
			}
			e, err := d.entry(f.bytes, f.valOff)
			if err != nil {
				return fmt.Errorf("wantlist entry %d: %w", len(d.msg.Wantlist), err)
			}
			d.msg.Wantlist = append(d.msg.Wantlist, e)
		case fieldWantlistFull:
			if err := f.want("full", protowire.VarintType); err != nil {
				return fmt.Errorf("wantlist: %w", err)
			}
			d.msg.Full = f.value != 0
		}
	}
	return nil
}

func (d *decoder) entry(b []byte, base int) (Entry, error) {
	var (
		e        Entry
		cidBytes []byte
		wantType uint64
	)
	for off := 0; off < len(b); {
		f, next, err := nextField(b, off, base)
		if err != nil {
			return e, err
		}
		off = next
		switch f.num {
		case fieldEntryBlock:
			err = f.want("block", protowire.BytesType)
			cidBytes = f.bytes
		case fieldEntryPriority:
			err = f.want("priority", protowire.VarintType)
			e.Priority = int32(f.value)
		case fieldEntryCancel:
			err = f.want("cancel", protowire.VarintType)
			e.Cancel = f.value != 0
		case fieldEntryWantType:
			err = f.want("wantType", protowire.VarintType)
			wantType = f.value
		case fieldEntrySendDontHave:
			err = f.want("sendDontHave", protowire.VarintType)
			e.SendDontHave = f.value != 0
		}
		if err != nil {
			return e, err
		}
	}
	c, err := castCid(cidBytes)
	if err != nil {
		return e, err
	}
	e.Cid = c
	if wantType > uint64(WantHave) {
		return e, fmt.Errorf("%s: unknown want type %d", c, wantType)
	}
	e.WantType = WantType(wantType)
	return e, nil
}

func (d *decoder) presence(b []byte, base int) (BlockPresence, error) {
	var (
		p        BlockPresence
		cidBytes []byte
		typ      uint64
	)
	for off := 0; off < len(b); {
		f, next, err := nextField(b, off, base)
		if err != nil {
			return p, err
		}
		off = next
		switch f.num {
		case fieldPresenceCid:
			err = f.want("cid", protowire.BytesType)
			cidBytes = f.bytes
		case fieldPresenceType:
			err = f.want("type", protowire.VarintType)
			typ = f.value
		}
		if err != nil {
			return p, err
		}
	}
	c, err := castCid(cidBytes)
	if err != nil {
		return p, err
	}
	p.Cid = c
	if typ > uint64(DontHave) {
		return p, fmt.Errorf("%s: unknown presence type %d", c, typ)
	}
	p.Type = PresenceType(typ)
	return p, nil
}

func (d *decoder) payload(b []byte, base int) (blocks.Block, error) {
	var prefix, data []byte
	for off := 0; off < len(b); {
		f, next, err := nextField(b, off, base)
		if err != nil {
			return nil, err
		}
		off = next
		switch f.num {
		case fieldBlockPrefix:
			err = f.want("prefix", protowire.BytesType)
			prefix = f.bytes
		case fieldBlockData:
			err = f.want("data", protowire.BytesType)
			data = f.bytes
		}
		if err != nil {
			return nil, err
		}
	}
	if len(prefix) == 0 {
		return nil, errors.New("missing CID prefix")
	}
	p, err := cid.PrefixFromBytes(prefix)
	if err != nil {
		return nil, fmt.Errorf("invalid CID prefix %x: %w", prefix, err)
	}
	if prefixSize(p) != len(prefix) {
		return nil, fmt.Errorf("invalid CID prefix %x: trailing bytes", prefix)
	}
	c, err := p.Sum(data)
	if err != nil {
		return nil, fmt.Errorf("cannot compute CID for prefix %s: %w", prefixString(p), err)
	}
	// The CID was just computed from data, so there is nothing to verify.
	return blocks.NewBlockWithCid(data, c)
}

func prefixString(p cid.Prefix) string {
	return fmt.Sprintf("{version %d, codec 0x%x, hash 0x%x, length %d}", p.Version, p.Codec, p.MhType, p.MhLength)
}

func castCid(b []byte) (cid.Cid, error) {
	if len(b) == 0 {
		return cid.Undef, errors.New("missing CID")
	}
	c, err := cid.Cast(b)
	if err != nil {
		return cid.Undef, fmt.Errorf("invalid CID %x: %w", b, err)
	}
	return c, nil
}

// minCidFieldLen is the size of the smallest field that can hold a valid
// CID: tag, length and four bytes (CIDv1 with an empty identity hash).
const minCidFieldLen = tagLen + 1 + 4

// presize counts the entries, blocks and presences in d.data so that their
// slices are allocated once. Entries and presences too short to hold a CID
// are not counted, so that garbage cannot make us allocate more than a valid
// message of the same size would. Counting stops quietly at the first
// structural error, which decoding then reports.
func (d *decoder) presize() {
	var entries, blks, presences int
	b := d.data
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			break
		}
		if typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(b)
			switch num {
			case fieldWantlist:
				entries += countEntries(v)
			case fieldBlocks, fieldPayload:
				blks++
			case fieldBlockPresences:
				if len(v) >= minCidFieldLen {
					presences++
				}
			}
		}
		b = b[n:]
	}
	if entries > 0 {
		d.msg.Wantlist = make([]Entry, 0, entries)
	}
	if blks > 0 {
		d.msg.Blocks = make([]blocks.Block, 0, blks)
	}
	if presences > 0 {
		d.msg.BlockPresences = make([]BlockPresence, 0, presences)
	}
}

// countEntries counts the entries of a Wantlist message body that are long
// enough to hold a CID.
func countEntries(b []byte) int {
	count := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			break
		}
		if num == fieldWantlistEntries && typ == protowire.BytesType {
			if v, _ := protowire.ConsumeBytes(b); len(v) >= minCidFieldLen {
				count++
			}
		}
		b = b[n:]
	}
	return count
}

package message

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
)

// maxVarintLen is the longest encoding of a 64-bit varint.
const maxVarintLen = 10

// AppendFrame appends m, encoded for v, as one stream frame: the body length
// as an unsigned varint, then the body (see AppendMarshal). This is how
// Bitswap messages travel on a libp2p stream. It grows dst at most once.
func AppendFrame(dst []byte, m *Message, v Version) []byte {
	size := m.Size(v)
	dst = slices.Grow(dst, protowire.SizeVarint(uint64(size))+size)
	dst = protowire.AppendVarint(dst, uint64(size))
	return m.appendMarshal(dst, v, nil)
}

// FrameParts encodes m for v as one stream frame, like AppendFrame, but
// leaves block data of minRef bytes or more where it is: the frame is the
// concatenation of the returned parts, which alias buf (grown at most once,
// and returned for reuse) and the blocks' data. Writing the parts one after
// the other saves copying large blocks into a message buffer that the stream
// copies again; small blocks are still copied, so a message of many small
// blocks stays one write. minRef <= 0 references every non-empty block.
func FrameParts(dst [][]byte, buf []byte, m *Message, v Version, minRef int) ([][]byte, []byte) {
	minRef = max(minRef, 1)
	size := m.Size(v)
	referenced := 0
	for _, blk := range m.Blocks {
		if n := len(blk.RawData()); n >= minRef {
			referenced += n
		}
	}
	// Grown once, up front, so that the parts already cut from buf stay
	// where they are.
	buf = slices.Grow(buf[:0], protowire.SizeVarint(uint64(size))+size-referenced)
	pp := &parts{out: dst, minRef: minRef}
	b := protowire.AppendVarint(buf, uint64(size))
	b = m.appendMarshal(b, v, pp)
	if len(b) > pp.start {
		pp.out = append(pp.out, b[pp.start:])
	}
	return pp.out, b
}

// parts collects the pieces of a frame for FrameParts: runs of encoded
// bytes in the buffer, and block data referenced in place.
type parts struct {
	out    [][]byte
	start  int // where the current run of encoded bytes begins in the buffer
	minRef int
}

// appendBytes appends data as a length-delimited protobuf value to b, or,
// when pp is set and data is large, its length only, referencing data as a
// part of its own.
func (pp *parts) appendBytes(b []byte, data []byte) []byte {
	if pp == nil || len(data) < pp.minRef {
		return protowire.AppendBytes(b, data)
	}
	b = protowire.AppendVarint(b, uint64(len(data)))
	pp.out = append(pp.out, b[pp.start:len(b):len(b)], data)
	pp.start = len(b)
	return b
}

// ParseFrame splits the first frame off buf, without copying: body is the
// message to pass to Unmarshal and rest is what follows it. body's capacity
// ends where rest begins, so appending to body cannot overwrite rest.
//
// When buf does not yet hold a whole frame, ParseFrame fails with an error
// wrapping ErrIncomplete, and the caller should read more and call it again
// with the longer buffer. A declared length over limit fails with ErrTooLarge
// as soon as the length prefix is complete, before the body has been read;
// limit <= 0 means MaxMessageSize. A length prefix that is not a valid varint
// fails with ErrMalformed. On error body is nil and rest is buf.
func ParseFrame(buf []byte, limit int) (body, rest []byte, err error) {
	if limit <= 0 {
		limit = MaxMessageSize
	}
	size, n := protowire.ConsumeVarint(buf)
	if n < 0 {
		werr := wireError(n)
		if errors.Is(werr, io.ErrUnexpectedEOF) && len(buf) < maxVarintLen {
			return nil, buf, fmt.Errorf("%w: length prefix not complete (%d bytes)", ErrIncomplete, len(buf))
		}
		return nil, buf, fmt.Errorf("%w: frame length prefix: %w", ErrMalformed, werr)
	}
	if size > uint64(limit) {
		return nil, buf, fmt.Errorf("%w: frame of %d bytes, limit is %d", ErrTooLarge, size, limit)
	}
	// Compared as uint64 so that no limit, however large, can overflow.
	if size > uint64(len(buf)-n) {
		return nil, buf, fmt.Errorf("%w: have %d of %d frame bytes", ErrIncomplete, len(buf), uint64(n)+size)
	}
	end := n + int(size)
	return buf[n:end:end], buf[end:], nil
}

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
	return m.appendMarshal(dst, v)
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

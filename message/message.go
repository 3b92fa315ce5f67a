// Package message owns the Bitswap wire format: the Message type, its
// protobuf encoding for each protocol version, validation of untrusted input,
// uvarint length framing and splitting outgoing work into messages of a
// target size.
//
// It performs no I/O and imports nothing else of this module. Every other
// package builds and reads messages only through this one, so that the bytes
// on the wire are decided in a single place.
package message

import (
	"errors"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
)

// Version is a Bitswap protocol version. The zero value is V100.
type Version int

const (
	// V100 is /ipfs/bitswap/1.0.0 (and the unversioned /ipfs/bitswap): blocks
	// travel as raw bytes, addressed by CIDv0; no HAVE/DONT_HAVE.
	V100 Version = iota
	// V110 is /ipfs/bitswap/1.1.0: blocks travel as CID prefix + data.
	V110
	// V120 is /ipfs/bitswap/1.2.0: adds want-have, sendDontHave answers and
	// block presences.
	V120
)

// SupportsHave reports whether peers speaking v understand WANT_HAVE entries
// and HAVE/DONT_HAVE presences.
func (v Version) SupportsHave() bool { return v >= V120 }

// String returns the version as written in protocol IDs, e.g. "1.2.0".
func (v Version) String() string {
	switch v {
	case V100:
		return "1.0.0"
	case V110:
		return "1.1.0"
	case V120:
		return "1.2.0"
	}
	return "unknown"
}

// Limits from the Bitswap spec.
const (
	// MaxMessageSize is the largest encoded message (without its length
	// prefix) that may be sent or will be accepted.
	MaxMessageSize = 4 << 20
	// MaxBlockSize is the largest block every implementation must be able to
	// exchange.
	MaxBlockSize = 2 << 20
)

// WantType says what a wantlist entry asks for.
type WantType int32

const (
	// WantBlock asks for the block itself (protobuf enum value 0).
	WantBlock WantType = 0
	// WantHave asks only whether the peer has the block (value 1, 1.2.0+).
	WantHave WantType = 1
)

// PresenceType is the answer to a want-have (or a want with sendDontHave).
type PresenceType int32

const (
	// Have says the sender has the block (protobuf enum value 0).
	Have PresenceType = 0
	// DontHave says the sender lacks the block (value 1).
	DontHave PresenceType = 1
)

// Entry is one wantlist entry.
type Entry struct {
	// Cid is the block wanted (or no longer wanted).
	Cid cid.Cid
	// Priority orders the sender's wants; higher is more urgent.
	Priority int32
	// Cancel revokes an earlier want for Cid instead of adding one.
	Cancel bool
	// WantType says whether the block or only a HAVE is wanted.
	WantType WantType
	// SendDontHave asks for a DONT_HAVE answer when the peer lacks the
	// block, instead of silence (1.2.0+).
	SendDontHave bool
}

// BlockPresence is a HAVE or DONT_HAVE for one CID.
type BlockPresence struct {
	// Cid is the block the answer is about.
	Cid cid.Cid
	// Type is Have or DontHave.
	Type PresenceType
}

// Message is one Bitswap message. The zero value is an empty message, and
// an empty message is still valid to send: it always carries a wantlist
// field on the wire, because older Kubo releases reject messages without it.
type Message struct {
	// Full marks Wantlist as the sender's complete wantlist, replacing any
	// earlier one.
	Full bool
	// Wantlist holds wants and cancels, in sending order.
	Wantlist []Entry
	// Blocks holds blocks sent to the peer.
	Blocks []blocks.Block
	// BlockPresences holds HAVE and DONT_HAVE answers (1.2.0+).
	BlockPresences []BlockPresence
	// PendingBytes is how many more bytes of wanted blocks the sender has
	// queued for the receiver but not yet sent.
	PendingBytes int32
}

// Errors returned (wrapped, with details) by decoding. Use errors.Is.
var (
	// ErrMalformed marks input that is not a valid Bitswap message.
	ErrMalformed = errors.New("malformed bitswap message")
	// ErrTooLarge marks a message or frame over the size limit.
	ErrTooLarge = errors.New("bitswap message too large")
	// ErrIncomplete marks a buffer that does not yet hold a whole frame;
	// ParseFrame returns it so that the caller reads more and tries again.
	ErrIncomplete = errors.New("incomplete bitswap frame")
)

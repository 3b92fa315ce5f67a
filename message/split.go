package message

import "google.golang.org/protobuf/encoding/protowire"

// Split divides m into messages that each encode, for v, to at most target
// bytes, and returns them in sending order. It returns []*Message{m} itself
// when m already fits.
//
// Entries, blocks and presences keep their order across the parts. Each
// part is filled as far as it goes before the next begins, keeping room for
// the pendingBytes field (at most 11 bytes), which only the last part
// carries. An item that alone exceeds target travels in a part of its own.
// Full is set only on the first part, so the receiver replaces its view of
// our wantlist once and then adds the rest. Items that v does not carry
// (see AppendMarshal) cost nothing and stay with their neighbours.
//
// Every part still carries the wantlist field, empty if it has no entries,
// as every encoded message does. The parts share m's backing arrays, capped
// so that appending to one part cannot overwrite another.
func (m *Message) Split(v Version, target int) []*Message {
	if m.Size(v) <= target {
		return []*Message{m}
	}
	s := splitter{m: m, budget: target - pendingBytesSize(m.PendingBytes)}
	s.start(m.Full)
	for i := range m.Wantlist {
		s.add(m.Wantlist[i].fieldSize(v), true)
		s.entries++
	}
	for _, blk := range m.Blocks {
		s.add(blockFieldSize(blk, v), false)
		s.blocks++
	}
	for i := range m.BlockPresences {
		s.add(m.BlockPresences[i].fieldSize(v), false)
		s.presences++
	}
	s.cut()
	last := s.parts[len(s.parts)-1]
	last.PendingBytes = m.PendingBytes
	return s.parts
}

// splitter packs m's items greedily into parts. The budget of every part
// leaves room for the pendingBytes field, which only the last part carries,
// because which part is last is known only at the end.
type splitter struct {
	m      *Message
	budget int
	parts  []*Message

	// Indexes into m's slices: everything before entries, blocks and
	// presences has been placed; the current part begins at the *0 ones.
	entries, blocks, presences    int
	entries0, blocks0, presences0 int

	full      bool
	items     int // items with a cost in the current part
	wantlist  int // size of the current part's Wantlist body
	remainder int // size of the current part's other fields
}

func (s *splitter) start(full bool) {
	s.full = full
	s.entries0, s.blocks0, s.presences0 = s.entries, s.blocks, s.presences
	s.items, s.wantlist, s.remainder = 0, 0, 0
	if full {
		s.wantlist = tagLen + 1
	}
}

// add places the next item, of encoded size cost, starting a new part first
// if the current one has something and the item would overflow it.
func (s *splitter) add(cost int, inWantlist bool) {
	if cost == 0 {
		return
	}
	wantlist, remainder := s.wantlist, s.remainder
	if inWantlist {
		wantlist += cost
	} else {
		remainder += cost
	}
	if s.items > 0 && tagLen+protowire.SizeBytes(wantlist)+remainder > s.budget {
		s.cut()
		s.start(false)
		s.add(cost, inWantlist)
		return
	}
	s.wantlist, s.remainder = wantlist, remainder
	s.items++
}

// cut closes the current part at the current indexes.
func (s *splitter) cut() {
	s.parts = append(s.parts, &Message{
		Full:           s.full,
		Wantlist:       sub(s.m.Wantlist, s.entries0, s.entries),
		Blocks:         sub(s.m.Blocks, s.blocks0, s.blocks),
		BlockPresences: sub(s.m.BlockPresences, s.presences0, s.presences),
	})
}

// sub returns s[i:j] with its capacity capped, or nil when it is empty.
func sub[T any](s []T, i, j int) []T {
	if i == j {
		return nil
	}
	return s[i:j:j]
}

package message

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	blocks "github.com/ipfs/go-block-format"
)

func TestSplitReturnsTheMessageItselfWhenItFits(t *testing.T) {
	m := randomMessage(t, rand.New(rand.NewPCG(5, 6)), 10)
	parts := m.Split(V120, m.Size(V120))
	if len(parts) != 1 || parts[0] != m {
		t.Fatalf("got %d parts, want m itself", len(parts))
	}
}

// itemsWithCost counts the items of m that take space when encoded for v.
func itemsWithCost(m *Message, v Version) int {
	n := len(m.Blocks)
	for i := range m.Wantlist {
		if m.Wantlist[i].sentIn(v) {
			n++
		}
	}
	if v.SupportsHave() {
		n += len(m.BlockPresences)
	}
	return n
}

// checkSplit asserts every property Split promises.
func checkSplit(t *testing.T, m *Message, v Version, target int, parts []*Message) {
	t.Helper()
	if len(parts) == 0 {
		t.Fatal("no parts")
	}
	var joined Message
	for i, p := range parts {
		if size := p.Size(v); size > target && itemsWithCost(p, v) > 1 {
			t.Fatalf("part %d: Size = %d > target %d with %d items", i, size, target, itemsWithCost(p, v))
		}
		if i > 0 && p.Full {
			t.Fatalf("part %d has Full set", i)
		}
		if i < len(parts)-1 && p.PendingBytes != 0 {
			t.Fatalf("part %d has PendingBytes set", i)
		}
		if enc := p.Marshal(v); enc[0] != 0x0a {
			t.Fatalf("part %d does not start with the wantlist field", i)
		}
		if len(parts) > 1 && itemsWithCost(p, v) == 0 {
			t.Fatalf("part %d carries nothing", i)
		}
		joined.Wantlist = append(joined.Wantlist, p.Wantlist...)
		joined.Blocks = append(joined.Blocks, p.Blocks...)
		joined.BlockPresences = append(joined.BlockPresences, p.BlockPresences...)
	}
	joined.Full = parts[0].Full
	joined.PendingBytes = parts[len(parts)-1].PendingBytes
	if d := diffMessages(m, &joined); d != "" {
		t.Fatalf("parts joined differ from the message: %s", d)
	}
}

func TestSplitProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 100 {
		m := randomMessage(t, r, 30)
		for _, v := range allVersions {
			for _, target := range []int{1, 50, 100, 300, 1000, 5000} {
				checkSplit(t, m, v, target, m.Split(v, target))
			}
		}
	}
}

func TestSplitFillsEachPartBeforeStartingTheNext(t *testing.T) {
	m := &Message{}
	for i := range 100 {
		m.Wantlist = append(m.Wantlist, Entry{Cid: testCid(t, prefixRaw, i), Priority: int32(i)})
	}
	const target = 500
	parts := m.Split(V120, target)
	checkSplit(t, m, V120, target, parts)
	for i, p := range parts[:len(parts)-1] {
		next := parts[i+1].Wantlist[0]
		grown := &Message{Wantlist: append(slices.Clip(p.Wantlist), next)}
		if grown.Size(V120) <= target {
			t.Fatalf("part %d (%d bytes) had room for the next entry", i, p.Size(V120))
		}
	}
}

func TestSplitSendsAnOversizedBlockAlone(t *testing.T) {
	small1 := newBlock(t, prefixRaw, "small 1")
	huge := newBlock(t, prefixRaw, strings.Repeat("h", 2000))
	small2 := newBlock(t, prefixRaw, "small 2")
	m := &Message{
		Full:         true,
		Wantlist:     []Entry{{Cid: testCid(t, prefixRaw, 1)}},
		Blocks:       []blocks.Block{small1, huge, small2},
		PendingBytes: 99,
	}
	parts := m.Split(V120, 1000)
	checkSplit(t, m, V120, 1000, parts)
	if len(parts) != 3 {
		t.Fatalf("got %d parts, want 3", len(parts))
	}
	if len(parts[1].Blocks) != 1 || parts[1].Blocks[0] != huge || len(parts[1].Wantlist) != 0 {
		t.Fatalf("the oversized block does not travel alone: %+v", parts[1])
	}
	if !parts[0].Full || parts[2].PendingBytes != 99 {
		t.Fatal("Full must be on the first part and PendingBytes on the last")
	}
}

func TestSplitKeepsItemsAnOlderVersionDoesNotSend(t *testing.T) {
	m := &Message{}
	for i := range 40 {
		m.Wantlist = append(m.Wantlist, Entry{Cid: testCid(t, prefixRaw, i), WantType: WantType(i % 2)})
		m.BlockPresences = append(m.BlockPresences, BlockPresence{Cid: testCid(t, prefixRaw, i)})
	}
	parts := m.Split(V110, 200)
	if len(parts) < 2 {
		t.Fatalf("expected a split, got %d parts", len(parts))
	}
	checkSplit(t, m, V110, 200, parts)
}

func TestSplitPartsDoNotOverwriteEachOther(t *testing.T) {
	m := &Message{}
	for i := range 20 {
		m.Wantlist = append(m.Wantlist, Entry{Cid: testCid(t, prefixRaw, i)})
	}
	parts := m.Split(V120, 200)
	if len(parts) < 2 {
		t.Fatalf("expected a split, got %d parts", len(parts))
	}
	second := parts[1].Wantlist[0]
	parts[0].Wantlist = append(parts[0].Wantlist, Entry{Cid: testCid(t, prefixRaw, 999)})
	if parts[1].Wantlist[0] != second || m.Wantlist[len(parts[0].Wantlist)-1] == parts[0].Wantlist[len(parts[0].Wantlist)-1] {
		t.Fatal("appending to a part overwrote the message or the next part")
	}
}

package boxocompat

import (
	"slices"
	"testing"

	bsmsg "github.com/ipfs/boxo/bitswap/message"
	pb "github.com/ipfs/boxo/bitswap/message/pb"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"

	"github.com/gobitswap/bitswap/message"
)

// Every field of our message reaches boxo's, as boxo would have decoded it.
func TestToBoxoMessageCopiesEveryField(t *testing.T) {
	blk := blocks.NewBlock([]byte("block"))
	wb, wh, cancel := blocks.NewBlock([]byte("wb")).Cid(), blocks.NewBlock([]byte("wh")).Cid(), blocks.NewBlock([]byte("c")).Cid()
	have, dont := blocks.NewBlock([]byte("have")).Cid(), blocks.NewBlock([]byte("dont")).Cid()
	m := &message.Message{
		Full: true,
		Wantlist: []message.Entry{
			{Cid: wb, Priority: 3, WantType: message.WantBlock},
			{Cid: wh, Priority: 2, WantType: message.WantHave, SendDontHave: true},
			{Cid: cancel, Cancel: true},
		},
		Blocks:         []blocks.Block{blk},
		BlockPresences: []message.BlockPresence{{Cid: have, Type: message.Have}, {Cid: dont, Type: message.DontHave}},
		PendingBytes:   1234,
	}
	got := toBoxoMessage(m)
	if !got.Full() || got.PendingBytes() != 1234 {
		t.Errorf("full %v, pending %d", got.Full(), got.PendingBytes())
	}
	entries := map[cid.Cid]bsmsg.Entry{}
	for _, e := range got.Wantlist() {
		entries[e.Cid] = e
	}
	if e := entries[wb]; e.Priority != 3 || e.WantType != pb.Message_Wantlist_Block || e.SendDontHave || e.Cancel {
		t.Errorf("want-block entry %+v", e)
	}
	if e := entries[wh]; e.Priority != 2 || e.WantType != pb.Message_Wantlist_Have || !e.SendDontHave || e.Cancel {
		t.Errorf("want-have entry %+v", e)
	}
	if e := entries[cancel]; !e.Cancel {
		t.Errorf("cancel entry %+v", e)
	}
	if len(entries) != 3 {
		t.Errorf("%d entries, want 3", len(entries))
	}
	if bs := got.Blocks(); len(bs) != 1 || !bs[0].Cid().Equals(blk.Cid()) {
		t.Errorf("blocks %v", bs)
	}
	if !slices.Equal(got.Haves(), []cid.Cid{have}) || !slices.Equal(got.DontHaves(), []cid.Cid{dont}) {
		t.Errorf("haves %v, dont-haves %v", got.Haves(), got.DontHaves())
	}
}

package wantmanager_test

import (
	"context"
	"fmt"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/testutil"
	"github.com/gobitswap/bitswap/wantmanager"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// chanNet is a Network that hands every message sent to a channel.
type chanNet chan *message.Message

func (n chanNet) SendMessage(_ context.Context, _ peer.ID, m *message.Message) error {
	n <- m
	return nil
}

func (n chanNet) Version(context.Context, peer.ID) (message.Version, error) {
	return message.V120, nil
}

// describe prints a message's wantlist, one entry a line.
func describe(m *message.Message) {
	fmt.Printf("message (full=%v):\n", m.Full)
	for _, e := range m.Wantlist {
		switch {
		case e.Cancel:
			fmt.Println("  cancel")
		case e.WantType == message.WantHave:
			fmt.Println("  want-have")
		default:
			fmt.Println("  want-block")
		}
	}
}

// Two sessions want blocks from one peer. The peer sends one of them, so it
// gets no cancel for it; the other is cancelled only when the last session
// that wants it gives up.
func Example() {
	sent := make(chanNet)
	wm := wantmanager.New(sent, wantmanager.WithPeerWantWindow(64))
	defer wm.Close()

	p := testutil.PeerID(0)
	var c []cid.Cid
	for _, b := range testutil.RandomBlocks(1, 2, 100) {
		c = append(c, b.Cid())
	}
	wm.PeerConnected(p)

	wm.WantBlocks(1, p, c)
	describe(<-sent)

	wm.WantHaves(2, p, c[1:]) // already asked for: nothing new to send

	wm.ReceivedFrom(p, c[:1], nil, nil) // p sent the first block
	wm.CancelAll(1, c)                  // session 1 is done; session 2 still wants c[1]
	wm.CancelAll(2, c)                  // now nobody does
	describe(<-sent)

	fmt.Println("wants left:", wm.Stat().Wants)
	// Output:
	// message (full=true):
	//   want-block
	//   want-block
	// message (full=false):
	//   cancel
	// wants left: 0
}

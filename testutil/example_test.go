package testutil_test

import (
	"context"
	"fmt"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/testutil"
	"github.com/libp2p/go-libp2p/core/peer"
)

// inbox hands received messages to a channel.
type inbox chan *message.Message

func (in inbox) ReceiveMessage(_ context.Context, _ peer.ID, m *message.Message) error {
	in <- m
	return nil
}
func (in inbox) ReceiveError(peer.ID, error) {}
func (in inbox) PeerConnected(peer.ID)       {}
func (in inbox) PeerDisconnected(peer.ID)    {}

// Two peers exchange a message over the virtual network. Inside a
// testing/synctest bubble, links with latency and bandwidth (see
// WithLatency, WithBandwidth and SetLink) then cost no real time.
func Example() {
	vn := testutil.NewVirtualNetwork()
	defer vn.Close()
	peers := testutil.NewSwarm(vn, 2, testutil.WithVersion(message.V110))
	got := make(inbox, 1)
	peers[0].Start(make(inbox))
	peers[1].Start(got)

	blocks := testutil.RandomBlocks(1, 2, 1000)
	msg := &message.Message{
		Blocks:         blocks,
		BlockPresences: []message.BlockPresence{{Cid: blocks[0].Cid(), Type: message.Have}},
	}
	if err := peers[0].SendMessage(context.Background(), peers[1].Self(), msg); err != nil {
		panic(err)
	}
	m := <-got
	fmt.Println(len(m.Blocks), "blocks,", len(m.BlockPresences), "presences (1.1.0 has none)")
	fmt.Println(peers[0].Stats().BytesSent == uint64(len(message.AppendFrame(nil, msg, message.V110))))
	// Output:
	// 2 blocks, 0 presences (1.1.0 has none)
	// true
}

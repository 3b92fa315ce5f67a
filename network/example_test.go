package network_test

import (
	"context"
	"fmt"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/network"
	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// printer is a Receiver that hands inbound messages to a channel.
type printer struct{ msgs chan *message.Message }

func (p printer) ReceiveMessage(_ context.Context, _ peer.ID, m *message.Message) error {
	p.msgs <- m
	return nil
}
func (p printer) ReceiveError(peer.ID, error) {}
func (p printer) PeerConnected(peer.ID)       {}
func (p printer) PeerDisconnected(peer.ID)    {}

func ExampleNewFromHost() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Two libp2p hosts, each with a Bitswap network on top.
	h1, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		panic(err)
	}
	defer h1.Close()
	h2, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		panic(err)
	}
	defer h2.Close()

	n1 := network.NewFromHost(h1)
	n1.Start(printer{make(chan *message.Message, 1)})
	defer n1.Stop()
	n2 := network.NewFromHost(h2, network.WithProtocols(message.V110))
	inbox := make(chan *message.Message, 1)
	n2.Start(printer{inbox})
	defer n2.Stop()

	// n1 sends n2 a block; n2 only speaks 1.1.0, so that is what is used.
	if err := n1.Connect(ctx, peer.AddrInfo{ID: h2.ID(), Addrs: h2.Addrs()}); err != nil {
		panic(err)
	}
	blk := blocks.NewBlock([]byte("hello"))
	if err := n1.SendMessage(ctx, h2.ID(), &message.Message{Blocks: []blocks.Block{blk}}); err != nil {
		panic(err)
	}
	v, _ := n1.Version(ctx, h2.ID())
	m := <-inbox
	fmt.Println("version:", v)
	fmt.Println("received:", string(m.Blocks[0].RawData()))
	// Output:
	// version: 1.1.0
	// received: hello
}

// A libp2p host whose resource manager lets boxo and Kubo servers, which
// open a stream per message, send at full speed: libp2p's default limits
// reset their streams past 64-75 per peer, and the blocks in them are lost.
func ExampleResourceManager() {
	rm, err := network.ResourceManager()
	if err != nil {
		panic(err)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm))
	if err != nil {
		panic(err)
	}
	defer h.Close() // closes rm too

	n := network.NewFromHost(h)
	n.Start(printer{make(chan *message.Message, 1)})
	defer n.Stop()
	fmt.Println("inbound Bitswap streams per peer:", network.ProtocolPeerStreams)
	// Output: inbound Bitswap streams per peer: 1024
}

// A private Bitswap swarm, as boxo's bsnet.Prefix makes one: both nodes
// speak /celestia/ipfs/bitswap/... and nothing else.
func ExampleWithProtocolPrefix() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const prefix = "/celestia"
	var hosts []host.Host
	var nets []*network.Libp2pNetwork
	inbox := make(chan *message.Message, 1)
	for range 2 {
		rm, err := network.ResourceManagerWithPrefix(prefix) // lifts the prefixed IDs' limits
		if err != nil {
			panic(err)
		}
		h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm))
		if err != nil {
			panic(err)
		}
		defer h.Close()
		n := network.NewFromHost(h, network.WithProtocolPrefix(prefix))
		n.Start(printer{inbox})
		defer n.Stop()
		hosts, nets = append(hosts, h), append(nets, n)
	}
	h2 := hosts[1]
	if err := nets[0].Connect(ctx, peer.AddrInfo{ID: h2.ID(), Addrs: h2.Addrs()}); err != nil {
		panic(err)
	}
	blk := blocks.NewBlock([]byte("members only"))
	if err := nets[0].SendMessage(ctx, h2.ID(), &message.Message{Blocks: []blocks.Block{blk}}); err != nil {
		panic(err)
	}
	fmt.Println("received:", string((<-inbox).Blocks[0].RawData()))
	// Output: received: members only
}

// Two hosts built with Security connect over TLS 1.3 (libp2p's /tls/1.0.0,
// as any libp2p peer speaks it); their large writes go to the socket in
// one system call each.
func ExampleSecurity() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), network.Security())
	if err != nil {
		panic(err)
	}
	defer a.Close()
	b, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), network.Security())
	if err != nil {
		panic(err)
	}
	defer b.Close()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		panic(err)
	}
	fmt.Println("security:", a.Network().ConnsToPeer(b.ID())[0].ConnState().Security)
	// Output: security: /tls/1.0.0
}

package bitswap_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/network"
)

// printBlocks is a bare Bitswap peer that prints the blocks it receives.
type printBlocks chan struct{}

func (r printBlocks) ReceiveMessage(_ context.Context, _ peer.ID, m *message.Message) error {
	for _, b := range m.Blocks {
		fmt.Printf("received %q\n", b.RawData())
		close(r)
	}
	return nil
}
func (printBlocks) ReceiveError(peer.ID, error) {}
func (printBlocks) PeerConnected(peer.ID)       {}
func (printBlocks) PeerDisconnected(peer.ID)    {}

// Serve blocks from a blockstore on a libp2p host. A second host asks for
// a block in a plain want-block message, as any Bitswap client would.
func ExampleNew() {
	ctx := context.Background()

	// The serving node: a libp2p host, a blockstore, and Bitswap on top.
	h, err := loopbackHost()
	if err != nil {
		panic(err)
	}
	defer h.Close()
	bs := blockstore.NewMemory()
	server := bitswap.New(ctx, network.NewFromHost(h), bs)
	defer server.Close()

	blk := blocks.NewBlock([]byte("hello bitswap"))
	_ = bs.Put(ctx, blk)
	_ = server.NotifyNewBlocks(ctx, blk) // serves peers already waiting for it

	// The asking peer.
	h2, err := loopbackHost()
	if err != nil {
		panic(err)
	}
	defer h2.Close()
	client := network.NewFromHost(h2)
	got := make(printBlocks)
	client.Start(got)
	defer client.Stop()
	if err := client.Connect(ctx, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()}); err != nil {
		panic(err)
	}
	err = client.SendMessage(ctx, h.ID(), &message.Message{Wantlist: []message.Entry{
		{Cid: blk.Cid(), Priority: 1, WantType: message.WantBlock},
	}})
	if err != nil {
		panic(err)
	}
	<-got
	// Output: received "hello bitswap"
}

// twoNodes starts two Bitswap nodes on loopback libp2p hosts and connects
// them; the first holds blks.
func twoNodes(ctx context.Context, blks ...blocks.Block) (server, client *bitswap.Bitswap, cleanup func()) {
	return twoNodesWith(ctx, nil, blks...)
}

// twoNodesWith is twoNodes with options for the second node.
func twoNodesWith(ctx context.Context, clientOpts []bitswap.Option, blks ...blocks.Block) (server, client *bitswap.Bitswap, cleanup func()) {
	var hosts []host.Host
	var nodes []*bitswap.Bitswap
	for i := 0; i < 2; i++ {
		h, err := loopbackHost()
		if err != nil {
			panic(err)
		}
		bs := blockstore.NewMemory()
		if i == 0 {
			_ = bs.PutMany(ctx, blks)
		}
		hosts = append(hosts, h)
		var opts []bitswap.Option
		if i == 1 {
			opts = clientOpts
		}
		nodes = append(nodes, bitswap.New(ctx, network.NewFromHost(h), bs, opts...))
	}
	// Connecting the hosts is all it takes: Bitswap learns of the peer.
	if err := hosts[1].Connect(ctx, peer.AddrInfo{ID: hosts[0].ID(), Addrs: hosts[0].Addrs()}); err != nil {
		panic(err)
	}
	return nodes[0], nodes[1], func() {
		for i := range nodes {
			nodes[i].Close()
			hosts[i].Close()
		}
	}
}

// Fetch blocks by CID from whichever connected peer has them.
func ExampleBitswap_GetBlocks() {
	ctx := context.Background()
	a, b := blocks.NewBlock([]byte("alpha")), blocks.NewBlock([]byte("beta"))
	_, client, cleanup := twoNodes(ctx, a, b)
	defer cleanup()

	ch, err := client.GetBlocks(ctx, []cid.Cid{a.Cid(), b.Cid()})
	if err != nil {
		panic(err)
	}
	got := map[string]bool{}
	for blk := range ch { // closes once both have arrived
		got[string(blk.RawData())] = true
	}
	fmt.Println(got["alpha"], got["beta"])
	// Output: true true
}

// A Session serves related requests: peers that answered the first are
// asked first for the next, as when walking the links of a DAG.
func ExampleBitswap_NewSession() {
	ctx := context.Background()
	root, child := blocks.NewBlock([]byte("root")), blocks.NewBlock([]byte("child"))
	_, client, cleanup := twoNodes(ctx, root, child)
	defer cleanup()

	s := client.NewSession(ctx)
	for _, c := range []cid.Cid{root.Cid(), child.Cid()} {
		blk, err := s.GetBlock(ctx, c)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s\n", blk.RawData())
	}
	// Output:
	// root
	// child
}

// Learn where each fetched block came from and how long it was awaited.
func ExampleWithBlockReceivedNotifier() {
	ctx := context.Background()
	blk := blocks.NewBlock([]byte("from afar"))
	type provenance struct {
		from   peer.ID
		waited time.Duration
	}
	// The notifier runs in the network's goroutine, after the block has
	// been delivered: hand what it says over, without blocking.
	heard := make(chan provenance, 1)
	notify := bitswap.WithBlockReceivedNotifier(func(p peer.ID, blks []bitswap.ReceivedBlock) {
		for _, b := range blks {
			select {
			case heard <- provenance{p, b.Delay}:
			default:
			}
		}
	})
	_, client, cleanup := twoNodesWith(ctx, []bitswap.Option{notify}, blk)
	defer cleanup()

	if _, err := client.GetBlock(ctx, blk.Cid()); err != nil {
		panic(err)
	}
	got := <-heard
	fmt.Println(got.from != "", got.waited > 0)
	// Output: true true
}

// countingTracer counts the messages a node sends and receives.
type countingTracer struct{ sent, received atomic.Int64 }

func (t *countingTracer) MessageReceived(peer.ID, *message.Message) { t.received.Add(1) }
func (t *countingTracer) MessageSent(peer.ID, *message.Message)     { t.sent.Add(1) }

// Trace every message a node exchanges.
func ExampleWithTracer() {
	ctx := context.Background()
	blk := blocks.NewBlock([]byte("traced"))
	tr := &countingTracer{}
	_, client, cleanup := twoNodesWith(ctx, []bitswap.Option{bitswap.WithTracer(tr)}, blk)

	if _, err := client.GetBlock(ctx, blk.Cid()); err != nil {
		panic(err)
	}
	cleanup() // Close waits for the senders, and so for their MessageSent
	// At least the want out and the block back.
	fmt.Println(tr.sent.Load() >= 1, tr.received.Load() >= 1)
	// Output: true true
}

// Hear of events as they happen: here, how long each fetched block was
// wanted and how many wants waited for the peer's window. (Package metrics
// turns these into Prometheus histograms.)
func ExampleWithObserver() {
	ctx := context.Background()
	blks := []blocks.Block{blocks.NewBlock([]byte("one")), blocks.NewBlock([]byte("two")), blocks.NewBlock([]byte("three"))}
	var delays, sends atomic.Int64
	obs := bitswap.WithObserver(bitswap.Observer{
		BlocksReceived: func(_ peer.ID, bs []bitswap.ReceivedBlock) {
			for _, b := range bs {
				if b.Delay > 0 {
					delays.Add(1)
				}
			}
		},
		WantsWaiting: func(peer.ID, int) { sends.Add(1) },
	})
	_, client, cleanup := twoNodesWith(ctx, []bitswap.Option{obs}, blks...)
	ch, err := client.GetBlocks(ctx, []cid.Cid{blks[0].Cid(), blks[1].Cid(), blks[2].Cid()})
	if err != nil {
		panic(err)
	}
	for range ch {
	}
	cleanup() // Close waits for the messages in hand, and so for their observers
	fmt.Println(delays.Load(), sends.Load() >= 1)
	// Output: 3 true
}

// Trace a fetch with OpenTelemetry: the spans of one GetBlocks call, as an
// in-memory exporter holds them once the node has closed.
func ExampleWithTracerProvider() {
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)) // or otel.SetTracerProvider(tp) and no option
	defer func() { _ = tp.Shutdown(ctx) }()
	blk := blocks.NewBlock([]byte("traced"))
	_, client, cleanup := twoNodesWith(ctx, []bitswap.Option{bitswap.WithTracerProvider(tp)}, blk)

	ch, err := client.GetBlocks(ctx, []cid.Cid{blk.Cid()})
	if err != nil {
		panic(err)
	}
	for range ch {
	}
	cleanup()
	var names []string
	for _, s := range exp.GetSpans() {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Println(n)
	}
	// Output:
	// Bitswap.Client.GetBlocks
	// Bitswap.Client.Getter.handleIncoming
	// Bitswap.Client.Session
	// Bitswap.Client.Session.GetBlocks
}

// loopbackHost starts a libp2p host on 127.0.0.1 with the resource limits
// Bitswap needs (see network.ResourceManager).
func loopbackHost() (host.Host, error) {
	rm, err := network.ResourceManager()
	if err != nil {
		return nil, err
	}
	return libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm))
}

package bitswap_test

// A real swarm on loopback: libp2p hosts running go-libp2p-kad-dht among
// themselves, providers that announce a DAG, and a node that knows only a
// bootstrap peer and finds them through the DHT.

import (
	"bytes"
	"context"
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p"
	kaddht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/host"
	libp2pnet "github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/dag"
	"github.com/gobitswap/bitswap/network"
	"github.com/gobitswap/bitswap/testutil"
)

// dhtNode is a libp2p host with a DHT, joined through boot (if any).
type dhtNode struct {
	h host.Host
	d *kaddht.IpfsDHT
}

func startDHTNode(t *testing.T, ctx context.Context, mode kaddht.ModeOpt, boot []peer.AddrInfo, opts ...libp2p.Option) dhtNode {
	t.Helper()
	rm, err := network.ResourceManager()
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(append([]libp2p.Option{libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	d, err := kaddht.New(h, kaddht.Mode(mode), kaddht.BootstrapPeers(boot...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(); h.Close() })
	for _, ai := range boot {
		if err := h.Connect(ctx, ai); err != nil {
			t.Fatalf("connecting to the bootstrap peer: %v", err)
		}
	}
	return dhtNode{h, d}
}

// awaitTable waits until n's routing table has a peer (identify adds a
// connected DHT server a moment after the connection).
func awaitTable(t *testing.T, ctx context.Context, n dhtNode) {
	t.Helper()
	for n.d.RoutingTable().Size() == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the routing table stayed empty")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestSwarmFetchFindsProvidersThroughTheDHT(t *testing.T) {
	if testing.Short() {
		t.Skip("a swarm of 32 libp2p hosts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// 30 DHT servers: the first is everyone's bootstrap peer.
	const servers = 30
	boot := startDHTNode(t, ctx, kaddht.ModeServer, nil)
	bootInfo := []peer.AddrInfo{{ID: boot.h.ID(), Addrs: boot.h.Addrs()}}
	nodes := []dhtNode{boot}
	for range servers - 1 {
		nodes = append(nodes, startDHTNode(t, ctx, kaddht.ModeServer, bootInfo))
	}
	var wg sync.WaitGroup
	for _, n := range nodes[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			awaitTable(t, ctx, n)
			<-n.d.RefreshRoutingTable()
		}()
	}
	wg.Wait()

	// Two providers of a 2 MiB DAG. They run the DHT as clients, so no
	// routing table lists them: the fetcher reaches them only through
	// their provider records.
	data := make([]byte, 2<<20)
	rand.New(rand.NewSource(7)).Read(data)
	file, err := testutil.BuildFileDAG(bytes.NewReader(data), 64<<10, 8)
	if err != nil {
		t.Fatal(err)
	}
	var providers []peer.ID
	for range 2 {
		n := startDHTNode(t, ctx, kaddht.ModeClient, bootInfo)
		awaitTable(t, ctx, n)
		bs := blockstore.NewMemory()
		if err := bs.PutMany(ctx, file.Blocks); err != nil {
			t.Fatal(err)
		}
		b := bitswap.New(ctx, network.NewFromHost(n.h), bs)
		t.Cleanup(func() { b.Close() })
		if err := n.d.Provide(ctx, file.Root, true); err != nil {
			t.Fatalf("announcing the root: %v", err)
		}
		providers = append(providers, n.h.ID())
	}

	// The fetcher knows only the bootstrap peer. Its connection manager
	// keeps 2 connections (high 3, no grace period) when told to trim,
	// which it is at every fourth block of the walk, while the providers
	// are delivering: it is connected to far more (the DHT's peers).
	cm, err := connmgr.NewConnManager(2, 3, connmgr.WithGracePeriod(0), connmgr.WithSilencePeriod(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	f := startDHTNode(t, ctx, kaddht.ModeClient, bootInfo, libp2p.ConnectionManager(cm))
	awaitTable(t, ctx, f)
	for _, p := range providers {
		if f.h.Network().Connectedness(p) == libp2pnet.Connected {
			t.Fatalf("the fetcher is connected to provider %s before it looked", p)
		}
	}
	client := bitswap.New(ctx, network.NewFromHost(f.h), blockstore.NewMemory(), bitswap.WithContentRouting(f.d))
	defer client.Close()
	// Providers cut during the walk, with the blocks they had delivered
	// by then: a provider that delivered nothing (the Session used the
	// other) may go, one that was delivering must not.
	var cut sync.Map
	var trimmed atomic.Int32
	isProvider := map[peer.ID]bool{providers[0]: true, providers[1]: true}
	watch := &libp2pnet.NotifyBundle{DisconnectedF: func(_ libp2pnet.Network, c libp2pnet.Conn) {
		if p := c.RemotePeer(); isProvider[p] {
			cut.Store(p, client.LedgerForPeer(p).BlocksReceived)
		} else {
			trimmed.Add(1)
		}
	}}
	sess := client.NewSession(ctx)
	got := 0
	var bytesGot int
	f.h.Network().Notify(watch)
	err = dag.Walk(ctx, sess, file.Root, func(b blocks.Block) error {
		got++
		bytesGot += len(b.RawData())
		if got%4 == 0 && got < len(file.Blocks) {
			cm.TrimOpenConns(ctx)
		}
		return nil
	})
	f.h.Network().StopNotify(watch)
	if err != nil {
		t.Fatalf("fetching the DAG: %v", err)
	}
	if got != len(file.Blocks) {
		t.Fatalf("visited %d blocks, want %d", got, len(file.Blocks))
	}
	st, _ := client.Stat()
	delivered := 0
	for _, p := range providers {
		if l := client.LedgerForPeer(p); l.BlocksReceived > 0 {
			delivered++
		}
	}
	t.Logf("%d blocks, %d bytes; provider queries %d, providers connected %d, %d of 2 providers delivered, %d duplicate blocks, %d peers connected",
		got, bytesGot, st.Providers.Started, st.Providers.Connected, delivered, st.DupBlksReceived, len(st.Peers))
	if st.Providers.Connected == 0 || delivered == 0 {
		t.Fatalf("no provider was found through the DHT and delivered (connected %d, delivered %d)", st.Providers.Connected, delivered)
	}
	cut.Range(func(p, n any) bool {
		if n.(uint64) > 0 {
			t.Errorf("trimming cut provider %s during the transfer, after %d blocks from it", p, n)
		} else {
			t.Logf("trimming cut provider %s, which had delivered nothing", p)
		}
		return true
	})
	t.Logf("trims cut %d other connections", trimmed.Load())
}

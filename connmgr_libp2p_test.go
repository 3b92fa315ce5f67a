package bitswap_test

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	corenet "github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/engine"
	"github.com/gobitswap/bitswap/network"
	"github.com/gobitswap/bitswap/testutil"
	"github.com/gobitswap/bitswap/wantmanager"
)

// heldStore is a blockstore whose Get of one CID waits until release is
// closed: the server's worker holds that block, so a transfer stays under
// way, at a known point, for as long as the test needs.
type heldStore struct {
	blockstore.Blockstore
	held    cid.Cid
	reached chan struct{} // closed when the held Get starts
	release chan struct{}
	once    atomic.Bool
}

func (s *heldStore) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	if c.Equals(s.held) {
		if s.once.CompareAndSwap(false, true) {
			close(s.reached)
		}
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Blockstore.Get(ctx, c)
}

// trimmingHost is a loopback host with libp2p's basic connection manager
// at watermarks low enough to trim (low 2, high 3), no grace period, and a
// silence period long enough that it never trims by itself: the test
// trims when it chooses, with TrimOpenConns.
func trimmingHost(t *testing.T) (host.Host, *connmgr.BasicConnMgr) {
	t.Helper()
	cm, err := connmgr.NewConnManager(2, 3, connmgr.WithGracePeriod(0), connmgr.WithSilencePeriod(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	rm, err := network.ResourceManager()
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm), libp2p.ConnectionManager(cm))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close(); _ = cm.Close() })
	return h, cm
}

func plainHost(t *testing.T) host.Host {
	t.Helper()
	h, err := loopbackHost()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// bitswapTags returns the tags of Bitswap's own on p in cm.
func bitswapTags(cm *connmgr.BasicConnMgr, p peer.ID) map[string]int {
	out := make(map[string]int)
	if info := cm.GetTagInfo(p); info != nil {
		for tag, v := range info.Tags {
			if strings.HasPrefix(tag, "bs-") {
				out[tag] = v
			}
		}
	}
	return out
}

// On real libp2p hosts whose connection managers trim down to 2
// connections, a 4 MiB transfer is never cut: the leech and the seed are
// each connected to 4 idle Bitswap peers besides each other, both trim
// while the transfer is under way (held at a known point: the seed's
// worker waits on the last block), and only idle peers are cut. Afterwards
// Bitswap leaves no tag and no protection behind.
func TestTrimmingNeverCutsATransferOnLibp2p(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seedHost, seedCM := trimmingHost(t)
	leechHost, leechCM := trimmingHost(t)
	var idleHosts []host.Host
	for range 4 {
		idleHosts = append(idleHosts, plainHost(t))
	}

	blks := testutil.RandomBlocks(7, 16, 256<<10) // 4 MiB
	store := &heldStore{Blockstore: blockstore.NewMemory(), held: blks[len(blks)-1].Cid(),
		reached: make(chan struct{}), release: make(chan struct{})}
	defer func() {
		select {
		case <-store.release:
		default:
			close(store.release)
		}
	}()
	if err := store.PutMany(ctx, blks); err != nil {
		t.Fatal(err)
	}
	seed := bitswap.New(ctx, network.NewFromHost(seedHost), store)
	defer seed.Close()
	leech := bitswap.New(ctx, network.NewFromHost(leechHost), blockstore.NewMemory())
	defer leech.Close()
	for _, h := range idleHosts {
		b := bitswap.New(ctx, network.NewFromHost(h), blockstore.NewMemory())
		defer b.Close()
	}

	var seedLost atomic.Int32
	watch := &corenet.NotifyBundle{DisconnectedF: func(_ corenet.Network, c corenet.Conn) {
		if c.RemotePeer() == seedHost.ID() {
			seedLost.Add(1)
		}
	}}
	leechHost.Network().Notify(watch)
	defer leechHost.Network().StopNotify(watch)

	connect := func(a, b host.Host) {
		t.Helper()
		if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	connect(leechHost, seedHost)
	for _, h := range idleHosts {
		connect(leechHost, h)
		connect(seedHost, h)
	}

	start := time.Now()
	ch, err := leech.GetBlocks(ctx, keysOf(blks))
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[cid.Cid][]byte)
	for len(got) < len(blks)-1 {
		select {
		case b, ok := <-ch:
			if !ok {
				t.Fatalf("the request ended with %d of %d blocks", len(got), len(blks))
			}
			got[b.Cid()] = b.RawData()
		case <-ctx.Done():
			t.Fatalf("%d of %d blocks came", len(got), len(blks))
		}
	}
	<-store.reached
	t.Logf("held after %v", time.Since(start))

	// Under way: the leech holds a want-block at the seed, the seed a
	// worker's send for the leech.
	if !leechCM.IsProtected(seedHost.ID(), wantmanager.ProtectTag) {
		t.Error("the leech does not protect the seed while it waits for a block from it")
	}
	if tags := bitswapTags(leechCM, seedHost.ID()); len(tags) != 1 {
		t.Errorf("the leech's tags on the seed: %v, want its Session's", tags)
	}
	if v := bitswapTags(seedCM, leechHost.ID())[engine.TagQueued]; v != bitswap.DefaultServerPeerTagValue {
		t.Errorf("the seed's %s on the leech is %d, want %d", engine.TagQueued, v, bitswap.DefaultServerPeerTagValue)
	}

	idle := make(map[peer.ID]bool)
	for _, h := range idleHosts {
		idle[h.ID()] = true
	}
	for _, side := range []struct {
		name  string
		h     host.Host
		cm    *connmgr.BasicConnMgr
		other peer.ID
	}{{"leech", leechHost, leechCM, seedHost.ID()}, {"seed", seedHost, seedCM, leechHost.ID()}} {
		before := side.h.Network().Peers()
		side.cm.TrimOpenConns(ctx)
		after := side.h.Network().Peers()
		var cut []peer.ID
		for _, p := range before {
			if !slices.Contains(after, p) {
				cut = append(cut, p)
			}
		}
		if !slices.Contains(after, side.other) {
			t.Fatalf("the %s's trim cut the transfer", side.name)
		}
		if len(cut) == 0 {
			t.Fatalf("the %s's trim cut nothing (%d peers before, %d after)", side.name, len(before), len(after))
		}
		for _, p := range cut {
			if !idle[p] {
				t.Fatalf("the %s's trim cut %s, not an idle peer", side.name, p)
			}
		}
		t.Logf("the %s's trim cut %d of its %d peers, all idle", side.name, len(cut), len(before))
	}

	close(store.release)
	for b := range ch {
		got[b.Cid()] = b.RawData()
	}
	for _, b := range blks {
		if !bytes.Equal(got[b.Cid()], b.RawData()) {
			t.Fatalf("got %d of %d blocks; %s missing or different", len(got), len(blks), b.Cid())
		}
	}
	t.Logf("done after %v", time.Since(start))
	if n := seedLost.Load(); n != 0 {
		t.Fatalf("the leech lost its connection to the seed %d times", n)
	}

	// Close waits for the Sessions: then nothing of Bitswap's is left.
	leech.Close()
	seed.Close()
	if tags := bitswapTags(leechCM, seedHost.ID()); len(tags) > 0 {
		t.Errorf("the leech's tags on the seed after Close: %v", tags)
	}
	if leechCM.IsProtected(seedHost.ID(), "") {
		t.Error("the leech still protects the seed after Close")
	}
	if tags := bitswapTags(seedCM, leechHost.ID()); len(tags) > 0 {
		t.Errorf("the seed's tags on the leech after Close: %v", tags)
	}
}

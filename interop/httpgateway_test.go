package interop

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	boxobs "github.com/ipfs/boxo/bitswap"
	bsclient "github.com/ipfs/boxo/bitswap/client"
	"github.com/ipfs/boxo/bitswap/network/httpnet"
	"github.com/ipfs/boxo/blockservice"
	boxobstore "github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/ipld/merkledag"
	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/gateway"
)

// boxo's Bitswap client, on boxo's HTTP network (httpnet, what Kubo uses
// for HTTP providers), fetches UnixFS files from our gateway handler over
// loopback: it probes /ipfs/bafkqaaa, asks HEAD for want-have and GET
// ?format=raw for want-block, and verifies every body against its CID.
// The files are read back through boxo's DAG reader and compared byte for
// byte. The 4 KiB-chunk file makes boxo's 64 HTTP workers queue at our
// per-client bound.
func TestBoxoHTTPNetFetchesFromOurGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	bs := blockstore.NewMemory()
	big := make([]byte, 4<<20)
	_, _ = rand.Read(big)
	small := make([]byte, 1<<20)
	_, _ = rand.Read(small)
	bigRoot := importFile(t, bs, big, 256<<10)
	smallRoot := importFile(t, bs, small, 4<<10)

	gw := gateway.New(bs, gateway.Options{MaxPerClient: 8})
	srv := httptest.NewServer(gw)
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	addr := ma.StringCast(fmt.Sprintf("/ip4/%s/tcp/%s/http", host, port))

	// The gateway's peer ID is only a name for boxo to file it under.
	priv, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	gwID, _ := peer.IDFromPrivateKey(priv)

	h, _ := newHost(t)
	htnet := httpnet.New(h)
	cbs := boxobstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	client := boxobs.New(ctx, htnet, nil, cbs, boxobs.WithServerEnabled(false))
	defer client.Close()
	if err := htnet.Connect(ctx, peer.AddrInfo{ID: gwID, Addrs: []ma.Multiaddr{addr}}); err != nil {
		t.Fatalf("httpnet's probe of our gateway: %v", err)
	}
	if !htnet.IsConnectedToPeer(ctx, gwID) {
		t.Fatal("httpnet did not keep the gateway as a peer")
	}

	dag := merkledag.NewDAGService(blockservice.New(cbs, client))
	start := time.Now()
	readFile(t, ctx, dag, bigRoot, big)
	t.Logf("first file after %v", time.Since(start))
	readFile(t, ctx, dag, smallRoot, small)
	took := time.Since(start)

	st, err := client.Stat()
	if err != nil {
		t.Fatal(err)
	}
	gs := gw.Stat()
	t.Logf("boxo httpnet fetched 4 MiB (256 KiB chunks) + 1 MiB (4 KiB chunks) in %v: %d blocks received (%d duplicates), %d bytes; our gateway wrote %d blocks, %d bytes, %d not found, %d refused",
		took, st.BlocksReceived, st.DupBlksReceived, st.DataReceived, gs.Blocks, gs.Bytes, gs.NotFound, gs.Rejected+gs.TimedOut)
	if gs.Rejected+gs.TimedOut != 0 {
		t.Fatalf("the gateway refused %d requests", gs.Rejected+gs.TimedOut)
	}
	if gs.Blocks < int64(st.BlocksReceived) || st.BlocksReceived == 0 {
		t.Fatalf("gateway wrote %d blocks, client received %d", gs.Blocks, st.BlocksReceived)
	}
	if gs.Active != 0 || gs.BytesInFlight != 0 {
		t.Fatalf("gateway still busy: %+v", gs)
	}
}

// oneProvider is content routing that names one provider for every CID.
type oneProvider struct{ ai peer.AddrInfo }

func (o oneProvider) FindProvidersAsync(ctx context.Context, _ cid.Cid, _ int) <-chan peer.AddrInfo {
	ch := make(chan peer.AddrInfo, 1)
	ch <- o.ai
	close(ch)
	return ch
}

// The way Kubo learns of an HTTP provider: a provider record whose
// address is /ip4/.../tcp/.../http. boxo's client, with no peer at all,
// searches providers, httpnet probes our gateway and fetches the file.
func TestBoxoHTTPNetFindsOurGatewayThroughAProviderRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bs := blockstore.NewMemory()
	content := make([]byte, 2<<20)
	_, _ = rand.Read(content)
	root := importFile(t, bs, content, 64<<10)
	gw := gateway.New(bs, gateway.Options{})
	srv := httptest.NewServer(gw)
	defer srv.Close()
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	priv, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	gwID, _ := peer.IDFromPrivateKey(priv)
	router := oneProvider{peer.AddrInfo{ID: gwID, Addrs: []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/%s/tcp/%s/http", host, port))}}}

	h, _ := newHost(t)
	htnet := httpnet.New(h)
	cbs := boxobstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	client := boxobs.New(ctx, htnet, router, cbs, boxobs.WithServerEnabled(false),
		boxobs.WithClientOption(bsclient.ProviderSearchDelay(10*time.Millisecond)))
	defer client.Close()
	start := time.Now()
	readFile(t, ctx, merkledag.NewDAGService(blockservice.New(cbs, client)), root, content)
	if !htnet.IsConnectedToPeer(ctx, gwID) {
		t.Fatal("httpnet is not connected to the gateway it fetched from")
	}
	gs := gw.Stat()
	t.Logf("found through a provider record, fetched 2 MiB (64 KiB chunks) in %v; our gateway wrote %d blocks", time.Since(start), gs.Blocks)
	if gs.Blocks == 0 || gs.Rejected+gs.TimedOut != 0 {
		t.Fatalf("gateway %+v", gs)
	}
}

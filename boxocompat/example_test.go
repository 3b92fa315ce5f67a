package boxocompat_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/ipfs/boxo/blockservice"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer"
	uio "github.com/ipfs/boxo/ipld/unixfs/io"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/boxocompat"
	"github.com/gobitswap/bitswap/network"
)

// boxo's blockservice, DAG service and UnixFS reader over gobitswap: the
// application code of a boxo user, with bitswap.New in place of boxo's.
func Example() {
	ctx := context.Background()

	// A peer holding a 1 MiB file, imported with boxo's UnixFS importer.
	seedHost := loopbackHost()
	defer seedHost.Close()
	seedStore := blockstore.NewMemory()
	seed := bitswap.New(ctx, network.NewFromHost(seedHost), seedStore)
	defer seed.Close()
	file := make([]byte, 1<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(file)
	root, err := importer.BuildDagFromReader(
		merkledag.NewDAGService(blockservice.New(seedStore, nil)), // offline: store only
		chunker.NewSizeSplitter(bytes.NewReader(file), 64<<10))
	if err != nil {
		panic(err)
	}

	// The application: gobitswap as boxo's exchange. Any boxo
	// blockstore.Blockstore would do in place of ours.
	h := loopbackHost()
	defer h.Close()
	bs := blockstore.NewMemory()
	b := bitswap.New(ctx, network.NewFromHost(h), bs)
	bserv := blockservice.New(bs, boxocompat.Exchange(b))
	defer bserv.Close() // closes b too
	if err := h.Connect(ctx, peer.AddrInfo{ID: seedHost.ID(), Addrs: seedHost.Addrs()}); err != nil {
		panic(err)
	}

	// One Session for the whole DAG: merkledag.NewSession asks the
	// blockservice for one, which asks Exchange's NewSession.
	dag := merkledag.NewSession(ctx, merkledag.NewDAGService(bserv))
	nd, err := dag.Get(ctx, root.Cid())
	if err != nil {
		panic(err)
	}
	r, err := uio.NewDagReader(ctx, nd, dag)
	if err != nil {
		panic(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(got), bytes.Equal(got, file))
	// Output: 1048576 true
}

// loopbackHost is a libp2p host on 127.0.0.1 with Bitswap's stream limits.
func loopbackHost() host.Host {
	rm, err := network.ResourceManager()
	if err != nil {
		panic(err)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm))
	if err != nil {
		panic(err)
	}
	return h
}

package interop

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/gateway"
	"github.com/gobitswap/bitswap/httpnet"
	"github.com/gobitswap/bitswap/network"
	"github.com/gobitswap/bitswap/testutil"
)

// BenchmarkHTTPRetrieval fetches one set of known CIDs on loopback with our
// client, three ways: over HTTP from our trustless gateway (package
// gateway), over HTTP from boxo's gateway handler serving the same blocks,
// and over Bitswap (libp2p, TCP) from our server. A fresh client per
// iteration; b.SetBytes makes the MB/s the block bytes fetched.
//
//	go test ./ -run '^$' -bench BenchmarkHTTPRetrieval -benchtime 5x -count 5
func BenchmarkHTTPRetrieval(b *testing.B) {
	for _, size := range []struct {
		name   string
		n, len int
	}{{"256KiB", 256, 256 << 10}, {"4KiB", 2048, 4 << 10}} {
		bl := testutil.RandomBlocks(int64(size.len), size.n, size.len)
		keys := make([]cid.Cid, len(bl))
		var total int64
		for i, blk := range bl {
			keys[i] = blk.Cid()
			total += int64(len(blk.RawData()))
		}
		ours := blockstore.NewMemory()
		theirs := newBoxoStore()
		ctx := context.Background()
		if err := ours.PutMany(ctx, bl); err != nil {
			b.Fatal(err)
		}
		if err := theirs.PutMany(ctx, bl); err != nil {
			b.Fatal(err)
		}
		ourGW := httptest.NewServer(gateway.New(ours, gateway.Options{}))
		b.Cleanup(ourGW.Close)
		boxoGW := boxoGateway(b, theirs, nil, 0)

		viaHTTP := func(url string) func(b *testing.B) {
			return func(b *testing.B) {
				b.SetBytes(total)
				for range b.N {
					hn := httpnet.New()
					c := bitswap.New(ctx, hn, blockstore.NewMemory(), bitswap.WithServerEnabled(false))
					if _, err := hn.ConnectURL(ctx, url); err != nil {
						b.Fatal(err)
					}
					fetchKeys(b, ctx, c, keys)
					c.Close()
				}
			}
		}
		b.Run(size.name+"/http/ours", viaHTTP(ourGW.URL))
		b.Run(size.name+"/http/boxo", viaHTTP(boxoGW.URL))
		b.Run(size.name+"/bitswap/ours", func(b *testing.B) {
			sh := benchHost(b)
			srv := bitswap.New(ctx, network.NewFromHost(sh), ours)
			defer srv.Close()
			b.SetBytes(total)
			b.ResetTimer()
			for range b.N {
				ch := benchHost(b)
				c := bitswap.New(ctx, network.NewFromHost(ch), blockstore.NewMemory(), bitswap.WithServerEnabled(false))
				if err := ch.Connect(ctx, peer.AddrInfo{ID: sh.ID(), Addrs: sh.Addrs()}); err != nil {
					b.Fatal(err)
				}
				fetchKeys(b, ctx, c, keys)
				c.Close()
				ch.Close()
			}
			b.StopTimer()
		})
	}
}

// benchHost is a libp2p host on loopback with the library's resource
// limits (network.ResourceManager), closed when b ends.
func benchHost(b *testing.B) host.Host {
	b.Helper()
	rm, err := network.ResourceManager()
	if err != nil {
		b.Fatal(err)
	}
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	return h
}

// fetchKeys gets every key with c and fails unless all arrived.
func fetchKeys(b *testing.B, ctx context.Context, c *bitswap.Bitswap, keys []cid.Cid) {
	b.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ch, err := c.GetBlocks(ctx, keys)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for range ch {
		n++
	}
	if n != len(keys) {
		b.Fatal(fmt.Errorf("got %d of %d blocks: %v", n, len(keys), ctx.Err()))
	}
}

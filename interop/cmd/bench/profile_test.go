package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	boxobstore "github.com/ipfs/boxo/blockstore"
	pebbleds "github.com/ipfs/go-ds-pebble"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/blockstore"
)

// loop runs f b.N times and reports CPU seconds per GB moved.
func loop(b *testing.B, total int64, f func() error) {
	b.SetBytes(total)
	var cpu time.Duration
	for b.Loop() {
		c0 := cpuTime()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - c0
	}
	b.ReportMetric(cpu.Seconds()/(float64(total)*float64(b.N)/1e9), "cpu-s/GB")
}

// BenchmarkLoopback is one fetch of each throughput case per iteration, for
// profiling a single implementation:
//
//	go test ./cmd/bench -run '^$' -bench 'Loopback/ours/256KiB' -benchtime 5x -cpuprofile cpu.out
func BenchmarkLoopback(b *testing.B) {
	cases := []struct {
		name      string
		size, n   int
		boxoBatch int
	}{
		{"256KiB", 256 << 10, 1024, 0},
		{"4KiB", 4 << 10, 20000, 250},
	}
	for _, c := range cases {
		bl := genBlocks(1, c.n, c.size)
		st := newStaticStore(bl)
		cids := cidsOf(bl)
		total := int64(c.n) * int64(c.size)
		for _, which := range []impl{ours, boxo} {
			batch := 0
			if which == boxo {
				batch = c.boxoBatch
			}
			b.Run(fmt.Sprintf("%s/%s", which, c.name), func(b *testing.B) {
				loop(b, total, func() error {
					_, err := fetchFresh(which, st, cids, batch, 5*time.Minute, total)
					return err
				})
			})
		}
		b.Run("raw/"+c.name, func(b *testing.B) {
			loop(b, total, func() error {
				_, _, err := rawStreams(time.Minute, total, 1)
				return err
			})
		})
	}
}

// BenchmarkLoopbackPebble fetches 256 MiB in 256 KiB blocks into a
// go-ds-pebble blockstore in a temporary directory, server and client in
// this process, for profiling the on-disk path:
//
//	go test ./cmd/bench -run '^$' -bench 'LoopbackPebble/ours' -benchtime 3x -cpuprofile cpu.out
func BenchmarkLoopbackPebble(b *testing.B) {
	const n, size = 1024, 256 << 10
	g := newGenStore(4, n, size)
	total := int64(n) * size
	for _, which := range []impl{ours, boxo} {
		batch := 0
		if which == boxo {
			batch = 250 // in larger calls it stalls
		}
		b.Run(string(which), func(b *testing.B) {
			loop(b, total, func() error {
				pds, err := pebbleds.NewDatastore(b.TempDir())
				if err != nil {
					return err
				}
				defer pds.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				defer cancel()
				server, err := startNode(ctx, which, g, g)
				if err != nil {
					return err
				}
				defer server.close()
				obs, bbs := blockstore.New(pds), boxobstore.NewBlockstore(pds)
				client, err := startNode(ctx, which, obs, bbs)
				if err != nil {
					return err
				}
				defer client.close()
				client.storing(which, bbs)
				if err := client.h.Connect(ctx, peer.AddrInfo{ID: server.h.ID(), Addrs: server.h.Addrs()}); err != nil {
					return err
				}
				res, err := fetch(ctx, client.f, g.cids, batch)
				if err != nil {
					return err
				}
				return res.check(n, total)
			})
		})
	}
}

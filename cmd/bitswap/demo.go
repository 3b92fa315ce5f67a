package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/dag"
	"github.com/gobitswap/bitswap/metrics"
	"github.com/gobitswap/bitswap/network"
	"github.com/gobitswap/bitswap/testutil"
)

const demoHelp = `Usage: bitswap demo [--size BYTES] [--peers N]

Starts N Bitswap nodes on loopback libp2p hosts, all connected, builds a
random UnixFS-style file DAG of BYTES (raw leaves of 256 KiB under dag-pb
nodes) in the first, then lets each other node in turn fetch it with the
same pipelined walk as "bitswap get" (so later nodes fetch from every node
that has it by then), verifies every byte and prints a report.

`

type demoNode struct {
	h   host.Host
	bs  blockstore.Blockstore
	bsw *bitswap.Bitswap
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var c common
	c.register(fs)
	size := sizeFlag(16 << 20)
	fs.Var(&size, "size", "file size in `BYTES` (suffixes K, M, G, KiB, MiB, GiB, KB, MB, GB)")
	nPeers := fs.Int("peers", 3, "number of nodes, at least 2")
	leaf := sizeFlag(256 << 10)
	fs.Var(&leaf, "leaf", "leaf block size in `BYTES`")
	fanout := fs.Int("fanout", 8, "links per dag-pb node")
	seed := fs.Uint64("seed", 0, "random seed (default: time based)")
	pos, err := parseFlags(fs, args, stderr, demoHelp)
	if err != nil {
		return err
	}
	if err := c.setup(stderr); err != nil {
		return err
	}
	switch {
	case len(pos) != 0:
		return usageErrorf("demo takes no arguments, got %q", pos)
	case *nPeers < 2:
		return usageErrorf("--peers must be at least 2")
	case leaf < 1 || leaf > 2<<20:
		return usageErrorf("--leaf must be between 1 byte and 2 MiB")
	case *fanout < 2:
		return usageErrorf("--fanout must be at least 2")
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}

	// The file and its DAG.
	data := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{byte(*seed), byte(*seed >> 8), byte(*seed >> 16), byte(*seed >> 24), byte(*seed >> 32)})
	_, _ = rng.Read(data)
	file, err := testutil.BuildFileDAG(bytes.NewReader(data), int(leaf), *fanout)
	if err != nil {
		return fmt.Errorf("building DAG: %w", err)
	}
	var dagBytes int64
	for _, b := range file.Blocks {
		dagBytes += int64(len(b.RawData()))
	}

	// The nodes.
	nodes := make([]*demoNode, *nPeers)
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.bsw.Close()
				n.h.Close()
			}
		}
	}()
	// --metrics: those of the last node, which fetches last.
	var m *metrics.Metrics
	if c.metrics != "" {
		m = metrics.New()
	}
	for i := range nodes {
		h, err := c.newHost(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
		if err != nil {
			return err
		}
		bs := blockstore.NewMemory()
		opts := []bitswap.Option{bitswap.WithLogger(c.logger)}
		if m != nil && i == len(nodes)-1 {
			opts = append(opts, m.Option())
		}
		nodes[i] = &demoNode{h: h, bs: bs, bsw: bitswap.New(ctx, network.NewFromHost(h, network.WithLogger(c.logger)), bs, opts...)}
	}
	if err := nodes[0].bs.PutMany(ctx, file.Blocks); err != nil {
		return err
	}
	if m != nil {
		stop, err := serveMetrics(c.metrics, m, nodes[len(nodes)-1].bsw, stderr)
		if err != nil {
			return err
		}
		defer stop()
	}
	for i, a := range nodes {
		for _, b := range nodes[i+1:] {
			if err := a.h.Connect(ctx, peer.AddrInfo{ID: b.h.ID(), Addrs: b.h.Addrs()}); err != nil {
				return networkErrorf("connecting nodes: %v", err)
			}
		}
	}
	// Let every node see the others as Bitswap peers.
	deadline := time.Now().Add(5 * time.Second)
	for _, n := range nodes {
		for {
			st, _ := n.bsw.Stat()
			if len(st.Peers) >= len(nodes)-1 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	fmt.Fprintf(stdout, "demo: %d nodes on loopback; node 0 holds a %d-byte file as a DAG of %d blocks (%d bytes, depth %d, %d KiB leaves, fanout %d), root %s\n",
		len(nodes), file.Size, len(file.Blocks), dagBytes, file.Depth, leaf/1024, *fanout, file.Root)
	var total time.Duration
	for i := 1; i < len(nodes); i++ {
		n := nodes[i]
		before, _ := n.bsw.Stat()
		var got []blocks.Block
		start := time.Now()
		sess := n.bsw.NewSession(ctx)
		wctx, cancel := context.WithTimeoutCause(ctx, time.Minute, fmt.Errorf("timed out after 1m"))
		err := dag.Walk(wctx, sess, file.Root, func(b blocks.Block) error {
			got = append(got, b)
			return nil
		})
		cancel()
		took := time.Since(start)
		total += took
		if err != nil {
			return withCode(exitNetwork, fmt.Errorf("node %d fetching %s: %w", i, file.Root, err))
		}
		// Verify: every block, and the file reassembled from them.
		byCid := make(map[cid.Cid]blocks.Block, len(got))
		var nb int64
		for _, b := range got {
			byCid[b.Cid()] = b
			nb += int64(len(b.RawData()))
		}
		if len(byCid) != len(file.Blocks) {
			return fmt.Errorf("node %d got %d blocks, want %d", i, len(byCid), len(file.Blocks))
		}
		var out bytes.Buffer
		if err := testutil.ReadFile(file.Root, func(c cid.Cid) (blocks.Block, bool) { b, ok := byCid[c]; return b, ok }, &out); err != nil {
			return fmt.Errorf("node %d: %w", i, err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			return fmt.Errorf("node %d: file differs from the original", i)
		}
		st, _ := n.bsw.Stat()
		from := 0
		var perPeer []string
		for j, o := range nodes {
			if j == i {
				continue
			}
			if r := n.bsw.LedgerForPeer(o.h.ID()); r.BlocksReceived > 0 {
				from++
				perPeer = append(perPeer, fmt.Sprintf("node %d: %d", j, r.BlocksReceived))
			}
		}
		fmt.Fprintf(stdout, "node %d: fetched %d blocks, %d bytes in %.3f s (%.1f MB/s), %d duplicate blocks, from %d of %d peers %v; verified\n",
			i, len(got), nb, took.Seconds(), mbps(nb, took), st.DupBlksReceived-before.DupBlksReceived, from, len(nodes)-1, perPeer)
	}
	fmt.Fprintf(stdout, "ok: %d nodes fetched and verified %d bytes each; %.3f s in all\n", len(nodes)-1, file.Size, total.Seconds())
	return nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/dual"
	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/gateway"
)

const serveHelp = `Usage: bitswap serve [--listen MULTIADDR] [--repo DIR] [--http ADDR] [--dht [--bootstrap MULTIADDR|public]... [--provide roots|all|none]] [FILE.car...]

Imports the CAR files (v1 or v2; every block is checked against its CID)
into the repo, then serves every block the repo holds over Bitswap until
SIGINT or SIGTERM. On stdout: one "listening: <multiaddr>/p2p/<peer id>"
line per address, then one "root: <cid>" line per root imported (or, with
no CAR files, per root imported earlier into this repo). The node's peer
ID is kept in the repo (identity.key), so it is the same at every start.

With --dht the node joins a Kademlia DHT (go-libp2p-kad-dht, as a server)
through the --bootstrap peers ("public": the public Amino DHT's bootstrap
list; never used unless asked for), and announces the repo's roots
(--provide roots, the default), every block it holds (--provide all) or
nothing (--provide none), then again every 22 h while it runs; after the
first round it prints "announced: <n> CIDs" on stdout. A --dht node with
no --bootstrap is a first DHT peer that others bootstrap from. On the
public network, listen on a reachable address, e.g.
--listen /ip4/0.0.0.0/tcp/4001.

With --http ADDR (e.g. 127.0.0.1:8080) the node also serves the repo
over HTTP as a Trustless Gateway (package gateway): GET and HEAD of
/ipfs/<cid>?format=raw (a block) and ?format=car (a CARv1 of the DAG
under it, dag-scope=block|entity|all, car-dups=y|n), and the probe
/ipfs/bafkqaaa; it prints "http: http://<addr>" on stdout. Clients such
as boxo's httpnet (Kubo) reach it through a /ip4/<ip>/tcp/<port>/http
multiaddr.

`

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c common
	c.register(fs)
	listen := multiFlag{}
	fs.Var(&listen, "listen", "libp2p listen `MULTIADDR`, repeatable (default /ip4/127.0.0.1/tcp/0)")
	repoDir := fs.String("repo", defaultRepoDir(), "repo `DIR` holding the blockstore and the node's identity; $GOBITSWAP_REPO overrides the default")
	joinDHT := fs.Bool("dht", false, "join a DHT and announce what the repo holds")
	var boot multiFlag
	fs.Var(&boot, "bootstrap", "DHT bootstrap peer `MULTIADDR` (ending in /p2p/<peer id>), or \"public\"; repeatable")
	provide := fs.String("provide", "roots", "with --dht, announce `WHAT`: roots, all (every block) or none")
	httpAddr := fs.String("http", "", "also serve the repo as a Trustless Gateway on http://`ADDR` (e.g. 127.0.0.1:8080)")
	files, err := parseFlags(fs, args, stderr, serveHelp)
	if err != nil {
		return err
	}
	if err := c.setup(stderr); err != nil {
		return err
	}
	if len(listen) == 0 {
		listen = multiFlag{"/ip4/127.0.0.1/tcp/0"}
	}
	for _, l := range listen {
		if _, err := ma.NewMultiaddr(l); err != nil {
			return inputErrorf("bad --listen %q: %v", l, err)
		}
	}
	bootInfos, err := bootstrapPeers(boot)
	if err != nil {
		return err
	}
	switch *provide {
	case "roots", "all", "none":
	default:
		return usageErrorf("bad --provide %q (want roots, all or none)", *provide)
	}
	if !*joinDHT && len(boot) > 0 {
		return usageErrorf("--bootstrap needs --dht (see bitswap serve -h)")
	}
	for _, f := range files {
		if st, err := os.Stat(f); err != nil {
			return inputErrorf("%v", err)
		} else if st.IsDir() {
			return inputErrorf("%s is a directory, not a CAR file", f)
		}
	}

	r, err := openRepo(*repoDir)
	if err != nil {
		return withCode(exitInput, err)
	}
	defer r.Close()

	key, err := loadIdentity(*repoDir)
	if err != nil {
		return withCode(exitInput, err)
	}

	var roots []cid.Cid
	for _, f := range files {
		rs, n, err := r.importCAR(ctx, f)
		if err != nil {
			return withCode(exitInput, err)
		}
		c.logger.Info("imported CAR", "file", f, "blocks", n, "roots", len(rs))
		roots = append(roots, rs...)
	}
	if len(files) == 0 {
		rs, err := r.roots(ctx)
		if err != nil {
			return withCode(exitInput, fmt.Errorf("repo %s: %w", *repoDir, err))
		}
		roots = rs
	}

	var d *dual.DHT
	spec := nodeSpec{
		hostOpts: []libp2p.Option{libp2p.ListenAddrStrings(listen...), libp2p.Identity(key)},
		bs:       r.bs,
	}
	if *joinDHT {
		spec.withHost = func(h host.Host) ([]bitswap.Option, func(), error) {
			var err error
			d, err = startDHT(ctx, h, dht.ModeServer, bootInfos, 10*time.Second, c.logger)
			if err != nil {
				return nil, nil, err
			}
			return nil, func() { d.Close() }, nil
		}
	}
	h, _, stop, err := c.startNodeWith(ctx, spec, stderr)
	if err != nil {
		return err
	}
	defer stop()

	for _, a := range fullAddrs(h) {
		fmt.Fprintf(stdout, "listening: %s\n", a)
	}
	if *httpAddr != "" {
		stopHTTP, addr, err := serveGateway(*httpAddr, r.bs, c.logger)
		if err != nil {
			return err
		}
		defer stopHTTP()
		fmt.Fprintf(stdout, "http: http://%s\n", addr)
	}
	for _, rc := range roots {
		fmt.Fprintf(stdout, "root: %s\n", rc)
	}
	if f, ok := stdout.(*os.File); ok {
		_ = f.Sync()
	}
	if d != nil && *provide != "none" {
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			var once sync.Once
			provideLoop(pctx, d, roots, *provide == "all", r.bs, c.logger, func(n int, took time.Duration) {
				once.Do(func() { fmt.Fprintf(stdout, "announced: %d CIDs\n", n) })
				c.logger.Info("announced to the DHT", "cids", n, "took", took)
			})
		}()
		defer func() { cancel(); <-done }()
	}
	<-ctx.Done()
	c.logger.Info("shutting down")
	return nil
}

// serveGateway serves bs as a Trustless Gateway on addr until stop is
// called (which waits up to 5 s for requests under way).
func serveGateway(addr string, bs blockstore.Blockstore, logger *slog.Logger) (stop func(), bound string, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", inputErrorf("--http %s: %w", addr, err)
	}
	srv := gateway.NewServer("", gateway.New(bs, gateway.Options{Logger: logger}))
	srv.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("http gateway", "err", err)
		}
	}()
	return func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(c) != nil {
			_ = srv.Close()
		}
		<-done
	}, ln.Addr().String(), nil
}

// fullAddrs returns h's listen addresses, each ending in /p2p/<peer id>.
func fullAddrs(h host.Host) []string {
	var out []string
	for _, a := range h.Addrs() {
		out = append(out, fmt.Sprintf("%s/p2p/%s", a, h.ID()))
	}
	return out
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"
)

const serveHelp = `Usage: bitswap serve [--listen MULTIADDR] [--repo DIR] [FILE.car...]

Imports the CAR files (v1 or v2; every block is checked against its CID)
into the repo, then serves every block the repo holds over Bitswap until
SIGINT or SIGTERM. On stdout: one "listening: <multiaddr>/p2p/<peer id>"
line per address, then one "root: <cid>" line per root imported (or, with
no CAR files, per root imported earlier into this repo).

`

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var c common
	c.register(fs)
	listen := multiFlag{}
	fs.Var(&listen, "listen", "libp2p listen `MULTIADDR`, repeatable (default /ip4/127.0.0.1/tcp/0)")
	repoDir := fs.String("repo", defaultRepoDir(), "repo `DIR` holding the blockstore (Pebble); $GOBITSWAP_REPO overrides the default")
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

	var roots []string
	for _, f := range files {
		rs, n, err := r.importCAR(ctx, f)
		if err != nil {
			return withCode(exitInput, err)
		}
		c.logger.Info("imported CAR", "file", f, "blocks", n, "roots", len(rs))
		for _, rc := range rs {
			roots = append(roots, rc.String())
		}
	}
	if len(files) == 0 {
		rs, err := r.roots(ctx)
		if err != nil {
			return withCode(exitInput, fmt.Errorf("repo %s: %w", *repoDir, err))
		}
		for _, rc := range rs {
			roots = append(roots, rc.String())
		}
	}

	h, _, stop, err := c.startNode(ctx, libp2p.ListenAddrStrings(listen...), r.bs, stderr)
	if err != nil {
		return err
	}
	defer stop()

	for _, a := range fullAddrs(h) {
		fmt.Fprintf(stdout, "listening: %s\n", a)
	}
	for _, rc := range roots {
		fmt.Fprintf(stdout, "root: %s\n", rc)
	}
	if f, ok := stdout.(*os.File); ok {
		_ = f.Sync()
	}
	<-ctx.Done()
	c.logger.Info("shutting down")
	return nil
}

// fullAddrs returns h's listen addresses, each ending in /p2p/<peer id>.
func fullAddrs(h host.Host) []string {
	var out []string
	for _, a := range h.Addrs() {
		out = append(out, fmt.Sprintf("%s/p2p/%s", a, h.ID()))
	}
	return out
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/dag"
)

const getHelp = `Usage: bitswap get --peer MULTIADDR [--peer ...] ROOT_CID [-o OUT.car] [--repo DIR] [--timeout D]

Connects to the peers and fetches the whole DAG under ROOT_CID through one
Bitswap session: every link known so far is asked for at once, so a DAG of
depth d costs about d round trips. Links are read from dag-pb, raw,
dag-cbor and dag-json blocks. Writes a CARv1 whose root is ROOT_CID to
OUT.car, or to stdout (which then carries only the CAR), as the blocks
arrive: memory stays bounded whatever the DAG's size.

With --repo DIR the blocks are stored in that repo (the one bitswap serve
uses) instead, and no CAR is written unless -o is given too. Blocks already
in the repo are not fetched again, so a fetch that was interrupted resumes
where it stopped.

A progress line is shown on stderr when it is a terminal, and a one-line
summary at the end.

Exit codes: 0 ok, 1 usage error, 2 input error (malformed CID or multiaddr,
output not writable), 3 network error (no peer reachable) or blocks still
missing at --timeout (the error names them), 4 internal error.

`

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) (retErr error) {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	var c common
	c.register(fs)
	var peers multiFlag
	fs.Var(&peers, "peer", "`MULTIADDR` of a peer, ending in /p2p/<peer id>; repeatable")
	out := fs.String("o", "", "write the CAR to `FILE` (default stdout, unless --repo is given)")
	repoDir := fs.String("repo", "", "store the blocks in the repo `DIR` (Pebble, as bitswap serve uses) and resume from what it holds")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up when the DAG is not complete after `D`")
	dialTimeout := fs.Duration("dial-timeout", 5*time.Second, "give up connecting to a peer after `D`")
	pos, err := parseFlags(fs, args, stderr, getHelp)
	if err != nil {
		return err
	}
	if err := c.setup(stderr); err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErrorf("want exactly one ROOT_CID, got %d arguments (see bitswap get -h)", len(pos))
	}
	if len(peers) == 0 {
		return usageErrorf("at least one --peer is needed (see bitswap get -h)")
	}
	root, err := cid.Decode(pos[0])
	if err != nil {
		return inputErrorf("malformed CID %q: %v", pos[0], err)
	}
	var infos []peer.AddrInfo
	for _, p := range peers {
		ai, err := peer.AddrInfoFromString(p)
		if err != nil {
			return inputErrorf("bad --peer %q (want a multiaddr ending in /p2p/<peer id>): %v", p, err)
		}
		infos = append(infos, *ai)
	}

	var w io.Writer = stdout
	if *repoDir != "" && *out == "" {
		w = nil // the repo is the output
	}
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return inputErrorf("%v", err)
		}
		defer func() {
			if cerr := f.Close(); cerr != nil && retErr == nil {
				retErr = inputErrorf("writing %s: %v", *out, cerr)
			}
			if retErr != nil {
				os.Remove(*out) // no partial CAR left behind
			}
		}()
		w = f
	}

	var bs blockstore.Blockstore = newKeyStore()
	var r *repo
	if *repoDir != "" {
		if r, err = openRepo(*repoDir); err != nil {
			return withCode(exitInput, err)
		}
		defer func() {
			if cerr := r.Close(); cerr != nil && retErr == nil {
				retErr = withCode(exitInput, fmt.Errorf("repo %s: closing: %w", *repoDir, cerr))
			}
		}()
		bs = r.bs
	}
	h, bsw, stop, err := c.startNode(ctx, libp2p.NoListenAddrs, bs, stderr, bitswap.WithRequestBuffer(getRequestBuffer))
	if err != nil {
		return err
	}
	defer stop()
	if err := connectAll(ctx, h, infos, *dialTimeout, c); err != nil {
		return err
	}

	res, err := fetchDAG(ctx, bsw, root, *timeout, w, isTerminal(stderr), stderr)
	st, _ := bsw.Stat()
	if r != nil {
		// What this run stored stays in the repo, complete or not.
		fetched := int(st.BlocksReceived - st.DupBlksReceived - st.Client.UnwantedBlocks)
		fmt.Fprintf(stderr, "repo %s: %d blocks were there already, %d fetched\n", *repoDir, res.blocks-fetched, fetched)
	}
	if err != nil {
		return err
	}
	if r != nil {
		if err := r.addRoot(ctx, root); err != nil {
			return withCode(exitInput, fmt.Errorf("repo %s: %w", *repoDir, err))
		}
	}
	fmt.Fprintf(stderr, "fetched %s: %d blocks, %d bytes in %.3f s (%.1f MB/s), %d duplicate blocks, %d peers\n",
		root, res.blocks, res.bytes, res.took.Seconds(), mbps(res.bytes, res.took), st.DupBlksReceived, len(st.Peers))
	return nil
}

// getRequestBuffer bounds what each of the walk's requests holds that the
// CAR writer (or the repo) has not taken yet: with the walk's own bound on
// CIDs in flight, it keeps a fetch of any size in bounded memory.
const getRequestBuffer = 32 << 20

// connectAll dials the peers in parallel. It fails only if none answers.
func connectAll(ctx context.Context, h host.Host, infos []peer.AddrInfo, timeout time.Duration, c common) error {
	errs := make([]error, len(infos))
	var wg sync.WaitGroup
	for i, ai := range infos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if err := h.Connect(dctx, ai); err != nil {
				errs[i] = fmt.Errorf("cannot reach peer %s: %w", ai.ID, err)
			}
		}()
	}
	wg.Wait()
	if slices.Contains(errs, nil) {
		for _, err := range errs {
			if err != nil {
				c.logger.Warn("skipping a peer", "err", err) // others answered
			}
		}
		return nil
	}
	if len(errs) == 1 {
		return withCode(exitNetwork, errs[0])
	}
	return networkErrorf("no peer reachable (%d tried): %v", len(errs), errs[0])
}

type fetchResult struct {
	blocks int
	bytes  int64
	took   time.Duration
}

// fetchDAG walks root's DAG through one session of bsw and writes it as a
// CARv1 to w, as the blocks arrive; w may be nil (the blockstore keeps
// them).
func fetchDAG(ctx context.Context, bsw *bitswap.Bitswap, root cid.Cid, timeout time.Duration, w io.Writer, progress bool, stderr io.Writer) (fetchResult, error) {
	var res fetchResult
	var cw *carWriter
	if w != nil {
		var err error
		if cw, err = newCARWriter(w, root); err != nil {
			return res, withCode(exitInput, err)
		}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("timed out after %v", timeout))
	defer cancel()
	sess := bsw.NewSession(ctx)
	start := time.Now()
	var nBlocks, nBytes atomic.Int64
	stopProgress := func() {}
	if progress {
		stopProgress = showProgress(bsw, start, &nBlocks, &nBytes, stderr)
	}
	var writeErr error
	err := dag.Walk(ctx, sess, root, func(blk blocks.Block) error {
		nBlocks.Add(1)
		nBytes.Add(int64(len(blk.RawData())))
		if cw == nil {
			return nil
		}
		if err := cw.Put(ctx, blk); err != nil {
			writeErr = err
			return err
		}
		return nil
	})
	stopProgress()
	res = fetchResult{blocks: int(nBlocks.Load()), bytes: nBytes.Load(), took: time.Since(start)}
	switch {
	case writeErr != nil:
		return res, inputErrorf("writing CAR: %v", writeErr)
	case err != nil: // a *MissingError names the blocks
		return res, withCode(exitNetwork, fmt.Errorf("fetching %s: %w", root, err))
	}
	if cw != nil {
		if err := cw.Close(); err != nil {
			return res, inputErrorf("writing CAR: %v", err)
		}
	}
	return res, nil
}

// showProgress redraws a progress line on stderr until stopped.
func showProgress(bsw *bitswap.Bitswap, start time.Time, nBlocks, nBytes *atomic.Int64, stderr io.Writer) func() {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprint(stderr, "\r\033[K")
				return
			case <-t.C:
				st, _ := bsw.Stat()
				el := time.Since(start)
				fmt.Fprintf(stderr, "\r\033[K%d blocks, %.1f MB, %.1f MB/s, %d peers, %d wanted",
					nBlocks.Load(), float64(nBytes.Load())/1e6, mbps(nBytes.Load(), el), len(st.Peers), len(st.Wantlist))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func mbps(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / 1e6 / d.Seconds()
}

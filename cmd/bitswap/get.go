package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/dual"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/dag"
	"github.com/gobitswap/bitswap/httpnet"
	"github.com/gobitswap/bitswap/routinghttp"
)

const getHelp = `Usage: bitswap get [--peer MULTIADDR|URL]... [--bootstrap MULTIADDR|public]... [--routing URL]... ROOT_CID [-o OUT.car] [--repo DIR] [--unixfs-out PATH] [--timeout D]

Connects to the --peer peers and fetches the whole DAG under ROOT_CID through one
session: every link known so far is asked for at once, so a DAG of
depth d costs about d round trips. Links are read from dag-pb, raw,
dag-cbor and dag-json blocks. Writes a CARv1 whose root is ROOT_CID to
OUT.car, or to stdout (which then carries only the CAR), as the blocks
arrive: memory stays bounded whatever the DAG's size.

A --peer is a libp2p peer (a multiaddr ending in /p2p/<peer id>) or an HTTP
trustless gateway: an https:// (or http://) URL, or an /http, /tls/http or
/https multiaddr, with or without /p2p/<peer id>. A gateway is asked for each
block with GET /ipfs/CID?format=raw (HEAD for want-haves) after a probe of
/ipfs/bafkqaaa; every body is hashed and checked against its CID before it is
used. Both kinds can be given together: one session asks each block of the
source it expects to deliver it first, whatever its kind. A gateway that
sends a body that does not match its CID has the block asked elsewhere;
after 3 such bodies it is dropped (a warning on stderr) and nothing it sent
is stored. From a public gateway:

  bitswap get --peer https://trustless-gateway.link ROOT_CID -o out.car

With --repo DIR the blocks are stored in that repo (the one bitswap serve
uses) instead, and no CAR is written unless -o is given too. Blocks already
in the repo are not fetched again, so a fetch that was interrupted resumes
where it stopped.

With --unixfs-out PATH, ROOT_CID must be a UnixFS file (dag-pb or raw): the
file itself is written to PATH ("-": stdout), in order, once every block
has arrived, and no CAR is written unless -o is given too. The blocks go to
the --repo, or to a temporary repo in a directory next to PATH (removed at
the end, so it needs as much free space as the file), and the file is read
back from there: memory stays bounded however large the file. A root that
is not a UnixFS file (a directory, dag-cbor) is an input error.

Without --peer (or besides it), providers are found through content
routing: the DHT joined through --bootstrap peers (as a client; "public":
the public Amino DHT's bootstrap list) and Routing V1 HTTP endpoints
(--routing URL: GET URL/routing/v1/providers/CID), all asked at once
whenever the session lacks a block no connected peer has. Each provider
found is named on stderr ("provider <peer id> (via dht|URL, for <cid>)"),
and at the end each peer that delivered blocks ("used <peer id>: n blocks,
m bytes"). A router that is down, slow or answers garbage costs at most
10 s per search and a one-line warning; the fetch goes on with the others.
For the public network:

  bitswap get --bootstrap public --routing https://delegated-ipfs.dev ROOT_CID -o out.car

With --repo, the node's identity is kept in the repo, as serve keeps it.

A progress line is shown on stderr when it is a terminal: bytes, rate, and
for a UnixFS file root (whose size its root block says) a bar, the
percentage and the time left, counted in file bytes (a block that the file
repeats, such as one of zeros, is fetched and counted once, so such a file
ends below 100%); for any other root, in bytes of blocks. At the end, a
one-line summary.

Exit codes: 0 ok, 1 usage error, 2 input error (malformed CID or multiaddr;
a block that does not decode under its codec, named; a root that is not a
UnixFS file for --unixfs-out; an output or repo that cannot be written,
such as a full disk; a repo in use by another process), 3 network error (no
peer reachable) or blocks still missing at --timeout (the error names
them), 4 internal error. Whatever the error, what was stored in the
--repo stays there and the repo is closed cleanly; a CAR or file output
that is a regular file is removed. To close cleanly, a repo needs room:
get stores nothing that would leave less than 16 MiB free on the repo's
disk (a full disk, exit 2), and does not open a repo whose disk has less.

`

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) (retErr error) {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	var c common
	c.register(fs)
	var peers multiFlag
	fs.Var(&peers, "peer", "`MULTIADDR` of a peer, ending in /p2p/<peer id>, or a gateway's https:// URL or /http, /tls/http multiaddr; repeatable")
	out := fs.String("o", "", "write the CAR to `FILE` (default stdout, unless --repo or --unixfs-out is given)")
	repoDir := fs.String("repo", "", "store the blocks in the repo `DIR` (Pebble, as bitswap serve uses) and resume from what it holds")
	unixfsOut := fs.String("unixfs-out", "", "the root is a UnixFS file: write the file to `PATH` (\"-\": stdout)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up when the DAG is not complete after `D`")
	dialTimeout := fs.Duration("dial-timeout", 5*time.Second, "give up connecting to a peer after `D`")
	var boot, routers multiFlag
	fs.Var(&boot, "bootstrap", "find providers through the DHT, joined through the bootstrap peer `MULTIADDR` (ending in /p2p/<peer id>), or \"public\"; repeatable")
	fs.Var(&routers, "routing", "find providers through the Routing V1 HTTP API at `URL` (e.g. https://delegated-ipfs.dev); repeatable")
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
	if len(peers) == 0 && len(boot) == 0 && len(routers) == 0 {
		return usageErrorf("at least one --peer, --bootstrap or --routing is needed (see bitswap get -h)")
	}
	bootInfos, err := bootstrapPeers(boot)
	if err != nil {
		return err
	}
	for _, u := range routers {
		if _, err := routinghttp.New(u); err != nil {
			return usageErrorf("bad --routing: %v", err)
		}
	}
	root, err := cid.Decode(pos[0])
	if err != nil {
		return inputErrorf("malformed CID %q: %v", pos[0], err)
	}
	var infos []dialTarget
	for _, p := range peers {
		if ai, isHTTP, err := httpnet.AddrInfoFromString(p); isHTTP {
			if err != nil {
				return inputErrorf("bad --peer %q (want an http(s):// URL or an /http or /tls/http multiaddr): %v", p, err)
			}
			infos = append(infos, dialTarget{ai: ai, http: true, name: p})
			continue
		}
		ai, err := peer.AddrInfoFromString(p)
		if err != nil {
			return inputErrorf("bad --peer %q (want a multiaddr ending in /p2p/<peer id>, or a gateway URL): %v", p, err)
		}
		infos = append(infos, dialTarget{ai: *ai, name: ai.ID.String()})
	}
	if *unixfsOut != "" {
		if err := rootCodecIsFile(root); err != nil {
			return err // dag-cbor, dag-json: no need to fetch it to know
		}
	}

	// The outputs: the CAR goes to stdout only when nothing else is named.
	var carOut io.Writer
	carName := "stdout"
	if *out == "" && *repoDir == "" && *unixfsOut == "" {
		carOut = stdout
	}
	if *out != "" {
		o, err := createOutput(*out)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := o.finish(retErr != nil); cerr != nil && retErr == nil {
				retErr = inputErrorf("writing %s: %v", *out, cerr)
				o.finish(true)
			}
		}()
		carOut, carName = o.f, *out
	}
	var fileOut io.Writer
	fileName, tempBase := "stdout", os.TempDir()
	switch *unixfsOut {
	case "":
	case "-":
		fileOut = stdout
	default:
		o, err := createOutput(*unixfsOut)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := o.finish(retErr != nil); cerr != nil && retErr == nil {
				retErr = inputErrorf("writing %s: %v", *unixfsOut, cerr)
				o.finish(true)
			}
		}()
		fileOut, fileName = o.f, *unixfsOut
		if o.regular {
			tempBase = filepath.Dir(*unixfsOut) // the same disk as the file
		}
	}

	// The blockstore: a repo when the blocks must be kept or read back,
	// otherwise one that keeps only keys.
	var bs blockstore.Blockstore = newKeyStore()
	var r *repo
	var stored *storeErrors
	storeDir, storeName := *repoDir, "repo "+*repoDir
	if storeDir == "" && fileOut != nil {
		if storeDir, err = os.MkdirTemp(tempBase, ".bitswap-get-*"); err != nil {
			return inputErrorf("temporary repo for --unixfs-out: %v", err)
		}
		defer os.RemoveAll(storeDir) // after the repo is closed
		storeName = "temporary repo " + storeDir
	}
	if storeDir != "" {
		if err := checkRepoRoom(storeDir); err != nil {
			return inputErrorf("%s: %v", storeName, err)
		}
		quietPebble(&c)
		if r, err = openRepo(storeDir); err != nil {
			return withCode(exitInput, err)
		}
		defer func() {
			if stored.isBroken() {
				return // closing would wait forever (putMany)
			}
			if cerr := r.Close(); cerr != nil && retErr == nil {
				retErr = withCode(exitInput, fmt.Errorf("%s: closing: %w", storeName, cerr))
			}
		}()
		inner := r.bs
		if testWrapRepoStore != nil {
			inner = testWrapRepoStore(inner)
		}
		stored = &storeErrors{Blockstore: inner, dir: storeDir}
		bs = stored
	}
	hn := httpnet.New(httpnet.WithLogger(c.logger))
	// The --peer peers are the user's choice: always broadcast targets,
	// never mere random guesses (which broadcast control asks one block at
	// a time until they answer).
	named := make([]peer.ID, 0, len(infos))
	for _, t := range infos {
		named = append(named, t.ai.ID)
	}
	spec := nodeSpec{
		hostOpts: []libp2p.Option{libp2p.NoListenAddrs},
		bs:       bs,
		opts:     []bitswap.Option{bitswap.WithRequestBuffer(getRequestBuffer), bitswap.WithBroadcastPeers(named...)},
		http:     hn,
	}
	if *repoDir != "" {
		key, err := loadIdentity(*repoDir)
		if err != nil {
			return withCode(exitInput, err)
		}
		spec.hostOpts = append(spec.hostOpts, libp2p.Identity(key))
	}
	routed := len(boot) > 0 || len(routers) > 0
	if routed {
		spec.withHost = func(h host.Host) ([]bitswap.Option, func(), error) {
			var d *dual.DHT
			closeDHT := func() {}
			if len(bootInfos) > 0 {
				var err error
				d, err = startDHT(ctx, h, dht.ModeClient, bootInfos, *dialTimeout, c.logger)
				switch {
				case err == nil:
					closeDHT = func() { d.Close() }
				case len(routers) > 0 || len(infos) > 0:
					// The other sources may do: a warning, not the end.
					fmt.Fprintf(stderr, "bitswap get: warning: the DHT: %s (going on without it)\n", oneLine(err.Error()))
					d = nil
				default:
					return nil, nil, err
				}
			}
			rs, err := newRouters(routers, d, h.ID(), stderr)
			if err != nil {
				closeDHT()
				return nil, nil, err
			}
			return []bitswap.Option{bitswap.WithContentRouting(rs),
				bitswap.WithObserver(bitswap.Observer{ProviderUnreachable: rs.warnUnreachable})}, closeDHT, nil
		}
	}
	h, bsw, stop, err := c.startNodeWith(ctx, spec, stderr)
	if err != nil {
		return err
	}
	defer func() { c.quietStop(); stop() }()
	if len(infos) > 0 {
		if err := connectAll(ctx, h, hn, infos, *dialTimeout, c); err != nil && !routed {
			return err
		} else if err != nil {
			fmt.Fprintf(stderr, "bitswap get: warning: %s (going on with content routing)\n", oneLine(err.Error()))
		}
	}

	progress := isTerminal(stderr)
	res, err := fetchDAG(ctx, bsw, root, fetchConfig{
		timeout:   *timeout,
		car:       carOut,
		carName:   carName,
		store:     stored,
		storeName: storeName,
		unixfs:    fileOut != nil,
		progress:  progress,
		stderr:    stderr,
	})
	st, _ := bsw.Stat()
	if routed || hasHTTP(infos) {
		for _, ps := range st.Peers {
			p, err := peer.Decode(ps)
			if err != nil {
				continue
			}
			if l := bsw.LedgerForPeer(p); l.BlocksReceived > 0 {
				fmt.Fprintf(stderr, "used %s%s: %d blocks, %d bytes\n", p, gatewayName(infos, p), l.BlocksReceived, l.Recv)
			}
		}
	}
	if hs := hn.HTTPStats(); hs.WrongBodies > 0 {
		fmt.Fprintf(stderr, "bitswap get: warning: gateways sent %d bodies that did not match their CIDs (or were over 2 MiB); they were dropped and nothing of them was stored; %d gateways dropped\n",
			hs.WrongBodies, hs.Dropped)
	}
	if *repoDir != "" {
		// What this run stored stays in the repo, complete or not.
		fmt.Fprintf(stderr, "repo %s: %d blocks were there already, %d fetched\n", *repoDir, res.blocks-res.visitedStored, stored.count())
	}
	if err != nil {
		return err
	}
	if *repoDir != "" {
		if err := r.addRoot(ctx, root); err != nil {
			return withCode(exitInput, fmt.Errorf("repo %s: %w", *repoDir, err))
		}
	}
	summary := fmt.Sprintf("fetched %s: %d blocks, %d bytes in %.3f s (%.1f MB/s), %d duplicate blocks, %d peers",
		root, res.blocks, res.bytes, res.took.Seconds(), mbps(res.bytes, res.took), st.DupBlksReceived, len(st.Peers))
	if fileOut != nil {
		n, err := writeFile(ctx, r.bs, root, fileOut, fileName, res.fileSize, progress, stderr)
		if err != nil {
			return err
		}
		summary += fmt.Sprintf("; wrote the %d-byte file to %s", n, fileName)
	}
	fmt.Fprintln(stderr, summary)
	return nil
}

// writeFile writes the UnixFS file under root, from bs, to w (called name
// in errors), and checks it has the size its root says.
func writeFile(ctx context.Context, bs blockstore.Blockstore, root cid.Cid, w io.Writer, name string, size int64, progress bool, stderr io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	if progress {
		stop := showProgress(stderr, func() progressStatus {
			return progressStatus{done: cw.n.Load(), total: size, what: "written"}
		})
		defer stop()
	}
	n, err := writeUnixFSFile(ctx, bs, root, cw)
	var we *writeError
	switch {
	case errors.As(err, &we):
		return n, inputErrorf("writing %s: %v", name, we.err)
	case ctx.Err() != nil:
		return n, withCode(exitNetwork, fmt.Errorf("writing %s: %w", name, context.Cause(ctx)))
	case err != nil: // the blocks are all here and hash right: the file's DAG is malformed
		return n, inputErrorf("reading the UnixFS file %s: %v", root, err)
	case size >= 0 && n != size:
		return n, inputErrorf("UnixFS file %s: %d bytes under it, its root says %d", root, n, size)
	}
	return n, nil
}

type countingWriter struct {
	w io.Writer
	n atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// getRequestBuffer bounds what each of the walk's requests holds that the
// CAR writer (or the repo) has not taken yet: with the walk's own bound on
// CIDs in flight, it keeps a fetch of any size in bounded memory.
const getRequestBuffer = 32 << 20

// dialTarget is one --peer: a libp2p peer or an HTTP gateway.
type dialTarget struct {
	ai   peer.AddrInfo
	http bool
	name string // as the user named it
}

// gatewayName is " (URL)" when p is a gateway the user named, else "".
func gatewayName(ts []dialTarget, p peer.ID) string {
	for _, t := range ts {
		if t.http && t.ai.ID == p {
			return " (" + t.name + ")"
		}
	}
	return ""
}

func hasHTTP(ts []dialTarget) bool {
	return slices.ContainsFunc(ts, func(t dialTarget) bool { return t.http })
}

// connectAll dials the peers in parallel: libp2p peers through the host,
// gateways through the HTTP network (a probe). It fails only if none
// answers.
func connectAll(ctx context.Context, h host.Host, hn *httpnet.Network, infos []dialTarget, timeout time.Duration, c common) error {
	errs := make([]error, len(infos))
	var wg sync.WaitGroup
	for i, t := range infos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if t.http {
				if err := hn.Connect(dctx, t.ai); err != nil {
					errs[i] = fmt.Errorf("cannot reach gateway %s: %w", t.name, err)
				}
				return
			}
			if err := h.Connect(dctx, t.ai); err != nil {
				errs[i] = fmt.Errorf("cannot reach peer %s: %w", t.ai.ID, err)
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
	blocks   int
	bytes    int64
	took     time.Duration
	fileSize int64 // the root is a UnixFS file of that many bytes; -1 if not, or if it does not say
	// visitedStored counts the blocks visited that this run stored (the
	// others were in the repo already).
	visitedStored int
}

type fetchConfig struct {
	timeout   time.Duration
	car       io.Writer    // nil: no CAR
	carName   string       // the CAR's name in errors
	store     *storeErrors // the repo's blockstore, or nil
	storeName string       // the repo's name in errors
	unixfs    bool         // the root must be a UnixFS file
	progress  bool         // show a progress line on stderr
	stderr    io.Writer
}

// fetchDAG walks root's DAG through one session of bsw and writes it as a
// CARv1 to cfg.car, if any, as the blocks arrive. Its errors say what
// failed in one line, with their exit code: a CAR or repo that cannot be
// written and a block that does not decode are input errors, blocks
// missing at the timeout are a fetch error.
func fetchDAG(ctx context.Context, bsw *bitswap.Bitswap, root cid.Cid, cfg fetchConfig) (fetchResult, error) {
	res := fetchResult{fileSize: -1}
	var cw *carWriter
	if cfg.car != nil {
		var err error
		if cw, err = newCARWriter(cfg.car, root); err != nil {
			return res, inputErrorf("writing CAR to %s: %v", cfg.carName, err)
		}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.timeout, fmt.Errorf("timed out after %v", cfg.timeout))
	defer cancel()
	sess := bsw.NewSession(ctx)
	start := time.Now()
	var nBlocks, nBytes, fileBytes atomic.Int64
	fileSize := atomic.Int64{}
	fileSize.Store(-1)
	stopProgress := func() {}
	if cfg.progress {
		stopProgress = showProgress(cfg.stderr, func() progressStatus {
			st, _ := bsw.Stat()
			extra := fmt.Sprintf("%d peers, %d blocks", len(st.Peers), nBlocks.Load())
			if fs := fileSize.Load(); fs >= 0 {
				return progressStatus{done: fileBytes.Load(), total: fs, what: "of file", extra: extra}
			}
			return progressStatus{done: nBytes.Load(), what: "of blocks", extra: extra + fmt.Sprintf(", %d wanted", len(st.Wantlist))}
		})
	}
	defer stopProgress()
	stopStall := func() {}
	if !cfg.progress {
		stopStall = watchStall(cfg.stderr, stallAfter(cfg.timeout), nBlocks.Load, func() int {
			st, _ := bsw.Stat()
			return len(st.Peers)
		})
	}
	defer stopStall()
	isRoot := true
	visit := func(blk blocks.Block) error {
		// Bitswap has stored blk (or failed to) before handing it over.
		if err := cfg.store.err(); err != nil {
			return inputErrorf("%s: %v", cfg.storeName, err)
		}
		nBlocks.Add(1)
		nBytes.Add(int64(len(blk.RawData())))
		if cfg.store.visited(blk) {
			res.visitedStored++
		}
		switch {
		case isRoot:
			isRoot = false
			info, err := decodeUnixFS(blk)
			switch {
			case err != nil:
				return inputErrorf("the DAG under %s is malformed: %v", root, err)
			case info.file:
				res.fileSize = info.fileSize
				fileSize.Store(res.fileSize)
				fileBytes.Add(int64(info.data))
			case cfg.unixfs:
				return notAFile(root, info.what)
			}
		case cfg.progress && res.fileSize >= 0:
			// Count file bytes: the raw leaves, the data in dag-pb nodes.
			// A block that the file repeats (zeros) counts once.
			if info, err := decodeUnixFS(blk); err == nil && info.file {
				fileBytes.Add(int64(info.data))
			}
		}
		if cw != nil {
			if err := cw.Put(ctx, blk); err != nil {
				return inputErrorf("writing CAR to %s: %v", cfg.carName, err)
			}
		}
		return nil
	}
	// A block that does not decode under its codec is the DAG's fault (its
	// bytes hash to its CID): an input error, naming the block.
	links := func(blk blocks.Block) ([]cid.Cid, error) {
		l, err := dag.Links(blk)
		if err != nil {
			return nil, inputErrorf("the DAG under %s is malformed: %v", root, err)
		}
		return l, nil
	}
	err := dag.Walk(ctx, sess, root, visit, dag.WithLinks(links))
	stopProgress()
	stopStall()
	res.blocks, res.bytes, res.took = int(nBlocks.Load()), nBytes.Load(), time.Since(start)
	if err == nil {
		err = cfg.store.err() // the last blocks' storing
		if err != nil {
			err = inputErrorf("%s: %v", cfg.storeName, err)
		}
	}
	if err != nil {
		if _, ok := err.(*exitError); ok {
			return res, err // from visit or links: says what failed
		}
		// A *MissingError names the blocks.
		return res, withCode(exitNetwork, fmt.Errorf("fetching %s: %w", root, err))
	}
	if cw != nil {
		if err := cw.Close(); err != nil {
			return res, inputErrorf("writing CAR to %s: %v", cfg.carName, err)
		}
	}
	return res, nil
}

func mbps(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / 1e6 / d.Seconds()
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	boxobstore "github.com/ipfs/boxo/blockstore"
	cid "github.com/ipfs/go-cid"
	pebbleds "github.com/ipfs/go-ds-pebble"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/blockstore"
)

// childEnv, when set in the environment, makes this program (or the test
// binary, see TestMain) run as a child of the memory case instead: its value
// is a JSON childSpec.
const childEnv = "GOBITSWAP_BENCH_CHILD"

type childSpec struct {
	Role     string        `json:"role"` // "server" or "client"
	Impl     impl          `json:"impl"`
	Seed     uint64        `json:"seed"`
	N        int           `json:"n"`
	Size     int           `json:"size"`
	CidsFile string        `json:"cids_file"`
	Addr     string        `json:"addr,omitempty"` // client: the server's /p2p multiaddr
	Dir      string        `json:"dir,omitempty"`  // client: the pebble directory
	Batch    int           `json:"batch,omitempty"`
	Timeout  time.Duration `json:"timeout"`
	// The attack suite's children (attack_children.go).
	Fetches int    `json:"fetches,omitempty"` // honest: fetches, each on a fresh node
	Hostile string `json:"hostile,omitempty"` // attacked-client: the hostile peer's /p2p multiaddr
	Profile string `json:"profile,omitempty"` // attack-server: write profiles with this path prefix
	// The dag suite's boxo children (dag_children.go).
	Root string `json:"root,omitempty"` // dag-client: the DAG's root
	Out  string `json:"out,omitempty"`  // dag-client: write the CARv1 here ("" with Dir: into pebble)
	// dag-client, for the quiet suite: more peers to connect to before
	// fetching, a bound on FetchGraph alone (0: Timeout bounds the whole
	// run), and whether a FetchGraph that fails is a result, not a failure.
	Peers        []string      `json:"peers,omitempty"`
	FetchTimeout time.Duration `json:"fetch_timeout,omitempty"`
	Partial      bool          `json:"partial,omitempty"`
	// The quiet suite's quiet-peers child (quiet_peers.go): N hosts that
	// are "silent" or answer "donthave".
	Mode string `json:"mode,omitempty"`
}

// memResult is what a client child prints on stdout.
type memResult struct {
	Blocks   int     `json:"blocks"`
	Bytes    int64   `json:"bytes"`
	Seconds  float64 `json:"seconds"`
	IdleHeap uint64  `json:"idle_heap"`
	PeakHeap uint64  `json:"peak_heap"`
	IdleRSS  uint64  `json:"idle_rss"`
	PeakRSS  uint64  `json:"peak_rss"`
	Samples  int     `json:"samples"`
}

func runChild(spec string) int {
	var s childSpec
	err := json.Unmarshal([]byte(spec), &s)
	if err == nil {
		switch s.Role {
		case "server":
			err = childServer(s)
		case "client":
			err = childClient(s)
		case "attack-server":
			err = childAttackServer(s)
		case "honest":
			err = childHonest(s)
		case "attacked-client":
			err = childAttackedClient(s)
		case "dag-server":
			err = childDAGServer(s)
		case "dag-client":
			err = childDAGClient(s)
		case "quiet-peers":
			err = childQuietPeers(s)
		default:
			err = fmt.Errorf("unknown role %q", s.Role)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench child %s/%s: %v\n", s.Role, s.Impl, err)
		return 1
	}
	return 0
}

// childServer serves a generated data set until its stdin closes. It writes
// the CIDs to s.CidsFile, then prints "ready <multiaddr>".
func childServer(s childSpec) error {
	g := newGenStore(s.Seed, s.N, s.Size)
	var sb strings.Builder
	for _, c := range g.cids {
		sb.WriteString(c.String())
		sb.WriteByte('\n')
	}
	if err := os.WriteFile(s.CidsFile, []byte(sb.String()), 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, err := startNode(ctx, s.Impl, g, g)
	if err != nil {
		return err
	}
	defer n.close()
	return serveUntilStdinEnds(n)
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// rss is VmRSS of this process in bytes (0 where /proc is missing).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// childClient fetches the data set into a pebble blockstore, sampling heap
// and RSS every 50 ms, and prints a memResult as JSON.
func childClient(s childSpec) error {
	raw, err := os.ReadFile(s.CidsFile)
	if err != nil {
		return err
	}
	var cids []cid.Cid
	for _, line := range strings.Fields(string(raw)) {
		c, err := cid.Decode(line)
		if err != nil {
			return err
		}
		cids = append(cids, c)
	}
	ai, err := peer.AddrInfoFromString(s.Addr)
	if err != nil {
		return err
	}
	pds, err := pebbleds.NewDatastore(s.Dir)
	if err != nil {
		return err
	}
	defer pds.Close()
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	obs, bbs := blockstore.New(pds), boxobstore.NewBlockstore(pds)
	n, err := startNode(ctx, s.Impl, obs, bbs)
	if err != nil {
		return err
	}
	defer n.close()
	n.storing(s.Impl, bbs)
	if err := n.h.Connect(ctx, *ai); err != nil {
		return err
	}

	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(200 * time.Millisecond)
	var r memResult
	r.IdleHeap, r.IdleRSS = heapObjects(), rss()
	var mu sync.Mutex
	sample := func() {
		h, m := heapObjects(), rss()
		mu.Lock()
		r.PeakHeap, r.PeakRSS = max(r.PeakHeap, h), max(r.PeakRSS, m)
		r.Samples++
		mu.Unlock()
	}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	res, err := fetch(ctx, n.f, cids, s.Batch)
	sample()
	close(stop)
	<-stopped
	if err != nil {
		return err
	}
	if err := res.check(len(cids), int64(len(cids))*int64(s.Size)); err != nil {
		return err
	}
	r.Blocks, r.Bytes, r.Seconds = res.blocks, res.bytes, res.took.Seconds()
	return json.NewEncoder(os.Stdout).Encode(r)
}

// memFetch runs one server child and one client child of impl and returns
// the client's figures.
func memFetch(cfg Config, which impl, sz tpSizes) (memResult, error) {
	var r memResult
	exe, err := os.Executable()
	if err != nil {
		return r, err
	}
	dir, err := os.MkdirTemp("", "gobitswap-bench-*")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	spec := childSpec{Role: "server", Impl: which, Seed: 7, N: sz.memN, Size: sz.memBlock,
		CidsFile: filepath.Join(dir, "cids"), Timeout: sz.fetchTimeout}
	if which == boxo {
		spec.Batch = sz.boxoBatch
	}
	env := func(s childSpec) []string {
		b, _ := json.Marshal(s)
		return append(os.Environ(), childEnv+"="+string(b))
	}

	server := exec.Command(exe)
	server.Env = env(spec)
	server.Stderr = cfg.Log
	stdin, err := server.StdinPipe()
	if err != nil {
		return r, err
	}
	stdout, err := server.StdoutPipe()
	if err != nil {
		return r, err
	}
	if err := server.Start(); err != nil {
		return r, err
	}
	defer func() {
		stdin.Close() // the server exits when its stdin closes
		_ = server.Wait()
	}()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		addr, ok := strings.CutPrefix(line, "ready ")
		if !ok {
			return r, fmt.Errorf("server child: %q", line)
		}
		spec.Addr = addr
	case <-time.After(2 * time.Minute):
		return r, errors.New("server child not ready after 2 minutes")
	}

	spec.Role, spec.Dir = "client", filepath.Join(dir, "pebble")
	client := exec.Command(exe)
	client.Env = env(spec)
	client.Stderr = cfg.Log
	var out bytes.Buffer
	client.Stdout = &out
	if err := client.Run(); err != nil {
		return r, fmt.Errorf("client child: %w", err)
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return r, fmt.Errorf("client child output %q: %w", out.String(), err)
	}
	return r, nil
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

const memoryDoc = `A 1 GiB fetch (4,096 × 256 KiB) into an on-disk blockstore: go-ds-pebble with its
default options in a temporary directory, ours through blockstore.New, boxo through boxo's
blockstore.NewBlockstore and blockservice, which writes each fetched block to it as Kubo does
(boxo's Bitswap client stores nothing itself). The fetching node runs in a child process of
its own, the server in another one that derives each block from its index, so the figures are
the fetching side's alone: Go heap (runtime/metrics heap objects) and VmRSS sampled every
50 ms, peak minus idle (nodes started and connected, before the fetch).`

func runMemory(cfg Config) ([]Row, error) {
	sz := throughputSizes(cfg)
	total := int64(sz.memN) * int64(sz.memBlock)
	name := fmt.Sprintf("%s → pebble, %s blocks", sizeName(total), sizeName(int64(sz.memBlock)))
	rate := Row{Case: name + ": fetch rate", Unit: "MB/s", HigherIsBetter: true}
	heap := Row{Case: name + ": peak Go heap above idle", Unit: "MiB"}
	rssRow := Row{Case: name + ": peak RSS above idle", Unit: "MiB"}
	var oursIdle, boxoIdle, oursPeak, boxoPeak Stat
	run := func(which impl) error {
		r, err := memFetch(cfg, which, sz)
		if err != nil {
			return wrap(string(which), err)
		}
		side := func(row *Row) *Stat {
			if which == ours {
				return &row.Ours
			}
			return &row.Boxo
		}
		side(&rate).add(float64(r.Bytes) / 1e6 / r.Seconds)
		side(&heap).add(mib(r.PeakHeap - min(r.IdleHeap, r.PeakHeap)))
		side(&rssRow).add(mib(r.PeakRSS - min(r.IdleRSS, r.PeakRSS)))
		idle, peak := &oursIdle, &oursPeak
		if which == boxo {
			idle, peak = &boxoIdle, &boxoPeak
		}
		idle.add(mib(r.IdleRSS))
		peak.add(mib(r.PeakRSS))
		return nil
	}
	rows := func() []Row { return []Row{rate, heap, rssRow} }
	for rep := range sz.memRepeat {
		err := interleave(rep, func() error { return run(ours) }, func() error { return run(boxo) })
		cfg.logf("memory: %s repeat %d/%d: ours %v MB/s heap +%v MiB RSS +%v MiB; boxo %v MB/s heap +%v MiB RSS +%v MiB",
			name, rep+1, sz.memRepeat, last(rate.Ours), last(heap.Ours), last(rssRow.Ours), last(rate.Boxo), last(heap.Boxo), last(rssRow.Boxo))
		if err != nil {
			return rows(), fmt.Errorf("%s: %w", name, err)
		}
	}
	for _, s := range []*Stat{&oursIdle, &boxoIdle, &oursPeak, &boxoPeak} {
		s.finish()
	}
	rate.Note = fmt.Sprintf("%d runs; boxo in calls of %s (in larger calls it stalls)", sz.memRepeat, countName(sz.boxoBatch))
	heap.Note = "fetching process only; runtime/metrics heap objects, sampled every 50 ms"
	rssRow.Note = fmt.Sprintf("VmRSS every 50 ms; median idle → peak: ours %.0f → %.0f MiB, boxo %.0f → %.0f MiB",
		oursIdle.Median, oursPeak.Median, boxoIdle.Median, boxoPeak.Median)
	return rows(), nil
}

// serveUntilStdinEnds announces a child server's address on stdout (the
// "ready" line the parent waits for) and serves until the parent closes
// the child's stdin.
func serveUntilStdinEnds(n *node) error {
	addrs := n.h.Addrs()
	if len(addrs) == 0 {
		return errors.New("server host has no address")
	}
	fmt.Printf("ready %s/p2p/%s\n", addrs[0], n.h.ID())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

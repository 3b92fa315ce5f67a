package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	cid "github.com/ipfs/go-cid"
)

const dagDoc = `Whole-DAG fetches through the command, as a user runs them: every run starts a fresh server
process and a fresh fetching process on loopback (TCP on 127.0.0.1) and ends both. Ours: ` + "`bitswap serve --repo DIR`" + `
and ` + "`bitswap get --peer ADDR ROOT -o FILE`" + ` (the command built from this tree), which walks the DAG through one
session and writes a CARv1 as the blocks arrive, keeping only their keys. boxo v0.43 (the bench binary
run again as a child): a boxo Bitswap server, and a client that fetches as Kubo pins: merkledag.FetchGraph
(32 workers, one block each) over a DAGService on a blockservice session over boxo's Bitswap; its
blockservice stores each fetched block into a store that writes a CARv1 as the blocks arrive and keeps
only their keys, like ours. Both servers serve the same on-disk repository (package repo: Pebble, blocks of 32 KiB and more as
flatfs files, as ` + "`bitswap serve`" + ` keeps it), imported once per
case from a CAR by ` + "`bitswap serve`" + ` (not timed; warm in the page cache): ours through our blockstore (as
` + "`bitswap serve`" + ` opens it), boxo through boxo's blockstore over the same datastore as Kubo v0.43 wraps it
by default (write-through, a 64 Ki-entry two-queue cache of keys and sizes, no bloom filter) over the
repository's datastore. Both
clients write their CAR to a file in the same temporary directory (ext4 here), deleted after each run.
"End to end" is the wall clock of the fetching process, exec to exit (start-up, connecting, the fetch,
closing), as block bytes / time; "as reported" is the fetch's own time: ours from its summary line (the
walk, after connecting), boxo's FetchGraph call (after connecting). CPU (user+system) is the fetching
process's, from its rusage; peak RSS is its VmHWM read from /proc every 10 ms (not rusage's maxrss,
which Linux floors at the parent's peak RSS for children started as os/exec starts them). Each repeat runs the four pairings (ours→ours, boxo→boxo, our get
from boxo's server, boxo's client from our serve) in an order rotated every repeat; every fetch is checked
for its block and byte count. The UnixFS files are built by boxo's importer as Kubo's ` + "`ipfs add`" + ` builds
them with raw leaves and CIDv1 (balanced layout, 174 links per node); the dag-cbor tree has 4 levels of
dag-cbor nodes with 16 children each (a map of path, level, 64 bytes and the links), each bottom node
linking 4 raw leaves of 1–5 KiB. The disk case fetches the largest file into a fresh on-disk repo: ours
` + "`bitswap get --repo DIR`" + ` (no CAR), boxo its client with boxo's blockstore, wrapped as Kubo does, over the
same kind of repository (package repo), instead of the CAR store (no sync per write on either side; the
repository syncs its files when it closes); against the same fetch with the CAR
on the process's stdout pointed at /dev/null, and against the disk's own sequential write rate measured
in the same repeat: 4 MiB writes of random bytes to a file on the same filesystem, timed up to the end of
an fsync, so that the page cache does not count. ` + dagScaleEnv + `=F scales every DAG (e.g. 0.1);
` + dagCasesEnv + ` picks cases (4k, 256k, 1m, cbor, disk); ` + bitswapBinEnv + ` names a prebuilt
` + "`bitswap`" + ` to time instead of building this tree's.`

const (
	// dagScaleEnv scales the DAGs (a float; 1 = full size).
	dagScaleEnv = "GOBITSWAP_BENCH_DAG_SCALE"
	// dagCasesEnv picks the cases to run (comma-separated: 4k, 256k, 1m,
	// cbor, disk).
	dagCasesEnv = "GOBITSWAP_BENCH_DAG_CASES"
	// bitswapBinEnv names a prebuilt bitswap command to time.
	bitswapBinEnv = "GOBITSWAP_BENCH_BITSWAP"
)

// Metrics of the dag suite's rows, after "<case>: ".
const (
	dE2E   = "ours→ours vs boxo→boxo, end to end"
	dSelf  = "ours→ours vs boxo→boxo, fetch time as reported"
	dCPU   = "CPU time of the fetching process"
	dRSS   = "peak RSS of the fetching process"
	dCross = "cross, end to end: our get from boxo's server | boxo's client from our serve"
	dRepo  = "into a fresh on-disk repo, end to end"
	dNull  = "CAR to /dev/null, end to end"
	dRepoM = "into a fresh on-disk repo: peak RSS"
)

// dagCase is one DAG of the suite.
type dagCase struct {
	key   string // for dagCasesEnv
	label string
	build func(path string) (dagInfo, error)
	// target is the goal for ours→ours over boxo→boxo end to end
	// (0: none).
	target float64
}

func dagScale(cfg Config) (float64, error) {
	scale := 1.0
	if cfg.Short {
		scale = 0.02
	}
	if v := os.Getenv(dagScaleEnv); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 4 {
			return 0, fmt.Errorf("%s=%q: want a number in (0, 4]", dagScaleEnv, v)
		}
		scale = f
	}
	return scale, nil
}

func dagCases(scale float64) []dagCase {
	file := func(key string, seed uint64, size int64, chunk int, target float64) dagCase {
		n := max(int64(math.Round(float64(size/int64(chunk))*scale)), 1)
		total := n * int64(chunk)
		return dagCase{
			key:   key,
			label: fmt.Sprintf("UnixFS %s in %s chunks", sizeName(total), sizeName(int64(chunk))),
			build: func(path string) (dagInfo, error) {
				return buildUnixFS(path, seed, total, chunk)
			},
			target: target,
		}
	}
	top := max(int(math.Round(cborFanout*scale)), 1)
	return []dagCase{
		file("4k", 21, 20000*4<<10, 4<<10, 2),
		file("256k", 22, 256<<20, 256<<10, 1.5),
		file("1m", 23, 1<<30, 1<<20, 1.5),
		{
			key:   "cbor",
			label: fmt.Sprintf("dag-cbor tree, fanout %d, depth %d, raw leaves", cborFanout, cborDepth),
			build: func(path string) (dagInfo, error) { return buildCBORTree(path, 24, top) },
		},
	}
}

// dagEnv is what every run of the suite needs.
type dagEnv struct {
	cfg     Config
	bin     string // the bitswap command
	work    string // temporary directory: CARs, repos, outputs
	timeout time.Duration
	seq     int // names fresh outputs
}

// newDAGEnv makes a work directory (the caller removes it) and builds the
// command into it.
func newDAGEnv(cfg Config, suite string) (*dagEnv, error) {
	work, err := os.MkdirTemp("", "gobitswap-bench-"+suite+"-*")
	if err != nil {
		return nil, err
	}
	bin, err := buildCommand(cfg, work)
	if err != nil {
		_ = os.RemoveAll(work)
		return nil, err
	}
	e := &dagEnv{cfg: cfg, bin: bin, work: work, timeout: 5 * time.Minute}
	if cfg.Short {
		e.timeout = time.Minute
	}
	return e, nil
}

// buildCommand builds this tree's bitswap command into dir, or returns
// bitswapBinEnv's.
func buildCommand(cfg Config, dir string) (string, error) {
	if b := os.Getenv(bitswapBinEnv); b != "" {
		return b, nil
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/gobitswap/bitswap").Output()
	if err != nil {
		return "", fmt.Errorf("finding the module root (run from interop/, or set %s): %w", bitswapBinEnv, err)
	}
	root := strings.TrimSpace(string(out))
	bin := filepath.Join(dir, "bitswap")
	cfg.logf("dag: building %s/cmd/bitswap", root)
	build := exec.Command("go", "build", "-o", bin, "./cmd/bitswap")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the command: %w\n%s", err, out)
	}
	return bin, nil
}

// fresh is a new path in the work directory.
func (e *dagEnv) fresh(name string) string {
	e.seq++
	return filepath.Join(e.work, fmt.Sprintf("%s-%d", name, e.seq))
}

// dagServer is a running server process.
type dagServer struct {
	which  impl
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	addr   string
	stderr *tailBuffer
	eof    chan struct{} // its stdout closed
	hwm    *hwmWatcher
	ready  uint64 // its peak RSS when it was ready
}

var listenRE = regexp.MustCompile(`^listening: (/ip4/127\.0\.0\.1/\S+)$`)

// startServer starts a server of which over repo, and waits until it
// serves root. With car set, ours imports it first (then the wait is
// long).
func (e *dagEnv) startServer(which impl, repo string, root cid.Cid, car string) (*dagServer, error) {
	s := &dagServer{which: which, stderr: &tailBuffer{}, eof: make(chan struct{})}
	var err error
	if which == ours {
		args := []string{"serve", "--listen", "/ip4/127.0.0.1/tcp/0", "--repo", repo}
		if car != "" {
			args = append(args, car)
		}
		s.cmd = exec.Command(e.bin, args...)
	} else if s.cmd, err = childCmd(childSpec{Role: "dag-server", Impl: boxo, Dir: repo}); err != nil {
		return nil, err
	}
	s.cmd.Stderr = s.stderr
	if s.stdin, err = s.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	s.hwm = watchHWM(s.cmd.Process.Pid)
	ready := make(chan error, 1)
	go func() {
		defer close(s.eof)
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if sent {
				continue
			}
			if m := listenRE.FindStringSubmatch(line); m != nil && s.addr == "" {
				s.addr = m[1]
			}
			if a, ok := strings.CutPrefix(line, "ready "); ok && which == boxo {
				s.addr = a
				ready <- nil
				sent = true
			}
			if r, ok := strings.CutPrefix(line, "root: "); ok && which == ours {
				if r != root.String() {
					ready <- fmt.Errorf("server serves root %s, want %s", r, root)
				} else if s.addr == "" {
					ready <- errors.New("server printed no 127.0.0.1 address")
				} else {
					ready <- nil
				}
				sent = true
			}
		}
		if !sent {
			ready <- errors.New("server exited before it was ready")
		}
	}()
	wait := 2 * time.Minute
	if car != "" {
		wait = 20 * time.Minute
	}
	select {
	case err = <-ready:
	case <-time.After(wait):
		err = fmt.Errorf("not ready after %v", wait)
	}
	if err != nil {
		_ = s.cmd.Process.Kill()
		<-s.eof
		_ = s.cmd.Wait()
		s.hwm.finish()
		return nil, fmt.Errorf("%s server: %w; stderr: %s", which, err, s.stderr)
	}
	s.ready = s.hwm.now()
	return s, nil
}

// stop ends the server (ours on SIGTERM, boxo's when its stdin closes) and
// returns its rusage and peak RSS.
func (s *dagServer) stop() (*syscall.Rusage, uint64, error) {
	if s.which == ours {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
	}
	_ = s.stdin.Close()
	select {
	case <-s.eof:
	case <-time.After(time.Minute):
		_ = s.cmd.Process.Kill()
		<-s.eof
	}
	err := s.cmd.Wait()
	peak := s.hwm.finish()
	ru, _ := s.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if err != nil {
		return ru, peak, fmt.Errorf("%s server exit: %w; stderr: %s", s.which, err, s.stderr)
	}
	return ru, peak, nil
}

// importCAR imports car into the repository repo (created if need be)
// through `bitswap serve`, which must then serve root.
func (e *dagEnv) importCAR(repo string, root cid.Cid, car string) error {
	srv, err := e.startServer(ours, repo, root, car)
	if err != nil {
		return fmt.Errorf("importing the CAR: %w", err)
	}
	if _, _, err := srv.stop(); err != nil {
		return fmt.Errorf("importing the CAR: %w", err)
	}
	return nil
}

// output is where a fetch puts the DAG.
type output int

const (
	toFile output = iota // a CARv1 in the work directory
	toNull               // a CARv1 to /dev/null
	toRepo               // a fresh on-disk repository (package repo)
)

// dagRun is one fetch's figures.
type dagRun struct {
	wall, self  time.Duration
	cpu, srvCPU time.Duration
	rss, srvRSS uint64 // peak, bytes
	srvReady    uint64 // the server's peak RSS when it was ready
	// written is what the fetching process wrote to the filesystem
	// (rusage's oublock: per task, so not inherited like maxrss).
	written int64
	blocks  int
	bytes   int64
	start   time.Time // when the fetching process was started
}

var summaryRE = regexp.MustCompile(`fetched (\S+): (\d+) blocks, (\d+) bytes in ([0-9.]+) s`)

func ruCPU(ru *syscall.Rusage) time.Duration {
	if ru == nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// hwmWatcher samples a child's VmHWM (its peak RSS so far) every 10 ms.
// Not the child's rusage: Linux carries the RSS high-water mark of the mm
// a process had before execve into its maxrss, and os/exec starts children
// with CLONE_VM, so that mm is this (the parent's) process's, and every
// child's maxrss would be at least the parent's peak. VmHWM is the child's
// own mm's. Growth in the last 10 ms before exit is missed.
type hwmWatcher struct {
	mu   sync.Mutex
	peak uint64
	stop chan struct{}
	done chan struct{}
	path string
}

func watchHWM(pid int) *hwmWatcher {
	w := &hwmWatcher{stop: make(chan struct{}), done: make(chan struct{}), path: fmt.Sprintf("/proc/%d/status", pid)}
	go func() {
		defer close(w.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *hwmWatcher) sample() {
	b, err := os.ReadFile(w.path)
	if err != nil {
		return // gone
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			w.mu.Lock()
			w.peak = max(w.peak, kb<<10)
			w.mu.Unlock()
		}
	}
}

// now is the peak so far.
func (w *hwmWatcher) now() uint64 {
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

// finish stops sampling and returns the peak.
func (w *hwmWatcher) finish() uint64 {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}

// fetch runs one fresh server process of server over repo and one fresh
// fetching process of client, into out, and checks what it fetched
// against info.
func (e *dagEnv) fetch(server, client impl, repo string, info dagInfo, out output) (dagRun, error) {
	return e.fetchWith(server, client, repo, info, out, fetchOpts{})
}

// fetchOpts are what the quiet suite adds to a fetch.
type fetchOpts struct {
	// peers are more peers for the client to connect to, with the server
	// and all at once, before it fetches: our get has them as more --peer
	// flags, boxo's client connects to them before FetchGraph.
	peers []string
	// timeout bounds the fetch itself (0: e.timeout): get's --timeout,
	// boxo's FetchGraph call.
	timeout time.Duration
	// missing is a block of the DAG the server lacks (cid.Undef: none), of
	// missingBytes bytes: the fetch is expected to end at its timeout with
	// every other block and without this one, and that is no failure.
	missing      cid.Cid
	missingBytes int64
}

// fetchWith is fetch with the quiet suite's options.
func (e *dagEnv) fetchWith(server, client impl, repo string, info dagInfo, out output, o fetchOpts) (dagRun, error) {
	var r dagRun
	timeout := e.timeout
	if o.timeout > 0 {
		timeout = o.timeout
	}
	wantBlocks, wantBytes := info.blocks, info.bytes
	if o.missing.Defined() {
		wantBlocks, wantBytes = info.blocks-1, info.bytes-o.missingBytes
	}
	srv, err := e.startServer(server, repo, info.root, "")
	if err != nil {
		return r, err
	}
	defer func() {
		if srv != nil {
			_, _, _ = srv.stop()
		}
	}()
	var cmd *exec.Cmd
	var dest string
	switch out {
	case toFile:
		dest = e.fresh("out.car")
	case toRepo:
		dest = e.fresh("fresh-repo")
	}
	defer os.RemoveAll(dest) // never /dev/null: see below
	if client == ours {
		args := []string{"get", "--peer", srv.addr, "--timeout", timeout.String()}
		for _, p := range o.peers {
			args = append(args, "--peer", p)
		}
		switch out {
		case toFile:
			args = append(args, "-o", dest)
		case toRepo:
			args = append(args, "--repo", dest)
		}
		// toNull: the CAR goes to stdout, which exec points at
		// /dev/null. Not -o /dev/null: a failed get removes its -o file.
		cmd = exec.Command(e.bin, append(args, info.root.String())...)
		cmd.Env = append(os.Environ(), "GOBITSWAP_REPO="+filepath.Join(e.work, "unused-repo"))
	} else {
		spec := childSpec{Role: "dag-client", Impl: boxo, Addr: srv.addr, Root: info.root.String(), Timeout: e.timeout,
			Peers: o.peers, FetchTimeout: o.timeout, Partial: o.missing.Defined()}
		if o.timeout > e.timeout {
			spec.Timeout = o.timeout + time.Minute
		}
		switch out {
		case toFile:
			spec.Out = dest
		case toNull:
			spec.Out = os.DevNull
		case toRepo:
			spec.Dir = dest
		}
		if cmd, err = childCmd(spec); err != nil {
			return r, err
		}
	}
	var stdout bytes.Buffer
	stderr := &tailBuffer{}
	if client == boxo {
		cmd.Stdout = &stdout
	}
	cmd.Stderr = stderr
	start := time.Now()
	r.start = start
	if err := cmd.Start(); err != nil {
		return r, err
	}
	hwm := watchHWM(cmd.Process.Pid)
	guard := time.AfterFunc(max(e.timeout, timeout)+time.Minute, func() { _ = cmd.Process.Kill() })
	werr := cmd.Wait()
	r.wall = time.Since(start)
	guard.Stop()
	r.rss = hwm.finish()
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	r.cpu = ruCPU(ru)
	if ru != nil {
		r.written = ru.Oublock * 512
	}
	r.srvReady = srv.ready
	sru, speak, serr := srv.stop()
	srv = nil
	r.srvCPU, r.srvRSS = ruCPU(sru), speak
	if o.missing.Defined() && client == ours {
		// Our get fails at its timeout (exit 3), naming what it lacks:
		// here exactly the missing block. It prints no summary.
		var ee *exec.ExitError
		if !errors.As(werr, &ee) || ee.ExitCode() != 3 {
			return r, fmt.Errorf("ours client after %.1f s: %v, want exit status 3 at its timeout; stderr: %s", r.wall.Seconds(), werr, stderr)
		}
		if msg := stderr.String(); !strings.Contains(msg, "1 blocks missing") || !strings.Contains(msg, o.missing.String()) {
			return r, fmt.Errorf("ours client: its error does not name the one missing block %s: %s", o.missing, msg)
		}
		if serr != nil {
			return r, serr
		}
		r.blocks, r.bytes = wantBlocks, wantBytes // as far as it says
		return r, nil
	}
	if werr != nil {
		return r, fmt.Errorf("%s client after %.1f s: %w; stderr: %s", client, r.wall.Seconds(), werr, stderr)
	}
	if serr != nil {
		return r, serr
	}
	if client == ours {
		m := summaryRE.FindStringSubmatch(stderr.String())
		if m == nil {
			return r, fmt.Errorf("no summary line from bitswap get; stderr: %s", stderr)
		}
		r.blocks, _ = strconv.Atoi(m[2])
		r.bytes, _ = strconv.ParseInt(m[3], 10, 64)
		secs, _ := strconv.ParseFloat(m[4], 64)
		r.self = time.Duration(secs * float64(time.Second))
	} else {
		var res dagClientResult
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			return r, fmt.Errorf("boxo client output %q: %w; stderr: %s", stdout.String(), err, stderr)
		}
		r.blocks, r.bytes = res.Blocks, res.Bytes
		r.self = time.Duration(res.Seconds * float64(time.Second))
		if o.missing.Defined() && !strings.Contains(res.Error, context.DeadlineExceeded.Error()) {
			return r, fmt.Errorf("boxo client: FetchGraph ended with %q, want its timeout", res.Error)
		}
	}
	if r.blocks != wantBlocks || r.bytes != wantBytes {
		return r, fmt.Errorf("%s client fetched %d blocks (%d bytes), want %d (%d bytes)", client, r.blocks, r.bytes, wantBlocks, wantBytes)
	}
	if out == toFile {
		if st, err := os.Stat(dest); err != nil || st.Size() < wantBytes {
			return r, fmt.Errorf("%s client's CAR: %v, want at least %d bytes", client, err, wantBytes)
		}
	}
	return r, nil
}

// diskWrite writes size random bytes to a new file in dir in 4 MiB writes
// and fsyncs it, and returns the time up to the end of the fsync.
func diskWrite(dir string, size int64) (time.Duration, error) {
	buf := make([]byte, 4<<20)
	_, _ = rand.NewChaCha8([32]byte{25}).Read(buf)
	f, err := os.CreateTemp(dir, "disk-write-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	start := time.Now()
	for left := size; left > 0; {
		n, err := f.Write(buf[:min(int64(len(buf)), left)])
		if err != nil {
			return 0, err
		}
		left -= int64(n)
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// sample records one side of a pairing: its runs and its failures.
type sample struct {
	name  string
	logf  func(string, ...any)
	runs  []dagRun
	fails []string
}

func (s *sample) record(r dagRun, err error) {
	if err != nil {
		s.fails = append(s.fails, err.Error())
		s.logf("dag: %s run FAILED: %v", s.name, err)
		return
	}
	s.runs = append(s.runs, r)
}

// stat is the figure f of every run (failed runs leave a Text when no run
// succeeded).
func (s *sample) stat(f func(dagRun) float64) Stat {
	var st Stat
	for _, r := range s.runs {
		st.add(f(r))
	}
	if len(s.runs) == 0 && len(s.fails) > 0 {
		st.Text = "failed"
	}
	return st
}

func (s *sample) failNote(who string) string {
	if len(s.fails) == 0 {
		return ""
	}
	return fmt.Sprintf("; %s: %d of %d runs failed (first: %s)", who, len(s.fails), len(s.fails)+len(s.runs), oneLineErr(s.fails[0]))
}

func oneLineErr(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func medianOf(s Stat) float64 {
	s.finish()
	return s.Median
}

// secsNote is "median (min–max) s" of the runs' wall clocks.
func secsNote(s *sample, f func(dagRun) time.Duration) string {
	st := s.stat(func(r dagRun) float64 { return f(r).Seconds() })
	if !st.ok() {
		return "—"
	}
	st.finish()
	return fmt.Sprintf("%.2f s (%.2f–%.2f)", st.Median, st.Min, st.Max)
}

func runDAG(cfg Config) ([]Row, error) {
	scale, err := dagScale(cfg)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{"4k": true, "256k": true, "1m": true, "cbor": true, "disk": true}
	if v := os.Getenv(dagCasesEnv); v != "" {
		want = map[string]bool{}
		for _, k := range strings.Split(v, ",") {
			want[strings.TrimSpace(k)] = true
		}
	}
	e, err := newDAGEnv(cfg, "dag")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(e.work)
	work := e.work
	cfg.logf("dag: scale %g, %d repeats, work in %s", scale, cfg.Repeat, work)
	var rows []Row
	var failed []string
	for _, c := range dagCases(scale) {
		disk := c.key == "1m" && want["disk"]
		if !want[c.key] && !disk {
			continue
		}
		r, f, err := e.runCase(c, want[c.key], disk)
		rows = append(rows, r...)
		failed = append(failed, f...)
		if err != nil {
			return rows, fmt.Errorf("%s: %w", c.label, err)
		}
	}
	if len(failed) > 0 {
		return rows, fmt.Errorf("%d runs failed (see the rows' notes): first: %s", len(failed), oneLineErr(failed[0]))
	}
	return rows, nil
}

// runCase builds the DAG, imports it and runs the pairings (and the disk
// case); it returns the rows and the failed runs' errors.
func (e *dagEnv) runCase(c dagCase, pairings, disk bool) ([]Row, []string, error) {
	cfg := e.cfg
	carPath := filepath.Join(e.work, c.key+".car")
	t0 := time.Now()
	info, err := c.build(carPath)
	if err != nil {
		return nil, nil, fmt.Errorf("building the DAG: %w", err)
	}
	cfg.logf("dag: %s: %s blocks, %s of block data, root %s, built in %.1f s", c.label, countName(info.blocks), sizeName(info.bytes), info.root, time.Since(t0).Seconds())
	repo := filepath.Join(e.work, c.key+"-repo")
	t0 = time.Now()
	if err := e.importCAR(repo, info.root, carPath); err != nil {
		return nil, nil, err
	}
	os.Remove(carPath)
	cfg.logf("dag: %s: imported into %s in %.1f s", c.label, repo, time.Since(t0).Seconds())
	defer os.RemoveAll(repo)

	var rows []Row
	var failed []string
	mbpsOf := func(d func(dagRun) time.Duration) func(dagRun) float64 {
		return func(r dagRun) float64 { return float64(r.bytes) / 1e6 / d(r).Seconds() }
	}
	wall := func(r dagRun) time.Duration { return r.wall }
	self := func(r dagRun) time.Duration { return r.self }
	collect := func(ss ...*sample) {
		for _, s := range ss {
			failed = append(failed, s.fails...)
		}
	}
	what := fmt.Sprintf("%s blocks, %s", countName(info.blocks), sizeName(info.bytes))

	if pairings {
		// server→client
		oo, bb := sample{name: "ours→ours", logf: cfg.logf}, sample{name: "boxo→boxo", logf: cfg.logf}
		ob, bo := sample{name: "ours→boxo", logf: cfg.logf}, sample{name: "boxo→ours", logf: cfg.logf}
		var load Stat
		for rep := range cfg.Repeat {
			_ = interleave(rep,
				func() error { oo.record(e.fetch(ours, ours, repo, info, toFile)); return nil },
				func() error { bb.record(e.fetch(boxo, boxo, repo, info, toFile)); return nil },
				func() error { bo.record(e.fetch(boxo, ours, repo, info, toFile)); return nil },
				func() error { ob.record(e.fetch(ours, boxo, repo, info, toFile)); return nil },
			)
			load.add(loadAvg())
			cfg.logf("dag: %s repeat %d/%d: wall ours→ours %s, boxo→boxo %s, boxo→ours %s, ours→boxo %s; failures %d/%d/%d/%d; load %s",
				c.label, rep+1, cfg.Repeat, lastWall(&oo), lastWall(&bb), lastWall(&bo), lastWall(&ob),
				len(oo.fails), len(bb.fails), len(bo.fails), len(ob.fails), last(load))
		}
		collect(&oo, &bb, &ob, &bo)
		fails := oo.failNote("ours→ours") + bb.failNote("boxo→boxo")
		e2e := Row{Case: c.label + ": " + dE2E, Unit: "MB/s", HigherIsBetter: true,
			Ours: oo.stat(mbpsOf(wall)), Boxo: bb.stat(mbpsOf(wall))}
		e2e.Note = fmt.Sprintf("%s; wall ours %s, boxo %s", what, secsNote(&oo, wall), secsNote(&bb, wall))
		if c.target > 0 {
			e2e.Note += fmt.Sprintf("; target ours ≥ %.1f× boxo", c.target)
		}
		e2e.Note += loadNote(load) + fails
		selfRow := Row{Case: c.label + ": " + dSelf, Unit: "MB/s", HigherIsBetter: true,
			Ours: oo.stat(mbpsOf(self)), Boxo: bb.stat(mbpsOf(self))}
		selfRow.Note = fmt.Sprintf("ours: its summary line; boxo: FetchGraph; ours %s, boxo %s", secsNote(&oo, self), secsNote(&bb, self))
		cpu := Row{Case: c.label + ": " + dCPU, Unit: "CPU s",
			Ours: oo.stat(func(r dagRun) float64 { return r.cpu.Seconds() }), Boxo: bb.stat(func(r dagRun) float64 { return r.cpu.Seconds() })}
		cpu.Note = fmt.Sprintf("user+system; the server's: ours %.2f s, boxo %.2f s",
			medianOf(oo.stat(func(r dagRun) float64 { return r.srvCPU.Seconds() })), medianOf(bb.stat(func(r dagRun) float64 { return r.srvCPU.Seconds() })))
		rss := Row{Case: c.label + ": " + dRSS, Unit: "MiB",
			Ours: oo.stat(func(r dagRun) float64 { return mib(r.rss) }), Boxo: bb.stat(func(r dagRun) float64 { return mib(r.rss) })}
		rss.Note = fmt.Sprintf("VmHWM every 10 ms; the server's when ready (a started node, its repo open): ours %.0f MiB, boxo's %.0f MiB; its peak: ours %.0f MiB, boxo %.0f MiB",
			medianOf(oo.stat(func(r dagRun) float64 { return mib(r.srvReady) })), medianOf(bb.stat(func(r dagRun) float64 { return mib(r.srvReady) })),
			medianOf(oo.stat(func(r dagRun) float64 { return mib(r.srvRSS) })), medianOf(bb.stat(func(r dagRun) float64 { return mib(r.srvRSS) })))
		cross := Row{Case: c.label + ": " + dCross, Unit: "MB/s", HigherIsBetter: true,
			Ours: bo.stat(mbpsOf(wall)), Boxo: ob.stat(mbpsOf(wall))}
		cross.Note = fmt.Sprintf("ours column: our get from boxo's server, %s; boxo column: boxo's client from our serve, %s",
			secsNote(&bo, wall), secsNote(&ob, wall)) + bo.failNote("our get from boxo") + ob.failNote("boxo from our serve")
		rows = append(rows, e2e, selfRow, cpu, rss, cross)
	}

	if disk {
		repoO, repoB := sample{name: "ours → repo", logf: cfg.logf}, sample{name: "boxo → repo", logf: cfg.logf}
		nullO, nullB := sample{name: "ours → /dev/null", logf: cfg.logf}, sample{name: "boxo → /dev/null", logf: cfg.logf}
		var dw, load Stat
		var dwFails []string
		for rep := range cfg.Repeat {
			_ = interleave(rep,
				func() error { repoO.record(e.fetch(ours, ours, repo, info, toRepo)); return nil },
				func() error { repoB.record(e.fetch(boxo, boxo, repo, info, toRepo)); return nil },
				func() error { nullO.record(e.fetch(ours, ours, repo, info, toNull)); return nil },
				func() error { nullB.record(e.fetch(boxo, boxo, repo, info, toNull)); return nil },
				func() error {
					d, err := diskWrite(e.work, info.bytes)
					if err != nil {
						dwFails = append(dwFails, err.Error())
					} else {
						dw.add(float64(info.bytes) / 1e6 / d.Seconds())
					}
					return nil
				},
			)
			load.add(loadAvg())
			cfg.logf("dag: disk, %s repeat %d/%d: wall into a repo ours %s, boxo %s; to /dev/null ours %s, boxo %s; disk write %s MB/s; load %s",
				c.label, rep+1, cfg.Repeat, lastWall(&repoO), lastWall(&repoB), lastWall(&nullO), lastWall(&nullB), last(dw), last(load))
		}
		collect(&repoO, &repoB, &nullO, &nullB)
		failed = append(failed, dwFails...)
		label := "disk, " + c.label
		repoRow := Row{Case: label + ": " + dRepo, Unit: "MB/s", HigherIsBetter: true,
			Ours: repoO.stat(mbpsOf(wall)), Boxo: repoB.stat(mbpsOf(wall))}
		nullRow := Row{Case: label + ": " + dNull, Unit: "MB/s", HigherIsBetter: true,
			Ours: nullO.stat(mbpsOf(wall)), Boxo: nullB.stat(mbpsOf(wall))}
		memRow := Row{Case: label + ": " + dRepoM, Unit: "MiB",
			Ours: repoO.stat(func(r dagRun) float64 { return mib(r.rss) }), Boxo: repoB.stat(func(r dagRun) float64 { return mib(r.rss) })}
		dwRow := Row{Case: fmt.Sprintf("ceiling: disk sequential write of %s, 4 MiB writes, fsync at the end", sizeName(info.bytes)), Unit: "MB/s", HigherIsBetter: true, Ours: dw}
		if len(dwFails) > 0 {
			dwRow.Note = fmt.Sprintf("%d runs failed: %s", len(dwFails), oneLineErr(dwFails[0]))
			if len(dw.Samples) == 0 {
				dwRow.Ours.Text = "failed"
			}
		}
		pct := func(a, b Stat) string {
			ma, mb := medianOf(a), medianOf(b)
			if !a.ok() || !b.ok() || mb == 0 {
				return "—"
			}
			return fmt.Sprintf("%.0f %%", 100*ma/mb)
		}
		repoRow.Note = fmt.Sprintf("ours: get --repo; boxo: blockservice → boxo blockstore (as Kubo wraps it) over the same kind of repo; of the /dev/null figure: ours %s, boxo %s; of the disk write: ours %s, boxo %s; wall ours %s, boxo %s; as reported: ours %s, boxo %s",
			pct(repoRow.Ours, nullRow.Ours), pct(repoRow.Boxo, nullRow.Boxo), pct(repoRow.Ours, dw), pct(repoRow.Boxo, dw),
			secsNote(&repoO, wall), secsNote(&repoB, wall), secsNote(&repoO, self), secsNote(&repoB, self)) +
			loadNote(load) + repoO.failNote("ours") + repoB.failNote("boxo")
		amp := func(s *sample) string {
			st := s.stat(func(r dagRun) float64 { return float64(r.written) / float64(info.bytes) })
			if !st.ok() {
				return "—"
			}
			return fmt.Sprintf("%.1f×", medianOf(st))
		}
		repoRow.Note += fmt.Sprintf("; written to the filesystem (rusage oublock) over the block bytes: ours %s, boxo %s", amp(&repoO), amp(&repoB))
		nullRow.Note = fmt.Sprintf("CAR to the process's stdout, pointed at /dev/null; wall ours %s, boxo %s", secsNote(&nullO, wall), secsNote(&nullB, wall)) +
			nullO.failNote("ours") + nullB.failNote("boxo")
		memRow.Note = "VmHWM of the fetching process every 10 ms, the repo's memtables included"
		rows = append(rows, repoRow, nullRow, memRow, dwRow)
	}
	return rows, failed, nil
}

// loadAvg is the 1-minute load average (0 where /proc is missing).
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b) + " 0")[0], 64)
	return f
}

// loadNote is the range of the load averages seen, for a note.
func loadNote(l Stat) string {
	if len(l.Samples) == 0 {
		return ""
	}
	l.finish()
	return fmt.Sprintf("; 1-min load average at each repeat's end %.1f–%.1f on %d cores", l.Min, l.Max, runtime.NumCPU())
}

func lastWall(s *sample) string {
	if len(s.runs) == 0 {
		if len(s.fails) > 0 {
			return "failed"
		}
		return "—"
	}
	return fmt.Sprintf("%.2f s", s.runs[len(s.runs)-1].wall.Seconds())
}

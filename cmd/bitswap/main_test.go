package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	car "github.com/ipld/go-car/v2"

	"github.com/gobitswap/bitswap/testutil"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "bitswap-cmd-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "bitswap")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testDAG is a DAG in every codec the walk reads: a dag-cbor root linking
// a dag-json block, a raw block and a file DAG (dag-pb over raw leaves);
// the dag-json block links the file DAG's root too (a shared link).
type testDAG struct {
	root   cid.Cid
	blocks []blocks.Block
}

func makeTestDAG(t *testing.T, fileSize int) testDAG {
	t.Helper()
	root, blks, err := testutil.MixedDAG(int64(fileSize), fileSize)
	if err != nil {
		t.Fatal(err)
	}
	return testDAG{root: root, blocks: blks}
}

func writeCAR(t *testing.T, path string, d testDAG, v2 bool) {
	t.Helper()
	v1 := path
	if v2 {
		v1 = path + ".v1"
	}
	f, err := os.Create(v1)
	if err != nil {
		t.Fatal(err)
	}
	w, err := newCARWriter(f, d.root)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range d.blocks {
		if err := w.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if v2 {
		if err := car.WrapV1File(v1, path); err != nil {
			t.Fatal(err)
		}
		os.Remove(v1)
	}
}

// readCAR returns a CAR's roots and its blocks' CIDs, sorted.
func readCAR(t *testing.T, r io.Reader) (roots []cid.Cid, keys []string) {
	t.Helper()
	br, err := car.NewBlockReader(r, car.WithTrustedCAR(false))
	if err != nil {
		t.Fatal(err)
	}
	if br.Version != 1 {
		t.Fatalf("CAR version %d, want 1", br.Version)
	}
	for {
		b, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, b.Cid().String())
	}
	slices.Sort(keys)
	return br.Roots, keys
}

func sortedKeys(bs []blocks.Block) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Cid().String())
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// syncBuffer is a bytes.Buffer safe to read while a process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func (s *syncBuffer) String() string { return string(s.Bytes()) }

type serveProc struct {
	cmd    *exec.Cmd
	addrs  []string
	roots  []string
	http   string // the "http: <url>" line of serve --http
	stderr *syncBuffer
	lines  chan string
	// announced gets the "announced: ..." lines of serve --dht.
	announced chan string
}

// startServe runs "bitswap serve args..." and waits for its listening line
// and wantRoots root lines.
func startServe(t *testing.T, wantRoots int, args ...string) *serveProc {
	t.Helper()
	p := &serveProc{cmd: exec.Command(binary, append([]string{"serve"}, args...)...), stderr: &syncBuffer{}, lines: make(chan string, 100), announced: make(chan string, 10)}
	p.cmd.Stderr = p.stderr
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "announced: ") {
				p.announced <- l
			} else {
				p.lines <- l
			}
		}
		close(p.lines)
	}()
	wantHTTP := slices.Contains(args, "--http")
	timeout := time.After(20 * time.Second)
	for len(p.addrs) == 0 || len(p.roots) < wantRoots || (wantHTTP && p.http == "") {
		select {
		case l, ok := <-p.lines:
			if !ok {
				_ = p.cmd.Wait()
				t.Fatalf("serve exited: %v; stderr: %s", p.cmd.ProcessState, p.stderr)
			}
			switch {
			case strings.HasPrefix(l, "listening: "):
				p.addrs = append(p.addrs, strings.TrimPrefix(l, "listening: "))
			case strings.HasPrefix(l, "root: "):
				p.roots = append(p.roots, strings.TrimPrefix(l, "root: "))
			case strings.HasPrefix(l, "http: ") && p.http == "":
				p.http = strings.TrimPrefix(l, "http: ")
			default:
				t.Fatalf("unexpected stdout line %q", l)
			}
		case <-timeout:
			t.Fatalf("serve printed %d addrs, %d roots in 20 s; stderr: %s", len(p.addrs), len(p.roots), p.stderr)
		}
	}
	return p
}

// stop sends SIGINT and expects a clean exit 0.
func (p *serveProc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve after SIGINT: %v; stderr: %s", err, p.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("serve did not stop within 10 s of SIGINT")
	}
}

type result struct {
	code           int
	stdout, stderr []byte
	took           time.Duration
}

func runBin(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	start := time.Now()
	err := cmd.Run()
	r := result{stdout: so.Bytes(), stderr: se.Bytes(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("running %v: %v", args, err)
	}
	return r
}

var listenRE = regexp.MustCompile(`^/ip4/127\.0\.0\.1/tcp/\d+/p2p/12D3Koo\w+$`)

func TestServeGetRoundTrip(t *testing.T) {
	dir := t.TempDir()
	a, b := makeTestDAG(t, 300<<10), makeTestDAG(t, 100<<10)
	carA, carB := filepath.Join(dir, "a.car"), filepath.Join(dir, "b.car")
	writeCAR(t, carA, a, false) // CARv1
	writeCAR(t, carB, b, true)  // CARv2
	repoDir := filepath.Join(dir, "repo")

	srv := startServe(t, 2, "--repo", repoDir, carA, carB)
	if len(srv.addrs) != 1 || !listenRE.MatchString(srv.addrs[0]) {
		t.Fatalf("listening lines %q", srv.addrs)
	}
	if want := []string{a.root.String(), b.root.String()}; !slices.Equal(srv.roots, want) {
		t.Fatalf("roots %q, want %q", srv.roots, want)
	}

	// get to a file.
	out := filepath.Join(dir, "out.car")
	r := runBin(t, "get", "--peer", srv.addrs[0], a.root.String(), "-o", out)
	if r.code != 0 {
		t.Fatalf("get: exit %d: %s", r.code, r.stderr)
	}
	if len(r.stdout) != 0 {
		t.Fatalf("get -o wrote %d bytes to stdout", len(r.stdout))
	}
	if !regexp.MustCompile(`^fetched \S+: \d+ blocks, \d+ bytes in [\d.]+ s \([\d.]+ MB/s\), 0 duplicate blocks, 1 peers\n$`).Match(r.stderr) {
		t.Fatalf("summary %q", r.stderr)
	}
	t.Logf("get a: %s", bytes.TrimSpace(r.stderr))
	f, _ := os.Open(out)
	roots, keys := readCAR(t, f)
	f.Close()
	if len(roots) != 1 || roots[0] != a.root || !slices.Equal(keys, sortedKeys(a.blocks)) {
		t.Fatalf("CAR of a: roots %v, %d blocks; want %v, %d blocks", roots, len(keys), a.root, len(sortedKeys(a.blocks)))
	}

	// get to stdout, flags after the CID.
	r = runBin(t, "get", b.root.String(), "--peer", srv.addrs[0])
	if r.code != 0 {
		t.Fatalf("get: exit %d: %s", r.code, r.stderr)
	}
	roots, keys = readCAR(t, bytes.NewReader(r.stdout))
	if len(roots) != 1 || roots[0] != b.root || !slices.Equal(keys, sortedKeys(b.blocks)) {
		t.Fatalf("CAR of b: roots %v, %d blocks; want %v, %d blocks", roots, len(keys), b.root, len(sortedKeys(b.blocks)))
	}
	srv.stop(t)

	// The repo persists: serve again without CAR files, with metrics.
	srv = startServe(t, 2, "--repo", repoDir, "--metrics", "127.0.0.1:0")
	if want := []string{a.root.String(), b.root.String()}; !slices.Equal(slices.Sorted(slices.Values(srv.roots)), slices.Sorted(slices.Values(want))) {
		t.Fatalf("roots from the repo %q, want %q", srv.roots, want)
	}
	r = runBin(t, "get", "--peer", srv.addrs[0], a.root.String(), "-o", out)
	if r.code != 0 {
		t.Fatalf("get from restarted serve: exit %d: %s", r.code, r.stderr)
	}
	m := regexp.MustCompile(`metrics: (http://\S+)`).FindSubmatch(srv.stderr.Bytes())
	if m == nil {
		t.Fatalf("no metrics line in %q", srv.stderr)
	}
	resp, err := http.Get(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sent := regexp.MustCompile(`(?m)^bitswap_blocks_sent_total (\d+)`).FindSubmatch(body)
	if sent == nil {
		t.Fatalf("no bitswap_blocks_sent_total in metrics:\n%s", body)
	}
	if n, _ := strconv.Atoi(string(sent[1])); n != len(sortedKeys(a.blocks)) {
		t.Fatalf("bitswap_blocks_sent_total %d, want %d", n, len(sortedKeys(a.blocks)))
	}
	for _, name := range []string{"bitswap_peers", "bitswap_sessions", "bitswap_wantlist_size", "bitswap_messages_received_total", "bitswap_duplicate_blocks_received_total"} {
		if !bytes.Contains(body, []byte("\n"+name+" ")) {
			t.Errorf("metric %s missing", name)
		}
	}
	// The library's histograms moved as the server served: boxo's name for
	// its messages' sizes, ours for every message received.
	for _, name := range []string{`bitswap_sent_all_blocks_bytes_count`, `bitswap_send_times_count`, `bitswap_message_size_bytes_count{direction="received"}`} {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\d+)`).FindSubmatch(body)
		if m == nil {
			t.Errorf("no %s in metrics", name)
		} else if n, _ := strconv.Atoi(string(m[1])); n == 0 {
			t.Errorf("%s is 0 after serving a DAG", name)
		}
	}
	srv.stop(t)
}

// get traces its fetch to a file when OTEL_TRACES_EXPORTER says so, with
// boxo's span names; an exporter it cannot build is a usage error.
func TestGetTracesToFile(t *testing.T) {
	dir := t.TempDir()
	d := makeTestDAG(t, 64<<10)
	carPath := filepath.Join(dir, "d.car")
	writeCAR(t, carPath, d, false)
	srv := startServe(t, 1, carPath)

	traces := filepath.Join(dir, "traces.json")
	t.Setenv("OTEL_TRACES_EXPORTER", "file")
	t.Setenv("OTEL_EXPORTER_FILE_PATH", traces)
	r := runBin(t, "get", "--peer", srv.addrs[0], d.root.String(), "-o", filepath.Join(dir, "out.car"))
	if r.code != 0 {
		t.Fatalf("get: exit %d: %s", r.code, r.stderr)
	}
	body, err := os.ReadFile(traces)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"Bitswap.Client.NewSession", "Bitswap.Client.Session", "Bitswap.Client.Session.GetBlocks", "Bitswap.Client.Getter.handleIncoming", "received block", "gobitswap"} {
		if !bytes.Contains(body, []byte(`"`+name+`"`)) {
			t.Errorf("no %q in the traces file", name)
		}
	}

	t.Setenv("OTEL_TRACES_EXPORTER", "zipkin")
	r = runBin(t, "get", "--peer", srv.addrs[0], d.root.String(), "-o", filepath.Join(dir, "out2.car"))
	if r.code != exitUsage || !bytes.Contains(r.stderr, []byte("OTEL_TRACES_EXPORTER")) {
		t.Fatalf("get with OTEL_TRACES_EXPORTER=zipkin: exit %d, %q; want %d naming the variable", r.code, r.stderr, exitUsage)
	}
	srv.stop(t)
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	d := makeTestDAG(t, 64<<10)
	good := filepath.Join(dir, "good.car")
	writeCAR(t, good, d, false)
	raw, _ := os.ReadFile(good)
	truncated := filepath.Join(dir, "truncated.car")
	_ = os.WriteFile(truncated, raw[:len(raw)-100], 0o644)
	notCAR := filepath.Join(dir, "not.car")
	_ = os.WriteFile(notCAR, []byte("hello, this is not a CAR file\n"), 0o644)
	repo := filepath.Join(dir, "repo")
	// A peer that exists nowhere: nothing listens on port 1.
	nobody := "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGRUVh8BMGqWqXW2TGVc5sa2CnApZAPYsmXFvVX1ThHiT"

	srv := startServe(t, 1, "--repo", filepath.Join(dir, "srvrepo"), good)
	missing := "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy" // sha256 of "hello world"

	cases := []struct {
		name string
		args []string
		code int
		want string // in the one line on stderr
	}{
		// One repo each: the cases run in parallel, and a repo is locked
		// by the process that has it open.
		{"non-CAR file", []string{"serve", "--repo", repo + "1", notCAR}, exitInput, "not a CAR file"},
		{"truncated CAR", []string{"serve", "--repo", repo + "2", truncated}, exitInput, "truncated CAR"},
		{"missing file", []string{"serve", "--repo", repo + "3", filepath.Join(dir, "nope.car")}, exitInput, "no such file"},
		{"repo in use", []string{"serve", "--repo", filepath.Join(dir, "srvrepo"), good}, exitInput, "in use by another process"},
		// Tests run as root, which no permission bit stops: a repo under a
		// regular file cannot be created by anyone.
		{"repo not creatable", []string{"serve", "--repo", filepath.Join(good, "repo"), good}, exitInput, "not a directory"},
		{"malformed CID", []string{"get", "--peer", srv.addrs[0], "not-a-cid"}, exitInput, "malformed CID"},
		{"bad multiaddr", []string{"get", "--peer", "/ip4/127.0.0.1/tcp/x", d.root.String()}, exitInput, "bad --peer"},
		{"unreachable peer", []string{"get", "--peer", nobody, "--dial-timeout", "2s", d.root.String()}, exitNetwork, "cannot reach peer"},
		{"missing block", []string{"get", "--peer", srv.addrs[0], "--timeout", "1s", missing}, exitNetwork, "1 blocks missing (timed out after 1s): " + missing},
		{"unknown flag", []string{"get", "--nope", d.root.String()}, exitUsage, "flag provided but not defined"},
		{"no peer", []string{"get", d.root.String()}, exitUsage, "--peer"},
		{"unknown command", []string{"fetch"}, exitUsage, "unknown command"},
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		_ = os.Mkdir(ro, 0o500)
		cases = append(cases, struct {
			name string
			args []string
			code int
			want string
		}{"repo without permission", []string{"serve", "--repo", filepath.Join(ro, "repo"), good}, exitInput, "permission denied"})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := runBin(t, c.args...)
			lines := strings.Split(strings.TrimRight(string(r.stderr), "\n"), "\n")
			if r.code != c.code || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and one line containing %q", r.code, r.stderr, c.code, c.want)
			}
			if len(r.stdout) != 0 {
				t.Fatalf("stdout %q", r.stdout)
			}
			t.Logf("exit %d: %s", r.code, lines[0])
		})
	}
}

func TestDemo(t *testing.T) {
	r := runBin(t, "demo")
	if r.code != 0 {
		t.Fatalf("demo: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if !bytes.Contains(r.stdout, []byte("ok: 2 nodes fetched and verified 16777216 bytes each")) {
		t.Fatalf("demo output:\n%s", r.stdout)
	}
	t.Logf("demo in %v:\n%s", r.took, r.stdout)
	if r.took > 20*time.Second {
		t.Fatalf("demo took %v", r.took)
	}
}

// get --repo keeps what it fetched when the fetch cannot finish, and a
// second run fetches only what is still missing.
func TestGetRepoResumes(t *testing.T) {
	dir := t.TempDir()
	d := makeTestDAG(t, 512<<10) // 32 leaves of 16 KiB
	// The first server lacks every other leaf of the file.
	var partial testDAG
	partial.root = d.root
	missing := 0
	for i, b := range d.blocks {
		if b.Cid().Prefix().Codec == cid.Raw && b.RawData() != nil && len(b.RawData()) == 16<<10 && i%2 == 0 {
			missing++
			continue
		}
		partial.blocks = append(partial.blocks, b)
	}
	if missing == 0 {
		t.Fatal("test DAG has no leaves to leave out")
	}
	carPartial, carFull := filepath.Join(dir, "partial.car"), filepath.Join(dir, "full.car")
	writeCAR(t, carPartial, partial, false)
	writeCAR(t, carFull, d, false)
	getRepo := filepath.Join(dir, "getrepo")

	srv := startServe(t, 1, "--repo", filepath.Join(dir, "srv1"), carPartial)
	r := runBin(t, "get", "--peer", srv.addrs[0], "--repo", getRepo, "--timeout", "2s", d.root.String())
	srv.stop(t)
	if r.code != exitNetwork {
		t.Fatalf("get from the partial server: exit %d, want %d: %s", r.code, exitNetwork, r.stderr)
	}
	if !bytes.Contains(r.stderr, []byte(fmt.Sprintf("%d blocks missing", missing))) {
		t.Fatalf("get from the partial server does not name %d missing blocks: %s", missing, r.stderr)
	}
	if len(r.stdout) != 0 {
		t.Fatalf("get --repo wrote %d bytes to stdout", len(r.stdout))
	}
	first := regexp.MustCompile(`repo \S+: (\d+) blocks were there already, (\d+) fetched`).FindSubmatch(r.stderr)
	if first == nil || string(first[1]) != "0" {
		t.Fatalf("first run's repo line: %q", r.stderr)
	}
	t.Logf("first run: %s", bytes.TrimSpace(r.stderr))

	srv = startServe(t, 1, "--repo", filepath.Join(dir, "srv2"), carFull)
	defer srv.stop(t)
	out := filepath.Join(dir, "out.car")
	r = runBin(t, "get", "--peer", srv.addrs[0], "--repo", getRepo, "-o", out, d.root.String())
	if r.code != 0 {
		t.Fatalf("second get: exit %d: %s", r.code, r.stderr)
	}
	second := regexp.MustCompile(`repo \S+: (\d+) blocks were there already, (\d+) fetched`).FindSubmatch(r.stderr)
	if second == nil || string(second[1]) != string(first[2]) || string(second[2]) != strconv.Itoa(missing) {
		t.Fatalf("second run's repo line %q: want %s there already (what the first fetched) and %d fetched", r.stderr, first[2], missing)
	}
	t.Logf("second run: %s", bytes.TrimSpace(r.stderr))
	f, _ := os.Open(out)
	roots, keys := readCAR(t, f)
	f.Close()
	if len(roots) != 1 || roots[0] != d.root || !slices.Equal(keys, sortedKeys(d.blocks)) {
		t.Fatalf("CAR after resuming: %d blocks, want %d", len(keys), len(sortedKeys(d.blocks)))
	}
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	dagpb "github.com/ipld/go-codec-dagpb"
	"github.com/ipld/go-ipld-prime/codec/dagcbor"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	mh "github.com/multiformats/go-multihash"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/testutil"
)

// fileDAG builds a UnixFS file DAG (raw leaves under dag-pb nodes) over
// data.
func fileDAG(t *testing.T, data []byte, leafSize, fanout int) testDAG {
	t.Helper()
	f, err := testutil.BuildFileDAG(bytes.NewReader(data), leafSize, fanout)
	if err != nil {
		t.Fatal(err)
	}
	return testDAG{root: f.Root, blocks: f.Blocks}
}

func randomBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	_, _ = mrand.New(mrand.NewSource(seed)).Read(b)
	return b
}

func block(t *testing.T, codec uint64, data []byte) blocks.Block {
	t.Helper()
	c, err := cid.Prefix{Version: 1, Codec: codec, MhType: mh.SHA2_256, MhLength: -1}.Sum(data)
	if err != nil {
		t.Fatal(err)
	}
	b, err := blocks.NewBlockWithCid(data, c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dirNode is a UnixFS directory (dag-pb, Data Type 1) with one entry.
func dirNode(t *testing.T, name string, child cid.Cid) blocks.Block {
	t.Helper()
	n, err := qp.BuildMap(dagpb.Type.PBNode, 2, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "Links", qp.List(1, func(la datamodel.ListAssembler) {
			qp.ListEntry(la, qp.Map(3, func(ma datamodel.MapAssembler) {
				qp.MapEntry(ma, "Hash", qp.Link(cidlink.Link{Cid: child}))
				qp.MapEntry(ma, "Name", qp.String(name))
				qp.MapEntry(ma, "Tsize", qp.Int(100))
			}))
		}))
		qp.MapEntry(ma, "Data", qp.Bytes([]byte{0x08, 0x01})) // Type: Directory
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := dagpb.Encode(n, &buf); err != nil {
		t.Fatal(err)
	}
	return block(t, cid.DagProtobuf, buf.Bytes())
}

// v0FileDAG is a UnixFS file as ipfs add made them before raw leaves: CIDv0
// dag-pb nodes throughout, the leaves holding the data in their UnixFS
// Data, one root over them.
func v0FileDAG(t *testing.T, data []byte, leafSize int) testDAG {
	t.Helper()
	ufs := func(data []byte, fileSize int, blockSizes []int) []byte {
		var b []byte
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, 2) // File
		if data != nil {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendBytes(b, data)
		}
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(fileSize))
		for _, s := range blockSizes {
			b = protowire.AppendTag(b, 4, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(s))
		}
		return b
	}
	node := func(d []byte, links []blocks.Block, sizes []int) blocks.Block {
		n, err := qp.BuildMap(dagpb.Type.PBNode, 2, func(ma datamodel.MapAssembler) {
			qp.MapEntry(ma, "Links", qp.List(int64(len(links)), func(la datamodel.ListAssembler) {
				for _, l := range links {
					qp.ListEntry(la, qp.Map(3, func(ma datamodel.MapAssembler) {
						qp.MapEntry(ma, "Hash", qp.Link(cidlink.Link{Cid: l.Cid()}))
						qp.MapEntry(ma, "Name", qp.String(""))
						qp.MapEntry(ma, "Tsize", qp.Int(int64(len(l.RawData()))))
					}))
				}
			}))
			qp.MapEntry(ma, "Data", qp.Bytes(d))
		})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := dagpb.Encode(n, &buf); err != nil {
			t.Fatal(err)
		}
		c, err := cid.Prefix{Version: 0, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}.Sum(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := blocks.NewBlockWithCid(buf.Bytes(), c)
		return b
	}
	var leaves []blocks.Block
	var sizes []int
	for i := 0; i < len(data); i += leafSize {
		chunk := data[i:min(i+leafSize, len(data))]
		leaves = append(leaves, node(ufs(chunk, len(chunk), nil), nil, nil))
		sizes = append(sizes, len(chunk))
	}
	root := node(ufs(nil, len(data), sizes), leaves, sizes)
	return testDAG{root: root.Cid(), blocks: append([]blocks.Block{root}, leaves...)}
}

// cborLinking is a dag-cbor block linking to c.
func cborLinking(t *testing.T, c cid.Cid) blocks.Block {
	t.Helper()
	n, err := qp.BuildMap(basicnode.Prototype.Any, 1, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "next", qp.Link(cidlink.Link{Cid: c}))
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := dagcbor.Encode(n, &buf); err != nil {
		t.Fatal(err)
	}
	return block(t, cid.DagCBOR, buf.Bytes())
}

// oneLineErr checks that stderr's last line is the error, with the code,
// and that nothing else but allowed lines precede it.
func oneLineErr(t *testing.T, r result, code int, want string, before ...*regexp.Regexp) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(string(r.stderr), "\n"), "\n")
	last := lines[len(lines)-1]
	if r.code != code || len(lines) != 1+len(before) || !strings.HasPrefix(last, "bitswap get: ") || !strings.Contains(last, want) {
		t.Fatalf("exit %d, stderr %q; want exit %d and %d line(s), the last containing %q", r.code, r.stderr, code, 1+len(before), want)
	}
	for i, re := range before {
		if !re.MatchString(lines[i]) {
			t.Fatalf("stderr line %d %q does not match %v", i+1, lines[i], re)
		}
	}
	return last
}

var repoLineRE = regexp.MustCompile(`^repo \S+: (\d+) blocks were there already, (\d+) fetched$`)

var (
	metricsLineRE = regexp.MustCompile(`^metrics: (http://\S+)$`)
	metricsURLRE  = regexp.MustCompile(`metrics: (http://\S+)`) // anywhere in stderr
)

// waitMetric waits until the process whose stderr is se serves metrics (its
// --metrics line) with name at least want, for at most 30 s.
func waitMetric(t *testing.T, se *syncBuffer, name string, want int) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\d+)`)
	deadline := time.Now().Add(30 * time.Second)
	got := -1
	for time.Now().Before(deadline) {
		if m := metricsURLRE.FindSubmatch(se.Bytes()); m != nil {
			if resp, err := http.Get(string(m[1])); err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if v := re.FindSubmatch(body); v != nil {
					if got, _ = strconv.Atoi(string(v[1])); got >= want {
						return
					}
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s still %d after 30 s, want %d; stderr: %s", name, got, want, se)
}

// --unixfs-out writes the file's bytes, in order, whatever the DAG's shape:
// many levels, repeated leaves (fetched once, written four times), a
// single raw block; alone, with -o (the CAR too), with --repo, to stdout.
func TestGetUnixFSOut(t *testing.T) {
	dir := t.TempDir()
	random := randomBytes(1, 300<<10+123) // 20 leaves of 16 KiB and a short one, 3 levels of fanout 4
	zeros := make([]byte, 64<<10)         // 4 leaves, one block
	small := []byte("a file of one raw block\n")
	files := []struct {
		name string
		data []byte
		dag  testDAG
	}{
		{"random", random, fileDAG(t, random, 16<<10, 4)},
		{"zeros", zeros, fileDAG(t, zeros, 16<<10, 174)},
		{"raw", small, fileDAG(t, small, 1<<20, 174)},
		{"v0", random[:100<<10], v0FileDAG(t, random[:100<<10], 16<<10)},
	}
	var cars []string
	for _, f := range files {
		p := filepath.Join(dir, f.name+".car")
		writeCAR(t, p, f.dag, false)
		cars = append(cars, p)
	}
	if files[2].dag.root.Prefix().Codec != cid.Raw || len(sortedKeys(files[1].dag.blocks)) != 2 {
		t.Fatalf("test DAGs are not what the test means: %v, %d blocks of zeros", files[2].dag.root, len(sortedKeys(files[1].dag.blocks)))
	}
	srv := startServe(t, len(files), append([]string{"--repo", filepath.Join(dir, "srv")}, cars...)...)
	defer srv.stop(t)

	summaryRE := regexp.MustCompile(`^fetched \S+: \d+ blocks, \d+ bytes in [\d.]+ s \([\d.]+ MB/s\), \d+ duplicate blocks, 1 peers; wrote the (\d+)-byte file to (\S+)$`)
	for _, f := range files {
		t.Run(f.name, func(t *testing.T) {
			out := filepath.Join(dir, f.name+".out")
			r := runBin(t, "get", "--peer", srv.addrs[0], "--unixfs-out", out, f.dag.root.String())
			if r.code != 0 {
				t.Fatalf("get --unixfs-out: exit %d: %s", r.code, r.stderr)
			}
			if len(r.stdout) != 0 {
				t.Fatalf("get --unixfs-out wrote %d bytes to stdout", len(r.stdout))
			}
			m := summaryRE.FindSubmatch(bytes.TrimSuffix(r.stderr, []byte("\n")))
			if m == nil || string(m[1]) != strconv.Itoa(len(f.data)) || string(m[2]) != out {
				t.Fatalf("summary %q", r.stderr)
			}
			t.Logf("%s", bytes.TrimSpace(r.stderr))
			got, err := os.ReadFile(out)
			if err != nil || !bytes.Equal(got, f.data) {
				t.Fatalf("file: %d bytes, want %d, equal %v (%v)", len(got), len(f.data), bytes.Equal(got, f.data), err)
			}
			// The temporary repo next to the file is gone.
			left, _ := filepath.Glob(filepath.Join(dir, ".bitswap-get-*"))
			if len(left) != 0 {
				t.Fatalf("temporary repo left behind: %v", left)
			}
		})
	}

	// With -o and --repo: the CAR, the file, and the repo keeps the DAG.
	f := files[0]
	out, carOut, repoDir := filepath.Join(dir, "both.out"), filepath.Join(dir, "both.car"), filepath.Join(dir, "getrepo")
	r := runBin(t, "get", "--peer", srv.addrs[0], "--unixfs-out", out, "-o", carOut, "--repo", repoDir, f.dag.root.String())
	if r.code != 0 {
		t.Fatalf("get --unixfs-out -o --repo: exit %d: %s", r.code, r.stderr)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, f.data) {
		t.Fatalf("file with -o and --repo: %d bytes, want %d", len(got), len(f.data))
	}
	cf, _ := os.Open(carOut)
	roots, keys := readCAR(t, cf)
	cf.Close()
	if len(roots) != 1 || roots[0] != f.dag.root || strings.Join(keys, ",") != strings.Join(sortedKeys(f.dag.blocks), ",") {
		t.Fatalf("CAR beside the file: roots %v, %d blocks, want %d", roots, len(keys), len(sortedKeys(f.dag.blocks)))
	}
	// Again from the repo alone, to stdout: nothing fetched.
	r = runBin(t, "get", "--peer", srv.addrs[0], "--unixfs-out", "-", "--repo", repoDir, f.dag.root.String())
	if r.code != 0 || !bytes.Equal(r.stdout, f.data) {
		t.Fatalf("get --unixfs-out - --repo: exit %d, %d bytes on stdout (want %d): %s", r.code, len(r.stdout), len(f.data), r.stderr)
	}
	m := regexp.MustCompile(`(?m)^repo \S+: (\d+) blocks were there already, 0 fetched$`).FindSubmatch(r.stderr)
	if m == nil || string(m[1]) != strconv.Itoa(len(sortedKeys(f.dag.blocks))) {
		t.Fatalf("second get from the repo: %s", r.stderr)
	}
}

// Errors of get are one line each, naming the CID or path, with their
// exit code; what a failed get stored in its repo stays there.
func TestGetErrors(t *testing.T) {
	dir := t.TempDir()
	file := fileDAG(t, randomBytes(2, 100<<10), 16<<10, 4)
	garbage := block(t, cid.DagProtobuf, []byte("\xff\xfe not a protobuf"))
	bad := cborLinking(t, garbage.Cid())
	dir1 := dirNode(t, "f", file.root)
	mixed := makeTestDAG(t, 32<<10)
	fileCAR, badCAR, dirCAR, mixedCAR := filepath.Join(dir, "file.car"), filepath.Join(dir, "bad.car"), filepath.Join(dir, "dir.car"), filepath.Join(dir, "mixed.car")
	writeCAR(t, fileCAR, file, false)
	writeCAR(t, badCAR, testDAG{root: bad.Cid(), blocks: []blocks.Block{bad, garbage}}, false)
	writeCAR(t, dirCAR, testDAG{root: dir1.Cid(), blocks: append([]blocks.Block{dir1}, file.blocks...)}, false)
	writeCAR(t, mixedCAR, mixed, false)
	srvRepo := filepath.Join(dir, "srvrepo")
	srv := startServe(t, 4, "--repo", srvRepo, fileCAR, badCAR, dirCAR, mixedCAR)
	defer srv.stop(t)
	peer := srv.addrs[0]

	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unixfs-out of a dag-cbor root", []string{"--unixfs-out", filepath.Join(dir, "x"), mixed.root.String()}, exitInput,
			fmt.Sprintf("root %s is dag-cbor, not a UnixFS file", mixed.root)},
		{"unixfs-out of a directory", []string{"--unixfs-out", filepath.Join(dir, "y"), dir1.Cid().String()}, exitInput,
			fmt.Sprintf("root %s is a UnixFS directory, not a UnixFS file", dir1.Cid())},
		{"block that does not decode", []string{"-o", filepath.Join(dir, "bad.out"), bad.Cid().String()}, exitInput,
			fmt.Sprintf("the DAG under %s is malformed: block %s: decoding dag-pb: ", bad.Cid(), garbage.Cid())},
		{"repo in use", []string{"--repo", srvRepo, file.root.String()}, exitInput,
			"repo " + srvRepo + ": in use by another process"},
		{"repo in use, unixfs-out", []string{"--repo", srvRepo, "--unixfs-out", filepath.Join(dir, "z"), file.root.String()}, exitInput,
			"repo " + srvRepo + ": in use by another process"},
		{"unixfs-out not writable", []string{"--unixfs-out", filepath.Join(fileCAR, "out"), file.root.String()}, exitInput,
			"not a directory"},
	}
	_, err := os.Stat("/dev/full")
	hasFull := err == nil
	if hasFull {
		cases = append(cases, []struct {
			name string
			args []string
			code int
			want string
		}{
			{"CAR to a full disk", []string{"-o", "/dev/full", file.root.String()}, exitInput,
				"writing CAR to /dev/full: write /dev/full: no space left on device"},
			{"file to a full disk", []string{"--unixfs-out", "/dev/full", file.root.String()}, exitInput,
				"writing /dev/full: write /dev/full: no space left on device"},
		}...)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runBin(t, append([]string{"get", "--peer", peer}, c.args...)...)
			line := oneLineErr(t, r, c.code, c.want)
			if len(r.stdout) != 0 {
				t.Fatalf("stdout %q", r.stdout)
			}
			t.Logf("exit %d: %s", r.code, line)
		})
	}
	if hasFull {
		if st, err := os.Stat("/dev/full"); err != nil || st.Mode()&os.ModeCharDevice == 0 {
			t.Fatalf("/dev/full is gone after a failed get: %v", err)
		}
	}
	for _, p := range []string{"bad.out", "x", "y", "z"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("output %s left behind by a failed get (%v)", p, err)
		}
	}
}

// A CAR that cannot be written stops get into a repo with one error line
// (after the repo line); the repo keeps what was fetched, so the next get
// fetches nothing.
func TestGetFullDiskKeepsRepo(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	dir := t.TempDir()
	d := fileDAG(t, randomBytes(3, 2<<20), 16<<10, 32) // 2 MiB: more than the CAR's 1 MiB buffer
	p := filepath.Join(dir, "d.car")
	writeCAR(t, p, d, false)
	srv := startServe(t, 1, "--repo", filepath.Join(dir, "srv"), p)
	defer srv.stop(t)
	repoDir := filepath.Join(dir, "getrepo")

	r := runBin(t, "get", "--peer", srv.addrs[0], "--repo", repoDir, "-o", "/dev/full", d.root.String())
	oneLineErr(t, r, exitInput, "writing CAR to /dev/full: write /dev/full: no space left on device", repoLineRE)
	first := repoLineRE.FindStringSubmatch(strings.Split(string(r.stderr), "\n")[0])
	t.Logf("first run: %s", bytes.TrimSpace(r.stderr))

	out := filepath.Join(dir, "d.out")
	r = runBin(t, "get", "--peer", srv.addrs[0], "--repo", repoDir, "--unixfs-out", out, d.root.String())
	if r.code != 0 {
		t.Fatalf("second get: exit %d: %s", r.code, r.stderr)
	}
	second := repoLineRE.FindStringSubmatch(strings.Split(string(r.stderr), "\n")[0])
	if second == nil {
		t.Fatalf("second run's stderr %q has no repo line", r.stderr)
	}
	there, fetched := atoi(second[1]), atoi(first[2])
	if there < fetched || there+atoi(second[2]) != len(sortedKeys(d.blocks)) {
		t.Fatalf("second run %q after a first that fetched %d", r.stderr, fetched)
	}
	t.Logf("second run: %s", bytes.TrimSpace(r.stderr))
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// failingStore fails like a full disk once it holds limit blocks.
type failingStore struct {
	blockstore.Blockstore
	mu       sync.Mutex
	limit, n int
}

func (s *failingStore) stored() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *failingStore) PutMany(ctx context.Context, bs []blocks.Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n+len(bs) > s.limit {
		return fmt.Errorf("put: %w", syscall.ENOSPC)
	}
	s.n += len(bs)
	return s.Blockstore.PutMany(ctx, bs)
}

// The repo's disk fills up mid-fetch: get stops with one line naming the
// repo and the block, and the repo, closed cleanly, holds every block that
// was stored before.
func TestGetRepoDiskFull(t *testing.T) {
	dir := t.TempDir()
	d := fileDAG(t, randomBytes(4, 512<<10), 16<<10, 8)
	p := filepath.Join(dir, "d.car")
	writeCAR(t, p, d, false)
	srv := startServe(t, 1, "--repo", filepath.Join(dir, "srv"), p)
	defer srv.stop(t)

	var fs *failingStore
	testWrapRepoStore = func(bs blockstore.Blockstore) blockstore.Blockstore {
		fs = &failingStore{Blockstore: bs, limit: 10}
		return fs
	}
	defer func() { testWrapRepoStore = nil }()
	repoDir := filepath.Join(dir, "getrepo")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, []string{"get", "--peer", srv.addrs[0], "--repo", repoDir, d.root.String()}, &stdout, &stderr)
	oneLineErr(t, result{code: code, stderr: stderr.Bytes()}, exitInput, "repo "+repoDir+": storing block ", repoLineRE)
	if !strings.Contains(stderr.String(), "no space left on device") {
		t.Fatalf("stderr %q does not say the disk is full", stderr.String())
	}
	t.Logf("exit %d: %s", code, bytes.TrimSpace(stderr.Bytes()))

	r, err := openRepo(repoDir) // not locked: the get closed it
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ch, err := r.bs.AllKeysChan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for c := range ch {
		n++
		if ok, _ := r.bs.Has(ctx, c); !ok {
			t.Fatalf("listed block %s is not there", c)
		}
	}
	if n != fs.stored() || n == 0 {
		t.Fatalf("repo holds %d blocks after the failed get, %d were stored", n, fs.stored())
	}
}

// On a terminal, get draws a progress line: for a UnixFS file root, a bar,
// the percentage of file bytes and the time left. The fetch here stalls (the
// server lacks a leaf) until --timeout, so the line is drawn.
func TestGetProgressOnATerminal(t *testing.T) {
	script, err := exec.LookPath("script")
	if err != nil {
		t.Skip("no script(1) to run get on a pseudo-terminal")
	}
	dir := t.TempDir()
	d := fileDAG(t, randomBytes(5, 256<<10), 16<<10, 174)
	var partial testDAG
	partial.root = d.root
	partial.blocks = d.blocks[1:] // the first leaf is missing
	p := filepath.Join(dir, "partial.car")
	writeCAR(t, p, partial, false)
	srv := startServe(t, 1, "--repo", filepath.Join(dir, "srv"), p)
	defer srv.stop(t)

	cmd := strings.Join([]string{binary, "get", "--peer", srv.addrs[0], "--timeout", "1s", "--unixfs-out", filepath.Join(dir, "out"), d.root.String()}, " ")
	r := runCmd(t, script, "-q", "-e", "-c", cmd, "/dev/null")
	if r.code != exitNetwork {
		t.Fatalf("get on a terminal: exit %d, want %d: %q", r.code, exitNetwork, r.stdout)
	}
	// 15 of 16 leaves: 240 KiB of the 256 KiB file.
	if !regexp.MustCompile(`\r\x1b\[K\[#{11}\.\]  93%  0\.2/0\.3 MB of file, [\d.]+ MB/s, ETA \S+, 1 peers, 16 blocks`).Match(r.stdout) {
		t.Fatalf("no progress line with a bar in %q", r.stdout)
	}
	if !bytes.Contains(r.stdout, []byte("1 blocks missing")) {
		t.Fatalf("no error line in %q", r.stdout)
	}
}

// runCmd runs a program and returns its exit code and output.
func runCmd(t *testing.T, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{stdout: so.Bytes(), stderr: se.Bytes()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("running %s: %v", name, err)
	}
	return r
}

func TestFormatProgress(t *testing.T) {
	for _, c := range []struct {
		st   progressStatus
		rate float64
		want string
	}{
		{progressStatus{done: 1_200_000, total: 2_700_000, what: "of file", extra: "1 peers, 120 blocks"}, 3.4e6,
			"[#####.......]  44%  1.2/2.7 MB of file, 3.4 MB/s, ETA 1s, 1 peers, 120 blocks"},
		{progressStatus{done: 0, total: 50e9, what: "of file"}, 0,
			"[............]   0%  0.0/50.0 GB of file, 0.0 MB/s, ETA ?"},
		{progressStatus{done: 25e9, total: 50e9, what: "of file"}, 100e6,
			"[######......]  50%  25.0/50.0 GB of file, 100.0 MB/s, ETA 4m10s"},
		{progressStatus{done: 3e6, total: 2e6, what: "written"}, 1e6,
			"[############] 100%  2.0/2.0 MB written, 1.0 MB/s, ETA 0s"},
		{progressStatus{done: 1_234_567, what: "of blocks", extra: "2 peers, 9 blocks, 12 wanted"}, 5e5,
			"1.2 MB of blocks, 0.5 MB/s, 2 peers, 9 blocks, 12 wanted"},
	} {
		if got := formatProgress(c.st, c.rate); got != c.want {
			t.Errorf("formatProgress(%+v, %v)\n got %q\nwant %q", c.st, c.rate, got, c.want)
		}
	}
	long := progressStatus{done: 1234_500_000, total: 9999_900_000, what: "of file", extra: "12 peers, 1234567 blocks"}
	if got, want := formatProgress(long, 1234.5e6), "[#...........]  12%  1234.5/9999.9 MB of file, 1234.5 MB/s, ETA 8s, 12 peers"; got != want {
		t.Errorf("a long line: got %q, want %q", got, want)
	}
	if got := formatProgress(progressStatus{done: 1, what: strings.Repeat("x", 100)}, 1); len(got) != progressWidth {
		t.Errorf("a line with no part to drop is %d columns, want %d", len(got), progressWidth)
	}
}

func TestRateMeterLooksBackFiveSeconds(t *testing.T) {
	var m rateMeter
	t0 := time.Unix(0, 0)
	// 1 MB/s for 10 s, then 3 MB/s.
	var r float64
	n := int64(0)
	for i := 1; i <= 100; i++ {
		n += 100_000
		r = m.rate(t0.Add(time.Duration(i)*100*time.Millisecond), n)
	}
	if r < 0.99e6 || r > 1.01e6 {
		t.Fatalf("rate %v after 10 s at 1 MB/s", r)
	}
	for i := 101; i <= 160; i++ {
		n += 300_000
		r = m.rate(t0.Add(time.Duration(i)*100*time.Millisecond), n)
	}
	if r < 2.99e6 || r > 3.01e6 {
		t.Fatalf("rate %v after 6 s at 3 MB/s", r)
	}
	if len(m.samples) > 60 {
		t.Fatalf("%d samples kept", len(m.samples))
	}
}

func TestDecodeUnixFS(t *testing.T) {
	file := fileDAG(t, randomBytes(6, 40<<10), 16<<10, 4)
	v0 := v0FileDAG(t, randomBytes(7, 20<<10), 16<<10)
	mixed := makeTestDAG(t, 1<<10)
	for _, c := range []struct {
		name string
		blk  blocks.Block
		want unixfsInfo
	}{
		{"raw leaf", file.blocks[0], unixfsInfo{file: true, fileSize: 16 << 10, data: 16 << 10}},
		{"file root", file.blocks[len(file.blocks)-1], unixfsInfo{file: true, fileSize: 40 << 10}},
		{"dag-pb leaf", v0.blocks[2], unixfsInfo{file: true, fileSize: 4 << 10, data: 4 << 10}},
		{"v0 root", v0.blocks[0], unixfsInfo{file: true, fileSize: 20 << 10}},
		{"directory", dirNode(t, "f", file.root), unixfsInfo{what: "a UnixFS directory"}},
		{"dag-cbor", mixed.blocks[0], unixfsInfo{what: "dag-cbor"}},
		{"dag-json", mixed.blocks[1], unixfsInfo{what: "dag-json"}},
	} {
		got, err := decodeUnixFS(c.blk)
		if err != nil || got != c.want {
			t.Errorf("%s: %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
	if _, err := decodeUnixFS(block(t, cid.DagProtobuf, []byte("\xff"))); err == nil || !strings.Contains(err.Error(), "decoding dag-pb") {
		t.Errorf("garbage dag-pb: %v", err)
	}
}

// A get into a repo stopped by SIGINT mid-fetch exits with one error line
// after the repo line, and leaves the repo closed (not locked) with every
// block it fetched.
func TestGetInterruptedKeepsRepo(t *testing.T) {
	dir := t.TempDir()
	d := fileDAG(t, randomBytes(8, 256<<10), 16<<10, 174)
	partial := testDAG{root: d.root, blocks: d.blocks[1:]} // the first leaf is missing: the fetch stalls
	p := filepath.Join(dir, "partial.car")
	writeCAR(t, p, partial, false)
	srv := startServe(t, 1, "--repo", filepath.Join(dir, "srv"), p)
	defer srv.stop(t)
	repoDir := filepath.Join(dir, "getrepo")

	cmd := exec.Command(binary, "get", "--peer", srv.addrs[0], "--repo", repoDir, "--metrics", "127.0.0.1:0", "--unixfs-out", filepath.Join(dir, "out"), d.root.String())
	var so bytes.Buffer
	se := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = &so, se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupt once every block the server has arrived (its own count, not
	// a guess at how long loopback takes).
	waitMetric(t, se, "bitswap_blocks_received_total", len(partial.blocks))
	_ = cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("get after SIGINT: %v", err)
	}
	r := result{code: ee.ExitCode(), stdout: so.Bytes(), stderr: se.Bytes()}
	oneLineErr(t, r, exitNetwork, "1 blocks missing (interrupt signal received)", metricsLineRE, repoLineRE)
	m := repoLineRE.FindStringSubmatch(strings.Split(se.String(), "\n")[1])
	// The last message's blocks may still be going into the repo as the
	// line is printed (they are stored before get exits: checked below).
	if n, _ := strconv.Atoi(m[2]); n < 1 || n > len(partial.blocks) {
		t.Fatalf("repo line %q: want 1 to %d fetched", m[0], len(partial.blocks))
	}
	t.Logf("exit %d: %s", r.code, bytes.TrimSpace(r.stderr))
	if _, err := os.Stat(filepath.Join(dir, "out")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial --unixfs-out file left behind (%v)", err)
	}

	rp, err := openRepo(repoDir)
	if err != nil {
		t.Fatalf("repo after SIGINT: %v", err)
	}
	defer rp.Close()
	for _, b := range partial.blocks {
		if ok, _ := rp.bs.Has(context.Background(), b.Cid()); !ok {
			t.Fatalf("block %s fetched before SIGINT is not in the repo", b.Cid())
		}
	}
}

// A real full disk under the repo (a small tmpfs; root on Linux only): get
// stops storing while repoReserve is left, reports the full disk in one
// line (after the repo line), closes the repo cleanly and does not hang; a
// get into the repo while its disk is still full says so at once; and the
// repo, copied to a disk with room, resumes from every block stored.
func TestGetRepoOnAFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := t.TempDir()
	tiny := filepath.Join(dir, "tiny")
	if err := os.Mkdir(tiny, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", tiny).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", tiny).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", tiny, err, out)
		}
	})
	data := randomBytes(9, 12<<20) // 24 MiB less the reserve (16) is room for 8
	d := fileDAG(t, data, 256<<10, 174)
	p := filepath.Join(dir, "d.car")
	writeCAR(t, p, d, false)
	srv := startServe(t, 1, "--repo", filepath.Join(dir, "srv"), p)
	defer srv.stop(t)
	repoDir := filepath.Join(tiny, "repo")

	r := runBin(t, "get", "--peer", srv.addrs[0], "--repo", repoDir, d.root.String())
	line := oneLineErr(t, r, exitInput, "repo "+repoDir+": storing block ", repoLineRE)
	if !strings.Contains(line, "no space left on device") {
		t.Fatalf("error %q: want the full disk", line)
	}
	first := repoLineRE.FindStringSubmatch(strings.Split(string(r.stderr), "\n")[0])
	t.Logf("exit %d in %v: %s", r.code, r.took.Round(time.Millisecond), bytes.TrimSpace(r.stderr))

	// Again: the disk is still full. The repo opens if its close left the
	// reserve free (it has no log to replay) and the first block stored
	// fails, or it does not open; either way one line, and nothing lost.
	r = runBin(t, "get", "--peer", srv.addrs[0], "--repo", repoDir, d.root.String())
	line = oneLineErr(t, r, exitInput, "repo "+repoDir+": ", repoLineRE)
	if !strings.Contains(line, "its disk is full") && !strings.Contains(line, "no space left on device") {
		t.Fatalf("second get: %q, want the full disk", line)
	}
	t.Logf("again: exit %d in %v: %s", r.code, r.took.Round(time.Millisecond), line)
	stored := atoi(first[2])
	if again := repoLineRE.FindStringSubmatch(strings.Split(string(r.stderr), "\n")[0]); again != nil {
		stored += atoi(again[2]) // it opened, and stored what fitted in what the first close freed
	}

	roomy := filepath.Join(dir, "roomy")
	if out, err := exec.Command("cp", "-a", repoDir, roomy).CombinedOutput(); err != nil {
		t.Fatalf("copying the repo: %v: %s", err, out)
	}
	out := filepath.Join(dir, "out")
	r = runBin(t, "get", "--peer", srv.addrs[0], "--repo", roomy, "--unixfs-out", out, d.root.String())
	if r.code != 0 {
		t.Fatalf("get from the copied repo: exit %d: %s", r.code, r.stderr)
	}
	m := repoLineRE.FindStringSubmatch(strings.Split(string(r.stderr), "\n")[0])
	if m == nil || atoi(m[1]) == 0 || atoi(m[1]) != stored {
		t.Fatalf("the copied repo kept %v blocks of the %d stored: %s", m, stored, r.stderr)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, data) {
		t.Fatalf("file from the resumed repo: %d bytes, want %d", len(got), len(data))
	}
	t.Logf("resumed: %s", bytes.TrimSpace(r.stderr))
}

// A fetch that stalls (the server lacks a leaf and says DONT_HAVE) says so
// in one line a quarter of --timeout in (at most 30 s), naming what it
// still wants, instead of staying silent until --timeout; then it fails
// as usual, naming the block.
func TestGetSaysWhenItStalls(t *testing.T) {
	dir := t.TempDir()
	d := fileDAG(t, randomBytes(10, 64<<10), 16<<10, 174)
	partial := testDAG{root: d.root, blocks: d.blocks[1:]}
	p := filepath.Join(dir, "partial.car")
	writeCAR(t, p, partial, false)
	srv := startServe(t, 1, p)
	defer srv.stop(t)
	missing := d.blocks[0].Cid().String()

	r := runBin(t, "get", "--peer", srv.addrs[0], "--timeout", "8s", d.root.String(), "-o", filepath.Join(dir, "out.car"))
	oneLineErr(t, r, exitNetwork, "1 blocks missing (timed out after 8s): "+missing,
		regexp.MustCompile(`^bitswap get: warning: no block for 2s from 1 peers, and the DAG is not complete \(waiting until --timeout\)$`))
}

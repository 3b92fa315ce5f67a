package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	car "github.com/ipld/go-car/v2"
	dagpb "github.com/ipld/go-codec-dagpb"
	"github.com/ipld/go-ipld-prime/datamodel"
	"github.com/ipld/go-ipld-prime/fluent/qp"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	mh "github.com/multiformats/go-multihash"
	"go.uber.org/goleak"

	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/dag"
	"github.com/gobitswap/bitswap/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixture struct {
	bs     blockstore.Blockstore
	root   cid.Cid // dag-cbor root of testutil.MixedDAG (links the file twice)
	blocks map[cid.Cid]blocks.Block
	file   cid.Cid // the UnixFS file's root
	dir    cid.Cid // a UnixFS directory holding the file and the raw block
	raw    blocks.Block
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root, blks, err := testutil.MixedDAG(1, 200<<10)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{bs: blockstore.NewMemory(), root: root, blocks: map[cid.Cid]blocks.Block{}}
	for _, b := range blks {
		f.blocks[b.Cid()] = b
	}
	f.raw = blks[2]
	f.file = blks[len(blks)-1].Cid()
	// A UnixFS directory: Data {Type: Directory}, two named links.
	dn, err := qp.BuildMap(dagpb.Type.PBNode, 2, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "Links", qp.List(2, func(la datamodel.ListAssembler) {
			for i, c := range []cid.Cid{f.raw.Cid(), f.file} {
				name := []string{"a.bin", "file"}[i]
				qp.ListEntry(la, qp.Map(2, func(ma datamodel.MapAssembler) {
					qp.MapEntry(ma, "Hash", qp.Link(cidlink.Link{Cid: c}))
					qp.MapEntry(ma, "Name", qp.String(name))
				}))
			}
		}))
		qp.MapEntry(ma, "Data", qp.Bytes([]byte{0x08, 0x01})) // field 1 (Type) = 1 (Directory)
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := dagpb.Encode(dn, &buf); err != nil {
		t.Fatal(err)
	}
	dc, _ := cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}.Sum(buf.Bytes())
	db, _ := blocks.NewBlockWithCid(buf.Bytes(), dc)
	f.dir = dc
	f.blocks[dc] = db
	for _, b := range f.blocks {
		if err := f.bs.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// pbNode builds a dag-pb block with the given UnixFS Data and named links.
func pbNode(t *testing.T, unixfs []byte, names []string, links []cid.Cid) blocks.Block {
	t.Helper()
	n, err := qp.BuildMap(dagpb.Type.PBNode, 2, func(ma datamodel.MapAssembler) {
		qp.MapEntry(ma, "Links", qp.List(int64(len(links)), func(la datamodel.ListAssembler) {
			for i, c := range links {
				qp.ListEntry(la, qp.Map(2, func(ma datamodel.MapAssembler) {
					qp.MapEntry(ma, "Hash", qp.Link(cidlink.Link{Cid: c}))
					qp.MapEntry(ma, "Name", qp.String(names[i]))
				}))
			}
		}))
		qp.MapEntry(ma, "Data", qp.Bytes(unixfs))
	})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := dagpb.Encode(n, &buf); err != nil {
		t.Fatal(err)
	}
	c, _ := cid.Prefix{Version: 1, Codec: cid.DagProtobuf, MhType: mh.SHA2_256, MhLength: -1}.Sum(buf.Bytes())
	b, _ := blocks.NewBlockWithCid(buf.Bytes(), c)
	return b
}

// dag-scope=entity of a HAMT-sharded directory: its shards (links named
// by the hex prefix alone), not the entries.
func TestCAREntityOfShardedDirectory(t *testing.T) {
	f := newFixture(t)
	// UnixFS Data: Type HAMTShard (5), hashType murmur3 (0x22), fanout 256.
	shardData := []byte{0x08, 0x05, 0x28, 0x22, 0x30, 0x80, 0x02}
	child := pbNode(t, shardData, []string{"1Cfile"}, []cid.Cid{f.file})
	root := pbNode(t, shardData, []string{"0A", "0Bsmall"}, []cid.Cid{child.Cid(), f.raw.Cid()})
	for _, b := range []blocks.Block{child, root} {
		f.blocks[b.Cid()] = b
		if err := f.bs.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	h := New(f.bs, Options{})
	r := do(t, h, "GET", "/ipfs/"+root.Cid().String()+"?format=car&dag-scope=entity")
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	if _, got := readCAR(t, r.body); !slices.Equal(got, []cid.Cid{root.Cid(), child.Cid()}) {
		t.Fatalf("entity of a sharded directory: %v, want its two shards", got)
	}
	r = do(t, h, "GET", "/ipfs/"+root.Cid().String()+"?format=car")
	if _, got := readCAR(t, r.body); !slices.Equal(got, f.dfs(t, root.Cid(), false)) {
		t.Fatalf("all of a sharded directory: %d blocks", len(got))
	}
}

// dfs is the reference walk: depth first, links in order, every
// occurrence (dups) or the first of each.
func (f *fixture) dfs(t *testing.T, root cid.Cid, dups bool) []cid.Cid {
	t.Helper()
	var out []cid.Cid
	seen := map[cid.Cid]bool{}
	var walk func(c cid.Cid)
	walk = func(c cid.Cid) {
		if !dups && seen[c] {
			return
		}
		seen[c] = true
		out = append(out, c)
		links, err := dag.Links(f.blocks[c])
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			walk(l)
		}
	}
	walk(root)
	return out
}

type resp struct {
	code int
	hdr  http.Header
	body []byte
}

func do(t *testing.T, h http.Handler, method, target string, hdr ...string) resp {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return resp{w.Code, w.Result().Header, w.Body.Bytes()}
}

func TestRawBlock(t *testing.T) {
	f := newFixture(t)
	h := New(f.bs, Options{})
	c := f.raw.Cid()
	for _, tc := range []struct {
		name, target string
		hdr          []string
		location     bool
	}{
		{"query", "/ipfs/" + c.String() + "?format=raw", nil, false},
		{"accept", "/ipfs/" + c.String(), []string{"Accept", MediaRaw}, true},
		{"both", "/ipfs/" + c.String() + "?format=raw", []string{"Accept", MediaRaw}, false},
		{"query wins over accept", "/ipfs/" + c.String() + "?format=raw", []string{"Accept", MediaCAR}, false},
		{"accept list with q", "/ipfs/" + c.String(), []string{"Accept", "text/html, application/vnd.ipld.raw;q=0.9, */*;q=0.1"}, true},
	} {
		for _, method := range []string{"GET", "HEAD"} {
			r := do(t, h, method, tc.target, tc.hdr...)
			if r.code != 200 {
				t.Fatalf("%s %s: %d %s", tc.name, method, r.code, r.body)
			}
			want := map[string]string{
				"Content-Type":           MediaRaw,
				"Content-Length":         fmt.Sprint(len(f.raw.RawData())),
				"Etag":                   `"` + c.String() + `.raw"`,
				"Cache-Control":          "public, max-age=29030400, immutable",
				"X-Content-Type-Options": "nosniff",
				"Content-Disposition":    `attachment; filename="` + c.String() + `.bin"`,
				"Vary":                   "Accept",
			}
			if tc.location {
				want["Content-Location"] = "/ipfs/" + c.String() + "?format=raw"
			}
			for k, v := range want {
				if got := r.hdr.Get(k); got != v {
					t.Errorf("%s %s: %s %q, want %q", tc.name, method, k, got, v)
				}
			}
			if !tc.location && r.hdr.Get("Content-Location") != "" {
				t.Errorf("%s: Content-Location %q with ?format=", tc.name, r.hdr.Get("Content-Location"))
			}
			wantBody := f.raw.RawData()
			if method == "HEAD" {
				wantBody = nil
			}
			if !bytes.Equal(r.body, wantBody) {
				t.Errorf("%s %s: body of %d bytes, want %d", tc.name, method, len(r.body), len(wantBody))
			}
		}
	}
	if s := h.Stat(); s.Blocks != 5 || s.Active != 0 || s.BytesInFlight != 0 || s.Clients != 0 {
		t.Fatalf("stat %+v", s)
	}
}

func TestProbe(t *testing.T) {
	h := New(blockstore.NewMemory(), Options{})
	for _, method := range []string{"GET", "HEAD"} {
		r := do(t, h, method, "/ipfs/bafkqaaa?format=raw", "Accept", MediaRaw)
		if r.code != 200 || len(r.body) != 0 || r.hdr.Get("Content-Length") != "0" || r.hdr.Get("Content-Type") != MediaRaw {
			t.Fatalf("%s probe: %d %q %v", method, r.code, r.body, r.hdr)
		}
	}
	// The CAR probe: a valid CAR with root bafkqaaa and no blocks.
	r := do(t, h, "GET", "/ipfs/bafkqaaa?format=car", "Accept", MediaCAR)
	if r.code != 200 {
		t.Fatalf("CAR probe: %d %s", r.code, r.body)
	}
	roots, got := readCAR(t, r.body)
	if len(roots) != 1 || roots[0].String() != "bafkqaaa" || len(got) != 0 {
		t.Fatalf("CAR probe: roots %v, %d blocks", roots, len(got))
	}
}

func TestStatusCodes(t *testing.T) {
	f := newFixture(t)
	h := New(f.bs, Options{MaxRequestBytes: 200})
	c := f.raw.Cid().String()
	missing, _ := cid.Prefix{Version: 1, Codec: cid.Raw, MhType: mh.SHA2_256, MhLength: -1}.Sum([]byte("not stored"))
	for _, tc := range []struct {
		name, method, target string
		hdr                  []string
		code                 int
		bodyHas              string
	}{
		{"missing raw", "GET", "/ipfs/" + missing.String() + "?format=raw", nil, 404, "not in this gateway"},
		{"missing raw HEAD", "HEAD", "/ipfs/" + missing.String() + "?format=raw", nil, 404, ""},
		{"missing CAR", "GET", "/ipfs/" + missing.String() + "?format=car", nil, 404, "not in this gateway"},
		{"missing CAR HEAD", "HEAD", "/ipfs/" + missing.String() + "?format=car", nil, 404, ""},
		{"only-if-cached missing", "GET", "/ipfs/" + missing.String() + "?format=raw", []string{"Cache-Control", "only-if-cached"}, 412, ""},
		{"only-if-cached present", "HEAD", "/ipfs/" + c + "?format=raw", []string{"Cache-Control", "only-if-cached"}, 200, ""},
		{"malformed CID", "GET", "/ipfs/notacid?format=raw", nil, 400, "invalid CID"},
		{"no format", "GET", "/ipfs/" + c, nil, 400, "application/vnd.ipld.raw"},
		{"deserialized accept", "GET", "/ipfs/" + c, []string{"Accept", "text/html"}, 406, "application/vnd.ipld.car"},
		{"any accept", "GET", "/ipfs/" + c, []string{"Accept", "*/*"}, 406, "trustless"},
		{"unknown format", "GET", "/ipfs/" + c + "?format=dag-json", nil, 406, "application/vnd.ipld.raw"},
		{"CARv2 by accept", "GET", "/ipfs/" + c, []string{"Accept", MediaCAR + ";version=2"}, 406, ""},
		{"CARv2 by query", "GET", "/ipfs/" + c + "?format=car&car-version=2", nil, 400, "version"},
		{"bad car-order", "GET", "/ipfs/" + c + "?format=car&car-order=bfs", nil, 400, ""},
		{"bad car-dups", "GET", "/ipfs/" + c + "?format=car&car-dups=maybe", nil, 400, ""},
		{"bad dag-scope", "GET", "/ipfs/" + c + "?format=car&dag-scope=some", nil, 400, "dag-scope"},
		{"entity-bytes", "GET", "/ipfs/" + c + "?format=car&entity-bytes=0:10", nil, 501, "entity-bytes"},
		{"raw path", "GET", "/ipfs/" + c + "/a/b?format=raw", nil, 400, "no path"},
		{"CAR path", "GET", "/ipfs/" + c + "/a/b?format=car", nil, 501, "not supported"},
		{"POST", "POST", "/ipfs/" + c + "?format=raw", nil, 405, ""},
		{"ipns", "GET", "/ipns/example.com?format=raw", nil, 501, "IPNS"},
		{"elsewhere", "GET", "/favicon.ico", nil, 404, ""},
		{"too long", "GET", "/ipfs/" + c + "?format=raw&x=" + strings.Repeat("a", 200), nil, 414, ""},
		{"if-none-match", "GET", "/ipfs/" + c + "?format=raw", []string{"If-None-Match", `"` + c + `.raw"`}, 304, ""},
		{"if-none-match CAR", "GET", "/ipfs/" + c + "?format=car", []string{"If-None-Match", `W/"` + c + `.car.all.dfs.n"`}, 304, ""},
	} {
		r := do(t, h, tc.method, tc.target, tc.hdr...)
		if r.code != tc.code {
			t.Errorf("%s: %d, want %d (%s)", tc.name, r.code, tc.code, r.body)
			continue
		}
		if !strings.Contains(string(r.body), tc.bodyHas) {
			t.Errorf("%s: body %q lacks %q", tc.name, r.body, tc.bodyHas)
		}
		if tc.code >= 400 {
			if tc.method != "HEAD" && !strings.HasPrefix(r.hdr.Get("Content-Type"), "text/plain") {
				t.Errorf("%s: error Content-Type %q", tc.name, r.hdr.Get("Content-Type"))
			}
			for _, k := range []string{"Cache-Control", "Etag", "Content-Disposition"} {
				if v := r.hdr.Get(k); v != "" {
					t.Errorf("%s: an error with %s %q", tc.name, k, v)
				}
			}
		}
	}
	if s := h.Stat(); s.NotFound != 5 {
		t.Fatalf("NotFound %d, want 5", s.NotFound)
	}
	// A body on a GET.
	r := httptest.NewRequest("GET", "/ipfs/"+c+"?format=raw", strings.NewReader("x"))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 413 {
		t.Fatalf("GET with a body: %d", w.Code)
	}
}

func readCAR(t *testing.T, body []byte) ([]cid.Cid, []cid.Cid) {
	t.Helper()
	br, err := car.NewBlockReader(bytes.NewReader(body), car.WithTrustedCAR(false))
	if err != nil {
		t.Fatal(err)
	}
	if br.Version != 1 {
		t.Fatalf("CAR version %d", br.Version)
	}
	var got []cid.Cid
	for {
		b, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d blocks: %v", len(got), err)
		}
		got = append(got, b.Cid())
	}
	return br.Roots, got
}

func TestCARScopes(t *testing.T) {
	f := newFixture(t)
	h := New(f.bs, Options{})
	all := f.dfs(t, f.root, false)
	allDups := f.dfs(t, f.root, true)
	if len(allDups) <= len(all) {
		t.Fatalf("fixture has no duplicate links: %d vs %d", len(allDups), len(all))
	}
	file := f.dfs(t, f.file, false)
	dirAll := f.dfs(t, f.dir, false)
	for _, tc := range []struct {
		name, target string
		hdr          []string
		want         []cid.Cid
		ctype, etag  string
	}{
		{"all by query", "/ipfs/" + f.root.String() + "?format=car", nil, all, "application/vnd.ipld.car; version=1; order=dfs; dups=n", `W/"` + f.root.String() + `.car.all.dfs.n"`},
		{"all by accept", "/ipfs/" + f.root.String(), []string{"Accept", "application/vnd.ipld.car; version=1; order=dfs"}, all, "application/vnd.ipld.car; version=1; order=dfs; dups=n", ""},
		{"dups by accept", "/ipfs/" + f.root.String(), []string{"Accept", "application/vnd.ipld.car;version=1;order=dfs;dups=y"}, allDups, "application/vnd.ipld.car; version=1; order=dfs; dups=y", ""},
		{"dups by query", "/ipfs/" + f.root.String() + "?format=car&car-dups=y&car-order=dfs&car-version=1", []string{"Accept", MediaCAR + ";dups=n"}, allDups, "application/vnd.ipld.car; version=1; order=dfs; dups=y", `W/"` + f.root.String() + `.car.all.dfs.y"`},
		{"dups by accept with format=car", "/ipfs/" + f.root.String() + "?format=car", []string{"Accept", MediaCAR + ";version=1;dups=y"}, allDups, "application/vnd.ipld.car; version=1; order=dfs; dups=y", ""},
		{"preferred CAR variant", "/ipfs/" + f.root.String(), []string{"Accept", MediaCAR + ";dups=n;q=0.5, " + MediaCAR + ";version=2, " + MediaCAR + ";dups=y;q=0.8"}, allDups, "application/vnd.ipld.car; version=1; order=dfs; dups=y", ""},
		{"order unk", "/ipfs/" + f.root.String() + "?format=car&car-order=unk", nil, all, "", ""},
		{"block", "/ipfs/" + f.root.String() + "?format=car&dag-scope=block", nil, all[:1], "", `W/"` + f.root.String() + `.car.block.dfs.n"`},
		{"entity of dag-cbor is its block", "/ipfs/" + f.root.String() + "?format=car&dag-scope=entity", nil, all[:1], "", `W/"` + f.root.String() + `.car.entity.dfs.n"`},
		{"entity of a file is the file", "/ipfs/" + f.file.String() + "?format=car&dag-scope=entity", nil, file, "", ""},
		{"entity of a raw block", "/ipfs/" + f.raw.Cid().String() + "?format=car&dag-scope=entity", nil, []cid.Cid{f.raw.Cid()}, "", ""},
		{"entity of a directory is its block", "/ipfs/" + f.dir.String() + "?format=car&dag-scope=entity", nil, []cid.Cid{f.dir}, "", ""},
		{"all of a directory", "/ipfs/" + f.dir.String() + "?format=car", nil, dirAll, "", ""},
	} {
		r := do(t, h, "GET", tc.target, tc.hdr...)
		if r.code != 200 {
			t.Fatalf("%s: %d %s", tc.name, r.code, r.body)
		}
		roots, got := readCAR(t, r.body)
		if len(roots) != 1 || roots[0] != tc.want[0] {
			t.Errorf("%s: roots %v", tc.name, roots)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %d blocks, want %d in DFS order", tc.name, len(got), len(tc.want))
		}
		// Block for block: every section's bytes are the block's.
		br, _ := car.NewBlockReader(bytes.NewReader(r.body))
		for b, err := br.Next(); err == nil; b, err = br.Next() {
			if !bytes.Equal(b.RawData(), f.blocks[b.Cid()].RawData()) {
				t.Errorf("%s: block %s differs", tc.name, b.Cid())
			}
		}
		if tc.ctype != "" && r.hdr.Get("Content-Type") != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", tc.name, r.hdr.Get("Content-Type"), tc.ctype)
		}
		if tc.etag != "" && r.hdr.Get("Etag") != tc.etag {
			t.Errorf("%s: Etag %q, want %q", tc.name, r.hdr.Get("Etag"), tc.etag)
		}
		for k, v := range map[string]string{
			"Cache-Control":          immutableCache,
			"X-Content-Type-Options": "nosniff",
			"Content-Disposition":    `attachment; filename="` + tc.want[0].String() + `.car"`,
		} {
			if got := r.hdr.Get(k); got != v {
				t.Errorf("%s: %s %q, want %q", tc.name, k, got, v)
			}
		}
	}
	// HEAD: the headers, no body.
	r := do(t, h, "HEAD", "/ipfs/"+f.root.String()+"?format=car")
	if r.code != 200 || len(r.body) != 0 || r.hdr.Get("Content-Type") != "application/vnd.ipld.car; version=1; order=dfs; dups=n" {
		t.Fatalf("HEAD CAR: %d, %d bytes, %v", r.code, len(r.body), r.hdr)
	}
}

// A block missing in the middle of the DAG: the status is 200 (the root
// is here), and the stream ends before the CAR does.
func TestCARMissingBlockCutsStream(t *testing.T) {
	f := newFixture(t)
	all := f.dfs(t, f.root, false)
	gone := all[len(all)/2]
	if err := f.bs.DeleteBlock(context.Background(), gone); err != nil {
		t.Fatal(err)
	}
	h := New(f.bs, Options{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	res, err := http.Get(srv.URL + "/ipfs/" + f.root.String() + "?format=car")
	if err != nil {
		t.Fatal(err)
	}
	body, rerr := io.ReadAll(res.Body)
	res.Body.Close()
	srv.CloseClientConnections()
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if !errors.Is(rerr, io.ErrUnexpectedEOF) {
		t.Fatalf("reading the body: %v, want an unexpected EOF", rerr)
	}
	br, err := car.NewBlockReader(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var got []cid.Cid
	for b, err := br.Next(); err == nil; b, err = br.Next() {
		got = append(got, b.Cid())
	}
	if !slices.Equal(got, all[:len(all)/2]) {
		t.Fatalf("got %d blocks before the cut, want the %d before %s", len(got), len(all)/2, gone)
	}
	if s := h.Stat(); s.Cut != 1 || s.Active != 0 || s.BytesInFlight != 0 {
		t.Fatalf("stat %+v", s)
	}

	// Over HTTP/2 (h2c) the stream is reset: the body ends in an error too.
	s2 := httptest.NewUnstartedServer(nil)
	s2.Config = NewServer("", h)
	s2.Start()
	defer s2.Close()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	res, err = (&http.Client{Transport: tr}).Get(s2.URL + "/ipfs/" + f.root.String() + "?format=car")
	if err != nil {
		t.Fatal(err)
	}
	body, rerr = io.ReadAll(res.Body)
	res.Body.Close()
	if res.ProtoMajor != 2 || res.StatusCode != 200 || rerr == nil {
		t.Fatalf("h2: %s %d, read error %v", res.Proto, res.StatusCode, rerr)
	}
	br, _ = car.NewBlockReader(bytes.NewReader(body))
	n := 0
	for _, err := br.Next(); err == nil; _, err = br.Next() {
		n++
	}
	if n > len(all)/2 {
		t.Fatalf("h2: %d blocks before the cut, want at most %d", n, len(all)/2)
	}
	t.Logf("h2 body ended with %v after %d blocks", rerr, n)
}

func TestCARBlockLimitCutsStream(t *testing.T) {
	f := newFixture(t)
	h := New(f.bs, Options{MaxCARBlocks: 3})
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Fatalf("panic %v, want http.ErrAbortHandler", p)
			}
		}()
		do(t, h, "GET", "/ipfs/"+f.root.String()+"?format=car")
	}()
	if s := h.Stat(); s.Cut != 1 || s.Blocks != 3 {
		t.Fatalf("stat %+v", s)
	}
}

// NewServer speaks HTTP/2 without TLS (prior knowledge) as well as
// HTTP/1.1; both serve raw blocks and CARs.
func TestServerHTTP2Cleartext(t *testing.T) {
	f := newFixture(t)
	h := New(f.bs, Options{})
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = NewServer("", h)
	srv.Start()
	defer srv.Close()
	for _, h2 := range []bool{false, true} {
		var p http.Protocols
		if h2 {
			p.SetUnencryptedHTTP2(true)
		} else {
			p.SetHTTP1(true)
		}
		tr := &http.Transport{Protocols: &p}
		c := &http.Client{Transport: tr}
		for _, target := range []string{"/ipfs/" + f.raw.Cid().String() + "?format=raw", "/ipfs/" + f.root.String() + "?format=car"} {
			res, err := c.Get(srv.URL + target)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil || res.StatusCode != 200 || (res.ProtoMajor == 2) != h2 {
				t.Fatalf("h2 %v %s: %s %d, %v", h2, target, res.Proto, res.StatusCode, err)
			}
			if strings.Contains(target, "raw") && !bytes.Equal(body, f.raw.RawData()) {
				t.Fatalf("h2 %v: raw body differs", h2)
			}
			if strings.Contains(target, "car") {
				if _, got := readCAR(t, body); !slices.Equal(got, f.dfs(t, f.root, false)) {
					t.Fatalf("h2 %v: CAR of %d blocks", h2, len(got))
				}
			}
		}
		tr.CloseIdleConnections()
	}
}

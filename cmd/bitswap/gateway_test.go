package main

import (
	"bytes"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// serve --http serves the repo as a Trustless Gateway beside Bitswap: the
// probe, raw blocks (GET and HEAD), a CAR of the whole DAG, and 404 for a
// block it lacks.
func TestServeHTTPGateway(t *testing.T) {
	dir := t.TempDir()
	a := makeTestDAG(t, 300<<10)
	carA := filepath.Join(dir, "a.car")
	writeCAR(t, carA, a, false)
	srv := startServe(t, 1, "--repo", filepath.Join(dir, "repo"), "--http", "127.0.0.1:0", carA)
	if !regexp.MustCompile(`^http://127\.0\.0\.1:\d+$`).MatchString(srv.http) {
		t.Fatalf("http line %q", srv.http)
	}
	get := func(method, path string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.http+path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, body
	}
	if res, body := get("HEAD", "/ipfs/bafkqaaa?format=raw"); res.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("HEAD probe: %d", res.StatusCode)
	}
	for _, b := range a.blocks {
		res, body := get("GET", "/ipfs/"+b.Cid().String()+"?format=raw")
		if res.StatusCode != 200 || !bytes.Equal(body, b.RawData()) || res.Header.Get("Content-Type") != "application/vnd.ipld.raw" {
			t.Fatalf("GET %s: %d, %d bytes", b.Cid(), res.StatusCode, len(body))
		}
	}
	if res, _ := get("HEAD", "/ipfs/"+a.root.String()+"?format=raw"); res.StatusCode != 200 || res.ContentLength != int64(len(a.blocks[0].RawData())) {
		t.Fatalf("HEAD root: %d, length %d", res.StatusCode, res.ContentLength)
	}
	res, body := get("GET", "/ipfs/"+a.root.String()+"?format=car")
	if res.StatusCode != 200 {
		t.Fatalf("CAR: %d", res.StatusCode)
	}
	roots, keys := readCAR(t, bytes.NewReader(body))
	if len(roots) != 1 || roots[0] != a.root || !slices.Equal(keys, sortedKeys(a.blocks)) {
		t.Fatalf("CAR: roots %v, %d blocks; want %d", roots, len(keys), len(a.blocks))
	}
	b := makeTestDAG(t, 10<<10)
	if res, _ := get("GET", "/ipfs/"+b.root.String()+"?format=raw"); res.StatusCode != 404 {
		t.Fatalf("missing block: %d", res.StatusCode)
	}
	srv.stop(t)

	// An address that cannot be listened on: exit 2, one line.
	r := runBin(t, "serve", "--repo", filepath.Join(dir, "repo"), "--http", "127.0.0.1:notaport")
	if r.code != 2 || bytes.Count(r.stderr, []byte("\n")) != 1 || !bytes.Contains(r.stderr, []byte("--http 127.0.0.1:notaport")) {
		t.Fatalf("bad --http: exit %d, stderr %q", r.code, r.stderr)
	}
}

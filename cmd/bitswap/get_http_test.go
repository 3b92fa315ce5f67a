package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// gatewayOf serves d's blocks as a trustless gateway (GET/HEAD
// /ipfs/CID?format=raw); corrupt flips each body's first byte.
func gatewayOf(t *testing.T, d testDAG, corrupt bool) *httptest.Server {
	t.Helper()
	m := map[string][]byte{"bafkqaaa": {}}
	for _, b := range d.blocks {
		m[b.Cid().String()] = b.RawData()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := strings.TrimPrefix(r.URL.Path, "/ipfs/")
		body, ok := m[c]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if corrupt && len(body) > 0 {
			body = append([]byte{body[0] ^ 0xff}, body[1:]...)
		}
		w.Header().Set("Content-Type", "application/vnd.ipld.raw")
		if r.Method != http.MethodHead {
			w.Write(body)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// get --peer with a gateway's URL or /http multiaddr fetches over HTTP
// alone, or beside a libp2p peer; a gateway sending wrong bodies is
// dropped and the fetch completes from another source, or fails in one
// line with nothing written when it was the only one.
func TestGetFromGateway(t *testing.T) {
	dir := t.TempDir()
	d := makeTestDAG(t, 300<<10)
	good := gatewayOf(t, d, false)
	bad := gatewayOf(t, d, true)
	u, _ := url.Parse(good.URL)
	summary := regexp.MustCompile(`fetched \S+: \d+ blocks, \d+ bytes in [\d.]+ s \([\d.]+ MB/s\), 0 duplicate blocks, (\d+) peers\n$`)

	for _, tc := range []struct {
		name  string
		peers []string
		npeer string
	}{
		{"url", []string{good.URL}, "1"},
		{"multiaddr", []string{"/ip4/127.0.0.1/tcp/" + u.Port() + "/http"}, "1"},
		{"bad and good", []string{bad.URL, good.URL}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".car")
			args := []string{"get"}
			for _, p := range tc.peers {
				args = append(args, "--peer", p)
			}
			r := runBin(t, append(args, d.root.String(), "-o", out)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			m := summary.FindSubmatch(r.stderr)
			if m == nil || (tc.npeer != "" && string(m[1]) != tc.npeer) {
				t.Fatalf("stderr %q", r.stderr)
			}
			checkCAR(t, out, d)
			t.Logf("%s", bytes.TrimSpace(r.stderr))
		})
	}

	t.Run("libp2p and gateway", func(t *testing.T) {
		car := filepath.Join(dir, "d.car")
		writeCAR(t, car, d, false)
		srv := startServe(t, 1, "--repo", filepath.Join(dir, "srv"), car)
		defer srv.stop(t)
		out := filepath.Join(dir, "both.car")
		r := runBin(t, "get", "--peer", srv.addrs[0], "--peer", good.URL, d.root.String(), "-o", out)
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		// The first want goes want-block to one source and want-have to
		// the other; our Bitswap server answers a want-have of a block
		// under 1 KiB (the root) with the block itself, as boxo's does,
		// so the root may arrive twice.
		both := regexp.MustCompile(`fetched \S+: \d+ blocks, \d+ bytes in [\d.]+ s \([\d.]+ MB/s\), [01] duplicate blocks, 2 peers\n$`)
		if !both.Match(r.stderr) {
			t.Fatalf("stderr %q", r.stderr)
		}
		checkCAR(t, out, d)
		t.Logf("%s", bytes.TrimSpace(r.stderr))
	})

	t.Run("only a bad gateway", func(t *testing.T) {
		out := filepath.Join(dir, "bad.car")
		r := runBin(t, "get", "--peer", bad.URL, "--timeout", "2s", d.root.String(), "-o", out)
		lines := strings.Split(strings.TrimRight(string(r.stderr), "\n"), "\n")
		last := lines[len(lines)-1]
		if r.code != 3 || !strings.HasPrefix(last, "bitswap get: ") {
			t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatalf("output left behind: %v", err)
		}
		t.Logf("%s", bytes.TrimSpace(r.stderr))
	})

	t.Run("unreachable gateway", func(t *testing.T) {
		r := runBin(t, "get", "--peer", "http://127.0.0.1:1", d.root.String(), "-o", filepath.Join(dir, "x.car"))
		oneLineErr(t, r, 3, "cannot reach gateway http://127.0.0.1:1")
	})

	t.Run("bad URL", func(t *testing.T) {
		r := runBin(t, "get", "--peer", "https://", d.root.String())
		oneLineErr(t, r, 2, "bad --peer")
	})
}

package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/test"
)

// peerID returns the peer ID a listening address ends in.
func peerID(t *testing.T, addr string) peer.ID {
	t.Helper()
	ai, err := peer.AddrInfoFromString(addr)
	if err != nil {
		t.Fatal(err)
	}
	return ai.ID
}

func (p *serveProc) awaitAnnounced(t *testing.T) string {
	t.Helper()
	select {
	case l := <-p.announced:
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("serve --dht did not announce within 30 s; stderr: %s", p.stderr)
		return ""
	}
}

func TestGetFindsProvidersThroughTheDHT(t *testing.T) {
	dir := t.TempDir()
	d := makeTestDAG(t, 600<<10)
	car := filepath.Join(dir, "d.car")
	writeCAR(t, car, d, false)

	boot := startServe(t, 0, "--repo", filepath.Join(dir, "boot"), "--dht")
	defer boot.stop(t)
	srvRepo := filepath.Join(dir, "srv")
	srv := startServe(t, 1, "--repo", srvRepo, "--dht", "--bootstrap", boot.addrs[0], car)
	if l := srv.awaitAnnounced(t); l != "announced: 1 CIDs" {
		t.Fatalf("serve said %q, want its one root announced", l)
	}
	provider := peerID(t, srv.addrs[0])

	out := filepath.Join(dir, "out.car")
	r := runBin(t, "get", "--bootstrap", boot.addrs[0], d.root.String(), "-o", out)
	if r.code != 0 {
		t.Fatalf("get --bootstrap: exit %d: %s", r.code, r.stderr)
	}
	// In a swarm this small, joining the DHT connects to every DHT server,
	// the provider too, so it may have answered the first want-have before
	// any provider record was looked up; either way get names it.
	if want := fmt.Sprintf("used %s: ", provider); !bytes.Contains(r.stderr, []byte(want)) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
	checkCAR(t, out, d)

	// The identity is the repo's: the same peer ID after a restart, so
	// the provider record announced before still leads to this node.
	srv.stop(t)
	again := startServe(t, 1, "--repo", srvRepo, "--dht", "--bootstrap", boot.addrs[0])
	defer again.stop(t)
	if got := peerID(t, again.addrs[0]); got != provider {
		t.Errorf("restarted with peer ID %s, want %s", got, provider)
	}
}

func TestGetFindsProvidersThroughRoutingV1(t *testing.T) {
	dir := t.TempDir()
	d := makeTestDAG(t, 400<<10)
	car := filepath.Join(dir, "d.car")
	writeCAR(t, car, d, false)
	srv := startServe(t, 1, "--repo", filepath.Join(dir, "srv"), car)
	defer srv.stop(t)
	provider := peerID(t, srv.addrs[0])
	maddr := strings.TrimSuffix(srv.addrs[0], "/p2p/"+provider.String())
	unreachable, err := test.RandPeerID()
	if err != nil {
		t.Fatal(err)
	}

	var asked []string
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/routing/v1/providers/" + d.root.String():
			// The provider without addresses, as a Kubo DHT server names a
			// peer it knows only at private ones: get asks for them.
			fmt.Fprintf(w, `{"Providers":[{"Schema":"peer","ID":"%s","Addrs":["/ip4/127.0.0.1/tcp/1"],"Protocols":["transport-bitswap"]},{"Schema":"peer","ID":"garbage"},{"Schema":"peer","ID":"%s","Protocols":["transport-bitswap"]}]}`,
				unreachable, provider)
		case "/routing/v1/peers/" + peer.ToCid(provider).String():
			fmt.Fprintf(w, `{"Peers":[{"Schema":"peer","ID":"%s","Addrs":["%s"]}]}`, provider, maddr)
		default:
			http.NotFound(w, r) // the spec's "none": the root's providers have the rest
		}
	}))
	defer good.Close()
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "internal error", http.StatusInternalServerError)
	}))
	defer broken.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now

	out := filepath.Join(dir, "out.car")
	r := runBin(t, "get", "--routing", down, "--routing", broken.URL, "--routing", good.URL, d.root.String(), "-o", out)
	if r.code != 0 {
		t.Fatalf("get --routing: exit %d: %s", r.code, r.stderr)
	}
	checkCAR(t, out, d)
	stderr := string(r.stderr)
	for _, want := range []string{
		fmt.Sprintf("provider %s (via %s, for %s)", provider, good.URL, d.root),
		fmt.Sprintf("used %s: %d blocks", provider, len(d.blocks)),
		"bitswap get: warning: routing " + down + ": providers of " + d.root.String(),
		"bitswap get: warning: routing " + broken.URL + ": providers of " + d.root.String() + ": HTTP 500",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "used "+unreachable.String()) {
		t.Errorf("the unreachable provider delivered blocks?\n%s", stderr)
	}
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if strings.Contains(l, "warning") && strings.Count(l, "bitswap get:") != 1 {
			t.Errorf("a warning of more than one line: %q", l)
		}
	}

	// Only a provider that cannot be reached (refused, and unknown to
	// /routing/v1/peers): one warning line naming it, then the usual
	// error at --timeout.
	lone := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/routing/v1/providers/"+d.root.String() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"Providers":[{"Schema":"peer","ID":"%s","Addrs":["/ip4/127.0.0.1/tcp/1"]}]}`, unreachable)
	}))
	defer lone.Close()
	r = runBin(t, "get", "--routing", lone.URL, "--timeout", "3s", d.root.String(), "-o", filepath.Join(dir, "none.car"))
	last := oneLineErr(t, r, exitNetwork, "1 blocks missing (timed out after 3s)",
		regexp.MustCompile(`^provider `+unreachable.String()+` \(via `),
		regexp.MustCompile(`^bitswap get: warning: connecting to `+unreachable.String()+`, a provider of `+d.root.String()+`: .*\(going on without it\)$`))
	t.Logf("%s", last)

	// Only routers that fail: a bounded wait, then the usual one-line
	// error for blocks missing at --timeout.
	r = runBin(t, "get", "--routing", down, "--timeout", "3s", d.root.String(), "-o", filepath.Join(dir, "none.car"))
	if r.code != exitNetwork {
		t.Fatalf("get with a router that is down: exit %d, want %d: %s", r.code, exitNetwork, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "none.car")); err == nil {
		t.Errorf("a failed get left its CAR")
	}
}

// checkCAR fails unless the CARv1 at path has d's root and exactly its
// blocks.
func checkCAR(t *testing.T, path string, d testDAG) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	roots, keys := readCAR(t, f)
	if len(roots) != 1 || roots[0] != d.root || !slices.Equal(keys, sortedKeys(d.blocks)) {
		t.Fatalf("CAR %s: roots %v, %d blocks; want %v, %d blocks", path, roots, len(keys), d.root, len(d.blocks))
	}
}

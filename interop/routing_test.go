package interop

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipfs/boxo/ipns"
	"github.com/ipfs/boxo/routing/http/server"
	"github.com/ipfs/boxo/routing/http/types"
	"github.com/ipfs/boxo/routing/http/types/iter"
	cid "github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
)

// staticRouter is the provider index behind boxo's Routing V1 server in
// these tests (an indexer such as cid.contact in real life): it names one
// provider for one CID, without its addresses when bare is set (as
// delegated routers often do), and answers FindPeers for it with them.
type staticRouter struct {
	c    cid.Cid
	prov peer.AddrInfo
	bare bool
}

func (r staticRouter) record() *types.PeerRecord {
	id := r.prov.ID
	rec := &types.PeerRecord{Schema: types.SchemaPeer, ID: &id, Protocols: []string{"transport-bitswap"}}
	for _, a := range r.prov.Addrs {
		rec.Addrs = append(rec.Addrs, types.Multiaddr{Multiaddr: a})
	}
	return rec
}

func (r staticRouter) FindProviders(_ context.Context, c cid.Cid, _ int) (iter.ResultIter[types.Record], error) {
	if !c.Equals(r.c) {
		return iter.ToResultIter(iter.FromSlice([]types.Record{})), nil
	}
	rec := r.record()
	if r.bare {
		rec.Addrs = nil
	}
	return iter.ToResultIter(iter.FromSlice([]types.Record{rec})), nil
}

func (staticRouter) ProvideBitswap(context.Context, *server.BitswapWriteProvideRequest) (time.Duration, error) {
	return 0, routing.ErrNotSupported
}

func (r staticRouter) FindPeers(_ context.Context, p peer.ID, _ int) (iter.ResultIter[*types.PeerRecord], error) {
	if p != r.prov.ID {
		return iter.ToResultIter(iter.FromSlice([]*types.PeerRecord{})), nil
	}
	return iter.ToResultIter(iter.FromSlice([]*types.PeerRecord{r.record()})), nil
}

func (staticRouter) GetIPNS(context.Context, ipns.Name) (*ipns.Record, error) {
	return nil, routing.ErrNotSupported
}

func (staticRouter) PutIPNS(context.Context, ipns.Name, *ipns.Record) error {
	return routing.ErrNotSupported
}

func (staticRouter) GetClosestPeers(context.Context, cid.Cid) (iter.ResultIter[*types.PeerRecord], error) {
	return nil, routing.ErrNotSupported
}

// The command, with no --peer, finds a boxo node's DAG through boxo's own
// Routing V1 server (routing/http/server), streaming (NDJSON) and not
// (JSON), and fetches all of it; a provider named without addresses is
// found through the server's /routing/v1/peers.
func TestCommandFindsProvidersThroughBoxoRoutingServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := buildCommand(t, ctx)

	theirs := startBoxo(t, ctx, nil)
	root := importRandomFile(t, theirs, 9, 1<<20+333, 32<<10)
	prov := peer.AddrInfo{ID: theirs.h.ID(), Addrs: theirs.h.Addrs()}

	for _, tc := range []struct {
		name string
		bare bool
		opts []server.Option
	}{
		{"ndjson", false, nil},
		{"json", false, []server.Option{server.WithStreamingResultsDisabled()}},
		{"without addresses", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			router := staticRouter{c: root, prov: prov, bare: tc.bare}
			h := server.Handler(router, tc.opts...)
			var mu sync.Mutex
			var asked []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				asked = append(asked, r.URL.Path)
				mu.Unlock()
				h.ServeHTTP(w, r)
			}))
			defer srv.Close()
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".car")
			get := exec.CommandContext(ctx, bin, "get", "--routing", srv.URL, "-o", out, "--timeout", "1m", root.String())
			get.Env = append(os.Environ(), "GOBITSWAP_REPO="+filepath.Join(dir, "repo"))
			var stderr bytes.Buffer
			get.Stderr = &stderr
			if err := get.Run(); err != nil {
				t.Fatalf("bitswap get --routing: %v\n%s", err, stderr.String())
			}
			if want := "provider " + theirs.h.ID().String() + " (via " + srv.URL; !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
			}
			mu.Lock()
			peersAsked := slices.Contains(asked, "/routing/v1/peers/"+peer.ToCid(prov.ID).String())
			mu.Unlock()
			if tc.bare && !peersAsked {
				t.Errorf("the provider came without addresses, and /routing/v1/peers was not asked (asked %q)", asked)
			}
			n := checkCARHasDAG(t, ctx, out, root, theirs)
			t.Logf("%d blocks; %s", n, strings.TrimSpace(stderr.String()))
		})
	}
}

// checkCARHasDAG fails unless the CAR at path has root as its root and
// exactly the blocks of node's blockstore, and returns how many.
func checkCARHasDAG(t *testing.T, ctx context.Context, path string, root cid.Cid, node *boxoNode) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br, err := carv2.NewBlockReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(br.Roots) != 1 || !br.Roots[0].Equals(root) {
		t.Fatalf("CAR roots %v, want [%s]", br.Roots, root)
	}
	got := 0
	for {
		blk, err := br.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		want, err := node.bs.Get(ctx, blk.Cid())
		if err != nil || !bytes.Equal(want.RawData(), blk.RawData()) {
			t.Fatalf("block %s in the CAR is not the one boxo holds", blk.Cid())
		}
		got++
	}
	keys, err := node.bs.AllKeysChan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all := 0
	for range keys {
		all++
	}
	if got != all {
		t.Fatalf("CAR has %d blocks, boxo holds %d", got, all)
	}
	return got
}

//go:build measure

package interop

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	boxobs "github.com/ipfs/boxo/bitswap"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	boxobstore "github.com/ipfs/boxo/blockstore"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer/balanced"
	"github.com/ipfs/boxo/ipld/unixfs/importer/helpers"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
)

// TestMeasureCLIFromBoxo times `bitswap get` of a 20,116-block UnixFS DAG
// (4 KiB raw leaves, 83 MB) from a boxo server on a plain libp2p host, as
// a user runs it: a fresh process and repo per run, six runs of each
// binary in BINS (comma-separated paths, e.g. builds of two commits),
// interleaved so that both see the same machine. It prints, it does not
// judge:
//
//	BINS=/tmp/old,/tmp/new go test -tags measure -run TestMeasureCLIFromBoxo -v .
func TestMeasureCLIFromBoxo(t *testing.T) {
	if os.Getenv("BINS") == "" {
		t.Skip("set BINS to the bitswap binaries to time")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// A plain boxo embedding: libp2p's default host, resource limits included.
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	bs := boxobstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	b := boxobs.New(ctx, bsnet.NewFromIpfsHost(h), nil, bs)
	defer b.Close()
	content := make([]byte, 20000*4096)
	_, _ = rand.NewChaCha8([32]byte{9}).Read(content)
	params := helpers.DagBuilderParams{Maxlinks: helpers.DefaultLinksPerBlock, Dagserv: merkledag.NewDAGService(blockservice.New(bs, nil)), RawLeaves: true, CidBuilder: merkledag.V1CidPrefix()}
	db, err := params.New(chunker.NewSizeSplitter(bytes.NewReader(content), 4096))
	if err != nil {
		t.Fatal(err)
	}
	root, err := balanced.Layout(db)
	if err != nil {
		t.Fatal(err)
	}
	addr := h.Addrs()[0].String() + "/p2p/" + h.ID().String()
	for i := range 6 {
		for _, bin := range strings.Split(os.Getenv("BINS"), ",") {
			dir := t.TempDir()
			get := exec.CommandContext(ctx, bin, "get", "--peer", addr, "-o", filepath.Join(dir, "out.car"), "--timeout", "2m", root.Cid().String())
			get.Env = append(os.Environ(), "GOBITSWAP_REPO="+filepath.Join(dir, "repo"))
			var stderr bytes.Buffer
			get.Stderr = &stderr
			start := time.Now()
			if err := get.Run(); err != nil {
				t.Fatalf("%s: %v\n%s", bin, err, stderr.String())
			}
			t.Logf("%s run %d: %v wall; %s", filepath.Base(bin), i, time.Since(start).Round(time.Millisecond), strings.TrimSpace(stderr.String()))
		}
	}
}

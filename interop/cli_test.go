package interop

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ipfs/boxo/blockservice"
	chunker "github.com/ipfs/boxo/chunker"
	"github.com/ipfs/boxo/ipld/merkledag"
	"github.com/ipfs/boxo/ipld/unixfs/importer"
	cid "github.com/ipfs/go-cid"
	carv2 "github.com/ipld/go-car/v2"
)

// The bitswap command, run as a user would, fetches a UnixFS DAG that a boxo
// node imported and serves, and writes a CAR holding exactly its blocks.
func TestCommandGetsDAGFromBoxo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the command")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bitswap")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/bitswap")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the command: %v\n%s", err, out)
	}

	theirs := startBoxo(t, ctx, nil)
	content := make([]byte, 3<<20+777)
	_, _ = rand.NewChaCha8([32]byte{5}).Read(content)
	root, err := importer.BuildDagFromReader(merkledag.NewDAGService(blockservice.New(theirs.bs, nil)),
		chunker.NewSizeSplitter(bytes.NewReader(content), 64<<10))
	if err != nil {
		t.Fatal(err)
	}
	addr := theirs.h.Addrs()[0].String() + "/p2p/" + theirs.h.ID().String()
	out := filepath.Join(dir, "out.car")
	get := exec.CommandContext(ctx, bin, "get", "--peer", addr, "-o", out, "--timeout", "1m", root.Cid().String())
	get.Env = append(os.Environ(), "GOBITSWAP_REPO="+filepath.Join(dir, "repo"))
	var stderr bytes.Buffer
	get.Stderr = &stderr
	if err := get.Run(); err != nil {
		t.Fatalf("bitswap get: %v\n%s", err, stderr.String())
	}
	t.Logf("%s", bytes.TrimSpace(stderr.Bytes()))

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br, err := carv2.NewBlockReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(br.Roots) != 1 || !br.Roots[0].Equals(root.Cid()) {
		t.Fatalf("CAR roots %v, want [%s]", br.Roots, root.Cid())
	}
	got := map[cid.Cid]bool{}
	for {
		blk, err := br.Next()
		if err != nil {
			break
		}
		want, err := theirs.bs.Get(ctx, blk.Cid())
		if err != nil || !bytes.Equal(want.RawData(), blk.RawData()) {
			t.Fatalf("block %s in the CAR is not the one boxo holds", blk.Cid())
		}
		got[blk.Cid()] = true
	}
	keys, err := theirs.bs.AllKeysChan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range keys {
		n++
	}
	if len(got) != n {
		t.Fatalf("CAR holds %d blocks, boxo's DAG %d", len(got), n)
	}
}

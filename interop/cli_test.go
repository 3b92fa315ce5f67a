package interop

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	cid "github.com/ipfs/go-cid"
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
	bin := buildCommand(t, ctx)

	theirs := startBoxo(t, ctx, nil)
	root := importRandomFile(t, theirs, 5, 3<<20+777, 64<<10)
	addr := theirs.h.Addrs()[0].String() + "/p2p/" + theirs.h.ID().String()
	out := filepath.Join(dir, "out.car")
	get := exec.CommandContext(ctx, bin, "get", "--peer", addr, "-o", out, "--timeout", "1m", root.String())
	get.Env = append(os.Environ(), "GOBITSWAP_REPO="+filepath.Join(dir, "repo"))
	var stderr bytes.Buffer
	get.Stderr = &stderr
	if err := get.Run(); err != nil {
		t.Fatalf("bitswap get: %v\n%s", err, stderr.String())
	}
	t.Logf("%s", bytes.TrimSpace(stderr.Bytes()))

	checkCARHasDAG(t, ctx, out, root, theirs)
}

// importRandomFile imports size pseudo-random bytes (seeded) into node as
// a UnixFS file in chunks of chunk bytes and returns its root.
func importRandomFile(t *testing.T, node *boxoNode, seed byte, size, chunk int) cid.Cid {
	t.Helper()
	content := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(content)
	return importFile(t, node.bs, content, int64(chunk))
}

// buildCommand builds the bitswap command of this tree, once per test
// binary, and returns its path (in a directory TestMain removes).
func buildCommand(t *testing.T, ctx context.Context) string {
	t.Helper()
	commandOnce.Do(func() {
		bin := filepath.Join(commandDir, "bitswap")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/bitswap")
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			commandErr = fmt.Errorf("building the command: %v\n%s", err, out)
			return
		}
		commandBin = bin
	})
	if commandErr != nil {
		t.Fatal(commandErr)
	}
	return commandBin
}

var (
	commandOnce sync.Once
	commandDir  string // made by TestMain
	commandBin  string
	commandErr  error
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "interop-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	commandDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

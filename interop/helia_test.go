package interop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Helia (JavaScript: @helia/bitswap over js-libp2p with TCP, Noise and
// yamux) against ours, both ways, through the paths users take: our
// command fetching a file Helia imported, and Helia's unixfs cat of a file
// our node serves. The Helia side is interop/helia/peer.mjs; its packages
// are pinned in interop/helia/package-lock.json and installed with npm ci
// (scripts/test starts that early; this test runs it if it has not).

var (
	heliaOnce sync.Once
	heliaErr  error
)

// heliaPeer returns the command that runs peer.mjs with args, after
// installing its packages once. Without Node.js the test is skipped: the
// README's machine has it (Debian's nodejs), and so does CI.
func heliaPeer(t *testing.T, ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	if testing.Short() {
		t.Skip("installs Helia with npm")
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("no Node.js on this machine")
	}
	dir, err := filepath.Abs("helia")
	if err != nil {
		t.Fatal(err)
	}
	heliaOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "helia")); err == nil {
			return
		}
		npm := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		npm.Dir = dir
		if out, err := npm.CombinedOutput(); err != nil {
			heliaErr = fmt.Errorf("npm ci in %s: %v\n%s", dir, err, out)
		}
	})
	if heliaErr != nil {
		t.Fatal(heliaErr)
	}
	cmd := exec.CommandContext(ctx, "node", append([]string{"--no-warnings", "--import", "./polyfill.mjs", "peer.mjs"}, args...)...)
	cmd.Dir = dir
	return cmd
}

func seededBytes(seed byte, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{seed}).Read(b)
	return b
}

// Our command fetches a file Helia imported (CIDv1, raw leaves, 1 MiB
// chunks) and writes it out byte for byte.
func TestCommandGetsFileFromHelia(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()
	content := seededBytes(11, 5<<20+333)
	in := filepath.Join(dir, "in.bin")
	if err := os.WriteFile(in, content, 0o644); err != nil {
		t.Fatal(err)
	}
	serve := heliaPeer(t, ctx, "serve", in)
	var serveErr bytes.Buffer
	serve.Stderr = &serveErr
	out, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = serve.Process.Kill(); _ = serve.Wait() }()
	var root, addr string
	sc := bufio.NewScanner(out)
	for (root == "" || addr == "") && sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "cid: "):
			root = strings.TrimPrefix(l, "cid: ")
		case strings.HasPrefix(l, "listening: "):
			addr = strings.TrimPrefix(l, "listening: ")
		}
	}
	if root == "" || addr == "" {
		t.Fatalf("Helia did not start: %v\n%s", sc.Err(), serveErr.String())
	}
	go func() { _, _ = io.Copy(io.Discard, out) }() // the rest, until Helia exits

	bin := buildCommand(t, ctx)
	file := filepath.Join(dir, "out.bin")
	get := exec.CommandContext(ctx, bin, "get", "--peer", addr, "--unixfs-out", file, "--timeout", "1m", root)
	var stderr bytes.Buffer
	get.Stderr = &stderr
	if err := get.Run(); err != nil {
		t.Fatalf("bitswap get from Helia: %v\n%s\nHelia: %s", err, stderr.String(), serveErr.String())
	}
	t.Logf("%s", bytes.TrimSpace(stderr.Bytes()))
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("the file from Helia: %d bytes, not the %d imported", len(got), len(content))
	}
	if !strings.Contains(stderr.String(), " 0 duplicate blocks, 1 peers") {
		t.Errorf("want no duplicates from one peer: %s", stderr.String())
	}
}

// Helia's unixfs cat fetches a file our node serves (boxo's importer:
// CIDv0, dag-pb leaves of 64 KiB) and gets every byte.
func TestHeliaGetsFileFromOurs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ours := startOurs(t, ctx, nil)
	content := seededBytes(12, 3<<20+555)
	root := importFile(t, ours.bs, content, 64<<10)
	addr := ours.h.Addrs()[0].String() + "/p2p/" + ours.h.ID().String()

	get := heliaPeer(t, ctx, "get", addr, root.String())
	var stdout, stderr bytes.Buffer
	get.Stdout, get.Stderr = &stdout, &stderr
	if err := get.Run(); err != nil {
		t.Fatalf("Helia get: %v\n%s", err, stderr.String())
	}
	m := regexp.MustCompile(`got (\d+) bytes sha256 ([0-9a-f]+)`).FindStringSubmatch(stdout.String())
	sum := sha256.Sum256(content)
	if m == nil || m[1] != fmt.Sprint(len(content)) || m[2] != hex.EncodeToString(sum[:]) {
		t.Fatalf("Helia got %q, want %d bytes sha256 %x\n%s", stdout.String(), len(content), sum, stderr.String())
	}
	st, err := ours.b.Stat()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Helia: %s; our server sent %d blocks (%d bytes) to %v", strings.TrimSpace(stdout.String()), st.BlocksSent, st.DataSent, st.Peers)
	if st.BlocksSent == 0 {
		t.Errorf("our server sent no blocks")
	}
}

package repo_test

import (
	"context"
	"fmt"
	"log"
	"os"

	blocks "github.com/ipfs/go-block-format"

	"github.com/gobitswap/bitswap/repo"
)

// A repository is a blockstore on disk; pass Blockstore() to
// bitswap.New. Close it to keep everything written.
func Example() {
	dir, err := os.MkdirTemp("", "repo-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	r, err := repo.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	b := blocks.NewBlock([]byte("hello, repo"))
	if err := r.Blockstore().Put(ctx, b); err != nil {
		log.Fatal(err)
	}
	if err := r.Close(); err != nil {
		log.Fatal(err)
	}

	r, err = repo.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	got, err := r.Blockstore().Get(ctx, b.Cid())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", got.RawData())
	// Output: hello, repo
}

package dag_test

import (
	"bytes"
	"context"
	"fmt"
	"time"

	blocks "github.com/ipfs/go-block-format"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/dag"
	"github.com/gobitswap/bitswap/testutil"
)

// Fetch a whole DAG from its root through a Session: blocks are handed
// over as they arrive, so a consumer (a CAR writer, a hash check) never
// holds the DAG in memory.
func ExampleWalk() {
	vn := testutil.NewVirtualNetwork()
	seedStore := blockstore.NewMemory()
	seed := bitswap.New(context.Background(), vn.NewPeer(), seedStore)
	defer seed.Close()
	leech := bitswap.New(context.Background(), vn.NewPeer(), blockstore.NewMemory())
	defer leech.Close()
	vn.ConnectAll()

	file, err := testutil.BuildFileDAG(bytes.NewReader(make([]byte, 1<<20)), 256<<10, 174)
	if err != nil {
		panic(err)
	}
	_ = seedStore.PutMany(context.Background(), file.Blocks)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A MiB of zeros: four equal leaves, one block, fetched once.
	n := 0
	err = dag.Walk(ctx, leech.NewSession(ctx), file.Root, func(b blocks.Block) error {
		n++
		return nil
	})
	fmt.Println(n, "distinct blocks; error:", err)
	// Output: 2 distinct blocks; error: <nil>
}

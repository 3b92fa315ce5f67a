package blockstore_test

import (
	"context"
	"fmt"

	"github.com/gobitswap/bitswap/blockstore"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ipld "github.com/ipfs/go-ipld-format"
)

func Example() {
	ctx := context.Background()
	bs := blockstore.NewMemory()

	b := blocks.NewBlock([]byte("hello bitswap")) // a CIDv0 block
	if err := bs.Put(ctx, b); err != nil {
		panic(err)
	}

	// The same bytes under CIDv1 are the same block.
	v1 := cid.NewCidV1(cid.DagProtobuf, b.Cid().Hash())
	got, err := bs.Get(ctx, v1)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", got.RawData())
	fmt.Println(got.Cid().Version())

	_, err = bs.Get(ctx, blocks.NewBlock([]byte("absent")).Cid())
	fmt.Println(ipld.IsNotFound(err))
	// Output:
	// hello bitswap
	// 1
	// true
}

package blockstore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/gobitswap/bitswap/blockstore"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	ipld "github.com/ipfs/go-ipld-format"
	base32 "github.com/multiformats/go-base32"
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

// Check every block against its CID as it is read, as boxo's HashOnRead
// (now its ValidatingBlockstore) did.
func ExampleNewValidating() {
	ctx := context.Background()
	d := dssync.MutexWrap(datastore.NewMapDatastore())
	bs := blockstore.NewValidating(blockstore.New(d))

	b := blocks.NewBlock([]byte("hello bitswap"))
	_ = bs.Put(ctx, b)
	got, err := bs.Get(ctx, b.Cid())
	fmt.Printf("%s %v\n", got.RawData(), err)

	// Rot the stored bytes behind the blockstore's back.
	k := blockstore.DefaultPrefix.ChildString(base32.RawStdEncoding.EncodeToString(b.Cid().Hash()))
	_ = d.Put(ctx, k, []byte("rotten"))
	_, err = bs.Get(ctx, b.Cid())
	fmt.Println(errors.Is(err, blockstore.ErrHashMismatch))
	// Output:
	// hello bitswap <nil>
	// true
}

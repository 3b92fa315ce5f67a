package interop

import (
	"context"
	"testing"
	"time"

	boxobstore "github.com/ipfs/boxo/blockstore"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/network"
)

// The two Blockstore interfaces have one method set: boxo v0.43's passes to
// Bitswap as is, and ours to boxo.
var (
	_ blockstore.Blockstore = boxobstore.Blockstore(nil)
	_ boxobstore.Blockstore = blockstore.Blockstore(nil)
)

// Our Bitswap on boxo's own blockstore serves from it and fetches into it.
func TestBoxoBlockstoreAsIs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h, _ := newHost(t)
	bbs := boxobstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	onBoxoStore := bitswap.New(ctx, network.NewFromHost(h), bbs)
	t.Cleanup(func() { onBoxoStore.Close() })
	other := startOurs(t, ctx, nil)
	connect(t, ctx, h, other.h)

	// Fetched into boxo's blockstore...
	fetched := clientBlocks(t, 40, 200)
	if err := other.bs.PutMany(ctx, fetched); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, ctx, onBoxoStore, fetched)
	for _, b := range fetched {
		if ok, err := bbs.Has(ctx, b.Cid()); err != nil || !ok {
			t.Fatalf("boxo's blockstore lacks fetched block %s (%v)", b.Cid(), err)
		}
	}
	// ...and served from it.
	served := clientBlocks(t, 41, 200)
	if err := bbs.PutMany(ctx, served); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, ctx, other.b, served)
}

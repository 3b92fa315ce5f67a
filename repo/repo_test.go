package repo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	pebbleds "github.com/ipfs/go-ds-pebble"
	base32 "github.com/multiformats/go-base32"
	mh "github.com/multiformats/go-multihash"

	"github.com/gobitswap/bitswap/blockstore"
)

func block(t *testing.T, size int, seed byte) blocks.Block {
	t.Helper()
	data := make([]byte, size)
	for i := range data {
		data[i] = seed + byte(i*7)
	}
	h, err := mh.Sum(data, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := blocks.NewBlockWithCid(data, cid.NewCidV1(cid.Raw, h))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// filePath is where a block's file is, as Kubo's flatfs lays it out.
func filePath(dir string, c cid.Cid) string {
	name := base32.RawStdEncoding.EncodeToString(c.Hash())
	return filepath.Join(dir, BlocksDir, name[len(name)-3:len(name)-1], name+".data")
}

func open(t *testing.T, dir string) *Repo {
	t.Helper()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLargeBlocksAreFilesSmallOnesStayInPebble(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := open(t, dir)
	small, large := block(t, 4<<10, 1), block(t, LargeBlock, 2)
	if err := r.Blockstore().PutMany(ctx, []blocks.Block{small, large}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filePath(dir, large.Cid())); err != nil {
		t.Errorf("the %d-byte block has no file: %v", len(large.RawData()), err)
	}
	if _, err := os.Stat(filePath(dir, small.Cid())); err == nil {
		t.Errorf("the %d-byte block has a file; want it in Pebble", len(small.RawData()))
	}
	check := func(r *Repo) {
		t.Helper()
		for _, b := range []blocks.Block{small, large} {
			got, err := r.Blockstore().Get(ctx, b.Cid())
			if err != nil || !slices.Equal(got.RawData(), b.RawData()) {
				t.Errorf("Get %s: %v, %d bytes; want %d", b.Cid(), err, len(got.RawData()), len(b.RawData()))
			}
			if n, err := r.Blockstore().GetSize(ctx, b.Cid()); err != nil || n != len(b.RawData()) {
				t.Errorf("GetSize %s = %d, %v; want %d", b.Cid(), n, err, len(b.RawData()))
			}
			if ok, err := r.Blockstore().Has(ctx, b.Cid()); !ok || err != nil {
				t.Errorf("Has %s = %v, %v", b.Cid(), ok, err)
			}
		}
		ch, err := r.Blockstore().AllKeysChan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range ch {
			n++
		}
		if n != 2 {
			t.Errorf("AllKeysChan listed %d blocks, want 2", n)
		}
	}
	check(r)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = open(t, dir)
	check(r)
	if err := r.Blockstore().DeleteBlock(ctx, large.Cid()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filePath(dir, large.Cid())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after DeleteBlock the file is still there: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestARepoOfPebbleAloneOpensAsItWas(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// As the command wrote repos before block files: every block in Pebble.
	ds, err := pebbleds.NewDatastore(dir, pebbleds.WithPebbleOpts(PebbleOptions()))
	if err != nil {
		t.Fatal(err)
	}
	old := block(t, 1<<20, 3)
	if err := blockstore.New(ds).Put(ctx, old); err != nil {
		t.Fatal(err)
	}
	ds.DB.Flush()
	ds.Close()

	r := open(t, dir)
	defer r.Close()
	got, err := r.Blockstore().Get(ctx, old.Cid())
	if err != nil || !slices.Equal(got.RawData(), old.RawData()) {
		t.Fatalf("the block stored in Pebble: %v", err)
	}
	recent := block(t, 1<<20, 4)
	if err := r.Blockstore().Put(ctx, recent); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filePath(dir, recent.Cid())); err != nil {
		t.Errorf("a large block stored now has no file: %v", err)
	}
}

func TestOneProcessAtATime(t *testing.T) {
	dir := t.TempDir()
	r := open(t, dir)
	defer r.Close()
	if _, err := Open(dir); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open: %v, want ErrInUse", err)
	}
}

// crash closes the stores as the end of a process would, without Close's
// sync: the marker stays.
func crash(r *Repo) {
	r.files.Close()
	r.kv.DB.Flush() // what a killed process's pebble keeps is not at issue here
	r.kv.Close()
}

func TestAfterAnUncleanShutdownPartialFilesAreDropped(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := open(t, dir)
	bs := []blocks.Block{block(t, 256<<10, 5), block(t, 256<<10, 6), block(t, 256<<10, 7)}
	if err := r.Blockstore().PutMany(ctx, bs); err != nil {
		t.Fatal(err)
	}
	crash(r)
	// What a machine crash can leave of a file written without a sync.
	if err := os.Truncate(filePath(dir, bs[1].Cid()), 1000); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filePath(dir, bs[2].Cid()), 0); err != nil {
		t.Fatal(err)
	}

	r = open(t, dir)
	if r.Dropped() != 2 {
		t.Errorf("Dropped = %d, want 2", r.Dropped())
	}
	for i, b := range bs {
		ok, err := r.Blockstore().Has(ctx, b.Cid())
		if err != nil || ok != (i == 0) {
			t.Errorf("block %d: Has = %v, %v; want %v", i, ok, err, i == 0)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, BlocksDir, unsyncedMarker)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Close the marker is still there: %v", err)
	}
	r = open(t, dir)
	defer r.Close()
	if r.Dropped() != 0 {
		t.Errorf("after a clean Close, Dropped = %d, want 0", r.Dropped())
	}
}

func TestQueriesSeeBothStores(t *testing.T) {
	ctx := context.Background()
	r := open(t, t.TempDir())
	defer r.Close()
	small, large := block(t, 100, 8), block(t, 64<<10, 9)
	if err := r.Blockstore().PutMany(ctx, []blocks.Block{small, large}); err != nil {
		t.Fatal(err)
	}
	other := datastore.NewKey("/gobitswap/roots/x")
	if err := r.Datastore().Put(ctx, other, nil); err != nil {
		t.Fatal(err)
	}
	keys := func(q dsq.Query) []string {
		t.Helper()
		res, err := r.Datastore().Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		all, err := res.Rest()
		if err != nil {
			t.Fatal(err)
		}
		var ks []string
		for _, e := range all {
			ks = append(ks, e.Key)
		}
		slices.Sort(ks)
		return ks
	}
	key := func(b blocks.Block) string {
		return "/blocks/" + base32.RawStdEncoding.EncodeToString(b.Cid().Hash())
	}
	want := []string{key(small), key(large)}
	slices.Sort(want)
	if got := keys(dsq.Query{Prefix: "/blocks", KeysOnly: true}); !slices.Equal(got, want) {
		t.Errorf("prefix /blocks: %v, want %v", got, want)
	}
	if got := keys(dsq.Query{Prefix: "/gobitswap", KeysOnly: true}); !slices.Equal(got, []string{other.String()}) {
		t.Errorf("prefix /gobitswap: %v", got)
	}
	if got := keys(dsq.Query{KeysOnly: true, Limit: 2, Orders: []dsq.Order{dsq.OrderByKey{}}}); len(got) != 2 {
		t.Errorf("limit 2 over everything: %v", got)
	}
	if got := keys(dsq.Query{Prefix: "/", KeysOnly: true}); len(got) != 3 {
		t.Errorf("everything: %v", got)
	}
}

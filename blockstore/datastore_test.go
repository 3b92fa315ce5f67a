package blockstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gobitswap/bitswap/blockstore"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
	ipld "github.com/ipfs/go-ipld-format"
	mh "github.com/multiformats/go-multihash"
	"go.uber.org/goleak"
)

// rawBlock returns data as a CIDv1 raw sha2-256 block.
func rawBlock(t testing.TB, data string) blocks.Block {
	t.Helper()
	h, err := mh.Sum([]byte(data), mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := blocks.NewBlockWithCid([]byte(data), cid.NewCidV1(cid.Raw, h))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// v0 returns the CIDv0 (dag-pb, sha2-256) naming the same multihash as c.
func v0(c cid.Cid) cid.Cid { return cid.NewCidV0(c.Hash()) }

// identityCid returns a CIDv1 raw identity-hash CID inlining data.
func identityCid(t testing.TB, data string) cid.Cid {
	t.Helper()
	h, err := mh.Sum([]byte(data), mh.IDENTITY, -1)
	if err != nil {
		t.Fatal(err)
	}
	return cid.NewCidV1(cid.Raw, h)
}

func newStore() (blockstore.Blockstore, datastore.Batching) {
	d := dssync.MutexWrap(datastore.NewMapDatastore())
	return blockstore.New(d), d
}

func TestPutThenGetReturnsTheSameBytesUnderTheCidAskedFor(t *testing.T) {
	ctx := t.Context()
	bs := blockstore.NewMemory()
	b := rawBlock(t, "hello")
	if err := bs.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	got, err := bs.Get(ctx, b.Cid())
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cid().Equals(b.Cid()) || string(got.RawData()) != "hello" {
		t.Fatalf("Get = %s %q, want %s %q", got.Cid(), got.RawData(), b.Cid(), "hello")
	}
}

func TestCidV0AndV1OfTheSameBytesAreOneBlock(t *testing.T) {
	ctx := t.Context()
	bs, d := newStore()
	b := rawBlock(t, "shared bytes")
	if err := bs.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	c0 := v0(b.Cid())

	if ok, err := bs.Has(ctx, c0); err != nil || !ok {
		t.Fatalf("Has(v0) = %v, %v; want true", ok, err)
	}
	got, err := bs.Get(ctx, c0)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Cid().Equals(c0) {
		t.Fatalf("Get(v0) returned CID %s, want the v0 CID asked for %s", got.Cid(), c0)
	}
	if n, err := bs.GetSize(ctx, c0); err != nil || n != len("shared bytes") {
		t.Fatalf("GetSize(v0) = %d, %v", n, err)
	}

	// Putting the v0 form again stores nothing new.
	b0, _ := blocks.NewBlockWithCid([]byte("shared bytes"), c0)
	if err := bs.Put(ctx, b0); err != nil {
		t.Fatal(err)
	}
	if n := countEntries(t, d); n != 1 {
		t.Fatalf("datastore holds %d entries, want 1", n)
	}

	// Deleting through either name deletes the one block.
	if err := bs.DeleteBlock(ctx, c0); err != nil {
		t.Fatal(err)
	}
	if ok, _ := bs.Has(ctx, b.Cid()); ok {
		t.Fatal("block still present under v1 after DeleteBlock(v0)")
	}
}

func TestKeysFollowTheBoxoLayout(t *testing.T) {
	ctx := t.Context()
	bs, d := newStore()
	if err := bs.Put(ctx, rawBlock(t, "hello")); err != nil {
		t.Fatal(err)
	}
	// /blocks/ + unpadded base32 of the sha2-256 multihash of "hello",
	// computed independently; Kubo's flatfs holds the same name.
	const want = "/blocks/CIQCZ4SNXJP3BIYOE3UDWKWFXHRJ4GYWDZOB7J2CLZZQIM3CSOFZQJA"
	if ok, err := d.Has(ctx, datastore.NewKey(want)); err != nil || !ok {
		t.Fatalf("datastore has no key %s (keys: %v)", want, keys(t, d))
	}
}

func TestWithPrefixRootStoresAtTheDatastoreRoot(t *testing.T) {
	ctx := t.Context()
	d := dssync.MutexWrap(datastore.NewMapDatastore())
	bs := blockstore.New(d, blockstore.WithPrefix(datastore.NewKey("/")))
	b := rawBlock(t, "hello")
	if err := bs.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	const want = "/CIQCZ4SNXJP3BIYOE3UDWKWFXHRJ4GYWDZOB7J2CLZZQIM3CSOFZQJA"
	if got := keys(t, d); !slices.Equal(got, []string{want}) {
		t.Fatalf("keys = %v, want [%s]", got, want)
	}
	if got := collect(t, bs, t.Context()); len(got) != 1 || !got[0].Equals(b.Cid()) {
		t.Fatalf("AllKeysChan = %v, want [%s]", got, b.Cid())
	}
}

func TestMissingBlocksAreIpldNotFoundNamingTheCid(t *testing.T) {
	ctx := t.Context()
	bs := blockstore.NewMemory()
	c := rawBlock(t, "absent").Cid()

	_, err := bs.Get(ctx, c)
	if !ipld.IsNotFound(err) {
		t.Fatalf("Get: err = %v, want ipld not-found", err)
	}
	var nf ipld.ErrNotFound
	if !errors.As(err, &nf) || !nf.Cid.Equals(c) {
		t.Fatalf("Get: err = %#v, want ipld.ErrNotFound{Cid: %s}", err, c)
	}

	n, err := bs.GetSize(ctx, c)
	if !ipld.IsNotFound(err) || n != -1 {
		t.Fatalf("GetSize = %d, %v; want -1, ipld not-found", n, err)
	}
	if ok, err := bs.Has(ctx, c); ok || err != nil {
		t.Fatalf("Has = %v, %v; want false, nil", ok, err)
	}
	if err := bs.DeleteBlock(ctx, c); err != nil {
		t.Fatalf("DeleteBlock of a missing block: %v, want nil", err)
	}
	if _, err := bs.Get(ctx, cid.Undef); !ipld.IsNotFound(err) {
		t.Fatalf("Get(cid.Undef): err = %v, want ipld not-found", err)
	}
}

func TestGetSizeAsksTheDatastoreForTheSizeOnly(t *testing.T) {
	ctx := t.Context()
	cd := &countingDatastore{Batching: dssync.MutexWrap(datastore.NewMapDatastore())}
	bs := blockstore.New(cd, blockstore.WithSizeCache(-1))
	b := rawBlock(t, "twelve bytes")
	if err := bs.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	n, err := bs.GetSize(ctx, b.Cid())
	if err != nil || n != 12 {
		t.Fatalf("GetSize = %d, %v; want 12", n, err)
	}
	if cd.gets.Load() != 0 || cd.getSizes.Load() != 1 {
		t.Fatalf("datastore Get called %d times, GetSize %d; want 0 and 1", cd.gets.Load(), cd.getSizes.Load())
	}
}

func TestPutManyWritesThroughOneBatch(t *testing.T) {
	ctx := t.Context()
	cd := &countingDatastore{Batching: dssync.MutexWrap(datastore.NewMapDatastore())}
	bs := blockstore.New(cd)
	bls := []blocks.Block{rawBlock(t, "a"), rawBlock(t, "b"), rawBlock(t, "c")}
	if err := bs.PutMany(ctx, bls); err != nil {
		t.Fatal(err)
	}
	if cd.batches.Load() != 1 || cd.puts.Load() != 0 {
		t.Fatalf("Batch called %d times and Put %d; want 1 and 0", cd.batches.Load(), cd.puts.Load())
	}
	for _, b := range bls {
		if ok, err := bs.Has(ctx, b.Cid()); err != nil || !ok {
			t.Fatalf("Has(%s) = %v, %v after PutMany", b.Cid(), ok, err)
		}
	}
}

// By default a block already stored is not written again; WriteThrough
// writes without asking.
func TestPutAsksFirstUnlessWriteThrough(t *testing.T) {
	ctx := t.Context()
	b := rawBlock(t, "stored once")
	for _, tt := range []struct {
		name              string
		opts              []blockstore.Option
		wantHas, wantPuts int64
	}{
		// Without the size cache, which would answer the second question.
		{"default", []blockstore.Option{blockstore.WithSizeCache(-1)}, 2, 1},
		{"write-through", []blockstore.Option{blockstore.WriteThrough(), blockstore.WithSizeCache(-1)}, 0, 2},
	} {
		cd := &countingDatastore{Batching: dssync.MutexWrap(datastore.NewMapDatastore())}
		bs := blockstore.New(cd, tt.opts...)
		for range 2 {
			if err := bs.Put(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
		if cd.hases.Load() != tt.wantHas || cd.puts.Load() != tt.wantPuts {
			t.Errorf("%s: two Puts of one block asked Has %d times and wrote %d times; want %d and %d",
				tt.name, cd.hases.Load(), cd.puts.Load(), tt.wantHas, tt.wantPuts)
		}
		hasBefore := cd.hases.Load()
		if err := bs.PutMany(ctx, []blocks.Block{b, rawBlock(t, "new")}); err != nil {
			t.Fatal(err)
		}
		if asked := cd.hases.Load() - hasBefore; (asked == 0) != (tt.wantHas == 0) {
			t.Errorf("%s: PutMany asked Has %d times", tt.name, asked)
		}
		if ok, err := bs.Has(ctx, b.Cid()); err != nil || !ok {
			t.Errorf("%s: Has = %v, %v after Put", tt.name, ok, err)
		}
	}
}

func TestValidatingRejectsCorruptDataNamingTheCid(t *testing.T) {
	ctx := t.Context()
	bs, d := newStore()
	b := rawBlock(t, "good data")
	if err := bs.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	// Corrupt the stored bytes behind the blockstore's back.
	k := datastore.NewKey(keys(t, d)[0])
	if err := d.Put(ctx, k, []byte("evil data")); err != nil {
		t.Fatal(err)
	}

	if got, err := bs.Get(ctx, b.Cid()); err != nil || string(got.RawData()) != "evil data" {
		t.Fatalf("unwrapped, Get = %v, %v; want the stored bytes unchecked", got, err)
	}

	vbs := blockstore.NewValidating(bs)
	got, err := vbs.Get(ctx, b.Cid())
	if !errors.Is(err, blockstore.ErrHashMismatch) || got != nil {
		t.Fatalf("Get = %v, %v; want no block and ErrHashMismatch", got, err)
	}
	if !strings.Contains(err.Error(), b.Cid().String()) {
		t.Fatalf("error %q does not name the CID %s", err, b.Cid())
	}
	if _, err := vbs.Get(ctx, v0(b.Cid())); !errors.Is(err, blockstore.ErrHashMismatch) {
		t.Fatalf("Get(v0): err = %v, want ErrHashMismatch", err)
	}
	// The other methods are the wrapped store's.
	if n, err := vbs.GetSize(ctx, b.Cid()); err != nil || n != len("evil data") {
		t.Fatalf("GetSize = %d, %v", n, err)
	}
	missing := rawBlock(t, "never stored")
	if _, err := vbs.Get(ctx, missing.Cid()); !ipld.IsNotFound(err) {
		t.Fatalf("Get(missing): err = %v, want not found", err)
	}
}

func TestValidatingAcceptsIntactData(t *testing.T) {
	ctx := t.Context()
	bs := blockstore.NewValidating(blockstore.NewMemory())
	b := rawBlock(t, "intact")
	if err := bs.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, c := range []cid.Cid{b.Cid(), v0(b.Cid()), identityCid(t, "inline")} {
		if _, err := bs.Get(ctx, c); err != nil {
			t.Fatalf("Get(%s): %v", c, err)
		}
	}
}

func TestIdentityCidsAreAnsweredFromTheCidWithoutStorage(t *testing.T) {
	ctx := t.Context()
	bs, d := newStore()
	c := identityCid(t, "inline")
	b, err := blocks.NewBlockWithCid([]byte("inline"), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := bs.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := bs.PutMany(ctx, []blocks.Block{b}); err != nil {
		t.Fatal(err)
	}
	if n := countEntries(t, d); n != 0 {
		t.Fatalf("identity block was written to the datastore (%d entries)", n)
	}

	// Never put, yet present: the data is in the CID.
	other := identityCid(t, "never put")
	if ok, err := bs.Has(ctx, other); err != nil || !ok {
		t.Fatalf("Has = %v, %v; want true", ok, err)
	}
	got, err := bs.Get(ctx, other)
	if err != nil || string(got.RawData()) != "never put" || !got.Cid().Equals(other) {
		t.Fatalf("Get = %v, %v", got, err)
	}
	if n, err := bs.GetSize(ctx, other); err != nil || n != len("never put") {
		t.Fatalf("GetSize = %d, %v", n, err)
	}
	if err := bs.DeleteBlock(ctx, other); err != nil {
		t.Fatal(err)
	}
	if ok, _ := bs.Has(ctx, other); !ok {
		t.Fatal("an identity CID cannot be deleted; Has must stay true")
	}
	if got := collect(t, bs, ctx); len(got) != 0 {
		t.Fatalf("AllKeysChan lists identity CIDs: %v", got)
	}
}

func TestAllKeysChanListsEveryBlockAsCidV1Raw(t *testing.T) {
	ctx := t.Context()
	bs, d := newStore()
	var want []string
	for _, s := range []string{"one", "two", "three"} {
		b := rawBlock(t, s)
		// Store one of them through its CIDv0 name: it still lists as v1 raw.
		if s == "two" {
			b, _ = blocks.NewBlockWithCid(b.RawData(), v0(b.Cid()))
		}
		if err := bs.Put(ctx, b); err != nil {
			t.Fatal(err)
		}
		want = append(want, cid.NewCidV1(cid.Raw, b.Cid().Hash()).String())
	}
	// Keys outside the block namespace are not blocks.
	if err := d.Put(ctx, datastore.NewKey("/local/filesroot"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := d.Put(ctx, datastore.NewKey("/blocks/not-base32!"), []byte("x")); err != nil {
		t.Fatal(err)
	}

	var got []string
	for _, c := range collect(t, bs, ctx) {
		got = append(got, c.String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("AllKeysChan = %v\nwant %v", got, want)
	}
}

func TestAllKeysChanStopsWhenContextIsCancelled(t *testing.T) {
	defer goleak.VerifyNone(t)
	bs := blockstore.NewMemory()
	var bls []blocks.Block
	for i := range 1000 { // well past the channel's buffer
		bls = append(bls, rawBlock(t, strings.Repeat("x", i)))
	}
	if err := bs.PutMany(t.Context(), bls); err != nil {
		t.Fatal(err)
	}

	t.Run("after reading some", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		ch, err := bs.AllKeysChan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			<-ch
		}
		cancel()
		n := 0
		for range ch { // must close, having sent at most what was buffered
			n++
		}
		if n >= 990 {
			t.Fatalf("read %d more keys after cancel; listing did not stop", n)
		}
	})
	t.Run("without reading", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		if _, err := bs.AllKeysChan(ctx); err != nil {
			t.Fatal(err)
		}
		cancel() // the abandoned channel must not pin a goroutine
	})
}

// collect drains AllKeysChan.
func collect(t *testing.T, bs blockstore.Blockstore, ctx context.Context) []cid.Cid {
	t.Helper()
	ch, err := bs.AllKeysChan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []cid.Cid
	for c := range ch {
		out = append(out, c)
	}
	return out
}

func keys(t *testing.T, d datastore.Batching) []string {
	t.Helper()
	var out []string
	for e, err := range datastore.QueryIter(t.Context(), d, queryAll) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e.Key)
	}
	slices.Sort(out)
	return out
}

func countEntries(t *testing.T, d datastore.Batching) int { return len(keys(t, d)) }

// countingDatastore counts the calls the blockstore makes.
type countingDatastore struct {
	datastore.Batching
	gets, getSizes, puts, batches, hases atomic.Int64
}

func (c *countingDatastore) Has(ctx context.Context, k datastore.Key) (bool, error) {
	c.hases.Add(1)
	return c.Batching.Has(ctx, k)
}

func (c *countingDatastore) Get(ctx context.Context, k datastore.Key) ([]byte, error) {
	c.gets.Add(1)
	return c.Batching.Get(ctx, k)
}

func (c *countingDatastore) GetSize(ctx context.Context, k datastore.Key) (int, error) {
	c.getSizes.Add(1)
	return c.Batching.GetSize(ctx, k)
}

func (c *countingDatastore) Put(ctx context.Context, k datastore.Key, v []byte) error {
	c.puts.Add(1)
	return c.Batching.Put(ctx, k, v)
}

func (c *countingDatastore) Batch(ctx context.Context) (datastore.Batch, error) {
	c.batches.Add(1)
	return c.Batching.Batch(ctx)
}

// queryAll lists every key in a datastore.
var queryAll = dsq.Query{KeysOnly: true}

// Sizes of stored blocks are remembered: once a block was put, read or
// sized, GetSize and Has answer without the datastore, under any CID version
// of its multihash. DeleteBlock forgets, and misses always ask.
func TestSizesOfStoredBlocksAreRemembered(t *testing.T) {
	ctx := t.Context()
	cd := &countingDatastore{Batching: dssync.MutexWrap(datastore.NewMapDatastore())}
	bs := blockstore.New(cd, blockstore.WithSizeCache(2))
	a, b, c := rawBlock(t, "twelve bytes"), rawBlock(t, "second"), rawBlock(t, "third!")
	if err := bs.PutMany(ctx, []blocks.Block{a, b}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []cid.Cid{a.Cid(), v0(a.Cid())} {
		if n, err := bs.GetSize(ctx, k); err != nil || n != 12 {
			t.Fatalf("GetSize(%s) = %d, %v; want 12", k, n, err)
		}
		if ok, err := bs.Has(ctx, k); err != nil || !ok {
			t.Fatalf("Has(%s) = %v, %v", k, ok, err)
		}
	}
	if cd.getSizes.Load() != 0 || cd.hases.Load() != 2 { // the two Has of PutMany
		t.Fatalf("datastore GetSize %d, Has %d times; want 0 and 2 (PutMany's own)", cd.getSizes.Load(), cd.hases.Load())
	}
	// A third block pushes the least recently used (b) out.
	if err := bs.Put(ctx, c); err != nil {
		t.Fatal(err)
	}
	before := cd.getSizes.Load()
	if _, err := bs.GetSize(ctx, b.Cid()); err != nil {
		t.Fatal(err)
	}
	if cd.getSizes.Load() != before+1 {
		t.Fatal("an evicted size did not go to the datastore")
	}
	if err := bs.DeleteBlock(ctx, c.Cid()); err != nil {
		t.Fatal(err)
	}
	if _, err := bs.GetSize(ctx, c.Cid()); !ipld.IsNotFound(err) {
		t.Fatalf("GetSize after DeleteBlock: %v, want not found", err)
	}
	if ok, _ := bs.Has(ctx, c.Cid()); ok {
		t.Fatal("Has after DeleteBlock = true")
	}
}

// A block the datastore lacks is remembered as missing, so asking again
// costs nothing, until a Put of it; Get always asks the datastore.
func TestMissingBlocksAreRememberedUntilPut(t *testing.T) {
	ctx := t.Context()
	cd := &countingDatastore{Batching: dssync.MutexWrap(datastore.NewMapDatastore())}
	bs := blockstore.New(cd)
	b := rawBlock(t, "not yet")
	for range 3 {
		if _, err := bs.GetSize(ctx, b.Cid()); !ipld.IsNotFound(err) {
			t.Fatalf("GetSize: %v, want not found", err)
		}
		if ok, _ := bs.Has(ctx, b.Cid()); ok {
			t.Fatal("Has = true for a missing block")
		}
	}
	if n := cd.getSizes.Load() + cd.hases.Load(); n != 1 {
		t.Fatalf("datastore asked %d times, want once", n)
	}
	if err := bs.Put(ctx, b); err != nil {
		t.Fatal(err)
	}
	if n, err := bs.GetSize(ctx, b.Cid()); err != nil || n != len("not yet") {
		t.Fatalf("GetSize after Put = %d, %v", n, err)
	}
	if _, err := bs.Get(ctx, rawBlock(t, "never").Cid()); !ipld.IsNotFound(err) {
		t.Fatalf("Get of a missing block: %v", err)
	}
	if cd.gets.Load() != 1 {
		t.Fatalf("Get asked the datastore %d times, want 1", cd.gets.Load())
	}
}

// With a bloom filter, once it is filled from the datastore's keys, Has and
// GetSize for blocks that are not stored never reach the datastore, while
// stored blocks (listed at the start or put since) are still found.
func TestBloomFilterAnswersForMissingBlocks(t *testing.T) {
	ctx := t.Context()
	cd := &countingDatastore{Batching: dssync.MutexWrap(datastore.NewMapDatastore())}
	old := rawBlock(t, "stored before")
	if err := blockstore.New(cd).Put(ctx, old); err != nil {
		t.Fatal(err)
	}
	bs := blockstore.New(cd, blockstore.WithBloomFilter(1000), blockstore.WithSizeCache(-1))
	<-bs.(interface{ BloomFilled() <-chan struct{} }).BloomFilled()
	fresh := rawBlock(t, "put after")
	if err := bs.Put(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	before := cd.hases.Load() + cd.getSizes.Load()
	for i := range 200 {
		c := rawBlock(t, fmt.Sprint("missing ", i)).Cid()
		if ok, err := bs.Has(ctx, c); ok || err != nil {
			t.Fatalf("Has(missing) = %v, %v", ok, err)
		}
		if _, err := bs.GetSize(ctx, c); !ipld.IsNotFound(err) {
			t.Fatalf("GetSize(missing): %v", err)
		}
	}
	// 400 questions at 1 % false positives: a handful reach the datastore.
	if asked := cd.hases.Load() + cd.getSizes.Load() - before; asked > 20 {
		t.Fatalf("%d of 400 questions for missing blocks reached the datastore", asked)
	}
	for _, b := range []blocks.Block{old, fresh} {
		if n, err := bs.GetSize(ctx, b.Cid()); err != nil || n != len(b.RawData()) {
			t.Fatalf("GetSize(%s) = %d, %v", b.Cid(), n, err)
		}
	}
}

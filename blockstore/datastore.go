package blockstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	lru "github.com/hashicorp/golang-lru/v2"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	dssync "github.com/ipfs/go-datastore/sync"
	ipld "github.com/ipfs/go-ipld-format"
	base32 "github.com/multiformats/go-base32"
	mh "github.com/multiformats/go-multihash"
)

// DefaultPrefix is the datastore namespace blocks live under unless
// WithPrefix says otherwise. It is the one boxo and Kubo use, so a repository
// written by either reads the same through this package.
var DefaultPrefix = datastore.NewKey("/blocks")

// Option configures a Blockstore built by New.
type Option func(*config)

type config struct {
	prefix        datastore.Key
	writeThrough  bool
	sizeCache     int
	bloomExpected int
}

// DefaultSizeCache is how many block sizes New remembers (WithSizeCache):
// about 2 MiB.
const DefaultSizeCache = 16384

// WithSizeCache sets how many answers of GetSize and Has the Blockstore
// remembers, most recently used first: a block's size, or that it is
// missing. Asked again, they do not go to the datastore (boxo's ARC cache
// does the same). It matters because go-ds-pebble, like most LSM stores
// without bloom filters, answers GetSize and Has by reading a data block,
// a whole 256 KiB value when blocks are that large, even for a key it does
// not have: a client toggling wants for blocks a server lacks made it read
// and checksum 256 KiB per question, 73 % of its CPU in the attack suite.
// Put, PutMany and DeleteBlock update what is remembered, so the cache
// assumes blocks are added and deleted only through this Blockstore; Get
// always reads the datastore. 0 keeps the default, DefaultSizeCache; n < 0
// turns it off.
func WithSizeCache(n int) Option {
	return func(c *config) {
		if n != 0 {
			c.sizeCache = n
		}
	}
}

// WriteThrough makes Put and PutMany write every block without first asking
// the datastore whether it is already there (boxo's option of the same
// name). Use it when that question costs about as much as the write: an
// LSM store such as go-ds-pebble answers Has by reading the value, which
// for a fresh 256 KiB block means probing every level for nothing (about
// 15 % of the CPU of a Bitswap fetch into pebble, measured in
// interop/cmd/bench). The price is rewriting blocks already stored.
func WriteThrough() Option {
	return func(c *config) { c.writeThrough = true }
}

// WithPrefix stores blocks under prefix instead of DefaultPrefix. Pass
// datastore.NewKey("/") to store them at the datastore's root, as boxo's
// NoPrefix option does.
func WithPrefix(prefix datastore.Key) Option {
	return func(c *config) { c.prefix = prefix }
}

// New returns a Blockstore keeping blocks in d. Each block is stored under
// <prefix>/<unpadded RFC 4648 base32 of its multihash>, the layout boxo uses,
// so CIDs that differ only in version or codec name one entry.
//
// CIDs with the identity hash carry their data inline: they are answered
// from the CID itself and never written to d, like boxo's idstore.
//
// The returned Blockstore is as safe for concurrent use as d is; wrap a
// datastore that is not (such as a bare MapDatastore) with
// go-datastore/sync.MutexWrap.
func New(d datastore.Batching, opts ...Option) Blockstore {
	c := config{prefix: DefaultPrefix, sizeCache: DefaultSizeCache}
	for _, o := range opts {
		o(&c)
	}
	p := c.prefix.String()
	if p == "/" {
		p = "" // keys are then "/<base32>", not "//<base32>"
	}
	bs := &dsBlockstore{ds: d, prefix: p, writeThrough: c.writeThrough}
	if c.sizeCache > 0 {
		bs.sizes, _ = lru.New[string, int](c.sizeCache) // fails only for n <= 0
	}
	if c.bloomExpected > 0 {
		bs.keys = newKeyFilter(c.bloomExpected)
		go bs.fill(bs.keys)
	}
	return bs
}

// NewMemory returns a Blockstore in memory, safe for concurrent use: New on
// a mutex-wrapped MapDatastore. It suits tests and small tools.
func NewMemory() Blockstore {
	return New(dssync.MutexWrap(datastore.NewMapDatastore()))
}

// dsBlockstore is the Blockstore returned by New.
type dsBlockstore struct {
	ds           datastore.Batching
	prefix       string // "" or a clean key such as "/blocks"
	writeThrough bool
	// sizes maps multihashes to the size of their stored block, or to
	// missing when the datastore had none; nil when off.
	sizes *lru.Cache[string, int]
	// keys is the bloom filter of stored blocks; nil when off.
	keys *keyFilter
}

// missing is the size remembered for a block the datastore does not have.
const missing = -1

// cachedSize returns the remembered size of the block with multihash h, or
// missing (also when the bloom filter rules it out).
func (bs *dsBlockstore) cachedSize(h mh.Multihash) (int, bool) {
	if bs.keys != nil && bs.keys.rulesOut(h) {
		return missing, true
	}
	if bs.sizes == nil {
		return 0, false
	}
	return bs.sizes.Get(string(h))
}

// remember records the size of the block with multihash h (missing: there
// is none).
func (bs *dsBlockstore) remember(h mh.Multihash, n int) {
	if bs.keys != nil && n != missing {
		bs.keys.add(h)
	}
	if bs.sizes != nil {
		bs.sizes.Add(string(h), n)
	}
}

var _ Blockstore = (*dsBlockstore)(nil)

// key returns the datastore key for a multihash.
func (bs *dsBlockstore) key(h mh.Multihash) datastore.Key {
	var b strings.Builder
	b.Grow(len(bs.prefix) + 1 + base32.RawStdEncoding.EncodedLen(len(h)))
	b.WriteString(bs.prefix)
	b.WriteByte('/')
	b.WriteString(base32.RawStdEncoding.EncodeToString(h))
	// RawKey skips cleaning: the base32 alphabet has no '/' or '.'.
	return datastore.RawKey(b.String())
}

// inline returns the data carried by an identity-hash CID.
func inline(c cid.Cid) ([]byte, bool) {
	if c.Prefix().MhType != mh.IDENTITY {
		return nil, false
	}
	dh, err := mh.Decode(c.Hash())
	if err != nil {
		return nil, false
	}
	return dh.Digest, true
}

func (bs *dsBlockstore) Has(ctx context.Context, c cid.Cid) (bool, error) {
	if !c.Defined() {
		return false, nil
	}
	if _, ok := inline(c); ok {
		return true, nil
	}
	if n, ok := bs.cachedSize(c.Hash()); ok {
		return n != missing, nil
	}
	ok, err := bs.ds.Has(ctx, bs.key(c.Hash()))
	if err != nil {
		return false, fmt.Errorf("blockstore: has %s: %w", c, err)
	}
	if !ok {
		bs.remember(c.Hash(), missing)
	}
	return ok, nil
}

func (bs *dsBlockstore) Get(ctx context.Context, c cid.Cid) (blocks.Block, error) {
	if !c.Defined() {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	if data, ok := inline(c); ok {
		return blocks.NewBlockWithCid(data, c)
	}
	data, err := bs.ds.Get(ctx, bs.key(c.Hash()))
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	if err != nil {
		return nil, fmt.Errorf("blockstore: get %s: %w", c, err)
	}
	bs.remember(c.Hash(), len(data))
	// The block carries the CID asked for, so a CIDv0 request gets a CIDv0
	// block even if it was stored as CIDv1.
	return blocks.NewBlockWithCid(data, c)
}

func (bs *dsBlockstore) GetSize(ctx context.Context, c cid.Cid) (int, error) {
	if !c.Defined() {
		return -1, ipld.ErrNotFound{Cid: c}
	}
	if data, ok := inline(c); ok {
		return len(data), nil
	}
	if n, ok := bs.cachedSize(c.Hash()); ok {
		if n == missing {
			return -1, ipld.ErrNotFound{Cid: c}
		}
		return n, nil
	}
	n, err := bs.ds.GetSize(ctx, bs.key(c.Hash()))
	if errors.Is(err, datastore.ErrNotFound) {
		bs.remember(c.Hash(), missing)
		return -1, ipld.ErrNotFound{Cid: c}
	}
	if err != nil {
		return -1, fmt.Errorf("blockstore: get size %s: %w", c, err)
	}
	bs.remember(c.Hash(), n)
	return n, nil
}

func (bs *dsBlockstore) Put(ctx context.Context, b blocks.Block) error {
	c := b.Cid()
	if !c.Defined() {
		return errors.New("blockstore: put: block has an undefined CID")
	}
	if _, ok := inline(c); ok {
		return nil
	}
	k := bs.key(c.Hash())
	if bs.stored(ctx, c.Hash(), k) {
		bs.remember(c.Hash(), len(b.RawData()))
		return nil
	}
	if err := bs.ds.Put(ctx, k, b.RawData()); err != nil {
		return fmt.Errorf("blockstore: put %s: %w", c, err)
	}
	bs.remember(c.Hash(), len(b.RawData()))
	return nil
}

// stored says whether k need not be written: it is there already. Has is
// cheaper than Put on most disk-backed datastores, and blocks are immutable,
// so an existing entry is never rewritten, unless WriteThrough says not to
// ask.
func (bs *dsBlockstore) stored(ctx context.Context, h mh.Multihash, k datastore.Key) bool {
	if bs.writeThrough {
		return false
	}
	if n, ok := bs.cachedSize(h); ok {
		return n != missing // if wrongly missing, the block is written again
	}
	ok, err := bs.ds.Has(ctx, k)
	return err == nil && ok
}

func (bs *dsBlockstore) PutMany(ctx context.Context, bls []blocks.Block) error {
	batch, err := bs.ds.Batch(ctx)
	if err != nil {
		return fmt.Errorf("blockstore: put many: %w", err)
	}
	for _, b := range bls {
		c := b.Cid()
		if !c.Defined() {
			return errors.New("blockstore: put many: block has an undefined CID")
		}
		if _, ok := inline(c); ok {
			continue
		}
		k := bs.key(c.Hash())
		if bs.stored(ctx, c.Hash(), k) {
			continue
		}
		if err := batch.Put(ctx, k, b.RawData()); err != nil {
			return fmt.Errorf("blockstore: put many %s: %w", c, err)
		}
	}
	if err := batch.Commit(ctx); err != nil {
		return fmt.Errorf("blockstore: put many: commit: %w", err)
	}
	for _, b := range bls {
		if _, ok := inline(b.Cid()); !ok {
			bs.remember(b.Cid().Hash(), len(b.RawData()))
		}
	}
	return nil
}

func (bs *dsBlockstore) DeleteBlock(ctx context.Context, c cid.Cid) error {
	if !c.Defined() {
		return nil
	}
	if _, ok := inline(c); ok {
		return nil
	}
	if err := bs.ds.Delete(ctx, bs.key(c.Hash())); err != nil {
		return fmt.Errorf("blockstore: delete %s: %w", c, err)
	}
	// A GetSize that read the entry just before the delete may still
	// remember it: the block then looks present until evicted, as it would
	// to a caller that asked a moment earlier, and Get reports it missing.
	bs.remember(c.Hash(), missing)
	return nil
}

// AllKeysChan lists every stored block as a CIDv1 with the raw codec, since
// only the multihash is stored (boxo does the same). Identity-hash CIDs are
// not stored and so not listed. Datastore keys that are not block keys are
// skipped. The channel closes when the listing ends, fails or ctx is done;
// the goroutine filling it always exits then, whether or not the caller
// drains the channel.
func (bs *dsBlockstore) AllKeysChan(ctx context.Context) (<-chan cid.Cid, error) {
	res, err := bs.ds.Query(ctx, dsq.Query{Prefix: bs.prefixOrRoot(), KeysOnly: true})
	if err != nil {
		return nil, fmt.Errorf("blockstore: list keys: %w", err)
	}
	out := make(chan cid.Cid, dsq.KeysOnlyBufSize)
	go func() {
		defer close(out)
		defer res.Close() // also tells the datastore to stop early
		for {
			if ctx.Err() != nil {
				return
			}
			r, ok := res.NextSync()
			if !ok || r.Error != nil {
				return
			}
			h, ok := bs.parseKey(r.Key)
			if !ok {
				continue
			}
			select {
			case out <- cid.NewCidV1(cid.Raw, h):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func (bs *dsBlockstore) prefixOrRoot() string {
	if bs.prefix == "" {
		return "/"
	}
	return bs.prefix
}

// parseKey returns the multihash a datastore key names, or false if the key
// is not a block key under our prefix.
func (bs *dsBlockstore) parseKey(k string) (mh.Multihash, bool) {
	rest, ok := strings.CutPrefix(k, bs.prefix+"/")
	if !ok || strings.Contains(rest, "/") {
		return nil, false
	}
	raw, err := base32.RawStdEncoding.DecodeString(rest)
	if err != nil {
		return nil, false
	}
	h, err := mh.Cast(raw)
	if err != nil {
		return nil, false
	}
	return h, true
}

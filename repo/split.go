package repo

import (
	"context"
	"errors"
	"strings"

	datastore "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

// splitDatastore is one keyspace over two stores: block keys (under
// blocksPrefix) whose values are at least large bytes go to files, as
// "/<base32>" there; every other key, small blocks included, goes to kv.
// Reads of a block key try kv first, then files, so a repo written before
// files existed (every block in kv) reads as it did.
type splitDatastore struct {
	kv    datastore.Batching
	files datastore.Batching
	large int
	// wrote, if set, is told of every file written, with its size.
	wrote func(n int)
}

// putFile writes one block file.
func (d *splitDatastore) putFile(ctx context.Context, k datastore.Key, v []byte) error {
	if err := d.files.Put(ctx, k, v); err != nil {
		return err
	}
	if d.wrote != nil {
		d.wrote(len(v))
	}
	return nil
}

const blocksPrefix = "/blocks/"

var _ datastore.Batching = (*splitDatastore)(nil)

// fileKey returns k's key in files, if k is a block key.
func fileKey(k datastore.Key) (datastore.Key, bool) {
	s := k.String()
	if !strings.HasPrefix(s, blocksPrefix) || len(s) == len(blocksPrefix) {
		return datastore.Key{}, false
	}
	return datastore.RawKey(s[len(blocksPrefix)-1:]), true
}

func (d *splitDatastore) Put(ctx context.Context, k datastore.Key, v []byte) error {
	if fk, ok := fileKey(k); ok && len(v) >= d.large {
		return d.putFile(ctx, fk, v)
	}
	return d.kv.Put(ctx, k, v)
}

func (d *splitDatastore) Get(ctx context.Context, k datastore.Key) ([]byte, error) {
	v, err := d.kv.Get(ctx, k)
	if fk, ok := fileKey(k); ok && errors.Is(err, datastore.ErrNotFound) {
		return d.files.Get(ctx, fk)
	}
	return v, err
}

func (d *splitDatastore) Has(ctx context.Context, k datastore.Key) (bool, error) {
	ok, err := d.kv.Has(ctx, k)
	if fk, isBlock := fileKey(k); isBlock && err == nil && !ok {
		return d.files.Has(ctx, fk)
	}
	return ok, err
}

func (d *splitDatastore) GetSize(ctx context.Context, k datastore.Key) (int, error) {
	n, err := d.kv.GetSize(ctx, k)
	if fk, ok := fileKey(k); ok && errors.Is(err, datastore.ErrNotFound) {
		return d.files.GetSize(ctx, fk)
	}
	return n, err
}

func (d *splitDatastore) Delete(ctx context.Context, k datastore.Key) error {
	if err := d.kv.Delete(ctx, k); err != nil {
		return err
	}
	if fk, ok := fileKey(k); ok {
		if err := d.files.Delete(ctx, fk); err != nil && !errors.Is(err, datastore.ErrNotFound) {
			return err
		}
	}
	return nil
}

func (d *splitDatastore) Sync(ctx context.Context, prefix datastore.Key) error {
	if err := d.files.Sync(ctx, datastore.NewKey("/")); err != nil {
		return err
	}
	return d.kv.Sync(ctx, prefix)
}

// Close closes neither store: the Repo owns them.
func (d *splitDatastore) Close() error { return nil }

// Query lists kv's matches, then, when the prefix reaches block keys,
// those of files. Filters, orders, offset and limit apply to the whole.
func (d *splitDatastore) Query(ctx context.Context, q dsq.Query) (dsq.Results, error) {
	prefix := datastore.NewKey(q.Prefix).String()
	var filesPrefix string
	covers := false
	switch {
	case prefix == "/" || prefix == "/blocks":
		covers, filesPrefix = true, "/"
	case strings.HasPrefix(prefix, blocksPrefix):
		covers, filesPrefix = true, prefix[len(blocksPrefix)-1:]
	}
	if !covers {
		return d.kv.Query(ctx, q)
	}
	plain := dsq.Query{Prefix: q.Prefix, KeysOnly: q.KeysOnly, ReturnsSizes: q.ReturnsSizes, ReturnExpirations: q.ReturnExpirations}
	kvRes, err := d.kv.Query(ctx, plain)
	if err != nil {
		return nil, err
	}
	plain.Prefix = filesPrefix
	fileRes, err := d.files.Query(ctx, plain)
	if err != nil {
		kvRes.Close()
		return nil, err
	}
	merged := dsq.ResultsWithContext(q, func(ctx context.Context, out chan<- dsq.Result) {
		defer kvRes.Close()
		defer fileRes.Close()
		send := func(r dsq.Result) bool {
			select {
			case out <- r:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for r := range kvRes.Next() {
			if !send(r) {
				return
			}
		}
		for r := range fileRes.Next() {
			if r.Error == nil {
				r.Key = "/blocks" + r.Key
			}
			if !send(r) {
				return
			}
		}
	})
	rest := q
	rest.Prefix = ""
	return dsq.NaiveQueryApply(rest, merged), nil
}

func (d *splitDatastore) Batch(ctx context.Context) (datastore.Batch, error) {
	kb, err := d.kv.Batch(ctx)
	if err != nil {
		return nil, err
	}
	return &splitBatch{d: d, kv: kb}, nil
}

// splitBatch routes a batch's writes as splitDatastore routes Puts. The
// large values are written as files at Commit, a few at once: flatfs's own
// batch makes and removes a directory per batch, which costs more than
// the files when a batch is a message's one or two blocks.
type splitBatch struct {
	d       *splitDatastore
	kv      datastore.Batch
	puts    []filePut
	deletes []datastore.Key
}

type filePut struct {
	k datastore.Key
	v []byte
}

// fileWriters is how many files a Commit writes at once.
const fileWriters = 4

func (b *splitBatch) Put(ctx context.Context, k datastore.Key, v []byte) error {
	if fk, ok := fileKey(k); ok && len(v) >= b.d.large {
		b.puts = append(b.puts, filePut{fk, v})
		return nil
	}
	return b.kv.Put(ctx, k, v)
}

func (b *splitBatch) Delete(ctx context.Context, k datastore.Key) error {
	if fk, ok := fileKey(k); ok {
		b.deletes = append(b.deletes, fk)
	}
	return b.kv.Delete(ctx, k)
}

// Commit writes the files first: a block is listed in kv only by its
// key, so neither order can leave a reference to a missing value.
func (b *splitBatch) Commit(ctx context.Context) error {
	if err := b.writeFiles(ctx); err != nil {
		return err
	}
	for _, k := range b.deletes {
		if err := b.d.files.Delete(ctx, k); err != nil && !errors.Is(err, datastore.ErrNotFound) {
			return err
		}
	}
	return b.kv.Commit(ctx)
}

func (b *splitBatch) writeFiles(ctx context.Context) error {
	if len(b.puts) == 1 {
		return b.d.putFile(ctx, b.puts[0].k, b.puts[0].v)
	}
	next := make(chan filePut)
	errs := make(chan error, fileWriters)
	n := min(fileWriters, len(b.puts))
	for range n {
		go func() {
			var first error
			for p := range next {
				if first == nil {
					first = b.d.putFile(ctx, p.k, p.v)
				}
			}
			errs <- first
		}()
	}
	for _, p := range b.puts {
		next <- p
	}
	close(next)
	var err error
	for range n {
		if e := <-errs; err == nil {
			err = e
		}
	}
	return err
}

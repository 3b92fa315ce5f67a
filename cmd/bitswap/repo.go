package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	pebbleds "github.com/ipfs/go-ds-pebble"
	car "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"

	"github.com/gobitswap/bitswap/blockstore"
)

// repo is a persistent blockstore in a directory: a Pebble datastore holding
// blocks under /blocks (the layout boxo and Kubo use) and the roots of
// imported CARs under /gobitswap/roots.
type repo struct {
	ds *pebbleds.Datastore
	bs blockstore.Blockstore
}

var rootsPrefix = "/gobitswap/roots/"

func defaultRepoDir() string {
	if d := os.Getenv("GOBITSWAP_REPO"); d != "" {
		return d
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".gobitswap")
	}
	return "bitswap-repo"
}

func openRepo(dir string) (*repo, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("repo %s: %w", dir, err)
	}
	// Pebble would otherwise fail deep inside with a less helpful message.
	probe, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return nil, fmt.Errorf("repo %s: not writable: %w", dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	ds, err := pebbleds.NewDatastore(dir, pebbleds.WithPebbleOpts(repoPebbleOptions()))
	if errors.Is(err, syscall.EAGAIN) { // pebble's lock file
		return nil, fmt.Errorf("repo %s: in use by another process: %w", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("repo %s: %w", dir, err)
	}
	return &repo{ds: ds, bs: blockstore.New(ds, blockstore.WithBloomFilter(repoBloomKeys))}, nil
}

// repoBloomKeys sizes the repository's bloom filter of stored blocks
// (blockstore.WithBloomFilter): 1.2 MiB; with more blocks it answers more
// questions with "maybe", which go to pebble.
const repoBloomKeys = 1 << 20

// repoPebbleOptions tunes Pebble for blocks, which are large (256 KiB to
// 1 MiB typically), immutable and, being mostly compressed or encrypted
// media, incompressible. With Pebble's defaults a gigabyte of 1 MiB blocks
// went in at 44–51 MB/s on a disk that writes 360 MB/s: each byte was
// written to the WAL, flushed, then rewritten by compactions at every level,
// and snappy-compressed each time to no effect. So:
//   - values of 1 KiB and more live in blob files that compactions do not
//     rewrite (value separation, format FormatValueSeparation: a repo opened
//     here is upgraded to it, one way);
//   - no compression;
//   - a 64 MiB memtable and a higher L0 threshold, so a bulk fetch flushes
//     in large files and compacts less often;
//   - no write-ahead log: Close flushes the memtable, so a clean exit (also
//     on SIGINT, or an error) loses nothing; a crash or SIGKILL loses at most
//     the blocks stored since the last flush, which a resumed get fetches
//     again (blocks are addressed by content: a repo never holds a wrong
//     one, only fewer).
//
// Measured on the same machine in one sitting (1 GiB, blocks written as the
// BlockRouter writes them): 1 MiB blocks 44 → 175 MB/s, 256 KiB blocks 33 →
// 137 MB/s.
// repoMemTableSize is the size of each of the repo's memtables.
const repoMemTableSize = 64 << 20

func repoPebbleOptions() *pebble.Options {
	o := &pebble.Options{
		MemTableSize:          repoMemTableSize,
		L0CompactionThreshold: 8,
		L0StopWritesThreshold: 64,
		DisableWAL:            true,
		FormatMajorVersion:    pebble.FormatValueSeparation,
	}
	for i := range o.Levels {
		o.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	o.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled:               true,
			MinimumSize:           1024,
			MaxBlobReferenceDepth: 10,
			RewriteMinimumAge:     5 * time.Minute,
			TargetGarbageRatio:    0.2,
		}
	}
	return o
}

// Close flushes what Pebble holds in memory (there is no write-ahead log)
// and closes the repo.
func (r *repo) Close() error {
	ferr := r.ds.DB.Flush()
	if err := r.ds.Close(); err != nil {
		return err
	}
	if ferr != nil {
		return fmt.Errorf("flushing: %w", ferr)
	}
	return nil
}

func (r *repo) addRoot(ctx context.Context, c cid.Cid) error {
	return r.ds.Put(ctx, datastore.NewKey(rootsPrefix+c.String()), nil)
}

func (r *repo) roots(ctx context.Context) ([]cid.Cid, error) {
	res, err := r.ds.Query(ctx, dsq.Query{Prefix: rootsPrefix, KeysOnly: true})
	if err != nil {
		return nil, err
	}
	defer res.Close()
	var out []cid.Cid
	for e := range res.Next() {
		if e.Error != nil {
			return nil, e.Error
		}
		c, err := cid.Decode(strings.TrimPrefix(e.Key, rootsPrefix))
		if err == nil {
			out = append(out, c)
		}
	}
	return out, nil
}

// importCAR reads a CARv1 or CARv2 file, checking every block against its
// CID, into the repo, and records its roots.
func (r *repo) importCAR(ctx context.Context, path string) (roots []cid.Cid, n int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	br, err := car.NewBlockReader(bufio.NewReaderSize(f, 1<<20), car.WithTrustedCAR(false))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: not a CAR file: %w", path, err)
	}
	batch := make([]blocks.Block, 0, 256)
	put := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := r.bs.PutMany(ctx, batch)
		batch = batch[:0]
		return err
	}
	for {
		blk, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, n, fmt.Errorf("%s: truncated CAR after %d blocks", path, n)
			}
			return nil, n, fmt.Errorf("%s: corrupt CAR after %d blocks: %w", path, n, err)
		}
		batch = append(batch, blk)
		n++
		if len(batch) == cap(batch) {
			if err := put(); err != nil {
				return nil, n, err
			}
		}
	}
	if err := put(); err != nil {
		return nil, n, err
	}
	for _, c := range br.Roots {
		if err := r.addRoot(ctx, c); err != nil {
			return nil, n, err
		}
	}
	return br.Roots, n, nil
}

// carWriter streams a CARv1 with one root.
type carWriter struct {
	bw *bufio.Writer
	sc storage.WritableCar
}

func newCARWriter(w io.Writer, root cid.Cid) (*carWriter, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	// Hide any WriterAt (os.Stdout has one) so the CAR is written as a
	// stream.
	sc, err := storage.NewWritable(struct{ io.Writer }{bw}, []cid.Cid{root}, car.WriteAsCarV1(true), car.StoreIdentityCIDs(false))
	if err != nil {
		return nil, err
	}
	return &carWriter{bw: bw, sc: sc}, nil
}

func (w *carWriter) Put(ctx context.Context, blk blocks.Block) error {
	return w.sc.Put(ctx, blk.Cid().KeyString(), blk.RawData())
}

func (w *carWriter) Close() error {
	if err := w.sc.Finalize(); err != nil {
		return err
	}
	return w.bw.Flush()
}

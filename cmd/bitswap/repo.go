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

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
	car "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"

	"github.com/gobitswap/bitswap/blockstore"
	bsrepo "github.com/gobitswap/bitswap/repo"
)

// repo is the command's persistent store in a directory (package repo:
// Pebble, with large blocks as files), holding blocks under /blocks (the
// layout boxo and Kubo use) and the roots of imported CARs under
// /gobitswap/roots.
type repo struct {
	r  *bsrepo.Repo
	ds datastore.Batching
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
	r, err := bsrepo.Open(dir)
	if err != nil {
		return nil, err
	}
	return &repo{r: r, ds: r.Datastore(), bs: r.Blockstore()}, nil
}

// repoMemTableSize is the size of each of the repo's memtables.
const repoMemTableSize = bsrepo.MemTableSize

// Close flushes what the repo holds in memory and closes it.
func (r *repo) Close() error { return r.r.Close() }

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
	sc, err := storage.NewWritable(largeWritesDirect{bw, w}, []cid.Cid{root}, car.WriteAsCarV1(true), car.StoreIdentityCIDs(false))
	if err != nil {
		return nil, err
	}
	return &carWriter{bw: bw, sc: sc}, nil
}

// largeWritesDirect buffers small writes (a block's length and CID) and
// writes large ones (its data) straight through, after what is buffered:
// bufio copies a large write into its buffer whenever it holds anything,
// which cost 0.27 s of CPU per GiB of 1 MiB blocks.
type largeWritesDirect struct {
	bw *bufio.Writer
	w  io.Writer
}

// directWrite is the size from which a write skips the buffer.
const directWrite = 64 << 10

func (l largeWritesDirect) Write(p []byte) (int, error) {
	if len(p) < directWrite {
		return l.bw.Write(p)
	}
	if err := l.bw.Flush(); err != nil {
		return 0, err
	}
	return l.w.Write(p)
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

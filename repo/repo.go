// Package repo is an on-disk blockstore in one directory, the one the
// bitswap command serves from and fetches into: a Pebble datastore in the
// directory, and its blocks of LargeBlock bytes or more as files in
// DIR/blocks, laid out as Kubo's flatfs (next-to-last/2 sharding, one
// "<base32 multihash>.data" file per block). Keys are those of boxo and
// Kubo: /blocks/<base32 multihash> for blocks.
//
// It owns the directory and the two stores in it; it knows nothing of
// peers or of Bitswap.
//
// Why two stores: Pebble handles small values well and large ones badly.
// Every byte of a 1 MiB block was written to its memtable, flushed, and
// rewritten by compactions (7 s of CPU per GiB fetched, 147 MB/s ingest
// at best), and each read allocated and zeroed a buffer for it. A file per
// block writes each byte once and reads it with one copy; for 4 KiB blocks
// the per-file cost makes Pebble the faster (60 against 26 MB/s here).
package repo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	datastore "github.com/ipfs/go-datastore"
	flatfs "github.com/ipfs/go-ds-flatfs"
	pebbleds "github.com/ipfs/go-ds-pebble"

	"github.com/gobitswap/bitswap/blockstore"
)

// LargeBlock is the size from which a block is stored as a file of its
// own rather than in Pebble: about where the two cost the same per block
// on the machine it was measured on (UnixFS leaves, 256 KiB and 1 MiB,
// go to files; inner nodes and 4 KiB chunks stay in Pebble).
const LargeBlock = 32 << 10

// MemTableSize is the size of each of the Pebble memtables: what the repo
// holds in memory at most (two of them) before it writes to disk.
const MemTableSize = 64 << 20

// BlocksDir is the subdirectory that holds the block files.
const BlocksDir = "blocks"

// bloomKeys sizes the blockstore's bloom filter of stored blocks
// (blockstore.WithBloomFilter): 1.2 MiB; with more blocks it answers more
// questions with "maybe", which go to the stores.
const bloomKeys = 1 << 20

// Repo is an open repository. Close it: Pebble keeps recent small values
// in memory only (it has no write-ahead log, see PebbleOptions).
type Repo struct {
	kv    *pebbleds.Datastore
	files *flatfs.Datastore
	dir   string // the block files' directory
	ds    *splitDatastore
	bs    blockstore.Blockstore

	dropped int

	// Background writeback (backgroundSync): bytes of files written since
	// the last sync, the loop's wake-ups, and its end.
	unsynced atomic.Int64
	flushes  chan struct{}
	flushed  chan struct{}
	flushMu  sync.Mutex // guards closing, and sends on flushes against its close
	closing  bool
}

// ErrInUse is returned (wrapped) by Open when another process, or this
// one, has the repository open.
var ErrInUse = errors.New("in use by another process")

// Open opens the repository in dir, creating it if needed. A repository
// written before block files existed (all its blocks in Pebble) opens as
// it is: its blocks are found where they are, new large ones go to files.
func Open(dir string) (*Repo, error) {
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
	kv, err := pebbleds.NewDatastore(dir, pebbleds.WithPebbleOpts(PebbleOptions()))
	if errors.Is(err, syscall.EAGAIN) || (err != nil && strings.Contains(err.Error(), "lock held by current process")) { // pebble's lock file
		return nil, fmt.Errorf("repo %s: %w: %w", dir, ErrInUse, err)
	}
	if err != nil {
		return nil, fmt.Errorf("repo %s: %w", dir, err)
	}
	// Pebble's lock, held now, covers the files too.
	blocksDir := filepath.Join(dir, BlocksDir)
	dropped, err := recoverFiles(blocksDir)
	if err != nil {
		kv.Close()
		return nil, fmt.Errorf("repo %s: checking the block files of an unclean shutdown: %w", dir, err)
	}
	files, err := flatfs.CreateOrOpen(blocksDir, flatfs.NextToLast(2), false)
	if err == nil {
		err = markUnsynced(blocksDir)
	}
	if err != nil {
		if files != nil {
			files.Close()
		}
		kv.Close()
		return nil, fmt.Errorf("repo %s: block files: %w", dir, err)
	}
	r := &Repo{
		kv:      kv,
		files:   files,
		dir:     blocksDir,
		dropped: dropped,
	}
	r.ds = &splitDatastore{kv: kv, files: files, large: LargeBlock}
	if backgroundSync {
		r.flushes = make(chan struct{}, 1)
		r.flushed = make(chan struct{})
		r.ds.wrote = r.wrote
		go r.flushLoop()
	}
	r.bs = blockstore.New(r.ds, blockstore.WithBloomFilter(bloomKeys))
	return r, nil
}

// writebackBytes is how many bytes of block files may be written before
// the repo asks the kernel to write them to disk, in the background. The
// kernel would otherwise hold gigabytes dirty (its threshold is a share of
// RAM) and write them all at Close: a fetch into the repo then took the
// fetch's time plus the disk's, one after the other.
const writebackBytes = 64 << 20

// wrote counts the bytes of block files written and starts a background
// sync every writebackBytes.
func (r *Repo) wrote(n int) {
	if r.unsynced.Add(int64(n)) < writebackBytes {
		return
	}
	r.unsynced.Store(0)
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	if r.closing {
		return // a Put racing Close: Close syncs it
	}
	select {
	case r.flushes <- struct{}{}:
	default: // one is running or due: it will write these too
	}
}

// flushLoop syncs the filesystem whenever wrote asks, until Close.
func (r *Repo) flushLoop() {
	defer close(r.flushed)
	for range r.flushes {
		_ = syncFS(r.dir) // best effort: Close syncs, and reports failures
	}
}

// Dropped returns how many block files Open removed because they did not
// hash to their names: files that were being written when the machine
// last stopped without closing the repository.
func (r *Repo) Dropped() int { return r.dropped }

// Blockstore returns the repository's blockstore.
func (r *Repo) Blockstore() blockstore.Blockstore { return r.bs }

// Datastore returns the whole keyspace: blocks under /blocks, anything
// else the application keeps beside them.
func (r *Repo) Datastore() datastore.Batching { return r.ds }

// Close writes what the repository holds in memory to disk and closes
// it.
func (r *Repo) Close() error {
	if r.flushes != nil {
		r.flushMu.Lock()
		r.closing = true
		close(r.flushes)
		r.flushMu.Unlock()
		<-r.flushed
	}
	ferr := r.files.Close()
	if ferr == nil {
		ferr = markSynced(r.dir)
	}
	kerr := r.kv.DB.Flush()
	if err := r.kv.Close(); err != nil {
		return err
	}
	if kerr != nil {
		return fmt.Errorf("flushing: %w", kerr)
	}
	if ferr != nil {
		return fmt.Errorf("closing the block files: %w", ferr)
	}
	return nil
}

// PebbleOptions are the options the repository opens Pebble with. Most
// blocks Pebble holds are small here, but a repository from before block
// files exist holds large ones too, and they are incompressible (mostly
// compressed or encrypted media). So:
//   - values of 1 KiB and more live in blob files that compactions do not
//     rewrite (value separation, format FormatValueSeparation: a repo opened
//     here is upgraded to it, one way);
//   - no compression;
//   - a 64 MiB memtable and a higher L0 threshold, so a bulk fetch flushes
//     in large files and compacts less often;
//   - no write-ahead log: Close flushes the memtable, so a clean exit (also
//     on SIGINT, or an error) loses nothing; a crash or SIGKILL loses at most
//     the small values stored since the last flush, which a resumed fetch
//     gets again (blocks are addressed by content: a repo never holds a
//     wrong one, only fewer).
//
// With Pebble's defaults a gigabyte of 1 MiB blocks went in at 44–51 MB/s
// on a disk that writes 360 MB/s; with these, at 175 MB/s (256 KiB blocks:
// 33 → 137 MB/s), measured on the same machine in one sitting.
func PebbleOptions() *pebble.Options {
	o := &pebble.Options{
		MemTableSize:          MemTableSize,
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

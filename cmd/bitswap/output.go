package main

import (
	"context"
	"fmt"
	"os"
	"sync"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"

	"github.com/gobitswap/bitswap/blockstore"
)

// storeErrors is the blockstore of a get into a repo. Bitswap hands a block
// it could not store to the session all the same, and logs a warning, so a
// get into a full disk would end "complete" with blocks missing from the
// repo. storeErrors keeps the first error instead, for get to stop on and
// report in one line, and stores nothing more after it.
//
// It stores nothing that would leave less than repoReserve free on the
// repo's disk: pebble cannot go on when its disk is full (it panics, or
// fails fatally), while with the reserve the repo closes cleanly, keeping
// everything stored.
//
// It also counts the blocks it stored, and remembers those the walk has
// not visited yet (a few: bitswap stores a block just before handing it
// over), so that get can tell the blocks it visited that were in the repo
// already from those it fetched.
type storeErrors struct {
	blockstore.Blockstore
	dir     string // the repo's directory, whose disk must keep repoReserve free
	mu      sync.Mutex
	first   error
	failed  cid.Cid // the first block of the put that failed
	broken  bool    // the store panicked: it cannot be used, nor closed
	n       int
	unvisit map[string]struct{} // multihashes stored, not yet visited
	// stored counts the bytes put since the repo opened. The repo has no
	// write-ahead log, so what sits in its memtables takes no disk until
	// flushed: up to repoUnflushed of it is counted against the free space
	// as if written already.
	stored uint64
}

func (s *storeErrors) Put(ctx context.Context, b blocks.Block) error {
	return s.PutMany(ctx, []blocks.Block{b})
}

func (s *storeErrors) PutMany(ctx context.Context, bs []blocks.Block) error {
	if s.err() != nil {
		return nil // get is stopping: it reports the first error
	}
	var err error
	panicked := false
	if s.dir != "" {
		s.mu.Lock()
		pending := min(s.stored, repoUnflushed)
		s.mu.Unlock()
		err = checkRoom(s.dir, bs, pending)
	}
	if err == nil {
		panicked, err = putMany(ctx, s.Blockstore, bs)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.first == nil {
			s.first, s.failed = err, bs[0].Cid()
		}
		s.broken = s.broken || panicked
		return nil
	}
	if s.unvisit == nil {
		s.unvisit = make(map[string]struct{})
	}
	for _, b := range bs {
		s.unvisit[string(b.Cid().Hash())] = struct{}{}
		s.stored += uint64(len(b.RawData()))
	}
	s.n += len(bs)
	return nil
}

// putMany stores bs, turning a panic of the store into an error: pebble
// panics when it cannot write its log (a full disk), and the command would
// crash with a goroutine trace. A store that panicked is left as it is:
// pebble panics holding its lock, so closing it would wait forever. What it
// had written to its log before is replayed when the repo is opened next.
func putMany(ctx context.Context, store blockstore.Blockstore, bs []blocks.Block) (panicked bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			panicked = true
			if e, ok := p.(error); ok {
				err = e
			} else {
				err = fmt.Errorf("%v", p)
			}
		}
	}()
	return false, store.PutMany(ctx, bs)
}

// isBroken reports whether the store panicked (putMany).
func (s *storeErrors) isBroken() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken
}

// visited tells s the walk has visited blk, and whether this run stored
// it.
func (s *storeErrors) visited(blk blocks.Block) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := string(blk.Cid().Hash())
	_, ok := s.unvisit[k]
	delete(s.unvisit, k)
	return ok
}

// count returns how many blocks s stored.
func (s *storeErrors) count() int {
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// err returns the first error storing blocks, naming the first of them,
// if any.
func (s *storeErrors) err() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first == nil {
		return nil
	}
	if s.broken {
		return fmt.Errorf("storing block %s: %w (the repo is left unclosed, its log holding what was stored before: once there is room, get --repo resumes from it)", s.failed, s.first)
	}
	return fmt.Errorf("storing block %s: %w", s.failed, s.first)
}

// testWrapRepoStore, when set (by tests), wraps the blockstore of the repo
// a get stores into, under storeErrors.
var testWrapRepoStore func(blockstore.Blockstore) blockstore.Blockstore

// output is a file get writes. When get fails it is removed, if it is a
// regular file: never /dev/full, /dev/null or a named pipe.
type output struct {
	f       *os.File
	path    string
	regular bool
}

func createOutput(path string) (*output, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, inputErrorf("%v", err)
	}
	st, err := f.Stat()
	return &output{f: f, path: path, regular: err == nil && st.Mode().IsRegular()}, nil
}

// finish closes the file, and removes it if failed.
func (o *output) finish(failed bool) error {
	err := o.f.Close()
	if failed && o.regular {
		os.Remove(o.path)
	}
	return err
}

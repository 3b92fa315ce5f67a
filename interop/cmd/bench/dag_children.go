package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ipfs/boxo/blockservice"
	boxobstore "github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/exchange"
	"github.com/ipfs/boxo/ipld/merkledag"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	datastore "github.com/ipfs/go-datastore"
	ipld "github.com/ipfs/go-ipld-format"
	car "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
	_ "github.com/ipld/go-ipld-prime/codec/dagcbor" // FetchGraph decodes dag-cbor through the multicodec registry, as in Kubo
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/repo"
)

// The dag suite's boxo children, this program run again with childEnv set:
//
//   - dag-server: boxo's Bitswap serving the repository in Dir (package repo)
//     (the one `bitswap serve` imported, read through boxo's blockstore
//     as Kubo wraps it, kuboBlockstore) until its stdin closes; prints
//     "ready <multiaddr>" when it listens.
//   - dag-client: fetches the DAG under Root from Addr as Kubo pins it:
//     merkledag.FetchGraph (32 workers, one block each) over a DAGService
//     on a blockservice session over boxo's Bitswap; the blockservice
//     stores each block it fetched, into a CARv1 written as the blocks
//     arrive (Out) or into a repository (Dir, package repo); prints a
//     dagClientResult. For the quiet suite it connects to Peers as well
//     (with Addr, all at once) before FetchGraph, bounds FetchGraph alone
//     by FetchTimeout, and with Partial reports a FetchGraph that failed
//     (a block nobody has, at the timeout) in its result instead of
//     failing.

// dagClientResult is what a dag-client child prints.
type dagClientResult struct {
	Blocks  int     `json:"blocks"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"` // FetchGraph's time, after connecting
	// Error is FetchGraph's error, with Partial.
	Error string `json:"error,omitempty"`
}

// kuboBlockstore is boxo's blockstore over ds as Kubo v0.43 builds it with
// its default config (core/node/storage.go): write-through, under a
// CachedBlockstore with a 64 Ki-entry two-queue cache of keys and sizes
// and no bloom filter (Datastore.BloomFilterSize is 0 by default).
func kuboBlockstore(ctx context.Context, ds datastore.Batching) (boxobstore.Blockstore, error) {
	opts := boxobstore.DefaultCacheOpts()
	opts.HasBloomFilterSize = 0
	opts.HasTwoQueueCacheSize = 64 << 10
	return boxobstore.CachedBlockstore(ctx, boxobstore.NewBlockstore(ds, boxobstore.WriteThrough(true)), opts)
}

func childDAGServer(s childSpec) error {
	r, err := repo.Open(s.Dir)
	if err != nil {
		return err
	}
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bbs, err := kuboBlockstore(ctx, r.Datastore())
	if err != nil {
		return err
	}
	n, err := startNode(ctx, boxo, nil, bbs)
	if err != nil {
		return err
	}
	defer n.close()
	return serveUntilStdinEnds(n)
}

// countedStore is a boxo blockstore that counts the blocks put into it.
type countedStore interface {
	boxobstore.Blockstore
	counts() (int, int64)
}

// carStore writes every block put into it to a CARv1 stream and keeps only
// their keys, as `bitswap get -o` does (its keyStore).
type carStore struct {
	readOnly
	mu     sync.Mutex
	f      *os.File
	bw     *bufio.Writer
	sc     storage.WritableCar
	seen   map[string]struct{}
	blocks int
	bytes  int64
}

func newCARStore(path string, root cid.Cid) (*carStore, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	sc, err := storage.NewWritable(struct{ io.Writer }{bw}, []cid.Cid{root}, car.WriteAsCarV1(true), car.StoreIdentityCIDs(false))
	if err != nil {
		f.Close()
		return nil, err
	}
	return &carStore{f: f, bw: bw, sc: sc, seen: map[string]struct{}{}}, nil
}

func (s *carStore) Put(ctx context.Context, b blocks.Block) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := string(b.Cid().Hash())
	if _, ok := s.seen[k]; ok {
		return nil
	}
	s.seen[k] = struct{}{}
	s.blocks++
	s.bytes += int64(len(b.RawData()))
	return s.sc.Put(ctx, b.Cid().KeyString(), b.RawData())
}

func (s *carStore) PutMany(ctx context.Context, bs []blocks.Block) error {
	for _, b := range bs {
		if err := s.Put(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

func (s *carStore) Has(_ context.Context, c cid.Cid) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.seen[string(c.Hash())]
	return ok, nil
}

func (*carStore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	return nil, ipld.ErrNotFound{Cid: c}
}

func (*carStore) GetSize(_ context.Context, c cid.Cid) (int, error) {
	return -1, ipld.ErrNotFound{Cid: c}
}

func (*carStore) DeleteBlock(context.Context, cid.Cid) error { return nil }

func (s *carStore) counts() (int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocks, s.bytes
}

func (s *carStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.sc.Finalize()
	if ferr := s.bw.Flush(); err == nil {
		err = ferr
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// repoStore is boxo's blockstore over the repository (package repo:
// Pebble, large blocks as files), counting puts.
type repoStore struct {
	boxobstore.Blockstore
	mu     sync.Mutex
	blocks int
	bytes  int64
}

func (s *repoStore) Put(ctx context.Context, b blocks.Block) error {
	if err := s.Blockstore.Put(ctx, b); err != nil {
		return err
	}
	s.mu.Lock()
	s.blocks++
	s.bytes += int64(len(b.RawData()))
	s.mu.Unlock()
	return nil
}

func (s *repoStore) PutMany(ctx context.Context, bs []blocks.Block) error {
	if err := s.Blockstore.PutMany(ctx, bs); err != nil {
		return err
	}
	s.mu.Lock()
	for _, b := range bs {
		s.blocks++
		s.bytes += int64(len(b.RawData()))
	}
	s.mu.Unlock()
	return nil
}

func (s *repoStore) counts() (int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocks, s.bytes
}

func childDAGClient(s childSpec) error {
	root, err := cid.Decode(s.Root)
	if err != nil {
		return err
	}
	var ais []peer.AddrInfo
	for _, a := range append([]string{s.Addr}, s.Peers...) {
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			return err
		}
		ais = append(ais, *ai)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	var st countedStore
	var closeStore func() error
	if s.Out != "" {
		cs, err := newCARStore(s.Out, root)
		if err != nil {
			return err
		}
		st, closeStore = cs, cs.Close
	} else {
		r, err := repo.Open(s.Dir)
		if err != nil {
			return err
		}
		bbs, err := kuboBlockstore(ctx, r.Datastore())
		if err != nil {
			return err
		}
		st, closeStore = &repoStore{Blockstore: bbs}, r.Close
	}
	n, err := startNode(ctx, boxo, nil, st)
	if err != nil {
		return err
	}
	bsvc := blockservice.New(st, n.f.(exchange.Interface))
	// As bitswap get connects to its --peer peers: all at once.
	cerrs := make([]error, len(ais))
	var wg sync.WaitGroup
	for i, ai := range ais {
		wg.Go(func() { cerrs[i] = n.h.Connect(ctx, ai) })
	}
	wg.Wait()
	for i, err := range cerrs {
		if err != nil {
			return fmt.Errorf("connecting to %s: %w", ais[i].ID, err)
		}
	}
	fctx := ctx
	if s.FetchTimeout > 0 {
		var fcancel context.CancelFunc
		fctx, fcancel = context.WithTimeout(ctx, s.FetchTimeout)
		defer fcancel()
	}
	start := time.Now()
	ferr := merkledag.FetchGraph(fctx, root, merkledag.NewDAGService(bsvc))
	// As the summary line of bitswap get: from the start of the walk to
	// its end, before the store and the node are closed.
	r := dagClientResult{Seconds: time.Since(start).Seconds()}
	r.Blocks, r.Bytes = st.counts()
	n.close()
	cerr := closeStore()
	if ferr != nil && !s.Partial {
		return fmt.Errorf("FetchGraph after %.1f s, %d blocks: %w", r.Seconds, r.Blocks, ferr)
	}
	if ferr != nil {
		r.Error = ferr.Error()
	}
	if cerr != nil {
		return fmt.Errorf("closing the store: %w", cerr)
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"

	boxobs "github.com/ipfs/boxo/bitswap"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	"github.com/ipfs/boxo/blockservice"
	boxobstore "github.com/ipfs/boxo/blockstore"
	"github.com/ipfs/boxo/exchange"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/network"
)

// impl names a Bitswap implementation.
type impl string

const (
	ours impl = "ours"
	boxo impl = "boxo"
)

// newHost is a libp2p host with the default transports, security and muxer,
// listening on 127.0.0.1 TCP, with the Bitswap stream limits of
// network.ResourceManager for both implementations (Kubo lifts the same
// limits for boxo).
func newHost() (host.Host, error) {
	rm, err := network.ResourceManager()
	if err != nil {
		return nil, err
	}
	return libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm))
}

// fetcher is what both implementations' GetBlocks look like.
type fetcher interface {
	GetBlocks(context.Context, []cid.Cid) (<-chan blocks.Block, error)
}

// storingFetcher fetches through boxo's blockservice, which writes each
// block it fetched to its blockstore, as Kubo does. boxo's Bitswap client
// by itself stores nothing; ours stores every block it fetched.
type storingFetcher struct{ bs blockservice.BlockService }

func (f storingFetcher) GetBlocks(ctx context.Context, cids []cid.Cid) (<-chan blocks.Block, error) {
	return f.bs.GetBlocks(ctx, cids), nil
}

// storing makes a boxo node's fetches store their blocks in bbs, its
// blockstore. Ours store them anyway.
func (n *node) storing(which impl, bbs boxobstore.Blockstore) {
	if which == boxo {
		n.f = storingFetcher{blockservice.New(bbs, n.f.(exchange.Interface))}
	}
}

// store has the method set of both our blockstore.Blockstore and boxo's.
type store interface {
	blockstore.Blockstore
	boxobstore.Blockstore
}

// node is a Bitswap of either implementation on its own host.
type node struct {
	h     host.Host
	f     fetcher
	close func()
}

// startNode starts impl on a new host over the blockstore of its kind (obs
// for ours, bbs for boxo); nil gives the node an in-memory blockstore of its
// own implementation.
func startNode(ctx context.Context, which impl, obs blockstore.Blockstore, bbs boxobstore.Blockstore) (*node, error) {
	h, err := newHost()
	if err != nil {
		return nil, err
	}
	switch which {
	case ours:
		if obs == nil {
			obs = blockstore.NewMemory()
		}
		b := bitswap.New(ctx, network.NewFromHost(h), obs)
		return &node{h: h, f: b, close: func() { b.Close(); h.Close() }}, nil
	case boxo:
		if bbs == nil {
			bbs = boxobstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
		}
		b := boxobs.New(ctx, bsnet.NewFromIpfsHost(h), nil, bbs)
		return &node{h: h, f: b, close: func() { b.Close(); h.Close() }}, nil
	}
	h.Close()
	return nil, fmt.Errorf("unknown implementation %q", which)
}

// startPair starts a server of impl over bs and a client of the same impl
// with an in-memory blockstore, connected to it.
func startPair(ctx context.Context, which impl, bs store) (client, server *node, err error) {
	server, err = startNode(ctx, which, bs, bs)
	if err != nil {
		return nil, nil, err
	}
	client, err = startNode(ctx, which, nil, nil)
	if err != nil {
		server.close()
		return nil, nil, err
	}
	if err := client.h.Connect(ctx, peer.AddrInfo{ID: server.h.ID(), Addrs: server.h.Addrs()}); err != nil {
		client.close()
		server.close()
		return nil, nil, err
	}
	return client, server, nil
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// fetchResult is what one fetch delivered.
type fetchResult struct {
	blocks int
	bytes  int64
	took   time.Duration
	cpu    time.Duration // the process's CPU time over the fetch
	// toStall is when the last block before the first gap of a second or
	// more arrived (zero if there was no such gap): with boxo and more than
	// 1,024 wants in one call, the time to its server's cap.
	toStall time.Duration
}

// fetch gets cids through f in calls of batch CIDs (all at once if batch is
// 0), one call after the other, and drains every channel. It counts what
// arrived; the caller checks the count.
func fetch(ctx context.Context, f fetcher, cids []cid.Cid, batch int) (fetchResult, error) {
	if batch <= 0 {
		batch = len(cids)
	}
	var r fetchResult
	start, cpu0 := time.Now(), cpuTime()
	last := start
	for i := 0; i < len(cids); i += batch {
		ch, err := f.GetBlocks(ctx, cids[i:min(i+batch, len(cids))])
		if err != nil {
			return r, err
		}
		for b := range ch {
			now := time.Now()
			if r.toStall == 0 && now.Sub(last) >= time.Second && r.blocks > 0 {
				r.toStall = last.Sub(start)
			}
			last = now
			r.blocks++
			r.bytes += int64(len(b.RawData()))
		}
		if ctx.Err() != nil {
			break
		}
	}
	r.took, r.cpu = time.Since(start), cpuTime()-cpu0
	if r.toStall == 0 && r.blocks > 0 && time.Since(last) >= time.Second {
		r.toStall = last.Sub(start) // stalled and never resumed
	}
	return r, nil
}

// check reports a short fetch as an error.
func (r fetchResult) check(wantBlocks int, wantBytes int64) error {
	if r.blocks != wantBlocks || r.bytes != wantBytes {
		return fmt.Errorf("got %d blocks (%d bytes), want %d (%d bytes)", r.blocks, r.bytes, wantBlocks, wantBytes)
	}
	return nil
}

// genData fills buf with the deterministic data of block i of a data set.
func genData(seed uint64, i int, buf []byte) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(i))
	_, _ = rand.NewChaCha8(key).Read(buf)
}

func rawCid(data []byte) cid.Cid {
	h, err := mh.Sum(data, mh.SHA2_256, -1)
	if err != nil {
		panic(err) // sha2-256 is always available
	}
	return cid.NewCidV1(cid.Raw, h)
}

// genBlocks makes n distinct blocks of size bytes, held in memory.
func genBlocks(seed uint64, n, size int) []blocks.Block {
	out := make([]blocks.Block, n)
	for i := range out {
		data := make([]byte, size)
		genData(seed, i, data)
		b, err := blocks.NewBlockWithCid(data, rawCid(data))
		if err != nil {
			panic(err)
		}
		out[i] = b
	}
	return out
}

func cidsOf(bl []blocks.Block) []cid.Cid {
	out := make([]cid.Cid, len(bl))
	for i, b := range bl {
		out[i] = b.Cid()
	}
	return out
}

var errReadOnly = errors.New("bench: read-only blockstore")

// readOnly is the write half of a read-only server store.
type readOnly struct{}

func (readOnly) DeleteBlock(context.Context, cid.Cid) error    { return errReadOnly }
func (readOnly) Put(context.Context, blocks.Block) error       { return errReadOnly }
func (readOnly) PutMany(context.Context, []blocks.Block) error { return errReadOnly }
func (readOnly) HashOnRead(bool)                               {}
func (readOnly) AllKeysChan(context.Context) (<-chan cid.Cid, error) {
	ch := make(chan cid.Cid)
	close(ch)
	return ch, nil
}

// staticStore serves a fixed set of in-memory blocks without copying them,
// so that one data set can back every server of a suite, ours and boxo's.
type staticStore struct {
	readOnly
	m map[string]blocks.Block // by multihash
}

func newStaticStore(bl []blocks.Block) *staticStore {
	m := make(map[string]blocks.Block, len(bl))
	for _, b := range bl {
		m[string(b.Cid().Hash())] = b
	}
	return &staticStore{m: m}
}

func (s *staticStore) Has(_ context.Context, c cid.Cid) (bool, error) {
	_, ok := s.m[string(c.Hash())]
	return ok, nil
}

func (s *staticStore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	b, ok := s.m[string(c.Hash())]
	if !ok {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	if b.Cid().Equals(c) {
		return b, nil
	}
	return blocks.NewBlockWithCid(b.RawData(), c)
}

func (s *staticStore) GetSize(_ context.Context, c cid.Cid) (int, error) {
	b, ok := s.m[string(c.Hash())]
	if !ok {
		return -1, ipld.ErrNotFound{Cid: c}
	}
	return len(b.RawData()), nil
}

// genStore serves n blocks of size bytes whose data it derives from each
// block's index on every Get, so that a server of 1 GiB holds only the CIDs.
type genStore struct {
	readOnly
	seed uint64
	size int
	idx  map[string]int // multihash → index
	cids []cid.Cid
}

// newGenStore hashes every block once to learn the CIDs.
func newGenStore(seed uint64, n, size int) *genStore {
	g := &genStore{seed: seed, size: size, idx: make(map[string]int, n), cids: make([]cid.Cid, n)}
	buf := make([]byte, size)
	for i := range n {
		genData(seed, i, buf)
		c := rawCid(buf)
		g.cids[i] = c
		g.idx[string(c.Hash())] = i
	}
	return g
}

func (g *genStore) Has(_ context.Context, c cid.Cid) (bool, error) {
	_, ok := g.idx[string(c.Hash())]
	return ok, nil
}

func (g *genStore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	i, ok := g.idx[string(c.Hash())]
	if !ok {
		return nil, ipld.ErrNotFound{Cid: c}
	}
	data := make([]byte, g.size)
	genData(g.seed, i, data)
	return blocks.NewBlockWithCid(data, c)
}

func (g *genStore) GetSize(_ context.Context, c cid.Cid) (int, error) {
	if _, ok := g.idx[string(c.Hash())]; !ok {
		return -1, ipld.ErrNotFound{Cid: c}
	}
	return g.size, nil
}

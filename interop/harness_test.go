package interop

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	boxobs "github.com/ipfs/boxo/bitswap"
	bsnet "github.com/ipfs/boxo/bitswap/network/bsnet"
	boxobstore "github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	ds "github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	mh "github.com/multiformats/go-multihash"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/message"
	"github.com/gobitswap/bitswap/network"
)

var versions = []message.Version{message.V100, message.V110, message.V120}

// boxoProtocols are the protocol IDs boxo offers for one of our versions.
func boxoProtocols(v message.Version) []protocol.ID {
	switch v {
	case message.V100:
		return []protocol.ID{bsnet.ProtocolBitswapOneZero, bsnet.ProtocolBitswapNoVers}
	case message.V110:
		return []protocol.ID{bsnet.ProtocolBitswapOneOne}
	default:
		return []protocol.ID{bsnet.ProtocolBitswap}
	}
}

// newHost is a loopback libp2p host with the Bitswap stream limits of
// network.ResourceManager: without them, a boxo server's stream per message
// runs into libp2p's default 64-75 streams per protocol and peer, and the
// blocks on refused streams are lost (Kubo lifts the same limits). Its
// resource manager counts what it refuses in blocked.
func newHost(t *testing.T) (h host.Host, blocked *rmBlocked) {
	t.Helper()
	blocked = new(rmBlocked)
	rm, err := network.ResourceManager(rcmgr.WithTraceReporter(blocked))
	if err != nil {
		t.Fatal(err)
	}
	h, err = libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.ResourceManager(rm))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, blocked
}

// rmBlocked counts the streams, connections and memory reservations a
// resource manager refused: the trace that showed boxo's lost blocks.
type rmBlocked struct {
	streams, conns, memory atomic.Int64

	mu    sync.Mutex
	first []string // the first few stream refusals: scope, direction, counts
}

func (b *rmBlocked) ConsumeEvent(e rcmgr.TraceEvt) {
	switch e.Type {
	case rcmgr.TraceBlockAddStreamEvt:
		b.streams.Add(1)
		b.mu.Lock()
		if len(b.first) < 4 {
			b.first = append(b.first, fmt.Sprintf("%s in%+d out%+d (open: %d in, %d out)",
				e.Name, e.DeltaIn, e.DeltaOut, e.StreamsIn, e.StreamsOut))
		}
		b.mu.Unlock()
	case rcmgr.TraceBlockAddConnEvt:
		b.conns.Add(1)
	case rcmgr.TraceBlockReserveMemoryEvt:
		b.memory.Add(1)
	}
}

func (b *rmBlocked) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return fmt.Sprintf("resource manager refused %d streams %v, %d connections, %d memory reservations",
		b.streams.Load(), b.first, b.conns.Load(), b.memory.Load())
}

// ourNode is our Bitswap on a real libp2p host.
type ourNode struct {
	h       host.Host
	blocked *rmBlocked
	bs      blockstore.Blockstore
	b       *bitswap.Bitswap
}

func startOurs(t *testing.T, ctx context.Context, netOpts []network.Option, opts ...bitswap.Option) *ourNode {
	t.Helper()
	h, blocked := newHost(t)
	bs := blockstore.NewMemory()
	b := bitswap.New(ctx, network.NewFromHost(h, netOpts...), bs, opts...)
	t.Cleanup(func() { b.Close() })
	return &ourNode{h: h, blocked: blocked, bs: bs, b: b}
}

// boxoNode is boxo's Bitswap on a real libp2p host.
type boxoNode struct {
	h       host.Host
	blocked *rmBlocked
	bs      boxobstore.Blockstore
	b       *boxobs.Bitswap
}

func startBoxo(t *testing.T, ctx context.Context, protos []protocol.ID, opts ...boxobs.Option) *boxoNode {
	t.Helper()
	h, blocked := newHost(t)
	var netOpts []bsnet.NetOpt
	if protos != nil {
		netOpts = append(netOpts, bsnet.SupportedProtocols(protos))
	}
	bs := boxobstore.NewBlockstore(dssync.MutexWrap(ds.NewMapDatastore()))
	b := boxobs.New(ctx, bsnet.NewFromIpfsHost(h, netOpts...), nil, bs, opts...)
	t.Cleanup(func() { b.Close() })
	return &boxoNode{h: h, blocked: blocked, bs: bs, b: b}
}

func connect(t *testing.T, ctx context.Context, from, to host.Host) {
	t.Helper()
	if err := from.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// mixedBlocks makes n blocks of every kind the issue names: raw and dag-pb,
// CIDv0 and CIDv1, sizes from 1 byte to 2 MiB. Most are small so the suite
// stays quick; every 100th is large, and the extremes are always present.
func mixedBlocks(t *testing.T, seed uint64, n int) []blocks.Block {
	t.Helper()
	var key [32]byte
	key[0] = byte(seed)
	src := rand.NewChaCha8(key)
	r := rand.New(src)
	out := make([]blocks.Block, 0, n)
	for i := range n {
		var size int
		switch {
		case i == 0:
			size = 1
		case i == 1:
			size = message.MaxBlockSize
		case i%100 == 50:
			size = 256<<10 + r.IntN(message.MaxBlockSize-256<<10)
		default:
			size = 1 + r.IntN(64<<10)
		}
		data := make([]byte, size)
		_, _ = src.Read(data)
		// Make every block unique even when sizes repeat.
		copy(data, fmt.Sprintf("%d/%d", seed, i))
		data = data[:size]
		sum := sha256.Sum256(data)
		h, err := mh.Encode(sum[:], mh.SHA2_256)
		if err != nil {
			t.Fatal(err)
		}
		var c cid.Cid
		switch i % 3 {
		case 0:
			c = cid.NewCidV0(h)
		case 1:
			c = cid.NewCidV1(cid.DagProtobuf, h)
		default:
			c = cid.NewCidV1(cid.Raw, h)
		}
		b, err := blocks.NewBlockWithCid(data, c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func cidsOf(bs []blocks.Block) []cid.Cid {
	out := make([]cid.Cid, len(bs))
	for i, b := range bs {
		out[i] = b.Cid()
	}
	return out
}

// drain counts the blocks from ch until it closes, timing the wait for the
// first and the longest gap between two consecutive ones after it.
func drain(ch <-chan blocks.Block) (n int, took, first, maxGap time.Duration) {
	start := time.Now()
	var last time.Time
	for range ch {
		now := time.Now()
		if n == 0 {
			first = now.Sub(start)
		} else {
			maxGap = max(maxGap, now.Sub(last))
		}
		last = now
		n++
	}
	return n, time.Since(start), first, maxGap
}

// fourKiBBlocks makes n distinct random 4 KiB raw blocks.
func fourKiBBlocks(n int) []blocks.Block {
	r := rand.NewChaCha8([32]byte{4, 0, 9, 6})
	out := make([]blocks.Block, n)
	for i := range out {
		data := make([]byte, 4096)
		_, _ = r.Read(data)
		out[i] = blocks.NewBlock(data)
	}
	return out
}

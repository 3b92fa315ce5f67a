package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	boxobstore "github.com/ipfs/boxo/blockstore"
	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	pebbleds "github.com/ipfs/go-ds-pebble"
	ipld "github.com/ipfs/go-ipld-format"
	"github.com/libp2p/go-libp2p/core/peer"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
)

// The attack suite's child processes. Each is this program (or the test
// binary) run again with childEnv set:
//
//   - attack-server: serves the suite's pebble repository until its stdin
//     closes, sampling its own heap and RSS; each "mark <label>" line on
//     stdin starts a new segment of samples; at the end it prints an
//     atkServerResult.
//   - honest: boxo's client (or ours) fetching every block, Fetches times,
//     each on a fresh node; prints an honestResult.
//   - attacked-client: our client fetching every block from the honest
//     server and, if given, a hostile peer at once; prints a clientResult.

// memPeak is the largest heap and RSS seen in one segment of a child's run.
type memPeak struct {
	PeakHeap       uint64 `json:"peak_heap"`
	PeakRSS        uint64 `json:"peak_rss"`
	PeakGoroutines int    `json:"peak_goroutines"`
	Samples        int    `json:"samples"`
}

// oursServerStat is what our server counted during an attack run.
type oursServerStat struct {
	MalformedReceived uint64 `json:"malformed_received"`
	PeersDisconnected uint64 `json:"peers_disconnected"`
	RejectedReceived  uint64 `json:"rejected_received"`
	ThrottledMessages uint64 `json:"throttled_messages"`
	StreamsRefused    uint64 `json:"streams_refused"`
	AbandonedSends    uint64 `json:"abandoned_sends"`
	PeersBanned       uint64 `json:"peers_banned"`
	WantsDropped      uint64 `json:"wants_dropped"`
	WantsEvicted      uint64 `json:"wants_evicted"`
	WantsDisplaced    uint64 `json:"wants_displaced"`
	PeakWants         int    `json:"peak_wants"` // wants held, sampled
	PeakPeers         int    `json:"peak_peers"` // peers with wants held, sampled
	UnwantedBlocks    uint64 `json:"unwanted_blocks"`
	BlocksSent        uint64 `json:"blocks_sent"`
	HavesSent         uint64 `json:"haves_sent"`
	DontHavesSent     uint64 `json:"dont_haves_sent"`
	SendErrors        uint64 `json:"send_errors"`
	MessagesReceived  uint64 `json:"messages_received"`
}

// atkServerResult is what an attack-server child prints when its stdin
// closes.
type atkServerResult struct {
	IdleHeap uint64          `json:"idle_heap"`
	IdleRSS  uint64          `json:"idle_rss"`
	Segments []memPeak       `json:"segments"` // one more than the marks received
	Ours     *oursServerStat `json:"ours,omitempty"`
}

// sampler records the heap and RSS of this process every 50 ms, in
// segments.
type sampler struct {
	mu    sync.Mutex
	segs  []memPeak
	extra func() // called every 5th sample, under no lock
	stop  chan struct{}
	done  chan struct{}
}

func startSampler(extra func()) *sampler {
	s := &sampler{segs: []memPeak{{}}, extra: extra, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample()
				if s.extra != nil && i%5 == 0 {
					s.extra()
				}
			}
		}
	}()
	return s
}

func (s *sampler) sample() {
	h, r, g := heapObjects(), rss(), runtime.NumGoroutine()
	s.mu.Lock()
	p := &s.segs[len(s.segs)-1]
	p.PeakHeap, p.PeakRSS, p.PeakGoroutines = max(p.PeakHeap, h), max(p.PeakRSS, r), max(p.PeakGoroutines, g)
	p.Samples++
	s.mu.Unlock()
}

// mark starts a new segment.
func (s *sampler) mark() {
	s.sample()
	s.mu.Lock()
	s.segs = append(s.segs, memPeak{})
	s.mu.Unlock()
}

// finish stops sampling and returns the segments.
func (s *sampler) finish() []memPeak {
	s.sample()
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.segs
}

// idleMemory settles the heap and returns it and the RSS.
func idleMemory() (heap, rssBytes uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(200 * time.Millisecond)
	return heapObjects(), rss()
}

func readCids(file string) ([]cid.Cid, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var cids []cid.Cid
	for _, line := range strings.Fields(string(raw)) {
		c, err := cid.Decode(line)
		if err != nil {
			return nil, err
		}
		cids = append(cids, c)
	}
	return cids, nil
}

// childAttackServer serves the pebble repository in s.Dir as the bitswap
// serve command does (ours: blockstore.New over go-ds-pebble; boxo:
// boxo's blockstore.NewBlockstore over the same datastore).
func childAttackServer(s childSpec) error {
	pds, err := pebbleds.NewDatastore(s.Dir)
	if err != nil {
		return err
	}
	defer pds.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n *node
	switch s.Impl {
	case ours:
		// As bitswap serve opens its repository (cmd/bitswap/repo.go).
		bs := blockstore.New(pds, blockstore.WithBloomFilter(1<<20))
		<-bs.(interface{ BloomFilled() <-chan struct{} }).BloomFilled()
		n, err = startNode(ctx, ours, bs, nil)
	default:
		n, err = startNode(ctx, s.Impl, nil, boxobstore.NewBlockstore(pds))
	}
	if err != nil {
		return err
	}
	defer n.close()
	addrs := n.h.Addrs()
	if len(addrs) == 0 {
		return errors.New("server host has no address")
	}
	var res atkServerResult
	res.IdleHeap, res.IdleRSS = idleMemory()

	var extra func()
	b, isOurs := n.f.(*bitswap.Bitswap)
	var statMu sync.Mutex
	var st oursServerStat
	if isOurs {
		extra = func() {
			s, err := b.Stat()
			if err != nil {
				return
			}
			statMu.Lock()
			st.PeakWants, st.PeakPeers = max(st.PeakWants, s.Server.Wants), max(st.PeakPeers, s.Server.Peers)
			statMu.Unlock()
		}
	}
	smp := startSampler(extra)
	fmt.Printf("ready %s/p2p/%s\n", addrs[0], n.h.ID())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		label, ok := strings.CutPrefix(sc.Text(), "mark ")
		if !ok {
			continue
		}
		smp.mark()
		if s.Profile != "" {
			profileAt(s.Profile, label)
		}
	}
	res.Segments = smp.finish()
	defer func() {
		// The result is out: exit without closing the node and pebble,
		// which under the race detector takes over a second per run, and
		// pebble recovers from any exit.
		os.Exit(0)
	}()
	if isOurs {
		extra()
		s, err := b.Stat()
		if err != nil {
			return err
		}
		statMu.Lock()
		st.MalformedReceived, st.PeersDisconnected = s.Network.MalformedReceived, s.Network.PeersDisconnected
		st.RejectedReceived, st.ThrottledMessages, st.StreamsRefused = s.Network.RejectedReceived, s.Network.ThrottledMessages, s.Network.StreamsRefused
		st.WantsDropped, st.UnwantedBlocks = s.Server.WantsDropped, s.Client.UnwantedBlocks
		st.WantsEvicted, st.WantsDisplaced = s.Server.WantsEvicted, s.Server.WantsDisplaced
		st.AbandonedSends, st.PeersBanned = s.Network.AbandonedSends, s.Network.PeersBanned
		st.BlocksSent, st.HavesSent, st.DontHavesSent = s.Server.BlocksSent, s.Server.HavesSent, s.Server.DontHavesSent
		st.SendErrors, st.MessagesReceived = s.Server.SendErrors, s.MessagesReceived
		res.Ours = &st
		statMu.Unlock()
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// honestFetch is one fetch of the honest client.
type honestFetch struct {
	Seconds float64 `json:"seconds"`
	Blocks  int     `json:"blocks"`
	Err     string  `json:"error,omitempty"`
}

type honestResult struct {
	Fetches []honestFetch `json:"fetches"`
}

// childHonest fetches every block from the server s.Fetches times, each time on
// a fresh node of s.Impl with an in-memory blockstore (boxo's client stores
// nothing; ours would store in memory), in calls of s.Batch. It stops after
// a failed fetch.
func childHonest(s childSpec) error {
	cids, err := readCids(s.CidsFile)
	if err != nil {
		return err
	}
	// The first node starts before the fetches are due (while the parent
	// starts the server): the parent waits for "ready", then sends the
	// server's address on stdin when the fetches are due.
	n, err := startNode(context.Background(), s.Impl, nil, nil)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil {
		n.close()
		return fmt.Errorf("waiting for the server's address: %w", err)
	}
	ai, err := peer.AddrInfoFromString(strings.TrimSpace(line))
	if err != nil {
		n.close()
		return err
	}
	var r honestResult
	for i := range max(s.Fetches, 1) {
		if i > 0 {
			if n, err = startNode(context.Background(), s.Impl, nil, nil); err != nil {
				return err
			}
		}
		f := honestFetchOnce(s, n, *ai, cids)
		n.close()
		r.Fetches = append(r.Fetches, f)
		if f.Err != "" {
			break
		}
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

// honestFetchOnce connects n to ai and fetches cids.
func honestFetchOnce(s childSpec, n *node, ai peer.AddrInfo, cids []cid.Cid) honestFetch {
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()
	if err := n.h.Connect(ctx, ai); err != nil {
		return honestFetch{Err: "connecting: " + err.Error()}
	}
	res, err := fetch(ctx, n.f, cids, s.Batch)
	f := honestFetch{Seconds: res.took.Seconds(), Blocks: res.blocks}
	switch {
	case err != nil:
		f.Err = err.Error()
	case res.blocks != len(cids):
		f.Err = fmt.Sprintf("%d of %d blocks after %.1f s", res.blocks, len(cids), res.took.Seconds())
	case res.bytes != int64(len(cids))*int64(s.Size):
		f.Err = fmt.Sprintf("%d bytes, want %d", res.bytes, int64(len(cids))*int64(s.Size))
	}
	return f
}

// clientResult is what an attacked-client child prints.
type clientResult struct {
	Completed bool    `json:"completed"`
	Blocks    int     `json:"blocks"`
	Seconds   float64 `json:"seconds"`
	Peers     int     `json:"peers"` // Bitswap peers connected when the fetch started
	IdleHeap  uint64  `json:"idle_heap"`
	IdleRSS   uint64  `json:"idle_rss"`
	Peak      memPeak `json:"peak"`
	Unwanted  uint64  `json:"unwanted_blocks"`
	Dups      uint64  `json:"dup_blocks"`
	Received  uint64  `json:"blocks_received"`
	Err       string  `json:"error,omitempty"`
}

// nullStore stores nothing: our client's memory is then Bitswap's own, not
// a blockstore's (pebble's memtables alone are 64 MiB).
type nullStore struct{ readOnly }

func (nullStore) Has(context.Context, cid.Cid) (bool, error) { return false, nil }
func (nullStore) Get(_ context.Context, c cid.Cid) (blocks.Block, error) {
	return nil, ipld.ErrNotFound{Cid: c}
}
func (nullStore) GetSize(_ context.Context, c cid.Cid) (int, error) {
	return -1, ipld.ErrNotFound{Cid: c}
}
func (nullStore) Put(context.Context, blocks.Block) error       { return nil }
func (nullStore) PutMany(context.Context, []blocks.Block) error { return nil }
func (nullStore) DeleteBlock(context.Context, cid.Cid) error    { return nil }

// childAttackedClient fetches every block in one GetBlocks call with our
// client, connected to the honest server s.Addr and, if set, the hostile
// peer s.Hostile.
func childAttackedClient(s childSpec) error {
	cids, err := readCids(s.CidsFile)
	if err != nil {
		return err
	}
	var addrs []peer.AddrInfo
	for _, a := range []string{s.Hostile, s.Addr} {
		if a == "" {
			continue
		}
		ai, err := peer.AddrInfoFromString(a)
		if err != nil {
			return err
		}
		addrs = append(addrs, *ai)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout+30*time.Second)
	defer cancel()
	n, err := startNode(context.Background(), ours, nullStore{}, nil)
	if err != nil {
		return err
	}
	defer n.close()
	b := n.f.(*bitswap.Bitswap)
	for _, ai := range addrs {
		if err := n.h.Connect(ctx, ai); err != nil {
			return fmt.Errorf("connecting to %s: %w", ai.ID, err)
		}
	}
	var r clientResult
	// Both peers should be Bitswap peers before the fetch starts, so that
	// the hostile one is asked from the start.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		st, _ := b.Stat()
		if r.Peers = len(st.Peers); r.Peers >= len(addrs) {
			break
		}
	}
	r.IdleHeap, r.IdleRSS = idleMemory()
	smp := startSampler(nil)
	fctx, fcancel := context.WithTimeout(ctx, s.Timeout)
	defer fcancel()
	start := time.Now()
	ch, err := b.GetBlocks(fctx, cids)
	if err != nil {
		r.Err = err.Error()
	} else {
		for blk := range ch {
			if len(blk.RawData()) == s.Size {
				r.Blocks++
			}
		}
	}
	r.Seconds = time.Since(start).Seconds()
	r.Peak = smp.finish()[0]
	r.Completed = r.Blocks == len(cids)
	if !r.Completed && r.Err == "" {
		r.Err = fmt.Sprintf("%d of %d blocks after %.1f s", r.Blocks, len(cids), r.Seconds)
	}
	st, _ := b.Stat()
	r.Unwanted, r.Dups, r.Received = st.Client.UnwantedBlocks, st.DupBlksReceived, st.BlocksReceived
	return json.NewEncoder(os.Stdout).Encode(r)
}

// profileAt writes a heap profile when the honest client starts (the
// attack has been under way for a while: what it makes the server hold) and
// profiles the CPU from then until the honest client is done, to files
// named prefix + "-heap.pprof" and "-cpu.pprof".
func profileAt(prefix, label string) {
	switch label {
	case "honest":
		runtime.GC() // the heap profile's in-use figures are as of the last GC
		if f, err := os.Create(prefix + "-heap.pprof"); err == nil {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
		if f, err := os.Create(prefix + "-cpu.pprof"); err == nil {
			_ = pprof.StartCPUProfile(f)
		}
	case "after":
		pprof.StopCPUProfile()
	}
}

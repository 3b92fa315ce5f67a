package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

const throughputDoc = `Loopback, real libp2p hosts (TCP on 127.0.0.1, default security and muxer), one process, CPU-bound.
Every case starts fresh nodes per repeat; data is generated before the timer and shared by
both implementations' servers (a read-only in-memory blockstore, no copies); clients use their
own in-memory blockstore; every fetch is checked for its block and byte count. MB/s is 10^6
bytes per second of block data. The raw-stream ceiling copies the same number of bytes over one
libp2p stream (256 KiB writes, the reader discards) between two hosts built the same way.
boxo's server holds at most 1,024 wants per peer and drops the rest silently, so boxo fetching
more than 1,024 blocks in one GetBlocks stalls until its client rebroadcasts; its best way is
calls of 250, one after the other (measured here, calls of 1,000 and even of 500 at times
stall too: the first call of 1,000 on fresh nodes got 768 blocks and then waited for a
rebroadcast), which the "calls of 250" row uses. The one-call boxo figure runs once, capped
by a timeout; the note gives the blocks it had and when it stalled. boxo's Bitswap client
does not store what it fetches (ours does, in memory here), so these boxo figures leave out
the storing that ours pays for.`

// tpSizes are the throughput suite's parameters.
type tpSizes struct {
	bigBlock, bigN     int           // 256 MiB in 256 KiB blocks
	smallBlock, smallN int           // 20,000 × 4 KiB
	boxoBatch          int           // boxo's calls: ≤ 250 never stalled here; 500 and 1,000 do at times
	oneCallTimeout     time.Duration // boxo's single GetBlocks of smallN wants
	fetchTimeout       time.Duration
	memBlock, memN     int // 1 GiB in 256 KiB blocks
	memRepeat          int
}

func throughputSizes(cfg Config) tpSizes {
	s := tpSizes{
		bigBlock: 256 << 10, bigN: 1024,
		smallBlock: 4 << 10, smallN: 20000,
		boxoBatch:      250,
		oneCallTimeout: 120 * time.Second,
		fetchTimeout:   5 * time.Minute,
		memBlock:       256 << 10, memN: 4096,
		memRepeat: min(cfg.Repeat, 3),
	}
	if cfg.Short {
		s.bigN = 64     // 16 MiB
		s.smallN = 2000 // still over boxo's 1,024-want cap
		s.memN = 256    // 64 MiB
		s.oneCallTimeout = 3 * time.Second
		s.fetchTimeout = time.Minute
	}
	return s
}

func sizeName(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d KiB", n>>10)
	}
}

// countName writes n with thousands separators from 10,000 on.
func countName(n int) string {
	if n < 10000 && n > -10000 {
		return fmt.Sprint(n)
	}
	if n < 0 {
		return "-" + countName(-n)
	}
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func mbps(bytes int64, d time.Duration) float64 { return float64(bytes) / 1e6 / d.Seconds() }

func runThroughput(cfg Config) ([]Row, error) {
	sz := throughputSizes(cfg)
	var rows []Row
	r, err := bigBlocks(cfg, sz)
	rows = append(rows, r...)
	if err != nil {
		return rows, err
	}
	r, err = smallBlocks(cfg, sz)
	rows = append(rows, r...)
	if err != nil {
		return rows, err
	}
	return rows, nil
}

// interleave runs the steps of one repeat, starting at a different step each
// repeat so that no implementation always goes first, with a GC before each.
func interleave(rep int, steps ...func() error) error {
	for i := range steps {
		runtime.GC()
		if err := steps[(i+rep)%len(steps)](); err != nil {
			return err
		}
	}
	return nil
}

// ofRaw is "x% of raw" for a side of a row against the ceiling row.
func ofRaw(s, raw Stat) string {
	if !s.ok() || !raw.ok() {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", 100*s.Median/raw.Median)
}

func bigBlocks(cfg Config, sz tpSizes) ([]Row, error) {
	total := int64(sz.bigN) * int64(sz.bigBlock)
	cfg.logf("throughput: generating %s in %s blocks", sizeName(total), sizeName(int64(sz.bigBlock)))
	bl := genBlocks(1, sz.bigN, sz.bigBlock)
	st := newStaticStore(bl)
	cids := cidsOf(bl)
	raw := Row{Case: fmt.Sprintf("ceiling: raw libp2p stream, %s", sizeName(total)), Unit: "MB/s", HigherIsBetter: true}
	raw2 := Row{Case: fmt.Sprintf("ceiling: 2 raw libp2p streams at once, %s", sizeName(total)), Unit: "MB/s", HigherIsBetter: true}
	get := Row{Case: fmt.Sprintf("%s in %s blocks, one GetBlocks", sizeName(total), sizeName(int64(sz.bigBlock))), Unit: "MB/s", HigherIsBetter: true}
	cpu := Row{Case: fmt.Sprintf("%s in %s blocks: CPU time per GB, both nodes", sizeName(total), sizeName(int64(sz.bigBlock))), Unit: "CPU s/GB"}
	var rawCPU Stat
	for rep := range cfg.Repeat {
		err := interleave(rep,
			func() error {
				d, c, err := rawStreams(sz.fetchTimeout, total, 1)
				if err == nil {
					raw.Ours.add(mbps(total, d))
					rawCPU.add(cpuPerGB(total, c))
				}
				return wrap("raw stream", err)
			},
			func() error {
				d, _, err := rawStreams(sz.fetchTimeout, total, 2)
				if err == nil {
					raw2.Ours.add(mbps(total, d))
				}
				return wrap("2 raw streams", err)
			},
			func() error {
				res, err := fetchFresh(ours, st, cids, 0, sz.fetchTimeout, total)
				if err == nil {
					get.Ours.add(mbps(total, res.took))
					cpu.Ours.add(cpuPerGB(total, res.cpu))
				}
				return wrap("ours", err)
			},
			func() error {
				res, err := fetchFresh(boxo, st, cids, 0, sz.fetchTimeout, total)
				if err == nil {
					get.Boxo.add(mbps(total, res.took))
					cpu.Boxo.add(cpuPerGB(total, res.cpu))
				}
				return wrap("boxo", err)
			},
		)
		cfg.logf("throughput: %s repeat %d/%d: raw %v, 2 raw %v, ours %v, boxo %v MB/s", get.Case, rep+1, cfg.Repeat, last(raw.Ours), last(raw2.Ours), last(get.Ours), last(get.Boxo))
		if err != nil {
			return []Row{raw, raw2, get, cpu}, fmt.Errorf("%s: %w", get.Case, err)
		}
	}
	raw.finish()
	raw2.finish()
	get.finish()
	cpu.finish()
	rawCPU.finish()
	cpu.Note = fmt.Sprintf("process CPU time (user+system) over the fetch, client and server together; the raw stream: %.2f", rawCPU.Median)
	raw.Note = "same libp2p hosts as both implementations; one stream"
	raw2.Note = "half the bytes on each; ours sends blocks on two streams (network.blockLanes)"
	get.Note = fmt.Sprintf("of raw: ours %s, boxo %s; of 2 raw streams: ours %s, boxo %s",
		ofRaw(get.Ours, raw.Ours), ofRaw(get.Boxo, raw.Ours), ofRaw(get.Ours, raw2.Ours), ofRaw(get.Boxo, raw2.Ours))
	return []Row{raw, raw2, get, cpu}, nil
}

func smallBlocks(cfg Config, sz tpSizes) ([]Row, error) {
	total := int64(sz.smallN) * int64(sz.smallBlock)
	n := countName(sz.smallN)
	cfg.logf("throughput: generating %s × %s blocks", n, sizeName(int64(sz.smallBlock)))
	bl := genBlocks(2, sz.smallN, sz.smallBlock)
	st := newStaticStore(bl)
	cids := cidsOf(bl)
	raw := Row{Case: fmt.Sprintf("ceiling: raw libp2p stream, %s", sizeName(total)), Unit: "MB/s", HigherIsBetter: true}
	best := Row{Case: fmt.Sprintf("%s × 4 KiB: ours one GetBlocks, boxo calls of %s", n, countName(sz.boxoBatch)), Unit: "MB/s", HigherIsBetter: true}
	one := Row{Case: fmt.Sprintf("%s × 4 KiB: one GetBlocks each", n), Unit: "MB/s", HigherIsBetter: true}
	cpu := Row{Case: fmt.Sprintf("%s × 4 KiB: CPU time per GB, both nodes", n), Unit: "CPU s/GB"}
	for rep := range cfg.Repeat {
		err := interleave(rep,
			func() error {
				d, _, err := rawStreams(sz.fetchTimeout, total, 1)
				if err == nil {
					raw.Ours.add(mbps(total, d))
				}
				return wrap("raw stream", err)
			},
			func() error {
				res, err := fetchFresh(ours, st, cids, 0, sz.fetchTimeout, total)
				if err == nil {
					best.Ours.add(mbps(total, res.took))
					cpu.Ours.add(cpuPerGB(total, res.cpu))
				}
				return wrap("ours", err)
			},
			func() error {
				res, err := fetchFresh(boxo, st, cids, sz.boxoBatch, sz.fetchTimeout, total)
				if err == nil {
					best.Boxo.add(mbps(total, res.took))
					cpu.Boxo.add(cpuPerGB(total, res.cpu))
				}
				return wrap("boxo", err)
			},
		)
		cfg.logf("throughput: %s repeat %d/%d: raw %v, ours %v, boxo %v MB/s", best.Case, rep+1, cfg.Repeat, last(raw.Ours), last(best.Ours), last(best.Boxo))
		if err != nil {
			return []Row{raw, best, cpu}, fmt.Errorf("%s: %w", best.Case, err)
		}
	}
	one.Ours = best.Ours
	raw.finish()
	best.finish()
	cpu.finish()
	cpu.Note = "process CPU time over the fetch, client and server together; boxo in calls of " + countName(sz.boxoBatch)
	raw.Note = "same libp2p hosts as both implementations; one stream"
	best.Note = fmt.Sprintf("of raw: ours %s, boxo %s; median time ours %.2f s, boxo %.2f s", ofRaw(best.Ours, raw.Ours), ofRaw(best.Boxo, raw.Ours),
		secs(total, best.Ours), secs(total, best.Boxo))

	// boxo in one call: once, capped, since it waits for a rebroadcast.
	cfg.logf("throughput: %s: boxo, once, capped at %v", one.Case, sz.oneCallTimeout)
	runtime.GC()
	res, err := fetchFresh(boxo, st, cids, 0, sz.oneCallTimeout, total)
	switch {
	case errors.Is(err, errShort) && res.took >= sz.oneCallTimeout-time.Second:
		one.Boxo.Text = "timeout"
		stall := "never stalled"
		if res.toStall > 0 {
			stall = fmt.Sprintf("stalled at %.2f s", res.toStall.Seconds())
		}
		one.Note = fmt.Sprintf("boxo (1 run): %s of %s blocks at the %.0f s timeout; %s; ours column = row above",
			countName(res.blocks), n, sz.oneCallTimeout.Seconds(), stall)
	case err != nil:
		return []Row{raw, best, cpu, one}, fmt.Errorf("%s: boxo: %w", one.Case, err)
	default:
		one.Boxo.add(mbps(total, res.took))
		one.Note = fmt.Sprintf("boxo: 1 run, %.1f s; ours column = row above", res.took.Seconds())
	}
	return []Row{raw, best, cpu, one}, nil
}

// cpuPerGB is CPU seconds per 10^9 bytes.
func cpuPerGB(total int64, cpu time.Duration) float64 { return cpu.Seconds() / (float64(total) / 1e9) }

func secs(total int64, s Stat) float64 {
	if !s.ok() {
		return 0
	}
	return float64(total) / 1e6 / s.Median
}

// last is the latest sample of s, for progress lines.
func last(s Stat) string {
	if len(s.Samples) == 0 {
		return "—"
	}
	return fmtNum(s.Samples[len(s.Samples)-1])
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

var errShort = errors.New("short fetch")

// fetchFresh starts a server of impl over st and a client of impl, fetches
// cids (in calls of batch, or one call), checks the count and closes both.
// Node start-up is outside the timing.
func fetchFresh(which impl, st store, cids []cid.Cid, batch int, timeout time.Duration, total int64) (fetchResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client, server, err := startPair(context.Background(), which, st)
	if err != nil {
		return fetchResult{}, err
	}
	defer server.close()
	defer client.close()
	res, err := fetch(ctx, client.f, cids, batch)
	if err != nil {
		return res, err
	}
	if err := res.check(len(cids), total); err != nil {
		return res, fmt.Errorf("%w after %.1f s: %v", errShort, res.took.Seconds(), err)
	}
	return res, nil
}

const sinkProto = "/gobitswap/bench/sink/1.0.0"

// rawStreams copies total bytes, split over k streams at once, between two
// fresh hosts and returns the time from opening the streams to the reader
// having read everything, and the process's CPU time meanwhile (both hosts).
func rawStreams(timeout time.Duration, total int64, k int) (took, cpu time.Duration, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	a, err := newHost()
	if err != nil {
		return 0, 0, err
	}
	defer a.Close()
	b, err := newHost()
	if err != nil {
		return 0, 0, err
	}
	defer b.Close()
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, k)
	b.SetStreamHandler(sinkProto, func(s network.Stream) {
		buf := make([]byte, 256<<10)
		var n int64
		var err error
		for {
			var m int
			m, err = s.Read(buf)
			n += int64(m)
			if err != nil {
				break
			}
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		s.Close()
		done <- result{n, err}
	})
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		return 0, 0, err
	}
	buf := make([]byte, 256<<10)
	genData(3, 0, buf)
	start, cpu0 := time.Now(), cpuTime()
	werr := make(chan error, k)
	for i := range k {
		share := total / int64(k)
		if i == 0 {
			share += total % int64(k)
		}
		go func() { werr <- writeAll(ctx, a, b.ID(), buf, share) }()
	}
	var got int64
	for range k {
		if err := <-werr; err != nil {
			return 0, 0, err
		}
	}
	for range k {
		select {
		case r := <-done:
			if r.err != nil {
				return 0, 0, r.err
			}
			got += r.n
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
	took, cpu = time.Since(start), cpuTime()-cpu0
	if got != total {
		return 0, 0, fmt.Errorf("raw streams: read %d bytes, want %d", got, total)
	}
	return took, cpu, nil
}

// writeAll opens a stream from a to b and writes n bytes, buf at a time.
func writeAll(ctx context.Context, a host.Host, b peer.ID, buf []byte, n int64) error {
	s, err := a.NewStream(ctx, b, sinkProto)
	if err != nil {
		return err
	}
	for left := n; left > 0; {
		k, err := s.Write(buf[:min(left, int64(len(buf)))])
		left -= int64(k)
		if err != nil {
			_ = s.Reset()
			return err
		}
	}
	return s.CloseWrite()
}

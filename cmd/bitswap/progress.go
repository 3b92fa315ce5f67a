package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progressStatus is one reading of what a get has done so far.
type progressStatus struct {
	done  int64  // bytes so far
	total int64  // bytes in all, or 0 when not known
	what  string // what the bytes are: "of file", "of blocks", "written"
	extra string // blocks, peers...: shown after the rate
}

// progressInterval is how often the progress line is redrawn.
const progressInterval = 200 * time.Millisecond

// rateWindow is how far back the rate looks.
const rateWindow = 5 * time.Second

// showProgress redraws a progress line on stderr (a terminal) every
// progressInterval until stopped, then clears it.
func showProgress(stderr io.Writer, status func() progressStatus) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		var m rateMeter
		draw := func(now time.Time) {
			st := status()
			fmt.Fprint(stderr, "\r\033[K"+formatProgress(st, m.rate(now, st.done)))
		}
		draw(time.Now())
		for {
			select {
			case <-done:
				fmt.Fprint(stderr, "\r\033[K")
				return
			case now := <-t.C:
				draw(now)
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// rateMeter turns readings of a growing count into a rate over the last
// rateWindow.
type rateMeter struct {
	samples []rateSample
}

type rateSample struct {
	at time.Time
	n  int64
}

func (m *rateMeter) rate(now time.Time, n int64) float64 {
	m.samples = append(m.samples, rateSample{now, n})
	i := 0
	for i < len(m.samples)-2 && now.Sub(m.samples[i+1].at) >= rateWindow {
		i++
	}
	m.samples = m.samples[i:]
	first := m.samples[0]
	if d := now.Sub(first.at); d > 0 {
		return float64(n-first.n) / d.Seconds()
	}
	return 0
}

// formatProgress renders a status and a rate (bytes/s) as one line: with a
// total, a bar, the percentage and the ETA. It drops parts from the end
// until the line has at most progressWidth columns, so that it never wraps
// on a terminal of 80.
//
//	[#####.......]  45%  1.2/2.7 MB of file, 3.4 MB/s, ETA 1s, 1 peers, 120 blocks
//	1.2 MB of blocks, 3.4 MB/s, 120 blocks, 1 peers, 12 wanted
func formatProgress(st progressStatus, rate float64) string {
	var b strings.Builder
	if st.total > 0 {
		done := min(st.done, st.total)
		const width = 12
		filled := int(done * width / st.total)
		num, unit := fmtMB(st.total)
		dn, _ := fmtIn(done, unit)
		fmt.Fprintf(&b, "[%s%s] %3d%%  %s/%s %s %s, %s, ETA %s",
			strings.Repeat("#", filled), strings.Repeat(".", width-filled), done*100/st.total,
			dn, num, unit, st.what, fmtRate(rate), eta(st.total-done, rate))
	} else {
		num, unit := fmtMB(st.done)
		fmt.Fprintf(&b, "%s %s %s, %s", num, unit, st.what, fmtRate(rate))
	}
	if st.extra != "" {
		b.WriteString(", " + st.extra)
	}
	// Too long: drop the least telling parts, the last first.
	line := b.String()
	for len(line) > progressWidth {
		i := strings.LastIndex(line, ", ")
		if i < 0 {
			return line[:progressWidth]
		}
		line = line[:i]
	}
	return line
}

// progressWidth is the longest progress line.
const progressWidth = 79

// fmtMB renders n in MB, or in GB from 10 GB on.
func fmtMB(n int64) (num, unit string) {
	if n >= 10e9 {
		return fmtIn(n, "GB")
	}
	return fmtIn(n, "MB")
}

func fmtIn(n int64, unit string) (string, string) {
	div := 1e6
	if unit == "GB" {
		div = 1e9
	}
	return fmt.Sprintf("%.1f", float64(n)/div), unit
}

func fmtRate(r float64) string { return fmt.Sprintf("%.1f MB/s", r/1e6) }

// eta is how long the rest takes at rate, to the second; "?" at no rate.
func eta(rest int64, rate float64) string {
	if rest <= 0 {
		return "0s"
	}
	if rate <= 0 {
		return "?"
	}
	d := time.Duration(float64(rest) / rate * float64(time.Second))
	if d > 100*time.Hour {
		return ">100h"
	}
	return (d + time.Second - 1).Truncate(time.Second).String() // 0.4 s is 1s, not 0s
}

// stallWarning is how long get goes without a block before it says so,
// once per stall, when stderr shows no progress line: a fetch whose
// sources have nothing more to give (every peer said DONT_HAVE, the only
// gateway sent a wrong body, the providers found cannot be reached) would
// otherwise be silent until --timeout (10 minutes by default). At most a
// quarter of --timeout; none under minStallWarning.
const (
	stallWarning    = 30 * time.Second
	minStallWarning = 2 * time.Second
)

// stallAfter returns when a fetch of timeout warns of a stall (0: never).
func stallAfter(timeout time.Duration) time.Duration {
	d := min(stallWarning, timeout/4)
	if d < minStallWarning {
		return 0
	}
	return d
}

// watchStall prints a one-line warning to stderr each time count (the
// blocks fetched so far) stays the same for after, with the number of
// peers connected; stop ends it. (The blocks still missing are named at
// --timeout: only the walk knows them.)
func watchStall(stderr io.Writer, after time.Duration, count func() int64, peers func() int) (stop func()) {
	if after <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(after / 8)
		defer t.Stop()
		last, since, warned := count(), time.Now(), false
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if n := count(); n != last {
					last, since, warned = n, now, false
					continue
				}
				if !warned && now.Sub(since) >= after {
					warned = true
					fmt.Fprintf(stderr, "bitswap get: warning: no block for %v from %d peers, and the DAG is not complete (waiting until --timeout)\n", after, peers())
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

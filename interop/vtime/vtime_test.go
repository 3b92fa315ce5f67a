package vtime

import (
	"encoding/json"
	"flag"
	"os"
	"slices"
	"testing"
)

var (
	full     = flag.Bool("vtime.full", false, "run TestVirtualTimeSuite at full size (1,000 × 256 KiB)")
	jsonOut  = flag.String("vtime.json", "", "write TestVirtualTimeSuite's results to this file as JSON")
	boxoRuns = flag.Int("vtime.boxoruns", 7, "boxo runs per send buffer in TestTenSeedsBySendBuffer")
)

// Every scenario completes with both implementations, at small sizes.
func TestVirtualTimeSuiteShort(t *testing.T) {
	for _, r := range RunAll(t, ShortParams()) {
		if !r.Completed {
			t.Errorf("%s with %s did not complete: %s", r.Scenario, r.Impl, r.Err)
		}
	}
}

// The full-size suite, for the bench command: go test ./vtime -run
// 'TestVirtualTimeSuite$' -vtime.full -vtime.json=out.json.
func TestVirtualTimeSuite(t *testing.T) {
	if !*full && *jsonOut == "" {
		t.Skip("full-size suite: run with -vtime.full (or -vtime.json=FILE alone for the short sizes)")
	}
	p := ShortParams()
	if *full {
		p = DefaultParams()
	}
	rs := RunAll(t, p)
	if *jsonOut != "" {
		b, err := json.MarshalIndent(rs, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*jsonOut, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range rs {
		if !r.Completed {
			t.Errorf("%s with %s did not complete: %s", r.Scenario, r.Impl, r.Err)
		}
	}
}

// The targets for ours, at full size (-short: 100 blocks).
func TestOursTargets(t *testing.T) {
	p := DefaultParams()
	if testing.Short() {
		p = ShortParams()
	}
	byName := map[string]Scenario{}
	for _, s := range Scenarios(p) {
		byName[s.Name] = s
	}
	t.Run("one seed within 1.1× the bound", func(t *testing.T) {
		r := Run(t, byName["1 seed → 1 leech"], Ours)
		t.Log(r)
		if !r.Completed {
			t.Fatalf("did not complete: %s", r.Err)
		}
		if r.Ratio > 1.1 {
			t.Errorf("took %v, %.3f × the lower bound %v (target ≤ 1.1)", r.Time, r.Ratio, r.Bound)
		}
	})
	t.Run("ten seeds at most 1% duplicates", func(t *testing.T) {
		r := Run(t, byName["10 seeds → 1 leech"], Ours)
		t.Log(r)
		if !r.Completed {
			t.Fatalf("did not complete: %s", r.Err)
		}
		if r.DupBlocks*100 > r.BlocksNeeded {
			t.Errorf("%d duplicate blocks of %d needed (%.2f%%, target ≤ 1%%)", r.DupBlocks, r.BlocksNeeded, r.DupPercent)
		}
	})
}

// How boxo's "10 seeds → 1 leech" depends on the links' send buffer, and
// ours beside it: the sweep behind docs/benchmarks.md's note on the
// network model (-vtime.full only; -1 is the old network, which never
// blocked a sender). Ours is deterministic and runs once; boxo chooses
// peers at random, so it runs -vtime.boxoruns times per buffer.
func TestTenSeedsBySendBuffer(t *testing.T) {
	if !*full {
		t.Skip("full-size sweep: run with -vtime.full")
	}
	var ten Scenario
	for _, s := range Scenarios(DefaultParams()) {
		if s.Name == "10 seeds → 1 leech" {
			ten = s
		}
	}
	for _, buf := range []int{-1, 0, 256 << 10, 1 << 20, 4 << 20, 16 << 20} {
		s := ten
		s.Params.SendBuffer = buf
		r := Run(t, s, Ours)
		t.Logf("send buffer %9d: %v", buf, r)
		var times []float64
		var dups []float64
		for range *boxoRuns {
			r := Run(t, s, Boxo)
			if !r.Completed {
				t.Errorf("buffer %d, boxo: did not complete: %s", buf, r.Err)
				continue
			}
			times = append(times, r.Time.Seconds())
			dups = append(dups, float64(r.DupBlocks))
		}
		slices.Sort(times)
		slices.Sort(dups)
		if len(times) > 0 {
			t.Logf("send buffer %9d: boxo, %d runs: time %.2f s median (%.2f–%.2f), duplicates %.0f median (%.0f–%.0f)",
				buf, len(times), times[len(times)/2], times[0], times[len(times)-1], dups[len(dups)/2], dups[0], dups[len(dups)-1])
		}
	}
}

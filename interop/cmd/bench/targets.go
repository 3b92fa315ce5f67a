package main

import (
	"fmt"
	"strings"

	"github.com/gobitswap/bitswap/interop/vtime"
)

// A target is one of the goals, checked against a run's results.
type target struct {
	Goal   string `json:"goal"`
	Figure string `json:"figure"` // what was measured, or why nothing was
	Met    bool   `json:"met"`
}

// targets checks the results against the goals the benchmarks exist for
// (short: of a -short run). A goal whose rows are missing (the suite did not
// run) is left out.
func targets(results []SuiteResult, short bool) []target {
	var out []target
	find := func(suite, contains string) *Row {
		for i := range results {
			if results[i].Name != suite {
				continue
			}
			for j := range results[i].Rows {
				if strings.Contains(results[i].Rows[j].Case, contains) {
					return &results[i].Rows[j]
				}
			}
		}
		return nil
	}
	ratio := func(goal string, r *Row, min float64) {
		if r == nil {
			return
		}
		t := target{Goal: goal}
		if r.Ratio > 0 {
			t.Figure = fmt.Sprintf("%.2f×", r.Ratio)
			t.Met = r.Ratio >= min
		} else {
			t.Figure = "no ratio: " + r.Boxo.cell()
		}
		out = append(out, t)
	}
	big := find("throughput", "in 256 KiB blocks, one GetBlocks")
	ratio("loopback, 256 KiB blocks: ours ≥ 1.5 × boxo", big, 1.5)
	if raw := find("throughput", "ceiling: raw libp2p stream, "); big != nil && raw != nil && big.Ours.ok() && raw.Ours.ok() {
		f := big.Ours.Median / raw.Ours.Median
		out = append(out, target{Goal: "loopback, 256 KiB blocks: ours ≥ 90 % of the raw stream",
			Figure: fmt.Sprintf("%.0f %%", 100*f), Met: f >= 0.9})
	}
	ratio("loopback, 4 KiB blocks: ours ≥ 2 × boxo (boxo batched)", find("throughput", "× 4 KiB: ours one GetBlocks"), 2)
	if h := find("memory", "peak Go heap above idle"); h != nil && h.Ours.ok() {
		out = append(out, target{Goal: "1 GiB into pebble: peak heap ≤ 64 MiB above idle",
			Figure: fmt.Sprintf("%.1f MiB", h.Ours.Median), Met: h.Ours.Median <= 64})
	}
	for _, c := range []struct {
		chunks string
		min    float64
	}{{"4 KiB", 2}, {"256 KiB", 1.5}, {"1 MiB", 1.5}} {
		ratio(fmt.Sprintf("DAG fetch through the command, %s chunks, end to end: ours ≥ %.1f × boxo", c.chunks, c.min),
			find("dag", "in "+c.chunks+" chunks: "+dE2E), c.min)
	}
	if repo, null := find("dag", dRepo), find("dag", dNull); repo != nil && repo.Ours.ok() {
		t := target{Goal: "DAG fetch of 1 GiB into the on-disk repo (get --repo): ≥ 250 MB/s or ≥ ½ of the in-memory figure (CAR to /dev/null)"}
		t.Figure = fmt.Sprintf("%.0f MB/s", repo.Ours.Median)
		t.Met = repo.Ours.Median >= 250
		if null != nil && null.Ours.ok() {
			t.Figure += fmt.Sprintf(", %.0f %% of /dev/null's %.0f MB/s", 100*repo.Ours.Median/null.Ours.Median, null.Ours.Median)
			t.Met = t.Met || repo.Ours.Median >= null.Ours.Median/2
		}
		if dw := find("dag", "ceiling: disk sequential write"); dw != nil && dw.Ours.ok() {
			t.Figure += fmt.Sprintf(" (the disk writes %.0f MB/s)", dw.Ours.Median)
		}
		out = append(out, t)
	}
	for _, s := range results {
		if s.Name == "attack" && len(s.Rows) > 0 {
			out = append(out, attackTargets(s.Rows)...)
		}
	}
	for _, s := range results {
		if s.Name == "quiet" && len(s.Rows) > 0 {
			out = append(out, quietTargets(s.Rows)...)
		}
	}
	for _, s := range results {
		if s.Name == "vtime" && len(s.Rows) > 0 {
			p := vtime.DefaultParams()
			if short {
				p = vtime.ShortParams()
			}
			fails := vtimeTargetFailures(s.Rows, p.Blocks)
			t := target{Goal: "virtual time: ≤ 1.1 × bound with one seed and with 10, ≤ 1 % duplicates with 10, in both bandwidth models; ours ≤ boxo in time and duplicates everywhere",
				Figure: "all hold", Met: len(fails) == 0}
			if len(fails) > 0 {
				t.Figure = strings.Join(fails, "; ")
			}
			out = append(out, t)
		}
	}
	return out
}

// vtimeTargetFailures holds ours to the targets on the virtual-time rows
// (blocks: the blocks per scenario) and says which do not hold.
func vtimeTargetFailures(rows []Row, blocks int) []string {
	var fails []string
	scenarios := 0
	for _, r := range rows {
		scenario, metric, ok := strings.Cut(r.Case, ": ")
		if !ok || !r.Ours.ok() {
			fails = append(fails, fmt.Sprintf("%s: no figure for ours", r.Case))
			continue
		}
		ours := r.Ours.Samples[0]
		switch metric {
		case "time / bound":
			scenarios++
			if (strings.Contains(scenario, "1 seed") || strings.HasPrefix(scenario, "10 seeds")) && ours > 1.1 {
				fails = append(fails, fmt.Sprintf("%s: %.3f × the lower bound, target ≤ 1.1", scenario, ours))
			}
		case "duplicate blocks":
			if strings.HasPrefix(scenario, "10 seeds") && ours > 0.01*float64(blocks) {
				fails = append(fails, fmt.Sprintf("%s: %v duplicate blocks of %d, target ≤ 1 %%", scenario, ours, blocks))
			}
		}
		if (metric == "virtual time" || metric == "duplicate blocks") && r.Boxo.ok() && ours > r.Boxo.Samples[0] {
			fails = append(fails, fmt.Sprintf("%s: ours %v > boxo %v", r.Case, ours, r.Boxo.Samples[0]))
		}
	}
	if want := len(vtime.Scenarios(vtime.ShortParams())); scenarios != want {
		fails = append(fails, fmt.Sprintf("%d virtual-time scenarios, want %d", scenarios, want))
	}
	return fails
}

// Targets of the attack suite, for ours.
const (
	attackMaxRSS       = 32  // MiB of RSS growth of the attacked server
	attackMaxSlowdown  = 1.2 // honest fetch under attack over the baseline
	clientExtraRSSSlop = 32  // MiB of client RSS growth over its growth with no hostile peer
)

// attackTargets checks ours against the attack suite's targets: under every
// server attack, RSS growth ≤ 32 MiB and the honest fetch ≤ 1.2 × the
// baseline (medians); under every client attack, every fetch complete and
// RSS growth ≤ the no-hostile growth + 32 MiB.
func attackTargets(rows []Row) []target {
	var rssMiss, slowMiss, incomplete, memMiss []string
	worstRSS, worstSlow := "", ""
	var wr, ws float64
	var clientBase float64
	for _, r := range rows {
		if label, metric, _ := strings.Cut(r.Case, ": "); label == "C0. no hostile peer" && metric == mRSS && r.Ours.ok() {
			clientBase = r.Ours.Median
		}
	}
	for _, r := range rows {
		label, metric, ok := strings.Cut(r.Case, ": ")
		if !ok {
			continue
		}
		id, _, _ := strings.Cut(label, ". ")
		client := strings.HasPrefix(id, "C")
		if id == "0" || id == "C0" {
			continue
		}
		fig := r.Ours.cell()
		switch {
		case !client && metric == mRSS:
			if !r.Ours.ok() {
				rssMiss = append(rssMiss, id+": "+fig)
			} else if r.Ours.Median > attackMaxRSS {
				rssMiss = append(rssMiss, fmt.Sprintf("%s: +%.0f MiB", id, r.Ours.Median))
			}
			if r.Ours.ok() && r.Ours.Median >= wr {
				wr, worstRSS = r.Ours.Median, fmt.Sprintf("+%.1f MiB (%s)", r.Ours.Median, id)
			}
		case !client && metric == mRatio:
			if !r.Ours.ok() {
				slowMiss = append(slowMiss, id+": "+fig)
			} else if r.Ours.Median > attackMaxSlowdown {
				slowMiss = append(slowMiss, fmt.Sprintf("%s: %.2f×", id, r.Ours.Median))
			}
			if r.Ours.ok() && r.Ours.Median >= ws {
				ws, worstSlow = r.Ours.Median, fmt.Sprintf("%.2f× (%s)", r.Ours.Median, id)
			}
		case client && metric == mComplete:
			if !strings.HasPrefix(r.Ours.Text, "yes") {
				incomplete = append(incomplete, id+": "+fig)
			}
		case client && metric == mRSS:
			if !r.Ours.ok() {
				memMiss = append(memMiss, id+": "+fig)
			} else if r.Ours.Median > clientBase+clientExtraRSSSlop {
				memMiss = append(memMiss, fmt.Sprintf("%s: +%.0f MiB", id, r.Ours.Median))
			}
		}
	}
	mk := func(goal string, miss []string, worst string) target {
		t := target{Goal: goal, Met: len(miss) == 0}
		switch {
		case len(miss) > 0:
			t.Figure = "missed: " + strings.Join(miss, "; ")
		case worst != "":
			t.Figure = "all met; worst " + worst
		default:
			t.Figure = "all met"
		}
		return t
	}
	return []target{
		mk(fmt.Sprintf("attacks on the server: ours' RSS growth ≤ %d MiB under every attack", attackMaxRSS), rssMiss, worstRSS),
		mk(fmt.Sprintf("attacks on the server: honest fetch from ours ≤ %.1f × baseline under every attack", attackMaxSlowdown), slowMiss, worstSlow),
		mk("attacks on our client: every fetch completes", incomplete, ""),
		mk(fmt.Sprintf("attacks on our client: RSS growth ≤ its growth with no hostile peer (%.0f MiB) + %d MiB", clientBase, clientExtraRSSSlop), memMiss, ""),
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/gobitswap/bitswap/interop/vtime"
)

const vtimeDoc = `Protocol efficiency in virtual time: both implementations on the same
virtual network (framed wire bytes; 50 ms round trip, 100 Mbit/s per link; 1,000 × 256 KiB blocks,
100 with -short) inside testing/synctest, boxo through vtime.BoxoNetwork, which sends through the
same links as ours. **What the network models:** per-pair links with a one-way latency and a
bandwidth, frames one after another on each (their latencies overlap, as on a pipe); a send
buffer of 256 KiB per link (yamux's initial stream window): a send blocks until what the link has
not yet put on the wire fits it, so a server cannot queue more than that ahead of its peer and a
CANCEL can only recall what it has not yet sent; in the "shared" rows, an access link of
100 Mbit/s that all of the leech's (or the seed's) connections share, one frame after another;
in "strangers", leeches connected to the seed only. **What it does not:** TCP's slow start and
congestion control, window growth past 256 KiB on long links, a receiver slower than its link
(messages are handled the instant they arrive), CPU time (all processing is instantaneous), and
packet loss (only whole messages, with WithLoss, which the suite does not use). Every figure
comes from the network's traffic accounting; the lower bound is one round trip per link before
its first byte, then each link's full bandwidth (and no more than an access link carries), plus a
round trip per DAG level. Ours is deterministic; boxo's peer choice is random, so its rows are one
sample (TestTenSeedsBySendBuffer in interop/vtime samples it repeatedly). Run as a ` + "`go test ./vtime`" + `
subprocess, since synctest needs a *testing.T.`

// runVtime runs the virtual-time suite in a go test subprocess and turns
// its JSON into rows.
func runVtime(cfg Config) ([]Row, error) {
	var rs []vtime.Result
	if err := vtimeTest(cfg, "vtime", "TestVirtualTimeSuite$", "-vtime.json", &rs); err != nil {
		return nil, err
	}
	return vtimeRows(rs), nil
}

// vtimeTest runs one test of interop/vtime in a go test subprocess (synctest
// needs a *testing.T), full size unless cfg.Short, with jsonFlag naming a
// temporary file, and decodes that file into into.
func vtimeTest(cfg Config, what, test, jsonFlag string, into any) error {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return fmt.Errorf("%s: finding the interop module: %w", what, err)
	}
	dir := filepath.Dir(strings.TrimSpace(string(gomod)))
	out, err := os.CreateTemp("", what+"-*.json")
	if err != nil {
		return err
	}
	out.Close()
	defer os.Remove(out.Name())
	args := []string{"test", "-count=1", "-timeout=20m", "./vtime", "-run", test, "-args", jsonFlag + "=" + out.Name()}
	if !cfg.Short {
		args = append(args, "-vtime.full")
	}
	cfg.logf("%s: go %s", what, strings.Join(args, " "))
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = cfg.Log, cfg.Log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: the suite failed: %w", what, err)
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("%s: reading results: %w", what, err)
	}
	return nil
}

// vtimeRows pairs ours and boxo per scenario: time, time over the bound,
// duplicates, wire bytes per payload byte and messages.
func vtimeRows(rs []vtime.Result) []Row {
	type pair struct{ ours, boxo *vtime.Result }
	var order []string
	by := map[string]*pair{}
	for i := range rs {
		r := &rs[i]
		p := by[r.Scenario]
		if p == nil {
			p = &pair{}
			by[r.Scenario] = p
			order = append(order, r.Scenario)
		}
		if r.Impl == vtime.Ours {
			p.ours = r
		} else {
			p.boxo = r
		}
	}
	var rows []Row
	for _, name := range order {
		p := by[name]
		metric := func(label, unit string, f func(*vtime.Result) float64, note string) {
			row := Row{Case: name + ": " + label, Unit: unit, Note: note}
			for _, side := range []struct {
				r *vtime.Result
				s *Stat
			}{{p.ours, &row.Ours}, {p.boxo, &row.Boxo}} {
				switch {
				case side.r == nil:
					side.s.Text = "—"
				case !side.r.Completed:
					side.s.Text = "incomplete"
				default:
					side.s.add(f(side.r))
				}
			}
			if row.Ours.ok() && row.Boxo.ok() && row.Boxo.Samples[0] != 0 {
				row.Ratio = row.Ours.Samples[0] / row.Boxo.Samples[0]
			}
			rows = append(rows, row)
		}
		bound := ""
		if p.ours != nil {
			bound = fmt.Sprintf("bound %.3f s", p.ours.Bound.Seconds())
		}
		metric("virtual time", "s", func(r *vtime.Result) float64 { return r.Time.Seconds() }, bound)
		metric("time / bound", "×", func(r *vtime.Result) float64 { return r.Ratio }, "")
		metric("duplicate blocks", "blocks", func(r *vtime.Result) float64 { return float64(r.DupBlocks) }, "")
		metric("wire bytes / payload byte", "×", func(r *vtime.Result) float64 { return r.WirePerPayload }, "")
		metric("messages", "msgs", func(r *vtime.Result) float64 { return float64(r.Messages) }, "")
	}
	return rows
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gobitswap/bitswap/interop/vtime"
)

// TestMain lets the test binary act as a memory-case child, as the bench
// binary does (the memory case re-executes os.Executable).
func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	os.Exit(m.Run())
}

// TestBenchShort runs every suite in short mode and checks that each one
// completed and produced figures. It asserts nothing about speed.
func TestBenchShort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every suite over real libp2p hosts")
	}
	dir := t.TempDir()
	jsonFile, mdFile, plotFile := filepath.Join(dir, "out.json"), filepath.Join(dir, "out.md"), filepath.Join(dir, "out.svg")
	var stdout, stderr bytes.Buffer
	err := run([]string{"-short", "-json", jsonFile, "-markdown", mdFile, "-plot", plotFile}, &stdout, &stderr)
	t.Logf("stderr:\n%s", stderr.String())
	t.Logf("stdout:\n%s", stdout.String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Suites) != len(suites) {
		t.Fatalf("%d suites in the report, %d registered", len(rep.Suites), len(suites))
	}
	for _, s := range rep.Suites {
		if s.Err != "" {
			t.Errorf("suite %s failed: %s", s.Name, s.Err)
		}
		if len(s.Rows) == 0 {
			t.Errorf("suite %s: no rows", s.Name)
		}
		for _, r := range s.Rows {
			if !r.Ours.ok() {
				t.Errorf("suite %s, %s: no figure for ours", s.Name, r.Case)
			}
			if !r.Boxo.ok() && r.Boxo.Text == "" && !strings.HasPrefix(r.Case, "ceiling") {
				t.Errorf("suite %s, %s: no figure for boxo", s.Name, r.Case)
			}
		}
	}
	for _, s := range rep.Suites {
		if s.Name == "vtime" {
			checkVtimeTargets(t, s.Rows)
		}
	}
	if svg, err := os.ReadFile(plotFile); err != nil || !bytes.Contains(svg, []byte("<svg")) {
		t.Errorf("plot: %v, %d bytes without <svg", err, len(svg))
	}
	md, err := os.ReadFile(mdFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"go run ./cmd/bench -short", "| CPU |", "## throughput"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("markdown report lacks %q", want)
		}
	}
}

// checkVtimeTargets holds ours to the targets on the virtual-time
// rows, which are deterministic for ours: within 1.1 × the lower bound in
// every one-seed scenario, at most 1 % duplicate blocks with 10 seeds, and
// no slower and with no more duplicates than boxo in every scenario.
func checkVtimeTargets(t *testing.T, rows []Row) {
	t.Helper()
	scenarios := 0
	for _, r := range rows {
		scenario, metric, ok := strings.Cut(r.Case, ": ")
		if !ok || !r.Ours.ok() {
			t.Errorf("vtime row %q: no figure for ours", r.Case)
			continue
		}
		ours := r.Ours.Samples[0]
		switch metric {
		case "time / bound":
			scenarios++
			if strings.Contains(scenario, "1 seed") && ours > 1.1 {
				t.Errorf("%s: %.3f × the lower bound, target ≤ 1.1", scenario, ours)
			}
		case "duplicate blocks":
			if strings.HasPrefix(scenario, "10 seeds") && ours > 0.01*float64(vtime.ShortParams().Blocks) {
				t.Errorf("%s: %v duplicate blocks of %d, target ≤ 1 %%", scenario, ours, vtime.ShortParams().Blocks)
			}
		}
		if (metric == "virtual time" || metric == "duplicate blocks") && r.Boxo.ok() && ours > r.Boxo.Samples[0] {
			t.Errorf("%s: ours %v > boxo %v", r.Case, ours, r.Boxo.Samples[0])
		}
	}
	if scenarios != 7 {
		t.Errorf("%d virtual-time scenarios, want 7", scenarios)
	}
}

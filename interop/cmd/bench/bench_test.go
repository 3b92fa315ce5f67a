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
		if s.Name == "attack" {
			checkAttackRows(t, s.Rows)
			continue
		}
		if s.Name == "dag" {
			checkDAGRows(t, s.Rows)
		}
		if s.Name == "quiet" {
			checkQuietRows(t, s.Rows)
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
	for _, want := range []string{"go run ./cmd/bench -short", "| CPU |", "## throughput", "## Targets", "| scenario | impl |", "![Loopback throughput](out.svg)"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("markdown report lacks %q", want)
		}
	}
	// -render writes the same report again from the JSON, measuring nothing.
	again := filepath.Join(dir, "again.md")
	stdout.Reset()
	if err := run([]string{"-render", jsonFile, "-markdown", again, "-plot", plotFile}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if md2, err := os.ReadFile(again); err != nil || !bytes.Equal(md2, md) {
		t.Errorf("-render wrote a different report (err %v):\n%s", err, md2)
	}
}

// checkVtimeTargets holds ours to the targets on the virtual-time
// rows of the short run, which are deterministic for ours.
func checkVtimeTargets(t *testing.T, rows []Row) {
	t.Helper()
	for _, f := range vtimeTargetFailures(rows, vtime.ShortParams().Blocks) {
		t.Error(f)
	}
}

// checkAttackRows checks that the attack suite ran every attack and has a
// figure (or a reason for none) for each of its rows. A run that failed
// (the server crashed, an honest fetch timed out) is a result of the
// suite, reported in its rows, not a failure of the smoke test; neither are
// the suite's targets checked here.
func checkAttackRows(t *testing.T, rows []Row) {
	t.Helper()
	seen := map[string]bool{}
	for _, r := range rows {
		label, metric, ok := strings.Cut(r.Case, ": ")
		if !ok {
			t.Errorf("attack row %q: no metric", r.Case)
			continue
		}
		id, _, _ := strings.Cut(label, ". ")
		seen[id] = true
		if !r.Ours.ok() && r.Ours.Text == "" {
			t.Errorf("attack row %q (%s): nothing for ours", r.Case, metric)
		}
		if !r.Boxo.ok() && r.Boxo.Text == "" {
			t.Errorf("attack row %q (%s): nothing for boxo", r.Case, metric)
		}
	}
	want := []string{"0"}
	for _, a := range serverAttacks() {
		want = append(want, a.id)
	}
	want = append(want, "C0")
	for _, a := range clientAttacks {
		want = append(want, a.id)
	}
	for _, id := range want {
		if !seen[id] {
			t.Errorf("attack suite: no rows for attack %s", id)
		}
	}
}

// checkDAGRows checks that the dag suite ran every case and pairing: five
// rows per DAG, four for the disk case.
func checkDAGRows(t *testing.T, rows []Row) {
	t.Helper()
	per := map[string]int{}
	for _, r := range rows {
		label, metric, ok := strings.Cut(r.Case, ": ")
		if !ok {
			t.Errorf("dag row %q: no metric", r.Case)
			continue
		}
		if strings.HasPrefix(label, "ceiling") {
			label = "ceiling"
		}
		per[label]++
		if metric == dE2E && !strings.Contains(r.Note, "blocks") {
			t.Errorf("dag row %q: note %q names no block count", r.Case, r.Note)
		}
	}
	want := map[string]int{"ceiling": 1}
	for _, c := range dagCases(0.02) {
		want[c.label] = 5
		if c.key == "1m" {
			want["disk, "+c.label] = 3
		}
	}
	for label, n := range want {
		if per[label] != n {
			t.Errorf("dag suite: %d rows for %q, want %d (rows: %v)", per[label], label, n, per)
		}
	}
}

// checkQuietRows checks that the quiet suite ran both cases with every
// setting of the quiet peers: each metric's rows, by how many settings
// have it.
func checkQuietRows(t *testing.T, rows []Row) {
	t.Helper()
	got := map[string]int{}
	for _, r := range rows {
		_, metric, ok := strings.Cut(r.Case, ": ")
		if !ok {
			t.Errorf("quiet row %q: no metric", r.Case)
			continue
		}
		got[metric]++
	}
	want := map[string]int{qE2E: 3, qSelf: 3, qOverNone: 2, qOverNoneSelf: 2, qEntries: 2, qMost: 2, qReasks: 1,
		qMissMean: 2, qMissMost: 2, qMissReasks: 1}
	for m, n := range want {
		if got[m] != n {
			t.Errorf("quiet suite: %d rows of %q, want %d (rows: %v)", got[m], m, n, got)
		}
	}
	if len(rows) != 20 {
		t.Errorf("quiet suite: %d rows, want 20", len(rows))
	}
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// plotTestResults is a hand-made run with a throughput suite holding a
// ceiling row, a row with both sides, a row whose boxo side timed out and a
// MiB row that the plot must ignore.
func plotTestResults() []SuiteResult {
	rows := []Row{
		{Case: "ceiling: raw libp2p stream, 64 MiB", Unit: "MB/s", HigherIsBetter: true,
			Ours: Stat{Samples: []float64{910, 980, 955}}},
		{Case: "64 MiB in 1 MiB blocks, one GetBlocks", Unit: "MB/s", HigherIsBetter: true,
			Ours: Stat{Samples: []float64{610, 640, 625}},
			Boxo: Stat{Samples: []float64{300, 350, 320}}},
		{Case: "16384 × 4 KiB: one GetBlocks each, a rather long case name that needs wrapping", Unit: "MB/s", HigherIsBetter: true,
			Ours: Stat{Samples: []float64{120, 150, 141}},
			Boxo: Stat{Text: "timeout"}},
		{Case: "peak heap above idle", Unit: "MiB",
			Ours: Stat{Samples: []float64{12}},
			Boxo: Stat{Samples: []float64{30}}},
	}
	for i := range rows {
		rows[i].finish()
	}
	return []SuiteResult{
		{Name: "vtime", Rows: []Row{{Case: "vtime case", Unit: "MB/s", Ours: Stat{Samples: []float64{1}}}}},
		{Name: "throughput", Rows: rows},
	}
}

func TestWritePlot(t *testing.T) {
	dir := t.TempDir()
	results := plotTestResults()

	svgPath := filepath.Join(dir, "throughput.svg")
	if err := writePlot(svgPath, results); err != nil {
		t.Fatalf("writePlot svg: %v", err)
	}
	svg, err := os.ReadFile(svgPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(svg) == 0 {
		t.Fatal("empty SVG")
	}
	text := string(svg)
	// Each label may be wrapped onto several lines, each its own text.
	var want []string
	for _, r := range results[1].Rows[:3] {
		want = append(want, strings.Split(plotLabel(r.Case), "\n")...)
	}
	want = append(want, "ceiling:", "64 MiB in 1 MiB", "16384 × 4 KiB",
		"ours", "boxo", "raw libp2p stream", "boxo: timeout", "MB/s")
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("SVG lacks %q", w)
		}
	}
	for _, unwanted := range []string{"peak heap above idle", "vtime case"} {
		if strings.Contains(text, unwanted) {
			t.Errorf("SVG has %q, which is not a throughput MB/s row", unwanted)
		}
	}

	pngPath := filepath.Join(dir, "throughput.png")
	if err := writePlot(pngPath, results); err != nil {
		t.Fatalf("writePlot png: %v", err)
	}
	png, err := os.ReadFile(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("PNG file does not start with the PNG signature (%d bytes)", len(png))
	}
}

func TestWritePlotErrors(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "p.svg")

	noSuite := []SuiteResult{{Name: "memory", Rows: []Row{{Case: "x", Unit: "MB/s", Ours: Stat{Samples: []float64{1}}}}}}
	if err := writePlot(name, noSuite); err == nil || !strings.Contains(err.Error(), "no throughput suite") {
		t.Errorf("without a throughput suite: got %v, want a no-throughput-suite error", err)
	}
	if err := writePlot(name, nil); err == nil {
		t.Error("with no results: got no error")
	}

	noRows := []SuiteResult{{Name: "throughput", Rows: []Row{{Case: "x", Unit: "MiB", Ours: Stat{Samples: []float64{1}}}}}}
	if err := writePlot(name, noRows); err == nil || !strings.Contains(err.Error(), "no MB/s rows") {
		t.Errorf("without MB/s rows: got %v, want a no-MB/s-rows error", err)
	}

	if err := writePlot(filepath.Join(dir, "p.gif"), plotTestResults()); err == nil {
		t.Error("with a .gif name: got no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "p.gif")); err == nil {
		t.Error("a rejected format still created a file")
	}
}

func TestPlotLabel(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"short case", "short case"},
		{"ceiling: raw libp2p stream, 64 MiB", "ceiling: raw libp2p\nstream, 64 MiB"},
		{"one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen",
			"one two three four five six\nseven eight nine ten eleven\ntwelve thirteen fourteen …"},
		{"averyveryveryveryverylongwordwithoutanyspaces", "averyveryveryveryverylongwordw…"},
	} {
		if got := plotLabel(tc.in); got != tc.want {
			t.Errorf("plotLabel(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

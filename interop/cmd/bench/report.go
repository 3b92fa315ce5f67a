package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Stat is one side's samples of a Row's metric, one per repeat, with their
// median and spread. Text, when set, is shown instead of the median (e.g.
// "timeout"), and such a side takes no part in the ratio.
type Stat struct {
	Samples []float64 `json:"samples,omitempty"`
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
	Text    string    `json:"text,omitempty"`
}

// ok reports whether the side has a number to show.
func (s Stat) ok() bool { return s.Text == "" && len(s.Samples) > 0 }

func (s *Stat) add(v float64) { s.Samples = append(s.Samples, v) }

func (s *Stat) finish() {
	if len(s.Samples) == 0 {
		return
	}
	v := slices.Clone(s.Samples)
	slices.Sort(v)
	s.Min, s.Max = v[0], v[len(v)-1]
	if n := len(v); n%2 == 1 {
		s.Median = v[n/2]
	} else {
		s.Median = (v[n/2-1] + v[n/2]) / 2
	}
}

// Row is one line of a suite's table: one metric of one case, for ours and
// for boxo, measured in the same run. Suites other than throughput (the
// virtual-time suite) fill it the same way; a deterministic metric has one
// sample per side.
type Row struct {
	Case string `json:"case"`
	Unit string `json:"unit"`
	// HigherIsBetter says which way the ratio ours/boxo should point.
	HigherIsBetter bool `json:"higher_is_better"`
	Ours           Stat `json:"ours"`
	Boxo           Stat `json:"boxo"`
	// Ratio is median(ours)/median(boxo), or 0 when either side has no number.
	Ratio float64 `json:"ratio,omitempty"`
	Note  string  `json:"note,omitempty"`
}

func (r *Row) finish() {
	r.Ours.finish()
	r.Boxo.finish()
	r.Ratio = 0
	if r.Ours.ok() && r.Boxo.ok() && r.Boxo.Median != 0 {
		r.Ratio = r.Ours.Median / r.Boxo.Median
	}
}

// SuiteResult is the outcome of one suite.
type SuiteResult struct {
	Name    string        `json:"name"`
	Rows    []Row         `json:"rows"`
	Err     string        `json:"error,omitempty"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Machine describes where the run happened.
type Machine struct {
	GoVersion string `json:"go_version"`
	GOOS      string `json:"goos"`
	GOARCH    string `json:"goarch"`
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	Date      string `json:"date"`
	Command   string `json:"command"`
}

// Report is everything a run writes to -json.
type Report struct {
	Machine Machine       `json:"machine"`
	Config  Config        `json:"config"`
	Suites  []SuiteResult `json:"suites"`
}

func machineInfo(command string) Machine {
	return Machine{
		GoVersion: runtime.Version(),
		GOOS:      runtime.GOOS,
		GOARCH:    runtime.GOARCH,
		CPU:       cpuModel(),
		Cores:     runtime.NumCPU(),
		Date:      time.Now().UTC().Format(time.RFC3339),
		Command:   command,
	}
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// fmtNum prints a value with about three significant digits.
func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func (s Stat) cell() string {
	switch {
	case s.Text != "":
		return s.Text
	case len(s.Samples) == 0:
		return "—"
	}
	return fmtNum(s.Median)
}

func (s Stat) spread() string {
	if !s.ok() {
		return "—"
	}
	if len(s.Samples) == 1 {
		return "(1 run)"
	}
	return fmtNum(s.Min) + "–" + fmtNum(s.Max)
}

func (r Row) ratioCell() string {
	if r.Ratio == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", r.Ratio)
}

func (r Row) cells() []string {
	unit := r.Unit
	if r.Ratio != 0 || r.Ours.ok() {
		if r.HigherIsBetter {
			unit += " ↑"
		} else {
			unit += " ↓"
		}
	}
	return []string{r.Case, unit, r.Ours.cell(), r.Ours.spread(), r.Boxo.cell(), r.Boxo.spread(), r.ratioCell(), r.Note}
}

var header = []string{"case", "unit", "ours", "ours min–max", "boxo", "boxo min–max", "ours/boxo", "note"}

// writeText prints one table per suite.
func writeText(w io.Writer, results []SuiteResult, short bool) {
	for _, s := range results {
		fmt.Fprintf(w, "\n== %s (%.1f s)\n", s.Name, s.Elapsed.Seconds())
		if s.Err != "" {
			fmt.Fprintf(w, "FAILED: %s\n", s.Err)
		}
		if len(s.Rows) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(header, "\t"))
		for _, r := range s.Rows {
			fmt.Fprintln(tw, strings.Join(r.cells(), "\t"))
		}
		tw.Flush()
	}
	if ts := targets(results, short); len(ts) > 0 {
		fmt.Fprintf(w, "\n== targets\n")
		for _, t := range ts {
			fmt.Fprintf(w, "%-4s %s: %s\n", map[bool]string{true: "met", false: "NOT"}[t.Met], t.Goal, t.Figure)
		}
	}
}

// writeMarkdown writes the report for docs/benchmarks.md, with an image
// link to plotFile (relative to the report) unless it is empty.
func writeMarkdown(w io.Writer, rep Report, plotFile string) {
	m := rep.Machine
	fmt.Fprintf(w, "# Benchmarks: gobitswap against boxo\n\n")
	fmt.Fprintf(w, "Produced by (from `interop/`):\n\n```sh\n%s\n```\n\n", m.Command)
	fmt.Fprintf(w, "| machine | |\n|---|---|\n")
	fmt.Fprintf(w, "| date | %s |\n| go | %s %s/%s |\n| CPU | %s |\n| cores | %d |\n", m.Date, m.GoVersion, m.GOOS, m.GOARCH, m.CPU, m.Cores)
	fmt.Fprintf(w, "| repeats | %d%s |\n\n", rep.Config.Repeat, map[bool]string{true: " (short mode)", false: ""}[rep.Config.Short])
	fmt.Fprintf(w, "Each figure is the median over the repeats, with the min–max spread; ours and boxo are\n")
	fmt.Fprintf(w, "measured in the same run, interleaved within each repeat, on fresh nodes. ↑: higher is\n")
	fmt.Fprintf(w, "better, ↓: lower is better. Compare ratios, not absolute figures, across machines.\n")
	if ts := targets(rep.Suites, rep.Config.Short); len(ts) > 0 {
		fmt.Fprintf(w, "\n## Targets\n\n| goal | this run | met |\n|---|---|---|\n")
		for _, t := range ts {
			fmt.Fprintf(w, "| %s | %s | %s |\n", t.Goal, strings.ReplaceAll(t.Figure, "|", `\|`), map[bool]string{true: "yes", false: "**no**"}[t.Met])
		}
	}
	fmt.Fprintf(w, "\nWhere the time goes, what changed and why some targets sit at this machine's limits:\n")
	fmt.Fprintf(w, "[performance.md](performance.md) (next to this report in docs/).\n")
	if plotFile != "" {
		fmt.Fprintf(w, "\n![Loopback throughput](%s)\n", plotFile)
	}
	for _, s := range rep.Suites {
		fmt.Fprintf(w, "\n## %s\n\n", s.Name)
		if s.Err != "" {
			fmt.Fprintf(w, "**Failed:** %s\n\n", s.Err)
		}
		if len(s.Rows) == 0 {
			continue
		}
		if s.Name == "attack" {
			writeAttackMarkdown(w, s.Rows)
			if d, ok := suiteDocs[s.Name]; ok {
				fmt.Fprintf(w, "\n%s\n", d)
			}
			continue
		}
		if s.Name == "vtime" {
			writeVtimeMarkdown(w, s.Rows)
			if d, ok := suiteDocs[s.Name]; ok {
				fmt.Fprintf(w, "\n%s\n", d)
			}
			continue
		}
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(header, " | "), strings.Repeat("---|", len(header)))
		for _, r := range s.Rows {
			c := r.cells()
			for i := range c {
				c[i] = strings.ReplaceAll(c[i], "|", `\|`)
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(c, " | "))
		}
		if d, ok := suiteDocs[s.Name]; ok {
			fmt.Fprintf(w, "\n%s\n", d)
		}
	}
}

func writeJSON(w io.Writer, rep Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// writeVtimeMarkdown writes the virtual-time rows ("<scenario>: <metric>")
// as one line per scenario and implementation, which reads better than one
// line per metric.
func writeVtimeMarkdown(w io.Writer, rows []Row) {
	metrics := []string{"virtual time", "time / bound", "duplicate blocks", "wire bytes / payload byte", "messages"}
	var scenarios []string
	cell := map[string]map[string]Row{}
	for _, r := range rows {
		scenario, metric, ok := strings.Cut(r.Case, ": ")
		if !ok {
			continue
		}
		if cell[scenario] == nil {
			cell[scenario] = map[string]Row{}
			scenarios = append(scenarios, scenario)
		}
		cell[scenario][metric] = r
	}
	fmt.Fprintf(w, "| scenario | impl | time (s) | lower bound | time / bound | duplicate blocks | wire bytes / payload byte | messages |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|\n")
	for _, sc := range scenarios {
		for _, side := range []string{"ours", "boxo"} {
			c := []string{sc, side}
			for i, m := range metrics {
				r, ok := cell[sc][m]
				st := r.Ours
				if side == "boxo" {
					st = r.Boxo
				}
				v := "—"
				if ok {
					v = st.cell()
					if st.ok() && m == "virtual time" {
						v = fmt.Sprintf("%.3f", st.Median)
					}
					if st.ok() && m == "time / bound" {
						v = fmt.Sprintf("%.3f", st.Median)
					}
					if st.ok() && m == "wire bytes / payload byte" {
						v = fmt.Sprintf("%.4f", st.Median)
					}
				}
				c = append(c, v)
				if i == 0 {
					c = append(c, strings.TrimPrefix(cell[sc]["virtual time"].Note, "bound "))
				}
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(c, " | "))
		}
	}
}

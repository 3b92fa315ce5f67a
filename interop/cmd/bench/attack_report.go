package main

import (
	"fmt"
	"io"
	"strings"
)

// writeAttackMarkdown writes the attack rows ("<id>. <name>: <metric>") as
// one line per attack and implementation: a table of the server attacks,
// then one of the client attacks.
func writeAttackMarkdown(w io.Writer, rows []Row) {
	var labels []string
	cell := map[string]map[string]Row{}
	for _, r := range rows {
		label, metric, ok := strings.Cut(r.Case, ": ")
		if !ok {
			continue
		}
		if cell[label] == nil {
			cell[label] = map[string]Row{}
			labels = append(labels, label)
		}
		cell[label][metric] = r
	}
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	fmt.Fprintf(w, "| attack | impl | RSS growth (MiB) | before the honest client (MiB) | heap growth (MiB) | honest fetch (s) | ÷ baseline | attacker disconnected | notes |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|\n")
	for _, l := range labels {
		if strings.HasPrefix(l, "C") {
			continue
		}
		for _, side := range []impl{ours, boxo} {
			get := func(metric string) string {
				r, ok := cell[l][metric]
				if !ok {
					return "—"
				}
				return spreadCell(*sideOf(&r, side))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", esc(l), side,
				get(mRSS), get(mAlone), get(mHeap), get(mFetch), get(mRatio), esc(get(mDropped)), esc(get(mNotes)))
		}
	}
	fmt.Fprintf(w, "\n| attack on our client | fetch complete | fetch time (s) | ÷ no hostile | client RSS growth (MiB) | client heap growth (MiB) | notes |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|\n")
	for _, l := range labels {
		if !strings.HasPrefix(l, "C") {
			continue
		}
		get := func(metric string) string {
			r, ok := cell[l][metric]
			if !ok {
				return "—"
			}
			return spreadCell(r.Ours)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", esc(l),
			get(mComplete), get(mCFetch), get(mCRatio), get(mRSS), get(mHeap), esc(get(mNotes)))
	}
}

// spreadCell is a side's median with its min–max when it has several
// samples, or its text.
func spreadCell(s Stat) string {
	if !s.ok() {
		return s.cell()
	}
	if len(s.Samples) == 1 {
		return fmtNum(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", fmtNum(s.Median), fmtNum(s.Min), fmtNum(s.Max))
}

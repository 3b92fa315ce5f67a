package vtime

import (
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var scaleJSON = flag.String("vtime.scalejson", "", "write TestScaleScenarios' results to this file as JSON")

// The scale scenarios, ours and boxo (broadcast control off and on), on
// the same virtual network: short sizes by default, full (1,000 peers, 100
// leeches) with -vtime.full.
func TestScaleScenarios(t *testing.T) {
	var all []ScaleResult
	for _, s := range ScaleScenarios(!*full) {
		byImpl := map[Impl]ScaleResult{}
		for _, impl := range ScaleImpls {
			r := RunScale(t, s, impl)
			t.Log(r)
			all = append(all, r)
			byImpl[impl] = r
			if !r.Completed {
				t.Errorf("%s with %s did not complete: %s", s.Name, impl, r.Err)
			}
		}
		checkScaleTargets(t, s, byImpl)
	}
	if *scaleJSON != "" {
		b, err := json.MarshalIndent(all, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*scaleJSON, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkScaleTargets checks ours against the targets, measured in
// the same run as boxo's figures.
func checkScaleTargets(t *testing.T, s ScaleScenario, r map[Impl]ScaleResult) {
	t.Helper()
	ours, boxo, bc := r[Ours], r[Boxo], r[BoxoBC]
	if !ours.Completed || !boxo.Completed || !bc.Completed {
		return
	}
	if s.Leeches > 1 {
		if ours.MaxPerMean > 1.2 {
			t.Errorf("%s: the slowest leech took %.3f× the mean, want ≤ 1.2", s.Name, ours.MaxPerMean)
		}
		return
	}
	if float64(ours.Entries) > 0.1*float64(boxo.Entries) {
		t.Errorf("%s: ours sent %d wantlist entries, boxo %d: want ≤ 10%%", s.Name, ours.Entries, boxo.Entries)
	}
	if ours.Ratio > 1.1 {
		t.Errorf("%s: ours took %.3f× the bound, want ≤ 1.1", s.Name, ours.Ratio)
	}
	// Against boxo with broadcast control (which asks no quiet peer at all
	// and waits its 1 s provider search delay): no more entries.
	if ours.Entries > bc.Entries {
		t.Errorf("%s: ours sent %d wantlist entries, boxo with broadcast control %d", s.Name, ours.Entries, bc.Entries)
	}
}

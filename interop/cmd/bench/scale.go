package main

import (
	"fmt"

	"github.com/gobitswap/bitswap/interop/vtime"
)

const scaleDoc = `The public network in virtual time (interop/vtime's ScaleScenarios, issue 15): a leech
connected to 1,000 peers of which 3 hold the data (the other 997 answer DONT_HAVE, or stay silent
with the holders reachable only through the router), and one seed serving 100 leeches over a
shared uplink (100 peers and 20 leeches with -short); 50 ms round trip, 100 Mbit/s links,
256 KiB blocks, a fake content router (100 ms) that names the holders as providers of every
block, every leech on the public network (no peer local to it). boxo runs twice: its library
default (broadcast control off: the "boxo" column) and, in the rows marked "vs boxo with
broadcast control", as Kubo v0.43 configures it (broadcast control on, no random peers; local
and peered peers controlled too, the virtual network having none). Entries, messages and bytes
are what the leeches sent (their wantlists); the bound is one round trip, plus the router's
lookup where quiet peers hide the holders, plus the payload over the holders' links or the
seed's uplink. Run as a ` + "`go test ./vtime`" + ` subprocess (synctest needs a *testing.T).`

// runScale runs the scale scenarios in a go test subprocess and turns
// their JSON into rows.
func runScale(cfg Config) ([]Row, error) {
	var rs []vtime.ScaleResult
	if err := vtimeTest(cfg, "scale", "TestScaleScenarios$", "-vtime.scalejson", &rs); err != nil {
		return nil, err
	}
	return scaleRows(rs), nil
}

// scaleRows gives, per scenario, ours against boxo (library default) and,
// for the entries and the time, against boxo with broadcast control.
func scaleRows(rs []vtime.ScaleResult) []Row {
	var order []string
	by := map[string]map[vtime.Impl]*vtime.ScaleResult{}
	for i := range rs {
		r := &rs[i]
		if by[r.Scenario] == nil {
			by[r.Scenario] = map[vtime.Impl]*vtime.ScaleResult{}
			order = append(order, r.Scenario)
		}
		by[r.Scenario][r.Impl] = r
	}
	var rows []Row
	for _, name := range order {
		m := by[name]
		metric := func(label, unit string, other vtime.Impl, f func(*vtime.ScaleResult) float64, note string) {
			row := Row{Case: name + ": " + label, Unit: unit, Note: note}
			for _, side := range []struct {
				r *vtime.ScaleResult
				s *Stat
			}{{m[vtime.Ours], &row.Ours}, {m[other], &row.Boxo}} {
				switch {
				case side.r == nil:
					side.s.Text = "—"
				case !side.r.Completed:
					side.s.Text = "incomplete"
				default:
					side.s.add(f(side.r))
				}
			}
			rows = append(rows, row)
		}
		bound := ""
		if o := m[vtime.Ours]; o != nil {
			bound = fmt.Sprintf("bound %.3f s", o.Bound.Seconds())
		}
		secs := func(r *vtime.ScaleResult) float64 { return r.Time.Seconds() }
		entries := func(r *vtime.ScaleResult) float64 { return float64(r.Entries) }
		metric("virtual time", "s", vtime.Boxo, secs, bound)
		metric("time / bound", "×", vtime.Boxo, func(r *vtime.ScaleResult) float64 { return r.Ratio }, "")
		metric("wantlist entries sent", "entries", vtime.Boxo, entries, "")
		metric("wantlist entries per quiet peer", "entries", vtime.Boxo, func(r *vtime.ScaleResult) float64 { return r.EntriesPerQuiet }, "")
		metric("wantlist bytes per block", "bytes", vtime.Boxo, func(r *vtime.ScaleResult) float64 { return r.WantBytesPerBlk }, "framed bytes the leeches sent, per block fetched")
		metric("messages per block", "msgs", vtime.Boxo, func(r *vtime.ScaleResult) float64 { return r.MessagesPerBlk }, "")
		metric("slowest leech / mean finish", "×", vtime.Boxo, func(r *vtime.ScaleResult) float64 { return r.MaxPerMean }, "")
		metric("virtual time vs boxo with broadcast control", "s", vtime.BoxoBC, secs, bound)
		metric("wantlist entries sent vs boxo with broadcast control", "entries", vtime.BoxoBC, entries, "")
	}
	return rows
}

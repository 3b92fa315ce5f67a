package session

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestPolicyScripts runs the protocol scenarios in testdata/policy: each
// file is a script of inputs to one Policy and the Actions each must produce,
// so the files read as a specification of the Session's decisions. Peers are
// named by letters, CIDs by numbers; every command takes at=DURATION, the
// time since the script's start (it defaults to the previous command's).
//
//	connect peer=a [latency=50ms]   disconnect peer=a
//	add cids=(1,2,3)  or  add range=(1,100)
//	have peer=a cids=(1)            donthave peer=a cids=(1)
//	blocks peer=a cids=(1)          providers cid=1 peers=(p)
//	tick                            remove cids=(1)
//	state                           (who each want is asked of)
//	deadline                        (when the Session must next call tick)
func TestPolicyScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/policy", func(t *testing.T, path string) {
		p := NewPolicy(DefaultConfig())
		now := t0
		cidOf := map[string]cid.Cid{}
		nameOf := map[cid.Cid]string{}
		c := func(name string) cid.Cid {
			if x, ok := cidOf[name]; ok {
				return x
			}
			n, err := strconv.Atoi(name)
			if err != nil || n < 0 || strconv.Itoa(n) != name {
				t.Fatalf("CID name %q: want a number", name)
			}
			x := cids(t, n+1)[n]
			cidOf[name], nameOf[x] = x, name
			return x
		}
		list := func(td *datadriven.TestData, key string) []cid.Cid {
			var out []cid.Cid
			if a, ok := td.Arg(key); ok {
				for _, v := range a.Vals {
					out = append(out, c(v))
				}
			}
			if a, ok := td.Arg("range"); ok && key == "cids" {
				var lo, hi int
				a.Scan(t, 0, &lo)
				a.Scan(t, 1, &hi)
				for i := lo; i <= hi; i++ {
					out = append(out, c(fmt.Sprint(i)))
				}
			}
			return out
		}
		pr := func(td *datadriven.TestData) peer.ID {
			var s string
			td.ScanArgs(t, "peer", &s)
			return peer.ID(s)
		}
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			allowed, ok := scriptArgs[td.Cmd]
			if !ok {
				t.Fatalf("%s: unknown command %q", td.Pos, td.Cmd)
			}
			for _, a := range td.CmdArgs {
				if !slices.Contains(allowed, a.Key) && a.Key != "at" {
					t.Fatalf("%s: %s takes no argument %q (it takes %v and at)", td.Pos, td.Cmd, a.Key, allowed)
				}
			}
			if td.HasArg("at") {
				now = t0.Add(duration(t, td, "at"))
			}
			var a Actions
			switch td.Cmd {
			case "connect":
				lat := 50 * time.Millisecond
				if td.HasArg("latency") {
					lat = duration(t, td, "latency")
				}
				a = p.PeerConnected(now, pr(td), lat)
			case "disconnect":
				a = p.PeerDisconnected(now, pr(td))
			case "add":
				a = p.Add(now, list(td, "cids"))
			case "remove":
				a = p.Remove(now, list(td, "cids"))
			case "have":
				a = p.Presences(now, pr(td), list(td, "cids"), nil)
			case "donthave":
				a = p.Presences(now, pr(td), nil, list(td, "cids"))
			case "blocks":
				a = p.BlocksReceived(now, pr(td), list(td, "cids"))
			case "providers":
				var ps []peer.ID
				arg, _ := td.Arg("peers")
				for _, v := range arg.Vals {
					ps = append(ps, peer.ID(v))
				}
				a = p.ProvidersFound(now, list(td, "cid")[0], ps)
			case "tick":
				a = p.Tick(now)
			case "deadline":
				d := p.Deadline(now)
				if d.IsZero() {
					return "deadline: none"
				}
				return fmt.Sprintf("deadline: %v", d.Sub(t0))
			case "state":
				var lines []string
				for x, w := range p.wants {
					who := string(w.assigned)
					if who == "" {
						who = "-"
					}
					lines = append(lines, fmt.Sprintf("%s: %s", nameOf[x], who))
				}
				sort.Strings(lines)
				return strings.Join(lines, "\n")
			default:
				t.Fatalf("%s: unknown command %q", td.Pos, td.Cmd)
			}
			return render(a, nameOf)
		})
	})
}

// scriptArgs lists the arguments each command takes (besides at): anything
// else, like a typo, fails the script.
var scriptArgs = map[string][]string{
	"connect": {"peer", "latency"}, "disconnect": {"peer"},
	"add": {"cids", "range"}, "remove": {"cids", "range"},
	"have": {"peer", "cids", "range"}, "donthave": {"peer", "cids", "range"},
	"blocks": {"peer", "cids", "range"}, "providers": {"cid", "peers"},
	"tick": nil, "state": nil, "deadline": nil,
}

// duration parses td's argument key as a duration, failing the script if
// it is not one.
func duration(t *testing.T, td *datadriven.TestData, key string) time.Duration {
	var s string
	td.ScanArgs(t, key, &s)
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatalf("%s: %s=%s: %v", td.Pos, key, s, err)
	}
	return d
}

// render prints Actions as the Policy emitted them: one line per kind and
// peer, peers in the order the Policy named them (Actions.Peers), each
// peer's CIDs in the order the Policy put them. Nothing is sorted.
func render(a Actions, nameOf map[cid.Cid]string) string {
	names := func(cs []cid.Cid) string {
		out := make([]string, len(cs))
		for i, x := range cs {
			out[i] = nameOf[x]
		}
		return strings.Join(out, " ")
	}
	var lines []string
	perPeer := func(kind string, m map[peer.ID][]cid.Cid) {
		for _, p := range a.Peers() {
			if cs, ok := m[p]; ok {
				lines = append(lines, fmt.Sprintf("%s %s: %s", kind, string(p), names(cs)))
			}
		}
	}
	perPeer("want-block", a.WantBlocks)
	perPeer("want-have", a.WantHaves)
	perPeer("resend", a.Resends)
	perPeer("cancel", a.Cancels)
	if len(a.CancelAll) > 0 {
		lines = append(lines, "cancel-all: "+names(a.CancelAll))
	}
	if len(a.Received) > 0 {
		lines = append(lines, "received: "+names(a.Received))
	}
	if len(a.FindProvs) > 0 {
		lines = append(lines, "find-providers: "+names(a.FindProvs))
	}
	if len(lines) == 0 {
		return "(nothing)"
	}
	return strings.Join(lines, "\n")
}

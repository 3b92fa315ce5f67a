package session

import (
	"fmt"
	"slices"
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
//	config [all] [control-local] [max=N] [random=N] [seed=N] [rebroadcast=D] [fixed=(a,b)]
//	                                (first, if at all: the Policy's Config; see below)
//	connect peer=a [latency=50ms] [remote] [proven] [protected]
//	disconnect peer=a
//	add cids=(1,2,3)  or  add range=(1,100)
//	have peer=a cids=(1)            donthave peer=a cids=(1)
//	blocks peer=a cids=(1)          providers cid=1 peers=(p)
//	tick                            remove cids=(1)
//	state                           (who each want is asked of, by CID)
//	peers                           (each peer's wants, latency and flags)
//	deadline                        (when the Session must next call tick)
//
// connect, disconnect, have, donthave and blocks take peers=(a,b,c) instead
// of peer=a: the same input from each peer in turn, in the order given,
// at the same time. Their output lists, under "CMD PEER:", the Actions of
// each peer's step that emitted any ("(nothing)" if none did). A connect
// of several peers takes one latency for all or latency=(10ms,20ms,30ms),
// one per peer.
//
// A connected peer is local (PeerInfo.Local) unless the connect says
// remote; proven and protected set those facts. config's keys: all is
// BroadcastAll, control-local BroadcastControlLocal, max
// BroadcastMaxPeers, random BroadcastRandomPeers, seed Seed, rebroadcast
// RebroadcastInterval, fixed FixedPeers; the rest stay DefaultConfig's.
//
// peers lists every peer the Policy knows, in ID order, as "a 50ms useful:
// 1 4": its latency (measured, or as given at connect; the default when
// unknown), its per-block service time if measured ("10ms/block"),
// "useful" if it has said HAVE or sent a block, "suspended" if it timed
// out, then the wants asked of it ("-" if none), in the order first
// wanted (with "inflight=N" if the peer's count of wants in flight
// disagrees with that list, which it never should); a last line
// "unassigned:" lists the wants asked of nobody.
func TestPolicyScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/policy", func(t *testing.T, path string) {
		p := NewPolicy(DefaultConfig())
		stepped := false // config must come before any other command
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
				a.ExpectNumVals(t, 2)
				a.Scan(t, 0, &lo)
				a.Scan(t, 1, &hi)
				for i := lo; i <= hi; i++ {
					out = append(out, c(fmt.Sprint(i)))
				}
			}
			return out
		}
		// prs returns the peers a step names, with peer=a or peers=(a,b).
		prs := func(td *datadriven.TestData) []peer.ID {
			one, many := td.HasArg("peer"), td.HasArg("peers")
			if one == many {
				t.Fatalf("%s: %s takes peer=a or peers=(a,b), one of them", td.Pos, td.Cmd)
			}
			var out []peer.ID
			if one {
				var s string
				td.ScanArgs(t, "peer", &s)
				return append(out, peer.ID(s))
			}
			arg, _ := td.Arg("peers")
			arg.ExpectNumValsGE(t, 1)
			for _, v := range arg.Vals {
				if slices.Contains(out, peer.ID(v)) {
					t.Fatalf("%s: peer %s named twice", td.Pos, v)
				}
				out = append(out, peer.ID(v))
			}
			return out
		}
		// each runs step for every peer td names and renders the Actions:
		// as they are for one peer=, under "CMD PEER:" for peers=.
		each := func(td *datadriven.TestData, step func(i int, id peer.ID) Actions) string {
			ids := prs(td)
			if !td.HasArg("peers") {
				return render(step(0, ids[0]), nameOf)
			}
			var out []string
			for i, id := range ids {
				if r := render(step(i, id), nameOf); r != "(nothing)" {
					out = append(out, fmt.Sprintf("%s %s:", td.Cmd, string(id)))
					for _, l := range strings.Split(r, "\n") {
						out = append(out, "  "+l)
					}
				}
			}
			if len(out) == 0 {
				return "(nothing)"
			}
			return strings.Join(out, "\n")
		}
		byNumber := func(a, b string) int {
			x, _ := strconv.Atoi(a)
			y, _ := strconv.Atoi(b)
			return x - y
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
			defer func() { stepped = true }()
			var a Actions
			switch td.Cmd {
			case "connect":
				lats := []time.Duration{50 * time.Millisecond}
				if td.HasArg("latency") {
					td.ScanArgs(t, "latency", &lats)
				}
				if n := len(prs(td)); len(lats) != 1 && len(lats) != n {
					t.Fatalf("%s: %d latencies for %d peers: give one, or one per peer", td.Pos, len(lats), n)
				}
				return each(td, func(i int, id peer.ID) Actions {
					return p.PeerConnected(now, id, PeerInfo{
						Latency: lats[min(i, len(lats)-1)], Local: !td.HasArg("remote"),
						Proven: td.HasArg("proven"), Protected: td.HasArg("protected"),
					})
				})
			case "config":
				if stepped {
					t.Fatalf("%s: config must come first", td.Pos)
				}
				cfg := DefaultConfig()
				for _, a := range td.CmdArgs {
					switch a.Key {
					case "all":
						cfg.BroadcastAll = true
					case "control-local":
						cfg.BroadcastControlLocal = true
					case "max":
						td.ScanArgs(t, "max", &cfg.BroadcastMaxPeers)
					case "random":
						td.ScanArgs(t, "random", &cfg.BroadcastRandomPeers)
					case "seed":
						td.ScanArgs(t, "seed", &cfg.Seed)
					case "rebroadcast":
						cfg.RebroadcastInterval = duration(t, td, "rebroadcast")
					case "fixed":
						for _, v := range a.Vals {
							cfg.FixedPeers = append(cfg.FixedPeers, peer.ID(v))
						}
					}
				}
				p = NewPolicy(cfg)
				return "ok"
			case "disconnect":
				return each(td, func(_ int, id peer.ID) Actions { return p.PeerDisconnected(now, id) })
			case "add":
				a = p.Add(now, list(td, "cids"))
			case "remove":
				a = p.Remove(now, list(td, "cids"))
			case "have":
				cs := list(td, "cids")
				return each(td, func(_ int, id peer.ID) Actions { return p.Presences(now, id, cs, nil) })
			case "donthave":
				cs := list(td, "cids")
				return each(td, func(_ int, id peer.ID) Actions { return p.Presences(now, id, nil, cs) })
			case "blocks":
				cs := list(td, "cids")
				return each(td, func(_ int, id peer.ID) Actions { return p.BlocksReceived(now, id, cs) })
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
				slices.SortFunc(lines, func(a, b string) int {
					return byNumber(strings.SplitN(a, ":", 2)[0], strings.SplitN(b, ":", 2)[0])
				})
				return strings.Join(lines, "\n")
			case "peers":
				var lines []string
				for _, id := range peersOf(p.peers) {
					pi := p.peers[id]
					var mine []string
					for _, w := range p.queue {
						if p.wants[w.c] == w && w.assigned == id {
							mine = append(mine, nameOf[w.c])
						}
					}
					head := fmt.Sprintf("%s %v", string(id), p.lat(pi))
					if pi.serviceTime > 0 {
						head += fmt.Sprintf(" %v/block", pi.serviceTime)
					}
					if pi.useful {
						head += " useful"
					}
					if pi.suspended {
						head += " suspended"
					}
					if pi.inflight != len(mine) {
						head += fmt.Sprintf(" inflight=%d", pi.inflight)
					}
					if len(mine) == 0 {
						mine = []string{"-"}
					}
					lines = append(lines, head+": "+strings.Join(mine, " "))
				}
				var none []string
				for _, w := range p.queue {
					if p.wants[w.c] == w && w.assigned == "" {
						none = append(none, nameOf[w.c])
					}
				}
				if len(none) > 0 {
					lines = append(lines, "unassigned: "+strings.Join(none, " "))
				}
				if len(lines) == 0 {
					return "(none)"
				}
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
	"connect": {"peer", "peers", "latency", "remote", "proven", "protected"}, "disconnect": {"peer", "peers"},
	"config": {"all", "control-local", "max", "random", "seed", "rebroadcast", "fixed"},
	"add":    {"cids", "range"}, "remove": {"cids", "range"},
	"have": {"peer", "peers", "cids", "range"}, "donthave": {"peer", "peers", "cids", "range"},
	"blocks": {"peer", "peers", "cids", "range"}, "providers": {"cid", "peers"},
	"tick": nil, "state": nil, "peers": nil, "deadline": nil,
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

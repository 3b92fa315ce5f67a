package engine

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	cid "github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/gobitswap/bitswap/message"
)

// TestCoreScripts runs the server's scenarios in testdata/core: each file
// is a script of inputs to one core, through the Engine's driver one step
// at a time, and of what the core decides, printed as it comes out: tasks,
// and the effects it asks the driver for, which the script carries out
// with explicit steps. Peers are named by letters, CIDs by numbers.
//
//	limits [active=N] [perpeer=N] [total=N] [parked=N] [outstanding=N] [replace=N]
//	                                (a fresh core with these limits; else the defaults)
//	store cids=(1,2) [size=N]       (the blockstore holds them; default 1,000 bytes)
//	receive peer=a [full] [block=(1)] [have=(2)] [cancel=(3)] [sdh] [prio=N]
//	lookup peer=a [n=N]             (look up at most N of its unchecked wants; default all)
//	pop [target=N]                  (one turn; held until done)
//	done [failed]                   (the oldest turn held was sent, or failed)
//	arrived cids=(1)                (blocks stored)
//	disconnect peer=a
//	state                           (each peer's wants, and the counters)
//
// Effects print as "lookups due: a b" (the peers whose wants to look up)
// and "tasks ready" (wake the workers), or "nothing due".
func TestCoreScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/core", func(t *testing.T, path string) {
		h := newHarness(t, defaultLimits())
		sizes := h.sizes // kept by limits
		nameOf := map[cid.Cid]string{}
		var held []turn
		cidOf := func(td *datadriven.TestData, name string) cid.Cid {
			n, err := strconv.Atoi(name)
			if err != nil || n < 0 || strconv.Itoa(n) != name {
				t.Fatalf("%s: CID name %q: want a number", td.Pos, name)
			}
			x := testCid(t, n)
			nameOf[x] = name
			return x
		}
		list := func(td *datadriven.TestData, key string) []cid.Cid {
			var out []cid.Cid
			if a, ok := td.Arg(key); ok {
				for _, v := range a.Vals {
					out = append(out, cidOf(td, v))
				}
			}
			return out
		}
		num := func(td *datadriven.TestData, key string, def int) int {
			if !td.HasArg(key) {
				return def
			}
			var n int
			td.ScanArgs(t, key, &n)
			return n
		}
		names := func(cs []cid.Cid) string {
			out := make([]string, len(cs))
			for i, x := range cs {
				out[i] = nameOf[x]
			}
			return strings.Join(out, " ")
		}
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			allowed, ok := coreScriptArgs[td.Cmd]
			if !ok {
				t.Fatalf("%s: unknown command %q", td.Pos, td.Cmd)
			}
			for _, a := range td.CmdArgs {
				if !slices.Contains(allowed, a.Key) {
					t.Fatalf("%s: %s takes no argument %q (it takes %v)", td.Pos, td.Cmd, a.Key, allowed)
				}
			}
			peerArg := func() peer.ID {
				var s string
				td.ScanArgs(t, "peer", &s)
				return peer.ID(s)
			}
			switch td.Cmd {
			case "limits":
				l := defaultLimits()
				l.maxActivePerPeer = num(td, "active", l.maxActivePerPeer)
				l.maxWantsPerPeer = num(td, "perpeer", l.maxWantsPerPeer)
				l.maxWantsTotal = num(td, "total", l.maxWantsTotal)
				l.maxParked = num(td, "parked", l.maxParked)
				l.maxOutstanding = num(td, "outstanding", l.maxOutstanding)
				l.maxReplaceSize = num(td, "replace", l.maxReplaceSize)
				h, held = newHarness(t, l), nil
				h.sizes = sizes
				return "ok"
			case "store":
				size := num(td, "size", 1000)
				for _, x := range list(td, "cids") {
					sizes[x] = size
				}
				return "ok"
			case "receive":
				prio := int32(num(td, "prio", 1))
				sdh := td.HasArg("sdh")
				var entries []message.Entry
				for _, x := range list(td, "block") {
					entries = append(entries, message.Entry{Cid: x, Priority: prio, WantType: message.WantBlock, SendDontHave: sdh})
				}
				for _, x := range list(td, "have") {
					entries = append(entries, message.Entry{Cid: x, Priority: prio, WantType: message.WantHave, SendDontHave: sdh})
				}
				for _, x := range list(td, "cancel") {
					entries = append(entries, message.Entry{Cid: x, Cancel: true})
				}
				eff, dropped, _ := h.d.receive(peerArg(), td.HasArg("full"), entries)
				out := renderEffects(eff)
				if dropped > 0 {
					out += fmt.Sprintf("\ndropped: %d", dropped)
				}
				return out
			case "lookup":
				todo, eff := h.d.lookupOnce(context.Background(), peerArg(), num(td, "n", 1<<30))
				if len(todo) == 0 {
					return "nothing to look up"
				}
				var asked []cid.Cid
				for _, l := range todo {
					asked = append(asked, l.cid)
				}
				return fmt.Sprintf("looked up: %s\n%s", names(asked), renderEffects(eff))
			case "pop":
				tn, ok := h.d.pop(num(td, "target", DefaultTargetMessageSize))
				if !ok {
					return "nothing to send"
				}
				held = append(held, tn)
				var parts []string
				for _, tk := range tn.tasks {
					parts = append(parts, fmt.Sprintf("%s %s", [...]string{"block", "have", "dont-have"}[tk.kind], nameOf[tk.cid]))
				}
				return fmt.Sprintf("to %s: %s (%d bytes pending)", string(tn.p), strings.Join(parts, ", "), tn.pending)
			case "done":
				if len(held) == 0 {
					t.Fatalf("%s: done with no turn held", td.Pos)
				}
				tn := held[0]
				held = held[1:]
				sent := !td.HasArg("failed")
				eff := h.d.done(tn, sendOutcome{sent: sent})
				return fmt.Sprintf("%s's turn %s\n%s", string(tn.p), map[bool]string{true: "sent", false: "failed"}[sent], renderEffects(eff))
			case "arrived":
				return renderEffects(h.d.arrived(list(td, "cids")))
			case "disconnect":
				h.c.removePeer(peerArg())
				return "ok"
			case "state":
				c := h.c
				var lines []string
				for _, p := range peersOf(c.peers) {
					pw := c.peers[p]
					var ws []string
					for x, w := range pw.wants {
						ws = append(ws, nameOf[x]+":"+[...]string{"unchecked", "checking", "queued", "parked"}[w.state])
					}
					slices.Sort(ws) // a map: its order is no one's output
					lines = append(lines, fmt.Sprintf("%s: %s", string(p), strings.Join(ws, " ")))
				}
				lines = append(lines, fmt.Sprintf("held %d, dropped %d, evicted %d, displaced %d", c.total, c.droppedWants, c.evictedWants, c.displaced))
				return strings.Join(lines, "\n")
			}
			panic("unreachable")
		})
	})
}

// renderEffects prints effects as the core emitted them.
func renderEffects(eff effects) string {
	var lines []string
	if len(eff.lookup) > 0 {
		ps := make([]string, len(eff.lookup))
		for i, p := range eff.lookup {
			ps[i] = string(p)
		}
		lines = append(lines, "lookups due: "+strings.Join(ps, " "))
	}
	if eff.ready {
		lines = append(lines, "tasks ready")
	}
	if len(lines) == 0 {
		return "nothing due"
	}
	return strings.Join(lines, "\n")
}

// coreScriptArgs lists the arguments each command takes: anything else,
// like a typo, fails the script.
var coreScriptArgs = map[string][]string{
	"limits":  {"active", "perpeer", "total", "parked", "outstanding", "replace"},
	"store":   {"cids", "size"},
	"receive": {"peer", "full", "block", "have", "cancel", "sdh", "prio"},
	"lookup":  {"peer", "n"}, "pop": {"target"}, "done": {"failed"},
	"arrived": {"cids"}, "disconnect": {"peer"}, "state": nil,
}

// peersOf lists the peers in a map in ID order.
func peersOf[V any](m map[peer.ID]V) []peer.ID {
	out := make([]peer.ID, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

package providers

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"

	cid "github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// The core's decisions, step by step, over plain data: each step is an
// event and what the core answers, written as the script below reads.
func TestCoreScript(t *testing.T) {
	c := func(i int) cid.Cid {
		h, _ := mh.Sum([]byte{byte(i)}, mh.SHA2_256, -1)
		return cid.NewCidV1(cid.Raw, h)
	}
	k := newCore(2, 2)
	qs := map[string]*query{} // by label: the CID's number, then a letter for a later query of it
	alive := map[*query]bool{}
	isAlive := func(q *query) bool { return alive[q] }
	var log []string
	ask := func(label string) {
		var i int
		fmt.Sscan(label[:1], &i)
		q, o, dropped := k.ask(c(i))
		if o != Joined {
			qs[label] = q
		}
		alive[q] = true
		s := fmt.Sprintf("ask %s: %v", label, o)
		if dropped != nil {
			s += fmt.Sprintf(", dropped %s", index(qs, dropped))
		}
		log = append(log, s)
	}
	leave := func(label string) {
		log = append(log, fmt.Sprintf("leave %s: cancel %v", label, k.leave(qs[label])))
	}
	finish := func(label string, timedOut bool) {
		var started []string
		for _, n := range k.finished(qs[label], timedOut, isAlive) {
			started = append(started, index(qs, n))
		}
		log = append(log, fmt.Sprintf("finish %s: start [%s]", label, strings.Join(started, " ")))
	}
	ask("1")
	ask("1") // joins
	ask("2")
	ask("3")
	ask("4")
	ask("5") // the queue holds 2: 3, the oldest waiting, goes
	leave("1")
	leave("1") // the last asker: cancel the running query
	ask("1b")  // a new query of the same CID, while the old one is being cancelled
	finish("1", false)
	alive[qs["1b"]] = false // 1b's asker has gone, its leave not yet handled
	finish("2", true)
	leave("1b") // too late to matter: already abandoned
	st := k.snapshot()
	log = append(log, fmt.Sprintf("stat: started %d joined %d queued %d dropped %d abandoned %d timed out %d running %d waiting %d",
		st.Started, st.Joined, st.Queued, st.Dropped, st.Abandoned, st.TimedOut, st.Running, st.Waiting))

	want := []string{
		"ask 1: started",
		"ask 1: joined",
		"ask 2: started",
		"ask 3: queued",
		"ask 4: queued",
		"ask 5: queued, dropped 3",
		"leave 1: cancel false",
		"leave 1: cancel true",
		"ask 1b: queued, dropped 4",
		"finish 1: start [5]",
		"finish 2: start []",
		"leave 1b: cancel false",
		"stat: started 3 joined 1 queued 4 dropped 2 abandoned 2 timed out 1 running 1 waiting 0",
	}
	if strings.Join(log, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(log, "\n"), strings.Join(want, "\n"))
	}
}

func index(qs map[string]*query, q *query) string {
	for label, x := range qs {
		if x == q {
			return label
		}
	}
	return "?"
}

// Random asks, leaves and ends over a few CIDs never break the core's
// rules: at most maxRunning run and maxWaiting wait, a CID has at most one
// live query, and every query is counted as started, dropped or abandoned
// exactly when it leaves the waiting state.
func TestCoreKeepsItsRulesUnderRandomEvents(t *testing.T) {
	for seed := range int64(50) {
		rng := rand.New(rand.NewSource(seed))
		maxRunning, maxWaiting := 1+rng.Intn(3), 1+rng.Intn(3)
		k := newCore(maxRunning, maxWaiting)
		var live []*query // queries asked and not yet ended or abandoned, with their askers
		var runningQs []*query
		var made, cancels uint64 // queries made by asks (not joins); leaves that cancelled a running one
		alive := func(q *query) bool { return rng.Intn(4) > 0 }
		for step := range 300 {
			switch op := rng.Intn(3); {
			case op == 0:
				c := cid.NewCidV1(cid.Raw, mustSum(rng.Intn(5)))
				q, o, dropped := k.ask(c)
				if o == Started {
					runningQs = append(runningQs, q)
				}
				if o != Joined {
					live = append(live, q)
					made++
				}
				if dropped != nil && dropped.state != ended {
					t.Fatalf("seed %d step %d: dropped query not ended", seed, step)
				}
			case op == 1 && len(live) > 0:
				q := live[rng.Intn(len(live))]
				if q.askers > 0 && k.leave(q) {
					cancels++
				}
			case op == 2 && len(runningQs) > 0:
				i := rng.Intn(len(runningQs))
				q := runningQs[i]
				runningQs = slices.Delete(runningQs, i, i+1)
				runningQs = append(runningQs, k.finished(q, rng.Intn(2) == 0, alive)...)
			}
			live = slices.DeleteFunc(live, func(q *query) bool { return q.state == ended || q.abandoned })
			if k.running != len(runningQs) || k.running > maxRunning || len(k.waiting) > maxWaiting {
				t.Fatalf("seed %d step %d: running %d (tracked %d, max %d), waiting %d (max %d)",
					seed, step, k.running, len(runningQs), maxRunning, len(k.waiting), maxWaiting)
			}
			seen := map[cid.Cid]bool{}
			for _, q := range live {
				if seen[q.c] {
					t.Fatalf("seed %d step %d: two live queries for one CID", seed, step)
				}
				seen[q.c] = true
				if k.byCid[q.c] != q {
					t.Fatalf("seed %d step %d: a live query missing from byCid", seed, step)
				}
			}
			if len(k.byCid) != len(live) {
				t.Fatalf("seed %d step %d: byCid holds %d, %d live", seed, step, len(k.byCid), len(live))
			}
			st := k.snapshot()
			// Each query made leaves the waiting state once: started,
			// dropped, or abandoned while waiting (every abandonment but
			// those that cancelled a running query).
			if made-uint64(st.Waiting) != st.Started+st.Dropped+st.Abandoned-cancels {
				t.Fatalf("seed %d step %d: %d made, %d waiting; %d started, %d dropped, %d abandoned waiting",
					seed, step, made, st.Waiting, st.Started, st.Dropped, st.Abandoned-cancels)
			}
		}
	}
}

func mustSum(i int) mh.Multihash {
	h, err := mh.Sum([]byte{byte(i)}, mh.SHA2_256, -1)
	if err != nil {
		panic(err)
	}
	return h
}

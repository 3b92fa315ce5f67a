package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	blocks "github.com/ipfs/go-block-format"
	cid "github.com/ipfs/go-cid"
	pebbleds "github.com/ipfs/go-ds-pebble"

	"github.com/gobitswap/bitswap/blockstore"
)

const attackDoc = `Adversaries on real libp2p hosts (TCP on 127.0.0.1), all on one machine. The attacked
server is a child process serving a go-ds-pebble repository (written once per run, read by
every server in turn): ours through blockstore.New, as ` + "`bitswap serve`" + ` does; boxo v0.43
through its blockstore.NewBlockstore over the same pebble datastore. It samples its own Go heap
(runtime/metrics heap objects) and VmRSS every 50 ms; growth is the peak minus the idle figure
taken after start-up and a GC. The attacker runs in the parent process and writes frames
encoded with our message package on raw /ipfs/bitswap/1.2.0 streams. An honest client (boxo's,
GetBlocks calls of 1,000, a fresh node per fetch, in a child process of its own) starts shortly
after the attack is under way and fetches every block, several times in a row; the attack lasts
until the honest client is done, and at least its set duration. Its times are divided by the
median of the same fetches from a server under no attack (measured in the same run, before and
after the attacks). "Attacker disconnected" counts the attacker's connections the server closed,
as the attacker saw them; for ours, the server's own count of peers disconnected for malformed
input is added. The client attacks run our client (no blockstore: it stores nothing, so its
memory is Bitswap's) against our honest server and one hostile peer at once, one GetBlocks of
every block. Attacker, server and client share the machine's cores: every flood also takes CPU
from the server and the honest client. Full size: 2,000 × 256 KiB blocks, attacks of at least
20 s, the honest client 2 s in, 3 fetches per run (and per client attack). With -short (the
smoke test, run under the race detector): 200 blocks, clients fetch 25, attacks of 2 s, one
fetch, 50 peers in attack 7, no 7b and boxo unattacked only; its figures only show that the
suite works. docs/reliability.md explains each attack and the results.`

// atkSizes are the attack suite's parameters.
type atkSizes struct {
	n, size        int           // the server's blocks
	fetchN         int           // blocks the honest (and the attacked) client fetch: the first fetchN
	dur            time.Duration // least time an attack lasts once under way
	honestAt       time.Duration // when the honest client starts, after the attack is under way
	tail           time.Duration // the server keeps sampling this long after the attack stops
	fetches        int           // honest fetches per run
	fetchTimeout   time.Duration
	honest         impl // the honest client
	batch          int  // its GetBlocks calls
	entriesPerMsg  int
	floodEntries   int // distinct entries of a want flood (then it repeats them)
	trickleStreams int
	peers          int  // attack 7's hosts
	boxoAll        bool // boxo under every attack (else only unattacked)
	baselineTwice  bool // baselines before and after the attacks
	clientReps     int
	clientTimeout  time.Duration
}

func attackSizes(cfg Config) atkSizes {
	s := atkSizes{
		n: 2000, size: 256 << 10, fetchN: 2000,
		dur: 20 * time.Second, honestAt: 2 * time.Second, tail: 500 * time.Millisecond,
		fetches: min(cfg.Repeat, 3), fetchTimeout: time.Minute, honest: boxo, batch: 1000,
		entriesPerMsg: 50000, floodEntries: 1000000,
		trickleStreams: 200,
		peers:          500,
		boxoAll:        true, baselineTwice: true,
		clientReps: min(cfg.Repeat, 3), clientTimeout: time.Minute,
	}
	if cfg.Short {
		// The smoke test runs the children with the race detector, which
		// makes every fetch about 10 times slower: the clients fetch an
		// eighth of the blocks, and boxo is only measured unattacked.
		s.n, s.fetchN = 200, 25
		s.dur, s.honestAt, s.tail = 2*time.Second, 300*time.Millisecond, 100*time.Millisecond
		s.fetchTimeout, s.clientTimeout = 5*time.Second, 10*time.Second
		s.floodEntries = 200000
		s.peers = 50 // 100 hosts under the race detector take 15 s and starve the honest client
		s.boxoAll, s.baselineTwice = false, false
	}
	return s
}

const attackSeed = 11

// attacksEnv, when set, picks the server attacks to run by id
// (comma-separated, e.g. "1,4c"), for working on one of them.
const attacksEnv = "GOBITSWAP_BENCH_ATTACKS"

// implsEnv, when set, picks the servers attacked ("ours", "boxo" or both,
// comma-separated).
const implsEnv = "GOBITSWAP_BENCH_IMPLS"

// profileEnv, when set to a directory, makes each attacked server write a
// heap profile as the honest client starts and a CPU profile of the honest
// client's fetches (see profileAt), for finding out where an attack hurts.
const profileEnv = "GOBITSWAP_BENCH_PROFILE"

// buildAttackRepo writes n blocks of size bytes (genData(attackSeed, i))
// into a pebble repository at dir, as bitswap serve stores them, and
// returns their CIDs.
func buildAttackRepo(dir string, n, size int) ([]cid.Cid, error) {
	pds, err := pebbleds.NewDatastore(dir)
	if err != nil {
		return nil, err
	}
	bs := blockstore.New(pds)
	ctx := context.Background()
	cids := make([]cid.Cid, 0, n)
	var batch []blocks.Block
	for i := range n {
		data := make([]byte, size)
		genData(attackSeed, i, data)
		b, err := blocks.NewBlockWithCid(data, rawCid(data))
		if err != nil {
			pds.Close()
			return nil, err
		}
		cids = append(cids, b.Cid())
		if batch = append(batch, b); len(batch) == 64 || i == n-1 {
			if err := bs.PutMany(ctx, batch); err != nil {
				pds.Close()
				return nil, err
			}
			batch = batch[:0]
		}
	}
	return cids, pds.Close()
}

// serverRun is one run of an attack (or none) against one server.
type serverRun struct {
	res    atkServerResult
	labels []string // of res.Segments
	honest honestResult
	rep    attackReport
	err    error
	took   time.Duration // the whole run, server start to exit
}

// growth is the peak RSS and heap above idle over the segments that pass
// keep (all when keep is nil), in MiB.
func (r *serverRun) growth(keep func(label string) bool) (rssMiB, heapMiB float64) {
	var pr, ph uint64
	for i, s := range r.res.Segments {
		label := ""
		if i < len(r.labels) {
			label = r.labels[i]
		}
		if keep != nil && !keep(label) {
			continue
		}
		pr, ph = max(pr, s.PeakRSS), max(ph, s.PeakHeap)
	}
	return mib(pr - min(pr, r.res.IdleRSS)), mib(ph - min(ph, r.res.IdleHeap))
}

func (r *serverRun) fetchSeconds() (ok []float64, failed string) {
	for _, f := range r.honest.Fetches {
		if f.Err != "" {
			return ok, f.Err
		}
		ok = append(ok, f.Seconds)
	}
	return ok, ""
}

// attackRunner runs the server attacks of one suite run.
type attackRunner struct {
	cfg      Config
	env      *attackEnv
	repo     string // the pebble directory
	cidsFile string
}

// run runs atk (nil: no attack) against a fresh server of which.
func (ar *attackRunner) run(atk *serverAttack, which impl) *serverRun {
	r := &serverRun{}
	sz := ar.env.sz
	// The honest child starts its first node while the server starts.
	type started struct {
		h   *honestProc
		err error
	}
	hc := make(chan started, 1)
	go func() {
		h, err := startHonest(childSpec{Role: "honest", Impl: sz.honest, N: sz.fetchN, Size: sz.size, CidsFile: ar.cidsFile,
			Batch: sz.batch, Fetches: sz.fetches, Timeout: sz.fetchTimeout})
		hc <- started{h, err}
	}()
	profile := ""
	if dir := os.Getenv(profileEnv); dir != "" && atk != nil {
		profile = filepath.Join(dir, "attack-"+atk.id+"-"+string(which))
	}
	srv, err := startServer(which, ar.repo, profile)
	hs := <-hc
	if err == nil {
		err = hs.err
	}
	if err != nil {
		if hs.h != nil {
			hs.h.kill()
		}
		if srv != nil {
			srv.kill()
		}
		r.err = err
		return r
	}
	defer srv.kill()
	honest := hs.h
	ctl := &attackCtl{srv: srv, armedCh: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	var aerr error
	if atk == nil {
		close(done)
		ctl.armed()
	} else {
		go func() {
			defer close(done)
			r.rep, aerr = atk.run(ctx, ar.env, srv.addr, ctl)
		}()
	}
	select {
	case <-ctl.armedCh:
	case <-done:
		select {
		case <-ctl.armedCh: // armed, then ended
		default:
			if aerr == nil {
				aerr = errNotArmed
			}
		}
	case <-time.After(2 * time.Minute):
		aerr = fmt.Errorf("not under way after 2 minutes: %w", errNotArmed)
	}
	if aerr != nil {
		cancel()
		<-done
		honest.kill()
		r.err = fmt.Errorf("attacker: %w", aerr)
		return r
	}
	armedAt := time.Now()
	if atk != nil {
		time.Sleep(sz.honestAt)
	}
	srv.mark("honest")
	herr := honest.run(srv.addrS, &r.honest)
	srv.mark("after")
	if atk != nil {
		time.Sleep(time.Until(armedAt.Add(sz.dur)))
	}
	cancel()
	<-done
	time.Sleep(sz.tail)
	crashed := srv.crashed()
	res, labels, err := srv.finish()
	r.res, r.labels = res, append([]string{"start"}, labels...)
	switch {
	case crashed || err != nil:
		r.err = fmt.Errorf("server: %w", err)
	case aerr != nil:
		r.err = fmt.Errorf("attacker: %w", aerr)
	case herr != nil:
		r.err = fmt.Errorf("honest client: %w", herr)
	}
	if len(r.res.Segments) != len(r.labels) && r.err == nil {
		r.err = fmt.Errorf("server reported %d segments for %d labels", len(r.res.Segments), len(r.labels))
	}
	return r
}

func runAttack(cfg Config) ([]Row, error) {
	sz := attackSizes(cfg)
	dir, err := os.MkdirTemp("", "gobitswap-attack-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ar := &attackRunner{cfg: cfg, repo: filepath.Join(dir, "pebble"), cidsFile: filepath.Join(dir, "cids")}
	cfg.logf("attack: writing %s × %s blocks to a pebble repository", countName(sz.n), sizeName(int64(sz.size)))
	cids, err := buildAttackRepo(ar.repo, sz.n, sz.size)
	if err != nil {
		return nil, err
	}
	var sb strings.Builder
	for _, c := range cids[:sz.fetchN] {
		sb.WriteString(c.String() + "\n")
	}
	if err := os.WriteFile(ar.cidsFile, []byte(sb.String()), 0o600); err != nil {
		return nil, err
	}
	ar.env = &attackEnv{sz: sz, cids: cids, seed: attackSeed, logf: cfg.logf}

	impls := []impl{ours, boxo}
	if only := os.Getenv(implsEnv); only != "" {
		impls = slices.DeleteFunc(impls, func(i impl) bool { return !slices.Contains(strings.Split(only, ","), string(i)) })
	}
	var errs []string
	note := func(what string, r *serverRun) {
		if r.err != nil {
			errs = append(errs, what+": "+r.err.Error())
			cfg.logf("attack: %s: %v", what, r.err)
		}
	}
	baselines := map[impl][]*serverRun{}
	runBaselines := func(when string) {
		for _, which := range impls {
			t0 := time.Now()
			r := ar.run(nil, which)
			r.took = time.Since(t0)
			note(fmt.Sprintf("baseline %s (%s)", which, when), r)
			baselines[which] = append(baselines[which], r)
			secs, _ := r.fetchSeconds()
			rg, hg := r.growth(nil)
			cfg.logf("attack: baseline (%s), %s, %.1f s: honest fetches %v s; server +%.1f MiB RSS, +%.1f MiB heap", when, which, r.took.Seconds(), fmtList(secs), rg, hg)
		}
	}
	runBaselines("before")

	attacks := serverAttacks()
	if only := os.Getenv(attacksEnv); only != "" {
		keep := strings.Split(only, ",")
		attacks = slices.DeleteFunc(attacks, func(a serverAttack) bool { return !slices.Contains(keep, a.id) })
	}
	runs := map[string]map[impl]*serverRun{}
	for i := range attacks {
		atk := &attacks[i]
		runs[atk.id] = map[impl]*serverRun{}
		order := slices.Clone(impls)
		if i%2 == 1 {
			slices.Reverse(order)
		}
		for _, which := range order {
			if (which == boxo && !sz.boxoAll) || (atk.fullOnly && ar.cfg.Short) {
				continue
			}
			t0 := time.Now()
			r := ar.run(atk, which)
			r.took = time.Since(t0)
			note(fmt.Sprintf("attack %s (%s), %s", atk.id, atk.name, which), r)
			runs[atk.id][which] = r
			secs, failed := r.fetchSeconds()
			rg, hg := r.growth(nil)
			cfg.logf("attack %s (%s), %s, %.1f s: honest fetches %v s%s; server +%.1f MiB RSS, +%.1f MiB heap; %s",
				atk.id, atk.name, which, r.took.Seconds(), fmtList(secs), map[bool]string{true: " (failed: " + failed + ")", false: ""}[failed != ""], rg, hg, r.rep.Note)
		}
	}
	if sz.baselineTwice {
		runBaselines("after")
	}
	rows := serverAttackRows(sz, attacks, runs, baselines)

	crows, cerrs := runClientAttacks(cfg, ar)
	rows = append(rows, crows...)
	errs = append(errs, cerrs...)
	if len(errs) > 0 {
		return rows, fmt.Errorf("%d runs failed; first: %s", len(errs), errs[0])
	}
	return rows, nil
}

func fmtList(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmtNum(x)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// Metric names of the attack rows ("<id>. <name>: <metric>").
const (
	mRSS      = "RSS growth"
	mAlone    = "RSS growth before the honest client"
	mHeap     = "heap growth"
	mFetch    = "honest fetch"
	mRatio    = "honest fetch / baseline"
	mDropped  = "attacker disconnected"
	mNotes    = "notes"
	mComplete = "fetch complete"
	mCFetch   = "fetch time"
	mCRatio   = "fetch time / no hostile"
)

func sideOf(row *Row, which impl) *Stat {
	if which == ours {
		return &row.Ours
	}
	return &row.Boxo
}

// serverAttackRows turns the runs into rows: per attack, one row per metric
// with ours and boxo side by side.
func serverAttackRows(sz atkSizes, attacks []serverAttack, runs map[string]map[impl]*serverRun, baselines map[impl][]*serverRun) []Row {
	var rows []Row
	baseMedian := map[impl]float64{}
	{
		label := "0. no attack (baseline)"
		rss := Row{Case: label + ": " + mRSS, Unit: "MiB"}
		heap := Row{Case: label + ": " + mHeap, Unit: "MiB"}
		fetchRow := Row{Case: label + ": " + mFetch, Unit: "s"}
		notes := Row{Case: label + ": " + mNotes}
		for _, which := range []impl{ours, boxo} {
			var failed []string
			for _, r := range baselines[which] {
				if r.err != nil && len(r.res.Segments) == 0 {
					failed = append(failed, r.err.Error())
					continue
				}
				rg, hg := r.growth(nil)
				sideOf(&rss, which).add(rg)
				sideOf(&heap, which).add(hg)
				secs, f := r.fetchSeconds()
				for _, s := range secs {
					sideOf(&fetchRow, which).add(s)
				}
				if f != "" {
					failed = append(failed, f)
				}
			}
			st := sideOf(&fetchRow, which)
			st.finish()
			if st.ok() {
				baseMedian[which] = st.Median
			} else {
				st.Text = "failed"
			}
			if !sideOf(&rss, which).ok() {
				sideOf(&rss, which).Text, sideOf(&heap, which).Text = "failed", "failed"
			}
			n := fmt.Sprintf("%d runs × %d fetches of %s × %s; server growth from serving the honest client alone",
				len(baselines[which]), sz.fetches, countName(sz.fetchN), sizeName(int64(sz.size)))
			if len(failed) > 0 {
				n += "; failed: " + shorten(failed[0])
			}
			sideOf(&notes, which).Text = n
		}
		rows = append(rows, rss, heap, fetchRow, notes)
	}
	for _, atk := range attacks {
		label := atk.id + ". " + atk.name
		rss := Row{Case: label + ": " + mRSS, Unit: "MiB"}
		alone := Row{Case: label + ": " + mAlone, Unit: "MiB"}
		heap := Row{Case: label + ": " + mHeap, Unit: "MiB"}
		fetchRow := Row{Case: label + ": " + mFetch, Unit: "s"}
		ratio := Row{Case: label + ": " + mRatio, Unit: "×"}
		dropped := Row{Case: label + ": " + mDropped}
		notes := Row{Case: label + ": " + mNotes}
		for _, which := range []impl{ours, boxo} {
			r := runs[atk.id][which]
			if r == nil {
				for _, row := range []*Row{&rss, &alone, &heap, &fetchRow, &ratio, &dropped, &notes} {
					sideOf(row, which).Text = "not run (-short)"
				}
				continue
			}
			fillServerSides(r, which, baseMedian[which], &rss, &alone, &heap, &fetchRow, &ratio, &dropped, &notes)
		}
		rows = append(rows, rss, alone, heap, fetchRow, ratio, dropped, notes)
	}
	return rows
}

func fillServerSides(r *serverRun, which impl, base float64, rss, alone, heap, fetchRow, ratio, dropped, notes *Row) {
	var n []string
	if r.rep.Note != "" {
		n = append(n, r.rep.Note)
	}
	if len(r.res.Segments) == 0 {
		for _, row := range []*Row{rss, alone, heap, fetchRow, ratio, dropped} {
			sideOf(row, which).Text = "error"
		}
		sideOf(notes, which).Text = shorten(r.err.Error())
		return
	}
	if r.err != nil {
		n = append(n, "ERROR: "+shorten(r.err.Error()))
	}
	rg, hg := r.growth(nil)
	sideOf(rss, which).add(rg)
	sideOf(heap, which).add(hg)
	// Before the honest client starts, the growth is the attack's alone;
	// once it has fetched, the server keeps some of what serving it took.
	hi := slices.Index(r.labels, "honest")
	ag, _ := r.growth(func(l string) bool { return slices.Index(r.labels, l) < hi })
	sideOf(alone, which).add(ag)
	secs, failed := r.fetchSeconds()
	for _, s := range secs {
		sideOf(fetchRow, which).add(s)
		if base > 0 {
			sideOf(ratio, which).add(s / base)
		}
	}
	if failed != "" {
		sideOf(fetchRow, which).Text = "failed"
		sideOf(ratio, which).Text = "failed"
		n = append(n, "honest fetch failed: "+shorten(failed))
	} else if base == 0 {
		sideOf(ratio, which).Text = "no baseline"
	}
	switch d := r.rep.Dropped; {
	case d < 0:
		sideOf(dropped, which).Text = "n/a (disconnects itself)"
	case d == 0:
		sideOf(dropped, which).Text = "no"
	default:
		sideOf(dropped, which).Text = fmt.Sprintf("yes, %d×", d)
	}
	if o := r.res.Ours; o != nil {
		if o.PeersDisconnected > 0 {
			sideOf(dropped, which).Text += fmt.Sprintf(" (%d by the misbehaviour rule)", o.PeersDisconnected)
		}
		var s []string
		if o.WantsDropped > 0 {
			s = append(s, "dropped "+countName(int(o.WantsDropped))+" wants over a limit")
		}
		s = append(s, "held at most "+countName(o.PeakWants)+" wants")
		if o.WantsDisplaced > 0 {
			s = append(s, "displaced "+countName(int(o.WantsDisplaced))+" wants at the total cap")
		}
		if o.WantsEvicted > 0 {
			s = append(s, "evicted "+countName(int(o.WantsEvicted))+" parked wants")
		}
		if o.MalformedReceived > 0 {
			s = append(s, fmt.Sprintf("%s malformed messages", countName(int(o.MalformedReceived))))
		}
		if o.RejectedReceived > 0 {
			s = append(s, countName(int(o.RejectedReceived))+" messages rejected")
		}
		if o.ThrottledMessages > 0 {
			s = append(s, countName(int(o.ThrottledMessages))+" messages paced")
		}
		if o.StreamsRefused > 0 {
			s = append(s, countName(int(o.StreamsRefused))+" streams of a banned peer refused")
		}
		if o.AbandonedSends > 0 {
			s = append(s, countName(int(o.AbandonedSends))+" connections closed on blocks in flight")
		}
		if o.PeersBanned > 0 {
			s = append(s, countName(int(o.PeersBanned))+" bans")
		}
		if o.UnwantedBlocks > 0 {
			s = append(s, countName(int(o.UnwantedBlocks))+" unwanted blocks dropped")
		}
		if o.SendErrors > 0 {
			s = append(s, fmt.Sprintf("%d send errors", o.SendErrors))
		}
		n = append(n, "server: "+strings.Join(s, ", "))
	}
	if i := slices.Index(r.labels, "connected"); i > 0 {
		before, _ := r.growth(func(l string) bool { return slices.Index(r.labels, l) < i })
		n = append(n, fmt.Sprintf("RSS +%.0f MiB once the peers were connected, before their wants", before))
	}
	peakG := 0
	for _, s := range r.res.Segments {
		peakG = max(peakG, s.PeakGoroutines)
	}
	n = append(n, fmt.Sprintf("at most %s goroutines", countName(peakG)))
	sideOf(notes, which).Text = strings.Join(n, "; ")
}

func shorten(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

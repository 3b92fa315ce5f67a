package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	cid "github.com/ipfs/go-cid"
	car "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/storage"
)

const quietDoc = `Quiet peers (issue 15), through the command as a new user runs it: a seed holding a UnixFS
file of 256 KiB raw leaves (boxo's importer, as the dag suite builds it: 20 MiB, 81 blocks), and N connected
peers (` + quietPeersEnv + `, default 50) that hold nothing. Every run starts fresh processes on loopback
(TCP on 127.0.0.1): the seed (ours: ` + "`bitswap serve --repo DIR`" + `; boxo: the dag suite's boxo server child over
the same repository), a quiet-peers child (one process hosting the N libp2p hosts, libp2p's defaults, speaking
Bitswap 1.2.0, 1.1.0 and 1.0.0), and the fetching process, which connects to the seed and every quiet peer
at once before it fetches (ours: ` + "`bitswap get --peer SEED --peer Q1 ... --peer QN ROOT -o FILE`" + `; boxo: the dag
suite's client child, merkledag.FetchGraph over a blockservice session, which connects to the same peers first).
Ours and boxo run interleaved within each repeat, each seed with its own client. The quiet peers decode every
message they get (package message) and count, per peer and CID, the want-have and want-block entries and the
cancels; "silent" peers never answer, "DONT_HAVE" peers answer every entry that asks for it (sendDontHave)
with a DONT_HAVE on a stream of their own. "Entries" are every wantlist entry a quiet peer got from the
fetching process over its whole life, cancels included (the mean over the quiet peers, and the most any one
got). The fetch rows: the wall clock of the fetching process (exec to exit) and the fetch's own time (ours: its
summary line; boxo: FetchGraph, after connecting), and each side's end-to-end and fetch times over its own with no
quiet peer (paired within a repeat). End to end includes dialling the quiet peers (TCP, security and muxer
handshakes, identify) and closing those connections, which the notes show apart ("outside the fetch"); the goal
"as fast as with none" is held to the fetch's own time, and ours end to end to boxo's. "A want nobody has": the seed's repository lacks the file's first leaf
(the same DAG, imported from a CAR without it), and the fetch runs against ` + quietWindowEnv + ` (default 25 s:
our get's --timeout, boxo's FetchGraph context) and ends there without it, which is the expected outcome (our
get exits 3 naming the block; boxo's FetchGraph fails with its deadline), repeated at most 3 times: the entries
for the missing CID per quiet peer, and, for the DONT_HAVE peers, the wants for it that reached a peer after
it had sent its DONT_HAVE for it (the peer was asked again though nothing had changed). Notes give the
breakdown and when the quiet peers got their entries (seconds after the fetching process started). ` +
	quietCasesEnv + ` picks cases (fetch, missing).`

const (
	// quietPeersEnv is the number of quiet peers (default 50).
	quietPeersEnv = "GOBITSWAP_BENCH_QUIET_PEERS"
	// quietWindowEnv is the timeout of the fetch of a want nobody has (a
	// Go duration, default 25s).
	quietWindowEnv = "GOBITSWAP_BENCH_QUIET_WINDOW"
	// quietCasesEnv picks the cases (comma-separated: fetch, missing).
	quietCasesEnv = "GOBITSWAP_BENCH_QUIET_CASES"
)

// Metrics of the quiet suite's rows, after "<case>: ".
const (
	qE2E          = "end to end"
	qSelf         = "fetch time as reported"
	qOverNone     = "end to end over no quiet peers"
	qOverNoneSelf = "fetch time as reported over no quiet peers"
	qEntries      = "wantlist entries per quiet peer, mean"
	qMost         = "wantlist entries per quiet peer, most"
	qReasks       = "wants for a CID after the peer's DONT_HAVE for it, most per peer"
	qMissMean     = "entries for the missing CID per quiet peer, mean"
	qMissMost     = "entries for the missing CID per quiet peer, most"
	qMissReasks   = "wants for the missing CID after the peer's DONT_HAVE for it, most per peer"
)

// Targets of the quiet suite, for ours.
const (
	quietMaxSlowdown = 1.5 // silent peers: over boxo, and over ours alone
	quietMaxMissing  = 3   // entries per quiet peer for a want nobody has
)

type quietParams struct {
	peers         int
	window        time.Duration
	size          int64 // the file's bytes
	missingRepeat int
	cases         map[string]bool
}

func quietParamsFor(cfg Config) (quietParams, error) {
	p := quietParams{peers: 50, window: 25 * time.Second, size: 20 << 20, missingRepeat: min(cfg.Repeat, 3),
		cases: map[string]bool{"fetch": true, "missing": true}}
	if cfg.Short {
		p.peers, p.window, p.size = 5, 5*time.Second, 4<<20
	}
	if v := os.Getenv(quietPeersEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return p, fmt.Errorf("%s=%q: want a number of peers in [1, 500]", quietPeersEnv, v)
		}
		p.peers = n
	}
	if v := os.Getenv(quietWindowEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return p, fmt.Errorf("%s=%q: want a duration of 1s or more", quietWindowEnv, v)
		}
		p.window = d
	}
	if v := os.Getenv(quietCasesEnv); v != "" {
		p.cases = map[string]bool{}
		for _, k := range strings.Split(v, ",") {
			k = strings.TrimSpace(k)
			if k != "fetch" && k != "missing" {
				return p, fmt.Errorf("%s=%q: unknown case %q (fetch, missing)", quietCasesEnv, v, k)
			}
			p.cases[k] = true
		}
	}
	return p, nil
}

// copyCARWithout copies the CARv1 or v2 at src to a CARv1 at dst, with
// the same roots, leaving out the first block that drop picks, which it
// returns with its size.
func copyCARWithout(src, dst string, drop func(cid.Cid) bool) (cid.Cid, int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return cid.Undef, 0, err
	}
	defer in.Close()
	br, err := car.NewBlockReader(bufio.NewReaderSize(in, 1<<20))
	if err != nil {
		return cid.Undef, 0, err
	}
	out, err := os.Create(dst)
	if err != nil {
		return cid.Undef, 0, err
	}
	defer out.Close()
	bw := bufio.NewWriterSize(out, 1<<20)
	sc, err := storage.NewWritable(struct{ io.Writer }{bw}, br.Roots, car.WriteAsCarV1(true), car.StoreIdentityCIDs(false))
	if err != nil {
		return cid.Undef, 0, err
	}
	dropped, size := cid.Undef, int64(0)
	ctx := context.Background()
	for {
		b, err := br.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return cid.Undef, 0, err
		}
		if !dropped.Defined() && drop(b.Cid()) {
			dropped, size = b.Cid(), int64(len(b.RawData()))
			continue
		}
		if err := sc.Put(ctx, b.Cid().KeyString(), b.RawData()); err != nil {
			return cid.Undef, 0, err
		}
	}
	if !dropped.Defined() {
		return cid.Undef, 0, fmt.Errorf("%s: no block to leave out", src)
	}
	if err := sc.Finalize(); err != nil {
		return cid.Undef, 0, err
	}
	if err := bw.Flush(); err != nil {
		return cid.Undef, 0, err
	}
	return dropped, size, out.Close()
}

// quietSide is one implementation's runs of one case.
type quietSide struct {
	sample
	reps  []int         // each run's repeat
	quiet []quietResult // each run's quiet peers' counts (empty without quiet peers)
}

func newQuietSide(name string, logf func(string, ...any)) *quietSide {
	return &quietSide{sample: sample{name: name, logf: logf}}
}

func (s *quietSide) record(rep int, r dagRun, q quietResult, err error) {
	if err != nil {
		s.fails = append(s.fails, err.Error())
		s.logf("quiet: %s run FAILED: %v", s.name, err)
		return
	}
	s.runs = append(s.runs, r)
	s.reps = append(s.reps, rep)
	s.quiet = append(s.quiet, q)
}

// quietStat is a figure of every run's quiet peers.
func (s *quietSide) quietStat(f func(dagRun, quietResult) float64) Stat {
	var st Stat
	for i, r := range s.runs {
		st.add(f(r, s.quiet[i]))
	}
	if len(s.runs) == 0 && len(s.fails) > 0 {
		st.Text = "failed"
	}
	return st
}

// overNone is each run's time d over that of the run without quiet peers
// in the same repeat.
func (s *quietSide) overNone(none *quietSide, d func(dagRun) time.Duration) Stat {
	var st Stat
	for i, r := range s.runs {
		for j, b := range none.runs {
			if none.reps[j] == s.reps[i] && d(b) > 0 {
				st.add(d(r).Seconds() / d(b).Seconds())
			}
		}
	}
	if len(st.Samples) == 0 {
		st.Text = "no pair"
	}
	return st
}

// cidsNote names the CIDs the quiet peers were asked about in the first
// run, and those asked with want-block.
func (s *quietSide) cidsNote(root cid.Cid) string {
	if len(s.quiet) == 0 {
		return "—"
	}
	asked, blocks := map[string]bool{}, map[string]bool{}
	for _, h := range s.quiet[0].Hosts {
		for c, n := range h.Cids {
			if n.WantHave+n.WantBlock > 0 {
				asked[c] = true
			}
			if n.WantBlock > 0 {
				blocks[c] = true
			}
		}
	}
	name := func(set map[string]bool) string {
		if len(set) == 0 {
			return "none"
		}
		out := fmt.Sprintf("%d CIDs", len(set))
		if len(set) == 1 {
			out = "1 CID"
		}
		if set[root.String()] {
			out += ", the root among them"
			if len(set) == 1 {
				out = "the root only"
			}
		}
		return out
	}
	return fmt.Sprintf("asked about %s, want-block for %s", name(asked), name(blocks))
}

// perPeer sums the quiet peers' counts for c (cid.Undef: every CID) and
// says how many peers got any entry and the most one got.
func (q quietResult) perPeer(c cid.Cid) (sum quietCounts, most, asked int) {
	for _, h := range q.Hosts {
		n := h.Total
		if c.Defined() {
			n = h.Cids[c.String()]
		}
		sum.add(n)
		most = max(most, n.entries())
		if n.entries() > 0 {
			asked++
		}
	}
	return sum, most, asked
}

// mostReasks is the most wants any quiet peer got for one CID (c, or
// any with cid.Undef) after it had sent its DONT_HAVE for that CID, and
// their sum over the peers and CIDs.
func (q quietResult) mostReasks(c cid.Cid) (most, sum int) {
	for _, h := range q.Hosts {
		n := 0
		for k, cc := range h.Cids {
			if !c.Defined() || k == c.String() {
				n += cc.AfterDontHave
			}
		}
		most, sum = max(most, n), sum+n
	}
	return most, sum
}

// timeline says when the quiet peers got their entries for c (cid.Undef:
// any) and sent their DONT_HAVEs, in seconds after start: for each kind,
// its runs with no gap of 100 ms, in the order they began, at most limit.
func (q quietResult) timeline(start time.Time, c cid.Cid, limit int) string {
	evs := slices.Clone(q.Events)
	slices.SortStableFunc(evs, func(a, b quietEvent) int { return cmp.Compare(a.At, b.At) })
	type run struct {
		kind     string
		from, to float64
		n        int
	}
	var runs []run
	open := map[string]int{} // kind → its last run
	for _, ev := range evs {
		if c.Defined() && ev.Cid != c.String() {
			continue
		}
		at := float64(ev.At-start.UnixNano()) / 1e9
		if k, ok := open[ev.Kind]; ok && at-runs[k].to < 0.1 {
			runs[k].to = at
			runs[k].n++
			continue
		}
		open[ev.Kind] = len(runs)
		runs = append(runs, run{kind: ev.Kind, from: at, to: at, n: 1})
	}
	if len(runs) == 0 {
		return "none"
	}
	var parts []string
	for i, r := range runs {
		if i == limit {
			parts = append(parts, fmt.Sprintf("… %d more runs", len(runs)-limit))
			break
		}
		when := fmt.Sprintf("+%.2f s", r.from)
		if r.to-r.from >= 0.01 {
			when = fmt.Sprintf("+%.2f–%.2f s", r.from, r.to)
		}
		parts = append(parts, fmt.Sprintf("%s ×%d %s", r.kind, r.n, when))
	}
	s := strings.Join(parts, ", ")
	if q.EventsDropped > 0 {
		s += fmt.Sprintf(" (%d events not recorded)", q.EventsDropped)
	}
	return s
}

// lateEntries counts the entries for c that reached the quiet peers in
// the last second of the fetching process's life (its timeout's cancels).
func (q quietResult) lateEntries(c cid.Cid, end time.Time) int {
	n := 0
	for _, ev := range q.Events {
		if ev.Cid == c.String() && ev.Kind != "dont-have" && ev.At >= end.Add(-time.Second).UnixNano() {
			n++
		}
	}
	return n
}

// breakdown is the quiet peers' mean want-have, want-block and cancel
// entries for c (cid.Undef: every CID), over the runs, and their messages.
func (s *quietSide) breakdown(c cid.Cid, peers int) string {
	if len(s.quiet) == 0 {
		return "—"
	}
	var sum quietCounts
	var msgs, asked int
	for _, q := range s.quiet {
		n, _, a := q.perPeer(c)
		sum.add(n)
		asked += a
		for _, h := range q.Hosts {
			msgs += h.Messages
		}
	}
	k := float64(len(s.quiet) * peers)
	out := fmt.Sprintf("want-have %.2f, want-block %.2f, cancel %.2f", float64(sum.WantHave)/k, float64(sum.WantBlock)/k, float64(sum.Cancel)/k)
	if !c.Defined() {
		out += fmt.Sprintf(", messages %.2f", float64(msgs)/k)
	}
	if sum.DontHave > 0 {
		out += fmt.Sprintf(", DONT_HAVEs sent %.2f", float64(sum.DontHave)/k)
	}
	return out + fmt.Sprintf(" per peer; peers asked %.1f of %d", float64(asked)/float64(len(s.quiet)), peers)
}

// quietConfig is one setting of the quiet peers.
type quietConfig struct {
	n    int
	mode string
}

func (c quietConfig) String() string {
	switch {
	case c.n == 0:
		return "no quiet peers"
	case c.mode == quietSilent:
		return fmt.Sprintf("%d silent peers", c.n)
	default:
		return fmt.Sprintf("%d DONT_HAVE peers", c.n)
	}
}

// quietSideSet is every implementation's runs of each quiet config.
type quietSideSet map[quietConfig]map[impl]*quietSide

func quietSides(configs []quietConfig, what string, logf func(string, ...any)) quietSideSet {
	set := quietSideSet{}
	for _, c := range configs {
		set[c] = map[impl]*quietSide{}
		for _, which := range []impl{ours, boxo} {
			set[c][which] = newQuietSide(fmt.Sprintf("%s, %s%s", which, what, c), logf)
		}
	}
	return set
}

// steps are one repeat's runs, ours and boxo for each config, for
// interleave.
func (set quietSideSet) steps(configs []quietConfig, run func(impl, quietConfig, *quietSide)) []func() error {
	var out []func() error
	for _, c := range configs {
		for _, which := range []impl{ours, boxo} {
			out = append(out, func() error { run(which, c, set[c][which]); return nil })
		}
	}
	return out
}

// quietFetch runs one fetch of which from its own seed over repo, with a
// fresh quiet-peers child of c's peers connected to the fetching process.
func (e *dagEnv) quietFetch(which impl, repo string, info dagInfo, c quietConfig, o fetchOpts) (dagRun, quietResult, error) {
	var q quietResult
	var qp *quietProc
	if c.n > 0 {
		var err error
		if qp, err = startQuietPeers(c.n, c.mode); err != nil {
			return dagRun{}, q, err
		}
		o.peers = qp.addrs
	}
	r, err := e.fetchWith(which, which, repo, info, toFile, o)
	if qp == nil {
		return r, q, err
	}
	// What the fetching process sent before it exited is in flight at
	// most; the server has been stopped since.
	time.Sleep(100 * time.Millisecond)
	q, qerr := qp.stop()
	if err != nil {
		return r, q, err
	}
	if qerr != nil {
		return r, q, qerr
	}
	if len(q.Hosts) != c.n {
		return r, q, fmt.Errorf("quiet peers: counts of %d hosts, want %d", len(q.Hosts), c.n)
	}
	if q.BadMessages > 0 || q.SendErrors > 0 {
		return r, q, fmt.Errorf("quiet peers: %d messages did not decode, %d DONT_HAVE messages were not sent", q.BadMessages, q.SendErrors)
	}
	return r, q, nil
}

func runQuiet(cfg Config) ([]Row, error) {
	p, err := quietParamsFor(cfg)
	if err != nil {
		return nil, err
	}
	e, err := newDAGEnv(cfg, "quiet")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(e.work)
	work := e.work
	carPath := filepath.Join(work, "quiet.car")
	info, err := buildUnixFS(carPath, 27, p.size, 256<<10)
	if err != nil {
		return nil, fmt.Errorf("building the DAG: %w", err)
	}
	label := fmt.Sprintf("UnixFS %s in 256 KiB chunks", sizeName(p.size))
	partPath := filepath.Join(work, "quiet-missing.car")
	missing, missingBytes, err := copyCARWithout(carPath, partPath, func(c cid.Cid) bool { return c.Prefix().Codec == cid.Raw })
	if err != nil {
		return nil, fmt.Errorf("leaving a leaf out: %w", err)
	}
	full, part := filepath.Join(work, "repo"), filepath.Join(work, "repo-missing")
	if err := e.importCAR(full, info.root, carPath); err != nil {
		return nil, err
	}
	if err := e.importCAR(part, info.root, partPath); err != nil {
		return nil, err
	}
	cfg.logf("quiet: %s: %d blocks, %s of block data, root %s; %d quiet peers; the missing leaf %s; %d repeats (%d of the want nobody has, %v each)",
		label, info.blocks, sizeName(info.bytes), info.root, p.peers, missing, cfg.Repeat, p.missingRepeat, p.window)

	var rows []Row
	var failed []string
	if p.cases["fetch"] {
		r, f := e.quietFetchCase(cfg, p, label, full, info)
		rows, failed = append(rows, r...), append(failed, f...)
	}
	if p.cases["missing"] {
		r, f := e.quietMissingCase(cfg, p, part, info, missing, missingBytes)
		rows, failed = append(rows, r...), append(failed, f...)
	}
	if len(failed) > 0 {
		return rows, fmt.Errorf("%d runs failed (see the rows' notes): first: %s", len(failed), oneLineErr(failed[0]))
	}
	return rows, nil
}

// quietFetchCase fetches the whole DAG with no quiet peers, with silent
// ones and with DONT_HAVE ones.
func (e *dagEnv) quietFetchCase(cfg Config, p quietParams, label, repo string, info dagInfo) ([]Row, []string) {
	configs := []quietConfig{{0, ""}, {p.peers, quietSilent}, {p.peers, quietDontHave}}
	sides := quietSides(configs, "", cfg.logf)
	var load Stat
	for rep := range cfg.Repeat {
		_ = interleave(rep, sides.steps(configs, func(which impl, c quietConfig, s *quietSide) {
			r, q, err := e.quietFetch(which, repo, info, c, fetchOpts{})
			s.record(rep, r, q, err)
		})...)
		load.add(loadAvg())
		var parts []string
		for _, c := range configs {
			parts = append(parts, fmt.Sprintf("%s: ours %s, boxo %s", c, lastWall(&sides[c][ours].sample), lastWall(&sides[c][boxo].sample)))
		}
		cfg.logf("quiet: fetch repeat %d/%d: wall %s; load %s", rep+1, cfg.Repeat, strings.Join(parts, "; "), last(load))
	}

	var rows []Row
	var failed []string
	wall := func(r dagRun) time.Duration { return r.wall }
	self := func(r dagRun) time.Duration { return r.self }
	secs := func(d func(dagRun) time.Duration) func(dagRun) float64 {
		return func(r dagRun) float64 { return d(r).Seconds() }
	}
	none := sides[configs[0]]
	for _, c := range configs {
		o, b := sides[c][ours], sides[c][boxo]
		failed = append(failed, o.fails...)
		failed = append(failed, b.fails...)
		name := fmt.Sprintf("%s, %s: ", label, c)
		fails := o.failNote("ours") + b.failNote("boxo")
		e2e := Row{Case: name + qE2E, Unit: "s", Ours: o.stat(secs(wall)), Boxo: b.stat(secs(wall))}
		e2e.Note = fmt.Sprintf("%d blocks, %s; the fetching process, exec to exit", info.blocks, sizeName(info.bytes))
		if c.mode == quietSilent {
			e2e.Note += fmt.Sprintf("; target ours ≤ %.1f× boxo", quietMaxSlowdown)
		}
		e2e.Note += loadNote(load) + fails
		selfRow := Row{Case: name + qSelf, Unit: "s", Ours: o.stat(secs(self)), Boxo: b.stat(secs(self)),
			Note: "ours: its summary line; boxo: FetchGraph"}
		rows = append(rows, e2e, selfRow)
		if c.n == 0 {
			continue
		}
		over := Row{Case: name + qOverNone, Unit: "×", Ours: o.overNone(none[ours], wall), Boxo: b.overNone(none[boxo], wall)}
		outside := func(s *quietSide) string {
			return secsNote(&s.sample, func(r dagRun) time.Duration { return r.wall - r.self })
		}
		over.Note = fmt.Sprintf("each side over its own time with no quiet peer, in the same repeat; outside the fetch (end to end minus as reported: start-up, connecting, closing): ours %s, boxo %s; with no quiet peer: ours %s, boxo %s",
			outside(o), outside(b), outside(none[ours]), outside(none[boxo]))
		overSelf := Row{Case: name + qOverNoneSelf, Unit: "×", Ours: o.overNone(none[ours], self), Boxo: b.overNone(none[boxo], self),
			Note: "each side over its own fetch time with no quiet peer, in the same repeat"}
		if c.mode == quietSilent {
			overSelf.Note += fmt.Sprintf("; target ours ≤ %.1f×", quietMaxSlowdown)
		}
		mean := Row{Case: name + qEntries, Unit: "entries",
			Ours: o.quietStat(func(_ dagRun, q quietResult) float64 {
				s, _, _ := q.perPeer(cid.Undef)
				return float64(s.entries()) / float64(c.n)
			}),
			Boxo: b.quietStat(func(_ dagRun, q quietResult) float64 {
				s, _, _ := q.perPeer(cid.Undef)
				return float64(s.entries()) / float64(c.n)
			})}
		mean.Note = fmt.Sprintf("ours: %s; boxo: %s; first run: ours %s, boxo %s", o.breakdown(cid.Undef, c.n), b.breakdown(cid.Undef, c.n),
			o.cidsNote(info.root), b.cidsNote(info.root))
		mostF := func(_ dagRun, q quietResult) float64 { _, m, _ := q.perPeer(cid.Undef); return float64(m) }
		most := Row{Case: name + qMost, Unit: "entries", Ours: o.quietStat(mostF), Boxo: b.quietStat(mostF)}
		most.Note = "when the quiet peers got them (first run): ours " + firstTimeline(o, cid.Undef) + "; boxo " + firstTimeline(b, cid.Undef)
		rows = append(rows, over, overSelf, mean, most)
		if c.mode == quietDontHave {
			reF := func(_ dagRun, q quietResult) float64 { m, _ := q.mostReasks(cid.Undef); return float64(m) }
			re := Row{Case: name + qReasks, Unit: "wants", Ours: o.quietStat(reF), Boxo: b.quietStat(reF)}
			re.Note = fmt.Sprintf("summed over the peers and CIDs, per run: ours %s, boxo %s; target ours 0", reaskSums(o, cid.Undef), reaskSums(b, cid.Undef))
			rows = append(rows, re)
		}
	}
	return rows, failed
}

// quietMissingCase fetches the DAG whose first leaf the seed lacks, until
// the timeout, with silent quiet peers and with DONT_HAVE ones.
func (e *dagEnv) quietMissingCase(cfg Config, p quietParams, repo string, info dagInfo, missing cid.Cid, missingBytes int64) ([]Row, []string) {
	configs := []quietConfig{{p.peers, quietSilent}, {p.peers, quietDontHave}}
	o := fetchOpts{timeout: p.window, missing: missing, missingBytes: missingBytes}
	sides := quietSides(configs, "missing block, ", cfg.logf)
	for rep := range p.missingRepeat {
		_ = interleave(rep, sides.steps(configs, func(which impl, c quietConfig, s *quietSide) {
			r, q, err := e.quietFetch(which, repo, info, c, o)
			s.record(rep, r, q, err)
		})...)
		var parts []string
		for _, c := range configs {
			for _, which := range []impl{ours, boxo} {
				s := sides[c][which]
				fig := "failed"
				if n := len(s.quiet); n > 0 && len(s.reps) > 0 && s.reps[n-1] == rep {
					_, m, _ := s.quiet[n-1].perPeer(missing)
					fig = fmt.Sprintf("most %d", m)
				}
				parts = append(parts, fmt.Sprintf("%s %s %s", c, which, fig))
			}
		}
		cfg.logf("quiet: want nobody has, repeat %d/%d: entries for %s per quiet peer: %s", rep+1, p.missingRepeat, missing, strings.Join(parts, "; "))
	}

	var rows []Row
	var failed []string
	for _, c := range configs {
		ors, bs := sides[c][ours], sides[c][boxo]
		failed = append(failed, ors.fails...)
		failed = append(failed, bs.fails...)
		name := fmt.Sprintf("a want nobody has (the seed lacks one leaf), %s, %v timeout: ", c, p.window)
		meanF := func(_ dagRun, q quietResult) float64 {
			s, _, _ := q.perPeer(missing)
			return float64(s.entries()) / float64(c.n)
		}
		mostF := func(_ dagRun, q quietResult) float64 { _, m, _ := q.perPeer(missing); return float64(m) }
		mean := Row{Case: name + qMissMean, Unit: "entries", Ours: ors.quietStat(meanF), Boxo: bs.quietStat(meanF)}
		mean.Note = fmt.Sprintf("%s; %d runs; ours: %s, %s in its last second (its timeout's cancels); boxo: %s, %s in its last second",
			missing, p.missingRepeat, ors.breakdown(missing, c.n), lateNote(ors, missing), bs.breakdown(missing, c.n), lateNote(bs, missing)) +
			ors.failNote("ours") + bs.failNote("boxo")
		most := Row{Case: name + qMissMost, Unit: "entries", Ours: ors.quietStat(mostF), Boxo: bs.quietStat(mostF)}
		most.Note = fmt.Sprintf("target ours ≤ %d in every run; when (first run): ours %s; boxo %s",
			quietMaxMissing, firstTimeline(ors, missing), firstTimeline(bs, missing))
		rows = append(rows, mean, most)
		if c.mode == quietDontHave {
			reF := func(_ dagRun, q quietResult) float64 { m, _ := q.mostReasks(missing); return float64(m) }
			re := Row{Case: name + qMissReasks, Unit: "wants", Ours: ors.quietStat(reF), Boxo: bs.quietStat(reF)}
			re.Note = fmt.Sprintf("summed over the peers, per run: ours %s, boxo %s; target ours 0 in every run; for every CID of the fetch: ours %s, boxo %s",
				reaskSums(ors, missing), reaskSums(bs, missing), reaskSums(ors, cid.Undef), reaskSums(bs, cid.Undef))
			rows = append(rows, re)
		}
	}
	return rows, failed
}

func firstTimeline(s *quietSide, c cid.Cid) string {
	if len(s.quiet) == 0 {
		return "—"
	}
	return s.quiet[0].timeline(s.runs[0].start, c, 8)
}

func reaskSums(s *quietSide, c cid.Cid) string {
	if len(s.quiet) == 0 {
		return "—"
	}
	var v []string
	for _, q := range s.quiet {
		_, sum := q.mostReasks(c)
		v = append(v, strconv.Itoa(sum))
	}
	return strings.Join(v, ", ")
}

// lateNote is the mean entries per quiet peer for c in the last second of
// the fetching process's life.
func lateNote(s *quietSide, c cid.Cid) string {
	if len(s.quiet) == 0 {
		return "—"
	}
	n, k := 0, 0
	for i, q := range s.quiet {
		n += q.lateEntries(c, s.runs[i].start.Add(s.runs[i].wall))
		k += len(q.Hosts)
	}
	return fmt.Sprintf("%.2f", float64(n)/float64(max(k, 1)))
}

// quietTargets checks ours against the goals on the quiet suite's
// rows.
func quietTargets(rows []Row) []target {
	find := func(suffix string, mode string) []Row {
		var out []Row
		for _, r := range rows {
			if strings.HasSuffix(r.Case, ": "+suffix) && strings.Contains(r.Case, mode) {
				out = append(out, r)
			}
		}
		return out
	}
	var out []target
	if rs := find(qE2E, " silent peers: "); len(rs) > 0 {
		r := rs[0]
		t := target{Goal: fmt.Sprintf("quiet peers: with the silent peers connected, ours end to end ≤ %.1f × boxo's", quietMaxSlowdown)}
		if r.Ratio > 0 {
			t.Figure = fmt.Sprintf("%.2f× (ours %.2f s, boxo %.2f s)", r.Ratio, r.Ours.Median, r.Boxo.Median)
			t.Met = r.Ratio <= quietMaxSlowdown
		} else {
			t.Figure = "no ratio: ours " + r.Ours.cell() + ", boxo " + r.Boxo.cell()
		}
		out = append(out, t)
	}
	// The fetch itself: end to end, connecting to the quiet peers adds
	// the same to both implementations (libp2p's dials and handshakes), which
	// is not what the goal is about.
	if rs := find(qOverNoneSelf, " silent peers: "); len(rs) > 0 {
		r := rs[0]
		t := target{Goal: fmt.Sprintf("quiet peers: with the silent peers connected, ours' fetch (as reported, after connecting) ≤ %.1f × ours with none", quietMaxSlowdown)}
		if r.Ours.ok() {
			t.Figure = fmt.Sprintf("%.2f×", r.Ours.Median)
			t.Met = r.Ours.Median <= quietMaxSlowdown
		} else {
			t.Figure = r.Ours.cell()
		}
		if e := find(qOverNone, " silent peers: "); len(e) > 0 && e[0].Ours.ok() {
			t.Figure += fmt.Sprintf(" (end to end %.2f×, boxo's %s×)", e[0].Ours.Median, e[0].Boxo.cell())
		}
		out = append(out, t)
	}
	if rs := find(qMissMost, "a want nobody has"); len(rs) > 0 {
		t := target{Goal: fmt.Sprintf("quiet peers: a want nobody has costs each quiet peer ≤ %d entries in the window (silent and DONT_HAVE peers, every run)", quietMaxMissing), Met: true}
		var figs []string
		for _, r := range rs {
			what, _, _ := strings.Cut(strings.TrimPrefix(r.Case, "a want nobody has (the seed lacks one leaf), "), ": ")
			if !r.Ours.ok() {
				t.Met = false
				figs = append(figs, what+": "+r.Ours.cell())
				continue
			}
			figs = append(figs, fmt.Sprintf("%s: most %v", what, r.Ours.Max))
			t.Met = t.Met && r.Ours.Max <= quietMaxMissing
		}
		t.Figure = strings.Join(figs, "; ")
		out = append(out, t)
	}
	var re []Row
	re = append(re, find(qReasks, "DONT_HAVE peers")...)
	re = append(re, find(qMissReasks, "DONT_HAVE peers")...)
	if len(re) > 0 {
		t := target{Goal: "quiet peers: a peer that said DONT_HAVE is not asked again for that CID (0 wants after it, every run)", Met: true}
		var figs []string
		for _, r := range re {
			what := "the fetch"
			if strings.HasPrefix(r.Case, "a want nobody has") {
				what = "the want nobody has"
			}
			if !r.Ours.ok() {
				t.Met = false
				figs = append(figs, what+": "+r.Ours.cell())
				continue
			}
			figs = append(figs, fmt.Sprintf("%s: most %v", what, r.Ours.Max))
			t.Met = t.Met && r.Ours.Max == 0
		}
		t.Figure = strings.Join(figs, "; ")
		out = append(out, t)
	}
	return out
}

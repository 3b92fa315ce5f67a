// Command bench measures gobitswap against boxo's Bitswap and prints one
// table per suite: each case for ours and for boxo, measured in the same run,
// with medians, min–max spread and the ratio ours/boxo.
//
//	go run ./cmd/bench                      # every suite, 5 repeats
//	go run ./cmd/bench -suite throughput -repeat 3 -json out.json -markdown out.md
//	go run ./cmd/bench -short               # CI smoke: small sizes, 1 repeat
//
// Suites register themselves in the suites table (see register), so another
// suite is one more file in this package with an init func.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Config is what every suite is given.
type Config struct {
	// Short selects small sizes and short timeouts (the CI smoke test).
	Short bool `json:"short"`
	// Repeat is how many times each case is measured.
	Repeat int `json:"repeat"`
	// Log receives progress lines; never nil.
	Log io.Writer `json:"-"`
}

func (c Config) logf(format string, args ...any) {
	fmt.Fprintf(c.Log, format+"\n", args...)
}

// SuiteFunc runs one suite and returns its rows. On error it may return the
// rows measured so far too.
type SuiteFunc func(Config) ([]Row, error)

type suite struct {
	name string
	run  SuiteFunc
	doc  string // markdown paragraph printed under the suite's table
}

// suites in the order they run.
var suites []suite

func init() {
	register("throughput", runThroughput, throughputDoc)
	register("memory", runMemory, memoryDoc)
	register("vtime", runVtime, vtimeDoc)
	register("scale", runScale, scaleDoc)
	register("attack", runAttack, attackDoc)
	register("dag", runDAG, dagDoc)
	register("quiet", runQuiet, quietDoc)
}

// suiteDocs maps a suite's name to its doc, for the markdown report.
var suiteDocs = map[string]string{}

// register adds a suite. doc is a markdown paragraph explaining the method,
// printed under the suite's table in the markdown report.
func register(name string, run SuiteFunc, doc string) {
	for _, s := range suites {
		if s.name == name {
			panic("bench: suite registered twice: " + name)
		}
	}
	suites = append(suites, suite{name: name, run: run, doc: doc})
	suiteDocs[name] = doc
}

func suiteNames() []string {
	var out []string
	for _, s := range suites {
		out = append(out, s.name)
	}
	return out
}

// selectSuites resolves the -suite flag: "all", or names separated by commas.
func selectSuites(spec string) ([]suite, error) {
	if spec == "" || spec == "all" {
		return suites, nil
	}
	var out []suite
	for _, name := range strings.Split(spec, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, s := range suites {
			if s.name == name {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown suite %q (available: %s)", name, strings.Join(suiteNames(), ", "))
		}
	}
	return out, nil
}

// runSuites runs each suite in turn; a failing suite does not stop the rest.
func runSuites(cfg Config, sel []suite) []SuiteResult {
	var out []SuiteResult
	for _, s := range sel {
		cfg.logf("suite %s: starting", s.name)
		start := time.Now()
		rows, err := s.run(cfg)
		for i := range rows {
			rows[i].finish()
		}
		res := SuiteResult{Name: s.name, Rows: rows, Elapsed: time.Since(start)}
		if err != nil {
			res.Err = err.Error()
			cfg.logf("suite %s: FAILED after %.1f s: %v", s.name, res.Elapsed.Seconds(), err)
		} else {
			cfg.logf("suite %s: done in %.1f s", s.name, res.Elapsed.Seconds())
		}
		out = append(out, res)
	}
	return out
}

func main() {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	suiteSpec := fs.String("suite", "all", "suites to run, comma-separated: all, "+strings.Join(suiteNames(), ", "))
	short := fs.Bool("short", false, "smoke test: small sizes, short timeouts, 1 repeat unless -repeat is given")
	repeat := fs.Int("repeat", 5, "times each case is measured")
	jsonOut := fs.String("json", "", "write the results as JSON to this file")
	mdOut := fs.String("markdown", "", "write a markdown report (machine, command, tables) to this file")
	render := fs.String("render", "", "measure nothing: write the reports from this -json file of an earlier run")
	plotOut := fs.String("plot", "", "draw the throughput suite as a bar chart to this .svg or .png file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if ext := strings.ToLower(filepath.Ext(*plotOut)); *plotOut != "" && ext != ".svg" && ext != ".png" {
		return fmt.Errorf("-plot %s: want a .svg or .png file", *plotOut)
	}
	repeatSet := false
	fs.Visit(func(f *flag.Flag) { repeatSet = repeatSet || f.Name == "repeat" })
	cfg := Config{Short: *short, Repeat: *repeat, Log: &syncWriter{w: stderr}}
	if cfg.Short && !repeatSet {
		cfg.Repeat = 1
	}
	if cfg.Repeat < 1 {
		return errors.New("-repeat must be at least 1")
	}
	sel, err := selectSuites(*suiteSpec)
	if err != nil {
		return err
	}
	var rep Report
	if *render != "" {
		b, err := os.ReadFile(*render)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &rep); err != nil {
			return fmt.Errorf("-render %s: %w", *render, err)
		}
	} else {
		command := strings.TrimSpace("go run ./cmd/bench " + strings.Join(args, " "))
		rep = Report{Machine: machineInfo(command), Config: cfg}
		cfg.logf("%s; %s %s/%s; %s; %d cores", command, rep.Machine.GoVersion, rep.Machine.GOOS, rep.Machine.GOARCH, rep.Machine.CPU, rep.Machine.Cores)
		rep.Suites = runSuites(cfg, sel)
	}
	writeText(stdout, rep.Suites, rep.Config.Short)

	if *jsonOut != "" {
		if err := writeFile(*jsonOut, func(w io.Writer) error { return writeJSON(w, rep) }); err != nil {
			return err
		}
	}
	if *mdOut != "" {
		img := ""
		if *plotOut != "" {
			if rel, err := filepath.Rel(filepath.Dir(*mdOut), *plotOut); err == nil {
				img = filepath.ToSlash(rel)
			}
		}
		if err := writeFile(*mdOut, func(w io.Writer) error { writeMarkdown(w, rep, img); return nil }); err != nil {
			return err
		}
	}
	if *plotOut != "" {
		if err := writePlot(*plotOut, rep.Suites); err != nil {
			return err
		}
	}
	var failed []string
	for _, s := range rep.Suites {
		if s.Err != "" {
			failed = append(failed, s.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("suites failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// syncWriter serialises writes: progress lines and the children's stderr
// share the log.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func writeFile(name string, fn func(io.Writer) error) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

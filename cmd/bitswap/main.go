// Command bitswap serves and fetches IPFS DAGs over Bitswap, with the
// gobitswap library.
//
//	bitswap serve [--listen MULTIADDR] [--repo DIR] [--http ADDR] FILE.car...
//	bitswap get --peer MULTIADDR [--peer ...] ROOT_CID [-o OUT.car] [--repo DIR] [--unixfs-out PATH] [--timeout D]
//	bitswap demo [--size BYTES] [--peers N]
//
// Exit codes: 0 success, 1 usage error, 2 input error (bad file, CAR, CID,
// multiaddr or repo; a block that does not decode; a root that is not a
// UnixFS file for --unixfs-out; an output or repo that cannot be written, a
// full disk; a repo in use), 3 network or fetch error (no peer reachable,
// blocks missing at the timeout), 4 internal error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK       = 0
	exitUsage    = 1
	exitInput    = 2
	exitNetwork  = 3
	exitInternal = 4
)

const usage = `bitswap: serve and fetch IPFS DAGs over Bitswap (gobitswap)

Usage:
  bitswap serve [--listen MULTIADDR] [--repo DIR] [--http ADDR] [FILE.car...]
      Import CAR files (v1 or v2) into the repo and serve everything in it
      until SIGINT/SIGTERM. Prints "listening: <multiaddr>/p2p/<peer id>"
      once per address and "root: <cid>" once per imported root on stdout.
      --http ADDR also serves it as a Trustless Gateway (raw blocks, CARs)
      and prints "http: http://<addr>".
  bitswap get --peer MULTIADDR [--peer ...] ROOT_CID [-o OUT.car] [--repo DIR]
             [--unixfs-out PATH] [--timeout D]
      Fetch the whole DAG under ROOT_CID (dag-pb, raw, dag-cbor, dag-json)
      through one session and write it as a CARv1 to OUT.car or stdout, or
      store it in the repo DIR; with --unixfs-out, write the UnixFS file
      that ROOT_CID is to PATH.
  bitswap demo [--size BYTES] [--peers N]
      Start N nodes on loopback, build a random file DAG in one, fetch it
      with the others, verify every byte and print a report.

Flags of every command:
  --log-level LEVEL   debug, info, warn or error (default warn); logs go to stderr
  --metrics ADDR      serve Prometheus metrics on http://ADDR/metrics: the
                      library's (package metrics: counters, gauges and
                      histograms, bitswap_*), Go's and the process's

Run "bitswap COMMAND -h" for a command's flags.

Tracing (OpenTelemetry; the variables boxo's and Kubo's tracing reads):
  OTEL_TRACES_EXPORTER  comma-separated exporters; unset or "none": no tracing
      otlp    OTLP over OTEL_EXPORTER_OTLP_PROTOCOL (or ..._TRACES_PROTOCOL):
              http/protobuf (default) or grpc; OTEL_EXPORTER_OTLP_ENDPOINT,
              ..._HEADERS, ..._TIMEOUT, ..._INSECURE etc. as OTLP defines them
      file    JSON spans, appended to OTEL_EXPORTER_FILE_PATH (./traces.json)
      stdout  pretty-printed spans, on stderr (stdout carries get's CAR)
  OTEL_SERVICE_NAME (default gobitswap), OTEL_RESOURCE_ATTRIBUTES,
  OTEL_TRACES_SAMPLER, OTEL_BSP_* as the OpenTelemetry SDK reads them.

Profiling:
  BITSWAP_CPUPROFILE=FILE  write a Go CPU profile of the whole run to FILE
                           (read it with go tool pprof)

Exit codes:
  0  success
  1  usage error (unknown command or flag, wrong arguments, an OTEL_TRACES_EXPORTER
     this command cannot build)
  2  input error (not a CAR file, truncated CAR, malformed CID or multiaddr,
     a block that does not decode under its codec, a root that is not a
     UnixFS file for get --unixfs-out, repo or output not usable: not
     writable, a full disk, a repo in use by another process)
  3  network or fetch error (no peer reachable, blocks missing at the timeout)
  4  internal error
`

// exitError carries an exit code with an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code: code, err: err}
}

func usageErrorf(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

func inputErrorf(format string, a ...any) error {
	return &exitError{code: exitInput, err: fmt.Errorf(format, a...)}
}

func networkErrorf(format string, a ...any) error {
	return &exitError{code: exitNetwork, err: fmt.Errorf(format, a...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	stopProfile := startCPUProfile(os.Getenv("BITSWAP_CPUPROFILE"), os.Stderr)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stopProfile()
	stop()
	os.Exit(code)
}

// startCPUProfile writes a CPU profile of the whole run to path, if set:
// the way to see where a slow fetch or serve spends its time.
func startCPUProfile(path string, stderr io.Writer) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(stderr, "bitswap: BITSWAP_CPUPROFILE: %v (not profiling)\n", err)
		if f != nil {
			f.Close()
		}
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// run executes one command and returns the exit code. Errors are printed as
// one line on stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var (
		err error
		cmd func(context.Context, []string, io.Writer, io.Writer) error
	)
	switch args[0] {
	case "serve":
		cmd = runServe
	case "get":
		cmd = runGet
	case "demo":
		cmd = runDemo
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		err = usageErrorf("unknown command %q (want serve, get or demo; see bitswap help)", args[0])
	}
	if cmd != nil {
		stopTracing, terr := startTracing(ctx, stderr)
		if terr != nil {
			err = usageErrorf("%v", terr)
		} else {
			err = cmd(ctx, args[1:], stdout, stderr)
			stopTracing()
		}
	}
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	code := exitInternal
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	fmt.Fprintf(stderr, "bitswap %s: %s\n", args[0], oneLine(err.Error()))
	return code
}

// oneLine folds a multi-line error (libp2p dial errors have several) into
// one line.
func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " ")
}

// common holds the flags every command has.
type common struct {
	logLevel string
	metrics  string
	logger   *slog.Logger
	level    *slog.LevelVar // the logger's level
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.logLevel, "log-level", "warn", "log level: debug, info, warn or error (logs go to stderr)")
	fs.StringVar(&c.metrics, "metrics", "", "serve Prometheus metrics on http://`ADDR`/metrics (e.g. 127.0.0.1:9090)")
}

// quietStop drops the warnings of a node that is stopping after the
// command has its result (sends of cancels failing as the network closes),
// which would add lines to a one-line error or summary. Debug and info
// logging keep everything.
func (c *common) quietStop() {
	if c.level != nil && c.level.Level() >= slog.LevelWarn {
		c.level.Set(slog.LevelError)
	}
}

func (c *common) setup(stderr io.Writer) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		return usageErrorf("bad --log-level %q (want debug, info, warn or error)", c.logLevel)
	}
	c.level = new(slog.LevelVar)
	c.level.Set(lvl)
	c.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.level}))
	slog.SetDefault(c.logger)
	return nil
}

// parseFlags parses args with flags and positional arguments in any order.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer, help string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(stderr, help)
				fs.SetOutput(stderr)
				fs.PrintDefaults()
				return nil, err
			}
			return nil, usageErrorf("%v (see bitswap %s -h)", err, fs.Name())
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// sizeFlag is a byte count with an optional K, M, G, KiB, MiB or GiB suffix.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }
func (s *sizeFlag) Set(v string) error {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSuffix(v, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("bad size %q", v)
	}
	*s = sizeFlag(n * mult)
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

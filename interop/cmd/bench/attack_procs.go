package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// tailBuffer keeps the last bytes written to it: a child's stderr, shown
// when the child fails (children under attack may log a line per bad peer).
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 4 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > tailSize {
		b = b[len(b)-tailSize:]
	}
	return strings.TrimSpace(string(b))
}

// childCmd is a command running this program as the child spec says.
// startChild starts a child of spec with its stdin and stdout piped and
// its stderr kept (the last of it) in stderr.
func startChild(spec childSpec, stderr *tailBuffer) (*exec.Cmd, io.WriteCloser, io.ReadCloser, error) {
	cmd, err := childCmd(spec)
	if err != nil {
		return nil, nil, nil, err
	}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	return cmd, stdin, stdout, nil
}

func childCmd(spec childSpec) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	// Under the race detector (the smoke test) a process sleeps a second
	// at exit unless told otherwise; the suite starts dozens of children.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(os.Environ(), childEnv+"="+string(b), "GORACE="+gorace)
	return cmd, nil
}

// runChildJSON runs a child to its end and decodes its stdout into out.
func runChildJSON(spec childSpec, out any) error {
	cmd, err := childCmd(spec)
	if err != nil {
		return err
	}
	var stdout bytes.Buffer
	stderr := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	// The child bounds its own work by spec.Timeout; this is for a child
	// that hangs anyway.
	guard := time.AfterFunc(spec.Timeout+2*time.Minute, func() { _ = cmd.Process.Kill() })
	defer guard.Stop()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("%s child: %w; stderr: %s", spec.Role, err, stderr)
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return fmt.Errorf("%s child output %q: %w", spec.Role, stdout.String(), err)
	}
	return nil
}

// serverProc is a running attack-server child.
type serverProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // stdout after the ready line
	stderr *tailBuffer
	addr   peer.AddrInfo
	addrS  string

	mu     sync.Mutex
	marks  []string // labels of the segments after the first
	closed bool
	exited chan struct{}
	err    error // the process's exit, once exited is closed
}

// startServer starts an attack-server child of which over the repository
// in dir and waits for it to be ready.
func startServer(which impl, dir, profile string) (*serverProc, error) {
	p := &serverProc{stderr: &tailBuffer{}, lines: make(chan string, 64), exited: make(chan struct{})}
	cmd, stdin, stdout, err := startChild(childSpec{Role: "attack-server", Impl: which, Dir: dir, Profile: profile}, p.stderr)
	if err != nil {
		return nil, err
	}
	p.cmd, p.stdin = cmd, stdin
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // not a line we wait for
			}
		}
		close(p.lines)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	select {
	case line, ok := <-p.lines:
		addr, isReady := strings.CutPrefix(line, "ready ")
		if !ok || !isReady {
			p.kill()
			return nil, fmt.Errorf("%s server child: %q; stderr: %s", which, line, p.stderr)
		}
		ai, err := peer.AddrInfoFromString(addr)
		if err != nil {
			p.kill()
			return nil, err
		}
		p.addr, p.addrS = *ai, addr
	case <-time.After(2 * time.Minute):
		p.kill()
		return nil, fmt.Errorf("%s server child not ready after 2 minutes", which)
	}
	return p, nil
}

// mark starts a new segment of the server's memory samples.
func (p *serverProc) mark(label string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.marks = append(p.marks, label)
	_, _ = io.WriteString(p.stdin, "mark "+label+"\n")
}

// crashed reports whether the server exited by itself.
func (p *serverProc) crashed() bool {
	select {
	case <-p.exited:
		p.mu.Lock()
		defer p.mu.Unlock()
		return !p.closed
	default:
		return false
	}
}

// finish closes the server's stdin, which ends it, and returns what it
// printed.
func (p *serverProc) finish() (atkServerResult, []string, error) {
	var r atkServerResult
	p.mu.Lock()
	wasCrashed := false
	select {
	case <-p.exited:
		wasCrashed = !p.closed
	default:
	}
	p.closed = true
	marks := p.marks
	_ = p.stdin.Close()
	p.mu.Unlock()
	if wasCrashed {
		return r, marks, fmt.Errorf("server exited during the run (%v); stderr: %s", p.err, p.stderr)
	}
	select {
	case line, ok := <-p.lines:
		if !ok {
			<-p.exited
			return r, marks, fmt.Errorf("server exited without a result (%v); stderr: %s", p.err, p.stderr)
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			p.kill()
			return r, marks, fmt.Errorf("server result %q: %w", line, err)
		}
	case <-time.After(time.Minute):
		p.kill()
		return r, marks, errors.New("server gave no result a minute after its stdin closed")
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.kill()
	}
	return r, marks, nil
}

// kill ends the child (this process started it) and waits for it.
func (p *serverProc) kill() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// honestProc is an honest-client child, started ahead of its fetches.
type honestProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr *tailBuffer

	fetches int
	timeout time.Duration // per fetch
}

// startHonest starts the child and waits until its first node is up.
func startHonest(spec childSpec) (*honestProc, error) {
	cmd, err := childCmd(spec)
	if err != nil {
		return nil, err
	}
	h := &honestProc{cmd: cmd, stderr: &tailBuffer{}, fetches: spec.Fetches, timeout: spec.Timeout}
	cmd.Stderr = h.stderr
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	h.out = bufio.NewReader(stdout)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := h.out.ReadString('\n')
		ready <- strings.TrimSpace(line)
	}()
	select {
	case line := <-ready:
		if line != "ready" {
			h.kill()
			return nil, fmt.Errorf("honest child: %q; stderr: %s", line, h.stderr)
		}
	case <-time.After(time.Minute):
		h.kill()
		return nil, errors.New("honest child not ready after a minute")
	}
	return h, nil
}

// run starts the fetches from the server at addr and waits for their
// result.
func (h *honestProc) run(addr string, out *honestResult) error {
	_, _ = io.WriteString(h.stdin, addr+"\n")
	_ = h.stdin.Close()
	// The child bounds each fetch by its timeout; this is for one that
	// hangs anyway.
	guard := time.AfterFunc(time.Duration(max(h.fetches, 1))*(h.timeout+time.Minute), func() { _ = h.cmd.Process.Kill() })
	defer guard.Stop()
	b, rerr := io.ReadAll(h.out)
	if err := h.cmd.Wait(); err != nil {
		return fmt.Errorf("honest child: %w; stderr: %s", err, h.stderr)
	}
	if rerr != nil {
		return rerr
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("honest child output %q: %w", b, err)
	}
	return nil
}

// kill ends the child (this process started it).
func (h *honestProc) kill() {
	_ = h.stdin.Close()
	_ = h.cmd.Process.Kill()
	_ = h.cmd.Wait()
}

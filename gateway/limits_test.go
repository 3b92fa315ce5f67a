package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"

	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/testutil"
)

// slowWriter is a client that does not read: each Write blocks until the
// test lets all writes through (proceed) or fails this one (as a write
// deadline would).
type slowWriter struct {
	hdr       http.Header
	code      int
	body      bytes.Buffer
	entered   chan struct{}
	fail      chan error
	proceed   <-chan struct{}
	deadlines int
}

func newSlowWriter(proceed <-chan struct{}) *slowWriter {
	return &slowWriter{hdr: http.Header{}, entered: make(chan struct{}, 1), fail: make(chan error, 1), proceed: proceed}
}

func (w *slowWriter) Header() http.Header { return w.hdr }
func (w *slowWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}
func (w *slowWriter) SetWriteDeadline(time.Time) error { w.deadlines++; return nil }
func (w *slowWriter) Write(p []byte) (int, error) {
	w.WriteHeader(200)
	if w.code != 200 { // error bodies are not held up
		return w.body.Write(p)
	}
	select {
	case w.entered <- struct{}{}:
	default:
	}
	select {
	case err := <-w.fail:
		return 0, err
	case <-w.proceed:
	}
	return w.body.Write(p)
}

var errDeadline = errors.New("i/o timeout (write deadline)")

// Many clients that do not read hold at most MaxConcurrent slots,
// MaxPerClient of them each, MaxBytesInFlight bytes of blocks, and
// MaxWaiting requests waiting; the rest are refused at once. A write that
// fails (its deadline passed) gives its slot and bytes to the next.
func TestSlowReadersStayWithinBounds(t *testing.T) {
	const size = 64 << 10
	blks := testutil.RandomBlocks(1, 9, size)
	bs := blockstore.NewMemory()
	for _, b := range blks {
		if err := bs.Put(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	h := New(bs, Options{MaxConcurrent: 4, MaxPerClient: 2, MaxWaiting: 4, MaxBytesInFlight: 2 * size})
	slotWait := make(chan struct{}, 16)
	byteWait := make(chan struct{}, 16)
	h.lim.onWait = func() { slotWait <- struct{}{} }
	h.budget.onWait = func() { byteWait <- struct{}{} }
	proceed := make(chan struct{})

	type req struct {
		w    *slowWriter
		done chan struct{}
	}
	start := func(client string, b blocks.Block) req {
		r := httptest.NewRequest("GET", "/ipfs/"+b.Cid().String()+"?format=raw", nil)
		r.RemoteAddr = client + ":1234"
		q := req{newSlowWriter(proceed), make(chan struct{})}
		go func() { defer close(q.done); h.ServeHTTP(q.w, r) }()
		return q
	}
	r1 := start("10.0.0.1", blks[0])
	<-r1.w.entered // A: slot, bytes, writing
	r2 := start("10.0.0.1", blks[1])
	<-r2.w.entered // A: slot, bytes, writing
	r3 := start("10.0.0.2", blks[2])
	<-byteWait // B: slot, waits for bytes
	r4 := start("10.0.0.3", blks[3])
	<-byteWait // C: slot, waits for bytes
	r5 := start("10.0.0.1", blks[4])
	<-slotWait // A's third: waits for a slot (A has 2, all 4 taken)
	var rest []req
	for i, ip := range []string{"10.0.0.4", "10.0.0.5", "10.0.0.6"} {
		rest = append(rest, start(ip, blks[5+i]))
		<-slotWait
	}
	// The waiting room (4) is full: the next is refused at once.
	r9 := start("10.0.0.7", blks[8])
	<-r9.done
	if r9.w.code != http.StatusTooManyRequests || r9.w.hdr.Get("Retry-After") == "" {
		t.Fatalf("9th request: %d, Retry-After %q", r9.w.code, r9.w.hdr.Get("Retry-After"))
	}
	s := h.Stat()
	if s.Active != 4 || s.Waiting != 4 || s.Clients != 6 || s.BytesInFlight != 2*size || s.Rejected != 1 {
		t.Fatalf("with every slot taken: %+v", s)
	}

	// r1's client stops reading: its write deadline passes.
	r1.w.fail <- errDeadline
	<-r1.done
	<-r3.w.entered // B gets r1's bytes
	<-byteWait     // A's third gets r1's slot (A was first to wait) and waits for bytes
	if s := h.Stat(); s.Active != 4 || s.Waiting != 3 || s.BytesInFlight != 2*size {
		t.Fatalf("after one deadline: %+v", s)
	}

	close(proceed)
	for i, q := range append([]req{r2, r3, r4, r5}, rest...) {
		<-q.done
		if q.w.code != 200 || q.w.body.Len() != size || q.w.deadlines != 2 {
			t.Fatalf("request %d: %d, %d bytes, %d deadlines set (want 2: the request, the block)", i+2, q.w.code, q.w.body.Len(), q.w.deadlines)
		}
	}
	s = h.Stat()
	if s.Active != 0 || s.Waiting != 0 || s.Clients != 0 || s.BytesInFlight != 0 || s.PeakBytes != 2*size || s.Blocks != 7 {
		t.Fatalf("at the end: %+v", s)
	}
}

// A CAR stream to a client that stops reading is cut when a write fails,
// and gives back its slot and bytes; every block's write has a deadline.
func TestSlowCARReaderIsCut(t *testing.T) {
	f := newFixture(t)
	h := New(f.bs, Options{})
	proceed := make(chan struct{})
	w := newSlowWriter(proceed)
	r := httptest.NewRequest("GET", "/ipfs/"+f.root.String()+"?format=car", nil)
	done := make(chan any)
	go func() {
		defer func() { done <- recover() }()
		h.ServeHTTP(w, r)
	}()
	<-w.entered // the CAR header
	close(proceed)
	if p := <-done; p != nil {
		t.Fatalf("panic %v", p)
	}
	all := f.dfs(t, f.root, false)
	if w.deadlines != len(all)+2 { // the request, the CAR header, then each block
		t.Fatalf("%d deadlines set for %d blocks", w.deadlines, len(all))
	}

	w = newSlowWriter(make(chan struct{}))
	go func() {
		defer func() { done <- recover() }()
		h.ServeHTTP(w, r)
	}()
	<-w.entered
	w.fail <- errDeadline
	if p := <-done; p != http.ErrAbortHandler {
		t.Fatalf("panic %v, want http.ErrAbortHandler", p)
	}
	if s := h.Stat(); s.Cut != 1 || s.Active != 0 || s.BytesInFlight != 0 || s.Clients != 0 {
		t.Fatalf("stat %+v", s)
	}
}

// Slots go to waiting clients in turn: a client with many requests
// waiting does not keep one with a single request waiting.
func TestLimiterTakesTurns(t *testing.T) {
	l := newLimiter(1, 1, 100, 100)
	ctx := context.Background()
	if err := l.acquire(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	waits := make(chan struct{}, 10)
	l.onWait = func() { waits <- struct{}{} }
	got := make(chan string, 10)
	for _, k := range []string{"A", "A", "A", "B"} {
		go func() {
			if err := l.acquire(ctx, k); err == nil {
				got <- k
			}
		}()
		<-waits
	}
	var order []string
	for range 4 {
		l.release(map[bool]string{true: "A", false: "B"}[len(order) == 0 || order[len(order)-1] == "A"])
		order = append(order, <-got)
	}
	if want := "A B A A"; fmtOrder(order) != want {
		t.Fatalf("grants %s, want %s", fmtOrder(order), want)
	}
	l.release("A")
	if a, _, w, c := l.stat(); a != 0 || w != 0 || c != 0 {
		t.Fatalf("active %d, waiting %d, clients %d", a, w, c)
	}
	// A waiter whose context ends leaves the queue.
	if err := l.acquire(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error)
	go func() { errc <- l.acquire(cctx, "B") }()
	<-waits
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	l.release("A")
	if a, _, w, c := l.stat(); a != 0 || w != 0 || c != 0 {
		t.Fatalf("after a cancelled wait: active %d, waiting %d, clients %d", a, w, c)
	}
}

func fmtOrder(o []string) string {
	s := ""
	for i, k := range o {
		if i > 0 {
			s += " "
		}
		s += k
	}
	return s
}

// logSignal passes each log record's message to a channel.
type logSignal struct{ ch chan string }

func (l logSignal) Enabled(context.Context, slog.Level) bool { return true }
func (l logSignal) Handle(_ context.Context, r slog.Record) error {
	l.ch <- r.Message
	return nil
}
func (l logSignal) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l logSignal) WithGroup(string) slog.Handler      { return l }

// Over real connections: 20 CAR requests of 24 MiB from 10 clients that
// never read. At most MaxConcurrent are served at once, one per client;
// each is cut when its write deadline passes, and its slot goes to the
// next; the block bytes held never pass MaxBytesInFlight.
func TestSlowReadersOverTCP(t *testing.T) {
	data := make([]byte, 24<<20)
	_, _ = mrand.New(mrand.NewSource(1)).Read(data)
	file, err := testutil.BuildFileDAG(bytes.NewReader(data), 1<<20, 174)
	if err != nil {
		t.Fatal(err)
	}
	bs := blockstore.NewMemory()
	if err := bs.PutMany(context.Background(), file.Blocks); err != nil {
		t.Fatal(err)
	}
	logs := logSignal{make(chan string, 64)}
	h := New(bs, Options{
		MaxConcurrent: 4, MaxPerClient: 1, MaxBytesInFlight: 3 << 20,
		WriteTimeout: 200 * time.Millisecond, QueueTimeout: time.Minute,
		ClientKey: func(r *http.Request) string { return r.Header.Get("X-Client") },
		Logger:    slog.New(logs),
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	const n = 20
	var conns []net.Conn
	for i := range n {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /ipfs/%s?format=car HTTP/1.1\r\nHost: x\r\nX-Client: c%d\r\n\r\n", file.Root, i%10)
	}
	for cut := 0; cut < n; {
		if m := <-logs.ch; m == "gateway: CAR stream cut" {
			cut++
		}
	}
	for _, c := range conns {
		c.Close()
	}
	srv.Close() // waits for the handlers to return
	s := h.Stat()
	if s.Cut != n || s.PeakActive != 4 || s.Active != 0 || s.Waiting != 0 || s.BytesInFlight != 0 || s.PeakBytes > 3<<20 {
		t.Fatalf("%+v", s)
	}
	t.Logf("%d slow readers: peak %d served at once, peak %d KiB of blocks held, %d blocks written before the cuts", n, s.PeakActive, s.PeakBytes>>10, s.Blocks)
}

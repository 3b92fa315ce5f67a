package httpnet

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/gobitswap/bitswap/message"
)

func TestProbeConnects(t *testing.T) {
	g := newGateway()
	n, _, id, srv := setup(t, g)
	g.mu.Lock()
	if len(g.reqs) != 1 {
		t.Fatalf("%d requests, want 1 probe", len(g.reqs))
	}
	p := g.reqs[0]
	g.mu.Unlock()
	if p.Method != http.MethodGet || p.URL.Path != "/ipfs/bafkqaaa" || p.URL.RawQuery != "format=raw" || p.Header.Get("Accept") != rawType {
		t.Fatalf("probe %s %s?%s Accept %q", p.Method, p.URL.Path, p.URL.RawQuery, p.Header.Get("Accept"))
	}
	if !n.Has(id) || n.Latency(id) <= 0 {
		t.Fatalf("has %v latency %v", n.Has(id), n.Latency(id))
	}
	if !n.Local(id) {
		t.Fatal("a loopback endpoint is not local")
	}
	if n.Local(PeerIDFromURL(&httpURL)) {
		t.Fatal("an unknown endpoint is local")
	}
	// Every connected endpoint was chosen by the application: named.
	if !n.Named(id) || n.Named(PeerIDFromURL(&httpURL)) {
		t.Fatalf("named: connected %v, unknown %v", n.Named(id), n.Named(PeerIDFromURL(&httpURL)))
	}
	if v, err := n.Version(context.Background(), id); err != nil || v != message.V120 {
		t.Fatalf("version %v %v", v, err)
	}
	// Connecting again does nothing (no second probe, no event).
	if _, err := n.ConnectURL(context.Background(), srv.URL); err != nil {
		t.Fatal(err)
	}
	if s := n.HTTPStats(); s.Probes != 1 {
		t.Fatalf("%d probes", s.Probes)
	}
}

func TestProbeFailureDoesNotConnect(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	n := New()
	r := newRecv()
	n.Start(r)
	_, err := n.ConnectURL(context.Background(), srv.URL)
	if !errors.Is(err, ErrProbeFailed) {
		t.Fatalf("err %v", err)
	}
	// A probe answering 200 with a body that is not the empty block fails too.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello")) }))
	defer bad.Close()
	if _, err := n.ConnectURL(context.Background(), bad.URL); !errors.Is(err, ErrProbeFailed) {
		t.Fatalf("err %v", err)
	}
	n.Stop()
	if len(r.conns) != 0 {
		t.Fatal("connected")
	}
	if s := n.HTTPStats(); s.Probes != 2 || s.ProbeFails != 2 {
		t.Fatalf("%+v", s)
	}
}

func TestGetAndHeadMapping(t *testing.T) {
	b1, b2 := randBlock(t, 1000), randBlock(t, 2000)
	g := newGateway(b1, b2)
	n, r, id, _ := setup(t, g)
	send(t, n, id, want(b1.Cid(), message.WantBlock))
	m := r.next(t)
	if m.from != id || len(m.msg.Blocks) != 1 || !m.msg.Blocks[0].Cid().Equals(b1.Cid()) || !bytes.Equal(m.msg.Blocks[0].RawData(), b1.RawData()) {
		t.Fatalf("got %+v", m.msg)
	}
	send(t, n, id, want(b2.Cid(), message.WantHave))
	m = r.next(t)
	if len(m.msg.Blocks) != 0 || len(m.msg.BlockPresences) != 1 || m.msg.BlockPresences[0].Type != message.Have || !m.msg.BlockPresences[0].Cid.Equals(b2.Cid()) {
		t.Fatalf("got %+v", m.msg)
	}
	reqs := g.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, w := range []struct{ method, path string }{{"GET", "/ipfs/" + b1.Cid().String()}, {"HEAD", "/ipfs/" + b2.Cid().String()}} {
		q := reqs[i]
		if q.Method != w.method || q.URL.Path != w.path || q.URL.RawQuery != "format=raw" || q.Header.Get("Accept") != rawType {
			t.Fatalf("request %d: %s %s?%s Accept %q", i, q.Method, q.URL.Path, q.URL.RawQuery, q.Header.Get("Accept"))
		}
	}
	s := n.HTTPStats()
	if s.Requests != 2 || s.Blocks != 1 || s.Haves != 1 {
		t.Fatalf("%+v", s)
	}
	if st := n.Stats(); st.MessagesReceived != 2 || st.BytesReceived != 1000 {
		t.Fatalf("%+v", st)
	}
}

func TestNotFoundIsDontHave(t *testing.T) {
	b := randBlock(t, 100)
	g := newGateway()
	done := make(chan message.Entry, 4)
	n, r, id, _ := setup(t, g, withOnDone(func(e message.Entry) { done <- e }))
	send(t, n, id, want(b.Cid(), message.WantBlock))
	m := r.next(t)
	if len(m.msg.BlockPresences) != 1 || m.msg.BlockPresences[0].Type != message.DontHave || !m.msg.BlockPresences[0].Cid.Equals(b.Cid()) {
		t.Fatalf("got %+v", m.msg)
	}
	<-done
	// Without sendDontHave a 404 says nothing.
	e := want(b.Cid(), message.WantHave)
	e.SendDontHave = false
	send(t, n, id, e)
	<-done
	n.Stop()
	r.none(t)
	if s := n.HTTPStats(); s.NotFound != 2 {
		t.Fatalf("%+v", s)
	}
}

func TestCancelAbortsRequest(t *testing.T) {
	b := randBlock(t, 100)
	g := newGateway(b)
	started, aborted := make(chan struct{}), make(chan struct{})
	g.hook = func(w http.ResponseWriter, r *http.Request, _ string) bool {
		close(started)
		<-r.Context().Done()
		close(aborted)
		return true
	}
	n, rc, id, _ := setup(t, g)
	send(t, n, id, want(b.Cid(), message.WantBlock))
	<-started
	send(t, n, id, message.Entry{Cid: b.Cid(), Cancel: true})
	<-aborted
	n.Stop()
	rc.none(t)
	if s := n.HTTPStats(); s.Cancelled != 1 || s.Blocks != 0 {
		t.Fatalf("%+v", s)
	}
}

func TestFullWantlistAbortsOthers(t *testing.T) {
	b1, b2 := randBlock(t, 100), randBlock(t, 100)
	g := newGateway(b1, b2)
	started, aborted := make(chan struct{}), make(chan struct{})
	g.hook = func(w http.ResponseWriter, r *http.Request, c string) bool {
		if c != b1.Cid().String() {
			return false
		}
		close(started)
		<-r.Context().Done()
		close(aborted)
		return true
	}
	n, rc, id, _ := setup(t, g)
	send(t, n, id, want(b1.Cid(), message.WantBlock))
	<-started
	if err := n.SendMessage(context.Background(), id, &message.Message{Full: true, Wantlist: []message.Entry{want(b2.Cid(), message.WantBlock)}}); err != nil {
		t.Fatal(err)
	}
	<-aborted
	if m := rc.next(t); len(m.msg.Blocks) != 1 || !m.msg.Blocks[0].Cid().Equals(b2.Cid()) {
		t.Fatalf("got %+v", m.msg)
	}
}

func TestWrongBodyDroppedCountedAndBanned(t *testing.T) {
	bs := []message.Entry{}
	g := newGateway()
	for range 3 {
		b := randBlock(t, 500)
		g.blocks[b.Cid().String()] = append([]byte("not "), b.RawData()...)
		bs = append(bs, want(b.Cid(), message.WantBlock))
	}
	n, r, id, srv := setup(t, g)
	for i, e := range bs {
		send(t, n, id, e)
		m := r.next(t)
		if len(m.msg.Blocks) != 0 || len(m.msg.BlockPresences) != 1 || m.msg.BlockPresences[0].Type != message.DontHave {
			t.Fatalf("got %+v", m.msg)
		}
		if err := <-r.errs; !errors.Is(err, message.ErrMalformed) {
			t.Fatalf("error %v", err)
		}
		if st := n.Stats(); st.MalformedReceived != uint64(i+1) {
			t.Fatalf("%+v", st)
		}
	}
	// The third wrong body drops and bans the endpoint.
	if p := <-r.discs; p != id {
		t.Fatalf("disconnected %s", p)
	}
	if n.Has(id) {
		t.Fatal("still connected")
	}
	if err := n.SendMessage(context.Background(), id, &message.Message{Wantlist: bs[:1]}); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("send: %v", err)
	}
	if _, err := n.ConnectURL(context.Background(), srv.URL); !errors.Is(err, ErrBanned) {
		t.Fatalf("reconnect: %v", err)
	}
	if s := n.HTTPStats(); s.WrongBodies != 3 || s.Dropped != 1 || s.Banned != 1 || s.Blocks != 0 {
		t.Fatalf("%+v", s)
	}
}

func TestBodyCap(t *testing.T) {
	big := randBlock(t, 3000)
	chunked := randBlock(t, 3000)
	g := newGateway(big, chunked)
	g.hook = func(w http.ResponseWriter, r *http.Request, c string) bool {
		if c != chunked.Cid().String() {
			return false
		}
		// No Content-Length: the cap cuts the read.
		w.Write(chunked.RawData()[:100])
		w.(http.Flusher).Flush()
		w.Write(chunked.RawData()[100:])
		return true
	}
	n, r, id, _ := setup(t, g, WithMaxBlockSize(2048), WithMaxWrongBodies(-1))
	for _, b := range []string{"big", "chunked"} {
		c := big.Cid()
		if b == "chunked" {
			c = chunked.Cid()
		}
		send(t, n, id, want(c, message.WantBlock))
		m := r.next(t)
		if len(m.msg.Blocks) != 0 || len(m.msg.BlockPresences) != 1 || m.msg.BlockPresences[0].Type != message.DontHave {
			t.Fatalf("%s: got %+v", b, m.msg)
		}
	}
	if s := n.HTTPStats(); s.Oversize != 2 || s.WrongBodies != 2 || s.Blocks != 0 {
		t.Fatalf("%+v", s)
	}
	if !n.Has(id) {
		t.Fatal("dropped despite WithMaxWrongBodies(-1)")
	}
}

func TestThrottleCooldown(t *testing.T) {
	b1, b2 := randBlock(t, 100), randBlock(t, 100)
	g := newGateway(b1, b2)
	throttled := make(chan struct{})
	first := true
	g.hook = func(w http.ResponseWriter, r *http.Request, c string) bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		if !first {
			return false
		}
		first = false
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		close(throttled)
		return true
	}
	clk := newFakeClock()
	n, r, id, _ := setup(t, g, withClock(clk))
	send(t, n, id, want(b1.Cid(), message.WantBlock))
	<-throttled
	// The throttled want waits out the host's cooldown: 7 s.
	if d := <-clk.asked; d != 7*time.Second {
		t.Fatalf("cooldown %v", d)
	}
	fire1 := <-clk.fire
	// A new want to the same host waits too.
	send(t, n, id, want(b2.Cid(), message.WantBlock))
	if d := <-clk.asked; d != 7*time.Second {
		t.Fatalf("cooldown %v", d)
	}
	fire2 := <-clk.fire
	if got := len(g.requests()); got != 1 {
		t.Fatalf("%d requests during the cooldown", got)
	}
	clk.advance(7 * time.Second)
	fire1 <- clk.Now()
	fire2 <- clk.Now()
	seen := map[string]bool{}
	for range 2 {
		m := r.next(t)
		if len(m.msg.Blocks) != 1 {
			t.Fatalf("got %+v", m.msg)
		}
		seen[m.msg.Blocks[0].Cid().String()] = true
	}
	if !seen[b1.Cid().String()] || !seen[b2.Cid().String()] {
		t.Fatalf("got %v", seen)
	}
	if s := n.HTTPStats(); s.Throttled != 1 || s.Requests != 3 {
		t.Fatalf("%+v", s)
	}
}

func TestThrottledPastRetriesIsDontHave(t *testing.T) {
	b := randBlock(t, 100)
	g := newGateway(b)
	g.hook = func(w http.ResponseWriter, r *http.Request, c string) bool {
		w.WriteHeader(http.StatusServiceUnavailable) // no Retry-After: the default backoff
		return true
	}
	clk := newFakeClock()
	n, r, id, _ := setup(t, g, withClock(clk), WithMaxRetries(1), WithCooldown(3*time.Second, time.Minute))
	send(t, n, id, want(b.Cid(), message.WantBlock))
	if d := <-clk.asked; d != 3*time.Second {
		t.Fatalf("cooldown %v", d)
	}
	clk.advance(3 * time.Second)
	(<-clk.fire) <- clk.Now()
	m := r.next(t)
	if len(m.msg.BlockPresences) != 1 || m.msg.BlockPresences[0].Type != message.DontHave {
		t.Fatalf("got %+v", m.msg)
	}
	if s := n.HTTPStats(); s.Throttled != 2 || s.Requests != 2 {
		t.Fatalf("%+v", s)
	}
}

func TestCancelEndsCooldownWait(t *testing.T) {
	b := randBlock(t, 100)
	g := newGateway(b)
	g.hook = func(w http.ResponseWriter, r *http.Request, c string) bool {
		w.Header().Set("Retry-After", "3600")
		w.WriteHeader(http.StatusTooManyRequests)
		return true
	}
	clk := newFakeClock()
	n, r, id, _ := setup(t, g, withClock(clk))
	send(t, n, id, want(b.Cid(), message.WantBlock))
	// Capped at DefaultMaxCooldown.
	if d := <-clk.asked; d != DefaultMaxCooldown {
		t.Fatalf("cooldown %v", d)
	}
	send(t, n, id, message.Entry{Cid: b.Cid(), Cancel: true})
	n.Stop() // returns: the wait ended
	r.none(t)
}

func TestRetryAfterDate(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	if d, ok := parseRetryAfter(now.Add(90*time.Second).UTC().Format(http.TimeFormat), now); !ok || d != 90*time.Second {
		t.Fatalf("%v %v", d, ok)
	}
	if d, ok := parseRetryAfter("12", now); !ok || d != 12*time.Second {
		t.Fatalf("%v %v", d, ok)
	}
	for _, v := range []string{"", "-1", "soon"} {
		if _, ok := parseRetryAfter(v, now); ok {
			t.Fatalf("%q parsed", v)
		}
	}
}

func TestInFlightBounded(t *testing.T) {
	const limit = 3
	g := newGateway()
	var entries []message.Entry
	for range 10 {
		b := randBlock(t, 100)
		g.blocks[b.Cid().String()] = b.RawData()
		entries = append(entries, want(b.Cid(), message.WantBlock))
	}
	arrived := make(chan struct{}, 10)
	release := make(chan struct{})
	g.hook = func(w http.ResponseWriter, r *http.Request, c string) bool {
		arrived <- struct{}{}
		<-release
		return false
	}
	n, r, id, _ := setup(t, g, WithMaxInFlight(limit))
	send(t, n, id, entries...)
	for range limit {
		<-arrived
	}
	// The others wait for a slot: none more reaches the server until one
	// is released.
	select {
	case <-arrived:
		t.Fatal("more than the limit in flight")
	default:
	}
	close(release)
	for range len(entries) {
		if m := r.next(t); len(m.msg.Blocks) != 1 {
			t.Fatalf("got %+v", m.msg)
		}
	}
}

func TestAllowDeny(t *testing.T) {
	g := newGateway()
	srv := httptest.NewServer(g)
	defer srv.Close()
	for _, tc := range []struct {
		name string
		opts []Option
		ok   bool
	}{
		{"deny", []Option{WithDenylist("127.0.0.1")}, false},
		{"not allowed", []Option{WithAllowlist("gateway.example")}, false},
		{"allowed", []Option{WithAllowlist("127.0.0.1")}, true},
		{"deny wins", []Option{WithAllowlist("127.0.0.1"), WithDenylist("127.0.0.1")}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := New(tc.opts...)
			n.Start(newRecv())
			defer n.Stop()
			ai, err := AddrInfoFromURL(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			err = n.Connect(context.Background(), ai)
			if tc.ok != (err == nil) {
				t.Fatalf("err %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrNoHTTPAddresses) {
				t.Fatalf("err %v", err)
			}
		})
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.reqs) != 1 {
		t.Fatalf("%d probes reached the server, want 1 (the allowed one)", len(g.reqs))
	}
}

func TestTLSEndpointHTTP2(t *testing.T) {
	b := randBlock(t, 100)
	g := newGateway(b)
	srv := httptest.NewUnstartedServer(g)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	n := New(WithTLSConfig(srv.Client().Transport.(*http.Transport).TLSClientConfig))
	r := newRecv()
	n.Start(r)
	defer n.Stop()
	id, err := n.ConnectURL(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	send(t, n, id, want(b.Cid(), message.WantBlock))
	if m := r.next(t); len(m.msg.Blocks) != 1 {
		t.Fatalf("got %+v", m.msg)
	}
	for _, q := range g.requests() {
		if q.ProtoMajor != 2 {
			t.Fatalf("request over %s", q.Proto)
		}
	}
}

func TestConnectByMultiaddr(t *testing.T) {
	b := randBlock(t, 100)
	g := newGateway(b)
	srv := httptest.NewServer(g)
	defer srv.Close()
	u, _ := ParseURL(srv.URL)
	n := New()
	r := newRecv()
	n.Start(r)
	defer n.Stop()
	a := ma.StringCast("/ip4/127.0.0.1/tcp/" + u.Port() + "/http")
	// With an ID of its own (a provider record's).
	id := PeerIDFromURL(&httpURL)
	if err := n.Connect(context.Background(), peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1/tls/http"), a}}); err != nil {
		t.Fatal(err) // the first address fails its probe, the second answers
	}
	if p := <-r.conns; p != id {
		t.Fatalf("connected %s", p)
	}
	send(t, n, id, want(b.Cid(), message.WantBlock))
	if m := r.next(t); m.from != id || len(m.msg.Blocks) != 1 {
		t.Fatalf("got %+v", m.msg)
	}
	if err := n.DisconnectFrom(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if p := <-r.discs; p != id {
		t.Fatalf("disconnected %s", p)
	}
	// No address that is HTTP.
	if err := n.Connect(context.Background(), peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/4001")}}); !errors.Is(err, ErrNoHTTPAddresses) {
		t.Fatalf("err %v", err)
	}
	_ = strconv.Itoa
}

func TestServerErrorsInARowDisconnect(t *testing.T) {
	g := newGateway()
	var entries []message.Entry
	for range 3 {
		entries = append(entries, want(randBlock(t, 10).Cid(), message.WantBlock))
	}
	missing := randBlock(t, 10)
	g.hook = func(w http.ResponseWriter, r *http.Request, c string) bool {
		if c == missing.Cid().String() {
			http.Error(w, "ipld: could not find node", http.StatusInternalServerError)
			return true
		}
		http.Error(w, "boom", http.StatusInternalServerError)
		return true
	}
	n, r, id, _ := setup(t, g, WithMaxServerErrors(3))
	// A 500 that says "not found" is a DONT_HAVE and resets the count.
	send(t, n, id, entries[0])
	r.next(t)
	send(t, n, id, want(missing.Cid(), message.WantBlock))
	r.next(t)
	send(t, n, id, entries[1])
	r.next(t)
	if !n.Has(id) {
		t.Fatal("dropped after 2 errors")
	}
	send(t, n, id, entries[2])
	if m := r.next(t); len(m.msg.BlockPresences) != 1 || m.msg.BlockPresences[0].Type != message.DontHave {
		t.Fatalf("got %+v", m.msg)
	}
	// 3 failures, but not in a row: still here. One more drops it.
	send(t, n, id, want(randBlock(t, 10).Cid(), message.WantBlock))
	r.next(t)
	if p := <-r.discs; p != id {
		t.Fatalf("disconnected %s", p)
	}
	s := n.HTTPStats()
	if s.ServerErrors != 4 || s.NotFound != 1 || s.Dropped != 1 || s.Banned != 0 {
		t.Fatalf("%+v", s)
	}
	// Not banned: it may come back.
	if _, err := n.ConnectURL(context.Background(), "http://"+g.reqs[0].Host); err != nil {
		t.Fatal(err)
	}
}

func TestStopAbortsEverything(t *testing.T) {
	g := newGateway()
	started := make(chan struct{}, 8)
	g.hook = func(w http.ResponseWriter, r *http.Request, c string) bool {
		started <- struct{}{}
		<-r.Context().Done()
		return true
	}
	n, r, id, _ := setup(t, g, WithMaxInFlight(2))
	var es []message.Entry
	for range 5 {
		es = append(es, want(randBlock(t, 10).Cid(), message.WantBlock))
	}
	send(t, n, id, es...)
	<-started
	<-started
	n.Stop() // two in flight, three waiting for a slot
	r.none(t)
	if err := n.SendMessage(context.Background(), id, &message.Message{Wantlist: es}); !errors.Is(err, ErrStopped) {
		t.Fatalf("send after Stop: %v", err)
	}
	if _, err := n.ConnectURL(context.Background(), "http://127.0.0.1:1"); !errors.Is(err, ErrStopped) {
		t.Fatalf("connect after Stop: %v", err)
	}
}

func TestUnencryptedHTTP2(t *testing.T) {
	b := randBlock(t, 100)
	g := newGateway(b)
	srv := httptest.NewUnstartedServer(g)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	for _, h2c := range []bool{false, true} {
		n := New(WithUnencryptedHTTP2(h2c))
		r := newRecv()
		n.Start(r)
		id, err := n.ConnectURL(context.Background(), srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		send(t, n, id, want(b.Cid(), message.WantBlock))
		if m := r.next(t); len(m.msg.Blocks) != 1 {
			t.Fatalf("got %+v", m.msg)
		}
		n.Stop()
		reqs := g.requests()
		if last := reqs[len(reqs)-1]; (last.ProtoMajor == 2) != h2c {
			t.Fatalf("h2c %v: request over %s", h2c, last.Proto)
		}
	}
}

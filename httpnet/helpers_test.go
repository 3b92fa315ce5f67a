package httpnet

import (
	"context"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/libp2p/go-libp2p/core/peer"
	mh "github.com/multiformats/go-multihash"
	"go.uber.org/goleak"

	"github.com/gobitswap/bitswap/message"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// got is one ReceiveMessage call.
type got struct {
	from peer.ID
	msg  *message.Message
}

// recv is a Receiver that queues what it is told.
type recv struct {
	msgs  chan got
	conns chan peer.ID
	discs chan peer.ID
	errs  chan error
}

func newRecv() *recv {
	return &recv{msgs: make(chan got, 256), conns: make(chan peer.ID, 16), discs: make(chan peer.ID, 16), errs: make(chan error, 256)}
}

func (r *recv) ReceiveMessage(_ context.Context, from peer.ID, msg *message.Message) error {
	r.msgs <- got{from, msg}
	return nil
}
func (r *recv) ReceiveError(_ peer.ID, err error) { r.errs <- err }
func (r *recv) PeerConnected(p peer.ID)           { r.conns <- p }
func (r *recv) PeerDisconnected(p peer.ID)        { r.discs <- p }

// next waits for the next message.
func (r *recv) next(t *testing.T) got {
	t.Helper()
	select {
	case g := <-r.msgs:
		return g
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
		return got{}
	}
}

// none checks that no message was received (call after Stop).
func (r *recv) none(t *testing.T) {
	t.Helper()
	select {
	case g := <-r.msgs:
		t.Fatalf("unexpected message %+v", g.msg)
	default:
	}
}

func randBlock(t *testing.T, size int) blocks.Block {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	h, err := mh.Sum(data, mh.SHA2_256, -1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := blocks.NewBlockWithCid(data, cid.NewCidV1(cid.Raw, h))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// gateway is a trustless gateway over a map of blocks, with hooks.
type gateway struct {
	mu     sync.Mutex
	blocks map[string][]byte // cid string → body served
	reqs   []*http.Request
	// hook, if set, answers instead (return true when handled).
	hook func(w http.ResponseWriter, r *http.Request, c string) bool
	seen chan *http.Request // each request, if set
}

func newGateway(bs ...blocks.Block) *gateway {
	g := &gateway{blocks: map[string][]byte{"bafkqaaa": {}}}
	for _, b := range bs {
		g.blocks[b.Cid().String()] = b.RawData()
	}
	return g
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, ok := strings.CutPrefix(r.URL.Path, "/ipfs/")
	g.mu.Lock()
	g.reqs = append(g.reqs, r)
	hook := g.hook
	body, have := g.blocks[c]
	g.mu.Unlock()
	if g.seen != nil && c != "bafkqaaa" {
		g.seen <- r
	}
	if hook != nil && c != "bafkqaaa" && hook(w, r, c) {
		return
	}
	if !ok || !have {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", rawType)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// requests returns the requests seen except probes.
func (g *gateway) requests() []*http.Request {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*http.Request
	for _, r := range g.reqs {
		if !strings.HasSuffix(r.URL.Path, "/bafkqaaa") {
			out = append(out, r)
		}
	}
	return out
}

// setup starts a gateway server and a started Network connected to it.
func setup(t *testing.T, g *gateway, opts ...Option) (*Network, *recv, peer.ID, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	n := New(opts...)
	r := newRecv()
	n.Start(r)
	t.Cleanup(n.Stop)
	id, err := n.ConnectURL(context.Background(), srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if p := <-r.conns; p != id {
		t.Fatalf("connected %s, want %s", p, id)
	}
	return n, r, id, srv
}

func want(c cid.Cid, t message.WantType) message.Entry {
	return message.Entry{Cid: c, Priority: 1, WantType: t, SendDontHave: true}
}

func send(t *testing.T, n *Network, p peer.ID, es ...message.Entry) {
	t.Helper()
	if err := n.SendMessage(context.Background(), p, &message.Message{Wantlist: es}); err != nil {
		t.Fatal(err)
	}
}

// fakeClock lets a test decide when cooldowns end. After sends each
// asked duration on asked and returns a channel the test fires.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	asked chan time.Duration
	fire  chan chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_800_000_000, 0), asked: make(chan time.Duration, 16), fire: make(chan chan time.Time, 16)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.fire <- ch
	c.asked <- d
	return ch
}

// advance moves the clock on by d.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

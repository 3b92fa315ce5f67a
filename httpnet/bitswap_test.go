package httpnet_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/httpnet"
	"github.com/gobitswap/bitswap/testutil"
)

// gateway serves blocks as a trustless gateway; corrupt makes it send
// each block's body with its first byte flipped.
type gateway struct {
	mu      sync.Mutex
	blocks  map[string][]byte
	corrupt bool
	served  map[string]int
}

func newGateway(corrupt bool, bs ...blocks.Block) *gateway {
	g := &gateway{blocks: map[string][]byte{"bafkqaaa": {}}, corrupt: corrupt, served: map[string]int{}}
	for _, b := range bs {
		g.blocks[b.Cid().String()] = b.RawData()
	}
	return g
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := strings.TrimPrefix(r.URL.Path, "/ipfs/")
	g.mu.Lock()
	body, ok := g.blocks[c]
	if ok && c != "bafkqaaa" {
		g.served[c]++
		if g.corrupt {
			body = append([]byte{body[0] ^ 0xff}, body[1:]...)
		}
	}
	g.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

func fetchAll(t *testing.T, bsw *bitswap.Bitswap, want []blocks.Block) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cids := make([]cid.Cid, len(want))
	byKey := map[string][]byte{}
	for i, b := range want {
		cids[i] = b.Cid()
		byKey[b.Cid().KeyString()] = b.RawData()
	}
	ch, err := bsw.GetBlocks(ctx, cids)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for b := range ch {
		if string(byKey[b.Cid().KeyString()]) != string(b.RawData()) {
			t.Fatalf("block %s: wrong data", b.Cid())
		}
		n++
	}
	if n != len(want) {
		t.Fatalf("got %d of %d blocks: %v", n, len(want), ctx.Err())
	}
}

// A Bitswap whose only network is HTTP fetches from a gateway.
func TestBitswapOverHTTPOnly(t *testing.T) {
	blks := testutil.RandomBlocks(1, 40, 8<<10)
	srv := httptest.NewServer(newGateway(false, blks...))
	defer srv.Close()
	hn := httpnet.New()
	bsw := bitswap.New(context.Background(), hn, blockstore.NewMemory(), bitswap.WithServerEnabled(false))
	defer bsw.Close()
	if _, err := hn.ConnectURL(context.Background(), srv.URL); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, bsw, blks)
	st, _ := bsw.Stat()
	if st.DupBlksReceived != 0 || st.BlocksReceived != 40 {
		t.Fatalf("%d blocks, %d duplicates", st.BlocksReceived, st.DupBlksReceived)
	}
	if s := hn.HTTPStats(); s.Blocks != 40 || s.WrongBodies != 0 {
		t.Fatalf("%+v", s)
	}
}

// A gateway that sends wrong bodies is dropped and counted, and the fetch
// completes from the good one; nothing wrong is stored.
func TestBitswapBadGatewayDropped(t *testing.T) {
	blks := testutil.RandomBlocks(2, 30, 4<<10)
	bad := httptest.NewServer(newGateway(true, blks...))
	defer bad.Close()
	good := httptest.NewServer(newGateway(false, blks...))
	defer good.Close()
	hn := httpnet.New()
	bs := blockstore.NewMemory()
	bsw := bitswap.New(context.Background(), hn, bs, bitswap.WithServerEnabled(false))
	defer bsw.Close()
	badID, err := hn.ConnectURL(context.Background(), bad.URL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hn.ConnectURL(context.Background(), good.URL); err != nil {
		t.Fatal(err)
	}
	fetchAll(t, bsw, blks)
	s := hn.HTTPStats()
	if s.Blocks != 30 {
		t.Fatalf("%+v", s)
	}
	// The bad one may have been asked fewer than three times before the
	// good one served everything; whatever it sent was dropped.
	if s.WrongBodies > 0 && s.WrongBodies >= httpnet.DefaultMaxWrongBodies && (s.Dropped != 1 || hn.Has(badID)) {
		t.Fatalf("bad gateway kept: %+v", s)
	}
	st, _ := bsw.Stat()
	if st.Network.MalformedReceived != s.WrongBodies {
		t.Fatalf("facade counts %d malformed, httpnet %d wrong bodies", st.Network.MalformedReceived, s.WrongBodies)
	}
	for _, b := range blks {
		got, err := bs.Get(context.Background(), b.Cid())
		if err != nil || string(got.RawData()) != string(b.RawData()) {
			t.Fatalf("stored %s wrong: %v", b.Cid(), err)
		}
	}
	t.Logf("wrong bodies %d, dropped %d, blocks %d", s.WrongBodies, s.Dropped, s.Blocks)
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := httpnet.ParseURL(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

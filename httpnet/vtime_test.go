package httpnet_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"
	"time"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/httpnet"
	"github.com/gobitswap/bitswap/testutil"
)

// memEndpoint is an in-memory HTTP endpoint: each request waits a round
// trip of latency, then the handler answers.
type memEndpoint struct {
	h       http.Handler
	latency time.Duration
}

func (m memEndpoint) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case <-time.After(m.latency):
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	rec := httptest.NewRecorder()
	m.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	if r.Method == http.MethodHead {
		resp.Body = io.NopCloser(bytes.NewReader(nil))
	}
	return resp, nil
}

// Through WithTransport, a gateway can be simulated in virtual time: 200
// blocks from an endpoint 40 ms away, 32 requests in flight, take about
// ceil(200/32) = 7 round trips after the probe.
func TestVirtualTimeEndpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rtt = 40 * time.Millisecond
		blks := testutil.RandomBlocks(5, 200, 1<<10)
		hn := httpnet.New(httpnet.WithTransport(memEndpoint{newGateway(false, blks...), rtt}))
		bsw := bitswap.New(context.Background(), hn, blockstore.NewMemory(), bitswap.WithServerEnabled(false))
		defer bsw.Close()
		if _, err := hn.ConnectURL(context.Background(), "https://gw.example"); err != nil {
			t.Fatal(err)
		}
		if got := hn.Latency(httpnet.PeerIDFromURL(mustURL(t, "https://gw.example"))); got != rtt {
			t.Fatalf("latency %v, want %v", got, rtt)
		}
		start := time.Now()
		fetchAll(t, bsw, blks)
		took := time.Since(start)
		bound := 7 * rtt
		t.Logf("200 blocks in %v (bound %v)", took, bound)
		if took < bound || took > bound*11/10 {
			t.Fatalf("took %v, want within 1.1x of %v", took, bound)
		}
	})
}

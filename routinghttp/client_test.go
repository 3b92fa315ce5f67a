package routinghttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	"github.com/libp2p/go-libp2p/core/test"
)

func ids(t *testing.T, n int) []peer.ID {
	t.Helper()
	out := make([]peer.ID, n)
	for i := range out {
		id, err := test.RandPeerID()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = id
	}
	return out
}

func peerRecord(id peer.ID, protos ...string) string {
	p := ""
	if len(protos) > 0 {
		p = fmt.Sprintf(`,"Protocols":["%s"]`, strings.Join(protos, `","`))
	}
	return fmt.Sprintf(`{"Schema":"peer","ID":"%s","Addrs":["/ip4/127.0.0.1/tcp/4001","not an address"]%s}`, id, p)
}

var someCID = blocks.NewBlock([]byte("routed")).Cid()

func TestJSONAnswersKeepBitswapProvidersAndSkipTheRest(t *testing.T) {
	p := ids(t, 4)
	var path, accept string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path, accept = r.URL.Path, r.Header.Get("Accept")
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"Providers":[%s,%s,%s,{"Schema":"peer","ID":"bogus"},{"Schema":"unknown","ID":"%s"},%s,{"Schema":"bitswap","Protocol":"transport-bitswap","ID":"%s"}]}`,
			peerRecord(p[0], Bitswap), peerRecord(p[1], "transport-ipfs-gateway-http"), peerRecord(p[2]), p[3], `"not a record"`, p[3])
	}))
	defer srv.Close()
	c, err := New(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.FindProviders(context.Background(), someCID)
	if err != nil {
		t.Fatal(err)
	}
	if path != "/routing/v1/providers/"+someCID.String() || !strings.Contains(accept, "application/json") {
		t.Errorf("asked %s with Accept %q", path, accept)
	}
	want := []peer.ID{p[0], p[2], p[3]} // p[1] is an HTTP gateway; no protocol named: kept
	if len(got) != len(want) {
		t.Fatalf("got %d providers %v, want %v", len(got), got, want)
	}
	for i, ai := range got {
		if ai.ID != want[i] {
			t.Errorf("provider %d: %s, want %s", i, ai.ID, want[i])
		}
	}
	if len(got[0].Addrs) != 1 {
		t.Errorf("addresses of the first: %v, want the one that parses", got[0].Addrs)
	}
}

func TestNDJSONIsStreamedUpToTheCount(t *testing.T) {
	p := ids(t, 5)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		for _, id := range p {
			fmt.Fprintln(w, peerRecord(id, Bitswap))
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	c, _ := New(srv.URL)
	var got []peer.ID
	for ai := range c.FindProvidersAsync(context.Background(), someCID, 3) {
		got = append(got, ai.ID)
	}
	if len(got) != 3 || got[0] != p[0] || got[2] != p[2] {
		t.Fatalf("got %v, want the first 3 of %v", got, p)
	}
}

func TestNoProvidersIsNotAnError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	c, _ := New(srv.URL)
	got, err := c.FindProviders(context.Background(), someCID)
	if err != nil || len(got) != 0 {
		t.Fatalf("404: %v, %v; want none and no error", got, err)
	}
}

func TestFailuresAreReportedOnceAndCloseTheStream(t *testing.T) {
	var errs atomic.Int32
	var last atomic.Value
	onErr := WithErrorHandler(func(err error) { errs.Add(1); last.Store(err.Error()) })

	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	c, _ := New(down.URL, onErr)
	for range c.FindProvidersAsync(context.Background(), someCID, 0) {
		t.Fatal("a provider from a failing endpoint")
	}
	if errs.Load() != 1 || !strings.Contains(last.Load().(string), "503") || !strings.Contains(last.Load().(string), someCID.String()) {
		t.Fatalf("errors %d, last %v: want one naming the status and the CID", errs.Load(), last.Load())
	}

	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("<html>not json"))
	}))
	defer garbage.Close()
	c, _ = New(garbage.URL)
	if _, err := c.FindProviders(context.Background(), someCID); err == nil || !strings.Contains(err.Error(), "not a JSON answer") {
		t.Fatalf("garbage: %v", err)
	}
}

func TestASlowEndpointCostsTheTimeoutOnly(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, _ := New(srv.URL, WithTimeout(50*time.Millisecond))
	_, err := c.FindProviders(context.Background(), someCID)
	if err == nil {
		t.Fatal("no error from an endpoint that never answers")
	}
}

func TestAnOversizedAnswerIsCut(t *testing.T) {
	p := ids(t, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprintln(w, peerRecord(p[0], Bitswap))
		line := strings.Repeat("x", 1<<20) + "\n"
		for range 2 * MaxResponseBytes / len(line) {
			if _, err := w.Write([]byte(line)); err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	c, _ := New(srv.URL)
	got, err := c.FindProviders(context.Background(), someCID)
	if len(got) != 1 || err == nil {
		t.Fatalf("got %v, %v: want the one record and an error for the line too long", got, err)
	}
}

func TestBadURLs(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "http://", "://"} {
		if _, err := New(u); err == nil {
			t.Errorf("New(%q): no error", u)
		}
	}
}

func TestGatewayProvidersOnRequest(t *testing.T) {
	p := ids(t, 2)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"Providers":[%s,{"Schema":"peer","ID":"%s","Protocols":["%s"],"Addrs":["/dns/gw.example/tcp/443/https"]}]}`,
			peerRecord(p[0], Bitswap), p[1], GatewayHTTP)
	}))
	defer srv.Close()
	c, err := New(srv.URL, WithGatewayProviders())
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.FindProviders(context.Background(), someCID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].ID != p[1] || len(got[1].Addrs) != 1 || got[1].Addrs[0].String() != "/dns/gw.example/tcp/443/https" {
		t.Fatalf("got %v", got)
	}
}

// FindPeer asks /routing/v1/peers/{id} with the ID as a libp2p-key CID, and
// keeps the addresses of the records naming that peer, whatever their
// transport, in JSON or NDJSON; no such record, a 404 included, is
// routing.ErrNotFound, and a failing endpoint an error naming it.
func TestFindPeerAsksThePeersEndpoint(t *testing.T) {
	p := ids(t, 2)
	for _, ndjson := range []bool{false, true} {
		var path string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			path = r.URL.Path
			recs := []string{peerRecord(p[1]), `{"Schema":"peer","ID":"bogus"}`, peerRecord(p[0], "transport-ipfs-gateway-http")}
			if ndjson {
				w.Header().Set("Content-Type", "application/x-ndjson")
				fmt.Fprint(w, strings.Join(recs, "\n"))
				return
			}
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"Peers":[%s]}`, strings.Join(recs, ","))
		}))
		c, err := New(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		ai, err := c.FindPeer(context.Background(), p[0])
		srv.Close()
		if err != nil {
			t.Fatalf("ndjson %v: %v", ndjson, err)
		}
		if want := "/routing/v1/peers/" + peer.ToCid(p[0]).String(); path != want {
			t.Errorf("asked %s, want %s", path, want)
		}
		if ai.ID != p[0] || len(ai.Addrs) != 1 || ai.Addrs[0].String() != "/ip4/127.0.0.1/tcp/4001" {
			t.Errorf("ndjson %v: got %v, want %s at /ip4/127.0.0.1/tcp/4001", ndjson, ai, p[0])
		}
	}

	for _, tc := range []struct {
		name   string
		handle http.HandlerFunc
		want   func(error) bool
	}{
		{"404", http.NotFound, func(err error) bool { return errors.Is(err, routing.ErrNotFound) }},
		{"another peer only", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"Peers":[%s]}`, peerRecord(p[1]))
		}, func(err error) bool { return errors.Is(err, routing.ErrNotFound) }},
		{"HTTP 500", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "down", http.StatusInternalServerError)
		}, func(err error) bool {
			return err != nil && !errors.Is(err, routing.ErrNotFound) && strings.Contains(err.Error(), "peer "+p[0].String()+": HTTP 500")
		}},
	} {
		srv := httptest.NewServer(tc.handle)
		c, _ := New(srv.URL)
		_, err := c.FindPeer(context.Background(), p[0])
		srv.Close()
		if !tc.want(err) {
			t.Errorf("%s: err %v", tc.name, err)
		}
	}
}

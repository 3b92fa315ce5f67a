package session

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	cid "github.com/ipfs/go-cid"
)

// askRecorder stands in for the provider layer: it writes down each ask
// and keeps its context, to see how long the ask stands.
type askRecorder struct {
	mu   sync.Mutex
	cids []cid.Cid
	ctxs []context.Context
}

func (r *askRecorder) FindProviders(ctx context.Context, c cid.Cid) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cids = append(r.cids, c)
	r.ctxs = append(r.ctxs, ctx)
}

func (r *askRecorder) asks() ([]cid.Cid, []context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.cids), slices.Clone(r.ctxs)
}

// A Session with no peer to ask hands its want to the provider layer once
// the search delay has passed, and runs no search of its own; the ask
// stands while the Session runs. A provider the PeerRouter then tells it
// of (found for any Session) is asked for the block at once.
func TestSessionAsksTheProviderLayerAndHearsProvidersFromThePeerRouter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeDeps{start: time.Now()}
		rec := &askRecorder{}
		d := f.deps()
		d.Providers = rec
		s := New(t.Context(), 1, d, DefaultConfig(), false)
		c := cids(t, 1)[0]
		if _, err := s.GetBlocks(t.Context(), []cid.Cid{c}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(DefaultProviderSearchDelay)
		synctest.Wait()
		got, ctxs := rec.asks()
		if !slices.Equal(got, []cid.Cid{c}) {
			t.Fatalf("asked the provider layer for %v, want [%s] once", got, c)
		}
		if ctxs[0].Err() != nil {
			t.Fatal("the ask's context ended while the Session runs")
		}

		sink{s}.ProviderFound("p", c)
		time.Sleep(providerGather) // the wait for the search's other providers
		synctest.Wait()
		if lines := strings.Join(f.lines(), "\n"); lines != "510ms want-block p 1" {
			t.Errorf("after the provider was found the Session asked:\n%s\nwant: 510ms want-block p 1", lines)
		}
		s.Close()
		if ctxs[0].Err() == nil {
			t.Error("the ask's context still open after the Session closed")
		}
	})
}

package providers_test

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/gobitswap/bitswap/providers"
)

// A query is one span, "Bitswap.Client.Session.FindMorePeers", a child of
// the span of the first ask's context, with a JoinQuery event for the
// second ask and a FoundPeer event for each provider handed on.
func TestAQueryIsOneSpanUnderTheFirstAsker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		r := newRouter(time.Second)
		cs := cids(1)
		r.set(cs[0], ai(1), ai(2))
		f := providers.New(r, &dialer{self: self}, nil, providers.Config{Tracer: tp.Tracer("test")})
		defer f.Close()

		first, firstSpan := tp.Tracer("test").Start(t.Context(), "first session")
		second, secondSpan := tp.Tracer("test").Start(t.Context(), "second session")
		f.Find(first, cs[0])
		f.Find(second, cs[0])
		time.Sleep(time.Second)
		synctest.Wait()
		firstSpan.End()
		secondSpan.End()

		var query []tracetest.SpanStub
		for _, s := range exp.GetSpans() {
			if s.Name == "Bitswap.Client.Session.FindMorePeers" {
				query = append(query, s)
			}
		}
		if len(query) != 1 {
			t.Fatalf("%d query spans, want 1", len(query))
		}
		q := query[0]
		if q.Parent.SpanID() != firstSpan.SpanContext().SpanID() {
			t.Errorf("the query's parent is %s, want the first asker's span", q.Parent.SpanID())
		}
		var events []string
		for _, e := range q.Events {
			events = append(events, e.Name)
		}
		slices.Sort(events)
		if want := []string{"FoundPeer", "FoundPeer", "JoinQuery"}; !slices.Equal(events, want) {
			t.Errorf("events %v, want %v", events, want)
		}
	})
}

package testutil

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"
)

// HTTPEndpoint is an in-memory HTTP server reached over a simulated link:
// an http.RoundTripper (give it to httpnet.WithTransport) that delays each
// request by the one-way latency, lets handler answer, then sends the
// response back over a link of the given bandwidth shared by all the
// endpoint's responses (each waits for the ones before it), plus the
// latency again. Under testing/synctest it costs no real time. Throttle,
// if set, is asked first for each request and may answer 429 with a
// Retry-After of its own instead.
type HTTPEndpoint struct {
	handler   http.Handler
	latency   time.Duration
	bandwidth int // bytes per second; 0 unlimited

	// Throttle returns (retryAfter, true) to answer r with 429 Too Many
	// Requests and "Retry-After: <seconds>" (whole seconds, rounded up).
	// It is called with the endpoint's lock held: one call at a time.
	Throttle func(r *http.Request) (time.Duration, bool)

	mu       sync.Mutex
	linkFree time.Time // when the response link is next idle
	requests int
	bytes    int64
}

// NewHTTPEndpoint serves handler over a link of latency (one way) and
// bandwidth (bytes per second; 0: unlimited).
func NewHTTPEndpoint(handler http.Handler, latency time.Duration, bandwidth int) *HTTPEndpoint {
	return &HTTPEndpoint{handler: handler, latency: latency, bandwidth: bandwidth}
}

// Requests returns how many requests reached the endpoint, and the
// response body bytes it sent.
func (e *HTTPEndpoint) Requests() (int, int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.requests, e.bytes
}

func (e *HTTPEndpoint) wait(r *http.Request, d time.Duration) error {
	if d <= 0 {
		return r.Context().Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-r.Context().Done():
		return r.Context().Err()
	}
}

// RoundTrip carries one request to the handler and its answer back.
func (e *HTTPEndpoint) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := e.wait(r, e.latency); err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.requests++
	e.mu.Unlock()
	rec := httptest.NewRecorder()
	if d, ok := e.throttledBy(r); ok {
		rec.Header().Set("Retry-After", strconv.Itoa(int((d+time.Second-1)/time.Second)))
		rec.WriteHeader(http.StatusTooManyRequests)
	} else {
		e.handler.ServeHTTP(rec, r)
	}
	body := rec.Body.Bytes()
	if r.Method == http.MethodHead {
		body = nil
	}
	// Headers take about 200 bytes of the link.
	size := len(body) + 200
	e.mu.Lock()
	now := time.Now()
	start := now
	if e.linkFree.After(now) {
		start = e.linkFree
	}
	done := start
	if e.bandwidth > 0 {
		done = start.Add(time.Duration(int64(size) * int64(time.Second) / int64(e.bandwidth)))
	}
	e.linkFree = done
	e.bytes += int64(len(body))
	e.mu.Unlock()
	if err := e.wait(r, done.Sub(now)+e.latency); err != nil {
		return nil, err
	}
	resp := rec.Result()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Request = r
	return resp, nil
}

func (e *HTTPEndpoint) throttledBy(r *http.Request) (time.Duration, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Throttle == nil {
		return 0, false
	}
	return e.Throttle(r)
}

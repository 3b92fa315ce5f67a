package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/metrics"
)

// serveMetrics serves the metrics of b (the library's collector, which m's
// Option fed when b was built; and the Go runtime's and the process's) on
// http://addr/metrics until stop is called, and prints the address on w.
func serveMetrics(addr string, m *metrics.Metrics, b *bitswap.Bitswap, w io.Writer) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collector(b), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, inputErrorf("--metrics %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(w, "metrics server: %v\n", err)
		}
	}()
	fmt.Fprintf(w, "metrics: http://%s/metrics\n", ln.Addr())
	return func() {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(c)
	}, nil
}

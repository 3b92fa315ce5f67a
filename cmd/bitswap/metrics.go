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
)

// statCollector exports a Bitswap's Stat() as Prometheus metrics, read on
// every scrape.
type statCollector struct {
	stat    func() (*bitswap.Stat, error)
	metrics []statMetric
}

type statMetric struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	get  func(*bitswap.Stat) float64
}

func newStatCollector(stat func() (*bitswap.Stat, error)) *statCollector {
	c := &statCollector{stat: stat}
	counter := func(name, help string, get func(*bitswap.Stat) uint64) {
		c.metrics = append(c.metrics, statMetric{
			desc: prometheus.NewDesc("bitswap_"+name, help, nil, nil),
			typ:  prometheus.CounterValue,
			get:  func(s *bitswap.Stat) float64 { return float64(get(s)) },
		})
	}
	gauge := func(name, help string, get func(*bitswap.Stat) int) {
		c.metrics = append(c.metrics, statMetric{
			desc: prometheus.NewDesc("bitswap_"+name, help, nil, nil),
			typ:  prometheus.GaugeValue,
			get:  func(s *bitswap.Stat) float64 { return float64(get(s)) },
		})
	}
	// Client: blocks in.
	counter("blocks_received_total", "Blocks received, duplicates included.", func(s *bitswap.Stat) uint64 { return s.BlocksReceived })
	counter("received_bytes_total", "Block bytes received, duplicates included.", func(s *bitswap.Stat) uint64 { return s.DataReceived })
	counter("duplicate_blocks_received_total", "Blocks received that were already had.", func(s *bitswap.Stat) uint64 { return s.DupBlksReceived })
	counter("duplicate_received_bytes_total", "Bytes of duplicate blocks received.", func(s *bitswap.Stat) uint64 { return s.DupDataReceived })
	counter("unwanted_blocks_received_total", "Blocks received that no session wanted (dropped).", func(s *bitswap.Stat) uint64 { return s.Client.UnwantedBlocks })
	// Client: wants out.
	counter("wants_sent_total", "Want entries sent.", func(s *bitswap.Stat) uint64 { return s.Wants.WantsSent })
	counter("cancels_sent_total", "Cancel entries sent.", func(s *bitswap.Stat) uint64 { return s.Wants.CancelsSent })
	gauge("wantlist_size", "CIDs our sessions want now.", func(s *bitswap.Stat) int { return len(s.Wantlist) })
	gauge("wants_queued", "Wants waiting for a slot in a peer's window.", func(s *bitswap.Stat) int { return s.Wants.Queued })
	gauge("sessions", "Sessions running.", func(s *bitswap.Stat) int { return s.Sessions })
	gauge("peers", "Connected Bitswap peers.", func(s *bitswap.Stat) int { return len(s.Peers) })
	// Server.
	counter("blocks_sent_total", "Blocks sent.", func(s *bitswap.Stat) uint64 { return s.BlocksSent })
	counter("sent_bytes_total", "Block bytes sent.", func(s *bitswap.Stat) uint64 { return s.DataSent })
	counter("haves_sent_total", "HAVE presences sent.", func(s *bitswap.Stat) uint64 { return s.Server.HavesSent })
	counter("dont_haves_sent_total", "DONT_HAVE presences sent.", func(s *bitswap.Stat) uint64 { return s.Server.DontHavesSent })
	counter("server_wants_dropped_total", "Inbound wants refused by a limit.", func(s *bitswap.Stat) uint64 { return s.Server.WantsDropped })
	gauge("server_wants", "Inbound want entries held, all peers.", func(s *bitswap.Stat) int { return s.Server.Wants })
	gauge("server_peers", "Peers with inbound wants held.", func(s *bitswap.Stat) int { return s.Server.Peers })
	// Messages (bytes/messages gives the mean message size).
	counter("messages_received_total", "Bitswap messages received.", func(s *bitswap.Stat) uint64 { return s.MessagesReceived })
	counter("messages_sent_total", "Bitswap messages sent.", func(s *bitswap.Stat) uint64 { return s.Network.MessagesSent })
	counter("network_received_bytes_total", "Framed message bytes received.", func(s *bitswap.Stat) uint64 { return s.Network.BytesReceived })
	counter("network_sent_bytes_total", "Framed message bytes sent.", func(s *bitswap.Stat) uint64 { return s.Network.BytesSent })
	counter("malformed_messages_total", "Inbound frames that did not decode or were over the size limit.", func(s *bitswap.Stat) uint64 { return s.Network.MalformedReceived })
	counter("peers_disconnected_malformed_total", "Peers disconnected and banned for sending too many malformed or rejected messages.", func(s *bitswap.Stat) uint64 { return s.Network.PeersDisconnected })
	counter("wants_displaced_total", "Wants not yet looked up forgotten at the total wants cap, to make room for a peer holding fewer.", func(s *bitswap.Stat) uint64 { return s.Server.WantsDisplaced })
	counter("wants_evicted_total", "Parked wants (for blocks we lack) forgotten, oldest first, to keep within the parked-wants cap.", func(s *bitswap.Stat) uint64 { return s.Server.WantsEvicted })
	counter("rejected_messages_total", "Inbound messages rejected as abuse (wants for oversized CIDs, floods of unrequested blocks).", func(s *bitswap.Stat) uint64 { return s.Network.RejectedReceived })
	counter("throttled_messages_total", "Inbound messages held back because their peer sent wantlist entries faster than the pace allows.", func(s *bitswap.Stat) uint64 { return s.Network.ThrottledMessages })
	counter("banned_streams_refused_total", "Inbound streams reset because their peer is banned.", func(s *bitswap.Stat) uint64 { return s.Network.StreamsRefused })
	counter("abandoned_sends_total", "Connections a peer closed (or streams it reset) while blocks were being sent to it.", func(s *bitswap.Stat) uint64 { return s.Network.AbandonedSends })
	counter("peers_banned_total", "Peers banned, for malformed or rejected messages or for abandoning transfers again and again.", func(s *bitswap.Stat) uint64 { return s.Network.PeersBanned })
	return c
}

func (c *statCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

func (c *statCollector) Collect(ch chan<- prometheus.Metric) {
	s, err := c.stat()
	if err != nil {
		for _, m := range c.metrics {
			ch <- prometheus.NewInvalidMetric(m.desc, err)
		}
		return
	}
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.get(s))
	}
}

// serveMetrics serves the metrics of b (and the Go runtime's) on
// http://addr/metrics until ctx ends, and prints the address on w.
func serveMetrics(ctx context.Context, addr string, b *bitswap.Bitswap, w io.Writer) (stop func(), err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newStatCollector(b.Stat), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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

// Package metrics exports a Bitswap's figures as Prometheus metrics: the
// counters and gauges of its Stat, read on every scrape, and histograms of
// events as they happen (the size of every message, the blocks in each, how
// long each wanted block was wanted before it arrived, the depth of a
// peer's send queue each time it is served, how long each server message
// took to send), which a bitswap.Observer feeds.
//
//	m := metrics.New()
//	bsw := bitswap.New(ctx, net, bs, m.Option())
//	prometheus.MustRegister(m.Collector(bsw))
//
// It owns the histograms and nothing else. Every count it reports is kept
// by the component that owns that fact and read through Bitswap.Stat when
// Prometheus scrapes; it never touches a component's state, starts no
// goroutine, and holds nothing per peer.
//
// # Names
//
// Every metric is named bitswap_<name>, or <namespace>_bitswap_<name> with
// WithNamespace: WithNamespace("ipfs") gives the names Kubo exports boxo's
// metrics under. Where boxo has a metric of the same meaning, ours has its
// name (after the prefix):
//
//   - recv_all_blocks_bytes: histogram of the size of every block received
//     from peers, duplicates and unrequested ones included, with boxo's
//     buckets.
//   - recv_dup_blocks_bytes: the duplicate blocks received, as a histogram
//     whose count and sum are the BlockRouter's counters (Stat's
//     DupBlksReceived, DupDataReceived) and which therefore has no bucket
//     but +Inf: the BlockRouter counts duplicates, it does not time or
//     size them one by one. Queries on its _count and _sum read as boxo's.
//   - sent_all_blocks_bytes: histogram of the encoded size of every message
//     the server sent (blocks, HAVEs, DONT_HAVEs), boxo's buckets.
//   - send_times: histogram of the seconds each server message took to
//     write, with boxo's buckets and finer ones below a second.
//   - wantlist_total: gauge of the CIDs asked of peers (the same value
//     as wantlist_size, kept for the command's users).
//
// Our own histograms:
//
//   - message_size_bytes{direction="sent"|"received"}: every message, client
//     wantlists included, encoded as on /ipfs/bitswap/1.2.0 (a few bytes a
//     block more than 1.0.0's encoding, which has no CID prefixes).
//   - message_blocks{direction}: the blocks in each message that carries any.
//   - want_to_block_seconds: for each wanted block that arrived from a peer,
//     how long it had been wanted (bitswap.ReceivedBlock's Delay).
//   - send_queue_wants: each time our wants are sent to a peer, how many more
//     of them wait there for a slot in its want window (0 while it has
//     room): the depth of that peer's send queue.
//
// The counters and gauges read from Stat are listed by Collector.
package metrics

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/message"
)

// subsystem is the middle part of every name, as in boxo's metrics under
// Kubo (ipfs_bitswap_...).
const subsystem = "bitswap"

// Buckets.
var (
	// boxoSizeBuckets are boxo's, for block and message sizes: 64 B, 1 KiB,
	// 16 KiB, 256 KiB, 256 KiB + 15 (old file chunks), 4 MiB.
	boxoSizeBuckets = []float64{1 << 6, 1 << 10, 1 << 14, 1 << 18, 1<<18 + 15, 1 << 22}
	// sendTimeBuckets are boxo's (1 s to 10 min) with finer ones below a
	// second, where nearly every send falls.
	sendTimeBuckets = []float64{0.001, 0.01, 0.1, 1, 10, 30, 60, 90, 120, 600}
	// messageSizeBuckets: 64 B to 4 MiB, by 4.
	messageSizeBuckets = prometheus.ExponentialBuckets(64, 4, 9)
	// messageBlocksBuckets: 1 to 1,024 blocks, by 2.
	messageBlocksBuckets = prometheus.ExponentialBuckets(1, 2, 11)
	// latencyBuckets: 1 ms to 60 s.
	latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	// queueBuckets: 0 (the window had room), then 1 to 16,384 wants, by 4.
	queueBuckets = append([]float64{0}, prometheus.ExponentialBuckets(1, 4, 8)...)
)

// Option configures New.
type Option func(*config)

type config struct {
	namespace string
}

// WithNamespace puts ns in front of every metric's name: ns_bitswap_<name>.
// WithNamespace("ipfs") gives the names of boxo's metrics in Kubo. The
// default, "", gives bitswap_<name>.
func WithNamespace(ns string) Option {
	return func(c *config) { c.namespace = ns }
}

// Metrics holds one Bitswap's histograms. Pass its Option to bitswap.New,
// so that they hear of events, and register its Collector for that
// Bitswap. A Metrics serves one Bitswap: a second would mix the two in its
// histograms.
type Metrics struct {
	ns string

	sentSize, recvSize       prometheus.Observer
	sentBlocks, recvBlocks   prometheus.Observer
	messageSize, messageBlks *prometheus.HistogramVec
	blockSize                prometheus.Histogram // recv_all_blocks_bytes
	serverMessageSize        prometheus.Histogram // sent_all_blocks_bytes
	sendTimes                prometheus.Histogram
	wantToBlock              prometheus.Histogram
	sendQueue                prometheus.Histogram
}

// New returns the histograms, empty.
func New(opts ...Option) *Metrics {
	var c config
	for _, o := range opts {
		o(&c)
	}
	hist := func(name, help string, buckets []float64) prometheus.HistogramOpts {
		return prometheus.HistogramOpts{Namespace: c.namespace, Subsystem: subsystem, Name: name, Help: help, Buckets: buckets}
	}
	m := &Metrics{
		ns: c.namespace,
		messageSize: prometheus.NewHistogramVec(hist("message_size_bytes",
			"Encoded size of each Bitswap message, as on 1.2.0, by direction (sent, received).", messageSizeBuckets), []string{"direction"}),
		messageBlks: prometheus.NewHistogramVec(hist("message_blocks",
			"Blocks in each Bitswap message that carries blocks, by direction (sent, received).", messageBlocksBuckets), []string{"direction"}),
		blockSize: prometheus.NewHistogram(hist("recv_all_blocks_bytes",
			"Size of each block received, duplicates and unrequested blocks included (boxo's name).", boxoSizeBuckets)),
		serverMessageSize: prometheus.NewHistogram(hist("sent_all_blocks_bytes",
			"Encoded size of each message the server sent: blocks, HAVEs, DONT_HAVEs (boxo's name).", boxoSizeBuckets)),
		sendTimes: prometheus.NewHistogram(hist("send_times",
			"Seconds each server message took to write (boxo's name).", sendTimeBuckets)),
		wantToBlock: prometheus.NewHistogram(hist("want_to_block_seconds",
			"Seconds each wanted block received from a peer had been wanted.", latencyBuckets)),
		sendQueue: prometheus.NewHistogram(hist("send_queue_wants",
			"Wants still waiting for a slot in a peer's want window each time wants are sent to it.", queueBuckets)),
	}
	m.sentSize = m.messageSize.WithLabelValues("sent")
	m.recvSize = m.messageSize.WithLabelValues("received")
	m.sentBlocks = m.messageBlks.WithLabelValues("sent")
	m.recvBlocks = m.messageBlks.WithLabelValues("received")
	return m
}

// Option returns the bitswap.Option that feeds m's histograms: pass it to
// bitswap.New. It adds an Observer and leaves any other in place.
func (m *Metrics) Option() bitswap.Option {
	return bitswap.WithObserver(bitswap.Observer{
		MessageReceived: m.messageReceived,
		MessageSent:     m.messageSent,
		BlocksReceived:  m.blocksReceived,
		WantsWaiting:    m.wantsWaiting,
	})
}

func (m *Metrics) messageReceived(_ peer.ID, msg *message.Message) {
	m.recvSize.Observe(float64(msg.Size(message.V120)))
	if len(msg.Blocks) == 0 {
		return
	}
	m.recvBlocks.Observe(float64(len(msg.Blocks)))
	for _, b := range msg.Blocks {
		m.blockSize.Observe(float64(len(b.RawData())))
	}
}

func (m *Metrics) messageSent(_ peer.ID, msg *message.Message, took time.Duration) {
	size := float64(msg.Size(message.V120))
	m.sentSize.Observe(size)
	if len(msg.Blocks) > 0 {
		m.sentBlocks.Observe(float64(len(msg.Blocks)))
	}
	// The server's messages carry blocks and presences; the WantManager's,
	// wantlists only.
	if len(msg.Blocks) > 0 || len(msg.BlockPresences) > 0 {
		m.serverMessageSize.Observe(size)
		m.sendTimes.Observe(took.Seconds())
	}
}

func (m *Metrics) blocksReceived(_ peer.ID, blks []bitswap.ReceivedBlock) {
	for _, b := range blks {
		m.wantToBlock.Observe(b.Delay.Seconds())
	}
}

func (m *Metrics) wantsWaiting(_ peer.ID, n int) { m.sendQueue.Observe(float64(n)) }

// Collector returns the collector of b's metrics: m's histograms and the
// figures of b.Stat(), read on each scrape. Register it once, for the
// Bitswap that m's Option was given to.
//
// From Stat (bitswap_ and, with WithNamespace, ns_ in front):
//
//	blocks_received_total, received_bytes_total       blocks (and their bytes) received, duplicates included
//	duplicate_blocks_received_total, duplicate_received_bytes_total
//	unwanted_blocks_received_total                    blocks no Session wanted (dropped)
//	recv_dup_blocks_bytes                             the duplicates again, as boxo's histogram (count, sum)
//	wants_sent_total, cancels_sent_total              want and cancel entries sent
//	wantlist_size, wantlist_total (gauges)            CIDs asked of peers now
//	wants_queued (gauge)                              wants waiting for a slot in a peer's window
//	sessions, peers (gauges)                          Sessions running, connected Bitswap peers
//	provider_queries_started_total, provider_queries_joined_total
//	provider_queries_dropped_total, provider_queries_timed_out_total
//	providers_connected_total, providers_unreachable_total
//	provider_queries_running, provider_queries_waiting (gauges)
//	blocks_sent_total, sent_bytes_total               blocks (and their bytes) the server sent
//	haves_sent_total, dont_haves_sent_total
//	server_wants_dropped_total, wants_displaced_total, wants_evicted_total
//	server_wants, server_peers (gauges)               inbound wants held, peers holding them
//	messages_received_total, messages_sent_total
//	network_received_bytes_total, network_sent_bytes_total   framed bytes
//	malformed_messages_total, rejected_messages_total, throttled_messages_total
//	peers_disconnected_malformed_total, banned_streams_refused_total
//	abandoned_sends_total, peers_banned_total
func (m *Metrics) Collector(b *bitswap.Bitswap) prometheus.Collector {
	return &collector{m: m, stat: b.Stat, metrics: statMetrics(m.ns), dup: prometheus.NewDesc(
		prometheus.BuildFQName(m.ns, subsystem, "recv_dup_blocks_bytes"),
		"Duplicate blocks received, and their bytes: count and sum only (boxo's name).", nil, nil)}
}

type collector struct {
	m       *Metrics
	stat    func() (*bitswap.Stat, error)
	metrics []statMetric
	dup     *prometheus.Desc
}

func (c *collector) histograms() []prometheus.Collector {
	m := c.m
	return []prometheus.Collector{m.messageSize, m.messageBlks, m.blockSize, m.serverMessageSize, m.sendTimes, m.wantToBlock, m.sendQueue}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
	ch <- c.dup
	for _, h := range c.histograms() {
		h.Describe(ch)
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if s, err := c.stat(); err != nil {
		for _, m := range c.metrics {
			ch <- prometheus.NewInvalidMetric(m.desc, err)
		}
		ch <- prometheus.NewInvalidMetric(c.dup, err)
	} else {
		for _, m := range c.metrics {
			ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.get(s))
		}
		ch <- prometheus.MustNewConstHistogram(c.dup, s.DupBlksReceived, float64(s.DupDataReceived), nil)
	}
	for _, h := range c.histograms() {
		h.Collect(ch)
	}
}

// statMetric is one figure of Stat.
type statMetric struct {
	desc *prometheus.Desc
	typ  prometheus.ValueType
	get  func(*bitswap.Stat) float64
}

func statMetrics(ns string) []statMetric {
	var ms []statMetric
	add := func(typ prometheus.ValueType, name, help string, get func(*bitswap.Stat) float64) {
		ms = append(ms, statMetric{desc: prometheus.NewDesc(prometheus.BuildFQName(ns, subsystem, name), help, nil, nil), typ: typ, get: get})
	}
	counter := func(name, help string, get func(*bitswap.Stat) uint64) {
		add(prometheus.CounterValue, name, help, func(s *bitswap.Stat) float64 { return float64(get(s)) })
	}
	gauge := func(name, help string, get func(*bitswap.Stat) int) {
		add(prometheus.GaugeValue, name, help, func(s *bitswap.Stat) float64 { return float64(get(s)) })
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
	gauge("wantlist_size", "CIDs asked of peers now.", func(s *bitswap.Stat) int { return len(s.Wantlist) })
	gauge("wantlist_total", "CIDs asked of peers now (boxo's name for wantlist_size).", func(s *bitswap.Stat) int { return len(s.Wantlist) })
	gauge("wants_queued", "Wants waiting for a slot in a peer's window.", func(s *bitswap.Stat) int { return s.Wants.Queued })
	gauge("peers_protected", "Peers protected in the connection manager: those holding a want-block of ours.", func(s *bitswap.Stat) int { return s.Wants.Protected })
	gauge("sessions", "Sessions running.", func(s *bitswap.Stat) int { return s.Sessions })
	gauge("peers", "Connected Bitswap peers.", func(s *bitswap.Stat) int { return len(s.Peers) })
	// Client: provider search (package providers).
	counter("provider_queries_started_total", "Provider queries started (one per CID, however many Sessions asked).", func(s *bitswap.Stat) uint64 { return s.Providers.Started })
	counter("provider_queries_joined_total", "Provider searches that joined a query already running or waiting for that CID.", func(s *bitswap.Stat) uint64 { return s.Providers.Joined })
	counter("provider_queries_dropped_total", "Provider queries dropped from a full queue, oldest first.", func(s *bitswap.Stat) uint64 { return s.Providers.Dropped })
	counter("provider_queries_timed_out_total", "Provider queries ended by their timeout.", func(s *bitswap.Stat) uint64 { return s.Providers.TimedOut })
	counter("providers_connected_total", "Providers found by content routing, connected and told to the Sessions.", func(s *bitswap.Stat) uint64 { return s.Providers.Connected })
	counter("providers_unreachable_total", "Providers found by content routing that could not be connected to (after a FindPeer, if peer routing was set).", func(s *bitswap.Stat) uint64 { return s.Providers.ConnectFailed })
	gauge("provider_queries_running", "Provider queries running.", func(s *bitswap.Stat) int { return s.Providers.Running })
	gauge("provider_queries_waiting", "Provider queries waiting for a slot.", func(s *bitswap.Stat) int { return s.Providers.Waiting })
	// Server.
	counter("blocks_sent_total", "Blocks sent.", func(s *bitswap.Stat) uint64 { return s.BlocksSent })
	counter("sent_bytes_total", "Block bytes sent.", func(s *bitswap.Stat) uint64 { return s.DataSent })
	counter("haves_sent_total", "HAVE presences sent.", func(s *bitswap.Stat) uint64 { return s.Server.HavesSent })
	counter("dont_haves_sent_total", "DONT_HAVE presences sent.", func(s *bitswap.Stat) uint64 { return s.Server.DontHavesSent })
	counter("server_wants_dropped_total", "Inbound wants refused by a limit.", func(s *bitswap.Stat) uint64 { return s.Server.WantsDropped })
	gauge("server_wants", "Inbound want entries held, all peers.", func(s *bitswap.Stat) int { return s.Server.Wants })
	gauge("server_peers", "Peers with inbound wants held.", func(s *bitswap.Stat) int { return s.Server.Peers })
	gauge("server_peers_tagged", "Peers the server tags in the connection manager: those it has work for, or had lately.", func(s *bitswap.Stat) int { return s.Server.PeersTagged })
	counter("wants_displaced_total", "Wants not yet looked up forgotten at the total wants cap, to make room for a peer holding fewer.", func(s *bitswap.Stat) uint64 { return s.Server.WantsDisplaced })
	counter("wants_evicted_total", "Parked wants (for blocks we lack) forgotten, oldest first, to keep within the parked-wants cap.", func(s *bitswap.Stat) uint64 { return s.Server.WantsEvicted })
	// Messages (bytes/messages gives the mean message size).
	counter("messages_received_total", "Bitswap messages received.", func(s *bitswap.Stat) uint64 { return s.MessagesReceived })
	counter("messages_sent_total", "Bitswap messages sent.", func(s *bitswap.Stat) uint64 { return s.Network.MessagesSent })
	counter("network_received_bytes_total", "Framed message bytes received.", func(s *bitswap.Stat) uint64 { return s.Network.BytesReceived })
	counter("network_sent_bytes_total", "Framed message bytes sent.", func(s *bitswap.Stat) uint64 { return s.Network.BytesSent })
	// Abuse.
	counter("malformed_messages_total", "Inbound frames that did not decode or were over the size limit.", func(s *bitswap.Stat) uint64 { return s.Network.MalformedReceived })
	counter("rejected_messages_total", "Inbound messages rejected as abuse (wants for oversized CIDs, floods of unrequested blocks).", func(s *bitswap.Stat) uint64 { return s.Network.RejectedReceived })
	counter("throttled_messages_total", "Inbound messages held back because their peer sent wantlist entries faster than the pace allows.", func(s *bitswap.Stat) uint64 { return s.Network.ThrottledMessages })
	counter("peers_disconnected_malformed_total", "Peers disconnected and banned for sending too many malformed or rejected messages.", func(s *bitswap.Stat) uint64 { return s.Network.PeersDisconnected })
	counter("banned_streams_refused_total", "Inbound streams reset because their peer is banned.", func(s *bitswap.Stat) uint64 { return s.Network.StreamsRefused })
	counter("abandoned_sends_total", "Connections a peer closed (or streams it reset) while blocks were being sent to it.", func(s *bitswap.Stat) uint64 { return s.Network.AbandonedSends })
	counter("peers_banned_total", "Peers banned, for malformed or rejected messages or for abandoning transfers again and again.", func(s *bitswap.Stat) uint64 { return s.Network.PeersBanned })
	return ms
}

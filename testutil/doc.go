// Package testutil provides helpers for tests of the other packages:
// deterministic block generators, deterministic peer IDs, and an in-memory
// virtual network whose peers implement network.Network, usable under
// testing/synctest so that protocol behaviour over slow links is tested in
// virtual time.
//
// The virtual network has per-link latency and bandwidth (WithLatency,
// WithBandwidth, SetLink), send buffers that block a sender once full, as a
// stream write does (WithSendBuffer), access links shared by all of a
// peer's connections (WithAccessLinks, SetAccessLink), seeded message loss (WithLoss, WithSeed,
// SetLoss), churn (Disconnect, Reconnect, ScheduleChurn), peers that never
// answer (SetUnresponsive), and accounting of everything its links carried
// (Traffic, TrafficFrom, TrafficTo, TrafficBetween, Dropped). Each peer's
// connection manager keeps and records the tags and protections it is
// told of (Tags, Protections, TaggedPeers, ConnMgrCalls), and trims only
// when told, as libp2p's basic connection manager would (TrimConnections).
// HTTPEndpoint
// puts an HTTP handler (a trustless gateway) behind a simulated link of
// its own, as an http.RoundTripper for httpnet.WithTransport. ContentRouter
// is a fake content routing system for its peers, and NewSwarm, SwarmOf and
// ConnectPairs build topologies. Nothing in it reads the wall clock or uses
// real randomness, so runs under synctest are reproducible.
//
// It owns only test scaffolding. It must never be imported by non-test code
// of the library, and it never reaches into the state of the packages it
// helps test: messages cross the virtual network as the same framed wire
// bytes the libp2p network writes, encoded and decoded only through the
// message package, and peers see only the network.Receiver calls a real
// network would make.
package testutil

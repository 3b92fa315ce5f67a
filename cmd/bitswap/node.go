package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/httpnet"
	"github.com/gobitswap/bitswap/metrics"
	"github.com/gobitswap/bitswap/network"
)

// startNode starts a libp2p host configured by hostOpt and a Bitswap over bs
// on it, and serves metrics if --metrics asked for them. stop shuts it all
// down, metrics first.
func (c *common) startNode(ctx context.Context, hostOpt libp2p.Option, bs blockstore.Blockstore, stderr io.Writer, opts ...bitswap.Option) (h host.Host, bsw *bitswap.Bitswap, stop func(), err error) {
	return c.startNodeWith(ctx, nodeSpec{hostOpts: []libp2p.Option{hostOpt}, bs: bs, opts: opts}, stderr)
}

// nodeSpec says how to start a node.
type nodeSpec struct {
	hostOpts []libp2p.Option
	bs       blockstore.Blockstore
	opts     []bitswap.Option
	// withHost, if set, runs once the host is up and before Bitswap starts
	// (to join a DHT, say): it may add options, and a function that stop
	// runs after Bitswap closes and before the host does.
	withHost func(h host.Host) ([]bitswap.Option, func(), error)
	// http, if set, is the HTTP network: Bitswap then runs on a Router
	// over the host's network and it, so HTTP endpoints are peers too.
	http *httpnet.Network
}

func (c *common) startNodeWith(ctx context.Context, spec nodeSpec, stderr io.Writer) (h host.Host, bsw *bitswap.Bitswap, stop func(), err error) {
	h, err = c.newHost(spec.hostOpts...)
	if err != nil {
		return nil, nil, nil, err
	}
	opts := append([]bitswap.Option{bitswap.WithLogger(c.logger)}, spec.opts...)
	closeExtra := func() {}
	if spec.withHost != nil {
		more, cl, err := spec.withHost(h)
		if err != nil {
			h.Close()
			return nil, nil, nil, err
		}
		opts = append(opts, more...)
		if cl != nil {
			closeExtra = cl
		}
	}
	var m *metrics.Metrics
	if c.metrics != "" {
		m = metrics.New()
		opts = append(opts, m.Option())
	}
	var net network.Network = network.NewFromHost(h, network.WithLogger(c.logger))
	if spec.http != nil {
		net = httpnet.NewRouter(net, spec.http)
	}
	// The node lives until stop, not until ctx: closed on the signal, it
	// could end a fetch's requests before the fetch's own context saw the
	// signal, and the fetch would name the wrong cause.
	bsw = bitswap.New(context.WithoutCancel(ctx), net, spec.bs, opts...)
	stop = func() { bsw.Close(); closeExtra(); h.Close() }
	if m != nil {
		stopMetrics, err := serveMetrics(c.metrics, m, bsw, stderr)
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		stopNode := stop
		stop = func() { stopMetrics(); stopNode() }
	}
	return h, bsw, stop, nil
}

// newHost starts a libp2p host with opts and resource limits that let boxo
// and Kubo servers, which open a stream per message, send as fast as they
// can (network.ResourceManager says why), and libp2p's security transports
// with TLS's writes batched (network.BatchedTLS says why).
func (c *common) newHost(opts ...libp2p.Option) (host.Host, error) {
	rm, err := network.ResourceManager()
	if err != nil {
		return nil, fmt.Errorf("building the resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(connLow, connHigh, connmgr.WithGracePeriod(connGrace))
	if err != nil {
		_ = rm.Close()
		return nil, fmt.Errorf("building the connection manager: %w", err)
	}
	h, err := libp2p.New(append(opts, network.Security(), libp2p.ResourceManager(rm), libp2p.ConnectionManager(cm))...)
	if err != nil {
		_ = rm.Close()
		_ = cm.Close()
		return nil, networkErrorf("starting libp2p host: %v", err)
	}
	return h, nil
}

// The connection manager's watermarks and grace period: Kubo's defaults
// (Swarm.ConnMgr). A node in a DHT keeps connecting to peers; above
// connHigh it trims to connLow, never cutting peers Bitswap protects (those
// holding our want-blocks) and cutting those it tags (peers that served a
// Session, peers with queued server work) last.
const (
	connLow   = 32
	connHigh  = 96
	connGrace = 20 * time.Second
)

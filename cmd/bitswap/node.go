package main

import (
	"context"
	"io"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"

	bitswap "github.com/gobitswap/bitswap"
	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/network"
)

// startNode starts a libp2p host configured by hostOpt and a Bitswap over bs
// on it, and serves metrics if --metrics asked for them. stop shuts it all
// down, metrics first.
func (c *common) startNode(ctx context.Context, hostOpt libp2p.Option, bs blockstore.Blockstore, stderr io.Writer) (h host.Host, bsw *bitswap.Bitswap, stop func(), err error) {
	h, err = libp2p.New(hostOpt)
	if err != nil {
		return nil, nil, nil, networkErrorf("starting libp2p host: %v", err)
	}
	bsw = bitswap.New(ctx, network.NewFromHost(h), bs, bitswap.WithLogger(c.logger))
	stop = func() { bsw.Close(); h.Close() }
	if c.metrics != "" {
		stopMetrics, err := serveMetrics(ctx, c.metrics, bsw, stderr)
		if err != nil {
			stop()
			return nil, nil, nil, err
		}
		stopNode := stop
		stop = func() { stopMetrics(); stopNode() }
	}
	return h, bsw, stop, nil
}

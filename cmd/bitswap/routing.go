package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	cid "github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/dual"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/routing"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/gobitswap/bitswap/blockstore"
	"github.com/gobitswap/bitswap/routinghttp"
)

// publicBootstrap is the --bootstrap value that stands for the public
// Amino DHT's bootstrap peers (libp2p's list). Never the default: a
// command run in a test or on a LAN must not reach out to the internet.
const publicBootstrap = "public"

// routerTimeout bounds each Routing V1 query of get: a router that is
// down or slow costs this much, once per search, and a warning.
const routerTimeout = 10 * time.Second

// bootstrapPeers parses --bootstrap values.
func bootstrapPeers(vals []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, v := range vals {
		if v == publicBootstrap {
			out = append(out, dht.GetDefaultBootstrapPeerAddrInfos()...)
			continue
		}
		ai, err := peer.AddrInfoFromString(v)
		if err != nil {
			return nil, inputErrorf("bad --bootstrap %q (want a multiaddr ending in /p2p/<peer id>, or %q): %v", v, publicBootstrap, err)
		}
		out = append(out, *ai)
	}
	return out, nil
}

// startDHT joins the DHT through the bootstrap peers (in parallel; those
// that do not answer are skipped with a warning) and waits, at most
// timeout, until its routing table has a peer. It fails only if no
// bootstrap peer answers.
//
// It runs two DHTs, as Kubo does (go-libp2p-kad-dht's dual): the Amino
// DHT among peers with public addresses (/ipfs/kad/1.0.0), and a LAN DHT
// among peers on private networks (/ipfs/lan/kad/1.0.0). A Kubo DHT server
// gives only public addresses on the first, so a provider on a LAN, in a
// container network or on this machine is found with its addresses only
// on the second. The LAN DHT keeps loopback addresses, as Kubo's
// Routing.LoopbackAddressesOnLanDHT does, so that nodes on one machine
// find each other too.
func startDHT(ctx context.Context, h host.Host, mode dht.ModeOpt, boot []peer.AddrInfo, timeout time.Duration, logger *slog.Logger) (*dual.DHT, error) {
	d, err := dual.New(h,
		dual.DHTOption(dht.Mode(mode), dht.BootstrapPeers(boot...)),
		dual.LanDHTOption(dht.AddressFilter(func(addrs []ma.Multiaddr) []ma.Multiaddr { return addrs })))
	if err != nil {
		return nil, fmt.Errorf("starting the DHT: %w", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	reached := 0
	for _, ai := range boot {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if err := h.Connect(cctx, ai); err != nil {
				logger.Info("bootstrap peer not reachable", "peer", ai.ID, "err", oneLine(err.Error()))
				return
			}
			mu.Lock()
			reached++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(boot) > 0 && reached == 0 {
		d.Close()
		return nil, networkErrorf("no bootstrap peer reachable (%d tried)", len(boot))
	}
	if err := d.Bootstrap(ctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("bootstrapping the DHT: %w", err)
	}
	// A connected peer joins the routing table once identify says it
	// speaks the DHT protocol, a moment after the connection.
	deadline := time.Now().Add(timeout)
	for d.WAN.RoutingTable().Size()+d.LAN.RoutingTable().Size() == 0 && len(boot) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	return d, nil
}

// namedRouter is a content router and the name get reports it by.
type namedRouter struct {
	name string
	r    routing.ContentDiscovery
}

// routers asks every router at once and merges their providers, each peer
// once per search; it says on stderr which providers each found.
type routers struct {
	all    []namedRouter
	self   peer.ID
	stderr io.Writer

	mu          sync.Mutex
	seen        map[peer.ID]bool // providers reported on stderr
	unreachable map[peer.ID]bool // providers warned of as unreachable
}

func (rs *routers) FindProvidersAsync(ctx context.Context, k cid.Cid, count int) <-chan peer.AddrInfo {
	out := make(chan peer.AddrInfo)
	ctx, cancel := context.WithCancel(ctx)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		sent = map[peer.ID]bool{rs.self: true}
	)
	for _, nr := range rs.all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ai := range nr.r.FindProvidersAsync(ctx, k, count) {
				mu.Lock()
				dup := sent[ai.ID] || (count > 0 && len(sent) > count)
				sent[ai.ID] = true
				mu.Unlock()
				if dup {
					continue
				}
				rs.report(ai.ID, nr.name, k)
				select {
				case out <- ai:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		cancel()
		close(out)
	}()
	return out
}

// FindPeer asks every router that can (the DHT, Routing V1's
// /routing/v1/peers) for p's addresses at once; the first answer with
// addresses wins. This is the provider queries' retry for a provider whose
// record came without usable addresses: a Kubo DHT server answers with its
// public addresses only, a delegated router often with none.
func (rs *routers) FindPeer(ctx context.Context, p peer.ID) (peer.AddrInfo, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		ai  peer.AddrInfo
		err error
	}
	answers := make(chan answer, len(rs.all))
	n := 0
	for _, nr := range rs.all {
		pr, ok := nr.r.(routing.PeerRouting)
		if !ok {
			continue
		}
		n++
		go func() {
			ai, err := pr.FindPeer(ctx, p)
			if err != nil {
				err = fmt.Errorf("%s: %w", nr.name, err)
			}
			answers <- answer{ai, err}
		}()
	}
	var errs []error
	for range n {
		a := <-answers
		if a.err == nil && len(a.ai.Addrs) > 0 {
			return a.ai, nil
		}
		if a.err != nil {
			errs = append(errs, a.err)
		}
	}
	if len(errs) == 0 {
		return peer.AddrInfo{}, fmt.Errorf("finding %s: %w", p, routing.ErrNotFound)
	}
	return peer.AddrInfo{}, fmt.Errorf("finding %s: %w", p, errors.Join(errs...))
}

// warnUnreachable says once per provider, in one line, that it could not
// be connected to (a Bitswap Observer's ProviderUnreachable): without it
// a provider record with no usable address looked like a stalled fetch.
func (rs *routers) warnUnreachable(p peer.ID, k cid.Cid, err error) {
	// err names p and k ("connecting to <p>, a provider of <k>: ...").
	rs.once(&rs.unreachable, p, "bitswap get: warning: %s (going on without it)\n", oneLine(err.Error()))
}

// report names a provider found on stderr, once per provider.
func (rs *routers) report(p peer.ID, via string, k cid.Cid) {
	rs.once(&rs.seen, p, "provider %s (via %s, for %s)\n", p, via, k)
}

// once prints the line to stderr unless *said already holds p, and adds p.
func (rs *routers) once(said *map[peer.ID]bool, p peer.ID, format string, args ...any) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if *said == nil {
		*said = make(map[peer.ID]bool)
	}
	if (*said)[p] {
		return
	}
	(*said)[p] = true
	fmt.Fprintf(rs.stderr, format, args...)
}

// newRouters builds get's content routing from --routing URLs and a DHT,
// if any. A router that fails warns once per failure on stderr, in one
// line, and the others go on.
func newRouters(urls []string, d *dual.DHT, self peer.ID, stderr io.Writer) (*routers, error) {
	rs := &routers{self: self, stderr: stderr}
	if d != nil {
		rs.all = append(rs.all, namedRouter{"dht", d})
	}
	for _, u := range urls {
		u := u
		c, err := routinghttp.New(u, routinghttp.WithTimeout(routerTimeout), routinghttp.WithGatewayProviders(), routinghttp.WithErrorHandler(func(err error) {
			fmt.Fprintf(stderr, "bitswap get: warning: %s (going on without it)\n", oneLine(err.Error()))
		}))
		if err != nil {
			return nil, inputErrorf("bad --routing: %v", err)
		}
		rs.all = append(rs.all, namedRouter{u, c})
	}
	return rs, nil
}

// reprovideInterval is how often serve announces its CIDs again: provider
// records expire after 48 h on the Amino DHT; Kubo reprovides every 22 h.
const reprovideInterval = 22 * time.Hour

// provideLoop announces the CIDs to the DHT now and every
// reprovideInterval until ctx ends: the roots, or with all every block in
// bs. After each round it calls done with the count announced (the first
// round prints it). A round that fails is retried a minute later.
func provideLoop(ctx context.Context, d routing.ContentRouting, roots []cid.Cid, all bool, bs blockstore.Blockstore, logger *slog.Logger, done func(n int, took time.Duration)) {
	for {
		start := time.Now()
		n, err := provideRound(ctx, d, roots, all, bs)
		wait := reprovideInterval
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			logger.Warn("announcing to the DHT", "announced", n, "err", err)
			wait = time.Minute
		} else {
			done(n, time.Since(start))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// provideWorkers is how many announcements serve makes at once.
const provideWorkers = 8

func provideRound(ctx context.Context, d routing.ContentRouting, roots []cid.Cid, all bool, bs blockstore.Blockstore) (int, error) {
	keys := make(chan cid.Cid)
	var feedErr error
	go func() {
		defer close(keys)
		if !all {
			for _, c := range roots {
				select {
				case keys <- c:
				case <-ctx.Done():
					return
				}
			}
			return
		}
		ch, err := bs.AllKeysChan(ctx)
		if err != nil {
			feedErr = err
			return
		}
		for c := range ch {
			select {
			case keys <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		n     int
		first error
	)
	for range provideWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range keys {
				err := d.Provide(ctx, c, true)
				mu.Lock()
				if err == nil {
					n++
				} else if first == nil {
					first = fmt.Errorf("%s: %w", c, err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if feedErr != nil {
		return n, feedErr
	}
	return n, first
}

package network

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"

	"github.com/gobitswap/bitswap/message"
)

// heldStreams opens n Bitswap streams from a to b at once, as boxo's server
// does when its messages outpace its background closes, writes one message
// on each and keeps them all open. It returns how many of the messages b's
// network delivered and how many streams b reset before any Bitswap code
// saw them; every stream ends up in exactly one of the two.
func heldStreams(t *testing.T, a host.Host, b *node, n int) (delivered, reset int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	resets := make(chan struct{}, n)
	for i := range n {
		s, err := a.NewStream(ctx, b.h.ID(), ProtocolBitswap)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Reset() })
		writeFrames(t, s, wantMsg(blocks.NewBlock([]byte{byte(i), byte(i >> 8)}), 1))
		// b never writes after its protocol reply, so a read ends only
		// when b resets the stream (or the test does, at its end).
		go func() {
			if _, err := s.Read(make([]byte, 1)); err != nil && ctx.Err() == nil {
				resets <- struct{}{}
			}
		}()
	}
	for {
		delivered = len(b.rec.snapshot("msg"))
		if delivered+reset == n {
			return delivered, reset
		}
		select {
		case <-resets:
			reset++
		case <-b.rec.changed:
		case <-ctx.Done():
			t.Fatalf("after %v: %d messages delivered, %d streams reset, of %d", waitTimeout, delivered, reset, n)
		}
	}
}

// nodeOnHost starts a network on a loopback host built with opts, logging
// to log.
func nodeOnHost(t *testing.T, log *bytes.Buffer, opts ...libp2p.Option) *node {
	t.Helper()
	h, err := libp2p.New(append(opts, libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	n := &node{h: h, net: NewFromHost(h, WithLogger(slog.New(slog.NewTextHandler(log, nil)))), rec: newRecorder()}
	n.net.Start(n.rec)
	t.Cleanup(n.net.Stop)
	return n
}

// libp2p's default limits reset Bitswap streams past the per-protocol-per-
// peer limit, losing the messages in them without the sender noticing (its
// write had succeeded): that is how fetches from boxo stalled. A host built
// with ResourceManager takes them all, and only the default one is warned
// about.
func TestResourceManagerTakesStreamPerMessagePeers(t *testing.T) {
	defaults := rcmgr.DefaultLimits.AutoScale().ToPartialLimitConfig()
	n := int(defaults.ProtocolPeerDefault.StreamsInbound) + 50
	if peerLimit := int(defaults.PeerDefault.StreamsInbound); n > peerLimit {
		t.Skipf("this machine's default per-protocol limit (%d) is too close to the per-peer one (%d) to show the difference",
			n-50, peerLimit)
	}

	t.Run("libp2p defaults", func(t *testing.T) {
		var log bytes.Buffer
		b := nodeOnHost(t, &log)
		a := newHost(t)
		connect(t, a, b.h)
		delivered, reset := heldStreams(t, a, b, n)
		t.Logf("%d streams held open: %d messages delivered, %d streams reset", n, delivered, reset)
		if reset == 0 {
			t.Fatalf("no stream of %d was reset: libp2p's default limit (%d) no longer applies, revisit ResourceManager",
				n, n-50)
		}
		if !strings.Contains(log.String(), "default resource limits") {
			t.Fatalf("no warning about the host's limits; log: %q", log.String())
		}
	})

	t.Run("ResourceManager", func(t *testing.T) {
		rm, err := ResourceManager()
		if err != nil {
			t.Fatal(err)
		}
		var log bytes.Buffer
		b := nodeOnHost(t, &log, libp2p.ResourceManager(rm))
		a := newHost(t)
		connect(t, a, b.h)
		delivered, reset := heldStreams(t, a, b, n)
		if reset != 0 || delivered != n {
			t.Fatalf("%d streams held open: %d messages delivered, %d streams reset; want all delivered", n, delivered, reset)
		}
		if strings.Contains(log.String(), "default resource limits") {
			t.Fatalf("warned about limits that were raised: %q", log.String())
		}
	})
}

// AddResourceLimits raises the plain Bitswap IDs and those under each
// prefix given, and no others.
func TestAddResourceLimitsWithPrefixes(t *testing.T) {
	limits := rcmgr.DefaultLimits
	AddResourceLimits(&limits, "/celestia", "")
	got := limits.AutoScale().ToPartialLimitConfig()
	all := []message.Version{message.V120, message.V110, message.V100}
	for _, id := range append(protocolIDs("", all), protocolIDs("/celestia", all)...) {
		if l := got.ProtocolPeer[id].StreamsInbound; int(l) != ProtocolPeerStreams {
			t.Errorf("%s: %v inbound streams per peer, want %d", id, l, ProtocolPeerStreams)
		}
	}
	if n := len(got.ProtocolPeer); n != 8 {
		t.Errorf("%d protocols with per-peer limits, want the 8 Bitswap IDs", n)
	}
}

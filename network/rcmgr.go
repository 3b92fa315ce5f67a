package network

import (
	"github.com/gobitswap/bitswap/message"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
)

// Stream limits that AddResourceLimits gives the Bitswap protocols.
//
// Why they are needed: boxo's and Kubo's servers open a new stream for every
// message they send, with lazy protocol negotiation, and close it in the
// background. Each such stream holds a slot of the receiving host's resource
// manager from the moment its protocol is known until both sides have
// closed it, which is at least one round trip after its message was written
// (the sender's close waits for our reply to its protocol header). libp2p's
// default limits allow 64 + 4 per GiB of memory (75 on a 24 GiB machine)
// inbound streams per protocol and peer. Past that the stream is reset
// before any Bitswap code sees it, and the sender, whose write had already
// succeeded into its buffers, does not notice: the blocks in that message
// are lost, and the client waits out a timeout to ask again. With 4 KiB
// blocks packed four to a 16 KiB message, a window of 256 wants already
// keeps about 64 messages in flight, and on a link with latency twice that
// many streams are open at once. The server's host meets the same wall on
// its side: past its outbound limit (128 + 8 per GiB), opening the stream
// fails and the server drops the message. Kubo raises these limits (it sets
// no per-protocol-per-peer limit at all); so does AddResourceLimits, for
// the Bitswap protocols only. What a peer can make us hold stays bounded by
// the per-peer limit of the resource manager (256 + 128 per GiB inbound
// streams by default) and by this package's own bounds on queued messages.
const (
	// ProtocolPeerStreams is the Bitswap streams allowed per peer and
	// protocol ID, in each direction: inbound for our client facing a
	// stream-per-message server, outbound for such a server on this host
	// (boxo's, in the interop tests and benchmarks).
	ProtocolPeerStreams = 1024
	// ProtocolStreams is the Bitswap streams allowed per protocol ID for all
	// peers together, in each direction, before scaling by memory.
	ProtocolStreams = 4096
)

// AddResourceLimits raises, in cfg, the resource manager's stream limits
// for the Bitswap protocol IDs (all versions) to what Bitswap peers
// legitimately use: see ProtocolPeerStreams for why libp2p's defaults lose
// blocks from boxo and Kubo servers. The plain IDs are raised, and those
// under each of prefixes (see WithProtocolPrefix). Memory limits stay as
// cfg has them. Call it on the configuration you scale and hand to
// rcmgr.NewResourceManager; ResourceManager does it all.
func AddResourceLimits(cfg *rcmgr.ScalingLimitConfig, prefixes ...protocol.ID) {
	all := []message.Version{message.V120, message.V110, message.V100}
	ids := protocolIDs("", all)
	for _, p := range prefixes {
		if p != "" {
			ids = append(ids, protocolIDs(p, all)...)
		}
	}
	for _, id := range ids {
		cfg.AddProtocolPeerLimit(id,
			rcmgr.BaseLimit{
				StreamsInbound:  ProtocolPeerStreams,
				StreamsOutbound: ProtocolPeerStreams,
				Streams:         2 * ProtocolPeerStreams,
				Memory:          cfg.ProtocolPeerBaseLimit.Memory,
			},
			rcmgr.BaseLimitIncrease{Memory: cfg.ProtocolPeerLimitIncrease.Memory})
		cfg.AddProtocolLimit(id,
			rcmgr.BaseLimit{
				StreamsInbound:  ProtocolStreams,
				StreamsOutbound: ProtocolStreams,
				Streams:         2 * ProtocolStreams,
				Memory:          cfg.ProtocolBaseLimit.Memory,
			},
			rcmgr.BaseLimitIncrease{
				StreamsInbound:  ProtocolStreams / 8,
				StreamsOutbound: ProtocolStreams / 8,
				Streams:         ProtocolStreams / 4,
				Memory:          cfg.ProtocolLimitIncrease.Memory,
			})
	}
}

// ResourceManager returns libp2p's resource manager as libp2p.New builds it
// by default (rcmgr.DefaultLimits with libp2p's service limits, scaled to
// this machine's memory and file descriptors) with AddResourceLimits
// applied. Pass it to libp2p.New with libp2p.ResourceManager:
//
//	rm, err := network.ResourceManager()
//	h, err := libp2p.New(libp2p.ResourceManager(rm))
func ResourceManager(opts ...rcmgr.Option) (network.ResourceManager, error) {
	return ResourceManagerWithPrefix("", opts...)
}

// ResourceManagerWithPrefix is ResourceManager for a host whose Bitswap
// network has a protocol prefix (WithProtocolPrefix): the limits of the
// prefixed IDs are raised too. "" is ResourceManager.
func ResourceManagerWithPrefix(prefix protocol.ID, opts ...rcmgr.Option) (network.ResourceManager, error) {
	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	AddResourceLimits(&limits, prefix)
	return rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()), opts...)
}

// checkResourceLimits warns once if the host's resource manager keeps
// libp2p's default stream limits for Bitswap. The per-protocol-per-peer
// limit cannot be read from outside the resource manager, so the
// per-protocol one stands in for it: AddResourceLimits raises both, and so
// does any configuration that lifts them, as Kubo's does.
func (n *Libp2pNetwork) checkResourceLimits() {
	var inbound int
	_ = n.host.Network().ResourceManager().ViewProtocol(n.protos[0], func(s network.ProtocolScope) error {
		if l, ok := s.(rcmgr.ResourceScopeLimiter); ok {
			inbound = l.Limit().GetStreamLimit(network.DirInbound)
		}
		return nil
	})
	if inbound > 0 && inbound < ProtocolStreams {
		n.cfg.logger.Warn("bitswap: the libp2p host keeps the default resource limits for Bitswap streams; "+
			"boxo and Kubo servers open a stream per message, and past 64-75 streams per peer the host resets "+
			"them and their blocks are lost until a timeout: build the host with network.ResourceManager() "+
			"or apply network.AddResourceLimits to its limits (with the protocol prefix, if any)",
			"protocol", n.protos[0], "inboundStreamLimit", inbound)
	}
}

package testutil

import (
	"github.com/gobitswap/bitswap/message"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Counts adds up Bitswap messages and what they carry, as decoded from the
// frames on the wire: after the downgrade to the link's protocol version, so
// a 1.1.0 link carries no HAVEs, DONT_HAVEs or want-haves.
type Counts struct {
	Messages      uint64 // messages
	Bytes         uint64 // framed bytes, length prefixes included
	Blocks        uint64 // blocks
	BlockBytes    uint64 // bytes of block data (payloads, without CIDs or framing)
	Entries       uint64 // wantlist entries of any kind, cancels included
	WantBlocks    uint64 // entries wanting a block (not cancels)
	WantHaves     uint64 // entries wanting a HAVE (not cancels)
	Cancels       uint64 // cancel entries
	Haves         uint64 // HAVE presences
	DontHaves     uint64 // DONT_HAVE presences
	FullWantlists uint64 // messages whose wantlist is marked full
}

func countFrame(frameLen int, m *message.Message) Counts {
	c := Counts{Messages: 1, Bytes: uint64(frameLen)}
	if m == nil {
		return c
	}
	if m.Full {
		c.FullWantlists = 1
	}
	c.Blocks = uint64(len(m.Blocks))
	for _, b := range m.Blocks {
		c.BlockBytes += uint64(len(b.RawData()))
	}
	for _, e := range m.Wantlist {
		c.Entries++
		switch {
		case e.Cancel:
			c.Cancels++
		case e.WantType == message.WantHave:
			c.WantHaves++
		default:
			c.WantBlocks++
		}
	}
	for _, p := range m.BlockPresences {
		if p.Type == message.Have {
			c.Haves++
		} else {
			c.DontHaves++
		}
	}
	return c
}

func (c *Counts) add(o Counts) {
	c.Messages += o.Messages
	c.Bytes += o.Bytes
	c.Blocks += o.Blocks
	c.BlockBytes += o.BlockBytes
	c.Entries += o.Entries
	c.WantBlocks += o.WantBlocks
	c.WantHaves += o.WantHaves
	c.Cancels += o.Cancels
	c.Haves += o.Haves
	c.DontHaves += o.DontHaves
	c.FullWantlists += o.FullWantlists
}

// Traffic is what links of a VirtualNetwork carried. Every message queued by
// SendMessage counts in Sent; each then meets exactly one fate: handed to
// the receiver's ReceiveMessage (Delivered), lost to link loss (Dropped),
// swallowed by an unresponsive receiver (Swallowed), or cut off because the
// connection closed or the receiver stopped while it was queued or in
// flight, or its sender gave up on the send (ctx) before it was all on
// the wire (Aborted). So once nothing is in flight,
//
//	Sent.Messages == Delivered.Messages + Dropped + Swallowed + Aborted
//
// and, without faults, Delivered equals Sent. Compare a node's own counters
// with Sent for what it sent and Delivered for what it received.
type Traffic struct {
	Sent      Counts // queued on a link
	Delivered Counts // handed to ReceiveMessage
	Dropped   uint64 // messages lost on lossy links (see WithLoss)
	Swallowed uint64 // messages swallowed by unresponsive peers (see SetUnresponsive)
	Aborted   uint64 // messages cut off by a disconnection or Stop, or given up on by their sender mid-send
	// Rejected counts delivered messages whose ReceiveMessage returned an
	// error (the libp2p network counts those against the sender). The
	// virtual network only counts them: it never disconnects for them.
	Rejected uint64
}

func (t *Traffic) add(o *Traffic) {
	t.Sent.add(o.Sent)
	t.Delivered.add(o.Delivered)
	t.Dropped += o.Dropped
	t.Swallowed += o.Swallowed
	t.Aborted += o.Aborted
	t.Rejected += o.Rejected
}

// trafficOf returns the (live, shared) traffic record of the directed pair.
func (vn *VirtualNetwork) trafficOf(from, to peer.ID) *Traffic {
	vn.tmu.Lock()
	defer vn.tmu.Unlock()
	k := [2]peer.ID{from, to}
	t, ok := vn.traffic[k]
	if !ok {
		t = new(Traffic)
		vn.traffic[k] = t
	}
	return t
}

// sumTraffic adds up the directed pairs that match.
func (vn *VirtualNetwork) sumTraffic(match func(from, to peer.ID) bool) Traffic {
	vn.tmu.Lock()
	defer vn.tmu.Unlock()
	var sum Traffic
	for k, t := range vn.traffic {
		if match(k[0], k[1]) {
			sum.add(t)
		}
	}
	return sum
}

// Traffic returns what every link of the network has carried so far.
func (vn *VirtualNetwork) Traffic() Traffic {
	return vn.sumTraffic(func(_, _ peer.ID) bool { return true })
}

// TrafficFrom returns what p has sent so far, to anyone, and what became of
// it.
func (vn *VirtualNetwork) TrafficFrom(p peer.ID) Traffic {
	return vn.sumTraffic(func(from, _ peer.ID) bool { return from == p })
}

// TrafficTo returns what has been sent to p so far, by anyone, and what
// became of it: its Delivered is what p received.
func (vn *VirtualNetwork) TrafficTo(p peer.ID) Traffic {
	return vn.sumTraffic(func(_, to peer.ID) bool { return to == p })
}

// TrafficBetween returns what from has sent to to so far, over all their
// connections, and what became of it.
func (vn *VirtualNetwork) TrafficBetween(from, to peer.ID) Traffic {
	return vn.sumTraffic(func(f, t peer.ID) bool { return f == from && t == to })
}

// Dropped returns how many messages have been lost on lossy links so far
// (see WithLoss), each counted when it would have arrived, as its loss is
// reported to the receiver; Traffic().Dropped is the same count.
func (vn *VirtualNetwork) Dropped() uint64 {
	return vn.Traffic().Dropped
}

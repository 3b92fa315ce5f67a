package wantmanager

import (
	"github.com/gobitswap/bitswap/message"
)

// run is the sender goroutine of connection c to ps.id. Each time it is
// woken it takes what is ready (see take) and sends it, split into messages
// of at most the target size, in order. It asks the peer's version before
// the first send and keeps it for the connection. It exits when c is
// cancelled (disconnection or Close).
func (wm *WantManager) run(ps *peerState, c *conn) {
	defer wm.wg.Done()
	p := ps.id
	var (
		v     message.Version
		known bool
	)
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.wake:
		}
		if !known {
			var err error
			v, err = wm.net.Version(c.ctx, p)
			if err != nil {
				if c.ctx.Err() != nil {
					return
				}
				// Try again at the next wake; the wants stay queued.
				wm.log.Warn("wantmanager: cannot learn protocol version", "peer", p, "err", err)
				continue
			}
			known = true
		}
		b, ok := wm.take(ps, c, v)
		if !ok {
			continue
		}
		if wm.observe != nil {
			wm.observe(p, b.waiting)
		}
		msg := &message.Message{Full: b.full, Wantlist: b.entries}
		for _, part := range msg.Split(v, wm.target) {
			if err := wm.net.SendMessage(c.ctx, p, part); err != nil {
				if c.ctx.Err() != nil {
					return
				}
				wm.log.Warn("wantmanager: send failed; wantlist will be resent in full",
					"peer", p, "err", err)
				wm.sendFailed(ps, c)
				break
			}
			wm.count(part)
			wm.log.Debug("wantmanager: sent", "peer", p, "entries", len(part.Wantlist), "full", part.Full)
		}
	}
}

// count adds a sent message to the counters.
func (wm *WantManager) count(m *message.Message) {
	var cancels uint64
	for i := range m.Wantlist {
		if m.Wantlist[i].Cancel {
			cancels++
		}
	}
	wm.messagesSent.Add(1)
	wm.cancelsSent.Add(cancels)
	wm.wantsSent.Add(uint64(len(m.Wantlist)) - cancels)
}

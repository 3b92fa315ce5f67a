package network

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/gobitswap/bitswap/message"
)

// gatedReceiver blocks every ReceiveMessage until released, recording order.
type gatedReceiver struct {
	gate chan struct{}
	mu   sync.Mutex
	got  []int32
}

func (r *gatedReceiver) ReceiveMessage(_ context.Context, _ peer.ID, m *message.Message) error {
	<-r.gate
	r.mu.Lock()
	r.got = append(r.got, m.PendingBytes)
	r.mu.Unlock()
	return nil
}
func (r *gatedReceiver) ReceiveError(peer.ID, error) {}
func (r *gatedReceiver) PeerConnected(peer.ID)       {}
func (r *gatedReceiver) PeerDisconnected(peer.ID)    {}

// A peer's queued messages are bounded: once maxInboxBytes wait for a slow
// Receiver, reading that peer's streams waits too, and everything is still
// delivered, in order.
func TestInboxAppliesBackpressureAndKeepsOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := NewFromHost(nil)
		r := &gatedReceiver{gate: make(chan struct{})}
		n.receiver = r
		const size = 1 << 20
		const total = maxInboxBytes/size + 3
		var accepted atomic.Int32
		go func() {
			for i := range total {
				if !n.enqueue("p", paddedBody(t, int32(i), size)) {
					return
				}
				accepted.Add(1)
			}
		}()
		synctest.Wait() // everyone is blocked: the Receiver at its gate, the reader on the bound
		// One message is at the Receiver; the queue holds the bound.
		if got, want := int(accepted.Load()), maxInboxBytes/size+1; got != want {
			t.Fatalf("%d messages accepted while the Receiver was stuck, want %d", got, want)
		}
		close(r.gate)
		synctest.Wait()
		n.cancel()
		n.wg.Wait()
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.got) != total {
			t.Fatalf("%d of %d messages delivered", len(r.got), total)
		}
		for i, v := range r.got {
			if int(v) != i {
				t.Fatalf("delivery %d carried message %d: order lost", i, v)
			}
		}
	})
}

// paddedBody is the encoding of a message carrying pending as its
// PendingBytes, padded with an unknown field to size bytes.
func paddedBody(t testing.TB, pending int32, size int) []byte {
	body := (&message.Message{PendingBytes: pending}).Marshal(message.V120)
	const field = 15 // unknown to Bitswap: decoders skip it
	pad := size - len(body) - protowire.SizeTag(field)
	pad -= protowire.SizeVarint(uint64(pad)) // close enough for sizes far from a varint boundary
	body = protowire.AppendTag(body, field, protowire.BytesType)
	body = protowire.AppendBytes(body, make([]byte, pad))
	if len(body) != size {
		t.Fatalf("padded body is %d bytes, want %d", len(body), size)
	}
	return body
}

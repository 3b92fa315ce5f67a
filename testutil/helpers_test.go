package testutil_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/gobitswap/bitswap/message"
	"github.com/libp2p/go-libp2p/core/peer"
)

// recorder is a network.Receiver that writes down every call, naming peers
// by the short names in its names map.
type recorder struct {
	names map[peer.ID]string

	mu     sync.Mutex
	events []string
	msgs   []received
	errs   []error
}

type received struct {
	from string
	at   time.Time
	msg  *message.Message
}

func newRecorder(names map[peer.ID]string) *recorder {
	return &recorder{names: names}
}

func (r *recorder) name(p peer.ID) string {
	if n, ok := r.names[p]; ok {
		return n
	}
	return p.String()
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) ReceiveMessage(ctx context.Context, from peer.ID, msg *message.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf("message from %s", r.name(from)))
	r.msgs = append(r.msgs, received{from: r.name(from), at: time.Now(), msg: msg})
	return nil
}

func (r *recorder) ReceiveError(from peer.ID, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf("error from %s: %v", r.name(from), err))
	r.errs = append(r.errs, err)
}

func (r *recorder) Errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

func (r *recorder) PeerConnected(p peer.ID) { r.add("connected " + r.name(p)) }

func (r *recorder) PeerDisconnected(p peer.ID) { r.add("disconnected " + r.name(p)) }

func (r *recorder) Events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

func (r *recorder) Messages() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.msgs...)
}

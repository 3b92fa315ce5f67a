package network

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	pool "github.com/libp2p/go-buffer-pool"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// Security returns libp2p's default security transports, TLS 1.3 first and
// then Noise, with the TLS transport built by NewBatchedTLS. Pass it to
// libp2p.New in place of the default (any libp2p.Security option replaces
// the default set, so this one keeps Noise):
//
//	h, err := libp2p.New(network.Security())
func Security() libp2p.Option {
	return libp2p.ChainOptions(
		libp2p.Security(libp2ptls.ID, NewBatchedTLS),
		libp2p.Security(noise.ID, noise.New),
	)
}

// BatchedTLS is go-libp2p's TLS 1.3 security transport (/tls/1.0.0, the
// same handshake and the same bytes on the wire) with one change: the
// records of one Write reach the socket in one write system call.
//
// Why: crypto/tls writes every 16 KiB record with a write of its own, and
// yamux writes frames of up to 64 KiB, so a block crosses the kernel four
// times per 64 KiB. On loopback and fast links the system calls, not the
// encryption, are most of a sender's CPU: 1 GiB over one libp2p stream cost
// the two ends about 2.2–2.6 s of CPU with libp2p's TLS and 1.6–2.2 s with
// this one (in one process, two cores). Writes of 1 KiB or less, which fit
// one record, are passed through untouched.
type BatchedTLS struct {
	inner *libp2ptls.Transport
}

var _ sec.SecureTransport = (*BatchedTLS)(nil)

// NewBatchedTLS has the signature libp2p.Security expects of a constructor,
// as libp2ptls.New does.
func NewBatchedTLS(id protocol.ID, key crypto.PrivKey, muxers []tptu.StreamMuxer) (*BatchedTLS, error) {
	t, err := libp2ptls.New(id, key, muxers)
	if err != nil {
		return nil, err
	}
	return &BatchedTLS{inner: t}, nil
}

// ID is the protocol ID of libp2p's TLS transport.
func (t *BatchedTLS) ID() protocol.ID { return t.inner.ID() }

// SecureInbound secures an inbound connection, as libp2p's TLS does.
func (t *BatchedTLS) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	bc := &batchingConn{Conn: insecure}
	sc, err := t.inner.SecureInbound(ctx, bc, p)
	return batched(bc, sc, err)
}

// SecureOutbound secures an outbound connection, as libp2p's TLS does.
func (t *BatchedTLS) SecureOutbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	bc := &batchingConn{Conn: insecure}
	sc, err := t.inner.SecureOutbound(ctx, bc, p)
	return batched(bc, sc, err)
}

// batched wraps the result of a handshake run over bc.
func batched(bc *batchingConn, sc sec.SecureConn, err error) (sec.SecureConn, error) {
	if err != nil {
		return nil, err
	}
	return &batchedConn{SecureConn: sc, raw: bc}, nil
}

// tlsRecord is TLS's largest plaintext record; tlsOverhead bounds what TLS
// 1.3 adds to one (header, content type, AEAD tag).
const (
	tlsRecord   = 16 << 10
	tlsOverhead = 5 + 1 + 16 + 10
	// maxBatch bounds the bytes held back in one write: a longer Write
	// goes out in writes of about this size.
	maxBatch = 256 << 10
	// minBatched: shorter Writes go straight through. crypto/tls starts a
	// connection with records of about one TCP segment (its dynamic record
	// sizing), so even a 16 KiB Write is several records at first.
	minBatched = 1 << 10
)

// batchedConn is the secure conn handed to the muxer. A long Write switches
// the raw conn beneath to batching for the duration of the TLS write, then
// flushes what TLS wrote in one go.
type batchedConn struct {
	sec.SecureConn
	raw     *batchingConn
	writing atomic.Int32 // batched Writes in flight
}

func (c *batchedConn) Write(b []byte) (int, error) {
	if len(b) <= minBatched {
		return c.SecureConn.Write(b)
	}
	c.writing.Add(1)
	defer c.writing.Add(-1)
	c.raw.begin(len(b) + (len(b)/tlsRecord+1)*tlsOverhead)
	n, err := c.SecureConn.Write(b)
	if ferr := c.raw.flush(); err == nil {
		err = ferr
	}
	return n, err
}

// Close breaks a Write in flight rather than wait behind it, as crypto/tls
// does for its own: TLS's close alert would otherwise queue behind a flush
// blocked on a peer that stopped reading, until TLS's 5 s alert deadline.
func (c *batchedConn) Close() error {
	if c.writing.Load() > 0 {
		_ = c.raw.Conn.Close()
	}
	return c.SecureConn.Close()
}

// batchingConn is the raw conn beneath TLS. mu is held across every write
// to the socket, so bytes held back are never overtaken by a later direct
// write (crypto/tls itself serialises its writes: records reach Write in
// the order they are to be sent).
type batchingConn struct {
	net.Conn

	mu       sync.Mutex
	batching bool
	buf      []byte
	err      error // the first failed write while batching, returned by flush
}

// begin starts holding writes back, in a pooled buffer of about hint
// bytes: an idle connection keeps none.
func (c *batchingConn) begin(hint int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = true
	if c.buf == nil {
		c.buf = pool.Get(min(hint, maxBatch))[:0]
	}
}

func (c *batchingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.batching {
		return c.Conn.Write(b)
	}
	if c.err != nil {
		return 0, c.err
	}
	if len(c.buf) > 0 && len(c.buf)+len(b) > maxBatch {
		if _, err := c.Conn.Write(c.buf); err != nil {
			c.err = err
			c.buf = c.buf[:0]
			return 0, err
		}
		c.buf = c.buf[:0]
	}
	c.buf = append(c.buf, b...)
	return len(b), nil
}

// flush writes what was held back, ends batching and returns the buffer to
// the pool.
func (c *batchingConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	err := c.err
	c.err = nil
	if err == nil && len(c.buf) > 0 {
		_, err = c.Conn.Write(c.buf)
	}
	if c.buf != nil {
		pool.Put(c.buf)
		c.buf = nil
	}
	return err
}

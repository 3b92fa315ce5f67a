package network_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gobitswap/bitswap/network"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	p2pnet "github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/sec"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
)

// countingConn counts the writes that reach the "socket".
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// securePair handshakes a BatchedTLS client with a server built by
// newServer over an in-memory pipe and returns both ends and the client's
// raw conn.
func securePair(t *testing.T, newServer func(key crypto.PrivKey) sec.SecureTransport) (client, server sec.SecureConn, raw *countingConn) {
	t.Helper()
	ckey, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	skey, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sid, err := peer.IDFromPrivateKey(skey)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := network.NewBatchedTLS(libp2ptls.ID, ckey, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := newServer(skey)
	a, b := net.Pipe()
	raw = &countingConn{Conn: a}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var serr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		server, serr = st.SecureInbound(ctx, b, "")
	}()
	client, err = ct.SecureOutbound(ctx, raw, sid)
	<-done
	if err != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", err, serr)
	}
	// Closing the pipe first: a TLS Close would otherwise wait 5 s to send
	// its alert to a peer that no longer reads.
	t.Cleanup(func() { _ = a.Close(); _ = b.Close(); _ = client.Close(); _ = server.Close() })
	return client, server, raw
}

func batchedServer(t *testing.T) func(crypto.PrivKey) sec.SecureTransport {
	return func(key crypto.PrivKey) sec.SecureTransport {
		st, err := network.NewBatchedTLS(libp2ptls.ID, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
}

func plainServer(t *testing.T) func(crypto.PrivKey) sec.SecureTransport {
	return func(key crypto.PrivKey) sec.SecureTransport {
		st, err := libp2ptls.New(libp2ptls.ID, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// A yamux frame of 64 KiB is four TLS records; they reach the socket in one
// write, and the peer, running libp2p's own TLS, reads exactly the bytes.
func TestBatchedTLSWritesOneFrameInOneSyscall(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server func(crypto.PrivKey) sec.SecureTransport
	}{{"to libp2p's TLS", plainServer(t)}, {"to BatchedTLS", batchedServer(t)}} {
		t.Run(tc.name, func(t *testing.T) {
			client, server, raw := securePair(t, tc.server)
			// Up to 256 KiB of records go out in one write (a 16 KiB Write is
			// several records at a connection's start); 1 MiB is 64 full
			// records with their overhead: four full batches and the rest.
			for _, tc := range []struct{ size, writes int }{{100, 1}, {16 << 10, 1}, {64 << 10, 1}, {1 << 20, 5}} {
				size := tc.size
				data := randomBytes(t, size)
				got := make(chan []byte)
				go func() {
					b := make([]byte, size)
					_, _ = io.ReadFull(server, b)
					got <- b
				}()
				before := raw.writes.Load()
				if n, err := client.Write(data); err != nil || n != size {
					t.Fatalf("Write(%d bytes) = %d, %v", size, n, err)
				}
				writes := raw.writes.Load() - before
				if b := <-got; !bytes.Equal(b, data) {
					t.Fatalf("%d bytes: the peer read other bytes", size)
				}
				if writes != int64(tc.writes) {
					t.Errorf("Write of %d bytes reached the socket in %d writes, want %d", size, writes, tc.writes)
				}
			}
			// The other direction is plain TLS or BatchedTLS: it reads what
			// the client sent and answers.
			data := randomBytes(t, 200<<10)
			go func() { _, _ = server.Write(data) }()
			b := make([]byte, len(data))
			if _, err := io.ReadFull(client, b); err != nil || !bytes.Equal(b, data) {
				t.Fatalf("reading the server's 200 KiB: %v", err)
			}
		})
	}
}

// Writers racing on one conn (yamux's send loop, TLS alerts on close) never
// interleave inside one Write and never reorder what was held back.
func TestBatchedTLSConcurrentWriters(t *testing.T) {
	client, server, _ := securePair(t, plainServer(t))
	const writers, perWriter = 4, 50
	sizes := []int{8, 20 << 10, 64 << 10, 300 << 10}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				size := sizes[(w+i)%len(sizes)]
				msg := make([]byte, size)
				binary.BigEndian.PutUint32(msg, uint32(size))
				msg[4], msg[5] = byte(w), byte(i)
				for j := 6; j < size; j++ {
					msg[j] = byte(w*31 + i + j)
				}
				if _, err := client.Write(msg); err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
			}
		}()
	}
	next := make([]int, writers)
	for range writers * perWriter {
		head := make([]byte, 6)
		if _, err := io.ReadFull(server, head); err != nil {
			t.Fatal(err)
		}
		size := int(binary.BigEndian.Uint32(head))
		w, i := int(head[4]), int(head[5])
		if w >= writers || i != next[w] || size != sizes[(w+i)%len(sizes)] {
			t.Fatalf("message header %v out of order (expected writer %d's message %d)", head, w, next[min(w, writers-1)])
		}
		next[w]++
		body := make([]byte, size-6)
		if _, err := io.ReadFull(server, body); err != nil {
			t.Fatal(err)
		}
		for j, c := range body {
			if c != byte(w*31+i+j+6) {
				t.Fatalf("writer %d message %d: byte %d is wrong: writes interleaved", w, i, j+6)
			}
		}
	}
	wg.Wait()
}

// Hosts built with network.Security talk to hosts on libp2p's defaults,
// over TCP, in both directions.
func TestSecurityOptionInteroperatesWithDefaultHosts(t *testing.T) {
	ours, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), network.Security())
	if err != nil {
		t.Fatal(err)
	}
	defer ours.Close()
	theirs, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	data := randomBytes(t, 3<<20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, pair := range [][2]string{{"ours", "theirs"}, {"theirs", "ours"}} {
		from, to := ours, theirs
		if pair[0] == "theirs" {
			from, to = theirs, ours
		}
		to.SetStreamHandler("/echo", func(s p2pnet.Stream) {
			b, err := io.ReadAll(s)
			if err == nil {
				_, _ = s.Write(b)
			}
			_ = s.Close()
		})
		if err := from.Connect(ctx, peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
			t.Fatal(err)
		}
		s, err := from.NewStream(ctx, to.ID(), "/echo")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Write(data); err != nil {
			t.Fatal(err)
		}
		_ = s.CloseWrite()
		b, err := io.ReadAll(s)
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("%s → %s: echo of 3 MiB came back wrong (%d bytes, %v)", pair[0], pair[1], len(b), err)
		}
		sec := from.Network().ConnsToPeer(to.ID())[0].ConnState().Security
		if sec != libp2ptls.ID {
			t.Errorf("%s → %s: security %s, want %s", pair[0], pair[1], sec, libp2ptls.ID)
		}
	}
}

// Closing a conn whose batched write is stuck on a peer that stopped
// reading breaks the write at once, as crypto/tls does for a Write in
// flight; it does not wait out TLS's 5 s deadline for its close alert.
// (Without that, Close waits on the conn's mutex, which synctest does not
// count as durably blocked: the test then hangs until go test's timeout.)
func TestBatchedTLSCloseBreaksAStuckWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client, _, _ := securePair(t, plainServer(t))
		done := make(chan error, 1)
		go func() {
			_, err := client.Write(make([]byte, 64<<10)) // one batch, its flush stuck: nobody reads
			done <- err
		}()
		synctest.Wait()
		start := time.Now()
		_ = client.Close()
		if took := time.Since(start); took != 0 {
			t.Errorf("Close took %v with a write stuck, want at once", took)
		}
		if err := <-done; err == nil {
			t.Error("the stuck write succeeded")
		}
	})
}

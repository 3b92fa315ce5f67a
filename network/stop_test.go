package network

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gobitswap/bitswap/message"
	blocks "github.com/ipfs/go-block-format"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"go.uber.org/goleak"
)

func TestStopEndsEverythingAndLeaksNothing(t *testing.T) {
	before := goleak.IgnoreCurrent()

	func() {
		hosts := make([]host.Host, 3)
		for i := range hosts {
			h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"))
			if err != nil {
				t.Fatal(err)
			}
			hosts[i] = h
		}
		defer func() {
			for _, h := range hosts {
				_ = h.Close()
			}
		}()
		ha, hb, stuck := hosts[0], hosts[1], hosts[2]
		a, ra := NewFromHost(ha, WithSendTimeout(time.Minute, 0)), newRecorder()
		b, rb := NewFromHost(hb), newRecorder()
		a.Start(ra)
		b.Start(rb)
		connect(t, ha, hb)
		connect(t, ha, stuck)
		ra.waitFor(t, 1, "connected")
		rb.waitFor(t, 1, "connected")

		// Traffic both ways leaves a read loop running on each side and a
		// sender stream open on each side.
		send(t, &node{net: a}, hb.ID(), &message.Message{})
		send(t, &node{net: b}, ha.ID(), &message.Message{})
		ra.waitFor(t, 1, "msg")
		rb.waitFor(t, 1, "msg")
		// A send to a peer that never reads blocks (its timeout is a minute).
		held := make(chan struct{})
		defer close(held)
		stuck.SetStreamHandler(ProtocolBitswap, func(s network.Stream) { <-held; _ = s.Reset() })
		big := &message.Message{Blocks: []blocks.Block{blocks.NewBlock(bytes.Repeat([]byte{3}, 2<<20))}}
		blocked := make(chan error, 1)
		go func() { blocked <- a.SendMessage(context.Background(), stuck.ID(), big) }()
		time.Sleep(200 * time.Millisecond)

		// The checks below would see our goroutines if they outlived Stop.
		if len(ourGoroutines()) == 0 {
			t.Fatal("no goroutines of this package found while running: the leak check is blind")
		}
		if goleak.Find(before) == nil {
			t.Fatal("goleak finds nothing while the networks run: the leak check is blind")
		}

		start := time.Now()
		a.Stop()
		b.Stop()
		ra.stopped.Store(true)
		rb.stopped.Store(true)
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("Stop took %v", took)
		}
		select {
		case err := <-blocked:
			if !errors.Is(err, ErrStopped) {
				t.Errorf("blocked SendMessage returned %v, want ErrStopped", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("Stop did not end a blocked SendMessage")
		}
		// Hosts still running, our goroutines all gone.
		if g := ourGoroutines(); len(g) > 0 {
			t.Errorf("goroutines left after Stop:\n%s", strings.Join(g, "\n\n"))
		}
		// After Stop: no more Receiver calls, and the network refuses work.
		if err := a.SendMessage(context.Background(), hb.ID(), &message.Message{}); !errors.Is(err, ErrStopped) {
			t.Errorf("SendMessage after Stop = %v, want ErrStopped", err)
		}
		if _, err := a.Version(context.Background(), hb.ID()); !errors.Is(err, ErrStopped) {
			t.Errorf("Version after Stop = %v, want ErrStopped", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if s, err := hb.NewStream(ctx, ha.ID(), ProtocolBitswap); err == nil {
			_, _ = s.Write(message.AppendFrame(nil, &message.Message{}, message.V120))
			_, _ = s.Read(make([]byte, 1)) // wait for the refusal
		}
		_ = hb.Network().ClosePeer(ha.ID())
		time.Sleep(100 * time.Millisecond)
		if n := ra.late.Load() + rb.late.Load(); n > 0 {
			t.Errorf("%d Receiver calls after Stop", n)
		}
		a.Stop() // a second Stop is harmless
	}()

	// Once the hosts are closed too, nothing started during the test may
	// remain: neither ours nor libp2p's.
	goleak.VerifyNone(t, before)
}

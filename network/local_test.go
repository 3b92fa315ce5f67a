package network

import "testing"

// Peers connected on loopback are local; a peer not connected is not.
func TestLocalIsLoopbackOrLANConnections(t *testing.T) {
	a, b := connectedPair(t, nil, nil)
	if !a.net.Local(b.h.ID()) || !b.net.Local(a.h.ID()) {
		t.Fatal("peers connected on 127.0.0.1 are not local")
	}
	c := newNode(t)
	if a.net.Local(c.h.ID()) {
		t.Fatal("a peer not connected is local")
	}
}

package testutil_test

import (
	"testing"

	"github.com/gobitswap/bitswap/testutil"
)

// Every peer of the virtual network is local to every other, as on
// loopback, until one is marked remote: then it is remote to all, and all
// to it.
func TestSetRemote(t *testing.T) {
	vn := testutil.NewVirtualNetwork()
	defer vn.Close()
	a, b, c := vn.NewPeer(), vn.NewPeer(), vn.NewPeer()
	if !a.Local(b.Self()) || !b.Local(a.Self()) {
		t.Fatal("peers of the virtual network are not local")
	}
	vn.SetRemote(b.Self(), true)
	if a.Local(b.Self()) || b.Local(a.Self()) || b.Local(c.Self()) {
		t.Fatal("a remote peer is local to someone")
	}
	if !a.Local(c.Self()) {
		t.Fatal("two peers not marked remote are not local")
	}
	vn.SetRemote(b.Self(), false)
	if !a.Local(b.Self()) {
		t.Fatal("a peer no longer remote is not local")
	}
}

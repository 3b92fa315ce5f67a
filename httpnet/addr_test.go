package httpnet

import (
	"net/url"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

var httpURL = url.URL{Scheme: "https", Host: "provider.example"}

func TestPseudoPeerID(t *testing.T) {
	id := func(s string) peer.ID {
		u, err := ParseURL(s)
		if err != nil {
			t.Fatal(err)
		}
		return PeerIDFromURL(u)
	}
	a := id("https://Gateway.Example")
	for _, s := range []string{"https://gateway.example:443", "https://gateway.example/", "HTTPS://GATEWAY.EXAMPLE:443/"} {
		if id(s) != a {
			t.Fatalf("%s: %s, want %s", s, id(s), a)
		}
	}
	for _, s := range []string{"http://gateway.example", "https://gateway.example:8443", "https://other.example", "https://gateway.example/base"} {
		if id(s) == a {
			t.Fatalf("%s: same ID", s)
		}
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	// The ID is fixed: the same on every run and machine.
	if got := a.String(); got != id("https://gateway.example").String() || len(got) < 40 {
		t.Fatal(got)
	}
	if _, err := peer.Decode(a.String()); err != nil {
		t.Fatal(err)
	}
}

func TestURLOfMultiaddr(t *testing.T) {
	pid := PeerIDFromURL(&httpURL)
	for _, tc := range []struct{ addr, url string }{
		{"/ip4/127.0.0.1/tcp/8080/http", "http://127.0.0.1:8080"},
		{"/ip4/1.2.3.4/tcp/443/tls/http", "https://1.2.3.4:443"},
		{"/dns/gw.example/tcp/443/https", "https://gw.example:443"},
		{"/dns4/gw.example/tcp/443/tls/sni/gw.example/http", "https://gw.example:443"},
		{"/ip6/::1/tcp/80/http", "http://[::1]:80"},
		{"/dns/gw.example/tcp/443/tls/http/p2p/" + pid.String(), "https://gw.example:443"},
	} {
		u, id, err := URLOf(ma.StringCast(tc.addr))
		if err != nil {
			t.Fatalf("%s: %v", tc.addr, err)
		}
		if u.String() != tc.url {
			t.Fatalf("%s: %s, want %s", tc.addr, u, tc.url)
		}
		if (id != "") != strings.HasSuffix(tc.addr, pid.String()) {
			t.Fatalf("%s: id %q", tc.addr, id)
		}
	}
	for _, bad := range []string{"/ip4/1.2.3.4/tcp/4001", "/dns/gw.example/http", "/ip4/1.2.3.4/udp/1/quic-v1/http"} {
		if _, _, err := URLOf(ma.StringCast(bad)); err == nil {
			t.Fatalf("%s parsed", bad)
		}
	}
}

func TestAddrInfoFromString(t *testing.T) {
	ai, ok, err := AddrInfoFromString("https://gw.example")
	if err != nil || !ok || ai.ID != PeerIDFromURL(&url.URL{Scheme: "https", Host: "gw.example"}) || ai.Addrs[0].String() != "/dns/gw.example/tcp/443/tls/http" {
		t.Fatalf("%v %v %v", ai, ok, err)
	}
	ai, ok, err = AddrInfoFromString("/ip4/127.0.0.1/tcp/8080/http")
	if err != nil || !ok || ai.ID != PeerIDFromURL(&url.URL{Scheme: "http", Host: "127.0.0.1:8080"}) {
		t.Fatalf("%v %v %v", ai, ok, err)
	}
	pid := PeerIDFromURL(&httpURL)
	ai, ok, err = AddrInfoFromString("/ip4/127.0.0.1/tcp/8080/tls/http/p2p/" + pid.String())
	if err != nil || !ok || ai.ID != pid || ai.Addrs[0].String() != "/ip4/127.0.0.1/tcp/8080/tls/http" {
		t.Fatalf("%v %v %v", ai, ok, err)
	}
	if _, ok, err := AddrInfoFromString("/ip4/127.0.0.1/tcp/4001/p2p/" + pid.String()); ok || err != nil {
		t.Fatalf("libp2p address taken as HTTP: %v %v", ok, err)
	}
	if _, ok, err := AddrInfoFromString("ftp://x"); ok || err != nil {
		t.Fatalf("%v %v", ok, err)
	}
	if _, ok, err := AddrInfoFromString("https://"); !ok || err == nil {
		t.Fatalf("%v %v", ok, err)
	}
}

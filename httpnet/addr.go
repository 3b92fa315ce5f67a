package httpnet

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	mh "github.com/multiformats/go-multihash"
)

// ErrNoHTTPAddresses is returned by Connect when an AddrInfo has no HTTP
// address this network may use (none at all, or all denied by the host
// lists).
var ErrNoHTTPAddresses = errors.New("httpnet: no usable HTTP address")

// pseudoIDDomain separates pseudo peer IDs from any other use of SHA-256.
const pseudoIDDomain = "gobitswap/httpnet/pseudo-peer-id/v1\x00"

// PeerIDFromURL returns the pseudo peer ID of an HTTP endpoint that has no
// peer ID of its own (a bare https://host URL): the sha2-256 multihash of
// a fixed domain string followed by the endpoint's canonical origin
// (scheme://host:port, lower-cased, the default port written out) and its
// base path without a trailing slash. So the same endpoint always gets the
// same ID, on every run and every machine, and differs from every real
// libp2p peer ID (which hashes a public key, or is one inline) except by a
// hash collision. Only the origin and path are used: query, fragment and
// user info are ignored.
func PeerIDFromURL(u *url.URL) peer.ID {
	sum := sha256.Sum256([]byte(pseudoIDDomain + canonical(u)))
	m, err := mh.Encode(sum[:], mh.SHA2_256)
	if err != nil {
		panic(err) // sha2-256 with 32 bytes always encodes
	}
	return peer.ID(m)
}

// canonical is the string a pseudo peer ID is derived from.
func canonical(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if port == "" {
		port = "80"
		if scheme == "https" {
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port) + strings.TrimRight(u.EscapedPath(), "/")
}

// ParseURL parses an endpoint URL, http:// or https:// with a host, an
// optional port and an optional base path (requests go to
// base/ipfs/{cid}); no query or fragment.
func ParseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%q: no host", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("%q: bad port", s)
		}
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%q: no query, fragment or user info allowed", s)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// AddrInfoFromURL returns the AddrInfo of the endpoint at s (see
// ParseURL): its pseudo peer ID (PeerIDFromURL) and the multiaddr of its
// origin (/dns/host/tcp/443/tls/http, or /ip4, /ip6 for an IP address;
// /http without /tls for http://). A base path is not expressible in the
// multiaddr; use the URL itself (Network.ConnectURL) for such endpoints.
func AddrInfoFromURL(s string) (peer.AddrInfo, error) {
	u, err := ParseURL(s)
	if err != nil {
		return peer.AddrInfo{}, err
	}
	a, err := multiaddrOf(u)
	if err != nil {
		return peer.AddrInfo{}, err
	}
	return peer.AddrInfo{ID: PeerIDFromURL(u), Addrs: []ma.Multiaddr{a}}, nil
}

// multiaddrOf is the multiaddr of u's origin.
func multiaddrOf(u *url.URL) (ma.Multiaddr, error) {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	proto := "dns"
	if ip := net.ParseIP(host); ip != nil {
		proto = "ip6"
		if ip.To4() != nil {
			proto = "ip4"
		}
	}
	s := "/" + proto + "/" + host + "/tcp/" + port
	if u.Scheme == "https" {
		s += "/tls/http"
	} else {
		s += "/http"
	}
	return ma.NewMultiaddr(s)
}

// IsHTTPAddr reports whether a is an HTTP address: one with an /http or
// /https component (with or without /tls, /sni, /p2p).
func IsHTTPAddr(a ma.Multiaddr) bool {
	for _, c := range a {
		switch c.Protocol().Code {
		case ma.P_HTTP, ma.P_HTTPS:
			return true
		}
	}
	return false
}

// SplitAddrs separates HTTP addresses from the others.
func SplitAddrs(addrs []ma.Multiaddr) (httpAddrs, others []ma.Multiaddr) {
	for _, a := range addrs {
		if IsHTTPAddr(a) {
			httpAddrs = append(httpAddrs, a)
		} else {
			others = append(others, a)
		}
	}
	return httpAddrs, others
}

// URLOf returns the endpoint URL of an HTTP multiaddr:
// /ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT followed by /http, /tls/http,
// /tls/sni/NAME/http or /https, optionally ending in /p2p/ID (returned
// separately; "" when absent). An /http-path component becomes the base
// path.
func URLOf(a ma.Multiaddr) (*url.URL, peer.ID, error) {
	var host, port, path string
	var tls, isHTTP bool
	var id peer.ID
	for _, c := range a {
		switch c.Protocol().Code {
		case ma.P_IP4, ma.P_IP6, ma.P_DNS, ma.P_DNS4, ma.P_DNS6:
			if host != "" {
				return nil, "", fmt.Errorf("%s: two hosts", a)
			}
			host = c.Value()
		case ma.P_TCP:
			port = c.Value()
		case ma.P_TLS:
			tls = true
		case ma.P_SNI:
			// The name to verify; with a DNS host it is the host. An IP
			// host with an SNI is dialled by IP and verified by name,
			// which net/http cannot express simply: use the name.
			host = c.Value()
		case ma.P_HTTP:
			isHTTP = true
		case ma.P_HTTPS:
			isHTTP, tls = true, true
		case ma.P_HTTP_PATH:
			path = "/" + strings.TrimLeft(c.Value(), "/")
		case ma.P_P2P:
			pid, err := peer.IDFromBytes(c.RawValue())
			if err != nil {
				return nil, "", fmt.Errorf("%s: bad /p2p: %w", a, err)
			}
			id = pid
		default:
			return nil, "", fmt.Errorf("%s: unsupported component /%s in an HTTP address", a, c.Protocol().Name)
		}
	}
	if !isHTTP {
		return nil, "", fmt.Errorf("%s: not an HTTP address", a)
	}
	if host == "" || port == "" {
		return nil, "", fmt.Errorf("%s: an HTTP address needs a host and a /tcp port", a)
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}
	if path != "" {
		u.Path = strings.TrimRight(path, "/")
	}
	return u, id, nil
}

// AddrInfoFromString parses a --peer argument naming an HTTP endpoint: an
// http:// or https:// URL (pseudo peer ID, see PeerIDFromURL) or an HTTP
// multiaddr (URLOf), with or without /p2p/ID (without: the pseudo peer ID
// of its URL). ok is false when s is neither a URL nor an HTTP multiaddr
// (a libp2p peer, say), in which case err is nil.
func AddrInfoFromString(s string) (ai peer.AddrInfo, ok bool, err error) {
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		ai, err := AddrInfoFromURL(s)
		return ai, true, err
	}
	a, err := ma.NewMultiaddr(s)
	if err != nil || !IsHTTPAddr(a) {
		return peer.AddrInfo{}, false, nil
	}
	u, id, err := URLOf(a)
	if err != nil {
		return peer.AddrInfo{}, true, err
	}
	if id == "" {
		id = PeerIDFromURL(u)
	}
	// The address without /p2p, as AddrInfo keeps it.
	bare, _ := ma.SplitFunc(a, func(c ma.Component) bool { return c.Protocol().Code == ma.P_P2P })
	return peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{bare}}, true, nil
}

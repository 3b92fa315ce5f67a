// Package interop proves wire compatibility: its tests run this module's
// Bitswap against github.com/ipfs/boxo's bitswap over real libp2p hosts on
// 127.0.0.1, in both directions and on every protocol version. It is a
// separate Go module so that the library itself never depends on boxo.
package interop

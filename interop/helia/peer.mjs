// A Helia node on 127.0.0.1 (TCP, Noise, yamux: Helia's own transports),
// driven by interop/helia_test.go:
//
//   node --import ./polyfill.mjs peer.mjs serve FILE
//     imports FILE as a UnixFS file (CIDv1, raw leaves, Helia's 1 MiB
//     chunks), prints "cid: <cid>" and "listening: <multiaddr>", and serves
//     it over Bitswap until killed;
//   node --import ./polyfill.mjs peer.mjs get MULTIADDR CID
//     dials MULTIADDR, fetches the UnixFS file CID over Bitswap and prints
//     "got <bytes> bytes sha256 <hex>".
import { createHeliaLight } from 'helia'
import { withLibp2pLight } from '@helia/libp2p'
import { withBitswap } from '@helia/bitswap'
import { unixfs } from '@helia/unixfs'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { createReadStream } from 'node:fs'
import { createHash } from 'node:crypto'

const [mode, a, b] = process.argv.slice(2)
const helia = withBitswap(withLibp2pLight(createHeliaLight(), {
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() }
}))
await helia.start()
const fs = unixfs(helia)
if (mode === 'serve') {
  const cid = await fs.addByteStream(createReadStream(a), { cidVersion: 1, rawLeaves: true })
  console.log('cid: ' + cid.toString())
  for (const ma of helia.libp2p.getMultiaddrs()) {
    console.log('listening: ' + ma.toString())
  }
} else if (mode === 'get') {
  await helia.libp2p.dial(multiaddr(a))
  const h = createHash('sha256')
  let n = 0
  for await (const buf of fs.cat(CID.parse(b), { signal: AbortSignal.timeout(60000) })) {
    h.update(buf)
    n += buf.length
  }
  console.log(`got ${n} bytes sha256 ${h.digest('hex')}`)
  await helia.stop()
  process.exit(0)
} else {
  console.error('usage: peer.mjs serve FILE | get MULTIADDR CID')
  process.exit(1)
}

// Helia 7 wants Node.js 22; this machine has 20. Promise.withResolvers is
// the one missing piece it uses (package.json also pins undici 6, whose
// newer versions need Node 22 zstd).
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

// A real PLC directory and PDS from @atproto/dev-env, driven over stdin/stdout
// by herald's interop test (crates/herald/tests/atproto_pds.rs).
//
// Run with Node 22 (the PDS requires it):
//
//   node pds.mjs <install dir of setup.sh>     (or HERALD_TEST_ATPROTO_MODULES)
//
// Protocol: one JSON object per line. On start it prints
//   {"ready":true,"pds":"http://localhost:<port>","plc":"http://localhost:<port>"}
// then answers every command line with exactly one line, in order:
//   {"ok":true,...} or {"ok":false,"error":"<text>"}.
// Every command may carry an "id", echoed in its answer.
//
//   {"cmd":"createAccount","handle":"alice.test"}
//       -> {"did","handle","accessJwt"}
//   {"cmd":"xrpc","method":"<nsid>","accessJwt":"...","body":{...}}        POST
//   {"cmd":"xrpc","method":"<nsid>","accessJwt":"...","params":{...}}      GET
//       a call to the PDS as the user -> {"status":<http>,"body":<JSON or text>}
//   {"cmd":"serviceAuth","accessJwt":"...","aud":"<did>","lxm":"<nsid>"}
//       com.atproto.server.getServiceAuth on the PDS -> {"token"}
//   {"cmd":"mintToken","alg":"ES256K"|"ES256","aud":"<did>","lxm":"<nsid>"}
//       createServiceJwt from @atproto/xrpc-server, signed by a key of that
//       curve whose did:plc (created on the test PLC on first use, one per
//       curve) names it as #atproto -> {"iss","token"}
//
// Everything listens on 127.0.0.1 only. On stdin EOF the network is closed,
// its temporary files are removed and the process exits 0. Logs go to stderr
// (LOG_ENABLED=true adds the PDS's and PLC's request logs); stdout carries
// the protocol alone.

import fs from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { pathToFileURL } from 'node:url'

// stdout is the protocol: anything a library prints goes to stderr. The
// PDS's and PLC's pino loggers (off unless LOG_ENABLED=true) write to fd 1
// themselves unless given LOG_DESTINATION; both read it when loaded, below.
const writeStdout = process.stdout.write.bind(process.stdout)
const send = (obj) => writeStdout(JSON.stringify(obj) + '\n')
process.stdout.write = process.stderr.write.bind(process.stderr)
console.log = console.error
console.info = console.error
console.debug = console.error
process.env.LOG_DESTINATION ||= '/dev/stderr'

const installDir = process.argv[2] || process.env.HERALD_TEST_ATPROTO_MODULES
if (!installDir) {
  console.error('usage: node pds.mjs <install dir holding node_modules>')
  process.exit(2)
}
if (!fs.existsSync(path.join(installDir, 'node_modules', '@atproto', 'dev-env'))) {
  console.error(`no node_modules/@atproto/dev-env in ${installDir}: run interop/atproto/setup.sh`)
  process.exit(2)
}
const major = Number(process.versions.node.split('.')[0])
if (major < 22) {
  console.error(`@atproto/dev-env needs Node >= 22; this is ${process.version}`)
  process.exit(2)
}

// Bare specifiers resolve from the install dir, not from this file's folder
// (ESM ignores NODE_PATH). Every package used here exports a "default" entry.
const requireFromInstall = createRequire(path.join(path.resolve(installDir), 'package.json'))
const load = (name) => import(pathToFileURL(requireFromInstall.resolve(name)).href)

// Loopback only: the PLC and PDS servers call listen(port) with no host,
// which would bind every interface.
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  const [first] = args
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1')
  } else if (first && typeof first === 'object' && first.path === undefined && !first.host) {
    args[0] = { ...first, host: '127.0.0.1' }
  }
  return listen.apply(this, args)
}

// A free loopback port, chosen here so that dev-env's own port finder (which
// probes every interface) never runs.
const freePort = () =>
  new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    listen.call(s, 0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })

// The PDS keeps its SQLite files and blobs under os.tmpdir(): give it a
// private one, removed on exit.
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-pds-'))
process.env.TMPDIR = scratch
const removeScratch = () => fs.rmSync(scratch, { recursive: true, force: true })
process.once('exit', removeScratch)

const { TestNetworkNoAppView } = await load('@atproto/dev-env')
const { Secp256k1Keypair, P256Keypair } = await load('@atproto/crypto')
const { createServiceJwt } = await load('@atproto/xrpc-server')
const plcLib = await load('@did-plc/lib')
const PlcClient = plcLib.Client ?? plcLib.default?.Client

// TestPds already configures bskyAppView (did:example:invalid at
// https://appview.invalid), which is what makes the PDS serve registerPush
// itself and forward it to the DID document's #bsky_notif of any other
// serviceDid. disableSsrfProtection (also set by TestPds) lets it fetch
// did:web:localhost%3A<port> over plain http.
const network = await TestNetworkNoAppView.create({
  plc: { port: await freePort() },
  pds: { port: await freePort() },
})
const pdsUrl = network.pds.url
const plcUrl = network.plc.url

async function call(method, accessJwt, { body, params } = {}) {
  const url = new URL(`/xrpc/${method}`, pdsUrl)
  const init = { headers: {} }
  if (accessJwt) init.headers.authorization = `Bearer ${accessJwt}`
  if (params) {
    for (const [k, v] of Object.entries(params)) url.searchParams.set(k, String(v))
  }
  if (body !== undefined || !params) {
    init.method = 'POST'
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body ?? {})
  }
  const res = await fetch(url, init)
  const text = await res.text()
  let parsed = text
  try {
    parsed = text === '' ? null : JSON.parse(text)
  } catch {}
  return { status: res.status, body: parsed }
}

async function expectOk(method, accessJwt, req) {
  const r = await call(method, accessJwt, req)
  if (r.status !== 200) throw new Error(`${method}: HTTP ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

const issuers = new Map()
async function issuer(alg) {
  if (issuers.has(alg)) return issuers.get(alg)
  const Keypair = { ES256K: Secp256k1Keypair, ES256: P256Keypair }[alg]
  if (!Keypair) throw new Error(`alg must be ES256K or ES256, not ${JSON.stringify(alg)}`)
  const keypair = await Keypair.create()
  const did = await new PlcClient(plcUrl).createDid({
    signingKey: keypair.did(),
    rotationKeys: [keypair.did()],
    handle: `issuer-${alg.toLowerCase()}.test`,
    pds: pdsUrl,
    signer: keypair,
  })
  const entry = { did, keypair }
  issuers.set(alg, entry)
  return entry
}

const commands = {
  async createAccount({ handle, password }) {
    const pw = password ?? 'interop-password'
    const body = await expectOk('com.atproto.server.createAccount', null, {
      body: { handle, email: `${handle}@mail.invalid`, password: pw },
    })
    return { did: body.did, handle: body.handle, accessJwt: body.accessJwt }
  },
  async xrpc({ method, accessJwt, body, params }) {
    return call(method, accessJwt, { body, params })
  },
  async serviceAuth({ accessJwt, aud, lxm, exp }) {
    const params = { aud }
    if (lxm) params.lxm = lxm
    if (exp) params.exp = exp
    const body = await expectOk('com.atproto.server.getServiceAuth', accessJwt, { params })
    return { token: body.token }
  },
  async mintToken({ alg, aud, lxm }) {
    const { did, keypair } = await issuer(alg)
    const token = await createServiceJwt({ iss: did, aud, lxm, keypair })
    return { iss: did, token }
  },
}

send({ ready: true, pds: pdsUrl, plc: plcUrl })

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of rl) {
  if (line.trim() === '') continue
  let req
  try {
    req = JSON.parse(line)
  } catch (err) {
    send({ ok: false, error: `not JSON: ${err.message}` })
    continue
  }
  const id = req.id
  const handler = Object.hasOwn(commands, req.cmd) ? commands[req.cmd] : undefined
  if (!handler) {
    send({ id, ok: false, error: `unknown cmd ${JSON.stringify(req.cmd)}` })
    continue
  }
  try {
    send({ id, ok: true, ...(await handler(req)) })
  } catch (err) {
    console.error(err)
    send({ id, ok: false, error: String(err?.stack ?? err) })
  }
}

// stdin closed: shut down.
try {
  await network.close()
} catch (err) {
  console.error('closing the network:', err)
  process.exitCode = 1
}
removeScratch()
process.exit()

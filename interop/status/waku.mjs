// Waku v1 payloads (26/WAKU2-PAYLOAD) sealed and opened by js-waku's
// @waku/message-encryption, for herald's interop test
// (crates/herald-status/tests/interop_vectors.rs): what herald seals must
// open here with herald's signature verified, and what this seals must open
// in herald with this signer recovered.
//
//   node waku.mjs <install dir of setup.sh> < batch.json
//
// stdin holds a JSON array of operations, all bytes as lowercase hex:
//   {"op":"seal_asymmetric","recipient":"<65-byte key>","signer":"<32-byte secret>","data":"…"}
//   {"op":"seal_symmetric","key":"<32 bytes>","signer":"<32-byte secret>","data":"…"}
//   {"op":"open_asymmetric","secret":"<32 bytes>","payload":"…","signer":"<65-byte key>"}
//   {"op":"open_symmetric","key":"<32 bytes>","payload":"…","signer":"<65-byte key>"}
// Each goes through the package's public encoders and decoders (the ones an
// app uses: createEncoder(…).toProtoObj, createDecoder(…).fromProtoObj).
// stdout gets a JSON array with one result per operation, in order:
//   seal: {"payload":"…","version":1}
//   open: {"opened":false} when the decoder refused the message, else
//         {"opened":true,"data":"…","signer":"<65-byte key or null>","verified":<bool>}
//         where `verified` is verifySignature(<the op's signer>).
// Errors go to stderr with a non-zero exit.

import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const installDir = process.argv[2] || process.env.HERALD_TEST_STATUS_MODULES
if (!installDir) {
  console.error('usage: node waku.mjs <install dir of interop/status/setup.sh> < batch.json')
  process.exit(2)
}

// Each subpath through the package's `exports`, from the install dir.
const packageDir = path.join(path.resolve(installDir), 'node_modules', '@waku', 'message-encryption')
const manifest = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8'))
const load = (subpath) =>
  import(pathToFileURL(path.join(packageDir, manifest.exports[subpath].import)).href)
const [ecies, symmetric] = await Promise.all(['./ecies', './symmetric'].map(load))

const PUBSUB_TOPIC = '/waku/2/rs/16/32'
const CONTENT_TOPIC = '/waku/1/0x01020304/rfc26'
// Encoders and decoders only read the routing info's pubsub topic.
const routingInfo = { clusterId: 16, shardId: 32, pubsubTopic: PUBSUB_TOPIC }

const fromHex = (hex) => Uint8Array.from(Buffer.from(hex, 'hex'))
const toHex = (bytes) => Buffer.from(bytes).toString('hex')

async function seal(encoder, data) {
  const proto = await encoder.toProtoObj({ payload: fromHex(data) })
  return { payload: toHex(proto.payload), version: proto.version }
}

async function open(decoder, op) {
  const proto = {
    payload: fromHex(op.payload),
    contentTopic: CONTENT_TOPIC,
    version: 1,
    timestamp: BigInt(Date.now()) * 1000000n,
    meta: undefined,
    rateLimitProof: undefined,
    ephemeral: false,
  }
  const message = await decoder.fromProtoObj(PUBSUB_TOPIC, proto)
  if (!message) return { opened: false }
  return {
    opened: true,
    data: toHex(message.payload),
    signer: message.signaturePublicKey ? toHex(message.signaturePublicKey) : null,
    verified: message.verifySignature(fromHex(op.signer)),
  }
}

const operations = {
  seal_asymmetric: (op) =>
    seal(
      ecies.createEncoder({
        contentTopic: CONTENT_TOPIC,
        routingInfo,
        publicKey: fromHex(op.recipient),
        sigPrivKey: fromHex(op.signer),
      }),
      op.data,
    ),
  seal_symmetric: (op) =>
    seal(
      symmetric.createEncoder({
        contentTopic: CONTENT_TOPIC,
        routingInfo,
        symKey: fromHex(op.key),
        sigPrivKey: fromHex(op.signer),
      }),
      op.data,
    ),
  open_asymmetric: (op) => open(ecies.createDecoder(CONTENT_TOPIC, routingInfo, fromHex(op.secret)), op),
  open_symmetric: (op) => open(symmetric.createDecoder(CONTENT_TOPIC, routingInfo, fromHex(op.key)), op),
}

// Read asynchronously: readFileSync(0) fails with EAGAIN on a pipe the
// writer has not filled yet.
const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const batch = JSON.parse(Buffer.concat(chunks).toString('utf8'))
const results = []
for (const op of batch) {
  const run = operations[op.op]
  if (!run) throw new Error(`unknown operation ${op.op}`)
  results.push(await run(op))
}
process.stdout.write(JSON.stringify(results))

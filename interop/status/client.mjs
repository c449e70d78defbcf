// A simulated Status client for herald's end-to-end test
// (crates/herald/tests/status_server.rs), built only from libraries nobody
// on the team wrote: @waku/message-encryption (Waku v1 payloads),
// @noble/curves (secp256k1), @noble/hashes (Keccak-256, SHAKE-256,
// PBKDF2), protobufjs, and Node's own AES-GCM. It builds what status-go's
// `pushnotificationclient` sends and reads what a server answers, following
// /work/shared/reference/status-waku.md, never herald's code.
//
//   node client.mjs <install dir of setup.sh> < batch.json
//
// stdin holds a JSON array of operations; keys are hex (secrets 32 bytes,
// public keys 33-byte compressed), other bytes hex too:
//   {"op":"register","secret":…,"server":…,"registration":{…PushNotificationRegistration fields, camelCase…}}
//     → {"contentTopic","payload","requestId"}: on the server's personal topic;
//       the grant is signed here unless `unregister`; requestId = SHAKE-256 of the ciphertext
//   {"op":"query","secret":…,"ephemeral":…,"key":<recipient public key>}
//     → {"contentTopic","payload","messageId"}: on the key's query topic
//   {"op":"request","secret":…,"ephemeral":…,"server":…,"messageId":…,"notifications":[
//       {"accessToken","chatId":<text>,"recipient":<public key>,"installationId","message":<hex>,"type":<n>}]}
//     → {"contentTopic","payload","messageId"}: on the server's partitioned topic,
//       with chat_id, author and public_key hashed as status-go's client hashes them
//   {"op":"open","secret":…,"contentTopic":…,"payload":…}
//     → {"type","signer","wakuSigner","message":{…}}: a reply to `secret`'s key, which must
//       be on its partitioned topic, signed at both layers; `message` is the decoded
//       response with bytes as hex
// stdout gets a JSON array of the results, in order. Errors go to stderr
// with a non-zero exit.

import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const installDir = process.argv[2] || process.env.HERALD_TEST_STATUS_MODULES
if (!installDir) {
  console.error('usage: node client.mjs <install dir of interop/status/setup.sh> < batch.json')
  process.exit(2)
}
const modules = path.join(path.resolve(installDir), 'node_modules')
// Each module through its package's `exports`, from the install dir.
async function load(name, subpath) {
  const dir = path.join(modules, ...name.split('/'))
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'))
  const entry = manifest.exports?.[subpath]
  const file = typeof entry === 'string' ? entry : entry?.import ?? entry?.default ?? manifest.main
  return import(pathToFileURL(path.join(dir, file)).href)
}
const [{ secp256k1 }, { keccak_256, shake256 }, { pbkdf2 }, { sha256 }, ecies, symmetric, protobufModule] =
  await Promise.all([
    load('@noble/curves', './secp256k1.js'),
    load('@noble/hashes', './sha3.js'),
    load('@noble/hashes', './pbkdf2.js'),
    load('@noble/hashes', './sha2.js'),
    load('@waku/message-encryption', './ecies'),
    load('@waku/message-encryption', './symmetric'),
    load('protobufjs', '.'),
  ])
const protobuf = protobufModule.default ?? protobufModule

// status-go's protocol/protobuf, by field number (reference §2 and §3).
const root = protobuf.parse(`
syntax = "proto3";
message ApplicationMetadataMessage { bytes signature = 1; bytes payload = 2; int32 type = 3; }
message PushNotificationRegistration {
  int32 token_type = 1; string device_token = 2; string installation_id = 3; string access_token = 4;
  bool enabled = 5; uint64 version = 6; repeated bytes allowed_key_list = 7; repeated bytes blocked_chat_list = 8;
  bool unregister = 9; bytes grant = 10; bool allow_from_contacts_only = 11; string apn_topic = 12;
  bool block_mentions = 13; repeated bytes allowed_mentions_chat_list = 14; repeated bytes muted_chat_list = 15;
}
message PushNotificationRegistrationResponse { bool success = 1; int32 error = 2; bytes request_id = 3; }
message PushNotificationQuery { repeated bytes public_keys = 1; }
message PushNotificationQueryInfo {
  string access_token = 1; string installation_id = 2; bytes public_key = 3; repeated bytes allowed_key_list = 4;
  bytes grant = 5; uint64 version = 6; bytes server_public_key = 7;
}
message PushNotificationQueryResponse { repeated PushNotificationQueryInfo info = 1; bytes message_id = 2; bool success = 3; }
message PushNotification {
  string access_token = 1; bytes chat_id = 2; bytes public_key = 3; string installation_id = 4;
  bytes message = 5; int32 type = 6; bytes author = 7;
}
message PushNotificationRequest { repeated PushNotification requests = 1; bytes message_id = 2; }
message PushNotificationReport { bool success = 1; int32 error = 2; bytes public_key = 3; string installation_id = 4; }
message PushNotificationResponse { bytes message_id = 1; repeated PushNotificationReport reports = 2; }
`).root
const type = (name) => root.lookupType(name)
const TYPES = { registration: 16, registrationResponse: 17, query: 18, queryResponse: 19, request: 20, response: 21 }
const RESPONSES = {
  [TYPES.registrationResponse]: 'PushNotificationRegistrationResponse',
  [TYPES.queryResponse]: 'PushNotificationQueryResponse',
  [TYPES.response]: 'PushNotificationResponse',
}

const PUBSUB_TOPIC = '/waku/2/rs/16/32'
const routingInfo = { clusterId: 16, shardId: 32, pubsubTopic: PUBSUB_TOPIC }

const fromHex = (hex) => Uint8Array.from(Buffer.from(hex.replace(/^0x/, ''), 'hex'))
const toHex = (bytes) => Buffer.from(bytes).toString('hex')
const utf8 = (text) => new TextEncoder().encode(text)
const concat = (...parts) => Uint8Array.from(Buffer.concat(parts.map((p) => Buffer.from(p))))

const uncompressed = (publicKey) => secp256k1.Point.fromBytes(fromHex(publicKey)).toBytes(false)
const publicOf = (secret) => toHex(secp256k1.getPublicKey(fromHex(secret), true))
const shake64 = (bytes) => shake256(bytes, { dkLen: 64 })
const hashedKey = (publicKey) => shake64(fromHex(publicKey))

// go-ethereum's recoverable signature: R ‖ S ‖ V with V in {0, 1}.
function sign(digest, secret) {
  const recovered = secp256k1.sign(digest, fromHex(secret), { prehash: false, format: 'recovered' })
  return concat(recovered.subarray(1), recovered.subarray(0, 1))
}
function recover(digest, rsv) {
  const recovered = concat(rsv.subarray(64, 65), rsv.subarray(0, 64))
  return toHex(secp256k1.recoverPublicKey(recovered, digest, { prehash: false }))
}

// The raw ECDH x-coordinate, no KDF (status-go `ecies.GenerateShared`).
const ecdhX = (secret, publicKey) => secp256k1.getSharedSecret(fromHex(secret), fromHex(publicKey), true).subarray(1)

// AES-256-GCM with the 12-byte nonce first (Go's gcm.Seal(nonce, nonce, …)).
function sealNonceFirst(key, plaintext) {
  const nonce = crypto.randomBytes(12)
  const cipher = crypto.createCipheriv('aes-256-gcm', key, nonce)
  return concat(nonce, cipher.update(plaintext), cipher.final(), cipher.getAuthTag())
}

// Topics (reference §11).
const contentTopic = (chatName) => `/waku/1/0x${toHex(keccak_256(utf8(chatName)).subarray(0, 4))}/rfc26`
const personalTopic = (publicKey) => contentTopic(`contact-discovery-${toHex(uncompressed(publicKey))}`)
function partitionedTopic(publicKey) {
  const x = BigInt(`0x${toHex(uncompressed(publicKey).subarray(1, 33))}`)
  return contentTopic(`contact-discovery-${x % 5000n}`)
}
const queryChatName = (publicKey) => toHex(hashedKey(publicKey))
const symmetricKey = (chatName) => pbkdf2(sha256, utf8(chatName), new Uint8Array(0), { c: 65356, dkLen: 32 })

function wrap(messageType, payload, secret) {
  const signature = sign(keccak_256(payload), secret)
  const message = type('ApplicationMetadataMessage').create({ signature, payload, type: messageType })
  const bytes = type('ApplicationMetadataMessage').encode(message).finish()
  const id = keccak_256(concat(uncompressed(publicOf(secret)), bytes))
  return { bytes, id }
}

async function sealTo(recipient, topic, data, signer) {
  const encoder = ecies.createEncoder({
    contentTopic: topic,
    routingInfo,
    publicKey: uncompressed(recipient),
    sigPrivKey: fromHex(signer),
  })
  return toHex((await encoder.toProtoObj({ payload: data })).payload)
}

function encode(name, fields) {
  const t = type(name)
  const problem = t.verify(fields)
  if (problem) throw new Error(`${name}: ${problem}`)
  return t.encode(t.create(fields)).finish()
}

// Uint8Arrays as hex, recursively, for JSON.
function plain(value) {
  if (value instanceof Uint8Array) return toHex(value)
  if (Array.isArray(value)) return value.map(plain)
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]))
  }
  return value
}

const operations = {
  async register({ secret, server, registration }) {
    const fields = {
      ...registration,
      allowedKeyList: (registration.allowedKeyList ?? []).map(fromHex),
      blockedChatList: (registration.blockedChatList ?? []).map(fromHex),
      mutedChatList: (registration.mutedChatList ?? []).map(fromHex),
      allowedMentionsChatList: (registration.allowedMentionsChatList ?? []).map(fromHex),
    }
    if (!registration.unregister) {
      const material = concat(fromHex(publicOf(secret)), fromHex(server), utf8(registration.accessToken))
      fields.grant = sign(keccak_256(material), secret)
    }
    const plaintext = encode('PushNotificationRegistration', fields)
    const encrypted = sealNonceFirst(ecdhX(secret, server), plaintext)
    const { bytes } = wrap(TYPES.registration, encrypted, secret)
    const topic = personalTopic(server)
    return {
      contentTopic: topic,
      payload: await sealTo(server, topic, bytes, secret),
      requestId: toHex(shake64(encrypted)),
    }
  },

  async query({ secret, ephemeral, key }) {
    const payload = encode('PushNotificationQuery', { publicKeys: [hashedKey(key)] })
    const { bytes, id } = wrap(TYPES.query, payload, ephemeral)
    const chatName = queryChatName(key)
    const encoder = symmetric.createEncoder({
      contentTopic: contentTopic(chatName),
      routingInfo,
      symKey: symmetricKey(chatName),
      sigPrivKey: fromHex(secret),
    })
    const proto = await encoder.toProtoObj({ payload: bytes })
    return { contentTopic: contentTopic(chatName), payload: toHex(proto.payload), messageId: toHex(id) }
  },

  async request({ secret, ephemeral, server, messageId, notifications }) {
    const author = shake64(utf8(`0x${toHex(uncompressed(publicOf(secret)))}`))
    const requests = notifications.map((n) => ({
      accessToken: n.accessToken,
      chatId: shake64(utf8(n.chatId)),
      publicKey: hashedKey(n.recipient),
      installationId: n.installationId,
      message: fromHex(n.message),
      type: n.type,
      author,
    }))
    const payload = encode('PushNotificationRequest', { requests, messageId: fromHex(messageId) })
    const { bytes, id } = wrap(TYPES.request, payload, ephemeral)
    const topic = partitionedTopic(server)
    return { contentTopic: topic, payload: await sealTo(server, topic, bytes, secret), messageId: toHex(id) }
  },

  async open({ secret, contentTopic: topic, payload }) {
    if (topic !== partitionedTopic(publicOf(secret))) {
      throw new Error(`a reply on ${topic}, not on the recipient's partitioned topic`)
    }
    const decoder = ecies.createDecoder(topic, routingInfo, fromHex(secret))
    const proto = {
      payload: fromHex(payload),
      contentTopic: topic,
      version: 1,
      timestamp: BigInt(Date.now()) * 1000000n,
      meta: undefined,
      rateLimitProof: undefined,
      ephemeral: false,
    }
    const opened = await decoder.fromProtoObj(PUBSUB_TOPIC, proto)
    if (!opened) throw new Error('the reply does not decrypt to this key')
    if (!opened.signaturePublicKey) throw new Error('the reply is not signed; status-go would drop it')
    const amm = type('ApplicationMetadataMessage').decode(opened.payload)
    const signer = secp256k1.Point.fromBytes(fromHex(recover(keccak_256(amm.payload), amm.signature)))
    const responseType = RESPONSES[amm.type]
    if (!responseType) throw new Error(`unexpected reply type ${amm.type}`)
    const message = type(responseType).toObject(type(responseType).decode(amm.payload), {
      defaults: true,
      longs: Number,
      enums: Number,
      arrays: true,
    })
    return {
      type: amm.type,
      signer: toHex(signer.toBytes(true)),
      wakuSigner: toHex(secp256k1.Point.fromBytes(opened.signaturePublicKey).toBytes(true)),
      message: plain(message),
    }
  },
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

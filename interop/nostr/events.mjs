// Nostr events and NIP-98 headers made by nostr-tools, for herald's interop
// test (crates/herald-nostr/tests/nostr_tools_interop.rs): herald must accept
// every one of them, and refuse them tampered.
//
//   node events.mjs <install dir of setup.sh> < request.json
//
// stdin holds one JSON request; every field may be left out:
//   {"senderSecretKey": "<64 hex>",      generated when absent
//    "recipientSecretKey": "<64 hex>",   generated when absent
//    "note": "<content of the kind 1 note, also put in a `t` tag>",
//    "auth": [{"url": "<absolute URL>", "method": "PUT", "payload": {...}}, ...]}
//
// stdout gets one JSON object per line:
//   {"name":"keys","sender":"<hex>","senderNpub":"npub1…","recipient":"<hex>","recipientNpub":"npub1…"}
//   {"name":"note","event":{…}}                kind 1 by the sender, p-tagging the recipient
//   {"name":"dm","event":{…}}                  kind 4 (NIP-04) from the sender to the recipient
//   {"name":"gift_wrap","event":{…}}           kind 1059 from nip17.wrapEvent: one-time key,
//                                               created_at back-dated 0 to 2 days at random
//   {"name":"gift_wrap_two_days","event":{…}}  kind 1059 wrapping a nip59 seal, back-dated
//                                               exactly two days (NIP-59's limit)
//   {"name":"reaction","event":{…}}            kind 7 by the recipient on the note (nip25)
//   {"name":"auth","url","method","body","authorization"}   one per "auth" entry:
//       nip98.getToken's header, and the body it hashed (JSON.stringify of the
//       payload; "" without one)
// Errors go to stderr with a non-zero exit.

import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const TWO_DAYS_SECS = 2 * 24 * 60 * 60

const installDir = process.argv[2] || process.env.HERALD_TEST_NOSTR_MODULES
if (!installDir) {
  console.error('usage: node events.mjs <install dir of interop/nostr/setup.sh> < request.json')
  process.exit(2)
}

// Each nostr-tools subpath through its package's `exports`, as the ESM build
// an app would import, from the install dir (not from beside this file).
const nostrToolsDir = path.join(path.resolve(installDir), 'node_modules', 'nostr-tools')
const manifest = JSON.parse(fs.readFileSync(path.join(nostrToolsDir, 'package.json'), 'utf8'))
const load = (subpath) =>
  import(pathToFileURL(path.join(nostrToolsDir, manifest.exports[subpath].import)).href)

const [pure, nip04, nip17, nip19, nip25, nip44, nip59, nip98, utils] = await Promise.all(
  ['./pure', './nip04', './nip17', './nip19', './nip25', './nip44', './nip59', './nip98', './utils'].map(load),
)

const request = JSON.parse(fs.readFileSync(0, 'utf8'))
const secretKey = (hex) => (hex ? utils.hexToBytes(hex) : pure.generateSecretKey())
const senderSk = secretKey(request.senderSecretKey)
const recipientSk = secretKey(request.recipientSecretKey)
const sender = pure.getPublicKey(senderSk)
const recipient = pure.getPublicKey(recipientSk)
const now = () => Math.round(Date.now() / 1000)
const print = (line) => process.stdout.write(JSON.stringify(line) + '\n')

print({
  name: 'keys',
  sender,
  senderNpub: nip19.npubEncode(sender),
  recipient,
  recipientNpub: nip19.npubEncode(recipient),
})

const noteText = request.note ?? ''
const note = pure.finalizeEvent(
  {
    kind: 1,
    created_at: now(),
    tags: [
      ['p', recipient, 'wss://relay.example'],
      ['t', noteText],
    ],
    content: noteText,
  },
  senderSk,
)
print({ name: 'note', event: note })

const dm = pure.finalizeEvent(
  {
    kind: 4,
    created_at: now(),
    tags: [['p', recipient]],
    content: nip04.encrypt(senderSk, recipient, 'a direct message'),
  },
  senderSk,
)
print({ name: 'dm', event: dm })

print({ name: 'gift_wrap', event: nip17.wrapEvent(senderSk, { publicKey: recipient }, 'a private message') })

// nip59.createWrap picks its own random time; this one is built the same way
// with the oldest time NIP-59 allows.
const rumor = nip59.createRumor({ kind: 14, content: 'a private message', tags: [['p', recipient]] }, senderSk)
const seal = nip59.createSeal(rumor, senderSk, recipient)
const wrapSk = pure.generateSecretKey()
const oldWrap = pure.finalizeEvent(
  {
    kind: 1059,
    created_at: now() - TWO_DAYS_SECS,
    tags: [['p', recipient]],
    content: nip44.encrypt(JSON.stringify(seal), nip44.getConversationKey(wrapSk, recipient)),
  },
  wrapSk,
)
print({ name: 'gift_wrap_two_days', event: oldWrap })

print({ name: 'reaction', event: nip25.finishReactionEvent({ created_at: now(), content: '+' }, note, recipientSk) })

for (const { url, method, payload } of request.auth ?? []) {
  const sign = (template) => pure.finalizeEvent(template, senderSk)
  const authorization = await nip98.getToken(url, method, sign, true, payload)
  print({ name: 'auth', url, method, body: payload === undefined ? '' : JSON.stringify(payload), authorization })
}

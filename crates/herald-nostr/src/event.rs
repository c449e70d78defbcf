//! NIP-01 events, accepted only when genuine.
//!
//! An `Event` exists only after `Event::from_json` has checked it: the JSON
//! is NIP-01's shape, every hex field is lowercase and of its exact length,
//! the sizes are under the caps below, the id is the SHA-256 of the
//! event's serialisation, and the BIP-340 signature over that id verifies
//! with the event's pubkey. So code that holds an `Event` never asks again,
//! and a relay (or anyone posting to herald) cannot make herald act on an
//! event its author did not sign.
//!
//! The serialisation is NIP-01's `[0,<pubkey>,<created_at>,<kind>,<tags>,
//! <content>]` without whitespace. Strings are escaped as NIP-01 lists
//! (`\n`, `\"`, `\\`, `\r`, `\t`, `\b`, `\f`); the other control characters
//! (U+0000 to U+001F) become `\u00xx` in lowercase hex. NIP-01 says
//! "verbatim" for those, but a raw control character is not JSON, and
//! what signers actually hash is JavaScript's `JSON.stringify` (nostr-tools)
//! or serde_json (rust-nostr), which both write `\u00xx`. Everything else,
//! DEL, U+2028 and `/` included, is written as is. The interop test checks
//! all of this against nostr-tools.
//!
//! `sign` makes herald's own events (NIP-42 `AUTH`) through the same
//! serialisation, so what herald signs is what it would accept.
//!
//! The checks are ordered cheapest first, so hostile input costs a bounded
//! parse and, at worst, one SHA-256 before it is refused; only an event
//! whose id is right reaches the signature check. Fields NIP-01 does not
//! define are ignored: they are outside the signed data.

use std::fmt;

use k256::schnorr::signature::hazmat::PrehashSigner;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::NostrError;
use crate::hex::{self, Digits};
use crate::pubkey::PublicKey;
use crate::secret_key::SecretKey;

/// The longest event JSON accepted: twice nostr-rs-relay's default
/// `max_event_bytes` (128 KiB), so herald never refuses an event a relay
/// stored, while one event's parse stays bounded.
pub const MAX_EVENT_JSON_BYTES: usize = 256 * 1024;
/// The longest content accepted. The largest NIP-44 v2 payload (a
/// 65,535-byte plaintext) is 87,472 base64 characters; this leaves room
/// above it for kind 1 notes and the like.
pub const MAX_CONTENT_BYTES: usize = 128 * 1024;
/// The most tags accepted: 2.5 times strfry's default `maxNumTags` (2,000),
/// so the long mute lists (kind 10000) that relays store still parse.
pub const MAX_TAGS: usize = 5_000;
/// The most fields in one tag. The long ones in use list relays, one field
/// each (NIP-57's `relays` tag), and hold a few dozen.
pub const MAX_TAG_FIELDS: usize = 256;
/// The longest tag field. A zap receipt's `description` (NIP-57) carries
/// the whole zap request as JSON, a few KiB at most.
pub const MAX_TAG_FIELD_BYTES: usize = 64 * 1024;

/// The event kinds herald reads, each from the NIP that defines it.
pub mod kind {
    /// NIP-01 text note; mentions and replies `p`-tag their recipients (NIP-10).
    pub const TEXT_NOTE: u16 = 1;
    /// NIP-04 encrypted direct message, `p`-tagged to its recipient.
    pub const ENCRYPTED_DIRECT_MESSAGE: u16 = 4;
    /// NIP-18 repost of a kind 1 note.
    pub const REPOST: u16 = 6;
    /// NIP-25 reaction; `p`-tags the author of the event reacted to.
    pub const REACTION: u16 = 7;
    /// NIP-18 repost of any other kind.
    pub const GENERIC_REPOST: u16 = 16;
    /// NIP-59 gift wrap, signed by a one-time key and `p`-tagged to its
    /// recipient; `created_at` is back-dated up to two days.
    pub const GIFT_WRAP: u16 = 1059;
    /// NIP-57 zap receipt; `p` is the recipient.
    pub const ZAP_RECEIPT: u16 = 9735;
    /// NIP-51 mute list.
    pub const MUTE_LIST: u16 = 10000;
    /// NIP-65 relay list (read and write relays).
    pub const RELAY_LIST: u16 = 10002;
    /// NIP-17 DM inbox relays, where gift wraps to the author are published.
    pub const DM_RELAY_LIST: u16 = 10050;
    /// NIP-42 client authentication, answering a relay's `AUTH` challenge.
    pub const CLIENT_AUTH: u16 = 22242;
    /// NIP-98 HTTP auth.
    pub const HTTP_AUTH: u16 = 27235;
}

/// An event id: the SHA-256 of the event's NIP-01 serialisation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId([u8; 32]);

impl EventId {
    /// NIP-01's form: exactly 64 lowercase hex digits.
    pub fn parse_hex(text: &str) -> Option<Self> {
        hex::decode(text, Digits::Lowercase).map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// NIP-01's form: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.to_hex())
    }
}

/// A NIP-01 event whose id and signature have been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    id: EventId,
    pubkey: PublicKey,
    created_at: u64,
    kind: u16,
    tags: Vec<Vec<String>>,
    content: String,
    sig: [u8; 64],
}

/// The event as JSON gives it, before any check. `created_at` and `kind`
/// are taken as numbers of any kind so that a negative, fractional or
/// too-large one gets its own error rather than a generic shape error.
#[derive(Deserialize)]
struct WireEvent {
    id: String,
    pubkey: String,
    created_at: serde_json::Number,
    kind: serde_json::Number,
    tags: Vec<Vec<String>>,
    content: String,
    sig: String,
}

impl Event {
    /// Parses and verifies one event from its JSON text.
    pub fn from_json(json: &str) -> Result<Self, NostrError> {
        if json.len() > MAX_EVENT_JSON_BYTES {
            return Err(NostrError::EventTooLarge {
                bytes: json.len(),
                max: MAX_EVENT_JSON_BYTES,
            });
        }
        let wire: WireEvent = serde_json::from_str(json).map_err(|e| malformed(&e))?;
        let claimed_id = hex::decode::<32>(&wire.id, Digits::Lowercase)
            .ok_or(invalid("id", "64 lowercase hex digits"))?;
        let pubkey = PublicKey::parse_hex(&wire.pubkey)
            .map_err(|_| invalid("pubkey", "64 lowercase hex digits"))?;
        let sig = hex::decode::<64>(&wire.sig, Digits::Lowercase)
            .ok_or(invalid("sig", "128 lowercase hex digits"))?;
        let created_at = wire.created_at.as_u64().ok_or(invalid(
            "created_at",
            "a whole number of seconds, 0 or more",
        ))?;
        let kind = wire
            .kind
            .as_u64()
            .and_then(|k| u16::try_from(k).ok())
            .ok_or(invalid("kind", "a whole number from 0 to 65535"))?;
        check_sizes(&wire.content, &wire.tags)?;

        let id = event_id(&pubkey, created_at, kind, &wire.tags, &wire.content);
        if id.0 != claimed_id {
            return Err(NostrError::IdMismatch);
        }
        verify_bip340(pubkey.as_bytes(), &id.0, &sig)?;

        Ok(Self {
            id,
            pubkey,
            created_at,
            kind,
            tags: wire.tags,
            content: wire.content,
            sig,
        })
    }

    /// NIP-01's JSON object, as relays take it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.to_hex(),
            "pubkey": self.pubkey.to_hex(),
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": self.tags,
            "content": self.content,
            "sig": hex::encode(&self.sig),
        })
    }

    pub fn id(&self) -> &EventId {
        &self.id
    }

    /// The author: the key that signed the event.
    pub fn pubkey(&self) -> &PublicKey {
        &self.pubkey
    }

    /// Unix seconds, as the author claims them (gift wraps lie on purpose).
    pub fn created_at(&self) -> u64 {
        self.created_at
    }

    pub fn kind(&self) -> u16 {
        self.kind
    }

    pub fn tags(&self) -> &[Vec<String>] {
        &self.tags
    }

    pub fn content(&self) -> &str {
        &self.content
    }

    pub fn sig(&self) -> &[u8; 64] {
        &self.sig
    }

    /// The values (second fields) of the tags named `name`, in order.
    pub fn tag_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.tags
            .iter()
            .filter(move |tag| tag.first().is_some_and(|n| n == name))
            .filter_map(|tag| tag.get(1).map(String::as_str))
    }

    /// The keys of the `p` tags (NIP-01): the people the event is for. In
    /// tag order, repeats kept; a value that is not NIP-01 hex is skipped,
    /// since the signature makes the event genuine, not its tags sensible.
    pub fn p_tags(&self) -> impl Iterator<Item = PublicKey> + '_ {
        self.tag_values("p")
            .filter_map(|value| PublicKey::parse_hex(value).ok())
    }

    /// The ids of the `e` tags (NIP-01): the events this one refers to. As
    /// `p_tags`: in order, repeats kept, malformed values skipped.
    pub fn e_tags(&self) -> impl Iterator<Item = EventId> + '_ {
        self.tag_values("e").filter_map(EventId::parse_hex)
    }
}

/// Whether a replaceable event `(created_at, id)` replaces the one `held`
/// (NIP-01): the later `created_at` wins, and on a tie the lowest id, so
/// every holder keeps the same one whatever order relays serve them in.
pub fn replaces(new: (u64, &EventId), held: (u64, &EventId)) -> bool {
    (new.0, std::cmp::Reverse(new.1)) > (held.0, std::cmp::Reverse(held.1))
}

/// An event signed by `key`: its id computed as `Event::from_json` checks
/// it, signed with BIP-340. The auxiliary randomness is BIP-340's all-zero
/// value (k256's `sign_prehash`), which the BIP allows: the nonce still
/// depends on the key and the id, so it never repeats for different events.
pub fn sign(
    kind: u16,
    tags: Vec<Vec<String>>,
    content: String,
    created_at: u64,
    key: &SecretKey,
) -> Event {
    let pubkey = key.public_key();
    let id = event_id(&pubkey, created_at, kind, &tags, &content);
    let sig = key
        .signing_key()
        .sign_prehash(&id.0)
        .expect("BIP-340 signs any 32-byte id");
    Event {
        id,
        pubkey,
        created_at,
        kind,
        tags,
        content,
        sig: sig.to_bytes(),
    }
}

/// BIP-340: `sig` by the x-only key `pubkey` over the 32-byte `message`,
/// checked by libsecp256k1, twice as fast as k256 here: every event from
/// every relay passes through this (k256 still signs herald's own).
fn verify_bip340(pubkey: &[u8; 32], message: &[u8; 32], sig: &[u8; 64]) -> Result<(), NostrError> {
    let key = secp256k1::XOnlyPublicKey::from_byte_array(*pubkey)
        .map_err(|_| NostrError::KeyNotOnCurve)?;
    let sig = secp256k1::schnorr::Signature::from_byte_array(*sig);
    secp256k1::SECP256K1
        .verify_schnorr(&sig, message, &key)
        .map_err(|_| NostrError::BadSignature)
}

fn invalid(field: &'static str, expected: &'static str) -> NostrError {
    NostrError::InvalidField { field, expected }
}

/// A serde error as `MalformedEvent`: its kind and column only, since its
/// message may quote the input.
fn malformed(error: &serde_json::Error) -> NostrError {
    use serde_json::error::Category;
    let problem = match error.classify() {
        Category::Io | Category::Syntax => "not valid JSON",
        Category::Eof => "JSON cut short",
        Category::Data => {
            "not one each of id, pubkey, created_at, kind, tags (arrays of strings), content and sig"
        }
    };
    NostrError::MalformedEvent {
        problem,
        column: error.column(),
    }
}

fn check_sizes(content: &str, tags: &[Vec<String>]) -> Result<(), NostrError> {
    if content.len() > MAX_CONTENT_BYTES {
        return Err(NostrError::ContentTooLarge {
            bytes: content.len(),
            max: MAX_CONTENT_BYTES,
        });
    }
    if tags.len() > MAX_TAGS {
        return Err(NostrError::TooManyTags {
            count: tags.len(),
            max: MAX_TAGS,
        });
    }
    for tag in tags {
        if tag.len() > MAX_TAG_FIELDS {
            return Err(NostrError::TagTooLong {
                count: tag.len(),
                max: MAX_TAG_FIELDS,
            });
        }
        if let Some(field) = tag.iter().find(|f| f.len() > MAX_TAG_FIELD_BYTES) {
            return Err(NostrError::TagFieldTooLarge {
                bytes: field.len(),
                max: MAX_TAG_FIELD_BYTES,
            });
        }
    }
    Ok(())
}

/// SHA-256 of NIP-01's serialisation.
pub(crate) fn event_id(
    pubkey: &PublicKey,
    created_at: u64,
    kind: u16,
    tags: &[Vec<String>],
    content: &str,
) -> EventId {
    let text = serialise(pubkey, created_at, kind, tags, content);
    EventId(Sha256::digest(text.as_bytes()).into())
}

/// NIP-01's `[0,<pubkey>,<created_at>,<kind>,<tags>,<content>]`, no
/// whitespace (see the module doc for the escaping).
fn serialise(
    pubkey: &PublicKey,
    created_at: u64,
    kind: u16,
    tags: &[Vec<String>],
    content: &str,
) -> String {
    let mut out = String::with_capacity(128 + content.len());
    out.push_str("[0,\"");
    out.push_str(&pubkey.to_hex());
    out.push_str("\",");
    out.push_str(&created_at.to_string());
    out.push(',');
    out.push_str(&kind.to_string());
    out.push_str(",[");
    for (i, tag) in tags.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        for (j, field) in tag.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            push_json_string(&mut out, field);
        }
        out.push(']');
    }
    out.push_str("],");
    push_json_string(&mut out, content);
    out.push(']');
    out
}

fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\u{00}'..='\u{1f}' => {
                out.push_str("\\u00");
                out.push_str(&hex::encode(&[c as u8]));
            }
            _ => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::test_support::{TestKey, nip98_example_event};

    /// Every character NIP-01's escaping singles out, the control characters
    /// it does not, and characters that must stay verbatim.
    const TRICKY: &str =
        "q\"b\\s/n\nr\rt\tb\u{08}f\u{0c}nul\u{00}soh\u{01}us\u{1f}del\u{7f}\u{e9}\u{2028}\u{1F600}";

    fn parse(value: &Value) -> Result<Event, NostrError> {
        Event::from_json(&value.to_string())
    }

    fn alice() -> TestKey {
        TestKey::new("alice")
    }

    #[test]
    fn verifies_nip98_example_signed_by_a_third_party() {
        let event = Event::from_json(&nip98_example_event()).unwrap();
        assert_eq!(
            event.id().to_hex(),
            "fe964e758903360f28d8424d092da8494ed207cba823110be3a57dfe4b578734"
        );
        assert_eq!(
            event.pubkey().to_hex(),
            "63fe6318dc58583cfe16810f86dd09e18bfd76aabc24a0081ce2856f330504ed"
        );
        assert_eq!(event.kind(), kind::HTTP_AUTH);
        assert_eq!(event.created_at(), 1682327852);
        assert_eq!(
            event.tag_values("url").collect::<Vec<_>>(),
            ["https://api.snort.social/api/v1/n5sp/list"]
        );
        assert_eq!(event.tag_values("method").collect::<Vec<_>>(), ["GET"]);
        assert_eq!(event.content(), "");
    }

    #[test]
    fn refuses_nip98_printed_example_whose_tag_was_edited_after_signing() {
        let edited = nip98_example_event().replace("[\"url\",", "[\"u\",");
        assert!(edited.contains("[\"u\","));
        assert_eq!(Event::from_json(&edited), Err(NostrError::IdMismatch));
    }

    #[test]
    fn serialises_nip01_escapes_and_control_characters_like_json_stringify() {
        let key = alice().public_key();
        let tags = vec![vec!["t".to_owned(), TRICKY.to_owned()]];
        let expected_string = "\"q\\\"b\\\\s/n\\nr\\rt\\tb\\bf\\fnul\\u0000soh\\u0001us\\u001fdel\u{7f}\u{e9}\u{2028}\u{1F600}\"";
        assert_eq!(
            serialise(&key, 1_700_000_000, 1, &tags, TRICKY),
            format!(
                "[0,\"{}\",1700000000,1,[[\"t\",{expected_string}]],{expected_string}]",
                key.to_hex()
            )
        );
        assert_eq!(
            serialise(&key, 0, 65535, &[], ""),
            format!("[0,\"{}\",0,65535,[],\"\"]", key.to_hex())
        );
    }

    #[test]
    fn serialises_like_serde_json_for_every_control_character() {
        // serde_json (rust-nostr's serialiser) as a second witness.
        let all: String = (0u8..0x80).map(char::from).collect();
        let mut ours = String::new();
        push_json_string(&mut ours, &all);
        assert_eq!(ours, serde_json::to_string(&all).unwrap());
    }

    #[test]
    fn accepts_a_signed_event_with_tricky_content_and_tags() {
        let key = alice();
        let value = key.sign(1_700_000_000, 1, &[&["t", TRICKY]], TRICKY);
        let event = parse(&value).unwrap();
        assert_eq!(event.content(), TRICKY);
        assert_eq!(event.tag_values("t").collect::<Vec<_>>(), [TRICKY]);
        assert_eq!(event.pubkey(), &key.public_key());
        assert_eq!(event.id().to_hex(), value["id"]);
    }

    #[test]
    fn accepts_escapes_the_signer_did_not_write_when_they_decode_the_same() {
        // "\u00e9" and "\/" in the JSON are é and / in the content: the id
        // covers the decoded text, not how the JSON spelt it.
        let value = alice().sign(1_700_000_000, 1, &[], "\u{e9}/");
        let json = value.to_string().replace("\u{e9}/", "\\u00e9\\/");
        assert!(json.contains("\\u00e9\\/"));
        assert_eq!(Event::from_json(&json).unwrap().content(), "\u{e9}/");
    }

    #[test]
    fn ignores_fields_nip01_does_not_define() {
        let mut value = alice().sign(1, 1, &[], "hi");
        value["seenOn"] = json!(["wss://relay.example"]);
        assert!(parse(&value).is_ok());
    }

    #[test]
    fn refuses_each_tampered_field_as_an_id_mismatch() {
        let value = alice().sign(
            1_700_000_000,
            1,
            &[&["p", &TestKey::new("bob").pubkey_hex()]],
            "hi",
        );
        let tampered: [(&str, Value); 5] = [
            ("content", json!("hi!")),
            ("created_at", json!(1_700_000_001)),
            ("kind", json!(4)),
            ("tags", json!([["p", TestKey::new("carol").pubkey_hex()]])),
            ("pubkey", json!(TestKey::new("mallory").pubkey_hex())),
        ];
        for (field, new) in tampered {
            let mut copy = value.clone();
            copy[field] = new;
            assert_eq!(parse(&copy), Err(NostrError::IdMismatch), "{field}");
        }
    }

    /// BIP-340's test vectors (bitcoin/bips, `bip-0340/test-vectors.csv`,
    /// all with 32-byte messages, as event ids are): public key, message,
    /// signature, and whether it verifies.
    const BIP340_VECTORS: [(&str, &str, &str, bool); 15] = [
        (
            "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "e907831f80848d1069a5371b402410364bdf1c5f8307b0084c55f1ce2dca821525f66a4a85ea8b71e482a74f382d2ce5ebeee8fdb2172f477df4900d310536c0",
            true,
        ),
        (
            "dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659",
            "243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89",
            "6896bd60eeae296db48a229ff71dfe071bde413e6d43f917dc8dcf8c78de33418906d11ac976abccb20b091292bff4ea897efcb639ea871cfa95f6de339e4b0a",
            true,
        ),
        (
            "dd308afec5777e13121fa72b9cc1b7cc0139715309b086c960e18fd969774eb8",
            "7e2d58d8b3bcdf1abadec7829054f90dda9805aab56c77333024b9d0a508b75c",
            "5831aaeed7b44bb74e5eab94ba9d4294c49bcf2a60728d8b4c200f50dd313c1bab745879a5ad954a72c45a91c3a51d3c7adea98d82f8481e0e1e03674a6f3fb7",
            true,
        ),
        // test fails if msg is reduced modulo p or n
        (
            "25d1dff95105f5253c4022f628a996ad3a0d95fbf21d468a1b33f8c160d8f517",
            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "7eb0509757e246f19449885651611cb965ecc1a187dd51b64fda1edc9637d5ec97582b9cb13db3933705b32ba982af5af25fd78881ebb32771fc5922efc66ea3",
            true,
        ),
        (
            "d69c3509bb99e412e68b0fe8544e72837dfa30746d8be2aa65975f29d22dc7b9",
            "4df3c3f68fcc83b27e9d42c90431a72499f17875c81a599b566c9889b9696703",
            "00000000000000000000003b78ce563f89a0ed9414f5aa28ad0d96d6795f9c6376afb1548af603b3eb45c9f8207dee1060cb71c04e80f593060b07d28308d7f4",
            true,
        ),
        // public key not on the curve
        (
            "eefdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34",
            "243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89",
            "6cff5c3ba86c69ea4b7376f31a9bcb4f74c1976089b2d9963da2e5543e17776969e89b4c5564d00349106b8497785dd7d1d713a8ae82b32fa79d5f7fc407d39b",
            false,
        ),
        // has_even_y(R) is false
        (
            "dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659",
            "243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89",
            "fff97bd5755eeea420453a14355235d382f6472f8568a18b2f057a14602975563cc27944640ac607cd107ae10923d9ef7a73c643e166be5ebeafa34b1ac553e2",
            false,
        ),
        // negated message
        (
            "dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659",
            "243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89",
            "1fa62e331edbc21c394792d2ab1100a7b432b013df3f6ff4f99fcb33e0e1515f28890b3edb6e7189b630448b515ce4f8622a954cfe545735aaea5134fccdb2bd",
            false,
        ),
        // negated s value
        (
            "dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659",
            "243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89",
            "6cff5c3ba86c69ea4b7376f31a9bcb4f74c1976089b2d9963da2e5543e177769961764b3aa9b2ffcb6ef947b6887a226e8d7c93e00c5ed0c1834ff0d0c2e6da6",
            false,
        ),
        // sG - eP is infinite (x(inf) taken as 0)
        (
            "dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659",
            "243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89",
            "0000000000000000000000000000000000000000000000000000000000000000123dda8328af9c23a94c1feecfd123ba4fb73476f0d594dcb65c6425bd186051",
            false,
        ),
        // sG - eP is infinite (x(inf) taken as 1)
        (
            "dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659",
            "243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89",
            "00000000000000000000000000000000000000000000000000000000000000017615fbaf5ae28864013c099742deadb4dba87f11ac6754f93780d5a1837cf197",
            false,
        ),
        // sig[0:32] is not an X coordinate on the curve
        (
            "dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659",
            "243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89",
            "4a298dacae57395a15d0795ddbfd1dcb564da82b0f269bc70a74f8220429ba1d69e89b4c5564d00349106b8497785dd7d1d713a8ae82b32fa79d5f7fc407d39b",
            false,
        ),
        // sig[0:32] is equal to field size
        (
            "dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659",
            "243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89",
            "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2f69e89b4c5564d00349106b8497785dd7d1d713a8ae82b32fa79d5f7fc407d39b",
            false,
        ),
        // sig[32:64] is equal to curve order
        (
            "dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659",
            "243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89",
            "6cff5c3ba86c69ea4b7376f31a9bcb4f74c1976089b2d9963da2e5543e177769fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            false,
        ),
        // public key exceeds the field size
        (
            "fffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc30",
            "243f6a8885a308d313198a2e03707344a4093822299f31d0082efa98ec4e6c89",
            "6cff5c3ba86c69ea4b7376f31a9bcb4f74c1976089b2d9963da2e5543e17776969e89b4c5564d00349106b8497785dd7d1d713a8ae82b32fa79d5f7fc407d39b",
            false,
        ),
    ];

    #[test]
    fn verifies_exactly_what_bip340_says_verifies() {
        for (i, (key, message, sig, valid)) in BIP340_VECTORS.into_iter().enumerate() {
            let key = hex::decode::<32>(key, Digits::Lowercase).unwrap();
            let message = hex::decode::<32>(message, Digits::Lowercase).unwrap();
            let sig = hex::decode::<64>(sig, Digits::Lowercase).unwrap();
            let result = verify_bip340(&key, &message, &sig);
            assert_eq!(result.is_ok(), valid, "vector {i}: {result:?}");
            // Vectors 5 and 14: keys that are no x-coordinate on the curve.
            if matches!(i, 5 | 14) {
                assert_eq!(result, Err(NostrError::KeyNotOnCurve), "vector {i}");
            }
        }
    }

    #[test]
    fn refuses_a_signature_by_another_key() {
        let value = alice().sign(1, 1, &[], "hi");
        let mallory = TestKey::new("mallory").sign(1, 1, &[], "hi");
        let mut copy = value.clone();
        copy["sig"] = mallory["sig"].clone();
        assert_eq!(parse(&copy), Err(NostrError::BadSignature));
    }

    #[test]
    fn refuses_a_signature_with_one_bit_flipped() {
        let mut value = alice().sign(1, 1, &[], "hi");
        let sig = value["sig"].as_str().unwrap();
        let flipped = if sig.ends_with('0') { "1" } else { "0" };
        value["sig"] = json!(format!("{}{flipped}", &sig[..127]));
        assert_eq!(parse(&value), Err(NostrError::BadSignature));
    }

    #[test]
    fn refuses_a_signature_that_is_not_a_valid_encoding() {
        // r = all ones is above the field prime.
        let mut value = alice().sign(1, 1, &[], "hi");
        value["sig"] = json!("f".repeat(128));
        assert_eq!(parse(&value), Err(NostrError::BadSignature));
    }

    #[test]
    fn refuses_a_pubkey_that_is_not_a_curve_point_even_with_the_right_id() {
        // x = all ones is above the field prime: no point has it. The id is
        // computed honestly over it, so only the curve check can refuse.
        let bogus = PublicKey::parse_hex(&"f".repeat(64)).unwrap();
        let mut value = alice().sign(1, 1, &[], "hi");
        value["pubkey"] = json!(bogus.to_hex());
        value["id"] = json!(event_id(&bogus, 1, 1, &[], "hi").to_hex());
        assert_eq!(parse(&value), Err(NostrError::KeyNotOnCurve));
    }

    #[test]
    fn refuses_uppercase_or_wrong_length_hex() {
        let value = alice().sign(1, 1, &[], "hi");
        let cases = [
            ("id", "64 lowercase hex digits"),
            ("pubkey", "64 lowercase hex digits"),
            ("sig", "128 lowercase hex digits"),
        ];
        for (field, expected) in cases {
            let text = value[field].as_str().unwrap();
            for bad in [
                text.to_ascii_uppercase(),
                text[1..].to_owned(),
                format!("{text}0"),
            ] {
                let mut copy = value.clone();
                copy[field] = json!(bad);
                assert_eq!(
                    parse(&copy),
                    Err(NostrError::InvalidField { field, expected }),
                    "{field} = {bad}"
                );
            }
        }
    }

    #[test]
    fn refuses_kinds_and_times_out_of_range() {
        let value = alice().sign(1, 1, &[], "hi");
        for (field, bad) in [
            ("kind", json!(65536)),
            ("kind", json!(-1)),
            ("kind", json!(1.5)),
            ("created_at", json!(-1)),
            ("created_at", json!(1.5)),
            ("created_at", json!(1e30)),
        ] {
            let mut copy = value.clone();
            copy[field] = bad.clone();
            assert!(
                matches!(parse(&copy), Err(NostrError::InvalidField { field: f, .. }) if f == field),
                "{field} = {bad}"
            );
        }
    }

    #[test]
    fn refuses_json_of_the_wrong_shape_without_quoting_it() {
        let value = alice().sign(1, 1, &[], "hi");
        let mut missing = value.clone();
        missing.as_object_mut().unwrap().remove("sig");
        let mut null_field = value.clone();
        null_field["tags"] = json!([["p", null]]);
        let mut number_field = value.clone();
        number_field["content"] = json!(5);
        let secret = "do-not-echo-me";
        let mut string_tags = value.clone();
        string_tags["tags"] = json!(secret);
        let duplicate = value.to_string().replacen(
            "\"content\":\"hi\"",
            "\"content\":\"hi\",\"content\":\"ho\"",
            1,
        );
        let texts = [
            missing.to_string(),
            null_field.to_string(),
            number_field.to_string(),
            string_tags.to_string(),
            duplicate,
            "[]".to_owned(),
            "not json".to_owned(),
            "{\"id\":".to_owned(),
            format!("{value} trailing"),
            // A lone surrogate is not a Unicode string.
            value.to_string().replace("\"hi\"", "\"\\ud800\""),
        ];
        for text in texts {
            let error = Event::from_json(&text).unwrap_err();
            assert!(
                matches!(error, NostrError::MalformedEvent { .. }),
                "{text}: {error:?}"
            );
            assert!(!error.to_string().contains(secret));
        }
    }

    #[test]
    fn refuses_deeply_nested_json_without_overflowing_the_stack() {
        let deep = format!(
            "{{\"tags\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(
            Event::from_json(&deep),
            Err(NostrError::MalformedEvent { .. })
        ));
    }

    #[test]
    fn refuses_every_truncation_and_one_byte_change_without_panicking() {
        let json = alice()
            .sign(
                1_700_000_000,
                1,
                &[&["p", &TestKey::new("bob").pubkey_hex()]],
                "a \"b\"\n",
            )
            .to_string();
        assert!(Event::from_json(&json).is_ok());
        for end in 0..json.len() {
            assert!(Event::from_json(&json[..end]).is_err(), "cut at {end}");
        }
        for at in 0..json.len() {
            for replacement in ["\"", "\\", "0", "x", "{", "]", ",", " ", "\u{e9}"] {
                if json[at..].starts_with(replacement) {
                    continue;
                }
                let mut changed = json.clone();
                changed.replace_range(at..at + 1, replacement);
                assert!(Event::from_json(&changed).is_err(), "{changed}");
            }
        }
    }

    #[test]
    fn refuses_json_over_the_size_cap_before_parsing() {
        let text = " ".repeat(MAX_EVENT_JSON_BYTES + 1);
        assert_eq!(
            Event::from_json(&text),
            Err(NostrError::EventTooLarge {
                bytes: MAX_EVENT_JSON_BYTES + 1,
                max: MAX_EVENT_JSON_BYTES
            })
        );
    }

    #[test]
    fn size_caps_accept_the_limit_and_refuse_one_more() {
        let key = alice();
        let at_limit = "x".repeat(MAX_CONTENT_BYTES);
        assert!(parse(&key.sign(1, 1, &[], &at_limit)).is_ok());
        assert_eq!(
            parse(&key.sign(1, 1, &[], &format!("{at_limit}x"))),
            Err(NostrError::ContentTooLarge {
                bytes: MAX_CONTENT_BYTES + 1,
                max: MAX_CONTENT_BYTES
            })
        );

        let tag: &[&str] = &["t", "x"];
        let tags = vec![tag; MAX_TAGS + 1];
        assert!(parse(&key.sign(1, 1, &tags[..MAX_TAGS], "")).is_ok());
        assert_eq!(
            parse(&key.sign(1, 1, &tags, "")),
            Err(NostrError::TooManyTags {
                count: MAX_TAGS + 1,
                max: MAX_TAGS
            })
        );

        let fields = vec!["x"; MAX_TAG_FIELDS + 1];
        assert!(parse(&key.sign(1, 1, &[&fields[..MAX_TAG_FIELDS]], "")).is_ok());
        assert_eq!(
            parse(&key.sign(1, 1, &[&fields[..]], "")),
            Err(NostrError::TagTooLong {
                count: MAX_TAG_FIELDS + 1,
                max: MAX_TAG_FIELDS
            })
        );

        let long = "x".repeat(MAX_TAG_FIELD_BYTES);
        assert!(parse(&key.sign(1, 1, &[&["description", &long]], "")).is_ok());
        let longer = format!("{long}x");
        assert_eq!(
            parse(&key.sign(1, 1, &[&["description", &longer]], "")),
            Err(NostrError::TagFieldTooLarge {
                bytes: MAX_TAG_FIELD_BYTES + 1,
                max: MAX_TAG_FIELD_BYTES
            })
        );
    }

    #[test]
    fn p_tags_are_the_well_formed_recipient_keys_in_order() {
        let bob = TestKey::new("bob").pubkey_hex();
        let carol = TestKey::new("carol").pubkey_hex();
        let value = alice().sign(
            1,
            1,
            &[
                &["p", &bob, "wss://relay.example", "mention"],
                &["e", &"ab".repeat(32)],
                &["p", &carol.to_ascii_uppercase()],
                &["p", "npub-or-junk"],
                &["p"],
                &["P", &carol],
                &["p", &carol],
                &["p", &bob],
            ],
            "",
        );
        let event = parse(&value).unwrap();
        let recipients: Vec<String> = event.p_tags().map(|k| k.to_hex()).collect();
        assert_eq!(recipients, [bob.clone(), carol, bob]);
    }

    #[test]
    fn e_tags_are_the_well_formed_event_ids_in_order() {
        let root = "ab".repeat(32);
        let reply = "cd".repeat(32);
        let value = alice().sign(
            1,
            1,
            &[
                &["e", &root, "", "root"],
                &["e", &"AB".repeat(32)],
                &["e", "short"],
                &["p", &TestKey::new("bob").pubkey_hex()],
                &["e", &reply, "wss://relay.example", "reply"],
            ],
            "",
        );
        let event = parse(&value).unwrap();
        let ids: Vec<String> = event.e_tags().map(|id| id.to_hex()).collect();
        assert_eq!(ids, [root, reply]);
    }

    #[test]
    fn what_herald_signs_verifies_and_round_trips_through_json() {
        let key = SecretKey::generate();
        let tags = vec![vec!["t".to_owned(), TRICKY.to_owned()]];
        let event = sign(1, tags, TRICKY.to_owned(), 1_700_000_000, &key);
        assert_eq!(event.pubkey(), &key.public_key());
        assert_eq!(parse(&event.to_json()), Ok(event));
    }

    #[test]
    fn keeps_the_signature_it_verified() {
        let value = alice().sign(1, 1, &[], "hi");
        let event = parse(&value).unwrap();
        assert_eq!(hex::encode(event.sig()), value["sig"]);
    }
}

//! Keys and signed events for the unit tests.
//!
//! Keys are derived from a name, so a failing test names the same key on
//! every run. Events are signed here with k256's BIP-340 signer over the
//! id `event` computes; the ids themselves are checked against other
//! implementations by the known-answer tests (NIP-98's example) and the
//! nostr-tools interop test, so this helper cannot hide a wrong id.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k256::schnorr::SigningKey;
use k256::schnorr::signature::hazmat::PrehashSigner;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::event::event_id;
use crate::hex;
use crate::pubkey::PublicKey;

/// The `Authorization` header in NIP-98's text, signed by its author
/// (snort.social): an event herald did not make, with a signature nobody
/// here computed. Its event names the URL in a `url` tag, an early form;
/// the event printed above it in the NIP says `u`, edited after signing,
/// so that one's id no longer matches.
pub const NIP98_EXAMPLE_AUTHORIZATION: &str = "Nostr eyJpZCI6ImZlOTY0ZTc1ODkwMzM2MGYyOGQ4NDI0ZDA5MmRhODQ5NGVkMjA3Y2JhODIzMTEwYmUzYTU3ZGZlNGI1Nzg3MzQiLCJwdWJrZXkiOiI2M2ZlNjMxOGRjNTg1ODNjZmUxNjgxMGY4NmRkMDllMThiZmQ3NmFhYmMyNGEwMDgxY2UyODU2ZjMzMDUwNGVkIiwiY29udGVudCI6IiIsImtpbmQiOjI3MjM1LCJjcmVhdGVkX2F0IjoxNjgyMzI3ODUyLCJ0YWdzIjpbWyJ1cmwiLCJodHRwczovL2FwaS5zbm9ydC5zb2NpYWwvYXBpL3YxL241c3AvbGlzdCJdLFsibWV0aG9kIiwiR0VUIl1dLCJzaWciOiI1ZWQ5ZDhlYzk1OGJjODU0Zjk5N2JkYzI0YWMzMzdkMDA1YWYzNzIzMjQ3NDdlZmU0YTAwZTI0ZjRjMzA0MzdmZjRkZDgzMDg2ODRiZWQ0NjdkOWQ2YmUzZTVhNTE3YmI0M2IxNzMyY2M3ZDMzOTQ5YTNhYWY4NjcwNWMyMjE4NCJ9";

/// The event inside `NIP98_EXAMPLE_AUTHORIZATION`, as JSON text.
pub fn nip98_example_event() -> String {
    let base64 = NIP98_EXAMPLE_AUTHORIZATION.strip_prefix("Nostr ").unwrap();
    String::from_utf8(STANDARD.decode(base64).unwrap()).unwrap()
}

/// A secret key for tests, derived from a name.
pub struct TestKey(SigningKey);

impl TestKey {
    pub fn new(name: &str) -> Self {
        let secret = Sha256::digest(format!("herald-nostr test key {name}"));
        Self(SigningKey::from_slice(&secret).expect("a SHA-256 is a valid secret key"))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::parse_hex(&self.pubkey_hex()).unwrap()
    }

    pub fn pubkey_hex(&self) -> String {
        hex::encode(&self.0.verifying_key().to_bytes())
    }

    /// A signed event as its JSON value, with a correct id and signature.
    pub fn sign(&self, created_at: u64, kind: u16, tags: &[&[&str]], content: &str) -> Value {
        let tags: Vec<Vec<String>> = tags
            .iter()
            .map(|tag| tag.iter().map(|f| (*f).to_owned()).collect())
            .collect();
        let id = event_id(&self.public_key(), created_at, kind, &tags, content);
        let sig = self.0.sign_prehash(id.as_bytes()).unwrap();
        json!({
            "id": id.to_hex(),
            "pubkey": self.pubkey_hex(),
            "created_at": created_at,
            "kind": kind,
            "tags": tags,
            "content": content,
            "sig": hex::encode(&sig.to_bytes()),
        })
    }
}

/// `Nostr <base64 of the event's JSON>`, as NIP-98 sends it.
pub fn authorization(event: &Value) -> String {
    format!("Nostr {}", STANDARD.encode(event.to_string()))
}

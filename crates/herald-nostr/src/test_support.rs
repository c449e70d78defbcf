//! Keys and signed events for the unit tests, and the nostr-tools peer
//! (`interop/nostr/events.mjs`) the interop tests of this crate and of the
//! binary run.
//!
//! Keys are derived from a name, so a failing test names the same key on
//! every run. Events are signed with `event::sign`, herald's own signer;
//! the ids it computes are checked against other implementations by the
//! known-answer tests (NIP-98's example) and the nostr-tools interop test,
//! so this helper cannot hide a wrong id.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k256::schnorr::SigningKey;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::event;
use crate::pubkey::PublicKey;
use crate::secret_key::SecretKey;

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
pub struct TestKey(SecretKey);

impl TestKey {
    pub fn new(name: &str) -> Self {
        let secret = Sha256::digest(format!("herald-nostr test key {name}"));
        let key = SigningKey::from_slice(&secret).expect("a SHA-256 is a valid secret key");
        Self(SecretKey::from(key))
    }

    pub fn public_key(&self) -> PublicKey {
        self.0.public_key()
    }

    pub fn pubkey_hex(&self) -> String {
        self.public_key().to_hex()
    }

    /// The same key as herald holds its own.
    pub fn secret_key(&self) -> &SecretKey {
        &self.0
    }

    /// A signed event as its JSON value, with a correct id and signature.
    pub fn sign(&self, created_at: u64, kind: u16, tags: &[&[&str]], content: &str) -> Value {
        let tags: Vec<Vec<String>> = tags
            .iter()
            .map(|tag| tag.iter().map(|f| (*f).to_owned()).collect())
            .collect();
        event::sign(kind, tags, content.to_owned(), created_at, &self.0).to_json()
    }
}

/// `Nostr <base64 of the event's JSON>`, as NIP-98 sends it.
pub fn authorization(event: &Value) -> String {
    format!("Nostr {}", STANDARD.encode(event.to_string()))
}

/// The nostr-tools peer: Node and the modules `interop/nostr/setup.sh`
/// installed (`HERALD_TEST_NODE`, `HERALD_TEST_NOSTR_MODULES`). `None` when
/// neither is set; half a setup is an error, never a skip.
pub fn nostr_tools_peer() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let node = std::env::var_os("HERALD_TEST_NODE");
    let modules = std::env::var_os("HERALD_TEST_NOSTR_MODULES");
    match (node, modules) {
        (Some(node), Some(modules)) => Some((node.into(), modules.into())),
        (None, None) => None,
        _ => panic!("set both HERALD_TEST_NODE and HERALD_TEST_NOSTR_MODULES, or neither"),
    }
}

/// Runs `events.mjs` with `request` on stdin: its stdout, or a panic with
/// its stderr.
pub fn run_events_mjs(
    node: &std::path::Path,
    modules: &std::path::Path,
    request: &Value,
) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../interop/nostr/events.mjs"
    );
    let mut child = Command::new(node)
        .arg(script)
        .arg(modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} {script}: {e}", node.display()));
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(request.to_string().as_bytes())
        .expect("events.mjs reads its request");
    drop(stdin);
    let output = child.wait_with_output().expect("events.mjs ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "events.mjs failed: {stderr}");
    String::from_utf8(output.stdout).expect("events.mjs prints UTF-8")
}

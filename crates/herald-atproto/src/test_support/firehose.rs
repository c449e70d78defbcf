//! Signed firehose frames, for tests, `herald bench firehose` and a
//! firehose stand-in server.
//!
//! A commit is built as a PDS builds one: each record encoded as canonical
//! DAG-CBOR and named by its CID, a Merkle Search Tree over the commit's
//! records (`mst::build`), the commit `{did, version: 3, data, rev, prev}`
//! signed with the repository's key (low-S, over its DAG-CBOR) and the
//! whole shipped as a CAR in a `#commit` frame. The tree holds only the
//! commit's own records, not the rest of a repository: herald checks the
//! blocks a frame carries, not the tree's history.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use p256::ecdsa::signature::Signer;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::did::{Did, PublicKey};
use crate::firehose::cid::{CidBuf, write_varint};
use crate::firehose::encode::{self, bytes, link};
use crate::firehose::mst;
use crate::service_auth::{KeyResolver, ResolveError};

/// Multicodec prefixes of compressed public keys in a Multikey.
const SECP256K1_PUB: [u8; 2] = [0xe7, 0x01];
const P256_PUB: [u8; 2] = [0x80, 0x24];

/// A repository's signing key, on either of atproto's curves.
#[derive(Clone)]
pub enum RepoKey {
    K256(k256::ecdsa::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

/// A scalar for a test key: the SHA-256 of a label and `seed`.
fn secret(curve: &str, seed: u64) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(format!("herald test repo key {curve} {seed}"));
    hash.finalize().into()
}

impl RepoKey {
    /// A secp256k1 key named by `seed` (the same seed, the same key).
    pub fn k256(seed: u64) -> Self {
        RepoKey::K256(
            k256::ecdsa::SigningKey::from_slice(&secret("k256", seed))
                .expect("a SHA-256 is a valid secp256k1 scalar"),
        )
    }

    /// A P-256 key named by `seed`.
    pub fn p256(seed: u64) -> Self {
        RepoKey::P256(
            p256::ecdsa::SigningKey::from_slice(&secret("p256", seed))
                .expect("a SHA-256 is a valid P-256 scalar"),
        )
    }

    pub fn public(&self) -> PublicKey {
        match self {
            RepoKey::K256(k) => PublicKey::K256((*k.verifying_key()).into()),
            RepoKey::P256(p) => PublicKey::P256(*p.verifying_key()),
        }
    }

    /// The key as a DID document's `publicKeyMultibase` (`zQ3s…`, `zDna…`).
    pub fn multikey(&self) -> String {
        let (prefix, point) = match self {
            RepoKey::K256(k) => (
                SECP256K1_PUB,
                k.verifying_key().to_sec1_point(true).as_ref().to_vec(),
            ),
            RepoKey::P256(p) => (
                P256_PUB,
                p.verifying_key().to_sec1_point(true).as_ref().to_vec(),
            ),
        };
        format!(
            "z{}",
            bs58::encode([&prefix[..], &point].concat()).into_string()
        )
    }

    /// A compact, low-S signature over `message` (hashed with SHA-256).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            RepoKey::K256(k) => {
                let sig: k256::ecdsa::Signature = k.sign(message);
                sig.normalize_s().to_bytes().to_vec()
            }
            RepoKey::P256(p) => {
                let sig: p256::ecdsa::Signature = p.sign(message);
                sig.normalize_s().to_bytes().to_vec()
            }
        }
    }

    /// The same signature with S replaced by n − S: valid ECDSA, refused
    /// by atproto.
    pub fn sign_high_s(&self, message: &[u8]) -> Vec<u8> {
        match self {
            RepoKey::K256(k) => {
                let sig: k256::ecdsa::Signature = k.sign(message);
                let (r, s) = sig.normalize_s().split_scalars();
                k256::ecdsa::Signature::from_scalars(r, -s)
                    .expect("n - s is a valid scalar")
                    .to_bytes()
                    .to_vec()
            }
            RepoKey::P256(p) => {
                let sig: p256::ecdsa::Signature = p.sign(message);
                let (r, s) = sig.normalize_s().split_scalars();
                p256::ecdsa::Signature::from_scalars(r, -s)
                    .expect("n - s is a valid scalar")
                    .to_bytes()
                    .to_vec()
            }
        }
    }
}

/// One operation: action (`create`, `update`, `delete`), collection, rkey,
/// and the record (JSON, atproto's form) for a create or update.
pub type Op<'a> = (&'a str, &'a str, &'a str, Option<Value>);

/// A commit ready to ship, its parts open to tampering by tests.
#[derive(Clone)]
pub struct SignedCommit {
    pub did: String,
    pub rev: String,
    /// The commit block: CID and bytes.
    pub commit: (CidBuf, Vec<u8>),
    /// The records and MST nodes.
    pub blocks: Vec<(CidBuf, Vec<u8>)>,
    /// The frame's `ops`, as JSON.
    pub ops: Vec<Value>,
}

/// Signs a commit of `ops` to `did`'s repository at `rev` with `key`.
pub fn signed_commit(key: &RepoKey, did: &str, rev: &str, ops: &[Op<'_>]) -> SignedCommit {
    let mut blocks = Vec::new();
    let mut entries = Vec::new();
    let mut frame_ops = Vec::new();
    for (action, collection, rkey, record) in ops {
        let path = format!("{collection}/{rkey}");
        let cid = record.as_ref().map(|record| {
            let (cid, bytes) = encode::block(record).expect("a record in atproto's JSON form");
            blocks.push((cid.clone(), bytes));
            entries.push((path.clone(), cid.clone()));
            cid
        });
        frame_ops.push(json!({"action": action, "path": path, "cid": cid.as_ref().map(link)}));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|a, b| a.0 == b.0);
    let (data, nodes) = mst::build::tree(&entries);
    blocks.extend(nodes);
    let unsigned = json!({"data": link(&data), "did": did, "prev": null, "rev": rev, "version": 3});
    SignedCommit {
        did: did.to_owned(),
        rev: rev.to_owned(),
        commit: sign_commit(key, &unsigned, false),
        blocks,
        ops: frame_ops,
    }
}

/// The commit block of `unsigned` signed by `key` (with a high-S
/// signature if asked): its CID and bytes.
pub fn sign_commit(key: &RepoKey, unsigned: &Value, high_s: bool) -> (CidBuf, Vec<u8>) {
    let message = encode::to_dag_cbor(unsigned).expect("a commit in atproto's JSON form");
    let sig = if high_s {
        key.sign_high_s(&message)
    } else {
        key.sign(&message)
    };
    let mut signed = unsigned.clone();
    signed["sig"] = bytes(&sig);
    encode::block(&signed).expect("a commit in atproto's JSON form")
}

impl SignedCommit {
    /// The `#commit` frame, with sequence number `seq` and time `time`
    /// (RFC 3339).
    pub fn frame(&self, seq: i64, time: &str) -> Vec<u8> {
        let mut blocks = vec![self.commit.clone()];
        blocks.extend(self.blocks.iter().cloned());
        let body = json!({
            "seq": seq, "rebase": false, "tooBig": false, "repo": self.did,
            "commit": link(&self.commit.0), "rev": self.rev, "since": null,
            "blocks": bytes(&car(&self.commit.0, &blocks)), "ops": self.ops,
            "blobs": [], "time": time,
        });
        message_frame("#commit", &body)
    }
}

/// A signed `#commit` frame of `ops`, stamped now: what a relay sends.
pub fn commit_frame(seq: i64, key: &RepoKey, did: &str, rev: &str, ops: &[Op<'_>]) -> Vec<u8> {
    signed_commit(key, did, rev, ops).frame(seq, &rfc3339(now_us()))
}

/// An `#identity` frame.
pub fn identity_frame(seq: i64, did: &str, handle: Option<&str>, time: &str) -> Vec<u8> {
    let mut body = json!({"seq": seq, "did": did, "time": time});
    if let Some(handle) = handle {
        body["handle"] = handle.into();
    }
    message_frame("#identity", &body)
}

/// An `#account` frame; `status` says why an inactive account is.
pub fn account_frame(
    seq: i64,
    did: &str,
    active: bool,
    status: Option<&str>,
    time: &str,
) -> Vec<u8> {
    let mut body = json!({"seq": seq, "did": did, "time": time, "active": active});
    if let Some(status) = status {
        body["status"] = status.into();
    }
    message_frame("#account", &body)
}

/// An error frame (header `op: -1`), such as `FutureCursor`.
pub fn error_frame(error: &str, message: Option<&str>) -> Vec<u8> {
    frame(
        &json!({"op": -1}),
        &json!({"error": error, "message": message}),
    )
}

/// A message frame of type `t` with `body` (JSON, atproto's form).
pub fn message_frame(t: &str, body: &Value) -> Vec<u8> {
    frame(&json!({"op": 1, "t": t}), body)
}

/// A frame: `header` then `body`, each as DAG-CBOR.
pub fn frame(header: &Value, body: &Value) -> Vec<u8> {
    let mut out = encode::to_dag_cbor(header).expect("a header in atproto's JSON form");
    out.extend(encode::to_dag_cbor(body).expect("a body in atproto's JSON form"));
    out
}

/// A CAR v1 of `blocks` with `root` as its root.
pub fn car(root: &CidBuf, blocks: &[(CidBuf, Vec<u8>)]) -> Vec<u8> {
    let header = encode::to_dag_cbor(&json!({"roots": [link(root)], "version": 1}))
        .expect("a CAR header is plain DAG-CBOR");
    let mut out = Vec::new();
    write_varint(header.len() as u64, &mut out);
    out.extend(header);
    for (cid, block) in blocks {
        let cid = cid.as_cid().as_bytes();
        write_varint((cid.len() + block.len()) as u64, &mut out);
        out.extend_from_slice(cid);
        out.extend_from_slice(block);
    }
    out
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `2026-05-25T14:23:29.132431Z`: a firehose `time`, to the microsecond.
pub fn rfc3339(time_us: u64) -> String {
    crate::time::format_rfc3339(time_us, 6)
}

/// Repository keys by DID, as a [`KeyResolver`]. A rotated DID answers its
/// old key to cached look-ups and its new key to fresh ones, like a cache
/// that has not seen the rotation yet.
#[derive(Default)]
pub struct StaticKeys {
    current: HashMap<String, PublicKey>,
    stale: HashMap<String, PublicKey>,
    fresh_lookups: AtomicUsize,
}

impl StaticKeys {
    pub fn new() -> Self {
        Self::default()
    }

    /// `did` signs with `key`.
    pub fn insert(&mut self, did: &str, key: PublicKey) {
        self.current.insert(did.to_owned(), key);
    }

    /// `did` moved from `old` to `new`; the cache still holds `old`.
    pub fn rotate(&mut self, did: &str, old: PublicKey, new: PublicKey) {
        self.stale.insert(did.to_owned(), old);
        self.current.insert(did.to_owned(), new);
    }

    /// Look-ups that bypassed the cache.
    pub fn fresh_lookups(&self) -> usize {
        self.fresh_lookups.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl KeyResolver for StaticKeys {
    async fn signing_key(
        &self,
        did: &Did,
        _key_id: &str,
        fresh: bool,
    ) -> Result<PublicKey, ResolveError> {
        if fresh {
            self.fresh_lookups.fetch_add(1, Ordering::Relaxed);
        } else if let Some(old) = self.stale.get(did.as_str()) {
            return Ok(old.clone());
        }
        self.current
            .get(did.as_str())
            .cloned()
            .ok_or_else(|| ResolveError(format!("no key for {did}")))
    }
}

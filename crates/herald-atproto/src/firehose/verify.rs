//! Commit verification: is a `#commit` what the repository's owner signed,
//! and is it new? (atproto.md §9, the sync spec's validation checklist.)
//!
//! In order, cheapest first, so that a replayed or forged frame costs no
//! key look-up and no signature check:
//!
//! 1. the `rev` must be newer than the last one verified for the repository
//!    (TIDs, so their order is their text's); an older or equal one is a
//!    replay and is ignored ([`VerifyFailure::StaleRev`]);
//! 2. every block must hash to its CID (SHA-256, DAG-CBOR codec), the CAR's
//!    root must be the frame's `commit`, and every create and update must
//!    find its record among the blocks;
//! 3. the commit block must be `{did, version: 3, data, rev, prev, sig}`
//!    with `did` the frame's `repo` and `rev` the frame's `rev`;
//! 4. `sig` must be a 64-byte low-S signature over the commit's DAG-CBOR
//!    without `sig`, by the DID's `#atproto` key. The key comes through a
//!    [`KeyResolver`] (the `DidResolver` and its cache); if the signature
//!    fails, the DID is resolved once more bypassing the cache, and the
//!    check retried if the key changed: the account may have rotated it.
//!
//! Only a commit that passes every check moves its repository's last
//! `rev`. Those revs are kept for the [`MAX_TRACKED_REPOS`] most recently
//! active repositories, least recently used dropped first. At about 60
//! bytes an entry (a did:plc packed into 15 bytes, the rev as the 64-bit
//! number a TID is) that is some 60 MB at the bound; a repository dropped
//! from the map has its next commit accepted on its signature alone,
//! which re-admits at most one replay of a commit it already signed.

use std::sync::{Arc, Mutex};

use hashlink::LruCache;

use super::cid::Cid;
use super::dag_cbor::{self, Head, MAJOR_MAP, Reader, Value};
use super::frame::Commit;
use crate::did::{Did, PLC_ID_BYTES, SignatureError};
use crate::service_auth::KeyResolver;

/// Repositories whose last `rev` is remembered (see the module docs): the
/// network's accounts active in a day are of this order.
pub const MAX_TRACKED_REPOS: usize = 1_000_000;
/// The only repository version atproto writes today.
const REPO_VERSION: i64 = 3;
/// A repository's signing key: the `#atproto` verification method.
const KEY_ID: &str = "atproto";
/// TIDs: 13 characters of base32-sortable, the top bit zero.
const TID_CHARS: usize = 13;
const TID_ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// Why a commit was not accepted. [`VerifyFailure::reason`] is a short,
/// stable label for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    #[error("rev {rev} is not newer than {last}, already verified")]
    StaleRev { rev: String, last: String },
    #[error("the frame is for {frame} but the commit for {commit}")]
    RepoMismatch { frame: String, commit: String },
    #[error("the frame says rev {frame} but the commit {commit}")]
    RevMismatch { frame: String, commit: String },
    #[error("block {0} is not in the CAR")]
    MissingBlock(String),
    #[error("block {0} does not hash to its CID")]
    CidMismatch(String),
    #[error("no #atproto key for the repository: {0}")]
    KeyUnavailable(String),
    #[error("commit signature: {0}")]
    BadSignature(SignatureError),
    #[error("malformed commit: {0}")]
    MalformedCommit(&'static str),
}

impl VerifyFailure {
    /// A label per reason, for a metric's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyFailure::StaleRev { .. } => "stale_rev",
            VerifyFailure::RepoMismatch { .. } => "repo_mismatch",
            VerifyFailure::RevMismatch { .. } => "rev_mismatch",
            VerifyFailure::MissingBlock(_) => "missing_block",
            VerifyFailure::CidMismatch(_) => "cid_mismatch",
            VerifyFailure::KeyUnavailable(_) => "key_unavailable",
            VerifyFailure::BadSignature(_) => "bad_signature",
            VerifyFailure::MalformedCommit(_) => "malformed_commit",
        }
    }
}

/// A repository in the rev map: a did:plc as its 15 bytes, or the DID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RepoId {
    Plc([u8; PLC_ID_BYTES]),
    Other(Box<str>),
}

impl RepoId {
    fn of(did: &Did) -> Self {
        match did.plc_bytes() {
            Some(bytes) => RepoId::Plc(bytes),
            None => RepoId::Other(did.as_str().into()),
        }
    }
}

/// Verifies commits; see the module docs. Share one per firehose.
pub struct CommitVerifier {
    keys: Arc<dyn KeyResolver>,
    /// Last verified rev of each repository, as a TID's number.
    last_revs: Mutex<LruCache<RepoId, u64>>,
}

/// The fields of a commit block the checks read, and what was signed.
struct CommitBlock<'a> {
    did: &'a str,
    rev: &'a str,
    sig: &'a [u8],
    unsigned: Unsigned<'a>,
}

/// The commit's DAG-CBOR without `sig`, in three pieces: the map's head
/// with one entry fewer, and the block's bytes before and after the `sig`
/// entry. The block was read as canonical DAG-CBOR, where equal values
/// have equal bytes, so these pieces are exactly the canonical encoding of
/// the unsigned commit; nothing needs re-encoding or copying.
struct Unsigned<'a> {
    head: Head,
    before_sig: &'a [u8],
    after_sig: &'a [u8],
}

impl Unsigned<'_> {
    fn parts(&self) -> [&[u8]; 3] {
        [self.head.as_bytes(), self.before_sig, self.after_sig]
    }
}

impl CommitVerifier {
    /// A verifier that finds keys through `keys` and remembers the last rev
    /// of [`MAX_TRACKED_REPOS`] repositories.
    pub fn new(keys: Arc<dyn KeyResolver>) -> Self {
        Self::with_capacity(keys, MAX_TRACKED_REPOS)
    }

    /// A verifier that remembers the last rev of `repos` repositories.
    pub fn with_capacity(keys: Arc<dyn KeyResolver>, repos: usize) -> Self {
        Self {
            keys,
            last_revs: Mutex::new(LruCache::new(repos.max(1))),
        }
    }

    /// Accepts `commit` if it passes every check, and records its rev.
    pub async fn verify(&self, commit: &Commit) -> Result<(), VerifyFailure> {
        let did = Did::parse(&commit.repo)
            .map_err(|_| VerifyFailure::MalformedCommit("repo is not a did:plc or did:web"))?;
        let repo = RepoId::of(&did);
        let rev = tid(&commit.rev).ok_or(VerifyFailure::MalformedCommit("rev is not a TID"))?;
        if let Some(last) = self.newest_seen(&repo, rev) {
            return Err(VerifyFailure::StaleRev {
                rev: commit.rev.clone(),
                last: tid_text(last),
            });
        }
        let block = check_blocks(commit)?;
        let fields = read_commit(block)?;
        if fields.did != commit.repo {
            return Err(VerifyFailure::RepoMismatch {
                frame: commit.repo.clone(),
                commit: fields.did.to_owned(),
            });
        }
        if fields.rev != commit.rev {
            return Err(VerifyFailure::RevMismatch {
                frame: commit.rev.clone(),
                commit: fields.rev.to_owned(),
            });
        }
        self.check_signature(&did, &fields.unsigned.parts(), fields.sig)
            .await?;
        self.record(repo, rev);
        Ok(())
    }

    /// The last rev verified for `repo`, if `rev` is not newer than it.
    fn newest_seen(&self, repo: &RepoId, rev: u64) -> Option<u64> {
        let mut revs = self.last_revs.lock().unwrap_or_else(|p| p.into_inner());
        revs.get(repo).copied().filter(|&last| rev <= last)
    }

    /// Records `rev` unless a newer one was verified meanwhile.
    fn record(&self, repo: RepoId, rev: u64) {
        let mut revs = self.last_revs.lock().unwrap_or_else(|p| p.into_inner());
        let newest = revs.get(&repo).map_or(rev, |&last| last.max(rev));
        revs.insert(repo, newest);
    }

    async fn check_signature(
        &self,
        did: &Did,
        unsigned: &[&[u8]],
        sig: &[u8],
    ) -> Result<(), VerifyFailure> {
        let unavailable = |e: crate::service_auth::ResolveError| VerifyFailure::KeyUnavailable(e.0);
        let key = self
            .keys
            .signing_key(did, KEY_ID, false)
            .await
            .map_err(unavailable)?;
        match key.verify_parts(unsigned, sig, false) {
            Ok(()) => Ok(()),
            // Only a signature that a different key could make good is
            // worth a fresh look-up.
            Err(SignatureError::Invalid) => {
                let fresh = self
                    .keys
                    .signing_key(did, KEY_ID, true)
                    .await
                    .map_err(unavailable)?;
                if fresh == key {
                    return Err(VerifyFailure::BadSignature(SignatureError::Invalid));
                }
                fresh
                    .verify_parts(unsigned, sig, false)
                    .map_err(VerifyFailure::BadSignature)
            }
            Err(e) => Err(VerifyFailure::BadSignature(e)),
        }
    }
}

/// Checks every block's hash, the root, and that each new record is there;
/// returns the commit block.
fn check_blocks(commit: &Commit) -> Result<&[u8], VerifyFailure> {
    let car = &commit.blocks;
    if let Some((cid, _)) = car.blocks().find(|(cid, block)| !cid.is_dag_cbor_of(block)) {
        return Err(VerifyFailure::CidMismatch(cid.to_string()));
    }
    let root = commit.commit.as_cid();
    if !car.roots().eq(std::iter::once(root)) {
        return Err(VerifyFailure::MalformedCommit(
            "the CAR's root is not the commit",
        ));
    }
    let present = |cid: Cid<'_>| {
        car.get(cid)
            .ok_or_else(|| VerifyFailure::MissingBlock(cid.to_string()))
    };
    for op in &commit.ops {
        if let Some(cid) = &op.cid {
            present(cid.as_cid())?;
        }
    }
    present(root)
}

/// Reads `{did, version: 3, data, rev, prev, sig}` in one pass, keeping
/// the values the checks read and where the `sig` entry lies.
fn read_commit(block: &[u8]) -> Result<CommitBlock<'_>, VerifyFailure> {
    let malformed = VerifyFailure::MalformedCommit;
    let (mut did, mut version, mut data, mut prev, mut rev, mut sig) =
        (None, None, None, None, None, None);
    let (mut entries, mut body, mut sig_span) = (0u64, None, None);
    let mut reader = Reader::new(block);
    reader
        .map_entries(|span, key, value| {
            entries += 1;
            body.get_or_insert(span.start);
            let field = match key {
                "did" => &mut did,
                "version" => &mut version,
                "data" => &mut data,
                "prev" => &mut prev,
                "rev" => &mut rev,
                "sig" => {
                    sig_span = Some(span);
                    &mut sig
                }
                _ => return,
            };
            *field = Some(value);
        })
        .and_then(|()| reader.finish())
        .map_err(|_| match dag_cbor::decode(block) {
            Ok(_) => malformed("not a map"),
            Err(_) => malformed("not DAG-CBOR"),
        })?;
    if version.as_ref().and_then(Value::as_int) != Some(REPO_VERSION) {
        return Err(malformed("version is not 3"));
    }
    if data.as_ref().and_then(Value::as_link).is_none() {
        return Err(malformed("data is not a CID"));
    }
    if !matches!(prev, None | Some(Value::Null | Value::Link(_))) {
        return Err(malformed("prev is neither null nor a CID"));
    }
    let did = did
        .as_ref()
        .and_then(Value::as_text)
        .ok_or(malformed("did is not text"))?;
    let rev = rev
        .as_ref()
        .and_then(Value::as_text)
        .ok_or(malformed("rev is not text"))?;
    let (Some(Value::Bytes(sig)), Some(sig_span), Some(body)) = (sig, sig_span, body) else {
        return Err(malformed("sig is not bytes"));
    };
    Ok(CommitBlock {
        did,
        rev,
        sig,
        unsigned: Unsigned {
            head: Head::new(MAJOR_MAP, entries - 1),
            before_sig: &block[body..sig_span.start],
            after_sig: &block[sig_span.end..],
        },
    })
}

/// A TID's 64-bit value, or `None` if `text` is not a TID. TIDs sort as
/// their text does, so comparing values compares revs.
fn tid(text: &str) -> Option<u64> {
    if text.len() != TID_CHARS {
        return None;
    }
    let value = text.bytes().try_fold(0u64, |n, c| {
        let digit = TID_ALPHABET.iter().position(|&a| a == c)?;
        Some((n << 5) | digit as u64)
    })?;
    // 13 characters carry 65 bits; a TID's top bit is zero, so the
    // first character is one of the first 16 (`2`–`j`).
    (TID_ALPHABET[..16].contains(&text.as_bytes()[0])).then_some(value)
}

/// A TID's text from its value.
fn tid_text(mut value: u64) -> String {
    let mut out = [0u8; TID_CHARS];
    for c in out.iter_mut().rev() {
        *c = TID_ALPHABET[(value & 31) as usize];
        value >>= 5;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value as Json, json};

    use super::*;
    use crate::firehose::cid::CidBuf;
    use crate::firehose::encode::{self, link};
    use crate::firehose::{FirehoseMessage, decode_frame};
    use crate::test_support::firehose::{
        RepoKey, SignedCommit, StaticKeys, sign_commit, signed_commit,
    };

    const ALICE: &str = "did:plc:aliceeeeeeeeeeeeeeeeeeee";
    const BOB: &str = "did:plc:bobbbbbbbbbbbbbbbbbbbbbb";
    const REV: &str = "3mmoojp7vgo2g";
    const LATER: &str = "3mmoojp7vgo2h";
    const TIME: &str = "2026-05-25T14:23:29.132431Z";

    fn post() -> Json {
        json!({"$type": "app.bsky.feed.post", "createdAt": "2026-05-25T14:23:28.757Z",
            "langs": ["en"], "text": "hello"})
    }

    fn commit_of(key: &RepoKey, did: &str, rev: &str) -> SignedCommit {
        signed_commit(
            key,
            did,
            rev,
            &[
                (
                    "create",
                    "app.bsky.feed.post",
                    "3mmoojp4cd223",
                    Some(post()),
                ),
                ("delete", "app.bsky.feed.like", "3mmoojp4cd224", None),
            ],
        )
    }

    fn decoded(commit: &SignedCommit) -> Commit {
        match decode_frame(&commit.frame(1, TIME)) {
            Ok(FirehoseMessage::Commit(c)) => c,
            other => panic!("not a commit: {other:?}"),
        }
    }

    fn verifier(keys: StaticKeys) -> CommitVerifier {
        CommitVerifier::new(Arc::new(keys))
    }

    fn keys(entries: &[(&str, &RepoKey)]) -> StaticKeys {
        let mut keys = StaticKeys::new();
        for (did, key) in entries {
            keys.insert(did, key.public());
        }
        keys
    }

    /// The unsigned commit of `commit`, as JSON.
    fn unsigned(commit: &SignedCommit) -> Json {
        let value = dag_cbor::decode(&commit.commit.1).unwrap();
        let map = value.as_map().unwrap();
        json!({
            "data": link(&map.get("data").and_then(Value::as_link).unwrap().to_owned()),
            "did": map.get("did").and_then(Value::as_text).unwrap(),
            "prev": null,
            "rev": map.get("rev").and_then(Value::as_text).unwrap(),
            "version": map.get("version").and_then(Value::as_int).unwrap(),
        })
    }

    #[tokio::test]
    async fn accepts_commits_signed_on_either_curve() {
        for key in [RepoKey::k256(1), RepoKey::p256(1)] {
            let verifier = verifier(keys(&[(ALICE, &key)]));
            assert_eq!(
                verifier
                    .verify(&decoded(&commit_of(&key, ALICE, REV)))
                    .await,
                Ok(())
            );
        }
    }

    #[tokio::test]
    async fn ignores_a_rev_not_newer_than_the_last_verified() {
        let key = RepoKey::k256(1);
        let verifier = verifier(keys(&[(ALICE, &key), (BOB, &key)]));
        let later = decoded(&commit_of(&key, ALICE, LATER));
        verifier.verify(&later).await.unwrap();
        for rev in [LATER, REV] {
            let failure = verifier
                .verify(&decoded(&commit_of(&key, ALICE, rev)))
                .await
                .unwrap_err();
            assert_eq!(
                failure,
                VerifyFailure::StaleRev {
                    rev: rev.into(),
                    last: LATER.into()
                }
            );
            assert_eq!(failure.reason(), "stale_rev");
        }
        // Another repository's revs are its own.
        assert_eq!(
            verifier.verify(&decoded(&commit_of(&key, BOB, REV))).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn a_failed_commit_does_not_move_the_rev() {
        let key = RepoKey::k256(1);
        let verifier = verifier(keys(&[(ALICE, &key)]));
        let forged = decoded(&commit_of(&RepoKey::k256(2), ALICE, LATER));
        assert!(verifier.verify(&forged).await.is_err());
        assert_eq!(
            verifier
                .verify(&decoded(&commit_of(&key, ALICE, REV)))
                .await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn forgets_the_least_recent_repository_past_its_bound() {
        let key = RepoKey::k256(1);
        let carol = "did:web:carol.example.com";
        let verifier = CommitVerifier::with_capacity(
            Arc::new(keys(&[(ALICE, &key), (BOB, &key), (carol, &key)])),
            2,
        );
        for did in [ALICE, BOB, carol] {
            verifier
                .verify(&decoded(&commit_of(&key, did, REV)))
                .await
                .unwrap();
        }
        // Alice was dropped: her replay passes on its signature alone; Carol's does not.
        assert_eq!(
            verifier
                .verify(&decoded(&commit_of(&key, ALICE, REV)))
                .await,
            Ok(())
        );
        assert!(matches!(
            verifier
                .verify(&decoded(&commit_of(&key, carol, REV)))
                .await,
            Err(VerifyFailure::StaleRev { .. })
        ));
    }

    #[tokio::test]
    async fn refuses_a_record_whose_bytes_do_not_match_its_cid() {
        let key = RepoKey::k256(1);
        let mut commit = commit_of(&key, ALICE, REV);
        let cid = CidBuf::dag_cbor_of(&encode::to_dag_cbor(&post()).unwrap());
        let record = commit.blocks.iter_mut().find(|(c, _)| *c == cid).unwrap();
        let at = record.1.len() - 1;
        record.1[at] ^= 1;
        let failure = verifier(keys(&[(ALICE, &key)]))
            .verify(&decoded(&commit))
            .await
            .unwrap_err();
        assert_eq!(failure.reason(), "cid_mismatch");
    }

    #[tokio::test]
    async fn refuses_a_commit_without_its_record_block() {
        let key = RepoKey::k256(1);
        let mut commit = commit_of(&key, ALICE, REV);
        let record = CidBuf::dag_cbor_of(&encode::to_dag_cbor(&post()).unwrap());
        commit.blocks.retain(|(cid, _)| *cid != record);
        let failure = verifier(keys(&[(ALICE, &key)]))
            .verify(&decoded(&commit))
            .await
            .unwrap_err();
        assert_eq!(failure, VerifyFailure::MissingBlock(record.to_string()));
        assert_eq!(failure.reason(), "missing_block");
    }

    #[tokio::test]
    async fn refuses_a_commit_changed_after_signing() {
        let key = RepoKey::k256(1);
        let mut commit = commit_of(&key, ALICE, REV);
        let signed = dag_cbor::decode(&commit.commit.1).unwrap();
        let sig = signed
            .as_map()
            .unwrap()
            .get("sig")
            .and_then(Value::as_bytes)
            .unwrap()
            .to_vec();
        let mut changed = unsigned(&commit);
        changed["data"] = link(&CidBuf::dag_cbor_of(b"another tree"));
        changed["sig"] = encode::bytes(&sig);
        commit.commit = encode::block(&changed).unwrap();
        let keys = Arc::new(keys(&[(ALICE, &key)]));
        let failure = CommitVerifier::new(keys.clone())
            .verify(&decoded(&commit))
            .await
            .unwrap_err();
        assert_eq!(
            failure,
            VerifyFailure::BadSignature(SignatureError::Invalid)
        );
        assert_eq!(failure.reason(), "bad_signature");
        assert_eq!(keys.fresh_lookups(), 1, "one fresh look-up, the same key");
    }

    #[tokio::test]
    async fn refuses_a_high_s_signature_without_a_fresh_lookup() {
        for key in [RepoKey::k256(1), RepoKey::p256(1)] {
            let mut commit = commit_of(&key, ALICE, REV);
            commit.commit = sign_commit(&key, &unsigned(&commit), true);
            let keys = Arc::new(keys(&[(ALICE, &key)]));
            let failure = CommitVerifier::new(keys.clone())
                .verify(&decoded(&commit))
                .await;
            assert_eq!(
                failure,
                Err(VerifyFailure::BadSignature(SignatureError::HighS))
            );
            assert_eq!(keys.fresh_lookups(), 0);
        }
    }

    #[tokio::test]
    async fn refuses_a_signature_by_another_key() {
        let key = RepoKey::k256(1);
        let keys = Arc::new(keys(&[(ALICE, &RepoKey::p256(1))]));
        let failure = CommitVerifier::new(keys.clone())
            .verify(&decoded(&commit_of(&key, ALICE, REV)))
            .await;
        assert_eq!(
            failure,
            Err(VerifyFailure::BadSignature(SignatureError::Invalid))
        );
        assert_eq!(keys.fresh_lookups(), 1);
    }

    #[tokio::test]
    async fn a_rotated_key_is_found_by_one_fresh_lookup() {
        let (old, new) = (RepoKey::k256(1), RepoKey::k256(2));
        let mut rotated = StaticKeys::new();
        rotated.rotate(ALICE, old.public(), new.public());
        let rotated = Arc::new(rotated);
        let verifier = CommitVerifier::new(rotated.clone());
        assert_eq!(
            verifier
                .verify(&decoded(&commit_of(&new, ALICE, REV)))
                .await,
            Ok(())
        );
        assert_eq!(rotated.fresh_lookups(), 1);
        // Neither the cached key nor the fresh one signed it.
        let stranger = decoded(&commit_of(&RepoKey::k256(3), ALICE, LATER));
        assert_eq!(
            verifier.verify(&stranger).await,
            Err(VerifyFailure::BadSignature(SignatureError::Invalid))
        );
        assert_eq!(rotated.fresh_lookups(), 2);
    }

    #[tokio::test]
    async fn refuses_a_repository_without_a_key() {
        let key = RepoKey::k256(1);
        let failure = verifier(StaticKeys::new())
            .verify(&decoded(&commit_of(&key, ALICE, REV)))
            .await
            .unwrap_err();
        assert_eq!(failure.reason(), "key_unavailable");
    }

    #[tokio::test]
    async fn the_frame_must_name_the_commit_s_repository_and_rev() {
        let key = RepoKey::k256(1);
        let verifier = verifier(keys(&[(ALICE, &key), (BOB, &key)]));
        let mut commit = commit_of(&key, ALICE, REV);
        commit.did = BOB.into();
        let failure = verifier.verify(&decoded(&commit)).await.unwrap_err();
        assert_eq!(
            failure,
            VerifyFailure::RepoMismatch {
                frame: BOB.into(),
                commit: ALICE.into()
            }
        );
        assert_eq!(failure.reason(), "repo_mismatch");
        let mut commit = commit_of(&key, ALICE, REV);
        commit.rev = LATER.into();
        let failure = verifier.verify(&decoded(&commit)).await.unwrap_err();
        assert_eq!(
            failure,
            VerifyFailure::RevMismatch {
                frame: LATER.into(),
                commit: REV.into()
            }
        );
        assert_eq!(failure.reason(), "rev_mismatch");
    }

    #[tokio::test]
    async fn refuses_malformed_commits() {
        let key = RepoKey::k256(1);
        let verifier = verifier(keys(&[(ALICE, &key)]));
        let with = |change: &dyn Fn(&mut Json)| {
            let mut commit = commit_of(&key, ALICE, REV);
            let mut value = unsigned(&commit);
            change(&mut value);
            commit.commit = sign_commit(&key, &value, false);
            decoded(&commit)
        };
        for (change, why) in [
            (
                &(|v: &mut Json| v["version"] = 2.into()) as &dyn Fn(&mut Json),
                "version is not 3",
            ),
            (&|v: &mut Json| v["data"] = "x".into(), "data is not a CID"),
            (
                &|v: &mut Json| v["prev"] = 1.into(),
                "prev is neither null nor a CID",
            ),
            (&|v: &mut Json| v["did"] = 1.into(), "did is not text"),
        ] {
            assert_eq!(
                verifier.verify(&with(change)).await,
                Err(VerifyFailure::MalformedCommit(why))
            );
        }
        let mut not_tid = decoded(&commit_of(&key, ALICE, REV));
        not_tid.rev = "not-a-tid".into();
        assert_eq!(
            verifier.verify(&not_tid).await,
            Err(VerifyFailure::MalformedCommit("rev is not a TID"))
        );
        let mut not_did = decoded(&commit_of(&key, ALICE, REV));
        not_did.repo = "alice".into();
        assert_eq!(
            verifier.verify(&not_did).await.unwrap_err().reason(),
            "malformed_commit"
        );
        // The CAR's root must be the commit.
        let mut moved = decoded(&commit_of(&key, ALICE, REV));
        moved.commit = CidBuf::dag_cbor_of(b"elsewhere");
        assert_eq!(
            verifier.verify(&moved).await,
            Err(VerifyFailure::MalformedCommit(
                "the CAR's root is not the commit"
            ))
        );
    }

    /// The unsigned commit `read_commit` cuts out of `block`.
    fn cut_unsigned(block: &[u8]) -> Vec<u8> {
        read_commit(block).unwrap().unsigned.parts().concat()
    }

    #[test]
    fn the_unsigned_commit_is_the_commit_encoded_without_sig() {
        let key = RepoKey::k256(1);
        let commit = commit_of(&key, ALICE, REV);
        assert_eq!(
            cut_unsigned(&commit.commit.1),
            encode::to_dag_cbor(&unsigned(&commit)).unwrap()
        );
        // Other fields, sorting before and after `sig`, and enough of them
        // that dropping `sig` shortens the map's head (24 entries need two
        // bytes, 23 one).
        for extra in [0, 1, 18, 19, 40] {
            let mut value = unsigned(&commit);
            for i in 0..extra {
                value[format!("x{i}")] = json!([i, "more"]);
            }
            value["a"] = json!({"nested": {"sig": encode::bytes(b"not this one")}});
            value["zzzzzzzzzzzz"] = json!(null);
            let expected = encode::to_dag_cbor(&value).unwrap();
            let mut signed = value.clone();
            signed["sig"] = encode::bytes(&[7; 64]);
            let block = encode::to_dag_cbor(&signed).unwrap();
            assert_eq!(cut_unsigned(&block), expected, "{extra} extra fields");
        }
    }

    /// The cut is the re-encoding only for canonical input: everything
    /// else must be refused before it, as the strict decoder refuses it.
    #[test]
    fn refuses_commit_blocks_that_are_not_canonical() {
        let commit = commit_of(&RepoKey::k256(1), ALICE, REV);
        let block = &commit.commit.1;
        // {did, rev, sig, data, prev, version}: six entries.
        assert_eq!(block[0], 0xa6);
        let entry = |key: &str| {
            let mut spans = Vec::new();
            Reader::new(block)
                .map_entries(|span, k, _| {
                    if k == key {
                        spans.push(span)
                    }
                })
                .unwrap();
            block[spans[0].clone()].to_vec()
        };
        let rest = |from: &str| {
            let start = block.windows(from.len()).position(|w| w == from.as_bytes());
            block[start.unwrap() - 1..].to_vec()
        };
        let head_long = [&[0xb8, 0x06][..], &block[1..]].concat();
        let indefinite = [&[0xbf][..], &block[1..], &[0xff]].concat();
        let trailing = [&block[..], &[0x00]].concat();
        let swapped = [
            &[0xa6][..],
            &entry("rev"),
            &entry("did"),
            &entry("sig"),
            &rest("data"),
        ]
        .concat();
        let sig_twice = [
            &[0xa7][..],
            &entry("did"),
            &entry("rev"),
            &entry("sig"),
            &entry("sig"),
            &rest("data"),
        ]
        .concat();
        let version_long = {
            // `version` is the last entry, 3 its last byte.
            let mut bytes = block[..block.len() - 1].to_vec();
            bytes.extend_from_slice(&[0x18, 0x03]);
            bytes
        };
        for (bytes, what) in [
            (head_long, "a map head not in its shortest form"),
            (indefinite, "an indefinite-length map"),
            (trailing, "trailing bytes"),
            (swapped, "keys out of order"),
            (sig_twice, "a repeated sig"),
            (version_long, "an integer not in its shortest form"),
        ] {
            assert!(dag_cbor::decode(&bytes).is_err(), "{what}");
            assert!(
                matches!(
                    read_commit(&bytes),
                    Err(VerifyFailure::MalformedCommit("not DAG-CBOR"))
                ),
                "{what}"
            );
        }
        let array = encode::to_dag_cbor(&json!([1, 2])).unwrap();
        assert!(matches!(
            read_commit(&array),
            Err(VerifyFailure::MalformedCommit("not a map"))
        ));
        let mut unsigned_only = unsigned(&commit);
        unsigned_only["sig"] = json!("text");
        assert!(matches!(
            read_commit(&encode::to_dag_cbor(&unsigned_only).unwrap()),
            Err(VerifyFailure::MalformedCommit("sig is not bytes"))
        ));
    }

    #[test]
    fn tids_compare_as_their_text() {
        assert_eq!(tid_text(tid(REV).unwrap()), REV);
        assert!(tid(REV) < tid(LATER));
        assert!(tid("2222222222222") < tid("jzzzzzzzzzzzz"));
        for bad in [
            "",
            "3mmoojp7vgo2",
            "3mmoojp7vgo2gg",
            "kmmoojp7vgo2g",
            "3MMOOJP7VGO2G",
            "3mmoojp7vgo21",
        ] {
            assert_eq!(tid(bad), None, "{bad}");
        }
    }
}

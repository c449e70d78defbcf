//! One `subscribeRepos` WebSocket frame: a header and a body (atproto.md §9).
//!
//! Both are DAG-CBOR objects, one after the other. The header is
//! `{op: 1, t: "#commit"}` for a message (its type in `t`) or `{op: -1}`
//! for an error, whose body is `{error, message?}`. Decoding applies the
//! lexicon's limits before anything is copied: a frame over
//! [`MAX_FRAME_BYTES`], a CAR over [`MAX_BLOCKS_BYTES`], more than
//! [`MAX_OPS`] operations or a block over [`MAX_RECORD_BYTES`] is refused.
//! A message type this version does not know is returned as
//! [`FirehoseMessage::Unknown`], not an error: the event-stream spec asks
//! clients to skip new types, and the relay adds them.

use super::car::Car;
use super::cid::CidBuf;
use super::dag_cbor::{Map, Reader, Value};
use super::{FirehoseError, MAX_BLOCKS_BYTES, MAX_FRAME_BYTES, MAX_OPS, MAX_RECORD_BYTES};

/// Header `op` of a message and of an error.
const OP_MESSAGE: i64 = 1;
const OP_ERROR: i64 = -1;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirehoseMessage {
    Commit(Commit),
    Sync(Sync),
    Identity(Identity),
    Account(Account),
    /// An advisory such as `OutdatedCursor`.
    Info {
        name: String,
        message: Option<String>,
    },
    /// An error frame (header `op: -1`); the server closes after it.
    Error {
        error: String,
        message: Option<String>,
    },
    /// A message type this version does not read.
    Unknown {
        t: String,
    },
}

impl FirehoseMessage {
    /// The relay's sequence number: the cursor to resume after.
    pub fn seq(&self) -> Option<i64> {
        match self {
            FirehoseMessage::Commit(c) => Some(c.seq),
            FirehoseMessage::Sync(s) => Some(s.seq),
            FirehoseMessage::Identity(i) => Some(i.seq),
            FirehoseMessage::Account(a) => Some(a.seq),
            _ => None,
        }
    }
}

/// `#commit`: a repository changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub seq: i64,
    /// The repository's DID.
    pub repo: String,
    /// The CID of the commit block in `blocks`.
    pub commit: CidBuf,
    /// The commit's revision (a TID).
    pub rev: String,
    /// The revision before this one, if any.
    pub since: Option<String>,
    /// The commit, the changed MST nodes and the new records.
    pub blocks: Car,
    pub ops: Vec<RepoOp>,
    /// The MST root before this commit (Sync 1.1), to invert the change.
    pub prev_data: Option<CidBuf>,
    /// When the relay received it (RFC 3339).
    pub time: String,
}

/// One operation of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoOp {
    pub action: Action,
    pub collection: String,
    pub rkey: String,
    /// The new record's CID; `None` for a delete.
    pub cid: Option<CidBuf>,
    /// The record's CID before (Sync 1.1), for updates and deletes.
    pub prev: Option<CidBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    /// The name on the wire, and in Jetstream's `operation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// `#sync`: the repository was reset; its current commit is in `blocks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sync {
    pub seq: i64,
    pub did: String,
    pub blocks: Car,
    pub rev: String,
    pub time: String,
}

/// `#identity`: the account's DID document or handle may have changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub seq: i64,
    pub did: String,
    pub time: String,
    pub handle: Option<String>,
}

/// `#account`: the account's hosting status changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub seq: i64,
    pub did: String,
    pub time: String,
    pub active: bool,
    /// Why it is inactive: `takendown`, `suspended`, `deleted`, …
    pub status: Option<String>,
}

/// Decodes one frame; never panics, whatever `bytes` holds.
pub fn decode_frame(bytes: &[u8]) -> Result<FirehoseMessage, FirehoseError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(FirehoseError::TooLarge {
            what: "frame",
            size: bytes.len(),
            limit: MAX_FRAME_BYTES,
        });
    }
    let mut reader = Reader::new(bytes);
    let header = reader.value()?;
    let body = reader.value()?;
    reader.finish()?;
    let header = Fields::of("header", &header)?;
    let body = Fields::of("body", &body)?;
    match header.int("op")? {
        OP_ERROR => Ok(FirehoseMessage::Error {
            error: body.text("error")?.to_owned(),
            message: body.optional_text("message")?,
        }),
        OP_MESSAGE => message(header.text("t")?, &body),
        _ => Err(header.invalid("op", "is neither 1 nor -1")),
    }
}

fn message(t: &str, body: &Fields<'_, '_>) -> Result<FirehoseMessage, FirehoseError> {
    let body = Fields {
        t: message_name(t),
        ..*body
    };
    Ok(match t {
        "#commit" => FirehoseMessage::Commit(commit(&body)?),
        "#sync" => FirehoseMessage::Sync(Sync {
            seq: body.int("seq")?,
            did: body.text("did")?.to_owned(),
            blocks: body.car("blocks")?,
            rev: body.text("rev")?.to_owned(),
            time: body.text("time")?.to_owned(),
        }),
        "#identity" => FirehoseMessage::Identity(Identity {
            seq: body.int("seq")?,
            did: body.text("did")?.to_owned(),
            time: body.text("time")?.to_owned(),
            handle: body.optional_text("handle")?,
        }),
        "#account" => FirehoseMessage::Account(Account {
            seq: body.int("seq")?,
            did: body.text("did")?.to_owned(),
            time: body.text("time")?.to_owned(),
            active: body.boolean("active")?,
            status: body.optional_text("status")?,
        }),
        "#info" => FirehoseMessage::Info {
            name: body.text("name")?.to_owned(),
            message: body.optional_text("message")?,
        },
        other => FirehoseMessage::Unknown {
            t: other.to_owned(),
        },
    })
}

/// The static name errors carry for a known message type.
fn message_name(t: &str) -> &'static str {
    match t {
        "#commit" => "#commit",
        "#sync" => "#sync",
        "#identity" => "#identity",
        "#account" => "#account",
        "#info" => "#info",
        _ => "body",
    }
}

fn commit(body: &Fields<'_, '_>) -> Result<Commit, FirehoseError> {
    let Value::Array(ops) = body.get("ops")? else {
        return Err(body.invalid("ops", "is not an array"));
    };
    if ops.len() > MAX_OPS {
        return Err(FirehoseError::TooLarge {
            what: "ops",
            size: ops.len(),
            limit: MAX_OPS,
        });
    }
    Ok(Commit {
        seq: body.int("seq")?,
        repo: body.text("repo")?.to_owned(),
        commit: body.link("commit")?,
        rev: body.text("rev")?.to_owned(),
        since: body.optional_text("since")?,
        blocks: body.car("blocks")?,
        ops: ops
            .iter()
            .map(|op| repo_op(&Fields::of("op", op)?))
            .collect::<Result<_, _>>()?,
        prev_data: body.optional_link("prevData")?,
        time: body.text("time")?.to_owned(),
    })
}

fn repo_op(op: &Fields<'_, '_>) -> Result<RepoOp, FirehoseError> {
    let action = match op.text("action")? {
        "create" => Action::Create,
        "update" => Action::Update,
        "delete" => Action::Delete,
        _ => return Err(op.invalid("action", "is not create, update or delete")),
    };
    let (collection, rkey) = op
        .text("path")?
        .split_once('/')
        .filter(|(c, r)| !c.is_empty() && !r.is_empty() && !r.contains('/'))
        .ok_or_else(|| op.invalid("path", "is not collection/rkey"))?;
    let cid = op.optional_link("cid")?;
    if cid.is_some() == (action == Action::Delete) {
        return Err(op.invalid("cid", "must be given for a create or update only"));
    }
    Ok(RepoOp {
        action,
        collection: collection.to_owned(),
        rkey: rkey.to_owned(),
        cid,
        prev: op.optional_link("prev")?,
    })
}

/// The fields of a map in a frame, read with errors that name them.
#[derive(Clone, Copy)]
struct Fields<'m, 'a> {
    /// What the map is (`header`, `#commit`, `op`, …), for errors.
    t: &'static str,
    map: &'m Map<'a>,
}

impl<'m, 'a> Fields<'m, 'a> {
    fn of(t: &'static str, value: &'m Value<'a>) -> Result<Self, FirehoseError> {
        match value {
            Value::Map(map) => Ok(Self { t, map }),
            _ => Err(FirehoseError::NotAMap(t)),
        }
    }

    fn invalid(&self, field: &'static str, why: &'static str) -> FirehoseError {
        FirehoseError::Field {
            t: self.t,
            field,
            why,
        }
    }

    fn get(&self, field: &'static str) -> Result<&'m Value<'a>, FirehoseError> {
        self.map
            .get(field)
            .ok_or_else(|| self.invalid(field, "is missing"))
    }

    /// `field`, or `None` if it is absent or null.
    fn optional(&self, field: &'static str) -> Option<&'m Value<'a>> {
        self.map.get(field).filter(|v| **v != Value::Null)
    }

    fn int(&self, field: &'static str) -> Result<i64, FirehoseError> {
        self.get(field)?
            .as_int()
            .ok_or_else(|| self.invalid(field, "is not an integer"))
    }

    fn boolean(&self, field: &'static str) -> Result<bool, FirehoseError> {
        match self.get(field)? {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.invalid(field, "is not a boolean")),
        }
    }

    fn text(&self, field: &'static str) -> Result<&'a str, FirehoseError> {
        self.get(field)?
            .as_text()
            .ok_or_else(|| self.invalid(field, "is not text"))
    }

    fn optional_text(&self, field: &'static str) -> Result<Option<String>, FirehoseError> {
        self.optional(field)
            .map(|v| {
                v.as_text()
                    .map(str::to_owned)
                    .ok_or_else(|| self.invalid(field, "is not text"))
            })
            .transpose()
    }

    fn link(&self, field: &'static str) -> Result<CidBuf, FirehoseError> {
        self.get(field)?
            .as_link()
            .map(|cid| cid.to_owned())
            .ok_or_else(|| self.invalid(field, "is not a CID"))
    }

    fn optional_link(&self, field: &'static str) -> Result<Option<CidBuf>, FirehoseError> {
        self.optional(field)
            .map(|v| {
                v.as_link()
                    .map(|cid| cid.to_owned())
                    .ok_or_else(|| self.invalid(field, "is not a CID"))
            })
            .transpose()
    }

    /// The CAR in bytes `field`, under the lexicon's size limits.
    fn car(&self, field: &'static str) -> Result<Car, FirehoseError> {
        let bytes = self
            .get(field)?
            .as_bytes()
            .ok_or_else(|| self.invalid(field, "is not bytes"))?;
        if bytes.len() > MAX_BLOCKS_BYTES {
            return Err(FirehoseError::TooLarge {
                what: "blocks",
                size: bytes.len(),
                limit: MAX_BLOCKS_BYTES,
            });
        }
        let car = Car::parse(bytes.to_vec())?;
        if let Some((_, block)) = car.blocks().find(|(_, b)| b.len() > MAX_RECORD_BYTES) {
            return Err(FirehoseError::TooLarge {
                what: "block",
                size: block.len(),
                limit: MAX_RECORD_BYTES,
            });
        }
        Ok(car)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value as Json, json};

    use super::*;
    use crate::test_support::firehose::{
        RepoKey, account_frame, error_frame, frame, identity_frame, message_frame, signed_commit,
    };

    const DID: &str = "did:plc:aliceeeeeeeeeeeeeeeeeeee";
    const TIME: &str = "2026-05-25T14:23:29.132431Z";

    fn like() -> Json {
        json!({"$type": "app.bsky.feed.like", "createdAt": "2026-05-25T14:23:28.778Z",
            "subject": {"cid": "bafyreiaxf7tgbfydx3465sckitq6v564thxe2wwydbi7cwxbxvgssje3em",
                "uri": "at://did:plc:vfnmgxg2yscfliemmcxzyfyh/app.bsky.feed.post/3mmoodizfwc2j"}})
    }

    fn commit_bytes() -> Vec<u8> {
        signed_commit(
            &RepoKey::k256(1),
            DID,
            "3mmoojp7vgo2g",
            &[
                (
                    "create",
                    "app.bsky.feed.like",
                    "3mmoojp7etg2g",
                    Some(like()),
                ),
                ("delete", "app.bsky.feed.post", "3mmoodizfwc2j", None),
            ],
        )
        .frame(42, TIME)
    }

    /// A `#commit` body with `change` applied to a valid one.
    fn commit_with(change: impl FnOnce(&mut Json)) -> Result<FirehoseMessage, FirehoseError> {
        let parts = signed_commit(&RepoKey::k256(1), DID, "3mmoojp7vgo2g", &[]);
        let car = crate::test_support::firehose::car(
            &parts.commit.0,
            std::slice::from_ref(&parts.commit),
        );
        let mut body = json!({
            "seq": 1, "rebase": false, "tooBig": false, "repo": DID,
            "commit": crate::firehose::encode::link(&parts.commit.0), "rev": "3mmoojp7vgo2g",
            "since": null, "blocks": crate::firehose::encode::bytes(&car), "ops": [],
            "blobs": [], "time": TIME,
        });
        change(&mut body);
        decode_frame(&message_frame("#commit", &body))
    }

    fn field_error(t: &'static str, field: &'static str, why: &'static str) -> FirehoseError {
        FirehoseError::Field { t, field, why }
    }

    #[test]
    fn a_commit_header_is_written_as_relays_write_it() {
        let bytes = commit_bytes();
        let real = [
            0xa2, 0x61, 0x74, 0x67, 0x23, 0x63, 0x6f, 0x6d, 0x6d, 0x69, 0x74, 0x62, 0x6f, 0x70,
            0x01,
        ];
        assert_eq!(&bytes[..real.len()], real);
    }

    #[test]
    fn decodes_a_commit_with_its_operations_and_blocks() {
        let FirehoseMessage::Commit(commit) = decode_frame(&commit_bytes()).unwrap() else {
            panic!("not a commit");
        };
        assert_eq!((commit.seq, commit.repo.as_str()), (42, DID));
        assert_eq!(
            (commit.rev.as_str(), commit.time.as_str()),
            ("3mmoojp7vgo2g", TIME)
        );
        assert_eq!(commit.since, None);
        assert_eq!(commit.ops.len(), 2);
        let create = &commit.ops[0];
        assert_eq!(create.action, Action::Create);
        assert_eq!(
            (create.collection.as_str(), create.rkey.as_str()),
            ("app.bsky.feed.like", "3mmoojp7etg2g")
        );
        let record = commit
            .blocks
            .get(create.cid.as_ref().unwrap().as_cid())
            .unwrap();
        assert_eq!(
            record,
            crate::firehose::encode::to_dag_cbor(&like()).unwrap()
        );
        assert_eq!(commit.ops[1].action, Action::Delete);
        assert_eq!(commit.ops[1].cid, None);
        assert!(commit.blocks.get(commit.commit.as_cid()).is_some());
        assert_eq!(FirehoseMessage::Commit(commit).seq(), Some(42));
    }

    #[test]
    fn decodes_identity_account_info_and_error_frames() {
        assert_eq!(
            decode_frame(&identity_frame(7, DID, Some("alice.test"), TIME)).unwrap(),
            FirehoseMessage::Identity(Identity {
                seq: 7,
                did: DID.into(),
                time: TIME.into(),
                handle: Some("alice.test".into())
            })
        );
        let account = decode_frame(&account_frame(8, DID, false, Some("takendown"), TIME)).unwrap();
        assert_eq!(account.seq(), Some(8));
        assert!(
            matches!(account, FirehoseMessage::Account(Account { active: false, status: Some(s), .. }) if s == "takendown")
        );
        assert_eq!(
            decode_frame(&message_frame("#info", &json!({"name": "OutdatedCursor"}))).unwrap(),
            FirehoseMessage::Info {
                name: "OutdatedCursor".into(),
                message: None
            }
        );
        let error = decode_frame(&error_frame("FutureCursor", Some("too far"))).unwrap();
        assert_eq!(
            error,
            FirehoseMessage::Error {
                error: "FutureCursor".into(),
                message: Some("too far".into())
            }
        );
        assert_eq!(error.seq(), None);
        let unknown = decode_frame(&message_frame("#labels", &json!({"seq": 1}))).unwrap();
        assert_eq!(
            unknown,
            FirehoseMessage::Unknown {
                t: "#labels".into()
            }
        );
    }

    #[test]
    fn decodes_a_sync() {
        let parts = signed_commit(&RepoKey::k256(1), DID, "3mmoojp7vgo2g", &[]);
        let car = crate::test_support::firehose::car(
            &parts.commit.0,
            std::slice::from_ref(&parts.commit),
        );
        let body = json!({"seq": 9, "did": DID, "rev": "3mmoojp7vgo2g", "time": TIME,
            "blocks": crate::firehose::encode::bytes(&car)});
        let FirehoseMessage::Sync(sync) = decode_frame(&message_frame("#sync", &body)).unwrap()
        else {
            panic!("not a sync");
        };
        assert_eq!((sync.seq, sync.did.as_str()), (9, DID));
        assert_eq!(sync.blocks.roots().next(), Some(parts.commit.0.as_cid()));
    }

    #[test]
    fn every_truncation_of_a_frame_is_an_error_not_a_panic() {
        let bytes = commit_bytes();
        for end in 0..bytes.len() {
            assert!(decode_frame(&bytes[..end]).is_err(), "cut at {end}");
        }
        let mut trailing = bytes;
        trailing.push(0x00);
        assert!(matches!(
            decode_frame(&trailing),
            Err(FirehoseError::Cbor(_))
        ));
    }

    #[test]
    fn refuses_frames_and_parts_over_the_limits() {
        let huge = vec![0u8; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            decode_frame(&huge),
            Err(FirehoseError::TooLarge { what: "frame", .. })
        ));
        let ops: Vec<Json> = (0..=MAX_OPS)
            .map(|i| json!({"action": "delete", "path": format!("app.bsky.feed.like/{i}"), "cid": null}))
            .collect();
        assert!(matches!(
            commit_with(|b| b["ops"] = Json::Array(ops)),
            Err(FirehoseError::TooLarge {
                what: "ops",
                size: 201,
                limit: 200
            })
        ));
        let ops: Vec<Json> = (0..MAX_OPS)
            .map(|i| json!({"action": "delete", "path": format!("app.bsky.feed.like/{i}"), "cid": null}))
            .collect();
        assert!(
            commit_with(|b| b["ops"] = Json::Array(ops)).is_ok(),
            "200 ops are fine"
        );
        let big_blocks = crate::firehose::encode::bytes(&vec![0; MAX_BLOCKS_BYTES + 1]);
        assert!(matches!(
            commit_with(|b| b["blocks"] = big_blocks),
            Err(FirehoseError::TooLarge { what: "blocks", .. })
        ));
        let parts = signed_commit(&RepoKey::k256(1), DID, "3mmoojp7vgo2g", &[]);
        let big_record = vec![0x40; MAX_RECORD_BYTES + 1];
        let car = crate::test_support::firehose::car(
            &parts.commit.0,
            &[(
                crate::firehose::cid::CidBuf::dag_cbor_of(&big_record),
                big_record,
            )],
        );
        assert!(matches!(
            commit_with(|b| b["blocks"] = crate::firehose::encode::bytes(&car)),
            Err(FirehoseError::TooLarge { what: "block", .. })
        ));
    }

    #[test]
    fn refuses_fields_of_the_wrong_type_or_missing() {
        assert_eq!(
            commit_with(|b| b["seq"] = "1".into()),
            Err(field_error("#commit", "seq", "is not an integer"))
        );
        assert_eq!(
            commit_with(|b| b["repo"] = 5.into()),
            Err(field_error("#commit", "repo", "is not text"))
        );
        assert_eq!(
            commit_with(|b| b["commit"] = "bafy".into()),
            Err(field_error("#commit", "commit", "is not a CID"))
        );
        assert_eq!(
            commit_with(|b| b["blocks"] = "car".into()),
            Err(field_error("#commit", "blocks", "is not bytes"))
        );
        assert_eq!(
            commit_with(|b| b["ops"] = json!({})),
            Err(field_error("#commit", "ops", "is not an array"))
        );
        assert_eq!(
            commit_with(|b| b["since"] = 3.into()),
            Err(field_error("#commit", "since", "is not text"))
        );
        assert_eq!(
            commit_with(|b| {
                b.as_object_mut().unwrap().remove("time");
            }),
            Err(field_error("#commit", "time", "is missing"))
        );
        assert!(matches!(
            commit_with(|b| b["blocks"] = crate::firehose::encode::bytes(b"no car")),
            Err(FirehoseError::Car(_))
        ));
        let op = |v: Json| commit_with(|b| b["ops"] = json!([v]));
        let cid = crate::firehose::encode::link(&crate::firehose::cid::CidBuf::dag_cbor_of(b"r"));
        assert_eq!(op(json!(1)), Err(FirehoseError::NotAMap("op")));
        assert_eq!(
            op(json!({"action": "upsert", "path": "a/b", "cid": null})),
            Err(field_error(
                "op",
                "action",
                "is not create, update or delete"
            ))
        );
        for path in ["ab", "/b", "a/", "a/b/c"] {
            assert_eq!(
                op(json!({"action": "delete", "path": path, "cid": null})),
                Err(field_error("op", "path", "is not collection/rkey")),
                "{path}"
            );
        }
        assert_eq!(
            op(json!({"action": "delete", "path": "a/b", "cid": cid})),
            Err(field_error(
                "op",
                "cid",
                "must be given for a create or update only"
            ))
        );
        assert_eq!(
            op(json!({"action": "create", "path": "a/b", "cid": null})),
            Err(field_error(
                "op",
                "cid",
                "must be given for a create or update only"
            ))
        );
        assert_eq!(
            op(json!({"action": "update", "path": "a/b", "cid": cid, "prev": "x"})),
            Err(field_error("op", "prev", "is not a CID"))
        );
    }

    #[test]
    fn refuses_broken_headers_and_hostile_bodies() {
        let body = json!({"error": "X"});
        assert_eq!(
            decode_frame(&frame(&json!({"op": 2, "t": "#commit"}), &body)),
            Err(field_error("header", "op", "is neither 1 nor -1"))
        );
        assert_eq!(
            decode_frame(&frame(&json!({"op": 1}), &body)),
            Err(field_error("header", "t", "is missing"))
        );
        assert_eq!(
            decode_frame(&frame(&json!([1]), &body)),
            Err(FirehoseError::NotAMap("header"))
        );
        assert_eq!(
            decode_frame(&frame(&json!({"op": -1}), &json!({}))),
            Err(field_error("body", "error", "is missing"))
        );
        assert_eq!(
            decode_frame(&frame(&json!({"op": -1}), &json!("x"))),
            Err(FirehoseError::NotAMap("body"))
        );
        // A header alone, and a body nested past the reader's bound.
        assert!(matches!(
            decode_frame(&crate::firehose::encode::to_dag_cbor(&json!({"op": 1})).unwrap()),
            Err(FirehoseError::Cbor(_))
        ));
        let mut deep =
            crate::firehose::encode::to_dag_cbor(&json!({"op": 1, "t": "#commit"})).unwrap();
        deep.extend(vec![0x81; 10_000]);
        deep.push(0x01);
        assert!(
            matches!(decode_frame(&deep), Err(FirehoseError::Cbor(e)) if e.reason == "nested too deep")
        );
        // A body declaring a map of 2^32 entries in a few bytes.
        let mut huge =
            crate::firehose::encode::to_dag_cbor(&json!({"op": 1, "t": "#commit"})).unwrap();
        huge.extend([0xba, 0xff, 0xff, 0xff, 0xff]);
        assert!(
            matches!(decode_frame(&huge), Err(FirehoseError::Cbor(e)) if e.reason == "length past the end")
        );
    }
}

//! Firehose messages as Jetstream v1 events (atproto.md §7), so that the
//! firehose feeds the same parser, rules and pipeline as Jetstream, and
//! `herald atproto decode-frames` prints what Jetstream would have sent.
//!
//! One event per commit operation (`create` and `update` with the record
//! and its CID, `delete` without), one per `#identity` and per `#account`;
//! `#sync`, `#info`, errors and unknown types have no v1 form and give
//! none. `time_us` is the frame's `time`, to the microsecond: Jetstream
//! stamps its own clock there, which a firehose reader does not have.
//!
//! Records go from DAG-CBOR to atproto's JSON form: a CID as
//! `{"$link": cid}`, bytes as `{"$bytes": base64}` (standard alphabet, no
//! padding), so a blob reads `{"$type": "blob", "ref": {"$link": …}, …}`
//! as Jetstream writes it. Map keys are written in bytewise order, as
//! Jetstream's Go encoder writes a map, and a blob's in the order of Go's
//! blob struct, so the output matches Jetstream's text as well as its
//! values (the golden fixture's commits, byte for byte). The JSON is written directly rather than
//! through `serde_json::Value`, which would copy every record once more.

use std::io::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;

use super::FirehoseError;
use super::dag_cbor::{self, Value};
use super::frame::{Account, Commit, FirehoseMessage, Identity, RepoOp};
use crate::time::unix_micros;

/// The Jetstream v1 events `message` stands for, as JSON text (UTF-8),
/// one per event: what `RawEvent::json` holds.
pub fn jetstream_events(message: &FirehoseMessage) -> Result<Vec<Vec<u8>>, FirehoseError> {
    match message {
        FirehoseMessage::Commit(commit) => commit_events(commit),
        FirehoseMessage::Identity(identity) => Ok(vec![identity_event(identity)?]),
        FirehoseMessage::Account(account) => Ok(vec![account_event(account)?]),
        _ => Ok(Vec::new()),
    }
}

fn time_us(time: &str) -> Result<u64, FirehoseError> {
    unix_micros(time).ok_or(FirehoseError::Field {
        t: "message",
        field: "time",
        why: "is not an RFC 3339 time",
    })
}

/// `{"did":…,"time_us":…,"kind":…,"<kind>":` — the envelope's start.
fn envelope(did: &str, time: &str, kind: &str) -> Result<Vec<u8>, FirehoseError> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"did\":");
    string(did, &mut out);
    let _ = write!(
        out,
        ",\"time_us\":{},\"kind\":\"{kind}\",\"{kind}\":",
        time_us(time)?
    );
    Ok(out)
}

fn commit_events(commit: &Commit) -> Result<Vec<Vec<u8>>, FirehoseError> {
    commit
        .ops
        .iter()
        .map(|op| {
            let mut out = envelope(&commit.repo, &commit.time, "commit")?;
            out.extend_from_slice(b"{\"rev\":");
            string(&commit.rev, &mut out);
            let _ = write!(
                out,
                ",\"operation\":\"{}\",\"collection\":",
                op.action.as_str()
            );
            string(&op.collection, &mut out);
            out.extend_from_slice(b",\"rkey\":");
            string(&op.rkey, &mut out);
            if let Some(cid) = &op.cid {
                out.extend_from_slice(b",\"record\":");
                record(commit, op, cid.as_cid(), &mut out)?;
                let _ = write!(out, ",\"cid\":\"{cid}\"");
            }
            out.extend_from_slice(b"}}");
            Ok(out)
        })
        .collect()
}

fn record(
    commit: &Commit,
    op: &RepoOp,
    cid: super::cid::Cid<'_>,
    out: &mut Vec<u8>,
) -> Result<(), FirehoseError> {
    let block = commit.blocks.get(cid).ok_or_else(|| {
        FirehoseError::MissingBlock(format!("{cid} ({}/{})", op.collection, op.rkey))
    })?;
    value(&dag_cbor::decode(block)?, out);
    Ok(())
}

fn identity_event(identity: &Identity) -> Result<Vec<u8>, FirehoseError> {
    let mut out = envelope(&identity.did, &identity.time, "identity")?;
    out.extend_from_slice(b"{\"did\":");
    string(&identity.did, &mut out);
    if let Some(handle) = &identity.handle {
        out.extend_from_slice(b",\"handle\":");
        string(handle, &mut out);
    }
    let _ = write!(out, ",\"seq\":{},\"time\":", identity.seq);
    string(&identity.time, &mut out);
    out.extend_from_slice(b"}}");
    Ok(out)
}

fn account_event(account: &Account) -> Result<Vec<u8>, FirehoseError> {
    let mut out = envelope(&account.did, &account.time, "account")?;
    let _ = write!(out, "{{\"active\":{},\"did\":", account.active);
    string(&account.did, &mut out);
    let _ = write!(out, ",\"seq\":{}", account.seq);
    if let Some(status) = &account.status {
        out.extend_from_slice(b",\"status\":");
        string(status, &mut out);
    }
    out.extend_from_slice(b",\"time\":");
    string(&account.time, &mut out);
    out.extend_from_slice(b"}}");
    Ok(out)
}

/// A JSON string literal.
fn string(text: &str, out: &mut Vec<u8>) {
    // Writing a str to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// Where a blob's field goes: Jetstream writes a blob as a typed struct,
/// `$type`, `ref`, `mimeType`, `size`, not in key order; anything else
/// after those, in key order.
fn blob_field_rank(key: &str) -> (usize, &str) {
    let rank = BLOB_FIELDS
        .iter()
        .position(|&field| field == key)
        .unwrap_or(BLOB_FIELDS.len());
    (rank, key)
}

/// A blob's fields in the order Jetstream writes them.
const BLOB_FIELDS: [&str; 4] = ["$type", "ref", "mimeType", "size"];

/// A DAG-CBOR value in atproto's JSON form.
fn value(value: &Value<'_>, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Text(text) => string(text, out),
        Value::Bytes(bytes) => {
            let _ = write!(out, "{{\"$bytes\":\"{}\"}}", STANDARD_NO_PAD.encode(bytes));
        }
        Value::Link(cid) => {
            let _ = write!(out, "{{\"$link\":\"{cid}\"}}");
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                self::value(item, out);
            }
            out.push(b']');
        }
        Value::Map(map) => {
            let mut entries: Vec<&(&str, Value<'_>)> = map.entries().iter().collect();
            if map.get("$type") == Some(&Value::Text("blob")) {
                entries.sort_by_key(|(key, _)| blob_field_rank(key));
            } else {
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            }
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(key, out);
                out.push(b':');
                self::value(item, out);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value as Json, json};

    use super::*;
    use crate::firehose::cid::CidBuf;
    use crate::firehose::{decode_frame, encode};
    use crate::test_support::GOLDEN;
    use crate::test_support::firehose::{
        RepoKey, account_frame, identity_frame, message_frame, rfc3339, signed_commit,
    };

    /// The frame a relay would have sent for a golden Jetstream event,
    /// stamped with the event's `time_us` (commits) or inner `time`.
    fn frame_for(event: &Json) -> Vec<u8> {
        let did = event["did"].as_str().unwrap();
        match event["kind"].as_str().unwrap() {
            "commit" => {
                let c = &event["commit"];
                let op = (
                    c["operation"].as_str().unwrap(),
                    c["collection"].as_str().unwrap(),
                    c["rkey"].as_str().unwrap(),
                    c.get("record").cloned(),
                );
                let time = rfc3339(event["time_us"].as_u64().unwrap());
                signed_commit(&RepoKey::k256(1), did, c["rev"].as_str().unwrap(), &[op])
                    .frame(1, &time)
            }
            "identity" => {
                let i = &event["identity"];
                identity_frame(
                    i["seq"].as_i64().unwrap(),
                    did,
                    i["handle"].as_str(),
                    i["time"].as_str().unwrap(),
                )
            }
            _ => {
                let a = &event["account"];
                account_frame(
                    a["seq"].as_i64().unwrap(),
                    did,
                    a["active"].as_bool().unwrap(),
                    a["status"].as_str(),
                    a["time"].as_str().unwrap(),
                )
            }
        }
    }

    fn events_of(frame: &[u8]) -> Vec<Vec<u8>> {
        jetstream_events(&decode_frame(frame).unwrap()).unwrap()
    }

    #[test]
    fn our_encoding_of_the_golden_records_gives_the_cids_the_pds_computed() {
        let mut checked = 0;
        for line in GOLDEN.lines() {
            let event: Json = serde_json::from_str(line).unwrap();
            let commit = &event["commit"];
            if let Some(record) = commit.get("record") {
                let (cid, _) = encode::block(record).unwrap();
                assert_eq!(cid.to_string(), commit["cid"].as_str().unwrap(), "{line}");
                checked += 1;
            }
        }
        assert_eq!(checked, 7);
    }

    #[test]
    fn frames_of_the_golden_events_decode_to_the_golden_events() {
        for line in GOLDEN.lines() {
            let golden: Json = serde_json::from_str(line).unwrap();
            let events = events_of(&frame_for(&golden));
            assert_eq!(events.len(), 1);
            let ours: Json = serde_json::from_slice(&events[0]).unwrap();
            let mut expected = golden.clone();
            if golden["kind"] != "commit" {
                // Jetstream's time_us is its own clock; ours is the frame's `time`.
                let kind = golden["kind"].as_str().unwrap();
                let time = golden[kind]["time"].as_str().unwrap();
                assert_eq!(ours["time_us"].as_u64(), unix_micros(time));
                expected["time_us"] = ours["time_us"].clone();
            } else {
                // A commit is the same to the byte: field order, escaping, records.
                assert_eq!(String::from_utf8(events[0].clone()).unwrap(), line);
            }
            assert_eq!(ours, expected, "{line}");
        }
    }

    #[test]
    fn one_event_per_operation() {
        let like = json!({"$type": "app.bsky.feed.like", "createdAt": "2026-05-25T14:23:28.778Z",
            "subject": {"cid": "bafyreiaxf7tgbfydx3465sckitq6v564thxe2wwydbi7cwxbxvgssje3em",
                "uri": "at://did:plc:vfnmgxg2yscfliemmcxzyfyh/app.bsky.feed.post/3mmoodizfwc2j"}});
        let frame = signed_commit(
            &RepoKey::k256(1),
            "did:plc:aliceeeeeeeeeeeeeeeeeeee",
            "3mmoojp7vgo2g",
            &[
                ("create", "app.bsky.feed.like", "a", Some(like.clone())),
                ("update", "app.bsky.feed.like", "b", Some(like)),
                ("delete", "app.bsky.feed.like", "c", None),
            ],
        )
        .frame(1, "2026-05-25T14:23:29Z");
        let events: Vec<Json> = events_of(&frame)
            .iter()
            .map(|e| serde_json::from_slice(e).unwrap())
            .collect();
        let operations: Vec<&str> = events
            .iter()
            .map(|e| e["commit"]["operation"].as_str().unwrap())
            .collect();
        assert_eq!(operations, ["create", "update", "delete"]);
        assert_eq!(events[0]["time_us"], 1_779_719_009_000_000u64);
        assert!(
            events[1]["commit"]["record"].is_object() && events[1]["commit"]["cid"].is_string()
        );
        assert!(
            events[2]["commit"].get("record").is_none() && events[2]["commit"].get("cid").is_none()
        );
    }

    #[test]
    fn writes_links_bytes_and_blobs_in_atproto_json() {
        let blob = CidBuf::parse_str("bafkreieajxclqzwk2mczx7hxmoboqpuiveqlbm35gsda5xlaqfmlryu4ri")
            .unwrap();
        let record = json!({"$type": "x.y.z", "raw": encode::bytes(&[0xde, 0xad, 0xbe, 0xef, 0x01]),
            "n": -7, "ok": false, "none": null, "list": [1, "é\"\n"],
            "blob": {"$type": "blob", "ref": encode::link(&blob), "mimeType": "image/jpeg", "size": 10}});
        let frame = signed_commit(
            &RepoKey::k256(1),
            "did:plc:aliceeeeeeeeeeeeeeeeeeee",
            "3mmoojp7vgo2g",
            &[("create", "x.y.z", "k", Some(record))],
        )
        .frame(1, "2026-05-25T14:23:29Z");
        let event = String::from_utf8(events_of(&frame).remove(0)).unwrap();
        assert!(event.contains(r#""record":{"$type":"x.y.z","blob":{"$type":"blob","ref":{"$link":"bafkreieajxclqzwk2mczx7hxmoboqpuiveqlbm35gsda5xlaqfmlryu4ri"},"mimeType":"image/jpeg","size":10},"list":[1,"é\"\n"],"n":-7,"none":null,"ok":false,"raw":{"$bytes":"3q2+7wE"}}"#), "{event}");
    }

    #[test]
    fn a_record_missing_from_the_blocks_is_an_error() {
        let mut commit = signed_commit(
            &RepoKey::k256(1),
            "did:plc:aliceeeeeeeeeeeeeeeeeeee",
            "3mmoojp7vgo2g",
            &[("create", "x.y.z", "k", Some(json!({"a": 1})))],
        );
        let record = CidBuf::dag_cbor_of(&encode::to_dag_cbor(&json!({"a": 1})).unwrap());
        commit.blocks.retain(|(cid, _)| *cid != record);
        let message = decode_frame(&commit.frame(1, "2026-05-25T14:23:29Z")).unwrap();
        assert_eq!(
            jetstream_events(&message),
            Err(FirehoseError::MissingBlock(format!("{record} (x.y.z/k)")))
        );
    }

    #[test]
    fn a_commit_with_an_unreadable_time_is_an_error() {
        let frame = signed_commit(
            &RepoKey::k256(1),
            "did:plc:aliceeeeeeeeeeeeeeeeeeee",
            "3mmoojp7vgo2g",
            &[("delete", "x.y.z", "k", None)],
        )
        .frame(1, "yesterday");
        assert!(matches!(
            jetstream_events(&decode_frame(&frame).unwrap()),
            Err(FirehoseError::Field { field: "time", .. })
        ));
    }

    #[test]
    fn messages_without_a_jetstream_form_give_no_events() {
        for frame in [
            message_frame("#info", &json!({"name": "OutdatedCursor"})),
            message_frame("#labels", &json!({})),
            crate::test_support::firehose::error_frame("FutureCursor", None),
        ] {
            assert_eq!(events_of(&frame), Vec::<Vec<u8>>::new());
        }
    }

    #[test]
    fn an_account_event_carries_its_status() {
        let frame = account_frame(
            5,
            "did:plc:aliceeeeeeeeeeeeeeeeeeee",
            false,
            Some("deactivated"),
            "2026-05-25T14:23:29.950Z",
        );
        assert_eq!(
            String::from_utf8(events_of(&frame).remove(0)).unwrap(),
            r#"{"did":"did:plc:aliceeeeeeeeeeeeeeeeeeee","time_us":1779719009950000,"kind":"account","account":{"active":false,"did":"did:plc:aliceeeeeeeeeeeeeeeeeeee","seq":5,"status":"deactivated","time":"2026-05-25T14:23:29.950Z"}}"#
        );
        let identity = identity_frame(
            6,
            "did:plc:aliceeeeeeeeeeeeeeeeeeee",
            Some("alice.test"),
            "2026-05-25T14:23:29.950Z",
        );
        assert!(String::from_utf8(events_of(&identity).remove(0)).unwrap().ends_with(r#""identity":{"did":"did:plc:aliceeeeeeeeeeeeeeeeeeee","handle":"alice.test","seq":6,"time":"2026-05-25T14:23:29.950Z"}}"#));
    }
}

//! Shared test data: the golden Jetstream events, a cast of accounts, and
//! builders for crafted events. Crafted events are JSON text run through the
//! real parser, so every test exercises the path live events take.

pub mod firehose;

use serde_json::{Value, json};

use crate::at_uri::AtUri;
use crate::did::Did;
use crate::jetstream_event::{JetstreamEvent, nsid, parse_event};

/// Ten events exactly as a production Jetstream v1 sent them (fixtures README).
pub const GOLDEN: &str =
    include_str!("../../../../shared/fixtures/atproto/jetstream_golden_v1.jsonl");

pub const ALICE: &str = "did:plc:aliceeeeeeeeeeeeeeeeeeee";
pub const BOB: &str = "did:plc:bobbbbbbbbbbbbbbbbbbbbbb";
pub const CAROL: &str = "did:plc:carollllllllllllllllllll";
pub const DAVE: &str = "did:plc:daveeeeeeeeeeeeeeeeeeeee";
pub const EVE: &str = "did:plc:eveeeeeeeeeeeeeeeeeeeeee";

/// A fixed `time_us` for crafted events; the rules never read it.
const TIME_US: u64 = 1_779_719_009_000_000;

/// Every account the golden events name, as actor or in a record.
pub fn golden_dids() -> Vec<Did> {
    let mut dids: Vec<Did> = GOLDEN
        .lines()
        .flat_map(|line| line.split(['"', '/']))
        .filter_map(|word| Did::parse(word).ok())
        .collect();
    dids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    dids.dedup();
    dids
}

pub fn did(text: &str) -> Did {
    Did::parse(text).unwrap()
}

pub fn uri(text: &str) -> AtUri {
    AtUri::parse(text).unwrap()
}

/// `at://<did>/<collection>/<rkey>` as text.
pub fn record_uri(did: &str, collection: &str, rkey: &str) -> String {
    format!("at://{did}/{collection}/{rkey}")
}

pub fn post_uri(did: &str, rkey: &str) -> String {
    record_uri(did, nsid::FEED_POST, rkey)
}

/// `com.atproto.repo.strongRef` to `uri`.
pub fn strong_ref(uri: &str) -> Value {
    json!({"uri": uri, "cid": "bafyreidqpc7si3dbimffi64lz3xsx2qt45ip7rpna2qpslcddp23itjjzm"})
}

/// A commit event as Jetstream v1 writes it.
pub fn commit_json(
    did: &str,
    operation: &str,
    collection: &str,
    rkey: &str,
    record: Option<Value>,
) -> String {
    let mut commit = json!({"rev": "3mmoojp7vgo2g", "operation": operation, "collection": collection, "rkey": rkey});
    if let Some(mut record) = record {
        if let Some(fields) = record.as_object_mut() {
            fields.insert("$type".into(), collection.into());
        }
        commit["record"] = record;
        commit["cid"] = "bafyreib25swk3a6waplk2ie75u4a3qfejnkoiezfowuz7sa74i7tief3di".into();
    }
    json!({"did": did, "time_us": TIME_US, "kind": "commit", "commit": commit}).to_string()
}

pub fn event(json: &str) -> JetstreamEvent {
    parse_event(json.as_bytes()).unwrap_or_else(|e| panic!("{e}: {json}"))
}

pub fn create(did: &str, collection: &str, rkey: &str, record: Value) -> JetstreamEvent {
    event(&commit_json(did, "create", collection, rkey, Some(record)))
}

pub fn update(did: &str, collection: &str, rkey: &str, record: Value) -> JetstreamEvent {
    event(&commit_json(did, "update", collection, rkey, Some(record)))
}

pub fn delete(did: &str, collection: &str, rkey: &str) -> JetstreamEvent {
    event(&commit_json(did, "delete", collection, rkey, None))
}

/// An `#identity` event as Jetstream v1 writes it; `handle` may be absent.
pub fn identity(did: &str, handle: Option<&str>) -> JetstreamEvent {
    let mut identity = json!({"did": did, "seq": 1_234_567, "time": "2026-05-25T14:23:28.778Z"});
    if let Some(handle) = handle {
        identity["handle"] = handle.into();
    }
    event(
        &json!({"did": did, "time_us": TIME_US, "kind": "identity", "identity": identity})
            .to_string(),
    )
}

//! `firehose`: what herald does with each `subscribeRepos` frame, on one
//! core: decode the frame (DAG-CBOR header and body, the CAR), verify the
//! commit (every block's hash, the record CIDs, the repo and rev, the
//! signature by the repository's key) and write the Jetstream v1 events
//! the rules read.
//!
//! The stream is the Jetstream benchmark's ([`super::synthetic_jetstream`],
//! the network's mix of likes, posts, reposts, follows, …), each event
//! turned into the frame a relay would send for it: the record encoded as
//! DAG-CBOR, a Merkle Search Tree over it, the commit signed with the
//! author's secp256k1 key (every key in a sample of real DID documents is
//! secp256k1, atproto.md §5), all in a CAR. Frames are built and signed
//! before anything is timed. Keys come from a map, as from a warm DID
//! cache: the figure is herald's work, not a PLC directory's.
//!
//! Real frames are larger (5.46 KB on average, atproto.md §15), because
//! their CAR carries the MST nodes on the path from the root of a whole
//! repository; these carry a tree of the commit's own records only. The
//! difference is hashing a few KB more a frame, a few microseconds.
//!
//! Two timed passes over the same frames, each on one task: decode and
//! events without verification, then with it. Their difference is the
//! cost of verification, nearly all of it the signature check.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_atproto::firehose::cid::CidBuf;
use herald_atproto::firehose::{self, CommitVerifier, FirehoseMessage};
use herald_atproto::test_support::firehose::{
    RepoKey, StaticKeys, identity_frame, rfc3339, signed_commit,
};
use serde_json::{Value, json};

use super::Report;
use super::synthetic_jetstream::SyntheticNetwork;

#[derive(clap::Args)]
pub struct Args {
    /// Frames in the stream (signed up front, untimed).
    #[arg(long, default_value_t = 50_000)]
    frames: usize,
    /// Seed of the stream: the same seed gives the same events.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Signing keys the stream's repositories share: enough that the
/// verifier never sees one key in a row, few enough to derive at once.
const KEYS: u64 = 1_000;

pub async fn run(args: Args) -> Result<Report, String> {
    if args.frames == 0 {
        return Err("--frames must be at least 1".into());
    }
    let (frames, keys) = build(&args)?;
    let bytes: usize = frames.iter().map(Vec::len).sum();
    let (events, decode_only) = decode_only(&frames)?;
    let verifier = CommitVerifier::new(Arc::new(keys));
    let verified = verified(&frames, &verifier).await?;
    let rate = |d: Duration| frames.len() as f64 / d.as_secs_f64();
    let per_frame_us = |d: Duration| d.as_secs_f64() * 1e6 / frames.len() as f64;
    Ok(Report {
        title: "firehose frames: decode, verify, Jetstream events (one core)".into(),
        unit: "frames",
        count: frames.len(),
        elapsed: verified,
        latencies_us: Vec::new(),
        facts: vec![
            ("events", json!(events)),
            ("mean_frame_bytes", json!(bytes / frames.len())),
            ("decode_only_per_second", json!(rate(decode_only).round())),
            ("verified_per_second", json!(rate(verified).round())),
            (
                "decode_us_per_frame",
                json!(round2(per_frame_us(decode_only))),
            ),
            (
                "verify_us_per_frame",
                json!(round2(per_frame_us(verified.saturating_sub(decode_only)))),
            ),
        ],
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The frames for the synthetic stream, and every author's key.
fn build(args: &Args) -> Result<(Vec<Vec<u8>>, StaticKeys), String> {
    let keys: Vec<RepoKey> = (0..KEYS).map(RepoKey::k256).collect();
    let mut resolver = StaticKeys::new();
    let mut network = SyntheticNetwork::new(args.seed, 1, 0.0);
    let mut frames = Vec::with_capacity(args.frames);
    for (seq, line) in network.events(args.frames).iter().enumerate() {
        let event: Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        let text = |v: &Value| {
            v.as_str()
                .map(str::to_owned)
                .ok_or(format!("not text in {line}"))
        };
        let did = text(&event["did"])?;
        let time = rfc3339(event["time_us"].as_u64().ok_or("no time_us")?);
        let seq = seq as i64 + 1;
        let frame = match &event["commit"] {
            Value::Null => {
                let identity = &event["identity"];
                identity_frame(seq, &did, identity["handle"].as_str(), &time)
            }
            commit => {
                let key = &keys[seq as usize % keys.len()];
                resolver.insert(&did, key.public());
                let op = (
                    commit["operation"].as_str().ok_or("no operation")?,
                    commit["collection"].as_str().ok_or("no collection")?,
                    commit["rkey"].as_str().ok_or("no rkey")?,
                    commit.get("record").cloned().map(real_links),
                );
                signed_commit(key, &did, &text(&commit["rev"])?, &[op]).frame(seq, &time)
            }
        };
        frames.push(frame);
    }
    Ok((frames, resolver))
}

/// `record` with each `{"$link": …}` made a real CID: the synthetic
/// stream's are random text of a CID's shape (Jetstream's parser reads
/// them as strings), which a DAG-CBOR link cannot hold.
fn real_links(mut record: Value) -> Value {
    match &mut record {
        Value::Object(fields) => {
            if let Some(Value::String(link)) = fields.get_mut("$link") {
                *link = CidBuf::dag_cbor_of(link.as_bytes()).to_string();
            }
            for value in fields.values_mut() {
                *value = real_links(value.take());
            }
        }
        Value::Array(items) => {
            for item in items {
                *item = real_links(item.take());
            }
        }
        _ => {}
    }
    record
}

/// Decodes every frame and writes its events; the events and the time.
fn decode_only(frames: &[Vec<u8>]) -> Result<(usize, Duration), String> {
    let started = Instant::now();
    let mut events = 0;
    for frame in frames {
        let message = firehose::decode_frame(frame).map_err(|e| e.to_string())?;
        events += black_box(firehose::jetstream_events(&message).map_err(|e| e.to_string())?).len();
    }
    Ok((events, started.elapsed()))
}

/// Decodes, verifies and writes every frame's events; the time.
async fn verified(frames: &[Vec<u8>], verifier: &CommitVerifier) -> Result<Duration, String> {
    let started = Instant::now();
    for frame in frames {
        let message = firehose::decode_frame(frame).map_err(|e| e.to_string())?;
        if let FirehoseMessage::Commit(commit) = &message {
            verifier.verify(commit).await.map_err(|e| e.to_string())?;
        }
        black_box(firehose::jetstream_events(&message).map_err(|e| e.to_string())?);
    }
    Ok(started.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_frame_decodes_and_verifies() {
        let args = Args {
            frames: 300,
            seed: 3,
            json: false,
        };
        let report = run(args).await.unwrap();
        assert_eq!(report.count, 300);
        let events = report
            .facts
            .iter()
            .find(|(k, _)| *k == "events")
            .unwrap()
            .1
            .clone();
        assert_eq!(events, json!(300), "one event per frame: one op a commit");
    }
}

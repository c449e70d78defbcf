//! The firehose source over a real WebSocket to the firehose stand-in:
//! signed frames in, Jetstream events out; forged commits dropped and
//! counted; the event-stream spec's cursor rules (resume one `seq` early,
//! `OutdatedCursor` replays the window, `FutureCursor` restarts live).

use std::sync::Arc;
use std::time::Duration;

use herald_atproto::did::{Did, PublicKey};
use herald_atproto::firehose::CommitVerifier;
use herald_atproto::firehose_source::{
    FirehoseConfig, FirehoseSource, FirehoseVerifier, ReconnectPolicy, SequencedMessage,
};
use herald_atproto::jetstream::RawEvent;
use herald_atproto::service_auth::{KeyResolver, ResolveError};
use herald_atproto::test_support::firehose::{RepoKey, StaticKeys, commit_frame};
use herald_standins::firehose::FirehoseService;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};
use url::Url;

const ALICE: &str = "did:plc:aliceeeeeeeeeeeeeeeeeeee";
const CAROL: &str = "did:plc:carollllllllllllllllllll";
const BOB: &str = "did:plc:bobbbbbbbbbbbbbbbbbbbbbb";
const PATIENCE: Duration = Duration::from_secs(10);

fn like(rkey: &str) -> (&'static str, &'static str, &str, Option<Value>) {
    (
        "create",
        "app.bsky.feed.like",
        rkey,
        Some(json!({
            "$type": "app.bsky.feed.like", "createdAt": "2026-12-01T10:00:00.000Z",
            "subject": {"uri": format!("at://{BOB}/app.bsky.feed.post/3post"), "cid": "bafyreiaxf7tgbfydx3465sckitq6v564thxe2wwydbi7cwxbxvgssje3em"},
        })),
    )
}

/// A revision (a TID: 13 characters of base32-sortable) that grows with `n`.
fn tid(n: usize) -> String {
    const ALPHABET: &[u8] = b"234567abcdefghijklmnopqrstuvwxyz";
    let tail: String = [n / 1024, n / 32 % 32, n % 32]
        .iter()
        .map(|&d| char::from(ALPHABET[d % 32]))
        .collect();
    format!("3mmoojp7vg{tail}")
}

/// Alice's like number `n`, signed with `key`, as frame `seq`.
fn alice_likes(seq: i64, n: usize, key: &RepoKey) -> Vec<u8> {
    let rkey = format!("3like{n:08}");
    let rev = tid(n);
    commit_frame(seq, key, ALICE, &rev, &[like(&rkey)])
}

struct Running {
    events: mpsc::Receiver<RawEvent>,
    stop: watch::Sender<bool>,
    verify: Arc<herald_atproto::firehose_source::VerifyStats>,
}

fn start(firehose: &FirehoseService, cursor: Option<u64>, keys: StaticKeys) -> Running {
    start_with(firehose, cursor, Arc::new(keys))
}

fn start_with(
    firehose: &FirehoseService,
    cursor: Option<u64>,
    keys: Arc<dyn KeyResolver>,
) -> Running {
    let config = FirehoseConfig {
        urls: vec![Url::parse(&firehose.url()).unwrap()],
        reconnect: ReconnectPolicy {
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            ..ReconnectPolicy::default()
        },
    };
    let source = FirehoseSource::new(config, cursor).unwrap();
    let verifier = FirehoseVerifier::new(Some(CommitVerifier::new(keys)));
    let verify = verifier.stats();
    let (stop, stop_rx) = watch::channel(false);
    let (frames_tx, frames_rx) = mpsc::channel::<SequencedMessage>(16);
    let (events_tx, events) = mpsc::channel(16);
    tokio::spawn(source.run(frames_tx, stop_rx));
    tokio::spawn(verifier.run(frames_rx, events_tx));
    Running {
        events,
        stop,
        verify,
    }
}

async fn next(running: &mut Running) -> (u64, Value) {
    let event = tokio::time::timeout(PATIENCE, running.events.recv())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no event in time; verification: {:?}",
                running.verify.rejected()
            )
        })
        .expect("the source runs");
    (event.cursor, serde_json::from_slice(&event.json).unwrap())
}

fn keys_with(did: &str, key: &RepoKey) -> StaticKeys {
    let mut keys = StaticKeys::new();
    keys.insert(did, key.public());
    keys
}

#[tokio::test]
async fn signed_commits_pass_and_forged_ones_are_counted_and_dropped() {
    let firehose = FirehoseService::start().await;
    let alice = RepoKey::k256(1);
    let mallory = RepoKey::k256(2);
    firehose.publish(1, alice_likes(1, 1, &alice));
    let mut running = start(&firehose, Some(0), keys_with(ALICE, &alice));

    let (cursor, event) = next(&mut running).await;
    assert_eq!(cursor, 1);
    assert_eq!(event["did"], ALICE);
    assert_eq!(event["commit"]["collection"], "app.bsky.feed.like");
    assert_eq!(event["commit"]["rkey"], "3like00000001");
    // Signed by someone else's key: dropped; then a stale rev: dropped.
    firehose.publish(2, alice_likes(2, 2, &mallory));
    firehose.publish(3, alice_likes(3, 1, &alice));
    firehose.publish(4, alice_likes(4, 4, &alice));
    let (cursor, event) = next(&mut running).await;
    assert_eq!(
        (cursor, event["commit"]["rkey"].as_str()),
        (4, Some("3like00000004"))
    );
    assert_eq!(
        running.verify.rejected(),
        [("bad_signature", 1), ("stale_rev", 1)]
    );
    assert_eq!(running.verify.verified(), 2);
    let _ = running.stop.send(true);
}

#[tokio::test]
async fn resumes_one_seq_early_and_replays_an_outdated_cursors_window() {
    let firehose = FirehoseService::start().await;
    let alice = RepoKey::k256(1);
    for seq in 1..=5 {
        firehose.publish(seq, alice_likes(seq as i64, seq as usize, &alice));
    }
    // A stored cursor of 3: the commit at 3 comes again, then 4 and 5.
    let mut running = start(&firehose, Some(3), keys_with(ALICE, &alice));
    for expected in 3..=5 {
        assert_eq!(next(&mut running).await.0, expected);
    }
    assert_eq!(firehose.queries(), ["cursor=2"]);
    let _ = running.stop.send(true);

    // The window lost 1 to 3: an old cursor gets the whole window.
    firehose.trim_before(4);
    let mut running = start(&firehose, Some(2), keys_with(ALICE, &alice));
    assert_eq!(next(&mut running).await.0, 4);
    assert_eq!(next(&mut running).await.0, 5);
    let _ = running.stop.send(true);
}

#[tokio::test]
async fn a_future_cursor_starts_again_at_the_live_tip() {
    let firehose = FirehoseService::start().await;
    let alice = RepoKey::k256(1);
    firehose.publish(1, alice_likes(1, 1, &alice));
    // A cursor from another relay, far ahead of this one.
    let mut running = start(&firehose, Some(1_000), keys_with(ALICE, &alice));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while firehose.open_connections() == 0 || firehose.queries().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no reconnection");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(firehose.queries(), ["cursor=999", ""]);
    firehose.publish(2, alice_likes(2, 2, &alice));
    assert_eq!(next(&mut running).await.0, 2);
    let _ = running.stop.send(true);
}

/// Keys whose look-up for one DID waits until the test opens the gate: a
/// repository the DID cache has not seen yet.
struct GatedKeys {
    keys: StaticKeys,
    gated: &'static str,
    gate: Arc<Notify>,
}

#[async_trait::async_trait]
impl KeyResolver for GatedKeys {
    async fn signing_key(
        &self,
        did: &Did,
        key_id: &str,
        fresh: bool,
    ) -> Result<PublicKey, ResolveError> {
        if did.as_str() == self.gated {
            self.gate.notified().await;
        }
        self.keys.signing_key(did, key_id, fresh).await
    }
}

#[tokio::test]
async fn a_slow_key_lookup_holds_no_other_verification_and_order_is_kept() {
    let firehose = FirehoseService::start().await;
    let (alice, carol) = (RepoKey::k256(1), RepoKey::k256(3));
    let mut keys = keys_with(ALICE, &alice);
    keys.insert(CAROL, carol.public());
    let gate = Arc::new(Notify::new());
    let gated = GatedKeys {
        keys,
        gated: CAROL,
        gate: Arc::clone(&gate),
    };
    let mut running = start_with(&firehose, Some(0), Arc::new(gated));
    firehose.publish(
        1,
        commit_frame(1, &carol, CAROL, &tid(1), &[like("3carol")]),
    );
    firehose.publish(2, alice_likes(2, 2, &alice));
    // Alice's commit is verified while carol's key is still being looked up…
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while running.verify.verified() < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "alice's commit waited for carol's key"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // …but nothing is handed on out of order.
    assert!(running.events.try_recv().is_err());
    gate.notify_one();
    let (first, event) = next(&mut running).await;
    assert_eq!((first, event["did"].as_str()), (1, Some(CAROL)));
    assert_eq!(next(&mut running).await.0, 2);
    let _ = running.stop.send(true);
}

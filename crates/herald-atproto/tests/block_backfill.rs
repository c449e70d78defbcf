//! Past blocks read from a local PDS: every page of an account's blocks,
//! its block lists and those lists' items from the owner's repository, the
//! failures that must not pass for "no blocks", and the worker that hands
//! them to the pipeline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use herald_atproto::block_backfill::{
    BackfillError, BackfillQueue, BackfillStats, StateUpdate, blocks_of, run,
};
use herald_atproto::did::Did;
use herald_atproto::jetstream_event::{EventBody, JetstreamEvent, Operation, Record};
use herald_atproto::resolver::{DidResolver, ResolverConfig};
use herald_standins::pds::PdsService;
use herald_standins::plc::PlcDirectory;
use serde_json::json;
use tokio::sync::{mpsc, watch};

const BLOCK: &str = "app.bsky.graph.block";
const LISTBLOCK: &str = "app.bsky.graph.listblock";
const LISTITEM: &str = "app.bsky.graph.listitem";

struct Network {
    plc: PlcDirectory,
    pds: PdsService,
    resolver: Arc<DidResolver>,
}

impl Network {
    async fn start() -> Self {
        herald_http::install_crypto_provider();
        let plc = PlcDirectory::start().await;
        let resolver = Arc::new(
            DidResolver::new(ResolverConfig {
                plc_url: plc.url(),
                allow_private: true,
                ..ResolverConfig::default()
            })
            .unwrap(),
        );
        Self {
            plc,
            pds: PdsService::start().await,
            resolver,
        }
    }

    fn account(&self, handle: &str) -> String {
        let did = self.plc.create_account();
        self.plc.set_identity(&did, handle, &self.pds.url());
        did
    }
}

/// What an event says, for comparing: (collection, subject).
fn summary(events: &[JetstreamEvent]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let EventBody::Commit(c) = &e.body else {
                panic!("not a commit: {e:?}");
            };
            let Operation::Create(record) = &c.operation else {
                panic!("not a create: {e:?}");
            };
            let subject = match record {
                Record::Block(b) => b.subject.as_str().to_owned(),
                Record::ListBlock(b) => b.subject.as_str().to_owned(),
                Record::ListItem(i) => format!("{} in {}", i.subject.as_str(), i.list.as_str()),
                other => panic!("unexpected {other:?}"),
            };
            (c.uri.collection().to_owned(), subject)
        })
        .collect();
    all.sort();
    all
}

#[tokio::test]
async fn reads_every_page_of_blocks_and_the_block_lists_items() {
    let net = Network::start().await;
    let bob = net.account("bob.example.com");
    let eve = net.account("eve.example.com");
    let blocked: Vec<String> = (0..150).map(|_| net.plc.create_account()).collect();
    for (n, did) in blocked.iter().enumerate() {
        net.pds.put_record(
            &bob,
            BLOCK,
            &format!("3blk{n:04}"),
            json!({"$type": BLOCK, "subject": did, "createdAt": "2025-01-01T00:00:00Z"}),
        );
    }
    let list = format!("at://{eve}/app.bsky.graph.list/3mods");
    let other_list = format!("at://{eve}/app.bsky.graph.list/3other");
    net.pds.put_record(
        &bob,
        LISTBLOCK,
        "3lb",
        json!({"$type": LISTBLOCK, "subject": list, "createdAt": "2025-01-01T00:00:00Z"}),
    );
    let (spammer, bystander) = (net.plc.create_account(), net.plc.create_account());
    net.pds.put_record(&eve, LISTITEM, "3i1", json!({"$type": LISTITEM, "subject": spammer, "list": list, "createdAt": "2025-01-01T00:00:00Z"}));
    net.pds.put_record(&eve, LISTITEM, "3i2", json!({"$type": LISTITEM, "subject": bystander, "list": other_list, "createdAt": "2025-01-01T00:00:00Z"}));
    // A record that is not what its collection says is skipped, not trusted.
    net.pds.put_record(
        &bob,
        BLOCK,
        "3bad",
        json!({"$type": BLOCK, "subject": "not a did"}),
    );

    let events = blocks_of(&net.resolver, &Did::parse(&bob).unwrap())
        .await
        .unwrap();
    let got = summary(&events);
    assert_eq!(got.iter().filter(|(c, _)| c == BLOCK).count(), 150);
    assert!(got.contains(&(LISTBLOCK.to_owned(), list.clone())));
    let items: Vec<&(String, String)> = got.iter().filter(|(c, _)| c == LISTITEM).collect();
    assert_eq!(
        items,
        [&(LISTITEM.to_owned(), format!("{spammer} in {list}"))]
    );
}

#[tokio::test]
async fn a_failing_or_missing_pds_is_an_error_not_an_empty_list() {
    let net = Network::start().await;
    let bob = net.account("bob.example.com");
    net.pds.answer_listing(
        &bob,
        BLOCK,
        500,
        "{\"error\":\"InternalServerError\"}".into(),
    );
    let err = blocks_of(&net.resolver, &Did::parse(&bob).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            BackfillError::Pds {
                collection: BLOCK,
                ..
            }
        ),
        "{err}"
    );

    let homeless = net.plc.create_account();
    let err = blocks_of(&net.resolver, &Did::parse(&homeless).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, BackfillError::NoPds { .. }), "{err}");
}

#[tokio::test]
async fn the_worker_hands_the_blocks_to_the_pipeline_and_counts_failures() {
    let net = Network::start().await;
    let bob = net.account("bob.example.com");
    let carol = net.plc.create_account();
    net.pds.put_record(
        &bob,
        BLOCK,
        "3b",
        json!({"$type": BLOCK, "subject": carol, "createdAt": "2025-01-01T00:00:00Z"}),
    );
    let broken = net.account("broken.example.com");
    net.pds.answer_listing(&broken, BLOCK, 502, String::new());

    let queue = Arc::new(BackfillQueue::new());
    queue.push(Did::parse(&broken).unwrap());
    queue.push(Did::parse(&bob).unwrap());
    let stats = Arc::new(BackfillStats::default());
    let (updates_tx, mut updates) = mpsc::channel(16);
    let (stop_tx, stop) = watch::channel(false);
    let worker = tokio::spawn(run(
        Arc::clone(&queue),
        Arc::clone(&net.resolver),
        updates_tx,
        Arc::clone(&stats),
        stop,
    ));
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(30), updates.recv())
            .await
            .expect("an update arrives")
            .unwrap()
    };
    let StateUpdate::Event(event) = next().await else {
        panic!("bob's block first");
    };
    assert_eq!(summary(&[event]), [(BLOCK.to_owned(), carol)]);
    // Then the fact that bob's past blocks are all in, for the store to keep.
    assert!(matches!(next().await, StateUpdate::Backfilled(did) if did.as_str() == bob));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stats.failures.load(Ordering::Relaxed) == 0
        || stats.accounts_done.load(Ordering::Relaxed) == 0
    {
        assert!(tokio::time::Instant::now() < deadline, "no failure counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The broken account waits for its retry, far from abandoned.
    assert_eq!(stats.abandoned.load(Ordering::Relaxed), 0);
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("the worker stops")
        .unwrap();
}

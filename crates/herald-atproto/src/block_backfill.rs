//! The blocks an account made before herald watched: read once from the
//! account's own PDS when it first registers, so a block made last year
//! hides notifications today as it does in the Bluesky app.
//!
//! The stream only shows blocks as they are made. For a newly registered
//! account herald lists its `app.bsky.graph.block` and
//! `app.bsky.graph.listblock` records (`com.atproto.repo.listRecords`), and
//! for each block list the list's items from the list owner's repository.
//! They are read from the PDSes their DID documents name, never from an
//! AppView (atproto.md §14), through the resolver's guarded client.
//!
//! Every record is turned into the create event the stream would have
//! carried and parsed by the same code, so a backfilled block is checked
//! exactly like a live one (a list item only counts in its owner's own
//! repository). Everything is bounded: [`MAX_RECORDS`] per collection and
//! repository, [`MAX_BLOCK_LISTS`] lists. Blocks of the account by others
//! live in the others' repositories and come only from the stream.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_core::store::StateChange;
use tokio::sync::{Notify, Semaphore, mpsc, watch};

use crate::at_uri::AtUri;
use crate::did::Did;
use crate::jetstream_event::{EventBody, JetstreamEvent, Operation, Record, create_event, nsid};
use crate::pds::{PdsError, list_records};
use crate::resolver::DidResolver;

/// Records read per collection of one repository: far beyond what a person
/// blocks by hand, and a bound on what one account can make herald read.
pub const MAX_RECORDS: usize = 10_000;
/// Block lists followed per account: subscriptions to moderation lists are
/// few; each costs a listing of its owner's items.
pub const MAX_BLOCK_LISTS: usize = 50;

/// Accounts whose blocks are read at once: each is a few sequential
/// requests to its PDS, and registration bursts should not flood them.
pub const CONCURRENT_BACKFILLS: usize = 4;
/// Tries per account before herald gives up on its past blocks (the stream
/// still brings new ones); waits double from [`RETRY_DELAY`].
pub const MAX_TRIES: u32 = 5;
pub const RETRY_DELAY: Duration = Duration::from_secs(60);

/// Accounts waiting for their past blocks to be read, in arrival order.
#[derive(Debug, Default)]
pub struct BackfillQueue {
    waiting: Mutex<VecDeque<(Did, u32)>>,
    added: Notify,
}

impl BackfillQueue {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&self, did: Did) {
        self.push_try(did, 0);
    }

    fn push_try(&self, did: Did, tries: u32) {
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back((did, tries));
        self.added.notify_one();
    }

    pub fn len(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn next(&self) -> (Did, u32) {
        loop {
            let added = self.added.notified();
            if let Some(next) = self
                .waiting
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front()
            {
                return next;
            }
            added.await;
        }
    }
}

/// Counters for `/health`.
#[derive(Debug, Default)]
pub struct BackfillStats {
    pub accounts_done: AtomicU64,
    pub failures: AtomicU64,
    pub abandoned: AtomicU64,
}

/// What the backfill hands the pipeline.
#[derive(Debug)]
pub enum StateUpdate {
    /// A past block, list block or list item, to learn.
    Event(JetstreamEvent),
    /// Every past block of this account was handed on: keep that fact.
    Backfilled(Did),
}

/// Reads the queued accounts' blocks, [`CONCURRENT_BACKFILLS`] at a time,
/// and hands the events to `updates` (the pipeline's state) until `stop`.
/// A failed account is tried again later, [`MAX_TRIES`] times in all.
pub async fn run(
    queue: Arc<BackfillQueue>,
    resolver: Arc<DidResolver>,
    updates: mpsc::Sender<StateUpdate>,
    stats: Arc<BackfillStats>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(CONCURRENT_BACKFILLS));
    loop {
        let (did, tries) = tokio::select! {
            next = queue.next() => next,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let (queue, resolver, updates, stats) = (
            Arc::clone(&queue),
            Arc::clone(&resolver),
            updates.clone(),
            Arc::clone(&stats),
        );
        let stop = stop.clone();
        tokio::spawn(async move {
            let result = blocks_of(&resolver, &did).await;
            drop(permit);
            match result {
                Ok(events) => {
                    let updates_of = events.into_iter().map(StateUpdate::Event);
                    for update in updates_of.chain([StateUpdate::Backfilled(did)]) {
                        if updates.send(update).await.is_err() {
                            return;
                        }
                    }
                    stats.accounts_done.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                    let tries = tries + 1;
                    if tries >= MAX_TRIES {
                        stats.abandoned.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, tries, "giving up reading an account's past blocks");
                        return;
                    }
                    tracing::info!(error = %e, tries, "cannot read an account's past blocks yet");
                    retry_later(queue, did, tries, stop).await;
                }
            }
        });
    }
}

/// Queues `did` again after the backoff for its `tries`, unless herald stops first.
async fn retry_later(
    queue: Arc<BackfillQueue>,
    did: Did,
    tries: u32,
    mut stop: watch::Receiver<bool>,
) {
    let delay = RETRY_DELAY.saturating_mul(1 << (tries - 1).min(8));
    tokio::select! {
        () = tokio::time::sleep(delay) => queue.push_try(did, tries),
        _ = stop.wait_for(|s| *s) => {}
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackfillError {
    #[error("resolving {did}: {reason}")]
    Resolve { did: String, reason: String },
    #[error("{did} names no PDS in its DID document")]
    NoPds { did: String },
    #[error("listing {collection} of {did}: {source}")]
    Pds {
        did: String,
        collection: &'static str,
        source: PdsError,
    },
}

/// The block, list block and list item events that rebuild `did`'s blocks.
pub async fn blocks_of(
    resolver: &DidResolver,
    did: &Did,
) -> Result<Vec<JetstreamEvent>, BackfillError> {
    let mut events = collection(resolver, did, nsid::GRAPH_BLOCK).await?;
    let list_blocks = collection(resolver, did, nsid::GRAPH_LISTBLOCK).await?;
    let lists: Vec<AtUri> = list_blocks
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Commit(c) => match &c.operation {
                Operation::Create(Record::ListBlock(b)) => Some(b.subject.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect::<HashSet<_>>()
        .into_iter()
        .take(MAX_BLOCK_LISTS)
        .collect();
    events.extend(list_blocks);
    for list in lists {
        let items = collection(resolver, list.did(), nsid::GRAPH_LISTITEM).await?;
        events.extend(items.into_iter().filter(|e| in_list(e, &list)));
    }
    Ok(events)
}

fn in_list(event: &JetstreamEvent, list: &AtUri) -> bool {
    matches!(&event.body, EventBody::Commit(c)
        if matches!(&c.operation, Operation::Create(Record::ListItem(item)) if item.list == *list))
}

/// Every record of `collection` in `repo`, as create events, up to [`MAX_RECORDS`].
async fn collection(
    resolver: &DidResolver,
    repo: &Did,
    collection: &'static str,
) -> Result<Vec<JetstreamEvent>, BackfillError> {
    let document = resolver
        .resolve(repo, false)
        .await
        .map_err(|e| BackfillError::Resolve {
            did: repo.as_str().to_owned(),
            reason: e.to_string(),
        })?;
    let pds = document
        .pds_endpoint()
        .ok_or_else(|| BackfillError::NoPds {
            did: repo.as_str().to_owned(),
        })?;
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    while events.len() < MAX_RECORDS {
        let page = list_records(resolver, pds, repo, collection, cursor.as_deref())
            .await
            .map_err(|source| BackfillError::Pds {
                did: repo.as_str().to_owned(),
                collection,
                source,
            })?;
        let full = !page.records.is_empty();
        for record in page.records {
            if let Some(event) = as_event(repo, collection, &record.uri, record.value.get()) {
                events.push(event);
            }
        }
        // A cursor that does not move would loop forever on a broken PDS.
        match page.cursor {
            Some(next) if full && cursor.as_deref() != Some(next.as_str()) => cursor = Some(next),
            _ => break,
        }
    }
    events.truncate(MAX_RECORDS);
    Ok(events)
}

/// The create event the stream would carry for this record; `None` for a
/// record that is not in `repo`'s `collection` or does not parse.
fn as_event(repo: &Did, collection: &str, uri: &str, value: &str) -> Option<JetstreamEvent> {
    let uri = AtUri::parse(uri).ok()?;
    if uri.did() != repo || uri.collection() != collection {
        return None;
    }
    create_event(&uri, value).ok()
}

/// The store key that says an account's past blocks were read.
const BACKFILLED_PREFIX: &str = "backfilled:";

/// What to keep once `did`'s past blocks are in the state.
pub fn backfilled_marker(did: &Did) -> StateChange {
    StateChange {
        key: format!("{BACKFILLED_PREFIX}{}", did.as_str()),
        value: Some("1".into()),
    }
}

/// The account a kept key marks as backfilled, if it is such a key.
pub fn backfilled_account(key: &str) -> Option<Did> {
    Did::parse(key.strip_prefix(BACKFILLED_PREFIX)?).ok()
}

//! From the relays' verified events to queued deliveries: the seen-set,
//! the rules, the recipients' mute lists and rate limits, and the queue
//! with the source's cursor.
//!
//! - **One writer.** Every relay connection feeds one bounded channel and
//!   this pipeline handles its events one at a time, so the seen-set needs
//!   no lock and an event served by two relays is handled by whichever
//!   came first, once.
//! - **Seen before pushed.** An event's id is marked seen (`seen`) whether
//!   it notifies anyone or not, and the mark is written in the transaction
//!   that queues its pushes, so a crash neither loses them nor, after the
//!   restart's re-subscription, pushes them again.
//! - **History is marked, not pushed.** The keys an arrival names in
//!   `history_for` (stored events from before their first subscription)
//!   are not told.
//! - **Mute lists are state, not events.** A registered key's kind 10000
//!   updates `mute_list` and is not marked seen: a relay serves the list
//!   again on every subscription, and the newest one wins whatever the
//!   seen-set remembers. A recipient is not told of an event by someone
//!   their list mutes.
//! - **So are relay lists.** A registered key's kind 10050 or 10002 (from
//!   the index relays) updates `account_relays`, which `relay_set` watches
//!   to open the account's own relays; kept in the store the same way.
//! - **Rate before pushing.** Reactions, reposts and zaps beyond a
//!   recipient's limit (`herald_core::rate`, [`DEFAULT_RATE_LIMIT`]) are
//!   counted and not pushed; history and muted events take no token.
//! - **Apps and devices choose.** One notification per app whose kinds
//!   hold the event's (`rules::AppRules`), and the fan-out skips devices
//!   whose own `kinds` leave it out (`rules::device_wants`).
//! - **The cursor is a time.** Nostr has no global order, so the source's
//!   cursor is the Unix second up to which herald was watching, stored
//!   with every commit and at least every [`CURSOR_SAVE_INTERVAL`]. A
//!   restart asks each relay for the honestly-dated kinds from a little
//!   before it, and treats the keys registered before it as watched.
//! - **Arrivals waiting share a commit.** When relays send faster than
//!   commits land, the events already in the channel (up to
//!   [`MAX_ARRIVALS_PER_COMMIT`]) are handled and queued in the same
//!   transaction as the one that woke the pipeline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_core::fan_out::FanOut;
use herald_core::model::Notification;
use herald_core::rate::{KeyedBuckets, RateLimit};
use herald_core::store::StateChange;
use herald_core::time::now_secs;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::account_relays::{AccountRelays, RelayLimits};
use crate::event::kind;
use crate::mute_list::MuteLists;
use crate::pubkey::PublicKey;
use crate::recipients::RecipientIndex;
use crate::relay::Arrival;
use crate::rules::{self, AppRules};
use crate::seen::SeenSet;

/// The source's name in the store (cursor, seen-set and mute lists).
pub const SOURCE_NAME: &str = "nostr.relays";

/// Arrivals handled into one commit at most: enough to spread a commit's
/// cost over a burst, few enough that the first push of it is not held
/// back long.
pub const MAX_ARRIVALS_PER_COMMIT: usize = 64;

/// How often the cursor and the seen-set's changes are stored when no
/// event pushed anything: a crash loses at most this much of either, and
/// the store sees one write a second at most.
pub const CURSOR_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// How often the cursor alone is stored while nothing arrives, so that a
/// restart after a quiet spell does not ask the relays for more than it must.
pub const IDLE_CURSOR_SAVE_INTERVAL: Duration = Duration::from_secs(60);

/// Reactions, reposts and zaps one key is pushed: as many as for AT
/// Protocol likes (30 per 10 minutes), which keeps a busy account informed
/// and a note that goes viral from sending thousands.
pub const DEFAULT_RATE_LIMIT: RateLimit = RateLimit {
    pushes: 30,
    window: Duration::from_secs(600),
};

/// Counters for `/health`.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub events: AtomicU64,
    /// Events already seen (another relay, a reconnect, a restart).
    pub duplicates: AtomicU64,
    /// Stored events of keys subscribed for the first time, not pushed.
    pub history: AtomicU64,
    /// Recipients not told because their mute list names who is behind the event.
    pub muted: AtomicU64,
    /// Reactions, reposts and zaps not pushed: their recipient was over the limit.
    pub rate_limited: AtomicU64,
    /// Mute lists taken (newer than the one held).
    pub mute_lists: AtomicU64,
    /// Relay lists (kinds 10050, 10002) taken.
    pub relay_lists: AtomicU64,
    pub notifications: AtomicU64,
    pub store_retries: AtomicU64,
}

pub struct RelayPipeline {
    policy: Policy,
    fan_out: FanOut,
}

/// The rules, with what decides whether their notifications become
/// pushes: the seen-set, the mute lists, the rate limits and the apps'
/// choices. Apart from the fan-out, so it is tested without a store.
struct Policy {
    index: Arc<RecipientIndex>,
    apps: Vec<AppRules>,
    seen: SeenSet,
    mutes: MuteLists,
    relay_lists: Arc<AccountRelays>,
    rates: KeyedBuckets<PublicKey>,
    stats: Arc<PipelineStats>,
}

impl RelayPipeline {
    /// A pipeline whose seen-set and mute lists start from what the store
    /// `kept`, telling every app's devices of the default kinds until
    /// [`with_apps`](Self::with_apps) says otherwise.
    pub fn new(index: Arc<RecipientIndex>, fan_out: FanOut, kept: &[(String, String)]) -> Self {
        let mut seen = SeenSet::default();
        seen.restore(kept);
        let mut mutes = MuteLists::default();
        mutes.restore(kept);
        Self {
            policy: Policy {
                index,
                apps: vec![AppRules::every_app(rules::DEFAULT_KINDS)],
                seen,
                mutes,
                relay_lists: Arc::new(AccountRelays::new(RelayLimits::default())),
                rates: KeyedBuckets::new(DEFAULT_RATE_LIMIT),
                stats: Arc::default(),
            },
            fan_out: fan_out.with_device_filter(Arc::new(rules::device_wants)),
        }
    }

    /// Tells each app's devices of the kinds it chose, as it chose.
    pub fn with_apps(mut self, apps: Vec<AppRules>) -> Self {
        self.policy.apps = apps;
        self
    }

    /// Keeps the registered keys' relay lists in `lists` (restored by the
    /// caller, which shares them with the `relay_set`).
    pub fn with_account_relays(mut self, lists: Arc<AccountRelays>) -> Self {
        self.policy.relay_lists = lists;
        self
    }

    /// Limits the reactions, reposts and zaps pushed to one key.
    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.policy.rates = KeyedBuckets::new(limit);
        self
    }

    pub fn stats(&self) -> Arc<PipelineStats> {
        Arc::clone(&self.policy.stats)
    }

    pub fn seen_len(&self) -> usize {
        self.policy.seen.len()
    }

    /// Mute lists held.
    pub fn mute_lists_len(&self) -> usize {
        self.policy.mutes.len()
    }

    /// Handles arrivals until every connection hung up or `stop` turns
    /// true; the cursor and the seen-set are stored before it returns.
    pub async fn run(
        mut self,
        mut arrivals: mpsc::Receiver<Arrival>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut last_saved = Instant::now();
        let mut unsaved = false;
        loop {
            let next_save = last_saved
                + if unsaved {
                    CURSOR_SAVE_INTERVAL
                } else {
                    IDLE_CURSOR_SAVE_INTERVAL
                };
            let batch = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                arrival = arrivals.recv() => match arrival {
                    Some(arrival) => {
                        unsaved = true;
                        self.handle_waiting(arrival, &mut arrivals)
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(next_save) => Vec::new(),
            };
            if batch.is_empty() && Instant::now() < next_save {
                continue;
            }
            if !self.commit(&batch, &mut stop).await {
                return;
            }
            last_saved = Instant::now();
            unsaved = false;
        }
        // Even with nothing new: the cursor says herald watched until now.
        self.commit(&[], &mut stop).await;
    }

    /// The pushes of `first` and of the arrivals already waiting behind
    /// it, up to [`MAX_ARRIVALS_PER_COMMIT`] in all.
    fn handle_waiting(
        &mut self,
        first: Arrival,
        arrivals: &mut mpsc::Receiver<Arrival>,
    ) -> Vec<Notification> {
        let mut pushes = self.handle(&first);
        for _ in 1..MAX_ARRIVALS_PER_COMMIT {
            let Ok(arrival) = arrivals.try_recv() else {
                break;
            };
            pushes.extend(self.handle(&arrival));
        }
        pushes
    }

    fn handle(&mut self, arrival: &Arrival) -> Vec<Notification> {
        self.policy
            .handle(arrival, now_secs(), std::time::Instant::now())
    }

    /// Queues `batch` with the cursor and the seen-set's changes, retrying
    /// until stored; `false` if herald is stopping and it was not.
    async fn commit(&mut self, batch: &[Notification], stop: &mut watch::Receiver<bool>) -> bool {
        let now = now_secs();
        let changes = self.policy.changes(now);
        let stats = &self.policy.stats;
        let stored = self
            .fan_out
            .commit_until_stored(SOURCE_NAME, &now.to_string(), batch, &changes, stop, |e, delay| {
                stats.store_retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, ?delay, "cannot store Nostr notifications; retrying");
            })
            .await
            .is_some();
        if stored {
            stats
                .notifications
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        stored
    }
}

impl Policy {
    /// The pushes one arrival causes; its id is marked seen either way,
    /// unless it is a mute list.
    fn handle(
        &mut self,
        arrival: &Arrival,
        now_secs: u64,
        now: std::time::Instant,
    ) -> Vec<Notification> {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let event = &arrival.event;
        if event.kind() == kind::MUTE_LIST {
            // Only the registered keys' lists are asked for, and kept.
            if self.index.contains(event.pubkey()) && self.mutes.update(event) {
                self.stats.mute_lists.fetch_add(1, Ordering::Relaxed);
            }
            return Vec::new();
        }
        if AccountRelays::is_list(event.kind()) {
            // Kept only for registered keys: a stranger's list costs nothing.
            if self.index.contains(event.pubkey()) && self.relay_lists.update(event) {
                self.stats.relay_lists.fetch_add(1, Ordering::Relaxed);
            }
            return Vec::new();
        }
        if !self.seen.mark(*event.id(), now_secs) {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return Vec::new();
        }
        let Some(reason) = rules::reason(event) else {
            return Vec::new();
        };
        let recipients = rules::recipients(event, |key| self.index.contains(key));
        let (history, news): (Vec<_>, Vec<_>) = recipients
            .into_iter()
            .partition(|key| arrival.history_for.contains(key));
        if !history.is_empty() {
            self.stats.history.fetch_add(1, Ordering::Relaxed);
        }
        let actors = rules::actors(event);
        let mut pushes = Vec::new();
        for recipient in news {
            if actors
                .iter()
                .any(|actor| self.mutes.mutes(&recipient, actor))
            {
                self.stats.muted.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if reason.is_count_like() && !self.rates.allow(&recipient, now) {
                self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            pushes.extend(rules::notifications(
                event,
                &recipient,
                &arrival.relay,
                &self.apps,
            ));
        }
        pushes
    }

    /// What the store must apply to hold the seen-set and the mute lists,
    /// after forgetting the ids older than the retention at `now`.
    fn changes(&mut self, now: u64) -> Vec<StateChange> {
        self.seen.sweep(now);
        let mut changes = self.seen.take_changes();
        changes.extend(self.mutes.take_changes());
        changes.extend(self.relay_lists.take_changes());
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::test_support::TestKey;

    const NOW: u64 = 1_780_000_000;

    fn policy(registered: &[&TestKey], limit: RateLimit) -> Policy {
        let index = Arc::new(RecipientIndex::new());
        for key in registered {
            index.insert(key.public_key());
        }
        Policy {
            index,
            apps: vec![AppRules::every_app(rules::DEFAULT_KINDS)],
            seen: SeenSet::default(),
            mutes: MuteLists::default(),
            relay_lists: Arc::new(AccountRelays::new(RelayLimits::default())),
            rates: KeyedBuckets::new(limit),
            stats: Arc::default(),
        }
    }

    fn arrival(author: &TestKey, created_at: u64, kind: u16, tags: &[&[&str]]) -> Arrival {
        let json = author.sign(created_at, kind, tags, "").to_string();
        Arrival {
            event: Event::from_json(&json).unwrap(),
            relay: Arc::from("wss://relay.example"),
            history_for: Vec::new(),
        }
    }

    fn handle(policy: &mut Policy, arrival: &Arrival) -> usize {
        policy.handle(arrival, NOW, std::time::Instant::now()).len()
    }

    #[test]
    fn a_recipient_is_not_told_of_an_event_by_someone_their_list_mutes() {
        let (alice, bob, mallory) = (
            TestKey::new("alice"),
            TestKey::new("bob"),
            TestKey::new("mallory"),
        );
        let mut policy = policy(&[&bob], DEFAULT_RATE_LIMIT);
        let to_bob: &[&[&str]] = &[&["p", &bob.pubkey_hex()]];
        let list = arrival(&bob, NOW, kind::MUTE_LIST, &[&["p", &mallory.pubkey_hex()]]);
        assert_eq!(handle(&mut policy, &list), 0);
        assert_eq!(handle(&mut policy, &list), 0, "served again");
        assert_eq!(policy.stats.mute_lists.load(Ordering::Relaxed), 1);
        assert_eq!(policy.seen.len(), 0, "a list is state, not an event");
        let from_mallory = arrival(&mallory, NOW, kind::ENCRYPTED_DIRECT_MESSAGE, to_bob);
        assert_eq!(handle(&mut policy, &from_mallory), 0);
        assert_eq!(policy.stats.muted.load(Ordering::Relaxed), 1);
        let from_alice = arrival(&alice, NOW, kind::ENCRYPTED_DIRECT_MESSAGE, to_bob);
        assert_eq!(handle(&mut policy, &from_alice), 1);
        let changes = policy.changes(NOW);
        assert!(changes.iter().any(|c| c.key.starts_with("mute.")));
        assert!(changes.iter().any(|c| c.key.starts_with("seen.")));
    }

    #[test]
    fn only_the_registered_keys_lists_are_kept() {
        let (bob, mallory) = (TestKey::new("bob"), TestKey::new("mallory"));
        let mut policy = policy(&[&bob], DEFAULT_RATE_LIMIT);
        let list = arrival(&mallory, NOW, kind::MUTE_LIST, &[&["p", &bob.pubkey_hex()]]);
        handle(&mut policy, &list);
        assert!(policy.mutes.is_empty());
    }

    #[test]
    fn relay_lists_of_registered_keys_are_kept_as_state_and_strangers_are_ignored() {
        let (bob, mallory) = (TestKey::new("bob"), TestKey::new("mallory"));
        let mut policy = policy(&[&bob], DEFAULT_RATE_LIMIT);
        let inbox: &[&[&str]] = &[&["relay", "wss://inbox.example"]];
        let bobs = arrival(&bob, NOW, kind::DM_RELAY_LIST, inbox);
        assert_eq!(handle(&mut policy, &bobs), 0);
        assert_eq!(handle(&mut policy, &bobs), 0, "served again");
        let strangers = arrival(
            &mallory,
            NOW,
            kind::RELAY_LIST,
            &[&["r", "wss://evil.example"]],
        );
        assert_eq!(handle(&mut policy, &strangers), 0);
        assert_eq!(policy.stats.relay_lists.load(Ordering::Relaxed), 1);
        assert_eq!(policy.relay_lists.len(), 1, "only Bob's");
        assert_eq!(policy.seen.len(), 0, "a list is state, not an event");
        let changes = policy.changes(NOW);
        let key = format!("relays.10050.{}", bob.pubkey_hex());
        assert!(changes.iter().any(|c| c.key == key), "{changes:?}");
    }

    #[test]
    fn reactions_beyond_the_rate_are_not_pushed_and_messages_always_are() {
        let (alice, bob) = (TestKey::new("alice"), TestKey::new("bob"));
        let limit = RateLimit {
            pushes: 2,
            window: Duration::from_secs(600),
        };
        let mut policy = policy(&[&bob], limit);
        let to_bob: &[&[&str]] = &[&["p", &bob.pubkey_hex()]];
        let pushed: usize = (0..5)
            .map(|n| {
                handle(
                    &mut policy,
                    &arrival(&alice, NOW + n, kind::REACTION, to_bob),
                )
            })
            .sum();
        assert_eq!(pushed, 2);
        assert_eq!(policy.stats.rate_limited.load(Ordering::Relaxed), 3);
        let dms: usize = (0..5)
            .map(|n| {
                let dm = arrival(&alice, NOW + n, kind::ENCRYPTED_DIRECT_MESSAGE, to_bob);
                handle(&mut policy, &dm)
            })
            .sum();
        assert_eq!(dms, 5);
    }

    #[test]
    fn history_takes_no_token_and_is_not_pushed() {
        let (alice, bob) = (TestKey::new("alice"), TestKey::new("bob"));
        let limit = RateLimit {
            pushes: 1,
            window: Duration::from_secs(600),
        };
        let mut policy = policy(&[&bob], limit);
        let to_bob: &[&[&str]] = &[&["p", &bob.pubkey_hex()]];
        let mut old = arrival(&alice, NOW - 60, kind::REACTION, to_bob);
        old.history_for = vec![bob.public_key()];
        assert_eq!(handle(&mut policy, &old), 0);
        assert_eq!(
            handle(&mut policy, &arrival(&alice, NOW, kind::REACTION, to_bob)),
            1
        );
    }

    #[test]
    fn each_app_that_chose_the_kind_gets_its_own_push() {
        use herald_core::model::AppId;
        let (alice, bob) = (TestKey::new("alice"), TestKey::new("bob"));
        let mut policy = policy(&[&bob], DEFAULT_RATE_LIMIT);
        let app = |id: &str, kinds: &[u16]| AppRules {
            app_id: Some(AppId::parse(id).unwrap()),
            kinds: kinds.to_vec(),
            silent: false,
        };
        policy.apps = vec![
            app("chat.dm", &[kind::ENCRYPTED_DIRECT_MESSAGE]),
            app("social.client", rules::DEFAULT_KINDS),
        ];
        let to_bob: &[&[&str]] = &[&["p", &bob.pubkey_hex()]];
        let dm = arrival(&alice, NOW, kind::ENCRYPTED_DIRECT_MESSAGE, to_bob);
        assert_eq!(handle(&mut policy, &dm), 2);
        let reaction = arrival(&alice, NOW, kind::REACTION, to_bob);
        assert_eq!(handle(&mut policy, &reaction), 1);
    }
}

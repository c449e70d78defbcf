//! The registered accounts' own relays: their DM inbox relays (kind 10050,
//! `relay` tags, NIP-17) and their read relays (kind 10002, `r` tags with
//! no marker or `read`, NIP-65), as index relays serve the lists.
//!
//! - **Why.** A sender publishes a gift wrap to the recipient's 10050
//!   relays and a mention to the recipient's read relays; an account whose
//!   relays are none of the configured ones would otherwise never be told.
//! - **The newest list wins** (replaceable events, `event::replaces`), so a
//!   lagging index relay serving an older copy changes nothing. The
//!   signature was checked when the event was read; only lists of
//!   registered keys are taken (the pipeline checks), so strangers' lists
//!   cost nothing.
//! - **Bounded.** Each URL goes through `relay_url::normalize` (form,
//!   scheme, credentials, length, private addresses); invalid ones are
//!   skipped. An account has at most `per_account` relays (its inbox
//!   relays first: DMs are what a push matters most for), whatever the
//!   size of its lists; herald watches at most `total` account relays, the
//!   ones most accounts share first ([`AccountRelays::plan`]). So a
//!   thousand-tag list or a hundred thousand accounts with distinct relays
//!   cannot make herald open more than `total` connections.
//! - **Kept beside the seen-set.** A list taken is a `StateChange` with the
//!   key `relays.<kind>.<author>` in the pipeline's next commit and is read
//!   back at start, so after a restart herald watches the accounts' relays
//!   before (and without) the index relays answering. The lists of keys
//!   that are no longer registered are forgotten, there too.
//! - **Shared.** The pipeline writes, the relay set (`relay_set`) reads;
//!   every change bumps a generation the relay set waits on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use herald_core::store::StateChange;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use url::Url;

use crate::event::{self, Event, EventId, kind};
use crate::pubkey::PublicKey;
use crate::relay_url;

/// An account's relays herald watches unless configured otherwise: what
/// clients suggest publishing a relay list of (NIP-65 says 2 to 4 read
/// relays; inbox lists are as short), with room for one more.
pub const DEFAULT_RELAYS_PER_ACCOUNT: usize = 5;

/// Account relays watched in all unless configured otherwise: one
/// connection each, a few hundred KB of buffers apiece.
pub const DEFAULT_MAX_ACCOUNT_RELAYS: usize = 100;

/// The prefix of a list's key in the source's stored state.
const KEY_PREFIX: &str = "relays.";

/// How many of an account's relays, and of all, herald watches, and
/// whether private addresses are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    pub per_account: usize,
    pub total: usize,
    /// Loopback and private addresses: for relays on the operator's own
    /// network, and for tests.
    pub allow_private: bool,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            per_account: DEFAULT_RELAYS_PER_ACCOUNT,
            total: DEFAULT_MAX_ACCOUNT_RELAYS,
            allow_private: false,
        }
    }
}

/// One list as the store keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    created_at: u64,
    id: String,
    relays: Vec<String>,
}

#[derive(Debug)]
struct RelayList {
    created_at: u64,
    id: EventId,
    relays: Vec<Url>,
}

/// Relays watched for some accounts: each relay with the keys it is
/// watched for, sorted.
pub type RelayPlan = BTreeMap<Url, Vec<PublicKey>>;

#[derive(Debug, Default)]
struct Lists {
    /// By (author, kind): kind 10050 or 10002.
    held: HashMap<(PublicKey, u16), RelayList>,
    /// Changes not yet handed to the store.
    changes: Vec<StateChange>,
}

#[derive(Debug)]
pub struct AccountRelays {
    lists: Mutex<Lists>,
    limits: RelayLimits,
    generation: watch::Sender<u64>,
}

impl AccountRelays {
    pub fn new(limits: RelayLimits) -> Self {
        Self {
            lists: Mutex::default(),
            limits,
            generation: watch::Sender::new(0),
        }
    }

    /// Whether `kind` is one of the lists kept here.
    pub fn is_list(kind: u16) -> bool {
        matches!(kind, kind::DM_RELAY_LIST | kind::RELAY_LIST)
    }

    /// The lists among what the store kept for the source, checked again
    /// under the current limits; other keys are someone else's.
    pub fn restore(&self, kept: &[(String, String)]) {
        let mut lists = self.lock();
        for (key, value) in kept {
            let Some((kind, author)) = parse_key(key) else {
                continue;
            };
            let Ok(stored) = serde_json::from_str::<Stored>(value) else {
                continue;
            };
            let Some(id) = EventId::parse_hex(&stored.id) else {
                continue;
            };
            let relays = self.valid(stored.relays.iter().map(String::as_str));
            lists.held.insert(
                (author, kind),
                RelayList {
                    created_at: stored.created_at,
                    id,
                    relays,
                },
            );
        }
        drop(lists);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Takes `event` as its author's list if it is one and newer than the
    /// list held; `true` if it was. The caller checks the author is registered.
    pub fn update(&self, event: &Event) -> bool {
        let kind = event.kind();
        let tag = match kind {
            kind::DM_RELAY_LIST => "relay",
            kind::RELAY_LIST => "r",
            _ => return false,
        };
        let author = *event.pubkey();
        let mut lists = self.lock();
        if lists.held.get(&(author, kind)).is_some_and(|held| {
            !event::replaces(
                (event.created_at(), event.id()),
                (held.created_at, &held.id),
            )
        }) {
            return false;
        }
        let urls = event
            .tags()
            .iter()
            .filter(|t| t.first().is_some_and(|name| name == tag))
            .filter(|t| kind == kind::DM_RELAY_LIST || is_read(t))
            .filter_map(|t| t.get(1).map(String::as_str));
        let relays = self.valid(urls);
        lists.changes.push(StateChange {
            key: key(&author, kind),
            value: Some(
                serde_json::to_string(&Stored {
                    created_at: event.created_at(),
                    id: event.id().to_hex(),
                    relays: relays.iter().map(|u| u.to_string()).collect(),
                })
                .expect("strings and numbers serialize"),
            ),
        });
        lists.held.insert(
            (author, kind),
            RelayList {
                created_at: event.created_at(),
                id: *event.id(),
                relays,
            },
        );
        drop(lists);
        self.generation.send_modify(|g| *g += 1);
        true
    }

    /// `account`'s relays herald would watch: inbox relays, then read
    /// relays, each once, at most `per_account`.
    pub fn relays_of(&self, account: &PublicKey) -> Vec<Url> {
        let lists = self.lock();
        let mut relays: Vec<Url> = Vec::new();
        for kind in [kind::DM_RELAY_LIST, kind::RELAY_LIST] {
            for url in lists
                .held
                .get(&(*account, kind))
                .into_iter()
                .flat_map(|l| &l.relays)
            {
                if relays.len() < self.limits.per_account && !relays.contains(url) {
                    relays.push(url.clone());
                }
            }
        }
        relays
    }

    /// The relays to watch and for whom: every registered account's
    /// relays except those in `configured` (already watched for everyone),
    /// at most `total` of them, the ones most accounts share first (the
    /// URL breaks ties, so the plan is the same on every run).
    pub fn plan(
        &self,
        registered: impl Fn(&PublicKey) -> bool,
        configured: &HashSet<Url>,
    ) -> RelayPlan {
        let authors: HashSet<PublicKey> = self.lock().held.keys().map(|(a, _)| *a).collect();
        let mut plan = RelayPlan::new();
        for author in authors.into_iter().filter(|a| registered(a)) {
            for url in self.relays_of(&author) {
                if !configured.contains(&url) {
                    plan.entry(url).or_default().push(author);
                }
            }
        }
        if plan.len() > self.limits.total {
            let mut ranked: Vec<(Url, usize)> = plan
                .iter()
                .map(|(u, keys)| (u.clone(), keys.len()))
                .collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            for (url, _) in ranked.into_iter().skip(self.limits.total) {
                plan.remove(&url);
            }
        }
        for keys in plan.values_mut() {
            keys.sort_unstable();
        }
        plan
    }

    /// Forgets the lists of authors no longer `registered`, in memory and
    /// in the store: keys come and go (Mostro's are one per trade), and
    /// their lists must not outlive them.
    pub fn forget_unregistered(&self, registered: impl Fn(&PublicKey) -> bool) {
        let mut lists = self.lock();
        let gone: Vec<(PublicKey, u16)> = lists
            .held
            .keys()
            .filter(|(author, _)| !registered(author))
            .copied()
            .collect();
        for (author, kind) in gone {
            lists.held.remove(&(author, kind));
            lists.changes.push(StateChange {
                key: key(&author, kind),
                value: None,
            });
        }
    }

    /// Lists held (two per account at most).
    pub fn len(&self) -> usize {
        self.lock().held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What the store must apply to hold what memory holds.
    pub fn take_changes(&self) -> Vec<StateChange> {
        std::mem::take(&mut self.lock().changes)
    }

    /// A receiver that sees a change each time a list changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The valid URLs among `urls`, each once, at most `per_account`.
    fn valid<'a>(&self, urls: impl Iterator<Item = &'a str>) -> Vec<Url> {
        let mut relays: Vec<Url> = Vec::new();
        for text in urls {
            if relays.len() == self.limits.per_account {
                break;
            }
            match relay_url::normalize(text, self.limits.allow_private) {
                Ok(url) if !relays.contains(&url) => relays.push(url),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "skipped a relay of an account's list"),
            }
        }
        relays
    }

    fn lock(&self) -> MutexGuard<'_, Lists> {
        self.lists.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A kind 10002 `r` tag for reading: no marker, or `read` (NIP-65).
fn is_read(tag: &[String]) -> bool {
    tag.get(2).is_none_or(|marker| marker == "read")
}

/// A list's key in the source's stored state: `relays.<kind>.<author hex>`.
fn key(author: &PublicKey, kind: u16) -> String {
    format!("{KEY_PREFIX}{kind}.{author}")
}

/// `relays.<kind>.<author hex>` → (kind, author).
fn parse_key(key: &str) -> Option<(u16, PublicKey)> {
    let (kind, author) = key.strip_prefix(KEY_PREFIX)?.split_once('.')?;
    let kind: u16 = kind.parse().ok()?;
    if !AccountRelays::is_list(kind) {
        return None;
    }
    Some((kind, PublicKey::parse_hex(author).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TestKey;

    const NOW: u64 = 1_780_000_000;

    fn list(author: &TestKey, created_at: u64, kind: u16, tags: &[&[&str]]) -> Event {
        Event::from_json(&author.sign(created_at, kind, tags, "").to_string()).unwrap()
    }

    fn urls(relays: &[Url]) -> Vec<&str> {
        relays.iter().map(Url::as_str).collect()
    }

    fn limits(per_account: usize, total: usize) -> RelayLimits {
        RelayLimits {
            per_account,
            total,
            allow_private: false,
        }
    }

    #[test]
    fn inbox_relays_then_read_relays_each_once() {
        let bob = TestKey::new("bob");
        let relays = AccountRelays::new(RelayLimits::default());
        let inbox: &[&[&str]] = &[
            &["relay", "wss://inbox.example"],
            &["relay", "wss://both.example/"],
        ];
        assert!(relays.update(&list(&bob, NOW, kind::DM_RELAY_LIST, inbox)));
        let nip65: &[&[&str]] = &[
            &["r", "wss://write.example", "write"],
            &["r", "wss://read.example", "read"],
            &["r", "WSS://Both.Example"],
            &["relay", "wss://wrong-tag.example"],
        ];
        assert!(relays.update(&list(&bob, NOW, kind::RELAY_LIST, nip65)));
        assert_eq!(
            urls(&relays.relays_of(&bob.public_key())),
            [
                "wss://inbox.example/",
                "wss://both.example/",
                "wss://read.example/"
            ]
        );
    }

    #[test]
    fn the_newest_list_wins_and_a_stale_copy_changes_nothing() {
        let bob = TestKey::new("bob");
        let relays = AccountRelays::new(RelayLimits::default());
        let old: &[&[&str]] = &[&["relay", "wss://old.example"]];
        let new: &[&[&str]] = &[&["relay", "wss://new.example"]];
        assert!(relays.update(&list(&bob, NOW, kind::DM_RELAY_LIST, old)));
        assert!(relays.update(&list(&bob, NOW + 60, kind::DM_RELAY_LIST, new)));
        assert!(!relays.update(&list(&bob, NOW, kind::DM_RELAY_LIST, old)));
        assert!(!relays.update(&list(&bob, NOW + 60, kind::DM_RELAY_LIST, new)));
        assert_eq!(
            urls(&relays.relays_of(&bob.public_key())),
            ["wss://new.example/"]
        );
        assert_eq!(relays.take_changes().len(), 2);
    }

    #[test]
    fn a_hostile_list_is_cut_to_the_bound_and_bad_urls_are_skipped() {
        let bob = TestKey::new("bob");
        let relays = AccountRelays::new(limits(3, 100));
        let huge = format!("wss://{}.example", "a".repeat(300));
        let junk: Vec<String> = (0..1_000).map(|n| format!("wss://r{n}.example")).collect();
        let mut tags: Vec<Vec<&str>> = vec![
            vec!["relay", "https://not-a-relay.example"],
            vec!["relay", &huge],
            vec!["relay", "wss://user:secret@relay.example"],
            vec!["relay", "ws://127.0.0.1:7777"],
            vec!["relay"],
            vec!["relay", "not a url"],
        ];
        tags.extend(junk.iter().map(|url| vec!["relay", url.as_str()]));
        let tags: Vec<&[&str]> = tags.iter().map(Vec::as_slice).collect();
        assert!(relays.update(&list(&bob, NOW, kind::DM_RELAY_LIST, &tags)));
        assert_eq!(
            urls(&relays.relays_of(&bob.public_key())),
            [
                "wss://r0.example/",
                "wss://r1.example/",
                "wss://r2.example/"
            ]
        );
        let stored = relays.take_changes();
        assert!(
            stored[0].value.as_ref().unwrap().len() < 200,
            "only the kept relays are stored"
        );
    }

    #[test]
    fn other_kinds_are_not_lists() {
        let bob = TestKey::new("bob");
        let relays = AccountRelays::new(RelayLimits::default());
        let note = list(&bob, NOW, kind::TEXT_NOTE, &[&["r", "wss://a.example"]]);
        assert!(!relays.update(&note));
        assert!(relays.is_empty());
    }

    #[test]
    fn the_plan_watches_registered_accounts_on_their_relays_within_the_total() {
        let keys: Vec<TestKey> = (0..4).map(|n| TestKey::new(&format!("k{n}"))).collect();
        let relays = AccountRelays::new(limits(5, 2));
        let shared: &[&[&str]] = &[
            &["relay", "wss://shared.example"],
            &["relay", "wss://configured.example"],
        ];
        for key in &keys[..3] {
            relays.update(&list(key, NOW, kind::DM_RELAY_LIST, shared));
        }
        relays.update(&list(
            &keys[0],
            NOW,
            kind::RELAY_LIST,
            &[&["r", "wss://b-own.example"]],
        ));
        relays.update(&list(
            &keys[1],
            NOW,
            kind::RELAY_LIST,
            &[&["r", "wss://a-own.example"]],
        ));
        relays.update(&list(
            &keys[3],
            NOW,
            kind::RELAY_LIST,
            &[&["r", "wss://unregistered.example"]],
        ));
        let registered: HashSet<PublicKey> = keys[..3].iter().map(TestKey::public_key).collect();
        let configured: HashSet<Url> = [Url::parse("wss://configured.example").unwrap()].into();
        let plan = relays.plan(|k| registered.contains(k), &configured);
        let watched: Vec<&str> = plan.keys().map(Url::as_str).collect();
        // Three candidates for two places: the shared one, then the URL order.
        assert_eq!(watched, ["wss://a-own.example/", "wss://shared.example/"]);
        let mut sharing: Vec<PublicKey> = registered.iter().copied().collect();
        sharing.sort_unstable();
        assert_eq!(plan[&Url::parse("wss://shared.example").unwrap()], sharing);
    }

    #[test]
    fn the_lists_of_keys_no_longer_registered_are_forgotten_in_the_store_too() {
        let (bob, carol) = (TestKey::new("bob"), TestKey::new("carol"));
        let relays = AccountRelays::new(RelayLimits::default());
        for key in [&bob, &carol] {
            relays.update(&list(
                key,
                NOW,
                kind::DM_RELAY_LIST,
                &[&["relay", "wss://a.example"]],
            ));
            relays.update(&list(
                key,
                NOW,
                kind::RELAY_LIST,
                &[&["r", "wss://b.example"]],
            ));
        }
        relays.take_changes();
        relays.forget_unregistered(|k| *k == bob.public_key());
        assert_eq!(relays.len(), 2, "Bob's two lists");
        assert!(relays.relays_of(&carol.public_key()).is_empty());
        let mut removed: Vec<(String, Option<String>)> = relays
            .take_changes()
            .into_iter()
            .map(|c| (c.key, c.value))
            .collect();
        removed.sort();
        let carol_hex = carol.pubkey_hex();
        assert_eq!(
            removed,
            [
                (format!("relays.10002.{carol_hex}"), None),
                (format!("relays.10050.{carol_hex}"), None)
            ]
        );
    }

    #[test]
    fn lists_survive_a_restart_and_are_checked_again_under_the_limits() {
        let bob = TestKey::new("bob");
        let before = AccountRelays::new(RelayLimits {
            allow_private: true,
            ..RelayLimits::default()
        });
        let tags: &[&[&str]] = &[
            &["relay", "ws://127.0.0.1:7777"],
            &["relay", "wss://public.example"],
        ];
        before.update(&list(&bob, NOW, kind::DM_RELAY_LIST, tags));
        let mut kept = vec![
            ("seen.00".to_owned(), "1".to_owned()),
            ("relays.1.x".to_owned(), "{}".to_owned()),
        ];
        kept.extend(
            before
                .take_changes()
                .into_iter()
                .map(|c| (c.key, c.value.unwrap())),
        );
        let after = AccountRelays::new(RelayLimits::default());
        after.restore(&kept);
        assert_eq!(after.len(), 1);
        assert_eq!(
            urls(&after.relays_of(&bob.public_key())),
            ["wss://public.example/"],
            "private addresses are no longer allowed"
        );
        assert!(after.take_changes().is_empty(), "nothing new to store");
        assert!(
            !after.update(&list(&bob, NOW, kind::DM_RELAY_LIST, tags)),
            "already held"
        );
    }
}

//! The connections to the accounts' own relays: one `RelayConnection` per
//! relay of `AccountRelays::plan`, opened and closed as the plan changes.
//!
//! - **Each relay for its own accounts.** A connection's keys are its own
//!   `RecipientIndex`, holding only the accounts that list that relay, so
//!   its `#p` filters name them and nobody else (a relay learns nothing of
//!   who else herald serves). Keys move in and out of it as lists and
//!   registrations change, and the connection subscribes again as it does
//!   for the configured relays.
//! - **One pipeline.** Every connection feeds the same channel as the
//!   configured relays: the seen-set handles an event once whichever relay
//!   served it, and each arrival names its relay for the push's hint.
//! - **History and restarts.** The connections opened from the plan at
//!   start (the lists kept in the store) resume as the configured relays
//!   do: their keys count as watched if herald watched them before, and
//!   the honestly-dated kinds are asked for from the cursor on. A relay
//!   learned later is new to its keys: what it stored before is history.
//! - **Changes are gathered.** The plan is computed again at most every
//!   [`PLAN_DELAY`], after a list or a registration changed: a burst of
//!   lists arriving from an index relay is one re-plan.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use url::Url;

use crate::account_relays::{AccountRelays, RelayPlan};
use crate::pubkey::PublicKey;
use crate::recipients::RecipientIndex;
use crate::relay::{Arrival, RelayConfig, RelayConnection, RelayStatus, StatusHandle};

/// Changes to lists and registrations within this delay are one re-plan.
pub const PLAN_DELAY: Duration = Duration::from_secs(1);

/// One account relay as `/health` shows it.
#[derive(Debug, Clone)]
pub struct AccountRelayStatus {
    pub url: String,
    /// Accounts watched there.
    pub accounts: usize,
    pub status: RelayStatus,
}

/// One open connection, as the handle sees it.
#[derive(Debug)]
struct Watched {
    url: String,
    keys: Arc<RecipientIndex>,
    status: StatusHandle,
}

/// A shared view of the account relays' connections.
#[derive(Debug, Clone, Default)]
pub struct RelaySetHandle(Arc<Mutex<Vec<Watched>>>);

impl RelaySetHandle {
    pub fn snapshot(&self) -> Vec<AccountRelayStatus> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|w| AccountRelayStatus {
                url: w.url.clone(),
                accounts: w.keys.len(),
                status: w.status.snapshot(),
            })
            .collect()
    }
}

struct Running {
    keys: Arc<RecipientIndex>,
    status: StatusHandle,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

pub struct AccountRelaySet {
    lists: Arc<AccountRelays>,
    registered: Arc<RecipientIndex>,
    /// Kinds, reconnect policy and key for every connection; the URL is each relay's.
    template: RelayConfig,
    /// The configured relays, which watch every key already.
    configured: HashSet<Url>,
    known_at_start: HashSet<PublicKey>,
    watched_until: Option<u64>,
    running: BTreeMap<Url, Running>,
    /// Connections told to stop, awaited at shutdown.
    stopping: Vec<JoinHandle<()>>,
    handle: RelaySetHandle,
}

impl AccountRelaySet {
    /// `known_at_start` and `watched_until` are as for `RelayConnection::new`.
    pub fn new(
        lists: Arc<AccountRelays>,
        registered: Arc<RecipientIndex>,
        template: RelayConfig,
        configured: HashSet<Url>,
        known_at_start: HashSet<PublicKey>,
        watched_until: Option<u64>,
    ) -> Self {
        Self {
            lists,
            registered,
            template,
            configured,
            known_at_start,
            watched_until,
            running: BTreeMap::new(),
            stopping: Vec::new(),
            handle: RelaySetHandle::default(),
        }
    }

    pub fn handle(&self) -> RelaySetHandle {
        self.handle.clone()
    }

    /// Keeps the connections in line with the plan until `stop` turns
    /// true, then stops them all.
    pub async fn run(mut self, sink: mpsc::Sender<Arrival>, mut stop: watch::Receiver<bool>) {
        let mut lists = self.lists.changes();
        let mut registered = self.registered.changes();
        let plan = self.plan();
        self.apply(plan, &sink, true);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                Ok(()) = lists.changed() => {}
                Ok(()) = registered.changed() => {}
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                () = tokio::time::sleep(PLAN_DELAY) => {}
            }
            lists.mark_unchanged();
            registered.mark_unchanged();
            let plan = self.plan();
            self.apply(plan, &sink, false);
        }
        for (_, running) in std::mem::take(&mut self.running) {
            let _ = running.stop.send(true);
            self.stopping.push(running.task);
        }
        for task in self.stopping {
            let _ = task.await;
        }
    }

    /// The plan for the keys registered now, whose lists alone are kept.
    fn plan(&self) -> RelayPlan {
        let registered = |key: &PublicKey| self.registered.contains(key);
        self.lists.forget_unregistered(registered);
        self.lists.plan(registered, &self.configured)
    }

    /// Opens, updates and closes connections to match `plan`. At start
    /// (`resuming`), the connections resume where herald stopped.
    fn apply(&mut self, plan: RelayPlan, sink: &mpsc::Sender<Arrival>, resuming: bool) {
        let gone: Vec<Url> = self
            .running
            .keys()
            .filter(|url| !plan.contains_key(*url))
            .cloned()
            .collect();
        for url in gone {
            if let Some(running) = self.running.remove(&url) {
                tracing::info!(relay = %url, "no registered account lists the relay any more; closing it");
                let _ = running.stop.send(true);
                self.stopping.push(running.task);
            }
        }
        self.stopping.retain(|task| !task.is_finished());
        for (url, keys) in plan {
            match self.running.get(&url) {
                Some(running) => sync_keys(&running.keys, &keys),
                None => {
                    let running = self.open(&url, &keys, sink, resuming);
                    self.running.insert(url, running);
                }
            }
        }
        *self.handle.0.lock().unwrap_or_else(|p| p.into_inner()) = self
            .running
            .iter()
            .map(|(url, r)| Watched {
                url: url.to_string(),
                keys: Arc::clone(&r.keys),
                status: r.status.clone(),
            })
            .collect();
    }

    fn open(
        &self,
        url: &Url,
        keys: &[PublicKey],
        sink: &mpsc::Sender<Arrival>,
        resuming: bool,
    ) -> Running {
        tracing::info!(relay = %url, accounts = keys.len(), "watching an account relay");
        let index = Arc::new(RecipientIndex::new());
        sync_keys(&index, keys);
        let (known, watched_until) = if resuming {
            let known = keys
                .iter()
                .filter(|k| self.known_at_start.contains(k))
                .copied()
                .collect();
            (known, self.watched_until)
        } else {
            (HashSet::new(), None)
        };
        let config = RelayConfig {
            url: url.clone(),
            ..self.template.clone()
        };
        let connection = RelayConnection::new(config, Arc::clone(&index), known, watched_until);
        let status = connection.status();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(connection.run(sink.clone(), stopped));
        Running {
            keys: index,
            status,
            stop,
            task,
        }
    }
}

/// Makes `index` hold exactly `keys`.
fn sync_keys(index: &RecipientIndex, keys: &[PublicKey]) {
    let wanted: HashSet<&PublicKey> = keys.iter().collect();
    for key in index.keys() {
        if !wanted.contains(&key) {
            index.remove(&key);
        }
    }
    for key in keys {
        index.insert(*key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TestKey;

    #[test]
    fn a_connection_s_keys_become_exactly_the_plan_s() {
        let (alice, bob, carol) = (
            TestKey::new("alice").public_key(),
            TestKey::new("bob").public_key(),
            TestKey::new("carol").public_key(),
        );
        let index = RecipientIndex::new();
        sync_keys(&index, &[alice, bob]);
        let before = *index.changes().borrow();
        sync_keys(&index, &[bob, carol]);
        let mut keys = index.keys();
        keys.sort_unstable();
        let mut expected = vec![bob, carol];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        let after = *index.changes().borrow();
        assert_eq!(after - before, 2, "alice out, carol in; bob untouched");
    }
}

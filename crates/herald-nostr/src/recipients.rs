//! The recipient index: which Nostr keys have a device in herald.
//!
//! The relay subscriptions are built from it (`#p` filters) and every event
//! is checked against it, so it lives in memory and answers without I/O.
//! Registrations update it at once; the relay connections wait on it, so
//! herald opens no relay connection while nobody can be notified, and each
//! change bumps a generation that tells the connections to subscribe again.
//! A key is its 32 bytes, so 100,000 accounts take a few megabytes.

use std::collections::HashSet;
use std::sync::RwLock;

use tokio::sync::watch;

use crate::pubkey::PublicKey;

#[derive(Debug)]
pub struct RecipientIndex {
    keys: RwLock<HashSet<PublicKey>>,
    /// Bumped on every change: what the relay connections wait on.
    generation: watch::Sender<u64>,
}

impl Default for RecipientIndex {
    fn default() -> Self {
        Self {
            keys: RwLock::default(),
            generation: watch::Sender::new(0),
        }
    }
}

impl RecipientIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key`; `true` if it was not in the index before.
    pub fn insert(&self, key: PublicKey) -> bool {
        let added = self.write().insert(key);
        if added {
            self.generation.send_modify(|g| *g += 1);
        }
        added
    }

    pub fn remove(&self, key: &PublicKey) {
        if self.write().remove(key) {
            self.generation.send_modify(|g| *g += 1);
        }
    }

    pub fn contains(&self, key: &PublicKey) -> bool {
        self.read().contains(key)
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> Vec<PublicKey> {
        self.read().iter().copied().collect()
    }

    /// A receiver that sees a change each time the index changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Returns once at least one key is in the index.
    pub async fn wait_for_someone(&self) {
        let mut changes = self.changes();
        // The sender lives in `self`, so the channel cannot close under us.
        let _ = changes.wait_for(|_| !self.is_empty()).await;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashSet<PublicKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashSet<PublicKey>> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::test_support::TestKey;

    #[test]
    fn counts_each_key_once_and_signals_every_change() {
        let index = RecipientIndex::new();
        let changes = index.changes();
        let (alice, bob) = (
            TestKey::new("alice").public_key(),
            TestKey::new("bob").public_key(),
        );
        assert!(index.insert(alice));
        assert!(!index.insert(alice));
        assert!(index.insert(bob));
        index.remove(&bob);
        index.remove(&bob);
        assert_eq!(index.len(), 1);
        assert!(index.contains(&alice) && !index.contains(&bob));
        assert_eq!(*changes.borrow(), 3, "two additions and one removal");
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_first_key_arrives() {
        let index = Arc::new(RecipientIndex::new());
        let waiter = tokio::spawn({
            let index = Arc::clone(&index);
            async move { index.wait_for_someone().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        index.insert(TestKey::new("alice").public_key());
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .unwrap();
    }
}

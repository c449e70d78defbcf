//! The recipient index: which AT Protocol accounts have a device in herald.
//!
//! Every event on the network is checked against it, so it lives in memory
//! and answers without I/O. Registrations update it at once (the XRPC and
//! admin routes write the store, then this), and the source waits on it:
//! while it is empty there is nobody to notify, so herald opens no
//! connection to Jetstream at all.
//!
//! Memory: a did:plc (nearly every account) is kept as the 15 bytes its
//! identifier encodes, not as a 32-character string behind a pointer, so
//! a million accounts take about 32 MB instead of 150; did:web accounts
//! keep their text.
//!
//! Speed: every event looks up an account or two, and most are not here. The
//! sets hash with [`KeyedHash`] (keyed, as the DIDs looked up are anyone's),
//! which costs a fraction of std's SipHash.

use std::collections::HashSet;
use std::sync::RwLock;

use tokio::sync::watch;

use crate::did::{Did, PLC_ID_BYTES};
use crate::keyed_hash::KeyedHash;

#[derive(Debug, Default)]
struct Accounts {
    plc: HashSet<[u8; PLC_ID_BYTES], KeyedHash>,
    web: HashSet<Box<str>, KeyedHash>,
}

impl Accounts {
    fn len(&self) -> usize {
        self.plc.len() + self.web.len()
    }
}

#[derive(Debug)]
pub struct RecipientIndex {
    dids: RwLock<Accounts>,
    /// The number of accounts, for waiters.
    count: watch::Sender<usize>,
}

impl Default for RecipientIndex {
    fn default() -> Self {
        Self {
            dids: RwLock::default(),
            count: watch::Sender::new(0),
        }
    }
}

impl RecipientIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `did`; `true` if it was not in the index before.
    pub fn insert(&self, did: Did) -> bool {
        let mut dids = self.dids.write().unwrap_or_else(|p| p.into_inner());
        let added = match did.plc_bytes() {
            Some(bytes) => dids.plc.insert(bytes),
            None => dids.web.insert(did.as_str().into()),
        };
        if added {
            self.count.send_replace(dids.len());
        }
        added
    }

    pub fn remove(&self, did: &Did) {
        let mut dids = self.dids.write().unwrap_or_else(|p| p.into_inner());
        let removed = match did.plc_bytes() {
            Some(bytes) => dids.plc.remove(&bytes),
            None => dids.web.remove(did.as_str()),
        };
        if removed {
            self.count.send_replace(dids.len());
        }
    }

    pub fn contains(&self, did: &Did) -> bool {
        let dids = self.dids.read().unwrap_or_else(|p| p.into_inner());
        match did.plc_bytes() {
            Some(bytes) => dids.plc.contains(&bytes),
            None => dids.web.contains(did.as_str()),
        }
    }

    pub fn len(&self) -> usize {
        *self.count.borrow()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns once at least one account is in the index.
    pub async fn wait_for_someone(&self) {
        let mut count = self.count.subscribe();
        // The sender lives in `self`, so the channel cannot close under us.
        let _ = count.wait_for(|n| *n > 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ALICE, BOB, did};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn counts_each_account_once() {
        let index = RecipientIndex::new();
        assert!(index.insert(did(ALICE)));
        assert!(!index.insert(did(ALICE)));
        assert!(index.insert(did(BOB)));
        assert_eq!(index.len(), 2);
        assert!(index.contains(&did(BOB)));
        index.remove(&did(BOB));
        index.remove(&did(BOB));
        assert_eq!(index.len(), 1);
        assert!(!index.contains(&did(BOB)));
        let web = did("did:web:push.example.com");
        assert!(index.insert(web.clone()));
        assert!(index.contains(&web));
        assert!(!index.contains(&did("did:web:example.com")));
        assert_eq!(index.len(), 2);
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_first_account_arrives() {
        let index = Arc::new(RecipientIndex::new());
        let waiter = tokio::spawn({
            let index = Arc::clone(&index);
            async move { index.wait_for_someone().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        index.insert(did(ALICE));
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("woken")
            .unwrap();
    }
}

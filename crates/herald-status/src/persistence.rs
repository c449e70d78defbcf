//! What the server keeps, in herald's store: the source `status`'s
//! key/value state, written in the same transaction as the deliveries it
//! causes (`FanOut::commit_until_stored`), and held in memory between
//! starts' reads.
//!
//! Three kinds of keys, told apart by shape:
//!
//! - `<128 hex digits of SHAKE-256(compressed key)><installation id>`: a
//!   registration (status-go's `push_notification_server_registrations`).
//!   The value is `<version>` after an unregistration, which keeps only the
//!   hash and the version so older registrations stay refused, or
//!   `<version>:<base64 of the marshaled registration>`.
//! - `identity`: the server's secret key, 64 hex digits, when it was
//!   generated rather than read from a key file.
//! - `request:<64 hex digits>`: the message id of a notification request
//!   already handled, with the Unix milliseconds it was handled at. These
//!   are bounded: the newest [`MAX_REMEMBERED_REQUESTS`] are kept.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use herald_core::store::StateChange;
use k256::SecretKey;
use k256::elliptic_curve::Generate;
use prost::Message;

use crate::hex;
use crate::proto::PushNotificationRegistration;

/// The source name the state is kept under.
pub const SOURCE: &str = "status";
/// SHAKE-256 (64 bytes) of a compressed public key.
pub type HashedKey = [u8; 64];
/// An `ApplicationMetadataMessage` id (Keccak-256).
pub type MessageId = [u8; 32];

/// Handled notification requests remembered. A request id only repeats
/// when the same Waku message comes back (relay duplicates within seconds,
/// a client's resend within minutes); at Status's request rates 10,000 ids
/// span far longer than that, and cost about 1 MB of store and memory.
pub const MAX_REMEMBERED_REQUESTS: usize = 10_000;

const IDENTITY_KEY: &str = "identity";
const REQUEST_PREFIX: &str = "request:";
const HASHED_KEY_HEX: usize = 128;

/// One installation's entry: its version, and the registration unless it
/// unregistered.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub version: u64,
    pub registration: Option<PushNotificationRegistration>,
}

impl Stored {
    fn encode(&self) -> String {
        match &self.registration {
            None => self.version.to_string(),
            Some(r) => format!("{}:{}", self.version, STANDARD.encode(r.encode_to_vec())),
        }
    }

    fn decode(value: &str) -> Option<Self> {
        let (version, registration) = match value.split_once(':') {
            None => (value, None),
            Some((version, b64)) => {
                let bytes = STANDARD.decode(b64).ok()?;
                let registration = PushNotificationRegistration::decode(bytes.as_slice()).ok()?;
                (version, Some(registration))
            }
        };
        Some(Self {
            version: version.parse().ok()?,
            registration,
        })
    }
}

/// Every installation's entry, by hashed key.
#[derive(Debug, Default)]
pub struct Registrations {
    by_key: HashMap<HashedKey, BTreeMap<String, Stored>>,
}

impl Registrations {
    /// The version held for this installation; 0 if none.
    pub fn version(&self, key: &HashedKey, installation_id: &str) -> u64 {
        self.entry(key, installation_id).map_or(0, |s| s.version)
    }

    /// The installation's registration, unless it unregistered or never registered.
    pub fn active(
        &self,
        key: &HashedKey,
        installation_id: &str,
    ) -> Option<&PushNotificationRegistration> {
        self.entry(key, installation_id)?.registration.as_ref()
    }

    /// The registrations held for `key`, one per installation still registered.
    pub fn active_for(
        &self,
        key: &HashedKey,
    ) -> impl Iterator<Item = &PushNotificationRegistration> {
        self.by_key
            .get(key)
            .into_iter()
            .flat_map(|installations| installations.values())
            .filter_map(|s| s.registration.as_ref())
    }

    /// Keeps `stored` for this installation; returns the change to store.
    pub fn put(&mut self, key: HashedKey, installation_id: &str, stored: Stored) -> StateChange {
        let change = StateChange {
            key: registration_key(&key, installation_id),
            value: Some(stored.encode()),
        };
        self.by_key
            .entry(key)
            .or_default()
            .insert(installation_id.to_owned(), stored);
        change
    }

    /// Every key with an entry, registered or not: their query topics are
    /// listened on (status-go re-joins each at start-up).
    pub fn keys(&self) -> impl Iterator<Item = &HashedKey> {
        self.by_key.keys()
    }

    /// Installations with an entry.
    pub fn len(&self) -> usize {
        self.by_key.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    fn entry(&self, key: &HashedKey, installation_id: &str) -> Option<&Stored> {
        self.by_key.get(key)?.get(installation_id)
    }
}

fn registration_key(key: &HashedKey, installation_id: &str) -> String {
    format!("{}{installation_id}", hex::encode(key))
}

/// The notification requests already handled, newest last, bounded.
#[derive(Debug, Default)]
pub struct RequestLog {
    seen: HashSet<MessageId>,
    order: VecDeque<MessageId>,
}

impl RequestLog {
    /// Records `id` as handled at `now_ms`; `None` if it already was, else
    /// the changes to store (the new id, and the oldest ids forgotten).
    pub fn record(&mut self, id: MessageId, now_ms: i64) -> Option<Vec<StateChange>> {
        if !self.seen.insert(id) {
            return None;
        }
        self.order.push_back(id);
        let mut changes = vec![StateChange {
            key: request_key(&id),
            value: Some(now_ms.to_string()),
        }];
        while self.order.len() > MAX_REMEMBERED_REQUESTS {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.seen.remove(&oldest);
            changes.push(StateChange {
                key: request_key(&oldest),
                value: None,
            });
        }
        Some(changes)
    }

    pub fn contains(&self, id: &MessageId) -> bool {
        self.seen.contains(id)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

fn request_key(id: &MessageId) -> String {
    format!("{REQUEST_PREFIX}{}", hex::encode(id))
}

/// A new identity for a server that has none, with the change that keeps it.
pub fn new_identity() -> (SecretKey, StateChange) {
    let secret = SecretKey::generate_from_rng(&mut rand::rng());
    let change = identity_change(&secret);
    (secret, change)
}

/// The change that keeps a generated identity.
fn identity_change(secret: &SecretKey) -> StateChange {
    StateChange {
        key: IDENTITY_KEY.to_owned(),
        value: Some(hex::encode(&secret.to_bytes())),
    }
}

/// A secret key written as 64 hex digits (a key file's content, trimmed).
pub fn parse_secret(text: &str) -> Option<SecretKey> {
    let bytes = hex::decode(text.trim())?;
    if bytes.len() != 32 {
        return None;
    }
    SecretKey::from_slice(&bytes).ok()
}

/// What a start reads back from the source's state.
#[derive(Debug, Default)]
pub struct Kept {
    pub identity: Option<SecretKey>,
    pub registrations: Registrations,
    pub requests: RequestLog,
    /// Keys whose value could not be read; skipped, and reported by the caller.
    pub unreadable: Vec<String>,
}

impl Kept {
    pub fn restore(state: &[(String, String)]) -> Self {
        let mut kept = Self::default();
        let mut requests: Vec<(i64, MessageId)> = Vec::new();
        for (key, value) in state {
            let read = if key == IDENTITY_KEY {
                parse_secret(value).map(|secret| kept.identity = Some(secret))
            } else if let Some(id) = key.strip_prefix(REQUEST_PREFIX) {
                read_request(id, value).map(|entry| requests.push(entry))
            } else {
                read_registration(key, value).map(|(hashed, installation, stored)| {
                    kept.registrations.put(hashed, installation, stored);
                })
            };
            if read.is_none() {
                kept.unreadable.push(key.clone());
            }
        }
        requests.sort_unstable();
        for (at, id) in requests {
            kept.requests.record(id, at);
        }
        kept
    }
}

fn read_request(id: &str, value: &str) -> Option<(i64, MessageId)> {
    let id = MessageId::try_from(hex::decode(id)?).ok()?;
    Some((value.parse().ok()?, id))
}

fn read_registration<'a>(key: &'a str, value: &str) -> Option<(HashedKey, &'a str, Stored)> {
    let hashed = HashedKey::try_from(hex::decode(key.get(..HASHED_KEY_HEX)?)?).ok()?;
    let installation = &key[HASHED_KEY_HEX..];
    if installation.is_empty() {
        return None;
    }
    Some((hashed, installation, Stored::decode(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{INSTALLATION, key, registration};

    fn apply(state: &mut BTreeMap<String, String>, changes: &[StateChange]) {
        for change in changes {
            match &change.value {
                Some(v) => state.insert(change.key.clone(), v.clone()),
                None => state.remove(&change.key),
            };
        }
    }

    fn reload(state: &BTreeMap<String, String>) -> Kept {
        let pairs: Vec<_> = state.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        Kept::restore(&pairs)
    }

    #[test]
    fn a_registration_comes_back_byte_for_byte() {
        let hashed = [7u8; 64];
        let r = registration(&key(1), &key(2).public_key(), 3);
        let mut held = Registrations::default();
        let change = held.put(
            hashed,
            INSTALLATION,
            Stored {
                version: 3,
                registration: Some(r.clone()),
            },
        );
        assert!(change.key.starts_with(&"07".repeat(64)));
        assert!(change.key.ends_with(INSTALLATION));
        let mut state = BTreeMap::new();
        apply(&mut state, &[change]);
        let kept = reload(&state);
        assert_eq!(kept.registrations.active(&hashed, INSTALLATION), Some(&r));
        assert_eq!(kept.registrations.version(&hashed, INSTALLATION), 3);
        assert_eq!(kept.registrations.version(&hashed, "other"), 0);
        assert!(kept.unreadable.is_empty());
    }

    #[test]
    fn an_unregistration_keeps_only_hash_and_version() {
        let hashed = [7u8; 64];
        let mut held = Registrations::default();
        let change = held.put(
            hashed,
            INSTALLATION,
            Stored {
                version: 2,
                registration: None,
            },
        );
        assert_eq!(change.value.as_deref(), Some("2"));
        let mut state = BTreeMap::new();
        apply(&mut state, &[change]);
        let kept = reload(&state);
        assert_eq!(kept.registrations.active(&hashed, INSTALLATION), None);
        assert_eq!(kept.registrations.version(&hashed, INSTALLATION), 2);
        assert_eq!(kept.registrations.keys().count(), 1);
    }

    #[test]
    fn the_identity_comes_back() {
        let (secret, change) = new_identity();
        assert_ne!(secret, new_identity().0, "fresh keys");
        let mut state = BTreeMap::new();
        apply(&mut state, &[change]);
        assert_eq!(reload(&state).identity, Some(secret));
        assert_eq!(reload(&BTreeMap::new()).identity, None);
    }

    #[test]
    fn a_request_id_is_handled_once_and_the_log_is_bounded() {
        let mut log = RequestLog::default();
        let mut state = BTreeMap::new();
        let id = |n: usize| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&n.to_be_bytes());
            id
        };
        apply(&mut state, &log.record(id(0), 10).unwrap());
        assert!(log.record(id(0), 11).is_none(), "the same id twice");
        assert!(!log.contains(&id(1)));
        for n in 1..=MAX_REMEMBERED_REQUESTS {
            apply(&mut state, &log.record(id(n), 10 + n as i64).unwrap());
        }
        assert_eq!(log.len(), MAX_REMEMBERED_REQUESTS);
        assert!(!log.contains(&id(0)), "the oldest is forgotten");
        assert!(log.contains(&id(MAX_REMEMBERED_REQUESTS)));
        let kept = reload(&state);
        assert_eq!(kept.requests.len(), MAX_REMEMBERED_REQUESTS);
        assert!(kept.requests.contains(&id(1)) && !kept.requests.contains(&id(0)));
    }

    #[test]
    fn unreadable_entries_are_skipped_and_named() {
        let good = format!("{}{INSTALLATION}", "ab".repeat(64));
        let state: BTreeMap<String, String> = [
            (good.clone(), "1".to_owned()),
            ("identity".to_owned(), "not hex".to_owned()),
            ("identity".to_owned() + "x", "1".to_owned()),
            ("request:zz".to_owned(), "1".to_owned()),
            (format!("request:{}", "00".repeat(32)), "soon".to_owned()),
            ("ab".repeat(64), "1".to_owned()),
            (format!("{}x", "ab".repeat(64)), "1:%%%".to_owned()),
            (format!("{}x", "cd".repeat(64)), "1:AAAA/w==".to_owned()),
            (format!("{}x", "ef".repeat(64)), "-1".to_owned()),
            ("é".repeat(70), "1".to_owned()),
        ]
        .into_iter()
        .collect();
        let kept = reload(&state);
        assert_eq!(kept.registrations.len(), 1);
        assert_eq!(kept.unreadable.len(), state.len() - 1);
        assert!(!kept.unreadable.contains(&good));
    }

    #[test]
    fn secrets_parse_from_64_hex_digits_only() {
        assert_eq!(
            parse_secret(&format!("{}\n", "01".repeat(32))),
            Some(key(1))
        );
        for bad in [
            "",
            "01",
            &"00".repeat(32),
            &"ff".repeat(32),
            &"01".repeat(33),
        ] {
            assert!(parse_secret(bad).is_none(), "{bad}");
        }
    }
}

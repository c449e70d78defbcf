//! herald's Nostr side.
//!
//! `pubkey` reads public keys as events carry them (hex) and as people send
//! them (hex or NIP-19 `npub`, through `bech32`), and names their herald
//! account `nostr:<hex>`. `event` parses NIP-01 events under size caps and
//! accepts only those whose id is the hash of their contents and whose
//! BIP-340 signature verifies; `nip98` checks NIP-98 `Authorization`
//! headers on top of it, and `replay_guard` accepts each header once.
//! `secret_key` is herald's own identity, which `event::sign` and `nip42`
//! use to answer a relay's `AUTH` challenge. All failures are one
//! `NostrError`.
//!
//! Watching relays: `relay` holds one NIP-01 connection with the
//! subscriptions for the keys in `recipients`, `relay_pipeline` takes
//! their events through `seen` (each event once, across relays and
//! restarts), `rules` (who is told, and what the push says, per app) and
//! the recipients' `mute_list`s to the queue. Index relays serve the
//! registered keys' relay lists, which `account_relays` keeps (each URL
//! checked by `relay_url`) and `relay_set` turns into connections to the
//! accounts' own relays.

pub mod account_relays;
mod bech32;
pub mod error;
pub mod event;
mod hex;
pub mod mute_list;
pub mod nip42;
pub mod nip98;
pub mod pubkey;
pub mod recipients;
pub mod relay;
pub mod relay_pipeline;
pub mod relay_set;
pub mod relay_url;
pub mod replay_guard;
pub mod rules;
pub mod secret_key;
pub mod seen;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use error::NostrError;
pub use event::{Event, EventId};
pub use pubkey::PublicKey;
pub use secret_key::SecretKey;

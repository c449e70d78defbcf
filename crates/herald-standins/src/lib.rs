//! Local stand-ins for the push services herald delivers through.
//!
//! Each stand-in checks requests the way the real service does (signatures,
//! headers, sizes) and answers with the service's own status codes and error
//! bodies, so a test against it fails where the real service would refuse.
//! They are written from the services' documentation, independently of
//! herald-push, and serve both the tests and `herald bench`.

pub mod apns;
pub mod expo;
pub mod fcm;
pub mod firehose;
pub mod jetstream;
pub mod nostr_relay;
pub mod nwaku;
pub mod pds;
pub mod plc;
pub mod tls;
pub mod webpush;
mod ws_server;

/// A caller's hook on a push service stand-in, called with each push it
/// accepts at the moment it accepts it: lets a benchmark time or count
/// pushes without polling the whole record. It runs under the stand-in's
/// lock, so it must be quick.
pub type OnAccept<T> = Box<dyn Fn(&T) + Send + Sync>;

//! herald's Status side: a Status push-notification server (Status spec 71,
//! as status-go speaks it) reached over Waku through an nwaku node's REST API.
//!
//! The wire layer: `crypto` holds the primitives (secp256k1 recoverable
//! signatures and raw ECDH, Keccak-256, SHAKE-256, AES-256-GCM);
//! `waku_payload` opens and seals Waku v1 payloads; `wrapper` signs and
//! checks the `ApplicationMetadataMessage` envelope inside them; `topics`
//! names the content topics and derives their symmetric keys; `nwaku` talks
//! to the node.
//!
//! The server: `proto` holds status-go's push-notification protobufs;
//! `registration` (with `grant`), `query` and `request` are the protocol's
//! three handlers; `persistence` is what the server keeps in herald's store;
//! `delivery` and `gorush` turn what it decides to send into herald
//! notifications or status-go's gorush request; `server` dispatches each
//! Waku message to its handler and seals the replies, without I/O.

pub mod crypto;
pub mod delivery;
mod ecies;
pub mod gorush;
pub mod grant;
pub mod hex;
pub mod nwaku;
pub mod persistence;
pub mod proto;
pub mod query;
pub mod registration;
pub mod request;
pub mod server;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod topics;
pub mod waku_payload;
pub mod wrapper;

//! The HTTP API's pieces: the JSON error convention, the admin routes and
//! the compatible APIs' edges (gorush, XRPC, Mostro, Nostr and Sigil).

pub mod admin;
pub mod error;
pub mod gorush;
pub mod json;
pub mod mostro;
pub mod nostr;
pub mod xrpc;

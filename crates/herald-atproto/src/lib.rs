//! herald's AT Protocol side.
//!
//! `did` parses DIDs, DID documents and the keys in them; `service_auth`
//! verifies the inter-service JWTs a PDS attaches when it forwards
//! `registerPush` to herald, accepting exactly the genuine calls
//! (atproto.md §4.4).

pub mod did;
pub mod registration;
pub mod resolver;
pub mod service_auth;

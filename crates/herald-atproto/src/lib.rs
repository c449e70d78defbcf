//! herald's AT Protocol side.
//!
//! `did` parses DIDs, DID documents and the keys in them; `service_auth`
//! verifies the inter-service JWTs a PDS attaches when it forwards
//! `registerPush` to herald, accepting exactly the genuine calls
//! (atproto.md §4.4). `jetstream_event` decodes Jetstream events, `rules`
//! turns them into notification candidates as the AppView would (§10),
//! reading a `RuleState` (`rule_state`, with `block_graph`).

pub mod at_uri;
pub mod block_graph;
pub mod did;
pub mod jetstream_event;
pub mod registration;
pub mod resolver;
pub mod rule_state;
pub mod rules;
pub mod service_auth;
#[cfg(test)]
mod test_support;

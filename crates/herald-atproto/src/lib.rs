//! herald's AT Protocol side.
//!
//! `did` parses DIDs, DID documents and the keys in them; `service_auth`
//! verifies the inter-service JWTs a PDS attaches when it forwards
//! `registerPush` to herald, accepting exactly the genuine calls
//! (atproto.md §4.4). `jetstream_event` decodes Jetstream events, `rules`
//! turns them into notification candidates as the AppView would (§10),
//! reading a `RuleState` (`rule_state`, with `block_graph`).
//! `jetstream` is the source that reads a Jetstream server (v1 or v2) and
//! hands on each event's JSON with its cursor; `jetstream_frame` decompresses
//! its dictionary-compressed frames under size caps (§7, §8).
//! `actor_names` keeps the actors' display names and handles for the
//! pushes' text, read from their DID documents and, through `pds`, from
//! their own PDS. `firehose` decodes and verifies the relay's
//! `subscribeRepos` frames and turns them into Jetstream events (§9).

pub mod actor_names;
pub mod at_uri;
pub mod block_backfill;
pub mod block_graph;
pub mod did;
pub mod firehose;
pub mod firehose_source;
pub mod jetstream;
pub mod jetstream_event;
pub mod jetstream_frame;
pub mod jetstream_pipeline;
mod keyed_hash;
pub mod pds;
pub mod recipient_rate;
pub mod recipients;
pub mod registration;
pub mod render;
pub mod replay;
pub mod resolver;
pub mod rule_state;
pub mod rules;
pub mod service_auth;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
pub mod time;
pub mod ws_source;

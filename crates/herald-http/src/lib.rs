//! herald's outbound HTTP, shared by the providers and the protocol crates.
//!
//! `http_client` builds the one kind of client every outbound call uses
//! (rustls on ring, optional extra CA, no redirects, bounded timeouts);
//! `public_endpoint` keeps URLs that come from outside (device endpoints,
//! did:web hosts) away from loopback and private networks; `response` reads
//! `Retry-After` and describes errors without leaking URLs.

pub mod http_client;
pub mod public_endpoint;
pub mod response;

pub use http_client::{HttpClientConfig, HttpClientError, install_crypto_provider};

//! herald's delivery providers: small clients we own on reqwest, each with a
//! configurable base URL so tests can point them at local stand-ins.
//!
//! The HTTP client, the public-endpoint guard and response helpers come from
//! `herald-http`, shared with the protocol crates.

pub mod apns;
pub mod ece;
pub mod expo;
pub mod fcm;
pub mod gorush;
pub mod jwt;
pub mod misconfiguration;
pub mod provider_error;
pub mod rfc8030;
pub mod routing;
pub mod subscription;
pub mod unifiedpush;
pub mod vapid;
pub mod webpush;

// Re-exported so providers keep one path to the shared HTTP pieces.
pub use herald_http::{
    HttpClientConfig, HttpClientError, http_client, install_crypto_provider, public_endpoint,
    response,
};
pub use unifiedpush::UnifiedPush;

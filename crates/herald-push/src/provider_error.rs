//! The error a provider reports when an app's configuration cannot work
//! (a missing key file, a malformed key, a bad subject), at start-up.

/// An app whose provider configuration cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("app {app}: {reason}")]
pub struct ProviderError {
    pub app: String,
    pub reason: String,
}

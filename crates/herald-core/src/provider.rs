//! The `Provider` trait: one delivery service (APNs, FCM, UnifiedPush, …).
//!
//! A provider turns one queued delivery into one request and classifies the
//! answer. The classification is the contract with the dispatcher, and the
//! rule that matters most is that only a permanent, not-our-fault answer may
//! kill a token, because killing a token deletes the user's registration
//! (Sygnal's lesson, push-providers.md §6).

use std::time::Duration;

use async_trait::async_trait;

use crate::model::{AppId, Delivery, InvalidField, NewDevice, Transport};

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted the message.
    Delivered,
    /// A passing failure (rate limit, server error, network): try again, no
    /// sooner than `after` when the provider said so (`Retry-After`).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The provider says this token will never work again: remove the device.
    TokenDead { reason: String },
    /// Permanently refused (payload too large, misconfiguration): never retried.
    Rejected { reason: String },
}

impl Outcome {
    /// The label used in metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::TokenDead { .. } => "token_dead",
            Outcome::Rejected { .. } => "rejected",
        }
    }

    pub fn retry(reason: impl Into<String>) -> Self {
        Outcome::Retry {
            after: None,
            reason: reason.into(),
        }
    }

    pub fn token_dead(reason: impl Into<String>) -> Self {
        Outcome::TokenDead {
            reason: reason.into(),
        }
    }

    pub fn rejected(reason: impl Into<String>) -> Self {
        Outcome::Rejected {
            reason: reason.into(),
        }
    }
}

/// One delivery service. Implementations hold their per-app credentials and
/// connection pools; the dispatcher bounds how many sends run at once.
#[async_trait]
pub trait Provider: Send + Sync {
    fn transport(&self) -> Transport;

    /// Checks a registration's token and options for this transport before it
    /// is stored, so that a device that can never be reached is refused at
    /// once, and returns it in the form the provider stores (a Web Push
    /// subscription's JSON, say, split into endpoint and keys).
    async fn accept_registration(&self, device: NewDevice) -> Result<NewDevice, InvalidField>;

    /// Makes one delivery attempt. Never panics; every failure is an `Outcome`.
    async fn send(&self, delivery: &Delivery) -> Outcome;

    /// Apps whose credentials or settings this provider's service refused
    /// most recently, with why; an app leaves the list at its next success.
    /// `/health` shows these, because every push of such an app fails.
    fn misconfigurations(&self) -> Vec<(AppId, String)> {
        Vec::new()
    }
}

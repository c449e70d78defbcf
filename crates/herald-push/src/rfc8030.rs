//! One push message to a push service, RFC 8030 style: the request and the
//! reading of its answer, shared by Web Push and UnifiedPush distributors.
//!
//! Headers: `TTL` (required by push services; autopush refuses its absence),
//! `Urgency`, `Topic` (replaces an undelivered message with the same topic),
//! `Content-Encoding: aes128gcm` for encrypted bodies, and VAPID's
//! `Authorization` when the app has a key.

use std::time::SystemTime;

use herald_core::model::{Message, Priority};
use herald_core::provider::Outcome;
use reqwest::{Client, StatusCode};
use sha2::{Digest, Sha256};
use url::Url;

use crate::jwt::b64url;
use crate::response::{describe_transport_error, retry_after};

/// TTL sent when the message names none: a push older than a day rarely helps.
pub const DEFAULT_TTL_SECS: u32 = 24 * 60 * 60;
/// RFC 8030 §5.4: a topic is at most 32 characters of base64url.
const MAX_TOPIC_LEN: usize = 32;

/// The `Topic` for a collapse key: itself when it is valid, else a hash of it.
pub fn topic(collapse_key: &str) -> String {
    let valid = collapse_key.len() <= MAX_TOPIC_LEN
        && collapse_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        collapse_key.to_owned()
    } else {
        b64url(Sha256::digest(collapse_key.as_bytes()))[..MAX_TOPIC_LEN].to_owned()
    }
}

/// What one request carries besides its URL.
pub struct PushRequest {
    pub body: Vec<u8>,
    pub encrypted: bool,
    /// `Authorization` header (VAPID), if any.
    pub authorization: Option<String>,
}

/// POSTs one message and classifies the answer.
pub async fn post(client: &Client, url: Url, message: &Message, request: PushRequest) -> Outcome {
    let urgency = match message.priority {
        Priority::High => "high",
        Priority::Normal => "normal",
    };
    let mut builder = client
        .post(url)
        .header("TTL", message.ttl.unwrap_or(DEFAULT_TTL_SECS).to_string())
        .header("Urgency", urgency);
    if let Some(key) = &message.collapse_key {
        builder = builder.header("Topic", topic(key));
    }
    builder = if request.encrypted {
        builder
            .header(reqwest::header::CONTENT_ENCODING, "aes128gcm")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
    } else {
        builder.header(reqwest::header::CONTENT_TYPE, "application/json")
    };
    if let Some(authorization) = request.authorization {
        builder = builder.header(reqwest::header::AUTHORIZATION, authorization);
    }
    match builder.body(request.body).send().await {
        Ok(r) => classify(r.status(), r.headers()),
        Err(e) => Outcome::retry(describe_transport_error(e)),
    }
}

/// Maps a push service's answer to an outcome (push-providers.md §1.4–1.5).
pub fn classify(status: StatusCode, headers: &reqwest::header::HeaderMap) -> Outcome {
    match status.as_u16() {
        200..=202 => Outcome::Delivered,
        404 | 410 => Outcome::token_dead(format!("push service answered {status}")),
        401 | 403 => Outcome::rejected(format!(
            "push service answered {status}: the VAPID key is refused (not the one the subscription was made with?)"
        )),
        413 => Outcome::rejected("push service answered 413: payload too large"),
        // ntfy answers 507 before anyone subscribed: 5xx, retried.
        429 | 500..=599 => Outcome::Retry {
            after: retry_after(headers, SystemTime::now()),
            reason: format!("push service answered {status}"),
        },
        _ => Outcome::rejected(format!("push service answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_short_base64url() {
        assert_eq!(topic("dm-alice_1"), "dm-alice_1");
        for key in [
            "has spaces",
            "at://did:plc:x/app.bsky.feed.post/3k",
            &"x".repeat(33),
        ] {
            let t = topic(key);
            assert_eq!(t.len(), 32, "{key}");
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
            assert_eq!(topic(key), t, "stable");
        }
    }
}

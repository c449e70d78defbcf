//! UnifiedPush: a POST of the message to the device's endpoint URL.
//!
//! The endpoint is the device's token, chosen by its distributor (ntfy, a
//! NextPush server, …), so it is untrusted input: every URL goes through the
//! public-endpoint guard at registration and at connection time. When the
//! registration carries `p256dh` and `auth` (UnifiedPush's Web Push mode)
//! the message is encrypted exactly as for Web Push, and signed with VAPID
//! when the app has a key; without keys it is posted as plain JSON, which the
//! distributor can read.

use std::collections::HashMap;
use std::path::PathBuf;

use async_trait::async_trait;
use herald_core::model::{AppId, Delivery, InvalidField, NewDevice, Transport};
use herald_core::provider::{Outcome, Provider};
use reqwest::Client;
use serde::{Deserialize, Serialize};

use crate::http_client::HttpClientConfig;
use crate::provider_error::ProviderError;
use crate::public_endpoint;
use crate::rfc8030::{self, PushRequest};
use crate::subscription;
use crate::vapid::Vapid;
use crate::webpush::{endpoint_client, send_encrypted};

/// ntfy, the common distributor, accepts at most 4,096 bytes per message.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
pub use crate::rfc8030::DEFAULT_TTL_SECS;

/// `[apps."<id>".unifiedpush]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnifiedPushConfig {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// A VAPID key to sign encrypted pushes with, for distributors that check it.
    #[serde(default)]
    pub vapid_private_key_file: Option<PathBuf>,
    /// The VAPID contact, required with a key.
    #[serde(default)]
    pub subject: Option<String>,
}

impl Default for UnifiedPushConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            vapid_private_key_file: None,
            subject: None,
        }
    }
}

fn enabled() -> bool {
    true
}

pub struct UnifiedPush {
    client: Client,
    allow_private: bool,
    vapid: HashMap<AppId, Vapid>,
}

impl UnifiedPush {
    /// `allow_private` lets endpoints on loopback and private networks (and
    /// plain http) through, for self-hosted distributors and tests.
    pub fn new(
        http: &HttpClientConfig,
        apps: Vec<(AppId, UnifiedPushConfig)>,
        allow_private: bool,
    ) -> Result<Self, ProviderError> {
        let mut vapid = HashMap::new();
        for (id, config) in apps.into_iter().filter(|(_, c)| c.enabled) {
            let fail = |reason: String| ProviderError {
                app: id.to_string(),
                reason: format!("unifiedpush: {reason}"),
            };
            match (&config.vapid_private_key_file, &config.subject) {
                (Some(file), Some(subject)) => {
                    vapid.insert(id.clone(), Vapid::from_file(file, subject).map_err(fail)?);
                }
                (None, None) => {}
                _ => {
                    return Err(fail(
                        "vapid_private_key_file and subject go together".into(),
                    ));
                }
            }
        }
        Ok(Self {
            client: endpoint_client(http, allow_private)?,
            allow_private,
            vapid,
        })
    }

    async fn send_plain(&self, url: url::Url, delivery: &Delivery) -> Outcome {
        let body = match serde_json::to_vec(&delivery.message) {
            Ok(body) => body,
            Err(e) => return Outcome::rejected(format!("message cannot be encoded: {e}")),
        };
        if body.len() > MAX_PAYLOAD_BYTES {
            return Outcome::rejected(format!(
                "payload is {} bytes, UnifiedPush distributors accept at most {MAX_PAYLOAD_BYTES}",
                body.len()
            ));
        }
        rfc8030::post(
            &self.client,
            url,
            &delivery.message,
            PushRequest {
                body,
                encrypted: false,
                authorization: None,
            },
        )
        .await
    }
}

#[async_trait]
impl Provider for UnifiedPush {
    fn transport(&self) -> Transport {
        Transport::UnifiedPush
    }

    async fn accept_registration(&self, device: NewDevice) -> Result<NewDevice, InvalidField> {
        let subscription = subscription::from_registration(&device.token, &device.options)?;
        let endpoint = subscription
            .as_ref()
            .map_or(device.token.as_str(), |s| s.endpoint.as_str());
        public_endpoint::check_endpoint(endpoint, self.allow_private)
            .await
            .map_err(|e| InvalidField::new("token", format!("UnifiedPush endpoint {e}")))?;
        Ok(match subscription {
            Some(s) => subscription::normalized(device, &s),
            None => device,
        })
    }

    async fn send(&self, delivery: &Delivery) -> Outcome {
        // Checked again: the rules may have changed since registration.
        let url = match public_endpoint::check_url(&delivery.token, self.allow_private) {
            Ok(url) => url,
            Err(e) => return Outcome::rejected(format!("endpoint {e}")),
        };
        match subscription::from_delivery(delivery) {
            Ok(Some(s)) => {
                send_encrypted(
                    &self.client,
                    url,
                    delivery,
                    &s,
                    self.vapid.get(&delivery.app_id),
                )
                .await
            }
            Ok(None) => self.send_plain(url, delivery).await,
            Err(reason) => Outcome::rejected(reason),
        }
    }
}

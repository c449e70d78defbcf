//! Web Push (RFC 8030/8291/8292): encrypted messages to a browser's push
//! service, signed with the app's VAPID key.
//!
//! The endpoint comes from the browser, so it goes through the same
//! public-endpoint guard as a UnifiedPush URL. A 401/403 means the push
//! service refuses the app's VAPID key (usually not the key the subscription
//! was made with): rejected, and shown as the app's misconfiguration.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use herald_core::model::{AppId, Delivery, InvalidField, NewDevice, Transport};
use herald_core::provider::{Outcome, Provider};
use reqwest::Client;
use serde::{Deserialize, Serialize};

use crate::http_client::HttpClientConfig;
use crate::misconfiguration::Misconfigurations;
use crate::provider_error::ProviderError;
use crate::public_endpoint::{self, PublicOnlyResolver};
use crate::rfc8030::{self, PushRequest};
use crate::vapid::Vapid;
use crate::{ece, subscription};

/// `[apps."<id>".webpush]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebPushConfig {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// The VAPID private key: PKCS#8 or SEC1 PEM, or base64url (`herald keys vapid` makes one).
    pub vapid_private_key_file: PathBuf,
    /// The operator's contact, `mailto:` or `https:`.
    pub subject: String,
}

fn enabled() -> bool {
    true
}

/// A client for device-supplied URLs: public addresses only, unless allowed.
pub(crate) fn endpoint_client(
    http: &HttpClientConfig,
    allow_private: bool,
) -> Result<Client, ProviderError> {
    let mut http = http.clone();
    if !allow_private {
        http.resolver = Some(Arc::new(PublicOnlyResolver));
    }
    http.build().map_err(|e| ProviderError {
        app: "*".into(),
        reason: e.to_string(),
    })
}

/// Encrypts the message for a subscription and posts it.
pub(crate) async fn send_encrypted(
    client: &Client,
    url: url::Url,
    delivery: &Delivery,
    subscription: &subscription::Subscription,
    vapid: Option<&Vapid>,
) -> Outcome {
    let plaintext = match serde_json::to_vec(&delivery.message) {
        Ok(p) => p,
        Err(e) => return Outcome::rejected(format!("message cannot be encoded: {e}")),
    };
    let body = match ece::encrypt(&plaintext, &subscription.p256dh, &subscription.auth) {
        Ok(body) => body,
        Err(e) => return Outcome::rejected(e.to_string()),
    };
    let authorization = vapid.map(|v| v.authorization(&url));
    rfc8030::post(
        client,
        url,
        &delivery.message,
        PushRequest {
            body,
            encrypted: true,
            authorization,
        },
    )
    .await
}

pub struct WebPush {
    client: Client,
    allow_private: bool,
    apps: HashMap<AppId, Vapid>,
    misconfigured: Misconfigurations,
}

impl WebPush {
    pub fn new(
        http: &HttpClientConfig,
        apps: Vec<(AppId, WebPushConfig)>,
        allow_private: bool,
    ) -> Result<Self, ProviderError> {
        let apps =
            apps.into_iter()
                .filter(|(_, c)| c.enabled)
                .map(|(id, c)| {
                    let vapid = Vapid::from_file(&c.vapid_private_key_file, &c.subject).map_err(
                        |reason| ProviderError {
                            app: id.to_string(),
                            reason: format!("webpush: {reason}"),
                        },
                    )?;
                    Ok((id, vapid))
                })
                .collect::<Result<_, ProviderError>>()?;
        Ok(Self {
            client: endpoint_client(http, allow_private)?,
            allow_private,
            apps,
            misconfigured: Misconfigurations::new(Transport::WebPush),
        })
    }

    /// The app's VAPID public key, for its web client's `applicationServerKey`.
    pub fn public_key(&self, app: &AppId) -> Option<&str> {
        self.apps.get(app).map(Vapid::public_key)
    }
}

#[async_trait]
impl Provider for WebPush {
    fn transport(&self) -> Transport {
        Transport::WebPush
    }

    async fn accept_registration(&self, device: NewDevice) -> Result<NewDevice, InvalidField> {
        let subscription = subscription::from_registration(&device.token, &device.options)?
            .ok_or_else(|| {
                InvalidField::new(
                    "token",
                    "a Web Push registration needs the subscription's keys (p256dh and auth)",
                )
            })?;
        public_endpoint::check_endpoint(&subscription.endpoint, self.allow_private)
            .await
            .map_err(|e| InvalidField::new("token", format!("Web Push endpoint {e}")))?;
        Ok(subscription::normalized(device, &subscription))
    }

    async fn send(&self, delivery: &Delivery) -> Outcome {
        let Some(vapid) = self.apps.get(&delivery.app_id) else {
            return Outcome::rejected(format!(
                "app {} has no Web Push configuration",
                delivery.app_id
            ));
        };
        let subscription = match subscription::from_delivery(delivery) {
            Ok(Some(s)) => s,
            Ok(None) => return Outcome::rejected("the device has no Web Push keys"),
            Err(reason) => return Outcome::rejected(reason),
        };
        let url = match public_endpoint::check_url(&subscription.endpoint, self.allow_private) {
            Ok(url) => url,
            Err(e) => return Outcome::rejected(format!("endpoint {e}")),
        };
        let outcome = send_encrypted(&self.client, url, delivery, &subscription, Some(vapid)).await;
        match &outcome {
            Outcome::Rejected { reason } if reason.contains("VAPID") => {
                self.misconfigured.record(&delivery.app_id, reason)
            }
            Outcome::Delivered => self.misconfigured.clear(&delivery.app_id),
            _ => {}
        }
        outcome
    }

    fn misconfigurations(&self) -> Vec<(AppId, String)> {
        self.misconfigured.list()
    }
}

//! AT Protocol registration: what `registerPush` and `unregisterPush` do
//! once the PDS's service token and the body have been checked.
//!
//! Devices land as account `atproto:<issuer DID>`; `ageRestricted` is kept
//! in the device's options. Unregistering removes only the caller's own
//! registration of that token: a token alone proves nothing about who owns it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald_atproto::registration::{PushRegistration, REGISTER_PUSH, XrpcError};
use herald_atproto::resolver::{DidResolver, ResolverConfig};
use herald_atproto::service_auth::{ServiceAuthVerifier, VerifierConfig};
use herald_core::StoreError;
use herald_core::model::{Account, AppId, NewDevice};
use herald_core::store::Store;
use serde_json::{Value, json};

use crate::config::Config;
use crate::runtime::Runtime;

/// herald's AT Protocol identity and its verifier.
pub struct AtprotoService {
    pub service_did: String,
    pub public_url: String,
    /// One DID document cache for the verifier and the actor names.
    pub resolver: Arc<DidResolver>,
    max_devices: usize,
    verifier: ServiceAuthVerifier,
}

impl AtprotoService {
    /// `None` when no service DID is configured.
    pub fn from_config(config: &Config) -> Result<Option<Self>, String> {
        let c = &config.atproto;
        let (Some(service_did), Some(public_url)) = (c.service_did.clone(), c.public_url()) else {
            return Ok(None);
        };
        let resolver = Arc::new(
            DidResolver::new(ResolverConfig {
                plc_url: c.plc_url.clone(),
                allow_private: config.allow_private_endpoints,
                cache_ttl: Duration::from_secs(c.did_cache_secs),
                extra_ca_file: config.extra_ca_file.clone(),
                ..ResolverConfig::default()
            })
            .map_err(|e| e.to_string())?,
        );
        let verifier = ServiceAuthVerifier::new(
            VerifierConfig {
                service_did: service_did.clone(),
                max_lifetime: Duration::from_secs(c.max_token_lifetime_secs),
                allow_high_s: c.allow_high_s,
            },
            resolver.clone(),
        );
        Ok(Some(Self {
            service_did,
            public_url,
            resolver,
            max_devices: c.max_devices_per_account,
            verifier,
        }))
    }

    /// herald's DID document, as a PDS reads it to find `#bsky_notif`.
    pub fn did_document(&self) -> Value {
        json!({
            "@context": ["https://www.w3.org/ns/did/v1"],
            "id": self.service_did,
            "service": [{
                "id": "#bsky_notif",
                "type": "BskyNotificationService",
                "serviceEndpoint": self.public_url,
            }],
        })
    }
}

fn store_error(e: StoreError) -> XrpcError {
    tracing::error!(error = %e, "store error in an XRPC call");
    match e {
        StoreError::Unavailable(_) => XrpcError {
            status: 503,
            error: "ServiceUnavailable",
            message: "the store is unreachable; try again".into(),
        },
        _ => XrpcError {
            status: 500,
            error: "InternalServerError",
            message: "the store failed".into(),
        },
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Runtime {
    /// Handles `registerPush` or `unregisterPush` (`method`) end to end.
    pub async fn atproto_push(
        &self,
        method: &str,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<(), XrpcError> {
        let at = self.atproto.as_ref().ok_or_else(|| XrpcError {
            status: 501,
            error: "MethodNotImplemented",
            message: "this herald has no AT Protocol identity: set atproto.service_did".into(),
        })?;
        let caller = at
            .verifier
            .verify(authorization, method, unix_secs())
            .await?;
        let request = PushRegistration::parse(body, &at.service_did)?;
        let app_id = AppId::parse(&request.app_id)
            .ok()
            .filter(|a| self.knows_app(a))
            .ok_or_else(|| {
                XrpcError::invalid(format!(
                    "unknown appId {:?}: it is not configured in this herald",
                    request.app_id
                ))
            })?;
        let account = Account::parse(&format!("atproto:{}", caller.issuer))
            .map_err(|e| XrpcError::invalid(e.to_string()))?;
        let transport = self
            .infer_transport(&app_id, request.platform, &request.token)
            .map_err(|e| XrpcError::invalid(e.to_string()))?;
        let mut options = serde_json::Map::new();
        if let Some(restricted) = request.age_restricted {
            options.insert("age_restricted".into(), Value::Bool(restricted));
        }
        let device = NewDevice {
            account,
            app_id,
            platform: request.platform,
            transport,
            token: request.token,
            options,
        };
        if method == REGISTER_PUSH {
            self.register_atproto_device(device, at.max_devices).await
        } else {
            self.unregister_atproto_device(device).await
        }
    }

    async fn register_atproto_device(
        &self,
        device: NewDevice,
        max_devices: usize,
    ) -> Result<(), XrpcError> {
        let device = self
            .accept_registration(device)
            .await
            .map_err(|e| XrpcError::invalid(e.to_string()))?;
        let existing = self
            .store
            .devices_for_account(&device.account)
            .await
            .map_err(store_error)?;
        let known = existing.iter().any(|d| {
            d.registration.app_id == device.app_id && d.registration.token == device.token
        });
        if !known && existing.len() >= max_devices {
            return Err(XrpcError::invalid(format!(
                "this account already has {max_devices} push tokens registered; unregister one first"
            )));
        }
        self.store_device(&device).await.map_err(store_error)?;
        Ok(())
    }

    /// Removes the caller's registration of the token, as given or as its
    /// provider would have stored it; a token never registered is fine.
    async fn unregister_atproto_device(&self, device: NewDevice) -> Result<(), XrpcError> {
        let raw = device.token.clone();
        let normalized = self
            .accept_registration(device.clone())
            .await
            .map(|d| d.token)
            .ok();
        let mine = self
            .store
            .devices_for_account(&device.account)
            .await
            .map_err(store_error)?;
        for d in mine {
            let same_token =
                d.registration.token == raw || Some(&d.registration.token) == normalized.as_ref();
            if d.registration.app_id == device.app_id && same_token {
                self.store
                    .remove_device_by_id(d.id)
                    .await
                    .map_err(store_error)?;
            }
        }
        self.forget_if_deviceless(&device.account)
            .await
            .map_err(store_error)
    }
}

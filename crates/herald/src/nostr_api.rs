//! The Nostr registration APIs' domain: herald's native `/v1/nostr/devices`
//! and the Sigil-compatible `/register` and `/unregister` (Sigil's
//! proposal, reference `nostr.md` §11). `api::nostr` reads the requests and
//! checks NIP-98 headers; this module decides what a request may do.
//!
//! - A registration is a herald device of the account `nostr:<hex>`, so
//!   everything that pushes to Nostr users (the admin API, the relay rules)
//!   reaches it, whichever API stored it.
//! - The native API always requires NIP-98, signed by the key registered:
//!   a body names any key, and without a signature anyone could hang a
//!   device on anyone's key and learn when they are messaged.
//! - The Sigil API follows the app's policy (`[sigil_api] auth`): `nip98`
//!   as above, or `open`, as Sigil proposes it, for apps that cannot sign.
//!   Open registration is what Mostro does too (its trade keys are
//!   ephemeral); the operator chooses it knowingly.
//! - A NIP-98 header is good for one request (`ReplayGuard`): a copy sent
//!   again within its 60 s is refused, so a captured header cannot
//!   re-register a device its owner removed.
//! - Removing needs the same proof as registering. With a signer, only the
//!   signer's own device goes; in open mode, knowing the token is the
//!   proof, as it is for Sigil's proposal. The Sigil answer is the same
//!   whether or not anything was removed, so it tells nobody whether a
//!   token was registered.
//! - `kinds` (the event kinds a device wants, narrowing its app's) and
//!   the Web Push keys of a UnifiedPush or Web Push registration go into
//!   the device's options, where the rules and the providers read them.
//! - Logs carry pseudonyms of pubkeys (`crate::pseudonym`), never tokens.

use herald_core::StoreError;
use herald_core::model::{Account, AppId, Device, NewDevice, Platform, Transport};
use herald_core::store::Store;
use herald_nostr::replay_guard::ReplayGuard;
use herald_nostr::rules::KINDS_OPTION;
use herald_nostr::{NostrError, PublicKey};
use serde::Deserialize;
use serde_json::json;

use crate::config::{Config, NostrAuth};
use crate::pseudonym::pseudonym;
use crate::runtime::{RegistrationError, Runtime};

/// Most kinds a device may list. The rules know of a handful (DMs, gift
/// wraps, notes, reactions, reposts, zaps); a longer list is a mistake or
/// an attempt to grow every stored device.
pub const MAX_KINDS: usize = 64;
/// The options carrying a Web Push subscription's keys, as the UnifiedPush
/// and Web Push providers read them.
const KEY_OPTIONS: [&str; 2] = ["p256dh", "auth"];

/// Why a Nostr registration request was refused; `api::nostr` maps each to
/// its status and body.
#[derive(Debug, thiserror::Error)]
pub enum NostrApiError {
    #[error("{0}")]
    Unauthorized(NostrError),
    #[error("the NIP-98 header is signed by another key than the one this request names")]
    WrongSigner,
    #[error("{field}: {source}")]
    InvalidPubkey {
        field: &'static str,
        source: NostrError,
    },
    #[error("kinds: {0}")]
    InvalidKinds(String),
    #[error(
        "p256dh and auth are Web Push keys: give them with the unifiedpush or webpush transport, not {0}"
    )]
    KeysWithoutWebPush(Transport),
    #[error(transparent)]
    Registration(#[from] RegistrationError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `PUT /v1/nostr/devices`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRequest {
    /// Hex or npub; must be the NIP-98 signer.
    pubkey: String,
    app_id: AppId,
    platform: Platform,
    /// Chosen from the token's shape when absent.
    transport: Option<Transport>,
    token: String,
    kinds: Option<Vec<u16>>,
    p256dh: Option<String>,
    auth: Option<String>,
}

/// `DELETE /v1/nostr/devices`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRemoval {
    pubkey: String,
    app_id: AppId,
    token: String,
}

/// Sigil's `POST /register`; unknown fields are ignored, so a newer app
/// keeps working.
#[derive(Deserialize)]
pub struct SigilRegistration {
    /// npub or hex.
    npub: String,
    device_token: String,
    platform: Platform,
}

/// Sigil's `DELETE /unregister`.
#[derive(Deserialize)]
pub struct SigilRemoval {
    pub device_token: String,
}

/// The Sigil-compatible API's app and policy.
struct SigilApi {
    app: AppId,
    auth: NostrAuth,
}

/// The Nostr registration APIs' configuration.
pub struct NostrApi {
    /// Where clients reach herald; NIP-98's `u` is this plus path and
    /// query. The native API is on only when it is known.
    public_url: Option<String>,
    sigil: Option<SigilApi>,
    /// The NIP-98 headers accepted lately: each is good for one request.
    replay: ReplayGuard,
}

impl NostrApi {
    pub fn from_config(config: &Config) -> Self {
        let sigil = config.sigil_api.app_id.as_deref().map(|app| SigilApi {
            app: AppId::parse(app)
                .expect("sigil_api.app_id is checked when the configuration loads"),
            auth: config.sigil_api.auth,
        });
        Self {
            public_url: config
                .nostr
                .public_url()
                .expect("nostr.public_url is checked when the configuration loads"),
            sigil,
            replay: ReplayGuard::default(),
        }
    }

    pub fn native_enabled(&self) -> bool {
        self.public_url.is_some()
    }

    pub fn sigil_enabled(&self) -> bool {
        self.sigil.is_some()
    }

    /// Whether the Sigil routes need a NIP-98 header.
    pub fn sigil_requires_nip98(&self) -> bool {
        self.sigil
            .as_ref()
            .is_some_and(|s| s.auth == NostrAuth::Nip98)
    }

    /// The key that signed the request's NIP-98 header, if the header was
    /// not used before. `path_and_query` is the request's as received,
    /// appended to the public URL.
    pub fn signer(
        &self,
        authorization: Option<&str>,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now_secs: u64,
    ) -> Result<PublicKey, NostrApiError> {
        let base = self.public_url.as_deref().expect(
            "routes that check NIP-98 are mounted only with nostr.public_url (checked at load)",
        );
        let url = format!("{base}{path_and_query}");
        let request = herald_nostr::nip98::HttpRequest {
            url: &url,
            method,
            body,
        };
        herald_nostr::nip98::verify(authorization, &request, now_secs)
            .and_then(|auth| self.replay.admit(&auth, now_secs))
            .map_err(NostrApiError::Unauthorized)
    }

    /// Registers or updates the signer's device.
    pub async fn register_device(
        &self,
        runtime: &Runtime,
        signer: PublicKey,
        request: DeviceRequest,
    ) -> Result<Device, NostrApiError> {
        let pubkey = parse_key("pubkey", &request.pubkey)?;
        same_key(Some(signer), pubkey)?;
        let mut options = kinds_option(request.kinds)?;
        let keys = [request.p256dh, request.auth];
        for (name, key) in KEY_OPTIONS.into_iter().zip(keys) {
            if let Some(key) = key {
                options.insert(name.into(), json!(key));
            }
        }
        let registration = Registration {
            pubkey,
            app: request.app_id,
            platform: request.platform,
            transport: request.transport,
            token: request.token,
            options,
        };
        registration.store(runtime).await
    }

    /// Removes the signer's device with this token, if it has one.
    pub async fn remove_device(
        &self,
        runtime: &Runtime,
        signer: PublicKey,
        request: DeviceRemoval,
    ) -> Result<bool, NostrApiError> {
        let pubkey = parse_key("pubkey", &request.pubkey)?;
        same_key(Some(signer), pubkey)?;
        remove_own_device(runtime, &pubkey, &request.app_id, &request.token).await
    }

    /// Sigil's `/register`: the npub's device in the configured app; with
    /// `auth = "nip98"`, only when the npub signed the request.
    pub async fn sigil_register(
        &self,
        runtime: &Runtime,
        signer: Option<PublicKey>,
        request: SigilRegistration,
    ) -> Result<Device, NostrApiError> {
        let sigil = self.sigil();
        let pubkey = parse_key("npub", request.npub.trim())?;
        if sigil.auth == NostrAuth::Nip98 {
            same_key(signer, pubkey)?;
        }
        let registration = Registration {
            pubkey,
            app: sigil.app.clone(),
            platform: request.platform,
            transport: None,
            token: request.device_token,
            options: serde_json::Map::new(),
        };
        registration.store(runtime).await
    }

    /// Sigil's `/unregister`: with `auth = "nip98"` the signer's device
    /// with this token, in open mode whoever's it is. The caller learns
    /// nothing either way.
    pub async fn sigil_unregister(
        &self,
        runtime: &Runtime,
        signer: Option<PublicKey>,
        token: &str,
    ) -> Result<(), NostrApiError> {
        let sigil = self.sigil();
        match (sigil.auth, signer) {
            (NostrAuth::Nip98, Some(signer)) => {
                remove_own_device(runtime, &signer, &sigil.app, token).await?;
            }
            (NostrAuth::Nip98, None) => return Err(NostrApiError::WrongSigner),
            (NostrAuth::Open, _) => {
                if runtime.store.remove_device(&sigil.app, token).await? {
                    tracing::info!("nostr: a Sigil device unregistered");
                }
            }
        }
        Ok(())
    }

    fn sigil(&self) -> &SigilApi {
        self.sigil
            .as_ref()
            .expect("the Sigil routes are mounted only with [sigil_api] app_id")
    }
}

/// One device of a Nostr account, as either API describes it.
struct Registration {
    pubkey: PublicKey,
    app: AppId,
    platform: Platform,
    transport: Option<Transport>,
    token: String,
    options: serde_json::Map<String, serde_json::Value>,
}

impl Registration {
    /// Checks the device the way the admin API does and stores it.
    async fn store(self, runtime: &Runtime) -> Result<Device, NostrApiError> {
        let transport = match self.transport {
            Some(t) => t,
            None => runtime.infer_transport(&self.app, self.platform, &self.token)?,
        };
        let has_keys = KEY_OPTIONS.iter().any(|k| self.options.contains_key(*k));
        if has_keys && !matches!(transport, Transport::UnifiedPush | Transport::WebPush) {
            return Err(NostrApiError::KeysWithoutWebPush(transport));
        }
        let device = NewDevice {
            account: self.pubkey.account(),
            app_id: self.app,
            platform: self.platform,
            transport,
            token: self.token,
            options: self.options,
        };
        let device = runtime.accept_registration(device).await?;
        let stored = runtime.store_device(&device).await?;
        tracing::info!(
            pk = %pseudonym(&self.pubkey.to_hex()),
            app = %stored.registration.app_id,
            transport = %stored.registration.transport,
            "nostr: device registered"
        );
        Ok(stored)
    }
}

/// Removes `pubkey`'s device of `app` whose token is `token`, if any.
async fn remove_own_device(
    runtime: &Runtime,
    pubkey: &PublicKey,
    app: &AppId,
    token: &str,
) -> Result<bool, NostrApiError> {
    let account: Account = pubkey.account();
    let mut removed = false;
    for device in runtime.store.devices_for_account(&account).await? {
        let r = &device.registration;
        if &r.app_id == app && r.token == token {
            removed |= runtime.store.remove_device_by_id(device.id).await?;
        }
    }
    if removed {
        tracing::info!(pk = %pseudonym(&pubkey.to_hex()), %app, "nostr: device removed");
    }
    Ok(removed)
}

fn parse_key(field: &'static str, text: &str) -> Result<PublicKey, NostrApiError> {
    PublicKey::parse_npub_or_hex(text)
        .map_err(|source| NostrApiError::InvalidPubkey { field, source })
}

/// The request's key must be the one that signed it.
fn same_key(signer: Option<PublicKey>, pubkey: PublicKey) -> Result<(), NostrApiError> {
    if signer == Some(pubkey) {
        Ok(())
    } else {
        Err(NostrApiError::WrongSigner)
    }
}

/// The device's options with its kinds, sorted and without repeats;
/// empty when the device takes its app's kinds.
fn kinds_option(
    kinds: Option<Vec<u16>>,
) -> Result<serde_json::Map<String, serde_json::Value>, NostrApiError> {
    let mut options = serde_json::Map::new();
    let Some(mut kinds) = kinds else {
        return Ok(options);
    };
    if kinds.len() > MAX_KINDS {
        return Err(NostrApiError::InvalidKinds(format!(
            "{} given, at most {MAX_KINDS}",
            kinds.len()
        )));
    }
    if kinds.is_empty() {
        return Err(NostrApiError::InvalidKinds(
            "give at least one kind, or leave kinds out for the app's".into(),
        ));
    }
    kinds.sort_unstable();
    kinds.dedup();
    options.insert(KINDS_OPTION.into(), json!(kinds));
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_sorted_without_repeats_and_bounded() {
        let options = kinds_option(Some(vec![1059, 4, 1059, 7])).unwrap();
        assert_eq!(options[KINDS_OPTION], json!([4, 7, 1059]));
        assert!(kinds_option(None).unwrap().is_empty());
        assert!(matches!(
            kinds_option(Some(Vec::new())),
            Err(NostrApiError::InvalidKinds(_))
        ));
        let too_many = (0..=MAX_KINDS as u16).collect();
        assert!(matches!(
            kinds_option(Some(too_many)),
            Err(NostrApiError::InvalidKinds(_))
        ));
    }

    #[test]
    fn only_the_signer_may_name_its_key() {
        let alice = PublicKey::parse_hex(&"a".repeat(64)).unwrap();
        let bob = PublicKey::parse_hex(&"b".repeat(64)).unwrap();
        assert!(same_key(Some(alice), alice).is_ok());
        assert!(matches!(
            same_key(Some(bob), alice),
            Err(NostrApiError::WrongSigner)
        ));
        assert!(matches!(
            same_key(None, alice),
            Err(NostrApiError::WrongSigner)
        ));
    }
}

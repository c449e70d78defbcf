//! The Mostro-compatible API's domain: what Mostro's push server
//! (`MostroP2P/mostro-push-server`, reference `nostr.md` §7) does for
//! `/api/register`, `/api/unregister`, `/api/notify` and `/api/status`, done
//! on herald's devices and delivery pipeline. Mostro's bodies and status
//! codes are `api::mostro`'s business; this module decides.
//!
//! - A registration is a device of the configured app for the account
//!   `nostr:<trade pubkey>`. It is stored, so it survives restarts (Mostro
//!   keeps its map in memory), and it expires like Mostro's: when not
//!   renewed within `registration_ttl_secs`. As in Mostro there is one per
//!   trade key, the latest; that also stops anyone from hanging any number
//!   of devices on one key and turning one `/api/notify` into many pushes.
//! - `/api/notify` must not tell whether a key is registered (it is
//!   unauthenticated, like the rest). It validates, checks the limits and
//!   answers before anything is looked up: the lookup and the enqueue run in
//!   a task, so status, body, headers and timing are the same either way.
//!   At most `MAX_DISPATCHES_IN_FLIGHT` such tasks run; beyond that a
//!   wake-up is dropped (and logged without its key) rather than letting a
//!   flood of requests spawn without bound.
//! - `/api/unregister` answers the same whether or not the key had a device;
//!   Mostro's two messages made it an enumeration oracle.
//! - Rate limits: per client and per trade key on `/api/notify` (Mostro's
//!   defaults), per client on registration (Mostro's later limit on those
//!   routes; here it also guards the disk, since registrations persist).
//!   Every refusal is the same `RateLimited`, whichever limit refused.
//! - Trade keys are 64 hex characters, as Mostro checks them, and are
//!   lowercased: Nostr `p` tags are lowercase, and a limiter keyed on the
//!   spelling would give one key 2^64 budgets (Mostro's limiter does).
//! - IPv6 clients are limited per /64: a host usually picks its addresses
//!   freely within its /64, so a per-address limit would not hold it.
//! - Logs carry pseudonyms of pubkeys (`crate::pseudonym`), never tokens,
//!   and never the reason a token was refused (it may quote the endpoint).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_core::StoreError;
use herald_core::model::{
    Account, AppId, MAX_TOKEN_BYTES, Message, NewDevice, Notification, Platform, Transport,
};
use herald_core::store::Store;
use herald_core::time::{millis, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{Semaphore, watch};

use crate::config::Config;
use crate::pseudonym::pseudonym;
use crate::rate_limiter::{KeyedRateLimiter, Limited};
use crate::runtime::{RegistrationError, Runtime};
use crate::server::AppState;

/// Mostro's push server's defaults, which `[mostro_api]` starts from.
pub mod defaults {
    use std::time::Duration;

    use crate::rate_limiter::Rate;

    /// Mostro's `TOKEN_TTL_HOURS`.
    pub const REGISTRATION_TTL: Duration = Duration::from_secs(48 * 60 * 60);
    /// Mostro's `NOTIFY_RATE_PER_IP_PER_MIN` and its compiled-in burst.
    pub const NOTIFY_PER_IP: Rate = Rate {
        per_minute: 120,
        burst: 30,
    };
    /// Mostro's `NOTIFY_RATE_PER_PUBKEY_PER_MIN` and its compiled-in burst.
    pub const NOTIFY_PER_PUBKEY: Rate = Rate {
        per_minute: 30,
        burst: 10,
    };
    /// The per-address limit Mostro's docs give registration: a phone
    /// re-registering all its open trades at once stays within the burst.
    pub const REGISTER_PER_IP: Rate = Rate {
        per_minute: 120,
        burst: 100,
    };
    /// Mostro warns above this many limiter keys; herald stops there.
    pub const MAX_TRACKED_KEYS: usize = 100_000;
}

/// The account namespace of Nostr users (`nostr:<hex pubkey>`).
pub const NOSTR_NAMESPACE: &str = "nostr";
/// Wake-ups being looked up and queued at once: Mostro's `Semaphore(50)`.
const MAX_DISPATCHES_IN_FLIGHT: usize = 50;
/// How often registrations past their time to live are removed.
const REGISTRATION_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// A Nostr public key: 32 bytes as hex.
const PUBKEY_BYTES: usize = 32;
/// The part of an IPv6 address one host usually controls all of.
const IPV6_HOST_PREFIX: u32 = 64;
/// A wake-up's whole payload: the type Mostro's push server gives a
/// sender-triggered wake-up. No trade, event or sender: the app wakes and
/// fetches from its relays.
const WAKE_TYPE: &str = "chat_wake";
/// Wake-ups not yet delivered replace each other: one is enough to wake the app.
const WAKE_COLLAPSE_KEY: &str = "mostro-wake";

/// What went wrong, in the API's terms; `api::mostro` gives each its
/// status and Mostro's body.
#[derive(Debug, thiserror::Error)]
pub enum MostroError {
    #[error("the body is not JSON of the expected shape")]
    MalformedBody,
    #[error("the body is larger than the route accepts")]
    BodyTooLarge,
    #[error("the body is not declared as JSON")]
    NotJson,
    #[error("trade_pubkey is not 64 hex characters")]
    InvalidTradePubkey,
    #[error("the token is empty")]
    EmptyToken,
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TokenTooLong,
    #[error("platform {0:?} is neither android nor ios")]
    InvalidPlatform(String),
    #[error("mostro_pubkey is not 64 hex characters")]
    InvalidMostroPubkey,
    #[error("mostro_pubkey is missing and trusted instances are configured")]
    MostroPubkeyRequired,
    #[error("mostro_pubkey is not a trusted instance")]
    UntrustedMostro,
    #[error("the token was refused as a push endpoint")]
    InvalidEndpoint,
    #[error("none of the app's transports carries this token")]
    UnsupportedToken,
    #[error("rate limited")]
    RateLimited(Limited),
    #[error("the client's address is unknown")]
    UnknownClient,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A Nostr public key, whatever the case it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pubkey([u8; PUBKEY_BYTES]);

impl Pubkey {
    /// 64 hex characters, upper or lower case, as Mostro accepts them.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != PUBKEY_BYTES * 2 {
            return None;
        }
        let mut bytes = [0u8; PUBKEY_BYTES];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            *byte = u8::try_from(high << 4 | low).ok()?;
        }
        Some(Self(bytes))
    }

    /// Lowercase hex, as relays and `nostr:` accounts spell it.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn account(&self) -> Account {
        Account::parse(&format!("{NOSTR_NAMESPACE}:{}", self.hex()))
            .expect("nostr:<64 hex> is a valid account")
    }
}

/// `POST /api/register`; unknown fields are ignored, as Mostro ignores them.
#[derive(Deserialize)]
pub struct RegisterRequest {
    trade_pubkey: String,
    token: String,
    platform: String,
    #[serde(default)]
    mostro_pubkey: Option<String>,
    /// herald's addition, for UnifiedPush in Web Push mode: with `auth`,
    /// wake-ups are encrypted (RFC 8291) so the distributor cannot read them.
    #[serde(default)]
    p256dh: Option<String>,
    #[serde(default)]
    auth: Option<String>,
}

/// `POST /api/unregister` and `POST /api/notify`.
#[derive(Deserialize)]
pub struct TradeKeyRequest {
    trade_pubkey: String,
}

/// `/api/status`'s `tokens`, its fields in Mostro's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct TokenCounts {
    pub total: u64,
    pub android: u64,
    pub ios: u64,
}

/// The client a limit applies to: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    fn of(address: IpAddr) -> Self {
        match address.to_canonical() {
            IpAddr::V6(v6) => {
                let mask = u128::MAX << (128 - IPV6_HOST_PREFIX);
                Self(IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask)))
            }
            v4 => Self(v4),
        }
    }
}

/// The API's state: its app, its limits and its dispatch bound.
pub struct MostroApi {
    app: AppId,
    trust_proxy_headers: bool,
    trusted_instances: HashSet<Pubkey>,
    notify_per_ip: KeyedRateLimiter<Client>,
    notify_per_pubkey: KeyedRateLimiter<Pubkey>,
    register_per_ip: KeyedRateLimiter<Client>,
    dispatches: Arc<Semaphore>,
}

impl MostroApi {
    /// `None` when `[mostro_api]` names no app: the API is off.
    pub fn from_config(config: &Config) -> Option<Self> {
        let c = &config.mostro_api;
        let app = AppId::parse(c.app_id.as_deref()?)
            .expect("mostro_api.app_id is checked when the configuration loads");
        let now = Instant::now();
        Some(Self {
            app,
            trust_proxy_headers: c.trust_proxy_headers,
            trusted_instances: c
                .trusted_mostro_pubkeys
                .iter()
                .filter_map(|k| Pubkey::parse(k))
                .collect(),
            notify_per_ip: KeyedRateLimiter::new(c.notify_per_ip, c.max_tracked_keys, now),
            notify_per_pubkey: KeyedRateLimiter::new(c.notify_per_pubkey, c.max_tracked_keys, now),
            register_per_ip: KeyedRateLimiter::new(c.register_per_ip, c.max_tracked_keys, now),
            dispatches: Arc::new(Semaphore::new(MAX_DISPATCHES_IN_FLIGHT)),
        })
    }

    /// Whom a request's limits apply to: the socket's peer or, behind a
    /// trusted proxy, `Fly-Client-IP` then the right-most `X-Forwarded-For`
    /// entry (the one the proxy itself appended; the left ones are the
    /// client's to choose). No address fails closed, never one shared limit.
    pub fn client(
        &self,
        peer: Option<IpAddr>,
        fly_client_ip: Option<&str>,
        forwarded_for: Option<&str>,
    ) -> Result<Client, MostroError> {
        let parse = |text: &str| text.trim().parse::<IpAddr>().ok();
        let forwarded = || {
            let fly = fly_client_ip.and_then(parse);
            fly.or_else(|| {
                forwarded_for
                    .and_then(|f| f.rsplit(',').next())
                    .and_then(parse)
            })
        };
        self.trust_proxy_headers
            .then(forwarded)
            .flatten()
            .or(peer)
            .map(Client::of)
            .ok_or(MostroError::UnknownClient)
    }

    /// The per-client limit of `/api/notify`, checked before the body is read.
    pub fn admit_notify(&self, client: Client) -> Result<(), MostroError> {
        self.notify_per_ip
            .check(client, Instant::now())
            .map_err(MostroError::RateLimited)
    }

    /// The per-client limit of `/api/register` and `/api/unregister`.
    pub fn admit_registration(&self, client: Client) -> Result<(), MostroError> {
        self.register_per_ip
            .check(client, Instant::now())
            .map_err(MostroError::RateLimited)
    }

    /// The registered devices of the app, as Mostro counts its tokens.
    pub async fn token_counts(&self, runtime: &Runtime) -> Result<TokenCounts, MostroError> {
        let by_platform = runtime
            .store
            .count_devices_by_platform(&self.app, NOSTR_NAMESPACE)
            .await?;
        Ok(by_platform
            .into_iter()
            .fold(TokenCounts::default(), |mut counts, (platform, n)| {
                counts.total += n;
                match platform {
                    Platform::Android => counts.android += n,
                    Platform::Ios => counts.ios += n,
                    Platform::Web | Platform::Desktop => {}
                }
                counts
            }))
    }

    /// Stores the device for the trade key, replacing the key's previous
    /// one, and returns its platform. Checks run in Mostro's order, so the
    /// same bad request gets the same answer.
    pub async fn register(
        &self,
        runtime: &Runtime,
        request: RegisterRequest,
    ) -> Result<Platform, MostroError> {
        let pubkey = Pubkey::parse(&request.trade_pubkey).ok_or(MostroError::InvalidTradePubkey)?;
        if request.token.is_empty() {
            return Err(MostroError::EmptyToken);
        }
        if request.token.len() > MAX_TOKEN_BYTES {
            return Err(MostroError::TokenTooLong);
        }
        let platform = match request.platform.to_ascii_lowercase().as_str() {
            "android" => Platform::Android,
            "ios" => Platform::Ios,
            _ => return Err(MostroError::InvalidPlatform(request.platform)),
        };
        self.check_instance(request.mostro_pubkey.as_deref())?;
        let keys = [("p256dh", request.p256dh), ("auth", request.auth)];
        let device = self
            .device(runtime, &pubkey, platform, request.token, keys)
            .await
            .map_err(|e| {
                tracing::info!(pk = %pseudonym(&pubkey.hex()), %platform, "mostro: token refused");
                refusal(e)
            })?;
        let stored = runtime.store_device(&device).await?;
        self.remove_devices(runtime, &device.account, Some(stored.id))
            .await?;
        let transport = device.transport;
        tracing::info!(pk = %pseudonym(&pubkey.hex()), %platform, %transport, "mostro: registered");
        Ok(platform)
    }

    /// The device for a token, on the transport its shape calls for, as
    /// the transport accepts it; Web Push keys go with UnifiedPush only.
    async fn device(
        &self,
        runtime: &Runtime,
        pubkey: &Pubkey,
        platform: Platform,
        token: String,
        keys: [(&str, Option<String>); 2],
    ) -> Result<NewDevice, RegistrationError> {
        let transport = runtime.infer_transport(&self.app, platform, &token)?;
        let mut options = serde_json::Map::new();
        if transport == Transport::UnifiedPush {
            for (name, key) in keys {
                if let Some(key) = key {
                    options.insert(name.into(), json!(key));
                }
            }
        }
        let device = NewDevice {
            account: pubkey.account(),
            app_id: self.app.clone(),
            platform,
            transport,
            token,
            options,
        };
        runtime.accept_registration(device).await
    }

    /// Removes the trade key's device, if it has one; the caller is told
    /// nothing either way.
    pub async fn unregister(
        &self,
        runtime: &Runtime,
        request: TradeKeyRequest,
    ) -> Result<(), MostroError> {
        let pubkey = Pubkey::parse(&request.trade_pubkey).ok_or(MostroError::InvalidTradePubkey)?;
        self.remove_devices(runtime, &pubkey.account(), None)
            .await?;
        tracing::info!(pk = %pseudonym(&pubkey.hex()), "mostro: unregistered");
        Ok(())
    }

    /// Accepts a wake-up for the trade key's device, if it has one: checks
    /// and limits now, looks up and queues in a bounded task.
    pub fn notify(&self, runtime: &Runtime, request: TradeKeyRequest) -> Result<(), MostroError> {
        let pubkey = Pubkey::parse(&request.trade_pubkey).ok_or(MostroError::InvalidTradePubkey)?;
        self.notify_per_pubkey
            .check(pubkey, Instant::now())
            .map_err(MostroError::RateLimited)?;
        let Ok(permit) = Arc::clone(&self.dispatches).try_acquire_owned() else {
            tracing::warn!(
                "mostro: {MAX_DISPATCHES_IN_FLIGHT} wake-ups already being queued; one dropped"
            );
            return Ok(());
        };
        let fan_out = runtime.fan_out.clone();
        let wake_up = self.wake_up(&pubkey);
        tokio::spawn(async move {
            let _permit = permit;
            let pk = pseudonym(&pubkey.hex());
            match fan_out.submit(&wake_up, now_ms()).await {
                Ok(report) => tracing::debug!(%pk, queued = report.queued, "mostro: wake-up"),
                Err(e) => tracing::warn!(%pk, error = %e, "mostro: queueing a wake-up failed"),
            }
        });
        Ok(())
    }

    /// A silent, data-only push: high priority so Android wakes the app.
    fn wake_up(&self, pubkey: &Pubkey) -> Notification {
        let mut data = serde_json::Map::new();
        data.insert("type".into(), json!(WAKE_TYPE));
        Notification {
            account: pubkey.account(),
            app_id: Some(self.app.clone()),
            message: Message {
                data,
                collapse_key: Some(WAKE_COLLAPSE_KEY.into()),
                ..Message::default()
            },
            dedupe_key: None,
        }
    }

    fn check_instance(&self, mostro_pubkey: Option<&str>) -> Result<(), MostroError> {
        if self.trusted_instances.is_empty() {
            return Ok(());
        }
        let given = mostro_pubkey.ok_or(MostroError::MostroPubkeyRequired)?;
        let instance = Pubkey::parse(given).ok_or(MostroError::InvalidMostroPubkey)?;
        if self.trusted_instances.contains(&instance) {
            Ok(())
        } else {
            Err(MostroError::UntrustedMostro)
        }
    }

    /// Removes the account's devices of this app, except `keep`.
    async fn remove_devices(
        &self,
        runtime: &Runtime,
        account: &Account,
        keep: Option<i64>,
    ) -> Result<(), MostroError> {
        for device in runtime.store.devices_for_account(account).await? {
            if device.registration.app_id == self.app && Some(device.id) != keep {
                runtime.store.remove_device_by_id(device.id).await?;
            }
        }
        // A key left without devices is no longer watched on the relays.
        runtime.forget_if_deviceless(account).await?;
        Ok(())
    }
}

/// A registration the app cannot take: no transport for the token's kind,
/// or a token its transport refuses.
fn refusal(e: RegistrationError) -> MostroError {
    match e {
        RegistrationError::Invalid(_) => MostroError::InvalidEndpoint,
        RegistrationError::UnknownApp(_)
        | RegistrationError::TransportUnavailable { .. }
        | RegistrationError::NoTransport { .. } => MostroError::UnsupportedToken,
    }
}

/// Removes registrations not renewed within `registration_ttl_secs`, at
/// start and every `REGISTRATION_SWEEP_INTERVAL`, until `stop`.
pub async fn expire_registrations(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    let config = &state.runtime.config.mostro_api;
    let (Some(app), ttl) = (&config.app_id, config.registration_ttl_secs) else {
        return;
    };
    if ttl == 0 {
        return;
    }
    let app = AppId::parse(app).expect("mostro_api.app_id is checked when the configuration loads");
    let ttl = millis(Duration::from_secs(ttl));
    loop {
        let before = now_ms().saturating_sub(ttl);
        match state
            .runtime
            .store
            .expire_devices(&app, NOSTR_NAMESPACE, before)
            .await
        {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "mostro: expired registrations removed"),
            Err(e) => tracing::warn!(error = %e, "mostro: removing expired registrations failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(REGISTRATION_SWEEP_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBKEY: &str = "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d";

    fn api(trust_proxy_headers: bool) -> MostroApi {
        let mut config = Config::default();
        config
            .apps
            .insert("org.example.mostro".into(), Default::default());
        config.mostro_api.app_id = Some("org.example.mostro".into());
        config.mostro_api.trust_proxy_headers = trust_proxy_headers;
        MostroApi::from_config(&config).unwrap()
    }

    #[test]
    fn trade_keys_are_64_hex_characters_in_either_case_and_spelt_lowercase() {
        let key = Pubkey::parse(PUBKEY).unwrap();
        assert_eq!(key.hex(), PUBKEY);
        assert_eq!(Pubkey::parse(&PUBKEY.to_uppercase()), Some(key));
        assert_eq!(key.account().as_str(), format!("nostr:{PUBKEY}"));
        for bad in [
            "",
            &PUBKEY[..63],
            &format!("{PUBKEY}0"),
            &PUBKEY.replace('3', "g"),
            &format!("+{}", &PUBKEY[1..]),
            &format!("{}é", &PUBKEY[..62]),
        ] {
            assert_eq!(Pubkey::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_client_is_the_peer_unless_a_proxy_is_trusted() {
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let forwarded = Some("203.0.113.9, 198.51.100.7");
        let client = |api: &MostroApi, fly| api.client(Some(peer), fly, forwarded).unwrap();
        let address = |text: &str| Client::of(text.parse().unwrap());
        let direct = api(false);
        assert_eq!(client(&direct, Some("198.51.100.1")), Client::of(peer));
        let proxied = api(true);
        assert_eq!(
            client(&proxied, Some("198.51.100.1")),
            address("198.51.100.1")
        );
        assert_eq!(
            client(&proxied, None),
            address("198.51.100.7"),
            "the right-most entry, the one the proxy appended"
        );
        assert_eq!(
            proxied
                .client(Some(peer), Some("not an address"), None)
                .unwrap(),
            Client::of(peer)
        );
        assert!(matches!(
            direct.client(None, None, None),
            Err(MostroError::UnknownClient)
        ));
    }

    #[test]
    fn an_ipv6_host_is_one_client_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Client::of(a), Client::of(b));
        assert_ne!(Client::of(a), Client::of(other));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(Client::of(mapped), Client::of("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn trusted_instances_are_checked_only_when_configured() {
        let open = api(false);
        assert!(open.check_instance(None).is_ok());
        assert!(open.check_instance(Some("not hex")).is_ok());
        let mut strict = api(false);
        strict
            .trusted_instances
            .insert(Pubkey::parse(PUBKEY).unwrap());
        assert!(matches!(
            strict.check_instance(None),
            Err(MostroError::MostroPubkeyRequired)
        ));
        assert!(matches!(
            strict.check_instance(Some("short")),
            Err(MostroError::InvalidMostroPubkey)
        ));
        assert!(matches!(
            strict.check_instance(Some(&PUBKEY.replace('3', "4"))),
            Err(MostroError::UntrustedMostro)
        ));
        assert!(strict.check_instance(Some(&PUBKEY.to_uppercase())).is_ok());
    }

    #[test]
    fn a_wake_up_is_data_only_for_the_trade_keys_account_in_the_app() {
        let api = api(false);
        let wake = api.wake_up(&Pubkey::parse(PUBKEY).unwrap());
        assert_eq!(wake.account.as_str(), format!("nostr:{PUBKEY}"));
        assert_eq!(
            wake.app_id.as_ref().map(AppId::as_str),
            Some("org.example.mostro")
        );
        assert_eq!((&wake.message.title, &wake.message.body), (&None, &None));
        assert_eq!(wake.message.data["type"], WAKE_TYPE);
        wake.validate().unwrap();
    }
}

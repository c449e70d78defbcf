//! Configuration: one TOML file plus `HERALD_*` environment variables.
//!
//! Precedence, lowest first: built-in defaults, the file (`--config` or
//! `HERALD_CONFIG`), then the environment. An environment variable names a
//! key path with `__` between levels (`HERALD_DELIVERY__MAX_ATTEMPTS`), and
//! its value takes the type of the default it overrides, so a numeric admin
//! token stays a string. Unknown keys and unknown `HERALD_*` variables are
//! errors: a misspelt setting silently ignored is a production incident.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use herald_core::dispatcher::DispatcherConfig;
use herald_core::model::{AppId, Transport};
use herald_core::rate::RateLimit;
use herald_core::retry::RetryPolicy;
use herald_nostr::relay::RelayConfig;
use herald_nostr::rules::AppRules;
use herald_push::apns::ApnsConfig;
use herald_push::expo::ExpoConfig;
use herald_push::fcm::FcmConfig;
use herald_push::gorush::GorushConfig;
pub use herald_push::unifiedpush::UnifiedPushConfig;
use herald_push::webpush::WebPushConfig;
use serde::{Deserialize, Serialize};

use crate::rate_limiter::Rate;

/// Shortest admin token accepted: 128 bits as hex or base64 is longer.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;
/// Environment variables that carry no setting of their own.
const NON_SETTING_VARS: &[&str] = &["HERALD_CONFIG", "HERALD_LOG"];
/// Prefixes of environment variables used by herald's test suites.
const NON_SETTING_PREFIXES: &[&str] = &["HERALD_TEST_"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

fn invalid(origin: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// `sqlite://FILE` (default) or `postgres://…`.
    pub database_url: String,
    /// Bearer token of the admin API; prefer `admin_token_file` or the environment.
    pub admin_token: Option<String>,
    pub admin_token_file: Option<PathBuf>,
    /// Lets device endpoints point at loopback and private networks, over plain http too.
    pub allow_private_endpoints: bool,
    /// PEM file of extra CAs every provider trusts beside the system's.
    pub extra_ca_file: Option<PathBuf>,
    pub http: HttpConfig,
    pub delivery: DeliveryConfig,
    pub gorush_api: GorushApiConfig,
    pub mostro_api: MostroApiConfig,
    pub nostr: NostrConfig,
    pub sigil_api: SigilApiConfig,
    pub atproto: AtprotoConfig,
    pub status: StatusConfig,
    pub apps: BTreeMap<String, AppConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://herald.db".into(),
            admin_token: None,
            admin_token_file: None,
            allow_private_endpoints: false,
            extra_ca_file: None,
            http: HttpConfig::default(),
            delivery: DeliveryConfig::default(),
            gorush_api: GorushApiConfig::default(),
            mostro_api: MostroApiConfig::default(),
            nostr: NostrConfig::default(),
            sigil_api: SigilApiConfig::default(),
            atproto: AtprotoConfig::default(),
            status: StatusConfig::default(),
            apps: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body accepted; a notification with full data is under 10 KiB.
    pub max_body_bytes: usize,
    /// Time a request may take before it is answered 408.
    pub request_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            request_timeout_secs: 30,
        }
    }
}

/// `[atproto]`: registration from AT Protocol apps; off unless `service_did` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AtprotoConfig {
    /// herald's DID (`HERALD_ATPROTO_SERVICE_DID`): a did:web or a did:plc.
    pub service_did: Option<String>,
    /// The public origin apps' PDSes reach herald at; `https://` + the did:web host by default.
    pub public_url: Option<String>,
    /// PLC directory (`HERALD_ATPROTO_PLC_URL`).
    pub plc_url: String,
    /// Push tokens one account may register.
    pub max_devices_per_account: usize,
    /// Longest service-token lifetime accepted.
    pub max_token_lifetime_secs: u64,
    /// Accept high-S signatures, as the reference TypeScript verifier does.
    pub allow_high_s: bool,
    /// How long a resolved DID document is trusted.
    pub did_cache_secs: u64,
    /// Where herald reads the network from: `jetstream` (the default) or
    /// `firehose` (`com.atproto.sync.subscribeRepos`, signed and verified).
    pub source: NetworkSource,
    /// `[atproto.jetstream]`: the Jetstream source's settings.
    pub jetstream: JetstreamSettings,
    /// `[atproto.firehose]`: the firehose source's settings.
    pub firehose: FirehoseSettings,
    /// `[atproto.rate_limit]`: likes, reposts and follows one account is pushed.
    pub rate_limit: RateLimitSettings,
}

/// `[atproto.rate_limit]` and `[nostr] rate_limit`: per recipient, for the
/// count-like pushes (likes, reposts, follows; reactions, reposts, zaps).
/// Each protocol has its own default; the file and the environment are
/// merged over it, so both fields are always there.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Pushes per window; 0 switches the limit off.
    pub pushes: u32,
    pub window_secs: u64,
}

impl From<RateLimit> for RateLimitSettings {
    fn from(limit: RateLimit) -> Self {
        Self {
            pushes: limit.pushes,
            window_secs: limit.window.as_secs(),
        }
    }
}

impl RateLimitSettings {
    pub fn limit(&self) -> RateLimit {
        RateLimit {
            pushes: self.pushes,
            window: std::time::Duration::from_secs(self.window_secs.max(1)),
        }
    }
}

/// `[atproto.jetstream]`: the Jetstream source, run when herald has an AT
/// Protocol identity and at least one AT Protocol account has a device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JetstreamSettings {
    pub enabled: bool,
    /// Base URLs to fail over between, in order.
    pub urls: Vec<String>,
    /// `v1` (`/subscribe`, which every Jetstream serves) or `v2` (`subscribeEvents`).
    pub api: String,
    /// Ask for dictionary-compressed frames.
    pub compress: bool,
    /// Events older than this push nothing (a long outage replays silently).
    pub max_event_age_secs: u64,
}

impl Default for JetstreamSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            // Bluesky's public v1 instances (atproto.md §7).
            urls: vec![
                "wss://jetstream1.us-east.bsky.network".into(),
                "wss://jetstream2.us-east.bsky.network".into(),
                "wss://jetstream1.us-west.bsky.network".into(),
                "wss://jetstream2.us-west.bsky.network".into(),
            ],
            api: "v1".into(),
            compress: true,
            max_event_age_secs: herald_atproto::jetstream_pipeline::DEFAULT_MAX_EVENT_AGE.as_secs(),
        }
    }
}

impl JetstreamSettings {
    /// The source's configuration; an error names the bad setting.
    pub fn source_config(&self) -> Result<herald_atproto::jetstream::JetstreamConfig, String> {
        use herald_atproto::jetstream::{JetstreamApi, JetstreamConfig};
        let api = match self.api.as_str() {
            "v1" => JetstreamApi::V1,
            "v2" => JetstreamApi::V2,
            other => return Err(format!("atproto.jetstream.api: {other:?} is not v1 or v2")),
        };
        let urls = websocket_urls("atproto.jetstream.urls", &self.urls)?;
        let collections = herald_atproto::jetstream_event::RULE_COLLECTIONS
            .iter()
            .map(|c| (*c).to_owned())
            .collect();
        let mut config = JetstreamConfig::new(urls, api, collections);
        config.compress = self.compress;
        Ok(config)
    }
}

/// `[atproto] source`: which stream of the network the rules read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkSource {
    /// A Jetstream server: JSON, compact, but unsigned.
    #[default]
    Jetstream,
    /// A relay's or a PDS's firehose: every commit signed by its repo.
    Firehose,
}

/// `[atproto.firehose]`: the firehose source, run instead of Jetstream when
/// `[atproto] source = "firehose"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirehoseSettings {
    /// Base URLs of relays or PDSes (`wss://…`), failed over in order.
    pub urls: Vec<String>,
    /// Check every commit's signature, repo, rev and record CIDs. Switch
    /// off only for a relay or PDS you run and trust.
    pub verify: bool,
    /// Events older than this push nothing (a long outage replays silently).
    pub max_event_age_secs: u64,
}

impl Default for FirehoseSettings {
    fn default() -> Self {
        Self {
            // Bluesky's relay (atproto.md §9).
            urls: vec!["wss://bsky.network".into()],
            verify: true,
            max_event_age_secs: herald_atproto::jetstream_pipeline::DEFAULT_MAX_EVENT_AGE.as_secs(),
        }
    }
}

impl FirehoseSettings {
    /// The source's configuration; an error names the bad setting.
    pub fn source_config(&self) -> Result<herald_atproto::firehose_source::FirehoseConfig, String> {
        Ok(herald_atproto::firehose_source::FirehoseConfig {
            urls: websocket_urls("atproto.firehose.urls", &self.urls)?,
            reconnect: Default::default(),
        })
    }
}

/// Parses a list of ws:// or wss:// URLs; an error names the setting.
fn websocket_urls(setting: &str, urls: &[String]) -> Result<Vec<url::Url>, String> {
    if urls.is_empty() {
        return Err(format!("{setting}: give at least one URL"));
    }
    urls.iter()
        .map(|u| {
            url::Url::parse(u)
                .ok()
                .filter(|p| matches!(p.scheme(), "ws" | "wss"))
                .ok_or_else(|| format!("{setting}: {u:?} is not a ws:// or wss:// URL"))
        })
        .collect()
}

impl Default for AtprotoConfig {
    fn default() -> Self {
        Self {
            service_did: None,
            public_url: None,
            plc_url: herald_atproto::resolver::DEFAULT_PLC_URL.into(),
            // The Go gateway's limit: enough for a person's phones, tablets and browsers.
            max_devices_per_account: 20,
            max_token_lifetime_secs: herald_atproto::service_auth::DEFAULT_MAX_LIFETIME.as_secs(),
            allow_high_s: false,
            did_cache_secs: 60 * 60,
            source: NetworkSource::default(),
            jetstream: JetstreamSettings::default(),
            firehose: FirehoseSettings::default(),
            rate_limit: herald_atproto::recipient_rate::DEFAULT_RATE_LIMIT.into(),
        }
    }
}

impl AtprotoConfig {
    /// The origin in herald's DID document: configured, or from the did:web host.
    pub fn public_url(&self) -> Option<String> {
        if let Some(url) = &self.public_url {
            return Some(url.trim_end_matches('/').to_owned());
        }
        let did = herald_atproto::did::Did::parse(self.service_did.as_deref()?).ok()?;
        match did {
            herald_atproto::did::Did::Web { host, .. } => Some(format!("https://{host}")),
            herald_atproto::did::Did::Plc(_) => None,
        }
    }
}

/// `[gorush_api]`: the gorush-compatible `POST /api/push`, off unless `app_id` is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GorushApiConfig {
    /// The app whose credentials gorush-style requests use (`?app_id=` overrides).
    pub app_id: Option<String>,
    /// Bearer token callers must send; without one the API is open, as gorush's is.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

impl GorushApiConfig {
    pub fn bearer(&self) -> Result<Option<String>, ConfigError> {
        secret(
            "gorush_api.token",
            self.token.as_ref(),
            self.token_file.as_ref(),
        )
    }
}

/// `[mostro_api]`: the Mostro-compatible `/api/register`, `/api/notify`, …,
/// off unless `app_id` is set. Defaults are Mostro's push server's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MostroApiConfig {
    /// The app whose transports and credentials the registrations use.
    pub app_id: Option<String>,
    /// A registration not renewed for this long is removed; 0 keeps it until unregistered.
    pub registration_ttl_secs: u64,
    /// Take the client's address from `Fly-Client-IP` or the right-most
    /// `X-Forwarded-For`: only behind a proxy that sets them.
    pub trust_proxy_headers: bool,
    /// Mostro instances (hex pubkeys) registrations must name in
    /// `mostro_pubkey`; empty, the field is ignored.
    pub trusted_mostro_pubkeys: Vec<String>,
    /// `/api/notify` per client address.
    pub notify_per_ip: Rate,
    /// `/api/notify` per trade pubkey.
    pub notify_per_pubkey: Rate,
    /// `/api/register` and `/api/unregister` per client address.
    pub register_per_ip: Rate,
    /// Addresses or pubkeys each rate limiter remembers at most.
    pub max_tracked_keys: usize,
}

impl Default for MostroApiConfig {
    fn default() -> Self {
        use crate::mostro_api::defaults;
        Self {
            app_id: None,
            registration_ttl_secs: defaults::REGISTRATION_TTL.as_secs(),
            trust_proxy_headers: false,
            trusted_mostro_pubkeys: Vec::new(),
            notify_per_ip: defaults::NOTIFY_PER_IP,
            notify_per_pubkey: defaults::NOTIFY_PER_PUBKEY,
            register_per_ip: defaults::REGISTER_PER_IP,
            max_tracked_keys: defaults::MAX_TRACKED_KEYS,
        }
    }
}

impl MostroApiConfig {
    fn validate(&self, apps: &BTreeMap<String, AppConfig>) -> Result<(), ConfigError> {
        configured_app("mostro_api.app_id", &self.app_id, apps)?;
        for (name, rate) in [
            ("notify_per_ip", self.notify_per_ip),
            ("notify_per_pubkey", self.notify_per_pubkey),
            ("register_per_ip", self.register_per_ip),
        ] {
            if rate.per_minute == 0 || rate.burst == 0 {
                return Err(invalid(
                    format!("mostro_api.{name}"),
                    "per_minute and burst must be at least 1",
                ));
            }
        }
        if self.max_tracked_keys == 0 {
            return Err(invalid("mostro_api.max_tracked_keys", "must be at least 1"));
        }
        for key in &self.trusted_mostro_pubkeys {
            if crate::mostro_api::Pubkey::parse(key).is_none() {
                return Err(invalid(
                    "mostro_api.trusted_mostro_pubkeys",
                    format!("{key:?} is not a 64-character hex pubkey"),
                ));
            }
        }
        Ok(())
    }
}

/// `[nostr]`: herald's Nostr side. `public_url` switches on the native
/// `/v1/nostr/devices` API, whose NIP-98 headers name it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NostrConfig {
    /// The URL clients reach herald at (`https://push.example.org`, or with
    /// a path prefix a proxy strips): NIP-98's `u` tag must be it plus the
    /// request's path and query. Never taken from `Host`, which a client
    /// chooses and a proxy rewrites.
    pub public_url: Option<String>,
    /// Relays watched for events to the registered keys (`wss://…`);
    /// empty, herald watches none.
    pub relays: Vec<String>,
    /// The event kinds an app's devices are told about unless the app
    /// chooses its own (`[apps."<id>".nostr] kinds`); empty,
    /// `herald_nostr::rules::DEFAULT_KINDS`.
    pub kinds: Vec<u16>,
    /// Reactions, reposts and zaps one key is pushed.
    pub rate_limit: RateLimitSettings,
    /// herald's own secret key (64 hex digits, `herald keys nostr`), with
    /// which it answers relays' NIP-42 `AUTH` challenges; unset, it ignores them.
    pub key_file: Option<PathBuf>,
    /// Relays asked for the registered keys' relay lists (kinds 10050 and
    /// 10002), whose relays herald then watches for those keys; empty,
    /// only `relays` are watched.
    pub index_relays: Vec<String>,
    /// An account's own relays watched at most.
    pub relays_per_account: usize,
    /// Account relays watched at most, all accounts together.
    pub max_account_relays: usize,
    /// Account relays on loopback or private addresses are watched too:
    /// for relays on the operator's own network, and tests.
    pub allow_private_account_relays: bool,
    /// How often the index relays are asked for the lists again, besides
    /// at every registration and reconnection.
    pub relay_lists_refresh_secs: u64,
}

impl Default for NostrConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            relays: Vec::new(),
            kinds: Vec::new(),
            rate_limit: herald_nostr::relay_pipeline::DEFAULT_RATE_LIMIT.into(),
            key_file: None,
            index_relays: Vec::new(),
            relays_per_account: herald_nostr::account_relays::DEFAULT_RELAYS_PER_ACCOUNT,
            max_account_relays: herald_nostr::account_relays::DEFAULT_MAX_ACCOUNT_RELAYS,
            allow_private_account_relays: false,
            relay_lists_refresh_secs: DEFAULT_RELAY_LISTS_REFRESH.as_secs(),
        }
    }
}

impl NostrConfig {
    /// herald's own key from `key_file`, if one is configured.
    pub fn key(&self) -> Result<Option<herald_nostr::SecretKey>, ConfigError> {
        let Some(path) = &self.key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        herald_nostr::SecretKey::parse_hex(&text)
            .map(Some)
            .map_err(|e| invalid("nostr.key_file", format!("{}: {e}", path.display())))
    }

    /// One connection's configuration per relay; an error names the bad URL
    /// or the unreadable key.
    /// Each relay is asked for every app's kinds (`apps`' Nostr tables).
    pub fn relay_configs(
        &self,
        apps: &BTreeMap<String, AppConfig>,
    ) -> Result<Vec<RelayConfig>, ConfigError> {
        let template = self.account_relay_template(apps)?;
        self.relays
            .iter()
            .map(|text| relay_config("nostr.relays", text, &template))
            .collect()
    }

    /// The index relays' connections: each asked for the registered keys'
    /// own lists, again every `relay_lists_refresh_secs`.
    pub fn index_relay_configs(
        &self,
        apps: &BTreeMap<String, AppConfig>,
    ) -> Result<Vec<RelayConfig>, ConfigError> {
        let template = RelayConfig {
            watch: herald_nostr::relay::Watch::OwnLists,
            refresh: Some(Duration::from_secs(self.relay_lists_refresh_secs)),
            ..self.account_relay_template(apps)?
        };
        self.index_relays
            .iter()
            .map(|text| relay_config("nostr.index_relays", text, &template))
            .collect()
    }

    /// What every watched relay's connection shares: the kinds, the
    /// reconnect policy, herald's key; each takes its own URL.
    pub fn account_relay_template(
        &self,
        apps: &BTreeMap<String, AppConfig>,
    ) -> Result<RelayConfig, ConfigError> {
        Ok(RelayConfig {
            // Never connected to: every connection sets its own.
            url: url::Url::parse("wss://relay.invalid").expect("a valid URL"),
            kinds: self.watched_kinds(apps),
            reconnect: herald_core::retry::ReconnectPolicy::default(),
            auth_key: self.key()?.map(std::sync::Arc::new),
            watch: herald_nostr::relay::Watch::Mentions,
            refresh: None,
            // Accounts' relays are named by anyone's list.
            public_only: !self.allow_private_account_relays,
        })
    }

    /// The bounds on the accounts' own relays.
    pub fn account_relay_limits(&self) -> herald_nostr::account_relays::RelayLimits {
        herald_nostr::account_relays::RelayLimits {
            per_account: self.relays_per_account,
            total: self.max_account_relays,
            allow_private: self.allow_private_account_relays,
        }
    }

    /// What the relay rules tell each app's devices, in the apps' order.
    pub fn app_rules(&self, apps: &BTreeMap<String, AppConfig>) -> Vec<AppRules> {
        apps.iter()
            .map(|(id, app)| {
                let nostr = app.nostr.clone().unwrap_or_default();
                AppRules {
                    app_id: Some(
                        AppId::parse(id)
                            .expect("app ids are validated when the configuration loads"),
                    ),
                    kinds: if nostr.kinds.is_empty() {
                        self.default_kinds()
                    } else {
                        nostr.kinds
                    },
                    silent: nostr.silent,
                }
            })
            .collect()
    }

    /// The kinds the relays are asked for: every app's, each once; the
    /// default kinds while no app is configured.
    pub fn watched_kinds(&self, apps: &BTreeMap<String, AppConfig>) -> Vec<u16> {
        let mut kinds: Vec<u16> = Vec::new();
        for app in self.app_rules(apps) {
            for kind in app.kinds {
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
        }
        if kinds.is_empty() {
            kinds = self.default_kinds();
        }
        kinds
    }

    /// The kinds of an app that chose none.
    fn default_kinds(&self) -> Vec<u16> {
        if self.kinds.is_empty() {
            herald_nostr::rules::DEFAULT_KINDS.to_vec()
        } else {
            self.kinds.clone()
        }
    }

    /// Every kind named, in `[nostr]` and in the apps' tables, is one the
    /// rules push for: a typo would otherwise subscribe to nothing useful.
    /// The account relays' bounds are at least 1 and the lists are not
    /// asked for more than once a minute.
    fn validate(&self, apps: &BTreeMap<String, AppConfig>) -> Result<(), ConfigError> {
        for (setting, value) in [
            ("nostr.relays_per_account", self.relays_per_account),
            ("nostr.max_account_relays", self.max_account_relays),
        ] {
            if value == 0 {
                return Err(invalid(
                    setting,
                    "must be at least 1; leave index_relays empty to watch no account relays",
                ));
            }
        }
        if self.relay_lists_refresh_secs < MIN_RELAY_LISTS_REFRESH.as_secs() {
            return Err(invalid(
                "nostr.relay_lists_refresh_secs",
                format!("must be at least {}", MIN_RELAY_LISTS_REFRESH.as_secs()),
            ));
        }
        let known = herald_nostr::rules::DEFAULT_KINDS;
        let named = std::iter::once(("nostr.kinds".to_owned(), &self.kinds)).chain(
            apps.iter().filter_map(|(id, app)| {
                let nostr = app.nostr.as_ref()?;
                Some((format!("apps.\"{id}\".nostr.kinds"), &nostr.kinds))
            }),
        );
        for (setting, kinds) in named {
            if let Some(kind) = kinds.iter().find(|k| !known.contains(k)) {
                return Err(invalid(
                    setting,
                    format!(
                        "herald pushes nothing for kind {kind}; the kinds it knows are {known:?}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `public_url` without a trailing `/`, checked: http(s), no query or fragment.
    pub fn public_url(&self) -> Result<Option<String>, ConfigError> {
        let Some(text) = &self.public_url else {
            return Ok(None);
        };
        let bad = |why: &str| invalid("nostr.public_url", format!("{text:?} {why}"));
        let url = url::Url::parse(text).map_err(|_| bad("is not a URL"))?;
        if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
            return Err(bad("is not an https:// (or http://) URL with a host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("must not have a query or fragment"));
        }
        Ok(Some(text.trim_end_matches('/').to_owned()))
    }
}

/// How often the index relays are asked for the relay lists again: lists
/// change seldom, and a new registration is asked for at once anyway.
pub const DEFAULT_RELAY_LISTS_REFRESH: Duration = Duration::from_secs(6 * 60 * 60);

/// The shortest refresh allowed: more often only loads the index relays.
const MIN_RELAY_LISTS_REFRESH: Duration = Duration::from_secs(60);

/// `text` as a relay connection's URL, with `template`'s other settings.
fn relay_config(
    setting: &str,
    text: &str,
    template: &RelayConfig,
) -> Result<RelayConfig, ConfigError> {
    let url = url::Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "ws" | "wss"))
        .ok_or_else(|| invalid(setting, format!("{text:?} is not a ws:// or wss:// URL")))?;
    Ok(RelayConfig {
        url,
        // The operator's choice, whatever the address.
        public_only: false,
        ..template.clone()
    })
}

/// Who may register through a Nostr registration API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NostrAuth {
    /// Anyone may register any key: for apps whose keys are ephemeral
    /// (Mostro's trade keys) or that cannot sign requests.
    Open,
    /// A NIP-98 header signed by the key being registered.
    #[default]
    Nip98,
}

impl NostrAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Nip98 => "nip98",
        }
    }
}

/// `[sigil_api]`: the Sigil-compatible `POST /register` and `DELETE
/// /unregister`, off unless `app_id` is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigilApiConfig {
    /// The app whose transports and credentials the registrations use.
    pub app_id: Option<String>,
    /// `nip98` (default; needs `nostr.public_url`) or `open`, as Sigil proposes.
    pub auth: NostrAuth,
}

impl SigilApiConfig {
    fn validate(
        &self,
        nostr: &NostrConfig,
        apps: &BTreeMap<String, AppConfig>,
    ) -> Result<(), ConfigError> {
        configured_app("sigil_api.app_id", &self.app_id, apps)?;
        let needs_url = self.app_id.is_some() && self.auth == NostrAuth::Nip98;
        if needs_url && nostr.public_url.is_none() {
            return Err(invalid(
                "sigil_api.auth",
                "nip98 checks the URL a request was sent to: set nostr.public_url, or auth = \"open\"",
            ));
        }
        Ok(())
    }
}

/// `[status]`: the Status push-notification server (spec 71, as status-go
/// speaks it), off unless `nwaku_url` is set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// The REST API of the nwaku node herald reaches Waku through
    /// (`HERALD_STATUS_NWAKU_URL`), such as `http://127.0.0.1:8645`.
    pub nwaku_url: Option<String>,
    /// A gorush herald POSTs status-go's request to (`HERALD_STATUS_GORUSH_URL`),
    /// instead of delivering through the apps below.
    pub gorush_url: Option<String>,
    /// Apps with an `[apns]` table for APN tokens: a registration goes to
    /// the one whose APNs topic is its `apn_topic`, else to the first.
    pub apns_apps: Vec<String>,
    /// The app with an `[fcm]` table for Firebase tokens.
    pub fcm_app: Option<String>,
    /// herald's Status identity (64 hex digits); unset, one is generated on
    /// the first start and kept in the store.
    pub key_file: Option<PathBuf>,
    /// How often nwaku's message cache is read (it keeps only the newest
    /// messages: `--rest-relay-cache-capacity`).
    pub poll_interval_ms: u64,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            nwaku_url: None,
            gorush_url: None,
            apns_apps: Vec::new(),
            fcm_app: None,
            key_file: None,
            // nwaku caches 50 messages per shard by default; Status's shard
            // carries far fewer than 50 in 250 ms.
            poll_interval_ms: 250,
        }
    }
}

/// `[status]`, checked and parsed.
#[derive(Debug, Clone)]
pub struct StatusSettings {
    pub nwaku_url: url::Url,
    pub gorush_url: Option<url::Url>,
    pub apps: herald_status::delivery::DeliveryApps,
    pub poll_interval: Duration,
}

impl StatusConfig {
    /// The server's settings; `None` when it is off.
    pub fn settings(
        &self,
        apps: &BTreeMap<String, AppConfig>,
    ) -> Result<Option<StatusSettings>, ConfigError> {
        let Some(nwaku) = &self.nwaku_url else {
            return Ok(None);
        };
        let http_url = |setting: &str, text: &str| {
            url::Url::parse(text)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .ok_or_else(|| invalid(setting, format!("{text:?} is not an http(s):// URL")))
        };
        let mut delivery = herald_status::delivery::DeliveryApps::default();
        for id in &self.apns_apps {
            let apns = apps.get(id).and_then(|a| a.apns.as_ref()).ok_or_else(|| {
                invalid(
                    "status.apns_apps",
                    format!("names app {id:?}, which has no [apns] table"),
                )
            })?;
            delivery.apns.push((app_id(id), apns.topic.clone()));
        }
        if let Some(id) = &self.fcm_app {
            if apps.get(id).and_then(|a| a.fcm.as_ref()).is_none() {
                return Err(invalid(
                    "status.fcm_app",
                    format!("names app {id:?}, which has no [fcm] table"),
                ));
            }
            delivery.fcm = Some(app_id(id));
        }
        if self.poll_interval_ms == 0 {
            return Err(invalid("status.poll_interval_ms", "must be above 0"));
        }
        Ok(Some(StatusSettings {
            nwaku_url: http_url("status.nwaku_url", nwaku)?,
            gorush_url: self
                .gorush_url
                .as_deref()
                .map(|g| http_url("status.gorush_url", g))
                .transpose()?,
            apps: delivery,
            poll_interval: Duration::from_millis(self.poll_interval_ms),
        }))
    }

    /// herald's Status identity from `key_file`, if one is configured.
    pub fn key(&self) -> Result<Option<k256::SecretKey>, ConfigError> {
        let Some(path) = &self.key_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        herald_status::persistence::parse_secret(&text)
            .map(Some)
            .ok_or_else(|| {
                invalid(
                    "status.key_file",
                    format!(
                        "{}: not a secp256k1 secret key in 64 hex digits",
                        path.display()
                    ),
                )
            })
    }
}

fn app_id(id: &str) -> AppId {
    AppId::parse(id).expect("app ids are validated when the configuration loads")
}

/// An API's `app_id`, when set, must name a configured app.
fn configured_app(
    setting: &str,
    app: &Option<String>,
    apps: &BTreeMap<String, AppConfig>,
) -> Result<(), ConfigError> {
    match app {
        Some(app) if !apps.contains_key(app) => Err(invalid(
            setting,
            format!("names app {app:?}, which is not configured"),
        )),
        _ => Ok(()),
    }
}

/// A secret given inline or in a file (trimmed), never both.
fn secret(
    name: &str,
    inline: Option<&String>,
    file: Option<&PathBuf>,
) -> Result<Option<String>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(invalid(
            name,
            "give the value or the _file setting, not both",
        )),
        (Some(t), None) => Ok(Some(t.clone())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|t| Some(t.trim().to_owned()))
            .map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            }),
        (None, None) => Ok(None),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    pub max_attempts: u32,
    pub max_age_secs: u64,
    pub base_delay_ms: u64,
    pub max_delay_secs: u64,
    /// How long a dedupe key blocks the same notification to the same device.
    pub dedupe_window_secs: u64,
    pub lease_secs: u64,
    pub poll_interval_ms: u64,
    pub drain_timeout_secs: u64,
    /// Concurrent sends per transport, by transport name.
    pub concurrency: BTreeMap<Transport, usize>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let d = DispatcherConfig::default();
        Self {
            max_attempts: d.retry.max_attempts,
            max_age_secs: d.retry.max_age.as_secs(),
            base_delay_ms: d.retry.base_delay.as_millis() as u64,
            max_delay_secs: d.retry.max_delay.as_secs(),
            // A day: long enough to absorb a source replaying its last hours.
            dedupe_window_secs: 24 * 60 * 60,
            lease_secs: d.lease.as_secs(),
            poll_interval_ms: d.poll_interval.as_millis() as u64,
            drain_timeout_secs: d.drain_timeout.as_secs(),
            concurrency: BTreeMap::new(),
        }
    }
}

impl DeliveryConfig {
    pub fn dispatcher(&self) -> DispatcherConfig {
        DispatcherConfig {
            concurrency: self.concurrency.iter().map(|(t, n)| (*t, *n)).collect(),
            retry: RetryPolicy {
                base_delay: Duration::from_millis(self.base_delay_ms),
                max_delay: Duration::from_secs(self.max_delay_secs),
                max_attempts: self.max_attempts,
                max_age: Duration::from_secs(self.max_age_secs),
            },
            lease: Duration::from_secs(self.lease_secs),
            poll_interval: Duration::from_millis(self.poll_interval_ms),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
        }
    }

    pub fn dedupe_window(&self) -> Duration {
        Duration::from_secs(self.dedupe_window_secs)
    }
}

/// One client application and its transports; a transport without a table is off.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub apns: Option<ApnsConfig>,
    pub unifiedpush: Option<UnifiedPushConfig>,
    pub webpush: Option<WebPushConfig>,
    pub fcm: Option<FcmConfig>,
    pub expo: Option<ExpoConfig>,
    pub gorush: Option<GorushConfig>,
    /// What the Nostr relay rules tell this app's devices; without a
    /// table, the `[nostr] kinds` as visible alerts.
    pub nostr: Option<NostrAppConfig>,
}

/// `[apps."<id>".nostr]`: the app's choice among the Nostr relay rules.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NostrAppConfig {
    /// The event kinds its devices are told about (a device's own `kinds`
    /// narrows them); empty, `[nostr] kinds`.
    pub kinds: Vec<u16>,
    /// Data-only wake-ups (iOS background pushes, Android high-priority
    /// data messages) instead of visible alerts.
    pub silent: bool,
}

impl AppConfig {
    /// Whether this app delivers through `transport`, or why not.
    pub fn transport_status(&self, transport: Transport) -> Result<(), String> {
        let enabled = match transport {
            Transport::UnifiedPush => self.unifiedpush.as_ref().map(|c| c.enabled),
            Transport::Fcm => self.fcm.as_ref().map(|c| c.enabled),
            Transport::Expo => self.expo.as_ref().map(|c| c.enabled),
            Transport::Gorush => self.gorush.as_ref().map(|c| c.enabled),
            Transport::WebPush => self.webpush.as_ref().map(|c| c.enabled),
            Transport::Apns => self.apns.as_ref().map(|c| c.enabled),
        };
        match enabled {
            Some(true) => Ok(()),
            Some(false) => Err("disabled (enabled = false)".into()),
            None => Err(format!("not configured (no [{transport}] table)")),
        }
    }
}

impl Config {
    /// Loads defaults, then `file`, then the `HERALD_*` variables in `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree = toml::Table::try_from(Config::default())
            .map_err(|e| invalid("defaults", e.to_string()))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let from_file: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| invalid(path.display().to_string(), e.to_string()))?;
            merge(&mut tree, from_file);
        }
        for (name, value) in env {
            apply_env(&mut tree, &name, &value)?;
        }
        let origin = file.map_or("configuration".to_owned(), |p| p.display().to_string());
        let config: Config = toml::Value::Table(tree)
            .try_into()
            .map_err(|e: toml::de::Error| invalid(origin, e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for id in self.apps.keys() {
            AppId::parse(id).map_err(|e| invalid(format!("apps.\"{id}\""), e.to_string()))?;
        }
        if self.admin_token.is_some() && self.admin_token_file.is_some() {
            return Err(invalid(
                "admin_token",
                "give admin_token or admin_token_file, not both",
            ));
        }
        if let Some(did) = &self.atproto.service_did {
            herald_atproto::did::Did::parse(did)
                .map_err(|e| invalid("atproto.service_did", e.to_string()))?;
            if self.atproto.public_url().is_none() {
                return Err(invalid(
                    "atproto.public_url",
                    "is required when service_did is a did:plc",
                ));
            }
        }
        configured_app("gorush_api.app_id", &self.gorush_api.app_id, &self.apps)?;
        self.mostro_api.validate(&self.apps)?;
        self.nostr.public_url()?;
        self.nostr.validate(&self.apps)?;
        self.nostr.relay_configs(&self.apps)?;
        self.nostr.index_relay_configs(&self.apps)?;
        self.sigil_api.validate(&self.nostr, &self.apps)?;
        self.status.settings(&self.apps)?;
        let d = &self.delivery;
        if d.max_attempts == 0 {
            return Err(invalid("delivery.max_attempts", "must be at least 1"));
        }
        if d.lease_secs == 0 || d.poll_interval_ms == 0 {
            return Err(invalid(
                "delivery",
                "lease_secs and poll_interval_ms must be above 0",
            ));
        }
        if self.http.max_body_bytes == 0 {
            return Err(invalid("http.max_body_bytes", "must be above 0"));
        }
        Ok(())
    }

    /// The admin token from wherever it is configured; `None` disables the admin API.
    pub fn admin_token(&self) -> Result<Option<String>, ConfigError> {
        let Some(token) = secret(
            "admin_token",
            self.admin_token.as_ref(),
            self.admin_token_file.as_ref(),
        )?
        else {
            return Ok(None);
        };
        if token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
            return Err(invalid(
                "admin_token",
                format!("is too short: at least {MIN_ADMIN_TOKEN_CHARS} characters"),
            ));
        }
        Ok(Some(token))
    }

    pub fn app(&self, id: &AppId) -> Option<&AppConfig> {
        self.apps.get(id.as_str())
    }

    /// Transports at least one app delivers through: the providers to start.
    pub fn enabled_transports(&self) -> Vec<Transport> {
        Transport::ALL
            .iter()
            .copied()
            .filter(|t| self.apps.values().any(|a| a.transport_status(*t).is_ok()))
            .collect()
    }
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Applies one environment variable to the configuration tree.
fn apply_env(tree: &mut toml::Table, name: &str, raw: &str) -> Result<(), ConfigError> {
    let Some(rest) = name.strip_prefix("HERALD_") else {
        return Ok(());
    };
    if NON_SETTING_VARS.contains(&name) || NON_SETTING_PREFIXES.iter().any(|p| name.starts_with(p))
    {
        return Ok(());
    }
    let path = setting_path(tree, rest);
    let (last, parents) = path.split_last().expect("split yields one part at least");
    let mut table = tree;
    for part in parents {
        table = match table.get_mut(part) {
            Some(toml::Value::Table(t)) => t,
            _ => return Err(invalid(name, "names no configuration section")),
        };
    }
    let value = match table.get(last) {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_owned()),
        Some(toml::Value::Boolean(_)) => {
            toml::Value::Boolean(match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => return Err(invalid(name, format!("expects true or false, got {raw:?}"))),
            })
        }
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| invalid(name, format!("expects a whole number, got {raw:?}")))?,
        ),
        Some(toml::Value::Table(_)) => return Err(invalid(name, "names a section, not a setting")),
        // Settings without a default (optional paths and secrets) are strings.
        None if KNOWN_OPTIONAL.contains(&path.join(".").as_str()) => {
            toml::Value::String(raw.to_owned())
        }
        _ => return Err(invalid(name, "is not a herald setting")),
    };
    table.insert(last.clone(), value);
    Ok(())
}

/// The key path an environment variable names: `__` separates levels; a name
/// without `__` that is no top-level setting may name `<section>_<key>`
/// (`HERALD_ATPROTO_SERVICE_DID` is `atproto.service_did`).
fn setting_path(tree: &toml::Table, rest: &str) -> Vec<String> {
    let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    if path.len() > 1 || tree.contains_key(&path[0]) || KNOWN_OPTIONAL.contains(&path[0].as_str()) {
        return path;
    }
    match path[0].split_once('_') {
        Some((section, key)) if matches!(tree.get(section), Some(toml::Value::Table(_))) => {
            vec![section.to_owned(), key.to_owned()]
        }
        _ => path,
    }
}

/// Optional settings, absent from the defaults, that the environment may set.
const KNOWN_OPTIONAL: &[&str] = &[
    "admin_token",
    "admin_token_file",
    "extra_ca_file",
    "gorush_api.app_id",
    "gorush_api.token",
    "gorush_api.token_file",
    "mostro_api.app_id",
    "nostr.public_url",
    "nostr.key_file",
    "sigil_api.app_id",
    "atproto.service_did",
    "atproto.public_url",
    "status.nwaku_url",
    "status.gorush_url",
    "status.fcm_app",
    "status.key_file",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn defaults_need_nothing() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://herald.db");
        assert!(!c.allow_private_endpoints);
        assert_eq!(c.admin_token().unwrap(), None);
        assert!(c.enabled_transports().is_empty());
    }

    #[test]
    fn environment_overrides_file_with_the_defaults_types() {
        let f = file(
            "listen = \"0.0.0.0:9000\"\n[delivery]\nmax_attempts = 3\n[apps.\"com.example.app\".unifiedpush]\n",
        );
        let c = Config::load(
            Some(f.path()),
            env(&[
                ("HERALD_LISTEN", "127.0.0.1:9999"),
                ("HERALD_ADMIN_TOKEN", "1234567890123456"),
                ("HERALD_ALLOW_PRIVATE_ENDPOINTS", "true"),
                ("HERALD_DELIVERY__MAX_ATTEMPTS", "5"),
                ("HERALD_CONFIG", "ignored"),
                ("HERALD_TEST_POSTGRES_URL", "ignored"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9999");
        assert_eq!(
            c.admin_token().unwrap().as_deref(),
            Some("1234567890123456")
        );
        assert!(c.allow_private_endpoints);
        assert_eq!(c.delivery.max_attempts, 5);
        assert_eq!(c.enabled_transports(), vec![Transport::UnifiedPush]);
    }

    #[test]
    fn section_settings_take_single_underscore_names_too() {
        let c = Config::load(
            None,
            env(&[
                ("HERALD_ATPROTO_SERVICE_DID", "did:web:push.example.com"),
                ("HERALD_ATPROTO_PLC_URL", "http://127.0.0.1:2582"),
                ("HERALD_ATPROTO__MAX_DEVICES_PER_ACCOUNT", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.atproto.service_did.as_deref(),
            Some("did:web:push.example.com")
        );
        assert_eq!(c.atproto.plc_url, "http://127.0.0.1:2582");
        assert_eq!(c.atproto.max_devices_per_account, 5);
        assert_eq!(
            c.atproto.public_url().as_deref(),
            Some("https://push.example.com")
        );
        let err =
            Config::load(None, env(&[("HERALD_ATPROTO_SERVICE_DID", "did:key:z6Mk")])).unwrap_err();
        assert!(err.to_string().contains("service_did"), "{err}");
    }

    #[test]
    fn unknown_settings_are_errors_that_name_them() {
        let err = Config::load(None, env(&[("HERALD_LISTN", "x")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_LISTN"), "{err}");
        let f = file("[delivery]\nmax_attempt = 3\n");
        let err = Config::load(Some(f.path()), env(&[])).unwrap_err();
        assert!(err.to_string().contains("max_attempt"), "{err}");
        let err =
            Config::load(None, env(&[("HERALD_DELIVERY__MAX_ATTEMPTS", "many")])).unwrap_err();
        assert!(err.to_string().contains("whole number"), "{err}");
        let f = file("[apps.\"bad app\".unifiedpush]\n");
        assert!(Config::load(Some(f.path()), env(&[])).is_err());
    }

    #[test]
    fn admin_token_comes_from_a_file_and_must_be_long() {
        let secret = file("  abcdefghijklmnopqrstuvwxyz\n");
        let c = Config::load(
            None,
            env(&[("HERALD_ADMIN_TOKEN_FILE", secret.path().to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(
            c.admin_token().unwrap().as_deref(),
            Some("abcdefghijklmnopqrstuvwxyz")
        );
        let c = Config::load(None, env(&[("HERALD_ADMIN_TOKEN", "short")])).unwrap();
        assert!(
            c.admin_token()
                .unwrap_err()
                .to_string()
                .contains("too short")
        );
    }

    #[test]
    fn the_mostro_api_is_off_by_default_with_mostros_limits() {
        let c = Config::load(None, env(&[])).unwrap();
        let m = &c.mostro_api;
        assert_eq!(m.app_id, None);
        assert_eq!(m.registration_ttl_secs, 48 * 60 * 60);
        assert_eq!(
            (m.notify_per_ip, m.notify_per_pubkey),
            (
                Rate {
                    per_minute: 120,
                    burst: 30
                },
                Rate {
                    per_minute: 30,
                    burst: 10
                }
            )
        );
        let f = file("[apps.\"org.example.mostro\".unifiedpush]\n");
        let c = Config::load(
            Some(f.path()),
            env(&[
                ("HERALD_MOSTRO_API__APP_ID", "org.example.mostro"),
                ("HERALD_MOSTRO_API__NOTIFY_PER_PUBKEY__PER_MINUTE", "60"),
            ]),
        )
        .unwrap();
        assert_eq!(c.mostro_api.app_id.as_deref(), Some("org.example.mostro"));
        assert_eq!(c.mostro_api.notify_per_pubkey.per_minute, 60);
        assert_eq!(c.mostro_api.notify_per_pubkey.burst, 10);
    }

    #[test]
    fn the_mostro_api_refuses_an_unknown_app_zero_rates_and_bad_instances() {
        for (variable, value, named) in [
            ("HERALD_MOSTRO_API__APP_ID", "org.example.none", "app_id"),
            (
                "HERALD_MOSTRO_API__NOTIFY_PER_IP__BURST",
                "0",
                "notify_per_ip",
            ),
            (
                "HERALD_MOSTRO_API__MAX_TRACKED_KEYS",
                "0",
                "max_tracked_keys",
            ),
        ] {
            let err = Config::load(None, env(&[(variable, value)])).unwrap_err();
            assert!(err.to_string().contains(named), "{err}");
        }
        let f = file("[mostro_api]\ntrusted_mostro_pubkeys = [\"npub1xyz\"]\n");
        let err = Config::load(Some(f.path()), env(&[])).unwrap_err();
        assert!(err.to_string().contains("trusted_mostro_pubkeys"), "{err}");
    }

    #[test]
    fn the_sigil_api_needs_a_public_url_unless_it_is_open() {
        let app = "[apps.\"org.example.sigil\".unifiedpush]\n[sigil_api]\napp_id = \"org.example.sigil\"\n";
        let f = file(app);
        let err = Config::load(Some(f.path()), env(&[])).unwrap_err();
        assert!(err.to_string().contains("nostr.public_url"), "{err}");
        let c = Config::load(Some(f.path()), env(&[("HERALD_SIGIL_API__AUTH", "open")])).unwrap();
        assert_eq!(c.sigil_api.auth, NostrAuth::Open);
        let c = Config::load(
            Some(f.path()),
            env(&[("HERALD_NOSTR__PUBLIC_URL", "https://push.example.org/")]),
        )
        .unwrap();
        assert_eq!(c.sigil_api.auth, NostrAuth::Nip98);
        assert_eq!(
            c.nostr.public_url().unwrap().as_deref(),
            Some("https://push.example.org")
        );
    }

    #[test]
    fn the_nostr_public_url_is_an_http_url_without_query() {
        for bad in [
            "push.example.org",
            "ftp://push.example.org",
            "https://push.example.org/?a=1",
        ] {
            let err = Config::load(None, env(&[("HERALD_NOSTR__PUBLIC_URL", bad)])).unwrap_err();
            assert!(err.to_string().contains("nostr.public_url"), "{bad}: {err}");
        }
        let c = Config::load(
            None,
            env(&[("HERALD_NOSTR_PUBLIC_URL", "https://example.org/push")]),
        )
        .unwrap();
        assert_eq!(
            c.nostr.public_url().unwrap().as_deref(),
            Some("https://example.org/push")
        );
    }

    #[test]
    fn the_nostr_key_file_gives_every_relay_herald_s_key_and_a_bad_one_is_named() {
        let key = herald_nostr::SecretKey::generate();
        let good = file(&format!("{}\n", key.to_hex()));
        let path = good.path().to_str().unwrap();
        let toml = file(&format!(
            "[nostr]\nkey_file = {path:?}\nrelays = [\"wss://a.example\", \"wss://b.example\"]\n"
        ));
        let c = Config::load(Some(toml.path()), env(&[])).unwrap();
        let relays = c.nostr.relay_configs(&c.apps).unwrap();
        assert_eq!(relays.len(), 2);
        for relay in relays {
            assert_eq!(relay.auth_key.unwrap().public_key(), key.public_key());
        }
        let bad = file("nsec1notahexkey");
        let bad_path = bad.path().to_str().unwrap();
        let err = Config::load(None, env(&[("HERALD_NOSTR__KEY_FILE", bad_path)])).unwrap_err();
        assert!(err.to_string().contains("nostr.key_file"), "{err}");
        assert!(!err.to_string().contains("notahexkey"), "{err}");
    }

    #[test]
    fn each_app_has_its_nostr_kinds_and_the_relays_are_asked_for_all_of_them() {
        let f = file(
            "[apps.\"chat.dm\".unifiedpush]\n[apps.\"chat.dm\".nostr]\nkinds = [4, 1059]\n\
             [apps.\"org.example.wake\".unifiedpush]\n[apps.\"org.example.wake\".nostr]\n\
             kinds = [1059, 7]\nsilent = true\n\
             [apps.\"social.client\".unifiedpush]\n\
             [nostr]\nrelays = [\"wss://relay.example\"]\nkinds = [1, 4]\n",
        );
        let c = Config::load(Some(f.path()), env(&[])).unwrap();
        let rules = c.nostr.app_rules(&c.apps);
        let summary: Vec<(String, Vec<u16>, bool)> = rules
            .into_iter()
            .map(|r| (r.app_id.unwrap().to_string(), r.kinds, r.silent))
            .collect();
        assert_eq!(
            summary,
            [
                ("chat.dm".to_owned(), vec![4, 1059], false),
                ("org.example.wake".to_owned(), vec![1059, 7], true),
                ("social.client".to_owned(), vec![1, 4], false),
            ]
        );
        assert_eq!(c.nostr.watched_kinds(&c.apps), [4, 1059, 7, 1]);
        let relays = c.nostr.relay_configs(&c.apps).unwrap();
        assert_eq!(relays[0].kinds, [4, 1059, 7, 1]);
        let none = Config::load(None, env(&[])).unwrap();
        assert_eq!(
            none.nostr.watched_kinds(&none.apps),
            herald_nostr::rules::DEFAULT_KINDS
        );
    }

    #[test]
    fn a_nostr_kind_the_rules_do_not_push_for_is_refused_where_it_is_named() {
        let f =
            file("[apps.\"chat.dm\".unifiedpush]\n[apps.\"chat.dm\".nostr]\nkinds = [4, 10000]\n");
        let err = Config::load(Some(f.path()), env(&[])).unwrap_err();
        assert!(
            err.to_string().contains("apps.\"chat.dm\".nostr.kinds"),
            "{err}"
        );
        assert!(err.to_string().contains("10000"), "{err}");
        let f = file("[nostr]\nkinds = [0]\n");
        let err = Config::load(Some(f.path()), env(&[])).unwrap_err();
        assert!(err.to_string().contains("nostr.kinds"), "{err}");
    }

    #[test]
    fn index_relays_ask_for_the_lists_and_the_account_relay_bounds_are_checked() {
        let c = Config::load(None, env(&[])).unwrap();
        assert!(
            c.nostr.index_relay_configs(&c.apps).unwrap().is_empty(),
            "off by default"
        );
        assert_eq!(c.nostr.account_relay_limits(), Default::default());
        let f = file(
            "[nostr]\nindex_relays = [\"wss://index.example\"]\nrelays_per_account = 3\n\
             allow_private_account_relays = true\nrelay_lists_refresh_secs = 3600\n",
        );
        let c = Config::load(
            Some(f.path()),
            env(&[("HERALD_NOSTR__MAX_ACCOUNT_RELAYS", "7")]),
        )
        .unwrap();
        let index = c.nostr.index_relay_configs(&c.apps).unwrap();
        assert_eq!(index[0].url.as_str(), "wss://index.example/");
        assert_eq!(index[0].watch, herald_nostr::relay::Watch::OwnLists);
        assert_eq!(index[0].refresh, Some(Duration::from_secs(3600)));
        assert!(
            !index[0].public_only,
            "configured relays are the operator's choice"
        );
        assert!(!c.nostr.account_relay_template(&c.apps).unwrap().public_only);
        let strict = Config::load(None, env(&[])).unwrap();
        assert!(
            strict
                .nostr
                .account_relay_template(&strict.apps)
                .unwrap()
                .public_only
        );
        let limits = c.nostr.account_relay_limits();
        assert_eq!(
            (limits.per_account, limits.total, limits.allow_private),
            (3, 7, true)
        );
        for (text, setting) in [
            (
                "index_relays = [\"https://index.example\"]",
                "nostr.index_relays",
            ),
            ("relays_per_account = 0", "nostr.relays_per_account"),
            ("max_account_relays = 0", "nostr.max_account_relays"),
            (
                "relay_lists_refresh_secs = 5",
                "nostr.relay_lists_refresh_secs",
            ),
        ] {
            let f = file(&format!("[nostr]\n{text}\n"));
            let err = Config::load(Some(f.path()), env(&[])).unwrap_err();
            assert!(err.to_string().contains(setting), "{text}: {err}");
        }
    }

    #[test]
    fn the_nostr_rate_limit_has_its_own_default_and_takes_the_environment() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(
            c.nostr.rate_limit.limit(),
            herald_nostr::relay_pipeline::DEFAULT_RATE_LIMIT
        );
        let f = file("[nostr]\nrate_limit = { pushes = 5, window_secs = 60 }\n");
        let c = Config::load(
            Some(f.path()),
            env(&[("HERALD_NOSTR__RATE_LIMIT__PUSHES", "0")]),
        )
        .unwrap();
        assert_eq!(c.nostr.rate_limit.limit().pushes, 0);
        assert_eq!(c.nostr.rate_limit.limit().window.as_secs(), 60);
        assert_eq!(
            c.atproto.rate_limit.limit(),
            herald_atproto::recipient_rate::DEFAULT_RATE_LIMIT
        );
    }

    #[test]
    fn transport_status_says_why_not() {
        let app = AppConfig::default();
        assert!(
            app.transport_status(Transport::UnifiedPush)
                .unwrap_err()
                .contains("not configured")
        );
        assert!(
            app.transport_status(Transport::Apns)
                .unwrap_err()
                .contains("no [apns] table")
        );
        let app = AppConfig {
            unifiedpush: Some(UnifiedPushConfig {
                enabled: false,
                ..UnifiedPushConfig::default()
            }),
            ..AppConfig::default()
        };
        assert!(
            app.transport_status(Transport::UnifiedPush)
                .unwrap_err()
                .contains("disabled")
        );
    }

    #[test]
    fn the_status_server_is_off_until_nwaku_is_named_and_urls_come_from_the_environment() {
        let c = Config::load(None, env(&[])).unwrap();
        assert!(c.status.settings(&c.apps).unwrap().is_none());
        let c = Config::load(
            None,
            env(&[
                ("HERALD_STATUS_NWAKU_URL", "http://127.0.0.1:8645"),
                ("HERALD_STATUS_GORUSH_URL", "http://127.0.0.1:8088/"),
            ]),
        )
        .unwrap();
        let settings = c.status.settings(&c.apps).unwrap().unwrap();
        assert_eq!(settings.nwaku_url.as_str(), "http://127.0.0.1:8645/");
        assert_eq!(
            settings.gorush_url.map(String::from).as_deref(),
            Some("http://127.0.0.1:8088/")
        );
        assert_eq!(settings.poll_interval, Duration::from_millis(250));
        for (var, value, says) in [
            ("HERALD_STATUS_NWAKU_URL", "ws://x", "nwaku_url"),
            ("HERALD_STATUS_GORUSH_URL", "not a url", "gorush_url"),
            (
                "HERALD_STATUS_NWAKU_UR",
                "http://x",
                "HERALD_STATUS_NWAKU_UR",
            ),
        ] {
            let mut vars = vec![(var, value)];
            if var != "HERALD_STATUS_NWAKU_URL" {
                vars.push(("HERALD_STATUS_NWAKU_URL", "http://127.0.0.1:8645"));
            }
            let err = Config::load(None, env(&vars)).unwrap_err();
            assert!(err.to_string().contains(says), "{var}: {err}");
        }
    }

    #[test]
    fn status_apps_must_have_the_transport_their_tokens_need() {
        let f = file(
            "[status]\nnwaku_url = \"http://127.0.0.1:8645\"\napns_apps = [\"ios\"]\nfcm_app = \"android\"\n\
             [apps.ios.apns]\nteam_id = \"T\"\nkey_id = \"K\"\nkey_file = \"/dev/null\"\ntopic = \"im.status.ethereum\"\n\
             [apps.android.unifiedpush]\n",
        );
        let err = Config::load(Some(f.path()), env(&[])).unwrap_err();
        assert!(err.to_string().contains("status.fcm_app"), "{err}");
        let f = file(
            "[status]\nnwaku_url = \"http://127.0.0.1:8645\"\napns_apps = [\"ios\"]\n\
             [apps.ios.apns]\nteam_id = \"T\"\nkey_id = \"K\"\nkey_file = \"/dev/null\"\ntopic = \"im.status.ethereum\"\n",
        );
        let c = Config::load(Some(f.path()), env(&[])).unwrap();
        let settings = c.status.settings(&c.apps).unwrap().unwrap();
        assert_eq!(settings.apps.apns[0].1, "im.status.ethereum");
        assert_eq!(settings.apps.fcm, None);
        let f = file("[status]\napns_apps = [\"nowhere\"]\nnwaku_url = \"http://127.0.0.1:1\"\n");
        let err = Config::load(Some(f.path()), env(&[])).unwrap_err();
        assert!(err.to_string().contains("status.apns_apps"), "{err}");
    }

    #[test]
    fn a_status_key_file_holds_64_hex_digits() {
        let good = file(&format!("{}\n", "01".repeat(32)));
        let bad = file("nope");
        let with = |path: &Path| StatusConfig {
            key_file: Some(path.to_owned()),
            ..StatusConfig::default()
        };
        assert!(with(good.path()).key().unwrap().is_some());
        let err = with(bad.path()).key().unwrap_err();
        assert!(err.to_string().contains("status.key_file"), "{err}");
        assert!(StatusConfig::default().key().unwrap().is_none());
    }
}

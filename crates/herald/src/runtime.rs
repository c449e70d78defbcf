//! Wiring: configuration in, a running store, providers, dispatcher and
//! fan-out out. `serve`, `send` and `bench` all start from here so they run
//! the same code a user runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use herald_atproto::block_backfill::BackfillQueue;
use herald_atproto::did::Did;
use herald_atproto::firehose_source::FirehoseConfig;
use herald_atproto::jetstream::JetstreamConfig;
use herald_atproto::recipients::RecipientIndex;
use herald_core::StoreError;
use herald_core::dispatcher::Dispatcher;
use herald_core::fan_out::FanOut;
use herald_core::model::{Account, AppId, Device, NewDevice, Platform, Transport};
use herald_core::provider::Provider;
use herald_core::store::{Queue, Store};
use herald_core::time::now_ms;
use herald_nostr::PublicKey;
use herald_push::apns::Apns;
use herald_push::expo::Expo;
use herald_push::fcm::Fcm;
use herald_push::gorush::Gorush;
use herald_push::webpush::WebPush;
use herald_push::{HttpClientConfig, UnifiedPush};
use herald_store::SqlStore;

use crate::config::{AppConfig, Config, NetworkSource};
use crate::mostro_api::NOSTR_NAMESPACE;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] herald_core::StoreError),
    #[error("{transport} provider: {reason}")]
    Provider {
        transport: Transport,
        reason: String,
    },
    #[error("atproto: {0}")]
    Atproto(String),
}

/// Why a registration was refused before it reached the store.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("unknown app {0:?}: it is not configured in herald")]
    UnknownApp(String),
    #[error("app {app:?} cannot use {transport}: {reason}")]
    TransportUnavailable {
        app: String,
        transport: Transport,
        reason: String,
    },
    #[error(
        "cannot choose a transport for this {platform} token in app {app:?}: it could go through {candidates}, which the app has not configured"
    )]
    NoTransport {
        app: String,
        platform: Platform,
        candidates: String,
    },
    #[error(transparent)]
    Invalid(#[from] herald_core::model::InvalidField),
}

/// The apps that configured one transport, with that transport's table.
fn apps_with<C: Clone>(
    config: &Config,
    table: impl Fn(&AppConfig) -> Option<&C>,
) -> Vec<(AppId, C)> {
    config
        .apps
        .iter()
        .filter_map(|(id, app)| {
            let id = AppId::parse(id).expect("app ids are validated when the configuration loads");
            table(app).map(|c| (id, c.clone()))
        })
        .collect()
}

/// Builds the provider for every transport some app uses. `store` lets
/// providers that learn of dead tokens after the fact (Expo receipts)
/// remove them; `herald send` runs without one.
pub fn providers(
    config: &Config,
    store: Option<Arc<dyn Store>>,
) -> Result<HashMap<Transport, Arc<dyn Provider>>, StartError> {
    let mut providers = HashMap::new();
    for transport in config.enabled_transports() {
        providers.insert(transport, provider(transport, config, store.clone())?);
    }
    Ok(providers)
}

/// Builds one transport's provider for the apps that use it.
pub fn provider(
    transport: Transport,
    config: &Config,
    store: Option<Arc<dyn Store>>,
) -> Result<Arc<dyn Provider>, StartError> {
    let http = HttpClientConfig {
        extra_ca_file: config.extra_ca_file.clone(),
        resolver: None,
    };
    let failed = |reason: String| StartError::Provider { transport, reason };
    let provider: Arc<dyn Provider> = match transport {
        Transport::UnifiedPush => Arc::new(
            UnifiedPush::new(
                &http,
                apps_with(config, |a| a.unifiedpush.as_ref()),
                config.allow_private_endpoints,
            )
            .map_err(|e| failed(e.to_string()))?,
        ),
        Transport::WebPush => Arc::new(
            WebPush::new(
                &http,
                apps_with(config, |a| a.webpush.as_ref()),
                config.allow_private_endpoints,
            )
            .map_err(|e| failed(e.to_string()))?,
        ),
        Transport::Fcm => Arc::new(
            Fcm::new(&http, apps_with(config, |a| a.fcm.as_ref()))
                .map_err(|e| failed(e.to_string()))?,
        ),
        Transport::Expo => Arc::new(
            Expo::new(&http, apps_with(config, |a| a.expo.as_ref()), store)
                .map_err(|e| failed(e.to_string()))?,
        ),
        Transport::Gorush => Arc::new(
            Gorush::new(&http, apps_with(config, |a| a.gorush.as_ref()))
                .map_err(|e| failed(e.to_string()))?,
        ),
        Transport::Apns => Arc::new(
            Apns::new(&http, apps_with(config, |a| a.apns.as_ref()))
                .map_err(|e| failed(e.to_string()))?,
        ),
    };
    Ok(provider)
}

/// Everything `serve` runs.
pub struct Runtime {
    pub config: Arc<Config>,
    pub store: Arc<SqlStore>,
    pub providers: HashMap<Transport, Arc<dyn Provider>>,
    pub dispatcher: Arc<Dispatcher>,
    pub fan_out: FanOut,
    /// Present when herald has an AT Protocol identity.
    pub atproto: Option<crate::atproto::AtprotoService>,
    /// AT Protocol accounts with a device: whom the rules may notify.
    pub recipients: Arc<RecipientIndex>,
    /// Accounts whose past blocks are still to be read from their PDS.
    pub backfill: Arc<BackfillQueue>,
    /// The AT Protocol accounts registered before this start, until the
    /// source takes them to read the past blocks of those it has not kept.
    pub accounts_at_start: Mutex<Vec<Did>>,
    /// The Jetstream source's settings, when it is to run.
    pub jetstream_config: Option<JetstreamConfig>,
    /// The firehose source's settings, when it is to run instead.
    pub firehose_config: Option<FirehoseConfig>,
    /// Set once the AT Protocol source (Jetstream or firehose) has started.
    pub source_health: OnceLock<crate::atproto_source::SourceHealth>,
    /// Nostr keys with a device: whom the relays are watched for.
    pub nostr_recipients: Arc<herald_nostr::recipients::RecipientIndex>,
    /// The Nostr keys registered before this start, until the relay
    /// source takes them: herald watched them before it stopped.
    pub nostr_keys_at_start: Mutex<Vec<PublicKey>>,
    /// Set once the relay source has started.
    pub nostr_relays_health: OnceLock<crate::nostr_relays::RelaysHealth>,
}

impl Runtime {
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let store = Arc::new(herald_store::open(&config.database_url).await?);
        let providers = providers(&config, Some(Arc::clone(&store) as Arc<dyn Store>))?;
        let dispatcher = Arc::new(Dispatcher::new(
            Arc::clone(&store) as Arc<dyn Store>,
            Arc::clone(&store) as Arc<dyn Queue>,
            providers.values().cloned().collect(),
            config.delivery.dispatcher(),
        ));
        let fan_out = FanOut::new(
            Arc::clone(&store) as Arc<dyn Store>,
            Arc::clone(&store) as Arc<dyn Queue>,
            providers.keys().copied().collect(),
            config.delivery.dedupe_window(),
            dispatcher.wake(),
        );
        let atproto =
            crate::atproto::AtprotoService::from_config(&config).map_err(StartError::Atproto)?;
        let settings = &config.atproto;
        let (jetstream_config, firehose_config) = match (&atproto, settings.source) {
            (Some(_), NetworkSource::Jetstream) if settings.jetstream.enabled => (
                Some(
                    settings
                        .jetstream
                        .source_config()
                        .map_err(StartError::Atproto)?,
                ),
                None,
            ),
            (Some(_), NetworkSource::Firehose) => (
                None,
                Some(
                    settings
                        .firehose
                        .source_config()
                        .map_err(StartError::Atproto)?,
                ),
            ),
            _ => (None, None),
        };
        let recipients = Arc::new(RecipientIndex::new());
        let mut accounts_at_start = Vec::new();
        for account in store.accounts_in(ATPROTO_NAMESPACE).await? {
            if let Some(did) = atproto_did(&account) {
                recipients.insert(did.clone());
                accounts_at_start.push(did);
            }
        }
        let nostr_recipients = Arc::new(herald_nostr::recipients::RecipientIndex::new());
        let mut nostr_keys_at_start = Vec::new();
        for account in store.accounts_in(NOSTR_NAMESPACE).await? {
            if let Some(key) = nostr_key(&account) {
                nostr_recipients.insert(key);
                nostr_keys_at_start.push(key);
            }
        }
        Ok(Self {
            config: Arc::new(config),
            store,
            providers,
            dispatcher,
            fan_out,
            atproto,
            recipients,
            backfill: Arc::new(BackfillQueue::new()),
            accounts_at_start: Mutex::new(accounts_at_start),
            jetstream_config,
            firehose_config,
            source_health: OnceLock::new(),
            nostr_recipients,
            nostr_keys_at_start: Mutex::new(nostr_keys_at_start),
            nostr_relays_health: OnceLock::new(),
        })
    }

    /// Checks a registration against the app's configuration and the
    /// transport's own rules, before anything is stored, and returns it as the
    /// provider stores it.
    pub async fn accept_registration(
        &self,
        device: NewDevice,
    ) -> Result<NewDevice, RegistrationError> {
        device.validate()?;
        let app = self
            .config
            .app(&device.app_id)
            .ok_or_else(|| RegistrationError::UnknownApp(device.app_id.to_string()))?;
        let unavailable = |reason: String| RegistrationError::TransportUnavailable {
            app: device.app_id.to_string(),
            transport: device.transport,
            reason,
        };
        app.transport_status(device.transport)
            .map_err(unavailable)?;
        let provider = self
            .providers
            .get(&device.transport)
            .ok_or_else(|| unavailable("no provider running".into()))?;
        Ok(provider.accept_registration(device).await?)
    }

    /// The transport for a registration that names none: the first that the
    /// token's shape allows and the app has configured.
    pub fn infer_transport(
        &self,
        app_id: &AppId,
        platform: Platform,
        token: &str,
    ) -> Result<Transport, RegistrationError> {
        let app = self
            .config
            .app(app_id)
            .ok_or_else(|| RegistrationError::UnknownApp(app_id.to_string()))?;
        let usable =
            |t: Transport| app.transport_status(t).is_ok() && self.providers.contains_key(&t);
        herald_push::routing::infer(platform, token, usable).ok_or_else(|| {
            let shapes: Vec<&str> = herald_push::routing::candidates(platform, token)
                .iter()
                .map(|t| t.as_str())
                .collect();
            RegistrationError::NoTransport {
                app: app_id.to_string(),
                platform,
                candidates: if shapes.is_empty() {
                    "none; name the transport".into()
                } else {
                    shapes.join(", ")
                },
            }
        })
    }

    /// Every app a provider's service refused most recently, and why.
    pub fn misconfigurations(&self) -> Vec<(AppId, Transport, String)> {
        let mut all: Vec<_> = self
            .providers
            .iter()
            .flat_map(|(t, p)| {
                p.misconfigurations()
                    .into_iter()
                    .map(move |(app, why)| (app, *t, why))
            })
            .collect();
        all.sort();
        all
    }

    pub fn knows_app(&self, app: &AppId) -> bool {
        self.config.app(app).is_some()
    }

    /// Stores a device and, for an AT Protocol or Nostr account, tells the
    /// rules at once that the account may now be notified.
    pub async fn store_device(&self, device: &NewDevice) -> Result<Device, StoreError> {
        let stored = self.store.upsert_device(device, now_ms()).await?;
        if let Some(did) = atproto_did(&device.account)
            && self.recipients.insert(did.clone())
        {
            self.backfill.push(did);
        }
        if let Some(key) = nostr_key(&device.account) {
            self.nostr_recipients.insert(key);
        }
        Ok(stored)
    }

    /// After an account lost a device: an AT Protocol or Nostr account
    /// with none left leaves its recipient index.
    pub async fn forget_if_deviceless(&self, account: &Account) -> Result<(), StoreError> {
        if let Some(did) = atproto_did(account)
            && self.store.devices_for_account(account).await?.is_empty()
        {
            self.recipients.remove(&did);
        }
        if let Some(key) = nostr_key(account)
            && self.store.devices_for_account(account).await?.is_empty()
        {
            self.nostr_recipients.remove(&key);
        }
        Ok(())
    }
}

/// The account namespace of AT Protocol users (`atproto:<did>`).
const ATPROTO_NAMESPACE: &str = "atproto";

/// The DID of an `atproto:` account; `None` for other namespaces, or an id
/// that is not a DID (an operator may use the namespace loosely).
fn atproto_did(account: &Account) -> Option<Did> {
    let id = account.as_str().strip_prefix("atproto:")?;
    Did::parse(id).ok()
}

/// The key of a `nostr:` account; `None` for other namespaces, or an id
/// that is not 64 lowercase hex digits.
fn nostr_key(account: &Account) -> Option<PublicKey> {
    let id = account.as_str().strip_prefix("nostr:")?;
    PublicKey::parse_hex(id).ok()
}

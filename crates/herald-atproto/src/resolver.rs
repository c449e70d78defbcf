//! Resolving DIDs to their documents, safely and with a cache.
//!
//! `did:plc` goes to the configured PLC directory, a URL the operator chose.
//! `did:web` names a host anyone can choose, so its URL goes through the
//! public-endpoint guard (https on a public address, checked again on the
//! resolved IPs at connect time; no redirects), exactly like a device
//! endpoint. Documents are capped at 256 KiB and must name the DID they were
//! fetched for. Results are cached for `cache_ttl`; failures for a short
//! `negative_ttl`, so a flood of tokens from a broken DID costs one fetch
//! per interval, while a fixed DID is seen again quickly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use herald_http::public_endpoint::{self, PublicOnlyResolver};
use herald_http::{HttpClientConfig, response::describe_transport_error};
use reqwest::Client;

use crate::did::{Did, DidDocument, PublicKey};
use crate::service_auth::{KeyResolver, ResolveError};

/// Bluesky's PLC directory.
pub const DEFAULT_PLC_URL: &str = "https://plc.directory";
/// Largest DID document read; real ones are about 1 KiB.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Documents cached at once; beyond this the expired, then the oldest, go.
const MAX_CACHED: usize = 100_000;
/// Time allowed for one resolution.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ResolverConfig {
    pub plc_url: String,
    /// Lets did:web hosts be loopback or private, over plain http (tests, labs).
    pub allow_private: bool,
    pub cache_ttl: Duration,
    pub negative_ttl: Duration,
    pub extra_ca_file: Option<std::path::PathBuf>,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            plc_url: DEFAULT_PLC_URL.into(),
            allow_private: false,
            // Keys rotate rarely, and a failed signature re-resolves anyway.
            cache_ttl: Duration::from_secs(60 * 60),
            negative_ttl: Duration::from_secs(30),
            extra_ca_file: None,
        }
    }
}

struct Cached {
    result: Result<Arc<DidDocument>, ResolveError>,
    expires: Instant,
    stored: Instant,
}

pub struct DidResolver {
    config: ResolverConfig,
    /// For the operator's PLC directory.
    plc: Client,
    /// For hosts accounts name themselves (did:web hosts, PDSes): public
    /// addresses only, unless allowed.
    web: Client,
    cache: Mutex<HashMap<String, Cached>>,
}

impl DidResolver {
    pub fn new(config: ResolverConfig) -> Result<Self, ResolveError> {
        let base = HttpClientConfig {
            extra_ca_file: config.extra_ca_file.clone(),
            resolver: None,
        };
        let mut guarded = base.clone();
        if !config.allow_private {
            guarded.resolver = Some(Arc::new(PublicOnlyResolver));
        }
        let build = |c: &HttpClientConfig| c.build().map_err(|e| ResolveError(e.to_string()));
        Ok(Self {
            plc: build(&base)?,
            web: build(&guarded)?,
            config,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The document of `did`, from the cache unless `fresh`.
    pub async fn resolve(&self, did: &Did, fresh: bool) -> Result<Arc<DidDocument>, ResolveError> {
        if !fresh && let Some(hit) = self.cached(did) {
            return hit;
        }
        let result = self.fetch(did).await.map(Arc::new);
        let ttl = if result.is_ok() {
            self.config.cache_ttl
        } else {
            self.config.negative_ttl
        };
        self.store(did, result.clone(), ttl);
        result
    }

    /// The guarded client for a host an account named, with whether
    /// private addresses are allowed: the PDS in a DID document is as
    /// untrusted as a did:web host, and is read the same way
    /// (`crate::pds`).
    pub(crate) fn account_hosts(&self) -> (&Client, bool) {
        (&self.web, self.config.allow_private)
    }

    fn cached(&self, did: &Did) -> Option<Result<Arc<DidDocument>, ResolveError>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(did.as_str())
            .filter(|c| c.expires > Instant::now())
            .map(|c| c.result.clone())
    }

    fn store(&self, did: &Did, result: Result<Arc<DidDocument>, ResolveError>, ttl: Duration) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, c| c.expires > now);
        }
        if cache.len() >= MAX_CACHED {
            let oldest = cache
                .iter()
                .min_by_key(|(_, c)| c.stored)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                cache.remove(&k);
            }
        }
        cache.insert(
            did.as_str().to_owned(),
            Cached {
                result,
                expires: now + ttl,
                stored: now,
            },
        );
    }

    async fn fetch(&self, did: &Did) -> Result<DidDocument, ResolveError> {
        let (client, url) = match did {
            Did::Plc(id) => (
                &self.plc,
                format!("{}/{id}", self.config.plc_url.trim_end_matches('/')),
            ),
            Did::Web { host, .. } => (&self.web, self.web_url(host)?),
        };
        let response = client
            .get(&url)
            .timeout(RESOLVE_TIMEOUT)
            .header(
                reqwest::header::ACCEPT,
                "application/did+ld+json, application/json",
            )
            .send()
            .await
            .map_err(|e| {
                ResolveError(format!(
                    "fetching the DID document of {did}: {}",
                    describe_transport_error(e)
                ))
            })?;
        if !response.status().is_success() {
            return Err(ResolveError(format!(
                "fetching the DID document of {did}: HTTP {}",
                response.status()
            )));
        }
        let body = read_capped(response, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|why| ResolveError(format!("DID document of {did}: {why}")))?;
        let document: DidDocument = serde_json::from_slice(&body).map_err(|e| {
            ResolveError(format!(
                "DID document of {did} is not a valid document: {e}"
            ))
        })?;
        if document.id != did.as_str() {
            return Err(ResolveError(format!(
                "the document fetched for {did} is for {:?}",
                document.id
            )));
        }
        Ok(document)
    }

    /// `https://host/.well-known/did.json`, through the guard; plain http is
    /// allowed only where private endpoints are (a local test PDS or lab).
    fn web_url(&self, host: &str) -> Result<String, ResolveError> {
        let scheme = if self.config.allow_private {
            "http"
        } else {
            "https"
        };
        let url = format!("{scheme}://{host}/.well-known/did.json");
        public_endpoint::check_url(&url, self.config.allow_private)
            .map(|u| u.to_string())
            .map_err(|e| ResolveError(format!("did:web host {host} {e}")))
    }
}

/// Reads a body, refusing it as soon as it passes `max` bytes.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading: {}", describe_transport_error(e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(format!("larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[async_trait]
impl KeyResolver for DidResolver {
    async fn signing_key(
        &self,
        did: &Did,
        key_id: &str,
        fresh: bool,
    ) -> Result<PublicKey, ResolveError> {
        let document = self.resolve(did, fresh).await?;
        document
            .signing_key(did.as_str(), key_id)
            .map_err(|e| ResolveError(e.to_string()))
    }
}

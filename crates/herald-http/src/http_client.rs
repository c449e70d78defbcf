//! The HTTP client every provider is built on.
//!
//! rustls with the ring provider (no OpenSSL, no aws-lc C build), HTTP/2 where
//! the server offers it, bounded timeouts, and no redirects: a push service
//! that redirects is misbehaving, and following a redirect would let a
//! device-supplied URL steer herald to an address the endpoint guard refused.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Client;
use reqwest::dns::Resolve;

/// Time allowed to open a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a whole request; below the dispatcher's 60-s lease.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per host: enough for bursts to one push service.
const POOL_IDLE_PER_HOST: usize = 32;

/// Installs ring as rustls' process-wide crypto provider. Idempotent; call
/// once at start-up before any TLS client or server is built.
pub fn install_crypto_provider() {
    // An error means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("cannot read CA file {path}: {source}")]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CA file {path} holds no usable PEM certificate: {reason}")]
    BadCa { path: PathBuf, reason: String },
    #[error("cannot build HTTP client: {0}")]
    Build(String),
}

/// What a provider's client needs from configuration.
#[derive(Clone, Default)]
pub struct HttpClientConfig {
    /// PEM file of extra CAs to trust beside the system's (a private push
    /// service, or a test stand-in).
    pub extra_ca_file: Option<PathBuf>,
    /// Resolves host names; the endpoint guard's resolver for device URLs.
    pub resolver: Option<Arc<dyn Resolve>>,
}

impl HttpClientConfig {
    pub fn build(&self) -> Result<Client, HttpClientError> {
        self.builder()?
            .build()
            .map_err(|e| HttpClientError::Build(e.to_string()))
    }

    /// The configured builder, for a provider that sets more (APNs forces HTTP/2).
    pub fn builder(&self) -> Result<reqwest::ClientBuilder, HttpClientError> {
        install_crypto_provider();
        let mut builder = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &self.extra_ca_file {
            let pem = std::fs::read(path).map_err(|source| HttpClientError::ReadCa {
                path: path.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                HttpClientError::BadCa {
                    path: path.clone(),
                    reason: e.to_string(),
                }
            })?;
            if certs.is_empty() {
                return Err(HttpClientError::BadCa {
                    path: path.clone(),
                    reason: "no certificate found".into(),
                });
            }
            builder = builder.tls_certs_merge(certs);
        }
        if let Some(resolver) = &self.resolver {
            builder = builder.dns_resolver(Arc::clone(resolver));
        }
        Ok(builder)
    }
}

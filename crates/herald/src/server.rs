//! The HTTP server: routes, limits, and a graceful shutdown that lets
//! deliveries in flight finish.
//!
//! Shutdown order matters: stop accepting requests first (nothing new is
//! enqueued), then stop the dispatcher and wait for its attempts in flight,
//! then close the store. Whatever is still queued stays in the store for the
//! next start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use herald_core::store::{Queue, Store};
use herald_core::time::now_ms;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::sync::watch;
use tower_http::timeout::TimeoutLayer;

use crate::api::admin;
use crate::api::error::ApiError;
use crate::runtime::Runtime;

/// How often expired dedupe keys are purged from the store.
const DEDUPE_PURGE_INTERVAL: Duration = Duration::from_secs(60);

pub struct AppState {
    pub runtime: Runtime,
    pub admin_token: Option<String>,
    /// Bearer token of the gorush-compatible API, if one is configured.
    pub gorush_token: Option<String>,
    pub metrics: PrometheusHandle,
}

pub fn router(state: Arc<AppState>) -> Router {
    let config = &state.runtime.config;
    let admin = Router::new()
        .route(
            "/v1/devices",
            put(admin::register_device).delete(admin::remove_device),
        )
        .route("/v1/notifications", post(admin::post_notification))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            admin::require_admin,
        ));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/.well-known/did.json", get(crate::api::xrpc::did_document))
        .route(
            "/xrpc/app.bsky.notification.registerPush",
            post(crate::api::xrpc::register_push),
        )
        .route(
            "/xrpc/app.bsky.notification.unregisterPush",
            post(crate::api::xrpc::unregister_push),
        )
        .route(
            "/api/push",
            post(crate::api::gorush::push)
                .layer(DefaultBodyLimit::max(crate::api::gorush::MAX_BODY_BYTES)),
        )
        .merge(admin)
        .merge(crate::api::mostro::routes(&state))
        .merge(crate::api::nostr::routes(&state))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(config.http.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.http.request_timeout_secs),
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// Liveness, with the figures an operator looks at first.
async fn health(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let store = &state.runtime.store;
    let transports: Vec<_> = state.runtime.providers.keys().map(|t| t.as_str()).collect();
    let (devices, depth) = (store.count_devices().await, store.depth().await);
    let misconfigured: Vec<_> = state
        .runtime
        .misconfigurations()
        .into_iter()
        .map(|(app, transport, reason)| json!({"app": app, "transport": transport, "reason": reason}))
        .collect();
    let healthy = devices.is_ok() && depth.is_ok() && misconfigured.is_empty();
    let status = if healthy { "ok" } else { "degraded" };
    Json(json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "store": store.backend().name(),
        "devices": devices.ok(),
        "queue_depth": depth.ok(),
        "apps": state.runtime.config.apps.len(),
        "transports": transports,
        "misconfigured": misconfigured,
        "atproto": atproto_health(&state.runtime),
        "nostr": nostr_health(&state.runtime),
    }))
}

/// The AT Protocol side: registered accounts and the source, when it runs.
fn atproto_health(runtime: &Runtime) -> serde_json::Value {
    if runtime.atproto.is_none() {
        return serde_json::Value::Null;
    }
    let Some(kind) = crate::atproto_source::SourceKind::of(runtime) else {
        return json!({"accounts": runtime.recipients.len(), "jetstream": "disabled"});
    };
    let source = match runtime.source_health.get() {
        Some(health) => health.json(),
        None => json!("waiting for the first AT Protocol device"),
    };
    json!({"accounts": runtime.recipients.len(), kind.label(): source})
}

/// The Nostr side: registered keys and the relay source, when it runs.
fn nostr_health(runtime: &Runtime) -> serde_json::Value {
    let relays = match runtime.nostr_relays_health.get() {
        Some(health) => health.json(),
        None if runtime.config.nostr.relays.is_empty() => json!("disabled"),
        None => json!("waiting for the first Nostr device"),
    };
    json!({"accounts": runtime.nostr_recipients.len(), "relays": relays})
}

/// Readiness: 503 until the store answers.
async fn ready(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    match state.runtime.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"ready": true}))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": e.to_string()})),
        ),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let body = crate::metrics::render(&state.metrics, &state.runtime).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// Serves until SIGINT or SIGTERM, then shuts down in order.
pub async fn serve(state: Arc<AppState>) -> std::io::Result<()> {
    let listen = state.runtime.config.listen;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(address = %listener.local_addr()?, "herald listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    let dispatcher = tokio::spawn(Arc::clone(&state.runtime.dispatcher).run(stop_rx.clone()));
    let janitor = tokio::spawn(purge_dedupe(Arc::clone(&state), stop_rx.clone()));
    let expiry = tokio::spawn(crate::mostro_api::expire_registrations(
        Arc::clone(&state),
        stop_rx.clone(),
    ));
    let atproto = tokio::spawn(crate::atproto_source::run(
        Arc::clone(&state),
        stop_rx.clone(),
    ));
    let nostr_relays = tokio::spawn(crate::nostr_relays::run(
        Arc::clone(&state),
        stop_rx.clone(),
    ));
    let status = tokio::spawn(crate::status::run(Arc::clone(&state), stop_rx));

    // The peer's address is what the Mostro API's per-client limits key on.
    let app = router(Arc::clone(&state)).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped accepting requests; finishing deliveries in flight");
    let _ = stop_tx.send(true);
    let _ = dispatcher.await;
    let _ = janitor.await;
    let _ = expiry.await;
    // After the pipeline stored its last cursor; before the store closes.
    let _ = atproto.await;
    let _ = nostr_relays.await;
    let _ = status.await;
    state.runtime.store.close().await;
    tracing::info!("herald stopped");
    Ok(())
}

async fn purge_dedupe(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DEDUPE_PURGE_INTERVAL) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = state.runtime.store.purge_dedupe(now_ms()).await {
            tracing::warn!(error = %e, "purging expired dedupe keys failed");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

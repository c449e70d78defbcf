//! The DID resolver against a local PLC directory and did:web host.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herald_atproto::did::Did;
use herald_atproto::resolver::{DidResolver, MAX_DOCUMENT_BYTES, ResolverConfig};
use herald_atproto::service_auth::KeyResolver;
use serde_json::{Value, json};

const ALICE: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
const KEY: &str = "zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme";

#[derive(Default)]
struct Directory {
    documents: Mutex<HashMap<String, Value>>,
    raw: Mutex<HashMap<String, String>>,
    fetches: AtomicUsize,
}

type Shared = Arc<Directory>;

fn answer(dir: &Directory, key: &str) -> Response {
    dir.fetches.fetch_add(1, Ordering::SeqCst);
    if let Some(raw) = dir.raw.lock().unwrap().get(key) {
        return raw.clone().into_response();
    }
    match dir.documents.lock().unwrap().get(key) {
        Some(doc) => axum::Json(doc.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "DID not registered").into_response(),
    }
}

async fn plc(State(dir): State<Shared>, Path(did): Path<String>) -> Response {
    answer(&dir, &did)
}

async fn web(State(dir): State<Shared>) -> Response {
    answer(&dir, "web")
}

async fn start() -> (SocketAddr, Shared) {
    let dir = Shared::default();
    let app = Router::new()
        .route("/.well-known/did.json", get(web))
        .route("/{did}", get(plc))
        .with_state(Arc::clone(&dir));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, dir)
}

fn document(did: &str) -> Value {
    json!({"id": did, "verificationMethod": [{"id": "#atproto", "type": "Multikey", "controller": did, "publicKeyMultibase": KEY}]})
}

fn resolver(addr: SocketAddr, allow_private: bool) -> DidResolver {
    herald_http::install_crypto_provider();
    DidResolver::new(ResolverConfig {
        plc_url: format!("http://{addr}"),
        allow_private,
        negative_ttl: Duration::from_secs(60),
        ..ResolverConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn resolves_plc_dids_and_caches_them() {
    let (addr, dir) = start().await;
    dir.documents
        .lock()
        .unwrap()
        .insert(ALICE.into(), document(ALICE));
    let r = resolver(addr, false);
    let did = Did::parse(ALICE).unwrap();
    let key = r.signing_key(&did, "atproto", false).await.unwrap();
    assert_eq!(key.jwt_alg(), "ES256K");
    r.signing_key(&did, "atproto", false).await.unwrap();
    assert_eq!(
        dir.fetches.load(Ordering::SeqCst),
        1,
        "the second look-up came from the cache"
    );
    r.signing_key(&did, "atproto", true).await.unwrap();
    assert_eq!(
        dir.fetches.load(Ordering::SeqCst),
        2,
        "fresh bypasses the cache"
    );
}

#[tokio::test]
async fn resolves_did_web_on_loopback_only_when_private_endpoints_are_allowed() {
    let (addr, dir) = start().await;
    let did = format!("did:web:localhost%3A{}", addr.port());
    dir.documents
        .lock()
        .unwrap()
        .insert("web".into(), document(&did));
    let did = Did::parse(&did).unwrap();
    assert!(
        resolver(addr, true)
            .signing_key(&did, "atproto", false)
            .await
            .is_ok()
    );
    let err = resolver(addr, false)
        .resolve(&did, false)
        .await
        .unwrap_err();
    assert!(
        err.0.contains("local host") || err.0.contains("non-public"),
        "{err}"
    );
    assert_eq!(
        dir.fetches.load(Ordering::SeqCst),
        1,
        "the strict resolver connected nowhere"
    );
}

#[tokio::test]
async fn refuses_did_web_hosts_on_private_addresses_without_connecting() {
    let (addr, dir) = start().await;
    let r = resolver(addr, false);
    for did in [
        "did:web:127.0.0.1",
        "did:web:10.0.0.1",
        "did:web:169.254.169.254",
        "did:web:localhost",
        "did:web:100.64.0.1",
        "did:web:intranet",
    ] {
        let err = r
            .resolve(&Did::parse(did).unwrap(), false)
            .await
            .unwrap_err();
        assert!(
            err.0.contains("non-public") || err.0.contains("local host"),
            "{did}: {err}"
        );
    }
    assert_eq!(dir.fetches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn refuses_oversized_mismatched_and_keyless_documents() {
    let (addr, dir) = start().await;
    let big = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa";
    let wrong = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb";
    let keyless = "did:plc:cccccccccccccccccccccccc";
    let garbage = "did:plc:dddddddddddddddddddddddd";
    dir.raw.lock().unwrap().insert(
        big.into(),
        format!(
            r#"{{"id":"{big}","pad":"{}"}}"#,
            "x".repeat(MAX_DOCUMENT_BYTES)
        ),
    );
    dir.documents
        .lock()
        .unwrap()
        .insert(wrong.into(), document(ALICE));
    dir.documents.lock().unwrap().insert(keyless.into(), json!({"id": keyless, "verificationMethod": [{"id": "#atproto_label", "type": "Multikey", "publicKeyMultibase": KEY}]}));
    dir.raw
        .lock()
        .unwrap()
        .insert(garbage.into(), "<html>not json</html>".into());
    let r = resolver(addr, false);
    let err = |did: &str| {
        let r = &r;
        let did = Did::parse(did).unwrap();
        async move { r.signing_key(&did, "atproto", false).await.unwrap_err().0 }
    };
    assert!(err(big).await.contains("larger than"));
    assert!(err(wrong).await.contains("is for"));
    assert!(err(keyless).await.contains("no #atproto"));
    assert!(err(garbage).await.contains("not a valid document"));
    assert!(
        err("did:plc:eeeeeeeeeeeeeeeeeeeeeeee")
            .await
            .contains("404")
    );
}

#[tokio::test]
async fn failures_are_cached_briefly_and_fresh_retries() {
    let (addr, dir) = start().await;
    let r = resolver(addr, false);
    let did = Did::parse(ALICE).unwrap();
    assert!(r.resolve(&did, false).await.is_err());
    dir.documents
        .lock()
        .unwrap()
        .insert(ALICE.into(), document(ALICE));
    assert!(
        r.resolve(&did, false).await.is_err(),
        "the failure is cached"
    );
    assert_eq!(dir.fetches.load(Ordering::SeqCst), 1);
    assert!(r.resolve(&did, true).await.is_ok(), "fresh looks again");
}

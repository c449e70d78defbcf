//! A PDS's public record reads, as far as herald reads them:
//! `com.atproto.repo.getRecord` answers the records the test stores, and
//! for any other the reference PDS's 400 `RecordNotFound`. On cue it
//! answers slowly, or with any status and body the test chooses, to play a
//! slow or hostile PDS.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Default)]
struct Repos {
    /// `at://` URI → record value.
    records: RwLock<HashMap<String, Value>>,
    /// `at://` URI → a status and body to answer instead.
    answers: RwLock<HashMap<String, (StatusCode, String)>>,
    delay: RwLock<Duration>,
    requests: AtomicUsize,
}

pub struct PdsService {
    addr: SocketAddr,
    repos: Arc<Repos>,
}

#[derive(Deserialize)]
struct GetRecord {
    repo: Option<String>,
    collection: Option<String>,
    rkey: Option<String>,
}

fn xrpc_error(status: StatusCode, error: &str, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "message": message})),
    )
        .into_response()
}

async fn get_record(State(repos): State<Arc<Repos>>, Query(q): Query<GetRecord>) -> Response {
    repos.requests.fetch_add(1, Ordering::SeqCst);
    let delay = *repos.delay.read().unwrap();
    tokio::time::sleep(delay).await;
    let (Some(repo), Some(collection), Some(rkey)) = (q.repo, q.collection, q.rkey) else {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Params must have the properties \"repo\", \"collection\" and \"rkey\"".into(),
        );
    };
    let uri = format!("at://{repo}/{collection}/{rkey}");
    if let Some((status, body)) = repos.answers.read().unwrap().get(&uri) {
        return (*status, body.clone()).into_response();
    }
    match repos.records.read().unwrap().get(&uri) {
        Some(value) => axum::Json(json!({
            "uri": uri,
            "cid": "bafyreib25swk3a6waplk2ie75u4a3qfejnkoiezfowuz7sa74i7tief3di",
            "value": value,
        }))
        .into_response(),
        None => xrpc_error(
            StatusCode::BAD_REQUEST,
            "RecordNotFound",
            format!("Could not locate record: {uri}"),
        ),
    }
}

impl PdsService {
    pub async fn start() -> Self {
        let repos = Arc::new(Repos::default());
        let app = Router::new()
            .route("/xrpc/com.atproto.repo.getRecord", get(get_record))
            .with_state(Arc::clone(&repos));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, repos }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stores `value` as the record `at://<repo>/<collection>/<rkey>`.
    pub fn put_record(&self, repo: &str, collection: &str, rkey: &str, value: Value) {
        self.repos
            .records
            .write()
            .unwrap()
            .insert(format!("at://{repo}/{collection}/{rkey}"), value);
    }

    /// Answers `status` and `body` for that record instead.
    pub fn answer(&self, repo: &str, collection: &str, rkey: &str, status: u16, body: String) {
        let status = StatusCode::from_u16(status).expect("an HTTP status");
        self.repos
            .answers
            .write()
            .unwrap()
            .insert(format!("at://{repo}/{collection}/{rkey}"), (status, body));
    }

    /// Waits this long before every answer.
    pub fn set_delay(&self, delay: Duration) {
        *self.repos.delay.write().unwrap() = delay;
    }

    /// Requests received so far.
    pub fn requests(&self) -> usize {
        self.repos.requests.load(Ordering::SeqCst)
    }
}

//! A PDS's public record reads, as far as herald reads them:
//! `com.atproto.repo.getRecord` answers the records the test stores, and
//! for any other the reference PDS's 400 `RecordNotFound`;
//! `com.atproto.repo.listRecords` pages through a collection as the
//! reference PDS does (newest record key first, `limit` 1–100, default 50,
//! `cursor` = the last key of the page). On cue it answers slowly, or with
//! any status and body the test chooses, to play a slow or hostile PDS.

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
struct ListRecords {
    repo: Option<String>,
    collection: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// The reference PDS's page size bounds.
const LIST_LIMIT_DEFAULT: usize = 50;
const LIST_LIMIT_MAX: usize = 100;

async fn list_records(State(repos): State<Arc<Repos>>, Query(q): Query<ListRecords>) -> Response {
    repos.requests.fetch_add(1, Ordering::SeqCst);
    let (Some(repo), Some(collection)) = (q.repo, q.collection) else {
        return xrpc_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Params must have the properties \"repo\" and \"collection\"".into(),
        );
    };
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => LIST_LIMIT_DEFAULT,
        Some(Ok(n)) if (1..=LIST_LIMIT_MAX).contains(&n) => n,
        Some(_) => {
            return xrpc_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "limit must be an integer from 1 to 100".into(),
            );
        }
    };
    let prefix = format!("at://{repo}/{collection}/");
    if let Some((status, body)) = repos.answers.read().unwrap().get(&prefix) {
        return (*status, body.clone()).into_response();
    }
    let mut page: Vec<(String, Value)> = repos
        .records
        .read()
        .unwrap()
        .iter()
        .filter_map(|(uri, value)| Some((uri.strip_prefix(&prefix)?.to_owned(), value.clone())))
        .filter(|(rkey, _)| q.cursor.as_ref().is_none_or(|c| rkey < c))
        .collect();
    page.sort_by(|a, b| b.0.cmp(&a.0));
    page.truncate(limit);
    let cursor = page.last().map(|(rkey, _)| rkey.clone());
    let records: Vec<Value> = page
        .into_iter()
        .map(|(rkey, value)| {
            json!({
                "uri": format!("{prefix}{rkey}"),
                "cid": "bafyreib25swk3a6waplk2ie75u4a3qfejnkoiezfowuz7sa74i7tief3di",
                "value": value,
            })
        })
        .collect();
    let mut answer = json!({ "records": records });
    if let Some(cursor) = cursor {
        answer["cursor"] = json!(cursor);
    }
    axum::Json(answer).into_response()
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
            .route("/xrpc/com.atproto.repo.listRecords", get(list_records))
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

    /// Answers `status` and `body` to every listing of that collection.
    pub fn answer_listing(&self, repo: &str, collection: &str, status: u16, body: String) {
        let status = StatusCode::from_u16(status).expect("an HTTP status");
        self.repos
            .answers
            .write()
            .unwrap()
            .insert(format!("at://{repo}/{collection}/"), (status, body));
    }

    /// Serves listings normally again.
    pub fn clear_answers(&self) {
        self.repos.answers.write().unwrap().clear();
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

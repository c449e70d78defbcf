//! Reading an account's records from its own PDS, not from an AppView.
//!
//! The PDS is the account's own statement of its records, and the only
//! source that needs nobody's permission; the public AppView the Go gateway
//! read profiles from is a third party that may refuse or disappear
//! (atproto.md §14). But the PDS URL comes from the account's DID document,
//! so it is as untrusted as a did:web host: it goes through the same
//! public-endpoint guard and guarded client as the resolver's did:web
//! fetches (no private or local addresses unless allowed, checked again at
//! connect time; no redirects), and its answer is read under a short
//! timeout and a size cap.

use std::time::Duration;

use herald_http::public_endpoint;
use herald_http::response::describe_transport_error;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::Value;

use crate::did::Did;
use crate::resolver::{DidResolver, read_capped};

/// The XRPC method that reads one record.
const GET_RECORD: &str = "/xrpc/com.atproto.repo.getRecord";
/// The XRPC method that pages through a collection.
const LIST_RECORDS: &str = "/xrpc/com.atproto.repo.listRecords";
/// Records asked for per page: the reference PDS's maximum.
pub const LIST_PAGE_SIZE: usize = 100;
/// Largest page read: 100 block or list-item records are about 30 KiB;
/// this leaves room for larger records without reading garbage forever.
pub const MAX_LIST_ANSWER_BYTES: usize = 1024 * 1024;
/// The XRPC error a PDS answers (with 400) for a record that does not exist.
const RECORD_NOT_FOUND: &str = "RecordNotFound";
/// Largest answer read. The records herald reads are small (a profile:
/// display name at most 640 bytes, description 2,560, a few blob
/// references), so this leaves ample room for fields added later while a
/// PDS that streams garbage is cut off early.
pub const MAX_RECORD_ANSWER_BYTES: usize = 64 * 1024;
/// Time allowed for one read. A healthy PDS answers in well under a
/// second; the Go gateway allowed 5 s for its profile reads, and nothing
/// waits on this but a background fetch.
const RECORD_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PdsError {
    #[error("the PDS endpoint {0}")]
    Endpoint(String),
    #[error("reading from the PDS: {0}")]
    Transport(String),
    #[error("the PDS answered HTTP {0}")]
    Status(StatusCode),
    #[error("the PDS answer {0}")]
    Answer(String),
}

#[derive(Deserialize)]
struct GetRecordAnswer {
    value: serde_json::Map<String, Value>,
}

#[derive(Deserialize)]
struct XrpcErrorAnswer {
    error: String,
}

/// The record `at://<repo>/<collection>/<rkey>` from the PDS at `endpoint`,
/// through `resolver`'s guarded client; `Ok(None)` when the PDS says it does
/// not exist (404, or the XRPC `RecordNotFound` the reference PDS answers).
pub async fn get_record(
    resolver: &DidResolver,
    endpoint: &str,
    repo: &Did,
    collection: &str,
    rkey: &str,
) -> Result<Option<serde_json::Map<String, Value>>, PdsError> {
    let params = [
        ("repo", repo.as_str()),
        ("collection", collection),
        ("rkey", rkey),
    ];
    let (status, body) = xrpc_get(
        resolver,
        endpoint,
        GET_RECORD,
        &params,
        MAX_RECORD_ANSWER_BYTES,
    )
    .await?;
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if status == StatusCode::BAD_REQUEST {
        return match serde_json::from_slice::<XrpcErrorAnswer>(&body) {
            Ok(e) if e.error == RECORD_NOT_FOUND => Ok(None),
            _ => Err(PdsError::Status(status)),
        };
    }
    if !status.is_success() {
        return Err(PdsError::Status(status));
    }
    serde_json::from_slice::<GetRecordAnswer>(&body)
        .map(|answer| Some(answer.value))
        .map_err(|e| PdsError::Answer(format!("is not a getRecord answer: {e}")))
}

/// One page of a repository's collection.
#[derive(Debug, Deserialize)]
pub struct RecordPage {
    pub records: Vec<ListedRecord>,
    /// Where the next page starts; `None` after the last.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListedRecord {
    pub uri: String,
    #[serde(default)]
    pub cid: Option<String>,
    pub value: Box<serde_json::value::RawValue>,
}

/// One page (at most [`LIST_PAGE_SIZE`] records) of `collection` in `repo`
/// from the PDS at `endpoint`, after `cursor`.
pub async fn list_records(
    resolver: &DidResolver,
    endpoint: &str,
    repo: &Did,
    collection: &str,
    cursor: Option<&str>,
) -> Result<RecordPage, PdsError> {
    let limit = LIST_PAGE_SIZE.to_string();
    let mut params = vec![
        ("repo", repo.as_str()),
        ("collection", collection),
        ("limit", limit.as_str()),
    ];
    if let Some(cursor) = cursor {
        params.push(("cursor", cursor));
    }
    let (status, body) = xrpc_get(
        resolver,
        endpoint,
        LIST_RECORDS,
        &params,
        MAX_LIST_ANSWER_BYTES,
    )
    .await?;
    if !status.is_success() {
        return Err(PdsError::Status(status));
    }
    serde_json::from_slice(&body)
        .map_err(|e| PdsError::Answer(format!("is not a listRecords answer: {e}")))
}

/// A GET of an XRPC query on the PDS at `endpoint`: its status and at most
/// `max_bytes` of its body.
async fn xrpc_get(
    resolver: &DidResolver,
    endpoint: &str,
    method: &str,
    params: &[(&str, &str)],
    max_bytes: usize,
) -> Result<(StatusCode, Vec<u8>), PdsError> {
    let (client, allow_private) = resolver.account_hosts();
    let mut url = public_endpoint::check_url(endpoint, allow_private)
        .map_err(|e| PdsError::Endpoint(e.to_string()))?;
    // An absolute path, as the reference client resolves it against the endpoint.
    url.set_path(method);
    url.query_pairs_mut().clear().extend_pairs(params);
    let response = client
        .get(url)
        .timeout(RECORD_TIMEOUT)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| PdsError::Transport(describe_transport_error(e)))?;
    let status = response.status();
    let body = read_capped(response, max_bytes)
        .await
        .map_err(PdsError::Answer)?;
    Ok((status, body))
}

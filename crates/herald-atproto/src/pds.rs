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
    let (client, allow_private) = resolver.account_hosts();
    let mut url = public_endpoint::check_url(endpoint, allow_private)
        .map_err(|e| PdsError::Endpoint(e.to_string()))?;
    // An absolute path, as the reference client resolves it against the endpoint.
    url.set_path(GET_RECORD);
    url.query_pairs_mut()
        .clear()
        .append_pair("repo", repo.as_str())
        .append_pair("collection", collection)
        .append_pair("rkey", rkey);
    let response = client
        .get(url)
        .timeout(RECORD_TIMEOUT)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| PdsError::Transport(describe_transport_error(e)))?;
    let status = response.status();
    let body = read_capped(response, MAX_RECORD_ANSWER_BYTES)
        .await
        .map_err(PdsError::Answer)?;
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

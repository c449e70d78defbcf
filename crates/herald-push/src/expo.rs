//! Expo push: `POST {base}/--/api/v2/push/send` in batches, receipts later.
//!
//! Expo takes up to 100 messages per request and answers one ticket per
//! message, so sends are micro-batched: every `send` hands its message to a
//! batcher task, which gathers what arrives within `BATCH_LINGER` (or until
//! 100 are waiting), posts one request per app, and answers each send with
//! its own ticket. A ticket only says Expo accepted the message; whether
//! APNs or FCM took it shows in the receipt, fetched from `getReceipts` after
//! `receipt_delay_secs`. A `DeviceNotRegistered` receipt removes the device
//! through the store. Pending receipts live in memory, bounded: a restart
//! forgets them, and the next push to a dead token finds it dead anyway.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use herald_core::model::{AppId, Delivery, InvalidField, NewDevice, Priority, Transport};
use herald_core::provider::{Outcome, Provider};
use herald_core::store::Store;
use metrics::counter;
use reqwest::{Client, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::http_client::HttpClientConfig;
use crate::misconfiguration::Misconfigurations;
use crate::provider_error::ProviderError;
use crate::response::{describe_transport_error, retry_after};

pub const DEFAULT_BASE_URL: &str = "https://exp.host";
/// Expo's limit of messages per send request.
pub const MAX_BATCH: usize = 100;
/// Expo's limit of receipt ids per getReceipts request.
const MAX_RECEIPT_IDS: usize = 1000;
/// How long the batcher waits for more messages before posting a batch.
const BATCH_LINGER: Duration = Duration::from_millis(5);
/// Bodies above this are gzipped (Expo accepts `Content-Encoding: gzip`).
const GZIP_ABOVE_BYTES: usize = 1024;
/// Expo keeps receipts for at least a day; older pending ones are dropped.
const RECEIPT_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Receipts remembered at once; beyond this the oldest are forgotten.
const MAX_PENDING_RECEIPTS: usize = 100_000;
/// Expo's payload limit (MessageTooBig above it).
const MAX_MESSAGE_BYTES: usize = 4096;
/// Messages queued for the batcher before `send` waits.
const BATCHER_QUEUE: usize = 10 * MAX_BATCH;

/// `[apps."<id>".expo]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpoConfig {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// File holding the access token, needed when "enhanced push security" is on.
    #[serde(default)]
    pub access_token_file: Option<PathBuf>,
    /// Expo's base URL; `https://exp.host` unless overridden.
    #[serde(default)]
    pub base_url: Option<String>,
    /// How long after a ticket its receipt is fetched (Expo: allow up to 30 minutes).
    #[serde(default = "receipt_delay")]
    pub receipt_delay_secs: u64,
}

fn enabled() -> bool {
    true
}

fn receipt_delay() -> u64 {
    15 * 60
}

struct ExpoApp {
    access_token: Option<String>,
    send_url: String,
    receipts_url: String,
    receipt_delay: Duration,
}

/// A message waiting for its batch.
struct Queued {
    app_id: AppId,
    token: String,
    message: Value,
    reply: oneshot::Sender<Outcome>,
}

struct PendingReceipt {
    id: String,
    app_id: AppId,
    token: String,
    check_at: Instant,
    ticketed_at: Instant,
}

struct Shared {
    misconfigured: Misconfigurations,
    client: Client,
    apps: HashMap<AppId, ExpoApp>,
    receipts: Mutex<VecDeque<PendingReceipt>>,
    store: Option<Arc<dyn Store>>,
}

pub struct Expo {
    shared: Arc<Shared>,
    batcher: mpsc::Sender<Queued>,
}

impl Expo {
    /// Starts the batcher and, with a store, the receipt checker; must run
    /// inside a tokio runtime. Without a store (`herald send`) receipts are
    /// not followed up.
    pub fn new(
        http: &HttpClientConfig,
        apps: Vec<(AppId, ExpoConfig)>,
        store: Option<Arc<dyn Store>>,
    ) -> Result<Self, ProviderError> {
        let client = http.build().map_err(|e| ProviderError {
            app: "*".into(),
            reason: e.to_string(),
        })?;
        let apps = apps
            .into_iter()
            .filter(|(_, c)| c.enabled)
            .map(|(id, c)| {
                let app = ExpoApp::load(&c).map_err(|reason| ProviderError {
                    app: id.to_string(),
                    reason: format!("expo: {reason}"),
                })?;
                Ok((id, app))
            })
            .collect::<Result<_, ProviderError>>()?;
        let has_store = store.is_some();
        let shared = Arc::new(Shared {
            misconfigured: Misconfigurations::new(Transport::Expo),
            client,
            apps,
            receipts: Mutex::new(VecDeque::new()),
            store,
        });
        let (batcher, queue) = mpsc::channel(BATCHER_QUEUE);
        tokio::spawn(batch_loop(Arc::clone(&shared), queue));
        if has_store {
            tokio::spawn(receipt_loop(Arc::downgrade(&shared)));
        }
        Ok(Self { shared, batcher })
    }

    /// Receipts waiting to be fetched.
    pub fn pending_receipts(&self) -> usize {
        self.shared.receipts.lock().expect("receipts lock").len()
    }
}

impl ExpoApp {
    fn load(c: &ExpoConfig) -> Result<Self, String> {
        let access_token = match &c.access_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read access token {}: {e}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let base = c
            .base_url
            .as_deref()
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/');
        Ok(Self {
            access_token,
            send_url: format!("{base}/--/api/v2/push/send"),
            receipts_url: format!("{base}/--/api/v2/push/getReceipts"),
            receipt_delay: Duration::from_secs(c.receipt_delay_secs),
        })
    }
}

/// Whether `token` has the shape of an Expo push token.
pub fn is_expo_token(token: &str) -> bool {
    ["ExponentPushToken[", "ExpoPushToken["]
        .iter()
        .any(|prefix| {
            token
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(']'))
                .is_some_and(|id| {
                    !id.is_empty()
                        && id.len() <= 256
                        && id.bytes().all(|b| b.is_ascii_graphic() && b != b']')
                })
        })
}

fn expo_message(delivery: &Delivery) -> Value {
    let m = &delivery.message;
    let mut message = json!({
        "to": delivery.token,
        "priority": if m.priority == Priority::High { "high" } else { "normal" },
    });
    if let Some(title) = &m.title {
        message["title"] = json!(title);
    }
    if let Some(body) = &m.body {
        message["body"] = json!(body);
    }
    if !m.data.is_empty() {
        message["data"] = Value::Object(m.data.clone());
    }
    if let Some(ttl) = m.ttl {
        message["ttl"] = json!(ttl);
    }
    if let Some(channel) = &m.channel {
        message["channelId"] = json!(channel);
    }
    if m.mutable_content {
        message["mutableContent"] = json!(true);
    }
    // `thread_id` is not sent: Expo's message format has no field for iOS's
    // `thread-id` (its `categoryId` names a set of notification actions, a
    // different thing), so Expo apps cannot have their notifications grouped.
    message
}

#[async_trait]
impl Provider for Expo {
    fn transport(&self) -> Transport {
        Transport::Expo
    }

    async fn accept_registration(&self, device: NewDevice) -> Result<NewDevice, InvalidField> {
        if !is_expo_token(&device.token) {
            return Err(InvalidField::new(
                "token",
                "is not an Expo push token (ExponentPushToken[…] or ExpoPushToken[…])",
            ));
        }
        Ok(device)
    }

    async fn send(&self, delivery: &Delivery) -> Outcome {
        if !self.shared.apps.contains_key(&delivery.app_id) {
            return Outcome::rejected(format!("app {} has no Expo configuration", delivery.app_id));
        }
        let message = expo_message(delivery);
        if message.to_string().len() > MAX_MESSAGE_BYTES {
            return Outcome::rejected(format!(
                "message is over Expo's {MAX_MESSAGE_BYTES}-byte limit"
            ));
        }
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            app_id: delivery.app_id.clone(),
            token: delivery.token.clone(),
            message,
            reply,
        };
        if self.batcher.send(queued).await.is_err() {
            return Outcome::retry("Expo batcher stopped");
        }
        answer
            .await
            .unwrap_or_else(|_| Outcome::retry("Expo batch dropped"))
    }
}

/// Gathers queued messages into batches and posts them.
async fn batch_loop(shared: Arc<Shared>, mut queue: mpsc::Receiver<Queued>) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_LINGER;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, queue.recv()).await {
                Ok(Some(next)) => batch.push(next),
                _ => break,
            }
        }
        let mut by_app: HashMap<AppId, Vec<Queued>> = HashMap::new();
        for q in batch {
            by_app.entry(q.app_id.clone()).or_default().push(q);
        }
        for (app_id, batch) in by_app {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move { post_batch(&shared, &app_id, batch).await });
        }
    }
}

/// gzip for bodies worth compressing.
fn encode(body: Vec<u8>) -> (Vec<u8>, bool) {
    if body.len() <= GZIP_ABOVE_BYTES {
        return (body, false);
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    match encoder.write_all(&body).and_then(|()| encoder.finish()) {
        Ok(gz) => (gz, true),
        Err(_) => (body, false),
    }
}

async fn post_json(
    shared: &Shared,
    app: &ExpoApp,
    url: &str,
    body: &Value,
) -> Result<reqwest::Response, String> {
    let (bytes, gzipped) = encode(body.to_string().into_bytes());
    let mut request = shared
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(bytes);
    if gzipped {
        request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
    }
    if let Some(token) = &app.access_token {
        request = request.bearer_auth(token);
    }
    request.send().await.map_err(describe_transport_error)
}

async fn post_batch(shared: &Shared, app_id: &AppId, batch: Vec<Queued>) {
    let app = &shared.apps[app_id];
    let body = Value::Array(batch.iter().map(|q| q.message.clone()).collect());
    let outcomes = match post_json(shared, app, &app.send_url, &body).await {
        Err(reason) => vec![Outcome::retry(reason); batch.len()],
        Ok(response) => read_tickets(shared, app, app_id, &batch, response).await,
    };
    for (queued, outcome) in batch.into_iter().zip(outcomes) {
        let _ = queued.reply.send(outcome);
    }
}

/// Turns Expo's answer into one outcome per message, remembering receipts.
async fn read_tickets(
    shared: &Shared,
    app: &ExpoApp,
    app_id: &AppId,
    batch: &[Queued],
    response: reqwest::Response,
) -> Vec<Outcome> {
    let status = response.status();
    let after = retry_after(response.headers(), SystemTime::now());
    let text = response.text().await.unwrap_or_default();
    let all = |o: Outcome| vec![o; batch.len()];
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return all(Outcome::Retry {
            after,
            reason: format!("Expo answered {status}"),
        });
    }
    let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if !status.is_success() {
        let code = parsed["errors"][0]["code"].as_str().unwrap_or("unknown");
        return all(Outcome::rejected(format!(
            "Expo refused the request ({status} {code})"
        )));
    }
    let Some(tickets) = parsed["data"].as_array().filter(|t| t.len() == batch.len()) else {
        return all(Outcome::retry(format!(
            "Expo answered {} tickets for {} messages",
            parsed["data"].as_array().map_or(0, Vec::len),
            batch.len()
        )));
    };
    let now = Instant::now();
    tickets
        .iter()
        .zip(batch)
        .map(|(ticket, queued)| {
            let outcome = ticket_outcome(ticket);
            note_configuration(shared, app_id, ticket, &outcome);
            if let (Outcome::Delivered, Some(id)) = (&outcome, ticket["id"].as_str()) {
                remember_receipt(
                    shared,
                    PendingReceipt {
                        id: id.to_owned(),
                        app_id: app_id.clone(),
                        token: queued.token.clone(),
                        check_at: now + app.receipt_delay,
                        ticketed_at: now,
                    },
                );
            }
            outcome
        })
        .collect()
}

/// Credentials errors in a ticket are the app's configuration (the keys
/// uploaded to Expo), not the message's.
fn note_configuration(shared: &Shared, app_id: &AppId, ticket: &Value, outcome: &Outcome) {
    match (outcome, ticket["details"]["error"].as_str()) {
        (Outcome::Delivered, _) => shared.misconfigured.clear(app_id),
        (Outcome::Rejected { reason }, Some("InvalidCredentials" | "MismatchSenderId")) => {
            shared.misconfigured.record(app_id, reason)
        }
        _ => {}
    }
}

/// The outcome of a ticket or receipt (push-providers.md §1.3).
fn ticket_outcome(ticket: &Value) -> Outcome {
    if ticket["status"] == "ok" {
        return Outcome::Delivered;
    }
    let error = ticket["details"]["error"].as_str().unwrap_or("unknown");
    let reason = format!(
        "Expo: {error}: {}",
        ticket["message"].as_str().unwrap_or_default()
    );
    match error {
        "DeviceNotRegistered" => Outcome::token_dead(reason),
        "MessageRateExceeded" => Outcome::retry(reason),
        _ => Outcome::rejected(reason),
    }
}

fn remember_receipt(shared: &Shared, receipt: PendingReceipt) {
    if shared.store.is_none() {
        return;
    }
    let mut receipts = shared.receipts.lock().expect("receipts lock");
    if receipts.len() >= MAX_PENDING_RECEIPTS {
        receipts.pop_front();
        counter!("herald_expo_receipts_forgotten_total").increment(1);
    }
    receipts.push_back(receipt);
}

/// How often the receipt checker looks for due receipts.
const RECEIPT_POLL: Duration = Duration::from_secs(1);

/// Fetches due receipts and acts on them, until the provider is dropped.
async fn receipt_loop(shared: std::sync::Weak<Shared>) {
    loop {
        tokio::time::sleep(RECEIPT_POLL).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let due = take_due(&shared);
        let mut by_app: HashMap<AppId, Vec<PendingReceipt>> = HashMap::new();
        for r in due {
            by_app.entry(r.app_id.clone()).or_default().push(r);
        }
        for (app_id, receipts) in by_app {
            for chunk in receipts.chunks(MAX_RECEIPT_IDS) {
                check_receipts(&shared, &app_id, chunk).await;
            }
        }
    }
}

fn take_due(shared: &Shared) -> Vec<PendingReceipt> {
    let now = Instant::now();
    let mut receipts = shared.receipts.lock().expect("receipts lock");
    let (due, waiting): (Vec<_>, Vec<_>) = receipts.drain(..).partition(|r| r.check_at <= now);
    receipts.extend(waiting);
    due
}

async fn check_receipts(shared: &Shared, app_id: &AppId, receipts: &[PendingReceipt]) {
    let app = &shared.apps[app_id];
    let ids: Vec<&str> = receipts.iter().map(|r| r.id.as_str()).collect();
    let answer = match post_json(shared, app, &app.receipts_url, &json!({ "ids": ids })).await {
        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
        _ => None,
    };
    let Some(answer) = answer else {
        // Try these again later; Expo keeps receipts for a day.
        requeue(shared, receipts, Instant::now() + RECEIPT_POLL * 30);
        return;
    };
    let mut not_ready = Vec::new();
    for r in receipts {
        match answer["data"].get(&r.id) {
            Some(receipt) => act_on_receipt(shared, r, receipt).await,
            None => not_ready.push(r),
        }
    }
    let later: Vec<_> = not_ready
        .into_iter()
        .filter(|r| r.ticketed_at.elapsed() < RECEIPT_MAX_AGE)
        .collect();
    requeue(
        shared,
        later,
        Instant::now() + app.receipt_delay.max(RECEIPT_POLL),
    );
}

fn requeue<'a>(
    shared: &Shared,
    receipts: impl IntoIterator<Item = &'a PendingReceipt>,
    check_at: Instant,
) {
    let mut pending = shared.receipts.lock().expect("receipts lock");
    for r in receipts {
        pending.push_back(PendingReceipt {
            id: r.id.clone(),
            app_id: r.app_id.clone(),
            token: r.token.clone(),
            check_at,
            ticketed_at: r.ticketed_at,
        });
    }
}

async fn act_on_receipt(shared: &Shared, pending: &PendingReceipt, receipt: &Value) {
    let outcome = ticket_outcome(receipt);
    counter!("herald_expo_receipts_total", "app" => pending.app_id.to_string(), "outcome" => outcome.label()).increment(1);
    match outcome {
        Outcome::TokenDead { reason } => {
            tracing::info!(app = %pending.app_id, reason, "Expo receipt: token dead; removing device");
            if let Some(store) = &shared.store
                && let Err(e) = store.remove_device(&pending.app_id, &pending.token).await
            {
                tracing::warn!(error = %e, "removing a device after an Expo receipt failed");
            }
        }
        Outcome::Delivered => {}
        other => {
            tracing::warn!(app = %pending.app_id, outcome = ?other, "Expo receipt reports a failure after acceptance")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_both_token_spellings() {
        assert!(is_expo_token("ExponentPushToken[xxxxxxxxxxxxxxxxxxxxxx]"));
        assert!(is_expo_token("ExpoPushToken[yyyy]"));
        for bad in [
            "ExponentPushToken[]",
            "ExponentPushToken[abc",
            "expoPushToken[abc]",
            "ExpoPushToken[a]b]",
            "abc",
        ] {
            assert!(!is_expo_token(bad), "{bad}");
        }
    }

    #[test]
    fn tickets_map_to_outcomes() {
        let t =
            |error: &str| json!({"status": "error", "message": "m", "details": {"error": error}});
        assert_eq!(
            ticket_outcome(&json!({"status": "ok", "id": "x"})),
            Outcome::Delivered
        );
        assert_eq!(
            ticket_outcome(&t("DeviceNotRegistered")).label(),
            "token_dead"
        );
        assert_eq!(ticket_outcome(&t("MessageRateExceeded")).label(), "retry");
        assert_eq!(ticket_outcome(&t("MessageTooBig")).label(), "rejected");
        assert_eq!(ticket_outcome(&t("InvalidCredentials")).label(), "rejected");
    }

    #[test]
    fn large_bodies_are_gzipped() {
        let (small, gz) = encode(b"[]".to_vec());
        assert!(!gz && small == b"[]");
        let (big, gz) = encode(vec![b'a'; 10_000]);
        assert!(gz && big.len() < 1000);
    }
}

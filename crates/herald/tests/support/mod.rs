//! Test support for driving the real `herald` binary: a child-process
//! harness and a scripted UnifiedPush receiver.

#![allow(dead_code)] // each test file uses its own part of the support

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use herald_standins::nostr_relay::NostrRelay;
use serde_json::Value;

pub mod pds_peer;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const APP: &str = "com.example.app";
/// Longest a test waits for something that should happen in well under a second.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `check` until it holds, failing the test with `what` after `PATIENCE`.
pub async fn wait_until<F, Fut>(what: impl std::fmt::Display, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The herald binary with no `HERALD_*` variable inherited: the test's own
/// environment (CI's `HERALD_TEST_*`, an operator's settings) must not
/// configure the herald under test.
pub fn herald_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERALD_") {
            command.env_remove(name);
        }
    }
    command
}

/// One answer of the receiver: a status, an optional Retry-After, a delay.
#[derive(Clone, Copy)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
            delay: Duration::ZERO,
        }
    }
    pub fn retry_after(status: u16, secs: u64) -> Self {
        Self {
            status,
            retry_after: Some(secs),
            delay: Duration::ZERO,
        }
    }
    pub fn slow(status: u16, delay: Duration) -> Self {
        Self {
            status,
            retry_after: None,
            delay,
        }
    }
}

/// A request the receiver got, stamped when it arrived.
#[derive(Clone)]
pub struct Arrival {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Value,
    pub answered: u16,
}

#[derive(Default)]
struct ReceiverState {
    /// Answers per endpoint name, used in order; the fallback after that.
    scripts: HashMap<String, VecDeque<Answer>>,
    fallback: HashMap<String, Answer>,
    arrivals: HashMap<String, Vec<Arrival>>,
}

/// A UnifiedPush distributor stand-in on loopback. Endpoints are `/up/{name}`;
/// each answers from its script, then with its fallback (201 by default).
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let answer = {
        let mut s = state.lock().unwrap();
        let scripted = s.scripts.get_mut(&name).and_then(VecDeque::pop_front);
        scripted.unwrap_or_else(|| {
            s.fallback
                .get(&name)
                .copied()
                .unwrap_or(Answer::status(201))
        })
    };
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state
        .lock()
        .unwrap()
        .arrivals
        .entry(name)
        .or_default()
        .push(Arrival {
            at,
            headers,
            body,
            answered: answer.status,
        });
    let status = StatusCode::from_u16(answer.status).unwrap();
    match answer.retry_after {
        Some(secs) => (status, [("retry-after", secs.to_string())]).into_response(),
        None => status.into_response(),
    }
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let app = Router::new()
            .route("/up/{name}", post(receive))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { addr, state }
    }

    pub fn endpoint(&self, name: &str) -> String {
        format!("http://{}/up/{name}", self.addr)
    }

    pub fn script(&self, name: &str, answers: impl IntoIterator<Item = Answer>) {
        self.state
            .lock()
            .unwrap()
            .scripts
            .insert(name.into(), answers.into_iter().collect());
    }

    pub fn always(&self, name: &str, answer: Answer) {
        self.state
            .lock()
            .unwrap()
            .fallback
            .insert(name.into(), answer);
    }

    pub fn arrivals(&self, name: &str) -> Vec<Arrival> {
        self.state
            .lock()
            .unwrap()
            .arrivals
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `name` has at least `n` arrivals matching `pred`.
    pub async fn wait_for(
        &self,
        name: &str,
        n: usize,
        pred: impl Fn(&Arrival) -> bool,
    ) -> Vec<Arrival> {
        let matching = || {
            self.arrivals(name)
                .into_iter()
                .filter(|a| pred(a))
                .collect::<Vec<_>>()
        };
        wait_until(format_args!("{n} arrivals at {name}"), || async {
            matching().len() >= n
        })
        .await;
        matching()
    }
}

/// A `herald serve` child process with its own directory and database.
pub struct Herald {
    child: Option<Child>,
    pub base: String,
    pub dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    http: reqwest::Client,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The configuration every test starts from: fast retries, private endpoints
/// allowed (the receiver is on loopback), one app with UnifiedPush.
pub fn config_toml(dir: &Path, port: u16) -> String {
    format!(
        r#"listen = "127.0.0.1:{port}"
database_url = "sqlite://{db}"
admin_token = "{ADMIN_TOKEN}"
allow_private_endpoints = true

[delivery]
base_delay_ms = 50
max_delay_secs = 1
max_attempts = 1000
poll_interval_ms = 200
drain_timeout_secs = 10

[apps."{APP}".unifiedpush]
"#,
        db = dir.join("herald.db").display(),
    )
}

/// `config` with an `[atproto]` identity: `did:web` on herald's own
/// loopback port, users' DIDs resolved through `plc_url`, plus `extra`
/// `[atproto]` keys. `jetstream` is the body of `[atproto.jetstream]`;
/// empty, the source is off, so no test ever reaches Bluesky's Jetstream.
pub fn with_atproto(config: String, plc_url: &str, extra: &str, jetstream: &str) -> String {
    let port = config
        .lines()
        .find_map(|l| l.strip_prefix("listen = \"127.0.0.1:"))
        .expect("the test configuration names its port")
        .trim_end_matches('"')
        .to_owned();
    let jetstream = if jetstream.is_empty() {
        "enabled = false"
    } else {
        jetstream
    };
    format!(
        "{config}\n[atproto]\nservice_did = \"did:web:localhost%3A{port}\"\n\
         public_url = \"http://localhost:{port}\"\nplc_url = \"{plc_url}\"\n{extra}\n\
         [atproto.jetstream]\n{jetstream}\n"
    )
}

/// `config` with a `[nostr]` section listing `relays`.
pub fn with_relays(config: String, relays: &[&NostrRelay]) -> String {
    let urls: Vec<String> = relays.iter().map(|r| format!("\"{}\"", r.url())).collect();
    format!("{config}\n[nostr]\nrelays = [{}]\n", urls.join(", "))
}

/// The `data` object of a push's body.
pub fn data(arrival: &Arrival) -> &Value {
    &arrival.body["data"]
}

impl Herald {
    /// Starts herald in `dir` with the test configuration and waits until ready.
    pub async fn start(dir: &Path) -> Self {
        Self::start_edited(dir, |c| c).await
    }

    /// Starts herald with the test configuration as `edit` changes it.
    pub async fn start_edited(dir: &Path, edit: impl FnOnce(String) -> String) -> Self {
        herald_push::install_crypto_provider();
        let port = free_port();
        let config = dir.join("herald.toml");
        std::fs::write(&config, edit(config_toml(dir, port))).unwrap();
        let mut herald = Self {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            dir: dir.to_owned(),
            config,
            log: dir.join("herald.log"),
            http: reqwest::Client::new(),
        };
        herald.spawn();
        herald.wait_ready().await;
        herald
    }

    /// Starts herald again on the same directory, database and port.
    pub async fn restart(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = herald_command()
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("HERALD_LOG", "info,herald_core=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) {
        let ready = format!("{}/ready", self.base);
        let http = self.http.clone();
        let child = self.child.as_mut().unwrap();
        wait_until("herald ready", || {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("herald exited with {status} before it was ready");
            }
            let request = http.get(&ready).send();
            async move { request.await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then waits for the exit without blocking the test's runtime
    /// (the receiver must keep answering while herald drains).
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let mut exit = None;
        wait_until("herald exits after SIGTERM", || {
            exit = child.try_wait().unwrap();
            std::future::ready(exit.is_some())
        })
        .await;
        exit.unwrap()
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            req = req.json(body);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn register(&self, account: &str, token: &str) -> (u16, Value) {
        let body = serde_json::json!({
            "account": account, "app_id": APP, "platform": "android",
            "transport": "unifiedpush", "token": token,
        });
        self.request(reqwest::Method::PUT, "/v1/devices", Some(&body))
            .await
    }

    pub async fn notify(&self, body: Value) -> (u16, Value) {
        self.request(reqwest::Method::POST, "/v1/notifications", Some(&body))
            .await
    }

    pub async fn health(&self) -> Value {
        self.request(reqwest::Method::GET, "/health", None).await.1
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until /health reports `field` equal to `value`.
    pub async fn wait_health(&self, field: &str, value: u64) {
        wait_until(format_args!("/health {field} = {value}"), || async {
            self.health().await[field] == value
        })
        .await;
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- herald log ---\n{}", self.logs());
        }
    }
}

/// The value of a Prometheus sample whose line contains every one of `parts`.
pub fn metric(text: &str, name: &str, parts: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && parts.iter().all(|p| l.contains(p)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

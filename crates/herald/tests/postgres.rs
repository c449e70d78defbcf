//! herald on PostgreSQL, end to end; runs when `HERALD_TEST_POSTGRES_URL` is
//! set and fails (never skips) when that server is unreachable.
//!
//! The database is reached through a TCP proxy on loopback that the test can
//! cut, which is how `/ready` is shown to turn 503 when the store stops
//! answering.

mod support;

use std::sync::{Arc, Mutex};

use serde_json::json;
use sqlx::Connection;
use support::{Herald, Receiver, wait_until};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards loopback connections to `upstream` until cut.
struct Proxy {
    port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let held = Arc::clone(&tasks);
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                held.lock().unwrap().push(task);
            }
        });
        Self {
            port,
            tasks,
            acceptor,
        }
    }

    /// Closes every connection and refuses new ones.
    fn cut(&self) {
        self.acceptor.abort();
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// Splits `postgres://user@host:port/db?q` into (`host:port`, `user@`, `?q`).
fn split(base: &str) -> (String, String, String) {
    let rest = base.split_once("://").unwrap().1;
    let (userinfo, rest) = rest.rsplit_once('@').unwrap_or(("", rest));
    let hostport = rest.split(['/', '?']).next().unwrap().to_owned();
    let user = if userinfo.is_empty() {
        String::new()
    } else {
        format!("{userinfo}@")
    };
    let query = rest
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    (hostport, user, query)
}

#[tokio::test]
async fn delivers_on_postgres_and_readiness_follows_the_store() {
    let Ok(base) = std::env::var("HERALD_TEST_POSTGRES_URL") else {
        eprintln!("HERALD_TEST_POSTGRES_URL not set: PostgreSQL end-to-end test not run");
        return;
    };
    let name = format!(
        "herald_e2e_{}_{}",
        std::process::id(),
        herald_core::time::now_ms()
    );
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("HERALD_TEST_POSTGRES_URL is set but unreachable: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();

    let (upstream, user, query) = split(&base);
    let proxy = Proxy::start(upstream).await;
    let url = format!("postgres://{user}127.0.0.1:{}/{name}{query}", proxy.port);
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start_edited(dir.path(), |c| {
        let sqlite_line = c
            .lines()
            .find(|l| l.starts_with("database_url"))
            .unwrap()
            .to_owned();
        c.replace(&sqlite_line, &format!("database_url = \"{url}\""))
    })
    .await;

    assert_eq!(herald.health().await["store"], "postgres");
    let (status, _) = herald
        .register("test:alice", &receiver.endpoint("alice"))
        .await;
    assert_eq!(status, 201);
    herald
        .notify(json!({"account": "test:alice", "body": "over postgres"}))
        .await;
    let arrival = receiver.wait_for("alice", 1, |_| true).await.remove(0);
    assert_eq!(arrival.body["body"], "over postgres");
    herald.wait_health("queue_depth", 0).await;

    proxy.cut();
    wait_until("/ready answers 503 once the store is cut off", || async {
        let (status, body) = herald.request(reqwest::Method::GET, "/ready", None).await;
        status == 503 && body["ready"] == false
    })
    .await;
    let (status, err) = herald
        .notify(json!({"account": "test:alice", "body": "x"}))
        .await;
    assert_eq!(status, 503, "{err}");
    assert_eq!(err["error"], "store_unavailable");

    drop(herald);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

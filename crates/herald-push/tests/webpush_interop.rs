//! Interop: a Web Push message from herald, verified and decrypted by code
//! nobody here wrote (`interop/webpush/receive.py`: PyPI's `http_ece` and
//! PyJWT). Runs when `HERALD_TEST_PYTHON` names a Python with
//! `interop/webpush/requirements.txt` installed; CI sets it. When set, a
//! failure fails the test; it never skips.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use herald_core::model::{Account, AppId, Delivery, Message, NewDevice, Platform, Transport};
use herald_core::provider::{Outcome, Provider};
use herald_push::HttpClientConfig;
use herald_push::vapid::generate_keypair;
use herald_push::webpush::{WebPush, WebPushConfig};
use serde_json::{Value, json};

#[tokio::test]
async fn http_ece_decrypts_what_herald_sends_and_pyjwt_accepts_its_vapid() {
    let Ok(python) = std::env::var("HERALD_TEST_PYTHON") else {
        eprintln!("HERALD_TEST_PYTHON not set: Web Push interop not run");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../interop/webpush/receive.py"
    );
    let mut child = Command::new(&python)
        .arg(script)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let subscription = lines
        .next()
        .expect("the receiver printed its subscription")
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (pem, _) = generate_keypair();
    std::fs::write(dir.path().join("vapid.pem"), pem).unwrap();
    let app = AppId::parse("org.example.web").unwrap();
    let config = WebPushConfig {
        enabled: true,
        vapid_private_key_file: dir.path().join("vapid.pem"),
        subject: "mailto:ops@example.com".into(),
    };
    let webpush = WebPush::new(
        &HttpClientConfig::default(),
        vec![(app.clone(), config)],
        true,
    )
    .unwrap();
    let device = webpush
        .accept_registration(NewDevice {
            account: Account::parse("test:alice").unwrap(),
            app_id: app,
            platform: Platform::Web,
            transport: Transport::WebPush,
            token: subscription,
            options: Default::default(),
        })
        .await
        .unwrap();
    let message = Message {
        title: Some("Alice".into()),
        body: Some("une notification chiffrée ✓".into()),
        data: json!({"uri": "at://did:plc:x/app.bsky.feed.post/1"})
            .as_object()
            .unwrap()
            .clone(),
        ttl: Some(60),
        ..Message::default()
    };
    let delivery = Delivery {
        id: 1,
        device_id: 1,
        account: device.account.clone(),
        app_id: device.app_id.clone(),
        platform: device.platform,
        transport: device.transport,
        token: device.token.clone(),
        options: device.options.clone(),
        message: message.clone(),
        created_at: 0,
        attempts: 1,
    };
    let outcome = webpush.send(&delivery).await;
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "receive.py failed: {stderr}");
    assert_eq!(outcome, Outcome::Delivered);
    let result: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let decrypted: Message = serde_json::from_str(result["plaintext"].as_str().unwrap()).unwrap();
    assert_eq!(decrypted, message);
    assert_eq!(result["vapid"]["sub"], "mailto:ops@example.com");
    assert_eq!(result["vapid"]["aud"], format!("http://127.0.0.1:{port}"));
}

//! The admin API's edges: authentication, malformed, oversized and hostile
//! input, and the private-endpoint guard. Every refusal is a JSON error and
//! stores nothing.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{ADMIN_TOKEN, APP, Herald, Receiver};

async fn raw(
    herald: &Herald,
    method: Method,
    path: &str,
    auth: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", herald.base))
        .body(body);
    if let Some(token) = auth {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}")),
    )
}

fn device(token: &str) -> Value {
    json!({"account": "test:alice", "app_id": APP, "platform": "android", "transport": "unifiedpush", "token": token})
}

#[tokio::test]
async fn refuses_missing_and_wrong_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start(dir.path()).await;
    let body = serde_json::to_vec(&device("http://127.0.0.1:9/up")).unwrap();
    for auth in [
        None,
        Some("wrong-token-wrong-token"),
        Some(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]),
    ] {
        let (status, err) = raw(
            &herald,
            Method::PUT,
            "/v1/devices",
            auth,
            Some("application/json"),
            body.clone(),
        )
        .await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(err["error"], "unauthorized");
    }
    assert_eq!(herald.health().await["devices"], 0);
}

#[tokio::test]
async fn admin_api_is_disabled_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start_edited(dir.path(), |c| {
        c.replace(&format!("admin_token = \"{ADMIN_TOKEN}\""), "")
    })
    .await;
    let (status, err) = herald.register("test:alice", "http://127.0.0.1:9/up").await;
    assert_eq!(status, 403);
    assert_eq!(err["error"], "admin_disabled");
}

#[tokio::test]
async fn malformed_and_hostile_bodies_get_json_errors_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start(dir.path()).await;
    let json_ct = Some("application/json");
    // (what, content type, body, expected status, expected error code)
    type Case<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "not json",
            json_ct,
            b"{\"account\":".to_vec(),
            400,
            "invalid_json",
        ),
        (
            "binary",
            json_ct,
            vec![0xff, 0xfe, 0x00, 0x01],
            400,
            "invalid_json",
        ),
        ("array", json_ct, b"[]".to_vec(), 400, "invalid_request"),
        (
            "no content type",
            None,
            serde_json::to_vec(&device("http://127.0.0.1:9/up")).unwrap(),
            415,
            "unsupported_media_type",
        ),
        (
            "oversized",
            json_ct,
            vec![b' '; 70 * 1024],
            413,
            "payload_too_large",
        ),
        (
            "deeply nested",
            json_ct,
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
            400,
            "invalid_request",
        ),
    ];
    for (what, ct, body, status, code) in cases {
        let (got, err) = raw(
            &herald,
            Method::PUT,
            "/v1/devices",
            Some(ADMIN_TOKEN),
            ct,
            body,
        )
        .await;
        assert_eq!(
            (got, err["error"].as_str().unwrap()),
            (status, code),
            "{what}: {err}"
        );
        assert!(!err["message"].as_str().unwrap().is_empty());
    }

    let mut bad_fields = Vec::new();
    for (field, value) in [
        ("account", json!("no-namespace")),
        ("account", json!("test:a b")),
        ("account", json!(42)),
        ("app_id", json!("com.unknown.app")),
        ("app_id", json!("bad/app")),
        ("platform", json!("toaster")),
        ("transport", json!("carrier-pigeon")),
        ("transport", json!("apns")),
        ("token", json!("")),
        ("token", json!("x".repeat(5000))),
        ("token", json!("ftp://127.0.0.1/up")),
        ("token", json!("not a url")),
    ] {
        let mut body = device("http://127.0.0.1:9/up");
        body[field] = value.clone();
        bad_fields.push((format!("{field}={value}"), body));
    }
    let mut extra = device("http://127.0.0.1:9/up");
    extra["tokn"] = json!("typo");
    bad_fields.push(("unknown field".into(), extra));
    for (what, body) in bad_fields {
        let (status, err) = herald
            .request(Method::PUT, "/v1/devices", Some(&body))
            .await;
        assert_eq!(status, 400, "{what}: {err}");
        assert!(
            err["error"].is_string() && err["message"].is_string(),
            "{what}: {err}"
        );
    }
    assert_eq!(
        herald.health().await["devices"],
        0,
        "nothing refused was stored"
    );

    for (what, body) in [
        ("no account", json!({"body": "x"})),
        ("empty message", json!({"account": "test:alice"})),
        (
            "ttl too long",
            json!({"account": "test:alice", "body": "x", "ttl": 99_999_999}),
        ),
        (
            "negative ttl",
            json!({"account": "test:alice", "body": "x", "ttl": -1}),
        ),
        (
            "body too long",
            json!({"account": "test:alice", "body": "x".repeat(5000)}),
        ),
        (
            "data not an object",
            json!({"account": "test:alice", "data": [1, 2]}),
        ),
        (
            "unknown app",
            json!({"account": "test:alice", "body": "x", "app_id": "nope"}),
        ),
        (
            "bad priority",
            json!({"account": "test:alice", "body": "x", "priority": "urgent"}),
        ),
        (
            "channel with a space",
            json!({"account": "test:alice", "body": "x", "channel": "chat messages"}),
        ),
        (
            "channel too long",
            json!({"account": "test:alice", "body": "x", "channel": "c".repeat(65)}),
        ),
        (
            "thread_id too long",
            json!({"account": "test:alice", "body": "x", "thread_id": "t".repeat(65)}),
        ),
        (
            "mutable_content not a boolean",
            json!({"account": "test:alice", "body": "x", "mutable_content": 1}),
        ),
    ] {
        let (status, err) = herald.notify(body).await;
        assert_eq!(status, 400, "{what}: {err}");
    }
    let (_, err) = herald
        .notify(json!({"account": "test:alice", "body": "x", "channel": "chat messages"}))
        .await;
    assert_eq!(err["error"], "invalid_request");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("channel: may contain only"),
        "{err}"
    );
    let nested = format!(
        r#"{{"account":"test:alice","data":{{"a":{}1{}}}}}"#,
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let (status, err) = raw(
        &herald,
        Method::POST,
        "/v1/notifications",
        Some(ADMIN_TOKEN),
        Some("application/json"),
        nested.into_bytes(),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_json")),
        "{err}"
    );
    for (what, body) in [("null account", json!({"account": null, "body": "x"}))] {
        let (status, err) = herald.notify(body).await;
        assert_eq!(status, 400, "{what}: {err}");
    }
    assert_eq!(herald.health().await["queue_depth"], 0);
}

#[tokio::test]
async fn devices_can_be_removed_idempotently() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start(dir.path()).await;
    let token = receiver.endpoint("alice");
    herald.register("test:alice", &token).await;
    let body = json!({"app_id": APP, "token": token});
    assert_eq!(
        herald
            .request(Method::DELETE, "/v1/devices", Some(&body))
            .await,
        (200, json!({"removed": true}))
    );
    assert_eq!(
        herald
            .request(Method::DELETE, "/v1/devices", Some(&body))
            .await,
        (200, json!({"removed": false}))
    );
    assert_eq!(herald.health().await["devices"], 0);
}

#[tokio::test]
async fn unknown_routes_and_readiness_answer_json() {
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start(dir.path()).await;
    let (status, err) = herald.request(Method::GET, "/nope", None).await;
    assert_eq!((status, err["error"].as_str()), (404, Some("not_found")));
    assert_eq!(
        herald.request(Method::GET, "/ready", None).await,
        (200, json!({"ready": true}))
    );
}

#[tokio::test]
async fn private_endpoints_are_refused_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let herald = Herald::start_edited(dir.path(), |c| {
        c.replace(
            "allow_private_endpoints = true",
            "allow_private_endpoints = false",
        )
    })
    .await;
    for (token, says) in [
        ("http://push.example.com/up", "https"),
        ("https://127.0.0.1/up", "non-public"),
        ("https://[::1]/up", "non-public"),
        ("https://169.254.169.254/latest/meta-data", "non-public"),
        ("https://10.0.0.8/up", "non-public"),
        ("https://localhost/up", "local host"),
    ] {
        let (status, err) = herald.register("test:alice", token).await;
        assert_eq!(status, 400, "{token}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains(says),
            "{token}: {err}"
        );
    }
    assert_eq!(herald.health().await["devices"], 0);
}

//! registerPush / unregisterPush against a real PDS: `@atproto/dev-env`'s
//! PLC directory and PDS, run by `interop/atproto/pds.mjs` with Node 22.
//!
//! Runs when `HERALD_TEST_NODE22` names the Node 22 binary and
//! `HERALD_TEST_ATPROTO_MODULES` the directory `interop/atproto/setup.sh`
//! installed into (setup.sh prints both); without them it says so and
//! returns. With them, every failure fails the test.
//!
//! The PDS forwards registerPush to herald's did:web (served by herald itself
//! on localhost), minting the service token with the account's key; herald
//! resolves the account's did:plc on the test PLC to verify it.

mod support;

use serde_json::{Value, json};
use support::pds_peer::{Peer, peer_env};
use support::{APP, Herald, Receiver, with_atproto};

const REGISTER: &str = "app.bsky.notification.registerPush";
const UNREGISTER: &str = "app.bsky.notification.unregisterPush";

fn port_of(herald: &Herald) -> &str {
    herald.base.rsplit(':').next().unwrap()
}

/// herald's DID: a did:web on localhost, which atproto resolves over http.
fn service_did(herald: &Herald) -> String {
    format!("did:web:localhost%3A{}", port_of(herald))
}

/// A call straight to herald's XRPC route: status and JSON body.
async fn herald_xrpc(herald: &Herald, method: &str, token: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/xrpc/{method}", herald.base))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON from herald: {text:?}")),
    )
}

/// The `alg` in a JWT's header.
fn jwt_alg(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    header["alg"].as_str().unwrap().to_owned()
}

/// herald delivers to `account` through the device registered for it.
async fn delivers(herald: &Herald, receiver: &Receiver, account_did: &str, endpoint: &str) {
    let (status, answer) = herald
        .notify(json!({"account": format!("atproto:{account_did}"), "body": "interop"}))
        .await;
    assert_eq!(status / 100, 2, "notify {account_did}: {answer}");
    receiver.wait_for(endpoint, 1, |_| true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_pds_registers_and_unregisters_through_herald() {
    let Some((node, modules)) = peer_env() else {
        println!(
            "skipped: set HERALD_TEST_NODE22 and HERALD_TEST_ATPROTO_MODULES \
             (interop/atproto/setup.sh prints them) to run against a real PDS"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut peer = Peer::start(&node, &modules, dir.path());
    let plc = peer.plc.clone();
    let herald = Herald::start_edited(dir.path(), |c| with_atproto(c, &plc, "", "")).await;
    let receiver = Receiver::start().await;
    let did = service_did(&herald);
    let body = |endpoint: &str| {
        let token = receiver.endpoint(endpoint);
        json!({"serviceDid": did, "token": token, "platform": "android", "appId": APP})
    };

    // The PDS mints the token with alice's key and posts to herald's #bsky_notif.
    let (alice, jwt) = peer.create_account("alice.test");
    assert!(alice.starts_with("did:plc:"), "{alice}");
    let (status, answer) = peer.pds_post(&jwt, REGISTER, &body("alice"));
    assert_eq!(status, 200, "registerPush through the PDS: {answer}");
    herald.wait_health("devices", 1).await;
    delivers(&herald, &receiver, &alice, "alice").await;

    // herald's refusals reach the app through the PDS unchanged.
    let mut unknown_app = body("alice");
    unknown_app["appId"] = json!("com.unknown");
    let (status, err) = peer.pds_post(&jwt, REGISTER, &unknown_app);
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("InvalidRequest")),
        "{err}"
    );
    assert!(
        err["message"].as_str().unwrap().contains("com.unknown"),
        "herald's message: {err}"
    );

    let (status, answer) = peer.pds_post(&jwt, UNREGISTER, &body("alice"));
    assert_eq!(status, 200, "unregisterPush through the PDS: {answer}");
    herald.wait_health("devices", 0).await;

    // A genuine PDS token for another method is refused, with an XRPC body.
    let wrong = peer.service_auth(&jwt, &did, UNREGISTER);
    assert_eq!(
        jwt_alg(&wrong),
        "ES256K",
        "the PDS signs with the account's key"
    );
    let (status, err) = herald_xrpc(&herald, REGISTER, &wrong, &body("alice")).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (401, Some("BadJwtLexiconMethod")),
        "an unregisterPush token used on registerPush: {err}"
    );
    assert!(err["message"].is_string(), "{err}");
    assert_eq!(herald.health().await["devices"], 0, "nothing was stored");
    // The same PDS's token for the right method, aud in the did#service form.
    let right = peer.service_auth(&jwt, &format!("{did}#bsky_notif"), REGISTER);
    let (status, answer) = herald_xrpc(&herald, REGISTER, &right, &body("alice")).await;
    assert_eq!(
        status, 200,
        "a getServiceAuth token for registerPush: {answer}"
    );
    herald.wait_health("devices", 1).await;

    // createServiceJwt on both curves, issuers' keys on the test PLC.
    let mut devices = 1;
    for alg in ["ES256K", "ES256"] {
        let (iss, token) = peer.mint(alg, &did, REGISTER);
        assert_eq!(jwt_alg(&token), alg);
        let (status, answer) = herald_xrpc(&herald, REGISTER, &token, &body(alg)).await;
        assert_eq!(status, 200, "{alg} token from createServiceJwt: {answer}");
        devices += 1;
        herald.wait_health("devices", devices).await;
        delivers(&herald, &receiver, &iss, alg).await;
    }

    peer.finish();
}

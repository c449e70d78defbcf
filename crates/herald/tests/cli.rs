//! The command line: `config check`, `send`, `migrate`, and configuration errors.

mod support;

use std::process::Output;

use support::{APP, Answer, Receiver, config_toml, free_port, herald_command};

fn herald(dir: &std::path::Path, args: &[&str]) -> Output {
    herald_command()
        .arg("--config")
        .arg(dir.join("herald.toml"))
        .args(args)
        .output()
        .unwrap()
}

fn write_config(dir: &std::path::Path, extra: &str) {
    let text = format!("{extra}\n{}", config_toml(dir, free_port()));
    std::fs::write(dir.join("herald.toml"), text).unwrap();
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn config_check_reports_each_app_and_transport() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let out = herald(dir.path(), &["config", "check"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("admin API: enabled"), "{text}");
    assert!(text.contains(&format!("app {APP}:")), "{text}");
    assert!(text.contains("unifiedpush: enabled"), "{text}");
    assert!(
        text.contains("apns: not configured (no [apns] table)"),
        "{text}"
    );
    assert!(text.contains("private endpoints: allowed"), "{text}");
}

#[test]
fn config_check_says_whether_the_accounts_own_relays_are_watched() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let text = stdout(&herald(dir.path(), &["config", "check"]));
    assert!(
        text.contains("Nostr relays: 0 configured; accounts' own relays off"),
        "{text}"
    );
    let nostr =
        "[nostr]\nrelays = [\"wss://a.example\"]\nindex_relays = [\"wss://index.example\"]\n";
    let config = format!("{}{nostr}", config_toml(dir.path(), free_port()));
    std::fs::write(dir.path().join("herald.toml"), config).unwrap();
    let text = stdout(&herald(dir.path(), &["config", "check"]));
    assert!(
        text.contains(
            "Nostr relays: 1 configured; accounts' own relays from 1 index relays, \
             at most 5 per account and 100 in all"
        ),
        "{text}"
    );
}

#[test]
fn configuration_errors_exit_2_and_name_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "listn = \"x\"");
    let out = herald(dir.path(), &["config", "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("listn"),
        "{out:?}"
    );

    let out = herald_command()
        .args(["config", "check"])
        .env("HERALD_DELIVERY__MAX_ATTEMPTS", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HERALD_DELIVERY__MAX_ATTEMPTS"));
}

#[tokio::test]
async fn send_prints_the_typed_outcome_and_exits_0_only_when_delivered() {
    let receiver = Receiver::start().await;
    receiver.always("gone", Answer::status(410));
    receiver.always("busy", Answer::retry_after(429, 30));
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let send = |endpoint: String| {
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            herald(
                &dir,
                &[
                    "send",
                    "--app",
                    APP,
                    "--transport",
                    "unifiedpush",
                    "--token",
                    &endpoint,
                    "--title",
                    "Hi",
                    "--body",
                    "from the CLI",
                    "--data",
                    r#"{"k":"v"}"#,
                ],
            )
        })
    };
    let ok = send(receiver.endpoint("ok")).await.unwrap();
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert_eq!(stdout(&ok).trim(), "delivered");
    let arrival = receiver.arrivals("ok").remove(0);
    assert_eq!(arrival.body["body"], "from the CLI");
    assert_eq!(arrival.body["data"]["k"], "v");

    let gone = send(receiver.endpoint("gone")).await.unwrap();
    assert_eq!(gone.status.code(), Some(1));
    assert!(stdout(&gone).starts_with("token_dead:"), "{gone:?}");

    let busy = send(receiver.endpoint("busy")).await.unwrap();
    assert_eq!(busy.status.code(), Some(1));
    assert!(stdout(&busy).contains("wait 30 s"), "{busy:?}");

    let unknown = herald(
        dir.path(),
        &[
            "send",
            "--app",
            "nope",
            "--transport",
            "unifiedpush",
            "--token",
            "http://127.0.0.1:9/x",
            "--body",
            "x",
        ],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown app"));
}

#[test]
fn migrate_creates_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let out = herald(dir.path(), &["migrate"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).trim(), "schema is at version 3");
    assert!(dir.path().join("herald.db").exists());
}

#[test]
fn a_broken_credential_is_named_by_config_check_and_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let account = dir.path().join("service-account.json");
    std::fs::write(&account, r#"{"project_id": "p", "client_email": "a@b", "token_uri": "http://127.0.0.1:9/token", "private_key": "not a key"}"#).unwrap();
    write_config(dir.path(), "");
    let mut text = std::fs::read_to_string(dir.path().join("herald.toml")).unwrap();
    text.push_str(&format!(
        "\n[apps.\"{APP}\".fcm]\nservice_account_file = \"{}\"\n",
        account.display()
    ));
    std::fs::write(dir.path().join("herald.toml"), text).unwrap();

    let check = herald(dir.path(), &["config", "check"]);
    assert_eq!(check.status.code(), Some(2));
    let out = stdout(&check);
    let fcm_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("fcm:"))
        .unwrap();
    assert!(
        fcm_line.contains("error") && fcm_line.contains(APP) && fcm_line.contains("private_key"),
        "{out}"
    );
    assert!(out.contains("unifiedpush: enabled"), "{out}");

    let serve = herald(dir.path(), &["serve"]);
    assert_eq!(serve.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&serve.stderr).contains("private_key"),
        "{serve:?}"
    );
}

#[tokio::test]
async fn send_works_through_fcm_and_expo() {
    let dir = tempfile::tempdir().unwrap();
    let fcm = herald_standins::fcm::FcmService::start(dir.path()).await;
    let expo = herald_standins::expo::ExpoService::start(None).await;
    write_config(dir.path(), "");
    let mut text = std::fs::read_to_string(dir.path().join("herald.toml")).unwrap();
    text.push_str(&format!(
        "\n[apps.\"{APP}\".fcm]\nservice_account_file = \"{}\"\nbase_url = \"{}\"\n\n[apps.\"{APP}\".expo]\nbase_url = \"{}\"\n",
        fcm.service_account_file().display(),
        fcm.base_url(),
        expo.base_url()
    ));
    std::fs::write(dir.path().join("herald.toml"), text).unwrap();
    for (transport, token) in [
        (
            "fcm",
            "ZmNtOkFQQTkxYkhlcmFsZC10ZXN0LXRva2VuLWZvci1jbGktc2VuZA",
        ),
        ("expo", "ExponentPushToken[cli-send]"),
    ] {
        let dir = dir.path().to_owned();
        let out = tokio::task::spawn_blocking(move || {
            herald(
                &dir,
                &[
                    "send",
                    "--app",
                    APP,
                    "--transport",
                    transport,
                    "--token",
                    token,
                    "--title",
                    "Hi",
                    "--body",
                    "from the CLI",
                ],
            )
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "{transport}: {out:?}");
        assert_eq!(stdout(&out).trim(), "delivered", "{transport}");
    }
    assert_eq!(fcm.accepted()[0]["notification"]["body"], "from the CLI");
    assert_eq!(expo.accepted()[0]["body"], "from the CLI");
}

#[test]
fn keys_vapid_writes_a_private_key_once_and_prints_the_public_one() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let out = dir.path().join("vapid.pem");
    let made = herald(
        dir.path(),
        &["keys", "vapid", "--out", out.to_str().unwrap()],
    );
    assert!(made.status.success(), "{made:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(
        !stdout(&made).contains("PRIVATE KEY"),
        "the private key stays off the terminal"
    );
    let public = stdout(&made)
        .lines()
        .find_map(|l| {
            l.strip_prefix("public key (applicationServerKey): ")
                .map(str::to_owned)
        })
        .unwrap();
    assert_eq!(public.len(), 87, "65 bytes as unpadded base64url");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = herald(
        dir.path(),
        &["keys", "vapid", "--out", out.to_str().unwrap()],
    );
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing key is never overwritten"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
}

#[test]
fn keys_nostr_writes_a_secret_key_once_that_the_config_accepts_and_prints_its_npub() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "");
    let out = dir.path().join("nostr.key");
    let made = herald(
        dir.path(),
        &["keys", "nostr", "--out", out.to_str().unwrap()],
    );
    assert!(made.status.success(), "{made:?}");
    let secret = std::fs::read_to_string(&out).unwrap();
    let key = herald_nostr::SecretKey::parse_hex(&secret).unwrap();
    assert!(
        !stdout(&made).contains(secret.trim()),
        "the secret key stays off the terminal"
    );
    let printed = |prefix: &str| {
        stdout(&made)
            .lines()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_owned))
            .unwrap()
    };
    assert_eq!(printed("public key: "), key.public_key().to_npub());
    assert_eq!(printed("public key (hex): "), key.public_key().to_hex());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = herald(
        dir.path(),
        &["keys", "nostr", "--out", out.to_str().unwrap()],
    );
    assert_eq!(
        again.status.code(),
        Some(2),
        "an existing key is never overwritten"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), secret);
}

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/fixtures/atproto/jetstream_golden_v1.jsonl"
);

#[test]
fn atproto_replay_prints_the_notifications_recorded_events_cause() {
    // The golden fixture's like: did:plc:mcc5… likes a post of did:plc:vfnm….
    let liked = "did:plc:vfnmgxg2yscfliemmcxzyfyh";
    let out = herald_command()
        .args(["atproto", "replay", "--input", GOLDEN, "--register", liked])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["reason"], "like");
    assert_eq!(lines[0]["recipient"], liked);
    assert_eq!(lines[0]["actor"], "did:plc:mcc5yghbk7tixqryac2yxku7");
    assert_eq!(
        lines[0]["subject"],
        "at://did:plc:vfnmgxg2yscfliemmcxzyfyh/app.bsky.feed.post/3mmoodizfwc2j"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("10 events, 0 skipped, 1 notifications"),
        "{out:?}"
    );
}

#[test]
fn atproto_replay_reads_stdin_reports_bad_lines_and_refuses_bad_dids() {
    use std::io::Write;
    let mut child = herald_command()
        .args([
            "atproto",
            "replay",
            "--input",
            "-",
            "--register",
            "did:plc:vfnmgxg2yscfliemmcxzyfyh",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = b"{\"kind\": 7}\n".to_vec();
    input.extend(std::fs::read(GOLDEN).unwrap());
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).lines().count(), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1: "), "{err}");
    assert!(err.contains("10 events, 1 skipped"), "{err}");

    let out = herald_command()
        .args([
            "atproto",
            "replay",
            "--input",
            GOLDEN,
            "--register",
            "alice",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--register"),
        "{out:?}"
    );
}

/// The golden fixture's commits, each as the signed `#commit` frame a relay
/// would send, stamped with the event's `time_us`, recorded as
/// `[u32 LE length][frame]`.
fn golden_commit_recording() -> (Vec<u8>, Vec<String>) {
    use herald_atproto::test_support::firehose::{RepoKey, rfc3339, signed_commit};
    let mut recording = Vec::new();
    let mut lines = Vec::new();
    for line in std::fs::read_to_string(GOLDEN).unwrap().lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let commit = &event["commit"];
        if commit.is_null() {
            continue;
        }
        let op = (
            commit["operation"].as_str().unwrap(),
            commit["collection"].as_str().unwrap(),
            commit["rkey"].as_str().unwrap(),
            commit.get("record").cloned(),
        );
        let frame = signed_commit(
            &RepoKey::k256(1),
            event["did"].as_str().unwrap(),
            commit["rev"].as_str().unwrap(),
            &[op],
        )
        .frame(1, &rfc3339(event["time_us"].as_u64().unwrap()));
        recording.extend((frame.len() as u32).to_le_bytes());
        recording.extend(frame);
        lines.push(line.to_owned());
    }
    (recording, lines)
}

#[test]
fn atproto_decode_frames_prints_what_jetstream_sent_for_the_same_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (recording, golden) = golden_commit_recording();
    let file = dir.path().join("frames.bin");
    std::fs::write(&file, &recording).unwrap();
    let out = herald_command()
        .args(["atproto", "decode-frames"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Byte for byte: our DAG-CBOR of each record has the CID the real PDS
    // computed, and the JSON is written as Jetstream writes it.
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), golden);
    let summary = format!("{0} frames, 0 skipped, {0} events", golden.len());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&summary),
        "{out:?}"
    );
}

#[test]
fn atproto_decode_frames_reads_stdin_and_skips_bad_frames() {
    use std::io::Write;
    let (mut recording, golden) = golden_commit_recording();
    let mut input = 3u32.to_le_bytes().to_vec();
    input.extend([0xa1, 0x61, 0x74]);
    input.append(&mut recording);
    let mut child = herald_command()
        .args(["atproto", "decode-frames", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).lines().count(), golden.len());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("frame 0: DAG-CBOR: "), "{err}");
    let summary = format!(
        "{} frames, 1 skipped, {} events",
        golden.len() + 1,
        golden.len()
    );
    assert!(err.contains(&summary), "{err}");

    let missing = herald_command()
        .args(["atproto", "decode-frames", "/nonexistent/frames.bin"])
        .output()
        .unwrap();
    assert!(!missing.status.success(), "{missing:?}");
}

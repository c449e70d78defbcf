//! A PLC directory: `GET /{did}` answers the DID documents of accounts the
//! test or benchmark creates, each with a secp256k1 `#atproto` Multikey
//! and, when set, a handle and PDS; and it signs service tokens with their
//! keys the way the reference PDS does (`createServiceJwt`: ES256K, no
//! `kid`, 60 s, random `jti`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k256::ecdsa::SigningKey;
use k256::ecdsa::signature::Signer;
use serde_json::{Value, json};

/// The multicodec prefix of a compressed secp256k1 public key.
const SECP256K1_PUB: [u8; 2] = [0xe7, 0x01];
/// Lifetime of a service token, as the reference PDS mints them.
const TOKEN_SECS: u64 = 60;

type Documents = Arc<RwLock<HashMap<String, Value>>>;

pub struct PlcDirectory {
    addr: SocketAddr,
    documents: Documents,
    keys: RwLock<HashMap<String, SigningKey>>,
    next: AtomicU64,
}

async fn document(State(docs): State<Documents>, Path(did): Path<String>) -> Response {
    match docs.read().unwrap().get(&did) {
        Some(doc) => axum::Json(doc.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": format!("DID not registered: {did}")})),
        )
            .into_response(),
    }
}

impl PlcDirectory {
    pub async fn start() -> Self {
        let documents = Documents::default();
        let app = Router::new()
            .route("/{did}", get(document))
            .with_state(Arc::clone(&documents));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            documents,
            keys: RwLock::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates an account with a fresh key and returns its DID.
    pub fn create_account(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // did:plc ids are 24 base32 characters; derive one from the counter.
        let id: String = format!("{n:024}")
            .bytes()
            .map(|d| (b'a' + (d - b'0')) as char)
            .collect();
        let did = format!("did:plc:{id}");
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&n.to_be_bytes());
        seed[31] = 1;
        let key = SigningKey::from_slice(&seed).expect("a valid scalar");
        let point = key.verifying_key().to_sec1_point(true);
        let multikey = format!(
            "z{}",
            bs58::encode([&SECP256K1_PUB[..], point.as_ref()].concat()).into_string()
        );
        let doc = json!({
            "id": did,
            "verificationMethod": [{"id": format!("{did}#atproto"), "type": "Multikey", "controller": did, "publicKeyMultibase": multikey}],
        });
        self.documents.write().unwrap().insert(did.clone(), doc);
        self.keys.write().unwrap().insert(did.clone(), key);
        did
    }

    /// Names `did`'s handle and PDS in its document (`alsoKnownAs` and the
    /// `#atproto_pds` service), as a PLC operation would; a DID the
    /// directory does not know gets a document without keys.
    pub fn set_identity(&self, did: &str, handle: &str, pds_url: &str) {
        let mut documents = self.documents.write().unwrap();
        let doc = documents
            .entry(did.to_owned())
            .or_insert_with(|| json!({"id": did, "verificationMethod": []}));
        doc["alsoKnownAs"] = json!([format!("at://{handle}")]);
        doc["service"] = json!([{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": pds_url,
        }]);
    }

    /// A service token from `did` for `aud` and method `lxm`.
    pub fn service_token(&self, did: &str, aud: &str, lxm: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let jti = format!("{:032x}", self.next.fetch_add(1, Ordering::Relaxed));
        let header = json!({"typ": "JWT", "alg": "ES256K"});
        let claims = json!({"iat": now, "iss": did, "aud": aud, "exp": now + TOKEN_SECS, "lxm": lxm, "jti": jti});
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("JSON"));
        let input = format!("{}.{}", b64(&header), b64(&claims));
        let keys = self.keys.read().unwrap();
        let signature: k256::ecdsa::Signature = keys[did].sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

//! VAPID (RFC 8292): identifying herald to Web Push services.
//!
//! `Authorization: vapid t=<JWT>, k=<public key>`: an ES256 JWT with `aud` =
//! the push service's origin, `exp` at most 24 h ahead (autopush refuses
//! more; we use 12 h), and `sub` the operator's contact. A token is reused
//! per origin until an hour before it expires, so signing is rare. Keys are
//! read as PKCS#8 PEM, SEC1 PEM, or the raw base64url scalar that Web Push
//! tools (`web-push generate-vapid-keys`) print.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::json;
use url::Url;

use crate::jwt::{b64url, b64url_decode, sign_es256};

/// Lifetime of a VAPID token: half autopush's 24-hour maximum.
const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// A cached token is replaced when less than this is left.
const REFRESH_MARGIN: Duration = Duration::from_secs(60 * 60);
/// Origins whose tokens are cached; push services are few.
const MAX_CACHED_ORIGINS: usize = 1024;

/// A VAPID key pair and the contact it signs for.
pub struct Vapid {
    key: SigningKey,
    public: String,
    subject: String,
    tokens: Mutex<HashMap<String, (String, u64)>>,
}

impl Vapid {
    /// Reads the private key file and checks the subject.
    pub fn from_file(path: &Path, subject: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read VAPID key {}: {e}", path.display()))?;
        let key =
            parse_key(text.trim()).map_err(|e| format!("VAPID key {}: {e}", path.display()))?;
        Self::new(key, subject)
    }

    pub fn new(key: SigningKey, subject: &str) -> Result<Self, String> {
        if !(subject.starts_with("mailto:") || subject.starts_with("https:")) {
            return Err(format!(
                "VAPID subject {subject:?} must be a mailto: or https: contact"
            ));
        }
        let public = b64url(key.verifying_key().to_sec1_point(false).as_bytes());
        Ok(Self {
            key,
            public,
            subject: subject.to_owned(),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The public key, base64url, as applications pass it to `PushManager.subscribe`.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The `Authorization` header value for a push to `endpoint`.
    pub fn authorization(&self, endpoint: &Url) -> String {
        let origin = endpoint.origin().ascii_serialization();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = tokens
            .get(&origin)
            .filter(|(_, exp)| *exp > now + REFRESH_MARGIN.as_secs());
        let token = match fresh {
            Some((token, _)) => token.clone(),
            None => {
                let exp = now + TOKEN_LIFETIME.as_secs();
                let claims = json!({"aud": origin, "exp": exp, "sub": self.subject});
                let token = sign_es256(&json!({"typ": "JWT", "alg": "ES256"}), &claims, &self.key);
                if tokens.len() >= MAX_CACHED_ORIGINS {
                    tokens.clear();
                }
                tokens.insert(origin, (token.clone(), exp));
                token
            }
        };
        format!("vapid t={token}, k={}", self.public)
    }
}

fn parse_key(text: &str) -> Result<SigningKey, String> {
    if text.contains("BEGIN PRIVATE KEY") {
        return SigningKey::from_pkcs8_pem(text)
            .map_err(|e| format!("not a P-256 PKCS#8 key: {e}"));
    }
    if text.contains("BEGIN EC PRIVATE KEY") {
        return p256::SecretKey::from_sec1_pem(text)
            .map(SigningKey::from)
            .map_err(|e| format!("not a P-256 SEC1 key: {e}"));
    }
    let raw =
        b64url_decode(text).map_err(|_| "neither PEM nor a base64url private key".to_owned())?;
    SigningKey::from_slice(&raw).map_err(|_| "not a 32-byte P-256 private key".to_owned())
}

/// A new key pair: the private key as PKCS#8 PEM, the public key base64url.
pub fn generate_keypair() -> (String, String) {
    let key = SigningKey::generate_from_rng(&mut rand::rng());
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .expect("PKCS#8 encoding of a valid key")
        .to_string();
    let public = b64url(key.verifying_key().to_sec1_point(false).as_bytes());
    (pem, public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};

    fn claims(header: &str) -> serde_json::Value {
        let token = header
            .strip_prefix("vapid t=")
            .unwrap()
            .split(',')
            .next()
            .unwrap();
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&b64url_decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn signs_for_the_endpoint_origin_and_verifies_with_k() {
        let (pem, public) = generate_keypair();
        let vapid = Vapid::new(parse_key(&pem).unwrap(), "mailto:ops@example.com").unwrap();
        assert_eq!(vapid.public_key(), public);
        let url = Url::parse("https://updates.push.services.mozilla.com:443/wpush/v2/abc").unwrap();
        let header = vapid.authorization(&url);
        let c = claims(&header);
        assert_eq!(c["aud"], "https://updates.push.services.mozilla.com");
        assert_eq!(c["sub"], "mailto:ops@example.com");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let exp = c["exp"].as_u64().unwrap();
        assert!(exp > now && exp <= now + 24 * 3600);

        let (t, k) = header
            .strip_prefix("vapid t=")
            .unwrap()
            .split_once(", k=")
            .unwrap();
        let key = VerifyingKey::from_sec1_bytes(&b64url_decode(k).unwrap()).unwrap();
        let (input, sig) = t.rsplit_once('.').unwrap();
        key.verify(
            input.as_bytes(),
            &Signature::from_slice(&b64url_decode(sig).unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            vapid.authorization(&url),
            header,
            "reused for the same origin"
        );
        assert_ne!(
            claims(
                &vapid.authorization(&Url::parse("https://fcm.googleapis.com/fcm/send/x").unwrap())
            )["aud"],
            c["aud"]
        );
    }

    #[test]
    fn reads_pem_sec1_and_raw_keys_and_refuses_others() {
        let key = SigningKey::from_slice(&[5u8; 32]).unwrap();
        let pkcs8 = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let sec1 = p256::SecretKey::from(key.clone())
            .to_sec1_pem(LineEnding::LF)
            .unwrap()
            .to_string();
        let raw = b64url([5u8; 32]);
        for text in [pkcs8.as_str(), sec1.as_str(), raw.as_str()] {
            assert_eq!(parse_key(text).unwrap(), key, "{text}");
        }
        for bad in [
            "",
            "hello",
            &b64url([0u8; 32]),
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ] {
            assert!(parse_key(bad).is_err(), "{bad}");
        }
        assert!(
            Vapid::new(key, "ops@example.com").is_err(),
            "the subject needs mailto: or https:"
        );
    }
}

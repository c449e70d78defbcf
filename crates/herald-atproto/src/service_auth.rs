//! Verifying the service-auth JWTs a PDS sends with `registerPush`.
//!
//! The checks run in atproto.md §4.4's order, so that everything decidable
//! from the token alone (structure, `alg`, `typ`, times, `aud`, `lxm`) is
//! refused before any network call: a forged token must not make herald
//! fetch anything. Only then is the issuer's key resolved; if the signature
//! fails, the key is resolved once more bypassing the cache, because the
//! account may have rotated it. A `jti` is remembered until its token
//! expires, so a captured token cannot be replayed. Errors carry the
//! reference verifier's names (`BadJwtAudience`, …) so client logs read the
//! same as with Bluesky's services.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::did::{Did, PublicKey, SignatureError};

/// Default longest lifetime accepted (`exp − now`, and `|iat − now|`): the
/// reference lex-server's 300 s; a PDS mints 60 s tokens.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(300);
/// Clock skew tolerated on `exp` and `iat`.
pub const CLOCK_SKEW_SECS: u64 = 30;
/// Replay entries kept at once; beyond this the oldest-expiring go first.
const MAX_REMEMBERED_JTI: usize = 100_000;
/// The longest token accepted, far above any real service JWT.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// `typ` values of tokens that are not service-auth tokens.
const FORBIDDEN_TYP: &[&str] = &["at+jwt", "refresh+jwt", "dpop+jwt"];
/// The key id used when neither `iss` nor `kid` names one.
const DEFAULT_KEY_ID: &str = "atproto";

/// Why a token was refused; every variant is a 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("send Authorization: Bearer <service JWT>")]
    MissingJwt,
    #[error("{0}")]
    BadJwt(String),
    #[error("the token has expired")]
    JwtExpired,
    #[error("the token is for {0:?}, not this service")]
    BadJwtAudience(String),
    #[error("the token is for method {0:?}, not this one")]
    BadJwtLexiconMethod(String),
    #[error("{0}")]
    BadJwtSignature(String),
    #[error("the token was used already")]
    JwtReplayed,
}

impl AuthError {
    /// The XRPC error name, as the reference verifier reports it.
    pub fn name(&self) -> &'static str {
        match self {
            AuthError::MissingJwt => "AuthMissing",
            AuthError::BadJwt(_) => "BadJwt",
            AuthError::JwtExpired => "JwtExpired",
            AuthError::BadJwtAudience(_) => "BadJwtAudience",
            AuthError::BadJwtLexiconMethod(_) => "BadJwtLexiconMethod",
            AuthError::BadJwtSignature(_) => "BadJwtSignature",
            AuthError::JwtReplayed => "BadJwt",
        }
    }
}

/// Why an issuer's key could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(pub String);

/// Finds an account's signing key; `fresh` bypasses any cache.
#[async_trait]
pub trait KeyResolver: Send + Sync {
    async fn signing_key(
        &self,
        did: &Did,
        key_id: &str,
        fresh: bool,
    ) -> Result<PublicKey, ResolveError>;
}

#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// herald's own DID; `aud` must be it or it + `#bsky_notif`.
    pub service_did: String,
    pub max_lifetime: Duration,
    /// Accept high-S signatures, as the reference TypeScript verifier does.
    pub allow_high_s: bool,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    aud: Option<String>,
    exp: Option<u64>,
    iat: Option<u64>,
    lxm: Option<String>,
    jti: Option<String>,
}

/// The caller a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub issuer: Did,
}

pub struct ServiceAuthVerifier {
    config: VerifierConfig,
    resolver: Arc<dyn KeyResolver>,
    /// (issuer, jti) → exp, for tokens already accepted.
    seen: Mutex<HashMap<(String, String), u64>>,
}

fn bad(why: impl Into<String>) -> AuthError {
    AuthError::BadJwt(why.into())
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, AuthError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| bad(format!("the {what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|_| {
        bad(format!(
            "the {what} is not a JSON object of the expected shape"
        ))
    })
}

impl ServiceAuthVerifier {
    pub fn new(config: VerifierConfig, resolver: Arc<dyn KeyResolver>) -> Self {
        Self {
            config,
            resolver,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Verifies the `Authorization` header of a call to method `lxm` at
    /// unix time `now` (seconds).
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        lxm: &str,
        now: u64,
    ) -> Result<Verified, AuthError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingJwt)?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(bad("the token is too long"));
        }
        let parts: Vec<&str> = token.split('.').collect();
        let [header_b64, claims_b64, signature_b64] = parts[..] else {
            return Err(bad("a JWT has three dot-separated parts"));
        };
        let header: Header = decode_json(header_b64, "header")?;
        let claims: Claims = decode_json(claims_b64, "payload")?;
        if header.alg != "ES256K" && header.alg != "ES256" {
            return Err(bad(format!(
                "alg {:?} is not accepted; use ES256K or ES256",
                header.alg
            )));
        }
        if header
            .typ
            .as_deref()
            .is_some_and(|t| FORBIDDEN_TYP.contains(&t.to_ascii_lowercase().as_str()))
        {
            return Err(bad(
                "an access, refresh or DPoP token is not a service-auth token",
            ));
        }
        self.check_times(&claims, now)?;
        let (issuer, key_id) = issuer(&claims, &header)?;
        self.check_audience(&claims)?;
        match claims.lxm.as_deref() {
            Some(m) if m == lxm => {}
            Some(other) => return Err(AuthError::BadJwtLexiconMethod(other.into())),
            None => return Err(AuthError::BadJwtLexiconMethod(String::new())),
        }
        let jti = claims
            .jti
            .clone()
            .filter(|j| !j.is_empty())
            .ok_or_else(|| bad("jti is required"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| AuthError::BadJwtSignature("the signature is not base64url".into()))?;
        let signed = &token[..header_b64.len() + 1 + claims_b64.len()];
        self.check_signature(&issuer, &key_id, &header.alg, signed.as_bytes(), &signature)
            .await?;
        self.remember(&issuer, jti, claims.exp.unwrap_or(now), now)?;
        Ok(Verified { issuer })
    }

    fn check_times(&self, claims: &Claims, now: u64) -> Result<(), AuthError> {
        let max = self.config.max_lifetime.as_secs();
        let exp = claims.exp.ok_or_else(|| bad("exp is required"))?;
        if now > exp + CLOCK_SKEW_SECS {
            return Err(AuthError::JwtExpired);
        }
        if exp > now + max {
            return Err(bad(format!("exp is more than {max} s ahead")));
        }
        if let Some(iat) = claims.iat
            && (iat > now + CLOCK_SKEW_SECS || now.saturating_sub(iat) > max)
        {
            return Err(bad(format!(
                "iat is more than {max} s from now, or in the future"
            )));
        }
        Ok(())
    }

    fn check_audience(&self, claims: &Claims) -> Result<(), AuthError> {
        let aud = claims.aud.as_deref().unwrap_or_default();
        let ours = &self.config.service_did;
        let accepted = aud == ours || aud.strip_prefix(ours.as_str()) == Some("#bsky_notif");
        if accepted {
            Ok(())
        } else {
            Err(AuthError::BadJwtAudience(aud.into()))
        }
    }

    async fn check_signature(
        &self,
        issuer: &Did,
        key_id: &str,
        alg: &str,
        signed: &[u8],
        signature: &[u8],
    ) -> Result<(), AuthError> {
        let mut first_key = None;
        for fresh in [false, true] {
            let key = self
                .resolver
                .signing_key(issuer, key_id, fresh)
                .await
                .map_err(|e| {
                    AuthError::BadJwtSignature(format!(
                        "cannot get the signing key of {issuer}: {e}"
                    ))
                })?;
            if key.jwt_alg() != alg {
                return Err(AuthError::BadJwtSignature(format!(
                    "alg {alg} does not match the {} key of {issuer}",
                    key.jwt_alg()
                )));
            }
            // Re-resolving only helps if the key changed (a rotation).
            if first_key.as_ref() == Some(&key) {
                break;
            }
            match key.verify(signed, signature, self.config.allow_high_s) {
                Ok(()) => return Ok(()),
                Err(SignatureError::Invalid) => first_key = Some(key),
                Err(e) => return Err(AuthError::BadJwtSignature(e.to_string())),
            }
        }
        Err(AuthError::BadJwtSignature(
            SignatureError::Invalid.to_string(),
        ))
    }

    fn remember(&self, issuer: &Did, jti: String, exp: u64, now: u64) -> Result<(), AuthError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let key = (issuer.as_str().to_owned(), jti);
        if seen
            .get(&key)
            .is_some_and(|&until| until + CLOCK_SKEW_SECS >= now)
        {
            return Err(AuthError::JwtReplayed);
        }
        if seen.len() >= MAX_REMEMBERED_JTI {
            seen.retain(|_, &mut until| until + CLOCK_SKEW_SECS >= now);
        }
        if seen.len() >= MAX_REMEMBERED_JTI {
            // Still full of live tokens: forget the ones that expire first.
            let mut by_expiry: Vec<u64> = seen.values().copied().collect();
            by_expiry.sort_unstable();
            let cutoff = by_expiry[by_expiry.len() / 2];
            seen.retain(|_, &mut until| until > cutoff);
        }
        seen.insert(key, exp);
        Ok(())
    }
}

/// The issuer's DID and the key id to verify with: `iss`'s fragment, else
/// the header's `kid`, else `atproto`.
fn issuer(claims: &Claims, header: &Header) -> Result<(Did, String), AuthError> {
    let iss = claims
        .iss
        .as_deref()
        .ok_or_else(|| bad("iss is required"))?;
    let (did, fragment) = match iss.split_once('#') {
        Some((did, fragment)) => (did, Some(fragment)),
        None => (iss, None),
    };
    let did = Did::parse(did).map_err(|e| bad(format!("iss: {e}")))?;
    let key_id = fragment
        .or(header.kid.as_deref().map(|k| k.trim_start_matches('#')))
        .filter(|k| !k.is_empty())
        .unwrap_or(DEFAULT_KEY_ID);
    Ok((did, key_id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use serde_json::{Value, json};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SERVICE: &str = "did:web:push.example.com";
    const ALICE: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
    const REGISTER: &str = "app.bsky.notification.registerPush";
    const NOW: u64 = 1_800_000_000;

    /// Keys by DID; `rotated` answers `stale` to cached look-ups and the
    /// current key to fresh ones, like a cache that missed a rotation.
    struct Keys {
        current: HashMap<String, PublicKey>,
        stale: Option<PublicKey>,
        lookups: AtomicUsize,
    }

    #[async_trait]
    impl KeyResolver for Keys {
        async fn signing_key(
            &self,
            did: &Did,
            key_id: &str,
            fresh: bool,
        ) -> Result<PublicKey, ResolveError> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            assert_eq!(key_id, "atproto");
            if let (Some(stale), false) = (&self.stale, fresh) {
                return Ok(stale.clone());
            }
            self.current
                .get(did.as_str())
                .cloned()
                .ok_or_else(|| ResolveError("no such DID".into()))
        }
    }

    enum Key {
        K(k256::ecdsa::SigningKey),
        P(p256::ecdsa::SigningKey),
    }

    impl Key {
        fn k(seed: u8) -> Self {
            Key::K(k256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
        }
        fn p(seed: u8) -> Self {
            Key::P(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
        }
        fn public(&self) -> PublicKey {
            match self {
                Key::K(k) => PublicKey::K256((*k.verifying_key()).into()),
                Key::P(p) => PublicKey::P256(*p.verifying_key()),
            }
        }
        fn alg(&self) -> &'static str {
            self.public().jwt_alg()
        }
        /// A low-S compact signature, or its high-S twin.
        fn sign(&self, input: &[u8], high_s: bool) -> Vec<u8> {
            match self {
                Key::K(k) => {
                    let sig: k256::ecdsa::Signature = k.sign(input);
                    let (r, s) = sig.split_scalars();
                    let sig = if high_s {
                        k256::ecdsa::Signature::from_scalars(r, -s).unwrap()
                    } else {
                        sig
                    };
                    sig.to_bytes().to_vec()
                }
                Key::P(p) => {
                    let sig: p256::ecdsa::Signature = p.sign(input);
                    let sig = sig.normalize_s();
                    let (r, s) = sig.split_scalars();
                    let sig = if high_s {
                        p256::ecdsa::Signature::from_scalars(r, -s).unwrap()
                    } else {
                        sig
                    };
                    sig.to_bytes().to_vec()
                }
            }
        }
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn claims() -> Value {
        json!({"iss": ALICE, "aud": SERVICE, "lxm": REGISTER, "iat": NOW, "exp": NOW + 60, "jti": "0123456789abcdef"})
    }

    fn token_with(key: &Key, header: Value, claims: Value, high_s: bool) -> String {
        let input = format!("{}.{}", b64(&header), b64(&claims));
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(key.sign(input.as_bytes(), high_s))
        )
    }

    fn token(key: &Key, claims: Value) -> String {
        token_with(key, json!({"typ": "JWT", "alg": key.alg()}), claims, false)
    }

    fn verifier(key: &Key, allow_high_s: bool) -> (ServiceAuthVerifier, Arc<Keys>) {
        let keys = Arc::new(Keys {
            current: HashMap::from([(ALICE.to_owned(), key.public())]),
            stale: None,
            lookups: AtomicUsize::new(0),
        });
        let config = VerifierConfig {
            service_did: SERVICE.into(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
            allow_high_s,
        };
        (ServiceAuthVerifier::new(config, keys.clone()), keys)
    }

    async fn check(v: &ServiceAuthVerifier, token: &str) -> Result<Verified, AuthError> {
        v.verify(Some(&format!("Bearer {token}")), REGISTER, NOW)
            .await
    }

    #[tokio::test]
    async fn accepts_es256k_and_es256_tokens() {
        for key in [Key::k(1), Key::p(2)] {
            let (v, _) = verifier(&key, false);
            let ok = check(&v, &token(&key, claims())).await.unwrap();
            assert_eq!(ok.issuer.as_str(), ALICE);
        }
    }

    #[tokio::test]
    async fn accepts_the_audience_with_the_bsky_notif_fragment() {
        let key = Key::k(1);
        let (v, _) = verifier(&key, false);
        let mut c = claims();
        c["aud"] = json!(format!("{SERVICE}#bsky_notif"));
        assert!(check(&v, &token(&key, c)).await.is_ok());
    }

    #[tokio::test]
    async fn refuses_tokens_on_their_face_without_resolving_anything() {
        let key = Key::k(1);
        let (v, keys) = verifier(&key, false);
        let with = |field: &str, value: Value| {
            let mut c = claims();
            if value.is_null() {
                c.as_object_mut().unwrap().remove(field);
            } else {
                c[field] = value;
            }
            token(&key, c)
        };
        let header = |h: Value| token_with(&key, h, claims(), false);
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "wrong aud",
                with("aud", json!("did:web:api.bsky.app")),
                "BadJwtAudience",
            ),
            (
                "other fragment",
                with("aud", json!(format!("{SERVICE}#atproto_labeler"))),
                "BadJwtAudience",
            ),
            (
                "wrong lxm",
                with("lxm", json!("app.bsky.notification.unregisterPush")),
                "BadJwtLexiconMethod",
            ),
            ("no lxm", with("lxm", Value::Null), "BadJwtLexiconMethod"),
            ("expired", with("exp", json!(NOW - 120)), "JwtExpired"),
            (
                "exp 10 minutes ahead",
                with("exp", json!(NOW + 600)),
                "BadJwt",
            ),
            ("no exp", with("exp", Value::Null), "BadJwt"),
            ("iat in the future", with("iat", json!(NOW + 120)), "BadJwt"),
            ("no iss", with("iss", Value::Null), "BadJwt"),
            (
                "iss not a DID",
                with("iss", json!("alice.bsky.social")),
                "BadJwt",
            ),
            ("alg none", header(json!({"alg": "none"})), "BadJwt"),
            (
                "HS256",
                header(json!({"alg": "HS256", "typ": "JWT"})),
                "BadJwt",
            ),
            ("RS256", header(json!({"alg": "RS256"})), "BadJwt"),
            (
                "access token",
                header(json!({"alg": "ES256K", "typ": "at+jwt"})),
                "BadJwt",
            ),
            (
                "dpop",
                header(json!({"alg": "ES256K", "typ": "dpop+jwt"})),
                "BadJwt",
            ),
            ("two parts", "a.b".into(), "BadJwt"),
            ("garbage", "!!!.???.###".into(), "BadJwt"),
            (
                "header not an object",
                format!("{}.{}.sig", URL_SAFE_NO_PAD.encode("[1]"), b64(&claims())),
                "BadJwt",
            ),
            ("huge", "a".repeat(20_000), "BadJwt"),
        ];
        for (what, t, name) in cases {
            let err = check(&v, &t).await.unwrap_err();
            assert_eq!(err.name(), name, "{what}: {err}");
        }
        for missing in [None, Some(""), Some("Basic abc"), Some("Bearer ")] {
            assert_eq!(
                v.verify(missing, REGISTER, NOW).await.unwrap_err(),
                AuthError::MissingJwt
            );
        }
        assert_eq!(
            keys.lookups.load(Ordering::SeqCst),
            0,
            "nothing was resolved for a token refusable on its face"
        );
    }

    #[tokio::test]
    async fn refuses_bad_signatures() {
        let key = Key::k(1);
        let (v, _) = verifier(&key, false);
        let good = token(&key, claims());
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut tampered = claims();
        tampered["iss"] = json!(ALICE);
        tampered["jti"] = json!("another-nonce-000");
        parts[1] = b64(&tampered);
        let cases = [
            ("tampered payload", parts.join(".")),
            ("another key", token(&Key::k(9), claims())),
            (
                "ES256 header on a secp256k1 key",
                token_with(&Key::p(3), json!({"alg": "ES256"}), claims(), false),
            ),
            (
                "DER-length signature",
                format!(
                    "{}.{}",
                    good.rsplit_once('.').unwrap().0,
                    URL_SAFE_NO_PAD.encode([0u8; 70])
                ),
            ),
        ];
        for (what, t) in cases {
            assert_eq!(
                check(&v, &t).await.unwrap_err().name(),
                "BadJwtSignature",
                "{what}"
            );
        }
    }

    #[tokio::test]
    async fn refuses_high_s_unless_allowed() {
        for key in [Key::k(1), Key::p(2)] {
            let high = token_with(&key, json!({"alg": key.alg()}), claims(), true);
            let (strict, _) = verifier(&key, false);
            let err = check(&strict, &high).await.unwrap_err();
            assert!(
                matches!(&err, AuthError::BadJwtSignature(m) if m.contains("high S")),
                "{err}"
            );
            let (lenient, _) = verifier(&key, true);
            assert!(check(&lenient, &high).await.is_ok(), "{}", key.alg());
        }
    }

    #[tokio::test]
    async fn a_replayed_token_is_refused() {
        let key = Key::p(2);
        let (v, _) = verifier(&key, false);
        let t = token(&key, claims());
        assert!(check(&v, &t).await.is_ok());
        assert_eq!(check(&v, &t).await.unwrap_err(), AuthError::JwtReplayed);
        let mut other = claims();
        other["jti"] = json!("fedcba9876543210");
        assert!(
            check(&v, &token(&key, other)).await.is_ok(),
            "another jti is another token"
        );
    }

    #[tokio::test]
    async fn a_rotated_key_is_found_by_resolving_again_once() {
        let old = Key::k(1);
        let new = Key::k(2);
        let keys = Arc::new(Keys {
            current: HashMap::from([(ALICE.to_owned(), new.public())]),
            stale: Some(old.public()),
            lookups: AtomicUsize::new(0),
        });
        let config = VerifierConfig {
            service_did: SERVICE.into(),
            max_lifetime: DEFAULT_MAX_LIFETIME,
            allow_high_s: false,
        };
        let v = ServiceAuthVerifier::new(config, keys.clone());
        assert!(check(&v, &token(&new, claims())).await.is_ok());
        assert_eq!(
            keys.lookups.load(Ordering::SeqCst),
            2,
            "cached key, then one fresh look-up"
        );
        let mut c = claims();
        c["jti"] = json!("second-token-0000");
        assert_eq!(
            check(&v, &token(&Key::k(3), c)).await.unwrap_err().name(),
            "BadJwtSignature"
        );
        assert_eq!(
            keys.lookups.load(Ordering::SeqCst),
            4,
            "at most one fresh look-up per token"
        );
    }

    #[tokio::test]
    async fn the_key_id_comes_from_the_issuer_fragment() {
        let key = Key::k(1);
        let (v, _) = verifier(&key, false);
        let mut c = claims();
        c["iss"] = json!(format!("{ALICE}#atproto"));
        assert!(check(&v, &token(&key, c)).await.is_ok());
    }
}

//! Compact JWTs signed by herald: ES256 for APNs provider tokens and VAPID
//! (RFC 8292), RS256 for FCM's OAuth2 assertion.
//!
//! Small enough to own: header and claims are JSON, the signature covers
//! `base64url(header) . base64url(claims)`, and ES256 signatures are the raw
//! 64-byte `r || s` (RFC 7518 §3.4), not DER.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PKCS#8 PEM private key: {0}")]
    NotPem(String),
    #[error("not a P-256 private key: {0}")]
    NotP256(String),
    #[error("not an RSA private key usable for RS256: {0}")]
    NotRsa(String),
}

/// base64url without padding, as JWTs and Web Push use it.
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url, with or without padding.
pub fn b64url_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('='))
}

/// Loads a P-256 private key from PKCS#8 PEM (an APNs `.p8` file).
pub fn p256_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError::NotP256(e.to_string()))
}

fn signing_input(header: &impl Serialize, claims: &impl Serialize) -> String {
    // Serialising plain structs and json! values cannot fail.
    let header = serde_json::to_vec(header).expect("JWT header serialises");
    let claims = serde_json::to_vec(claims).expect("JWT claims serialise");
    format!("{}.{}", b64url(header), b64url(claims))
}

/// Signs an ES256 JWT. `header` must name `"alg": "ES256"`.
pub fn sign_es256(header: &impl Serialize, claims: &impl Serialize, key: &SigningKey) -> String {
    let input = signing_input(header, claims);
    let signature: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64url(signature.to_bytes()))
}

/// An RSA key for RS256 signatures (PKCS#1 v1.5 with SHA-256).
pub struct RsaKey(ring::signature::RsaKeyPair);

impl RsaKey {
    /// Loads an RSA private key from PKCS#8 PEM, the form of a Google
    /// service account's `private_key`.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| KeyError::NotPem(e.to_string()))?;
        ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der())
            .map(RsaKey)
            .map_err(|e| KeyError::NotRsa(e.to_string()))
    }

    /// Signs an RS256 JWT. `header` must name `"alg": "RS256"`.
    pub fn sign_rs256(&self, header: &impl Serialize, claims: &impl Serialize) -> String {
        let input = signing_input(header, claims);
        let mut signature = vec![0; self.0.public().modulus_len()];
        self.0
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .expect("RSA signing with a valid key and a correctly sized buffer");
        format!("{input}.{}", b64url(signature))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;
    use serde_json::json;

    #[test]
    fn es256_tokens_verify_with_the_public_key() {
        let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let token = sign_es256(
            &json!({"alg": "ES256", "kid": "ABC123DEFG"}),
            &json!({"iss": "TEAM", "iat": 1}),
            &key,
        );
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&b64url_decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["kid"], "ABC123DEFG");
        let signature = b64url_decode(parts[2]).unwrap();
        assert_eq!(signature.len(), 64, "raw r||s, not DER");
        let signature = Signature::from_slice(&signature).unwrap();
        VerifyingKey::from(&key)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .unwrap();
    }

    #[test]
    fn refuses_keys_of_the_wrong_kind() {
        assert!(matches!(
            p256_from_pem("garbage"),
            Err(KeyError::NotP256(_))
        ));
        assert!(matches!(
            RsaKey::from_pem("garbage"),
            Err(KeyError::NotPem(_))
        ));
    }

    #[test]
    fn base64url_round_trips_with_or_without_padding() {
        assert_eq!(b64url([0xfb, 0xff]), "-_8");
        assert_eq!(b64url_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(b64url_decode("-_8=").unwrap(), [0xfb, 0xff]);
    }
}

//! RFC 8291 message encryption for Web Push (`Content-Encoding: aes128gcm`).
//!
//! Sender side only: a fresh P-256 key and 16-byte salt per message, ECDH
//! with the subscription's `p256dh`, two HKDF-SHA-256 stages (the auth
//! secret, then the salt) giving a 16-byte content key and a 12-byte nonce,
//! and one AES-128-GCM record: plaintext, the 0x02 last-record delimiter,
//! no padding. The body is the RFC 8188 header (salt, record size, key id =
//! our public key) followed by that record.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use p256::elliptic_curve::Generate;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::{PublicKey, SecretKey};
use rand::RngExt;
use sha2::Sha256;

/// Record size written in the header; one record holds the whole message.
pub const RECORD_SIZE: u32 = 4096;
/// Push services must accept 4,096-byte bodies; minus the 86-byte header,
/// the 16-byte tag and the delimiter, 3,993 bytes of plaintext always fit
/// (RFC 8291 §4).
pub const MAX_PLAINTEXT: usize = 3993;
/// An uncompressed P-256 point.
pub const PUBLIC_KEY_LEN: usize = 65;
/// The subscription's authentication secret.
pub const AUTH_SECRET_LEN: usize = 16;
const SALT_LEN: usize = 16;
const LAST_RECORD_DELIMITER: u8 = 0x02;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EceError {
    #[error("p256dh is not an uncompressed P-256 public key")]
    BadPublicKey,
    #[error("auth is not a 16-byte secret")]
    BadAuthSecret,
    #[error("plaintext is {0} bytes; at most {MAX_PLAINTEXT} fit in a Web Push message")]
    TooLarge(usize),
}

/// Checks a subscription's keys and returns the receiver's public key.
pub fn check_keys(p256dh: &[u8], auth: &[u8]) -> Result<PublicKey, EceError> {
    if auth.len() != AUTH_SECRET_LEN {
        return Err(EceError::BadAuthSecret);
    }
    if p256dh.len() != PUBLIC_KEY_LEN || p256dh[0] != 0x04 {
        return Err(EceError::BadPublicKey);
    }
    PublicKey::from_sec1_bytes(p256dh).map_err(|_| EceError::BadPublicKey)
}

/// Encrypts `plaintext` for the subscription keys `p256dh` and `auth`.
pub fn encrypt(plaintext: &[u8], p256dh: &[u8], auth: &[u8]) -> Result<Vec<u8>, EceError> {
    let mut rng = rand::rng();
    let sender = SecretKey::generate_from_rng(&mut rng);
    let salt: [u8; SALT_LEN] = rng.random();
    encrypt_with(plaintext, p256dh, auth, &sender, &salt)
}

/// `encrypt` with the sender key and salt given, so the RFC's vector can be checked.
fn encrypt_with(
    plaintext: &[u8],
    p256dh: &[u8],
    auth: &[u8],
    sender: &SecretKey,
    salt: &[u8; SALT_LEN],
) -> Result<Vec<u8>, EceError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EceError::TooLarge(plaintext.len()));
    }
    let receiver = check_keys(p256dh, auth)?;
    let sender_public = sender.public_key().to_sec1_point(false);
    let shared = p256::ecdh::diffie_hellman(sender.to_nonzero_scalar(), receiver.as_affine());

    // IKM = HKDF(auth, ecdh, "WebPush: info\0" || ua_public || as_public)
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(p256dh);
    key_info.extend_from_slice(sender_public.as_bytes());
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm)
        .expect("32 bytes is a valid HKDF-SHA-256 length");

    let content = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    content
        .expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .expect("valid length");
    content
        .expand(b"Content-Encoding: nonce\0", &mut nonce)
        .expect("valid length");

    let mut record = Vec::with_capacity(plaintext.len() + 1);
    record.extend_from_slice(plaintext);
    record.push(LAST_RECORD_DELIMITER);
    let cipher = Aes128Gcm::new_from_slice(&cek).expect("16-byte key");
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), record.as_slice())
        .expect("AES-GCM encryption of a bounded record");

    let mut body = Vec::with_capacity(SALT_LEN + 4 + 1 + PUBLIC_KEY_LEN + sealed.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(PUBLIC_KEY_LEN as u8);
    body.extend_from_slice(sender_public.as_bytes());
    body.extend_from_slice(&sealed);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{b64url, b64url_decode};

    // RFC 8291 Appendix A.
    const PLAINTEXT: &[u8] = b"When I grow up, I want to be a watermelon";
    const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    #[test]
    fn reproduces_rfc_8291_appendix_a() {
        let sender = SecretKey::from_slice(&b64url_decode(AS_PRIVATE).unwrap()).unwrap();
        let salt: [u8; 16] = b64url_decode(SALT).unwrap().try_into().unwrap();
        let body = encrypt_with(
            PLAINTEXT,
            &b64url_decode(UA_PUBLIC).unwrap(),
            &b64url_decode(AUTH).unwrap(),
            &sender,
            &salt,
        )
        .unwrap();
        assert_eq!(b64url(body), BODY);
    }

    #[test]
    fn every_message_gets_a_fresh_key_and_salt() {
        let (p256dh, auth) = (
            b64url_decode(UA_PUBLIC).unwrap(),
            b64url_decode(AUTH).unwrap(),
        );
        let a = encrypt(PLAINTEXT, &p256dh, &auth).unwrap();
        let b = encrypt(PLAINTEXT, &p256dh, &auth).unwrap();
        assert_ne!(a[..16], b[..16], "salt");
        assert_ne!(a[21..86], b[21..86], "sender key");
        assert_eq!(a.len(), 86 + PLAINTEXT.len() + 1 + 16);
    }

    #[test]
    fn refuses_bad_keys_and_oversized_plaintext() {
        let (p256dh, auth) = (
            b64url_decode(UA_PUBLIC).unwrap(),
            b64url_decode(AUTH).unwrap(),
        );
        assert_eq!(
            encrypt(PLAINTEXT, &p256dh[..33], &auth),
            Err(EceError::BadPublicKey)
        );
        let mut off_curve = p256dh.clone();
        off_curve[64] ^= 1;
        assert_eq!(
            encrypt(PLAINTEXT, &off_curve, &auth),
            Err(EceError::BadPublicKey)
        );
        assert_eq!(
            encrypt(PLAINTEXT, &p256dh, &auth[..8]),
            Err(EceError::BadAuthSecret)
        );
        assert_eq!(
            encrypt(&[b'x'; MAX_PLAINTEXT + 1], &p256dh, &auth),
            Err(EceError::TooLarge(MAX_PLAINTEXT + 1))
        );
        assert!(encrypt(&[b'x'; MAX_PLAINTEXT], &p256dh, &auth).is_ok());
    }
}

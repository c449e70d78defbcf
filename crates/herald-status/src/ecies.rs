//! ECIES as go-ethereum's `crypto/ecies` does it with secp256k1 and its
//! default parameters (AES-128-CTR, HMAC-SHA-256): the asymmetric
//! encryption of Waku v1 payloads (26/WAKU2-PAYLOAD).
//!
//! Layout: `ephemeral public key (65, uncompressed) ‖ IV (16) ‖ ciphertext
//! ‖ tag (32)`. With `z` the raw ECDH x-coordinate, go-ethereum's
//! concatenation KDF gives `K = SHA-256(0x00000001 ‖ z)` (one round covers
//! the 32 bytes needed); `K[..16]` is the AES key and `SHA-256(K[16..])` the
//! HMAC key, and the tag covers `IV ‖ ciphertext` with no shared info. The
//! tag is checked, in constant time, before anything is decrypted.

use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{KeyInit, Mac};
use k256::elliptic_curve::Generate;
use k256::{PublicKey, SecretKey};
use rand::RngExt;
use sha2::{Digest, Sha256};

use crate::crypto::{ecdh_x, uncompressed65};

type Aes128Ctr = ctr::Ctr128BE<aes_gcm::aes::Aes128>;
type HmacSha256 = hmac::Hmac<Sha256>;

const PUBLIC_KEY_LEN: usize = 65;
const IV_LEN: usize = 16;
const TAG_LEN: usize = 32;
/// Everything around the ciphertext.
pub(crate) const OVERHEAD: usize = PUBLIC_KEY_LEN + IV_LEN + TAG_LEN;

/// Why an ECIES blob did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EciesError {
    #[error(
        "an ECIES blob holds at least a 65-byte key, a 16-byte IV and a 32-byte tag, got {0} bytes"
    )]
    Length(usize),
    #[error("the ECIES ephemeral key is not an uncompressed secp256k1 point")]
    EphemeralKey,
    #[error("the ECIES tag does not match: wrong recipient or altered ciphertext")]
    Tag,
}

/// Encrypts `plaintext` to `recipient` under a fresh ephemeral key and IV.
pub(crate) fn encrypt(recipient: &PublicKey, plaintext: &[u8]) -> Vec<u8> {
    let mut rng = rand::rng();
    let ephemeral = SecretKey::generate_from_rng(&mut rng);
    let iv: [u8; IV_LEN] = rng.random();
    let (encryption_key, mac_key) = derive_keys(&ecdh_x(&ephemeral, recipient));

    let mut blob = Vec::with_capacity(OVERHEAD + plaintext.len());
    blob.extend_from_slice(&uncompressed65(&ephemeral.public_key()));
    blob.extend_from_slice(&iv);
    let ciphertext_start = blob.len();
    blob.extend_from_slice(plaintext);
    Aes128Ctr::new(&encryption_key.into(), &iv.into())
        .apply_keystream(&mut blob[ciphertext_start..]);
    let tag = mac(&mac_key, &blob[PUBLIC_KEY_LEN..])
        .finalize()
        .into_bytes();
    blob.extend_from_slice(&tag);
    blob
}

/// Checks the tag and decrypts a blob `encrypt` (or go-ethereum) made.
pub(crate) fn decrypt(secret: &SecretKey, blob: &[u8]) -> Result<Vec<u8>, EciesError> {
    if blob.len() < OVERHEAD {
        return Err(EciesError::Length(blob.len()));
    }
    let (ephemeral, rest) = blob.split_at(PUBLIC_KEY_LEN);
    let (iv_and_ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    // Only the uncompressed form, as go-ethereum's `elliptic.Unmarshal`.
    if ephemeral[0] != 0x04 {
        return Err(EciesError::EphemeralKey);
    }
    let ephemeral = PublicKey::from_sec1_bytes(ephemeral).map_err(|_| EciesError::EphemeralKey)?;
    let (encryption_key, mac_key) = derive_keys(&ecdh_x(secret, &ephemeral));
    mac(&mac_key, iv_and_ciphertext)
        .verify_slice(tag)
        .map_err(|_| EciesError::Tag)?;

    let (iv, ciphertext) = iv_and_ciphertext.split_at(IV_LEN);
    let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| EciesError::Length(blob.len()))?;
    let mut plaintext = ciphertext.to_vec();
    Aes128Ctr::new(&encryption_key.into(), &iv.into()).apply_keystream(&mut plaintext);
    Ok(plaintext)
}

/// go-ethereum's concatenation KDF for 32 bytes, split into the AES-128 key
/// and the (hashed) HMAC key.
fn derive_keys(shared_x: &[u8; 32]) -> ([u8; 16], [u8; 32]) {
    let derived = Sha256::new()
        .chain_update(1u32.to_be_bytes())
        .chain_update(shared_x)
        .finalize();
    let (encryption_key, mac_seed) = derived.split_at(16);
    let encryption_key: [u8; 16] = encryption_key
        .try_into()
        .expect("SHA-256 output splits into two 16-byte halves");
    (encryption_key, Sha256::digest(mac_seed).into())
}

fn mac(key: &[u8; 32], data: &[u8]) -> HmacSha256 {
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_slice(&[byte; 32]).unwrap()
    }

    #[test]
    fn round_trips_to_the_recipient_only() {
        let recipient = key(5);
        let blob = encrypt(&recipient.public_key(), b"hello waku");
        assert_eq!(blob.len(), OVERHEAD + 10);
        assert_eq!(blob[0], 0x04);
        assert_eq!(decrypt(&recipient, &blob).unwrap(), b"hello waku");
        assert_eq!(decrypt(&key(6), &blob), Err(EciesError::Tag));
        assert_ne!(encrypt(&recipient.public_key(), b"hello waku"), blob);
    }

    #[test]
    fn every_altered_byte_after_the_key_fails_the_tag() {
        let recipient = key(5);
        let blob = encrypt(&recipient.public_key(), b"abc");
        for index in PUBLIC_KEY_LEN..blob.len() {
            let mut tampered = blob.clone();
            tampered[index] ^= 0x80;
            assert_eq!(
                decrypt(&recipient, &tampered),
                Err(EciesError::Tag),
                "byte {index}"
            );
        }
    }

    #[test]
    fn malformed_ephemeral_keys_and_short_blobs_are_refused() {
        let recipient = key(5);
        let blob = encrypt(&recipient.public_key(), b"abc");
        assert_eq!(
            decrypt(&recipient, &blob[..OVERHEAD - 1]),
            Err(EciesError::Length(OVERHEAD - 1))
        );
        assert_eq!(decrypt(&recipient, &[]), Err(EciesError::Length(0)));

        let mut compressed_tag = blob.clone();
        compressed_tag[0] = 0x02;
        assert_eq!(
            decrypt(&recipient, &compressed_tag),
            Err(EciesError::EphemeralKey)
        );
        let mut off_curve = blob.clone();
        off_curve[64] ^= 1;
        assert_eq!(
            decrypt(&recipient, &off_curve),
            Err(EciesError::EphemeralKey)
        );
        let mut zeros = blob;
        zeros[1..65].fill(0);
        assert_eq!(decrypt(&recipient, &zeros), Err(EciesError::EphemeralKey));
    }

    #[test]
    fn an_empty_plaintext_is_just_the_overhead() {
        let recipient = key(8);
        let blob = encrypt(&recipient.public_key(), b"");
        assert_eq!(blob.len(), OVERHEAD);
        assert_eq!(decrypt(&recipient, &blob).unwrap(), b"");
    }
}

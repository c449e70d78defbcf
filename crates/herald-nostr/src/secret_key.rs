//! herald's own Nostr identity: the secret key it signs NIP-42 `AUTH`
//! events with.
//!
//! The key lives in a file as 64 hex digits (the form nostr-tools and
//! rust-nostr print as the secret key's hex), so an operator can move it
//! between tools; `herald keys nostr` writes one. Generation draws from the
//! operating system's generator; a key is never logged, and `Debug` shows
//! only the public half.

use std::fmt;

use k256::elliptic_curve::Generate;
use k256::schnorr::SigningKey;

use crate::error::NostrError;
use crate::hex::{self, Digits};
use crate::pubkey::PublicKey;

/// A BIP-340 secret key.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self(SigningKey::generate_from_rng(&mut rand::rng()))
    }

    /// 64 hex digits, either case, surrounding whitespace ignored (a key
    /// file usually ends with a newline).
    pub fn parse_hex(text: &str) -> Result<Self, NostrError> {
        hex::decode::<32>(text.trim(), Digits::AnyCase)
            .and_then(|bytes| SigningKey::from_slice(&bytes).ok())
            .map(Self)
            .ok_or(NostrError::InvalidSecretKey)
    }

    /// The key as a key file holds it: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0.to_bytes())
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_bytes(self.0.verifying_key().to_bytes().into())
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.0
    }
}

impl From<SigningKey> for SecretKey {
    fn from(key: SigningKey) -> Self {
        Self(key)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key().to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BIP-340's test vector 1: a secret key and its x-only public key.
    const BIP340_SECRET_HEX: &str =
        "b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfef";
    const BIP340_PUBLIC_HEX: &str =
        "dff1d77f2a671c5f36183726db2341be58feae1da2deced843240f7b502ba659";

    #[test]
    fn a_key_file_round_trips_and_names_the_public_key_bip340_derives() {
        let key = SecretKey::parse_hex(&format!("{BIP340_SECRET_HEX}\n")).unwrap();
        assert_eq!(key.to_hex(), BIP340_SECRET_HEX);
        assert_eq!(key.public_key().to_hex(), BIP340_PUBLIC_HEX);
        let upper = SecretKey::parse_hex(&BIP340_SECRET_HEX.to_ascii_uppercase()).unwrap();
        assert_eq!(upper.public_key(), key.public_key());
    }

    #[test]
    fn refuses_what_is_not_a_secret_key() {
        for bad in [
            "",
            &BIP340_SECRET_HEX[1..],
            &"0".repeat(64),
            // The group order n: not below it.
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5",
        ] {
            assert_eq!(
                SecretKey::parse_hex(bad).unwrap_err(),
                NostrError::InvalidSecretKey
            );
        }
    }

    #[test]
    fn generated_keys_differ_and_debug_shows_only_the_public_half() {
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        assert_ne!(a.to_hex(), b.to_hex());
        let shown = format!("{a:?}");
        assert!(shown.contains(&a.public_key().to_hex()));
        assert!(!shown.contains(&a.to_hex()));
    }
}

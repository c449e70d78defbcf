//! Nostr public keys: the 32-byte x-only secp256k1 keys of BIP-340.
//!
//! Two ways in. `parse_hex` takes NIP-01's wire form (64 lowercase hex
//! digits), as events, tags and relay filters carry it. `parse_npub_or_hex`
//! takes what a person or an app's registration sends: an `npub` (NIP-19)
//! or hex in either case, because NIP-19 asks servers to accept both and
//! Mostro's API takes hex of either case. Both give the same value, written
//! back out only as lowercase hex, so `nostr:<hex>` names one account
//! however the key arrived.
//!
//! Parsing checks the form, not that the bytes are a point on the curve:
//! a `p` tag or a registration only names a key, and matching recipients
//! must stay a hex decode. The curve is checked where it matters, when a
//! signature is verified (`event`).

use std::fmt;

use herald_core::Account;

use crate::bech32;
use crate::error::NostrError;
use crate::hex::{self, Digits};

/// NIP-19's prefix for a public key.
const NPUB_PREFIX: &str = "npub";
/// The account namespace herald-core's `Account` gives Nostr (DESIGN: words).
const ACCOUNT_NAMESPACE: &str = "nostr";

/// A Nostr public key, as 32 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// NIP-01's form: exactly 64 lowercase hex digits.
    pub fn parse_hex(text: &str) -> Result<Self, NostrError> {
        hex::decode(text, Digits::Lowercase)
            .map(Self)
            .ok_or(NostrError::InvalidPublicKey)
    }

    /// A key as people and apps send it: `npub1…` (NIP-19, all lower or all
    /// upper case) or 64 hex digits of either case. Surrounding whitespace
    /// is the caller's to trim.
    pub fn parse_npub_or_hex(text: &str) -> Result<Self, NostrError> {
        let looks_like_npub = text
            .get(..NPUB_PREFIX.len() + 1)
            .is_some_and(|p| p.eq_ignore_ascii_case("npub1"));
        if looks_like_npub {
            return Self::parse_npub(text);
        }
        hex::decode(text, Digits::AnyCase)
            .map(Self)
            .ok_or(NostrError::InvalidPublicKey)
    }

    fn parse_npub(text: &str) -> Result<Self, NostrError> {
        let decoded = bech32::decode(text).map_err(NostrError::InvalidNpub)?;
        if decoded.hrp != NPUB_PREFIX {
            return Err(NostrError::InvalidNpub("the prefix is not npub"));
        }
        let bytes = bech32::to_bytes(&decoded.values)
            .ok_or(NostrError::InvalidNpub("non-zero padding bits"))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Self)
            .map_err(|_| NostrError::InvalidNpub("the key is not 32 bytes"))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// NIP-19's form, as people paste it: `npub1…`.
    pub fn to_npub(&self) -> String {
        bech32::encode(NPUB_PREFIX, &self.0)
    }

    /// NIP-01's form: 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    /// herald's account for this key: `nostr:<hex>`.
    pub fn account(&self) -> Account {
        Account::parse(&format!("{ACCOUNT_NAMESPACE}:{}", self.to_hex()))
            .expect("nostr:<64 hex digits> is a valid account")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIP-19's examples.
    const NIP19_NPUB: &str = "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg";
    const NIP19_HEX: &str = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e";
    const NIP19_NSEC: &str = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5";
    const NIP19_NPROFILE: &str = "nprofile1qqsrhuxx8l9ex335q7he0f09aej04zpazpl0ne2cgukyawd24mayt8gpp4mhxue69uhhytnc9e3k7mgpz4mhxue69uhkg6nzv9ejuumpv34kytnrdaksjlyr9p";

    #[test]
    fn decodes_nip19_npub_example() {
        let key = PublicKey::parse_npub_or_hex(NIP19_NPUB).unwrap();
        assert_eq!(key.to_hex(), NIP19_HEX);
        assert_eq!(key, PublicKey::parse_hex(NIP19_HEX).unwrap());
    }

    #[test]
    fn writes_nip19_npub_example() {
        let key = PublicKey::parse_hex(NIP19_HEX).unwrap();
        assert_eq!(key.to_npub(), NIP19_NPUB);
    }

    #[test]
    fn accepts_an_all_uppercase_npub() {
        let key = PublicKey::parse_npub_or_hex(&NIP19_NPUB.to_ascii_uppercase()).unwrap();
        assert_eq!(key.to_hex(), NIP19_HEX);
    }

    #[test]
    fn wire_form_refuses_uppercase_hex_that_user_input_accepts() {
        let upper = NIP19_HEX.to_ascii_uppercase();
        assert_eq!(
            PublicKey::parse_hex(&upper),
            Err(NostrError::InvalidPublicKey)
        );
        assert_eq!(
            PublicKey::parse_npub_or_hex(&upper).unwrap().to_hex(),
            NIP19_HEX
        );
    }

    #[test]
    fn wire_form_refuses_an_npub() {
        assert_eq!(
            PublicKey::parse_hex(NIP19_NPUB),
            Err(NostrError::InvalidPublicKey)
        );
    }

    #[test]
    fn refuses_hex_of_the_wrong_length_or_with_other_characters() {
        for text in [
            "",
            &NIP19_HEX[..62],
            &format!("{NIP19_HEX}00"),
            &format!("{}g", &NIP19_HEX[..63]),
            &format!(" {}", &NIP19_HEX[..63]),
            &format!("0x{}", &NIP19_HEX[..62]),
        ] {
            assert_eq!(
                PublicKey::parse_npub_or_hex(text),
                Err(NostrError::InvalidPublicKey),
                "{text:?}"
            );
        }
    }

    #[test]
    fn refuses_an_npub_with_one_character_changed() {
        let mut tampered = NIP19_NPUB.to_owned();
        tampered.replace_range(10..11, "q");
        assert_ne!(tampered, NIP19_NPUB);
        assert_eq!(
            PublicKey::parse_npub_or_hex(&tampered),
            Err(NostrError::InvalidNpub("a wrong checksum"))
        );
    }

    #[test]
    fn refuses_an_npub_of_mixed_case() {
        let mixed = format!("NPUB{}", &NIP19_NPUB[4..]);
        assert_eq!(
            PublicKey::parse_npub_or_hex(&mixed),
            Err(NostrError::InvalidNpub("mixed upper and lower case"))
        );
    }

    #[test]
    fn refuses_other_nip19_entities() {
        // Not "npub1…", and not hex either.
        assert_eq!(
            PublicKey::parse_npub_or_hex(NIP19_NSEC),
            Err(NostrError::InvalidPublicKey)
        );
        assert_eq!(
            PublicKey::parse_npub_or_hex(NIP19_NPROFILE),
            Err(NostrError::InvalidPublicKey)
        );
    }

    #[test]
    fn refuses_an_npub_that_does_not_hold_32_bytes() {
        // Valid bech32 with the npub prefix around bytes 0..20.
        let short = "npub1qqqsyqcyq5rqwzqfpg9scrgwpugpzysn2k58pk";
        assert_eq!(
            PublicKey::parse_npub_or_hex(short),
            Err(NostrError::InvalidNpub("the key is not 32 bytes"))
        );
    }

    #[test]
    fn refuses_an_npub_whose_padding_bits_are_not_zero() {
        // NIP-19's example key with the last of its 4 padding bits set,
        // under a valid checksum: a second spelling of the same key.
        let padded = "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8pl6x5k6";
        assert_eq!(
            PublicKey::parse_npub_or_hex(padded),
            Err(NostrError::InvalidNpub("non-zero padding bits"))
        );
    }

    #[test]
    fn refuses_bech32_whose_prefix_only_starts_with_npub() {
        // The prefix runs to the last `1`: this one is "npub1x".
        let other = "npub1x10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8q7wrtyc";
        assert_eq!(
            PublicKey::parse_npub_or_hex(other),
            Err(NostrError::InvalidNpub("the prefix is not npub"))
        );
    }

    #[test]
    fn names_the_account_nostr_colon_lowercase_hex() {
        let key = PublicKey::parse_npub_or_hex(NIP19_NPUB).unwrap();
        assert_eq!(key.account().as_str(), format!("nostr:{NIP19_HEX}"));
        assert_eq!(key.to_string(), NIP19_HEX);
    }
}

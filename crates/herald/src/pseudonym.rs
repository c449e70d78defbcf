//! Pseudonyms for logs: a pubkey or token is logged as a keyed hash of it,
//! never in clear (DESIGN.md, "Privacy").
//!
//! The key is random, made when the process first needs it and never
//! stored, so the same value has the same pseudonym within one run (log
//! lines about one user can be followed) and an unrelated one after a
//! restart; nobody holding the logs, the operator included, can test a
//! guessed pubkey against them. HMAC-SHA-256 rather than a salted plain
//! hash: it is the construction made for a secret key.

use std::sync::OnceLock;

use ring::hmac;
use ring::rand::SystemRandom;

/// Bytes of the HMAC kept: 64 bits tell apart the users one run sees and
/// keep log lines short.
const PSEUDONYM_BYTES: usize = 8;

fn key() -> &'static hmac::Key {
    static KEY: OnceLock<hmac::Key> = OnceLock::new();
    KEY.get_or_init(|| {
        hmac::Key::generate(hmac::HMAC_SHA256, &SystemRandom::new())
            .expect("the operating system's random source works")
    })
}

/// The pseudonym of `value` in this process, as lowercase hex.
pub fn pseudonym(value: &str) -> String {
    let tag = hmac::sign(key(), value.as_bytes());
    tag.as_ref()[..PSEUDONYM_BYTES]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBKEY: &str = "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d";

    #[test]
    fn the_same_value_has_the_same_pseudonym_and_never_appears_in_it() {
        let once = pseudonym(PUBKEY);
        assert_eq!(once, pseudonym(PUBKEY));
        assert_eq!(once.len(), PSEUDONYM_BYTES * 2);
        assert!(once.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!PUBKEY.contains(&once));
        assert_ne!(once, pseudonym(&PUBKEY.replace('3', "4")));
    }
}

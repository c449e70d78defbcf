//! Where Status messages travel: the pubsub topic, and the content topics
//! a push-notification server listens and replies on.
//!
//! status-go names a conversation by a chat name and derives its Waku
//! content topic as `/waku/1/0x{hex(Keccak256(name)[..4])}/rfc26`. A server
//! listens on three kinds (reference §11): its **personal** topic
//! (registrations), its **partitioned** topic (notification requests) and
//! one **query** topic per registered key; every reply goes to the
//! recipient's partitioned topic. Query topics are "public chats": their
//! payloads are encrypted under a key derived from the chat name alone
//! (`symmetric_key`), so anyone who knows the hashed key can read them.

use k256::PublicKey;
use sha2::Sha256;

use crate::crypto::{keccak256, uncompressed65};
use crate::hex;

/// The shard everything outside communities uses: static sharding, cluster
/// 16, shard 32 (status-go `DefaultShardIndex`).
pub const STATUS_PUBSUB_TOPIC: &str = "/waku/2/rs/16/32";
/// Partitioned topics spread keys over this many buckets (status-go
/// `nPartitions`).
const PARTITIONS: u32 = 5000;
/// PBKDF2 rounds for a public chat's key (status-go `wakuv2/waku.go`): 65,356,
/// a long-standing typo for 65,536 that every client now depends on.
const SYMMETRIC_KEY_ROUNDS: u32 = 65_356;
/// The chat-name prefix of personal and partitioned topics.
const DISCOVERY_PREFIX: &str = "contact-discovery-";

/// The content topic of a chat name (status-go `ToTopic` and
/// `wakuv2/common.BytesToTopic(…).ContentTopic()`).
pub fn content_topic(chat_name: &str) -> String {
    let hash = keccak256(chat_name.as_bytes());
    format!("/waku/1/0x{}/rfc26", hex::encode(&hash[..4]))
}

/// A key's personal ("discovery") topic: `contact-discovery-` and the
/// uncompressed key in hex without `0x`. Registrations reach a server here.
pub fn personal_topic(key: &PublicKey) -> String {
    content_topic(&format!(
        "{DISCOVERY_PREFIX}{}",
        hex::encode(&uncompressed65(key))
    ))
}

/// A key's partitioned topic: `contact-discovery-` and the key's X
/// coordinate modulo 5000, in decimal. Requests reach a server here, and
/// every reply goes to the recipient's.
pub fn partitioned_topic(key: &PublicKey) -> String {
    content_topic(&format!("{DISCOVERY_PREFIX}{}", partition(key)))
}

/// The chat name of a registered key's query topic: its hashed key in
/// lowercase hex, **without** `0x` (status-go; the spec adds one).
pub fn query_chat_name(hashed_key: &[u8; 64]) -> String {
    hex::encode(hashed_key)
}

/// The symmetric key of a public chat: PBKDF2-HMAC-SHA256 of the chat name,
/// empty salt, 65,356 rounds, 32 bytes. Costly on purpose (tens of
/// milliseconds): callers derive it once per topic and keep it.
pub fn symmetric_key(chat_name: &str) -> [u8; 32] {
    pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(chat_name.as_bytes(), b"", SYMMETRIC_KEY_ROUNDS)
}

/// `X mod 5000`, X read as a 256-bit big-endian number.
fn partition(key: &PublicKey) -> u32 {
    let point = uncompressed65(key);
    point[1..33].iter().fold(0u32, |remainder, &byte| {
        (remainder * 256 + u32::from(byte)) % PARTITIONS
    })
}

#[cfg(test)]
mod tests {
    use k256::SecretKey;

    use super::*;
    use crate::crypto::{hashed_key, shake256_64};

    /// The key whose X is the generator's: 0x79be…1798.
    fn generator() -> PublicKey {
        let mut one = [0u8; 32];
        one[31] = 1;
        SecretKey::from_slice(&one).unwrap().public_key()
    }

    #[test]
    fn content_topics_are_the_first_four_keccak_bytes() {
        // keccak256("contact-discovery") starts f8946aac: the discovery
        // topic every Status client has listened on since Whisper.
        assert_eq!(
            content_topic("contact-discovery"),
            "/waku/1/0xf8946aac/rfc26"
        );
        let name = "some-chat";
        let hash = keccak256(name.as_bytes());
        assert_eq!(
            content_topic(name),
            format!("/waku/1/0x{}/rfc26", hex::encode(&hash[..4]))
        );
        assert_eq!(
            content_topic("").len(),
            "/waku/1/0x".len() + 8 + "/rfc26".len()
        );
    }

    #[test]
    fn the_partition_is_x_mod_5000_in_decimal() {
        // Gx mod 5000, computed independently: the last four decimal digits
        // of Gx = 55066263022277343669578718895168534326250603453777594175500187360389116729240
        // are 9240, and 9240 mod 5000 = 4240 (5000 divides 10,000).
        assert_eq!(partition(&generator()), 4240);
        assert_eq!(
            partitioned_topic(&generator()),
            content_topic("contact-discovery-4240")
        );
    }

    #[test]
    fn the_personal_topic_names_the_uncompressed_key_without_0x() {
        let key = generator();
        let name = format!("contact-discovery-{}", hex::encode(&uncompressed65(&key)));
        assert!(name.starts_with("contact-discovery-0479be667e"));
        assert_eq!(personal_topic(&key), content_topic(&name));
    }

    #[test]
    fn query_chat_names_are_128_hex_digits_without_0x() {
        let name = query_chat_name(&hashed_key(&generator()));
        assert_eq!(name.len(), 128);
        assert!(!name.starts_with("0x"));
        assert_eq!(
            name,
            hex::encode(&shake256_64(&crate::crypto::compress33(&generator())))
        );
        assert!(
            name.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
    }

    #[test]
    fn symmetric_keys_use_65356_rounds_not_65536() {
        // PBKDF2-HMAC-SHA256("status", "", 65356) computed with Python's
        // hashlib (an independent implementation).
        assert_eq!(
            hex::encode(&symmetric_key("status")),
            "36224048e42c49e5c59c57bba5024fbb8822d6b4ee6ac5fbefd8b77f5323ecc4"
        );
        let with_65536 = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(b"status", b"", 65_536);
        assert_ne!(symmetric_key("status"), with_65536);
    }
}

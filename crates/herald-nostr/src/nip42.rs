//! NIP-42 client authentication: herald's answer to a relay's
//! `["AUTH", <challenge>]`.
//!
//! The answer is `["AUTH", <event>]` with a kind 22242 event signed by
//! herald's own key, tagged `relay` (the relay's URL, as herald connected
//! to it) and `challenge` (the string the relay sent), content empty,
//! dated now: a relay checks the challenge is the one it issued on this
//! connection, the URL is its own and the time is recent (NIP-42 suggests
//! about ten minutes), so the event cannot be replayed elsewhere or later.
//! The relay answers `OK` with the event's id; what happens then (asking
//! again for the subscriptions it refused) is the connection's business.

use url::Url;

use crate::event::{self, Event, kind};
use crate::secret_key::SecretKey;

/// The signed kind 22242 event answering `challenge` from `relay`.
pub fn auth_event(key: &SecretKey, relay: &Url, challenge: &str, now: u64) -> Event {
    let tags = vec![
        vec!["relay".to_owned(), relay.as_str().to_owned()],
        vec!["challenge".to_owned(), challenge.to_owned()],
    ];
    event::sign(kind::CLIENT_AUTH, tags, String::new(), now, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_a_challenge_with_a_verifiable_event_naming_relay_and_challenge() {
        let key = SecretKey::generate();
        let relay = Url::parse("wss://relay.example.org/").unwrap();
        let event = auth_event(&key, &relay, "challenge-123", 1_780_000_000);
        let parsed = Event::from_json(&event.to_json().to_string()).unwrap();
        assert_eq!(parsed.kind(), 22242);
        assert_eq!(parsed.pubkey(), &key.public_key());
        assert_eq!(parsed.created_at(), 1_780_000_000);
        assert_eq!(
            parsed.tag_values("relay").collect::<Vec<_>>(),
            ["wss://relay.example.org/"]
        );
        assert_eq!(
            parsed.tag_values("challenge").collect::<Vec<_>>(),
            ["challenge-123"]
        );
        assert_eq!(parsed.content(), "");
    }
}

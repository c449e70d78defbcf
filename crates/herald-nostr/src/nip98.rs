//! NIP-98 HTTP auth: who signed an `Authorization: Nostr <base64 event>`.
//!
//! The header carries a kind 27235 event that names this exact request:
//! its `u` tag is the absolute URL (query included) and its `method` tag
//! the method. NIP-98 leaves the body to a `payload` tag the server "MAY"
//! check; herald requires it whenever there is a body, as damus's notepush
//! does, because otherwise a captured header would authorise any body sent
//! to the same URL within the time window. The event must be fresh within
//! `MAX_CLOCK_SKEW` either way, and genuine (`Event::from_json` checks its
//! id and signature). What herald learns is the signer's key; whether that
//! key may act on the request is the caller's decision.
//!
//! The caller passes the URL the client used: the public base URL from the
//! configuration plus the path and query as received, not the address a
//! proxy forwarded to. `u` must equal it byte for byte; the refusal names
//! the expected URL, since a proxy in between is the usual cause. Methods
//! compare without regard to case: nostr-tools signs whatever method name
//! the app passed in, and no two HTTP methods differ only in case.
//!
//! What `verify` checks holds for every copy of a header, so a captured
//! one could be sent again for the same request until it goes stale: the
//! caller closes that with a `ReplayGuard` (`replay_guard`), which accepts
//! each event id once, by the id and time `verify` returns.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use sha2::{Digest, Sha256};

use crate::error::NostrError;
use crate::event::{Event, EventId, kind};
use crate::hex;
use crate::pubkey::PublicKey;

/// How far `created_at` may be from herald's clock, either way: NIP-98's
/// suggested window.
pub const MAX_CLOCK_SKEW_SECS: u64 = 60;
/// The longest `Authorization` header accepted. A real auth event is well
/// under 1 KiB plus its URL; 8 KiB is the header size most HTTP servers
/// accept by default (nginx's `large_client_header_buffers`).
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;
/// RFC 7235's auth-scheme NIP-98 uses, compared without regard to case.
const SCHEME: &str = "Nostr";

/// What of the request the auth event must name.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    /// The absolute URL as the client addressed it, query included.
    pub url: &'a str,
    pub method: &'a str,
    /// The request body; empty when there is none.
    pub body: &'a [u8],
}

/// A header that names its request and is fresh and genuine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorized {
    /// The key that signed it.
    pub signer: PublicKey,
    /// The auth event's id: what a replay guard remembers.
    pub id: EventId,
    /// The auth event's `created_at`: with [`MAX_CLOCK_SKEW_SECS`], until
    /// when the header would pass `verify`.
    pub created_at: u64,
}

/// Checks `authorization` (the header's value, if any) for `request` at
/// unix time `now` (seconds) and returns who signed it. Every error is a 401.
pub fn verify(
    authorization: Option<&str>,
    request: &HttpRequest<'_>,
    now: u64,
) -> Result<Authorized, NostrError> {
    let header = authorization.ok_or(NostrError::MissingAuthorization)?;
    if header.len() > MAX_AUTHORIZATION_BYTES {
        return Err(NostrError::AuthorizationTooLarge {
            bytes: header.len(),
            max: MAX_AUTHORIZATION_BYTES,
        });
    }
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or(NostrError::MissingAuthorization)?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return Err(NostrError::MissingAuthorization);
    }
    let json = STANDARD_PAD_INDIFFERENT
        .decode(token.trim_start())
        .map_err(|_| NostrError::AuthorizationNotBase64)?;
    let json = std::str::from_utf8(&json).map_err(|e| NostrError::MalformedEvent {
        problem: "not UTF-8",
        column: e.valid_up_to() + 1,
    })?;
    let event = Event::from_json(json)?;

    if event.kind() != kind::HTTP_AUTH {
        return Err(NostrError::WrongAuthKind(event.kind()));
    }
    if event.created_at().abs_diff(now) > MAX_CLOCK_SKEW_SECS {
        return Err(NostrError::AuthEventOutOfTime {
            created_at: event.created_at(),
            now,
            max_skew_secs: MAX_CLOCK_SKEW_SECS,
        });
    }
    if required_tag(&event, "u")? != request.url {
        return Err(NostrError::AuthUrlMismatch {
            expected: request.url.to_owned(),
        });
    }
    if !required_tag(&event, "method")?.eq_ignore_ascii_case(request.method) {
        return Err(NostrError::AuthMethodMismatch {
            expected: request.method.to_owned(),
        });
    }
    match optional_tag(&event, "payload")? {
        None if request.body.is_empty() => {}
        None => return Err(NostrError::AuthPayloadMissing),
        Some(hash) if hash == hex::encode(&Sha256::digest(request.body)) => {}
        Some(_) => return Err(NostrError::AuthPayloadMismatch),
    }
    Ok(Authorized {
        signer: *event.pubkey(),
        id: *event.id(),
        created_at: event.created_at(),
    })
}

/// The value of the event's one tag named `name`.
fn required_tag<'a>(event: &'a Event, name: &'static str) -> Result<&'a str, NostrError> {
    optional_tag(event, name)?.ok_or(NostrError::AuthTagCount(name))
}

/// The value of the event's tag named `name`, if it has one. More than one
/// is refused rather than guessed between.
fn optional_tag<'a>(event: &'a Event, name: &'static str) -> Result<Option<&'a str>, NostrError> {
    let mut values = event.tag_values(name);
    let first = values.next();
    if values.next().is_some() {
        return Err(NostrError::AuthTagCount(name));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
    use serde_json::Value;

    use super::*;
    use crate::test_support::{NIP98_EXAMPLE_AUTHORIZATION, TestKey, authorization};

    const URL: &str = "https://push.example.org/v1/nostr/devices?app=org.example.chat";
    const NOW: u64 = 1_780_000_000;
    const BODY: &[u8] = br#"{"platform":"ios","token":"abc"}"#;

    fn body_hash() -> String {
        hex::encode(&Sha256::digest(BODY))
    }

    fn auth_event(key: &TestKey, created_at: u64, tags: &[&[&str]]) -> Value {
        key.sign(created_at, kind::HTTP_AUTH, tags, "")
    }

    fn put_request() -> HttpRequest<'static> {
        HttpRequest {
            url: URL,
            method: "PUT",
            body: BODY,
        }
    }

    fn get_request() -> HttpRequest<'static> {
        HttpRequest {
            url: URL,
            method: "GET",
            body: b"",
        }
    }

    fn put_header(key: &TestKey) -> String {
        let hash = body_hash();
        authorization(&auth_event(
            key,
            NOW,
            &[&["u", URL], &["method", "PUT"], &["payload", &hash]],
        ))
    }

    #[test]
    fn returns_the_signer_of_a_get_without_body() {
        let alice = TestKey::new("alice");
        let header = authorization(&auth_event(&alice, NOW, &[&["u", URL], &["method", "GET"]]));
        assert_eq!(
            verify(Some(&header), &get_request(), NOW).map(|a| a.signer),
            Ok(alice.public_key())
        );
    }

    #[test]
    fn returns_the_signer_of_a_put_whose_payload_tag_is_the_body_hash() {
        let alice = TestKey::new("alice");
        assert_eq!(
            verify(Some(&put_header(&alice)), &put_request(), NOW).map(|a| a.signer),
            Ok(alice.public_key())
        );
    }

    #[test]
    fn accepts_any_case_of_scheme_and_method_and_unpadded_base64() {
        let alice = TestKey::new("alice");
        let event = auth_event(&alice, NOW, &[&["u", URL], &["method", "get"]]);
        let json = event.to_string();
        assert_ne!(json.len() % 3, 0, "the encoding below must need padding");
        for header in [
            format!("nostr {}", STANDARD.encode(&json)),
            format!("NOSTR  {}", STANDARD.encode(&json)),
            format!("Nostr {}", STANDARD_NO_PAD.encode(&json)),
        ] {
            assert_eq!(
                verify(Some(&header), &get_request(), NOW).map(|a| a.signer),
                Ok(alice.public_key()),
                "{header}"
            );
        }
    }

    #[test]
    fn accepts_created_at_up_to_the_skew_either_way_and_refuses_beyond() {
        let alice = TestKey::new("alice");
        let at = |created_at| {
            let event = auth_event(&alice, created_at, &[&["u", URL], &["method", "GET"]]);
            verify(Some(&authorization(&event)), &get_request(), NOW)
        };
        assert!(at(NOW - MAX_CLOCK_SKEW_SECS).is_ok());
        assert!(at(NOW + MAX_CLOCK_SKEW_SECS).is_ok());
        for created_at in [
            NOW - MAX_CLOCK_SKEW_SECS - 1,
            NOW + MAX_CLOCK_SKEW_SECS + 1,
            0,
        ] {
            assert_eq!(
                at(created_at),
                Err(NostrError::AuthEventOutOfTime {
                    created_at,
                    now: NOW,
                    max_skew_secs: MAX_CLOCK_SKEW_SECS
                })
            );
        }
    }

    #[test]
    fn refuses_a_missing_header_or_another_scheme() {
        let alice = TestKey::new("alice");
        let header = put_header(&alice);
        let token = header.strip_prefix("Nostr ").unwrap();
        for bad in [
            None,
            Some(String::new()),
            Some("Nostr".to_owned()),
            Some(format!("Bearer {token}")),
            Some(format!("Nostr{token}")),
            Some(token.to_owned()),
        ] {
            assert_eq!(
                verify(bad.as_deref(), &put_request(), NOW),
                Err(NostrError::MissingAuthorization),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refuses_a_header_over_the_size_cap_before_decoding() {
        let header = format!("Nostr {}", "A".repeat(MAX_AUTHORIZATION_BYTES));
        assert_eq!(
            verify(Some(&header), &get_request(), NOW),
            Err(NostrError::AuthorizationTooLarge {
                bytes: MAX_AUTHORIZATION_BYTES + 6,
                max: MAX_AUTHORIZATION_BYTES
            })
        );
    }

    #[test]
    fn refuses_a_token_that_is_not_base64_or_not_an_event() {
        assert_eq!(
            verify(Some("Nostr not*base64"), &get_request(), NOW),
            Err(NostrError::AuthorizationNotBase64)
        );
        let url_safe = "Nostr _-_-";
        assert_eq!(
            verify(Some(url_safe), &get_request(), NOW),
            Err(NostrError::AuthorizationNotBase64)
        );
        let not_utf8 = format!("Nostr {}", STANDARD.encode([b'{', 0xff, b'}']));
        assert!(matches!(
            verify(Some(&not_utf8), &get_request(), NOW),
            Err(NostrError::MalformedEvent {
                problem: "not UTF-8",
                column: 2
            })
        ));
        let not_event = format!("Nostr {}", STANDARD.encode("{}"));
        assert!(matches!(
            verify(Some(&not_event), &get_request(), NOW),
            Err(NostrError::MalformedEvent { .. })
        ));
    }

    #[test]
    fn refuses_a_tampered_event_or_a_forged_signature() {
        let alice = TestKey::new("alice");
        let mut event = auth_event(&alice, NOW, &[&["u", URL], &["method", "GET"]]);
        let mut tampered = event.clone();
        tampered["tags"][0][1] = Value::from("https://push.example.org/other");
        assert_eq!(
            verify(Some(&authorization(&tampered)), &get_request(), NOW),
            Err(NostrError::IdMismatch)
        );
        let mallory = auth_event(
            &TestKey::new("mallory"),
            NOW,
            &[&["u", URL], &["method", "GET"]],
        );
        event["sig"] = mallory["sig"].clone();
        assert_eq!(
            verify(Some(&authorization(&event)), &get_request(), NOW),
            Err(NostrError::BadSignature)
        );
    }

    #[test]
    fn refuses_another_kind() {
        let alice = TestKey::new("alice");
        let event = alice.sign(NOW, kind::TEXT_NOTE, &[&["u", URL], &["method", "GET"]], "");
        assert_eq!(
            verify(Some(&authorization(&event)), &get_request(), NOW),
            Err(NostrError::WrongAuthKind(kind::TEXT_NOTE))
        );
    }

    #[test]
    fn refuses_a_url_that_differs_in_any_byte_and_names_the_expected_one() {
        let alice = TestKey::new("alice");
        let other_urls = [
            "https://push.example.org/v1/nostr/devices",
            "https://push.example.org/v1/nostr/devices?app=org.example.chat&x=1",
            "https://push.example.org/v1/nostr/devices/?app=org.example.chat",
            "http://push.example.org/v1/nostr/devices?app=org.example.chat",
            "https://PUSH.example.org/v1/nostr/devices?app=org.example.chat",
            "/v1/nostr/devices?app=org.example.chat",
        ];
        for other in other_urls {
            let event = auth_event(&alice, NOW, &[&["u", other], &["method", "GET"]]);
            assert_eq!(
                verify(Some(&authorization(&event)), &get_request(), NOW),
                Err(NostrError::AuthUrlMismatch {
                    expected: URL.to_owned()
                }),
                "{other}"
            );
        }
    }

    #[test]
    fn refuses_another_method() {
        let alice = TestKey::new("alice");
        let hash = body_hash();
        let event = auth_event(
            &alice,
            NOW,
            &[&["u", URL], &["method", "DELETE"], &["payload", &hash]],
        );
        assert_eq!(
            verify(Some(&authorization(&event)), &put_request(), NOW),
            Err(NostrError::AuthMethodMismatch {
                expected: "PUT".to_owned()
            })
        );
    }

    #[test]
    fn refuses_missing_or_repeated_u_and_method_tags() {
        let alice = TestKey::new("alice");
        let cases: [(&[&[&str]], &str); 4] = [
            (&[&["method", "GET"]], "u"),
            (&[&["u", URL]], "method"),
            (&[&["u", URL], &["u", URL], &["method", "GET"]], "u"),
            (
                &[&["u", URL], &["method", "GET"], &["method", "GET"]],
                "method",
            ),
        ];
        for (tags, name) in cases {
            let event = auth_event(&alice, NOW, tags);
            assert_eq!(
                verify(Some(&authorization(&event)), &get_request(), NOW),
                Err(NostrError::AuthTagCount(name))
            );
        }
    }

    #[test]
    fn requires_a_payload_tag_when_there_is_a_body() {
        let alice = TestKey::new("alice");
        let event = auth_event(&alice, NOW, &[&["u", URL], &["method", "PUT"]]);
        assert_eq!(
            verify(Some(&authorization(&event)), &put_request(), NOW),
            Err(NostrError::AuthPayloadMissing)
        );
    }

    #[test]
    fn refuses_a_payload_tag_that_is_not_this_body_hash() {
        let alice = TestKey::new("alice");
        let other = hex::encode(&Sha256::digest(b"{}"));
        let upper = body_hash().to_ascii_uppercase();
        for hash in [other.as_str(), upper.as_str(), ""] {
            let event = auth_event(
                &alice,
                NOW,
                &[&["u", URL], &["method", "PUT"], &["payload", hash]],
            );
            assert_eq!(
                verify(Some(&authorization(&event)), &put_request(), NOW),
                Err(NostrError::AuthPayloadMismatch),
                "{hash}"
            );
        }
        // A payload tag on a request without a body must hash the empty body.
        let event = auth_event(
            &alice,
            NOW,
            &[&["u", URL], &["method", "GET"], &["payload", &body_hash()]],
        );
        assert_eq!(
            verify(Some(&authorization(&event)), &get_request(), NOW),
            Err(NostrError::AuthPayloadMismatch)
        );
        let empty = hex::encode(&Sha256::digest(b""));
        let event = auth_event(
            &alice,
            NOW,
            &[&["u", URL], &["method", "GET"], &["payload", &empty]],
        );
        assert!(verify(Some(&authorization(&event)), &get_request(), NOW).is_ok());
    }

    #[test]
    fn refuses_nip98_own_example_header_for_its_url_tag() {
        // Genuine and fresh for its time, but it names the URL in `url`,
        // not `u`.
        let request = HttpRequest {
            url: "https://api.snort.social/api/v1/n5sp/list",
            method: "GET",
            body: b"",
        };
        assert_eq!(
            verify(Some(NIP98_EXAMPLE_AUTHORIZATION), &request, 1682327852),
            Err(NostrError::AuthTagCount("u"))
        );
    }
}

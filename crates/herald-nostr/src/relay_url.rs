//! Relay URLs that come from other people's events (kind 10002 and 10050
//! lists), checked and put in one form before herald connects to them.
//!
//! - **One form.** The WHATWG parser lowercases the host, drops a default
//!   port and gives an empty path as `/`, so `WSS://Relay.Example:443` and
//!   `wss://relay.example/` are one relay, watched once; a fragment, which
//!   never reaches the server, is dropped.
//! - **Refused:** anything but `ws://` or `wss://`, a user name or
//!   password (herald would send them to whoever the list names), no
//!   host, more than [`MAX_RELAY_URL_BYTES`]. And, unless the operator
//!   allows it, an address that is not public (loopback, private, link
//!   local, …, as `herald_http::public_endpoint` classifies them) or a
//!   local name (`localhost`, `*.local`, a single label): a list is
//!   anyone's to write, and herald must not be made to open connections
//!   inside the operator's network.
//! - A public name that resolves to a private address is caught when
//!   herald connects (`RelayConfig::public_only`), since a name may
//!   resolve elsewhere later than this check.

use std::net::IpAddr;

use herald_http::public_endpoint::{is_local_name, is_public};
use url::{Host, Url};

use crate::error::NostrError;

/// Longest relay URL accepted. Real ones are 20 to 60 bytes; a longer one
/// is a mistake or an attempt to grow what herald stores per account.
pub const MAX_RELAY_URL_BYTES: usize = 256;

/// `text` as a relay URL herald may connect to, in its one form.
pub fn normalize(text: &str, allow_private: bool) -> Result<Url, NostrError> {
    if text.len() > MAX_RELAY_URL_BYTES {
        return Err(NostrError::RelayUrlTooLong {
            bytes: text.len(),
            max: MAX_RELAY_URL_BYTES,
        });
    }
    // The URL parser would drop some control characters and keep others
    // escaped; a list carrying them is not one to trust either way.
    if text.chars().any(char::is_control) {
        return Err(NostrError::RelayUrlMalformed);
    }
    let mut url = Url::parse(text.trim()).map_err(|_| NostrError::RelayUrlMalformed)?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(NostrError::RelayUrlNotWebSocket);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(NostrError::RelayUrlCredentials);
    }
    url.set_fragment(None);
    let private = match url.host().ok_or(NostrError::RelayUrlMalformed)? {
        Host::Ipv4(ip) => !is_public(IpAddr::V4(ip)),
        Host::Ipv6(ip) => !is_public(IpAddr::V6(ip)),
        Host::Domain(name) => is_local_name(name),
    };
    if private && !allow_private {
        return Err(NostrError::RelayUrlPrivate);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_relay_become_one_url() {
        for spelling in [
            "wss://relay.example",
            "wss://relay.example/",
            "WSS://Relay.Example:443",
            "wss://relay.example/#inbox",
            " wss://relay.example ",
        ] {
            assert_eq!(
                normalize(spelling, false).unwrap().as_str(),
                "wss://relay.example/",
                "{spelling}"
            );
        }
        assert_eq!(
            normalize("ws://relay.example:7777/path", false)
                .unwrap()
                .as_str(),
            "ws://relay.example:7777/path"
        );
    }

    #[test]
    fn refuses_other_schemes_credentials_and_junk() {
        for (bad, error) in [
            ("https://relay.example", NostrError::RelayUrlNotWebSocket),
            ("javascript:alert(1)", NostrError::RelayUrlNotWebSocket),
            (
                "wss://user:pass@relay.example",
                NostrError::RelayUrlCredentials,
            ),
            ("wss://user@relay.example", NostrError::RelayUrlCredentials),
            ("relay.example", NostrError::RelayUrlMalformed),
            ("", NostrError::RelayUrlMalformed),
            ("wss://", NostrError::RelayUrlMalformed),
            ("wss://exa mple.com", NostrError::RelayUrlMalformed),
            ("\u{0}wss://relay.example", NostrError::RelayUrlMalformed),
            ("wss://relay.example/\n", NostrError::RelayUrlMalformed),
            ("wss://relay.exa\tmple", NostrError::RelayUrlMalformed),
        ] {
            assert_eq!(normalize(bad, true), Err(error), "{bad:?}");
        }
    }

    #[test]
    fn refuses_a_huge_url_before_parsing_it() {
        let huge = format!("wss://relay.example/{}", "a".repeat(MAX_RELAY_URL_BYTES));
        assert_eq!(
            normalize(&huge, true),
            Err(NostrError::RelayUrlTooLong {
                bytes: huge.len(),
                max: MAX_RELAY_URL_BYTES
            })
        );
        let longest = format!("wss://r.example/{}", "a".repeat(MAX_RELAY_URL_BYTES - 16));
        assert_eq!(longest.len(), MAX_RELAY_URL_BYTES);
        assert!(normalize(&longest, false).is_ok());
    }

    #[test]
    fn private_addresses_and_local_names_only_when_allowed() {
        for local in [
            "ws://127.0.0.1:7777",
            "ws://[::1]:7777",
            "wss://10.0.0.8",
            "wss://192.168.1.2",
            "wss://169.254.169.254",
            "wss://[::ffff:127.0.0.1]",
            "wss://localhost",
            "wss://relay.local",
            "wss://intranet",
        ] {
            assert_eq!(
                normalize(local, false),
                Err(NostrError::RelayUrlPrivate),
                "{local}"
            );
            assert!(normalize(local, true).is_ok(), "{local}");
        }
        assert!(normalize("wss://8.8.8.8", false).is_ok());
    }
}

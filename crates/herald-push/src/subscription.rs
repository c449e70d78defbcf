//! Web Push subscriptions as registrations carry them.
//!
//! A registration gives either the browser's subscription JSON as its token
//! (`{"endpoint", "keys": {"p256dh", "auth"}}`, what atproto's `web`
//! platform sends) or the endpoint URL with `p256dh` and `auth` in its
//! options (UnifiedPush's Web Push mode). Both are stored the same way —
//! token = endpoint, options = the two keys, base64url — so the same
//! subscription registered twice is one device.

use herald_core::model::{Delivery, InvalidField, NewDevice};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::ece;
use crate::jwt::{b64url, b64url_decode};

/// An endpoint and the keys to encrypt for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub endpoint: String,
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
}

#[derive(Deserialize)]
struct SubscriptionJson {
    endpoint: String,
    keys: Keys,
}

#[derive(Deserialize)]
struct Keys {
    p256dh: String,
    auth: String,
}

fn invalid(why: impl Into<String>) -> InvalidField {
    InvalidField::new("token", why)
}

fn keys(p256dh: &str, auth: &str) -> Result<(Vec<u8>, Vec<u8>), InvalidField> {
    let p256dh = b64url_decode(p256dh).map_err(|_| invalid("keys.p256dh is not base64url"))?;
    let auth = b64url_decode(auth).map_err(|_| invalid("keys.auth is not base64url"))?;
    ece::check_keys(&p256dh, &auth).map_err(|e| invalid(e.to_string()))?;
    Ok((p256dh, auth))
}

/// The subscription a registration carries, or `None` when it has no keys
/// (a plain UnifiedPush endpoint).
pub fn from_registration(
    token: &str,
    options: &Map<String, Value>,
) -> Result<Option<Subscription>, InvalidField> {
    if token.trim_start().starts_with('{') {
        let s: SubscriptionJson = serde_json::from_str(token).map_err(|e| {
            invalid(format!(
                "is not a Web Push subscription ({{endpoint, keys: {{p256dh, auth}}}}): {e}"
            ))
        })?;
        let (p256dh, auth) = keys(&s.keys.p256dh, &s.keys.auth)?;
        return Ok(Some(Subscription {
            endpoint: s.endpoint,
            p256dh,
            auth,
        }));
    }
    match (options.get("p256dh"), options.get("auth")) {
        (None, None) => Ok(None),
        (Some(Value::String(p)), Some(Value::String(a))) => {
            let (p256dh, auth) = keys(p, a)?;
            Ok(Some(Subscription {
                endpoint: token.to_owned(),
                p256dh,
                auth,
            }))
        }
        _ => Err(InvalidField::new(
            "options",
            "p256dh and auth go together, as base64url strings",
        )),
    }
}

/// The registration as stored: token = endpoint, options carry the keys.
pub fn normalized(mut device: NewDevice, subscription: &Subscription) -> NewDevice {
    device.token = subscription.endpoint.clone();
    device
        .options
        .insert("p256dh".into(), Value::String(b64url(&subscription.p256dh)));
    device
        .options
        .insert("auth".into(), Value::String(b64url(&subscription.auth)));
    device
}

/// The keys of a stored delivery, if it has them.
pub fn from_delivery(delivery: &Delivery) -> Result<Option<Subscription>, String> {
    from_registration(&delivery.token, &delivery.options)
        .map_err(|e| format!("stored subscription is unusable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const P256DH: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    #[test]
    fn reads_subscription_json_and_endpoint_with_options_alike() {
        let json = json!({"endpoint": "https://push.example/x", "keys": {"p256dh": P256DH, "auth": AUTH}, "expirationTime": null}).to_string();
        let from_json = from_registration(&json, &Map::new()).unwrap().unwrap();
        let options = json!({"p256dh": P256DH, "auth": AUTH})
            .as_object()
            .unwrap()
            .clone();
        let from_options = from_registration("https://push.example/x", &options)
            .unwrap()
            .unwrap();
        assert_eq!(from_json, from_options);
        assert_eq!(
            from_registration("https://push.example/x", &Map::new()).unwrap(),
            None
        );
    }

    #[test]
    fn refuses_broken_subscriptions() {
        let bad_json = [
            "{",
            r#"{"endpoint": "https://x"}"#,
            &json!({"endpoint": "https://x", "keys": {"p256dh": "!!", "auth": AUTH}}).to_string(),
            &json!({"endpoint": "https://x", "keys": {"p256dh": &P256DH[..40], "auth": AUTH}})
                .to_string(),
            &json!({"endpoint": "https://x", "keys": {"p256dh": P256DH, "auth": "AAAA"}})
                .to_string(),
        ];
        for token in bad_json {
            assert!(from_registration(token, &Map::new()).is_err(), "{token}");
        }
        let half = json!({"p256dh": P256DH}).as_object().unwrap().clone();
        assert_eq!(
            from_registration("https://x", &half).unwrap_err().field,
            "options"
        );
    }
}

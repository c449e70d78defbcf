//! The words of the design (DESIGN.md, "Words") as types.
//!
//! Every type that arrives from outside is validated once, here, when it is
//! constructed, so the rest of herald can trust what it holds. The limits are
//! the providers' own: a push payload is at most 4,096 bytes on APNs, FCM,
//! Web Push and ntfy, and FCM caps a TTL at 28 days.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::time::UnixMillis;

/// Longest account id accepted: a `did:web` or a namespaced app user id fits well inside.
pub const MAX_ACCOUNT_BYTES: usize = 512;
/// Longest app id accepted (reverse-DNS bundle ids are far shorter).
pub const MAX_APP_ID_BYTES: usize = 128;
/// Longest device token accepted: a Web Push subscription or UnifiedPush URL with keys fits.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Longest title accepted; providers truncate display far earlier.
pub const MAX_TITLE_BYTES: usize = 1024;
/// Every provider caps the whole payload at 4,096 bytes; a body can never be longer.
pub const MAX_BODY_BYTES: usize = 4096;
/// The app's custom data, as serialized JSON, shares the same 4,096-byte payload.
pub const MAX_DATA_BYTES: usize = 4096;
/// APNs `apns-collapse-id` is at most 64 bytes; the other providers allow less or equal.
pub const MAX_COLLAPSE_KEY_BYTES: usize = 64;
/// A dedupe key is an opaque id chosen by the sender (an event id, a URI).
pub const MAX_DEDUPE_KEY_BYTES: usize = 256;
/// Android channel ids are short names the app chose when it created the
/// channel (Bluesky's are the reasons, the longest `repost-via-repost`);
/// Android sets no limit, so this is ours, the same as a collapse key's.
pub const MAX_CHANNEL_BYTES: usize = 64;
/// Apple sets no limit on `thread-id`; an id that groups notifications
/// (a conversation, a post URI's record key) fits well inside this, and the
/// whole payload must still fit APNs' 4,096 bytes.
pub const MAX_THREAD_ID_BYTES: usize = 64;
/// FCM's maximum TTL (28 days), the lowest among the providers.
pub const MAX_TTL_SECS: u32 = 28 * 24 * 60 * 60;

/// Why a value from outside was refused; the text is shown to the caller as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: &'static str,
    pub reason: String,
}

impl InvalidField {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), InvalidField> {
    if value.is_empty() {
        return Err(InvalidField::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(InvalidField::new(
            field,
            format!("is {} bytes, at most {max} allowed", value.len()),
        ));
    }
    Ok(())
}

/// Identifiers chosen by app developers (app ids, notification channels):
/// ASCII letters, digits, '.', '-' and '_', so they are safe in any
/// provider's field and cannot be a display name passed by mistake.
fn check_identifier(field: &'static str, value: &str) -> Result<(), InvalidField> {
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(InvalidField::new(
            field,
            "may contain only ASCII letters, digits, '.', '-' and '_'",
        ));
    }
    Ok(())
}

fn check_printable(field: &'static str, value: &str) -> Result<(), InvalidField> {
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(InvalidField::new(
            field,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

/// The conversions of a string newtype whose `parse` validates: serde goes
/// through `parse`, so an invalid value can never be deserialized.
macro_rules! validated_string {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidField;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// An identity on one network: `<namespace>:<id>`, such as `atproto:did:plc:…`,
/// `nostr:<hex pubkey>`, `status:<hex>`, or an operator's own namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Account(String);

impl Account {
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        check_len("account", value, MAX_ACCOUNT_BYTES)?;
        check_printable("account", value)?;
        let Some((namespace, id)) = value.split_once(':') else {
            return Err(InvalidField::new(
                "account",
                "must be <namespace>:<id>, such as atproto:did:plc:… or nostr:<hex pubkey>",
            ));
        };
        let namespace_ok = !namespace.is_empty()
            && namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !namespace_ok || id.is_empty() {
            return Err(InvalidField::new(
                "account",
                "must be <namespace>:<id> with a lowercase namespace and a non-empty id",
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

validated_string!(Account);

/// A client application the operator serves, as named in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppId(String);

impl AppId {
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        check_len("app_id", value, MAX_APP_ID_BYTES)?;
        check_identifier("app_id", value)?;
        Ok(Self(value.to_owned()))
    }
}

validated_string!(AppId);

/// Defines a closed set of lowercase names with parsing, display and serde.
macro_rules! name_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal {
        $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = InvalidField;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $($text => Ok($name::$variant),)+
                    _ => Err(InvalidField::new(
                        $field,
                        format!("unknown value {value:?}; expected one of: {}",
                            [$($text),+].join(", ")),
                    )),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

name_enum!(
    /// The kind of device, as the registering app reports it.
    Platform, "platform" {
        Ios => "ios",
        Android => "android",
        Web => "web",
        Desktop => "desktop",
    }
);

name_enum!(
    /// The delivery service a device is reached through.
    Transport, "transport" {
        Apns => "apns",
        Fcm => "fcm",
        Expo => "expo",
        UnifiedPush => "unifiedpush",
        WebPush => "webpush",
        Gorush => "gorush",
    }
);

name_enum!(
    /// How urgently a message should wake the device: `high` wakes it now
    /// (APNs priority 10, FCM high, Web Push `Urgency: high`), `normal` when
    /// convenient for the battery.
    #[derive(Default)]
    Priority, "priority" {
        #[default]
        High => "high",
        Normal => "normal",
    }
);

/// A device registration as it arrives, before the store gives it an id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDevice {
    pub account: Account,
    pub app_id: AppId,
    pub platform: Platform,
    pub transport: Transport,
    pub token: String,
    /// Transport-specific options (a Web Push subscription's keys, an APNs environment).
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl NewDevice {
    /// Checks what every transport requires of a token; providers check their own format.
    pub fn validate(&self) -> Result<(), InvalidField> {
        check_len("token", &self.token, MAX_TOKEN_BYTES)?;
        if self.token.chars().any(char::is_control) {
            return Err(InvalidField::new(
                "token",
                "must not contain control characters",
            ));
        }
        let options_len = serde_json::to_vec(&self.options).map_or(0, |v| v.len());
        if options_len > MAX_TOKEN_BYTES {
            return Err(InvalidField::new(
                "options",
                format!("are {options_len} bytes as JSON, at most {MAX_TOKEN_BYTES} allowed"),
            ));
        }
        Ok(())
    }
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: i64,
    #[serde(flatten)]
    pub registration: NewDevice,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// What a device is shown or handed: the part of a notification that travels.
///
/// Every field has a serde default, so messages queued before a field
/// existed still deserialize; unset optional fields are left out when
/// serialized.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Message {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub data: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collapse_key: Option<String>,
    /// Seconds the provider may hold the message for an offline device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    #[serde(default)]
    pub priority: Priority,
    /// The Android notification channel / Expo `channelId` (atproto: the reason).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// iOS: run the app's Notification Service Extension before display (`mutable-content: 1`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mutable_content: bool,
    /// iOS: group notifications in one thread (`thread-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
}

impl Message {
    pub fn validate(&self) -> Result<(), InvalidField> {
        if let Some(title) = &self.title {
            check_len("title", title, MAX_TITLE_BYTES)?;
        }
        if let Some(body) = &self.body {
            check_len("body", body, MAX_BODY_BYTES)?;
        }
        let data_len = serde_json::to_vec(&self.data).map_or(0, |v| v.len());
        if data_len > MAX_DATA_BYTES {
            return Err(InvalidField::new(
                "data",
                format!("is {data_len} bytes as JSON, at most {MAX_DATA_BYTES} allowed"),
            ));
        }
        if let Some(key) = &self.collapse_key {
            check_len("collapse_key", key, MAX_COLLAPSE_KEY_BYTES)?;
            check_printable("collapse_key", key)?;
        }
        if let Some(channel) = &self.channel {
            check_len("channel", channel, MAX_CHANNEL_BYTES)?;
            check_identifier("channel", channel)?;
        }
        if let Some(thread) = &self.thread_id {
            check_len("thread_id", thread, MAX_THREAD_ID_BYTES)?;
        }
        if let Some(ttl) = self.ttl
            && ttl > MAX_TTL_SECS
        {
            return Err(InvalidField::new(
                "ttl",
                format!("is {ttl} s, at most {MAX_TTL_SECS} s (28 days) allowed"),
            ));
        }
        if self.title.is_none() && self.body.is_none() && self.data.is_empty() {
            return Err(InvalidField::new(
                "message",
                "needs at least one of title, body or data",
            ));
        }
        Ok(())
    }
}

/// What happened, for whom: the input of the delivery pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub account: Account,
    /// Only this app's devices, when set; every app's otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<AppId>,
    #[serde(flatten)]
    pub message: Message,
    /// The same key for the same device is delivered once within the dedupe window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_key: Option<String>,
}

impl Notification {
    pub fn validate(&self) -> Result<(), InvalidField> {
        self.message.validate()?;
        if let Some(key) = &self.dedupe_key {
            check_len("dedupe_key", key, MAX_DEDUPE_KEY_BYTES)?;
        }
        Ok(())
    }
}

/// One notification rendered for one device, as it is handed to the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub device: Device,
    pub message: Message,
    pub dedupe_key: Option<String>,
    /// How long the dedupe key blocks a second delivery to the same device.
    pub dedupe_window_ms: i64,
    pub created_at: UnixMillis,
}

/// A queued delivery, claimed by a dispatcher for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub device_id: i64,
    pub account: Account,
    pub app_id: AppId,
    pub platform: Platform,
    pub transport: Transport,
    pub token: String,
    pub options: serde_json::Map<String, serde_json::Value>,
    pub message: Message,
    pub created_at: UnixMillis,
    /// Attempts so far, this one included.
    pub attempts: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_network_accounts() {
        for ok in [
            "atproto:did:plc:ewvi7nxzyoun6zhxrhs64oiz",
            "nostr:3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d",
            "status:0a1b",
            "my-app:user42",
        ] {
            assert_eq!(Account::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_malformed_accounts() {
        for bad in [
            "",
            "noseparator",
            ":id",
            "ns:",
            "NS:id",
            "ns:a b",
            "ns:a\nb",
            &format!("ns:{}", "x".repeat(600)),
        ] {
            assert!(Account::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn app_ids_are_restricted_to_bundle_id_characters() {
        assert!(AppId::parse("com.example.app_1-x").is_ok());
        for bad in ["", "a/b", "a b", "ü", &"a".repeat(129)] {
            assert!(AppId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for t in Transport::ALL {
            assert_eq!(t.as_str().parse::<Transport>().unwrap(), *t);
        }
        let err = "carrier-pigeon".parse::<Transport>().unwrap_err();
        assert!(err.reason.contains("unifiedpush"), "{err}");
    }

    #[test]
    fn message_limits_follow_the_providers() {
        let mut m = Message {
            body: Some("x".repeat(MAX_BODY_BYTES + 1)),
            ..Message::default()
        };
        assert_eq!(m.validate().unwrap_err().field, "body");
        m.body = Some("hi".into());
        m.ttl = Some(MAX_TTL_SECS + 1);
        assert_eq!(m.validate().unwrap_err().field, "ttl");
        m.ttl = Some(60);
        m.collapse_key = Some("k".repeat(65));
        assert_eq!(m.validate().unwrap_err().field, "collapse_key");
        m.collapse_key = None;
        assert!(m.validate().is_ok());
        assert_eq!(
            Message::default().validate().unwrap_err().field,
            "message",
            "an empty push wakes the device for nothing"
        );
    }

    #[test]
    fn a_channel_is_a_short_identifier() {
        let with = |channel: &str| Message {
            body: Some("hi".into()),
            channel: Some(channel.into()),
            ..Message::default()
        };
        for ok in [
            "like",
            "chat-messages",
            "repost-via-repost",
            "org.example_1",
        ] {
            assert!(with(ok).validate().is_ok(), "{ok:?} refused");
        }
        for (bad, says) in [
            ("", "empty"),
            ("Chat messages", "letters, digits"),
            ("réponse", "letters, digits"),
            ("a/b", "letters, digits"),
            (&"c".repeat(MAX_CHANNEL_BYTES + 1), "at most 64"),
        ] {
            let err = with(bad).validate().unwrap_err();
            assert_eq!(err.field, "channel", "{bad:?}");
            assert!(err.to_string().contains(says), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_thread_id_is_at_most_64_bytes() {
        let with = |thread: &str| Message {
            body: Some("hi".into()),
            thread_id: Some(thread.into()),
            ..Message::default()
        };
        assert!(
            with("at://did:plc:x/app.bsky.feed.post/3k")
                .validate()
                .is_ok()
        );
        assert!(
            with(&"é".repeat(MAX_THREAD_ID_BYTES / 2))
                .validate()
                .is_ok()
        );
        for bad in ["", &"t".repeat(MAX_THREAD_ID_BYTES + 1)] {
            let err = with(bad).validate().unwrap_err();
            assert_eq!(err.field, "thread_id", "{bad:?}: {err}");
        }
    }

    #[test]
    fn messages_queued_before_the_display_fields_still_deserialize() {
        let old: Message =
            serde_json::from_str(r#"{"title":"t","body":"b","ttl":60,"priority":"normal"}"#)
                .unwrap();
        assert_eq!(
            (old.channel, old.mutable_content, old.thread_id),
            (None, false, None)
        );
        let unset = serde_json::to_value(Message::default()).unwrap();
        assert_eq!(unset, serde_json::json!({"priority": "high"}));
        let set = Message {
            channel: Some("reply".into()),
            mutable_content: true,
            thread_id: Some("t1".into()),
            ..Message::default()
        };
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(
            (
                &json["channel"],
                &json["mutable_content"],
                &json["thread_id"]
            ),
            (
                &serde_json::json!("reply"),
                &serde_json::json!(true),
                &serde_json::json!("t1")
            )
        );
        assert_eq!(serde_json::from_value::<Message>(json).unwrap(), set);
    }
}

//! From Status registrations and notifications to herald's own devices and
//! notifications, for delivery through herald's providers.
//!
//! A registration is a device of the account `status:<hex SHAKE-256 of the
//! key>` (DESIGN.md, "Words"), in the app the operator chose for its token
//! type: an APN token goes to the APNs app whose bundle id (APNs topic) is
//! the registration's `apn_topic`, or to the first APNs app when none
//! matches; a Firebase token to the FCM app. The installation id rides in
//! the device's options.
//!
//! A Status notification is for one installation of a key, while herald
//! fans a notification out to every device of an account. The installation
//! therefore leads the notification's dedupe key
//! (`<installation id>/<request id>/<index>`, unique per notification as a
//! dedupe key must be), and [`device_filter`] keeps the devices of that
//! installation only: nothing beyond what the app decodes travels in the
//! push itself.

use herald_core::model::{
    Account, AppId, Device, Message, NewDevice, Notification, Platform, Priority, Transport,
};
use serde_json::Value;

use crate::gorush::{self, GorushData};
use crate::hex;
use crate::persistence::{HashedKey, MessageId};
use crate::proto::{PushNotificationRegistration, TokenType};
use crate::request::Sendable;

/// The device option that holds the Status installation id.
pub const INSTALLATION_OPTION: &str = "installation_id";

/// The account of a hashed key.
pub fn account(key: &HashedKey) -> Account {
    Account::parse(&format!("status:{}", hex::encode(key)))
        .expect("status: and 128 hex digits is a valid account")
}

/// The apps Status registrations are delivered through.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryApps {
    /// APNs apps with their bundle ids (APNs topics); the first takes the
    /// registrations whose `apn_topic` names none of them.
    pub apns: Vec<(AppId, String)>,
    pub fcm: Option<AppId>,
}

impl DeliveryApps {
    /// The app, platform and transport for `registration`'s token; `None`
    /// when no app is configured for its token type.
    pub fn route(
        &self,
        registration: &PushNotificationRegistration,
    ) -> Option<(AppId, Platform, Transport)> {
        match TokenType::try_from(registration.token_type).ok()? {
            TokenType::ApnToken => {
                let app = self
                    .apns
                    .iter()
                    .find(|(_, topic)| *topic == registration.apn_topic)
                    .or_else(|| self.apns.first())?;
                Some((app.0.clone(), Platform::Ios, Transport::Apns))
            }
            TokenType::FirebaseToken => {
                Some((self.fcm.clone()?, Platform::Android, Transport::Fcm))
            }
            TokenType::UnknownTokenType => None,
        }
    }

    /// The device of `registration`, the installation of `key`.
    pub fn device(
        &self,
        key: &HashedKey,
        registration: &PushNotificationRegistration,
    ) -> Option<NewDevice> {
        let (app_id, platform, transport) = self.route(registration)?;
        let mut options = serde_json::Map::new();
        options.insert(
            INSTALLATION_OPTION.into(),
            Value::String(registration.installation_id.clone()),
        );
        Some(NewDevice {
            account: account(key),
            app_id,
            platform,
            transport,
            token: registration.device_token.clone(),
            options,
        })
    }

    /// The notification of `sendable`, the `index`th of the request
    /// `request_id`; `None` when no app takes its registration's token.
    pub fn notification(
        &self,
        key: &HashedKey,
        sendable: &Sendable,
        request_id: &MessageId,
        index: usize,
    ) -> Option<Notification> {
        let (app_id, _, _) = self.route(&sendable.registration)?;
        let data = serde_json::to_value(GorushData::of(sendable)).ok()?;
        let Value::Object(data) = data else {
            return None;
        };
        Some(Notification {
            account: account(key),
            app_id: Some(app_id),
            message: Message {
                body: Some(gorush::text(sendable.notification.r#type).to_owned()),
                data,
                priority: Priority::High,
                ..Message::default()
            },
            dedupe_key: Some(format!(
                "{}/{}/{index}",
                sendable.registration.installation_id,
                hex::encode(request_id)
            )),
        })
    }
}

/// Whether `device` is the installation `notification` is for (see the
/// module doc); a device without an installation id is not narrowed.
pub fn device_filter(notification: &Notification, device: &Device) -> bool {
    let Some(Value::String(installation)) = device.registration.options.get(INSTALLATION_OPTION)
    else {
        return true;
    };
    notification
        .dedupe_key
        .as_deref()
        .and_then(|key| key.split_once('/'))
        .is_some_and(|(target, _)| target == installation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{PushNotification, PushNotificationType};
    use crate::test_support::{INSTALLATION, key, registration};

    fn apps() -> DeliveryApps {
        DeliveryApps {
            apns: vec![
                (
                    AppId::parse("status-ios").unwrap(),
                    "im.status.ethereum".into(),
                ),
                (
                    AppId::parse("status-pr").unwrap(),
                    "im.status.ethereum.pr".into(),
                ),
            ],
            fcm: Some(AppId::parse("status-android").unwrap()),
        }
    }

    fn with(token_type: TokenType, apn_topic: &str) -> PushNotificationRegistration {
        PushNotificationRegistration {
            token_type: token_type as i32,
            apn_topic: apn_topic.into(),
            ..registration(&key(1), &key(2).public_key(), 1)
        }
    }

    #[test]
    fn apn_topics_choose_the_apns_app_and_firebase_tokens_the_fcm_app() {
        let route = |r| apps().route(&r).map(|(app, p, t)| (app.to_string(), p, t));
        assert_eq!(
            route(with(TokenType::ApnToken, "im.status.ethereum.pr")),
            Some(("status-pr".into(), Platform::Ios, Transport::Apns))
        );
        assert_eq!(
            route(with(TokenType::ApnToken, "unknown.topic")),
            Some(("status-ios".into(), Platform::Ios, Transport::Apns))
        );
        assert_eq!(
            route(with(TokenType::FirebaseToken, "")),
            Some(("status-android".into(), Platform::Android, Transport::Fcm))
        );
        assert_eq!(route(with(TokenType::UnknownTokenType, "")), None);
        let none = DeliveryApps::default();
        assert_eq!(none.route(&with(TokenType::ApnToken, "")), None);
        assert_eq!(none.route(&with(TokenType::FirebaseToken, "")), None);
    }

    #[test]
    fn a_registration_is_a_device_of_the_hashed_key_account() {
        let device = apps()
            .device(
                &[0xab; 64],
                &with(TokenType::ApnToken, "im.status.ethereum"),
            )
            .unwrap();
        assert_eq!(
            device.account.as_str(),
            format!("status:{}", "ab".repeat(64))
        );
        assert_eq!(device.token, "abc123");
        assert_eq!(device.options[INSTALLATION_OPTION], INSTALLATION);
        assert!(device.validate().is_ok());
    }

    #[test]
    fn a_notification_carries_the_fields_the_app_decodes_for_its_installation_only() {
        let sendable = Sendable {
            notification: PushNotification {
                chat_id: vec![0x01, 0xff],
                public_key: vec![0xab; 64],
                message: vec![0xca, 0xfe],
                r#type: PushNotificationType::Mention as i32,
                installation_id: INSTALLATION.into(),
                ..Default::default()
            },
            registration: with(TokenType::FirebaseToken, ""),
        };
        let n = apps()
            .notification(&[0xab; 64], &sendable, &[0x11; 32], 2)
            .unwrap();
        assert_eq!(n.app_id.as_ref().map(AppId::as_str), Some("status-android"));
        assert_eq!(n.message.body.as_deref(), Some("Someone mentioned you"));
        assert_eq!(
            Value::Object(n.message.data.clone()),
            serde_json::json!({
                "encryptedMessage": "0xcafe",
                "chatId": "0x01ff",
                "publicKey": format!("0x{}", "ab".repeat(64)),
            })
        );
        assert!(n.validate().is_ok());

        let stored = |options: serde_json::Map<String, Value>| Device {
            id: 1,
            registration: NewDevice {
                options,
                ..apps().device(&[0xab; 64], &sendable.registration).unwrap()
            },
            created_at: 0,
            updated_at: 0,
        };
        let mine = stored(
            apps()
                .device(&[0xab; 64], &sendable.registration)
                .unwrap()
                .options,
        );
        let mut other_options = serde_json::Map::new();
        other_options.insert(INSTALLATION_OPTION.into(), "another-install".into());
        assert!(device_filter(&n, &mine));
        assert!(!device_filter(&n, &stored(other_options)));
        assert!(device_filter(&n, &stored(serde_json::Map::new())));
        let keyless = Notification {
            dedupe_key: None,
            ..n
        };
        assert!(!device_filter(&keyless, &mine));
    }
}

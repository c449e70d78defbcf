//! The push-notification protobufs of status-go
//! (`protocol/protobuf/push_notifications.proto`), as prost derives so no
//! `protoc` is needed at build time.
//!
//! Field numbers and types follow status-go, not spec 71, where they
//! differ: `PushNotification.chat_id` is bytes (it holds raw SHAKE-256
//! output, which a prost `String` would refuse as invalid UTF-8), and the
//! registration's `muted_chat_list` (15) and the notification type
//! `REQUEST_TO_JOIN_COMMUNITY` (3) exist. `ContactCodeAdvertisement` is not
//! here: the server never reads it.

/// `PushNotificationRegistration.TokenType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum TokenType {
    UnknownTokenType = 0,
    ApnToken = 1,
    FirebaseToken = 2,
}

/// What a client asks the server to keep, encrypted to the server's key.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushNotificationRegistration {
    #[prost(enumeration = "TokenType", tag = "1")]
    pub token_type: i32,
    #[prost(string, tag = "2")]
    pub device_token: String,
    #[prost(string, tag = "3")]
    pub installation_id: String,
    #[prost(string, tag = "4")]
    pub access_token: String,
    #[prost(bool, tag = "5")]
    pub enabled: bool,
    #[prost(uint64, tag = "6")]
    pub version: u64,
    #[prost(bytes = "vec", repeated, tag = "7")]
    pub allowed_key_list: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub blocked_chat_list: Vec<Vec<u8>>,
    #[prost(bool, tag = "9")]
    pub unregister: bool,
    #[prost(bytes = "vec", tag = "10")]
    pub grant: Vec<u8>,
    #[prost(bool, tag = "11")]
    pub allow_from_contacts_only: bool,
    #[prost(string, tag = "12")]
    pub apn_topic: String,
    #[prost(bool, tag = "13")]
    pub block_mentions: bool,
    #[prost(bytes = "vec", repeated, tag = "14")]
    pub allowed_mentions_chat_list: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "15")]
    pub muted_chat_list: Vec<Vec<u8>>,
}

/// `PushNotificationRegistrationResponse.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum RegistrationErrorType {
    UnknownErrorType = 0,
    MalformedMessage = 1,
    VersionMismatch = 2,
    /// Never sent by status-go (an unknown token type is `MalformedMessage`).
    UnsupportedTokenType = 3,
    InternalError = 4,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushNotificationRegistrationResponse {
    #[prost(bool, tag = "1")]
    pub success: bool,
    #[prost(enumeration = "RegistrationErrorType", tag = "2")]
    pub error: i32,
    /// SHAKE-256 of the encrypted registration, which the client matches on.
    #[prost(bytes = "vec", tag = "3")]
    pub request_id: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushNotificationQuery {
    /// SHAKE-256 (64 bytes) of each compressed key asked about.
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub public_keys: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushNotificationQueryInfo {
    #[prost(string, tag = "1")]
    pub access_token: String,
    #[prost(string, tag = "2")]
    pub installation_id: String,
    #[prost(bytes = "vec", tag = "3")]
    pub public_key: Vec<u8>,
    /// Spec 71 calls it `allowed_user_list`; the number is the same.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub allowed_key_list: Vec<Vec<u8>>,
    #[prost(bytes = "vec", tag = "5")]
    pub grant: Vec<u8>,
    #[prost(uint64, tag = "6")]
    pub version: u64,
    #[prost(bytes = "vec", tag = "7")]
    pub server_public_key: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushNotificationQueryResponse {
    #[prost(message, repeated, tag = "1")]
    pub info: Vec<PushNotificationQueryInfo>,
    #[prost(bytes = "vec", tag = "2")]
    pub message_id: Vec<u8>,
    #[prost(bool, tag = "3")]
    pub success: bool,
}

/// `PushNotification.PushNotificationType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PushNotificationType {
    UnknownPushNotificationType = 0,
    Message = 1,
    Mention = 2,
    RequestToJoinCommunity = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushNotification {
    #[prost(string, tag = "1")]
    pub access_token: String,
    /// SHAKE-256 of the chat id: bytes, not a string (see the module doc).
    #[prost(bytes = "vec", tag = "2")]
    pub chat_id: Vec<u8>,
    /// SHAKE-256 of the recipient's compressed key.
    #[prost(bytes = "vec", tag = "3")]
    pub public_key: Vec<u8>,
    #[prost(string, tag = "4")]
    pub installation_id: String,
    /// The message, encrypted for the recipient; the server passes it on as is.
    #[prost(bytes = "vec", tag = "5")]
    pub message: Vec<u8>,
    #[prost(enumeration = "PushNotificationType", tag = "6")]
    pub r#type: i32,
    /// SHAKE-256 of the sender's `0x04…` key as text.
    #[prost(bytes = "vec", tag = "7")]
    pub author: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushNotificationRequest {
    #[prost(message, repeated, tag = "1")]
    pub requests: Vec<PushNotification>,
    #[prost(bytes = "vec", tag = "2")]
    pub message_id: Vec<u8>,
}

/// `PushNotificationReport.ErrorType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ReportErrorType {
    UnknownErrorType = 0,
    WrongToken = 1,
    InternalError = 2,
    NotRegistered = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushNotificationReport {
    #[prost(bool, tag = "1")]
    pub success: bool,
    #[prost(enumeration = "ReportErrorType", tag = "2")]
    pub error: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub public_key: Vec<u8>,
    #[prost(string, tag = "4")]
    pub installation_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PushNotificationResponse {
    #[prost(bytes = "vec", tag = "1")]
    pub message_id: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    pub reports: Vec<PushNotificationReport>,
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn field_numbers_match_status_go() {
        let registration = PushNotificationRegistration {
            token_type: TokenType::ApnToken as i32,
            muted_chat_list: vec![vec![0xff]],
            ..Default::default()
        };
        // Field 1 varint 1; field 15 length-delimited (tag byte 0x7a), one byte.
        assert_eq!(registration.encode_to_vec(), [0x08, 0x01, 0x7a, 0x01, 0xff]);
        let notification = PushNotification {
            chat_id: vec![0xff, 0xfe],
            r#type: PushNotificationType::RequestToJoinCommunity as i32,
            ..Default::default()
        };
        assert_eq!(
            notification.encode_to_vec(),
            [0x12, 0x02, 0xff, 0xfe, 0x30, 0x03]
        );
    }

    #[test]
    fn chat_ids_that_are_not_utf8_decode() {
        let bytes = [0x12, 0x02, 0xc3, 0x28];
        let decoded = PushNotification::decode(&bytes[..]).unwrap();
        assert_eq!(decoded.chat_id, [0xc3, 0x28]);
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        for bad in [
            &[0x12, 0x05, 0x01][..], // length past the end
            &[
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ][..], // overlong varint
            &[0x17][..],             // wire type 7 does not exist
            &[0x1a, 0x02, 0xc3, 0x28][..], // installation id not UTF-8
        ] {
            assert!(
                PushNotificationRegistration::decode(bad).is_err(),
                "{bad:?}"
            );
        }
        assert!(PushNotificationRequest::decode(&[0x0a, 0x03, 0x12, 0x09, 0x00][..]).is_err());
    }
}

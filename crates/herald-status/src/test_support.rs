//! Playing a status-go client in tests and in herald's benchmark: fixed
//! keys, and registrations built and encrypted the way
//! `pushnotificationclient` builds them.

use k256::{PublicKey, SecretKey};
use prost::Message;

use crate::crypto::{ecdh_x, hashed_key, keccak256, seal_nonce_first};
use crate::proto::{
    PushNotification, PushNotificationRegistration, PushNotificationRequest, PushNotificationType,
    TokenType,
};

/// An installation id, as status-go generates them (a UUIDv4).
pub const INSTALLATION: &str = "2d1b4f4e-7a0a-4f6c-9a43-3f1c1d5e9b10";
/// An access token, as status-go generates them (a UUIDv4).
pub const TOKEN: &str = "c7a0e9f3-4b5d-4e21-8f3a-6d2b9e0a1c44";

/// A fixed key per `seed` (1 to 255), so failures reproduce.
pub fn key(seed: u8) -> SecretKey {
    SecretKey::from_slice(&[seed; 32]).expect("a scalar of repeated bytes below the order")
}

/// A complete APN registration of `client` with `server`, at `version`.
pub fn registration(
    client: &SecretKey,
    server: &PublicKey,
    version: u64,
) -> PushNotificationRegistration {
    PushNotificationRegistration {
        token_type: TokenType::ApnToken as i32,
        device_token: "abc123".into(),
        installation_id: INSTALLATION.into(),
        access_token: TOKEN.into(),
        enabled: true,
        version,
        grant: crate::grant::sign(client, server, TOKEN).to_vec(),
        apn_topic: "im.status.ethereum".into(),
        ..Default::default()
    }
}

/// `registration` encrypted to `server` as the AMM payload carries it.
pub fn seal_registration(
    client: &SecretKey,
    server: &PublicKey,
    registration: &PushNotificationRegistration,
) -> Vec<u8> {
    seal_nonce_first(&ecdh_x(client, server), &registration.encode_to_vec())
}

/// A notification request, encoded, for a message in `chat_id` to the
/// installation [`registration`] registers for `recipient`.
pub fn request_payload(recipient: &PublicKey, chat_id: &[u8], message_id: &[u8]) -> Vec<u8> {
    PushNotificationRequest {
        requests: vec![PushNotification {
            access_token: TOKEN.into(),
            chat_id: chat_id.to_vec(),
            public_key: hashed_key(recipient).to_vec(),
            installation_id: INSTALLATION.into(),
            message: vec![0xab; 200],
            r#type: PushNotificationType::Message as i32,
            author: keccak256(b"a contact").to_vec(),
        }],
        message_id: message_id.to_vec(),
    }
    .encode_to_vec()
}

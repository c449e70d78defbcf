//! The request status-go sends to gorush (`pushnotificationserver/gorush.go`
//! at c72f4913), for operators who keep their gorush: `POST {url}/api/push`
//! with one notification object per sendable notification, each with a
//! single token.
//!
//! status-go treats a transport error as fatal for the request (no reply)
//! and any HTTP status as sent; [`Gorush::post`] tells them apart the same way.

use std::time::Duration;

use serde::Serialize;

use crate::hex;
use crate::proto::{PushNotificationType, TokenType};
use crate::request::Sendable;

/// gorush answers at once (it queues); a stuck gorush must not hold the
/// Waku loop for longer than this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// gorush's `platform` for each token type (iOS 1, Android 2, else 0).
fn platform(token_type: i32) -> u8 {
    match TokenType::try_from(token_type) {
        Ok(TokenType::ApnToken) => 1,
        Ok(TokenType::FirebaseToken) => 2,
        _ => 0,
    }
}

/// The visible text status-go sends for each notification type.
pub fn text(kind: i32) -> &'static str {
    match PushNotificationType::try_from(kind) {
        Ok(PushNotificationType::Message) => "You have a new message",
        Ok(PushNotificationType::RequestToJoinCommunity) => {
            "Someone requested to join a community you are an admin of"
        }
        _ => "Someone mentioned you",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GorushRequest {
    pub notifications: Vec<GorushNotification>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GorushNotification {
    pub tokens: Vec<String>,
    pub platform: u8,
    pub message: &'static str,
    pub topic: String,
    pub data: GorushData,
}

/// The keys the Status app decodes, `0x`-prefixed lowercase hex.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GorushData {
    #[serde(rename = "encryptedMessage")]
    pub encrypted_message: String,
    #[serde(rename = "chatId")]
    pub chat_id: String,
    #[serde(rename = "publicKey")]
    pub public_key: String,
}

impl GorushData {
    pub fn of(sendable: &Sendable) -> Self {
        let n = &sendable.notification;
        Self {
            encrypted_message: hex::encode_prefixed(&n.message),
            chat_id: hex::encode_prefixed(&n.chat_id),
            public_key: hex::encode_prefixed(&n.public_key),
        }
    }
}

impl GorushRequest {
    pub fn of(sendable: &[Sendable]) -> Self {
        Self {
            notifications: sendable
                .iter()
                .map(|s| GorushNotification {
                    tokens: vec![s.registration.device_token.clone()],
                    platform: platform(s.registration.token_type),
                    message: text(s.notification.r#type),
                    topic: s.registration.apn_topic.clone(),
                    data: GorushData::of(s),
                })
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GorushError {
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("gorush at {url} cannot be reached: {source}")]
    Unreachable { url: String, source: reqwest::Error },
}

/// A gorush instance's push endpoint.
pub struct Gorush {
    client: reqwest::Client,
    push_url: String,
}

impl Gorush {
    /// The gorush at `base` (its `/api/push` is POSTed to).
    pub fn new(base: &url::Url) -> Result<Self, GorushError> {
        herald_http::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(GorushError::Client)?;
        Ok(Self {
            client,
            push_url: format!("{}/api/push", base.as_str().trim_end_matches('/')),
        })
    }

    /// POSTs `request`; `Ok` with whatever status gorush answered
    /// (status-go does not look at it), `Err` only when no answer came.
    pub async fn post(&self, request: &GorushRequest) -> Result<u16, GorushError> {
        let response = self
            .client
            .post(&self.push_url)
            .json(request)
            .send()
            .await
            .map_err(|source| GorushError::Unreachable {
                url: self.push_url.clone(),
                source,
            })?;
        Ok(response.status().as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{PushNotification, PushNotificationRegistration};

    fn sendable(token_type: TokenType, kind: PushNotificationType) -> Sendable {
        Sendable {
            notification: PushNotification {
                chat_id: vec![0xAB, 0x01],
                public_key: vec![0x0C],
                message: vec![0xDE, 0xAD],
                r#type: kind as i32,
                ..Default::default()
            },
            registration: PushNotificationRegistration {
                token_type: token_type as i32,
                device_token: "token-1".into(),
                apn_topic: if token_type == TokenType::ApnToken {
                    "im.status.ethereum".into()
                } else {
                    String::new()
                },
                ..Default::default()
            },
        }
    }

    /// status-go's `TestPushNotificationRegistrationToGoRushRequest`.
    #[test]
    fn the_body_is_status_gos_for_apn_and_firebase_tokens() {
        let body = serde_json::to_value(GorushRequest::of(&[
            sendable(TokenType::ApnToken, PushNotificationType::Message),
            sendable(TokenType::FirebaseToken, PushNotificationType::Mention),
            sendable(
                TokenType::UnknownTokenType,
                PushNotificationType::RequestToJoinCommunity,
            ),
        ]))
        .unwrap();
        let data = serde_json::json!({
            "encryptedMessage": "0xdead",
            "chatId": "0xab01",
            "publicKey": "0x0c",
        });
        assert_eq!(
            body,
            serde_json::json!({"notifications": [
                {"tokens": ["token-1"], "platform": 1, "message": "You have a new message",
                 "topic": "im.status.ethereum", "data": data},
                {"tokens": ["token-1"], "platform": 2, "message": "Someone mentioned you",
                 "topic": "", "data": data},
                {"tokens": ["token-1"], "platform": 0,
                 "message": "Someone requested to join a community you are an admin of",
                 "topic": "", "data": data},
            ]})
        );
    }

    #[tokio::test]
    async fn a_transport_failure_is_an_error_and_any_status_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let n = socket.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            socket
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            head
        });
        let gorush = Gorush::new(&base).unwrap();
        let request = GorushRequest::of(&[]);
        assert_eq!(gorush.post(&request).await.unwrap(), 500);
        let head = server.await.unwrap();
        assert!(head.starts_with("POST /api/push HTTP/1.1"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json")
        );
        // Nobody listens there any more.
        assert!(matches!(
            gorush.post(&request).await,
            Err(GorushError::Unreachable { .. })
        ));
    }
}

//! The push-notification server: what arrives on the topics it listens on,
//! what it answers and what it asks herald to keep and deliver.
//!
//! `StatusServer` does no I/O. [`StatusServer::receive`] takes one Waku
//! message and returns an [`Outcome`]: the reply to publish, and the
//! [`Effects`] the caller must make durable *before* it publishes (state to
//! store, devices to keep or drop, notifications to queue, a gorush request
//! to post). The caller stores first and replies after, so a client told
//! "registered" is registered. The same code runs in `herald serve`, in the
//! tests and in the benchmark.
//!
//! Messages are opened in the order status-go's `handleMessage` does: the
//! Waku v1 payload (ECIES on the personal and partitioned topics, the
//! topic's symmetric key on query topics), then the signed
//! `ApplicationMetadataMessage`, then the push-notification protobuf by the
//! wrapper's type. Replies go to the wrapper's signer, which for queries
//! and requests is an ephemeral key, never to the payload's signer.

use std::collections::HashMap;

use herald_core::model::{AppId, NewDevice, Notification};
use herald_core::store::StateChange;
use k256::{PublicKey, SecretKey};
use prost::Message;

use crate::crypto::{hashed_key, shake256_64};
use crate::delivery::DeliveryApps;
use crate::gorush::GorushRequest;
use crate::nwaku::WakuMessage;
use crate::persistence::{HashedKey, Kept, Registrations, RequestLog, Stored};
use crate::proto::{
    PushNotificationQuery, PushNotificationRegistrationResponse, PushNotificationRequest,
    PushNotificationResponse,
};
use crate::topics::{
    content_topic, partitioned_topic, personal_topic, query_chat_name, symmetric_key,
};
use crate::waku_payload::{self, PayloadError};
use crate::wrapper::{self, AppMessage, MessageType, WrapperError};
use crate::{query, registration, request};

/// Why a message on a topic herald listens on was dropped without a reply.
#[derive(Debug, thiserror::Error)]
pub enum Ignored {
    #[error("the Waku payload does not open: {0}")]
    Payload(#[from] PayloadError),
    #[error("the Waku payload is not signed (status-go drops those)")]
    Unsigned,
    #[error("the application wrapper is invalid: {0}")]
    Wrapper(#[from] WrapperError),
    #[error("message type {0} is not for a push-notification server")]
    MessageType(i32),
    #[error("the {0} is not a protobuf: {1}")]
    Protobuf(&'static str, prost::DecodeError),
    #[error("this notification request was handled already")]
    Duplicate,
}

impl Ignored {
    /// A short label per reason, for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Payload(_) => "payload",
            Self::Unsigned => "unsigned",
            Self::Wrapper(_) => "wrapper",
            Self::MessageType(_) => "message_type",
            Self::Protobuf(..) => "protobuf",
            Self::Duplicate => "duplicate",
        }
    }
}

/// An answer to send to `to`, on its partitioned topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub to: PublicKey,
    pub message_type: MessageType,
    pub payload: Vec<u8>,
}

impl Reply {
    /// The Waku message carrying this reply as status-go sends one: the
    /// wrapper and the Waku v1 payload both signed by the server, the
    /// payload encrypted to the recipient; `version = 1`.
    pub fn seal(&self, identity: &SecretKey, now_ns: i64) -> Result<WakuMessage, PayloadError> {
        let wrapped = wrapper::wrap_message(self.message_type, self.payload.clone(), identity);
        Ok(WakuMessage {
            payload: waku_payload::seal_asymmetric(&self.to, &wrapped, identity)?,
            content_topic: partitioned_topic(&self.to),
            version: 1,
            timestamp: Some(now_ns),
            ephemeral: false,
        })
    }
}

/// What must be made durable before the reply goes out.
#[derive(Debug, Default, PartialEq)]
pub struct Effects {
    /// The source's state changes (registrations, handled request ids).
    pub state: Vec<StateChange>,
    /// Devices to register in herald (delivery through herald's providers).
    pub devices: Vec<NewDevice>,
    /// Devices to remove, by app and token: replaced or unregistered.
    pub dropped_devices: Vec<(AppId, String)>,
    /// Pushes to queue, in the same transaction as `state`.
    pub notifications: Vec<Notification>,
    /// Pushes to POST to gorush instead, after `state` is stored.
    pub gorush: Option<GorushRequest>,
}

#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    pub effects: Effects,
    pub reply: Option<Reply>,
}

/// How herald delivers what the server decides to send.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Through herald's providers, as devices of the configured apps.
    Providers(DeliveryApps),
    /// By POSTing status-go's gorush request.
    Gorush,
}

/// How a listened content topic's payloads are opened.
enum Listened {
    /// Personal and partitioned topics: ECIES to the server's key.
    Asymmetric,
    /// A query topic: the chat name, and its key once derived (PBKDF2 is
    /// slow on purpose, so keys are derived on the topic's first message,
    /// not for every registered key at start-up).
    Query {
        chat_name: String,
        key: Option<[u8; 32]>,
    },
}

pub struct StatusServer {
    identity: SecretKey,
    registrations: Registrations,
    requests: RequestLog,
    delivery: Delivery,
    topics: HashMap<String, Listened>,
}

impl StatusServer {
    pub fn new(identity: SecretKey, kept: Kept, delivery: Delivery) -> Self {
        let public = identity.public_key();
        let mut server = Self {
            identity,
            registrations: kept.registrations,
            requests: kept.requests,
            delivery,
            topics: HashMap::new(),
        };
        for topic in [personal_topic(&public), partitioned_topic(&public)] {
            server.topics.insert(topic, Listened::Asymmetric);
        }
        let keys: Vec<HashedKey> = server.registrations.keys().copied().collect();
        for key in keys {
            server.listen_for_queries(&key);
        }
        server
    }

    pub fn public_key(&self) -> PublicKey {
        self.identity.public_key()
    }

    pub fn identity(&self) -> &SecretKey {
        &self.identity
    }

    pub fn registrations(&self) -> &Registrations {
        &self.registrations
    }

    /// Whether herald listens on `content_topic`.
    pub fn listens_on(&self, content_topic: &str) -> bool {
        self.topics.contains_key(content_topic)
    }

    /// Content topics listened on: personal, partitioned and one per key.
    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    /// Handles one Waku message; `Ok(None)` when it is on a topic herald
    /// does not listen on.
    pub fn receive(
        &mut self,
        message: &WakuMessage,
        now_ms: i64,
    ) -> Result<Option<Outcome>, Ignored> {
        let Some(listened) = self.topics.get_mut(&message.content_topic) else {
            return Ok(None);
        };
        let opened = match listened {
            Listened::Asymmetric => {
                waku_payload::open_asymmetric(&self.identity, &message.payload)?
            }
            Listened::Query { chat_name, key } => {
                let key = key.get_or_insert_with(|| symmetric_key(chat_name));
                waku_payload::open_symmetric(key, &message.payload)?
            }
        };
        if opened.signer.is_none() {
            return Err(Ignored::Unsigned);
        }
        let app_message = wrapper::unwrap_message(&opened.data)?;
        self.handle(&app_message, now_ms).map(Some)
    }

    /// Dispatches an unwrapped application message by its type.
    pub fn handle(&mut self, message: &AppMessage, now_ms: i64) -> Result<Outcome, Ignored> {
        match MessageType::from_wire(message.message_type) {
            Some(MessageType::Registration) => Ok(self.register(message)),
            Some(MessageType::Query) => self.query(message),
            Some(MessageType::Request) => self.request(message, now_ms),
            _ => Err(Ignored::MessageType(message.message_type)),
        }
    }

    /// A registration is always answered, even when it cannot be read.
    fn register(&mut self, message: &AppMessage) -> Outcome {
        let key = hashed_key(&message.signer);
        let mut response = PushNotificationRegistrationResponse {
            request_id: shake256_64(&message.payload).to_vec(),
            ..Default::default()
        };
        let mut effects = Effects::default();
        match registration::open_and_validate(
            &self.identity,
            &message.signer,
            &message.payload,
            |installation| self.registrations.version(&key, installation),
        ) {
            Err(e) => response.error = e.error_type() as i32,
            Ok(registration) => {
                response.success = true;
                let installation = registration.installation_id.clone();
                let version = registration.version;
                let previous = self.registrations.active(&key, &installation).cloned();
                let kept = (!registration.unregister).then_some(registration);
                if let Delivery::Providers(apps) = &self.delivery {
                    let new = kept.as_ref().and_then(|r| apps.device(&key, r));
                    let old = previous.as_ref().and_then(|r| apps.device(&key, r));
                    if let Some(old) = old
                        && new
                            .as_ref()
                            .is_none_or(|n| (&n.app_id, &n.token) != (&old.app_id, &old.token))
                    {
                        effects.dropped_devices.push((old.app_id, old.token));
                    }
                    effects.devices.extend(new);
                }
                let stored = Stored {
                    version,
                    registration: kept,
                };
                effects
                    .state
                    .push(self.registrations.put(key, &installation, stored));
                self.listen_for_queries(&key);
            }
        }
        Outcome {
            effects,
            reply: Some(Reply {
                to: message.signer,
                message_type: MessageType::RegistrationResponse,
                payload: response.encode_to_vec(),
            }),
        }
    }

    fn query(&self, message: &AppMessage) -> Result<Outcome, Ignored> {
        let query = PushNotificationQuery::decode(message.payload.as_slice())
            .map_err(|e| Ignored::Protobuf("query", e))?;
        let answer = query::answer(&query, &self.registrations, &message.id);
        Ok(Outcome {
            effects: Effects::default(),
            reply: Some(Reply {
                to: message.signer,
                message_type: MessageType::QueryResponse,
                payload: answer.encode_to_vec(),
            }),
        })
    }

    /// Handled at most once per wrapper id; the id is stored with the
    /// pushes it causes, in one transaction.
    fn request(&mut self, message: &AppMessage, now_ms: i64) -> Result<Outcome, Ignored> {
        let request = PushNotificationRequest::decode(message.payload.as_slice())
            .map_err(|e| Ignored::Protobuf("notification request", e))?;
        let state = self
            .requests
            .record(message.id, now_ms)
            .ok_or(Ignored::Duplicate)?;
        let mut effects = Effects {
            state,
            ..Effects::default()
        };
        // status-go neither sends nor answers a request without an id.
        if request.message_id.is_empty() {
            return Ok(Outcome {
                effects,
                reply: None,
            });
        }
        let handled = request::handle(&request, &self.registrations);
        match &self.delivery {
            Delivery::Providers(apps) => {
                effects.notifications = handled
                    .sendable
                    .iter()
                    .enumerate()
                    .filter_map(|(index, sendable)| {
                        let key = HashedKey::try_from(sendable.notification.public_key.as_slice())
                            .ok()?;
                        apps.notification(&key, sendable, &message.id, index)
                    })
                    .collect();
            }
            Delivery::Gorush if !handled.sendable.is_empty() => {
                effects.gorush = Some(GorushRequest::of(&handled.sendable));
            }
            Delivery::Gorush => {}
        }
        let response = PushNotificationResponse {
            message_id: request.message_id,
            reports: handled.reports,
        };
        Ok(Outcome {
            effects,
            reply: Some(Reply {
                to: message.signer,
                message_type: MessageType::Response,
                payload: response.encode_to_vec(),
            }),
        })
    }

    fn listen_for_queries(&mut self, key: &HashedKey) {
        let chat_name = query_chat_name(key);
        self.topics
            .entry(content_topic(&chat_name))
            .or_insert(Listened::Query {
                chat_name,
                key: None,
            });
    }
}

#[cfg(test)]
mod tests {
    use herald_core::model::Transport;

    use super::*;
    use crate::proto::{
        PushNotification, PushNotificationQueryResponse, PushNotificationRegistration,
        PushNotificationType, RegistrationErrorType, ReportErrorType,
    };
    use crate::test_support::{INSTALLATION, TOKEN, key, registration, seal_registration};

    const NOW: i64 = 1_780_000_000_000;

    fn apps() -> DeliveryApps {
        DeliveryApps {
            apns: vec![(
                AppId::parse("status-ios").unwrap(),
                "im.status.ethereum".into(),
            )],
            fcm: Some(AppId::parse("status-android").unwrap()),
        }
    }

    fn server(delivery: Delivery) -> StatusServer {
        StatusServer::new(key(2), Kept::default(), delivery)
    }

    fn amm(message_type: MessageType, payload: Vec<u8>, signer: &SecretKey) -> AppMessage {
        wrapper::unwrap_message(&wrapper::wrap_message(message_type, payload, signer)).unwrap()
    }

    fn register(
        server: &mut StatusServer,
        r: &PushNotificationRegistration,
    ) -> (Outcome, PushNotificationRegistrationResponse) {
        let sealed = seal_registration(&key(1), &server.public_key(), r);
        let message = amm(MessageType::Registration, sealed.clone(), &key(1));
        let outcome = server.handle(&message, NOW).unwrap();
        let reply = outcome.reply.clone().unwrap();
        assert_eq!(reply.to, key(1).public_key());
        assert_eq!(reply.message_type, MessageType::RegistrationResponse);
        let response =
            PushNotificationRegistrationResponse::decode(reply.payload.as_slice()).unwrap();
        assert_eq!(response.request_id, shake256_64(&sealed));
        (outcome, response)
    }

    fn registered() -> (StatusServer, HashedKey) {
        let mut s = server(Delivery::Providers(apps()));
        let (_, response) = register(&mut s, &registration(&key(1), &key(2).public_key(), 1));
        assert!(response.success);
        (s, hashed_key(&key(1).public_key()))
    }

    #[test]
    fn a_valid_registration_is_kept_answered_and_becomes_a_device() {
        let mut s = server(Delivery::Providers(apps()));
        let r = registration(&key(1), &key(2).public_key(), 1);
        let query_topic = content_topic(&query_chat_name(&hashed_key(&key(1).public_key())));
        assert!(!s.listens_on(&query_topic));
        let (outcome, response) = register(&mut s, &r);
        assert!(response.success);
        assert_eq!(response.error, 0);
        let hashed = hashed_key(&key(1).public_key());
        assert_eq!(s.registrations().active(&hashed, INSTALLATION), Some(&r));
        assert_eq!(outcome.effects.state.len(), 1);
        let devices = &outcome.effects.devices;
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].transport, Transport::Apns);
        assert_eq!(devices[0].token, r.device_token);
        assert!(outcome.effects.dropped_devices.is_empty());
        assert!(
            s.listens_on(&query_topic),
            "the key's query topic is joined"
        );
        // What was stored comes back byte for byte.
        let state: Vec<_> = outcome
            .effects
            .state
            .iter()
            .map(|c| (c.key.clone(), c.value.clone().unwrap()))
            .collect();
        let kept = Kept::restore(&state);
        assert_eq!(kept.registrations.active(&hashed, INSTALLATION), Some(&r));
        let restarted = StatusServer::new(key(2), kept, Delivery::Gorush);
        assert!(restarted.listens_on(&query_topic), "rejoined at start-up");
    }

    #[test]
    fn a_stale_version_is_answered_version_mismatch_and_changes_nothing() {
        let (mut s, _) = registered();
        let (outcome, response) = register(&mut s, &registration(&key(1), &key(2).public_key(), 1));
        assert!(!response.success);
        assert_eq!(
            response.error,
            RegistrationErrorType::VersionMismatch as i32
        );
        assert_eq!(outcome.effects, Effects::default());
    }

    #[test]
    fn every_invalid_registration_is_answered_malformed() {
        let mut s = server(Delivery::Gorush);
        let valid = registration(&key(1), &key(2).public_key(), 1);
        for invalid in [
            PushNotificationRegistration {
                installation_id: "abc".into(),
                ..valid.clone()
            },
            PushNotificationRegistration {
                access_token: "bc".into(),
                ..valid.clone()
            },
            PushNotificationRegistration {
                device_token: String::new(),
                ..valid.clone()
            },
            PushNotificationRegistration {
                grant: vec![1; 32],
                ..valid.clone()
            },
            PushNotificationRegistration {
                token_type: 0,
                ..valid.clone()
            },
        ] {
            let (outcome, response) = register(&mut s, &invalid);
            assert!(!response.success);
            assert_eq!(
                response.error,
                RegistrationErrorType::MalformedMessage as i32
            );
            assert_eq!(outcome.effects, Effects::default());
        }
        for garbage in [Vec::new(), b"too short".to_vec(), vec![0xff; 300]] {
            let message = amm(MessageType::Registration, garbage.clone(), &key(1));
            let reply = s.handle(&message, NOW).unwrap().reply.unwrap();
            let response =
                PushNotificationRegistrationResponse::decode(reply.payload.as_slice()).unwrap();
            assert_eq!(
                (response.success, response.error, response.request_id),
                (
                    false,
                    RegistrationErrorType::MalformedMessage as i32,
                    shake256_64(&garbage).to_vec()
                )
            );
        }
        assert!(s.registrations().is_empty());
    }

    #[test]
    fn unregistering_keeps_the_version_and_drops_the_device() {
        let (mut s, hashed) = registered();
        let unregister = PushNotificationRegistration {
            installation_id: INSTALLATION.into(),
            version: 2,
            unregister: true,
            ..Default::default()
        };
        let (outcome, response) = register(&mut s, &unregister);
        assert!(response.success);
        assert_eq!(s.registrations().active(&hashed, INSTALLATION), None);
        assert_eq!(s.registrations().version(&hashed, INSTALLATION), 2);
        assert_eq!(outcome.effects.state[0].value.as_deref(), Some("2"));
        assert!(outcome.effects.devices.is_empty());
        assert_eq!(
            outcome.effects.dropped_devices,
            [(AppId::parse("status-ios").unwrap(), "abc123".to_owned())]
        );
    }

    #[test]
    fn a_new_token_replaces_the_old_device() {
        let (mut s, _) = registered();
        let moved = PushNotificationRegistration {
            device_token: "new-token".into(),
            ..registration(&key(1), &key(2).public_key(), 2)
        };
        let (outcome, _) = register(&mut s, &moved);
        assert_eq!(outcome.effects.devices[0].token, "new-token");
        assert_eq!(outcome.effects.dropped_devices[0].1, "abc123");
        let same_token = registration(&key(1), &key(2).public_key(), 3);
        let (outcome, _) = register(
            &mut s,
            &PushNotificationRegistration {
                device_token: "new-token".into(),
                ..same_token
            },
        );
        assert!(outcome.effects.dropped_devices.is_empty());
    }

    #[test]
    fn a_query_is_answered_to_its_ephemeral_signer_with_its_id() {
        let (mut s, hashed) = registered();
        let ephemeral = key(7);
        let query = PushNotificationQuery {
            public_keys: vec![b"non-existing".to_vec(), hashed.to_vec()],
        };
        let message = amm(MessageType::Query, query.encode_to_vec(), &ephemeral);
        let outcome = s.handle(&message, NOW).unwrap();
        assert_eq!(outcome.effects, Effects::default());
        let reply = outcome.reply.unwrap();
        assert_eq!(reply.to, ephemeral.public_key());
        assert_eq!(reply.message_type, MessageType::QueryResponse);
        let answer = PushNotificationQueryResponse::decode(reply.payload.as_slice()).unwrap();
        assert_eq!(answer.message_id, message.id);
        assert!(answer.success);
        assert_eq!(answer.info.len(), 1);
        assert_eq!(answer.info[0].access_token, TOKEN);
        let bad = amm(MessageType::Query, vec![0x0a, 0x05], &ephemeral);
        assert!(matches!(s.handle(&bad, NOW), Err(Ignored::Protobuf(..))));
    }

    fn notification(hashed: &HashedKey) -> PushNotification {
        PushNotification {
            access_token: TOKEN.into(),
            chat_id: vec![0xc4; 64],
            public_key: hashed.to_vec(),
            installation_id: INSTALLATION.into(),
            message: b"encrypted".to_vec(),
            r#type: PushNotificationType::Message as i32,
            author: vec![0xa0; 64],
        }
    }

    fn request_message(hashed: &HashedKey, message_id: &[u8]) -> AppMessage {
        let request = PushNotificationRequest {
            requests: vec![
                notification(hashed),
                PushNotification {
                    access_token: "wrong".into(),
                    ..notification(hashed)
                },
            ],
            message_id: message_id.to_vec(),
        };
        amm(MessageType::Request, request.encode_to_vec(), &key(8))
    }

    #[test]
    fn a_request_is_reported_queued_and_handled_once() {
        let (mut s, hashed) = registered();
        let message = request_message(&hashed, b"chat message id");
        let outcome = s.handle(&message, NOW).unwrap();
        let reply = outcome.reply.unwrap();
        assert_eq!(reply.to, key(8).public_key());
        assert_eq!(reply.message_type, MessageType::Response);
        let response = PushNotificationResponse::decode(reply.payload.as_slice()).unwrap();
        assert_eq!(response.message_id, b"chat message id");
        let reports: Vec<_> = response
            .reports
            .iter()
            .map(|r| (r.success, r.error))
            .collect();
        assert_eq!(
            reports,
            [(true, 0), (false, ReportErrorType::WrongToken as i32)]
        );
        let effects = outcome.effects;
        assert_eq!(effects.notifications.len(), 1);
        assert_eq!(
            effects.notifications[0].message.data["encryptedMessage"],
            crate::hex::encode_prefixed(b"encrypted")
        );
        assert!(effects.gorush.is_none());
        assert!(effects.state[0].key.starts_with("request:"));
        assert!(matches!(s.handle(&message, NOW), Err(Ignored::Duplicate)));
    }

    #[test]
    fn a_request_without_an_id_is_recorded_but_neither_sent_nor_answered() {
        let (mut s, hashed) = registered();
        let outcome = s.handle(&request_message(&hashed, b""), NOW).unwrap();
        assert!(outcome.reply.is_none());
        assert!(outcome.effects.notifications.is_empty());
        assert_eq!(outcome.effects.state.len(), 1);
    }

    #[test]
    fn with_gorush_a_request_becomes_one_gorush_body_and_no_device() {
        let mut s = server(Delivery::Gorush);
        let (outcome, _) = register(&mut s, &registration(&key(1), &key(2).public_key(), 1));
        assert!(outcome.effects.devices.is_empty());
        let hashed = hashed_key(&key(1).public_key());
        let outcome = s.handle(&request_message(&hashed, b"id"), NOW).unwrap();
        let body = outcome.effects.gorush.unwrap();
        assert_eq!(body.notifications.len(), 1);
        assert_eq!(body.notifications[0].tokens, ["abc123"]);
        assert!(outcome.effects.notifications.is_empty());
        // Nothing to send: no POST.
        let nothing = PushNotificationRequest {
            requests: vec![PushNotification {
                installation_id: "other".into(),
                ..notification(&hashed)
            }],
            message_id: b"id2".to_vec(),
        };
        let message = amm(MessageType::Request, nothing.encode_to_vec(), &key(8));
        assert!(s.handle(&message, NOW).unwrap().effects.gorush.is_none());
    }

    #[test]
    fn other_message_types_are_ignored() {
        let mut s = server(Delivery::Gorush);
        for t in [MessageType::ContactCodeAdvertisement, MessageType::Response] {
            let message = amm(t, vec![], &key(1));
            assert!(matches!(
                s.handle(&message, NOW),
                Err(Ignored::MessageType(_))
            ));
        }
    }

    /// The whole path, Waku payloads included, as a client sends and reads.
    #[test]
    fn waku_messages_are_opened_by_topic_and_replies_sealed_to_the_signer() {
        let mut s = server(Delivery::Providers(apps()));
        let server_key = s.public_key();
        let client = key(1);
        let sealed =
            seal_registration(&client, &server_key, &registration(&client, &server_key, 1));
        let amm_bytes = wrapper::wrap_message(MessageType::Registration, sealed, &client);
        let incoming = WakuMessage {
            payload: waku_payload::seal_asymmetric(&server_key, &amm_bytes, &client).unwrap(),
            content_topic: personal_topic(&server_key),
            version: 1,
            timestamp: None,
            ephemeral: false,
        };
        let outcome = s.receive(&incoming, NOW).unwrap().unwrap();
        let sent = outcome.reply.unwrap().seal(s.identity(), 5).unwrap();
        assert_eq!(sent.content_topic, partitioned_topic(&client.public_key()));
        assert_eq!((sent.version, sent.timestamp), (1, Some(5)));
        let opened = waku_payload::open_asymmetric(&client, &sent.payload).unwrap();
        assert_eq!(opened.signer, Some(server_key));
        let reply = wrapper::unwrap_message(&opened.data).unwrap();
        assert_eq!(reply.signer, server_key);
        assert_eq!(reply.message_type, MessageType::RegistrationResponse as i32);
        assert!(
            PushNotificationRegistrationResponse::decode(reply.payload.as_slice())
                .unwrap()
                .success
        );

        // A query on the key's query topic, under the topic's symmetric key.
        let chat = query_chat_name(&hashed_key(&client.public_key()));
        let query = PushNotificationQuery {
            public_keys: vec![hashed_key(&client.public_key()).to_vec()],
        };
        let amm_bytes = wrapper::wrap_message(MessageType::Query, query.encode_to_vec(), &key(9));
        let on_query_topic = WakuMessage {
            payload: waku_payload::seal_symmetric(&symmetric_key(&chat), &amm_bytes, &client)
                .unwrap(),
            content_topic: content_topic(&chat),
            ..incoming.clone()
        };
        let outcome = s.receive(&on_query_topic, NOW).unwrap().unwrap();
        assert_eq!(outcome.reply.unwrap().to, key(9).public_key());

        // Elsewhere: not ours. Garbage on our topics: ignored, with a reason.
        let elsewhere = WakuMessage {
            content_topic: content_topic("some public chat"),
            ..incoming.clone()
        };
        assert!(s.receive(&elsewhere, NOW).unwrap().is_none());
        for payload in [
            Vec::new(),
            vec![0x04; 200],
            incoming.payload[..100].to_vec(),
        ] {
            let garbage = WakuMessage {
                payload,
                ..incoming.clone()
            };
            let err = s.receive(&garbage, NOW).unwrap_err();
            assert_eq!(err.reason(), "payload", "{err}");
        }
        let not_a_wrapper = WakuMessage {
            payload: waku_payload::seal_asymmetric(&server_key, b"\xff\xff", &client).unwrap(),
            ..incoming.clone()
        };
        assert_eq!(
            s.receive(&not_a_wrapper, NOW).unwrap_err().reason(),
            "wrapper"
        );
        let on_query_topic_garbage = WakuMessage {
            payload: vec![1; 64],
            ..on_query_topic
        };
        assert_eq!(
            s.receive(&on_query_topic_garbage, NOW)
                .unwrap_err()
                .reason(),
            "payload"
        );
    }
}

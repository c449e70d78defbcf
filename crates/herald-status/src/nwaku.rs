//! A client for an nwaku node's REST relay API: herald's way onto Waku.
//!
//! nwaku runs beside herald (reference §15.1) subscribed to Status's shard;
//! herald subscribes it to the pubsub topic, polls the messages it cached
//! and posts replies. The relay API has no content-topic filter, so `poll`
//! returns the whole shard and the caller keeps the topics it listens on.
//!
//! What nwaku does that shapes this client (`waku/rest_api/endpoint/relay`):
//! `GET /relay/v1/messages/{topic}` hands out everything cached since the
//! last call and clears it, so a poll that fails after nwaku answered loses
//! those messages: the body is read whole, and one malformed entry is
//! skipped, never the batch. The cache is bounded (oldest evicted first),
//! so the caller polls often. After an nwaku restart its subscriptions are
//! gone: `GET` answers 404 and `POST` 400, which come back as
//! `NwakuError::NotSubscribed` for the caller to subscribe again. Retrying
//! and backing off when the node is down is the caller's loop's job
//! (`herald_core::retry::ReconnectPolicy`); `NwakuError::Unreachable` is
//! the one error where nwaku did not answer at all.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use herald_http::http_client::CONNECT_TIMEOUT;
use reqwest::{Client, Response, StatusCode};
use serde::{Deserialize, Serialize};
use url::Url;

/// A local node answers in milliseconds; a hung one must not stall the poll
/// loop for longer than this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest poll answer read: nwaku's cache holds
/// `--rest-relay-cache-capacity` messages of at most `--max-msg-size`
/// (150 KiB by default), a third larger in base64. 64 MiB covers a cache of
/// 300 full-size messages, far beyond what an operator would configure.
const MAX_POLL_BODY: usize = 64 * 1024 * 1024;
/// Error bodies are quoted in errors up to this many bytes.
const MAX_ERROR_BODY: usize = 512;

/// A Waku message as the relay API carries it (14/WAKU2-MESSAGE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakuMessage {
    pub payload: Vec<u8>,
    pub content_topic: String,
    /// 1 for Status's encrypted payloads (26/WAKU2-PAYLOAD).
    pub version: u32,
    /// Nanoseconds since the Unix epoch; nwaku stamps the time of posting
    /// when it is missing or 0.
    pub timestamp: Option<i64>,
    pub ephemeral: bool,
}

/// Why a call to nwaku failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NwakuError {
    #[error("the nwaku URL cannot carry an API path")]
    BaseUrl,
    #[error("nwaku is unreachable: {0}")]
    Unreachable(String),
    #[error("nwaku is not subscribed to {0}")]
    NotSubscribed(String),
    #[error("nwaku answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("nwaku's answer is over {0} bytes")]
    AnswerTooLarge(usize),
    #[error("nwaku's answer is not the JSON its API documents: {0}")]
    Malformed(String),
}

/// An nwaku REST endpoint.
#[derive(Debug, Clone)]
pub struct NwakuClient {
    base: Url,
    http: Client,
}

/// The relay API's message object. Fields nwaku adds that herald does not
/// use (`meta`, `proof`) are ignored on the way in.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RelayMessage {
    payload: String,
    content_topic: String,
    #[serde(default)]
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timestamp: Option<i64>,
    #[serde(default)]
    ephemeral: bool,
}

impl NwakuClient {
    /// A client for the node whose REST API is at `base`
    /// (e.g. `http://127.0.0.1:8645/`).
    pub fn new(base: Url) -> Self {
        herald_http::install_crypto_provider();
        let http = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with a crypto provider installed and no custom TLS builds");
        Self { base, http }
    }

    /// Subscribes the node to `pubsub_topics` (`POST /relay/v1/subscriptions`).
    /// Subscribing again to a topic is harmless.
    pub async fn subscribe(&self, pubsub_topics: &[&str]) -> Result<(), NwakuError> {
        let url = self.endpoint(&["relay", "v1", "subscriptions"])?;
        let response = self.send(self.http.post(url).json(pubsub_topics)).await?;
        expect_ok(response).await
    }

    /// Unsubscribes the node from `pubsub_topics` (`DELETE /relay/v1/subscriptions`).
    pub async fn unsubscribe(&self, pubsub_topics: &[&str]) -> Result<(), NwakuError> {
        let url = self.endpoint(&["relay", "v1", "subscriptions"])?;
        let response = self.send(self.http.delete(url).json(pubsub_topics)).await?;
        expect_ok(response).await
    }

    /// Everything the node received on `pubsub_topic` since the last poll
    /// (`GET /relay/v1/messages/{topic}`), oldest first. Entries that are
    /// not valid messages (bad base64, missing fields) are left out.
    pub async fn poll(&self, pubsub_topic: &str) -> Result<Vec<WakuMessage>, NwakuError> {
        let url = self.endpoint(&["relay", "v1", "messages", pubsub_topic])?;
        let response = self.send(self.http.get(url)).await?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(NwakuError::NotSubscribed(pubsub_topic.into())),
            _ => return Err(status_error(response).await),
        }
        let body = read_capped(response, MAX_POLL_BODY).await?;
        parse_messages(&body)
    }

    /// Publishes `message` on `pubsub_topic` (`POST /relay/v1/messages/{topic}`).
    pub async fn publish(
        &self,
        pubsub_topic: &str,
        message: &WakuMessage,
    ) -> Result<(), NwakuError> {
        let url = self.endpoint(&["relay", "v1", "messages", pubsub_topic])?;
        let body = RelayMessage {
            payload: STANDARD.encode(&message.payload),
            content_topic: message.content_topic.clone(),
            version: message.version,
            timestamp: message.timestamp,
            ephemeral: message.ephemeral,
        };
        let response = self.send(self.http.post(url).json(&body)).await?;
        if response.status() == StatusCode::BAD_REQUEST {
            let error = status_error(response).await;
            // nwaku's words: "Failed to publish: Node not subscribed to topic: …".
            return Err(match &error {
                NwakuError::Status { body, .. } if body.contains("not subscribed") => {
                    NwakuError::NotSubscribed(pubsub_topic.into())
                }
                _ => error,
            });
        }
        expect_ok(response).await
    }

    /// The node's own verdict on its health (`GET /health`): `nodeHealth`,
    /// e.g. `READY` or `INITIALIZING`.
    pub async fn node_health(&self) -> Result<String, NwakuError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct HealthReport {
            node_health: String,
        }
        let url = self.endpoint(&["health"])?;
        let response = self.send(self.http.get(url)).await?;
        if response.status() != StatusCode::OK {
            return Err(status_error(response).await);
        }
        let body = read_capped(response, MAX_ERROR_BODY * 16).await?;
        serde_json::from_slice::<HealthReport>(&body)
            .map(|report| report.node_health)
            .map_err(|e| NwakuError::Malformed(e.to_string()))
    }

    /// `base` with `segments` appended, each percent-encoded as one segment
    /// (a pubsub topic's slashes become `%2F`, as nwaku requires).
    fn endpoint(&self, segments: &[&str]) -> Result<Url, NwakuError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| NwakuError::BaseUrl)?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, NwakuError> {
        request.send().await.map_err(|e| {
            NwakuError::Unreachable(herald_http::response::describe_transport_error(e))
        })
    }
}

/// nwaku answers `200 OK` with the text "OK" when a call succeeded.
async fn expect_ok(response: Response) -> Result<(), NwakuError> {
    if response.status() == StatusCode::OK {
        Ok(())
    } else {
        Err(status_error(response).await)
    }
}

async fn status_error(response: Response) -> NwakuError {
    let status = response.status().as_u16();
    let body = match read_capped(response, MAX_ERROR_BODY).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(NwakuError::AnswerTooLarge(_)) => "(a longer body than herald reads)".into(),
        Err(error) => error.to_string(),
    };
    NwakuError::Status { status, body }
}

/// The body, refusing to hold more than `max` bytes of it.
async fn read_capped(mut response: Response, max: usize) -> Result<Vec<u8>, NwakuError> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(NwakuError::AnswerTooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| NwakuError::Unreachable(herald_http::response::describe_transport_error(e)))?
    {
        if body.len() + chunk.len() > max {
            return Err(NwakuError::AnswerTooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A poll's body: a JSON array, each valid entry a message.
fn parse_messages(body: &[u8]) -> Result<Vec<WakuMessage>, NwakuError> {
    let entries: Vec<serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| NwakuError::Malformed(e.to_string()))?;
    let total = entries.len();
    let messages: Vec<WakuMessage> = entries.into_iter().filter_map(to_message).collect();
    if messages.len() < total {
        tracing::warn!(
            skipped = total - messages.len(),
            "nwaku returned messages that are not valid relay messages"
        );
    }
    Ok(messages)
}

fn to_message(entry: serde_json::Value) -> Option<WakuMessage> {
    let relay: RelayMessage = serde_json::from_value(entry).ok()?;
    Some(WakuMessage {
        payload: STANDARD.decode(relay.payload).ok()?,
        content_topic: relay.content_topic,
        version: relay.version,
        timestamp: relay.timestamp,
        ephemeral: relay.ephemeral,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_become_one_percent_encoded_segment() {
        let client = NwakuClient::new(Url::parse("http://127.0.0.1:8645").unwrap());
        let url = client
            .endpoint(&["relay", "v1", "messages", "/waku/2/rs/16/32"])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:8645/relay/v1/messages/%2Fwaku%2F2%2Frs%2F16%2F32"
        );
        let prefixed = NwakuClient::new(Url::parse("http://node.local/waku/").unwrap());
        assert_eq!(
            prefixed.endpoint(&["health"]).unwrap().as_str(),
            "http://node.local/waku/health"
        );
        let opaque = NwakuClient::new(Url::parse("mailto:node@example.com").unwrap());
        assert_eq!(opaque.endpoint(&["health"]), Err(NwakuError::BaseUrl));
    }

    #[test]
    fn a_poll_keeps_the_valid_entries_and_skips_the_rest() {
        let body = br#"[
            {"payload":"aGk=","contentTopic":"/waku/1/0x01020304/rfc26","version":1,
             "timestamp":1700000000000000000,"ephemeral":false,"proof":"","meta":"AA=="},
            {"payload":"not base64!","contentTopic":"/waku/1/0x01020304/rfc26"},
            {"contentTopic":"/waku/1/0x01020304/rfc26"},
            {"payload":"aGk="},
            {"payload":"aGk=","contentTopic":"/t","version":-1},
            "a string",
            {"payload":"","contentTopic":"/t"}
        ]"#;
        let messages = parse_messages(body).unwrap();
        assert_eq!(
            messages,
            vec![
                WakuMessage {
                    payload: b"hi".to_vec(),
                    content_topic: "/waku/1/0x01020304/rfc26".into(),
                    version: 1,
                    timestamp: Some(1_700_000_000_000_000_000),
                    ephemeral: false,
                },
                WakuMessage {
                    payload: vec![],
                    content_topic: "/t".into(),
                    version: 0,
                    timestamp: None,
                    ephemeral: false,
                },
            ]
        );
    }

    #[test]
    fn a_poll_body_that_is_no_array_is_malformed() {
        for body in [&b"{}"[..], b"", b"[", b"null", b"\xff"] {
            assert!(
                matches!(parse_messages(body), Err(NwakuError::Malformed(_))),
                "{body:?}"
            );
        }
        assert_eq!(parse_messages(b"[]").unwrap(), vec![]);
    }

    mod against_the_stand_in {
        use herald_standins::nwaku::{NwakuMessage, NwakuService};
        use tokio::io::AsyncWriteExt;

        use super::*;
        use crate::topics::STATUS_PUBSUB_TOPIC;

        const CONTENT_TOPIC: &str = "/waku/1/0x01020304/rfc26";

        fn client(node: &NwakuService) -> NwakuClient {
            NwakuClient::new(Url::parse(&node.base_url()).unwrap())
        }

        fn reply(payload: &[u8]) -> WakuMessage {
            WakuMessage {
                payload: payload.to_vec(),
                content_topic: CONTENT_TOPIC.into(),
                version: 1,
                timestamp: Some(1_700_000_000_000_000_000),
                ephemeral: false,
            }
        }

        #[tokio::test]
        async fn a_poll_returns_what_arrived_since_the_last_one() {
            let node = NwakuService::start().await;
            let nwaku = client(&node);
            nwaku.subscribe(&[STATUS_PUBSUB_TOPIC]).await.unwrap();
            assert_eq!(node.subscriptions(), [STATUS_PUBSUB_TOPIC]);

            let mut first = NwakuMessage::new(CONTENT_TOPIC, b"one".to_vec());
            first.timestamp = 5;
            assert!(node.inject(STATUS_PUBSUB_TOPIC, first));
            assert!(node.inject(
                STATUS_PUBSUB_TOPIC,
                NwakuMessage::new("/other", b"two".to_vec())
            ));
            let messages = nwaku.poll(STATUS_PUBSUB_TOPIC).await.unwrap();
            assert_eq!(messages.len(), 2);
            assert_eq!(
                messages[0],
                WakuMessage {
                    payload: b"one".to_vec(),
                    content_topic: CONTENT_TOPIC.into(),
                    version: 1,
                    timestamp: Some(5),
                    ephemeral: false,
                }
            );
            assert_eq!(messages[1].content_topic, "/other");
            assert_eq!(nwaku.poll(STATUS_PUBSUB_TOPIC).await.unwrap(), vec![]);
        }

        #[tokio::test]
        async fn the_bounded_cache_keeps_the_newest() {
            let node = NwakuService::start_with_capacity(3).await;
            let nwaku = client(&node);
            nwaku.subscribe(&[STATUS_PUBSUB_TOPIC]).await.unwrap();
            for n in 1..=5u8 {
                let mut message = NwakuMessage::new(CONTENT_TOPIC, vec![n]);
                message.timestamp = i64::from(n);
                node.inject(STATUS_PUBSUB_TOPIC, message);
            }
            let payloads: Vec<Vec<u8>> = nwaku
                .poll(STATUS_PUBSUB_TOPIC)
                .await
                .unwrap()
                .into_iter()
                .map(|m| m.payload)
                .collect();
            assert_eq!(payloads, [vec![3], vec![4], vec![5]]);
        }

        #[tokio::test]
        async fn published_messages_reach_the_node_as_sent() {
            let node = NwakuService::start().await;
            let nwaku = client(&node);
            nwaku.subscribe(&[STATUS_PUBSUB_TOPIC]).await.unwrap();
            nwaku
                .publish(STATUS_PUBSUB_TOPIC, &reply(b"\x00\xffreply"))
                .await
                .unwrap();
            let published = node.published();
            assert_eq!(published.len(), 1);
            let (topic, message) = &published[0];
            assert_eq!(topic, STATUS_PUBSUB_TOPIC);
            assert_eq!(message.payload, b"\x00\xffreply");
            assert_eq!(message.content_topic, CONTENT_TOPIC);
            assert_eq!(message.version, 1);
            assert_eq!(message.timestamp, 1_700_000_000_000_000_000);
            // The node hears itself: the reply comes back on the next poll.
            let echoed = nwaku.poll(STATUS_PUBSUB_TOPIC).await.unwrap();
            assert_eq!(echoed, vec![reply(b"\x00\xffreply")]);
        }

        #[tokio::test]
        async fn without_a_subscription_polls_and_publishes_say_so() {
            let node = NwakuService::start().await;
            let nwaku = client(&node);
            let not_subscribed = NwakuError::NotSubscribed(STATUS_PUBSUB_TOPIC.into());
            assert_eq!(
                nwaku.poll(STATUS_PUBSUB_TOPIC).await,
                Err(not_subscribed.clone())
            );
            assert_eq!(
                nwaku.publish(STATUS_PUBSUB_TOPIC, &reply(b"x")).await,
                Err(not_subscribed.clone())
            );
            assert!(node.published().is_empty());

            nwaku.subscribe(&[STATUS_PUBSUB_TOPIC]).await.unwrap();
            nwaku.unsubscribe(&[STATUS_PUBSUB_TOPIC]).await.unwrap();
            assert_eq!(nwaku.poll(STATUS_PUBSUB_TOPIC).await, Err(not_subscribed));
        }

        #[tokio::test]
        async fn the_node_refuses_what_nwaku_refuses() {
            let node = NwakuService::start().await;
            let nwaku = client(&node);
            let refused = nwaku.subscribe(&["/waku/2/default-waku/proto"]).await;
            assert!(
                matches!(&refused, Err(NwakuError::Status { status: 400, body }) if body.starts_with("Invalid pubsub topic(s)")),
                "{refused:?}"
            );
            nwaku.subscribe(&[STATUS_PUBSUB_TOPIC]).await.unwrap();

            let empty = nwaku.publish(STATUS_PUBSUB_TOPIC, &reply(b"")).await;
            assert!(
                matches!(&empty, Err(NwakuError::Status { status: 400, body }) if body.contains("payload")),
                "{empty:?}"
            );
            let oversize = reply(&vec![0; herald_standins::nwaku::MAX_MESSAGE_SIZE]);
            let too_large = nwaku.publish(STATUS_PUBSUB_TOPIC, &oversize).await;
            assert!(
                matches!(&too_large, Err(NwakuError::Status { status: 400, body }) if body.contains("Message size exceeded")),
                "{too_large:?}"
            );
            assert!(node.published().is_empty());
        }

        #[tokio::test]
        async fn a_restarted_node_is_unreachable_then_forgets_its_subscriptions() {
            let node = NwakuService::start().await;
            let nwaku = client(&node);
            nwaku.subscribe(&[STATUS_PUBSUB_TOPIC]).await.unwrap();
            node.stop().await;
            assert!(matches!(
                nwaku.poll(STATUS_PUBSUB_TOPIC).await,
                Err(NwakuError::Unreachable(_))
            ));
            node.restart().await;
            assert_eq!(
                nwaku.poll(STATUS_PUBSUB_TOPIC).await,
                Err(NwakuError::NotSubscribed(STATUS_PUBSUB_TOPIC.into()))
            );
            nwaku.subscribe(&[STATUS_PUBSUB_TOPIC]).await.unwrap();
            assert_eq!(nwaku.poll(STATUS_PUBSUB_TOPIC).await, Ok(vec![]));
        }

        #[tokio::test]
        async fn health_is_the_nodes_own_verdict() {
            let node = NwakuService::start().await;
            let nwaku = client(&node);
            assert_eq!(nwaku.node_health().await.unwrap(), "READY");
            node.set_health("INITIALIZING");
            assert_eq!(nwaku.node_health().await.unwrap(), "INITIALIZING");
        }

        /// A server that answers every request with `response`, verbatim.
        async fn answering(response: Vec<u8>) -> NwakuClient {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let mut request = [0u8; 4096];
                    let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut request).await;
                    let _ = stream.write_all(&response).await;
                }
            });
            NwakuClient::new(Url::parse(&format!("http://{addr}")).unwrap())
        }

        #[tokio::test]
        async fn oversize_answers_are_refused_declared_or_streamed() {
            let declared = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                MAX_POLL_BODY + 1
            );
            let nwaku = answering(declared.into_bytes()).await;
            assert_eq!(
                nwaku.poll(STATUS_PUBSUB_TOPIC).await,
                Err(NwakuError::AnswerTooLarge(MAX_POLL_BODY))
            );

            let mut chunked =
                b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n"
                    .to_vec();
            for _ in 0..4 {
                chunked.extend_from_slice(format!("{:x}\r\n", 200).as_bytes());
                chunked.extend_from_slice(&[b'e'; 200]);
                chunked.extend_from_slice(b"\r\n");
            }
            chunked.extend_from_slice(b"0\r\n\r\n");
            let nwaku = answering(chunked).await;
            assert_eq!(
                nwaku.subscribe(&[STATUS_PUBSUB_TOPIC]).await,
                Err(NwakuError::Status {
                    status: 500,
                    body: "(a longer body than herald reads)".into()
                })
            );
        }

        #[tokio::test]
        async fn a_node_that_answers_nonsense_is_malformed() {
            let nwaku = answering(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec()).await;
            assert!(matches!(
                nwaku.poll(STATUS_PUBSUB_TOPIC).await,
                Err(NwakuError::Malformed(_))
            ));
            assert!(matches!(
                nwaku.node_health().await,
                Err(NwakuError::Malformed(_))
            ));
        }
    }
}

//! Everything that can be wrong with Nostr input, in one enum.
//!
//! Every variant is about input from outside: a key typed into a
//! registration, an event from a relay, a NIP-98 header. Messages name the
//! rule that was broken and never echo the input: keys must not reach the
//! logs in clear, and hostile text must not reach them at all. The API edge
//! maps variants to status codes in one place: anything `nip98::verify`
//! returns is a 401, as is a replayed header; a full replay guard is a 503
//! (herald's limit, not the client's fault); a bad key in a request body a 400.

/// Why a key, an event or an auth header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NostrError {
    #[error("a public key is 64 hex digits or an npub")]
    InvalidPublicKey,
    #[error("not a valid npub: {0}")]
    InvalidNpub(&'static str),
    #[error("a secret key is 64 hex digits, below the curve order and not zero")]
    InvalidSecretKey,

    #[error("the event is {bytes} bytes, over the {max} herald accepts")]
    EventTooLarge { bytes: usize, max: usize },
    #[error("the event is not NIP-01 JSON: {problem} at column {column}")]
    MalformedEvent {
        problem: &'static str,
        column: usize,
    },
    #[error("the event's `{field}` must be {expected}")]
    InvalidField {
        field: &'static str,
        expected: &'static str,
    },
    #[error("the event's content is {bytes} bytes, over the {max} herald accepts")]
    ContentTooLarge { bytes: usize, max: usize },
    #[error("the event has {count} tags, over the {max} herald accepts")]
    TooManyTags { count: usize, max: usize },
    #[error("a tag has {count} fields, over the {max} herald accepts")]
    TagTooLong { count: usize, max: usize },
    #[error("a tag field is {bytes} bytes, over the {max} herald accepts")]
    TagFieldTooLarge { bytes: usize, max: usize },
    #[error("the event id is not the SHA-256 of the event's NIP-01 serialisation")]
    IdMismatch,
    #[error("the event's pubkey is not a secp256k1 public key")]
    KeyNotOnCurve,
    #[error("the event's signature does not verify")]
    BadSignature,

    #[error("a relay URL is {bytes} bytes, over the {max} herald accepts")]
    RelayUrlTooLong { bytes: usize, max: usize },
    #[error("a relay URL must be a URL with a host")]
    RelayUrlMalformed,
    #[error("a relay URL must be ws:// or wss://")]
    RelayUrlNotWebSocket,
    #[error("a relay URL must not carry a user name or password")]
    RelayUrlCredentials,
    #[error(
        "a relay URL names a private address or local host; nostr.allow_private_account_relays permits it"
    )]
    RelayUrlPrivate,

    #[error("send Authorization: Nostr <base64 of a signed kind 27235 event> (NIP-98)")]
    MissingAuthorization,
    #[error("the Authorization header is {bytes} bytes, over the {max} herald accepts")]
    AuthorizationTooLarge { bytes: usize, max: usize },
    #[error("the Authorization value after `Nostr ` is not base64")]
    AuthorizationNotBase64,
    #[error("the auth event is kind {0}, not 27235 (NIP-98)")]
    WrongAuthKind(u16),
    #[error(
        "the auth event was made at {created_at}, more than {max_skew_secs} s from now ({now})"
    )]
    AuthEventOutOfTime {
        created_at: u64,
        now: u64,
        max_skew_secs: u64,
    },
    #[error("the auth event needs exactly one `{0}` tag")]
    AuthTagCount(&'static str),
    #[error("the auth event's `u` tag is not this request's URL, {expected}")]
    AuthUrlMismatch { expected: String },
    #[error("the auth event's `method` tag is not this request's method, {expected}")]
    AuthMethodMismatch { expected: String },
    #[error("the request has a body, so the auth event needs a `payload` tag: its SHA-256 in hex")]
    AuthPayloadMissing,
    #[error("the auth event's `payload` tag is not the SHA-256 of this request's body")]
    AuthPayloadMismatch,
    #[error(
        "this NIP-98 header was already used: sign a new auth event for each request (a second later at the earliest)"
    )]
    AuthReplayed,
    #[error(
        "herald remembers {capacity} recent NIP-98 headers, the most it holds; try again in a minute"
    )]
    AuthReplayGuardFull { capacity: usize },
}

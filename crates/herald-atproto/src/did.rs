//! DIDs, DID documents, and the signing keys in them (atproto.md §5).
//!
//! atproto uses two methods: `did:plc` (resolved through a PLC directory)
//! and host-only `did:web` (a port is percent-encoded as `%3A`). A signing
//! key is the verification method whose id ends in `#<key id>` exactly — a
//! substring match would take `#atproto_label` for `#atproto` — encoded as
//! a Multikey (multicodec-prefixed compressed point in base58btc) or, in
//! older documents, an uncompressed point under the legacy key types.
//!
//! A document also names the account's handle (the first `at://` entry of
//! `alsoKnownAs`, as the reference resolver takes it) and its PDS (the
//! `#atproto_pds` service of type `AtprotoPersonalDataServer`). Both are
//! claims of the account alone: the handle is checked for syntax, not
//! against its domain, and the PDS URL is untrusted like a did:web host.

use std::fmt;
use std::sync::OnceLock;

use p256::ecdsa::signature::MultipartVerifier;
use serde::Deserialize;

const PLC_PREFIX: &str = "did:plc:";
/// `did:plc:` identifiers are 24 characters of lowercase base32.
const PLC_ID_LEN: usize = 24;
/// The bytes those 24 base32 characters encode.
pub const PLC_ID_BYTES: usize = PLC_ID_LEN * 5 / 8;
/// Longest DNS name.
const MAX_HOST_LEN: usize = 253;
/// Multicodec prefixes (unsigned varints) of compressed public keys.
const SECP256K1_PUB: [u8; 2] = [0xe7, 0x01];
const P256_PUB: [u8; 2] = [0x80, 0x24];
/// Longest label of a handle, as of any DNS name.
const MAX_HANDLE_LABEL_LEN: usize = 63;
/// Top-level domains the handle spec refuses: reserved or never public
/// (`handle.invalid` is what the network shows for a handle that failed
/// verification).
const DISALLOWED_HANDLE_TLDS: [&str; 8] = [
    "alt",
    "arpa",
    "example",
    "internal",
    "invalid",
    "local",
    "localhost",
    "onion",
];
/// The service a PDS is named by in a DID document.
const PDS_SERVICE_ID: &str = "#atproto_pds";
const PDS_SERVICE_TYPE: &str = "AtprotoPersonalDataServer";
/// The verification method of an account's repository and service tokens.
const ATPROTO_KEY_ID: &str = "atproto";
/// A compressed SEC1 point.
const COMPRESSED_POINT_LEN: usize = 33;
/// An atproto signature: compact `r || s`.
const SIGNATURE_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidError {
    #[error("{0:?} is not a did:plc or did:web DID")]
    Unsupported(String),
    #[error("{0:?} is not a valid {1} DID")]
    Malformed(String, &'static str),
}

/// A DID herald can resolve.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Did {
    Plc(PlcDid),
    /// `host` is decoded: `localhost:8080` for `did:web:localhost%3A8080`.
    Web {
        did: String,
        host: String,
    },
}

impl Did {
    pub fn parse(text: &str) -> Result<Self, DidError> {
        if let Some(id) = text.strip_prefix(PLC_PREFIX) {
            let ok = id.len() == PLC_ID_LEN
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b));
            return match (ok, text.as_bytes().try_into()) {
                (true, Ok(bytes)) => Ok(Did::Plc(PlcDid(bytes))),
                _ => Err(DidError::Malformed(text.into(), "did:plc")),
            };
        }
        if let Some(encoded) = text.strip_prefix("did:web:") {
            return web_host(encoded)
                .map(|host| Did::Web {
                    did: text.to_owned(),
                    host,
                })
                .ok_or_else(|| {
                    DidError::Malformed(text.into(), "did:web (host only, port as %3A)")
                });
        }
        Err(DidError::Unsupported(text.into()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Did::Plc(did) => did.as_str(),
            Did::Web { did, .. } => did,
        }
    }

    /// A did:plc's identifier as the 15 bytes its 24 base32 characters
    /// encode (5 bits each): a third of the text's size, for indexes that
    /// hold millions of DIDs. `None` for a did:web.
    pub fn plc_bytes(&self) -> Option<[u8; PLC_ID_BYTES]> {
        let Did::Plc(did) = self else { return None };
        let id = &did.0[PLC_PREFIX.len()..];
        let mut bytes = [0u8; PLC_ID_BYTES];
        // Eight characters are 40 bits, five bytes: three groups, no carry
        // between them. Every event's recipients are looked up this way.
        for (chars, out) in id.chunks_exact(8).zip(bytes.chunks_exact_mut(5)) {
            let mut group = 0u64;
            for &c in chars {
                let value = BASE32_VALUES[usize::from(c)];
                if value == NOT_BASE32 {
                    return None;
                }
                group = (group << 5) | u64::from(value);
            }
            out.copy_from_slice(&group.to_be_bytes()[3..]);
        }
        Some(bytes)
    }
}

const NOT_BASE32: u8 = u8::MAX;

/// RFC 4648 base32, lowercase: `a`–`z` are 0–25, `2`–`7` are 26–31.
const BASE32_VALUES: [u8; 256] = {
    let mut table = [NOT_BASE32; 256];
    let mut i = 0;
    while i < 26 {
        table[b'a' as usize + i] = i as u8;
        i += 1;
    }
    while i < 32 {
        table[b'2' as usize + i - 26] = i as u8;
        i += 1;
    }
    table
};

/// A `did:plc`, its whole text inline: the stream names several DIDs in
/// every event, and none of them costs an allocation, nor a copy of one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlcDid([u8; PLC_PREFIX.len() + PLC_ID_LEN]);

impl PlcDid {
    pub fn as_str(&self) -> &str {
        // `Did::parse` let in only ASCII.
        std::str::from_utf8(&self.0).expect("a did:plc is ASCII")
    }
}

impl fmt::Debug for PlcDid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for PlcDid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host (and port) of a did:web, or `None` if it has a path or bad characters.
fn web_host(encoded: &str) -> Option<String> {
    let (name, port) = match encoded
        .split_once("%3A")
        .or_else(|| encoded.split_once("%3a"))
    {
        Some((name, port)) => (name, Some(port)),
        None => (encoded, None),
    };
    let name_ok = !name.is_empty()
        && name.len() <= MAX_HOST_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    });
    (name_ok && port_ok).then(|| match port {
        Some(p) => format!("{name}:{p}"),
        None => name.to_owned(),
    })
}

/// The parts of a DID document herald reads.
#[derive(Debug, Clone, Deserialize)]
pub struct DidDocument {
    pub id: String,
    #[serde(default, rename = "verificationMethod")]
    pub verification_method: Vec<VerificationMethod>,
    #[serde(default)]
    pub service: Vec<Service>,
    /// `at://<handle>` among other names.
    #[serde(default, rename = "alsoKnownAs")]
    pub also_known_as: Vec<String>,
    /// The `#atproto` key once read. The resolver's cache hands out one
    /// document for every commit and service token of the account, and
    /// reading a key (base58, then a compressed point's square root, some
    /// 9 µs) costs more than all of a commit's checks but the signature.
    #[serde(skip)]
    atproto_key: OnceLock<Result<PublicKey, KeyError>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct VerificationMethod {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, rename = "publicKeyMultibase")]
    pub public_key_multibase: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Service {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "serviceEndpoint")]
    pub endpoint: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the DID document has no #{0} verification method")]
    Missing(String),
    #[error("the #{0} key cannot be read: {1}")]
    Unreadable(String, String),
}

impl DidDocument {
    /// The key of the verification method `#key_id` of `did`.
    pub fn signing_key(&self, did: &str, key_id: &str) -> Result<PublicKey, KeyError> {
        // Only the document's own DID is cached: `did` picks the method.
        if key_id == ATPROTO_KEY_ID && did == self.id {
            return self
                .atproto_key
                .get_or_init(|| self.read_key(did, key_id))
                .clone();
        }
        self.read_key(did, key_id)
    }

    fn read_key(&self, did: &str, key_id: &str) -> Result<PublicKey, KeyError> {
        let relative = format!("#{key_id}");
        let absolute = format!("{did}{relative}");
        let method = self
            .verification_method
            .iter()
            .find(|m| m.id == relative || m.id == absolute)
            .ok_or_else(|| KeyError::Missing(key_id.into()))?;
        let unreadable = |why: &str| KeyError::Unreadable(key_id.into(), why.into());
        let encoded = method
            .public_key_multibase
            .as_deref()
            .ok_or_else(|| unreadable("no publicKeyMultibase"))?;
        let bytes = encoded
            .strip_prefix('z')
            .and_then(|b58| bs58::decode(b58).into_vec().ok())
            .ok_or_else(|| unreadable("not base58btc multibase"))?;
        PublicKey::from_method(&method.kind, &bytes).map_err(|why| unreadable(&why))
    }

    /// The handle the account claims: the first `at://` name, if it is a
    /// valid handle (lowercased). A later `at://` name is not tried, as the
    /// reference resolver does not.
    pub fn handle(&self) -> Option<String> {
        self.also_known_as
            .iter()
            .find_map(|name| name.strip_prefix("at://"))
            .and_then(parse_handle)
    }

    /// The URL of the account's PDS, unchecked: whoever uses it must treat
    /// it as any URL from outside.
    pub fn pds_endpoint(&self) -> Option<&str> {
        let absolute = format!("{}{PDS_SERVICE_ID}", self.id);
        self.service
            .iter()
            .find(|s| s.id == PDS_SERVICE_ID || s.id == absolute)
            .filter(|s| s.kind == PDS_SERVICE_TYPE)
            .and_then(|s| s.endpoint.as_str())
    }
}

/// `text` as a handle, lowercased, if it has the handle syntax: a DNS name
/// of at least two ASCII labels (letters, digits, inner hyphens), whose
/// top-level label does not start with a digit and is not reserved.
pub fn parse_handle(text: &str) -> Option<String> {
    let labels: Vec<&str> = text.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=MAX_HANDLE_LABEL_LEN).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let tld = labels.last()?.to_ascii_lowercase();
    let ok = text.len() <= MAX_HOST_LEN
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && !tld.starts_with(|c: char| c.is_ascii_digit())
        && !DISALLOWED_HANDLE_TLDS.contains(&tld.as_str());
    ok.then(|| text.to_ascii_lowercase())
}

/// A verification key on one of atproto's two curves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// secp256k1, JWT `alg` ES256K.
    K256(K256Key),
    /// NIST P-256, JWT `alg` ES256.
    P256(p256::ecdsa::VerifyingKey),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature is {0} bytes, not a 64-byte compact r||s")]
    Length(usize),
    #[error("signature has a high S value; atproto requires low-S")]
    HighS,
    #[error("signature does not verify")]
    Invalid,
}

impl PublicKey {
    fn from_method(kind: &str, bytes: &[u8]) -> Result<Self, String> {
        match kind {
            "Multikey" => match bytes.split_at_checked(2) {
                Some((prefix, point))
                    if point.len() == COMPRESSED_POINT_LEN && prefix == SECP256K1_PUB =>
                {
                    Self::k256(point)
                }
                Some((prefix, point))
                    if point.len() == COMPRESSED_POINT_LEN && prefix == P256_PUB =>
                {
                    Self::p256(point)
                }
                _ => Err("Multikey is not a compressed secp256k1 or P-256 key".into()),
            },
            "EcdsaSecp256k1VerificationKey2019" => Self::k256(bytes),
            "EcdsaSecp256r1VerificationKey2019" => Self::p256(bytes),
            other => Err(format!("unsupported verification method type {other:?}")),
        }
    }

    fn k256(sec1: &[u8]) -> Result<Self, String> {
        secp256k1::PublicKey::from_slice(sec1)
            .map(|key| PublicKey::K256(K256Key(key)))
            .map_err(|_| "not a point on secp256k1".into())
    }

    fn p256(sec1: &[u8]) -> Result<Self, String> {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1)
            .map(PublicKey::P256)
            .map_err(|_| "not a point on P-256".into())
    }

    /// The JWT `alg` this key verifies.
    pub fn jwt_alg(&self) -> &'static str {
        match self {
            PublicKey::K256(_) => "ES256K",
            PublicKey::P256(_) => "ES256",
        }
    }

    /// Verifies a compact signature over `message` (hashed with SHA-256).
    /// High-S signatures are refused unless `allow_high_s`: the atproto
    /// cryptography spec requires low-S; libsecp256k1 refuses high-S on its
    /// own, p256 does not, so both are checked here alike.
    pub fn verify(
        &self,
        message: &[u8],
        signature: &[u8],
        allow_high_s: bool,
    ) -> Result<(), SignatureError> {
        self.verify_parts(&[message], signature, allow_high_s)
    }

    /// [`PublicKey::verify`] of the message that is `parts` one after the
    /// other: a firehose commit's signed bytes are pieces of the signed
    /// block, hashed where they lie rather than copied together.
    pub fn verify_parts(
        &self,
        parts: &[&[u8]],
        signature: &[u8],
        allow_high_s: bool,
    ) -> Result<(), SignatureError> {
        if signature.len() != SIGNATURE_LEN {
            return Err(SignatureError::Length(signature.len()));
        }
        match self {
            PublicKey::K256(key) => key.verify(parts, signature, allow_high_s),
            PublicKey::P256(key) => {
                let sig = p256::ecdsa::Signature::from_slice(signature)
                    .map_err(|_| SignatureError::Invalid)?;
                let low = low_s(sig.normalize_s(), sig, allow_high_s)?;
                key.multipart_verify(parts, &low)
                    .map_err(|_| SignatureError::Invalid)
            }
        }
    }
}

/// A secp256k1 public key, verified with libsecp256k1: atproto's usual
/// curve, on the hot paths of firehose commits and service tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct K256Key(secp256k1::PublicKey);

impl From<k256::ecdsa::VerifyingKey> for K256Key {
    fn from(key: k256::ecdsa::VerifyingKey) -> Self {
        let point = key.to_sec1_point(true);
        Self(
            secp256k1::PublicKey::from_slice(point.as_ref())
                .expect("a k256 key is a point on secp256k1"),
        )
    }
}

impl K256Key {
    /// libsecp256k1 accepts only low-S signatures; a high-S one is refused
    /// as such, or normalised first when `allow_high_s`.
    fn verify(
        &self,
        parts: &[&[u8]],
        signature: &[u8],
        allow_high_s: bool,
    ) -> Result<(), SignatureError> {
        use sha2::{Digest, Sha256};
        let sig = secp256k1::ecdsa::Signature::from_compact(signature)
            .map_err(|_| SignatureError::Invalid)?;
        let mut normalized = sig;
        normalized.normalize_s();
        let low = low_s(normalized, sig, allow_high_s)?;
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(part);
        }
        let digest = secp256k1::Message::from_digest(hasher.finalize().into());
        secp256k1::SECP256K1
            .verify_ecdsa(digest, &low, &self.0)
            .map_err(|_| SignatureError::Invalid)
    }
}

/// Given a signature and its low-S normal form, the one to verify.
fn low_s<S: PartialEq>(
    normalized: S,
    original: S,
    allow_high_s: bool,
) -> Result<S, SignatureError> {
    if normalized != original && !allow_high_s {
        return Err(SignatureError::HighS);
    }
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plc_identifier_packs_into_15_bytes_and_a_web_did_does_not() {
        let bytes = |d: &str| Did::parse(d).unwrap().plc_bytes();
        assert_eq!(bytes("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"), Some([0; 15]));
        assert_eq!(bytes("did:plc:777777777777777777777777"), Some([0xff; 15]));
        // "b" is 1: the last 5 bits of the last byte.
        let mut one = [0; 15];
        one[14] = 1;
        assert_eq!(bytes("did:plc:aaaaaaaaaaaaaaaaaaaaaaab"), Some(one));
        // The first character of the second group: its 5 bits lead byte 5.
        let mut middle = [0; 15];
        middle[5] = 0b1111_1000;
        assert_eq!(bytes("did:plc:aaaaaaaa7aaaaaaaaaaaaaaa"), Some(middle));
        assert_ne!(
            bytes("did:plc:ewvi7nxzyoun6zhxrhs64oiz"),
            bytes("did:plc:ewvi7nxzyoun6zhxrhs64oia")
        );
        assert_eq!(bytes("did:web:example.com"), None);
    }

    #[test]
    fn parses_plc_and_host_only_web_dids() {
        assert_eq!(
            Did::parse("did:plc:ewvi7nxzyoun6zhxrhs64oiz")
                .unwrap()
                .as_str(),
            "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
        );
        assert_eq!(
            Did::parse("did:web:localhost%3A8080").unwrap(),
            Did::Web {
                did: "did:web:localhost%3A8080".into(),
                host: "localhost:8080".into()
            }
        );
        assert!(
            matches!(Did::parse("did:web:push.example.com"), Ok(Did::Web { host, .. }) if host == "push.example.com")
        );
        for bad in [
            "did:plc:short",
            "did:plc:EWVI7NXZYOUN6ZHXRHS64OIZ",
            "did:plc:ewvi7nxzyoun6zhxrhs64oi1",
            "did:web:example.com:path",
            "did:web:",
            "did:web:exa mple.com",
            "did:web:h%3A",
            "did:web:h%3A99999",
            "did:key:z6Mk",
            "plc:abc",
            "",
        ] {
            assert!(Did::parse(bad).is_err(), "{bad}");
        }
    }

    fn document(methods: serde_json::Value) -> DidDocument {
        serde_json::from_value(serde_json::json!({"id": "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "verificationMethod": methods})).unwrap()
    }

    fn multikey(prefix: [u8; 2], point: &[u8]) -> String {
        format!(
            "z{}",
            bs58::encode([&prefix[..], point].concat()).into_string()
        )
    }

    #[test]
    fn reads_multikeys_on_both_curves_and_matches_the_fragment_exactly() {
        let k = k256::ecdsa::SigningKey::from_slice(&[1u8; 32]).unwrap();
        let p = p256::ecdsa::SigningKey::from_slice(&[2u8; 32]).unwrap();
        let k_point = k.verifying_key().to_sec1_point(true);
        let p_point = p.verifying_key().to_sec1_point(true);
        let k_multikey = multikey(SECP256K1_PUB, k_point.as_ref());
        assert!(k_multikey.starts_with("zQ3s"), "{k_multikey}");
        let p_multikey = multikey(P256_PUB, p_point.as_ref());
        assert!(p_multikey.starts_with("zDna"), "{p_multikey}");
        let doc = document(serde_json::json!([
            {"id": "#atproto_label", "type": "Multikey", "publicKeyMultibase": p_multikey},
            {"id": "did:plc:ewvi7nxzyoun6zhxrhs64oiz#atproto", "type": "Multikey", "publicKeyMultibase": k_multikey},
        ]));
        let did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
        assert_eq!(
            doc.signing_key(did, "atproto").unwrap(),
            PublicKey::K256((*k.verifying_key()).into())
        );
        assert_eq!(
            doc.signing_key(did, "atproto_label").unwrap(),
            PublicKey::P256(*p.verifying_key())
        );
        assert_eq!(
            doc.signing_key(did, "other"),
            Err(KeyError::Missing("other".into()))
        );
    }

    #[test]
    fn the_atproto_key_is_read_once_for_the_document_s_own_did() {
        let k = k256::ecdsa::SigningKey::from_slice(&[1u8; 32]).unwrap();
        let point = k.verifying_key().to_sec1_point(true);
        let did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
        let doc = document(serde_json::json!([
            {"id": format!("{did}#atproto"), "type": "Multikey",
                "publicKeyMultibase": multikey(SECP256K1_PUB, point.as_ref())},
        ]));
        let key = PublicKey::K256((*k.verifying_key()).into());
        for _ in 0..2 {
            assert_eq!(doc.signing_key(did, "atproto"), Ok(key.clone()));
            assert!(doc.atproto_key.get().is_some());
            // Another DID does not name this method, cached or not.
            assert_eq!(
                doc.signing_key("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "atproto"),
                Err(KeyError::Missing("atproto".into()))
            );
        }
        let unreadable = document(serde_json::json!([
            {"id": "#atproto", "type": "Multikey", "publicKeyMultibase": "z111"},
        ]));
        let first = unreadable.signing_key(did, "atproto");
        assert!(matches!(first, Err(KeyError::Unreadable(..))));
        assert_eq!(unreadable.signing_key(did, "atproto"), first);
    }

    #[test]
    fn reads_legacy_uncompressed_keys() {
        let k = k256::ecdsa::SigningKey::from_slice(&[3u8; 32]).unwrap();
        let uncompressed = k.verifying_key().to_sec1_point(false);
        let doc = document(
            serde_json::json!([{"id": "#atproto", "type": "EcdsaSecp256k1VerificationKey2019",
            "publicKeyMultibase": format!("z{}", bs58::encode(uncompressed.as_ref()).into_string())}]),
        );
        assert!(matches!(
            doc.signing_key("x", "atproto"),
            Ok(PublicKey::K256(_))
        ));
    }

    #[test]
    fn reads_the_handle_from_the_first_at_name_and_checks_its_syntax() {
        let with_names = |names: serde_json::Value| -> DidDocument {
            serde_json::from_value(
                serde_json::json!({"id": "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "alsoKnownAs": names}),
            )
            .unwrap()
        };
        let doc = with_names(serde_json::json!([
            "https://alice.example.com",
            "at://Alice.Example.COM",
            "at://other.example.com"
        ]));
        assert_eq!(doc.handle().as_deref(), Some("alice.example.com"));
        assert_eq!(document(serde_json::json!([])).handle(), None);
        let bad_first = with_names(serde_json::json!(["at://nodots", "at://alice.example.com"]));
        assert_eq!(bad_first.handle(), None, "only the first at:// name counts");
    }

    #[test]
    fn handles_are_dns_names_with_a_public_top_level_domain() {
        for good in [
            "alice.bsky.social",
            "a.co",
            "xn--ls8h.example.org",
            "alice.test",
            "9lives.cat",
        ] {
            assert_eq!(parse_handle(good).as_deref(), Some(good), "{good}");
        }
        for bad in [
            "",
            "alice",
            "alice.",
            ".alice.com",
            "alice..com",
            "-alice.com",
            "alice-.com",
            "alice.123",
            "al ice.com",
            "alice@example.com",
            "ålice.com",
            "handle.invalid",
            "alice.local",
            "alice.onion",
            "printer.localhost",
        ] {
            assert_eq!(parse_handle(bad), None, "{bad:?}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert_eq!(parse_handle(&long_label), None);
        let long_name = format!("{}com", "abcdefghi.".repeat(26));
        assert_eq!(parse_handle(&long_name), None);
    }

    #[test]
    fn finds_the_pds_by_service_id_and_type() {
        let did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";
        let with = |services: serde_json::Value| -> DidDocument {
            serde_json::from_value(serde_json::json!({"id": did, "service": services})).unwrap()
        };
        let pds = |id: &str, kind: &str, endpoint: serde_json::Value| serde_json::json!({"id": id, "type": kind, "serviceEndpoint": endpoint});
        let relative = with(serde_json::json!([
            pds(
                "#bsky_notif",
                "BskyNotificationService",
                "https://push.example".into()
            ),
            pds(
                "#atproto_pds",
                PDS_SERVICE_TYPE,
                "https://pds.example".into()
            ),
        ]));
        assert_eq!(relative.pds_endpoint(), Some("https://pds.example"));
        let absolute = with(serde_json::json!([pds(
            &format!("{did}#atproto_pds"),
            PDS_SERVICE_TYPE,
            "https://pds.example".into()
        )]));
        assert_eq!(absolute.pds_endpoint(), Some("https://pds.example"));
        for wrong in [
            pds(
                "#atproto_pds",
                "BskyNotificationService",
                "https://pds.example".into(),
            ),
            pds(
                "#atproto_pds_old",
                PDS_SERVICE_TYPE,
                "https://pds.example".into(),
            ),
            pds(
                "#atproto_pds",
                PDS_SERVICE_TYPE,
                serde_json::json!({"uri": "https://pds.example"}),
            ),
        ] {
            assert_eq!(
                with(serde_json::json!([wrong])).pds_endpoint(),
                None,
                "{wrong}"
            );
        }
    }

    #[test]
    fn refuses_unreadable_keys() {
        // x = 2^256 - 1 is above both fields' primes: on no curve.
        let off_curve = [&[0x02][..], &[0xff; 32][..]].concat();
        for (kind, value) in [
            ("Multikey", "not-multibase".to_owned()),
            ("Multikey", "z111".to_owned()),
            ("Multikey", multikey(SECP256K1_PUB, &off_curve)),
            ("Multikey", multikey(P256_PUB, &off_curve)),
            ("Multikey", multikey([0xed, 0x01], &[7; 32])),
            ("JsonWebKey2020", multikey(SECP256K1_PUB, &[2; 33])),
        ] {
            let doc = document(
                serde_json::json!([{"id": "#atproto", "type": kind, "publicKeyMultibase": value}]),
            );
            assert!(
                matches!(
                    doc.signing_key("x", "atproto"),
                    Err(KeyError::Unreadable(..))
                ),
                "{kind} {value}"
            );
        }
    }
}

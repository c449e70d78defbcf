//! AT URIs of records: `at://<did>/<collection>/<rkey>`.
//!
//! Records point at each other with these (a like's subject, a reply's
//! parent, a quote's embed), and the URI's authority is how the AppView
//! finds whom to notify: the author of the liked post is the DID in its
//! URI (atproto.md §10). So herald accepts only the record form with a DID
//! authority: a handle authority names no account without a network call,
//! and the AppView itself would notify nobody for one. Everything is checked
//! against the atproto syntax specs (NSID, record key, the 8 KiB URI cap),
//! so a URI that parses is safe to put in keys, logs and payloads; error
//! messages quote at most a short preview of hostile input.

use std::borrow::Cow;
use std::fmt;

use serde::de::Visitor;
use serde::{Deserialize, Deserializer};

use crate::did::{Did, DidError};
use crate::jetstream_event::RULE_COLLECTIONS;

/// The AT URI spec caps a URI at 8 KiB.
pub const MAX_AT_URI_BYTES: usize = 8 * 1024;
/// NSID spec: at most 317 characters in all…
const MAX_NSID_BYTES: usize = 317;
/// …in segments of at most 63 (a DNS label)…
const MAX_NSID_SEGMENT_BYTES: usize = 63;
/// …and at least a two-segment domain authority plus a name.
const MIN_NSID_SEGMENTS: usize = 3;
/// Record key spec: 1 to 512 characters.
const MAX_RECORD_KEY_BYTES: usize = 512;
/// Error messages quote this much of the offending text: enough to recognise
/// it in a log, never a megabyte of someone's hostile event.
const ERROR_PREVIEW_BYTES: usize = 80;

const SCHEME: &str = "at://";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtUriError {
    #[error("an AT URI of {0} bytes is longer than the {MAX_AT_URI_BYTES} allowed")]
    TooLong(usize),
    #[error("{0:?} is not an at://<did>/<collection>/<rkey> URI")]
    NotARecordUri(String),
    #[error("the authority is not a DID herald can use: {0}")]
    Authority(DidError),
    #[error("{0:?} is not a collection NSID")]
    Collection(String),
    #[error("{0:?} is not a record key")]
    RecordKey(String),
}

/// The AT URI of one record, with its authority parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AtUri {
    text: String,
    did: Did,
    /// Byte offset of the collection in `text`.
    collection_at: usize,
    /// Byte offset of the record key in `text`.
    rkey_at: usize,
}

impl AtUri {
    pub fn parse(text: &str) -> Result<Self, AtUriError> {
        if text.len() > MAX_AT_URI_BYTES {
            return Err(AtUriError::TooLong(text.len()));
        }
        let not_a_record_uri = || AtUriError::NotARecordUri(preview(text));
        let path = text.strip_prefix(SCHEME).ok_or_else(not_a_record_uri)?;
        let mut parts = path.split('/');
        let (Some(authority), Some(collection), Some(rkey), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(not_a_record_uri());
        };
        let did = Did::parse(authority).map_err(AtUriError::Authority)?;
        check_parts(collection, rkey)?;
        // `text` is what `new` would write (the DID keeps its own text), so
        // it is copied rather than formatted again.
        Ok(Self::assemble(did, collection.len(), text.to_owned()))
    }

    /// The URI of record `rkey` in `did`'s `collection`.
    pub fn new(did: &Did, collection: &str, rkey: &str) -> Result<Self, AtUriError> {
        check_parts(collection, rkey)?;
        let parts = [SCHEME, did.as_str(), "/", collection, "/", rkey];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            text.push_str(part);
        }
        Ok(Self::assemble(did.clone(), collection.len(), text))
    }

    /// `text` is `at://<did>/<collection>/<rkey>`, every part checked.
    fn assemble(did: Did, collection_len: usize, text: String) -> Self {
        let collection_at = SCHEME.len() + did.as_str().len() + 1;
        let rkey_at = collection_at + collection_len + 1;
        Self {
            text,
            did,
            collection_at,
            rkey_at,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The authority: the account whose repository holds the record.
    pub fn did(&self) -> &Did {
        &self.did
    }

    pub fn collection(&self) -> &str {
        &self.text[self.collection_at..self.rkey_at - 1]
    }

    pub fn rkey(&self) -> &str {
        &self.text[self.rkey_at..]
    }
}

impl fmt::Display for AtUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for AtUri {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = json_text(deserializer)?;
        AtUri::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A JSON string borrowed from the input, copied only when it has escapes:
/// what is parsed further (a DID, a URI) need not be allocated first.
pub(crate) fn json_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Cow<'de, str>, D::Error> {
    struct Text;
    impl<'de> Visitor<'de> for Text {
        type Value = Cow<'de, str>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Cow::Borrowed(v))
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v.to_owned()))
        }

        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Cow::Owned(v))
        }
    }
    deserializer.deserialize_str(Text)
}

/// The checks of a record URI's collection and record key.
fn check_parts(collection: &str, rkey: &str) -> Result<(), AtUriError> {
    if !is_nsid(collection) {
        return Err(AtUriError::Collection(preview(collection)));
    }
    if !is_record_key(rkey) {
        return Err(AtUriError::RecordKey(preview(rkey)));
    }
    Ok(())
}

/// NSID syntax (atproto spec): a reversed domain of at least two labels,
/// then a name that starts with a letter and has no hyphen. The collections
/// the rules read are nearly every URI of the stream, so they are known
/// good by a comparison or two before the syntax is checked.
fn is_nsid(text: &str) -> bool {
    if RULE_COLLECTIONS.contains(&text) {
        return true;
    }
    if text.len() > MAX_NSID_BYTES {
        return false;
    }
    let Some((authority, name)) = text.rsplit_once('.') else {
        return false;
    };
    let label_ok = |s: &str| {
        (1..=MAX_NSID_SEGMENT_BYTES).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    // Counted and checked in place: this runs for every record of the stream.
    authority.split('.').count() + 1 >= MIN_NSID_SEGMENTS
        && authority.split('.').all(label_ok)
        && !authority.starts_with(|c: char| c.is_ascii_digit())
        && (1..=MAX_NSID_SEGMENT_BYTES).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Record key syntax (atproto spec): 1 to 512 of `A-Za-z0-9._:~-`, not `.` or `..`.
fn is_record_key(text: &str) -> bool {
    (1..=MAX_RECORD_KEY_BYTES).contains(&text.len())
        && text != "."
        && text != ".."
        && text.bytes().all(|b| RECORD_KEY_BYTES[usize::from(b)])
}

/// `A-Za-z0-9._:~-`, looked up rather than compared: every event's key
/// and every URI in its record pass through here.
const RECORD_KEY_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'~' | b'-');
        b += 1;
    }
    table
};

/// At most `ERROR_PREVIEW_BYTES` of `text`, cut on a character boundary.
pub(crate) fn preview(text: &str) -> String {
    if text.len() <= ERROR_PREVIEW_BYTES {
        return text.to_owned();
    }
    let mut end = ERROR_PREVIEW_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const POST: &str = "at://did:plc:vfnmgxg2yscfliemmcxzyfyh/app.bsky.feed.post/3mmoodizfwc2j";

    #[test]
    fn splits_a_record_uri_into_authority_collection_and_key() {
        let uri = AtUri::parse(POST).unwrap();
        assert_eq!(uri.did().as_str(), "did:plc:vfnmgxg2yscfliemmcxzyfyh");
        assert_eq!(uri.collection(), "app.bsky.feed.post");
        assert_eq!(uri.rkey(), "3mmoodizfwc2j");
        assert_eq!(uri.as_str(), POST);
        assert_eq!(uri.to_string(), POST);
    }

    #[test]
    fn builds_the_same_uri_from_its_parts() {
        let did = Did::parse("did:web:localhost%3A8080").unwrap();
        let uri = AtUri::new(
            &did,
            "place.stream.broadcast.origin",
            "did:plc:x::did:web:y",
        )
        .unwrap();
        assert_eq!(
            uri.as_str(),
            "at://did:web:localhost%3A8080/place.stream.broadcast.origin/did:plc:x::did:web:y"
        );
        assert_eq!(AtUri::parse(uri.as_str()).unwrap(), uri);
        assert_eq!(uri.collection(), "place.stream.broadcast.origin");
        assert_eq!(uri.rkey(), "did:plc:x::did:web:y");
    }

    #[test]
    fn refuses_what_is_not_a_record_uri_with_a_did_authority() {
        let did = "did:plc:vfnmgxg2yscfliemmcxzyfyh";
        let cases = [
            ("", "NotARecordUri"),
            ("https://bsky.app/profile/x", "NotARecordUri"),
            (&format!("at://{did}"), "NotARecordUri"),
            (&format!("at://{did}/app.bsky.feed.post"), "NotARecordUri"),
            (&format!("at://{did}/app.bsky.feed.post/"), "RecordKey"),
            (
                &format!("at://{did}/app.bsky.feed.post/a/b"),
                "NotARecordUri",
            ),
            (&format!("at://{did}/app.bsky.feed.post/a?x=1"), "RecordKey"),
            (
                &format!("at://{did}/app.bsky.feed.post/a#frag"),
                "RecordKey",
            ),
            (&format!("at://{did}/app.bsky.feed.post/.."), "RecordKey"),
            (&format!("at://{did}/app.bsky.feed.post/a b"), "RecordKey"),
            (&format!("at://{did}/feed.post/abc"), "Collection"),
            (&format!("at://{did}/app.bsky.feed-post/abc"), "Collection"),
            (&format!("at://{did}/1app.bsky.post/abc"), "Collection"),
            (&format!("at://{did}/app..post/abc"), "Collection"),
            ("at://alice.bsky.social/app.bsky.feed.post/abc", "Authority"),
            ("at://did:plc:short/app.bsky.feed.post/abc", "Authority"),
            ("at://did:key:zQ3sh/app.bsky.feed.post/abc", "Authority"),
            (
                &format!("AT://{did}/app.bsky.feed.post/abc"),
                "NotARecordUri",
            ),
        ];
        for (text, expected) in cases {
            let err = AtUri::parse(text).unwrap_err();
            let name = match err {
                AtUriError::TooLong(_) => "TooLong",
                AtUriError::NotARecordUri(_) => "NotARecordUri",
                AtUriError::Authority(_) => "Authority",
                AtUriError::Collection(_) => "Collection",
                AtUriError::RecordKey(_) => "RecordKey",
            };
            assert_eq!(name, expected, "{text:?}: {err}");
        }
    }

    #[test]
    fn record_keys_take_exactly_their_characters() {
        let did = "did:plc:vfnmgxg2yscfliemmcxzyfyh";
        for key in ["self", "3mmoojp7etg2g", "a.b_c:d~e-f", "Z9", "..."] {
            assert!(
                AtUri::parse(&format!("at://{did}/app.bsky.feed.post/{key}")).is_ok(),
                "{key}"
            );
        }
        for key in ["é", "a\u{0}", "a%20", "a+b", "a@b", "a\\b", "a\"b"] {
            let err = AtUri::parse(&format!("at://{did}/app.bsky.feed.post/{key}")).unwrap_err();
            assert!(matches!(err, AtUriError::RecordKey(_)), "{key:?}: {err}");
        }
    }

    #[test]
    fn a_collection_the_rules_read_and_any_other_nsid_are_both_checked() {
        let did = "did:plc:vfnmgxg2yscfliemmcxzyfyh";
        for collection in RULE_COLLECTIONS
            .iter()
            .chain(&["org.hypercerts.claim.activity"])
        {
            let uri = AtUri::parse(&format!("at://{did}/{collection}/k")).unwrap();
            assert_eq!(uri.collection(), *collection);
        }
        let err = AtUri::parse(&format!("at://{did}/app.bsky.feed.like-/k")).unwrap_err();
        assert!(matches!(err, AtUriError::Collection(_)), "{err}");
    }

    #[test]
    fn huge_uris_are_refused_with_a_short_message() {
        let did = "did:plc:vfnmgxg2yscfliemmcxzyfyh";
        let long_key = format!("at://{did}/app.bsky.feed.post/{}", "k".repeat(600));
        assert!(matches!(
            AtUri::parse(&long_key),
            Err(AtUriError::RecordKey(_))
        ));
        let huge = format!("at://{did}/app.bsky.feed.post/{}", "k".repeat(1 << 20));
        let err = AtUri::parse(&huge).unwrap_err();
        assert_eq!(err, AtUriError::TooLong(huge.len()));
        let long_collection = format!("at://{did}/{}.b.c/k", "a".repeat(4000));
        let err = AtUri::parse(&long_collection).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }

    #[test]
    fn previews_cut_on_a_character_boundary() {
        let text = "é".repeat(100);
        let cut = preview(&text);
        assert!(cut.ends_with('…'));
        assert!(cut.len() <= ERROR_PREVIEW_BYTES + '…'.len_utf8());
        assert_eq!(preview("short"), "short");
    }
}

//! DAG-CBOR from atproto's JSON form, for building frames in tests, the
//! benchmark and the firehose stand-in (never on herald's input path).
//!
//! The inverse of `jetstream_json`: `{"$link": cid}` becomes a tag-42 CID,
//! `{"$bytes": base64}` a byte string, objects become maps with their keys
//! in DAG-CBOR's canonical order, and numbers must be integers. The output
//! is canonical, so a record's CID here is the CID a PDS computes for it.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use serde_json::Value;

use super::cid::CidBuf;
use super::dag_cbor::{
    CID_MULTIBASE_PREFIX, Head, MAJOR_ARRAY, MAJOR_BYTES, MAJOR_MAP, MAJOR_NEGATIVE, MAJOR_TEXT,
    MAJOR_UNSIGNED, TAG_CID, key_order,
};

/// CBOR's simple values `false`, `true`, `null`, and the tag major type.
const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;
const NULL: u8 = 0xf6;
const MAJOR_TAG: u8 = 6;

/// `value` as canonical DAG-CBOR; an error names what has no DAG-CBOR form.
pub fn to_dag_cbor(value: &Value) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    write_value(value, &mut out)?;
    Ok(out)
}

/// The DAG-CBOR encoding of `value` and its CID, as a repository stores it.
pub fn block(value: &Value) -> Result<(CidBuf, Vec<u8>), String> {
    let bytes = to_dag_cbor(value)?;
    Ok((CidBuf::dag_cbor_of(&bytes), bytes))
}

/// `{"$link": cid}`: a CID in atproto's JSON form.
pub fn link(cid: &CidBuf) -> Value {
    serde_json::json!({"$link": cid.to_string()})
}

/// `{"$bytes": base64}`: bytes in atproto's JSON form.
pub fn bytes(data: &[u8]) -> Value {
    serde_json::json!({"$bytes": STANDARD_NO_PAD.encode(data)})
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match value {
        Value::Null => out.push(NULL),
        Value::Bool(b) => out.push(if *b { TRUE } else { FALSE }),
        Value::Number(n) => match n.as_i64() {
            Some(i) if i >= 0 => write_head(MAJOR_UNSIGNED, i as u64, out),
            Some(i) => write_head(MAJOR_NEGATIVE, (-1 - i) as u64, out),
            None => return Err(format!("{n} is not a 64-bit integer")),
        },
        Value::String(text) => write_text(text, out),
        Value::Array(items) => {
            write_head(MAJOR_ARRAY, items.len() as u64, out);
            for item in items {
                write_value(item, out)?;
            }
        }
        Value::Object(fields) => match special(fields)? {
            Some(Special::Link(cid)) => {
                write_head(MAJOR_TAG, TAG_CID, out);
                let cid = cid.as_cid().as_bytes();
                write_head(MAJOR_BYTES, cid.len() as u64 + 1, out);
                out.push(CID_MULTIBASE_PREFIX);
                out.extend_from_slice(cid);
            }
            Some(Special::Bytes(data)) => {
                write_head(MAJOR_BYTES, data.len() as u64, out);
                out.extend_from_slice(&data);
            }
            None => {
                let mut keys: Vec<&String> = fields.keys().collect();
                keys.sort_by(|a, b| key_order(a, b));
                write_head(MAJOR_MAP, keys.len() as u64, out);
                for key in keys {
                    write_text(key, out);
                    write_value(&fields[key], out)?;
                }
            }
        },
    }
    Ok(())
}

fn write_head(major: u8, argument: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(Head::new(major, argument).as_bytes());
}

fn write_text(text: &str, out: &mut Vec<u8>) {
    write_head(MAJOR_TEXT, text.len() as u64, out);
    out.extend_from_slice(text.as_bytes());
}

enum Special {
    Link(CidBuf),
    Bytes(Vec<u8>),
}

/// A one-key `$link` or `$bytes` object, which stands for a CID or bytes.
fn special(fields: &serde_json::Map<String, Value>) -> Result<Option<Special>, String> {
    if fields.len() != 1 {
        return Ok(None);
    }
    match fields.iter().next() {
        Some((key, Value::String(text))) if key == "$link" => CidBuf::parse_str(text)
            .map(|cid| Some(Special::Link(cid)))
            .map_err(|e| format!("$link {text:?}: {e}")),
        Some((key, Value::String(text))) if key == "$bytes" => STANDARD_NO_PAD
            .decode(text)
            .or_else(|_| STANDARD.decode(text))
            .map(|data| Some(Special::Bytes(data)))
            .map_err(|e| format!("$bytes: {e}")),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::firehose::dag_cbor::{self, Value as Cbor};

    #[test]
    fn writes_canonical_dag_cbor_that_the_reader_accepts() {
        let record = json!({
            "text": "hi", "$type": "app.bsky.feed.post", "n": -3, "big": 70_000, "ok": true,
            "none": null, "list": [1, "two"], "raw": bytes(&[0, 1, 2]),
            "ref": {"$link": "bafyreidqpc7si3dbimffi64lz3xsx2qt45ip7rpna2qpslcddp23itjjzm"},
        });
        let encoded = to_dag_cbor(&record).unwrap();
        let decoded = dag_cbor::decode(&encoded).unwrap();
        let map = decoded.as_map().unwrap();
        let keys: Vec<&str> = map.entries().iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "n", "ok", "big", "raw", "ref", "list", "none", "text", "$type"
            ]
        );
        assert_eq!(map.get("n"), Some(&Cbor::Int(-3)));
        assert_eq!(map.get("big"), Some(&Cbor::Int(70_000)));
        assert_eq!(map.get("raw"), Some(&Cbor::Bytes(&[0, 1, 2])));
        assert_eq!(
            map.get("ref")
                .and_then(Cbor::as_link)
                .map(|c| c.to_string()),
            Some("bafyreidqpc7si3dbimffi64lz3xsx2qt45ip7rpna2qpslcddp23itjjzm".into())
        );
    }

    #[test]
    fn refuses_what_has_no_dag_cbor_form() {
        for bad in [
            json!(1.5),
            json!(u64::MAX),
            json!({"$link": "not a cid"}),
            json!({"$bytes": "%%%"}),
        ] {
            assert!(to_dag_cbor(&bad).is_err(), "{bad}");
        }
        // `$link` beside other keys is an ordinary key.
        assert!(to_dag_cbor(&json!({"$link": "x", "y": 1})).is_ok());
    }
}

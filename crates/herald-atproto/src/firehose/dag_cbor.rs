//! A strict DAG-CBOR reader: the subset of CBOR that IPLD and atproto allow.
//!
//! herald reads its own DAG-CBOR rather than taking `serde_ipld_dagcbor` and
//! `ipld-core`: a firehose frame is read once, into values that borrow the
//! frame's bytes (no copy of a string, a byte string or a CID), and the
//! reader must refuse, not tolerate, what canonical DAG-CBOR forbids, since
//! a commit's signature covers its exact bytes. That is about 300 lines we
//! own, and the benchmark's hot path (`herald bench firehose`).
//!
//! Refused, each with the offset where it was found: indefinite lengths,
//! integers, lengths and tags not in their shortest form, integers outside
//! i64, floats (atproto's data model has none), `undefined` and other simple
//! values, tags other than 42, a CID not starting with the `0x00` multibase
//! byte or not a CIDv1, map keys that are not text or not in canonical order
//! (length first, then bytes; which also refuses repeated keys), text that is
//! not UTF-8, nesting deeper than [`MAX_DEPTH`], and any length past the end.
//! Because only canonical input is accepted, equal values have equal bytes:
//! a commit's unsigned form can be cut out of its signed bytes
//! (`verify::read_commit`) instead of being re-encoded.

use std::cmp::Ordering;
use std::ops::Range;

use super::cid::Cid;

/// Deepest nesting of arrays and maps. Lexicons nest records about ten
/// levels deep (a post's quote-with-images embed is eight); the bound keeps
/// the recursive reader's stack small whatever a frame claims.
pub const MAX_DEPTH: usize = 64;

/// CBOR major types.
pub(crate) const MAJOR_UNSIGNED: u8 = 0;
pub(crate) const MAJOR_NEGATIVE: u8 = 1;
pub(crate) const MAJOR_BYTES: u8 = 2;
pub(crate) const MAJOR_TEXT: u8 = 3;
pub(crate) const MAJOR_ARRAY: u8 = 4;
pub(crate) const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;
/// The only tag DAG-CBOR has: a CID.
pub(crate) const TAG_CID: u64 = 42;
/// A tagged CID's bytes start with the (historical) identity multibase prefix.
pub(crate) const CID_MULTIBASE_PREFIX: u8 = 0x00;
const SIMPLE_FALSE: u8 = 20;
const SIMPLE_TRUE: u8 = 21;
const SIMPLE_NULL: u8 = 22;

/// Why bytes are not DAG-CBOR, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at byte {offset}")]
pub struct CborError {
    pub offset: usize,
    pub reason: &'static str,
}

/// A decoded value, borrowing strings, bytes and CIDs from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(Vec<Value<'a>>),
    Map(Map<'a>),
    Link(Cid<'a>),
}

/// A map's entries, in canonical key order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Map<'a>(Vec<(&'a str, Value<'a>)>);

/// DAG-CBOR's key order: shorter keys first, then bytewise.
pub(crate) fn key_order(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

impl<'a> Map<'a> {
    /// The value of `key`; keys are sorted, so this is a binary search.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.0
            .binary_search_by(|(k, _)| key_order(k, key))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn entries(&self) -> &[(&'a str, Value<'a>)] {
        &self.0
    }
}

impl<'a> Value<'a> {
    pub fn as_map(&self) -> Option<&Map<'a>> {
        match self {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_text(&self) -> Option<&'a str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }

    pub fn as_link(&self) -> Option<Cid<'a>> {
        match self {
            Value::Link(cid) => Some(*cid),
            _ => None,
        }
    }
}

/// `bytes` as exactly one value.
pub fn decode(bytes: &[u8]) -> Result<Value<'_>, CborError> {
    let mut reader = Reader::new(bytes);
    let value = reader.value()?;
    reader.finish()?;
    Ok(value)
}

/// A cursor over DAG-CBOR bytes, for reading values one after another (a
/// frame's header and body) or a map's entries with their positions.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.at
    }

    /// An error unless every byte was read.
    pub fn finish(&self) -> Result<(), CborError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(self.error("trailing bytes after the value"))
        }
    }

    /// The next value.
    pub fn value(&mut self) -> Result<Value<'a>, CborError> {
        self.nested(0)
    }

    /// The next item, which must be a map, one entry at a time: `each` is
    /// given each key, its value and the bytes the entry spans, so that a
    /// caller can pick its fields and cut entries out without building the
    /// map. The checks are [`Reader::value`]'s.
    pub fn map_entries(
        &mut self,
        mut each: impl FnMut(Range<usize>, &'a str, Value<'a>),
    ) -> Result<(), CborError> {
        let start = self.at;
        match self.head()? {
            (MAJOR_MAP, argument) => {
                let len = self.count(argument, 2, start)?;
                self.entries(len, 0, &mut each)
            }
            _ => Err(self.at_start(start, "expected a map")),
        }
    }

    /// The next item, which must be text.
    fn text(&mut self) -> Result<&'a str, CborError> {
        let start = self.at;
        match self.head()? {
            (MAJOR_TEXT, len) => self.utf8(len, start),
            _ => Err(CborError {
                offset: start,
                reason: "expected text",
            }),
        }
    }

    fn error(&self, reason: &'static str) -> CborError {
        CborError {
            offset: self.at,
            reason,
        }
    }

    fn nested(&mut self, depth: usize) -> Result<Value<'a>, CborError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        let start = self.at;
        let initial = *self.bytes.get(start).ok_or(self.error("truncated"))?;
        if initial >> 5 == MAJOR_SIMPLE {
            self.at += 1;
            return match initial & 31 {
                SIMPLE_FALSE => Ok(Value::Bool(false)),
                SIMPLE_TRUE => Ok(Value::Bool(true)),
                SIMPLE_NULL => Ok(Value::Null),
                25..=27 => Err(CborError {
                    offset: start,
                    reason: "floats are not allowed",
                }),
                _ => Err(CborError {
                    offset: start,
                    reason: "simple value not allowed",
                }),
            };
        }
        let (major, argument) = self.head()?;
        match major {
            MAJOR_UNSIGNED => i64::try_from(argument)
                .map(Value::Int)
                .map_err(|_| self.at_start(start, "integer out of range")),
            MAJOR_NEGATIVE => i64::try_from(argument)
                .map(|n| Value::Int(-1 - n))
                .map_err(|_| self.at_start(start, "integer out of range")),
            MAJOR_BYTES => self.slice(argument, start).map(Value::Bytes),
            MAJOR_TEXT => self.utf8(argument, start).map(Value::Text),
            MAJOR_ARRAY => {
                let len = self.count(argument, 1, start)?;
                let mut items = Vec::with_capacity(len);
                for _ in 0..len {
                    items.push(self.nested(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            MAJOR_MAP => self.map(argument, depth, start),
            MAJOR_TAG if argument == TAG_CID => self.link(),
            _ => Err(self.at_start(start, "tags other than 42 are not allowed")),
        }
    }

    fn at_start(&self, offset: usize, reason: &'static str) -> CborError {
        CborError { offset, reason }
    }

    fn map(&mut self, argument: u64, depth: usize, start: usize) -> Result<Value<'a>, CborError> {
        let len = self.count(argument, 2, start)?;
        let mut entries: Vec<(&'a str, Value<'a>)> = Vec::with_capacity(len);
        self.entries(len, depth, &mut |_, key, value| entries.push((key, value)))?;
        Ok(Value::Map(Map(entries)))
    }

    /// `len` entries of a map at `depth`, each handed to `each` with its
    /// span once its key's order and its value are checked.
    fn entries(
        &mut self,
        len: usize,
        depth: usize,
        each: &mut dyn FnMut(Range<usize>, &'a str, Value<'a>),
    ) -> Result<(), CborError> {
        let mut previous: Option<&'a str> = None;
        for _ in 0..len {
            let key_at = self.at;
            let key = self.text()?;
            if previous.is_some_and(|previous| key_order(previous, key) != Ordering::Less) {
                return Err(self.at_start(key_at, "map keys repeated or not in canonical order"));
            }
            let value = self.nested(depth + 1)?;
            each(key_at..self.at, key, value);
            previous = Some(key);
        }
        Ok(())
    }

    fn link(&mut self) -> Result<Value<'a>, CborError> {
        let start = self.at;
        let bytes = match self.head()? {
            (MAJOR_BYTES, len) => self.slice(len, start)?,
            _ => return Err(self.at_start(start, "tag 42 must wrap bytes")),
        };
        match bytes.split_first() {
            Some((&CID_MULTIBASE_PREFIX, cid)) => Cid::parse(cid)
                .map(Value::Link)
                .map_err(|_| self.at_start(start, "tag 42 does not hold a CIDv1")),
            _ => Err(self.at_start(start, "a CID must start with 0x00")),
        }
    }

    /// A head: major type and argument, the argument in its shortest form.
    fn head(&mut self) -> Result<(u8, u64), CborError> {
        let start = self.at;
        let initial = *self.bytes.get(start).ok_or(self.error("truncated"))?;
        let (major, info) = (initial >> 5, initial & 31);
        let extra = match info {
            0..=23 => {
                self.at += 1;
                return Ok((major, u64::from(info)));
            }
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            31 => return Err(self.error("indefinite lengths are not allowed")),
            _ => return Err(self.error("reserved additional information")),
        };
        let bytes = self
            .bytes
            .get(start + 1..start + 1 + extra)
            .ok_or(self.error("truncated"))?;
        let argument = bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b));
        // The shortest form: 24 and up in one byte, and each wider form
        // only for what the narrower cannot hold.
        let minimum = match extra {
            1 => 24,
            2 => 0x100,
            4 => 0x1_0000,
            _ => 0x1_0000_0000,
        };
        if argument < minimum {
            return Err(self.error("not in the shortest form"));
        }
        self.at = start + 1 + extra;
        Ok((major, argument))
    }

    /// An item count that the remaining bytes can hold, at `min_bytes`
    /// each: a huge declared length fails here, before any allocation.
    fn count(&self, argument: u64, min_bytes: usize, start: usize) -> Result<usize, CborError> {
        let remaining = self.bytes.len() - self.at;
        usize::try_from(argument)
            .ok()
            .filter(|&n| {
                n.checked_mul(min_bytes)
                    .is_some_and(|need| need <= remaining)
            })
            .ok_or(self.at_start(start, "length past the end"))
    }

    fn slice(&mut self, argument: u64, start: usize) -> Result<&'a [u8], CborError> {
        let len = self.count(argument, 1, start)?;
        let bytes = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(bytes)
    }

    fn utf8(&mut self, argument: u64, start: usize) -> Result<&'a str, CborError> {
        let bytes = self.slice(argument, start)?;
        std::str::from_utf8(bytes).map_err(|_| self.at_start(start, "text is not UTF-8"))
    }
}

/// A head: `major` with `argument` in its shortest form, as bytes.
pub(crate) struct Head {
    bytes: [u8; 9],
    len: usize,
}

impl Head {
    pub(crate) fn new(major: u8, argument: u64) -> Self {
        let major = major << 5;
        let mut bytes = [0u8; 9];
        let len = match argument {
            0..=23 => {
                bytes[0] = major | argument as u8;
                1
            }
            24..=0xff => {
                bytes[..2].copy_from_slice(&[major | 24, argument as u8]);
                2
            }
            0x100..=0xffff => {
                bytes[0] = major | 25;
                bytes[1..3].copy_from_slice(&(argument as u16).to_be_bytes());
                3
            }
            0x1_0000..=0xffff_ffff => {
                bytes[0] = major | 26;
                bytes[1..5].copy_from_slice(&(argument as u32).to_be_bytes());
                5
            }
            _ => {
                bytes[0] = major | 27;
                bytes[1..].copy_from_slice(&argument.to_be_bytes());
                9
            }
        };
        Self { bytes, len }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(bytes: &[u8]) -> &'static str {
        decode(bytes).unwrap_err().reason
    }

    #[test]
    fn reads_every_kind_of_value() {
        // {"a": 1, "b": [-1, true, null, "x", h'01'], "cc": -500}
        let bytes = [
            0xa3, 0x61, b'a', 0x01, 0x61, b'b', 0x85, 0x20, 0xf5, 0xf6, 0x61, b'x', 0x41, 0x01,
            0x62, b'c', b'c', 0x39, 0x01, 0xf3,
        ];
        let value = decode(&bytes).unwrap();
        let map = value.as_map().unwrap();
        assert_eq!(map.get("a"), Some(&Value::Int(1)));
        assert_eq!(map.get("cc"), Some(&Value::Int(-500)));
        assert_eq!(
            map.get("b"),
            Some(&Value::Array(vec![
                Value::Int(-1),
                Value::Bool(true),
                Value::Null,
                Value::Text("x"),
                Value::Bytes(&[1]),
            ]))
        );
        assert_eq!(map.get("z"), None);
        assert_eq!(map.entries().len(), 3);
    }

    #[test]
    fn reads_the_ends_of_the_integer_range() {
        let mut max = vec![0x1b];
        max.extend_from_slice(&i64::MAX.to_be_bytes());
        assert_eq!(decode(&max), Ok(Value::Int(i64::MAX)));
        let mut min = vec![0x3b];
        min.extend_from_slice(&i64::MAX.to_be_bytes());
        assert_eq!(decode(&min), Ok(Value::Int(i64::MIN)));
        let mut too_big = vec![0x1b];
        too_big.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(reason(&too_big), "integer out of range");
        let mut too_small = vec![0x3b];
        too_small.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(reason(&too_small), "integer out of range");
    }

    #[test]
    fn reads_links() {
        let cid = super::super::cid::CidBuf::dag_cbor_of(b"x");
        let mut bytes = vec![0xd8, 0x2a, 0x58, 37, 0x00];
        bytes.extend_from_slice(cid.as_cid().as_bytes());
        assert_eq!(decode(&bytes), Ok(Value::Link(cid.as_cid())));
        // The same bytes without the 0x00 prefix, and a CIDv0 inside.
        let mut unprefixed = vec![0xd8, 0x2a, 0x58, 36];
        unprefixed.extend_from_slice(cid.as_cid().as_bytes());
        assert_eq!(reason(&unprefixed), "a CID must start with 0x00");
        let v0 = [0xd8, 0x2a, 0x43, 0x00, 0x12, 0x20];
        assert_eq!(reason(&v0), "tag 42 does not hold a CIDv1");
        assert_eq!(reason(&[0xd8, 0x2a, 0x61, b'x']), "tag 42 must wrap bytes");
    }

    #[test]
    fn refuses_what_dag_cbor_forbids() {
        for (bytes, why) in [
            (&[0x9f, 0xff][..], "indefinite lengths are not allowed"),
            (&[0x5f, 0xff], "indefinite lengths are not allowed"),
            (&[0xbf, 0xff], "indefinite lengths are not allowed"),
            (&[0x18, 0x05], "not in the shortest form"),
            (&[0x19, 0x00, 0xff], "not in the shortest form"),
            (&[0x1a, 0x00, 0x00, 0xff, 0xff], "not in the shortest form"),
            (
                &[0x1b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
                "not in the shortest form",
            ),
            (&[0x58, 0x01, 0x00], "not in the shortest form"),
            (&[0xfb, 0, 0, 0, 0, 0, 0, 0, 0], "floats are not allowed"),
            (&[0xf9, 0x3c, 0x00], "floats are not allowed"),
            (&[0xf7], "simple value not allowed"),
            (&[0xf8, 0x20], "simple value not allowed"),
            (&[0xc1, 0x00], "tags other than 42 are not allowed"),
            (&[0xd8, 0x2b, 0x40], "tags other than 42 are not allowed"),
            (&[0x1c], "reserved additional information"),
            (&[0x62, 0xff, 0xfe], "text is not UTF-8"),
            (&[0xa1, 0x01, 0x01], "expected text"),
            // {"b": 1, "a": 2}, {"a": 1, "a": 2}, {"aa": 1, "b": 2}
            (
                &[0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02],
                "map keys repeated or not in canonical order",
            ),
            (
                &[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02],
                "map keys repeated or not in canonical order",
            ),
            (
                &[0xa2, 0x62, b'a', b'a', 0x01, 0x61, b'b', 0x02],
                "map keys repeated or not in canonical order",
            ),
            (&[0x01, 0x02], "trailing bytes after the value"),
        ] {
            assert_eq!(reason(bytes), why, "{bytes:02x?}");
        }
    }

    #[test]
    fn refuses_truncated_input_and_huge_lengths_without_allocating() {
        let whole = [0xa1, 0x61, b'a', 0x82, 0x01, 0x02];
        for end in 0..whole.len() {
            assert!(decode(&whole[..end]).is_err(), "{end}");
        }
        for bytes in [
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
            &[0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0x5a, 0xff, 0xff, 0xff, 0xff],
            &[0x7a, 0x00, 0x10, 0x00, 0x00, b'a'],
            &[0x82, 0x01],
        ] {
            assert_eq!(reason(bytes), "length past the end", "{bytes:02x?}");
        }
    }

    #[test]
    fn refuses_nesting_past_the_bound() {
        let at_bound = [vec![0x81; MAX_DEPTH], vec![0x01]].concat();
        assert!(decode(&at_bound).is_ok());
        let too_deep = [vec![0x81; MAX_DEPTH + 1], vec![0x01]].concat();
        assert_eq!(reason(&too_deep), "nested too deep");
        // A megabyte of open arrays fails fast, without exhausting the stack.
        assert_eq!(reason(&vec![0x81; 1 << 20]), "nested too deep");
    }

    #[test]
    fn heads_are_written_in_their_shortest_form() {
        for argument in [
            0,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            u32::MAX.into(),
            u64::MAX,
        ] {
            let head = Head::new(MAJOR_UNSIGNED, argument);
            let mut reader = Reader::new(head.as_bytes());
            assert_eq!(reader.head(), Ok((MAJOR_UNSIGNED, argument)));
            assert_eq!(reader.finish(), Ok(()));
        }
    }

    #[test]
    fn a_reader_walks_a_map_entry_by_entry() {
        let bytes = [0xa2, 0x61, b'a', 0x01, 0x62, b'b', b'b', 0xf4, 0x00];
        let mut reader = Reader::new(&bytes);
        let mut entries = Vec::new();
        let walked = reader.map_entries(|span, key, value| entries.push((span, key, value)));
        assert_eq!(walked, Ok(()));
        assert_eq!(
            entries,
            [(1..4, "a", Value::Int(1)), (4..8, "bb", Value::Bool(false))]
        );
        assert_eq!(reader.position(), 8);
        assert!(reader.finish().is_err());
        // The checks of `value`: key order, and the depth counted from the map.
        let unordered = [0xa2, 0x62, b'b', b'b', 0x01, 0x61, b'a', 0x01];
        let out_of_order = Reader::new(&unordered).map_entries(|_, _, _| {});
        assert_eq!(
            out_of_order.unwrap_err().reason,
            "map keys repeated or not in canonical order"
        );
        let deep = [vec![0xa1, 0x61, b'a'], vec![0x81; MAX_DEPTH], vec![0x01]].concat();
        assert_eq!(reason(&deep), "nested too deep");
        let walked = Reader::new(&deep).map_entries(|_, _, _| {});
        assert_eq!(walked.unwrap_err().reason, "nested too deep");
        let not_a_map = Reader::new(&[0x01]).map_entries(|_, _, _| {});
        assert_eq!(not_a_map.unwrap_err().reason, "expected a map");
    }
}

//! CIDs, the content addresses that link a repository's blocks.
//!
//! atproto uses CIDv1 only: `varint(1) ‖ varint(codec) ‖ multihash`, where a
//! repository block is DAG-CBOR (codec 0x71) hashed with SHA-256 and a blob
//! is raw (0x55). In text a CID is multibase base32, lowercase, without
//! padding (`bafyrei…`). Varints are the multiformats unsigned varint: at
//! most nine bytes and minimally encoded, so every CID has exactly one
//! binary form and two equal CIDs are equal bytes.

use std::fmt;

use sha2::{Digest, Sha256};

/// Multicodec of DAG-CBOR, the codec of every repository block.
pub const DAG_CBOR: u64 = 0x71;
/// Multicodec of raw bytes, the codec of blobs.
pub const RAW: u64 = 0x55;
/// Multihash code of SHA-256.
pub const SHA2_256: u64 = 0x12;
/// Bytes of a SHA-256 digest.
const SHA2_256_LEN: usize = 32;
/// The multiformats varint spec caps varints at nine bytes (63 bits).
const MAX_VARINT_BYTES: usize = 9;
/// Lowercase RFC 4648 base32, the alphabet of multibase `b`.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why bytes or text are not a CID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CidError {
    #[error("truncated CID")]
    Truncated,
    #[error("CID varint is over nine bytes or not minimal")]
    BadVarint,
    #[error("not a CIDv1")]
    NotV1,
    #[error("CID multihash length does not match its digest")]
    DigestLength,
    #[error("CID text is not lowercase base32 multibase")]
    NotBase32,
}

/// A CID in binary form, borrowed from the bytes it was read from.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cid<'a>(&'a [u8]);

/// An owned CID.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CidBuf(Box<[u8]>);

/// An unsigned varint at the start of `bytes` and the bytes it took.
pub(crate) fn read_varint(bytes: &[u8]) -> Result<(u64, usize), CidError> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(MAX_VARINT_BYTES) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // A last byte of zero after the first only pads: not minimal.
            if byte == 0 && i > 0 {
                return Err(CidError::BadVarint);
            }
            return Ok((value, i + 1));
        }
    }
    if bytes.len() < MAX_VARINT_BYTES {
        Err(CidError::Truncated)
    } else {
        Err(CidError::BadVarint)
    }
}

/// Appends `value` as an unsigned varint.
pub(crate) fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

impl<'a> Cid<'a> {
    /// `bytes`, which must be exactly one CIDv1.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, CidError> {
        match Self::read_prefix(bytes)? {
            (cid, used) if used == bytes.len() => Ok(cid),
            _ => Err(CidError::DigestLength),
        }
    }

    /// The CIDv1 at the start of `bytes` (a CAR block's, followed by its
    /// data) and the bytes it took.
    pub fn read_prefix(bytes: &'a [u8]) -> Result<(Self, usize), CidError> {
        let mut at = 0;
        let mut next = || -> Result<u64, CidError> {
            let (value, used) = read_varint(&bytes[at..])?;
            at += used;
            Ok(value)
        };
        if next()? != 1 {
            return Err(CidError::NotV1);
        }
        let _codec = next()?;
        let _hash = next()?;
        let digest_len = usize::try_from(next()?).map_err(|_| CidError::DigestLength)?;
        let end = at.checked_add(digest_len).ok_or(CidError::DigestLength)?;
        if end > bytes.len() {
            return Err(CidError::Truncated);
        }
        Ok((Cid(&bytes[..end]), end))
    }

    /// Bytes that `read_prefix` or `parse` accepted before, kept as a range
    /// by their owner (`Car`).
    pub(crate) fn checked(bytes: &'a [u8]) -> Self {
        debug_assert!(Cid::parse(bytes).is_ok());
        Cid(bytes)
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The multicodec of the content (0x71 DAG-CBOR, 0x55 raw, …).
    pub fn codec(&self) -> u64 {
        self.fields().0
    }

    /// (codec, multihash code, digest), from bytes `parse` checked.
    fn fields(&self) -> (u64, u64, &'a [u8]) {
        let mut at = 0;
        let mut next = || {
            let (value, used) = read_varint(&self.0[at..]).unwrap_or((0, self.0.len() - at));
            at += used;
            value
        };
        let _version = next();
        let codec = next();
        let hash = next();
        let _len = next();
        (codec, hash, &self.0[at..])
    }

    /// Whether this is the CID of `block` as a repository block: DAG-CBOR
    /// codec and the SHA-256 of its bytes.
    pub fn is_dag_cbor_of(&self, block: &[u8]) -> bool {
        let (codec, hash, digest) = self.fields();
        codec == DAG_CBOR
            && hash == SHA2_256
            && digest.len() == SHA2_256_LEN
            && digest == Sha256::digest(block).as_slice()
    }

    pub fn to_owned(&self) -> CidBuf {
        CidBuf(self.0.into())
    }
}

impl CidBuf {
    /// The DAG-CBOR CID of `block`: how a repository names its blocks.
    pub fn dag_cbor_of(block: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(4 + SHA2_256_LEN);
        for field in [1, DAG_CBOR, SHA2_256, SHA2_256_LEN as u64] {
            write_varint(field, &mut bytes);
        }
        bytes.extend_from_slice(&Sha256::digest(block));
        CidBuf(bytes.into())
    }

    /// A CID from its text form (`bafyrei…`).
    pub fn parse_str(text: &str) -> Result<Self, CidError> {
        let encoded = text.strip_prefix('b').ok_or(CidError::NotBase32)?;
        let mut bytes = Vec::with_capacity(encoded.len() * 5 / 8);
        let (mut bits, mut pending) = (0u32, 0u32);
        for c in encoded.bytes() {
            let value = BASE32
                .iter()
                .position(|&a| a == c)
                .ok_or(CidError::NotBase32)?;
            bits = (bits << 5) | value as u32;
            pending += 5;
            if pending >= 8 {
                pending -= 8;
                bytes.push((bits >> pending) as u8);
            }
        }
        // Leftover bits are padding: fewer than a character, and zero, or
        // two texts would name one CID.
        if pending >= 5 || bits & ((1 << pending) - 1) != 0 {
            return Err(CidError::NotBase32);
        }
        Cid::parse(&bytes)?;
        Ok(CidBuf(bytes.into()))
    }

    pub fn as_cid(&self) -> Cid<'_> {
        Cid(&self.0)
    }
}

impl fmt::Display for Cid<'_> {
    /// Multibase base32: `b`, then five bits a character.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(1 + self.0.len().div_ceil(5) * 8);
        text.push('b');
        let (mut bits, mut pending) = (0u32, 0u32);
        for &byte in self.0 {
            bits = (bits << 8) | u32::from(byte);
            pending += 8;
            while pending >= 5 {
                pending -= 5;
                text.push(char::from(BASE32[((bits >> pending) & 31) as usize]));
            }
        }
        if pending > 0 {
            text.push(char::from(BASE32[((bits << (5 - pending)) & 31) as usize]));
        }
        f.write_str(&text)
    }
}

impl fmt::Debug for Cid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({self})")
    }
}

impl fmt::Display for CidBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_cid().fmt(f)
    }
}

impl fmt::Debug for CidBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_cid().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record CID of the golden Jetstream fixture.
    const LIKE: &str = "bafyreidqpc7si3dbimffi64lz3xsx2qt45ip7rpna2qpslcddp23itjjzm";
    /// A blob CID of the golden fixture (raw codec).
    const AVATAR: &str = "bafkreieajxclqzwk2mczx7hxmoboqpuiveqlbm35gsda5xlaqfmlryu4ri";

    #[test]
    fn text_and_binary_forms_round_trip() {
        for text in [LIKE, AVATAR] {
            let cid = CidBuf::parse_str(text).unwrap();
            assert_eq!(cid.to_string(), text);
            assert_eq!(cid.as_cid().as_bytes().len(), 36);
        }
        assert_eq!(CidBuf::parse_str(LIKE).unwrap().as_cid().codec(), DAG_CBOR);
        assert_eq!(CidBuf::parse_str(AVATAR).unwrap().as_cid().codec(), RAW);
    }

    #[test]
    fn a_dag_cbor_cid_is_the_sha256_of_the_block() {
        let block = [0xa1, 0x61, 0x61, 0x01];
        let cid = CidBuf::dag_cbor_of(&block);
        assert!(cid.to_string().starts_with("bafyrei"));
        assert!(cid.as_cid().is_dag_cbor_of(&block));
        assert!(!cid.as_cid().is_dag_cbor_of(&[0xa1, 0x61, 0x61, 0x02]));
        // The same digest under the raw codec names a blob, not a block.
        let mut raw = cid.as_cid().as_bytes().to_vec();
        raw[1] = RAW as u8;
        assert!(!Cid::parse(&raw).unwrap().is_dag_cbor_of(&block));
    }

    #[test]
    fn reads_a_cid_before_other_bytes() {
        let cid = CidBuf::parse_str(LIKE).unwrap();
        let mut bytes = cid.as_cid().as_bytes().to_vec();
        bytes.extend_from_slice(b"data");
        let (read, used) = Cid::read_prefix(&bytes).unwrap();
        assert_eq!((read, used), (cid.as_cid(), 36));
        assert_eq!(Cid::parse(&bytes), Err(CidError::DigestLength));
    }

    #[test]
    fn refuses_what_is_not_a_cidv1() {
        let good = CidBuf::parse_str(LIKE)
            .unwrap()
            .as_cid()
            .as_bytes()
            .to_vec();
        assert_eq!(Cid::parse(&good[..20]), Err(CidError::Truncated));
        assert_eq!(Cid::parse(&[]), Err(CidError::Truncated));
        // CIDv0 (a bare multihash) and version 2.
        assert_eq!(Cid::parse(&[0x12, 0x20]), Err(CidError::NotV1));
        assert_eq!(Cid::parse(&[0x02, 0x71]), Err(CidError::NotV1));
        // Version 1 written in two bytes is not minimal.
        assert_eq!(Cid::parse(&[0x81, 0x00, 0x71]), Err(CidError::BadVarint));
        // A digest length near 2^63 must not overflow.
        let huge = [
            0x01, 0x71, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert!(Cid::parse(&huge).is_err());
        assert_eq!(Cid::parse(&[0xff; 12]), Err(CidError::BadVarint));
        for text in ["", "b", "zQ3s", "BAFY", "bafyrei!", &format!("{LIKE}a")] {
            assert!(CidBuf::parse_str(text).is_err(), "{text}");
        }
    }

    #[test]
    fn varints_are_minimal_and_round_trip() {
        for value in [0, 1, 127, 128, 300, 0x71, 1 << 40, (1 << 63) - 1] {
            let mut out = Vec::new();
            write_varint(value, &mut out);
            assert_eq!(read_varint(&out), Ok((value, out.len())), "{value}");
        }
        assert_eq!(read_varint(&[0x80]), Err(CidError::Truncated));
        assert_eq!(read_varint(&[0x80, 0x00]), Err(CidError::BadVarint));
    }
}

//! CAR v1 archives: how a commit carries its blocks (atproto.md §9).
//!
//! `varint(header length) ‖ DAG-CBOR {roots: [CID…], version: 1}`, then
//! sections `varint(length) ‖ CID ‖ block bytes` to the end. A [`Car`] owns
//! the archive's bytes and an index of its blocks sorted by CID, so a
//! block is found by binary search among a commit's handful of blocks or a
//! repository export's thousands. Reading checks the structure only;
//! whether each block hashes to its CID is the verifier's question
//! (`verify`), asked only when verification is on.

use std::ops::Range;

use super::FirehoseError;
use super::cid::{Cid, read_varint};
use super::dag_cbor::{self, Value};

/// The only CAR version atproto writes.
const CAR_VERSION: i64 = 1;

/// A CAR archive, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Car {
    bytes: Vec<u8>,
    roots: Vec<Range<usize>>,
    /// (CID, block) ranges of `bytes`, sorted by CID bytes.
    blocks: Vec<(Range<usize>, Range<usize>)>,
}

fn car_error(why: &'static str) -> FirehoseError {
    FirehoseError::Car(why)
}

impl Car {
    /// Reads the archive in `bytes`.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, FirehoseError> {
        let (header, mut at) = section(&bytes, 0)?.ok_or(car_error("no header"))?;
        let roots = header_roots(&bytes, header)?;
        let mut blocks = Vec::new();
        while let Some((range, next)) = section(&bytes, at)? {
            let (cid, used) = Cid::read_prefix(&bytes[range.clone()])
                .map_err(|_| car_error("a block's CID is not a CIDv1"))?;
            let cid_end = range.start + used;
            debug_assert_eq!(cid.as_bytes().len(), used);
            blocks.push((range.start..cid_end, cid_end..range.end));
            at = next;
        }
        blocks.sort_by(|a, b| bytes[a.0.clone()].cmp(&bytes[b.0.clone()]));
        Ok(Self {
            bytes,
            roots,
            blocks,
        })
    }

    /// The archive's roots: a commit's CAR has one, the commit.
    pub fn roots(&self) -> impl Iterator<Item = Cid<'_>> {
        self.roots.iter().map(|r| self.cid(r.clone()))
    }

    /// The block named `cid`, if the archive has it.
    pub fn get(&self, cid: Cid<'_>) -> Option<&[u8]> {
        self.blocks
            .binary_search_by(|(c, _)| self.bytes[c.clone()].cmp(cid.as_bytes()))
            .ok()
            .map(|i| &self.bytes[self.blocks[i].1.clone()])
    }

    /// Every block with its CID, in CID order.
    pub fn blocks(&self) -> impl Iterator<Item = (Cid<'_>, &[u8])> {
        self.blocks
            .iter()
            .map(|(c, b)| (self.cid(c.clone()), &self.bytes[b.clone()]))
    }

    /// The archive's size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A CID range checked by `parse`.
    fn cid(&self, range: Range<usize>) -> Cid<'_> {
        Cid::checked(&self.bytes[range])
    }
}

/// The section at `at`: its content range and where the next begins;
/// `None` at the end.
fn section(bytes: &[u8], at: usize) -> Result<Option<(Range<usize>, usize)>, FirehoseError> {
    if at == bytes.len() {
        return Ok(None);
    }
    let (len, used) = read_varint(&bytes[at..]).map_err(|_| car_error("bad section length"))?;
    let start = at + used;
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| start.checked_add(len))
        .filter(|&end| end <= bytes.len())
        .ok_or(car_error("a section runs past the end"))?;
    if end == start {
        return Err(car_error("an empty section"));
    }
    Ok(Some((start..end, end)))
}

/// The header's roots, as ranges of `bytes`.
fn header_roots(bytes: &[u8], header: Range<usize>) -> Result<Vec<Range<usize>>, FirehoseError> {
    let base = header.start;
    let value = dag_cbor::decode(&bytes[header])?;
    let map = value.as_map().ok_or(car_error("header is not a map"))?;
    if map.get("version").and_then(Value::as_int) != Some(CAR_VERSION) {
        return Err(car_error("not a CAR v1"));
    }
    let Some(Value::Array(roots)) = map.get("roots") else {
        return Err(car_error("header has no roots"));
    };
    roots
        .iter()
        .map(|root| {
            let cid = root.as_link().ok_or(car_error("a root is not a CID"))?;
            // The CID borrows from `bytes`: its offset is its position.
            let offset = cid.as_bytes().as_ptr() as usize - bytes.as_ptr() as usize;
            debug_assert!(offset >= base);
            Ok(offset..offset + cid.as_bytes().len())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::cid::CidBuf;
    use super::*;
    use crate::firehose::test_vectors::REPO_CAR;

    #[test]
    fn reads_a_real_repository_export() {
        let car = Car::parse(REPO_CAR.to_vec()).unwrap();
        let roots: Vec<_> = car.roots().collect();
        assert_eq!(roots.len(), 1);
        let commit = car.get(roots[0]).expect("the root is a block");
        assert!(roots[0].is_dag_cbor_of(commit));
        assert!(car.blocks().count() > 23, "records and MST nodes");
        for (cid, block) in car.blocks() {
            assert!(cid.is_dag_cbor_of(block), "{cid}");
            assert_eq!(car.get(cid), Some(block));
        }
        assert_eq!(car.len(), REPO_CAR.len());
        assert_eq!(car.get(CidBuf::dag_cbor_of(b"absent").as_cid()), None);
    }

    /// A CAR of `blocks` with `root` as its root.
    fn car_of(root: &CidBuf, blocks: &[&[u8]]) -> Vec<u8> {
        let mut header = vec![0xa2, 0x65];
        header.extend_from_slice(b"roots");
        header.extend_from_slice(&[0x81, 0xd8, 0x2a, 0x58, 37, 0x00]);
        header.extend_from_slice(root.as_cid().as_bytes());
        header.push(0x67);
        header.extend_from_slice(b"version");
        header.push(0x01);
        let mut out = vec![header.len() as u8];
        out.extend_from_slice(&header);
        for block in blocks {
            let cid = CidBuf::dag_cbor_of(block);
            out.push((36 + block.len()) as u8);
            out.extend_from_slice(cid.as_cid().as_bytes());
            out.extend_from_slice(block);
        }
        out
    }

    #[test]
    fn finds_blocks_by_cid() {
        let blocks: [&[u8]; 3] = [&[0x01], &[0x02], &[0x63, b'a', b'b', b'c']];
        let root = CidBuf::dag_cbor_of(&[0x02]);
        let car = Car::parse(car_of(&root, &blocks)).unwrap();
        assert_eq!(car.roots().collect::<Vec<_>>(), vec![root.as_cid()]);
        for block in blocks {
            assert_eq!(car.get(CidBuf::dag_cbor_of(block).as_cid()), Some(block));
        }
    }

    #[test]
    fn refuses_broken_archives() {
        let root = CidBuf::dag_cbor_of(&[0x01]);
        let good = car_of(&root, &[&[0x01]]);
        let header_end = 1 + good[0] as usize;
        for end in (1..good.len()).filter(|&end| end != header_end) {
            assert!(Car::parse(good[..end].to_vec()).is_err(), "cut at {end}");
        }
        // Cut between sections, it is an archive of fewer blocks.
        assert_eq!(
            Car::parse(good[..header_end].to_vec())
                .unwrap()
                .blocks()
                .count(),
            0
        );
        // The header's last byte is its version.
        let mut version_2 = good.clone();
        version_2[good[0] as usize] = 0x02;
        assert_eq!(Car::parse(version_2), Err(car_error("not a CAR v1")));
        let mut empty_section = good.clone();
        empty_section.push(0x00);
        assert_eq!(
            Car::parse(empty_section),
            Err(car_error("an empty section"))
        );
        let mut huge = good.clone();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(
            Car::parse(huge),
            Err(car_error("a section runs past the end"))
        );
        let mut not_cid = good;
        not_cid.extend_from_slice(&[0x02, 0x12, 0x20]);
        assert_eq!(
            Car::parse(not_cid),
            Err(car_error("a block's CID is not a CIDv1"))
        );
        assert_eq!(Car::parse(Vec::new()), Err(car_error("no header")));
        assert!(matches!(
            Car::parse(vec![0x01, 0xf7]),
            Err(FirehoseError::Cbor(_))
        ));
    }
}

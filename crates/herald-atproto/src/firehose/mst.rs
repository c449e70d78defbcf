//! The Merkle Search Tree that maps a repository's keys to its records.
//!
//! A commit's `data` names the tree's root node. A node is
//! `{l: CID|null, e: [{p, k, v, t: CID|null}]}`: `l` the subtree of keys
//! before the first entry; each entry a key (its first `p` bytes shared
//! with the previous entry's key, then the bytes `k`), the record CID `v`,
//! and `t`, the subtree of keys between it and the next entry. A key's
//! layer is the number of leading zero bit-pairs of its SHA-256, so the
//! shape depends on the keys alone (repository spec).
//!
//! [`records`] lists a repository by walking its tree: the record list of
//! a full export (`getRepo`, the CAR a `#sync` asks for). Walking checks
//! that keys only increase, so a tree that lies about its order is refused
//! rather than listed.

use super::FirehoseError;
use super::car::Car;
use super::cid::Cid;
use super::dag_cbor::{self, Map, Value};

/// A SHA-256 has 128 bit-pairs, so no key sits above layer 128: a deeper
/// walk is a tree built to exhaust the stack.
const MAX_LAYERS: usize = 128;

fn mst_error(why: &'static str) -> FirehoseError {
    FirehoseError::Mst(why)
}

/// Every `(collection/rkey, record CID)` of the tree rooted at `root`, in
/// key order, read from `car`.
pub fn records<'c>(car: &'c Car, root: Cid<'_>) -> Result<Vec<(String, Cid<'c>)>, FirehoseError> {
    let mut out = Vec::new();
    walk(car, root, 0, &mut out)?;
    Ok(out)
}

fn walk<'c>(
    car: &'c Car,
    node: Cid<'_>,
    depth: usize,
    out: &mut Vec<(String, Cid<'c>)>,
) -> Result<(), FirehoseError> {
    if depth > MAX_LAYERS {
        return Err(mst_error("tree deeper than any key's layer"));
    }
    let block = car
        .get(node)
        .ok_or_else(|| FirehoseError::MissingBlock(node.to_string()))?;
    let value = dag_cbor::decode(block)?;
    let map = value.as_map().ok_or(mst_error("node is not a map"))?;
    if let Some(left) = subtree(map, "l")? {
        walk(car, left, depth + 1, out)?;
    }
    let Some(Value::Array(entries)) = map.get("e") else {
        return Err(mst_error("node has no entries array"));
    };
    let mut key: Vec<u8> = Vec::new();
    for entry in entries {
        let entry = entry.as_map().ok_or(mst_error("entry is not a map"))?;
        let shared = entry
            .get("p")
            .and_then(Value::as_int)
            .and_then(|p| usize::try_from(p).ok())
            .filter(|&p| p <= key.len())
            .ok_or(mst_error(
                "entry prefix length is not one of the previous key",
            ))?;
        let suffix = entry
            .get("k")
            .and_then(Value::as_bytes)
            .ok_or(mst_error("entry key is not bytes"))?;
        key.truncate(shared);
        key.extend_from_slice(suffix);
        let record = entry
            .get("v")
            .and_then(Value::as_link)
            .ok_or(mst_error("entry value is not a CID"))?;
        let text = String::from_utf8(key.clone()).map_err(|_| mst_error("key is not UTF-8"))?;
        if out.last().is_some_and(|(previous, _)| *previous >= text) {
            return Err(mst_error("keys out of order"));
        }
        out.push((text, record));
        if let Some(right) = subtree(entry, "t")? {
            walk(car, right, depth + 1, out)?;
        }
    }
    Ok(())
}

/// The subtree link `key` of a node or entry: a CID, null, or absent.
fn subtree<'a>(map: &Map<'a>, key: &str) -> Result<Option<Cid<'a>>, FirehoseError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Link(cid)) => Ok(Some(*cid)),
        Some(_) => Err(mst_error("subtree link is not a CID")),
    }
}

/// Building trees, for tests and for frames made by `test_support`.
#[cfg(any(test, feature = "test-support"))]
pub mod build {
    use serde_json::{Value, json};
    use sha2::{Digest, Sha256};

    use super::super::cid::CidBuf;
    use super::super::encode;

    /// A key's layer: leading zero bit-pairs of its SHA-256 (fanout 4).
    pub fn layer(key: &str) -> usize {
        let mut zeros = 0;
        for byte in Sha256::digest(key.as_bytes()) {
            zeros += byte.leading_zeros() as usize;
            if byte != 0 {
                break;
            }
        }
        zeros / 2
    }

    /// The tree of `entries` (sorted by key, keys unique): its root CID and
    /// every node block.
    pub fn tree(entries: &[(String, CidBuf)]) -> (CidBuf, Vec<(CidBuf, Vec<u8>)>) {
        let layers: Vec<usize> = entries.iter().map(|(k, _)| layer(k)).collect();
        let top = layers.iter().copied().max().unwrap_or(0);
        let mut blocks = Vec::new();
        let root = node(entries, &layers, top, &mut blocks);
        (root, blocks)
    }

    /// The node at `layer` holding `entries`, whose layers are at most it.
    fn node(
        entries: &[(String, CidBuf)],
        layers: &[usize],
        layer: usize,
        blocks: &mut Vec<(CidBuf, Vec<u8>)>,
    ) -> CidBuf {
        let below = |from: usize, to: usize, blocks: &mut Vec<(CidBuf, Vec<u8>)>| {
            if from == to || layer == 0 {
                Value::Null
            } else {
                encode::link(&node(
                    &entries[from..to],
                    &layers[from..to],
                    layer - 1,
                    blocks,
                ))
            }
        };
        let here: Vec<usize> = (0..entries.len()).filter(|&i| layers[i] == layer).collect();
        let left = below(0, here.first().copied().unwrap_or(entries.len()), blocks);
        let mut previous: &[u8] = &[];
        let mut written = Vec::new();
        for (n, &i) in here.iter().enumerate() {
            let key = entries[i].0.as_bytes();
            let shared = key.iter().zip(previous).take_while(|(a, b)| a == b).count();
            let next = here.get(n + 1).copied().unwrap_or(entries.len());
            written.push(json!({
                "k": encode::bytes(&key[shared..]),
                "p": shared,
                "t": below(i + 1, next, blocks),
                "v": encode::link(&entries[i].1),
            }));
            previous = key;
        }
        let (cid, bytes) = encode::block(&json!({"e": written, "l": left}))
            .expect("an MST node is plain DAG-CBOR");
        blocks.push((cid.clone(), bytes));
        cid
    }
}

#[cfg(test)]
mod tests {
    use super::build::tree;
    use super::*;
    use crate::firehose::cid::CidBuf;
    use crate::firehose::test_vectors::{
        REPO_CAR, REPO_DATA_CID, REPO_RECORDS, car_with, repo_commit_fields,
    };

    fn expected_records() -> Vec<(String, String)> {
        REPO_RECORDS
            .lines()
            .map(|line| {
                let (key, cid) = line.split_once('\t').unwrap();
                (key.to_owned(), cid.to_owned())
            })
            .collect()
    }

    #[test]
    fn walks_a_real_repository_to_the_records_an_independent_tool_lists() {
        let car = Car::parse(REPO_CAR.to_vec()).unwrap();
        let (_, data, _) = repo_commit_fields(&car);
        assert_eq!(data, REPO_DATA_CID);
        let data = CidBuf::parse_str(&data).unwrap();
        let listed: Vec<(String, String)> = records(&car, data.as_cid())
            .unwrap()
            .into_iter()
            .map(|(k, c)| (k, c.to_string()))
            .collect();
        assert_eq!(listed, expected_records());
    }

    #[test]
    fn builds_the_same_tree_as_the_real_repository() {
        let entries: Vec<(String, CidBuf)> = expected_records()
            .into_iter()
            .map(|(k, c)| (k, CidBuf::parse_str(&c).unwrap()))
            .collect();
        let (root, _) = tree(&entries);
        assert_eq!(root.to_string(), REPO_DATA_CID);
    }

    #[test]
    fn a_built_tree_walks_back_to_its_entries() {
        let entries: Vec<(String, CidBuf)> = (0..300)
            .map(|i| {
                let key = format!("app.bsky.feed.like/3k{i:05}");
                let cid = CidBuf::dag_cbor_of(key.as_bytes());
                (key, cid)
            })
            .collect();
        let (root, blocks) = tree(&entries);
        assert!(blocks.len() > 3, "several layers");
        let car = Car::parse(car_with(&root, &blocks)).unwrap();
        let walked: Vec<(String, CidBuf)> = records(&car, root.as_cid())
            .unwrap()
            .into_iter()
            .map(|(k, c)| (k, c.to_owned()))
            .collect();
        assert_eq!(walked, entries);
        let (empty, blocks) = tree(&[]);
        let car = Car::parse(car_with(&empty, &blocks)).unwrap();
        assert_eq!(records(&car, empty.as_cid()).unwrap(), vec![]);
    }

    #[test]
    fn refuses_trees_that_are_broken_or_lie() {
        let record = CidBuf::dag_cbor_of(b"r");
        let node = |value: serde_json::Value| crate::firehose::encode::block(&value).unwrap();
        let entry = |p: usize, k: &[u8]| {
            serde_json::json!({"k": crate::firehose::encode::bytes(k), "p": p, "t": null,
                "v": crate::firehose::encode::link(&record)})
        };
        for (value, why) in [
            (
                serde_json::json!({"e": [entry(0, b"b"), entry(0, b"a")], "l": null}),
                "keys out of order",
            ),
            (
                serde_json::json!({"e": [entry(3, b"a")], "l": null}),
                "entry prefix length is not one of the previous key",
            ),
            (
                serde_json::json!({"e": [entry(0, &[0xff])], "l": null}),
                "key is not UTF-8",
            ),
            (serde_json::json!({"l": null}), "node has no entries array"),
            (
                serde_json::json!({"e": [], "l": 7}),
                "subtree link is not a CID",
            ),
            (serde_json::json!([]), "node is not a map"),
        ] {
            let (cid, bytes) = node(value);
            let car = Car::parse(car_with(&cid, &[(cid.clone(), bytes)])).unwrap();
            assert_eq!(records(&car, cid.as_cid()), Err(mst_error(why)));
        }
        // A link to a block the archive lacks.
        let (cid, bytes) =
            node(serde_json::json!({"e": [], "l": crate::firehose::encode::link(&record)}));
        let car = Car::parse(car_with(&cid, &[(cid.clone(), bytes)])).unwrap();
        assert_eq!(
            records(&car, cid.as_cid()),
            Err(FirehoseError::MissingBlock(record.to_string()))
        );
    }
}

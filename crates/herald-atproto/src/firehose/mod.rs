//! The authenticated firehose, `com.atproto.sync.subscribeRepos`
//! (atproto.md §9): decoding its frames, verifying its commits, and
//! turning them into Jetstream v1 events for the rules.
//!
//! - [`frame`]: a WebSocket frame's header and body ([`decode_frame`]).
//! - [`dag_cbor`], [`cid`], [`car`]: the encodings inside, read by our own
//!   strict reader (its module says why not a crate).
//! - [`mst`]: listing a repository's records from its tree.
//! - [`verify`]: whether a commit is signed by its repository's key, new,
//!   and whole ([`CommitVerifier`]).
//! - [`jetstream_json`]: the Jetstream v1 events a message stands for
//!   ([`jetstream_events`]), so the firehose feeds the Jetstream pipeline.
//!
//! Every frame comes from the network, so nothing here trusts it: limits
//! are checked before copying, every error is typed, and no input makes
//! the decoder panic.

pub mod car;
pub mod cid;
pub mod dag_cbor;
#[cfg(any(test, feature = "test-support"))]
pub mod encode;
pub mod frame;
pub mod jetstream_json;
pub mod mst;
pub mod verify;

pub use frame::{Account, Action, Commit, FirehoseMessage, Identity, RepoOp, Sync, decode_frame};
pub use jetstream_json::jetstream_events;
pub use verify::{CommitVerifier, VerifyFailure};

/// Largest frame read: the event-stream spec's 5 MB.
pub const MAX_FRAME_BYTES: usize = 5_000_000;
/// Largest CAR in a `#commit` or `#sync` (the lexicon's `blocks` maxLength).
pub const MAX_BLOCKS_BYTES: usize = 2_000_000;
/// Most operations in one commit (the lexicon's `ops` maxLength).
pub const MAX_OPS: usize = 200;
/// Largest record (repository spec: 1 MB); no block of a commit may pass it.
pub const MAX_RECORD_BYTES: usize = 1_000_000;

/// Why a frame, or a part of it, could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirehoseError {
    #[error("DAG-CBOR: {0}")]
    Cbor(#[from] dag_cbor::CborError),
    #[error("CAR: {0}")]
    Car(&'static str),
    #[error("MST: {0}")]
    Mst(&'static str),
    #[error("{what} of {size} is over the limit of {limit}")]
    TooLarge {
        what: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("{0} is not a map")]
    NotAMap(&'static str),
    #[error("{t}: {field} {why}")]
    Field {
        t: &'static str,
        field: &'static str,
        why: &'static str,
    },
    #[error("block {0} is not in the CAR")]
    MissingBlock(String),
}

/// The real repository export of the shared fixtures (fixtures README).
#[cfg(test)]
pub(crate) mod test_vectors {
    use super::car::Car;
    use super::cid::CidBuf;
    use super::dag_cbor::{self, Value};

    pub const REPO_CAR: &[u8] = include_bytes!("../../../../../shared/fixtures/atproto/repo.car");
    /// `collection/rkey<TAB>CID`, as indigo's `goat repo ls` lists `REPO_CAR`.
    pub const REPO_RECORDS: &str =
        include_str!("../../../../../shared/fixtures/atproto/repo_car_expected_records.tsv");
    /// `goat repo inspect` of `REPO_CAR`.
    pub const REPO_COMMIT: &str =
        include_str!("../../../../../shared/fixtures/atproto/repo_car_expected_commit.txt");
    pub const REPO_DATA_CID: &str = "bafyreidigqr65jj2zsmitco3fcuag6pi7std6quxa2bcp2xrpin44ikzsy";

    /// The root commit's (did, data CID, rev).
    pub fn repo_commit_fields(car: &Car) -> (String, String, String) {
        let root = car.roots().next().expect("a root");
        let value = dag_cbor::decode(car.get(root).expect("the commit block")).unwrap();
        let map = value.as_map().unwrap();
        let text = |k| map.get(k).and_then(Value::as_text).unwrap().to_owned();
        let data = map
            .get("data")
            .and_then(Value::as_link)
            .unwrap()
            .to_string();
        (text("did"), data, text("rev"))
    }

    /// A CAR with `root` and `blocks`.
    pub fn car_with(root: &CidBuf, blocks: &[(CidBuf, Vec<u8>)]) -> Vec<u8> {
        crate::test_support::firehose::car(root, blocks)
    }

    #[test]
    fn the_commit_is_the_one_goat_inspects() {
        let car = Car::parse(REPO_CAR.to_vec()).unwrap();
        let (did, data, rev) = repo_commit_fields(&car);
        for expected in [
            format!("DID: {did}"),
            format!("Data CID: {data}"),
            format!("Revision: {rev}"),
            "ATProto Repo Spec Version: 3".to_owned(),
        ] {
            assert!(REPO_COMMIT.lines().any(|l| l == expected), "{expected}");
        }
    }
}

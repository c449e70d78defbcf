//! The hasher of the maps the Jetstream hot path reads for every event.
//!
//! Their keys come from the network (DIDs, record URIs), so the hash must
//! be keyed: whoever writes records must not be able to pick keys that
//! collide and turn every look-up into a walk of one long chain. std's
//! SipHash is keyed but costs more than the rest of a look-up; foldhash is
//! several times faster on these short keys. Its own random seed comes
//! from address-space layout and the clock, which it does not claim resists
//! HashDoS, so here both of its seeds are drawn from std's `RandomState`,
//! whose keys come from the operating system's random source.

use std::hash::{BuildHasher, RandomState};
use std::sync::LazyLock;

use foldhash::SharedSeed;
use foldhash::fast::SeedableRandomState;

/// Drawn once per process; each map adds its own per-map seed.
static SHARED_SEED: LazyLock<SharedSeed> = LazyLock::new(|| SharedSeed::from_u64(os_random()));

/// 64 bits no one outside the process can predict: SipHash, keyed by the
/// OS's random source, of a constant.
fn os_random() -> u64 {
    RandomState::new().hash_one(0_u8)
}

/// A `BuildHasher` for maps keyed by what the network sends.
#[derive(Debug, Clone)]
pub struct KeyedHash(SeedableRandomState);

impl Default for KeyedHash {
    fn default() -> Self {
        Self(SeedableRandomState::with_seed(os_random(), &SHARED_SEED))
    }
}

impl BuildHasher for KeyedHash {
    type Hasher = <SeedableRandomState as BuildHasher>::Hasher;

    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_map_hashes_differently() {
        let did = "did:plc:vfnmgxg2yscfliemmcxzyfyh";
        let (a, b) = (KeyedHash::default(), KeyedHash::default());
        assert_eq!(a.hash_one(did), a.clone().hash_one(did));
        assert_ne!(a.hash_one(did), b.hash_one(did));
    }
}

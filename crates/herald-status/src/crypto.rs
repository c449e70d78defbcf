//! The primitives Status builds on, each in the exact form status-go uses.
//!
//! - **Keccak-256** is the pre-standard Keccak (go-ethereum's `Keccak256`),
//!   not SHA3-256: the two differ in padding and give different digests.
//! - **SHAKE-256** always with a 64-byte output (`common.Shake256`): hashed
//!   keys, chat ids, request ids.
//! - **Recoverable signatures** are go-ethereum's `R ‖ S ‖ V` with `V` the
//!   bare recovery id (0 or 1, never 27/28), over a 32-byte digest the
//!   caller computes; the signer is recovered, never sent.
//! - **ECDH** is the raw shared x-coordinate (`ecies.GenerateShared` with no
//!   KDF), used directly as an AES-256 key by registrations and tokens.
//! - **AES-256-GCM nonce first** (`gcm.Seal(nonce, nonce, …)`) for those
//!   blobs; Waku's symmetric payloads put the nonce last (`waku_payload`).

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use k256::elliptic_curve::sec1::ToSec1Point;
use k256::{PublicKey, SecretKey};
use rand::RngExt;
use sha3::digest::{ExtendableOutput, Update};
use sha3::{Digest, Keccak256, Shake256};

/// `R (32) ‖ S (32) ‖ V (1)`.
pub const SIGNATURE_LEN: usize = 65;
/// AES-GCM's standard 96-bit nonce, as Go's `cipher.NewGCM` uses.
pub const GCM_NONCE_LEN: usize = 12;
/// AES-GCM's full 128-bit tag.
pub const GCM_TAG_LEN: usize = 16;

/// Why a signature or a ciphertext was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("a recoverable signature is 65 bytes (R ‖ S ‖ V), got {0}")]
    SignatureLength(usize),
    #[error("a signature's recovery id (V) is 0 to 3, got {0}")]
    RecoveryId(u8),
    #[error("the signature's R or S is zero or not below the curve order")]
    SignatureScalars,
    #[error("no public key recovers from this signature and digest")]
    Unrecoverable,
    #[error("an AES-GCM blob holds at least a 12-byte nonce and a 16-byte tag, got {0} bytes")]
    CiphertextLength(usize),
    #[error("AES-GCM authentication failed: wrong key or altered ciphertext")]
    Decryption,
}

/// Legacy Keccak-256 (go-ethereum's `crypto.Keccak256`).
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// SHAKE-256 read to 64 bytes (status-go's `common.Shake256`).
pub fn shake256_64(data: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    let mut shake = Shake256::default();
    shake.update(data);
    shake.finalize_xof_into(&mut out);
    out
}

/// The 33-byte SEC1 compressed key (`crypto.CompressPubkey`).
pub fn compress33(key: &PublicKey) -> [u8; 33] {
    key.to_compressed_point().into()
}

/// The 65-byte SEC1 uncompressed key, `0x04 ‖ X ‖ Y` (`crypto.FromECDSAPub`).
pub fn uncompressed65(key: &PublicKey) -> [u8; 65] {
    key.to_uncompressed_point().into()
}

/// The name a Status key goes by on a push-notification server:
/// `SHAKE256(compress33(key))`, in registrations' storage, queries and
/// notification requests.
pub fn hashed_key(key: &PublicKey) -> [u8; 64] {
    shake256_64(&compress33(key))
}

/// Signs a 32-byte digest the go-ethereum way: `R ‖ S ‖ V`, low S, `V` the
/// recovery id. The nonce is RFC 6979's, so the same key and digest always
/// give the same signature.
pub fn sign_recoverable(key: &SecretKey, digest: &[u8; 32]) -> [u8; 65] {
    let (signature, recovery_id) = SigningKey::from(key).sign_prehash_recoverable(digest);
    let mut out = [0u8; SIGNATURE_LEN];
    out[..64].copy_from_slice(&signature.to_bytes());
    out[64] = recovery_id.to_byte();
    out
}

/// The public key that signed `digest`, from a 65-byte `R ‖ S ‖ V`
/// signature. Like go-ethereum's `SigToPub`, `V` may be 0 to 3 and a high S
/// is accepted (recovery is defined for it; the signer could have produced
/// either form).
pub fn recover(digest: &[u8; 32], signature: &[u8]) -> Result<PublicKey, CryptoError> {
    let bytes: &[u8; SIGNATURE_LEN] = signature
        .try_into()
        .map_err(|_| CryptoError::SignatureLength(signature.len()))?;
    let recovery_id = RecoveryId::from_byte(bytes[64]).ok_or(CryptoError::RecoveryId(bytes[64]))?;
    let signature =
        Signature::from_slice(&bytes[..64]).map_err(|_| CryptoError::SignatureScalars)?;
    VerifyingKey::recover_from_prehash(digest, &signature, recovery_id)
        .map(PublicKey::from)
        .map_err(|_| CryptoError::Unrecoverable)
}

/// The raw ECDH shared secret: the x-coordinate of `secret · public`,
/// big-endian, 32 bytes, with no KDF (`ecies.GenerateShared(…, 16, 16)`).
pub fn ecdh_x(secret: &SecretKey, public: &PublicKey) -> [u8; 32] {
    k256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), public.as_affine())
        .raw_secret_bytes()
        .to_owned()
        .into()
}

/// Opens `nonce (12) ‖ ciphertext ‖ tag (16)` under an AES-256-GCM key, no
/// associated data: a registration's payload, an `allowed_key_list` entry.
pub fn open_nonce_first(key: &[u8; 32], blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if blob.len() < GCM_NONCE_LEN + GCM_TAG_LEN {
        return Err(CryptoError::CiphertextLength(blob.len()));
    }
    let (nonce, sealed) = blob.split_at(GCM_NONCE_LEN);
    gcm_open(key, nonce, sealed)
}

/// Seals `plaintext` as `nonce (12) ‖ ciphertext ‖ tag (16)` with a fresh
/// random nonce.
pub fn seal_nonce_first(key: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let nonce: [u8; GCM_NONCE_LEN] = rand::rng().random();
    let mut blob = nonce.to_vec();
    blob.extend(gcm_seal(key, &nonce, plaintext));
    blob
}

/// AES-256-GCM of `plaintext` under `nonce`: `ciphertext ‖ tag`. Shared with
/// `waku_payload`, which lays the nonce out after it.
pub(crate) fn gcm_seal(key: &[u8; 32], nonce: &[u8; GCM_NONCE_LEN], plaintext: &[u8]) -> Vec<u8> {
    Aes256Gcm::new(&(*key).into())
        .encrypt(&Nonce::from(*nonce), plaintext)
        .expect("AES-GCM encrypts any plaintext below 64 GiB")
}

/// Opens `ciphertext ‖ tag` under `nonce`; `sealed` holds at least the tag
/// and `nonce` is 12 bytes (callers check both first).
pub(crate) fn gcm_open(
    key: &[u8; 32],
    nonce: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let nonce: [u8; GCM_NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| CryptoError::CiphertextLength(nonce.len() + sealed.len()))?;
    Aes256Gcm::new(&(*key).into())
        .decrypt(&Nonce::from(nonce), sealed)
        .map_err(|_| CryptoError::Decryption)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_slice(&[byte; 32]).unwrap()
    }

    #[test]
    fn keccak256_is_the_legacy_keccak_not_sha3() {
        // The empty-input digests of the two differ; go-ethereum's is c5d2….
        assert_eq!(
            hex::encode(&keccak256(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
        assert_eq!(
            hex::encode(&keccak256(b"abc")),
            "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
        );
    }

    #[test]
    fn shake256_reads_64_bytes() {
        // FIPS 202's SHAKE-256 of the empty string, first 64 bytes.
        assert_eq!(
            hex::encode(&shake256_64(b"")),
            "46b9dd2b0ba88d13233b3feb743eeb243fcd52ea62b81b82b50c27646ed5762f\
             d75dc4ddd8c0f200cb05019d67b592f6fc821c49479ab48640292eacb3b7c4be"
        );
    }

    #[test]
    fn key_encodings_are_sec1() {
        // The generator point is the public key of the secret 1.
        let mut one = [0u8; 32];
        one[31] = 1;
        let public = SecretKey::from_slice(&one).unwrap().public_key();
        let gx = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
        let gy = "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8";
        assert_eq!(hex::encode(&compress33(&public)), format!("02{gx}"));
        assert_eq!(hex::encode(&uncompressed65(&public)), format!("04{gx}{gy}"));
        assert_eq!(hashed_key(&public), shake256_64(&compress33(&public)));
    }

    #[test]
    fn a_signature_recovers_its_signer_and_only_for_its_digest() {
        let signer = key(7);
        let digest = keccak256(b"payload");
        let signature = sign_recoverable(&signer, &digest);
        assert!(signature[64] <= 1);
        assert_eq!(recover(&digest, &signature).unwrap(), signer.public_key());
        assert_eq!(sign_recoverable(&signer, &digest), signature, "RFC 6979");

        let other = keccak256(b"other payload");
        assert_ne!(recover(&other, &signature).ok(), Some(signer.public_key()));
        let mut flipped = signature;
        flipped[64] ^= 1;
        assert_ne!(recover(&digest, &flipped).ok(), Some(signer.public_key()));
    }

    #[test]
    fn signatures_are_low_s_and_a_high_s_twin_recovers_the_same_key() {
        // n - s with the recovery id's parity flipped is the same signature's
        // other form; go-ethereum recovers it, and so do we.
        let signer = key(9);
        let digest = keccak256(b"high s");
        let low = sign_recoverable(&signer, &digest);
        let signature = Signature::from_slice(&low[..64]).unwrap();
        assert!(signature.normalize_s() == signature, "k256 signs low S");
        let (r, s) = signature.split_scalars();
        let high = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        let mut twin = [0u8; 65];
        twin[..64].copy_from_slice(&high.to_bytes());
        twin[64] = low[64] ^ 1;
        assert_eq!(recover(&digest, &twin).unwrap(), signer.public_key());
    }

    #[test]
    fn malformed_signatures_are_refused_with_a_reason() {
        let digest = keccak256(b"x");
        let good = sign_recoverable(&key(3), &digest);
        assert_eq!(
            recover(&digest, &good[..64]),
            Err(CryptoError::SignatureLength(64))
        );
        assert_eq!(recover(&digest, &[]), Err(CryptoError::SignatureLength(0)));
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(
            recover(&digest, &long),
            Err(CryptoError::SignatureLength(66))
        );

        for v in [4u8, 27, 28, 255] {
            let mut bad = good;
            bad[64] = v;
            assert_eq!(recover(&digest, &bad), Err(CryptoError::RecoveryId(v)));
        }
        let mut zero_r = good;
        zero_r[..32].fill(0);
        assert_eq!(
            recover(&digest, &zero_r),
            Err(CryptoError::SignatureScalars)
        );
        let mut huge_s = good;
        huge_s[32..64].fill(0xff);
        assert_eq!(
            recover(&digest, &huge_s),
            Err(CryptoError::SignatureScalars)
        );
    }

    #[test]
    fn an_r_that_is_no_curve_point_recovers_nothing() {
        // x = 5 has no point on secp256k1 (5³ + 7 = 132 is not a square mod p).
        let mut signature = [0u8; 65];
        signature[31] = 5;
        signature[63] = 1;
        assert_eq!(
            recover(&keccak256(b"x"), &signature),
            Err(CryptoError::Unrecoverable)
        );
    }

    #[test]
    fn ecdh_is_symmetric_and_the_raw_x_coordinate() {
        let alice = key(1);
        let bob = key(2);
        let shared = ecdh_x(&alice, &bob.public_key());
        assert_eq!(shared, ecdh_x(&bob, &alice.public_key()));
        // 0x0101…01 · (0x0202…02 · G) is the point whose x this must be:
        // the product of the two scalars times G, computed another way.
        let product = alice.to_nonzero_scalar().as_ref() * bob.to_nonzero_scalar().as_ref();
        let point = PublicKey::from_secret_scalar(&k256::NonZeroScalar::new(product).unwrap());
        assert_eq!(shared[..], uncompressed65(&point)[1..33]);
    }

    #[test]
    fn nonce_first_blobs_round_trip_and_refuse_tampering() {
        let key = [0x42u8; 32];
        let blob = seal_nonce_first(&key, b"access token");
        assert_eq!(blob.len(), GCM_NONCE_LEN + 12 + GCM_TAG_LEN);
        assert_eq!(open_nonce_first(&key, &blob).unwrap(), b"access token");
        assert_ne!(seal_nonce_first(&key, b"access token"), blob, "fresh nonce");

        for index in [0, GCM_NONCE_LEN, blob.len() - 1] {
            let mut tampered = blob.clone();
            tampered[index] ^= 1;
            assert_eq!(
                open_nonce_first(&key, &tampered),
                Err(CryptoError::Decryption)
            );
        }
        assert_eq!(
            open_nonce_first(&[0; 32], &blob),
            Err(CryptoError::Decryption)
        );
    }

    #[test]
    fn short_blobs_are_refused_before_decrypting() {
        let key = [1u8; 32];
        assert_eq!(
            open_nonce_first(&key, b"too short"),
            Err(CryptoError::CiphertextLength(9))
        );
        assert_eq!(
            open_nonce_first(&key, &[]),
            Err(CryptoError::CiphertextLength(0))
        );
        // Exactly a nonce and a tag: an empty plaintext's blob, the wrong tag.
        assert_eq!(
            open_nonce_first(&key, &[0; GCM_NONCE_LEN + GCM_TAG_LEN]),
            Err(CryptoError::Decryption)
        );
        let empty = seal_nonce_first(&key, b"");
        assert_eq!(open_nonce_first(&key, &empty).unwrap(), b"");
    }
}

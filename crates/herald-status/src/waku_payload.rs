//! Waku v1 payloads (26/WAKU2-PAYLOAD, `version = 1` Waku messages): how
//! Status encrypts and signs everything it sends over Waku.
//!
//! Inside the encryption the plaintext is
//! `flags (1) ‖ size (n, little-endian) ‖ data ‖ padding ‖ [signature (65)]`,
//! with `n = flags & 3` and the signature present when `flags & 4`. The
//! signature is `Sign(Keccak256(everything before it))`, taken after the
//! signature flag is set, and padding brings the whole to a multiple of 256
//! so sizes leak little. Around it, either ECIES to a public key
//! (`ecies`: personal and partitioned topics) or AES-256-GCM under a topic's
//! symmetric key laid out `ciphertext ‖ tag ‖ nonce (12)`: nonce **last**,
//! the opposite of `crypto::open_nonce_first`.
//!
//! status-go drops payloads without a signature, so everything sealed here
//! is signed. Opening reports the signer when there is one and leaves the
//! decision to the caller.

use k256::{PublicKey, SecretKey};
use rand::RngExt;

use crate::crypto::{self, CryptoError, GCM_NONCE_LEN, GCM_TAG_LEN, SIGNATURE_LEN};
use crate::ecies::{self, EciesError};

/// The largest payload opened or sealed: Status's maximum Waku message size
/// (`wakuv2` `MaxMessageSize`, 1 MiB). nwaku's own default (150 KiB) is
/// lower, so nothing larger can legitimately reach herald.
pub const MAX_PAYLOAD_LEN: usize = 1024 * 1024;
/// `flags & 3`: how many bytes the little-endian data size takes.
const SIZE_FIELD_MASK: u8 = 0b011;
/// `flags & 4`: a signature ends the plaintext.
const SIGNED_FLAG: u8 = 0b100;
/// The plaintext's length is padded to a multiple of this.
const PADDING_BLOCK: usize = 256;
// The size field has at most three bytes (the mask's two bits), so
// `encode`'s length cap must keep data below 16 MiB.
const _: () = assert!(MAX_PAYLOAD_LEN < 1 << 24);

/// A decrypted payload: the data, and who signed it if anyone did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub data: Vec<u8>,
    pub signer: Option<PublicKey>,
}

/// Why a payload could not be opened or sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the payload is {bytes} bytes, over the {max} Status allows")]
    TooLarge { bytes: usize, max: usize },
    #[error(transparent)]
    Ecies(#[from] EciesError),
    #[error("a symmetric payload holds at least a 16-byte tag and a 12-byte nonce, got {0} bytes")]
    SymmetricLength(usize),
    #[error("the symmetric payload does not decrypt: wrong key or altered ciphertext")]
    SymmetricDecryption,
    #[error("the decrypted payload is empty")]
    Empty,
    #[error("the payload's flags declare no size field")]
    NoSizeField,
    #[error("the payload ends inside its {0}")]
    Truncated(&'static str),
    #[error("the payload declares {declared} bytes of data but holds {available}")]
    SizeBeyondEnd { declared: usize, available: usize },
    #[error("the payload's signature: {0}")]
    Signature(CryptoError),
}

/// Opens a payload ECIES-encrypted to `secret`'s public key.
pub fn open_asymmetric(secret: &SecretKey, payload: &[u8]) -> Result<Opened, PayloadError> {
    check_len(payload.len())?;
    parse(&ecies::decrypt(secret, payload)?)
}

/// Opens a payload encrypted under a topic's symmetric key.
pub fn open_symmetric(key: &[u8; 32], payload: &[u8]) -> Result<Opened, PayloadError> {
    check_len(payload.len())?;
    if payload.len() < GCM_TAG_LEN + GCM_NONCE_LEN {
        return Err(PayloadError::SymmetricLength(payload.len()));
    }
    let (sealed, nonce) = payload.split_at(payload.len() - GCM_NONCE_LEN);
    let plaintext =
        crypto::gcm_open(key, nonce, sealed).map_err(|_| PayloadError::SymmetricDecryption)?;
    parse(&plaintext)
}

/// Signs `data` with `signer` and encrypts it to `recipient`.
pub fn seal_asymmetric(
    recipient: &PublicKey,
    data: &[u8],
    signer: &SecretKey,
) -> Result<Vec<u8>, PayloadError> {
    let plaintext = encode(data, signer, ecies::OVERHEAD)?;
    Ok(ecies::encrypt(recipient, &plaintext))
}

/// Signs `data` with `signer` and encrypts it under a symmetric key, with a
/// fresh random nonce after the ciphertext.
pub fn seal_symmetric(
    key: &[u8; 32],
    data: &[u8],
    signer: &SecretKey,
) -> Result<Vec<u8>, PayloadError> {
    let plaintext = encode(data, signer, GCM_TAG_LEN + GCM_NONCE_LEN)?;
    let nonce: [u8; GCM_NONCE_LEN] = rand::rng().random();
    let mut payload = crypto::gcm_seal(key, &nonce, &plaintext);
    payload.extend_from_slice(&nonce);
    Ok(payload)
}

fn check_len(bytes: usize) -> Result<(), PayloadError> {
    if bytes > MAX_PAYLOAD_LEN {
        return Err(PayloadError::TooLarge {
            bytes,
            max: MAX_PAYLOAD_LEN,
        });
    }
    Ok(())
}

/// The signed, padded plaintext of `data`; `overhead` is what encryption
/// adds, so that nothing is sealed that `open_*` would refuse as too large.
fn encode(data: &[u8], signer: &SecretKey, overhead: usize) -> Result<Vec<u8>, PayloadError> {
    let size_field_len = size_field_len(data.len());
    let unpadded = 1 + size_field_len + data.len() + SIGNATURE_LEN;
    // Always some padding, a whole block when already aligned, as go-waku and js-waku do.
    let padding = PADDING_BLOCK - unpadded % PADDING_BLOCK;
    check_len(unpadded + padding + overhead)?;

    let mut plaintext = Vec::with_capacity(unpadded + padding);
    // At most 3 after `check_len` (see the assertion above).
    plaintext.push(size_field_len as u8 | SIGNED_FLAG);
    plaintext.extend_from_slice(&data.len().to_le_bytes()[..size_field_len]);
    plaintext.extend_from_slice(data);
    let padding_start = plaintext.len();
    plaintext.resize(padding_start + padding, 0);
    rand::rng().fill(&mut plaintext[padding_start..]);
    let signature = crypto::sign_recoverable(signer, &crypto::keccak256(&plaintext));
    plaintext.extend_from_slice(&signature);
    Ok(plaintext)
}

/// The fewest little-endian bytes that hold `len` (at least one).
fn size_field_len(len: usize) -> usize {
    len.max(1).ilog2() as usize / 8 + 1
}

/// Reads a decrypted plaintext: signature (recovering the signer), size
/// field, data. The padding is random and not checked.
fn parse(plaintext: &[u8]) -> Result<Opened, PayloadError> {
    let (&flags, _) = plaintext.split_first().ok_or(PayloadError::Empty)?;
    let (body, signer) = if flags & SIGNED_FLAG != 0 {
        let signed_len = plaintext
            .len()
            .checked_sub(SIGNATURE_LEN)
            .filter(|&len| len > 1)
            .ok_or(PayloadError::Truncated("signature"))?;
        let (signed, signature) = plaintext.split_at(signed_len);
        let signer = crypto::recover(&crypto::keccak256(signed), signature)
            .map_err(PayloadError::Signature)?;
        (&signed[1..], Some(signer))
    } else {
        (&plaintext[1..], None)
    };

    let size_field_len = usize::from(flags & SIZE_FIELD_MASK);
    if size_field_len == 0 {
        return Err(PayloadError::NoSizeField);
    }
    if body.len() < size_field_len {
        return Err(PayloadError::Truncated("size field"));
    }
    let (size_field, rest) = body.split_at(size_field_len);
    let mut size = [0u8; 4];
    size[..size_field_len].copy_from_slice(size_field);
    let declared = usize::try_from(u32::from_le_bytes(size)).unwrap_or(usize::MAX);
    let data = rest.get(..declared).ok_or(PayloadError::SizeBeyondEnd {
        declared,
        available: rest.len(),
    })?;
    Ok(Opened {
        data: data.to_vec(),
        signer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_slice(&[byte; 32]).unwrap()
    }

    const SYM_KEY: [u8; 32] = [0x5a; 32];

    /// The plaintext inside a symmetric payload, for tests that inspect it.
    fn symmetric_plaintext(payload: &[u8]) -> Vec<u8> {
        let (sealed, nonce) = payload.split_at(payload.len() - GCM_NONCE_LEN);
        crypto::gcm_open(&SYM_KEY, nonce, sealed).unwrap()
    }

    /// Seals a hand-made plaintext the way `seal_symmetric` would.
    fn seal_plaintext(plaintext: &[u8]) -> Vec<u8> {
        let nonce = [7u8; GCM_NONCE_LEN];
        let mut payload = crypto::gcm_seal(&SYM_KEY, &nonce, plaintext);
        payload.extend_from_slice(&nonce);
        payload
    }

    /// A plaintext signed by `signer` after `flags`, `body` are laid out.
    fn signed(flags: u8, body: &[u8], signer: &SecretKey) -> Vec<u8> {
        let mut plaintext = vec![flags | SIGNED_FLAG];
        plaintext.extend_from_slice(body);
        let signature = crypto::sign_recoverable(signer, &crypto::keccak256(&plaintext));
        plaintext.extend_from_slice(&signature);
        plaintext
    }

    #[test]
    fn asymmetric_payloads_round_trip_with_their_signer() {
        let recipient = key(1);
        let signer = key(2);
        let payload = seal_asymmetric(&recipient.public_key(), b"registration", &signer).unwrap();
        let opened = open_asymmetric(&recipient, &payload).unwrap();
        assert_eq!(opened.data, b"registration");
        assert_eq!(opened.signer, Some(signer.public_key()));
        assert!(matches!(
            open_asymmetric(&key(3), &payload),
            Err(PayloadError::Ecies(EciesError::Tag))
        ));
    }

    #[test]
    fn symmetric_payloads_round_trip_with_the_nonce_last() {
        let signer = key(2);
        let payload = seal_symmetric(&SYM_KEY, b"query", &signer).unwrap();
        let opened = open_symmetric(&SYM_KEY, &payload).unwrap();
        assert_eq!(opened.data, b"query");
        assert_eq!(opened.signer, Some(signer.public_key()));
        // Nonce first would not decrypt: the layout is ciphertext ‖ tag ‖ nonce.
        assert!(crypto::open_nonce_first(&SYM_KEY, &payload).is_err());
        assert_eq!(
            open_symmetric(&[0; 32], &payload),
            Err(PayloadError::SymmetricDecryption)
        );
    }

    #[test]
    fn plaintexts_are_signed_flagged_and_padded_to_256() {
        let signer = key(4);
        for len in [0usize, 1, 185, 186, 187, 255, 256, 1000, 70_000] {
            let data = vec![0xa5; len];
            let plaintext = symmetric_plaintext(&seal_symmetric(&SYM_KEY, &data, &signer).unwrap());
            assert_eq!(plaintext.len() % PADDING_BLOCK, 0, "{len} bytes");
            assert_ne!(plaintext[0] & SIGNED_FLAG, 0);
            let size_len = usize::from(plaintext[0] & SIZE_FIELD_MASK);
            let expected = if len < 256 {
                1
            } else if len < 65_536 {
                2
            } else {
                3
            };
            assert_eq!(size_len, expected, "{len} bytes");
            let mut size = [0u8; 4];
            size[..size_len].copy_from_slice(&plaintext[1..1 + size_len]);
            assert_eq!(u32::from_le_bytes(size) as usize, len);
            // The signature covers everything before it, flags included.
            let (body, signature) = plaintext.split_at(plaintext.len() - SIGNATURE_LEN);
            let digest = crypto::keccak256(body);
            assert_eq!(
                crypto::recover(&digest, signature).unwrap(),
                signer.public_key()
            );
        }
    }

    #[test]
    fn an_aligned_plaintext_still_gets_a_whole_block_of_padding() {
        // 1 flag + 1 size + 189 data + 65 signature = 256: padding adds 256 more.
        let plaintext = symmetric_plaintext(&seal_symmetric(&SYM_KEY, &[1; 189], &key(4)).unwrap());
        assert_eq!(plaintext.len(), 512);
    }

    #[test]
    fn an_unsigned_payload_opens_without_a_signer() {
        // go-waku and js-waku accept them; status-go's caller drops them.
        let payload = seal_plaintext(&[0x01, 3, b'a', b'b', b'c', 0xee, 0xee]);
        let opened = open_symmetric(&SYM_KEY, &payload).unwrap();
        assert_eq!(opened.data, b"abc");
        assert_eq!(opened.signer, None);
    }

    #[test]
    fn a_signature_over_other_bytes_names_another_signer() {
        let signer = key(9);
        let mut plaintext = signed(0x01, &[2, b'h', b'i', 0, 0], &signer);
        plaintext[3] = b'o';
        let recovered = open_symmetric(&SYM_KEY, &seal_plaintext(&plaintext))
            .ok()
            .and_then(|opened| opened.signer);
        assert_ne!(recovered, Some(signer.public_key()));
    }

    #[test]
    fn broken_signatures_are_refused() {
        let signer = key(9);
        let mut bad_v = signed(0x01, &[2, b'h', b'i'], &signer);
        let last = bad_v.len() - 1;
        bad_v[last] = 27;
        assert_eq!(
            open_symmetric(&SYM_KEY, &seal_plaintext(&bad_v)),
            Err(PayloadError::Signature(CryptoError::RecoveryId(27)))
        );
        let mut zero_r = signed(0x01, &[2, b'h', b'i'], &signer);
        let r_start = zero_r.len() - SIGNATURE_LEN;
        zero_r[r_start..r_start + 32].fill(0);
        assert_eq!(
            open_symmetric(&SYM_KEY, &seal_plaintext(&zero_r)),
            Err(PayloadError::Signature(CryptoError::SignatureScalars))
        );
    }

    #[test]
    fn a_signed_flag_without_room_for_a_signature_is_truncated() {
        for len in [1usize, 2, SIGNATURE_LEN, SIGNATURE_LEN + 1] {
            let mut plaintext = vec![0u8; len];
            plaintext[0] = SIGNED_FLAG | 1;
            assert_eq!(
                open_symmetric(&SYM_KEY, &seal_plaintext(&plaintext)),
                Err(PayloadError::Truncated("signature")),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn wrong_size_flags_and_sizes_are_refused() {
        let cases: [(&[u8], PayloadError); 6] = [
            (&[], PayloadError::Empty),
            (&[0x00, 5, 1, 2, 3], PayloadError::NoSizeField),
            (&[0x02, 5], PayloadError::Truncated("size field")),
            (&[0x03], PayloadError::Truncated("size field")),
            (
                &[0x01, 5, b'a', b'b'],
                PayloadError::SizeBeyondEnd {
                    declared: 5,
                    available: 2,
                },
            ),
            (
                &[0x03, 0xff, 0xff, 0xff, 0],
                PayloadError::SizeBeyondEnd {
                    declared: 0x00ff_ffff,
                    available: 1,
                },
            ),
        ];
        for (plaintext, error) in cases {
            assert_eq!(
                open_symmetric(&SYM_KEY, &seal_plaintext(plaintext)),
                Err(error),
                "{plaintext:?}"
            );
        }
    }

    #[test]
    fn a_signed_payload_may_not_reach_into_its_signature() {
        // Size 66 would run over the 65 signature bytes; only the 2 before count.
        let plaintext = signed(0x01, &[66, b'x', b'y'], &key(3));
        assert_eq!(
            open_symmetric(&SYM_KEY, &seal_plaintext(&plaintext)),
            Err(PayloadError::SizeBeyondEnd {
                declared: 66,
                available: 2
            })
        );
    }

    #[test]
    fn high_flag_bits_are_ignored_as_go_waku_does() {
        // Bits 3 to 7 set, no signature, a one-byte size field.
        let payload = seal_plaintext(&[0xf9, 1, b'z']);
        assert_eq!(open_symmetric(&SYM_KEY, &payload).unwrap().data, b"z");
    }

    #[test]
    fn short_and_oversize_payloads_are_refused_before_decrypting() {
        assert_eq!(
            open_symmetric(&SYM_KEY, &[0; GCM_TAG_LEN + GCM_NONCE_LEN - 1]),
            Err(PayloadError::SymmetricLength(27))
        );
        assert_eq!(
            open_symmetric(&SYM_KEY, &[0; GCM_TAG_LEN + GCM_NONCE_LEN]),
            Err(PayloadError::SymmetricDecryption)
        );
        assert_eq!(
            open_asymmetric(&key(1), b"short"),
            Err(PayloadError::Ecies(EciesError::Length(5)))
        );
        let huge = vec![0u8; MAX_PAYLOAD_LEN + 1];
        let too_large = PayloadError::TooLarge {
            bytes: MAX_PAYLOAD_LEN + 1,
            max: MAX_PAYLOAD_LEN,
        };
        assert_eq!(open_symmetric(&SYM_KEY, &huge), Err(too_large.clone()));
        assert_eq!(open_asymmetric(&key(1), &huge), Err(too_large));
    }

    #[test]
    fn nothing_is_sealed_that_could_not_be_opened() {
        let signer = key(2);
        let limit = MAX_PAYLOAD_LEN - 2048;
        assert!(seal_symmetric(&SYM_KEY, &vec![0; limit], &signer).is_ok());
        let over = vec![0; MAX_PAYLOAD_LEN];
        assert!(matches!(
            seal_symmetric(&SYM_KEY, &over, &signer),
            Err(PayloadError::TooLarge { .. })
        ));
        assert!(matches!(
            seal_asymmetric(&key(1).public_key(), &over, &signer),
            Err(PayloadError::TooLarge { .. })
        ));
    }

    #[test]
    fn size_fields_take_the_fewest_bytes() {
        assert_eq!(size_field_len(0), 1);
        assert_eq!(size_field_len(255), 1);
        assert_eq!(size_field_len(256), 2);
        assert_eq!(size_field_len(65_535), 2);
        assert_eq!(size_field_len(65_536), 3);
        assert_eq!(size_field_len(MAX_PAYLOAD_LEN), 3);
    }
}

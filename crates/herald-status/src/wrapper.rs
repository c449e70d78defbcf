//! The `ApplicationMetadataMessage` every Status message travels in:
//! `{signature = 1, payload = 2, type = 3}` (status-go
//! `protocol/protobuf/application_metadata_message.proto`).
//!
//! The signature is `Sign(Keccak256(payload))` by the sender, who is
//! identified by **recovering** the key from it: there is no key field. A
//! push-notification server replies to this signer, never to the Waku
//! payload's (status-go signs the Waku layer with the identity key even when
//! the message itself comes from an ephemeral key). The message id that
//! queries and requests are answered and deduplicated by is
//! `Keccak256(uncompressed signer ‖ the wrapper's exact bytes)`
//! (`v1.MessageID`), so it is computed over the bytes as received, never a
//! re-encoding.

use k256::{PublicKey, SecretKey};
use prost::Message;

use crate::crypto::{self, CryptoError};

/// The wrapper types a push-notification server sends or receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum MessageType {
    ContactCodeAdvertisement = 15,
    Registration = 16,
    RegistrationResponse = 17,
    Query = 18,
    QueryResponse = 19,
    Request = 20,
    Response = 21,
}

impl MessageType {
    /// The type a wrapper's `type` field names, if it is one of these.
    pub fn from_wire(value: i32) -> Option<Self> {
        [
            Self::ContactCodeAdvertisement,
            Self::Registration,
            Self::RegistrationResponse,
            Self::Query,
            Self::QueryResponse,
            Self::Request,
            Self::Response,
        ]
        .into_iter()
        .find(|candidate| *candidate as i32 == value)
    }
}

/// A wrapper whose signature recovered a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMessage {
    /// The raw `type` field: other Status types arrive on the same topics
    /// and are the caller's to ignore (`MessageType::from_wire`).
    pub message_type: i32,
    pub payload: Vec<u8>,
    pub signer: PublicKey,
    /// `Keccak256(uncompressed65(signer) ‖ raw wrapper bytes)`.
    pub id: [u8; 32],
}

/// Why bytes are not a signed wrapper.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrapperError {
    #[error("not an ApplicationMetadataMessage: {0}")]
    Malformed(#[from] prost::DecodeError),
    #[error("the ApplicationMetadataMessage's signature: {0}")]
    Signature(CryptoError),
}

/// The protobuf itself; `type` stays an `i32` so unknown types decode.
#[derive(Clone, PartialEq, Message)]
struct ApplicationMetadataMessage {
    #[prost(bytes = "vec", tag = "1")]
    signature: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    payload: Vec<u8>,
    #[prost(int32, tag = "3")]
    r#type: i32,
}

/// Decodes a wrapper, recovers its signer and computes its message id.
pub fn unwrap_message(bytes: &[u8]) -> Result<AppMessage, WrapperError> {
    let message = ApplicationMetadataMessage::decode(bytes)?;
    let signer = crypto::recover(&crypto::keccak256(&message.payload), &message.signature)
        .map_err(WrapperError::Signature)?;
    Ok(AppMessage {
        message_type: message.r#type,
        id: message_id(&signer, bytes),
        payload: message.payload,
        signer,
    })
}

/// Wraps `payload` as `message_type`, signed by `key`.
pub fn wrap_message(message_type: MessageType, payload: Vec<u8>, key: &SecretKey) -> Vec<u8> {
    let signature = crypto::sign_recoverable(key, &crypto::keccak256(&payload));
    ApplicationMetadataMessage {
        signature: signature.to_vec(),
        payload,
        r#type: message_type as i32,
    }
    .encode_to_vec()
}

/// status-go's `v1.MessageID`.
pub fn message_id(signer: &PublicKey, raw_wrapper: &[u8]) -> [u8; 32] {
    let mut material = crypto::uncompressed65(signer).to_vec();
    material.extend_from_slice(raw_wrapper);
    crypto::keccak256(&material)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_slice(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_wrapped_message_unwraps_to_its_type_payload_and_signer() {
        let sender = key(3);
        let bytes = wrap_message(MessageType::Query, b"query bytes".to_vec(), &sender);
        let message = unwrap_message(&bytes).unwrap();
        assert_eq!(message.message_type, 18);
        assert_eq!(
            MessageType::from_wire(message.message_type),
            Some(MessageType::Query)
        );
        assert_eq!(message.payload, b"query bytes");
        assert_eq!(message.signer, sender.public_key());
        let mut material = crypto::uncompressed65(&sender.public_key()).to_vec();
        material.extend_from_slice(&bytes);
        assert_eq!(message.id, crypto::keccak256(&material));
    }

    #[test]
    fn the_wire_form_is_the_three_field_protobuf() {
        let sender = key(4);
        let bytes = wrap_message(MessageType::Response, vec![0xaa, 0xbb], &sender);
        // Field 1, length-delimited, 65 bytes: the signature.
        assert_eq!(&bytes[..2], &[0x0a, 65]);
        let signature = &bytes[2..67];
        assert_eq!(
            crypto::recover(&crypto::keccak256(&[0xaa, 0xbb]), signature).unwrap(),
            sender.public_key()
        );
        // Field 2 (payload), then field 3 (varint type 21).
        assert_eq!(&bytes[67..], &[0x12, 2, 0xaa, 0xbb, 0x18, 21]);
    }

    #[test]
    fn the_id_is_over_the_bytes_as_received() {
        // A field order status-go would never write still decodes; the id
        // follows the bytes, not a re-encoding.
        let sender = key(5);
        let canonical = wrap_message(MessageType::Request, b"r".to_vec(), &sender);
        let mut reordered = canonical[67..].to_vec();
        reordered.extend_from_slice(&canonical[..67]);
        let a = unwrap_message(&canonical).unwrap();
        let b = unwrap_message(&reordered).unwrap();
        assert_eq!(a.signer, b.signer);
        assert_ne!(a.id, b.id);
        assert_eq!(b.id, message_id(&sender.public_key(), &reordered));
    }

    #[test]
    fn unknown_types_and_fields_decode() {
        let sender = key(6);
        let mut bytes = wrap_message(MessageType::Query, vec![1], &sender);
        // type 3 again with value 999 (last one wins), then unknown field 9.
        bytes.extend_from_slice(&[0x18, 0xe7, 0x07, 0x48, 1]);
        let message = unwrap_message(&bytes).unwrap();
        assert_eq!(message.message_type, 999);
        assert_eq!(MessageType::from_wire(999), None);
    }

    #[test]
    fn a_payload_changed_after_signing_recovers_someone_else() {
        let sender = key(7);
        let mut bytes = wrap_message(MessageType::Request, b"pay me".to_vec(), &sender);
        let last_payload_byte = bytes.len() - 3;
        bytes[last_payload_byte] ^= 1;
        let signer = unwrap_message(&bytes).map(|message| message.signer).ok();
        assert_ne!(signer, Some(sender.public_key()));
    }

    #[test]
    fn unsigned_and_badly_signed_wrappers_are_refused() {
        let unsigned = ApplicationMetadataMessage {
            signature: vec![],
            payload: b"x".to_vec(),
            r#type: 16,
        }
        .encode_to_vec();
        assert_eq!(
            unwrap_message(&unsigned),
            Err(WrapperError::Signature(CryptoError::SignatureLength(0)))
        );
        let short = ApplicationMetadataMessage {
            signature: vec![1; 64],
            payload: b"x".to_vec(),
            r#type: 16,
        }
        .encode_to_vec();
        assert_eq!(
            unwrap_message(&short),
            Err(WrapperError::Signature(CryptoError::SignatureLength(64)))
        );
        let mut bad_v = wrap_message(MessageType::Registration, b"x".to_vec(), &key(1));
        bad_v[66] = 27;
        assert_eq!(
            unwrap_message(&bad_v),
            Err(WrapperError::Signature(CryptoError::RecoveryId(27)))
        );
    }

    #[test]
    fn malformed_protobufs_are_refused() {
        let good = wrap_message(MessageType::Registration, vec![9; 40], &key(2));
        for cut in [1, 2, 40, good.len() - 1] {
            assert!(
                matches!(
                    unwrap_message(&good[..cut]),
                    Err(WrapperError::Malformed(_))
                ),
                "cut at {cut}"
            );
        }
        let hostile: [&[u8]; 5] = [
            // A length of 2^63 for the signature.
            &[
                0x0a, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
            ],
            // An 11-byte varint.
            &[
                0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            // Wire type 7 does not exist.
            &[0x0f],
            // Field number 0.
            &[0x02, 0x00],
            // The signature field as a varint.
            &[0x08, 0x01],
        ];
        for bytes in hostile {
            assert!(
                matches!(unwrap_message(bytes), Err(WrapperError::Malformed(_))),
                "{bytes:?}"
            );
        }
        // Empty input is a valid empty message: it fails on the missing signature.
        assert_eq!(
            unwrap_message(&[]),
            Err(WrapperError::Signature(CryptoError::SignatureLength(0)))
        );
    }
}

//! Opening and validating a `PushNotificationRegistration`, in status-go's
//! order (`validateRegistration`), and the error each failure is answered
//! with (`buildPushNotificationRegistrationResponse`).
//!
//! The order matters to clients: a stale version is `VERSION_MISMATCH` even
//! when the rest is malformed, and an unregistration is accepted as soon as
//! its version is new, with nothing else checked. Not checked, as in
//! status-go: `enabled`, and `apn_topic` for APN tokens (spec 71 requires
//! it, deployed clients do not rely on it).

use k256::{PublicKey, SecretKey};
use prost::Message;

use crate::crypto::{CryptoError, ecdh_x, open_nonce_first};
use crate::grant::{self, GrantError};
use crate::proto::{PushNotificationRegistration, RegistrationErrorType, TokenType};

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("the registration is empty")]
    Empty,
    #[error("the registration cannot be decrypted: {0}")]
    Decrypt(#[from] CryptoError),
    #[error("the registration is not a protobuf: {0}")]
    Unmarshal(#[from] prost::DecodeError),
    #[error("version {version} is not above the stored {stored}")]
    InvalidVersion { version: u64, stored: u64 },
    #[error("the installation id is not a UUID")]
    MalformedInstallationId,
    #[error("the access token is not a UUID")]
    MalformedAccessToken,
    #[error("malformed grant: {0}")]
    MalformedGrant(#[from] GrantError),
    #[error("the device token is missing")]
    MissingDeviceToken,
    #[error("the token type is unknown")]
    UnknownTokenType,
}

impl RegistrationError {
    /// What the client is answered: only version failures are told apart.
    pub fn error_type(&self) -> RegistrationErrorType {
        match self {
            Self::InvalidVersion { .. } => RegistrationErrorType::VersionMismatch,
            _ => RegistrationErrorType::MalformedMessage,
        }
    }
}

/// Decrypts the AMM payload of a registration from `client` and validates
/// it; `stored_version` gives the version held for an installation id of
/// this client (0 if none).
pub fn open_and_validate(
    server: &SecretKey,
    client: &PublicKey,
    encrypted: &[u8],
    stored_version: impl Fn(&str) -> u64,
) -> Result<PushNotificationRegistration, RegistrationError> {
    if encrypted.is_empty() {
        return Err(RegistrationError::Empty);
    }
    let plaintext = open_nonce_first(&ecdh_x(server, client), encrypted)?;
    let registration = PushNotificationRegistration::decode(plaintext.as_slice())?;
    validate(&registration, client, &server.public_key(), stored_version)?;
    Ok(registration)
}

/// Steps 4 to 11 of status-go's `validateRegistration`, on a decoded registration.
fn validate(
    registration: &PushNotificationRegistration,
    client: &PublicKey,
    server: &PublicKey,
    stored_version: impl Fn(&str) -> u64,
) -> Result<(), RegistrationError> {
    let version = registration.version;
    if version < 1 {
        return Err(RegistrationError::InvalidVersion { version, stored: 0 });
    }
    if !is_uuid(&registration.installation_id) {
        return Err(RegistrationError::MalformedInstallationId);
    }
    let stored = stored_version(&registration.installation_id);
    if version <= stored {
        return Err(RegistrationError::InvalidVersion { version, stored });
    }
    if registration.unregister {
        return Ok(());
    }
    if !is_uuid(&registration.access_token) {
        return Err(RegistrationError::MalformedAccessToken);
    }
    grant::verify(
        &registration.grant,
        client,
        server,
        &registration.access_token,
    )?;
    if registration.device_token.is_empty() {
        return Err(RegistrationError::MissingDeviceToken);
    }
    if !matches!(
        TokenType::try_from(registration.token_type),
        Ok(TokenType::ApnToken | TokenType::FirebaseToken)
    ) {
        return Err(RegistrationError::UnknownTokenType);
    }
    Ok(())
}

/// Whether `text` is a UUID in one of the forms Go's `uuid.Parse` accepts:
/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, the same in braces or after
/// `urn:uuid:`, or 32 bare hex digits. Neither version nor variant is
/// checked, as `uuid.Parse` checks neither.
pub fn is_uuid(text: &str) -> bool {
    const DASHES: [usize; 4] = [8, 13, 18, 23];
    let hyphenated = |s: &str| {
        s.len() == 36
            && s.bytes().enumerate().all(|(i, b)| {
                if DASHES.contains(&i) {
                    b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }
            })
    };
    match text.len() {
        32 => text.bytes().all(|b| b.is_ascii_hexdigit()),
        36 => hyphenated(text),
        38 => text
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .is_some_and(hyphenated),
        45 => {
            text.get(..9)
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case("urn:uuid:"))
                && hyphenated(&text[9..])
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{keccak256, seal_nonce_first};
    use crate::test_support::{INSTALLATION, TOKEN, key, registration, seal_registration};

    /// status-go's `TestPushNotificationServerValidateRegistration`, case by case.
    fn check(
        registration: &PushNotificationRegistration,
        stored: u64,
    ) -> Result<PushNotificationRegistration, RegistrationError> {
        let (client, server) = (key(1), key(2));
        let sealed = seal_registration(&client, &server.public_key(), registration);
        open_and_validate(&server, &client.public_key(), &sealed, |_| stored)
    }

    fn full() -> PushNotificationRegistration {
        registration(&key(1), &key(2).public_key(), 1)
    }

    #[test]
    fn empty_and_undecryptable_payloads_are_malformed() {
        let (client, server) = (key(1), key(2));
        let open = |payload: &[u8]| {
            open_and_validate(&server, &client.public_key(), payload, |_| 0).unwrap_err()
        };
        assert!(matches!(open(&[]), RegistrationError::Empty));
        for garbage in [&b"too short"[..], &[7u8; 64][..]] {
            let err = open(garbage);
            assert!(matches!(err, RegistrationError::Decrypt(_)), "{err:?}");
            assert_eq!(err.error_type(), RegistrationErrorType::MalformedMessage);
        }
        let under_zero_key = seal_nonce_first(&[0u8; 32], &full().encode_to_vec());
        assert!(matches!(
            open(&under_zero_key),
            RegistrationError::Decrypt(_)
        ));
        // Encrypted to another server: the shared key differs.
        let elsewhere = seal_registration(&client, &key(9).public_key(), &full());
        assert!(matches!(open(&elsewhere), RegistrationError::Decrypt(_)));
    }

    #[test]
    fn an_encrypted_non_protobuf_is_malformed() {
        let (client, server) = (key(1), key(2));
        let sealed = seal_nonce_first(
            &ecdh_x(&client, &server.public_key()),
            b"\xff\xff\xff not protobuf",
        );
        let err = open_and_validate(&server, &client.public_key(), &sealed, |_| 0).unwrap_err();
        assert!(matches!(err, RegistrationError::Unmarshal(_)), "{err:?}");
    }

    #[test]
    fn installation_ids_must_be_uuids() {
        for bad in ["", "abc"] {
            let r = PushNotificationRegistration {
                installation_id: bad.into(),
                ..full()
            };
            assert!(matches!(
                check(&r, 0),
                Err(RegistrationError::MalformedInstallationId)
            ));
        }
    }

    #[test]
    fn versions_must_start_at_one_and_increase() {
        let zero = PushNotificationRegistration {
            version: 0,
            ..full()
        };
        let err = check(&zero, 0).unwrap_err();
        assert_eq!(err.error_type(), RegistrationErrorType::VersionMismatch);
        let err = check(&full(), 2).unwrap_err();
        assert!(matches!(
            err,
            RegistrationError::InvalidVersion {
                version: 1,
                stored: 2
            }
        ));
        assert_eq!(err.error_type(), RegistrationErrorType::VersionMismatch);
        let same = PushNotificationRegistration {
            version: 2,
            ..full()
        };
        assert!(check(&same, 2).is_err());
    }

    #[test]
    fn a_stale_version_wins_over_other_faults() {
        let both = PushNotificationRegistration {
            access_token: "bc".into(),
            ..full()
        };
        assert_eq!(
            check(&both, 5).unwrap_err().error_type(),
            RegistrationErrorType::VersionMismatch
        );
    }

    #[test]
    fn an_unregistration_needs_only_installation_id_and_version() {
        let unregister = PushNotificationRegistration {
            installation_id: INSTALLATION.into(),
            version: 1,
            unregister: true,
            ..Default::default()
        };
        assert_eq!(check(&unregister, 0).unwrap(), unregister);
    }

    #[test]
    fn access_tokens_must_be_uuids() {
        for bad in ["", "bc"] {
            let r = PushNotificationRegistration {
                access_token: bad.into(),
                ..full()
            };
            assert!(matches!(
                check(&r, 0),
                Err(RegistrationError::MalformedAccessToken)
            ));
        }
    }

    #[test]
    fn a_device_token_is_required() {
        let r = PushNotificationRegistration {
            device_token: String::new(),
            ..full()
        };
        assert!(matches!(
            check(&r, 0),
            Err(RegistrationError::MissingDeviceToken)
        ));
    }

    #[test]
    fn grants_must_be_present_and_verify() {
        for bad in [Vec::new(), keccak256(b"invalid").to_vec()] {
            let r = PushNotificationRegistration {
                grant: bad,
                ..full()
            };
            let err = check(&r, 0).unwrap_err();
            assert!(
                matches!(err, RegistrationError::MalformedGrant(_)),
                "{err:?}"
            );
            assert_eq!(err.error_type(), RegistrationErrorType::MalformedMessage);
        }
        // A grant for another access token.
        let r = PushNotificationRegistration {
            access_token: "a3f07c41-0a4f-4a4b-9d4e-5a55d3c0b7e1".into(),
            ..full()
        };
        assert!(matches!(
            check(&r, 0),
            Err(RegistrationError::MalformedGrant(_))
        ));
    }

    #[test]
    fn the_token_type_must_be_known() {
        for token_type in [0, 3, -1] {
            let r = PushNotificationRegistration {
                token_type,
                ..full()
            };
            assert!(matches!(
                check(&r, 0),
                Err(RegistrationError::UnknownTokenType)
            ));
        }
    }

    #[test]
    fn a_full_registration_is_accepted_as_sent() {
        assert_eq!(check(&full(), 0).unwrap(), full());
        assert_eq!(full().access_token, TOKEN);
    }

    #[test]
    fn uuids_in_the_forms_go_accepts() {
        for ok in [
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",
            "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}",
            "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "6ba7b8109dad11d180b400c04fd430c8",
        ] {
            assert!(is_uuid(ok), "{ok}");
        }
        for bad in [
            "",
            "abc",
            "6ba7b810-9dad-11d1-80b4-00c04fd430cg",
            "6ba7b810+9dad-11d1-80b4-00c04fd430c8",
            "(6ba7b810-9dad-11d1-80b4-00c04fd430c8)",
            "urn:uuid+6ba7b810-9dad-11d1-80b4-00c04fd430c8",
            "é6ba7b810-9dad-11d1-80b4-00c04fd430c",
            "ééééééééééééééééééééééé-éé",
        ] {
            assert!(!is_uuid(bad), "{bad}");
        }
    }
}

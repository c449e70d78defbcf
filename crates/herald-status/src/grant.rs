//! The grant: the client's signature over (client key, server key, access
//! token), with which it authorises this server to push for it (status-go
//! `buildGrantSignatureMaterial` / `verifyGrantSignature`).
//!
//! The server hands the grant out in query answers so that a sender can
//! show the recipient chose this server; the server itself only checks it
//! on registration, by recovering the signer and comparing it with the
//! wrapper's signer. Recovery, not verification against a known key, is
//! what status-go does, and a signature by anyone else recovers to another
//! key.

use k256::{PublicKey, SecretKey};

use crate::crypto::{compress33, keccak256, recover, sign_recoverable};

/// A recoverable secp256k1 signature: `R ‖ S ‖ V`.
pub const GRANT_BYTES: usize = 65;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("the grant is missing")]
    Missing,
    #[error("the grant is {0} bytes, not {GRANT_BYTES}")]
    Length(usize),
    #[error("no key recovers from the grant")]
    Unrecoverable,
    #[error("the grant was signed by another key than the registration's")]
    WrongSigner,
}

/// `Keccak256(compress33(client) ‖ compress33(server) ‖ access_token)`.
pub fn material(client: &PublicKey, server: &PublicKey, access_token: &str) -> [u8; 32] {
    let mut bytes = Vec::with_capacity(33 + 33 + access_token.len());
    bytes.extend_from_slice(&compress33(client));
    bytes.extend_from_slice(&compress33(server));
    bytes.extend_from_slice(access_token.as_bytes());
    keccak256(&bytes)
}

/// The grant a client signs for `server` and `access_token`, as status-go's
/// client does; herald signs none of its own, but its tests and benchmark
/// play the client.
pub fn sign(client: &SecretKey, server: &PublicKey, access_token: &str) -> [u8; GRANT_BYTES] {
    sign_recoverable(
        client,
        &material(&client.public_key(), server, access_token),
    )
}

/// Checks that `grant` was signed by `client` for this server and token.
pub fn verify(
    grant: &[u8],
    client: &PublicKey,
    server: &PublicKey,
    access_token: &str,
) -> Result<(), GrantError> {
    match grant.len() {
        0 => return Err(GrantError::Missing),
        GRANT_BYTES => {}
        other => return Err(GrantError::Length(other)),
    }
    let signer = recover(&material(client, server, access_token), grant)
        .map_err(|_| GrantError::Unrecoverable)?;
    if signer != *client {
        return Err(GrantError::WrongSigner);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::key;

    #[test]
    fn a_grant_verifies_for_its_own_client_server_and_token_only() {
        let (client, server, other) = (key(1), key(2), key(3));
        let grant = sign(&client, &server.public_key(), "token");
        let verify_with = |client: &SecretKey, server: &SecretKey, token| {
            verify(&grant, &client.public_key(), &server.public_key(), token)
        };
        assert_eq!(verify_with(&client, &server, "token"), Ok(()));
        assert_eq!(
            verify_with(&other, &server, "token"),
            Err(GrantError::WrongSigner)
        );
        for wrong in [
            verify_with(&client, &other, "token"),
            verify_with(&client, &server, "another token"),
        ] {
            assert!(
                matches!(
                    wrong,
                    Err(GrantError::WrongSigner | GrantError::Unrecoverable)
                ),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn malformed_grants_are_refused() {
        let (client, server) = (key(1).public_key(), key(2).public_key());
        assert_eq!(verify(&[], &client, &server, "t"), Err(GrantError::Missing));
        // status-go's test: a grant that is the hash of "invalid".
        assert_eq!(
            verify(&keccak256(b"invalid"), &client, &server, "t"),
            Err(GrantError::Length(32))
        );
        assert_eq!(
            verify(&[0u8; GRANT_BYTES], &client, &server, "t"),
            Err(GrantError::Unrecoverable)
        );
        let mut bad_v = sign(&key(1), &server, "t");
        bad_v[64] = 7;
        assert!(verify(&bad_v, &client, &server, "t").is_err());
    }
}

//! Answering a `PushNotificationQuery` (status-go
//! `buildPushNotificationQueryResponse`): for each hashed key asked about,
//! every installation still registered, with its grant and either its
//! access token or, for a contacts-only registration, its
//! `allowed_key_list` (never both: the list exists so that only contacts
//! can read the token).

use crate::persistence::{HashedKey, MessageId, Registrations};
use crate::proto::{
    PushNotificationQuery, PushNotificationQueryInfo, PushNotificationQueryResponse,
};

/// The answer to `query`, whose wrapper had id `message_id` (the client
/// matches answers by it). Successful even when nothing matches; keys that
/// are not 64 bytes match nothing.
pub fn answer(
    query: &PushNotificationQuery,
    registrations: &Registrations,
    message_id: &MessageId,
) -> PushNotificationQueryResponse {
    let info = query
        .public_keys
        .iter()
        .filter_map(|key| HashedKey::try_from(key.as_slice()).ok())
        .flat_map(|key| {
            let held: Vec<_> = registrations.active_for(&key).collect();
            held.into_iter().map(move |r| {
                let contacts_only = r.allow_from_contacts_only;
                PushNotificationQueryInfo {
                    public_key: key.to_vec(),
                    installation_id: r.installation_id.clone(),
                    grant: r.grant.clone(),
                    version: r.version,
                    access_token: if contacts_only {
                        String::new()
                    } else {
                        r.access_token.clone()
                    },
                    allowed_key_list: if contacts_only {
                        r.allowed_key_list.clone()
                    } else {
                        Vec::new()
                    },
                    server_public_key: Vec::new(),
                }
            })
        })
        .collect();
    PushNotificationQueryResponse {
        info,
        message_id: message_id.to_vec(),
        success: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::Stored;
    use crate::test_support::{INSTALLATION, TOKEN, key, registration};

    fn held(contacts_only: bool) -> (Registrations, HashedKey) {
        let hashed = [3u8; 64];
        let mut registrations = Registrations::default();
        let r = crate::proto::PushNotificationRegistration {
            allow_from_contacts_only: contacts_only,
            allowed_key_list: vec![b"for a contact".to_vec()],
            ..registration(&key(1), &key(2).public_key(), 1)
        };
        registrations.put(
            hashed,
            INSTALLATION,
            Stored {
                version: 1,
                registration: Some(r),
            },
        );
        (registrations, hashed)
    }

    fn query(keys: &[&[u8]]) -> PushNotificationQuery {
        PushNotificationQuery {
            public_keys: keys.iter().map(|k| k.to_vec()).collect(),
        }
    }

    #[test]
    fn a_query_returns_the_token_of_a_registered_key() {
        let (registrations, hashed) = held(false);
        let answer = answer(
            &query(&[b"non-existing", &hashed]),
            &registrations,
            &[9; 32],
        );
        assert!(answer.success);
        assert_eq!(answer.message_id, [9; 32]);
        assert_eq!(answer.info.len(), 1);
        let info = &answer.info[0];
        assert_eq!(info.access_token, TOKEN);
        assert!(info.allowed_key_list.is_empty());
        assert_eq!(
            (
                info.public_key.as_slice(),
                info.installation_id.as_str(),
                info.version
            ),
            (&hashed[..], INSTALLATION, 1)
        );
        assert_eq!(info.grant.len(), 65);
        assert!(info.server_public_key.is_empty());
    }

    #[test]
    fn contacts_only_registrations_return_the_list_not_the_token() {
        let (registrations, hashed) = held(true);
        let answer = answer(&query(&[&hashed]), &registrations, &[9; 32]);
        assert_eq!(answer.info.len(), 1);
        assert_eq!(answer.info[0].access_token, "");
        assert_eq!(answer.info[0].allowed_key_list, [b"for a contact".to_vec()]);
    }

    #[test]
    fn unknown_keys_and_unregistered_installations_answer_success_and_nothing() {
        let (mut registrations, hashed) = held(false);
        let empty = answer(
            &query(&[&[3u8; 63], &[4u8; 64], &[]]),
            &registrations,
            &[1; 32],
        );
        assert!(empty.success && empty.info.is_empty());
        registrations.put(
            hashed,
            INSTALLATION,
            Stored {
                version: 2,
                registration: None,
            },
        );
        assert!(
            answer(&query(&[&hashed]), &registrations, &[1; 32])
                .info
                .is_empty()
        );
    }
}

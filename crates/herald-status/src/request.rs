//! Handling a `PushNotificationRequest` (status-go
//! `HandlePushNotificationRequest`, `buildPushNotificationReport`): one
//! report per notification of a known type, and the notifications that
//! are to be sent.
//!
//! A notification the recipient filtered out (a blocked or muted chat, a
//! blocked author, mentions off or not allowed in that chat) is still
//! reported a success: telling the sender would leak the recipient's
//! choices.

use crate::persistence::{HashedKey, Registrations};
use crate::proto::{
    PushNotification, PushNotificationRegistration, PushNotificationReport,
    PushNotificationRequest, PushNotificationType, ReportErrorType,
};

/// A notification to send, with the registration it goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Sendable {
    pub notification: PushNotification,
    pub registration: PushNotificationRegistration,
}

/// The reports to answer with, and what to send.
#[derive(Debug, Default, PartialEq)]
pub struct Handled {
    pub reports: Vec<PushNotificationReport>,
    pub sendable: Vec<Sendable>,
}

/// What one notification comes to.
#[derive(Debug, PartialEq)]
enum Verdict<'a> {
    /// An unknown type: no report at all, as status-go.
    Skip,
    Refuse(ReportErrorType),
    /// Reported a success; sent only if `send`.
    Accept {
        registration: &'a PushNotificationRegistration,
        send: bool,
    },
}

pub fn handle(request: &PushNotificationRequest, registrations: &Registrations) -> Handled {
    let mut handled = Handled::default();
    for notification in &request.requests {
        let report = |success: bool, error: ReportErrorType| PushNotificationReport {
            success,
            error: error as i32,
            public_key: notification.public_key.clone(),
            installation_id: notification.installation_id.clone(),
        };
        match verdict(notification, registrations) {
            Verdict::Skip => {}
            Verdict::Refuse(error) => handled.reports.push(report(false, error)),
            Verdict::Accept { registration, send } => {
                handled
                    .reports
                    .push(report(true, ReportErrorType::UnknownErrorType));
                if send {
                    handled.sendable.push(Sendable {
                        notification: notification.clone(),
                        registration: registration.clone(),
                    });
                }
            }
        }
    }
    handled
}

fn verdict<'a>(notification: &PushNotification, registrations: &'a Registrations) -> Verdict<'a> {
    let kind = PushNotificationType::try_from(notification.r#type)
        .unwrap_or(PushNotificationType::UnknownPushNotificationType);
    if kind == PushNotificationType::UnknownPushNotificationType {
        return Verdict::Skip;
    }
    let registration = HashedKey::try_from(notification.public_key.as_slice())
        .ok()
        .and_then(|key| registrations.active(&key, &notification.installation_id));
    let Some(registration) = registration else {
        return Verdict::Refuse(ReportErrorType::NotRegistered);
    };
    if registration.access_token != notification.access_token {
        return Verdict::Refuse(ReportErrorType::WrongToken);
    }
    Verdict::Accept {
        registration,
        send: wanted(kind, notification, registration),
    }
}

/// Whether the recipient's filters let `notification` through.
fn wanted(
    kind: PushNotificationType,
    notification: &PushNotification,
    registration: &PushNotificationRegistration,
) -> bool {
    let chat = &notification.chat_id;
    let author_allowed = !registration
        .blocked_chat_list
        .contains(&notification.author);
    match kind {
        PushNotificationType::Message => {
            author_allowed
                && !registration.blocked_chat_list.contains(chat)
                && !registration.muted_chat_list.contains(chat)
        }
        PushNotificationType::Mention => {
            author_allowed
                && !registration.block_mentions
                && registration.allowed_mentions_chat_list.contains(chat)
        }
        PushNotificationType::RequestToJoinCommunity => author_allowed,
        PushNotificationType::UnknownPushNotificationType => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistence::Stored;
    use crate::test_support::{INSTALLATION, TOKEN, key, registration};

    const KEY: HashedKey = [5u8; 64];
    const CHAT: &[u8] = b"chat-hash";
    const AUTHOR: &[u8] = b"author-hash";

    fn held(r: PushNotificationRegistration) -> Registrations {
        let mut registrations = Registrations::default();
        registrations.put(
            KEY,
            INSTALLATION,
            Stored {
                version: r.version,
                registration: Some(r),
            },
        );
        registrations
    }

    fn base() -> PushNotificationRegistration {
        PushNotificationRegistration {
            allowed_mentions_chat_list: vec![CHAT.to_vec()],
            ..registration(&key(1), &key(2).public_key(), 1)
        }
    }

    fn notification(kind: PushNotificationType) -> PushNotification {
        PushNotification {
            access_token: TOKEN.into(),
            chat_id: CHAT.to_vec(),
            public_key: KEY.to_vec(),
            installation_id: INSTALLATION.into(),
            message: b"ciphertext".to_vec(),
            r#type: kind as i32,
            author: AUTHOR.to_vec(),
        }
    }

    fn one(
        registration: PushNotificationRegistration,
        n: PushNotification,
    ) -> (Option<PushNotificationReport>, bool) {
        let handled = handle(
            &PushNotificationRequest {
                requests: vec![n],
                message_id: b"id".to_vec(),
            },
            &held(registration),
        );
        (
            handled.reports.into_iter().next(),
            !handled.sendable.is_empty(),
        )
    }

    fn sent(registration: PushNotificationRegistration, kind: PushNotificationType) -> bool {
        let (report, send) = one(registration, notification(kind));
        let report = report.expect("a report");
        assert!(
            report.success,
            "filtered notifications still report success"
        );
        assert_eq!(report.public_key, KEY);
        assert_eq!(report.installation_id, INSTALLATION);
        send
    }

    use PushNotificationType::{Mention, Message, RequestToJoinCommunity};

    #[test]
    fn valid_messages_mentions_and_join_requests_are_sent() {
        assert!(sent(base(), Message));
        assert!(sent(base(), Mention));
        assert!(sent(base(), RequestToJoinCommunity));
    }

    #[test]
    fn an_unknown_type_is_skipped_without_a_report() {
        for kind in [0, 99] {
            let n = PushNotification {
                r#type: kind,
                ..notification(Message)
            };
            assert_eq!(one(base(), n), (None, false));
        }
    }

    #[test]
    fn unregistered_recipients_and_wrong_tokens_are_reported() {
        let refused = |n: PushNotification, r: PushNotificationRegistration| {
            let (report, send) = one(r, n);
            let report = report.unwrap();
            assert!(!report.success && !send);
            (report.error, report.public_key, report.installation_id)
        };
        let nobody = PushNotification {
            installation_id: "another".into(),
            ..notification(Message)
        };
        assert_eq!(
            refused(nobody, base()).0,
            ReportErrorType::NotRegistered as i32
        );
        let short_key = PushNotification {
            public_key: vec![5u8; 10],
            ..notification(Message)
        };
        let (error, key, _) = refused(short_key, base());
        assert_eq!(
            (error, key),
            (ReportErrorType::NotRegistered as i32, vec![5u8; 10])
        );
        let wrong = PushNotification {
            access_token: "another".into(),
            ..notification(Message)
        };
        assert_eq!(refused(wrong, base()).0, ReportErrorType::WrongToken as i32);
        let mut registrations = held(base());
        registrations.put(
            KEY,
            INSTALLATION,
            Stored {
                version: 2,
                registration: None,
            },
        );
        let handled = handle(
            &PushNotificationRequest {
                requests: vec![notification(Message)],
                message_id: vec![1],
            },
            &registrations,
        );
        assert_eq!(
            handled.reports[0].error,
            ReportErrorType::NotRegistered as i32
        );
    }

    #[test]
    fn filtered_notifications_report_success_and_are_not_sent() {
        let blocked_chat = PushNotificationRegistration {
            blocked_chat_list: vec![CHAT.to_vec()],
            ..base()
        };
        assert!(!sent(blocked_chat, Message));
        let muted = PushNotificationRegistration {
            muted_chat_list: vec![CHAT.to_vec()],
            ..base()
        };
        assert!(!sent(muted.clone(), Message), "muted chat, message");
        let muted_mention = PushNotificationRegistration {
            allowed_mentions_chat_list: vec![],
            ..muted
        };
        assert!(!sent(muted_mention, Mention), "muted chat, mention");
        let blocked_author = PushNotificationRegistration {
            blocked_chat_list: vec![AUTHOR.to_vec()],
            ..base()
        };
        assert!(!sent(blocked_author.clone(), Message));
        assert!(!sent(blocked_author.clone(), Mention));
        assert!(!sent(blocked_author, RequestToJoinCommunity));
        let no_mentions = PushNotificationRegistration {
            block_mentions: true,
            ..base()
        };
        assert!(!sent(no_mentions, Mention));
        let other_chat = PushNotificationRegistration {
            allowed_mentions_chat_list: vec![b"elsewhere".to_vec()],
            ..base()
        };
        assert!(!sent(other_chat, Mention));
    }

    #[test]
    fn an_author_in_the_muted_list_does_not_mute_the_chat() {
        let author_muted = PushNotificationRegistration {
            muted_chat_list: vec![AUTHOR.to_vec()],
            ..base()
        };
        assert!(sent(author_muted, Message));
    }

    #[test]
    fn of_two_mentions_only_the_allowed_chat_is_sent() {
        let elsewhere = PushNotification {
            chat_id: b"elsewhere".to_vec(),
            ..notification(Mention)
        };
        let handled = handle(
            &PushNotificationRequest {
                requests: vec![notification(Mention), elsewhere],
                message_id: vec![1],
            },
            &held(base()),
        );
        assert_eq!(handled.reports.len(), 2);
        assert!(handled.reports.iter().all(|r| r.success));
        assert_eq!(handled.sendable.len(), 1);
        assert_eq!(handled.sendable[0].notification.chat_id, CHAT);
        assert_eq!(handled.sendable[0].registration, base());
    }

    #[test]
    fn blocked_mentions_send_nothing_but_are_answered() {
        let registration = PushNotificationRegistration {
            block_mentions: true,
            ..base()
        };
        let handled = handle(
            &PushNotificationRequest {
                requests: vec![notification(Mention), notification(Mention)],
                message_id: vec![1],
            },
            &held(registration),
        );
        assert_eq!(handled.reports.len(), 2);
        assert!(handled.sendable.is_empty());
    }
}

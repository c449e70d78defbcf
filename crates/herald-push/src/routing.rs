//! Choosing a device's transport at registration, from its token's shape
//! and platform, when the registration does not name one.
//!
//! The choice is made once and stored: herald never tries one provider after
//! another at send time. Candidates are listed in order of preference and
//! the first the app has configured wins; gorush comes last for the native
//! platforms, for operators who forward everything to their gorush.

use herald_core::model::{Platform, Transport};

use crate::expo::is_expo_token;

/// The transports that could carry `token` from a `platform` device, best first.
pub fn candidates(platform: Platform, token: &str) -> &'static [Transport] {
    use Transport::*;
    let token = token.trim_start();
    if is_expo_token(token) {
        return &[Expo];
    }
    let is_subscription = token.starts_with('{');
    let is_url = token.starts_with("https://") || token.starts_with("http://");
    match platform {
        Platform::Web if is_subscription || is_url => &[WebPush],
        _ if is_subscription || is_url => &[UnifiedPush],
        Platform::Ios if is_apns_token(token) => &[Apns, Gorush],
        Platform::Ios | Platform::Android => &[Fcm, Gorush],
        Platform::Web | Platform::Desktop => &[],
    }
}

/// APNs device tokens are hex: 32 bytes today, possibly longer later.
fn is_apns_token(token: &str) -> bool {
    token.len() >= 64
        && token.len().is_multiple_of(2)
        && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The first candidate for which `available` holds.
pub fn infer(
    platform: Platform,
    token: &str,
    available: impl Fn(Transport) -> bool,
) -> Option<Transport> {
    candidates(platform, token)
        .iter()
        .copied()
        .find(|t| available(*t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Transport::*;

    const APNS: &str = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";

    #[test]
    fn token_shapes_choose_the_transport() {
        assert_eq!(candidates(Platform::Ios, "ExponentPushToken[abc]"), [Expo]);
        assert_eq!(candidates(Platform::Android, "ExpoPushToken[abc]"), [Expo]);
        assert_eq!(candidates(Platform::Ios, APNS), [Apns, Gorush]);
        assert_eq!(
            candidates(Platform::Ios, "fcm:APA91bH-token_for_ios"),
            [Fcm, Gorush]
        );
        assert_eq!(
            candidates(Platform::Android, "dGVzdDpBUEE5MWJ"),
            [Fcm, Gorush]
        );
        assert_eq!(
            candidates(Platform::Web, r#"{"endpoint":"https://x"}"#),
            [WebPush]
        );
        assert_eq!(
            candidates(
                Platform::Web,
                "https://updates.push.services.mozilla.com/wpush/v2/x"
            ),
            [WebPush]
        );
        assert_eq!(
            candidates(Platform::Android, "https://ntfy.sh/upAbC"),
            [UnifiedPush]
        );
        assert_eq!(
            candidates(Platform::Desktop, r#"{"endpoint":"https://x"}"#),
            [UnifiedPush]
        );
        assert!(candidates(Platform::Desktop, "opaque").is_empty());
    }

    #[test]
    fn the_first_configured_candidate_wins() {
        assert_eq!(infer(Platform::Ios, APNS, |t| t == Gorush), Some(Gorush));
        assert_eq!(infer(Platform::Ios, APNS, |_| true), Some(Apns));
        assert_eq!(
            infer(Platform::Ios, APNS, |t| t == Fcm),
            None,
            "an APNs token never goes to FCM"
        );
    }
}

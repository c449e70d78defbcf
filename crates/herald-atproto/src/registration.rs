//! The `registerPush` / `unregisterPush` request body and XRPC errors.
//!
//! Both lexicons take `{serviceDid, token, platform, appId}` (register adds
//! `ageRestricted`). The platform check is strict, as the AppView's is,
//! although the lexicon leaves it an open string; `serviceDid` must be ours
//! (the AppView compares it with the token's audience). Every refusal is an
//! XRPC error body `{"error", "message"}`, never a 500.

use herald_core::model::Platform;
use serde::Deserialize;

use crate::service_auth::AuthError;

pub const REGISTER_PUSH: &str = "app.bsky.notification.registerPush";
pub const UNREGISTER_PUSH: &str = "app.bsky.notification.unregisterPush";
/// Longest token accepted: a Web Push subscription JSON fits well inside.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Longest appId accepted.
pub const MAX_APP_ID_BYTES: usize = 128;

/// An XRPC error: HTTP status, error name, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XrpcError {
    pub status: u16,
    pub error: &'static str,
    pub message: String,
}

impl XrpcError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            error: "InvalidRequest",
            message: message.into(),
        }
    }
}

impl From<AuthError> for XrpcError {
    fn from(e: AuthError) -> Self {
        Self {
            status: 401,
            error: e.name(),
            message: e.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    service_did: Option<String>,
    token: Option<String>,
    platform: Option<String>,
    app_id: Option<String>,
    #[serde(default)]
    age_restricted: Option<bool>,
}

/// A validated registerPush or unregisterPush request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushRegistration {
    pub token: String,
    pub platform: Platform,
    pub app_id: String,
    pub age_restricted: Option<bool>,
}

impl PushRegistration {
    /// Parses and checks a request body for the service `service_did`.
    pub fn parse(body: &[u8], service_did: &str) -> Result<Self, XrpcError> {
        let body: Body = serde_json::from_slice(body)
            .map_err(|e| XrpcError::invalid(format!("the body is not a valid request: {e}")))?;
        let field = |value: Option<String>, name: &str| {
            value.filter(|v| !v.is_empty()).ok_or_else(|| {
                XrpcError::invalid(format!("Input must have the property \"{name}\""))
            })
        };
        let service = field(body.service_did, "serviceDid")?;
        let token = field(body.token, "token")?;
        let platform = field(body.platform, "platform")?;
        let app_id = field(body.app_id, "appId")?;
        if service != service_did {
            return Err(XrpcError::invalid("Invalid serviceDid."));
        }
        let platform = match platform.as_str() {
            "ios" => Platform::Ios,
            "android" => Platform::Android,
            "web" => Platform::Web,
            _ => {
                return Err(XrpcError::invalid(
                    "Unsupported platform: must be \"ios\", \"android\", or \"web\".",
                ));
            }
        };
        if token.len() > MAX_TOKEN_BYTES {
            return Err(XrpcError::invalid(format!(
                "token is longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        if app_id.len() > MAX_APP_ID_BYTES {
            return Err(XrpcError::invalid(format!(
                "appId is longer than {MAX_APP_ID_BYTES} bytes"
            )));
        }
        Ok(Self {
            token,
            platform,
            app_id,
            age_restricted: body.age_restricted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const US: &str = "did:web:push.example.com";

    fn parse(v: serde_json::Value) -> Result<PushRegistration, XrpcError> {
        PushRegistration::parse(v.to_string().as_bytes(), US)
    }

    #[test]
    fn accepts_the_lexicon_body() {
        let r = parse(json!({"serviceDid": US, "token": "abc", "platform": "ios", "appId": "xyz.blueskyweb.app", "ageRestricted": true})).unwrap();
        assert_eq!(
            r,
            PushRegistration {
                token: "abc".into(),
                platform: Platform::Ios,
                app_id: "xyz.blueskyweb.app".into(),
                age_restricted: Some(true)
            }
        );
    }

    #[test]
    fn refuses_bad_bodies_with_invalid_request() {
        let good = json!({"serviceDid": US, "token": "t", "platform": "android", "appId": "a"});
        let mut cases = vec![
            ("not json", b"{".to_vec()),
            ("array", b"[]".to_vec()),
            ("binary", vec![0xff, 0]),
        ];
        for (field, value) in [
            ("serviceDid", json!("did:web:api.bsky.app")),
            ("platform", json!("windows")),
            ("platform", json!("IOS")),
            ("token", json!("")),
            ("token", json!("x".repeat(5000))),
            ("token", json!(42)),
            ("appId", json!(null)),
            ("ageRestricted", json!("yes")),
        ] {
            let mut body = good.clone();
            body[field] = value;
            cases.push((field, body.to_string().into_bytes()));
        }
        for (what, body) in cases {
            let err = PushRegistration::parse(&body, US).unwrap_err();
            assert_eq!(
                (err.status, err.error),
                (400, "InvalidRequest"),
                "{what}: {err:?}"
            );
        }
        assert_eq!(
            parse(
                json!({"serviceDid": "did:web:x", "token": "t", "platform": "ios", "appId": "a"})
            )
            .unwrap_err()
            .message,
            "Invalid serviceDid."
        );
    }
}

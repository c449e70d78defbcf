//! Apps whose configuration a push service refused, as providers learn it.
//!
//! A refused key or credential fails every push of that app, yet each
//! delivery only says "rejected"; this keeps the standing cause per app so
//! `/health` and the `herald_app_misconfigured` gauge can name it. The next
//! success clears it.

use std::collections::BTreeMap;
use std::sync::Mutex;

use herald_core::model::{AppId, Transport};
use metrics::gauge;

pub struct Misconfigurations {
    transport: Transport,
    apps: Mutex<BTreeMap<AppId, String>>,
}

impl Misconfigurations {
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            apps: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn record(&self, app: &AppId, reason: &str) {
        tracing::warn!(app = %app, transport = %self.transport, reason, "app misconfigured");
        gauge!("herald_app_misconfigured", "app" => app.to_string(), "transport" => self.transport.as_str()).set(1.0);
        self.lock().insert(app.clone(), reason.to_owned());
    }

    pub fn clear(&self, app: &AppId) {
        if self.lock().remove(app).is_some() {
            gauge!("herald_app_misconfigured", "app" => app.to_string(), "transport" => self.transport.as_str()).set(0.0);
        }
    }

    pub fn list(&self) -> Vec<(AppId, String)> {
        self.lock()
            .iter()
            .map(|(a, r)| (a.clone(), r.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<AppId, String>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.apps
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_clears_per_app() {
        let m = Misconfigurations::new(Transport::Fcm);
        let a = AppId::parse("a").unwrap();
        m.record(&a, "key refused");
        assert_eq!(m.list(), vec![(a.clone(), "key refused".to_owned())]);
        m.clear(&a);
        assert!(m.list().is_empty());
    }
}

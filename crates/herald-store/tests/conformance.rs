//! One conformance suite for every `Store`/`Queue` backend.
//!
//! Each behaviour is an async function run once per backend by the
//! `conformance!` macro. SQLite runs always; PostgreSQL runs when
//! `HERALD_TEST_POSTGRES_URL` is set, each test in a database of its own, and
//! fails (never skips) when that server cannot be reached.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use herald_core::model::{
    Account, AppId, Device, Message, NewDelivery, NewDevice, Platform, Priority, Transport,
};
use herald_core::store::{Queue, Settlement, StateChange, Store};
use herald_store::{Backend, SqlStore};
use sqlx::Connection;

const LEASE: i64 = 60_000;

/// A store under test and what must be cleaned up after it.
struct Harness {
    store: SqlStore,
    _dir: Option<tempfile::TempDir>,
    url: String,
    pg_cleanup: Option<(String, String)>,
}

impl Harness {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("herald.db").display());
        let store = herald_store::open(&url).await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        Self {
            store,
            url,
            _dir: Some(dir),
            pg_cleanup: None,
        }
    }

    /// A fresh database on the test server, or `None` when none is configured.
    async fn postgres() -> Option<Self> {
        let Ok(base) = std::env::var("HERALD_TEST_POSTGRES_URL") else {
            eprintln!("HERALD_TEST_POSTGRES_URL not set: PostgreSQL conformance not run");
            return None;
        };
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "herald_t_{}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            herald_core::time::now_ms()
        );
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("HERALD_TEST_POSTGRES_URL is set but unreachable: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = with_database(&base, &name);
        let store = herald_store::open(&url).await.unwrap();
        assert_eq!(store.backend(), Backend::Postgres);
        Some(Self {
            store,
            url,
            _dir: None,
            pg_cleanup: Some((base, name)),
        })
    }

    async fn finish(self) {
        self.store.close().await;
        if let Some((base, name)) = self.pg_cleanup {
            let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
        }
    }
}

/// `base` with its database name replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (base, None),
    };
    let authority_end = head.find("://").map_or(0, |i| i + 3);
    let head = match head[authority_end..].find('/') {
        Some(slash) => &head[..authority_end + slash],
        None => head,
    };
    match query {
        Some(q) => format!("{head}/{name}?{q}"),
        None => format!("{head}/{name}"),
    }
}

macro_rules! conformance {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let h = super::Harness::sqlite().await;
                    super::$name(&h).await;
                    h.finish().await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(h) = super::Harness::postgres().await else { return };
                    super::$name(&h).await;
                    h.finish().await;
                }
            )+
        }
    };
}

conformance!(
    migrations_are_recorded_and_idempotent,
    registering_twice_keeps_one_device,
    a_token_registered_by_another_account_moves_and_drops_old_deliveries,
    devices_are_removed_by_token_and_by_id,
    accounts_are_listed_by_namespace_once_each,
    devices_are_counted_per_platform_within_one_app_and_namespace,
    expired_registrations_go_with_their_deliveries_and_fresh_ones_stay,
    claimed_deliveries_carry_everything_the_provider_needs,
    claims_are_per_transport_and_bounded,
    a_leased_delivery_is_not_claimed_again_until_the_lease_ends,
    a_retried_delivery_waits_until_due,
    one_settle_removes_and_reschedules_together,
    a_batch_keeps_every_delivery_exactly,
    removing_a_device_drops_its_queued_deliveries,
    nothing_is_queued_for_a_device_removed_meanwhile,
    a_dedupe_key_reaches_each_device_once_per_window,
    a_batch_claims_each_key_once_whatever_it_holds,
    the_cursor_advances_with_the_deliveries_it_produced,
    source_state_is_kept_and_forgotten_with_the_cursor,
    a_commits_state_changes_apply_in_order_however_many,
    concurrent_claims_never_hand_out_a_delivery_twice,
    unreadable_rows_are_reported_not_skipped,
);

fn account(name: &str) -> Account {
    Account::parse(&format!("test:{name}")).unwrap()
}

fn registration(name: &str, token: &str, transport: Transport) -> NewDevice {
    NewDevice {
        account: account(name),
        app_id: AppId::parse("com.example.app").unwrap(),
        platform: Platform::Android,
        transport,
        token: token.to_owned(),
        options: serde_json::json!({"k": "v"}).as_object().unwrap().clone(),
    }
}

async fn device(store: &SqlStore, name: &str, token: &str) -> Device {
    store
        .upsert_device(&registration(name, token, Transport::UnifiedPush), 1_000)
        .await
        .unwrap()
}

fn message(body: &str) -> Message {
    Message {
        title: Some("title".into()),
        body: Some(body.into()),
        data: serde_json::json!({"n": 1, "s": "x"})
            .as_object()
            .unwrap()
            .clone(),
        collapse_key: Some("c".into()),
        ttl: Some(3600),
        priority: Priority::Normal,
        channel: Some("reply".into()),
        mutable_content: true,
        thread_id: Some("t".into()),
    }
}

fn set(key: &str, value: Option<&str>) -> StateChange {
    StateChange {
        key: key.into(),
        value: value.map(str::to_owned),
    }
}

fn delivery(device: &Device, body: &str, at: i64) -> NewDelivery {
    NewDelivery {
        device: device.clone(),
        message: message(body),
        dedupe_key: None,
        dedupe_window_ms: 0,
        created_at: at,
    }
}

async fn claim_all(store: &SqlStore, transport: Transport, now: i64) -> Vec<herald_core::Delivery> {
    store
        .claim(transport, 1000, now, now + LEASE)
        .await
        .unwrap()
}

async fn migrations_are_recorded_and_idempotent(h: &Harness) {
    let store = &h.store;
    assert_eq!(store.schema_version().await.unwrap(), Some(3));
    store.ping().await.unwrap();
}

async fn registering_twice_keeps_one_device(h: &Harness) {
    let store = &h.store;
    let first = device(store, "alice", "https://push.example/a").await;
    let mut again = registration("alice", "https://push.example/a", Transport::UnifiedPush);
    again.platform = Platform::Desktop;
    let second = store.upsert_device(&again, 2_000).await.unwrap();
    assert_eq!(first.id, second.id);
    assert_eq!(second.created_at, 1_000);
    assert_eq!(second.updated_at, 2_000);
    assert_eq!(second.registration.platform, Platform::Desktop);
    assert_eq!(store.count_devices().await.unwrap(), 1);
    let listed = store.devices_for_account(&account("alice")).await.unwrap();
    assert_eq!(listed, vec![second]);
}

async fn a_token_registered_by_another_account_moves_and_drops_old_deliveries(h: &Harness) {
    let store = &h.store;
    let d = device(store, "alice", "tok").await;
    store
        .enqueue(&[delivery(&d, "for alice", 1)])
        .await
        .unwrap();
    let moved = device(store, "bob", "tok").await;
    assert_eq!(moved.id, d.id);
    assert!(
        store
            .devices_for_account(&account("alice"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .devices_for_account(&account("bob"))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        store.depth().await.unwrap(),
        0,
        "alice's push must not reach bob"
    );
}

async fn devices_are_removed_by_token_and_by_id(h: &Harness) {
    let store = &h.store;
    let a = device(store, "alice", "a").await;
    device(store, "alice", "b").await;
    let app = AppId::parse("com.example.app").unwrap();
    assert!(store.remove_device(&app, "b").await.unwrap());
    assert!(!store.remove_device(&app, "b").await.unwrap());
    assert!(
        !store
            .remove_device(&AppId::parse("other").unwrap(), "a")
            .await
            .unwrap()
    );
    assert!(store.remove_device_by_id(a.id).await.unwrap());
    assert!(!store.remove_device_by_id(a.id).await.unwrap());
    assert_eq!(store.count_devices().await.unwrap(), 0);
}

async fn accounts_are_listed_by_namespace_once_each(h: &Harness) {
    let store = &h.store;
    let register = |account: &str, token: &str| NewDevice {
        account: Account::parse(account).unwrap(),
        ..registration("unused", token, Transport::UnifiedPush)
    };
    for (account, token) in [
        ("atproto:did:plc:bbb", "1"),
        ("atproto:did:plc:aaa", "2"),
        ("atproto:did:plc:aaa", "3"),
        ("atprotox:did:plc:ccc", "4"),
        ("nostr:abcdef", "5"),
    ] {
        store
            .upsert_device(&register(account, token), 1_000)
            .await
            .unwrap();
    }
    let listed = |accounts: Vec<Account>| -> Vec<String> {
        accounts.iter().map(|a| a.as_str().to_owned()).collect()
    };
    assert_eq!(
        listed(store.accounts_in("atproto").await.unwrap()),
        ["atproto:did:plc:aaa", "atproto:did:plc:bbb"]
    );
    assert_eq!(
        listed(store.accounts_in("nostr").await.unwrap()),
        ["nostr:abcdef"]
    );
    assert!(store.accounts_in("status").await.unwrap().is_empty());
    assert!(store.accounts_in("%").await.unwrap().is_empty());
}

/// A device of `app` for `account` on `platform`, registered at `at`.
async fn device_of(
    store: &SqlStore,
    app: &str,
    account: &str,
    platform: Platform,
    token: &str,
    at: i64,
) -> Device {
    let device = NewDevice {
        account: Account::parse(account).unwrap(),
        app_id: AppId::parse(app).unwrap(),
        platform,
        ..registration("unused", token, Transport::UnifiedPush)
    };
    store.upsert_device(&device, at).await.unwrap()
}

async fn devices_are_counted_per_platform_within_one_app_and_namespace(h: &Harness) {
    let store = &h.store;
    let app = AppId::parse("com.example.app").unwrap();
    assert!(
        store
            .count_devices_by_platform(&app, "nostr")
            .await
            .unwrap()
            .is_empty()
    );
    for (app, account, platform, token) in [
        ("com.example.app", "nostr:aa", Platform::Android, "1"),
        ("com.example.app", "nostr:bb", Platform::Android, "2"),
        ("com.example.app", "nostr:bb", Platform::Ios, "3"),
        ("com.example.app", "nostrx:cc", Platform::Ios, "4"),
        ("com.example.app", "test:dd", Platform::Ios, "5"),
        ("com.example.other", "nostr:aa", Platform::Ios, "6"),
    ] {
        device_of(store, app, account, platform, token, 1_000).await;
    }
    assert_eq!(
        store
            .count_devices_by_platform(&app, "nostr")
            .await
            .unwrap(),
        [(Platform::Android, 2), (Platform::Ios, 1)]
    );
}

async fn expired_registrations_go_with_their_deliveries_and_fresh_ones_stay(h: &Harness) {
    let store = &h.store;
    let app = AppId::parse("com.example.app").unwrap();
    let mut stale = None;
    for (app, account, token, at) in [
        ("com.example.app", "nostr:aa", "1", 1_000),
        ("com.example.app", "nostr:bb", "2", 1_000),
        // Registered again: renewed.
        ("com.example.app", "nostr:bb", "2", 5_000),
        ("com.example.app", "test:cc", "3", 1_000),
        ("com.example.other", "nostr:aa", "4", 1_000),
    ] {
        let device = device_of(store, app, account, Platform::Android, token, at).await;
        stale.get_or_insert(device);
    }
    let stale = stale.unwrap();
    store
        .enqueue(&[delivery(&stale, "for the stale one", 1_000)])
        .await
        .unwrap();

    assert_eq!(store.expire_devices(&app, "nostr", 5_000).await.unwrap(), 1);
    let left = store.devices_for_account(&stale.registration.account).await;
    assert!(
        left.unwrap()
            .iter()
            .all(|d| d.registration.app_id.as_str() == "com.example.other"),
        "only the other app's device of the account is left"
    );
    assert_eq!(store.depth().await.unwrap(), 0, "its queued push went too");
    assert_eq!(store.count_devices().await.unwrap(), 3);
    assert_eq!(store.expire_devices(&app, "nostr", 5_000).await.unwrap(), 0);
}

async fn claimed_deliveries_carry_everything_the_provider_needs(h: &Harness) {
    let store = &h.store;
    let d = device(store, "alice", "https://push.example/a").await;
    let report = store
        .enqueue(&[delivery(&d, "héllo ✓", 5_000)])
        .await
        .unwrap();
    assert_eq!(report.queued, 1);
    let claimed = claim_all(store, Transport::UnifiedPush, 5_000).await;
    assert_eq!(claimed.len(), 1);
    let c = &claimed[0];
    assert_eq!(c.device_id, d.id);
    assert_eq!(c.account, account("alice"));
    assert_eq!(c.app_id.as_str(), "com.example.app");
    assert_eq!(c.platform, Platform::Android);
    assert_eq!(c.transport, Transport::UnifiedPush);
    assert_eq!(c.token, "https://push.example/a");
    assert_eq!(c.options, d.registration.options);
    assert_eq!(c.message, message("héllo ✓"));
    assert_eq!(c.created_at, 5_000);
    assert_eq!(c.attempts, 1);
}

async fn claims_are_per_transport_and_bounded(h: &Harness) {
    let store = &h.store;
    let up = device(store, "alice", "up").await;
    let apns = store
        .upsert_device(&registration("alice", "apns", Transport::Apns), 1)
        .await
        .unwrap();
    let batch: Vec<_> = (0..5)
        .map(|i| delivery(&up, &format!("{i}"), 10 + i))
        .collect();
    store.enqueue(&batch).await.unwrap();
    store.enqueue(&[delivery(&apns, "apns", 10)]).await.unwrap();
    assert_eq!(store.depth().await.unwrap(), 6);

    let first = store
        .claim(Transport::UnifiedPush, 3, 100, 100 + LEASE)
        .await
        .unwrap();
    let bodies: Vec<_> = first
        .iter()
        .map(|c| c.message.body.clone().unwrap())
        .collect();
    assert_eq!(bodies, ["0", "1", "2"], "oldest due first");
    let rest = store
        .claim(Transport::UnifiedPush, 10, 100, 100 + LEASE)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    assert!(
        store
            .claim(Transport::UnifiedPush, 0, 100, 100)
            .await
            .unwrap()
            .is_empty()
    );
    let other = claim_all(store, Transport::Apns, 100).await;
    assert_eq!(other.len(), 1);
    assert!(claim_all(store, Transport::Fcm, 100).await.is_empty());
    assert!(
        claim_all(store, Transport::UnifiedPush, 5).await.is_empty(),
        "not due before created"
    );
}

async fn a_leased_delivery_is_not_claimed_again_until_the_lease_ends(h: &Harness) {
    let store = &h.store;
    let d = device(store, "alice", "t").await;
    store.enqueue(&[delivery(&d, "x", 0)]).await.unwrap();
    let now = 1_000;
    assert_eq!(claim_all(store, Transport::UnifiedPush, now).await.len(), 1);
    assert!(
        claim_all(store, Transport::UnifiedPush, now + LEASE - 1)
            .await
            .is_empty()
    );
    assert_eq!(
        store.next_due(Transport::UnifiedPush).await.unwrap(),
        Some(now + LEASE)
    );
    let again = claim_all(store, Transport::UnifiedPush, now + LEASE).await;
    assert_eq!(again.len(), 1, "an abandoned lease is claimed again");
    assert_eq!(again[0].attempts, 2);
}

async fn a_retried_delivery_waits_until_due(h: &Harness) {
    let store = &h.store;
    let d = device(store, "alice", "t").await;
    store.enqueue(&[delivery(&d, "x", 0)]).await.unwrap();
    let c = claim_all(store, Transport::UnifiedPush, 10).await.remove(0);
    store
        .settle(&[(
            c.id,
            Settlement::RetryAt {
                due_at: 5_000,
                error: "HTTP 503 ".repeat(100),
            },
        )])
        .await
        .unwrap();
    assert_eq!(
        store.next_due(Transport::UnifiedPush).await.unwrap(),
        Some(5_000)
    );
    assert!(
        claim_all(store, Transport::UnifiedPush, 4_999)
            .await
            .is_empty()
    );
    let again = claim_all(store, Transport::UnifiedPush, 5_000).await;
    assert_eq!(again.len(), 1);
    store
        .settle(&[(again[0].id, Settlement::Remove)])
        .await
        .unwrap();
    assert_eq!(store.depth().await.unwrap(), 0);
    assert_eq!(store.next_due(Transport::UnifiedPush).await.unwrap(), None);
}

async fn one_settle_removes_and_reschedules_together(h: &Harness) {
    let store = &h.store;
    let d = device(store, "alice", "t").await;
    let batch: Vec<_> = (0..4).map(|i| delivery(&d, &i.to_string(), 0)).collect();
    store.enqueue(&batch).await.unwrap();
    let c = claim_all(store, Transport::UnifiedPush, 10).await;
    assert_eq!(c.len(), 4);
    let retry = Settlement::RetryAt {
        due_at: 5_000,
        error: "HTTP 429".into(),
    };
    store
        .settle(&[
            (c[0].id, Settlement::Remove),
            (c[1].id, retry),
            (c[2].id, Settlement::Remove),
            (i64::MAX, Settlement::Remove),
        ])
        .await
        .unwrap();
    store.settle(&[]).await.unwrap();
    assert_eq!(
        store.depth().await.unwrap(),
        2,
        "the retry and the still leased"
    );
    let again = claim_all(store, Transport::UnifiedPush, 5_000).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (c[1].id, 2));
    let leased = claim_all(store, Transport::UnifiedPush, 10 + LEASE).await;
    assert_eq!(
        leased.len(),
        1,
        "the unsettled one comes back when its lease ends"
    );
    assert_eq!(leased[0].id, c[3].id);
}

async fn a_batch_keeps_every_delivery_exactly(h: &Harness) {
    let store = &h.store;
    let d = device(store, "alice", "t").await;
    let bodies = [
        "quote \" backslash \\ nul \0 tab \t",
        "héllo ✓ 🦋",
        "",
        "{\"not\": \"json\"}",
    ];
    let batch: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| delivery(&d, body, 1_000 + i as i64))
        .collect();
    assert_eq!(store.enqueue(&batch).await.unwrap().queued, 4);
    let claimed = claim_all(store, Transport::UnifiedPush, 2_000).await;
    let got: Vec<_> = claimed
        .iter()
        .map(|c| (c.message.clone(), c.created_at))
        .collect();
    let want: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| (message(body), 1_000 + i as i64))
        .collect();
    assert_eq!(got, want, "in order, byte for byte");
}

async fn removing_a_device_drops_its_queued_deliveries(h: &Harness) {
    let store = &h.store;
    let a = device(store, "alice", "a").await;
    let b = device(store, "alice", "b").await;
    store
        .enqueue(&[delivery(&a, "1", 0), delivery(&b, "2", 0)])
        .await
        .unwrap();
    store.remove_device_by_id(a.id).await.unwrap();
    let left = claim_all(store, Transport::UnifiedPush, 1).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].device_id, b.id);
}

async fn nothing_is_queued_for_a_device_removed_meanwhile(h: &Harness) {
    let store = &h.store;
    let gone = device(store, "alice", "gone").await;
    let here = device(store, "alice", "here").await;
    store.remove_device_by_id(gone.id).await.unwrap();
    let mut with_key = delivery(&gone, "x", 0);
    with_key.dedupe_key = Some("k".into());
    with_key.dedupe_window_ms = 1000;
    let report = store
        .enqueue(&[with_key, delivery(&here, "y", 0)])
        .await
        .unwrap();
    assert_eq!(report.queued, 1, "the batch survives a vanished device");
    assert_eq!(store.depth().await.unwrap(), 1);
    let report = store
        .enqueue(&[delivery(&gone, "x", 0), delivery(&here, "y", 0)])
        .await
        .unwrap();
    assert_eq!(report.queued, 1, "also without dedupe keys");
    assert_eq!(store.depth().await.unwrap(), 2);
}

async fn a_dedupe_key_reaches_each_device_once_per_window(h: &Harness) {
    let store = &h.store;
    let a = device(store, "alice", "a").await;
    let b = device(store, "alice", "b").await;
    let keyed = |d: &Device, at: i64| NewDelivery {
        dedupe_key: Some("at://did:plc:x/app.bsky.feed.like/3k".into()),
        dedupe_window_ms: 10_000,
        ..delivery(d, "like", at)
    };
    let r = store.enqueue(&[keyed(&a, 0), keyed(&b, 0)]).await.unwrap();
    assert_eq!((r.queued, r.deduplicated), (2, 0));
    let r = store.enqueue(&[keyed(&a, 9_999)]).await.unwrap();
    assert_eq!((r.queued, r.deduplicated), (0, 1));
    let r = store.enqueue(&[keyed(&a, 10_000)]).await.unwrap();
    assert_eq!((r.queued, r.deduplicated), (1, 0), "the window has passed");
    let r = store
        .enqueue(&[delivery(&a, "unkeyed", 1), delivery(&a, "unkeyed", 1)])
        .await
        .unwrap();
    assert_eq!(r.queued, 2, "no key, no dedupe");
    // a's key now runs to 20,000, b's ran out at 10,000.
    assert_eq!(store.purge_dedupe(15_000).await.unwrap(), 1);
    assert_eq!(store.purge_dedupe(20_000).await.unwrap(), 1);
}

/// One enqueue claims all its keys at once: a key twice in the batch
/// reaches its device once, times of creation may differ within it, and
/// hundreds of keys are claimed as one.
async fn a_batch_claims_each_key_once_whatever_it_holds(h: &Harness) {
    let store = &h.store;
    let a = device(store, "alice", "a").await;
    let b = device(store, "alice", "b").await;
    let keyed = |d: &Device, key: &str, at: i64| NewDelivery {
        dedupe_key: Some(key.into()),
        dedupe_window_ms: 10_000,
        ..delivery(d, key, at)
    };
    let r = store
        .enqueue(&[
            keyed(&a, "k", 0),
            keyed(&a, "k", 0),
            keyed(&b, "k", 0),
            keyed(&a, "k", 5),
            keyed(&a, "j", 5),
            delivery(&a, "unkeyed", 5),
        ])
        .await
        .unwrap();
    assert_eq!((r.queued, r.deduplicated), (4, 2));
    let many: Vec<_> = (0..600).map(|i| keyed(&b, &format!("n{i}"), 20)).collect();
    let r = store.enqueue(&many).await.unwrap();
    assert_eq!((r.queued, r.deduplicated), (600, 0));
    // Half of them again, and one older claim expired by now.
    let mut again: Vec<_> = (0..300)
        .map(|i| keyed(&b, &format!("n{i}"), 9_000))
        .collect();
    again.push(keyed(&b, "k", 10_000));
    let r = store.enqueue(&again).await.unwrap();
    assert_eq!(
        (r.queued, r.deduplicated),
        (1, 300),
        "b's claim of k ran out"
    );
    let r = store.enqueue(&[keyed(&b, "k", 10_000)]).await.unwrap();
    assert_eq!((r.queued, r.deduplicated), (0, 1), "and was claimed again");
    assert_eq!(store.depth().await.unwrap(), 605);
}

async fn the_cursor_advances_with_the_deliveries_it_produced(h: &Harness) {
    let store = &h.store;
    assert_eq!(store.cursor("jetstream").await.unwrap(), None);
    let d = device(store, "alice", "a").await;
    let r = store
        .enqueue_and_advance(
            "jetstream",
            "1725911162329308",
            &[delivery(&d, "x", 0)],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.queued, 1);
    store
        .enqueue_and_advance("jetstream", "1725911162329999", &[], &[])
        .await
        .unwrap();
    assert_eq!(
        store.cursor("jetstream").await.unwrap().as_deref(),
        Some("1725911162329999")
    );
    assert_eq!(store.cursor("firehose").await.unwrap(), None);
    assert_eq!(store.depth().await.unwrap(), 1);
}

async fn source_state_is_kept_and_forgotten_with_the_cursor(h: &Harness) {
    let store = &h.store;
    store
        .enqueue_and_advance(
            "jetstream",
            "1",
            &[],
            &[set("b", Some("1")), set("a", Some("2"))],
        )
        .await
        .unwrap();
    store
        .enqueue_and_advance("firehose", "9", &[], &[set("a", Some("other source"))])
        .await
        .unwrap();
    store
        .enqueue_and_advance(
            "jetstream",
            "2",
            &[],
            &[set("b", None), set("a", Some("3")), set("c", None)],
        )
        .await
        .unwrap();
    assert_eq!(
        store.source_state("jetstream").await.unwrap(),
        [("a".to_owned(), "3".to_owned())]
    );
    assert_eq!(store.source_state("firehose").await.unwrap().len(), 1);
    assert_eq!(
        store.cursor("jetstream").await.unwrap().as_deref(),
        Some("2")
    );
}

/// One commit may change a key twice (set, then forgotten; forgotten, then
/// set again) and change thousands: the last change of each key wins.
async fn a_commits_state_changes_apply_in_order_however_many(h: &Harness) {
    let store = &h.store;
    store
        .enqueue_and_advance("nostr", "1", &[], &[set("gone", Some("x"))])
        .await
        .unwrap();
    let mut changes = vec![
        set("twice", Some("first")),
        set("twice", Some("second")),
        set("back", None),
        set("back", Some("again")),
        set("gone", Some("y")),
        set("gone", None),
        set("quote\"d \\ 'key' é", Some("[\"value\"]")),
    ];
    changes.extend((0..3000).map(|i| set(&format!("id{i:04}"), Some(&i.to_string()))));
    store
        .enqueue_and_advance("nostr", "2", &[], &changes)
        .await
        .unwrap();
    let state = store.source_state("nostr").await.unwrap();
    assert_eq!(state.len(), 3003);
    let value = |key: &str| {
        state
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(value("twice"), Some("second"));
    assert_eq!(value("back"), Some("again"));
    assert_eq!(value("gone"), None);
    assert_eq!(value("quote\"d \\ 'key' é"), Some("[\"value\"]"));
    assert_eq!(value("id2999"), Some("2999"));
}

async fn concurrent_claims_never_hand_out_a_delivery_twice(h: &Harness) {
    let store = &h.store;
    let d = device(store, "alice", "a").await;
    let batch: Vec<_> = (0..200).map(|i| delivery(&d, &i.to_string(), 0)).collect();
    store.enqueue(&batch).await.unwrap();
    let store = Arc::new(store.clone());
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim(Transport::UnifiedPush, 7, 1, 1 + LEASE)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| c.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert!(seen.insert(id), "delivery {id} claimed twice");
        }
    }
    assert_eq!(seen.len(), 200);
}

async fn unreadable_rows_are_reported_not_skipped(h: &Harness) {
    let store = &h.store;
    let d = device(store, "alice", "a").await;
    store.enqueue(&[delivery(&d, "x", 0)]).await.unwrap();
    // A row as a future version might write it, with a platform this one lacks.
    let raw = sqlx::AnyPool::connect(&h.url).await.unwrap();
    sqlx::query("UPDATE deliveries SET platform = 'pager'")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;
    let err = store
        .claim(Transport::UnifiedPush, 10, 1, 2)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("platform"), "{err}");
}

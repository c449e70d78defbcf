//! Actor names from a local PLC directory and a local PDS: the handle from
//! the DID document, the display name from the profile record on the
//! actor's own PDS, within the lookup budget, and nothing from a PDS that
//! is slow, hostile or on a private address.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_atproto::actor_names::{
    ActorNameSource, ActorNames, ActorNamesConfig, LOOKUP_BUDGET, MAX_DISPLAY_NAME_CHARS, PdsNames,
};
use herald_atproto::did::Did;
use herald_atproto::pds::{self, MAX_RECORD_ANSWER_BYTES, PdsError};
use herald_atproto::render::ActorName;
use herald_atproto::resolver::{DidResolver, ResolverConfig};
use herald_standins::pds::PdsService;
use herald_standins::plc::PlcDirectory;
use serde_json::json;

const PROFILE: &str = "app.bsky.actor.profile";

struct Network {
    plc: PlcDirectory,
    pds: PdsService,
}

impl Network {
    async fn start() -> Self {
        herald_http::install_crypto_provider();
        Self {
            plc: PlcDirectory::start().await,
            pds: PdsService::start().await,
        }
    }

    /// A new account on the local PDS with `handle` and, if given, a
    /// profile naming it `display_name`.
    fn account(&self, handle: &str, display_name: Option<&str>) -> Did {
        let did = self.plc.create_account();
        self.plc.set_identity(&did, handle, &self.pds.url());
        if let Some(name) = display_name {
            self.pds.put_record(
                &did,
                PROFILE,
                "self",
                json!({"$type": PROFILE, "displayName": name, "description": "hello"}),
            );
        }
        Did::parse(&did).unwrap()
    }

    /// Answers `body` with `status` for the profile of a new account.
    fn hostile(&self, handle: &str, status: u16, body: String) -> Did {
        let did = self.account(handle, None);
        self.pds.answer(did.as_str(), PROFILE, "self", status, body);
        did
    }

    fn resolver(&self, allow_private: bool) -> Arc<DidResolver> {
        Arc::new(
            DidResolver::new(ResolverConfig {
                plc_url: self.plc.url(),
                allow_private,
                ..ResolverConfig::default()
            })
            .unwrap(),
        )
    }

    fn names(&self, allow_private: bool) -> ActorNames {
        let fetcher = PdsNames::new(self.resolver(allow_private));
        ActorNames::new(ActorNamesConfig::default(), Arc::new(fetcher))
    }
}

fn named(display_name: Option<&str>, handle: &str) -> ActorName {
    ActorName {
        display_name: display_name.map(str::to_owned),
        handle: Some(handle.to_owned()),
    }
}

#[tokio::test]
async fn names_an_actor_from_their_document_and_their_own_pds_once() {
    let net = Network::start().await;
    let alice = net.account("Alice.Example.com", Some("  Alice\u{202E}\n"));
    let names = net.names(true);
    assert_eq!(
        names.name(&alice).await,
        named(Some("Alice"), "alice.example.com")
    );
    assert_eq!(
        names.name(&alice).await,
        named(Some("Alice"), "alice.example.com")
    );
    assert_eq!(net.pds.requests(), 1, "the second came from the cache");
}

#[tokio::test]
async fn a_slow_pds_costs_one_budget_and_names_the_actor_next_time() {
    let net = Network::start().await;
    let alice = net.account("alice.example.com", Some("Alice"));
    let names = net.names(true);
    net.pds.set_delay(Duration::from_secs(1));
    let started = Instant::now();
    assert_eq!(
        names.name(&alice).await,
        named(None, "alice.example.com"),
        "the handle, from the document read in time"
    );
    let waited = started.elapsed();
    assert!(
        waited >= LOOKUP_BUDGET && waited < Duration::from_secs(1),
        "{waited:?}"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = Instant::now();
    assert_eq!(
        names.name(&alice).await,
        named(Some("Alice"), "alice.example.com")
    );
    assert!(started.elapsed() < LOOKUP_BUDGET, "from the cache");
    assert_eq!(net.pds.requests(), 1);
}

#[tokio::test]
async fn an_actor_without_a_profile_is_named_by_their_handle() {
    let net = Network::start().await;
    let record_not_found = net.account("bob.example.com", None);
    let not_found = net.hostile("carol.example.com", 404, "Not Found".into());
    let nameless = net.account("dave.example.com", Some(" \t "));
    let homeless = Did::parse(&net.plc.create_account()).unwrap();
    let names = net.names(true);
    assert_eq!(
        names.name(&homeless).await,
        ActorName::default(),
        "no handle, no PDS"
    );
    for (actor, handle) in [
        (&record_not_found, "bob.example.com"),
        (&not_found, "carol.example.com"),
        (&nameless, "dave.example.com"),
    ] {
        assert_eq!(names.name(actor).await, named(None, handle));
        assert_eq!(names.name(actor).await, named(None, handle));
    }
    assert_eq!(
        net.pds.requests(),
        3,
        "no profile is an answer, kept like a name"
    );
}

#[tokio::test]
async fn hostile_answers_name_nobody_but_are_cut_off_and_cleaned() {
    let net = Network::start().await;
    let oversized = net.hostile(
        "big.example.com",
        200,
        json!({"value": {"displayName": "A".repeat(MAX_RECORD_ANSWER_BYTES)}}).to_string(),
    );
    let html = net.hostile("html.example.com", 200, "<html>welcome</html>".into());
    let failing = net.hostile(
        "down.example.com",
        500,
        r#"{"error":"InternalServerError"}"#.into(),
    );
    let not_a_string = net.hostile(
        "number.example.com",
        200,
        json!({"value": {"displayName": 42}}).to_string(),
    );
    let long = net.account(
        "long.example.com",
        Some(&format!("\u{2067}{}\u{2069}", "Z".repeat(2000))),
    );
    let names = net.names(true);
    for (actor, handle) in [
        (&oversized, "big.example.com"),
        (&html, "html.example.com"),
        (&failing, "down.example.com"),
        (&not_a_string, "number.example.com"),
    ] {
        assert_eq!(names.name(actor).await, named(None, handle));
    }
    assert_eq!(
        names.name(&long).await.display_name,
        Some("Z".repeat(MAX_DISPLAY_NAME_CHARS))
    );

    let resolver = net.resolver(true);
    let read = |did: Did| {
        let resolver = Arc::clone(&resolver);
        let url = net.pds.url();
        async move { pds::get_record(&resolver, &url, &did, PROFILE, "self").await }
    };
    let err = read(oversized).await.unwrap_err();
    assert!(
        matches!(&err, PdsError::Answer(why) if why.contains("larger than")),
        "{err}"
    );
    let err = read(html).await.unwrap_err();
    assert!(
        matches!(&err, PdsError::Answer(why) if why.contains("not a getRecord answer")),
        "{err}"
    );
    assert!(matches!(
        read(failing).await,
        Err(PdsError::Status(s)) if s.as_u16() == 500
    ));
}

#[tokio::test]
async fn a_pds_on_a_private_address_is_refused_unless_private_endpoints_are_allowed() {
    let net = Network::start().await;
    let port = net.pds.url().rsplit(':').next().unwrap().to_owned();
    let names = net.names(false);
    for (handle, endpoint) in [
        ("loopback.example.com", format!("https://127.0.0.1:{port}")),
        ("localhost.example.com", format!("https://localhost:{port}")),
        ("metadata.example.com", "https://169.254.169.254".to_owned()),
        ("lan.example.com", "https://10.0.0.1".to_owned()),
        ("plain.example.com", net.pds.url()),
    ] {
        let did = net.account(handle, Some("Mallory"));
        net.plc.set_identity(did.as_str(), handle, &endpoint);
        assert_eq!(
            names.name(&did).await,
            named(None, handle),
            "{endpoint} was read"
        );
    }
    assert_eq!(net.pds.requests(), 0, "nothing was asked");

    let allowed = net.account("local.example.com", Some("Local"));
    assert_eq!(
        net.names(true).name(&allowed).await,
        named(Some("Local"), "local.example.com")
    );
}

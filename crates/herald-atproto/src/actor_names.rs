//! Who did it: the actor's display name and handle for a push's text and
//! its `actorDisplayName` / `actorHandle` fields.
//!
//! Names come from the actor's own records, not from an AppView (the Go
//! gateway asked the public AppView's `getProfile`, atproto.md §14): the
//! handle from their DID document (through the shared, caching
//! [`DidResolver`]), the display name from the `app.bsky.actor.profile`
//! record `self` on their PDS (`crate::pds`). Both are whatever the actor
//! wrote, so a display name is cleaned before it reaches a notification
//! ([`clean_display_name`]) and a handle must have the handle syntax.
//!
//! [`ActorNames`] keeps them in a cache, for these reasons:
//! - **Bounded.** At most [`MAX_ACTORS`] actors, the least recently asked
//!   for forgotten first (an LRU, O(1) per eviction, where the Go gateway
//!   scanned its whole map under a lock).
//! - **Fresh enough.** A name is trusted for [`NAME_TTL`]; the stream
//!   corrects it sooner: `actor.profile` events rename a cached actor and
//!   `#identity` events change or invalidate the handle. Only actors
//!   already cached are touched, so the whole network's profile edits
//!   cannot churn the cache.
//! - **One fetch per actor.** Concurrent askers share the fetch in flight,
//!   and at most [`MAX_FETCHES_IN_FLIGHT`] run at once: a burst of new
//!   actors cannot spawn unbounded work.
//! - **Failures briefly.** When the document or the profile cannot be read,
//!   what was known before stays, for [`NEGATIVE_TTL`]: an actor on a dead
//!   PDS costs one fetch per interval however often they act. A profile
//!   that does not exist is an answer, not a failure.
//! - **Never holding the pipeline.** The pipeline handles events one at a
//!   time, so a lookup waits at most [`LOOKUP_BUDGET`]. Past it the caller
//!   gets what is known (an expired name, or the handle once the document
//!   is read, else nothing: "Someone") and the fetch carries on, filling
//!   the cache for the actor's next event.
//!
//! The handle is the one the DID document claims. It is not verified back
//! against its domain (DNS `_atproto` record or `/.well-known/atproto-did`);
//! it is shown only when the actor has no display name, which anyone can
//! set to anything anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use hashlink::LruCache;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::did::{Did, parse_handle};
use crate::jetstream_event::{EventBody, JetstreamEvent, Operation, Record, nsid};
use crate::pds;
use crate::render::ActorName;
use crate::resolver::DidResolver;

/// Actors whose names are kept: at some 200 bytes each, about 20 MB. Ten
/// times the Go gateway's 10,000, which the likers of one viral post
/// outgrow.
pub const MAX_ACTORS: usize = 100_000;
/// How long a name read from its source is trusted. Names change rarely,
/// and the stream's profile and identity events correct most changes
/// sooner.
pub const NAME_TTL: Duration = Duration::from_secs(60 * 60);
/// How long a failed read is remembered before the next try: long enough
/// that an actor on a dead PDS costs one fetch per few minutes however
/// often they act, short enough that a PDS back from a restart is read
/// again within minutes.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5 * 60);
/// The longest a lookup holds the pipeline. A cached name answers at once;
/// a warm connection to a healthy PDS answers within this, while a cold one
/// (TCP and TLS to a PDS across an ocean alone take some 250 ms) is left to
/// finish in the background rather than stall every event behind it.
pub const LOOKUP_BUDGET: Duration = Duration::from_millis(150);
/// Fetches running at once. Each ends within [`FETCH_DEADLINE`], so even
/// with every PDS dead some 13 new actors a second are read (with healthy
/// ones, answering in milliseconds, thousands); a lookup beyond it gets
/// what is known at once and tries again at the actor's next event.
pub const MAX_FETCHES_IN_FLIGHT: usize = 256;
/// A fetch gives up after this, whatever its steps' own timeouts (the DID
/// document's 10 s, the profile's 5 s), so a slot in flight is always freed.
pub const FETCH_DEADLINE: Duration = Duration::from_secs(20);
/// Longest display name kept, in characters: the lexicon's limit is 64
/// graphemes. A name of composed emoji is cut a little early, which a
/// notification line can bear.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
/// The record key of an account's one profile record.
const PROFILE_RKEY: &str = "self";

/// Where the pipeline finds an actor's name.
#[async_trait]
pub trait ActorNameSource: Send + Sync {
    /// What is known of `actor`'s name, after a short wait at most.
    async fn name(&self, actor: &Did) -> ActorName;
    /// Learns from an event of the stream. It is called for every event,
    /// so it must be cheap for the ones that say nothing about names.
    fn observe(&self, event: &JetstreamEvent);
}

/// Knows no names: every push says "Someone". For pipelines that must not
/// reach the network, such as benchmarks of the pipeline itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoNames;

#[async_trait]
impl ActorNameSource for NoNames {
    async fn name(&self, _actor: &Did) -> ActorName {
        ActorName::default()
    }

    fn observe(&self, _event: &JetstreamEvent) {}
}

/// What an actor's DID document says about their name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorIdentity {
    pub handle: Option<String>,
    /// Where their profile lives; `None`: no PDS, hence no profile.
    pub pds: Option<String>,
}

/// Why a name could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

/// Reads names at their source, in the two steps [`ActorNames`] serves
/// separately: the handle is known as soon as the document is read.
#[async_trait]
pub trait NameFetcher: Send + Sync {
    /// The actor's handle and PDS; `fresh` reads the DID document again
    /// rather than from any cache.
    async fn identity(&self, actor: &Did, fresh: bool) -> Result<ActorIdentity, NameError>;
    /// The display name in the actor's profile, cleaned; `Ok(None)` when
    /// they have no profile or no name in it.
    async fn display_name(
        &self,
        actor: &Did,
        identity: &ActorIdentity,
    ) -> Result<Option<String>, NameError>;
}

/// Names from the actor's DID document and their own PDS.
pub struct PdsNames {
    resolver: Arc<DidResolver>,
}

impl PdsNames {
    /// Reads through `resolver`: its document cache, and its guarded client
    /// for the PDS.
    pub fn new(resolver: Arc<DidResolver>) -> Self {
        Self { resolver }
    }
}

#[async_trait]
impl NameFetcher for PdsNames {
    async fn identity(&self, actor: &Did, fresh: bool) -> Result<ActorIdentity, NameError> {
        let document = self
            .resolver
            .resolve(actor, fresh)
            .await
            .map_err(|e| NameError(e.to_string()))?;
        Ok(ActorIdentity {
            handle: document.handle(),
            pds: document.pds_endpoint().map(str::to_owned),
        })
    }

    async fn display_name(
        &self,
        actor: &Did,
        identity: &ActorIdentity,
    ) -> Result<Option<String>, NameError> {
        let Some(endpoint) = &identity.pds else {
            return Ok(None);
        };
        let profile = pds::get_record(
            &self.resolver,
            endpoint,
            actor,
            nsid::ACTOR_PROFILE,
            PROFILE_RKEY,
        )
        .await
        .map_err(|e| NameError(e.to_string()))?;
        Ok(profile
            .as_ref()
            .and_then(|record| record.get("displayName"))
            .and_then(Value::as_str)
            .and_then(clean_display_name))
    }
}

/// A display name fit for a notification line: control characters and
/// bidirectional overrides dropped (they would break the line or reorder
/// the words after the name), runs of white space made one space, trimmed,
/// cut to [`MAX_DISPLAY_NAME_CHARS`]; `None` if nothing is left.
pub fn clean_display_name(raw: &str) -> Option<String> {
    let visible: String = raw
        .chars()
        .filter(|c| !is_bidi_control(*c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat: String = visible.split_whitespace().collect::<Vec<_>>().join(" ");
    let name: String = flat.chars().take(MAX_DISPLAY_NAME_CHARS).collect();
    let name = name.trim_end();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Unicode's explicit direction marks, embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The cache's bounds; [`Default`] is [`MAX_ACTORS`] and
/// [`MAX_FETCHES_IN_FLIGHT`].
#[derive(Debug, Clone)]
pub struct ActorNamesConfig {
    pub max_actors: usize,
    pub max_fetches: usize,
}

impl Default for ActorNamesConfig {
    fn default() -> Self {
        Self {
            max_actors: MAX_ACTORS,
            max_fetches: MAX_FETCHES_IN_FLIGHT,
        }
    }
}

/// The names cache (see the module's doc).
pub struct ActorNames {
    shared: Arc<Shared>,
}

/// What the cache and its fetches in the background share.
struct Shared {
    config: ActorNamesConfig,
    fetcher: Arc<dyn NameFetcher>,
    state: Mutex<State>,
}

struct State {
    entries: LruCache<Did, Entry>,
    in_flight: HashMap<Did, InFlight>,
}

struct Entry {
    name: ActorName,
    /// Past this the name is still served while it is read again.
    expires: Instant,
    /// The DID document changed since it was read: read it afresh, past
    /// the resolver's cache.
    reresolve: bool,
}

struct InFlight {
    /// Turns true when the fetch has stored what it found.
    done: watch::Receiver<bool>,
    /// `None` until the DID document is read; then the handle it names.
    handle: Option<Option<String>>,
    /// A stream event changed the actor meanwhile, so what the fetch finds
    /// may be older: it is stored already expired.
    overtaken: bool,
    /// ... and the change needs the document read afresh next time.
    reresolve: bool,
}

enum Lookup {
    Known(ActorName),
    Fetching(watch::Receiver<bool>),
}

/// What a stream event says about an actor's name.
enum NameChange {
    DisplayName(Option<String>),
    Handle(String),
    /// The DID document changed in a way the event does not tell (it
    /// carries no valid handle): read it again.
    Identity,
}

impl NameChange {
    fn of(event: &JetstreamEvent) -> Option<Self> {
        match &event.body {
            EventBody::Commit(commit)
                if commit.uri.collection() == nsid::ACTOR_PROFILE
                    && commit.uri.rkey() == PROFILE_RKEY =>
            {
                let display_name = match &commit.operation {
                    Operation::Create(Record::Profile(profile))
                    | Operation::Update(Record::Profile(profile)) => {
                        profile.display_name.as_deref().and_then(clean_display_name)
                    }
                    Operation::Delete => None,
                    _ => return None,
                };
                Some(Self::DisplayName(display_name))
            }
            EventBody::Identity(identity) => {
                Some(match identity.handle.as_deref().and_then(parse_handle) {
                    Some(handle) => Self::Handle(handle),
                    None => Self::Identity,
                })
            }
            _ => None,
        }
    }
}

impl ActorNames {
    pub fn new(config: ActorNamesConfig, fetcher: Arc<dyn NameFetcher>) -> Self {
        let entries = LruCache::new(config.max_actors.max(1));
        Self {
            shared: Arc::new(Shared {
                config,
                fetcher,
                state: Mutex::new(State {
                    entries,
                    in_flight: HashMap::new(),
                }),
            }),
        }
    }
}

#[async_trait]
impl ActorNameSource for ActorNames {
    async fn name(&self, actor: &Did) -> ActorName {
        let mut done = match self.shared.lookup(actor) {
            Lookup::Known(name) => return name,
            Lookup::Fetching(done) => done,
        };
        // Past the budget the fetch goes on alone; what it finds is there
        // for the actor's next event.
        let _ = tokio::time::timeout(LOOKUP_BUDGET, done.wait_for(|d| *d)).await;
        self.shared.known(actor)
    }

    fn observe(&self, event: &JetstreamEvent) {
        if let Some(change) = NameChange::of(event) {
            self.shared.change(&event.did, change);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A name still trusted, or the fetch that will bring one (started
    /// here if none is running and there is room).
    fn lookup(self: &Arc<Self>, actor: &Did) -> Lookup {
        let mut state = self.lock();
        let (expired, reresolve) = match state.entries.get(actor) {
            Some(entry) if entry.expires > Instant::now() => {
                return Lookup::Known(entry.name.clone());
            }
            Some(entry) => (entry.name.clone(), entry.reresolve),
            None => (ActorName::default(), false),
        };
        if let Some(flight) = state.in_flight.get(actor) {
            return Lookup::Fetching(flight.done.clone());
        }
        if state.in_flight.len() >= self.config.max_fetches {
            return Lookup::Known(expired);
        }
        let (finished, done) = watch::channel(false);
        state.in_flight.insert(
            actor.clone(),
            InFlight {
                done: done.clone(),
                handle: None,
                overtaken: false,
                reresolve: false,
            },
        );
        tokio::spawn(Arc::clone(self).fetch(actor.clone(), reresolve, finished));
        Lookup::Fetching(done)
    }

    /// Everything known of `actor` now, fresh or not.
    fn known(&self, actor: &Did) -> ActorName {
        let state = self.lock();
        let mut name = state
            .entries
            .peek(actor)
            .map(|entry| entry.name.clone())
            .unwrap_or_default();
        if let Some(handle) = state.in_flight.get(actor).and_then(|f| f.handle.clone()) {
            name.handle = handle;
        }
        name
    }

    async fn fetch(self: Arc<Self>, actor: Did, fresh: bool, finished: watch::Sender<bool>) {
        let display_name =
            match tokio::time::timeout(FETCH_DEADLINE, self.read(&actor, fresh)).await {
                Ok(Ok(display_name)) => Some(display_name),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "actor name not read; keeping what was known");
                    None
                }
                Err(_) => {
                    tracing::debug!(deadline = ?FETCH_DEADLINE, "actor name fetch gave up");
                    None
                }
            };
        self.finish(&actor, display_name);
        finished.send_replace(true);
    }

    /// The display name; the handle is published to the fetch in flight as
    /// soon as the document is read, for lookups whose budget runs out
    /// while the PDS is asked.
    async fn read(&self, actor: &Did, fresh: bool) -> Result<Option<String>, NameError> {
        let identity = self.fetcher.identity(actor, fresh).await?;
        if let Some(flight) = self.lock().in_flight.get_mut(actor) {
            flight.handle = Some(identity.handle.clone());
        }
        self.fetcher.display_name(actor, &identity).await
    }

    /// Stores what the fetch found; `display_name` is `None` if it could
    /// not be read. A part not read keeps its previous value.
    fn finish(&self, actor: &Did, display_name: Option<Option<String>>) {
        let mut state = self.lock();
        let Some(flight) = state.in_flight.remove(actor) else {
            return;
        };
        let previous = state
            .entries
            .peek(actor)
            .map(|entry| entry.name.clone())
            .unwrap_or_default();
        let complete = flight.handle.is_some() && display_name.is_some();
        let name = ActorName {
            display_name: display_name.unwrap_or(previous.display_name),
            handle: flight.handle.unwrap_or(previous.handle),
        };
        let now = Instant::now();
        let expires = match (flight.overtaken, complete) {
            (true, _) => now,
            (false, true) => now + NAME_TTL,
            (false, false) => now + NEGATIVE_TTL,
        };
        state.entries.insert(
            actor.clone(),
            Entry {
                name,
                expires,
                reresolve: flight.reresolve,
            },
        );
    }

    fn change(&self, actor: &Did, change: NameChange) {
        let mut state = self.lock();
        if let Some(flight) = state.in_flight.get_mut(actor) {
            flight.overtaken = true;
            flight.reresolve |= matches!(change, NameChange::Identity);
        }
        // `peek_mut`: the stream does not make an actor recently used.
        let Some(entry) = state.entries.peek_mut(actor) else {
            return;
        };
        match change {
            NameChange::DisplayName(display_name) => entry.name.display_name = display_name,
            NameChange::Handle(handle) => entry.name.handle = Some(handle),
            NameChange::Identity => {
                entry.name.handle = None;
                entry.expires = Instant::now();
                entry.reresolve = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ALICE, BOB, CAROL, delete, did, identity, update};
    use futures_util::future::join_all;
    use serde_json::json;

    /// What one actor's document and profile say.
    struct FakeActor {
        handle: Option<String>,
        display_name: Result<Option<String>, NameError>,
    }

    /// A stand-in for DID documents and PDSes, counting what is asked.
    #[derive(Default)]
    struct FakeNetwork {
        /// Absent: no such DID.
        actors: Mutex<HashMap<Did, FakeActor>>,
        /// How long a profile takes to read.
        profile_delay: Mutex<Duration>,
        /// Every document read, with whether it was fresh.
        reads: Mutex<Vec<(Did, bool)>>,
    }

    impl FakeNetwork {
        fn set(&self, actor: &str, handle: Option<&str>, display_name: Result<Option<&str>, ()>) {
            let display_name = display_name
                .map(|n| n.map(str::to_owned))
                .map_err(|()| NameError("the PDS is down".into()));
            let handle = handle.map(str::to_owned);
            self.actors.lock().unwrap().insert(
                did(actor),
                FakeActor {
                    handle,
                    display_name,
                },
            );
        }

        fn slow_profiles(&self, delay: Duration) {
            *self.profile_delay.lock().unwrap() = delay;
        }

        fn reads(&self) -> Vec<(Did, bool)> {
            self.reads.lock().unwrap().clone()
        }

        fn reads_of(&self, actor: &str) -> usize {
            self.reads()
                .iter()
                .filter(|(d, _)| d == &did(actor))
                .count()
        }
    }

    #[async_trait]
    impl NameFetcher for FakeNetwork {
        async fn identity(&self, actor: &Did, fresh: bool) -> Result<ActorIdentity, NameError> {
            self.reads.lock().unwrap().push((actor.clone(), fresh));
            let actors = self.actors.lock().unwrap();
            let known = actors
                .get(actor)
                .ok_or_else(|| NameError("no such DID".into()))?;
            Ok(ActorIdentity {
                handle: known.handle.clone(),
                pds: Some("https://pds.example".into()),
            })
        }

        async fn display_name(
            &self,
            actor: &Did,
            _identity: &ActorIdentity,
        ) -> Result<Option<String>, NameError> {
            let delay = *self.profile_delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            self.actors.lock().unwrap()[actor].display_name.clone()
        }
    }

    fn cache(config: ActorNamesConfig) -> (ActorNames, Arc<FakeNetwork>) {
        let network = Arc::new(FakeNetwork::default());
        network.set(ALICE, Some("alice.example.com"), Ok(Some("Alice")));
        let names = ActorNames::new(config, Arc::clone(&network) as Arc<dyn NameFetcher>);
        (names, network)
    }

    fn named(display_name: Option<&str>, handle: Option<&str>) -> ActorName {
        ActorName {
            display_name: display_name.map(str::to_owned),
            handle: handle.map(str::to_owned),
        }
    }

    fn alice_named() -> ActorName {
        named(Some("Alice"), Some("alice.example.com"))
    }

    fn profile(display_name: Option<&str>) -> JetstreamEvent {
        update(
            ALICE,
            nsid::ACTOR_PROFILE,
            PROFILE_RKEY,
            json!({"displayName": display_name}),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_lookups_of_one_actor_share_one_fetch() {
        let (names, network) = cache(ActorNamesConfig::default());
        network.slow_profiles(Duration::from_millis(50));
        let alice = did(ALICE);
        let answers = join_all((0..8).map(|_| names.name(&alice))).await;
        assert!(answers.iter().all(|a| *a == alice_named()), "{answers:?}");
        assert_eq!(network.reads(), [(alice.clone(), false)]);
        assert_eq!(names.name(&alice).await, alice_named());
        assert_eq!(network.reads().len(), 1, "then from the cache");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_profile_gives_the_handle_within_the_budget_and_the_name_after() {
        let (names, network) = cache(ActorNamesConfig::default());
        network.slow_profiles(Duration::from_secs(2));
        let started = Instant::now();
        let first = names.name(&did(ALICE)).await;
        assert_eq!(first, named(None, Some("alice.example.com")));
        assert_eq!(started.elapsed(), LOOKUP_BUDGET);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            names.name(&did(ALICE)).await,
            alice_named(),
            "the fetch went on"
        );
        assert_eq!(network.reads().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_actor_nothing_is_known_of_in_time_is_nobody() {
        let (names, network) = cache(ActorNamesConfig::default());
        network.set(BOB, None, Ok(Some("Bob")));
        network.slow_profiles(Duration::from_secs(2));
        assert_eq!(names.name(&did(BOB)).await, ActorName::default());
        assert_eq!(
            names.name(&did(CAROL)).await,
            ActorName::default(),
            "no such DID"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_name_is_trusted_for_its_ttl_and_served_while_it_is_read_again() {
        let (names, network) = cache(ActorNamesConfig::default());
        let alice = did(ALICE);
        names.name(&alice).await;
        tokio::time::advance(NAME_TTL - Duration::from_secs(1)).await;
        names.name(&alice).await;
        assert_eq!(network.reads().len(), 1);

        network.set(ALICE, Some("alice.example.com"), Ok(Some("Alice B.")));
        network.slow_profiles(Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            names.name(&alice).await,
            alice_named(),
            "the old name, meanwhile"
        );
        assert_eq!(network.reads().len(), 2);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            names.name(&alice).await.display_name.as_deref(),
            Some("Alice B.")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_keep_what_was_known_and_are_retried_soon() {
        let (names, network) = cache(ActorNamesConfig::default());
        let alice = did(ALICE);
        names.name(&alice).await;
        network.set(ALICE, Some("alice.example.com"), Err(()));
        tokio::time::advance(NAME_TTL).await;
        assert_eq!(names.name(&alice).await, alice_named(), "the PDS is down");
        assert_eq!(network.reads().len(), 2);

        tokio::time::advance(NEGATIVE_TTL - Duration::from_secs(1)).await;
        names.name(&alice).await;
        assert_eq!(network.reads().len(), 2, "the failure is remembered");
        network.set(ALICE, Some("alice.example.com"), Ok(None));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(
            names.name(&alice).await,
            named(None, Some("alice.example.com")),
            "a profile without a name is an answer"
        );
        assert_eq!(network.reads().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unresolvable_actor_is_asked_again_after_the_negative_ttl() {
        let (names, network) = cache(ActorNamesConfig::default());
        let carol = did(CAROL);
        assert_eq!(names.name(&carol).await, ActorName::default());
        names.name(&carol).await;
        assert_eq!(network.reads_of(CAROL), 1);
        tokio::time::advance(NEGATIVE_TTL).await;
        names.name(&carol).await;
        assert_eq!(network.reads_of(CAROL), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_its_bound_the_cache_forgets_the_least_recently_asked() {
        let (names, network) = cache(ActorNamesConfig {
            max_actors: 2,
            ..ActorNamesConfig::default()
        });
        network.set(BOB, Some("bob.example.com"), Ok(Some("Bob")));
        network.set(CAROL, Some("carol.example.com"), Ok(Some("Carol")));
        for actor in [ALICE, BOB, ALICE, CAROL] {
            names.name(&did(actor)).await;
        }
        names.name(&did(ALICE)).await;
        assert_eq!(network.reads_of(ALICE), 1, "asked recently, so kept");
        names.name(&did(BOB)).await;
        assert_eq!(network.reads_of(BOB), 2, "forgotten for Carol");
    }

    #[tokio::test(start_paused = true)]
    async fn fetches_in_flight_are_bounded() {
        let (names, network) = cache(ActorNamesConfig {
            max_fetches: 1,
            ..ActorNamesConfig::default()
        });
        network.set(BOB, Some("bob.example.com"), Ok(Some("Bob")));
        network.slow_profiles(Duration::from_secs(1));
        names.name(&did(ALICE)).await;
        let started = Instant::now();
        assert_eq!(names.name(&did(BOB)).await, ActorName::default());
        assert_eq!(started.elapsed(), Duration::ZERO, "no room, no wait");
        assert_eq!(network.reads_of(BOB), 0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        names.name(&did(BOB)).await;
        assert_eq!(network.reads_of(BOB), 1, "room again");
    }

    #[tokio::test(start_paused = true)]
    async fn profile_events_rename_a_cached_actor() {
        let (names, network) = cache(ActorNamesConfig::default());
        let alice = did(ALICE);
        names.name(&alice).await;
        names.observe(&profile(Some("  Alice\u{202E} in\nWonderland ")));
        assert_eq!(
            names.name(&alice).await,
            named(Some("Alice in Wonderland"), Some("alice.example.com"))
        );
        names.observe(&profile(None));
        assert_eq!(names.name(&alice).await.display_name, None);
        names.observe(&profile(Some("Alice")));
        names.observe(&delete(ALICE, nsid::ACTOR_PROFILE, PROFILE_RKEY));
        assert_eq!(names.name(&alice).await.display_name, None);
        names.observe(&update(
            ALICE,
            nsid::ACTOR_PROFILE,
            "other",
            json!({"displayName": "Not the profile"}),
        ));
        assert_eq!(names.name(&alice).await.display_name, None);
        assert_eq!(network.reads().len(), 1, "all from the stream");
    }

    #[tokio::test(start_paused = true)]
    async fn identity_events_change_the_handle_or_have_the_document_read_afresh() {
        let (names, network) = cache(ActorNamesConfig::default());
        let alice = did(ALICE);
        names.name(&alice).await;
        names.observe(&identity(ALICE, Some("Alice.Example.ORG")));
        assert_eq!(
            names.name(&alice).await,
            named(Some("Alice"), Some("alice.example.org"))
        );
        assert_eq!(network.reads().len(), 1);

        network.set(ALICE, Some("alice.example.net"), Ok(Some("Alice")));
        names.observe(&identity(ALICE, Some("handle.invalid")));
        assert_eq!(
            names.name(&alice).await,
            named(Some("Alice"), Some("alice.example.net"))
        );
        names.observe(&identity(ALICE, None));
        names.name(&alice).await;
        assert_eq!(
            network.reads(),
            [
                (alice.clone(), false),
                (alice.clone(), true),
                (alice.clone(), true)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_caches_nobody_new() {
        let (names, network) = cache(ActorNamesConfig::default());
        names.observe(&profile(Some("Alice from the stream")));
        names.observe(&identity(ALICE, Some("alice.example.org")));
        assert_eq!(names.name(&did(ALICE)).await, alice_named());
        assert_eq!(network.reads().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_during_a_fetch_has_the_actor_read_again_next_time() {
        let (names, network) = cache(ActorNamesConfig::default());
        network.slow_profiles(Duration::from_secs(1));
        let alice = did(ALICE);
        names.name(&alice).await;
        names.observe(&identity(ALICE, None));
        tokio::time::sleep(Duration::from_secs(1)).await;
        network.slow_profiles(Duration::ZERO);
        names.name(&alice).await;
        assert_eq!(network.reads(), [(alice.clone(), false), (alice, true)]);
    }

    #[test]
    fn display_names_lose_controls_and_direction_overrides_and_are_cut_to_length() {
        assert_eq!(
            clean_display_name(" Alice\tB.\r\n\u{7}").as_deref(),
            Some("Alice B.")
        );
        assert_eq!(
            clean_display_name("\u{202E}tsop ruoy\u{202C} \u{2067}x").as_deref(),
            Some("tsop ruoy x")
        );
        assert_eq!(
            clean_display_name("👩‍👩‍👧 family").as_deref(),
            Some("👩‍👩‍👧 family"),
            "joiners stay"
        );
        for nothing in ["", "   ", "\n\u{0}\u{202E}"] {
            assert_eq!(clean_display_name(nothing), None, "{nothing:?}");
        }
        let long = clean_display_name(&"é".repeat(1000)).unwrap();
        assert_eq!(long.chars().count(), MAX_DISPLAY_NAME_CHARS);
        let cut_at_space = format!("{} tail", "a".repeat(MAX_DISPLAY_NAME_CHARS - 1));
        assert_eq!(
            clean_display_name(&cut_at_space).unwrap(),
            "a".repeat(MAX_DISPLAY_NAME_CHARS - 1)
        );
    }
}

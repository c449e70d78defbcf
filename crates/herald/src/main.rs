//! herald: a self-hosted push-notification gateway for decentralized networks.

mod api;
mod atproto;
mod atproto_source;
#[cfg(feature = "bench")]
mod bench;
mod config;
mod decode_frames;
mod gorush_api;
mod metrics;
mod mostro_api;
mod nostr_api;
mod nostr_relays;
mod pseudonym;
mod rate_limiter;
mod runtime;
mod send;
mod server;
mod status;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "Push-notification gateway for AT Protocol, Nostr and Status/Waku apps"
)]
struct Cli {
    /// TOML configuration file; HERALD_* environment variables override it.
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway: HTTP API, sources and dispatcher.
    Serve,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Send one push to one device and print the outcome; exits 0 only if delivered.
    Send(send::SendArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// AT Protocol tools.
    Atproto {
        #[command(subcommand)]
        action: AtprotoAction,
    },
    /// Status push-notification server tools.
    Status {
        #[command(subcommand)]
        action: StatusAction,
    },
    /// Generate keys.
    Keys {
        #[command(subcommand)]
        kind: KeyKind,
    },
    /// Measure herald on this machine (built with `--features bench`).
    #[cfg(feature = "bench")]
    Bench {
        #[command(subcommand)]
        scenario: bench::Scenario,
    },
}

#[derive(Subcommand)]
enum KeyKind {
    /// A VAPID key pair for Web Push: writes the private key (PKCS#8 PEM) to
    /// FILE, created with mode 0600, and prints the public key for the web
    /// client's `applicationServerKey`.
    Vapid {
        /// Where to write the private key; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
    /// herald's own Nostr identity: writes a secret key (64 hex digits) to
    /// FILE, created with mode 0600, for `[nostr] key_file`, and prints the
    /// public key, which relays see when herald authenticates (NIP-42).
    Nostr {
        /// Where to write the secret key; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AtprotoAction {
    /// Print, one JSON line each, the notifications that recorded Jetstream v1
    /// events would cause for the registered accounts; sends nothing.
    Replay {
        /// Jetstream v1 JSON lines; `-` reads standard input.
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// An account with devices (repeatable); only these are told anything.
        #[arg(long = "register", value_name = "DID", required = true)]
        registered: Vec<String>,
    },
    /// Print recorded firehose (subscribeRepos) frames as Jetstream v1 events,
    /// one JSON line each; bad frames are reported on stderr and skipped.
    DecodeFrames {
        /// Frames as `[u32 little-endian length][frame]`; `-` reads standard input.
        #[arg(value_name = "FILE")]
        input: PathBuf,
    },
}

#[derive(Subcommand)]
enum StatusAction {
    /// Print herald's Status identity, the compressed public key (hex)
    /// operators publish so Status users can add this push server;
    /// generated and stored on first use unless `[status] key_file` is set.
    Identity,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print each app and transport: enabled, or why not.
    Check,
}

/// Exit status for a configuration or start-up error (1 is a failed push).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    herald_push::install_crypto_provider();
    let config = match Config::load(cli.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herald: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herald: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.command, config))
}

async fn run(command: Command, config: Config) -> ExitCode {
    match command {
        Command::Serve => serve(config).await,
        Command::Config {
            action: ConfigAction::Check,
        } => config_check(&config),
        Command::Send(args) => send::run(&config, args).await,
        Command::Migrate => migrate(&config).await,
        Command::Atproto {
            action: AtprotoAction::Replay { input, registered },
        } => atproto_replay(&input, &registered),
        Command::Atproto {
            action: AtprotoAction::DecodeFrames { input },
        } => atproto_decode_frames(&input),
        Command::Status {
            action: StatusAction::Identity,
        } => status_identity(&config).await,
        Command::Keys {
            kind: KeyKind::Vapid { out },
        } => vapid_keys(&out),
        Command::Keys {
            kind: KeyKind::Nostr { out },
        } => nostr_keys(&out),
        #[cfg(feature = "bench")]
        Command::Bench { scenario } => bench::run(scenario).await,
    }
}

fn fail(context: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("herald: {context}: {e}");
    ExitCode::from(EXIT_CONFIG)
}

async fn serve(config: Config) -> ExitCode {
    let admin_token = match config.admin_token() {
        Ok(t) => t,
        Err(e) => return fail("configuration error", e),
    };
    if admin_token.is_none() {
        tracing::warn!("no admin token configured: the admin API answers 403");
    }
    let gorush_token = match config.gorush_api.bearer() {
        Ok(t) => t,
        Err(e) => return fail("configuration error", e),
    };
    if config.gorush_api.app_id.is_some() && gorush_token.is_none() {
        tracing::warn!(
            "the gorush-compatible /api/push is open to anyone who can reach it: set gorush_api.token_file"
        );
    }
    let metrics = match metrics::install() {
        Ok(h) => h,
        Err(e) => return fail("cannot install metrics", e),
    };
    let runtime = match runtime::Runtime::start(config).await {
        Ok(r) => r,
        Err(e) => return fail("cannot start", e),
    };
    let state = Arc::new(server::AppState {
        runtime,
        admin_token,
        gorush_token,
        metrics,
    });
    match server::serve(state).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail("server error", e),
    }
}

fn config_check(config: &Config) -> ExitCode {
    println!("listen: {}", config.listen);
    println!(
        "database: {}",
        herald_store::redact_url(&config.database_url)
    );
    match config.admin_token() {
        Ok(Some(_)) => println!("admin API: enabled"),
        Ok(None) => println!("admin API: disabled (no admin_token or admin_token_file)"),
        Err(e) => println!("admin API: error: {e}"),
    }
    match &config.gorush_api.app_id {
        Some(app) => println!("gorush API: enabled for app {app}"),
        None => println!("gorush API: disabled (no gorush_api.app_id)"),
    }
    match &config.mostro_api.app_id {
        Some(app) => println!("Mostro API: enabled for app {app}"),
        None => println!("Mostro API: disabled (no mostro_api.app_id)"),
    }
    match &config.nostr.public_url {
        Some(url) => println!("Nostr API: enabled, NIP-98 checked against {url}"),
        None => println!("Nostr API: disabled (no nostr.public_url)"),
    }
    let nostr = &config.nostr;
    match nostr.index_relays.len() {
        0 => println!(
            "Nostr relays: {} configured; accounts' own relays off (no nostr.index_relays)",
            nostr.relays.len()
        ),
        n => println!(
            "Nostr relays: {} configured; accounts' own relays from {n} index relays, \
             at most {} per account and {} in all",
            nostr.relays.len(),
            nostr.relays_per_account,
            nostr.max_account_relays
        ),
    }
    match &config.sigil_api.app_id {
        Some(app) => println!(
            "Sigil API: enabled for app {app}, auth {}",
            config.sigil_api.auth.as_str()
        ),
        None => println!("Sigil API: disabled (no sigil_api.app_id)"),
    }
    match config.status.settings(&config.apps) {
        Ok(Some(status)) => {
            let delivery = match &status.gorush_url {
                Some(url) => format!("POSTed to gorush at {url}"),
                None if status.apps == Default::default() => {
                    "go nowhere (set status.apns_apps, status.fcm_app or status.gorush_url)".into()
                }
                None => {
                    let apns: Vec<String> = status
                        .apps
                        .apns
                        .iter()
                        .map(|(app, _)| app.to_string())
                        .collect();
                    let fcm = status
                        .apps
                        .fcm
                        .as_ref()
                        .map_or("none".into(), |a| a.to_string());
                    format!("APNs apps [{}], FCM app {fcm}", apns.join(", "))
                }
            };
            println!(
                "Status server: enabled through nwaku at {}, pushes {delivery}",
                status.nwaku_url
            );
        }
        Ok(None) => println!("Status server: disabled (no status.nwaku_url)"),
        Err(e) => println!("Status server: error: {e}"),
    }
    println!(
        "private endpoints: {}",
        if config.allow_private_endpoints {
            "allowed"
        } else {
            "refused"
        }
    );
    if config.apps.is_empty() {
        println!("apps: none configured (add [apps.\"<app id>\".<transport>] tables)");
    }
    let mut broken = false;
    for (id, app) in &config.apps {
        println!("app {id}:");
        for transport in herald_core::Transport::ALL {
            let status = match app.transport_status(*transport) {
                Ok(()) => match transport_check(config, id, *transport) {
                    Ok(()) => "enabled".to_owned(),
                    Err(e) => {
                        broken = true;
                        format!("error: {e}")
                    }
                },
                Err(why) => why,
            };
            println!("  {transport}: {status}");
        }
    }
    if broken {
        ExitCode::from(EXIT_CONFIG)
    } else {
        ExitCode::SUCCESS
    }
}

/// Builds one app's provider for one transport, as `serve` would, so a
/// broken key or credential file shows against its app.
fn transport_check(
    config: &Config,
    app: &str,
    transport: herald_core::Transport,
) -> Result<(), String> {
    let mut only = config.clone();
    only.apps.retain(|id, _| id == app);
    runtime::provider(transport, &only, None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn atproto_replay(input: &std::path::Path, registered: &[String]) -> ExitCode {
    use herald_atproto::did::Did;
    let dids = match registered
        .iter()
        .map(|d| Did::parse(d))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(dids) => dids,
        Err(e) => return fail("--register", e),
    };
    let reader = match open_input(input) {
        Ok(reader) => reader,
        Err(e) => return fail(&format!("cannot read {}", input.display()), e),
    };
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    match herald_atproto::replay::replay(reader, dids, out, std::io::stderr().lock()) {
        Ok(summary) => {
            eprintln!(
                "herald: {} events, {} skipped, {} notifications",
                summary.events, summary.skipped, summary.notifications
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herald: replay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A file to read, or standard input for `-`.
fn open_input(input: &std::path::Path) -> std::io::Result<Box<dyn std::io::BufRead>> {
    if input.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let file = std::fs::File::open(input)?;
    Ok(Box::new(std::io::BufReader::new(file)))
}

fn atproto_decode_frames(input: &std::path::Path) -> ExitCode {
    let reader = match open_input(input) {
        Ok(reader) => reader,
        Err(e) => return fail(&format!("cannot read {}", input.display()), e),
    };
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    match decode_frames::decode_frames(reader, out, std::io::stderr().lock()) {
        Ok(summary) => {
            eprintln!(
                "herald: {} frames, {} skipped, {} events",
                summary.frames, summary.skipped, summary.events
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herald: decode-frames: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a new VAPID private key to `out` (never overwriting, owner-only)
/// and prints the public key; the private key never reaches the terminal.
fn vapid_keys(out: &std::path::Path) -> ExitCode {
    let (pem, public) = herald_push::vapid::generate_keypair();
    if let Err(e) = write_secret(out, &pem) {
        return fail(&format!("cannot write {}", out.display()), e);
    }
    println!("private key written to {}", out.display());
    println!("public key (applicationServerKey): {public}");
    ExitCode::SUCCESS
}

/// Writes herald's new Nostr secret key to `out` as `vapid_keys` does, and
/// prints its public key as an npub and as hex.
fn nostr_keys(out: &std::path::Path) -> ExitCode {
    let key = herald_nostr::SecretKey::generate();
    if let Err(e) = write_secret(out, &format!("{}\n", key.to_hex())) {
        return fail(&format!("cannot write {}", out.display()), e);
    }
    let public = key.public_key();
    println!("secret key written to {}", out.display());
    println!("public key: {}", public.to_npub());
    println!("public key (hex): {}", public.to_hex());
    ExitCode::SUCCESS
}

/// Creates `path` with owner-only permissions and writes `text`; an
/// existing file is an error, never overwritten.
fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}

/// Prints the Status identity's compressed public key, creating and
/// storing the identity if there is none yet.
async fn status_identity(config: &Config) -> ExitCode {
    let store = match herald_store::open(&config.database_url).await {
        Ok(store) => store,
        Err(e) => return fail("cannot open the store", e),
    };
    let identity = status::identity(config, &store).await;
    store.close().await;
    match identity {
        Ok(key) => {
            let public = herald_status::crypto::compress33(&key.public_key());
            println!("{}", herald_status::hex::encode(&public));
            ExitCode::SUCCESS
        }
        Err(e) => fail("Status identity", e),
    }
}

async fn migrate(config: &Config) -> ExitCode {
    match herald_store::open(&config.database_url).await {
        Ok(store) => {
            let version = store.schema_version().await.ok().flatten().unwrap_or(0);
            println!("schema is at version {version}");
            store.close().await;
            ExitCode::SUCCESS
        }
        Err(e) => fail("migration failed", e),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HERALD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: escape codes in a log file
    // or a journal are noise.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

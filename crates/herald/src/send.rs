//! `herald send`: one push to one device, through the same provider and
//! checks the gateway uses, with the typed outcome printed. For operators
//! testing credentials and devices; nothing is stored or queued.

use std::process::ExitCode;

use clap::Args;
use herald_core::model::{
    Account, AppId, Delivery, Message, NewDevice, Platform, Priority, Transport,
};
use herald_core::provider::Outcome;
use herald_core::time::now_ms;

use crate::config::Config;
use crate::runtime;

#[derive(Args)]
pub struct SendArgs {
    /// App id as configured under [apps."<id>"].
    #[arg(long)]
    app: String,
    #[arg(long)]
    transport: Transport,
    /// Device token (for UnifiedPush, the endpoint URL).
    #[arg(long)]
    token: String,
    #[arg(long, default_value = "android")]
    platform: Platform,
    #[arg(long)]
    title: Option<String>,
    #[arg(long)]
    body: Option<String>,
    /// Custom data as a JSON object.
    #[arg(long)]
    data: Option<String>,
    /// Seconds the provider may hold the push for an offline device.
    #[arg(long)]
    ttl: Option<u32>,
    #[arg(long, default_value = "high")]
    priority: Priority,
}

/// Exit status when the push was not delivered.
const EXIT_NOT_DELIVERED: u8 = 1;
/// Exit status for bad arguments or configuration.
const EXIT_USAGE: u8 = 2;

pub async fn run(config: &Config, args: SendArgs) -> ExitCode {
    match prepare(config, args).await {
        Ok((provider, delivery)) => {
            let outcome = provider.send(&delivery).await;
            println!("{}", describe(&outcome));
            if outcome == Outcome::Delivered {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_NOT_DELIVERED)
            }
        }
        Err(message) => {
            eprintln!("herald send: {message}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

type Prepared = (std::sync::Arc<dyn herald_core::Provider>, Delivery);

async fn prepare(config: &Config, args: SendArgs) -> Result<Prepared, String> {
    let app_id = AppId::parse(&args.app).map_err(|e| e.to_string())?;
    let app = config
        .app(&app_id)
        .ok_or_else(|| format!("unknown app {:?}: it is not configured", args.app))?;
    app.transport_status(args.transport)
        .map_err(|why| format!("app {:?} cannot use {}: {why}", args.app, args.transport))?;
    let provider = runtime::providers(config, None)
        .map_err(|e| e.to_string())?
        .remove(&args.transport)
        .ok_or_else(|| format!("no provider for {}", args.transport))?;
    let data = match args.data {
        Some(text) => match serde_json::from_str(&text) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => return Err("--data must be a JSON object".into()),
        },
        None => Default::default(),
    };
    let message = Message {
        title: args.title,
        body: args.body,
        data,
        ttl: args.ttl,
        priority: args.priority,
        ..Message::default()
    };
    message.validate().map_err(|e| e.to_string())?;
    let registration = NewDevice {
        account: Account::parse("cli:send").expect("a valid literal account"),
        app_id: app_id.clone(),
        platform: args.platform,
        transport: args.transport,
        token: args.token,
        options: Default::default(),
    };
    registration.validate().map_err(|e| e.to_string())?;
    let registration = provider
        .accept_registration(registration)
        .await
        .map_err(|e| e.to_string())?;
    let delivery = Delivery {
        id: 0,
        device_id: 0,
        account: registration.account,
        app_id,
        platform: registration.platform,
        transport: registration.transport,
        token: registration.token,
        options: registration.options,
        message,
        created_at: now_ms(),
        attempts: 1,
    };
    Ok((provider, delivery))
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Delivered => "delivered".into(),
        Outcome::Retry {
            after: Some(after),
            reason,
        } => {
            format!(
                "retry: {reason} (provider asks to wait {} s)",
                after.as_secs()
            )
        }
        Outcome::Retry {
            after: None,
            reason,
        } => format!("retry: {reason}"),
        Outcome::TokenDead { reason } => format!("token_dead: {reason}"),
        Outcome::Rejected { reason } => format!("rejected: {reason}"),
    }
}

//! `packrat audit`: the append-only audit trail of the installation — who ran, restored,
//! deleted, verified or cancelled what, and when.

use std::path::Path;

use backup_core::state::{AuditAction, AuditEntry, parse_operator_time};
use chrono::{DateTime, Utc};
use clap::Args;

use crate::{CliError, exit, output, wire};

/// `packrat audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries from this time on: RFC 3339, `YYYY-MM-DD [HH:MM]` in the config's time
    /// zone, or a span back from now (`24h`, `7d`).
    #[arg(long)]
    pub since: Option<String>,
    /// Only this plan's entries.
    #[arg(long)]
    pub plan: Option<String>,
    /// Only this action (run, restore, delete, verify, drill, cancel, daemon-start, api,
    /// reset-watermark).
    #[arg(long)]
    pub action: Option<String>,
    /// Print JSON (one array, oldest first).
    #[arg(long)]
    pub json: bool,
}

/// Runs `packrat audit`.
pub fn run(config: Option<&Path>, a: AuditArgs) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    let since = a.since.as_deref().map(|s| since(s, cfg.time_zone)).transpose()?;
    let action = a
        .action
        .as_deref()
        .map(|s| {
            serde_json::from_value::<AuditAction>(serde_json::Value::String(s.to_string())).map_err(|_| {
                CliError::usage(format!(
                    "--action {s}: not an audit action; use run, restore, delete, verify, drill, cancel, daemon-start, api or reset-watermark"
                ))
            })
        })
        .transpose()?;
    let state = wire::open_state(&cfg)?;
    let entries: Vec<AuditEntry> = state
        .audit_trail(since)?
        .into_iter()
        .filter(|e| a.plan.as_deref().is_none_or(|p| e.plan.as_deref() == Some(p)))
        .filter(|e| action.is_none_or(|x| e.action == x))
        .collect();
    if a.json {
        output::json(&entries);
        return Ok(exit::OK);
    }
    if entries.is_empty() {
        outln!(
            "{}",
            if since.is_some() {
                i18n::tr!("audit-none-since")
            } else {
                i18n::tr!("audit-none")
            }
        );
    }
    for e in &entries {
        outln!(
            "{}  {:<15} {:<12} {}  {}  — {}",
            e.at.with_timezone(&cfg.time_zone).format("%Y-%m-%d %H:%M:%S %Z"),
            e.action.as_str(),
            e.plan.as_deref().unwrap_or("-"),
            e.subject,
            e.detail,
            e.actor
        );
    }
    Ok(exit::OK)
}

/// `--since`: a time, or a span back from now.
fn since(s: &str, zone: chrono_tz::Tz) -> Result<DateTime<Utc>, CliError> {
    if let Ok(span) = humantime::parse_duration(s.trim()) {
        let span =
            chrono::Duration::from_std(span).map_err(|_| CliError::usage(format!("--since {s}: too long a span")))?;
        return Utc::now()
            .checked_sub_signed(span)
            .ok_or_else(|| CliError::usage(format!("--since {s}: too long a span")));
    }
    parse_operator_time(s, zone).map_err(|e| CliError::usage(format!("--since: {e}, or a span such as 24h or 7d")))
}

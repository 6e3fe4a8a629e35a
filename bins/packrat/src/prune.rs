//! `packrat prune`: apply each plan's retention to its sinks (dry run first), and retention
//! after a successful `packrat run`.

use std::path::Path;
use std::sync::Arc;

use backup_core::DryRunSink;
use backup_core::runner::Plan;
use chrono::Utc;
use clap::Args;
use tracing::warn;

use crate::{CliError, exit, output, wire};

/// `packrat prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only this plan (default: every plan).
    pub plan: Option<String>,
    /// Show what would be removed, and why, without removing anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Only this sink.
    #[arg(long)]
    pub sink: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `packrat prune`.
pub async fn run(config: Option<&Path>, a: PruneArgs) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    let names: Vec<String> = match &a.plan {
        Some(p) => {
            cfg.plan(p)?;
            vec![p.clone()]
        }
        None => cfg.plans.keys().cloned().collect(),
    };
    if let Some(s) = &a.sink
        && !cfg.sinks.contains_key(s)
    {
        return Err(CliError::usage(format!("no sink `{s}` in the config")));
    }
    let now = Utc::now();
    // Only a real prune deletes, and only it opens the state store for the audit trail.
    let audit = if a.dry_run {
        None
    } else {
        Some((wire::open_state(&cfg)?, wire::actor("packrat prune")))
    };
    let mut reports = Vec::new();
    let mut failed = false;
    for name in &names {
        let pc = cfg.plan(name)?;
        let policy = packrat_app::registry::retention(&cfg, name)?;
        for sink_name in pc
            .sinks
            .iter()
            .filter(|s| a.sink.as_deref().is_none_or(|only| only == s.as_str()))
        {
            let mut sink = wire::sink(&cfg, sink_name)?;
            if a.dry_run {
                // Deletions and cleaning are logged and skipped by the wrapper.
                sink = Arc::new(DryRunSink::new(sink));
            }
            let report = retention::prune(sink.as_ref(), name, &policy, now, a.dry_run)
                .await
                .map_err(|e| CliError::failed(backup_core::error::error_chain(&e)))?;
            failed |= !report.failures().is_empty();
            if let Some((state, actor)) = &audit {
                packrat_app::audit::deletions(state, actor, &report);
            }
            if !a.json {
                print_report(&report);
            }
            reports.push(report);
            if let Err(e) = retention::clean_leftovers(sink.as_ref()).await {
                warn!("{e}");
            }
        }
    }
    if a.json {
        output::json(&reports);
    } else if reports.is_empty() {
        outln!("{}", i18n::tr!("prune-nothing"));
    }
    Ok(if failed { exit::FAILED } else { exit::OK })
}

fn print_report(r: &retention::PruneReport) {
    let removed = r.packs.iter().filter(|p| !p.keep).count();
    let key = if r.dry_run { "prune-head-dry-run" } else { "prune-head" };
    outln!(
        "{}",
        i18n::text(
            key,
            &[
                ("plan", r.plan.as_str().into()),
                ("sink", r.sink.as_str().into()),
                ("kept", r.kept().into()),
                ("removed", removed.into()),
            ]
        )
    );
    for p in &r.packs {
        // The pack lines' keep/remove stay English (as in `--json`): a fixed, aligned column.
        let what = if p.keep { "keep" } else { "remove" };
        let outcome = match p.outcome.as_deref() {
            Some(o) if o.starts_with("failed") => format!(" [{o}]"),
            _ => String::new(),
        };
        outln!("  {what:<7} {:<40} {}{outcome}", p.pack.id, p.reason);
    }
    if let Some((_, message)) = r.future_alert() {
        outln!("  {}", i18n::tr!("warning-line", warning = message.as_str()));
    }
}

/// Retention on every sink of `plan` after a successful job; problems are logged, never fatal.
pub async fn after_job(cfg: &packrat_app::config::Config, plan: &Plan, state: &backup_core::StateStore) {
    match packrat_app::registry::retention(cfg, &plan.name) {
        Ok(policy) => {
            let actor = wire::actor("packrat run");
            packrat_app::after_job::after_success(plan, &policy, None, (state, &actor)).await;
        }
        Err(e) => warn!("retention of plan {}: {}", plan.name, e.chain()),
    }
}

//! `packrat drill` (a verification or restore drill of a plan, now) and `packrat drills` (the
//! recorded ones). The work is [`packrat_app::drill`]'s; this parses and presents.

use std::path::Path;

use backup_core::{CancelToken, Trigger};
use clap::Args;
use packrat_app::drill::{self, DrillKind, DrillRun, DrillStatus, DrillStore};

use crate::{CliError, exit, output, wire};

/// `packrat drill`.
#[derive(Debug, Args)]
pub struct DrillArgs {
    /// Plan name.
    pub plan: String,
    /// Deep-verify the newest pack on every sink instead of restoring it.
    #[arg(long)]
    pub verify: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `packrat drills`.
#[derive(Debug, Args)]
pub struct DrillsArgs {
    /// Only this plan.
    #[arg(long)]
    pub plan: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `packrat drill`: exit 0 when every check passed, 1 when one failed, 3 when the plan is
/// busy (a job, verification or drill of it runs elsewhere), 130/143 when a signal cancelled it.
pub async fn run(config: Option<&Path>, a: DrillArgs) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    let state = wire::open_state(&cfg)?;
    let kind = if a.verify { DrillKind::Verify } else { DrillKind::Drill };
    let command = if a.verify {
        "packrat drill --verify"
    } else {
        "packrat drill"
    };
    // Ctrl-C / SIGTERM: the drill removes what it restored and records itself, then exits
    // 130/143; a second signal exits at once (the plan's next drill cleans up).
    let cancel = CancelToken::new();
    let signals = crate::signals::cancel_on_signal(cancel.clone());
    let run = drill::run(
        &cfg,
        state,
        &a.plan,
        kind,
        Trigger::Manual,
        &wire::actor(command),
        &cancel,
    )
    .await?;
    if a.json {
        output::json(&run);
    } else {
        print(&run);
    }
    Ok(if cancel.is_cancelled() {
        signals.exit_code()
    } else if run.status == DrillStatus::Passed {
        exit::OK
    } else {
        exit::FAILED
    })
}

/// Runs `packrat drills`.
pub fn list(config: Option<&Path>, a: DrillsArgs) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    if let Some(p) = &a.plan {
        cfg.plan(p)?;
    }
    let store = DrillStore::open(wire::open_state(&cfg)?)?;
    let runs = store.list(a.plan.as_deref(), a.limit)?;
    if a.json {
        output::json(&runs);
        return Ok(exit::OK);
    }
    if runs.is_empty() {
        outln!("{}", i18n::tr!("drills-none"));
    }
    for r in &runs {
        outln!(
            "{:>4}  {:<12} {} {} {:<8} {}  {}{}",
            r.id,
            r.plan,
            output::pad(&kind_text(r.kind), 8, false),
            output::pad(&status_text(r.status), 7, false),
            r.trigger,
            r.started_at.with_timezone(&cfg.time_zone).format("%Y-%m-%d %H:%M:%S"),
            r.pack_id.as_deref().unwrap_or("-"),
            r.restore_seconds
                .map(|s| format!("  {}", i18n::tr!("drills-restore", secs = format!("{s:.2}"))))
                .unwrap_or_default()
        );
        for f in &r.failures {
            outln!("{}", i18n::tr!("drills-failed", failure = f.as_str()));
        }
    }
    Ok(exit::OK)
}

fn print(r: &DrillRun) {
    let (kind, status) = (kind_text(r.kind), status_text(r.status));
    outln!(
        "{}",
        match r.pack_id.as_deref() {
            Some(pack) => i18n::tr!(
                "drill-head-pack",
                kind = kind,
                id = r.id,
                plan = r.plan.as_str(),
                status = status,
                pack = pack
            ),
            None => i18n::tr!(
                "drill-head",
                kind = kind,
                id = r.id,
                plan = r.plan.as_str(),
                status = status
            ),
        }
    );
    for c in &r.checks {
        outln!("{}", i18n::tr!("drill-check-ok", check = c.as_str()));
    }
    for f in &r.failures {
        outln!("{}", i18n::tr!("drill-check-failed", failure = f.as_str()));
    }
    if let Some(s) = r.restore_seconds {
        outln!("{}", i18n::tr!("drill-restore-time", secs = format!("{s:.2}")));
    }
}

/// A verification or a drill, in the operator's language.
pub fn kind_text(k: DrillKind) -> String {
    match k {
        DrillKind::Verify => i18n::tr!("drill-kind-verify"),
        DrillKind::Drill => i18n::tr!("drill-kind-drill"),
    }
}

/// Passed, failed or running, in the operator's language.
pub fn status_text(s: DrillStatus) -> String {
    match s {
        DrillStatus::Passed => i18n::tr!("drill-passed"),
        DrillStatus::Failed => i18n::tr!("drill-failed"),
        DrillStatus::Running => i18n::tr!("drill-running"),
    }
}

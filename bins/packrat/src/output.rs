//! Rendering for humans and as JSON.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use backup_core::runner::JobRun;
use backup_core::sink::PackInfo;
use backup_core::{Job, StateStore, VerifyReport};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use packrat_app::config::Config;
use serde::Serialize;

use crate::CliError;

/// What became of stdout: `None` while writable, else the first write error.
static STDOUT_ERROR: Mutex<Option<std::io::Error>> = Mutex::new(None);

/// Writes to stdout without panicking (what [`outln!`] and [`out!`] call). After the first
/// failed write, nothing more is written: when the reader has gone away (a pipe to `head`,
/// `EPIPE`), the command finishes quietly; other errors are reported by [`finish_stdout`].
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut failed = STDOUT_ERROR.lock().unwrap_or_else(|e| e.into_inner());
    if failed.is_some() {
        return;
    }
    if let Err(e) = std::io::stdout().lock().write_fmt(args) {
        *failed = Some(e);
    }
}

/// Flushes stdout; `Err` when writing failed for another reason than a closed pipe.
pub fn finish_stdout() -> std::io::Result<()> {
    let mut failed = STDOUT_ERROR.lock().unwrap_or_else(|e| e.into_inner());
    if failed.is_none()
        && let Err(e) = std::io::stdout().lock().flush()
    {
        *failed = Some(e);
    }
    match failed.take() {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    }
}

/// Prints `v` as pretty JSON on stdout.
pub fn json<T: Serialize + ?Sized>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => outln!("{s}"),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
    }
}

/// `1.2 GiB`.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// The time zone of every plan and the installation's (the top-level `time_zone`), set when
/// the config is loaded, so that every time shown to a person is in its plan's zone.
static ZONES: std::sync::OnceLock<(Tz, BTreeMap<String, Tz>)> = std::sync::OnceLock::new();

/// Remembers the zones of `cfg`'s plans for [`plan_time`] (first call wins).
pub fn set_zones(cfg: &Config) {
    let plans = cfg
        .plans
        .iter()
        .map(|(name, pc)| (name.clone(), cfg.plan_time_zone(pc)))
        .collect();
    let _ = ZONES.set((cfg.time_zone, plans));
}

/// The zone of `plan` (the installation's when the plan is unknown or `None`; UTC without a
/// config).
pub fn zone_of(plan: Option<&str>) -> Tz {
    match ZONES.get() {
        Some((default, plans)) => plan.and_then(|p| plans.get(p)).copied().unwrap_or(*default),
        None => chrono_tz::UTC,
    }
}

/// A time for a person: in `tz` with its offset, `2026-11-21 12:00:00 +08:00`.
pub fn zoned(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %:z").to_string()
}

/// [`zoned`] in the zone of `plan`; `-` for none.
pub fn plan_time(t: Option<DateTime<Utc>>, plan: Option<&str>) -> String {
    t.map(|t| zoned(t, zone_of(plan))).unwrap_or_else(|| "-".into())
}

fn when(t: Option<DateTime<Utc>>) -> String {
    plan_time(t, None)
}

fn duration(job: &Job) -> String {
    job.duration()
        .map(|d| format!("{:.1}s", d.num_milliseconds() as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

/// The JSON of `packrat run --json`.
pub fn run_json(run: &JobRun) -> serde_json::Value {
    serde_json::json!({
        "job": run.job,
        "pack": run.pack,
        "replicas": run.replicas,
        "warnings": run.warnings,
    })
}

/// The human output of `packrat run`.
pub fn run_human(run: &JobRun) {
    let j = &run.job;
    outln!("job {}: {} ({})", j.id, j.status, j.message);
    if let Some(p) = &run.pack {
        outln!("pack {} at {}", p.id, p.location);
        outln!("  {} artifact(s), {}, {}", p.artifacts, bytes(p.bytes), duration(j));
    }
    for r in &run.replicas {
        outln!("replica on {}: {}", r.sink, r.location);
    }
    for w in &run.warnings {
        outln!("warning: {w}");
    }
    if !j.detail.is_empty() {
        eprintln!("error: {}", j.detail);
    }
}

/// `packrat jobs` table.
pub fn jobs_table(jobs: &[Job]) {
    if jobs.is_empty() {
        outln!("no jobs yet");
        return;
    }
    outln!(
        "{:>6}  {:<14} {:<11} {:<11} {:<26} {:>8} {:>10}  MESSAGE",
        "ID",
        "PLAN",
        "KIND",
        "STATUS",
        "STARTED",
        "TIME",
        "SIZE"
    );
    for j in jobs {
        let msg = if j.detail.is_empty() {
            j.message.clone()
        } else {
            format!("{}: {}", j.message, j.detail)
        };
        outln!(
            "{:>6}  {:<14} {:<11} {:<11} {:<26} {:>8} {:>10}  {}",
            j.id,
            j.plan,
            j.kind,
            j.status,
            plan_time(j.started_at.or(Some(j.created_at)), Some(&j.plan)),
            duration(j),
            bytes(j.bytes),
            msg
        );
    }
}

/// `packrat job ID`.
pub fn job_detail(j: &Job) {
    outln!("job {} ({} {}, {})", j.id, j.plan, j.kind, j.trigger.as_str());
    outln!("  status:      {} ({}%)", j.status, j.progress);
    outln!("  message:     {}", j.message);
    if !j.detail.is_empty() {
        outln!("  detail:      {}", j.detail);
    }
    outln!("  pack:        {}", j.pack_id.as_deref().unwrap_or("-"));
    outln!("  output_dir:  {}", j.output_dir.as_deref().unwrap_or("-"));
    outln!("  replication: {}", j.replication.as_str());
    outln!(
        "  size:        {} in {} artifact(s), {} record(s)",
        bytes(j.bytes),
        j.artifacts,
        j.records
    );
    let at = |t| plan_time(t, Some(&j.plan));
    outln!("  created:     {}", at(Some(j.created_at)));
    outln!("  started:     {}", at(j.started_at));
    outln!("  finished:    {} ({})", at(j.finished_at), duration(j));
}

/// `packrat list` table.
pub fn packs_table(packs: &[PackInfo]) {
    if packs.is_empty() {
        outln!("no packs");
        return;
    }
    outln!(
        "{:<10} {:<14} {:<40} {:<11} {:>10}  LOCATION",
        "SINK",
        "PLAN",
        "PACK",
        "KIND",
        "SIZE"
    );
    for p in packs {
        outln!(
            "{:<10} {:<14} {:<40} {:<11} {:>10}  {}",
            p.sink,
            p.plan,
            p.id,
            p.kind,
            bytes(p.bytes),
            p.location
        );
    }
}

/// `packrat verify` for humans.
pub fn verify_human(r: &VerifyReport) {
    let level = match r.level {
        backup_core::VerifyLevel::Quick => "quick",
        backup_core::VerifyLevel::Deep => "deep",
    };
    if r.is_ok() {
        outln!(
            "OK   {} ({level}, {} artifact(s)) at {}",
            r.pack_id,
            r.artifacts,
            r.location
        );
    } else {
        outln!("FAIL {} ({level}) at {}", r.pack_id, r.location);
        for p in &r.problems {
            outln!("  {}: {}", p.path, p.reason);
        }
    }
}

/// Statistics as in `packrat status --json`.
#[derive(Debug, Serialize)]
pub struct Statistics {
    /// Finished backups (completed, failed, interrupted).
    pub total_backups: u64,
    /// Completed.
    pub success_count: u64,
    /// Failed or interrupted.
    pub failure_count: u64,
    /// Percent.
    pub success_rate: f64,
    /// Size of all completed packs in MB (10^6 bytes).
    pub total_size_mb: f64,
    /// Size of all completed packs in bytes.
    pub total_bytes: u64,
    /// Queued or running jobs.
    pub active_jobs: u64,
}

/// Per-plan status.
#[derive(Debug, Serialize)]
pub struct PlanStatus {
    /// Whether the scheduler runs it.
    pub enabled: bool,
    /// Newest job.
    pub last_job: Option<Job>,
    /// When it last completed.
    pub last_success: Option<DateTime<Utc>>,
    /// Failed/interrupted jobs since the last success.
    pub consecutive_failures: u32,
}

/// `packrat status`.
#[derive(Debug, Serialize)]
pub struct Status {
    /// Always "cli": the daemon's view is added when the daemon exists.
    pub source: &'static str,
    /// Totals.
    pub statistics: Statistics,
    /// Queued or running jobs.
    pub active_jobs: Vec<Job>,
    /// Every plan of the config (and any plan with jobs).
    pub plans: BTreeMap<String, PlanStatus>,
    /// What every sink received (bytes, packs, the last upload).
    pub sinks: BTreeMap<String, packrat_app::api::SinkActivity>,
    /// Health per collection (Mongo plans): failures and the last backed-up window.
    pub collections: Vec<backup_core::state::CollectionHealth>,
}

impl Status {
    /// Reads the state store.
    pub fn collect(cfg: &Config, state: &StateStore) -> Result<Status, CliError> {
        let s = state.stats()?;
        let mut plans = BTreeMap::new();
        let last = state.last_job_per_plan()?;
        let names: std::collections::BTreeSet<String> = cfg
            .plans
            .keys()
            .cloned()
            .chain(last.iter().map(|j| j.plan.clone()))
            .collect();
        for name in names {
            plans.insert(
                name.clone(),
                PlanStatus {
                    enabled: cfg.plans.get(&name).is_some_and(|p| p.enabled),
                    last_job: last.iter().find(|j| j.plan == name).cloned(),
                    last_success: state.last_success(&name)?.and_then(|j| j.finished_at),
                    consecutive_failures: state.consecutive_failures(&name)?,
                },
            );
        }
        Ok(Status {
            source: "cli",
            statistics: Statistics {
                total_backups: s.total,
                success_count: s.success,
                failure_count: s.failure,
                success_rate: s.success_rate,
                total_size_mb: (s.total_bytes as f64 / 1e6 * 100.0).round() / 100.0,
                total_bytes: s.total_bytes,
                active_jobs: s.active,
            },
            active_jobs: state.active_jobs()?,
            plans,
            sinks: packrat_app::api::sink_activity(cfg, &state.jobs(&backup_core::state::JobFilter::default())?),
            collections: state.collection_health(None)?,
        })
    }

    /// Human form.
    pub fn print_human(&self) {
        let s = &self.statistics;
        outln!(
            "backups: {} total, {} succeeded, {} failed ({:.1}% success), {:.2} MB stored, {} active",
            s.total_backups,
            s.success_count,
            s.failure_count,
            s.success_rate,
            s.total_size_mb,
            s.active_jobs
        );
        for (name, p) in &self.plans {
            let last = match &p.last_job {
                Some(j) => format!(
                    "job {} {} {}",
                    j.id,
                    j.status,
                    plan_time(j.finished_at.or(j.started_at), Some(name))
                ),
                None => "never ran".into(),
            };
            outln!(
                "  {name:<16} {:<9} last: {last}; last success: {}; failures in a row: {}",
                if p.enabled { "enabled" } else { "disabled" },
                plan_time(p.last_success, Some(name)),
                p.consecutive_failures
            );
        }
        print_sinks(&self.sinks);
        print_collections(&self.collections);
    }
}

/// The collections' lines of `status`: last backed-up window and failures.
pub fn print_collections(cols: &[backup_core::state::CollectionHealth]) {
    for h in cols {
        outln!(
            "  collection {}/{}/{}: backed up {} .. {}; failures {} in a row, {} in all{}",
            h.plan,
            h.source,
            h.key,
            plan_time(h.window_from, Some(&h.plan)),
            plan_time(h.window_to, Some(&h.plan)),
            h.consecutive_failures,
            h.failures_total,
            if h.last_error.is_empty() {
                String::new()
            } else {
                format!(" (last: {})", h.last_error)
            }
        );
    }
}

/// The sinks' lines of `status`: packs and bytes received, the last one.
pub fn print_sinks(sinks: &BTreeMap<String, packrat_app::api::SinkActivity>) {
    for (name, a) in sinks {
        outln!(
            "  sink {name:<11} {:<12} {} packs, {:.2} MB received; last: {}",
            a.kind,
            a.packs,
            a.bytes as f64 / 1e6,
            match a.last_job {
                Some(job) => format!("job {job} {}", when(a.last_at)),
                None => "never".into(),
            }
        );
    }
}

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

/// The columns `s` takes in a terminal: CJK and full-width characters take two.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| match c as u32 {
            0x1100..=0x115F
            | 0x2E80..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

/// `s` padded with spaces to `w` terminal columns (left-aligned; `right` for right-aligned).
pub fn pad(s: &str, w: usize, right: bool) -> String {
    let fill = " ".repeat(w.saturating_sub(width(s)));
    if right {
        format!("{fill}{s}")
    } else {
        format!("{s}{fill}")
    }
}

/// A job status as shown to a person (`completed` / `已完成`); JSON keeps the English value.
pub fn status_text(s: backup_core::JobStatus) -> String {
    use backup_core::JobStatus as S;
    let key = match s {
        S::Queued => "status-queued",
        S::Running => "status-running",
        S::Completed => "status-completed",
        S::Failed => "status-failed",
        S::Interrupted => "status-interrupted",
        S::Cancelled => "status-cancelled",
    };
    i18n::text(key, &[])
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
    let (id, status, message) = (j.id, status_text(j.status), j.message.as_str());
    outln!("{}", i18n::tr!("run-job", job = id, status = status, message = message));
    if let Some(p) = &run.pack {
        outln!(
            "{}",
            i18n::tr!("run-pack", pack = p.id.to_string(), location = p.location.as_str())
        );
        outln!(
            "{}",
            i18n::tr!(
                "run-pack-size",
                artifacts = p.artifacts,
                size = bytes(p.bytes),
                duration = duration(j)
            )
        );
    }
    for r in &run.replicas {
        outln!(
            "{}",
            i18n::tr!("run-replica", sink = r.sink.as_str(), location = r.location.as_str())
        );
    }
    for w in &run.warnings {
        outln!("{}", i18n::tr!("warning-line", warning = w.as_str()));
    }
    if !j.detail.is_empty() {
        eprintln!("{}", i18n::tr!("error-line", error = j.detail.as_str()));
    }
}

/// `packrat jobs` table.
pub fn jobs_table(jobs: &[Job]) {
    if jobs.is_empty() {
        outln!("{}", i18n::tr!("jobs-none"));
        return;
    }
    outln!(
        "{}  {} {} {} {} {} {}  {}",
        pad(&i18n::tr!("col-id"), 6, true),
        pad(&i18n::tr!("col-plan"), 14, false),
        pad(&i18n::tr!("col-kind"), 11, false),
        pad(&i18n::tr!("col-status"), 11, false),
        pad(&i18n::tr!("col-started"), 26, false),
        pad(&i18n::tr!("col-time"), 8, true),
        pad(&i18n::tr!("col-size"), 10, true),
        i18n::tr!("col-message")
    );
    for j in jobs {
        let msg = if j.detail.is_empty() {
            j.message.clone()
        } else {
            format!("{}: {}", j.message, j.detail)
        };
        outln!(
            "{:>6}  {:<14} {:<11} {} {:<26} {:>8} {:>10}  {}",
            j.id,
            j.plan,
            j.kind,
            pad(&status_text(j.status), 11, false),
            plan_time(j.started_at.or(Some(j.created_at)), Some(&j.plan)),
            duration(j),
            bytes(j.bytes),
            msg
        );
    }
}

/// `packrat job ID`.
pub fn job_detail(j: &Job) {
    outln!(
        "{}",
        i18n::tr!(
            "job-head",
            job = j.id,
            plan = j.plan.as_str(),
            kind = j.kind.to_string(),
            trigger = j.trigger.as_str()
        )
    );
    outln!(
        "{}",
        i18n::tr!("job-status", status = status_text(j.status), progress = j.progress)
    );
    outln!("{}", i18n::tr!("job-message", message = j.message.as_str()));
    if !j.detail.is_empty() {
        outln!("{}", i18n::tr!("job-detail", detail = j.detail.as_str()));
    }
    outln!("  pack:        {}", j.pack_id.as_deref().unwrap_or("-"));
    outln!("  output_dir:  {}", j.output_dir.as_deref().unwrap_or("-"));
    outln!("  replication: {}", j.replication.as_str());
    outln!(
        "{}",
        i18n::tr!(
            "job-size",
            size = bytes(j.bytes),
            artifacts = j.artifacts,
            records = j.records
        )
    );
    let at = |t| plan_time(t, Some(&j.plan));
    outln!("  created:     {}", at(Some(j.created_at)));
    outln!("  started:     {}", at(j.started_at));
    outln!("  finished:    {} ({})", at(j.finished_at), duration(j));
}

/// `packrat list` table.
pub fn packs_table(packs: &[PackInfo]) {
    if packs.is_empty() {
        outln!("{}", i18n::tr!("packs-none"));
        return;
    }
    outln!(
        "{} {} {} {} {}  {}",
        pad(&i18n::tr!("col-sink"), 10, false),
        pad(&i18n::tr!("col-plan"), 14, false),
        pad(&i18n::tr!("col-pack"), 40, false),
        pad(&i18n::tr!("col-kind"), 11, false),
        pad(&i18n::tr!("col-size"), 10, true),
        i18n::tr!("col-location")
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
        backup_core::VerifyLevel::Quick => i18n::tr!("verify-quick"),
        backup_core::VerifyLevel::Deep => i18n::tr!("verify-deep"),
    };
    let (pack, location) = (r.pack_id.to_string(), r.location.to_string());
    if r.is_ok() {
        outln!(
            "{}",
            i18n::tr!(
                "verify-ok",
                pack = pack,
                level = level,
                artifacts = r.artifacts,
                location = location
            )
        );
    } else {
        outln!(
            "{}",
            i18n::tr!("verify-fail", pack = pack, level = level, location = location)
        );
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
    /// Newest finished verification.
    pub last_verify: Option<packrat_app::drill::DrillRun>,
    /// Newest finished restore drill.
    pub last_drill: Option<packrat_app::drill::DrillRun>,
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
    pub fn collect(cfg: &Config, state: &std::sync::Arc<StateStore>) -> Result<Status, CliError> {
        let s = state.stats()?;
        let mut plans = BTreeMap::new();
        let last = state.last_job_per_plan()?;
        let drills = packrat_app::drill::DrillStore::open(state.clone())?;
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
                    last_verify: drills.last_finished(&name, packrat_app::drill::DrillKind::Verify)?,
                    last_drill: drills.last_finished(&name, packrat_app::drill::DrillKind::Drill)?,
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
            "{}",
            i18n::tr!(
                "status-totals",
                total = s.total_backups,
                succeeded = s.success_count,
                failed = s.failure_count,
                rate = format!("{:.1}", s.success_rate),
                size = format!("{:.2}", s.total_size_mb),
                active = s.active_jobs
            )
        );
        for (name, p) in &self.plans {
            let last = match &p.last_job {
                Some(j) => i18n::tr!(
                    "status-last-job",
                    job = j.id,
                    status = status_text(j.status),
                    at = plan_time(j.finished_at.or(j.started_at), Some(name))
                ),
                None => i18n::tr!("status-never-ran"),
            };
            let enabled = if p.enabled {
                i18n::tr!("status-enabled")
            } else {
                i18n::tr!("status-disabled")
            };
            outln!(
                "  {name:<16} {} {}",
                pad(&enabled, 9, false),
                i18n::tr!(
                    "status-plan",
                    last = last,
                    success = plan_time(p.last_success, Some(name)),
                    failures = p.consecutive_failures
                )
            );
            let drills: Vec<String> = [&p.last_verify, &p.last_drill]
                .into_iter()
                .flatten()
                .map(|r| {
                    let line = i18n::tr!(
                        "status-drill",
                        kind = crate::drill::kind_text(r.kind),
                        status = crate::drill::status_text(r.status),
                        at = plan_time(r.finished_at.or(Some(r.started_at)), Some(name))
                    );
                    format!(
                        "{line}{}",
                        r.failures.first().map(|f| format!(" ({f})")).unwrap_or_default()
                    )
                })
                .collect();
            if !drills.is_empty() {
                outln!("  {:<16} {}", "", drills.join("; "));
            }
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
        let last = match a.last_job {
            Some(job) => i18n::tr!("status-sink-last", job = job, at = when(a.last_at)),
            None => i18n::tr!("status-sink-never"),
        };
        outln!(
            "  {} {name:<11} {:<12} {}",
            i18n::tr!("status-sink"),
            a.kind,
            i18n::tr!(
                "status-sink-line",
                packs = a.packs,
                size = format!("{:.2}", a.bytes as f64 / 1e6),
                last = last
            )
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn padding_counts_cjk_as_two_columns() {
        assert_eq!(super::pad("计划", 6, false), "计划  ");
        assert_eq!(super::pad("ID", 6, true), "    ID");
        assert_eq!(super::width("已完成（x）"), 11);
    }
}

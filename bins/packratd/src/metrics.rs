//! `GET /metrics`: the Prometheus text exposition format, rendered from the state store.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use backup_core::state::JobFilter;
use backup_core::{JobStatus, Result};
use chrono::Utc;

use crate::daemon::Daemon;

fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders every metric.
pub fn render(d: &Daemon) -> Result<String> {
    let st = &d.state;
    let jobs = st.jobs(&JobFilter::default())?;
    let mut by_status: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    let mut bytes: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_ok: BTreeMap<String, (i64, f64)> = BTreeMap::new();
    for name in d.cfg.plans.keys() {
        for s in [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Interrupted,
            JobStatus::Cancelled,
        ] {
            by_status.insert((name.clone(), s.as_str()), 0);
        }
        bytes.insert(name.clone(), 0);
    }
    // Newest first: the first completed job of a plan is its last success.
    for j in &jobs {
        *by_status.entry((j.plan.clone(), j.status.as_str())).or_default() += 1;
        if j.status == JobStatus::Completed {
            *bytes.entry(j.plan.clone()).or_default() += j.bytes;
            if let (false, Some(fin)) = (last_ok.contains_key(&j.plan), j.finished_at) {
                let secs = j
                    .duration()
                    .map(|d| d.num_milliseconds() as f64 / 1000.0)
                    .unwrap_or(0.0);
                last_ok.insert(j.plan.clone(), (fin.timestamp(), secs));
            }
        }
    }

    let mut out = String::new();
    header(&mut out, "packrat_up", "gauge", "1 while packratd runs.");
    let _ = writeln!(out, "packrat_up 1");
    header(
        &mut out,
        "packrat_uptime_seconds",
        "gauge",
        "Seconds since packratd started.",
    );
    let _ = writeln!(
        out,
        "packrat_uptime_seconds {}",
        (Utc::now() - d.started_at).num_seconds()
    );

    header(
        &mut out,
        "packrat_jobs",
        "gauge",
        "Jobs in the state store by plan and status.",
    );
    for ((plan, status), n) in &by_status {
        let _ = writeln!(out, "packrat_jobs{{plan=\"{}\",status=\"{status}\"}} {n}", label(plan));
    }
    header(
        &mut out,
        "packrat_running_jobs",
        "gauge",
        "Jobs running or waiting in this packratd.",
    );
    let _ = writeln!(out, "packrat_running_jobs {}", d.running().len());

    header(
        &mut out,
        "packrat_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful job per plan.",
    );
    for (plan, (ts, _)) in &last_ok {
        let _ = writeln!(
            out,
            "packrat_last_success_timestamp_seconds{{plan=\"{}\"}} {ts}",
            label(plan)
        );
    }
    header(
        &mut out,
        "packrat_last_success_duration_seconds",
        "gauge",
        "Duration of the last successful job per plan.",
    );
    for (plan, (_, secs)) in &last_ok {
        let _ = writeln!(
            out,
            "packrat_last_success_duration_seconds{{plan=\"{}\"}} {secs}",
            label(plan)
        );
    }
    header(
        &mut out,
        "packrat_bytes_written_total",
        "counter",
        "Bytes of all completed packs per plan.",
    );
    for (plan, b) in &bytes {
        let _ = writeln!(out, "packrat_bytes_written_total{{plan=\"{}\"}} {b}", label(plan));
    }
    header(
        &mut out,
        "packrat_consecutive_failures",
        "gauge",
        "Failed or interrupted jobs since the last success per plan.",
    );
    for plan in d.cfg.plans.keys() {
        let _ = writeln!(
            out,
            "packrat_consecutive_failures{{plan=\"{}\"}} {}",
            label(plan),
            st.consecutive_failures(plan)?
        );
    }

    let firing = d.alert_store().list(false)?;
    header(
        &mut out,
        "packrat_alerts_firing",
        "gauge",
        "Alerts firing now, by severity.",
    );
    for sev in ["info", "warning", "critical"] {
        let n = firing.iter().filter(|a| a.severity.as_str() == sev).count();
        let _ = writeln!(out, "packrat_alerts_firing{{severity=\"{sev}\"}} {n}");
    }
    header(&mut out, "packrat_alert", "gauge", "1 for each alert firing now.");
    for a in &firing {
        let _ = writeln!(
            out,
            "packrat_alert{{key=\"{}\",severity=\"{}\"}} 1",
            label(&a.key),
            a.severity.as_str()
        );
    }
    let sinks = packrat_app::api::sink_activity(&d.cfg, &jobs);
    header(
        &mut out,
        "packrat_sink_stored_bytes_total",
        "counter",
        "Bytes of the packs each sink received (uploaded, for a bucket), from the job records.",
    );
    for (name, a) in &sinks {
        let _ = writeln!(
            out,
            "packrat_sink_stored_bytes_total{{sink=\"{}\",type=\"{}\"}} {}",
            label(name),
            a.kind,
            a.bytes
        );
    }
    header(
        &mut out,
        "packrat_sink_stored_packs_total",
        "counter",
        "Packs each sink received.",
    );
    for (name, a) in &sinks {
        let _ = writeln!(
            out,
            "packrat_sink_stored_packs_total{{sink=\"{}\"}} {}",
            label(name),
            a.packs
        );
    }
    header(
        &mut out,
        "packrat_sink_last_stored_timestamp_seconds",
        "gauge",
        "When each sink last received a pack (0: never).",
    );
    for (name, a) in &sinks {
        let _ = writeln!(
            out,
            "packrat_sink_last_stored_timestamp_seconds{{sink=\"{}\"}} {}",
            label(name),
            a.last_at.map_or(0, |t| t.timestamp())
        );
    }
    let health = st.collection_health(None)?;
    header(
        &mut out,
        "packrat_collection_failures_total",
        "counter",
        "Failed backups of a collection (Mongo plans).",
    );
    for h in &health {
        let _ = writeln!(
            out,
            "packrat_collection_failures_total{{plan=\"{}\",source=\"{}\",collection=\"{}\"}} {}",
            label(&h.plan),
            label(&h.source),
            label(&h.key),
            h.failures_total
        );
    }
    header(
        &mut out,
        "packrat_collection_consecutive_failures",
        "gauge",
        "Failures of a collection since its last success.",
    );
    for h in &health {
        let _ = writeln!(
            out,
            "packrat_collection_consecutive_failures{{plan=\"{}\",source=\"{}\",collection=\"{}\"}} {}",
            label(&h.plan),
            label(&h.source),
            label(&h.key),
            h.consecutive_failures
        );
    }
    header(
        &mut out,
        "packrat_collection_last_backup_timestamp_seconds",
        "gauge",
        "Upper bound of the last backed-up window of a collection (its watermark), Unix time.",
    );
    for h in &health {
        if let Some(t) = h.window_to {
            let _ = writeln!(
                out,
                "packrat_collection_last_backup_timestamp_seconds{{plan=\"{}\",source=\"{}\",collection=\"{}\"}} {}",
                label(&h.plan),
                label(&h.source),
                label(&h.key),
                t.timestamp()
            );
        }
    }
    drills(d, &mut out)?;
    Ok(out)
}

/// The verifications and restore drills: when each last passed, whether the last one failed,
/// and the restore time the last passed drill measured.
fn drills(d: &Daemon, out: &mut String) -> Result<()> {
    use packrat_app::drill::{DrillKind, DrillStore};
    let store = DrillStore::open(d.state.clone())?;
    let mut passed = Vec::new();
    let mut failing = Vec::new();
    for plan in d.cfg.plans.keys() {
        for kind in [DrillKind::Verify, DrillKind::Drill] {
            if let Some(r) = store.last_passed(plan, kind)? {
                passed.push((plan, kind, r));
            }
            if let Some(r) = store.last_finished(plan, kind)? {
                failing.push((
                    plan,
                    kind,
                    u8::from(r.status != packrat_app::drill::DrillStatus::Passed),
                ));
            }
        }
    }
    header(
        out,
        "packrat_drill_last_success_timestamp_seconds",
        "gauge",
        "When the last verification (kind=verify) or restore drill (kind=drill) of a plan passed, Unix time.",
    );
    for (plan, kind, r) in &passed {
        let at = r.finished_at.unwrap_or(r.started_at).timestamp();
        let _ = writeln!(
            out,
            "packrat_drill_last_success_timestamp_seconds{{plan=\"{}\",kind=\"{}\"}} {at}",
            label(plan),
            kind.as_str()
        );
    }
    header(
        out,
        "packrat_drill_last_failed",
        "gauge",
        "1 when the last finished verification or restore drill of a plan failed.",
    );
    for (plan, kind, failed) in &failing {
        let _ = writeln!(
            out,
            "packrat_drill_last_failed{{plan=\"{}\",kind=\"{}\"}} {failed}",
            label(plan),
            kind.as_str()
        );
    }
    header(
        out,
        "packrat_drill_restore_seconds",
        "gauge",
        "How long the restores of the last passed restore drill of a plan took.",
    );
    for (plan, kind, r) in &passed {
        if let (DrillKind::Drill, Some(s)) = (kind, r.restore_seconds) {
            let _ = writeln!(out, "packrat_drill_restore_seconds{{plan=\"{}\"}} {s}", label(plan));
        }
    }
    Ok(())
}

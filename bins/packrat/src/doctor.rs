//! `packrat doctor`: the daily self-check, as a list of checks. Each check prints one line:
//! its status, what it looked at, what it found, and — when it is not OK — what to do.
//!
//! To add checks, write a function returning `Vec<Check>` and call it from [`run`].

use std::path::Path;

use backup_core::state::JobFilter;
use backup_core::{ErrorKind, JobStatus, ReplicationStatus, Sink, StateStore};
use clap::Args;
use packrat_app::config::{Config, SinkConfig};
use serde::Serialize;
use sink_cifs_replica::CifsReplicaSink;

use crate::{CliError, exit, output, wire};

/// `packrat doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Worth a look, not a failure.
    Warn,
    /// Broken: `doctor` exits 1.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked (`share mounted (windows)`).
    pub name: String,
    /// Its outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, when not OK.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    /// A passed check.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A warning with what to do.
    pub fn warn(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// A failure with what to do.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// The one-line form.
    pub fn line(&self) -> String {
        let tag = match self.status {
            Status::Ok => i18n::tr!("doctor-tag-ok"),
            Status::Warn => i18n::tr!("doctor-tag-warn"),
            Status::Fail => i18n::tr!("doctor-tag-fail"),
        };
        let (name, detail) = (self.name.as_str(), self.detail.as_str());
        match &self.fix {
            Some(fix) => i18n::tr!(
                "doctor-line-fix",
                tag = tag,
                name = name,
                detail = detail,
                fix = fix.as_str()
            ),
            None => i18n::tr!("doctor-line", tag = tag, name = name, detail = detail),
        }
    }
}

/// Runs every check; exit 1 when one fails.
pub async fn run(config: Option<&Path>, a: DoctorArgs) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    let mut checks = Vec::new();
    let state = match wire::open_state(&cfg) {
        Ok(s) => Some(s),
        Err(e) => {
            checks.push(Check::fail(
                i18n::tr!("doctor-state-store"),
                e.message,
                i18n::tr!("doctor-fix-make-writable", path = cfg.state_dir.display().to_string()),
            ));
            None
        }
    };
    // Jobs of processes that died are marked interrupted first (as every packrat start does).
    if let Some(s) = &state
        && let Err(e) = backup_core::Runner::new(s.clone())
            .with_plan_sinks(wire::plan_sinks(&cfg))
            .recover_jobs(None)
            .await
    {
        checks.push(Check::warn(
            i18n::tr!("doctor-state-store"),
            i18n::tr!("doctor-interrupted-unchecked", error = e.chain()),
            i18n::tr!("doctor-fix-see-jobs"),
        ));
    }
    checks.extend(sink_checks(&cfg).await);
    checks.extend(crate::doctor_retention::checks(&cfg).await);
    checks.extend(crate::restore_common::doctor_checks(&cfg));
    checks.extend(encryption_checks(&cfg));
    if let Some(s) = &state {
        checks.extend(job_checks(&cfg, s));
        checks.extend(crate::doctor_schedule::checks(&cfg, s).await);
    }

    if a.json {
        output::json(&checks);
    } else {
        for c in &checks {
            outln!("{}", c.line());
        }
    }
    Ok(if checks.iter().any(|c| c.status == Status::Fail) {
        exit::FAILED
    } else {
        exit::OK
    })
}

/// Per encrypted plan: the recipients (or passphrase) can be read, and the identity configured
/// for reading its packs exists and belongs to one of them (a warning when none is configured:
/// deep verification and restores then need `--identity`).
pub fn encryption_checks(cfg: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    for (name, pc) in &cfg.plans {
        let Some(e) = &pc.encrypt else { continue };
        let check = i18n::tr!("doctor-encryption", plan = name.as_str());
        let key = format!("plans.{name}.encrypt");
        let enc = match e.encryption(&key) {
            Ok(enc) => enc,
            Err(err) => {
                out.push(Check::fail(
                    check,
                    err.to_string(),
                    i18n::tr!("doctor-fix-section", key = key.as_str()),
                ));
                continue;
            }
        };
        let record = enc.record();
        let to = record.describe();
        out.push(match e.keyring(&key) {
            Err(err) => Check::fail(
                check,
                err.to_string(),
                i18n::tr!("doctor-fix-identity", key = key.as_str()),
            ),
            Ok(keys) if keys.is_empty() => Check::warn(
                check,
                i18n::tr!("doctor-enc-no-identity", to = to.as_str()),
                i18n::tr!("doctor-fix-enc-no-identity", key = key.as_str()),
            ),
            Ok(keys) if !keys.matches(record) => Check::fail(
                check,
                i18n::tr!(
                    "doctor-enc-wrong-identity",
                    to = to.as_str(),
                    identity = keys.describe()
                ),
                i18n::tr!("doctor-fix-enc-wrong-identity", key = key.as_str()),
            ),
            Ok(_) => Check::ok(check, i18n::tr!("doctor-enc-ok", to = to.as_str())),
        });
    }
    out
}

/// Per sink: for replicas the share mounted and of an allowed type, the target present and
/// writable, no stale `_tmp` leftovers; for other sinks present and writable (local sinks: and no
/// stale staging leftovers).
pub async fn sink_checks(cfg: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    for (name, sc) in &cfg.sinks {
        match sc {
            SinkConfig::CifsReplica(c) => {
                let sink = CifsReplicaSink::from_config(name, c);
                out.extend(replica_checks(name, &sink).await);
            }
            SinkConfig::S3(c) => match wire::sink(cfg, name) {
                Ok(sink) => out.push(match sink.check().await {
                    Ok(()) => Check::ok(
                        i18n::tr!("doctor-bucket", sink = name.as_str()),
                        i18n::tr!("doctor-bucket-ok", location = sink.location()),
                    ),
                    Err(e) => {
                        let fix = match e.kind() {
                            ErrorKind::Denied => i18n::tr!(
                                "doctor-fix-bucket-denied",
                                sink = name.as_str(),
                                bucket = c.bucket.as_str()
                            ),
                            ErrorKind::NotFound => i18n::tr!(
                                "doctor-fix-bucket-missing",
                                sink = name.as_str(),
                                bucket = c.bucket.as_str()
                            ),
                            ErrorKind::Config => i18n::tr!("doctor-fix-bucket-config", sink = name.as_str()),
                            _ => i18n::tr!("doctor-fix-bucket-unreachable", endpoint = c.endpoint.as_str()),
                        };
                        Check::fail(i18n::tr!("doctor-bucket", sink = name.as_str()), e.chain(), fix)
                    }
                }),
                Err(e) => out.push(Check::fail(
                    i18n::tr!("doctor-bucket", sink = name.as_str()),
                    e.message,
                    i18n::tr!("doctor-fix-config"),
                )),
            },
            _ => match wire::sink(cfg, name) {
                Ok(sink) => out.push(match sink.check().await {
                    Ok(()) => Check::ok(
                        i18n::tr!("doctor-sink", sink = name.as_str()),
                        i18n::tr!("doctor-present-writable", path = sink.location()),
                    ),
                    Err(e) => Check::fail(
                        i18n::tr!("doctor-sink", sink = name.as_str()),
                        e.chain(),
                        i18n::tr!("doctor-fix-create-writable", path = sink.location()),
                    ),
                }),
                Err(e) => out.push(Check::fail(
                    i18n::tr!("doctor-sink", sink = name.as_str()),
                    e.message,
                    i18n::tr!("doctor-fix-config"),
                )),
            },
        }
        if let SinkConfig::Local(c) = sc {
            out.push(local_leftovers(name, &sink_local::LocalSink::from_config(name, c)));
        }
    }
    out
}

/// Work directories of killed jobs or prunes in a local sink's staging area.
fn local_leftovers(name: &str, sink: &sink_local::LocalSink) -> Check {
    let check = i18n::tr!("doctor-staging-leftovers", sink = name);
    match sink.leftovers() {
        Ok(l) if l.is_empty() => Check::ok(check, i18n::tr!("doctor-none")),
        Ok(l) => Check::warn(
            check,
            i18n::tr!(
                "doctor-staging-leftovers-found",
                count = l.len(),
                paths = l.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            i18n::tr!("doctor-fix-staging-leftovers"),
        ),
        Err(e) => Check::fail(
            check,
            e.to_string(),
            i18n::tr!(
                "doctor-fix-make-readable",
                path = sink.staging_root().display().to_string()
            ),
        ),
    }
}

async fn replica_checks(name: &str, sink: &CifsReplicaSink) -> Vec<Check> {
    let mounted = i18n::tr!("doctor-share-mounted", sink = name);
    let writable = i18n::tr!("doctor-replica-writable", sink = name);
    let leftovers = i18n::tr!("doctor-tmp-leftovers", sink = name);
    let check = sink.mount_check().clone();
    let report = if sink.path().as_os_str().is_empty() {
        Err(sink_cifs_replica::ReplicaError::EmptyPath {
            key: format!("sinks.{name}.path"),
        })
    } else {
        check.check(sink.path())
    };
    let mut out = Vec::new();
    match report {
        Ok(r) => out.push(Check::ok(
            mounted,
            i18n::tr!(
                "doctor-share-on",
                path = sink.path().display().to_string(),
                fs = r.fs_type.to_string(),
                source = r.source.to_string(),
                mount = r.mount_point.display().to_string()
            ),
        )),
        Err(e) => {
            use sink_cifs_replica::ReplicaError as R;
            let fix = match &e {
                R::EmptyPath { .. } => i18n::tr!("doctor-fix-share-path", sink = name),
                R::TargetMissing { .. } => i18n::tr!(
                    "doctor-fix-share-mkdir",
                    sink = name,
                    path = sink.path().display().to_string()
                ),
                _ => i18n::tr!("doctor-fix-share-mount", sink = name),
            };
            out.push(Check::fail(mounted, e.to_string(), fix));
            // One cause, one failure: the checks that need the share are only flagged.
            for n in [writable, leftovers] {
                out.push(Check::warn(
                    n,
                    i18n::tr!("doctor-share-not-checked"),
                    i18n::tr!("doctor-fix-share-first"),
                ));
            }
            return out;
        }
    }
    out.push(match sink.check().await {
        Ok(()) => Check::ok(
            writable,
            i18n::tr!("doctor-present-writable", path = sink.path().display().to_string()),
        ),
        Err(e) => Check::fail(
            writable,
            e.chain(),
            i18n::tr!("doctor-fix-share-writable", path = sink.path().display().to_string()),
        ),
    });
    out.push(match sink.leftovers() {
        Ok(l) if l.is_empty() => Check::ok(leftovers, i18n::tr!("doctor-none")),
        Ok(l) => Check::warn(
            leftovers,
            i18n::tr!(
                "doctor-tmp-leftovers-found",
                count = l.len(),
                paths = l.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            i18n::tr!("doctor-fix-tmp-leftovers"),
        ),
        Err(e) => Check::fail(leftovers, e.to_string(), i18n::tr!("doctor-fix-check-share")),
    });
    out
}

/// Per plan: the latest job completed, and synced when the plan replicates.
pub fn job_checks(cfg: &Config, state: &StateStore) -> Vec<Check> {
    let mut out = Vec::new();
    for (plan, pc) in &cfg.plans {
        let name = i18n::tr!("doctor-latest-job", plan = plan.as_str());
        let jobs = match state.jobs(&JobFilter {
            plan: Some(plan.clone()),
            status: None,
            limit: Some(1),
        }) {
            Ok(j) => j,
            Err(e) => {
                out.push(Check::fail(name, e.chain(), i18n::tr!("doctor-fix-check-state")));
                continue;
            }
        };
        let Some(job) = jobs.first() else {
            out.push(Check::warn(
                name,
                i18n::tr!("doctor-no-job"),
                i18n::tr!("doctor-fix-run", plan = plan.as_str()),
            ));
            continue;
        };
        let replicates = pc.sinks.len() > 1;
        let rerun = i18n::tr!("doctor-fix-rerun", job = job.id, plan = plan.as_str());
        out.push(match job.status {
            JobStatus::Completed if !replicates || job.replication == ReplicationStatus::Succeeded => Check::ok(
                name,
                i18n::tr!("doctor-job-message", job = job.id, message = job.message.as_str()),
            ),
            JobStatus::Completed => Check::fail(
                name,
                i18n::tr!(
                    "doctor-job-not-synced",
                    job = job.id,
                    replication = job.replication.as_str(),
                    detail = job.detail.as_str()
                ),
                rerun,
            ),
            JobStatus::Queued | JobStatus::Running => Check::ok(
                name,
                i18n::tr!(
                    "doctor-job-active",
                    job = job.id,
                    status = crate::output::status_text(job.status),
                    progress = job.progress
                ),
            ),
            JobStatus::Failed | JobStatus::Interrupted | JobStatus::Cancelled => Check::fail(
                name,
                i18n::tr!(
                    "doctor-job-ended",
                    job = job.id,
                    status = crate::output::status_text(job.status),
                    detail = job.detail.as_str()
                ),
                rerun,
            ),
        });
    }
    out
}

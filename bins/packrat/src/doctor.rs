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
            Status::Ok => "OK  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        match &self.fix {
            Some(fix) => format!("{tag}  {}: {} -> fix: {fix}", self.name, self.detail),
            None => format!("{tag}  {}: {}", self.name, self.detail),
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
                "state store",
                e.message,
                format!("make {} writable for the packrat user", cfg.state_dir.display()),
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
            "state store",
            format!("cannot check for interrupted jobs: {}", e.chain()),
            "run `packrat jobs` to see the jobs",
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
        let check = format!("encryption ({name})");
        let key = format!("plans.{name}.encrypt");
        let enc = match e.encryption(&key) {
            Ok(enc) => enc,
            Err(err) => {
                out.push(Check::fail(check, err.to_string(), format!("fix [{key}]")));
                continue;
            }
        };
        let record = enc.record();
        let to = record.describe();
        out.push(match e.keyring(&key) {
            Err(err) => Check::fail(
                check,
                err.to_string(),
                format!("fix identity_file/identity_env in [{key}]"),
            ),
            Ok(keys) if keys.is_empty() => Check::warn(
                check,
                format!("packs are encrypted to {to}; no identity is configured on this host"),
                format!(
                    "keep the identity safe elsewhere; verify --deep and restores need --identity FILE (or set \
                     identity_file in [{key}])"
                ),
            ),
            Ok(keys) if !keys.matches(record) => Check::fail(
                check,
                format!(
                    "packs are encrypted to {to}, but the identity configured is for {}",
                    keys.describe()
                ),
                format!("set identity_file in [{key}] to the identity of one of the recipients"),
            ),
            Ok(_) => Check::ok(
                check,
                format!("packs are encrypted to {to}; the identity configured opens them"),
            ),
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
                        format!("bucket {name}"),
                        format!("{} answers and accepts the credentials", sink.location()),
                    ),
                    Err(e) => {
                        let fix = match e.kind() {
                            ErrorKind::Denied => format!(
                                "check sinks.{name}.access_key_id_*/secret_access_key_* and that the key may read and write bucket {}",
                                c.bucket
                            ),
                            ErrorKind::NotFound => {
                                format!("create bucket {} on the store or fix sinks.{name}.bucket", c.bucket)
                            }
                            ErrorKind::Config => format!("fix sinks.{name} (endpoint, region, path_style, credentials)"),
                            _ => format!("check that {} is reachable from this host and the store is up", c.endpoint),
                        };
                        Check::fail(format!("bucket {name}"), e.chain(), fix)
                    }
                }),
                Err(e) => out.push(Check::fail(format!("bucket {name}"), e.message, "fix the config")),
            },
            _ => match wire::sink(cfg, name) {
                Ok(sink) => out.push(match sink.check().await {
                    Ok(()) => Check::ok(
                        format!("sink {name}"),
                        format!("{} is present and writable", sink.location()),
                    ),
                    Err(e) => Check::fail(
                        format!("sink {name}"),
                        e.chain(),
                        format!("create {} or make it writable for the packrat user", sink.location()),
                    ),
                }),
                Err(e) => out.push(Check::fail(format!("sink {name}"), e.message, "fix the config")),
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
    let check = format!("no stale staging leftovers ({name})");
    match sink.leftovers() {
        Ok(l) if l.is_empty() => Check::ok(check, "none"),
        Ok(l) => Check::warn(
            check,
            format!(
                "{} leftover(s) of interrupted jobs or prunes: {}",
                l.len(),
                l.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            "the next run or prune of a plan with this sink removes them; or remove them by hand",
        ),
        Err(e) => Check::fail(
            check,
            e.to_string(),
            format!("make {} readable for the packrat user", sink.staging_root().display()),
        ),
    }
}

async fn replica_checks(name: &str, sink: &CifsReplicaSink) -> Vec<Check> {
    let mounted = format!("share mounted ({name})");
    let writable = format!("replica target writable ({name})");
    let leftovers = format!("no stale _tmp leftovers ({name})");
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
            format!(
                "{} is on {} {} (mounted at {})",
                sink.path().display(),
                r.fs_type,
                r.source,
                r.mount_point.display()
            ),
        )),
        Err(e) => {
            use sink_cifs_replica::ReplicaError as R;
            let fix = match &e {
                R::EmptyPath { .. } => format!("set sinks.{name}.path to the directory on the mounted share"),
                R::TargetMissing { .. } => format!(
                    "create it on the share (mkdir -p {}) or fix sinks.{name}.path",
                    sink.path().display()
                ),
                _ => format!(
                    "mount the share at its mount point (mount -t cifs //SERVER/SHARE MOUNTPOINT -o ...), or fix sinks.{name}.path"
                ),
            };
            out.push(Check::fail(mounted, e.to_string(), fix));
            // One cause, one failure: the checks that need the share are only flagged.
            for n in [writable, leftovers] {
                out.push(Check::warn(
                    n,
                    "not checked: the share check failed",
                    "fix the share first",
                ));
            }
            return out;
        }
    }
    out.push(match sink.check().await {
        Ok(()) => Check::ok(writable, format!("{} is present and writable", sink.path().display())),
        Err(e) => Check::fail(
            writable,
            e.chain(),
            format!(
                "create {} on the share and give the packrat user write access (mount options uid=, file_mode=)",
                sink.path().display()
            ),
        ),
    });
    out.push(match sink.leftovers() {
        Ok(l) if l.is_empty() => Check::ok(leftovers, "none"),
        Ok(l) => Check::warn(
            leftovers,
            format!(
                "{} leftover(s) of interrupted copies: {}",
                l.len(),
                l.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            "the next run of a plan with this sink removes them; or remove them by hand",
        ),
        Err(e) => Check::fail(leftovers, e.to_string(), "check the share"),
    });
    out
}

/// Per plan: the latest job completed, and synced when the plan replicates.
pub fn job_checks(cfg: &Config, state: &StateStore) -> Vec<Check> {
    let mut out = Vec::new();
    for (plan, pc) in &cfg.plans {
        let name = format!("latest job ({plan})");
        let jobs = match state.jobs(&JobFilter {
            plan: Some(plan.clone()),
            status: None,
            limit: Some(1),
        }) {
            Ok(j) => j,
            Err(e) => {
                out.push(Check::fail(name, e.chain(), "check the state store"));
                continue;
            }
        };
        let Some(job) = jobs.first() else {
            out.push(Check::warn(name, "no job yet", format!("run `packrat run {plan}`")));
            continue;
        };
        let replicates = pc.sinks.len() > 1;
        let rerun = format!(
            "see `packrat job {}`, fix the cause, then run `packrat run {plan}`",
            job.id
        );
        out.push(match job.status {
            JobStatus::Completed if !replicates || job.replication == ReplicationStatus::Succeeded => {
                Check::ok(name, format!("job {} {}", job.id, job.message))
            }
            JobStatus::Completed => Check::fail(
                name,
                format!(
                    "job {} completed but is not synced (replication {}): {}",
                    job.id,
                    job.replication.as_str(),
                    job.detail
                ),
                rerun,
            ),
            JobStatus::Queued | JobStatus::Running => {
                Check::ok(name, format!("job {} is {} ({}%)", job.id, job.status, job.progress))
            }
            JobStatus::Failed | JobStatus::Interrupted | JobStatus::Cancelled => {
                Check::fail(name, format!("job {} {}: {}", job.id, job.status, job.detail), rerun)
            }
        });
    }
    out
}

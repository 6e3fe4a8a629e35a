//! The [`Runner`]: drives one job of a plan through the data path.
//!
//! job record (queued → running) → every source writes into a staging pack on the first sink →
//! seal (manifest last) → atomic rename into place on the first sink → verified copies to further
//! sinks → watermarks advanced → job completed (or failed with message and detail). A failure
//! before the pack is in place removes the staging directory and leaves older packs untouched.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use chrono_tz::Tz;
use tracing::{error, info, warn};

use crate::lock::FileLock;
use crate::pack::{PackId, StagingPack};
use crate::sink::{PackInfo, Sink};
use crate::source::{BackupContext, NoProgress, Progress, Source, SourceReport};
use crate::state::{StateStore, Watermark};
use crate::{BackupKind, Error, Job, JobId, JobOutcome, JobStatus, ReplicationStatus, Result, Trigger};

/// A plan wired to its source and sink instances.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Plan name.
    pub name: String,
    /// Sources, backed up in this order.
    pub sources: Vec<Arc<dyn Source>>,
    /// Sinks; the first hosts staging and receives the pack by rename, the others get copies.
    pub sinks: Vec<Arc<dyn Sink>>,
    /// Pack id prefix.
    pub prefix: String,
    /// Time zone for the pack id and local times.
    pub time_zone: Tz,
    /// zstd level for compressed artifacts.
    pub zstd_level: i32,
    /// Whether a failed copy to a further sink fails the job.
    pub replication_required: bool,
}

impl Plan {
    /// A plan with defaults (prefix `migration_pack`, UTC, zstd 3, replication required).
    pub fn new(name: &str, sources: Vec<Arc<dyn Source>>, sinks: Vec<Arc<dyn Sink>>) -> Plan {
        Plan {
            name: name.to_string(),
            sources,
            sinks,
            prefix: "migration_pack".into(),
            time_zone: chrono_tz::UTC,
            zstd_level: 3,
            replication_required: true,
        }
    }
}

/// What a finished job produced.
#[derive(Debug, Clone)]
pub struct JobRun {
    /// The job record as finally stored.
    pub job: Job,
    /// The pack on the first sink, when it got there.
    pub pack: Option<PackInfo>,
    /// Copies on further sinks that succeeded.
    pub replicas: Vec<PackInfo>,
    /// Warnings from sources and failed replicas.
    pub warnings: Vec<String>,
}

impl JobRun {
    /// True when the job completed.
    pub fn is_success(&self) -> bool {
        self.job.status == JobStatus::Completed
    }
}

/// Runs jobs against a state store.
#[derive(Debug, Clone)]
pub struct Runner {
    state: Arc<StateStore>,
    progress: Arc<dyn Progress>,
}

impl Runner {
    /// A runner recording jobs in `state`.
    pub fn new(state: Arc<StateStore>) -> Runner {
        Runner {
            state,
            progress: Arc::new(NoProgress),
        }
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Runner {
        self.progress = progress;
        self
    }

    /// The state store.
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// Crash recovery: marks jobs of dead processes `interrupted` and removes their staging
    /// leftovers from `sinks`. Safe to call while other processes run jobs (their locks are held).
    pub async fn recover(&self, sinks: &[Arc<dyn Sink>]) -> Result<Vec<Job>> {
        let marked = self.state.recover_interrupted()?;
        for j in &marked {
            warn!(job = j.id, plan = %j.plan, "job was interrupted by a crash or kill; marked interrupted");
        }
        let active: Vec<JobId> = self.state.active_jobs()?.iter().map(|j| j.id).collect();
        for s in sinks {
            match s.clean_leftovers(&active).await {
                Ok(removed) => {
                    for r in removed {
                        info!(sink = s.name(), path = %r.display(), "removed staging leftover");
                    }
                }
                Err(e) => warn!(sink = s.name(), "cannot clean staging leftovers: {}", e.chain()),
            }
        }
        Ok(marked)
    }

    /// Runs one job of `plan`. Errors before the job exists (the plan is already running, the
    /// state store is unusable) are returned as `Err`; everything after is recorded in the job and
    /// returned as a [`JobRun`] whose job is `completed` or `failed`.
    pub async fn run(&self, plan: &Plan, kind: BackupKind, trigger: Trigger) -> Result<JobRun> {
        if plan.sinks.is_empty() || plan.sources.is_empty() {
            return Err(Error::Config(format!(
                "plan `{}` needs at least one source and one sink",
                plan.name
            )));
        }
        let lock_path = self.state.dir().join("locks").join(format!("plan-{}.lock", plan.name));
        let _plan_lock = FileLock::try_acquire(&lock_path, &format!("plan `{}`", plan.name))?;
        self.recover(&plan.sinks).await?;

        let (job, _job_lock) = self.state.create_job(&plan.name, kind, trigger)?;
        self.state.start_job(job.id)?;
        info!(job = job.id, plan = %plan.name, %kind, "job started");

        let mut warnings = Vec::new();
        let result = self.execute(plan, job.id, kind, &mut warnings).await;
        let (pack, replicas) = match result {
            Ok(ok) => ok,
            Err(e) => {
                let detail = e.chain();
                error!(job = job.id, plan = %plan.name, "backup failed: {detail}");
                self.state.fail_job(job.id, "backup failed", &detail)?;
                let job = self
                    .state
                    .job(job.id)?
                    .ok_or_else(|| Error::NotFound(format!("job {}", job.id)))?;
                return Ok(JobRun {
                    job,
                    pack: None,
                    replicas: Vec::new(),
                    warnings,
                });
            }
        };
        let job = self
            .state
            .job(job.id)?
            .ok_or_else(|| Error::NotFound(format!("job {}", job.id)))?;
        Ok(JobRun {
            job,
            pack: Some(pack),
            replicas,
            warnings,
        })
    }

    async fn execute(
        &self,
        plan: &Plan,
        job: JobId,
        kind: BackupKind,
        warnings: &mut Vec<String>,
    ) -> Result<(PackInfo, Vec<PackInfo>)> {
        let state = &self.state;
        let first = &plan.sinks[0];
        let started_at = Utc::now();
        let ctx = BackupContext {
            plan: plan.name.clone(),
            job,
            kind,
            time_zone: plan.time_zone,
            started_at,
            state: Some(state.clone()),
            progress: self.progress.clone(),
        };

        self.stage(job, 2, "checking sinks");
        let mut n = 1;
        let id = loop {
            let id = PackId::generate(&plan.prefix, started_at, plan.time_zone, n)?;
            if !first.exists(&plan.name, id.as_str()).await? {
                break id;
            }
            n += 1;
            if n > 1000 {
                return Err(Error::Other(format!("cannot find a free pack id for {id}")));
            }
        };
        state.set_pack_id(job, id.as_str())?;

        let mut expected = 0u64;
        for s in &plan.sources {
            expected += s.estimate(&ctx).await?;
        }
        let staged = first.stage(job, &plan.name, &id, expected).await?;
        let staging_dir = match &staged {
            Some(d) => d.clone(),
            None => state.dir().join("staging").join(format!("job_{job}_{id}")),
        };
        let pack = StagingPack::create(&staging_dir, &plan.name, id.clone(), kind, plan.time_zone)?;
        pack.set_job_id(job);
        pack.set_zstd_level(plan.zstd_level);

        let built = self.build(plan, &ctx, &pack, warnings).await;
        let reports = match built {
            Ok(r) => r,
            Err(e) => {
                self.discard(first, &staged, &staging_dir).await;
                return Err(e);
            }
        };

        self.stage(job, 80, "sealing pack");
        let sealed = match tokio::task::spawn_blocking(move || pack.seal()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.discard(first, &staged, &staging_dir).await;
                return Err(e);
            }
            Err(e) => {
                self.discard(first, &staged, &staging_dir).await;
                return Err(Error::Other(format!("sealing task failed: {e}")));
            }
        };

        self.stage(job, 85, &format!("storing pack in sink {}", first.name()));
        let stored = match first.store(&sealed, job).await {
            Ok(info) => info,
            Err(e) => {
                self.discard(first, &staged, &staging_dir).await;
                return Err(e);
            }
        };
        if staged.is_none() {
            let _ = crate::pack::remove_dir_all_if_exists(&staging_dir);
        }
        info!(job, plan = %plan.name, pack = %stored.id, path = %stored.path.display(), "pack in place");

        // The pack is safely in place: now, and only now, advance the watermarks.
        let now = Utc::now();
        let marks: Vec<Watermark> = reports
            .iter()
            .flat_map(|(source, r)| {
                r.watermarks.iter().map(move |w| Watermark {
                    plan: plan.name.clone(),
                    source: source.clone(),
                    key: w.key.clone(),
                    value: w.value,
                    job: Some(job),
                    updated_at: now,
                })
            })
            .collect();
        if !marks.is_empty() {
            state.set_watermarks(job, &marks)?;
        }

        // Copies to further sinks.
        let in_place = sealed.moved_to(stored.path.clone());
        let mut replicas = Vec::new();
        let mut failures = Vec::new();
        let further = &plan.sinks[1..];
        if !further.is_empty() {
            state.set_replication(job, ReplicationStatus::Pending, None, None)?;
        }
        for (i, s) in further.iter().enumerate() {
            let pct = 90 + (9 * i / further.len().max(1)) as u8;
            self.stage(job, pct, &format!("replicating to sink {}", s.name()));
            match s.store(&in_place, job).await {
                Ok(info) => {
                    info!(job, sink = s.name(), path = %info.path.display(), "replica in place");
                    replicas.push(info);
                }
                Err(e) => {
                    let msg = format!("sink {}: {}", s.name(), e.chain());
                    warn!(job, "replication failed: {msg}");
                    failures.push(msg);
                }
            }
        }

        let replication = match (further.is_empty(), failures.is_empty()) {
            (true, _) => ReplicationStatus::None,
            (false, true) => ReplicationStatus::Succeeded,
            (false, false) => ReplicationStatus::Failed,
        };
        if !failures.is_empty() && plan.replication_required {
            state.set_replication(job, replication, None, None)?;
            return Err(Error::Other(format!(
                "the pack is in place at {} but replication failed: {}",
                stored.path.display(),
                failures.join("; ")
            )));
        }
        warnings.extend(failures.iter().cloned());
        let message = match replication {
            ReplicationStatus::Succeeded => "backup completed (synced)",
            ReplicationStatus::Failed => "backup completed (replication failed)",
            _ => "backup completed",
        };
        state.complete_job(
            job,
            &JobOutcome {
                output_dir: stored.path.display().to_string(),
                pack_id: stored.id.clone(),
                bytes: stored.bytes,
                artifacts: stored.artifacts as u64,
                records: in_place.manifest().total_records(),
                message: message.into(),
                replication,
                detail: failures.join("; "),
            },
        )?;
        if let Err(e) = state.set_last_success(&plan.name, Utc::now()) {
            warn!(job, "cannot record last success: {}", e.chain());
        }
        info!(job, plan = %plan.name, "{message}");
        Ok((stored, replicas))
    }

    async fn build(
        &self,
        plan: &Plan,
        ctx: &BackupContext,
        pack: &StagingPack,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<(String, SourceReport)>> {
        let mut reports = Vec::new();
        let n = plan.sources.len();
        for (i, s) in plan.sources.iter().enumerate() {
            let pct = 5 + (75 * i / n) as u8;
            self.stage(ctx.job, pct, &format!("backing up source {} ({}/{n})", s.name(), i + 1));
            let r = s.backup(ctx, pack).await?;
            for w in &r.warnings {
                warn!(job = ctx.job, source = s.name(), "{w}");
                warnings.push(format!("source {}: {w}", s.name()));
            }
            reports.push((s.name().to_string(), r));
        }
        Ok(reports)
    }

    async fn discard(&self, first: &Arc<dyn Sink>, staged: &Option<PathBuf>, dir: &std::path::Path) {
        let r = match staged {
            Some(d) => first.discard_staging(d).await,
            None => crate::pack::remove_dir_all_if_exists(dir),
        };
        if let Err(e) = r {
            warn!("cannot remove staging directory {}: {}", dir.display(), e.chain());
        }
    }

    fn stage(&self, job: JobId, pct: u8, message: &str) {
        self.progress.stage(message);
        if let Err(e) = self.state.set_progress(job, pct, message) {
            warn!(job, "cannot record progress: {}", e.chain());
        }
    }
}

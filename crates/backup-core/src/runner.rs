//! The [`Runner`]: drives one job of a plan through the data path.
//!
//! job record (queued → running) → every source writes into a staging pack on the first sink →
//! seal (manifest last) → atomic rename into place on the first sink → verified copies to further
//! sinks → watermarks advanced → job completed (or failed with message and detail). A failure
//! before the pack is in place removes the staging directory and leaves older packs untouched.
//! A cancelled job (see [`CancelToken`]) ends `cancelled`, with its staging removed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use chrono_tz::Tz;
use tracing::{error, info, warn};

use crate::cancel::CancelToken;
use crate::lock::{ClaimedDir, FileLock};
use crate::manifest::{Compression, ManifestWatermark};
use crate::pack::{PackId, SealedPack, StagingPack};
use crate::reader::PackReader;
use crate::sink::{PackInfo, Sink};
use crate::source::{BackupContext, NoProgress, Progress, Source, SourceReport};
use crate::state::{Actor, AuditAction, JobLock, StateStore, Watermark};
use crate::{BackupKind, Error, Job, JobId, JobOutcome, JobStatus, ReplicationStatus, Result, Trigger};

/// What a job's work holds, kept outside the work's future so that it survives cancellation: the
/// claimed staging directory (until the pack is in place) and the pack once it is.
#[derive(Debug, Default)]
struct Work {
    staging: Option<ClaimedDir>,
    hosted: bool,
    stored: Option<PackInfo>,
}

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
    /// Encrypt every artifact (age after zstd) to these recipients.
    pub encryption: Option<crate::crypt::Encryption>,
    /// The plan's effective configuration as the application renders it (TOML, secrets only as
    /// the names of the variables and files holding them), stored in every pack as
    /// [`PLAN_CONFIG_PATH`] so a pack says how it was made.
    pub config: Option<String>,
}

/// Where a pack carries its plan's configuration ([`Plan::config`]); artifact kind
/// [`PLAN_CONFIG_KIND`], source [`PLAN_CONFIG_SOURCE`]. Listed in the manifest and covered by
/// `SHA256SUMS` like every artifact; no restore picks it up.
pub const PLAN_CONFIG_PATH: &str = "packrat/plan.toml";
/// Artifact kind of [`PLAN_CONFIG_PATH`].
pub const PLAN_CONFIG_KIND: &str = "plan-config";
/// Source name recorded for [`PLAN_CONFIG_PATH`] (written by packrat itself, not by a source).
pub const PLAN_CONFIG_SOURCE: &str = "packrat";

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
            encryption: None,
            config: None,
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

/// A job created and holding its plan's lock, waiting to run (see [`Runner::queue`]). Its row is
/// `queued` in the state store; dropping it without running it leaves the row to recovery, so
/// run it ([`Runner::run_queued`]) or cancel it ([`Runner::cancel_queued`]).
#[derive(Debug)]
pub struct QueuedJob {
    job: Job,
    kind: BackupKind,
    plan_lock: FileLock,
    job_lock: JobLock,
}

impl QueuedJob {
    /// The job record as created (`queued`).
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The job id.
    pub fn id(&self) -> JobId {
        self.job.id
    }
}

/// What crash recovery did (see [`Runner::recover`]).
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Jobs of processes that are gone, now `interrupted`.
    pub interrupted: Vec<Job>,
    /// Jobs of processes that died after their pack was in place, now `completed`.
    pub completed: Vec<Job>,
    /// Leftovers of gone jobs that were removed from the sinks and the state directory.
    pub removed: Vec<PathBuf>,
}

/// Runs jobs against a state store.
#[derive(Debug, Clone)]
pub struct Runner {
    state: Arc<StateStore>,
    progress: Arc<dyn Progress>,
    plan_sinks: BTreeMap<String, Vec<Arc<dyn Sink>>>,
    actor: Actor,
}

/// How often a running job looks for a cancel request in the state store.
pub const CANCEL_POLL: Duration = Duration::from_millis(500);

/// Polls the state store for a cancel request of one job and cancels its token; stops when
/// dropped.
struct CancelWatch(Option<tokio::task::JoinHandle<()>>);

impl CancelWatch {
    fn spawn(state: Arc<StateStore>, job: JobId, cancel: CancelToken) -> CancelWatch {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return CancelWatch(None);
        };
        CancelWatch(Some(rt.spawn(watch_cancel_request(state, job, cancel))))
    }
}

/// Polls the state store every [`CANCEL_POLL`] for a cancel request of `job` (recorded by
/// [`StateStore::request_cancel`], from any process) and cancels `cancel` with the reason
/// "cancelled by WHO". Returns once `cancel` is cancelled, by the request or otherwise.
pub async fn watch_cancel_request(state: Arc<StateStore>, job: JobId, cancel: CancelToken) {
    loop {
        let st = state.clone();
        let found = tokio::task::spawn_blocking(move || st.cancel_request(job)).await;
        if let Ok(Ok(Some(req))) = found {
            info!(job, by = %req.requested_by, "cancel request found; cancelling the job");
            cancel.cancel(format!("cancelled by {}", req.requested_by));
            return;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(CANCEL_POLL) => {}
        }
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// How often, and how long apart, the runner tries to remove a cancelled job's staging while
/// blocking work that was writing into it winds down.
const DISCARD_ATTEMPTS: u32 = 20;
const DISCARD_PAUSE: Duration = Duration::from_millis(100);

impl Runner {
    /// A runner recording jobs in `state`.
    pub fn new(state: Arc<StateStore>) -> Runner {
        Runner {
            state,
            progress: Arc::new(NoProgress),
            plan_sinks: BTreeMap::new(),
            actor: Actor::process("packrat"),
        }
    }

    /// Who queues the jobs, for the audit trail (default: this process as `packrat`).
    pub fn with_actor(mut self, actor: Actor) -> Runner {
        self.actor = actor;
        self
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Runner {
        self.progress = progress;
        self
    }

    /// The sinks of every plan of the installation (first sink first), so that recovery can
    /// look for the packs of interrupted jobs of any plan and clean every sink. Without it,
    /// recovery only knows the sinks of the plan being run.
    pub fn with_plan_sinks(mut self, plan_sinks: BTreeMap<String, Vec<Arc<dyn Sink>>>) -> Runner {
        self.plan_sinks = plan_sinks;
        self
    }

    /// The state store.
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// Crash recovery, safe while other processes and tasks run jobs: a job is only touched when
    /// its lock is free (its process is gone), a leftover only when its claim is free.
    ///
    /// - Queued or running jobs of gone processes become `interrupted` — or `completed` when
    ///   their pack is already in place under its final name on a sink of their plan (the
    ///   manifest names the job); the watermarks the manifest records are then advanced.
    /// - Leftovers of gone jobs are removed from every known sink and from the state directory's
    ///   own staging area.
    ///
    /// `plan` adds the sinks of the plan about to run to those given by
    /// [`Runner::with_plan_sinks`].
    pub async fn recover(&self, plan: Option<&Plan>) -> Result<Recovery> {
        let plan_sinks = self.sinks_with(plan);
        let mut out = self.recover_jobs(plan).await?;
        let mut seen = std::collections::BTreeSet::new();
        for s in plan_sinks.values().flatten() {
            if !seen.insert(s.name().to_string()) {
                continue;
            }
            match s.clean_leftovers().await {
                Ok(removed) => {
                    for r in &removed {
                        info!(sink = s.name(), path = %r.display(), "removed leftover of a job that is gone");
                    }
                    out.removed.extend(removed);
                }
                Err(e) => warn!(sink = s.name(), "cannot clean leftovers: {}", e.chain()),
            }
        }
        let own = self.own_staging_root();
        match crate::lock::sweep(&own, &["job_"], &|p| std::fs::remove_dir_all(p)) {
            Ok(removed) => out.removed.extend(removed),
            Err(e) => warn!(path = %own.display(), "cannot clean leftovers: {}", e.chain()),
        }
        Ok(out)
    }

    /// The job part of [`Runner::recover`], without removing leftovers (for `doctor`, which
    /// reports them): jobs of gone processes become `interrupted`, or `completed` when their
    /// pack is in place.
    pub async fn recover_jobs(&self, plan: Option<&Plan>) -> Result<Recovery> {
        let plan_sinks = self.sinks_with(plan);
        let mut out = Recovery::default();
        for job in self.state.recover_interrupted()? {
            match self.reconcile(&job, plan_sinks.get(&job.plan)).await {
                Some(done) => out.completed.push(done),
                None => {
                    warn!(job = job.id, plan = %job.plan, "job was interrupted by a crash or kill; marked interrupted");
                    out.interrupted.push(job);
                }
            }
        }
        Ok(out)
    }

    fn sinks_with(&self, plan: Option<&Plan>) -> BTreeMap<String, Vec<Arc<dyn Sink>>> {
        let mut plan_sinks = self.plan_sinks.clone();
        if let Some(p) = plan {
            plan_sinks.insert(p.name.clone(), p.sinks.clone());
        }
        plan_sinks
    }

    /// A job just marked interrupted whose pack is in place on a sink of its plan becomes
    /// completed; returns the updated job.
    async fn reconcile(&self, job: &Job, sinks: Option<&Vec<Arc<dyn Sink>>>) -> Option<Job> {
        let pack_id = job.pack_id.as_deref()?;
        let sinks = sinks?;
        let mut found: Option<(usize, Arc<dyn PackReader>)> = None;
        let mut copies = Vec::new();
        for (i, s) in sinks.iter().enumerate() {
            match s.open(&job.plan, pack_id).await {
                Ok(pack) if pack.manifest().job_id == Some(job.id) => {
                    if found.is_none() {
                        found = Some((i, pack));
                    } else {
                        copies.push(i);
                    }
                }
                _ => {}
            }
        }
        let (first, pack) = found?;
        let m = pack.manifest();
        let marks: Vec<Watermark> = m
            .watermarks
            .iter()
            .map(|w| Watermark {
                plan: job.plan.clone(),
                source: w.source.clone(),
                key: w.key.clone(),
                value: w.value,
                job: Some(job.id),
                updated_at: Utc::now(),
            })
            .collect();
        if !marks.is_empty()
            && let Err(e) = self.state.advance_watermarks(job.id, &marks)
        {
            warn!(
                job = job.id,
                "cannot advance the watermarks of a recovered pack: {}",
                e.chain()
            );
            return None;
        }
        let further: Vec<&str> = sinks[first + 1..]
            .iter()
            .enumerate()
            .filter(|(i, _)| !copies.contains(&(first + 1 + i)))
            .map(|(_, s)| s.name())
            .collect();
        let (replication, detail) = if sinks.len() <= first + 1 {
            (ReplicationStatus::None, String::new())
        } else if further.is_empty() {
            (ReplicationStatus::Succeeded, String::new())
        } else {
            (
                ReplicationStatus::Failed,
                i18n::tr!("job-recovered-copies-missing", sinks = further.join(", ")),
            )
        };
        let outcome = JobOutcome {
            output_dir: pack.location(),
            pack_id: pack_id.to_string(),
            bytes: m.total_size(),
            artifacts: m.artifacts.len() as u64,
            records: m.total_records(),
            message: i18n::tr!("job-recovered"),
            replication,
            detail,
        };
        if let Err(e) = self.state.reconcile_completed(job.id, &outcome) {
            warn!(
                job = job.id,
                "cannot record the recovered job as completed: {}",
                e.chain()
            );
            return None;
        }
        if let Err(e) = self.state.set_last_success(&job.plan, m.finished_at) {
            warn!(job = job.id, "cannot record last success: {}", e.chain());
        }
        info!(job = job.id, plan = %job.plan, pack = pack_id, "recovered: the interrupted job's pack is in place; job completed");
        self.state.job(job.id).ok().flatten()
    }

    /// Where packs are assembled when the first sink does not host staging.
    fn own_staging_root(&self) -> PathBuf {
        self.state.dir().join("staging")
    }

    /// Creates a `queued` job of `plan`, holding the plan's lock (a plan never overlaps itself,
    /// across processes too) until the job has run or was cancelled. A held plan lock is
    /// [`Error::Locked`] naming the holder's pid.
    pub fn queue(&self, plan: &Plan, kind: BackupKind, trigger: Trigger) -> Result<QueuedJob> {
        if plan.sinks.is_empty() || plan.sources.is_empty() {
            return Err(Error::Config(format!(
                "plan `{}` needs at least one source and one sink",
                plan.name
            )));
        }
        let plan_lock = crate::lock::plan_lock(self.state.dir(), &plan.name)?;
        let (job, job_lock) = self.state.create_job(&plan.name, kind, trigger)?;
        self.state.audit_or_warn(
            &self.actor,
            AuditAction::Run,
            Some(&plan.name),
            &format!("job {}", job.id),
            &format!("{} backup, trigger {}", kind.as_str(), trigger.as_str()),
        );
        Ok(QueuedJob {
            job,
            kind,
            plan_lock,
            job_lock,
        })
    }

    /// Cancels a job that never started; `reason` is recorded as its detail.
    pub fn cancel_queued(&self, queued: QueuedJob, reason: &str) -> Result<Job> {
        self.state
            .cancel_job(queued.job.id, &format!("{reason}, before it started"))?;
        info!(job = queued.job.id, plan = %queued.job.plan, "queued job cancelled: {reason}");
        self.finished(queued.job.id)
    }

    /// Runs one job of `plan`. Errors before the job exists (the plan is already running, the
    /// state store is unusable) are returned as `Err`; everything after is recorded in the job and
    /// returned as a [`JobRun`] whose job is `completed` or `failed`.
    pub async fn run(&self, plan: &Plan, kind: BackupKind, trigger: Trigger) -> Result<JobRun> {
        self.run_cancellable(plan, kind, trigger, &CancelToken::new()).await
    }

    /// [`Runner::run`] that stops when `cancel` fires: see [`Runner::run_queued`].
    pub async fn run_cancellable(
        &self,
        plan: &Plan,
        kind: BackupKind,
        trigger: Trigger,
        cancel: &CancelToken,
    ) -> Result<JobRun> {
        let queued = self.queue(plan, kind, trigger)?;
        self.run_queued(plan, queued, cancel).await
    }

    /// Runs a queued job of `plan`. When `cancel` fires, the job's work is dropped wherever it is
    /// (guards such as the Docker source's container restart run), its staging is removed and
    /// the job ends `cancelled` with the token's reason and the stage it was in. A pack already
    /// in place on the first sink stays (it is complete; its watermarks were advanced).
    pub async fn run_queued(&self, plan: &Plan, queued: QueuedJob, cancel: &CancelToken) -> Result<JobRun> {
        let QueuedJob {
            job,
            kind,
            plan_lock: _plan_lock,
            job_lock: _job_lock,
        } = queued;
        // A cancel request recorded in the state store (`packrat cancel`, the API, from any
        // process) cancels the token: checked now and then polled while the job runs.
        if let Ok(Some(req)) = self.state.cancel_request(job.id) {
            cancel.cancel(format!("cancelled by {}", req.requested_by));
        }
        let _watch = CancelWatch::spawn(self.state.clone(), job.id, cancel.clone());
        if cancel.is_cancelled() {
            let reason = cancel.reason().unwrap_or_else(|| "cancelled".into());
            self.state.cancel_job(job.id, &format!("{reason}, before it started"))?;
            return Ok(JobRun {
                job: self.finished(job.id)?,
                pack: None,
                replicas: Vec::new(),
                warnings: Vec::new(),
            });
        }
        if let Err(e) = self.recover(Some(plan)).await {
            warn!(job = job.id, "crash recovery before the job failed: {}", e.chain());
        }
        self.state.start_job(job.id)?;
        info!(job = job.id, plan = %plan.name, %kind, "job started");

        let mut warnings = Vec::new();
        let mut work = Work::default();
        let prepared = {
            let prepare = self.prepare(plan, job.id, kind, cancel, &mut warnings, &mut work);
            tokio::select! {
                biased;
                r = prepare => Some(r),
                () = cancel.cancelled() => None,
            }
        };
        let result = match prepared {
            None => return self.cancelled(plan, job.id, cancel, work, warnings).await,
            Some(Ok((sealed, reports))) => {
                self.deliver(plan, job.id, sealed, reports, &mut warnings, &mut work)
                    .await
            }
            Some(Err(e)) => Err(e),
        };
        match result {
            Ok((pack, replicas)) => Ok(JobRun {
                job: self.finished(job.id)?,
                pack: Some(pack),
                replicas,
                warnings,
            }),
            // A failure caused by the cancellation (a writer or a sink noticed it) is a cancel.
            Err(_) if cancel.is_cancelled() => self.cancelled(plan, job.id, cancel, work, warnings).await,
            Err(e) => {
                let detail = e.chain();
                error!(job = job.id, plan = %plan.name, "backup failed: {detail}");
                self.state.fail_job(job.id, &i18n::tr!("job-failed-short"), &detail)?;
                Ok(JobRun {
                    job: self.finished(job.id)?,
                    pack: None,
                    replicas: Vec::new(),
                    warnings,
                })
            }
        }
    }

    /// Records a job whose work was dropped because `cancel` fired.
    async fn cancelled(
        &self,
        plan: &Plan,
        job: JobId,
        cancel: &CancelToken,
        work: Work,
        warnings: Vec<String>,
    ) -> Result<JobRun> {
        let reason = cancel.reason().unwrap_or_else(|| "cancelled".into());
        let stage = self
            .state
            .job(job)?
            .map(|j| j.message)
            .filter(|m| !m.is_empty() && m != "running")
            .unwrap_or_else(|| "starting".into());
        let mut detail = format!("{reason}, while {stage}");
        if let Some(staging) = work.staging {
            match self.discard_patiently(&plan.sinks[0], &staging, work.hosted).await {
                Ok(()) => detail.push_str("; its staging was removed"),
                Err(e) => detail.push_str(&format!(
                    "; its staging {} could not be removed yet ({}), the next run removes it",
                    staging.display(),
                    e.chain()
                )),
            }
        }
        if let Some(stored) = &work.stored {
            detail.push_str(&format!(
                "; the pack was already in place at {} and is kept",
                stored.location
            ));
        }
        match self.state.cancel_job(job, &detail) {
            Ok(()) => warn!(job, plan = %plan.name, "job cancelled: {detail}"),
            // It finished in the very moment it was cancelled.
            Err(e) => warn!(job, "cannot record the job as cancelled: {}", e.chain()),
        }
        Ok(JobRun {
            job: self.finished(job)?,
            pack: work.stored,
            replicas: Vec::new(),
            warnings,
        })
    }

    /// Removes a cancelled job's staging, retrying while blocking writers wind down.
    async fn discard_patiently(&self, first: &Arc<dyn Sink>, staging: &ClaimedDir, hosted: bool) -> Result<()> {
        let mut attempt = 0;
        loop {
            let r = if hosted {
                first.discard_staging(staging).await
            } else {
                crate::pack::remove_dir_all_if_exists(staging)
            };
            attempt += 1;
            match r {
                Ok(()) if !staging.exists() => return Ok(()),
                Ok(()) | Err(_) if attempt < DISCARD_ATTEMPTS => tokio::time::sleep(DISCARD_PAUSE).await,
                Ok(()) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    fn finished(&self, id: JobId) -> Result<Job> {
        self.state.job(id)?.ok_or_else(|| Error::NotFound(format!("job {id}")))
    }

    /// Phase one of a job, dropped wherever it is when the job is cancelled: pack id, staging,
    /// sources, seal. Nothing of it is visible under a final name.
    async fn prepare(
        &self,
        plan: &Plan,
        job: JobId,
        kind: BackupKind,
        cancel: &CancelToken,
        warnings: &mut Vec<String>,
        work: &mut Work,
    ) -> Result<(SealedPack, Vec<(String, SourceReport)>)> {
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
            cancel: cancel.clone(),
        };

        self.stage(job, 2, &i18n::tr!("stage-checking-sinks"));
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
        let (claim, hosted) = match first.stage(job, &plan.name, &id, expected).await? {
            Some(claim) => (claim, true),
            None => {
                let root = self.own_staging_root();
                std::fs::create_dir_all(&root).map_err(Error::io("create", &root))?;
                (ClaimedDir::claim_only(&root.join(format!("job_{job}_{id}")))?, false)
            }
        };
        let staging_dir = claim.dir().to_path_buf();
        work.staging = Some(claim);
        work.hosted = hosted;
        let pack = match StagingPack::create(&staging_dir, &plan.name, id.clone(), kind, plan.time_zone) {
            Ok(p) => p,
            Err(e) => {
                self.discard(first, hosted, work).await;
                return Err(e);
            }
        };
        pack.set_job_id(job);
        pack.set_zstd_level(plan.zstd_level);
        if let Some(e) = &plan.encryption {
            pack.set_encryption(e.clone());
        }
        pack.set_cancel(cancel.clone());

        let reports = match self.build(plan, &ctx, &pack, warnings).await {
            Ok(r) => r,
            Err(e) => {
                self.discard(first, hosted, work).await;
                return Err(e);
            }
        };
        pack.set_watermarks(
            reports
                .iter()
                .flat_map(|(source, r)| {
                    r.watermarks.iter().map(move |w| ManifestWatermark {
                        source: source.clone(),
                        key: w.key.clone(),
                        value: w.value,
                    })
                })
                .collect(),
        );

        self.stage(job, 80, &i18n::tr!("stage-sealing"));
        let sealed = match tokio::task::spawn_blocking(move || pack.seal()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                self.discard(first, hosted, work).await;
                return Err(e);
            }
            Err(e) => {
                self.discard(first, hosted, work).await;
                return Err(Error::Other(format!("sealing task failed: {e}")));
            }
        };
        Ok((sealed, reports))
    }

    /// The pack `stored` on `sink` as a sealed pack to copy to further sinks: the same pack
    /// (`sealed`, with its cancellation), in the local directory the sink keeps it in. `Err` says
    /// why no copy can be made from there.
    async fn stored_copy(
        sink: &dyn Sink,
        plan: &str,
        stored: &PackInfo,
        sealed: SealedPack,
    ) -> std::result::Result<SealedPack, String> {
        let pack = sink.open(plan, &stored.id).await.map_err(|e| e.chain())?;
        match pack.local_dir() {
            Some(dir) => Ok(sealed.moved_to(dir.to_path_buf())),
            None => Err(format!(
                "the pack at {} is not in a local directory, which replication copies from",
                stored.location
            )),
        }
    }

    /// Phase two of a job, never dropped half-way (a cancellation is noticed by the sinks'
    /// copies through [`SealedPack::is_cancelled`]): the pack into place on the first sink, the
    /// watermarks, copies to further sinks, the job record.
    async fn deliver(
        &self,
        plan: &Plan,
        job: JobId,
        sealed: SealedPack,
        reports: Vec<(String, SourceReport)>,
        warnings: &mut Vec<String>,
        work: &mut Work,
    ) -> Result<(PackInfo, Vec<PackInfo>)> {
        let state = &self.state;
        let first = &plan.sinks[0];
        let hosted = work.hosted;
        let staging_dir = sealed.dir().to_path_buf();
        self.stage(job, 85, &i18n::tr!("stage-storing", sink = first.name()));
        let stored = match first.store(&sealed, job).await {
            Ok(info) => info,
            Err(e) => {
                self.discard(first, hosted, work).await;
                return Err(e);
            }
        };
        work.stored = Some(stored.clone());
        if !hosted {
            let _ = crate::pack::remove_dir_all_if_exists(&staging_dir);
        }
        // In place: the staging directory is gone (renamed or removed); release its claim.
        work.staging = None;
        info!(job, plan = %plan.name, pack = %stored.id, location = %stored.location, "pack in place");

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
        // Copies to further sinks, made from the pack where the first sink keeps it.
        let mut replicas = Vec::new();
        let mut failures = Vec::new();
        let further = &plan.sinks[1..];
        let records = sealed.manifest().total_records();
        let in_place = if further.is_empty() {
            Ok(sealed)
        } else {
            state.set_replication(job, ReplicationStatus::Pending, None, None)?;
            Self::stored_copy(first.as_ref(), &plan.name, &stored, sealed).await
        };
        for (i, s) in further.iter().enumerate() {
            let in_place = match &in_place {
                Ok(p) => p,
                Err(why) => {
                    failures.push(format!("sink {}: {why}", s.name()));
                    continue;
                }
            };
            if let Err(e) = in_place.check_cancelled() {
                return Err(Error::Other(format!(
                    "{e} before the copy to sink {}; the pack is in place at {}",
                    s.name(),
                    stored.location
                )));
            }
            let pct = 90 + (9 * i / further.len().max(1)) as u8;
            self.stage(job, pct, &i18n::tr!("stage-replicating", sink = s.name()));
            match s.store(in_place, job).await {
                Ok(info) => {
                    info!(job, sink = s.name(), location = %info.location, "replica in place");
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
                stored.location,
                failures.join("; ")
            )));
        }
        warnings.extend(failures.iter().cloned());
        // Logs stay English; the job's message is in the process's language.
        let (log, message) = match replication {
            ReplicationStatus::Succeeded => ("backup completed (synced)", i18n::tr!("job-completed-synced")),
            ReplicationStatus::Failed => (
                "backup completed (replication failed)",
                i18n::tr!("job-completed-not-synced"),
            ),
            _ => ("backup completed", i18n::tr!("job-completed")),
        };
        state.complete_job(
            job,
            &JobOutcome {
                output_dir: stored.location.clone(),
                pack_id: stored.id.clone(),
                bytes: stored.bytes,
                artifacts: stored.artifacts as u64,
                records,
                message,
                replication,
                detail: failures.join("; "),
            },
        )?;
        if let Err(e) = state.set_last_success(&plan.name, Utc::now()) {
            warn!(job, "cannot record last success: {}", e.chain());
        }
        info!(job, plan = %plan.name, "{log}");
        Ok((stored, replicas))
    }

    async fn build(
        &self,
        plan: &Plan,
        ctx: &BackupContext,
        pack: &StagingPack,
        warnings: &mut Vec<String>,
    ) -> Result<Vec<(String, SourceReport)>> {
        if let Some(text) = &plan.config {
            let mut w = pack.artifact(
                PLAN_CONFIG_PATH,
                PLAN_CONFIG_SOURCE,
                PLAN_CONFIG_KIND,
                Compression::None,
            )?;
            w.write_all(text.as_bytes())
                .map_err(Error::io("write", Path::new(PLAN_CONFIG_PATH)))?;
            w.finish()?;
        }
        let mut reports = Vec::new();
        let n = plan.sources.len();
        for (i, s) in plan.sources.iter().enumerate() {
            let pct = 5 + (75 * i / n) as u8;
            self.stage(
                ctx.job,
                pct,
                &i18n::tr!("stage-source", source = s.name(), index = i + 1, count = n),
            );
            let r = s.backup(ctx, pack).await?;
            for w in &r.warnings {
                warn!(job = ctx.job, source = s.name(), "{w}");
                warnings.push(format!("source {}: {w}", s.name()));
            }
            reports.push((s.name().to_string(), r));
        }
        Ok(reports)
    }

    /// Removes the staging of a failed job and releases its claim.
    async fn discard(&self, first: &Arc<dyn Sink>, hosted: bool, work: &mut Work) {
        let Some(claim) = work.staging.take() else { return };
        let r = if hosted {
            first.discard_staging(&claim).await
        } else {
            crate::pack::remove_dir_all_if_exists(&claim)
        };
        if let Err(e) = r {
            warn!("cannot remove staging directory {}: {}", claim.display(), e.chain());
        }
    }

    fn stage(&self, job: JobId, pct: u8, message: &str) {
        self.progress.stage(message);
        if let Err(e) = self.state.set_progress(job, pct, message) {
            warn!(job, "cannot record progress: {}", e.chain());
        }
    }
}

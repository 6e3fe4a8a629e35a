//! The daemon: recovery, scheduler loop, job runner, retention, health checks, shutdown.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alerts::{AlertManager, AlertStore, HealthChecker, Notifier, PlanCheck};
use backup_core::runner::Plan;
use backup_core::state::Actor;
use backup_core::{
    BackupKind, CancelToken, Error, JobId, JobStatus, QueuedJob, Runner, SchedulePolicy, StateStore, Trigger,
};
use chrono::{DateTime, Utc};
use packrat_app::config::Config;
use policy_schedule::{Decision, Schedule, Scheduler, SystemClock};
use retention::Retention;
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{error, info, warn};

use packrat_app::exit::ExitError;
use packrat_app::registry;

use crate::api;

/// Longest sleep of the scheduler loop, so that clock jumps and suspends are noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How long shutdown waits for cancelled jobs to clean up and record themselves.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

/// A job the daemon started (running, or `queued` waiting for a parallelism slot).
#[derive(Debug, Clone)]
pub struct RunningJob {
    /// The job's id (its row exists from the moment it is due, `queued` until a slot is free).
    pub job: JobId,
    /// Full or incremental.
    pub kind: BackupKind,
    /// What started it.
    pub trigger: Trigger,
    /// When the daemon accepted it.
    pub since: DateTime<Utc>,
    cancel: CancelToken,
}

/// Why a run was not started.
#[derive(Debug)]
pub enum StartError {
    /// No such plan (or it cannot be wired).
    Unknown(String),
    /// A job of the plan is already running or waiting.
    Busy(String),
    /// The daemon is shutting down.
    ShuttingDown,
}

/// Why a job was not cancelled.
#[derive(Debug)]
pub enum CancelError {
    /// No such job.
    Unknown(String),
    /// The job already finished (or it is not this daemon's to cancel).
    Conflict(String),
}

/// Everything the daemon's tasks share.
#[derive(Debug)]
pub struct Daemon {
    /// The config.
    pub cfg: Config,
    /// The state store.
    pub state: Arc<StateStore>,
    runner: Runner,
    /// Who the daemon's own operations are recorded as in the audit trail.
    pub actor: Actor,
    /// Wired plans.
    pub plans: BTreeMap<String, Plan>,
    /// Plans that could not be wired, with the reason.
    pub broken: BTreeMap<String, String>,
    /// Schedules of enabled, scheduled plans.
    pub schedules: BTreeMap<String, Schedule>,
    retention: BTreeMap<String, Retention>,
    /// Every sink of the config (free space and mount state on the dashboard).
    pub sinks: Vec<Arc<dyn backup_core::Sink>>,
    semaphore: Arc<Semaphore>,
    running: Mutex<BTreeMap<String, RunningJob>>,
    /// When the daemon started.
    pub started_at: DateTime<Utc>,
    stopping: AtomicBool,
    shutdown_tx: watch::Sender<bool>,
    job_done: Notify,
    health_now: Notify,
    shutdown_request: Notify,
    shutdown_by: Mutex<Option<String>>,
    alerts: Arc<AlertManager>,
    checker: HealthChecker,
    /// Plans with a verification or drill running (it holds the plan's lock), and the kind of
    /// the backup that came due meanwhile, which starts when it ends.
    drilling: Mutex<BTreeMap<String, Pending>>,
    /// Verifications and drills that came due while a job of their plan ran: they start when
    /// the job ends (a drill never overlaps a backup, and is never lost to one).
    after_job: Mutex<BTreeMap<String, Vec<packrat_app::drill::DrillKind>>>,
}

/// What waits for the verification or drill a plan runs: a backup that came due (it goes
/// first), and the other kind of drill.
#[derive(Debug, Default)]
struct Pending {
    backup: Option<BackupKind>,
    drills: Vec<packrat_app::drill::DrillKind>,
    /// Cancels the running one (shutdown after the grace period).
    cancel: backup_core::CancelToken,
}

/// What to do when a plan's verification or drill ended.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterDrill {
    /// Start the backup that came due meanwhile.
    Backup(BackupKind),
    /// Run this verification or drill next (the plan stays marked).
    Drill(packrat_app::drill::DrillKind),
    /// Nothing waits.
    Nothing,
}

impl Daemon {
    /// The alert manager.
    pub fn alerts(&self) -> &AlertManager {
        &self.alerts
    }

    /// Marks a verification or drill of `plan` as running and returns true; when one already
    /// runs, `kind` waits for it (once) and this returns false.
    pub fn begin_drill(&self, plan: &str, kind: packrat_app::drill::DrillKind) -> bool {
        let mut d = self.drilling.lock().unwrap_or_else(|e| e.into_inner());
        match d.get_mut(plan) {
            Some(p) => {
                if !p.drills.contains(&kind) {
                    p.drills.push(kind);
                }
                false
            }
            None => {
                d.insert(plan.to_string(), Pending::default());
                true
            }
        }
    }

    /// The verification or drill of `plan` ended: what runs next. A backup that came due goes
    /// first (and the waiting drills are dropped: the plan's next slots bring them again).
    /// Once shutdown began, nothing runs next: a waiting drill or backup comes with the plan's
    /// next slots after the restart.
    pub fn end_drill(&self, plan: &str) -> AfterDrill {
        let next = {
            let mut d = self.drilling.lock().unwrap_or_else(|e| e.into_inner());
            let Some(p) = d.get_mut(plan) else {
                return AfterDrill::Nothing;
            };
            let next = match (p.backup, p.drills.is_empty()) {
                _ if self.is_stopping() => AfterDrill::Nothing,
                (Some(kind), _) => AfterDrill::Backup(kind),
                (None, false) => AfterDrill::Drill(p.drills.remove(0)),
                (None, true) => AfterDrill::Nothing,
            };
            if !matches!(next, AfterDrill::Drill(_)) {
                d.remove(plan);
            }
            next
        };
        // Shutdown waits for drills as for jobs.
        self.job_done.notify_waiters();
        next
    }

    /// The cancel token of the verification or drill `plan` runs.
    pub fn drill_cancel(&self, plan: &str) -> backup_core::CancelToken {
        self.drilling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(plan)
            .map(|p| p.cancel.clone())
            .unwrap_or_default()
    }

    /// When a job of `plan` runs or waits: keeps `kind` to start when the job ends and returns
    /// true. Checked under the lock of the running jobs, so the job cannot end in between.
    pub fn defer_drill_if_busy(&self, plan: &str, kind: packrat_app::drill::DrillKind) -> bool {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if !running.contains_key(plan) {
            return false;
        }
        let mut after = self.after_job.lock().unwrap_or_else(|e| e.into_inner());
        let waiting = after.entry(plan.to_string()).or_default();
        if !waiting.contains(&kind) {
            waiting.push(kind);
        }
        true
    }

    /// The plans whose verification or drill is running.
    fn drilling_plans(&self) -> Vec<String> {
        self.drilling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// When `plan` drills: defers a due backup of `kind` until the drill ends and returns true.
    fn defer_if_drilling(&self, plan: &str, kind: BackupKind) -> bool {
        let mut d = self.drilling.lock().unwrap_or_else(|e| e.into_inner());
        match d.get_mut(plan) {
            Some(p) => {
                // A full backup due wins over an incremental one already waiting.
                if p.backup != Some(BackupKind::Full) {
                    p.backup = Some(kind);
                }
                true
            }
            None => false,
        }
    }

    /// The plans with a job running or waiting, and what.
    pub fn running(&self) -> BTreeMap<String, RunningJob> {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True when a job of `plan` is running or waiting.
    pub fn is_busy(&self, plan: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(plan)
    }

    /// When `plan` is due next.
    pub fn next_due(&self, plan: &str) -> Option<DateTime<Utc>> {
        self.schedules.get(plan)?.next_due(Utc::now())
    }

    /// Cancels job `id` if this daemon runs it or has it queued: a running job stops where it is
    /// and records itself `cancelled` with `reason`; a queued one is cancelled before it starts.
    /// Returns the job as it is now (the cancellation completes in the background).
    pub fn cancel_job(&self, id: JobId, reason: &str) -> Result<backup_core::Job, CancelError> {
        let found = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .find(|r| r.job == id)
            .map(|r| r.cancel.clone());
        let job = self
            .state
            .job(id)
            .map_err(|e| CancelError::Conflict(format!("cannot read job {id}: {}", e.chain())))?;
        let Some(job) = job else {
            return Err(CancelError::Unknown(format!("no job {id}")));
        };
        match found {
            Some(token) => {
                token.cancel(reason);
                info!(job = id, plan = %job.plan, "{reason}");
                Ok(job)
            }
            // A job run by another packrat process: a cancel request in the state store, which
            // its runner polls (the same path as `packrat cancel`).
            None if !job.status.is_finished() => {
                let who = reason.strip_prefix("cancelled by ").unwrap_or(reason);
                self.state.request_cancel(id, who).map_err(|e| {
                    CancelError::Conflict(format!("cannot record the cancel of job {id}: {}", e.chain()))
                })?;
                info!(job = id, plan = %job.plan, "{reason} (requested from the process running it)");
                Ok(job)
            }
            None => Err(CancelError::Conflict(format!(
                "job {id} already finished: {}",
                job.status.as_str()
            ))),
        }
    }

    /// The longest a plan may go without a successful job before it is overdue: its `max_age`,
    /// else twice its schedule's interval (as the health checks use it).
    pub fn max_age(&self, plan: &str) -> Option<Duration> {
        let pc = self.cfg.plans.get(plan)?;
        pc.max_age.or_else(|| {
            let iv = self.schedules.get(plan)?.interval(Utc::now())?;
            (iv * 2).to_std().ok()
        })
    }

    /// The alerts table.
    pub fn alert_store(&self) -> &AlertStore {
        self.alerts.store()
    }

    /// Asks the daemon to shut down gracefully, the same path as SIGTERM (`POST /api/shutdown`,
    /// `packrat daemon stop`); `who` is logged.
    pub fn request_shutdown(&self, who: &str) {
        {
            let mut by = self.shutdown_by.lock().unwrap_or_else(|e| e.into_inner());
            if by.is_none() {
                *by = Some(who.to_string());
            }
        }
        self.shutdown_request.notify_one();
    }

    /// True once shutdown began.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Starts a job of `plan` in the background: its `queued` row is created (and the plan's lock
    /// taken) at once, then it waits for a parallelism slot, runs, and on success applies
    /// retention on every sink of the plan. A plan never overlaps itself (across processes too).
    pub fn start_job(self: &Arc<Self>, plan: &str, kind: BackupKind, trigger: Trigger) -> Result<JobId, StartError> {
        if self.is_stopping() {
            return Err(StartError::ShuttingDown);
        }
        let Some(wired) = self.plans.get(plan).cloned() else {
            return Err(StartError::Unknown(match self.broken.get(plan) {
                Some(why) => format!("plan `{plan}` cannot run: {why}"),
                None => format!(
                    "no plan `{plan}` (defined: {})",
                    self.plans.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            }));
        };
        if self
            .drilling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(plan)
        {
            return Err(StartError::Busy(format!(
                "a verification or restore drill of plan `{plan}` is running; a plan never overlaps itself, try again when it ends"
            )));
        }
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = running.get(plan) {
            return Err(StartError::Busy(format!(
                "a {} job of plan `{plan}` (job {}, {}) is already running or waiting since {}; a plan never overlaps itself",
                r.kind,
                r.job,
                r.trigger.as_str(),
                r.since.format("%Y-%m-%d %H:%M:%S UTC")
            )));
        }
        let queued = match self.runner.queue(&wired, kind, trigger) {
            Ok(q) => q,
            Err(Error::Locked { holder, .. }) => {
                return Err(StartError::Busy(format!(
                    "plan `{plan}` is locked by another packrat process{} (a `packrat run`?); a plan never overlaps itself",
                    holder.map(|p| format!(" (pid {p})")).unwrap_or_default()
                )));
            }
            Err(e) => {
                return Err(StartError::Unknown(format!(
                    "cannot queue a job of plan `{plan}`: {}",
                    e.chain()
                )));
            }
        };
        let job = queued.id();
        let cancel = CancelToken::new();
        running.insert(
            plan.to_string(),
            RunningJob {
                job,
                kind,
                trigger,
                since: Utc::now(),
                cancel: cancel.clone(),
            },
        );
        drop(running);
        info!(plan, job, %kind, trigger = trigger.as_str(), "job queued");
        let this = self.clone();
        let name = plan.to_string();
        tokio::spawn(async move {
            this.job_task(&wired, queued, &cancel).await;
            let waiting = {
                let mut running = this.running.lock().unwrap_or_else(|e| e.into_inner());
                running.remove(&name);
                this.after_job
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&name)
                    .unwrap_or_default()
            };
            if !this.is_stopping() {
                for kind in waiting {
                    info!(plan = %name, kind = kind.as_str(), "starting the {} that waited for the job", kind.as_str());
                    crate::drills::start(&this, &name, kind);
                }
            }
            this.job_done.notify_waiters();
            this.health_now.notify_one();
        });
        Ok(job)
    }

    async fn job_task(&self, plan: &Plan, queued: QueuedJob, cancel: &CancelToken) {
        let mut shutdown = self.shutdown_tx.subscribe();
        let watch = backup_core::runner::watch_cancel_request(self.state.clone(), queued.id(), cancel.clone());
        let permit = tokio::select! {
            p = self.semaphore.clone().acquire_owned() => p,
            // A cancel request from `packrat cancel` or the API cancels the token: next branch.
            () = watch => {
                let reason = cancel.reason().unwrap_or_else(|| "cancelled".into());
                if let Err(e) = self.runner.cancel_queued(queued, &reason) {
                    error!(plan = %plan.name, "cannot record the cancelled job: {}", e.chain());
                }
                return;
            }
            () = cancel.cancelled() => {
                let reason = cancel.reason().unwrap_or_else(|| "cancelled".into());
                if let Err(e) = self.runner.cancel_queued(queued, &reason) {
                    error!(plan = %plan.name, "cannot record the cancelled job: {}", e.chain());
                }
                return;
            }
            _ = shutdown.wait_for(|s| *s) => {
                info!(plan = %plan.name, "not starting the queued job: packratd is shutting down");
                if let Err(e) = self.runner.cancel_queued(queued, "packratd is shutting down") {
                    error!(plan = %plan.name, "cannot record the cancelled job: {}", e.chain());
                }
                return;
            }
        };
        let Ok(_permit) = permit else { return };
        match self.runner.run_queued(plan, queued, cancel).await {
            Ok(run) if run.is_success() => {
                info!(plan = %plan.name, job = run.job.id, pack = ?run.pack.as_ref().map(|p| &p.id), "job completed");
                self.after_success(plan).await;
            }
            Ok(run) if run.job.status == JobStatus::Cancelled => {
                warn!(plan = %plan.name, job = run.job.id, "job cancelled: {}", run.job.detail);
            }
            Ok(run) => warn!(plan = %plan.name, job = run.job.id, "job failed: {}", run.job.detail),
            Err(e) => error!(plan = %plan.name, "cannot run the job: {}", e.chain()),
        }
    }

    /// Retention and leftover cleanup on every sink of the plan after a successful job.
    async fn after_success(&self, plan: &Plan) {
        if let Some(policy) = self.retention.get(&plan.name) {
            packrat_app::after_job::after_success(plan, policy, Some(&self.alerts), (&self.state, &self.actor)).await;
        }
    }

    fn health_checker_plans(cfg: &Config, schedules: &BTreeMap<String, Schedule>) -> Vec<PlanCheck> {
        cfg.plans
            .iter()
            .map(|(name, pc)| {
                let max_age = pc.max_age.or_else(|| {
                    let s = schedules.get(name)?;
                    let iv = s.interval(Utc::now())?;
                    (iv * 2).to_std().ok()
                });
                PlanCheck {
                    name: name.clone(),
                    enabled: pc.enabled,
                    max_age,
                }
            })
            .collect()
    }

    /// Runs the health checks once and applies the findings (alerts and notices).
    pub async fn check_health(&self) {
        match self.checker.check(Utc::now()).await {
            Ok(findings) => {
                if let Err(e) = self.alerts.apply(findings).await {
                    error!("cannot record alerts: {e}");
                }
            }
            Err(e) => error!("health check failed: {e}"),
        }
    }
}

/// Builds the daemon, serves until a shutdown signal, and shuts down gracefully.
pub async fn run(cfg: Config) -> Result<(), ExitError> {
    let state = registry::open_state(&cfg)?;
    let actor = Actor::process("packratd");
    let config_audit = packrat_app::audit::daemon_start(&state, &actor, &cfg);
    info!("{config_audit}");
    let runner = Runner::new(state.clone())
        .with_plan_sinks(registry::plan_sinks(&cfg))
        .with_actor(actor.clone());
    let sinks = registry::sinks(&cfg, None)?;

    // Crash recovery: jobs of dead processes become interrupted (or completed, when their pack is
    // in place), leftovers of gone jobs are removed.
    let recovery = runner.recover(None).await?;
    for j in &recovery.interrupted {
        warn!(job = j.id, plan = %j.plan, "recovered: job was interrupted (crash or kill)");
    }
    for j in &recovery.completed {
        info!(job = j.id, plan = %j.plan, "recovered: the interrupted job's pack was in place; job completed");
    }
    for s in &sinks {
        if let Err(e) = retention::clean_leftovers(s.as_ref()).await {
            warn!(sink = s.name(), "{e}");
        }
    }

    let mut plans = BTreeMap::new();
    let mut broken = BTreeMap::new();
    let mut schedules = BTreeMap::new();
    let mut retention = BTreeMap::new();
    let mut scheduler = Scheduler::new(state.clone(), Arc::new(SystemClock));
    for (name, pc) in &cfg.plans {
        match registry::plan(&cfg, name) {
            Ok(p) => {
                plans.insert(name.clone(), p);
            }
            Err(e) => {
                error!(plan = %name, "plan cannot be wired and will not run: {}", e.chain());
                broken.insert(name.clone(), e.chain());
                continue;
            }
        }
        retention.insert(name.clone(), packrat_app::registry::retention(&cfg, name)?);
        match packrat_app::registry::schedule(&cfg, name) {
            Ok(Some(s)) if pc.enabled => {
                info!(plan = %name, schedule = %s, next = ?s.next_due(Utc::now()), "scheduled");
                scheduler.add(name, Arc::new(s.clone()));
                schedules.insert(name.clone(), s);
            }
            Ok(Some(s)) => info!(plan = %name, schedule = %s, "plan is disabled; not scheduled"),
            Ok(None) => info!(plan = %name, "plan has no schedule; it runs only on request"),
            Err(e) => return Err(ExitError::usage(e.to_string())),
        }
        // Verifications and drills: slots of their own, in the plan's zone, with its catch-up.
        for (kind, cron) in [
            (packrat_app::drill::DrillKind::Verify, &pc.verify),
            (packrat_app::drill::DrillKind::Drill, &pc.drill),
        ] {
            let Some(cron) = cron.as_ref().filter(|_| pc.enabled) else {
                continue;
            };
            let key = crate::drills::key(name, kind);
            let s = Schedule::for_plan(&key, Some(cron.as_str()), None, cfg.plan_time_zone(pc))
                .map_err(|e| ExitError::usage(e.to_string()))?
                .with_catch_up(cfg.plan_catch_up(pc));
            info!(plan = %name, kind = kind.as_str(), schedule = %s, next = ?s.next_due(Utc::now()), "scheduled");
            scheduler.add(&key, Arc::new(s));
        }
    }

    let (channels, channel_errors) = alerts::all_from_config(&cfg.alerts);
    for e in &channel_errors {
        error!("{e}; the channel is left out");
    }
    let notifier = Arc::new(Notifier::new(channels));
    let alert_store = AlertStore::open(state.clone())?;
    let alert_manager = Arc::new(AlertManager::new(alert_store, notifier, cfg.health.cooldown));
    let started_at = Utc::now();
    let checker = HealthChecker::new(
        state.clone(),
        cfg.health.clone(),
        Daemon::health_checker_plans(&cfg, &schedules),
        sinks.clone(),
        started_at,
    );
    let (shutdown_tx, _) = watch::channel(false);
    let daemon = Arc::new(Daemon {
        semaphore: Arc::new(Semaphore::new(cfg.parallelism.max(1))),
        cfg,
        state,
        runner,
        actor,
        plans,
        broken,
        schedules,
        retention,
        sinks,
        running: Mutex::new(BTreeMap::new()),
        started_at,
        stopping: AtomicBool::new(false),
        shutdown_tx,
        job_done: Notify::new(),
        health_now: Notify::new(),
        shutdown_request: Notify::new(),
        shutdown_by: Mutex::new(None),
        alerts: alert_manager,
        checker,
        drilling: Mutex::new(BTreeMap::new()),
        after_job: Mutex::new(BTreeMap::new()),
    });

    let server = if daemon.cfg.api.enabled {
        Some(api::serve(daemon.clone()).await?)
    } else {
        None
    };

    let sched_task = tokio::spawn(scheduler_loop(daemon.clone(), scheduler));
    let health_task = tokio::spawn(health_loop(daemon.clone()));
    info!(
        pid = std::process::id(),
        plans = daemon.plans.len(),
        scheduled = daemon.schedules.len(),
        parallelism = daemon.cfg.parallelism,
        "packratd started"
    );

    tokio::select! {
        () = wait_for_signal() => {}
        () = EXTERNAL_STOP.notified() => {
            let by = EXTERNAL_STOP_BY.get().copied().unwrap_or("?");
            info!(by, "stop requested");
        }
        () = daemon.shutdown_request.notified() => {
            let by = daemon.shutdown_by.lock().unwrap_or_else(|e| e.into_inner()).clone();
            info!(by = by.as_deref().unwrap_or("?"), "shutdown requested over the API");
        }
    }
    info!("shutdown requested: no new jobs");
    daemon.stopping.store(true, Ordering::SeqCst);
    let _ = daemon.shutdown_tx.send(true);
    sched_task.abort();
    health_task.abort();
    shutdown_jobs(&daemon).await;
    if let Some(server) = server {
        server.stop().await;
    }
    info!("packratd stopped");
    Ok(())
}

/// Cancels queued jobs at once, waits for running jobs and verifications or drills up to the
/// grace period, then cancels what is left; every cancelled job records itself (`cancelled`,
/// staging removed, containers restarted), and so does a cancelled drill (failed, what it
/// restored removed).
async fn shutdown_jobs(d: &Arc<Daemon>) {
    let grace = d.cfg.daemon.grace_period;
    let deadline = tokio::time::Instant::now() + grace;
    // Jobs still waiting for a slot never start: their tasks see the shutdown flag and record
    // them cancelled; running jobs and drills get the grace period.
    loop {
        // Registered before looking, so that a job ending in between still wakes us.
        let notified = d.job_done.notified();
        let (running, drilling) = (d.running(), d.drilling_plans());
        if running.is_empty() && drilling.is_empty() {
            return;
        }
        info!(
            jobs = ?running.keys().collect::<Vec<_>>(),
            drills = ?drilling,
            "waiting for running jobs and drills to finish (grace period {grace:?})"
        );
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            break;
        }
    }
    for plan in d.drilling_plans() {
        warn!(plan = %plan, "the verification or drill did not finish within the grace period; cancelling it");
        d.drill_cancel(&plan).cancel(format!(
            "cancelled because packratd was shut down and it did not finish within the grace period of {}s",
            grace.as_secs()
        ));
    }
    for (plan, r) in &d.running() {
        warn!(plan = %plan, job = r.job, "job did not finish within the grace period; cancelling it");
        r.cancel.cancel(format!(
            "cancelled because packratd was shut down and the job did not finish within the grace period of {}s",
            grace.as_secs()
        ));
    }
    // The cancelled jobs clean up and record themselves; wait for that (bounded).
    let until = tokio::time::Instant::now() + CANCEL_WAIT;
    loop {
        let notified = d.job_done.notified();
        if d.running().is_empty() && d.drilling_plans().is_empty() {
            return;
        }
        if tokio::time::timeout_at(until, notified).await.is_err() {
            warn!(
                jobs = ?d.running().keys().collect::<Vec<_>>(),
                drills = ?d.drilling_plans(),
                "jobs or drills still winding down at exit; the next start recovers jobs, the plan's next drill what a drill left"
            );
            return;
        }
    }
}

async fn scheduler_loop(d: Arc<Daemon>, scheduler: Scheduler) {
    loop {
        let decisions = {
            let d2 = d.clone();
            scheduler.tick(&move |p: &str| d2.is_busy(p))
        };
        match decisions {
            Ok(decisions) => {
                for dec in decisions {
                    if let Decision::Fire { plan, run } = dec {
                        if let Some((plan, kind)) = crate::drills::parse(&plan) {
                            crate::drills::start(&d, plan, kind);
                            continue;
                        }
                        if d.defer_if_drilling(&plan, run.kind) {
                            info!(plan = %plan, kind = %run.kind, "backup due while the plan's drill runs: it starts when the drill ends");
                            continue;
                        }
                        match d.start_job(&plan, run.kind, Trigger::Schedule) {
                            Ok(_) => {}
                            Err(StartError::Busy(why)) => warn!(plan = %plan, "scheduled run skipped: {why}"),
                            Err(StartError::Unknown(why)) => error!(plan = %plan, "{why}"),
                            Err(StartError::ShuttingDown) => return,
                        }
                    }
                }
            }
            Err(e) => error!("scheduler tick failed: {}", e.chain()),
        }
        tokio::time::sleep(scheduler.sleep_for(MAX_SLEEP)).await;
    }
}

async fn health_loop(d: Arc<Daemon>) {
    let interval = d.cfg.health.interval;
    loop {
        d.check_health().await;
        // Re-check soon after a job ends (a failure streak, a recovery), else on the interval.
        let _ = tokio::time::timeout(interval, d.health_now.notified()).await;
    }
}

/// A stop asked for from outside the runtime (the Windows service manager's control handler).
static EXTERNAL_STOP: tokio::sync::Notify = tokio::sync::Notify::const_new();
static EXTERNAL_STOP_BY: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Asks the running daemon (or the one about to run) for a graceful shutdown, the same path as
/// SIGTERM; callable from any thread.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn request_stop(by: &'static str) {
    let _ = EXTERNAL_STOP_BY.set(by);
    // A permit is stored when nobody waits yet: a stop that comes during start-up is kept.
    EXTERNAL_STOP.notify_one();
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            error!("cannot install signal handlers; stop packratd with Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("received SIGTERM"),
        _ = int.recv() => info!("received SIGINT"),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    if let Err(e) = tokio::signal::ctrl_c().await {
        error!("cannot wait for Ctrl-C: {e}");
        std::future::pending::<()>().await;
    }
    info!("received Ctrl-C");
}

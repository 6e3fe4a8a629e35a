//! Backups that prove themselves: a **verification** deep-verifies the newest pack of a plan on
//! every one of its sinks and compares a sample of its MongoDB collections with the live source
//! ([`sample_against_source`]); a **restore drill** restores the newest pack into a scratch place,
//! checks what came back against the pack's record and removes it. Each is a recorded run
//! (table `drill_runs`, component `drills` of the state store) holding the plan's lock, so it
//! never overlaps the plan's own backups, in this process or another.
//!
//! What a drill restores and checks, by artifact type:
//!
//! - `sqlite`: the database into `STATE_DIR/drills/PLAN-run-ID/`, `PRAGMA integrity_check`, the row
//!   count of every table compared with the manifest's `meta.table_rows`;
//! - `mongo-bson`: the chain of the plan up to the newest pack (from its newest full pack) restored
//!   into the scratch database `packrat_drill_INSTALLATION_ID_PLAN` on the source's own server or
//!   its drill server (one per database of the chain, `…_1`, `…_2`, when the source was pointed
//!   at another database), every
//!   collection counted against the packs' records and sampled, the scratch database dropped (a
//!   killed drill's scratch databases are dropped by the plan's next drill);
//! - `docker-volume`: every volume into a scratch volume `packrat-drill-PLAN-run-ID-VOLUME` on
//!   the source's engine, read back, its entries and file bytes compared with the manifest, then
//!   removed (a killed drill's scratch volumes are removed by the plan's next drill); the compose
//!   files into the scratch directory. Images are not loaded (a drill does not change what the
//!   host runs): the run says so in its checks, and the verification covers them.
//!
//! ```no_run
//! # async fn f(cfg: &packrat_app::config::Config) -> backup_core::Result<()> {
//! use packrat_app::drill::{self, DrillKind};
//! let state = packrat_app::registry::open_state(cfg)?;
//! let actor = backup_core::state::Actor::process("packrat drill");
//! let cancel = backup_core::CancelToken::new();
//! let run = drill::run(cfg, state, "nightly", DrillKind::Drill, backup_core::Trigger::Manual, &actor, &cancel).await?;
//! println!("{}: {:?}", run.status.as_str(), run.failures);
//! # Ok(()) }
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use backup_core::state::{Actor, AuditAction, format_time, read_opt_time, read_time, rusqlite};
use backup_core::{CancelToken, Error, PackReader, Result, Sink, StateStore, Trigger, VerifyLevel};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::registry;

const COMPONENT: &str = "drills";
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE drill_runs (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        plan            TEXT    NOT NULL,
        kind            TEXT    NOT NULL,
        trigger         TEXT    NOT NULL,
        status          TEXT    NOT NULL,
        pack_id         TEXT,
        started_at      TEXT    NOT NULL,
        finished_at     TEXT,
        restore_seconds REAL,
        checks          TEXT    NOT NULL DEFAULT '[]',
        failures        TEXT    NOT NULL DEFAULT '[]'
    );
    CREATE INDEX drill_runs_plan ON drill_runs (plan, kind, id);
",
    "
    CREATE TABLE drill_installation (token TEXT NOT NULL);
    INSERT INTO drill_installation (token) VALUES (lower(hex(randomblob(4))));
",
];

/// A verification or a restore drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillKind {
    /// Deep verification of the newest pack on every sink.
    Verify,
    /// Restore of the newest pack into a scratch place, checks, cleanup.
    Drill,
}

impl DrillKind {
    /// `verify` or `drill`.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillKind::Verify => "verify",
            DrillKind::Drill => "drill",
        }
    }

    fn parse(s: &str) -> DrillKind {
        if s == "verify" {
            DrillKind::Verify
        } else {
            DrillKind::Drill
        }
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DrillStatus {
    /// Still going (or its process died: it stays `running`, with no finish time).
    Running,
    /// Every check passed.
    Passed,
    /// A check failed (see [`DrillRun::failures`]).
    Failed,
}

impl DrillStatus {
    /// `running`, `passed` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DrillStatus::Running => "running",
            DrillStatus::Passed => "passed",
            DrillStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> DrillStatus {
        match s {
            "passed" => DrillStatus::Passed,
            "failed" => DrillStatus::Failed,
            _ => DrillStatus::Running,
        }
    }
}

/// One recorded verification or drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillRun {
    /// Run id.
    pub id: i64,
    /// Plan.
    pub plan: String,
    /// Verification or drill.
    pub kind: DrillKind,
    /// `manual` or `schedule`.
    pub trigger: String,
    /// Outcome.
    pub status: DrillStatus,
    /// The pack drilled (the first sink's newest), when there was one.
    pub pack_id: Option<String>,
    /// Start (UTC).
    pub started_at: DateTime<Utc>,
    /// End (UTC).
    pub finished_at: Option<DateTime<Utc>>,
    /// Drills: how long the restores took (the measured restore time), in seconds.
    pub restore_seconds: Option<f64>,
    /// What was checked, one line each.
    pub checks: Vec<String>,
    /// What failed, naming the sink, file or table.
    pub failures: Vec<String>,
}

/// The `drill_runs` table of a state store.
#[derive(Debug, Clone)]
pub struct DrillStore {
    state: Arc<StateStore>,
}

impl DrillStore {
    /// The drill records of `state` (creating the table on first use).
    pub fn open(state: Arc<StateStore>) -> Result<DrillStore> {
        state.component_migrations(COMPONENT, MIGRATIONS)?;
        Ok(DrillStore { state })
    }

    fn start(&self, plan: &str, kind: DrillKind, trigger: Trigger) -> Result<i64> {
        self.state.with_conn(|c| {
            c.execute(
                "INSERT INTO drill_runs (plan, kind, trigger, status, started_at) VALUES (?1, ?2, ?3, 'running', ?4)",
                rusqlite::params![plan, kind.as_str(), trigger.as_str(), format_time(Utc::now())],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn finish(&self, id: i64, out: &Outcome) -> Result<()> {
        let status = if out.failures.is_empty() {
            DrillStatus::Passed
        } else {
            DrillStatus::Failed
        };
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        self.state.with_conn(|c| {
            c.execute(
                "UPDATE drill_runs SET status = ?2, pack_id = ?3, finished_at = ?4, restore_seconds = ?5,
                 checks = ?6, failures = ?7 WHERE id = ?1",
                rusqlite::params![
                    id,
                    status.as_str(),
                    out.pack_id,
                    format_time(Utc::now()),
                    out.restore_seconds,
                    json(&out.checks),
                    json(&out.failures)
                ],
            )
        })?;
        Ok(())
    }

    /// Marks the `running` records of `plan` failed: called under the plan's lock, they belong to
    /// processes that died (killed, crashed) before they finished.
    fn settle_dead(&self, plan: &str) -> Result<()> {
        self.state.with_conn(|c| {
            c.execute(
                "UPDATE drill_runs SET status = 'failed', finished_at = ?2,
                 failures = '[\"interrupted: its process ended before it finished\"]'
                 WHERE plan = ?1 AND status = 'running'",
                rusqlite::params![plan, format_time(Utc::now())],
            )
        })?;
        Ok(())
    }

    /// A token of this state store, made once (by its migration, 8 random hex digits): it
    /// tells this installation's scratch databases from those of another one drilling on the
    /// same MongoDB server (run ids and plan names are only unique within one installation).
    fn installation(&self) -> Result<String> {
        self.state.with_conn(|c| {
            c.query_row("SELECT token FROM drill_installation ORDER BY rowid LIMIT 1", [], |r| {
                r.get(0)
            })
        })
    }

    /// The ids of every restore drill of `plan` recorded so far.
    fn drill_ids(&self, plan: &str) -> Result<std::collections::HashSet<i64>> {
        self.state.with_conn(|c| {
            c.prepare("SELECT id FROM drill_runs WHERE plan = ?1 AND kind = 'drill'")?
                .query_map([plan], |r| r.get(0))?
                .collect()
        })
    }

    /// Runs newest first: of `plan` (every plan when `None`), at most `limit`.
    pub fn list(&self, plan: Option<&str>, limit: usize) -> Result<Vec<DrillRun>> {
        self.query(
            "?1 IS NULL OR plan = ?1",
            rusqlite::params![plan, i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    /// The newest passed run of `kind` for `plan`.
    pub fn last_passed(&self, plan: &str, kind: DrillKind) -> Result<Option<DrillRun>> {
        Ok(self
            .query(
                "plan = ?1 AND kind = ?3 AND status = 'passed'",
                rusqlite::params![plan, 1, kind.as_str()],
            )?
            .pop())
    }

    /// The newest finished verification and drill of `plan` (for `status`).
    pub fn latest(&self, plan: &str) -> Result<(Option<DrillRun>, Option<DrillRun>)> {
        Ok((
            self.last_finished(plan, DrillKind::Verify)?,
            self.last_finished(plan, DrillKind::Drill)?,
        ))
    }

    /// The newest finished run of `kind` for `plan`.
    pub fn last_finished(&self, plan: &str, kind: DrillKind) -> Result<Option<DrillRun>> {
        Ok(self
            .query(
                "plan = ?1 AND kind = ?3 AND status != 'running'",
                rusqlite::params![plan, 1, kind.as_str()],
            )?
            .pop())
    }

    /// Runs matching `filter` (an SQL condition; `?2` is the row limit), newest first.
    fn query(&self, filter: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Vec<DrillRun>> {
        self.state.with_conn(|c| {
            let mut st = c.prepare(&format!(
                "SELECT id, plan, kind, trigger, status, pack_id, started_at, finished_at, restore_seconds, checks, failures
                 FROM drill_runs WHERE {filter} ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = st.query_map(params, |r| {
                let list = |s: String| serde_json::from_str::<Vec<String>>(&s).unwrap_or_default();
                Ok(DrillRun {
                    id: r.get(0)?,
                    plan: r.get(1)?,
                    kind: DrillKind::parse(&r.get::<_, String>(2)?),
                    trigger: r.get(3)?,
                    status: DrillStatus::parse(&r.get::<_, String>(4)?),
                    pack_id: r.get(5)?,
                    started_at: read_time(r, 6)?,
                    finished_at: read_opt_time(r, 7)?,
                    restore_seconds: r.get(8)?,
                    checks: list(r.get(9)?),
                    failures: list(r.get(10)?),
                })
            })?;
            rows.collect()
        })
    }
}

#[derive(Debug, Default)]
struct Outcome {
    pack_id: Option<String>,
    restore_seconds: Option<f64>,
    checks: Vec<String>,
    failures: Vec<String>,
}

impl Outcome {
    /// A run cancelled before it finished.
    fn cancelled(cancel: &CancelToken) -> Outcome {
        let mut out = Outcome::default();
        out.note_cancel(cancel);
        out
    }

    /// Puts why the run was cancelled first among the failures.
    fn note_cancel(&mut self, cancel: &CancelToken) {
        let why = cancel.reason().unwrap_or_else(|| "cancelled".into());
        self.failures.insert(0, i18n::tr!("drill-cancelled", why = why));
    }
}

/// Runs a verification or a drill of plan `name` now, recorded (and in the audit trail as done
/// by `actor`). Fails only when it cannot start: an unknown plan, or a job, verification or drill
/// of the plan already running ([`Error::Locked`], naming the pid); what it finds wrong is in the
/// returned run's failures.
///
/// Cancelling `cancel` (a signal, a daemon shutting down) ends it early as a failed run whose
/// first failure says why: a verification stops where it is; a drill finishes the SQLite
/// database it is restoring, stops its MongoDB or Docker restore where it is, and removes what it
/// restored (scratch directory, scratch databases, scratch volumes) before it records itself.
pub async fn run(
    cfg: &Config,
    state: Arc<StateStore>,
    name: &str,
    kind: DrillKind,
    trigger: Trigger,
    actor: &Actor,
    cancel: &CancelToken,
) -> Result<DrillRun> {
    let plan = registry::plan(cfg, name)?;
    let _lock = backup_core::lock::plan_lock(state.dir(), name)?;
    let store = DrillStore::open(state.clone())?;
    // Holding the plan's lock, no other run of this plan is alive: what earlier ones left (a
    // `running` record, a scratch directory) is of a process that died.
    let scratch_root = state.dir().join("drills");
    let installation = store.installation()?;
    store.settle_dead(name)?;
    remove_scratch_of(&scratch_root, name);
    if kind == DrillKind::Drill {
        sweep_docker(cfg, name).await;
        sweep_mongo(cfg, &installation, name, &store.drill_ids(name)?).await;
    }
    let id = store.start(name, kind, trigger)?;
    let out = match kind {
        DrillKind::Verify => tokio::select! {
            out = verify(cfg, &plan.sinks, name) => out,
            () = cancel.cancelled() => Outcome::cancelled(cancel),
        },
        DrillKind::Drill => {
            let scratch = Scratch {
                dir: scratch_root.join(format!("{name}-run-{id}")),
                id,
                installation,
            };
            drill(cfg, &plan.sinks, name, &scratch, cancel).await
        }
    };
    store.finish(id, &out)?;
    let status = if out.failures.is_empty() { "passed" } else { "failed" };
    state.audit_or_warn(
        actor,
        AuditAction::Drill,
        Some(name),
        out.pack_id.as_deref().unwrap_or("-"),
        &format!(
            "{} {status}{}",
            kind.as_str(),
            out.failures.first().map(|f| format!(": {f}")).unwrap_or_default()
        ),
    );
    let run = store
        .list(Some(name), 1)?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| Error::Other(format!("drill run {id} vanished from the state store")))?;
    Ok(run)
}

/// Removes the scratch directories `root/PLAN-run-*` of `plan` (only called under its lock).
fn remove_scratch_of(root: &std::path::Path, plan: &str) {
    let Ok(rd) = std::fs::read_dir(root) else { return };
    let prefix = format!("{plan}-run-");
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name
            .strip_prefix(&prefix)
            .is_some_and(|id| id.bytes().all(|b| b.is_ascii_digit()))
        {
            match std::fs::remove_dir_all(e.path()) {
                Ok(()) => tracing::info!("removed {}, left by a drill that did not finish", e.path().display()),
                Err(err) => tracing::warn!("cannot remove {}: {err}", e.path().display()),
            }
        }
    }
}

/// The newest pack of `plan` on `sink`, opened with the plan's identities.
async fn newest(
    cfg: &Config,
    sink: &Arc<dyn Sink>,
    plan: &str,
) -> std::result::Result<Option<Arc<dyn PackReader>>, String> {
    let mut packs = sink.list(Some(plan)).await.map_err(|e| e.chain())?;
    packs.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    let Some(p) = packs.pop() else { return Ok(None) };
    let reader = sink.open(plan, &p.id).await.map_err(|e| e.chain())?;
    registry::keyed(Some(cfg), reader, &[]).map(Some).map_err(|e| e.chain())
}

async fn verify(cfg: &Config, sinks: &[Arc<dyn Sink>], plan: &str) -> Outcome {
    let mut out = Outcome::default();
    let mut sampled = false;
    for sink in sinks {
        let pack = match newest(cfg, sink, plan).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                out.failures
                    .push(i18n::tr!("drill-verify-no-pack", sink = sink.name(), plan = plan));
                continue;
            }
            Err(e) => {
                out.failures.push(format!("sink {}: {e}", sink.name()));
                continue;
            }
        };
        out.pack_id.get_or_insert_with(|| pack.id().to_string());
        if !sampled {
            // The live data is compared once, with the first copy found.
            sampled = true;
            verify_sample(cfg, &pack, &mut out).await;
        }
        let reader = pack.clone();
        let report =
            tokio::task::spawn_blocking(move || registry::verifier().verify(&*reader, VerifyLevel::Deep)).await;
        match report {
            Ok(r) if r.is_ok() => out.checks.push(i18n::tr!(
                "drill-check-verified",
                sink = sink.name(),
                pack = pack.id(),
                n = pack.manifest().artifacts.len().to_string()
            )),
            Ok(r) => {
                for p in &r.problems {
                    out.failures.push(format!(
                        "sink {}: pack {}: {}: {}",
                        sink.name(),
                        pack.id(),
                        p.path,
                        p.reason
                    ));
                }
            }
            Err(e) => out
                .failures
                .push(format!("sink {}: verification task failed: {e}", sink.name())),
        }
    }
    out
}

/// Documents per collection a scheduled verification compares with the live MongoDB source.
pub const VERIFY_SAMPLE: usize = 10;

/// One collection of a pack compared with the live database: its report, or why it could not
/// be compared.
pub type Sampled = (
    source_mongo::restore::CollectionArtifact,
    std::result::Result<source_mongo::sample::SampleReport, String>,
);

/// Data sampling against the live source: `n` random documents of every MongoDB collection of
/// `pack` looked up in the live collection on its source's server (the URI from `cfg`) and
/// compared byte for byte (see [`source_mongo::sample`]). Fails when the pack's source is not a
/// MongoDB source of `cfg` or its server cannot be reached; a collection that cannot be compared
/// is an `Err` in the list.
pub async fn sample_against_source(cfg: &Config, pack: &Arc<dyn PackReader>, n: usize) -> Result<Vec<Sampled>> {
    let mut conns: std::collections::BTreeMap<String, source_mongo::Connection> = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for item in source_mongo::restore::collections(&**pack, None) {
        let source = item.data.source.clone();
        if !conns.contains_key(&source) {
            let Some(crate::config::SourceConfig::Mongo(c)) = cfg.sources.get(&source) else {
                return Err(Error::Config(format!(
                    "the pack's source `{source}` is not a mongo source in the config; cannot compare with it"
                )));
            };
            let conn = source_mongo::Connection::open(&c.uri(&source)?)
                .await
                .map_err(Error::source(source.clone()))?;
            conns.insert(source.clone(), conn);
        }
        let sampled = source_mongo::sample::sample(&conns[&source], pack, &item, n, None)
            .await
            .map_err(|e| e.to_string());
        out.push((item, sampled));
    }
    Ok(out)
}

/// The sampling part of a verification: the newest pack of the first sink holding one, when it
/// has MongoDB collections, compared with the live source.
async fn verify_sample(cfg: &Config, pack: &Arc<dyn PackReader>, out: &mut Outcome) {
    if source_mongo::restore::collections(&**pack, None).is_empty() {
        return;
    }
    match sample_against_source(cfg, pack, VERIFY_SAMPLE).await {
        Ok(found) => {
            for (item, sampled) in found {
                match sampled {
                    Ok(r) if r.is_ok() => out.checks.push(i18n::tr!(
                        "drill-sample-ok",
                        path = r.path.as_str(),
                        sampled = r.sampled.to_string(),
                        database = r.database.as_str(),
                        collection = r.collection.as_str(),
                        identical = r.identical.to_string(),
                        updated = r.updated_since.to_string(),
                        deleted = r.deleted_since.to_string()
                    )),
                    Ok(r) => out.failures.push(i18n::tr!(
                        "drill-sample-differ",
                        path = r.path.as_str(),
                        n = r.differing.len().to_string(),
                        sampled = r.sampled.to_string(),
                        database = r.database.as_str(),
                        collection = r.collection.as_str(),
                        ids = r.differing.join(", ")
                    )),
                    Err(e) => out.failures.push(format!(
                        "{}: cannot compare with the live database: {e}",
                        item.data.path
                    )),
                }
            }
        }
        Err(e) => out.failures.push(format!(
            "pack {}: cannot compare with the live source: {}",
            pack.id(),
            e.chain()
        )),
    }
}

/// Where a drill restores to: its scratch directory; its run id names its scratch databases
/// ([`mongo_scratch`]).
struct Scratch {
    dir: PathBuf,
    id: i64,
    installation: String,
}

/// The base name of drill `id`'s scratch databases on plan `plan`'s MongoDB servers:
/// `packrat_drill_INSTALLATION_ID_PLAN` (`INSTALLATION`: 8 hex digits of this state store, see
/// [`DrillStore::installation`]), cut to leave room for a `_N` suffix under MongoDB's 63-byte
/// limit (installation and run id come first and are never cut, so names of two runs never meet).
fn mongo_scratch(installation: &str, plan: &str, id: i64) -> String {
    let mut name = format!("packrat_drill_{installation}_{id}_{}", plan.replace('.', "_"));
    while name.len() > 59 {
        name.pop();
    }
    name
}

/// Drops the scratch databases that earlier drills of `plan` left on its MongoDB sources'
/// servers: killed ones, or ones whose drop failed. Called under the plan's lock, so none of
/// them is running; a database is dropped only when its name is the scratch name of a drill of
/// this plan on record (`ours`), never by a pattern alone.
async fn sweep_mongo(cfg: &Config, installation: &str, plan: &str, ours: &std::collections::HashSet<i64>) {
    let Ok(pc) = cfg.plan(plan) else { return };
    let prefix = format!("packrat_drill_{installation}_");
    let of_ours = |name: &str| {
        name.strip_prefix(&prefix)
            .and_then(|rest| rest.split('_').next()?.parse::<i64>().ok())
            .is_some_and(|id| {
                ours.contains(&id) && source_mongo::restore::is_scratch_of(name, &mongo_scratch(installation, plan, id))
            })
    };
    for source in pc.source_names() {
        let Some(crate::config::SourceConfig::Mongo(c)) = cfg.sources.get(source) else {
            continue;
        };
        let swept = async {
            let conn = source_mongo::Connection::open(&c.drill_uri(source)?).await?;
            source_mongo::restore::drop_scratch(&conn, &of_ours).await
        };
        match swept.await {
            Ok(dropped) => {
                for db in dropped {
                    tracing::info!(
                        "dropped the scratch database {db} of source {source}, left by an earlier drill of plan {plan}"
                    );
                }
            }
            Err(e) => tracing::warn!(
                "cannot drop the scratch databases left by earlier drills of plan {plan} on source {source}: {e}"
            ),
        }
    }
}

async fn drill(cfg: &Config, sinks: &[Arc<dyn Sink>], plan: &str, scratch: &Scratch, cancel: &CancelToken) -> Outcome {
    let mut out = Outcome::default();
    // The newest pack of the first sink that has one: what a restore would use.
    let mut found = None;
    for sink in sinks {
        match newest(cfg, sink, plan).await {
            Ok(Some(p)) => {
                found = Some((sink.clone(), p));
                break;
            }
            Ok(None) => {}
            Err(e) => out.failures.push(format!("sink {}: {e}", sink.name())),
        }
    }
    let Some((sink, pack)) = found else {
        out.failures.push(i18n::tr!("drill-no-pack", plan = plan));
        return out;
    };
    out.pack_id = Some(pack.id().to_string());
    let dir = &scratch.dir;
    if let Err(e) = std::fs::create_dir_all(dir) {
        out.failures
            .push(format!("cannot create the scratch directory {}: {e}", dir.display()));
        return out;
    }
    let started = Instant::now();
    let scratch_dir: PathBuf = dir.clone();
    let reader = pack.clone();
    let sink_name = sink.name().to_string();
    let checked = tokio::task::spawn_blocking(move || drill_artifacts(&*reader, &sink_name, &scratch_dir)).await;
    match checked {
        Ok((checks, failures)) => {
            out.checks.extend(checks);
            out.failures.extend(failures);
        }
        Err(e) => out.failures.push(format!("drill task failed: {e}")),
    }
    // The SQLite restore above runs to its end (it cannot be stopped half-way); the MongoDB and
    // Docker parts stop where they are, and what they restored is removed.
    if !cancel.is_cancelled() {
        let database = mongo_scratch(&scratch.installation, plan, scratch.id);
        tokio::select! {
            () = drill_mongo(cfg, &sink, plan, &pack, &database, &mut out) => {}
            () = cancel.cancelled() => {
                sweep_mongo(cfg, &scratch.installation, plan, &std::collections::HashSet::from([scratch.id])).await;
            }
        }
    }
    if !cancel.is_cancelled() {
        let tag = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        tokio::select! {
            () = drill_docker(cfg, plan, &pack, &tag, dir, &mut out) => {}
            () = cancel.cancelled() => sweep_docker(cfg, plan).await,
        }
    }
    if cancel.is_cancelled() {
        out.note_cancel(cancel);
    }
    out.restore_seconds = Some(started.elapsed().as_secs_f64());
    if out.checks.is_empty() && out.failures.is_empty() {
        out.failures.push(i18n::tr!("drill-nothing", pack = pack.id()));
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        out.failures
            .push(format!("cannot remove the scratch directory {}: {e}", dir.display()));
    }
    out
}

/// The MongoDB part of a drill: for each Mongo source of `pack`, its chain (the newest full pack
/// of the plan on `sink` and the incremental ones after it, up to `pack`) restored on the
/// source's drill server (`drill_uri_env`/`drill_uri_file`, default its own server) into the
/// scratch databases named after `db` (one per source database, see
/// [`source_mongo::restore::scratch_databases`]), every collection counted against the packs'
/// records and sampled, the scratch databases dropped.
async fn drill_mongo(
    cfg: &Config,
    sink: &Arc<dyn Sink>,
    plan: &str,
    pack: &Arc<dyn PackReader>,
    db: &str,
    out: &mut Outcome,
) {
    let sources: std::collections::BTreeSet<String> = pack
        .manifest()
        .artifacts
        .iter()
        .filter(|a| a.kind == source_mongo::ARTIFACT_KIND)
        .map(|a| a.source.clone())
        .collect();
    if sources.is_empty() {
        return;
    }
    // The packs of the chain: those of the plan on this sink up to the drilled one.
    let mut packs = Vec::new();
    match sink.list(Some(plan)).await {
        Ok(list) => {
            for p in list
                .iter()
                .filter(|p| (p.started_at, &p.id) <= (pack.manifest().started_at, &pack.id().to_string()))
            {
                match sink
                    .open(plan, &p.id)
                    .await
                    .and_then(|r| registry::keyed(Some(cfg), r, &[]))
                {
                    Ok(r) => packs.push(r),
                    Err(e) => out
                        .failures
                        .push(format!("sink {}: pack {}: {}", sink.name(), p.id, e.chain())),
                }
            }
        }
        Err(e) => {
            out.failures.push(format!("sink {}: {}", sink.name(), e.chain()));
            return;
        }
    }
    let chain = source_mongo::restore::chain(packs);
    let ids: Vec<&str> = chain.iter().map(|p| p.id()).collect();
    for source in sources {
        let Some(crate::config::SourceConfig::Mongo(c)) = cfg.sources.get(&source) else {
            out.failures.push(format!(
                "source {source} of pack {} is not a MongoDB source of the config: no server to drill on",
                pack.id()
            ));
            continue;
        };
        let drilled = async {
            let uri = c.drill_uri(&source)?;
            let conn = source_mongo::Connection::open(&uri).await?;
            source_mongo::restore::drill_chain(&conn, &chain, &source, db).await
        }
        .await;
        match drilled {
            Ok(found) => {
                for f in found {
                    let line = i18n::tr!(
                        "drill-mongo-line",
                        database = f.database.as_str(),
                        collection = f.collection.as_str(),
                        source = source.as_str(),
                        chain = ids.join(" + "),
                        documents = f.documents.to_string(),
                        scratch = f.scratch.as_str()
                    );
                    let sampled = f
                        .sample
                        .as_ref()
                        .map(|s| {
                            i18n::tr!(
                                "drill-mongo-sampled",
                                identical = s.identical.to_string(),
                                sampled = s.sampled.to_string()
                            )
                        })
                        .unwrap_or_default();
                    if f.is_ok() {
                        out.checks
                            .push(i18n::tr!("drill-mongo-ok", line = line, sampled = sampled));
                    } else if !(f.expected_min..=f.expected_max).contains(&f.documents) {
                        out.failures.push(i18n::tr!(
                            "drill-mongo-count",
                            line = line,
                            min = f.expected_min.to_string(),
                            max = f.expected_max.to_string()
                        ));
                    } else if let Some(s) = &f.sample {
                        out.failures.push(i18n::tr!(
                            "drill-mongo-sample-failed",
                            line = line,
                            sampled = sampled,
                            missing = s.deleted_since.to_string(),
                            different = (s.sampled - s.identical - s.deleted_since).to_string(),
                            ids = s.differing.join(", "),
                            path = s.path.as_str()
                        ));
                    }
                }
            }
            Err(e) => out.failures.push(format!(
                "MongoDB source {source}: the drill failed{}: {e}",
                if c.drill_uri_ref().is_set() {
                    format!(" on the drill server (sources.{source}.drill_uri)")
                } else {
                    String::new()
                }
            )),
        }
    }
}

/// Removes the scratch volumes that killed drills of `plan` left on its Docker sources' engines.
async fn sweep_docker(cfg: &Config, plan: &str) {
    let Ok(pc) = cfg.plan(plan) else { return };
    let mut hosts: Vec<Option<String>> = pc
        .source_names()
        .into_iter()
        .filter_map(|s| match cfg.sources.get(s) {
            Some(crate::config::SourceConfig::Docker(c)) => Some(c.docker_host.clone()),
            _ => None,
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    for host in hosts {
        if let Err(e) = source_docker::drill::sweep(host.as_deref(), plan).await {
            tracing::warn!("cannot look for scratch volumes left by earlier drills of plan {plan}: {e}");
        }
    }
}

/// The Docker part of a drill: for each Docker source of `pack`, every volume restored into a
/// scratch volume, read back, compared with the pack's record and removed, and the compose files
/// written into `scratch/docker/SOURCE`.
async fn drill_docker(
    cfg: &Config,
    plan: &str,
    pack: &Arc<dyn PackReader>,
    tag: &str,
    scratch: &std::path::Path,
    out: &mut Outcome,
) {
    let sources: std::collections::BTreeSet<String> = source_docker::docker_artifacts(&**pack, None)
        .iter()
        .map(|a| a.source.clone())
        .collect();
    for source in sources {
        let configured = cfg.sources.get(&source).and_then(|s| match s {
            crate::config::SourceConfig::Docker(c) => Some(c),
            _ => None,
        });
        let opts = source_docker::drill::DrillOptions {
            plan: plan.to_string(),
            tag: tag.to_string(),
            compose_dir: Some(scratch.join("docker").join(&source)),
            helper_image: configured.and_then(|c| c.helper_image.clone()),
            docker_host: configured.and_then(|c| c.docker_host.clone()),
        };
        match source_docker::drill::drill(pack, Some(&source), &opts).await {
            Ok(report) => {
                for v in &report.volumes {
                    let diff = v.differences();
                    if diff.is_empty() {
                        out.checks.push(i18n::tr!(
                            "drill-check-volume",
                            path = v.path.as_str(),
                            source = source.as_str(),
                            scratch = v.scratch.as_str(),
                            secs = format!("{:.2}", v.seconds),
                            entries = v.entries.to_string(),
                            bytes = v.bytes.to_string()
                        ));
                    } else {
                        out.failures
                            .extend(diff.into_iter().map(|d| format!("{} of source {source}: {d}", v.path)));
                    }
                }
                if !report.compose_files.is_empty() {
                    out.checks.push(i18n::tr!(
                        "drill-check-compose",
                        n = report.compose_files.len().to_string(),
                        source = source.as_str()
                    ));
                }
                if !report.images_not_loaded.is_empty() {
                    out.checks.push(i18n::tr!(
                        "drill-check-images",
                        n = report.images_not_loaded.len().to_string(),
                        source = source.as_str(),
                        images = report.images_not_loaded.join(", ")
                    ));
                }
            }
            Err(e) => out
                .failures
                .push(format!("Docker source {source}: the drill failed: {e}")),
        }
    }
}

/// Restores and checks every artifact of `pack` the drills know (see the module docs).
fn drill_artifacts(pack: &dyn PackReader, sink: &str, scratch: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let (mut checks, mut failures) = (Vec::new(), Vec::new());
    let mut others = std::collections::BTreeMap::<&str, usize>::new();
    for (i, entry) in pack.manifest().artifacts.iter().enumerate() {
        if [
            backup_core::runner::PLAN_CONFIG_KIND,
            source_mongo::ARTIFACT_KIND,
            source_mongo::METADATA_KIND,
            source_docker::VOLUME_KIND,
            source_docker::COMPOSE_KIND,
            source_docker::IMAGE_KIND,
        ]
        .contains(&entry.kind.as_str())
        {
            // The plan's configuration is not restored; Mongo and Docker have their own parts
            // (drill_mongo, drill_docker).
            continue;
        }
        if entry.kind != "sqlite" {
            *others.entry(entry.kind.as_str()).or_default() += 1;
            continue;
        }
        let target = scratch.join(format!("{i}.db"));
        let t = Instant::now();
        match source_sqlite::restore_with(pack, entry, &target, &source_sqlite::RestoreOptions::default()) {
            Ok(r) => {
                let took = t.elapsed();
                let rows: u64 = r.facts.table_rows.values().sum();
                match source_sqlite::recorded_rows(entry) {
                    Some(recorded) => {
                        let diff = r.facts.row_differences(&recorded);
                        if diff.is_empty() {
                            checks.push(i18n::tr!(
                                "drill-check-sqlite",
                                path = entry.path.as_str(),
                                source = entry.source.as_str(),
                                sink = sink,
                                bytes = r.bytes.to_string(),
                                secs = format!("{:.2}", took.as_secs_f64()),
                                tables = recorded.len().to_string(),
                                rows = rows.to_string()
                            ));
                        } else {
                            failures.extend(diff.into_iter().map(|d| format!("{}: {d}", entry.path)));
                        }
                    }
                    None => checks.push(i18n::tr!(
                        "drill-check-sqlite-unrecorded",
                        path = entry.path.as_str(),
                        source = entry.source.as_str(),
                        sink = sink,
                        bytes = r.bytes.to_string(),
                        secs = format!("{:.2}", took.as_secs_f64()),
                        rows = rows.to_string()
                    )),
                }
            }
            Err(e) => failures.push(format!("{}: the restore failed: {e}", entry.path)),
        }
    }
    for (kind, n) in others {
        checks.push(i18n::tr!("drill-not-restored", n = n.to_string(), kind = kind));
    }
    (checks, failures)
}

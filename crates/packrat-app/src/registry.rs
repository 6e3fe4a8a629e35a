//! The registry: config entries → wired source, sink, plan and policy instances of the crates.
//!
//! Each source or sink type is one line in [`crate::config`]'s registry; its crate owns the
//! config type, which builds the instance ([`backup_core::config::SourceSection`]). A plan-level
//! section of a source type (Mongo's `[plans.NAME.mongo]`) is wired here.

use std::collections::BTreeMap;
use std::sync::Arc;

use backup_core::crypt::Keyring;
use backup_core::runner::Plan;
use backup_core::{Error, PackReader, Result, Sink, Source, StateStore, Verifier};
use policy_schedule::{Schedule, ScheduleError};
use retention::Retention;

use backup_core::config::Defaults;

use crate::config::{Config, PlanConfig, SourceConfig};

/// The top-level settings sections build with.
fn defaults(cfg: &Config) -> Defaults {
    Defaults {
        parallelism: cfg.parallelism,
    }
}

/// Opens the installation's state store.
pub fn open_state(cfg: &Config) -> Result<Arc<StateStore>> {
    Ok(Arc::new(StateStore::open(&cfg.state_dir)?))
}

/// The source named `name`, as used outside a plan (Mongo: every collection of the database,
/// for checks, restores and sampling).
pub fn source(cfg: &Config, name: &str) -> Result<Arc<dyn Source>> {
    let sc = cfg
        .sources
        .get(name)
        .ok_or_else(|| Error::NotFound(format!("no source `{name}` in the config")))?;
    Ok(sc.section().build(name, &defaults(cfg)))
}

/// The source named `name` as plan `pc` uses it (Mongo sources get the plan's `mongo` table).
fn plan_source(cfg: &Config, pc: &PlanConfig, name: &str) -> Result<Arc<dyn Source>> {
    match cfg.sources.get(name) {
        Some(SourceConfig::Mongo(c)) => Ok(Arc::new(source_mongo::MongoSource::for_plan(
            name,
            c,
            &pc.mongo(),
            cfg.parallelism,
        ))),
        _ => source(cfg, name),
    }
}

/// The sink named `name`.
pub fn sink(cfg: &Config, name: &str) -> Result<Arc<dyn Sink>> {
    let sc = cfg
        .sinks
        .get(name)
        .ok_or_else(|| Error::NotFound(format!("no sink `{name}` in the config")))?;
    Ok(sc.section().build(name, &defaults(cfg)))
}

/// Every sink of the config, in name order, or only `only`.
pub fn sinks(cfg: &Config, only: Option<&str>) -> Result<Vec<Arc<dyn Sink>>> {
    match only {
        Some(n) => Ok(vec![sink(cfg, n)?]),
        None => cfg.sinks.keys().map(|n| sink(cfg, n)).collect(),
    }
}

/// The sinks of every plan (first sink first), for crash recovery; plans whose sinks cannot be
/// wired are left out (their errors show when they run).
pub fn plan_sinks(cfg: &Config) -> BTreeMap<String, Vec<Arc<dyn Sink>>> {
    cfg.plans
        .iter()
        .filter_map(|(name, pc)| {
            let sinks = pc.sinks.iter().map(|s| sink(cfg, s)).collect::<Result<Vec<_>>>().ok()?;
            Some((name.clone(), sinks))
        })
        .collect()
}

/// The plan named `name`, wired.
pub fn plan(cfg: &Config, name: &str) -> Result<Plan> {
    let pc = cfg.plan(name)?;
    let sources = pc
        .source_names()
        .into_iter()
        .map(|s| plan_source(cfg, pc, s))
        .collect::<Result<Vec<_>>>()?;
    let sinks = pc.sinks.iter().map(|s| sink(cfg, s)).collect::<Result<Vec<_>>>()?;
    let mut plan = Plan::new(name, sources, sinks);
    plan.prefix = pc.prefix().to_string();
    plan.time_zone = cfg.plan_time_zone(pc);
    plan.zstd_level = pc.zstd_level;
    plan.replication_required = pc.replication_required;
    // A pack without its plan's description is still a backup: never fail the plan for it.
    plan.config = cfg
        .plan_document(name)
        .map_err(|e| tracing::warn!("packs of plan {name} will not carry packrat/plan.toml: {e}"))
        .ok();
    plan.encryption = pc
        .encrypt
        .as_ref()
        .map(|e| e.encryption(&format!("plans.{name}.encrypt")))
        .transpose()?;
    Ok(plan)
}

/// The identities to read plan `plan`'s packs with: the identity files given (`--identity`)
/// and the plan's `[plans.NAME.encrypt]` identity (`identity_file`, `identity_env`, passphrase),
/// when `cfg` has that plan. `None` when there are none.
pub fn keyring(cfg: Option<&Config>, plan: &str, files: &[std::path::PathBuf]) -> Result<Option<Arc<Keyring>>> {
    let mut keys = Keyring::new();
    for f in files {
        keys.add_identity_file(f)?;
    }
    if let Some(e) = cfg.and_then(|c| c.plans.get(plan)).and_then(|p| p.encrypt.as_ref()) {
        let plan_keys = e.keyring(&format!("plans.{plan}.encrypt"));
        match plan_keys {
            Ok(k) => keys.merge(k),
            // The identities given on the command line may be enough.
            Err(e) if !keys.is_empty() => tracing::warn!("{e}"),
            Err(e) => return Err(e),
        }
    }
    Ok((!keys.is_empty()).then(|| Arc::new(keys)))
}

/// `reader` with the identities of [`keyring`] for its plan, when its pack is encrypted (a
/// plain pack is returned as it is, and no identity is read for it).
pub fn keyed(
    cfg: Option<&Config>,
    reader: Arc<dyn PackReader>,
    files: &[std::path::PathBuf],
) -> Result<Arc<dyn PackReader>> {
    if !reader.manifest().is_encrypted() {
        return Ok(reader);
    }
    let keys = keyring(cfg, &reader.manifest().plan.clone(), files)?;
    Ok(backup_core::crypt::keyed(reader, keys))
}

/// The schedule of plan `name`: its `full`/`incremental` expressions in its zone, with its
/// catch-up. `Ok(None)` for a plan without a schedule (run only by hand).
pub fn schedule(cfg: &Config, name: &str) -> std::result::Result<Option<Schedule>, ScheduleError> {
    let Some(pc) = cfg.plans.get(name) else {
        return Err(ScheduleError::UnknownPlan(name.to_string()));
    };
    if !pc.is_scheduled() {
        return Ok(None);
    }
    let s = Schedule::for_plan(
        name,
        pc.full.as_ref().map(|c| c.as_str()),
        pc.incremental.as_ref().map(|c| c.as_str()),
        cfg.plan_time_zone(pc),
    )?
    .with_catch_up(cfg.plan_catch_up(pc));
    Ok(Some(s))
}

/// The retention of plan `name`: its rules, periods in its time zone.
pub fn retention(cfg: &Config, name: &str) -> Result<Retention> {
    let pc = cfg.plan(name)?;
    Ok(Retention::new(pc.retention.clone(), cfg.plan_time_zone(pc)))
}

/// A verifier with the deep checks of every artifact type this build knows.
pub fn verifier() -> Verifier {
    Verifier::new()
        .with_check(Arc::new(source_sqlite::SqliteCheck))
        .with_check(Arc::new(source_mongo::MongoCheck))
        .with_check(Arc::new(source_docker::DockerCheck))
}

//! Wiring: config entries → source, sink and plan instances of the crates.

use std::path::Path;
use std::sync::Arc;

use backup_core::config::{Config, SinkConfig, SourceConfig};
use backup_core::runner::Plan;
use backup_core::{Sink, Source, StateStore, Verifier};

use crate::CliError;

/// Loads the config from `--config` / `PACKRAT_CONFIG` and checks it whole, schedules included:
/// every error names the file, the line and the key (exit 2).
pub fn load_config(path: Option<&Path>) -> Result<Config, CliError> {
    let Some(path) = path else {
        return Err(CliError::usage(
            "no config file given; pass --config FILE or set PACKRAT_CONFIG (try `packrat demo` for a quick start)",
        ));
    };
    let cfg = Config::load(path)?;
    policy_schedule::check_config(&cfg)?;
    Ok(cfg)
}

/// Opens the installation's state store.
pub fn open_state(cfg: &Config) -> Result<Arc<StateStore>, CliError> {
    Ok(Arc::new(StateStore::open(&cfg.state_dir)?))
}

/// The source named `name`.
pub fn source(cfg: &Config, name: &str) -> Result<Arc<dyn Source>, CliError> {
    let sc = cfg
        .sources
        .get(name)
        .ok_or_else(|| CliError::usage(format!("no source `{name}` in the config")))?;
    Ok(match sc {
        SourceConfig::Sqlite(c) => Arc::new(source_sqlite::SqliteSource::from_config(name, c)),
        // Outside a plan: every collection of the database (for `check`, restores, sampling).
        SourceConfig::Mongo(c) => {
            Arc::new(source_mongo::MongoSource::from_config(name, c).with_parallelism(cfg.parallelism))
        }
        SourceConfig::Docker(c) => Arc::new(source_docker::DockerSource::from_config(name, c)),
    })
}

/// The source named `name` as plan `pc` uses it (Mongo sources get the plan's collections).
fn plan_source(cfg: &Config, pc: &backup_core::config::PlanConfig, name: &str) -> Result<Arc<dyn Source>, CliError> {
    match cfg.sources.get(name) {
        Some(SourceConfig::Mongo(c)) => Ok(Arc::new(source_mongo::MongoSource::for_plan(
            name,
            c,
            pc,
            cfg.parallelism,
        ))),
        _ => source(cfg, name),
    }
}

/// The sink named `name`.
pub fn sink(cfg: &Config, name: &str) -> Result<Arc<dyn Sink>, CliError> {
    let sc = cfg
        .sinks
        .get(name)
        .ok_or_else(|| CliError::usage(format!("no sink `{name}` in the config")))?;
    Ok(match sc {
        SinkConfig::Local(c) => Arc::new(sink_local::LocalSink::from_config(name, c)),
        SinkConfig::CifsReplica(c) => Arc::new(sink_cifs_replica::CifsReplicaSink::from_config(name, c)),
    })
}

/// Every sink of the config, in name order, or only `only`.
pub fn sinks(cfg: &Config, only: Option<&str>) -> Result<Vec<Arc<dyn Sink>>, CliError> {
    match only {
        Some(n) => Ok(vec![sink(cfg, n)?]),
        None => cfg.sinks.keys().map(|n| sink(cfg, n)).collect(),
    }
}

/// The sinks of every plan (first sink first), for crash recovery; plans whose sinks cannot be
/// wired are left out (their errors show when they run).
pub fn plan_sinks(cfg: &Config) -> std::collections::BTreeMap<String, Vec<Arc<dyn Sink>>> {
    cfg.plans
        .iter()
        .filter_map(|(name, pc)| {
            let sinks = pc
                .sinks
                .iter()
                .map(|s| sink(cfg, s))
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            Some((name.clone(), sinks))
        })
        .collect()
}

/// The plan named `name`, wired.
pub fn plan(cfg: &Config, name: &str) -> Result<Plan, CliError> {
    let pc = cfg.plan(name)?;
    let sources = pc
        .source_names()
        .into_iter()
        .map(|s| plan_source(cfg, pc, s))
        .collect::<Result<Vec<_>, _>>()?;
    let sinks = pc.sinks.iter().map(|s| sink(cfg, s)).collect::<Result<Vec<_>, _>>()?;
    let mut plan = Plan::new(name, sources, sinks);
    plan.prefix = pc.prefix().to_string();
    plan.time_zone = cfg.plan_time_zone(pc);
    plan.zstd_level = pc.zstd_level;
    plan.replication_required = pc.replication_required;
    Ok(plan)
}

/// A verifier with the deep checks of every artifact type this build knows.
pub fn verifier() -> Verifier {
    Verifier::new()
        .with_check(Arc::new(source_sqlite::SqliteCheck))
        .with_check(Arc::new(source_mongo::MongoCheck))
        .with_check(Arc::new(source_docker::DockerCheck))
}

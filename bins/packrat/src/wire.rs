//! Loading the config for a command; the wiring itself is `packrat_app::registry`.

use std::path::Path;
use std::sync::Arc;

use backup_core::runner::Plan;
use backup_core::{Sink, Source, StateStore, Verifier};
use packrat_app::config::Config;
use packrat_app::registry;

use crate::CliError;

/// Loads the config from `--config` / `PACKRAT_CONFIG` and checks it whole, schedules included:
/// every error names the file, the line and the key (exit 2).
pub fn load_config(path: Option<&Path>) -> Result<Config, CliError> {
    let cfg = Config::load_given(path)?;
    crate::output::set_zones(&cfg);
    Ok(cfg)
}

/// Opens the installation's state store.
pub fn open_state(cfg: &Config) -> Result<Arc<StateStore>, CliError> {
    Ok(registry::open_state(cfg)?)
}

/// The source named `name`.
pub fn source(cfg: &Config, name: &str) -> Result<Arc<dyn Source>, CliError> {
    Ok(registry::source(cfg, name)?)
}

/// The sink named `name`.
pub fn sink(cfg: &Config, name: &str) -> Result<Arc<dyn Sink>, CliError> {
    Ok(registry::sink(cfg, name)?)
}

/// Every sink of the config, in name order, or only `only`.
pub fn sinks(cfg: &Config, only: Option<&str>) -> Result<Vec<Arc<dyn Sink>>, CliError> {
    Ok(registry::sinks(cfg, only)?)
}

/// The sinks of every plan, for crash recovery.
pub fn plan_sinks(cfg: &Config) -> std::collections::BTreeMap<String, Vec<Arc<dyn Sink>>> {
    registry::plan_sinks(cfg)
}

/// The plan named `name`, wired.
pub fn plan(cfg: &Config, name: &str) -> Result<Plan, CliError> {
    Ok(registry::plan(cfg, name)?)
}

/// A verifier with the deep checks of every artifact type this build knows.
pub fn verifier() -> Verifier {
    registry::verifier()
}

/// This process as the audit trail records it: `packrat restore (user root on host db1, pid 42)`.
pub fn actor(command: &str) -> backup_core::state::Actor {
    backup_core::state::Actor::process(command)
}

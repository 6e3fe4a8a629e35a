//! # packrat-app
//!
//! The application between packrat's crates and its two binaries (`packrat`, `packratd`): the
//! [configuration](config) composed of the sections each crate owns, the [registry] that turns it
//! into wired sources, sinks and policies, the steps after a job, the typed HTTP API and the
//! mapping of error kinds to exit codes. Nothing but the binaries depends on it.
//!
//! ```
//! let cfg = packrat_app::config::Config::parse(
//!     "state_dir = \"/tmp/state\"\n[sources.db]\ntype = \"sqlite\"\npath = \"/tmp/app.db\"\n\
//!      [sinks.local]\ntype = \"local\"\npath = \"/tmp/packs\"\n[plans.nightly]\nsources = [\"db\"]\nsinks = [\"local\"]\n",
//!     "packrat.toml".as_ref(),
//! )?;
//! let plan = packrat_app::registry::plan(&cfg, "nightly")?;
//! assert_eq!(plan.sinks[0].name(), "local");
//! # Ok::<(), backup_core::Error>(())
//! ```

pub mod after_job;
pub mod api;
pub mod audit;
pub mod config;
pub mod drill;
pub mod exit;
pub mod registry;

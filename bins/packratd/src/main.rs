//! `packratd`: the packrat daemon.
//!
//! Loads the config, takes the installation's exclusive lock (`<state_dir>/packratd.lock`; a
//! second daemon exits naming the holder's pid), recovers from a crash (jobs left running are
//! marked interrupted, staging leftovers removed), then runs the scheduler, the job runner
//! (at most `parallelism` jobs, never two of one plan), retention after each successful job,
//! the health checks with alert delivery and the HTTP API on loopback, until SIGTERM/SIGINT
//! (Ctrl-C on Windows, or the service manager's stop: `packratd service …`) shuts it down
//! gracefully. It shares the wiring of sources and sinks with
//! the `packrat` CLI through the `packrat-app` crate.

mod api;
mod daemon;
mod dashboard;
mod drills;
mod logging;
mod metrics;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;

use backup_core::lock::FileLock;
use clap::Parser;

use packrat_app::exit::{self, ExitError};

/// packratd: runs packrat's plans on their schedules, prunes, checks health, alerts, and serves
/// an HTTP API on loopback.
#[derive(Debug, Parser)]
#[command(name = "packratd", version, about)]
struct Args {
    /// Config file (TOML).
    #[arg(long, short = 'c', env = "PACKRAT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log as JSON lines (overrides `[daemon] log_json`).
    #[arg(long)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Windows: packratd as a Windows service (install, uninstall, start, stop, status).
    Service {
        #[command(subcommand)]
        action: service::Action,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.command {
        Some(Command::Service { action }) => service::run(action, args.config, args.log_json),
        None => start(args.config, args.log_json),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Runs the daemon until it is asked to stop (a signal, the API, the Windows service manager).
fn start(config: Option<PathBuf>, log_json: bool) -> Result<(), ExitError> {
    let cfg = packrat_app::config::Config::load_given(config.as_deref())?;
    // The lock first: a second daemon must not touch the logs or the state of the first.
    let lock_path = cfg.state_dir.join("packratd.lock");
    let lock = FileLock::try_acquire(
        &lock_path,
        &format!("the installation at {} (packratd)", cfg.state_dir.display()),
    )
    .map_err(|e| match e {
        backup_core::Error::Locked { holder, .. } => ExitError {
            code: exit::BUSY,
            message: format!(
                "another packratd is already running on {}{}; stop it first (its lock is {})",
                cfg.state_dir.display(),
                holder.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                lock_path.display()
            ),
        },
        other => other.into(),
    })?;
    let _log_guards = logging::init(&cfg, log_json).map_err(ExitError::failed)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("packratd")
        .build()
        .map_err(|e| ExitError::failed(format!("cannot start the async runtime: {e}")))?;
    let result = rt.block_on(daemon::run(cfg));
    // Blocking tasks of cancelled jobs (a database copy) may still run; do not wait for ever.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    drop(lock);
    result
}

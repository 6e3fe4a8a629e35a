//! `cargo xtask bench ...`: packrat against the native backup tool of each source.
//!
//! [`harness`] holds the shared pattern (paired rounds, page-cache policy, peak RSS via
//! `xtask rss`, medians, report, PASS/MISS against targets). Each benchmark is a module that
//! prepares its input, implements [`harness::Scenario`] and calls [`harness::run`]. Later
//! benchmarks (`mongo`, `docker`, `replica`) are added the same way as [`sqlite`].

pub mod harness;
pub mod sqlite;

use anyhow::Result;
use clap::Subcommand;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// `packrat run` of a SQLite source vs `sqlite3 SRC ".backup DST"`.
    Sqlite(sqlite::SqliteArgs),
}

/// Runs one benchmark.
pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Sqlite(args) => sqlite::run(&args),
    }
}

//! `cargo xtask bench ...`: packrat against the native backup tool of each source.
//!
//! [`harness`] holds the shared pattern (paired rounds, page-cache policy, peak RSS via
//! `xtask rss`, medians, report, PASS/MISS against targets). Each benchmark is a module that
//! prepares its input, implements [`harness::Scenario`] and calls [`harness::run`]. Later
//! benchmarks (`mongo`, `docker`, `replica`, `object`) are added the same way as [`sqlite`].
//! [`encrypt`] is the `--encrypt` variant of the `packrat run` benchmarks (`sqlite`, `mongo`,
//! `docker`): the same plan unencrypted vs encrypted with age.

pub mod all;
pub mod docker;
pub mod encrypt;
pub mod harness;
pub mod mongo;
pub mod object;
pub mod replica;
pub mod sqlite;

use anyhow::{Result, bail};
use clap::Subcommand;
use harness::Report;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// `sqlite`, `mongo`, `docker` and `replica` in one go; writes their table into
    /// docs/benchmarks.md.
    All(all::AllArgs),
    /// `packrat run` of a SQLite source vs `sqlite3 SRC ".backup DST"`.
    Sqlite(sqlite::SqliteArgs),
    /// `packrat run` (full) of a MongoDB collection vs a bare driver cursor drain of it.
    Mongo(mongo::MongoArgs),
    /// `packrat run` of a Docker volume vs `docker run --log-driver none … tar c | zstd -3`.
    Docker(docker::DockerArgs),
    /// Replica copy + verify of a ~1 GiB pack to the Samba test share vs `cp -r` to it.
    Replica(replica::ReplicaArgs),
    /// The S3 sink's store of a ~1 GiB pack to the Garage cluster vs `rclone copy` to it.
    Object(object::ObjectArgs),
}

/// Runs one benchmark (or `all`) and prints its report.
pub fn run(command: BenchCommand) -> Result<()> {
    let json = match &command {
        BenchCommand::All(args) => return all::run(args),
        BenchCommand::Sqlite(a) => a.common.json,
        BenchCommand::Mongo(a) => a.common.json,
        BenchCommand::Docker(a) => a.common.json,
        BenchCommand::Replica(a) => a.common.json,
        BenchCommand::Object(a) => a.common.json,
    };
    measure(&command)?.emit(json);
    Ok(())
}

/// Runs one benchmark and returns its report.
pub fn measure(command: &BenchCommand) -> Result<Report> {
    match command {
        BenchCommand::All(_) => bail!("`all` is not one benchmark"),
        BenchCommand::Sqlite(args) => sqlite::run(args),
        BenchCommand::Mongo(args) => mongo::run(args),
        BenchCommand::Docker(args) => docker::run(args),
        BenchCommand::Replica(args) => replica::run(args),
        BenchCommand::Object(args) => object::run(args),
    }
}

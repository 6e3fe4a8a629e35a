//! `cargo xtask`: developer tooling for the packrat workspace.
//!
//! * `cargo xtask ci` runs every check (see the `ci` module); it is what `.ci/run` calls.
//! * `cargo xtask bench sqlite` compares `packrat run` against `sqlite3 .backup` (see the `bench` module).
//! * `cargo xtask rss -- CMD...` (hidden) runs CMD and reports its wall time and peak RSS; the
//!   benches re-exec themselves through it so each measured command has its own rusage.

mod bench;
mod ci;
mod prereqs;
mod rss;
mod services;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Developer tooling for packrat", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every check: prerequisites, fmt, clippy, build, tests, doc tests, Windows check, deny.
    Ci(ci::CiArgs),
    /// Benchmarks comparing packrat with the native backup tool of a source.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run a command, then report its wall time and peak RSS (used by the benches).
    #[command(hide = true)]
    Rss(rss::RssArgs),
    /// Start (and print the test environment) or stop the Samba test share, for local test runs.
    Samba(services::samba::SambaArgs),
    /// Start every test service (or `--only NAME`) and keep it running (`up`), or stop them
    /// (`down`), for local test runs: `source target/ci-services/env.sh` then `cargo nextest run`.
    Services(services::ServicesArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ci(args) => ci::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(cmd) => bench::run(cmd).map(|()| ExitCode::SUCCESS),
        Command::Rss(args) => rss::run(args),
        Command::Samba(args) => services::samba::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Services(args) => services::run_services(&args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

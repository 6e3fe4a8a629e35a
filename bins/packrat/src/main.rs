//! `packrat`: run backup plans, inspect jobs and packs, verify and restore.
//!
//! A thin binary: it parses the config and the command line, wires the source and sink crates
//! into `backup-core`'s runner, and presents the results. See `packrat --help` and the README.

mod alert;
mod cli;
mod commands;
mod daemon_client;
mod demo;
mod doctor;
mod doctor_schedule;
mod mount_check;
mod output;
mod progress;
mod prune;
mod restore_common;
mod restore_docker;
mod restore_mongo;
mod wire;

use std::process::ExitCode;

use clap::Parser;

#[path = "cli_error.rs"]
mod cli_error;
pub use cli_error::{CliError, exit};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    progress::init_logging(&cli);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    match rt.block_on(commands::dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

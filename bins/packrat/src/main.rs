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
mod restore_docker;
mod restore_mongo;
mod wire;

use std::process::ExitCode;

use clap::Parser;

/// Exit codes, documented in `packrat --help` and the README.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The operation ran and failed: a job failed, verification found problems, a restore failed.
    pub const FAILED: u8 = 1;
    /// Bad usage or configuration: unknown flag, invalid config, unknown plan or pack.
    pub const USAGE: u8 = 2;
    /// Busy: the plan (or installation) is locked by another packrat process.
    pub const BUSY: u8 = 3;
}

/// An error that ends the program with a message and an exit code.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub code: u8,
    /// Message for stderr.
    pub message: String,
}

impl CliError {
    /// A usage/config error (exit 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    /// A failure (exit 1).
    pub fn failed(message: impl Into<String>) -> CliError {
        CliError {
            code: exit::FAILED,
            message: message.into(),
        }
    }
}

impl From<backup_core::Error> for CliError {
    fn from(e: backup_core::Error) -> CliError {
        use backup_core::Error as E;
        let code = match &e {
            E::Config(_) | E::NotFound(_) => exit::USAGE,
            E::Locked { .. } => exit::BUSY,
            _ => exit::FAILED,
        };
        CliError {
            code,
            message: e.chain(),
        }
    }
}

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

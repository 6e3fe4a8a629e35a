//! `packrat`: run backup plans, inspect jobs and packs, verify and restore.
//!
//! A thin binary: it parses the config and the command line, wires the source and sink crates
//! into `backup-core`'s runner, and presents the results. See `packrat --help` and the README.

/// `println!` that never panics: once stdout is closed (`packrat jobs | head -2`), further output
/// is dropped quietly and the command ends with its normal exit code. See [`output::write_stdout`].
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that never panics; see [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

mod alert;
mod audit;
mod cli;
mod commands;
mod control;
mod daemon_client;
mod demo;
mod doctor;
mod doctor_retention;
mod doctor_schedule;
mod drill;
mod key;
mod mount_check;
mod output;
mod progress;
mod prune;
mod restore_common;
mod restore_docker;
mod restore_mongo;
mod signals;
mod wire;

use std::process::ExitCode;

use clap::Parser;

pub use packrat_app::exit::{self, ExitError as CliError};

fn main() -> ExitCode {
    // The locale's language until the config (its `language`) is loaded.
    i18n::set_language(i18n::Lang::from_env());
    let cli = cli::Cli::parse();
    progress::init_logging(&cli);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let result = rt.block_on(commands::dispatch(cli));
    // Blocking work of a cancelled job (a SQLite copy waiting for a lock, say) must not keep the
    // process alive: everything worth keeping is recorded by now.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", i18n::tr!("error-line", error = e.message.as_str()));
            e.code
        }
    };
    // A closed stdout (a pipe to `head`) is not an error; any other write failure (a full disk
    // behind `> file`) is.
    match output::finish_stdout() {
        Err(e) if code == exit::OK => {
            eprintln!("{}", i18n::tr!("error-stdout", error = e.to_string()));
            ExitCode::from(exit::FAILED)
        }
        _ => ExitCode::from(code),
    }
}

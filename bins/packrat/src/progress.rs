//! Logging setup and the terminal progress display.

use std::io::IsTerminal;
use std::time::Duration;

use backup_core::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing_subscriber::EnvFilter;

use crate::cli::Cli;

/// Logs go to stderr: warnings by default, more with `-v`; `RUST_LOG` overrides.
pub fn init_logging(cli: &Cli) {
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// A spinner with the current stage on a terminal; invisible when stderr is not a TTY.
#[derive(Debug)]
pub struct TermProgress {
    bar: ProgressBar,
}

impl TermProgress {
    /// A new display.
    pub fn new() -> TermProgress {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg} {binary_bytes}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        TermProgress { bar }
    }

    /// Removes the display.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for TermProgress {
    fn stage(&self, message: &str) {
        self.bar.set_position(0);
        self.bar.set_message(message.to_string());
    }
    fn set_total(&self, bytes: u64) {
        self.bar.set_length(bytes);
    }
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
}

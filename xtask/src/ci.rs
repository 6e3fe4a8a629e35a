//! `cargo xtask ci`: every check, in order, failing fast.
//!
//! Steps: prereqs, fmt, clippy, build, test (nextest), doctest, doc (rustdoc lints denied),
//! windows, deny. Each prints a
//! header and its duration; a summary follows. The first failing step stops the run and the
//! process exits non-zero naming it. Services (see [`crate::services`]) run around the test
//! steps and are stopped even when a test step fails.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::{Args, ValueEnum};

use crate::prereqs::{self, WINDOWS_TARGET};
use crate::services::{self, Running};
use crate::util::{self, fmt_duration};

/// Options of `cargo xtask ci`.
#[derive(Debug, Args)]
pub struct CiArgs {
    /// Skip a step (repeatable); for local use, CI skips nothing.
    #[arg(long = "skip", value_name = "STEP")]
    skip: Vec<Step>,
}

/// The steps of `cargo xtask ci`, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Step {
    /// Install missing tools (apt packages, rustup target, cargo-deny, ...).
    #[value(alias = "prereq", alias = "install")]
    Prereqs,
    /// `cargo fmt --all -- --check`
    Fmt,
    /// `cargo clippy --workspace --all-targets --all-features -- -D warnings`
    Clippy,
    /// `cargo build --workspace --bins`
    Build,
    /// `cargo nextest run --workspace --all-features --no-fail-fast`
    #[value(alias = "nextest", alias = "tests")]
    Test,
    /// `cargo test --workspace --doc --all-features`
    #[value(alias = "doctests")]
    Doctest,
    /// `cargo doc --workspace --no-deps --all-features` with broken intra-doc links (and every
    /// other rustdoc warning) denied
    #[value(alias = "docs", alias = "rustdoc")]
    Doc,
    /// `cargo check --workspace --exclude xtask --target x86_64-pc-windows-gnu`
    #[value(alias = "windows-check")]
    Windows,
    /// `cargo deny check licenses bans sources`
    Deny,
}

impl Step {
    const ALL: [Self; 9] = [
        Self::Prereqs,
        Self::Fmt,
        Self::Clippy,
        Self::Build,
        Self::Test,
        Self::Doctest,
        Self::Doc,
        Self::Windows,
        Self::Deny,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Prereqs => "prereqs",
            Self::Fmt => "fmt",
            Self::Clippy => "clippy",
            Self::Build => "build",
            Self::Test => "test",
            Self::Doctest => "doctest",
            Self::Doc => "doc",
            Self::Windows => "windows",
            Self::Deny => "deny",
        }
    }

    /// Whether the step runs tests that may talk to the services.
    fn needs_services(self) -> bool {
        matches!(self, Self::Test | Self::Doctest)
    }

    /// The cargo command of the step (`None` for the prerequisites step).
    fn command(self) -> Option<Command> {
        let args: &[&str] = match self {
            Self::Prereqs => return None,
            Self::Fmt => &["fmt", "--all", "--", "--check"],
            Self::Clippy => &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ],
            Self::Build => &["build", "--workspace", "--bins"],
            Self::Test => &["nextest", "run", "--workspace", "--all-features", "--no-fail-fast"],
            Self::Doctest => &["test", "--workspace", "--doc", "--all-features"],
            Self::Doc => {
                let mut cmd = util::cargo();
                cmd.args(["doc", "--workspace", "--no-deps", "--all-features"]).env(
                    "RUSTDOCFLAGS",
                    "-D rustdoc::broken_intra_doc_links -D rustdoc::private_intra_doc_links -D warnings",
                );
                return Some(cmd);
            }
            // xtask uses Unix-only APIs (getrusage, /proc); it never runs on Windows.
            Self::Windows => &["check", "--workspace", "--exclude", "xtask", "--target", WINDOWS_TARGET],
            Self::Deny => &["deny", "check", "licenses", "bans", "sources"],
        };
        let mut cmd = util::cargo();
        cmd.args(args);
        Some(cmd)
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Passed(Duration),
    Failed(Duration),
    Skipped,
    NotRun,
}

/// Runs `cargo xtask ci`.
pub fn run(args: &CiArgs) -> Result<()> {
    let started = Instant::now();
    let mut outcomes: Vec<(Step, Outcome)> = Step::ALL.iter().map(|&s| (s, Outcome::NotRun)).collect();
    let result = run_steps(args, &mut outcomes);
    print_summary(&outcomes, started.elapsed(), result.is_ok());
    result
}

fn run_steps(args: &CiArgs, outcomes: &mut [(Step, Outcome)]) -> Result<()> {
    let total = Step::ALL.len();
    // Started lazily before the first test step; dropping it stops the services, so they
    // are stopped on every early return below too.
    let mut services: Option<Running> = None;
    let last_service_step = Step::ALL
        .iter()
        .rposition(|s| s.needs_services() && !args.skip.contains(s));

    for (index, (step, outcome)) in outcomes.iter_mut().enumerate() {
        let step = *step;
        if args.skip.contains(&step) {
            eprintln!("\n==> [{}/{total}] {}: skipped (--skip)", index + 1, step.name());
            *outcome = Outcome::Skipped;
            continue;
        }

        let mut cmd = step.command();
        let shown = cmd
            .as_ref()
            .map_or_else(|| "install missing tools".to_owned(), util::display_cmd);
        eprintln!("\n==> [{}/{total}] {}: {shown}", index + 1, step.name());

        let t0 = Instant::now();
        let result = (|| -> Result<()> {
            if step.needs_services() && services.is_none() {
                services = Some(Running::start(services::all())?);
            }
            match (&mut cmd, &services) {
                (None, _) => {
                    let mut list = prereqs::ci_prereqs();
                    list.extend(services::prereqs());
                    prereqs::ensure(&list)
                }
                (Some(cmd), Some(running)) if step.needs_services() => {
                    util::run(cmd.envs(running.env().iter().map(|(k, v)| (k, v))))
                }
                (Some(cmd), _) => util::run(cmd),
            }
        })();
        let elapsed = t0.elapsed();

        match result {
            Ok(()) => {
                *outcome = Outcome::Passed(elapsed);
                eprintln!("<== {} passed in {}", step.name(), fmt_duration(elapsed));
            }
            Err(err) => {
                *outcome = Outcome::Failed(elapsed);
                eprintln!("<== {} FAILED after {}", step.name(), fmt_duration(elapsed));
                return Err(err).context(format!("ci step `{}` failed", step.name()));
            }
        }

        if Some(index) == last_service_step
            && let Some(running) = services.take()
        {
            running
                .stop()
                .map_err(|e| anyhow!("stopping services after ci step `{}`: {e:#}", step.name()))?;
        }
    }
    Ok(())
}

fn print_summary(outcomes: &[(Step, Outcome)], total: Duration, ok: bool) {
    eprintln!("\nci summary:");
    for (step, outcome) in outcomes {
        let (status, time) = match outcome {
            Outcome::Passed(d) => ("passed", fmt_duration(*d)),
            Outcome::Failed(d) => ("FAILED", fmt_duration(*d)),
            Outcome::Skipped => ("skipped", String::new()),
            Outcome::NotRun => ("not run", String::new()),
        };
        eprintln!("  {:<8} {status:<8} {time}", step.name());
    }
    if ok {
        eprintln!("ci: all steps passed in {}", fmt_duration(total));
    } else {
        eprintln!("ci: FAILED after {}", fmt_duration(total));
    }
}

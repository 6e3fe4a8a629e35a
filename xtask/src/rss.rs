//! `xtask rss [--out FILE] -- CMD ARGS...`: run one command and report its resource usage.
//!
//! The wrapper has exactly one child, so `getrusage(RUSAGE_CHILDREN)` after waiting for it gives
//! that command's peak RSS (`ru_maxrss`, the largest of it and its waited-for descendants) and
//! CPU times. The wall time covers spawn to exit and excludes the wrapper's own start-up.
//! The report is one line of `key=value` pairs, written to FILE (or stderr); the wrapper exits
//! with the command's exit code.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use nix::sys::resource::{UsageWho, getrusage};

/// Options of the hidden `rss` command.
#[derive(Debug, Args)]
pub struct RssArgs {
    /// Write the report line here instead of stderr.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The command to run.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// Resource usage of one command, as reported by the wrapper.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// Wall time from spawn to exit.
    pub elapsed: Duration,
    /// Peak resident set size in KiB.
    pub max_rss_kib: u64,
    /// User CPU time.
    pub user: Duration,
    /// System CPU time.
    pub sys: Duration,
}

impl Usage {
    fn to_line(self, exit: i32) -> String {
        format!(
            "elapsed_ns={} max_rss_kib={} user_us={} sys_us={} exit={exit}",
            self.elapsed.as_nanos(),
            self.max_rss_kib,
            self.user.as_micros(),
            self.sys.as_micros(),
        )
    }

    /// Parses the wrapper's report line.
    pub fn parse(line: &str) -> Result<Self> {
        let field = |key: &str| -> Result<u64> {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .with_context(|| format!("no {key} in rss report {line:?}"))?
                .parse()
                .with_context(|| format!("bad {key} in rss report {line:?}"))
        };
        Ok(Self {
            elapsed: Duration::from_nanos(field("elapsed_ns")?),
            max_rss_kib: field("max_rss_kib")?,
            user: Duration::from_micros(field("user_us")?),
            sys: Duration::from_micros(field("sys_us")?),
        })
    }
}

/// Runs the wrapper.
pub fn run(args: RssArgs) -> Result<ExitCode> {
    let Some((program, rest)) = args.command.split_first() else {
        bail!("rss: no command given");
    };
    let t0 = Instant::now();
    let status = Command::new(program)
        .args(rest)
        .status()
        .with_context(|| format!("rss: cannot start {}", program.to_string_lossy()))?;
    let elapsed = t0.elapsed();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage")?;
    let tv = |tv: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(tv.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(tv.tv_usec()).unwrap_or(0))
    };
    let report = Usage {
        elapsed,
        // Linux reports ru_maxrss in KiB.
        max_rss_kib: u64::try_from(usage.max_rss()).unwrap_or(0),
        user: tv(usage.user_time()),
        sys: tv(usage.system_time()),
    };

    let exit = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    let line = report.to_line(exit);
    match &args.out {
        Some(path) => {
            std::fs::write(path, format!("{line}\n")).with_context(|| format!("rss: write {}", path.display()))?
        }
        None => eprintln!("{line}"),
    }
    Ok(ExitCode::from(u8::try_from(exit).unwrap_or(1)))
}

//! The Windows build of packrat under Wine (the `wine` service of `cargo xtask ci`): scratch
//! installations on drive `D:` and a runner for `packrat.exe`.
//!
//! The service exports `PACKRAT_TEST_WINE`, `PACKRAT_TEST_WINEPREFIX`, `PACKRAT_TEST_WINE_BIN` and
//! `PACKRAT_TEST_WINE_DRIVE_D`; a test without them fails and says how to start the service.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{Run, run_guarded};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the Windows build under Wine with `cargo xtask services up --only wine` (cargo xtask ci does)")
    })
}

/// A scratch directory on the Wine drive `D:` (removed on drop), seen from both sides.
#[derive(Debug)]
pub struct WinEnv {
    /// The directory as Linux sees it.
    pub unix: PathBuf,
    /// The same directory as the Windows build sees it (`D:\packrat-tests\NAME`).
    pub win: String,
}

impl WinEnv {
    /// A fresh directory `D:\packrat-tests\NAME-PID-N`.
    pub fn new(name: &str) -> WinEnv {
        static N: AtomicU32 = AtomicU32::new(0);
        let leaf = format!("{name}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let unix = PathBuf::from(var("PACKRAT_TEST_WINE_DRIVE_D"))
            .join("packrat-tests")
            .join(&leaf);
        let _ = std::fs::remove_dir_all(&unix);
        std::fs::create_dir_all(&unix).expect("create the scratch directory on D:");
        WinEnv {
            unix,
            win: format!(r"D:\packrat-tests\{leaf}"),
        }
    }

    /// `REL` (with `\` separators) below the directory, as Windows sees it.
    pub fn win_path(&self, rel: &str) -> String {
        format!(r"{}\{rel}", self.win)
    }

    /// `REL` (with `\` separators) below the directory, as Linux sees it.
    pub fn unix_path(&self, rel: &str) -> PathBuf {
        rel.split('\\').fold(self.unix.clone(), |p, part| p.join(part))
    }

    /// `EXE` (a Windows binary of the build) under Wine, with the scratch directory as the
    /// working directory and a clean environment.
    fn wine(&self, exe: &str) -> Command {
        let mut c = Command::new(var("PACKRAT_TEST_WINE"));
        c.arg(PathBuf::from(var("PACKRAT_TEST_WINE_BIN")).join(exe))
            .env("WINEPREFIX", var("PACKRAT_TEST_WINEPREFIX"))
            .env("WINEDEBUG", "-all")
            .env("LANG", "C.UTF-8")
            .env_remove("PACKRAT_CONFIG")
            .env_remove("RUST_LOG")
            .current_dir(&self.unix);
        c
    }

    /// `packrat.exe ARGS` under Wine, with `--config` at `packrat.toml` in the scratch directory
    /// unless `args` starts with `demo`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.wine("packrat.exe");
        if args.first() != Some(&"demo") {
            c.arg("--config").arg(self.win_path("packrat.toml"));
        }
        c.args(args);
        c
    }

    /// `packratd.exe --config D:\…\packrat.toml` under Wine (not started).
    pub fn daemon(&self) -> Command {
        let mut c = self.wine("packratd.exe");
        c.arg("--config").arg(self.win_path("packrat.toml"));
        c
    }

    /// Runs `packrat.exe ARGS` and waits (killed after 5 minutes: a hang guard, not a timing check).
    pub fn run(&self, args: &[&str]) -> Run {
        run_guarded(&mut self.cmd(args), Duration::from_secs(300))
    }

    /// Writes `packrat.toml`.
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.unix.join("packrat.toml"), text).expect("write config");
    }
}

impl Drop for WinEnv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.unix);
    }
}

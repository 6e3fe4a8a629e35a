//! The `wine` service: the Windows build of packrat, ready to run under Debian's Wine 8.0, for the
//! Windows end-to-end tests (`tests/wine.rs`).
//!
//! * Prerequisites: `wine` (Debian's Wine, with `wine64`) and `gcc-mingw-w64-x86-64` (the Windows linker).
//! * Builds `packrat.exe` and `packratd.exe` (`cargo build --target x86_64-pc-windows-gnu`, debug)
//!   and copies them into `target/ci-services/wine/bin/`. The binaries are those of the checkout
//!   at `start`: after changing the code, start the service again.
//! * Beside them, `bcryptprimitives.dll`: Rust's std imports `ProcessPrng` from it and Wine 8.0
//!   lacks it. The shim exports `ProcessPrng` on top of `SystemFunction036` (advapi32); a real
//!   Windows has the DLL and needs nothing of this.
//! * A Wine prefix under `target/ci-services/wine/prefix` with drive `D:` mapped to
//!   `target/ci-services/wine/drive-d`, so tests use Windows paths such as
//!   `D:\incrementalBackups`.
//! * Exports `PACKRAT_TEST_WINE` (the `wine` program), `PACKRAT_TEST_WINEPREFIX`,
//!   `PACKRAT_TEST_WINE_BIN` (the directory of the `.exe` files) and `PACKRAT_TEST_WINE_DRIVE_D`
//!   (the Linux directory behind `D:`).
//! * Stops the prefix's `wineserver` (and with it every Windows process left) on `stop`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

use super::Service;
use crate::prereqs::{Prereq, WINDOWS_TARGET};
use crate::util;

/// `ProcessPrng` for Wine 8.0, which has no `bcryptprimitives.dll`.
const PRNG_SHIM: &str = r"#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) { return SystemFunction036(data, (ULONG)length); }
";

/// The Windows build under Wine.
#[derive(Debug, Default)]
pub struct Wine {
    started: bool,
}

impl Wine {
    fn dir() -> PathBuf {
        util::target_dir().join("ci-services").join("wine")
    }

    fn wine_cmd(program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("WINEPREFIX", Self::dir().join("prefix"))
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=");
        cmd
    }
}

impl Service for Wine {
    fn name(&self) -> &'static str {
        "wine"
    }

    fn prereqs(&self) -> Vec<Prereq> {
        vec![
            // Debian's `wine` holds the `wine`, `wineboot` and `wineserver` commands and pulls in
            // `wine64` (the 64-bit loader, all a Windows x86_64 build needs); `wine64` alone
            // installs only /usr/lib/wine/wine64.
            Prereq::apt("wine", "wine"),
            Prereq::apt("x86_64-w64-mingw32-gcc", "gcc-mingw-w64-x86-64"),
        ]
    }

    fn start(&mut self) -> Result<Vec<(String, String)>> {
        let dir = Self::dir();
        let bin = dir.join("bin");
        fs::create_dir_all(&bin).with_context(|| format!("create {}", bin.display()))?;
        eprintln!("  building packrat.exe and packratd.exe ({WINDOWS_TARGET}, debug)");
        util::run(util::cargo().args(["build", "-p", "packrat", "-p", "packratd", "--target", WINDOWS_TARGET]))?;
        let built = util::target_dir().join(WINDOWS_TARGET).join("debug");
        for exe in ["packrat.exe", "packratd.exe"] {
            fs::copy(built.join(exe), bin.join(exe)).with_context(|| format!("copy {exe} into {}", bin.display()))?;
        }
        let shim = dir.join("prng.c");
        fs::write(&shim, PRNG_SHIM).with_context(|| format!("write {}", shim.display()))?;
        util::run(
            Command::new("x86_64-w64-mingw32-gcc")
                .args(["-shared", "-o"])
                .arg(bin.join("bcryptprimitives.dll"))
                .arg(&shim)
                .args(["-ladvapi32", "-Wl,--kill-at"]),
        )?;

        let prefix = dir.join("prefix");
        if !prefix.join("system.reg").exists() {
            eprintln!("  creating the Wine prefix {}", prefix.display());
        }
        util::run(Self::wine_cmd("wineboot").arg("--init"))?;
        util::run(Self::wine_cmd("wineserver").arg("--wait"))?;
        // A persistent wineserver for the whole test run: by default it exits a few seconds
        // after its last client, and a Windows process starting in that moment dies with "wine
        // client error: recvmsg: Connection reset by peer". `stop` kills it.
        util::run(Self::wine_cmd("wineserver").arg("--persistent"))?;
        let drive_d = dir.join("drive-d");
        fs::create_dir_all(&drive_d).with_context(|| format!("create {}", drive_d.display()))?;
        let link = prefix.join("dosdevices").join("d:");
        let _ = fs::remove_file(&link);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&drive_d, &link)
            .with_context(|| format!("map D: to {} ({})", drive_d.display(), link.display()))?;
        self.started = true;
        let wine = util::find_in_path("wine").context("`wine` is not on PATH; install Debian's wine")?;
        Ok(vec![
            ("PACKRAT_TEST_WINE".into(), wine.display().to_string()),
            ("PACKRAT_TEST_WINEPREFIX".into(), prefix.display().to_string()),
            ("PACKRAT_TEST_WINE_BIN".into(), bin.display().to_string()),
            ("PACKRAT_TEST_WINE_DRIVE_D".into(), drive_d.display().to_string()),
        ])
    }

    fn stop(&mut self) -> Result<()> {
        if std::mem::take(&mut self.started) {
            let _ = Self::wine_cmd("wineserver").arg("--kill").status();
        }
        Ok(())
    }
}

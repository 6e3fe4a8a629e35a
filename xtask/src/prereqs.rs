//! Prerequisites: tools the checks and benches need, installed only when missing.
//!
//! Each [`Prereq`] knows how to tell whether it is present and how to install it. [`ensure`]
//! checks a list, then installs what is missing in batches: one `apt-get update` and one
//! `apt-get install` for all missing Debian packages (root only; otherwise it prints the command
//! and fails), then `rustup` targets/components, then `cargo install --locked` tools, then tools
//! xtask builds into its cache outside the checkout ([`Kind::Cached`], e.g. the Garage binary).
//!
//! To add a tool (Docker, Samba, a MongoDB-wire server, ...), add a [`Prereq`] to
//! [`ci_prereqs`], or return it from the `prereqs()` of the [`crate::services::Service`] that
//! needs it. New install methods (e.g. a pip venv) become a new [`Kind`] variant.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

use crate::util::{self, find_in_path};

/// The Rust target of the Windows cross-check.
pub const WINDOWS_TARGET: &str = "x86_64-pc-windows-gnu";

/// One tool that must be present.
#[derive(Debug, Clone)]
pub struct Prereq {
    /// What it is, for messages (e.g. `sqlite3`).
    pub name: &'static str,
    /// How to detect and install it.
    pub kind: Kind,
}

/// How a prerequisite is detected and installed.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A program on `PATH`, from a Debian package.
    Apt {
        program: &'static str,
        package: &'static str,
    },
    /// A rustup target (`rustup target list --installed`).
    RustupTarget(&'static str),
    /// A rustup component, present when `cargo <subcommand> --version` works.
    RustupComponent {
        subcommand: &'static str,
        component: &'static str,
    },
    /// A cargo subcommand, present when `cargo <subcommand> --version` works, else
    /// `cargo install --locked <krate>`.
    CargoTool {
        subcommand: &'static str,
        krate: &'static str,
    },
    /// A module of `python3`, present when `python3 -c "import <module>"` works, else the
    /// Debian package (e.g. `ensurepip` from `python3-venv`).
    PythonModule {
        module: &'static str,
        package: &'static str,
    },
    /// A tool xtask builds itself into a cache outside the checkout (e.g. the Garage binary,
    /// see [`crate::services::garage`]): present when `is_present` says so, else `install`.
    Cached {
        is_present: fn() -> bool,
        install: fn() -> Result<()>,
    },
}

impl Prereq {
    /// A program from a Debian package.
    pub const fn apt(program: &'static str, package: &'static str) -> Self {
        Self {
            name: program,
            kind: Kind::Apt { program, package },
        }
    }

    fn is_present(&self) -> bool {
        match &self.kind {
            Kind::Apt { program, .. } => find_in_path(program).is_some(),
            Kind::PythonModule { module, .. } => util::succeeds(
                Command::new(crate::services::mongo::system_python()).args(["-c", &format!("import {module}")]),
            ),
            Kind::RustupTarget(target) => installed_targets().iter().any(|t| t == target),
            Kind::Cached { is_present, .. } => is_present(),
            Kind::RustupComponent { subcommand, .. } | Kind::CargoTool { subcommand, .. } => {
                util::succeeds(util::cargo().args([subcommand, "--version"]))
            }
        }
    }
}

/// Everything `cargo xtask ci` needs beyond a Rust toolchain.
pub fn ci_prereqs() -> Vec<Prereq> {
    vec![
        Prereq::apt("sqlite3", "sqlite3"),
        Prereq::apt("zstd", "zstd"),
        // The standard age tool: the tests decrypt encrypted packs with it, as an operator would.
        Prereq::apt("age", "age"),
        // Headless Chromium and its WebDriver for the dashboard's browser tests (tests/dashboard.rs);
        // a CJK font so that the Chinese page's screenshots show glyphs.
        Prereq::apt("chromium", "chromium"),
        Prereq::apt("chromedriver", "chromium-driver"),
        Prereq {
            name: "fonts-wqy-microhei",
            kind: Kind::Cached {
                is_present: || std::path::Path::new("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc").exists(),
                install: || apt_install(&["fonts-wqy-microhei"]),
            },
        },
        Prereq::apt("x86_64-w64-mingw32-gcc", "gcc-mingw-w64-x86-64"),
        Prereq {
            name: "rustfmt",
            kind: Kind::RustupComponent {
                subcommand: "fmt",
                component: "rustfmt",
            },
        },
        Prereq {
            name: "clippy",
            kind: Kind::RustupComponent {
                subcommand: "clippy",
                component: "clippy",
            },
        },
        Prereq {
            name: WINDOWS_TARGET,
            kind: Kind::RustupTarget(WINDOWS_TARGET),
        },
        Prereq {
            name: "cargo-nextest",
            kind: Kind::CargoTool {
                subcommand: "nextest",
                krate: "cargo-nextest",
            },
        },
        Prereq {
            name: "cargo-deny",
            kind: Kind::CargoTool {
                subcommand: "deny",
                krate: "cargo-deny",
            },
        },
    ]
}

/// Checks every prerequisite and installs the missing ones. Idempotent.
pub fn ensure(prereqs: &[Prereq]) -> Result<()> {
    let missing: Vec<&Prereq> = prereqs
        .iter()
        .filter(|p| {
            let present = p.is_present();
            eprintln!("  {:<8} {}", if present { "present" } else { "MISSING" }, p.name);
            !present
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }

    let packages: Vec<&str> = missing
        .iter()
        .filter_map(|p| match p.kind {
            Kind::Apt { package, .. } | Kind::PythonModule { package, .. } => Some(package),
            _ => None,
        })
        .collect();
    if !packages.is_empty() {
        apt_install(&packages)?;
    }

    for prereq in &missing {
        match &prereq.kind {
            Kind::Apt { .. } | Kind::PythonModule { .. } => {}
            Kind::RustupTarget(target) => {
                util::run(Command::new("rustup").args(["target", "add", target]))?;
            }
            Kind::RustupComponent { component, .. } => {
                util::run(Command::new("rustup").args(["component", "add", component]))?;
            }
            Kind::CargoTool { krate, .. } => {
                util::run(util::cargo().args(["install", "--locked", krate]))?;
            }
            // Built last: they may need the packages and tools above.
            Kind::Cached { .. } => {}
        }
    }
    for prereq in &missing {
        if let Kind::Cached { install, .. } = &prereq.kind {
            install()?;
        }
    }

    let still_missing: Vec<&str> = missing.iter().filter(|p| !p.is_present()).map(|p| p.name).collect();
    if !still_missing.is_empty() {
        bail!("still missing after installation: {}", still_missing.join(", "));
    }
    Ok(())
}

/// `apt-get update` (once per process) and `apt-get install` of `packages`; root only.
fn apt_install(packages: &[&str]) -> Result<()> {
    static UPDATED: AtomicBool = AtomicBool::new(false);

    let install_line = format!("apt-get install -y --no-install-recommends {}", packages.join(" "));
    if !nix::unistd::geteuid().is_root() {
        bail!("missing Debian packages; as root, run: apt-get update && {install_line}");
    }
    if find_in_path("apt-get").is_none() {
        bail!("missing packages and no apt-get to install them: {install_line}");
    }
    if !UPDATED.swap(true, Ordering::SeqCst) {
        util::run(
            Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    util::run(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn installed_targets() -> Vec<String> {
    util::stdout_of(Command::new("rustup").args(["target", "list", "--installed"]))
        .map(|out| out.lines().map(|l| l.trim().to_owned()).collect())
        .unwrap_or_default()
}

//! The `mongo` service: a real MongoDB wire-protocol server (SecantusDB, from PyPI) on loopback,
//! with authentication, for the tests of `source-mongo` and the end-to-end tests.
//!
//! * Installs `SecantusDB==0.7.0b3` (which brings `pymongo`, used by the tests as an independent
//!   BSON reader) into a venv under `target/ci-services/mongo/venv`, once.
//! * Starts `secantusd-py` on 127.0.0.1 with a free port and fresh storage, creates the admin user
//!   (the Python build cannot create the first user on an `--auth` server), then restarts it with
//!   `--auth` on the same port.
//! * Exports `PACKRAT_TEST_MONGO_URI` (admin user, with a password full of URI-special
//!   characters), `PACKRAT_TEST_MONGO_BIN` (the server binary, for tests that need a private
//!   server they can kill) and `PACKRAT_TEST_MONGO_PYTHON` (the venv's python with `bson`).
//! * A leftover server of an interrupted run (pid file) is killed on the next start.

use std::fs;
use std::io::Read as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Service;
use crate::prereqs::{Kind, Prereq};
use crate::util;

/// The SecantusDB release the tests run against.
pub const SECANTUS: &str = "SecantusDB==0.7.0b3";
const USER: &str = "packrat_admin";

/// The MongoDB-wire test server.
#[derive(Debug, Default)]
pub struct Mongo {
    child: Option<Child>,
}

impl Mongo {
    fn dir() -> PathBuf {
        util::target_dir().join("ci-services").join("mongo")
    }

    fn venv_bin(name: &str) -> PathBuf {
        Self::dir().join("venv").join("bin").join(name)
    }

    /// Creates the venv and installs SecantusDB unless already done for this version.
    pub fn ensure_installed() -> Result<()> {
        let dir = Self::dir();
        let marker = dir.join("venv").join(".packrat-installed");
        if fs::read_to_string(&marker).is_ok_and(|s| s.trim() == SECANTUS) && Self::venv_bin("secantusd-py").is_file() {
            return Ok(());
        }
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        util::run(
            Command::new(system_python())
                .args(["-m", "venv", "--clear"])
                .arg(dir.join("venv")),
        )?;
        util::run(
            Command::new(Self::venv_bin("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", SECANTUS])
                .env("PIP_NO_INPUT", "1"),
        )?;
        fs::write(&marker, SECANTUS).with_context(|| format!("write {}", marker.display()))?;
        Ok(())
    }

    fn spawn(&mut self, port: u16, auth: bool) -> Result<u16> {
        let dir = Self::dir();
        let log_path = dir.join(if auth { "server.log" } else { "setup.log" });
        let log = fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let mut cmd = Command::new(Self::venv_bin("secantusd-py"));
        cmd.args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            // INFO: `wait_listening` reads the "listening on" line.
            "--log-level",
            "INFO",
            "--storage-path",
        ])
        .arg(dir.join("data"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        if auth {
            cmd.arg("--auth");
        }
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd.spawn().context("start secantusd-py")?;
        fs::write(dir.join("server.pid"), child.id().to_string())?;
        self.child = Some(child);
        wait_listening(&log_path, port, self.child.as_mut())
    }

    fn stop_child(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            // kill(2) directly: procps' `kill -TERM -12345` would signal `-1`, every process.
            let _ = crate::util::signal("TERM", &format!("-{}", child.id()));
            let t0 = Instant::now();
            while child.try_wait()?.is_none() {
                if t0.elapsed() > Duration::from_secs(15) {
                    let _ = crate::util::signal("KILL", &format!("-{}", child.id()));
                    child.wait()?;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = fs::remove_file(Self::dir().join("server.pid"));
        }
        Ok(())
    }

    /// Kills a server left running by an interrupted earlier run.
    fn kill_leftover() {
        let pid_file = Self::dir().join("server.pid");
        let Ok(pid) = fs::read_to_string(&pid_file) else { return };
        let pid = pid.trim();
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("secantusd-py") {
            eprintln!("  killing leftover secantusd-py (pid {pid})");
            let _ = crate::util::signal("KILL", &format!("-{pid}"));
            let _ = crate::util::signal("KILL", pid);
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = fs::remove_file(pid_file);
    }
}

/// The system's Python (Debian's, which has `ssl` for PyPI), else `python3` from `PATH`.
pub fn system_python() -> PathBuf {
    let debian = Path::new("/usr/bin/python3");
    if debian.is_file() {
        debian.to_path_buf()
    } else {
        PathBuf::from("python3")
    }
}

/// Waits until the server logs that it listens (the port it chose with `--port 0`) and accepts
/// connections.
fn wait_listening(log: &Path, port: u16, mut child: Option<&mut Child>) -> Result<u16> {
    let t0 = Instant::now();
    loop {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(log) {
            let _ = f.read_to_string(&mut text);
        }
        let found = text
            .lines()
            .filter_map(|l| l.split("listening on 127.0.0.1:").nth(1))
            .filter_map(|p| p.trim().parse::<u16>().ok())
            .next_back()
            .or((port != 0).then_some(port));
        if let Some(p) = found
            && text.contains("listening on")
            && TcpStream::connect(("127.0.0.1", p)).is_ok()
        {
            return Ok(p);
        }
        if let Some(c) = child.as_deref_mut()
            && let Some(status) = c.try_wait()?
        {
            bail!(
                "secantusd-py exited ({status}) before listening; log {}:\n{text}",
                log.display()
            );
        }
        if t0.elapsed() > Duration::from_secs(90) {
            bail!(
                "secantusd-py did not listen within 90 s; log {}:\n{text}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A password with URI-special characters, different on every run.
fn password() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("Pk:{:x}@/{}%x", nanos ^ u128::from(std::process::id()), nanos % 9973)
}

/// Percent-encodes everything but unreserved characters.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Service for Mongo {
    fn name(&self) -> &'static str {
        "mongo"
    }

    fn prereqs(&self) -> Vec<Prereq> {
        vec![
            Prereq::apt("python3", "python3"),
            Prereq {
                name: "python3-venv",
                kind: Kind::PythonModule {
                    module: "ensurepip",
                    package: "python3-venv",
                },
            },
        ]
    }

    fn start(&mut self) -> Result<Vec<(String, String)>> {
        Self::kill_leftover();
        Self::ensure_installed()?;
        let dir = Self::dir();
        util::remove_path(&dir.join("data"))?;

        // 1. Without --auth: create the admin user.
        let port = self.spawn(0, false)?;
        let pw = password();
        let script = "import sys, pymongo\n\
                      c = pymongo.MongoClient(sys.argv[1], directConnection=True, serverSelectionTimeoutMS=20000)\n\
                      c.admin.command('createUser', sys.argv[2], pwd=sys.argv[3], roles=['root'])\n";
        let mut create = Command::new(Self::venv_bin("python"));
        create
            .args(["-c", script, &format!("mongodb://127.0.0.1:{port}/"), USER])
            .arg(&pw);
        let out = create.output().context("run python to create the test user")?;
        if !out.status.success() {
            bail!(
                "creating the test user failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        self.stop_child()?;

        // 2. With --auth, on the same port.
        self.spawn(port, true)?;
        let uri = format!("mongodb://{USER}:{}@127.0.0.1:{port}/?authSource=admin", encode(&pw));
        Ok(vec![
            ("PACKRAT_TEST_MONGO_URI".into(), uri),
            (
                "PACKRAT_TEST_MONGO_BIN".into(),
                Self::venv_bin("secantusd-py").display().to_string(),
            ),
            (
                "PACKRAT_TEST_MONGO_PYTHON".into(),
                Self::venv_bin("python").display().to_string(),
            ),
        ])
    }

    fn stop(&mut self) -> Result<()> {
        self.stop_child()
    }
}

//! The `smtp` service: a real SMTP server (Python's `aiosmtpd` from PyPI) on loopback that
//! stores every message it receives in a Maildir, for the alert-delivery tests.
//!
//! * Installs `aiosmtpd==1.4.6` into a venv under `target/ci-services/smtp/venv`, once.
//! * Starts `aiosmtpd -n -l 127.0.0.1:PORT -c aiosmtpd.handlers.Mailbox MAILDIR` on a free port
//!   with a fresh Maildir.
//! * Exports `PACKRAT_TEST_SMTP_ADDR` (`127.0.0.1:PORT`) and `PACKRAT_TEST_SMTP_MAILDIR`.
//! * A leftover server of an interrupted run (pid file) is killed on the next start.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Service;
use crate::prereqs::{Kind, Prereq};
use crate::util;

/// The aiosmtpd release the tests run against.
pub const AIOSMTPD: &str = "aiosmtpd==1.4.6";

/// The SMTP test server.
#[derive(Debug, Default)]
pub struct Smtp {
    child: Option<Child>,
}

impl Smtp {
    fn dir() -> PathBuf {
        util::target_dir().join("ci-services").join("smtp")
    }

    fn venv_bin(name: &str) -> PathBuf {
        Self::dir().join("venv").join("bin").join(name)
    }

    /// Creates the venv and installs aiosmtpd unless already done for this version.
    pub fn ensure_installed() -> Result<()> {
        let dir = Self::dir();
        let marker = dir.join("venv").join(".packrat-installed");
        if fs::read_to_string(&marker).is_ok_and(|s| s.trim() == AIOSMTPD) && Self::venv_bin("aiosmtpd").is_file() {
            return Ok(());
        }
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        util::run(Command::new("python3").args(["-m", "venv"]).arg(dir.join("venv")))?;
        util::run(
            Command::new(Self::venv_bin("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", AIOSMTPD])
                .env("PIP_NO_INPUT", "1"),
        )?;
        fs::write(&marker, AIOSMTPD).with_context(|| format!("write {}", marker.display()))?;
        Ok(())
    }

    fn kill_leftover() {
        let pid_file = Self::dir().join("server.pid");
        let Ok(pid) = fs::read_to_string(&pid_file) else { return };
        let pid = pid.trim();
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("aiosmtpd") {
            eprintln!("  killing leftover aiosmtpd (pid {pid})");
            let _ = crate::util::signal("KILL", pid);
            std::thread::sleep(Duration::from_millis(300));
        }
        let _ = fs::remove_file(pid_file);
    }
}

impl Service for Smtp {
    fn name(&self) -> &'static str {
        "smtp"
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
        let maildir = dir.join("maildir");
        util::remove_path(&maildir)?;
        for sub in ["tmp", "new", "cur"] {
            let d = maildir.join(sub);
            fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("find a free port")?
            .port();
        let log_path = dir.join("server.log");
        let log = fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let child = Command::new(Self::venv_bin("aiosmtpd"))
            .args([
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start aiosmtpd")?;
        fs::write(dir.join("server.pid"), child.id().to_string())?;
        self.child = Some(child);
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                let text = fs::read_to_string(&log_path).unwrap_or_default();
                bail!("aiosmtpd exited ({status}) before listening:\n{text}");
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!(
                    "aiosmtpd did not listen on port {port} within 30 s; see {}",
                    log_path.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(vec![
            ("PACKRAT_TEST_SMTP_ADDR".into(), format!("127.0.0.1:{port}")),
            ("PACKRAT_TEST_SMTP_MAILDIR".into(), maildir.display().to_string()),
        ])
    }

    fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = fs::remove_file(Self::dir().join("server.pid"));
        }
        Ok(())
    }
}

//! The `docker` service: a real Docker engine (Debian's `docker.io`, 20.10, API 1.41) for the
//! tests of `source-docker`, the end-to-end tests and `cargo xtask bench docker`.
//!
//! * Prerequisites: `docker.io` (dockerd and `/usr/bin/docker`), `docker-compose` (v1, works
//!   offline) and `busybox-static` (the test image).
//! * Starts `dockerd` in its own process group with its state under
//!   `target/ci-services/docker/` (data root, socket, pid file, log) and a short exec root under
//!   `/run`, and waits for the socket to answer. An engine already answering at
//!   `/var/run/docker.sock` (a developer's own) is used as it is and never stopped.
//! * Builds the test image `packrat-test/busybox:latest` without any registry: a root file
//!   system with the static busybox and one symlink per applet, `docker import`ed (once; kept in
//!   the data root).
//! * Exports `DOCKER_HOST`, `PACKRAT_TEST_DOCKER_HOST`, `PACKRAT_TEST_DOCKER_IMAGE`,
//!   `PACKRAT_TEST_DOCKER_CLI` (`/usr/bin/docker`: another client may come first on `PATH`),
//!   `PACKRAT_TEST_DOCKER_COMPOSE` and `PACKRAT_TEST_DOCKERD` (the daemon binary, for tests that
//!   start an engine of their own on an empty state directory: "a new host").
//! * A daemon left running by an interrupted run (pid file) is stopped on the next start.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Service;
use crate::prereqs::Prereq;
use crate::util;

/// The locally built test image.
pub const IMAGE: &str = "packrat-test/busybox:latest";
/// The Docker CLI of the `docker.io` package.
pub const CLI: &str = "/usr/bin/docker";
const SYSTEM_SOCKET: &str = "/var/run/docker.sock";
const EXEC_ROOT: &str = "/run/packrat-ci-docker";

/// The Docker engine for the tests.
#[derive(Debug, Default)]
pub struct Docker {
    child: Option<Child>,
    host: Option<String>,
}

impl Docker {
    fn dir() -> PathBuf {
        util::target_dir().join("ci-services").join("docker")
    }

    fn socket() -> PathBuf {
        let s = Self::dir().join("docker.sock");
        // Unix socket paths are limited to 107 bytes.
        if s.as_os_str().len() < 100 {
            s
        } else {
            PathBuf::from("/run/packrat-ci-docker.sock")
        }
    }

    /// `/usr/bin/docker -H <host> ARGS…`.
    pub fn cli(host: &str) -> Command {
        let mut c = Command::new(CLI);
        c.args(["-H", host]);
        c
    }

    fn answers(host: &str) -> bool {
        util::succeeds(Self::cli(host).args(["version", "--format", "{{.Server.APIVersion}}"]))
    }

    /// Kills a daemon left running by an interrupted earlier run.
    fn kill_leftover() {
        let pid_file = Self::dir().join("dockerd.pid");
        let Ok(pid) = fs::read_to_string(&pid_file) else { return };
        let pid = pid.trim().to_string();
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("dockerd") {
            eprintln!("  stopping leftover dockerd (pid {pid})");
            signal("TERM", &pid);
            let t0 = Instant::now();
            while Path::new(&format!("/proc/{pid}")).exists() && t0.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(200));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                // dockerd was started in its own process group, with its containerd.
                signal("KILL", &format!("-{pid}"));
            }
        }
        let _ = fs::remove_file(pid_file);
    }

    fn spawn(&mut self) -> Result<String> {
        let dir = Self::dir();
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        Self::kill_leftover();
        let socket = Self::socket();
        let _ = fs::remove_file(&socket);
        let host = format!("unix://{}", socket.display());
        let log_path = dir.join("dockerd.log");
        let log = fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let mut cmd = Command::new(dockerd_bin());
        cmd.arg("--data-root")
            .arg(dir.join("data"))
            .args(["--exec-root", EXEC_ROOT, "--host", &host, "--shutdown-timeout", "5"])
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd.spawn().context("start dockerd")?;
        self.child = Some(child);
        let t0 = Instant::now();
        while !Self::answers(&host) {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "dockerd exited ({status}) before answering; log {}:\n{}",
                    log_path.display(),
                    tail(&log_path)
                );
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!(
                    "dockerd did not answer at {host} within 60 s; log {}:\n{}",
                    log_path.display(),
                    tail(&log_path)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(host)
    }

    /// Imports the busybox test image unless it exists.
    pub fn ensure_image(host: &str) -> Result<()> {
        if util::succeeds(Self::cli(host).args(["image", "inspect", IMAGE])) {
            return Ok(());
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .context("busybox not found; install Debian's busybox-static")?;
        let bytes = fs::read(&busybox).with_context(|| format!("read {}", busybox.display()))?;
        if has_interpreter(&bytes) {
            bail!(
                "{} is dynamically linked and cannot run in an empty image; install busybox-static",
                busybox.display()
            );
        }
        let work = Self::dir().join("image-build");
        util::remove_path(&work)?;
        let bin = work.join("rootfs").join("bin");
        fs::create_dir_all(&bin)?;
        fs::create_dir_all(work.join("rootfs").join("tmp"))?;
        fs::copy(&busybox, bin.join("busybox"))?;
        let applets = util::stdout_of(Command::new(&busybox).arg("--list"))?;
        for applet in applets
            .lines()
            .map(str::trim)
            .filter(|a| !a.is_empty() && *a != "busybox")
        {
            std::os::unix::fs::symlink("busybox", bin.join(applet))
                .with_context(|| format!("symlink applet {applet}"))?;
        }
        let tar = work.join("rootfs.tar");
        util::run(
            Command::new("tar")
                .arg("-C")
                .arg(work.join("rootfs"))
                .arg("-cf")
                .arg(&tar)
                .arg("."),
        )?;
        util::run(
            Self::cli(host)
                .args(["import", "-c", "CMD [\"/bin/sh\"]"])
                .arg(&tar)
                .arg(IMAGE),
        )?;
        util::remove_path(&work)
    }

    /// Starts the engine (or adopts a running system engine) and builds the test image; returns
    /// the address.
    pub fn start_engine(&mut self) -> Result<String> {
        let system = format!("unix://{SYSTEM_SOCKET}");
        let host = if Path::new(SYSTEM_SOCKET).exists() && Self::answers(&system) {
            eprintln!("  using the Docker engine already running at {system}");
            system
        } else {
            self.spawn()?
        };
        Self::ensure_image(&host)?;
        self.host = Some(host.clone());
        Ok(host)
    }
}

/// Whether an ELF64 little-endian executable names a program interpreter (is dynamically linked).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let Some(phoff) = elf
        .get(0x20..0x28)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    else {
        return true;
    };
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    if !elf.starts_with(b"\x7fELF") || size == 0 {
        return true;
    }
    (0..count).any(|i| {
        let at = usize::try_from(phoff).unwrap_or(usize::MAX).saturating_add(i * size);
        elf.get(at..at + 4) == Some(&3u32.to_le_bytes()[..]) // PT_INTERP
    })
}

/// `kill -s SIG -- TARGET`; a negative target is a process group. The `--` matters: procps-ng's
/// `kill -KILL -12345` parses `-12345` as `-1`, which signals every process on the machine.
fn signal(sig: &str, target: &str) {
    let _ = util::signal(sig, target);
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl Service for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn prereqs(&self) -> Vec<Prereq> {
        vec![
            Prereq::apt("dockerd", "docker.io"),
            Prereq::apt("docker-compose", "docker-compose"),
            Prereq::apt("busybox", "busybox-static"),
            Prereq::apt("zstd", "zstd"),
        ]
    }

    fn start(&mut self) -> Result<Vec<(String, String)>> {
        let host = self.start_engine()?;
        let compose = util::find_in_path("docker-compose").unwrap_or_else(|| PathBuf::from("/usr/bin/docker-compose"));
        Ok(vec![
            ("DOCKER_HOST".into(), host.clone()),
            ("PACKRAT_TEST_DOCKER_HOST".into(), host),
            ("PACKRAT_TEST_DOCKER_IMAGE".into(), IMAGE.into()),
            ("PACKRAT_TEST_DOCKER_CLI".into(), CLI.into()),
            ("PACKRAT_TEST_DOCKER_COMPOSE".into(), compose.display().to_string()),
            ("PACKRAT_TEST_DOCKERD".into(), dockerd_bin().display().to_string()),
        ])
    }

    fn stop(&mut self) -> Result<()> {
        self.host = None;
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().to_string();
        // dockerd stops its containerd itself on SIGTERM.
        signal("TERM", &pid);
        let t0 = Instant::now();
        while child.try_wait()?.is_none() {
            if t0.elapsed() > Duration::from_secs(30) {
                // Its own process group: dockerd and the containerd it started.
                signal("KILL", &format!("-{pid}"));
                child.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = fs::remove_file(Self::dir().join("dockerd.pid"));
        Ok(())
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The `dockerd` binary.
fn dockerd_bin() -> PathBuf {
    util::find_in_path("dockerd").unwrap_or_else(|| PathBuf::from("/usr/sbin/dockerd"))
}

#[cfg(test)]
mod tests {
    use super::has_interpreter;

    fn elf(segment_types: &[u32]) -> Vec<u8> {
        let mut e = vec![0u8; 64 + 56 * segment_types.len()];
        e[..4].copy_from_slice(b"\x7fELF");
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&(segment_types.len() as u16).to_le_bytes());
        for (i, t) in segment_types.iter().enumerate() {
            e[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        e
    }

    #[test]
    fn static_and_dynamic_executables_are_told_apart() {
        assert!(!has_interpreter(&elf(&[1, 1, 4])), "static: LOAD, LOAD, NOTE");
        assert!(has_interpreter(&elf(&[6, 3, 1])), "dynamic: PHDR, INTERP, LOAD");
        assert!(has_interpreter(b"#!/bin/sh\n"), "not ELF: refused");
        assert!(
            has_interpreter(&std::fs::read("/bin/sh").unwrap()),
            "/bin/sh is dynamic on Debian"
        );
    }
}

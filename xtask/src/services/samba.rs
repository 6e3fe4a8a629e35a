//! The `samba` service: a real SMB share for the replica tests. The kernel here has no CIFS
//! client, so the share is mounted through FUSE with `smbnetfs`.
//!
//! * `smbd -F -s <conf>` on 127.0.0.1, port 4455, with private state/lock/cache/pid dirs and one
//!   guest-writable share `packrat` stored in `target/ci-services/samba/share`.
//! * `smbnetfs -f <fuse dir>` with its config in a private `$HOME/.smb/` (mode 600); the share
//!   appears at `<fuse dir>/127.0.0.1:4455/packrat` and is bind-mounted to
//!   `target/ci-services/samba/mnt`, a stable mount point of type `fuse.smbnetfs`.
//! * Exports `PACKRAT_TEST_SMB_MOUNT` (that mount point), `PACKRAT_TEST_SMB_FSTYPE`
//!   (`fuse.smbnetfs`, the type the tests must allow) and `PACKRAT_TEST_SMB_BACKING` (where the
//!   server keeps the files, to compare bytes on the server side).
//! * Leftovers of an interrupted run (mounts, smbd by pid file) are removed on the next start.
//!
//! Needs root (FUSE, bind mounts). Start it by hand for local test runs with
//! `cargo xtask ci --skip …` or as described in `docs/replica.md`.

use std::fs;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Service;
use crate::prereqs::Prereq;
use crate::util;

/// The port smbd listens on (not 445, so a system Samba does not collide).
pub const PORT: u16 = 4455;
/// The share's name.
pub const SHARE: &str = "packrat";
/// The filesystem type the mounted share shows in mountinfo.
pub const FS_TYPE: &str = "fuse.smbnetfs";

/// Samba plus its FUSE mount.
#[derive(Debug, Default)]
pub struct Samba {
    smbd: Option<Child>,
    smbnetfs: Option<Child>,
}

impl Samba {
    /// `target/ci-services/samba`.
    pub fn dir() -> PathBuf {
        util::target_dir().join("ci-services").join("samba")
    }

    /// The stable mount point of the share.
    pub fn mount_point() -> PathBuf {
        Self::dir().join("mnt")
    }

    fn fuse_dir() -> PathBuf {
        Self::dir().join("fuse")
    }

    /// Where smbd stores the share's files.
    pub fn backing() -> PathBuf {
        Self::dir().join("share")
    }

    /// The environment the tests need.
    pub fn env() -> Vec<(String, String)> {
        vec![
            (
                "PACKRAT_TEST_SMB_MOUNT".into(),
                Self::mount_point().display().to_string(),
            ),
            ("PACKRAT_TEST_SMB_FSTYPE".into(), FS_TYPE.into()),
            ("PACKRAT_TEST_SMB_BACKING".into(), Self::backing().display().to_string()),
        ]
    }

    fn write_configs(dir: &Path) -> Result<()> {
        let d = |name: &str| dir.join(name).display().to_string();
        let conf = format!(
            "[global]\n\
             \x20 netbios name = PACKRATTEST\n\
             \x20 workgroup = WORKGROUP\n\
             \x20 server role = standalone server\n\
             \x20 interfaces = 127.0.0.1\n\
             \x20 bind interfaces only = yes\n\
             \x20 smb ports = {PORT}\n\
             \x20 disable netbios = yes\n\
             \x20 server min protocol = SMB2\n\
             \x20 map to guest = Bad User\n\
             \x20 guest account = root\n\
             \x20 passdb backend = tdbsam:{private}/passdb.tdb\n\
             \x20 private dir = {private}\n\
             \x20 lock directory = {lock}\n\
             \x20 state directory = {state}\n\
             \x20 cache directory = {cache}\n\
             \x20 pid directory = {pid}\n\
             \x20 ncalrpc dir = {ncalrpc}\n\
             \x20 log file = {log}/smbd.log\n\
             \x20 log level = 1\n\
             \x20 load printers = no\n\
             \x20 printing = bsd\n\
             \x20 printcap name = /dev/null\n\
             \x20 disable spoolss = yes\n\
             [{SHARE}]\n\
             \x20 path = {share}\n\
             \x20 read only = no\n\
             \x20 guest ok = yes\n\
             \x20 force user = root\n",
            private = d("private"),
            lock = d("lock"),
            state = d("state"),
            cache = d("cache"),
            pid = d("pid"),
            ncalrpc = d("ncalrpc"),
            log = d("log"),
            share = d("share"),
        );
        fs::write(dir.join("smb.conf"), conf)?;
        let smb = dir.join("home").join(".smb");
        fs::create_dir_all(&smb)?;
        fs::set_permissions(&smb, fs::Permissions::from_mode(0o700))?;
        let files = [
            ("smb.conf", "[global]\n  client min protocol = SMB2\n".to_string()),
            (
                "smbnetfs.conf",
                "auth \"guest\" \"\"\nsmb_query_browsers \"false\"\nshow_hidden_hosts \"true\"\n".to_string(),
            ),
        ];
        for (name, text) in files {
            let p = smb.join(name);
            fs::write(&p, text).with_context(|| format!("write {}", p.display()))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600))?;
        }
        Ok(())
    }

    /// Unmounts our mount points if mounted, kills a leftover smbd.
    fn clean_leftovers() {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for mp in [Self::mount_point(), Self::fuse_dir()] {
            let shown = mp.display().to_string().replace(' ', "\\040");
            if mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(shown.as_str())) {
                eprintln!("  unmounting leftover {}", mp.display());
                if !util::succeeds(Command::new("umount").arg(&mp)) {
                    let _ = util::succeeds(Command::new("umount").arg("-l").arg(&mp));
                }
            }
        }
        let pid_file = Self::dir().join("smbd.pid");
        if let Ok(pid) = fs::read_to_string(&pid_file) {
            let pid = pid.trim();
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("smbd") {
                eprintln!("  killing leftover smbd (pid {pid})");
                signal("KILL", &format!("-{pid}"));
                std::thread::sleep(Duration::from_millis(300));
            }
            let _ = fs::remove_file(pid_file);
        }
    }

    fn wait_port(&mut self) -> Result<()> {
        let t0 = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", PORT)).is_ok() {
                return Ok(());
            }
            if let Some(c) = self.smbd.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!("smbd exited ({status}); see {}", Self::dir().join("log").display());
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("smbd did not listen on 127.0.0.1:{PORT} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the share shows up under the FUSE mount.
    fn wait_share(&mut self, share: &Path) -> Result<()> {
        let t0 = Instant::now();
        loop {
            if fs::read_dir(share).is_ok() {
                return Ok(());
            }
            if let Some(c) = self.smbnetfs.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!("smbnetfs exited ({status}); see {}", Self::dir().join("log").display());
            }
            if t0.elapsed() > Duration::from_secs(30) {
                bail!("{} did not appear within 30 s", share.display());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Service for Samba {
    fn name(&self) -> &'static str {
        "samba"
    }

    fn prereqs(&self) -> Vec<Prereq> {
        vec![
            Prereq::apt("smbd", "samba"),
            Prereq::apt("smbnetfs", "smbnetfs"),
            Prereq::apt("fusermount3", "fuse3"),
        ]
    }

    fn start(&mut self) -> Result<Vec<(String, String)>> {
        if !nix::unistd::geteuid().is_root() {
            bail!("the samba service mounts a FUSE filesystem and needs root");
        }
        let dir = Self::dir();
        Self::clean_leftovers();
        if TcpStream::connect(("127.0.0.1", PORT)).is_ok() {
            bail!(
                "something already listens on 127.0.0.1:{PORT} (an smbd of another run?); stop it (`ss -tlnp | grep {PORT}`) and retry"
            );
        }
        util::remove_path(&dir)?;
        for sub in [
            "share", "private", "lock", "state", "cache", "pid", "ncalrpc", "log", "fuse", "mnt",
        ] {
            fs::create_dir_all(dir.join(sub)).with_context(|| format!("create {}", dir.join(sub).display()))?;
        }
        Self::write_configs(&dir)?;

        // smbd makes itself a session leader (no --no-process-group), so it can be stopped
        // with its whole process group.
        let log = fs::File::create(dir.join("log").join("smbd.out"))?;
        let smbd = Command::new("smbd")
            .arg("-F")
            .arg("-s")
            .arg(dir.join("smb.conf"))
            .arg("--debug-stdout")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start smbd")?;
        fs::write(dir.join("smbd.pid"), smbd.id().to_string())?;
        self.smbd = Some(smbd);
        self.wait_port()?;

        let log = fs::File::create(dir.join("log").join("smbnetfs.out"))?;
        let smbnetfs = Command::new("smbnetfs")
            .arg(Self::fuse_dir())
            .arg("-f")
            .arg("-o")
            .arg(format!(
                "log_file={},big_writes,max_write=1048576",
                dir.join("log").join("smbnetfs.log").display()
            ))
            .env("HOME", dir.join("home"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start smbnetfs")?;
        self.smbnetfs = Some(smbnetfs);
        let share = Self::fuse_dir().join(format!("127.0.0.1:{PORT}")).join(SHARE);
        self.wait_share(&share)?;
        util::run(Command::new("mount").arg("--bind").arg(&share).arg(Self::mount_point()))?;

        // Prove the round trip: a file written through the mount lands on the server's disk.
        let probe = Self::mount_point().join(".probe");
        fs::write(&probe, b"packrat").with_context(|| format!("write {}", probe.display()))?;
        let back = fs::read(Self::backing().join(".probe")).context("read the probe on the server side")?;
        fs::remove_file(&probe)?;
        if back != b"packrat" {
            bail!("the share does not store what is written to it");
        }
        Ok(Self::env())
    }

    fn stop(&mut self) -> Result<()> {
        let mut problems = Vec::new();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for mp in [Self::mount_point(), Self::fuse_dir()] {
            let shown = mp.display().to_string().replace(' ', "\\040");
            if mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(shown.as_str()))
                && !util::succeeds(Command::new("umount").arg(&mp))
                && !util::succeeds(Command::new("umount").arg("-l").arg(&mp))
            {
                problems.push(format!("cannot unmount {}", mp.display()));
            }
        }
        for (name, child) in [("smbnetfs", self.smbnetfs.take()), ("smbd", self.smbd.take())] {
            let Some(mut child) = child else { continue };
            // smbd leads its own process group; smbnetfs exits once unmounted.
            let target = if name == "smbd" {
                format!("-{}", child.id())
            } else {
                child.id().to_string()
            };
            signal("TERM", &target);
            let t0 = Instant::now();
            while child.try_wait()?.is_none() {
                if t0.elapsed() > Duration::from_secs(10) {
                    signal("KILL", &target);
                    let _ = child.kill();
                    child.wait()?;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = fs::remove_file(Self::dir().join("smbd.pid"));
        if problems.is_empty() {
            Ok(())
        } else {
            bail!(problems.join("; "))
        }
    }
}

/// `kill -s SIG -- TARGET` (a negative target is a process group; without `--`, procps' kill
/// would read it as an option).
fn signal(sig: &str, target: &str) {
    let _ = util::signal(sig, target);
}

/// `cargo xtask samba start|stop`: the test share for local test runs.
#[derive(Debug, clap::Args)]
pub struct SambaArgs {
    /// `start` (prints the environment for the tests) or `stop`.
    #[arg(value_parser = ["start", "stop"])]
    action: String,
}

/// Starts the share and leaves it running, or stops a running one.
pub fn run(args: &SambaArgs) -> Result<()> {
    if args.action == "start" {
        crate::prereqs::ensure(&Samba::default().prereqs())?;
        let mut samba = Samba::default();
        let env = samba.start()?;
        // Leave the daemons running (dropping a Child does not kill it): `stop`, or the next
        // start, finds them by pid file and mount point.
        drop(samba);
        for (k, v) in env {
            println!("export {k}={v}");
        }
    } else {
        Samba::clean_leftovers();
    }
    Ok(())
}

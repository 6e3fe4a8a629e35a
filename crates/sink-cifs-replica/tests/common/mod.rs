//! Helpers shared by the integration tests: real packs, the real test share.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use backup_core::{BackupKind, Compression, PackId, SealedPack, StagingPack};
use sink_cifs_replica::{CifsReplicaSink, MountCheck, RetryPolicy};

/// Environment variable with the mount point of the test share (set by `cargo xtask ci`).
pub const SMB_MOUNT_ENV: &str = "PACKRAT_TEST_SMB_MOUNT";
/// Environment variable with the filesystem type of the test share (`fuse.smbnetfs`).
pub const SMB_FSTYPE_ENV: &str = "PACKRAT_TEST_SMB_FSTYPE";
/// Environment variable with the directory the Samba server stores the share in.
pub const SMB_BACKING_ENV: &str = "PACKRAT_TEST_SMB_BACKING";

/// Seals a pack of `plan` with id `id` in `dir`, one uncompressed artifact of pseudo-random
/// bytes per entry of `sizes`.
pub fn sealed_pack(dir: &Path, plan: &str, id: &str, sizes: &[usize]) -> SealedPack {
    let pack = StagingPack::create(
        dir,
        plan,
        PackId::new(id).unwrap(),
        BackupKind::Full,
        chrono_tz::Asia::Shanghai,
    )
    .unwrap();
    pack.set_job_id(7);
    let mut x: u32 = 0x9e37_79b9 ^ sizes.len() as u32;
    for (i, &size) in sizes.iter().enumerate() {
        let mut w = pack
            .artifact(&format!("test/sub/part_{i:04}.bin"), "test", "file", Compression::None)
            .unwrap();
        let bytes: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        w.write_all(&bytes).unwrap();
        w.finish().unwrap();
    }
    pack.seal().unwrap()
}

/// Every path below `dir` (symlinks not followed), relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A fresh directory on the real test share, removed on drop.
pub struct Share {
    /// The directory on the mounted share.
    pub dir: PathBuf,
    /// The same directory as the Samba server stores it, when known.
    pub backing: Option<PathBuf>,
    /// The share's filesystem type.
    pub fs_type: String,
}

static N: AtomicU32 = AtomicU32::new(0);

impl Share {
    /// A new directory on the test share. Fails (never skips) when the share is not set up.
    pub fn new() -> Share {
        let mount = std::env::var_os(SMB_MOUNT_ENV).unwrap_or_else(|| {
            panic!(
                "{SMB_MOUNT_ENV} is not set: start the Samba test share with `cargo xtask ci`, or set \
                 {SMB_MOUNT_ENV} to a mounted SMB share and {SMB_FSTYPE_ENV} to its type"
            )
        });
        let fs_type = std::env::var(SMB_FSTYPE_ENV).unwrap_or_else(|_| "fuse.smbnetfs".into());
        let name = format!("t{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let dir = PathBuf::from(mount).join(&name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {} on the test share: {e}", dir.display()));
        let backing = std::env::var_os(SMB_BACKING_ENV).map(|b| PathBuf::from(b).join(&name));
        Share { dir, backing, fs_type }
    }

    /// A sink on this directory that accepts the share's filesystem type, with quick retries.
    pub fn sink(&self, name: &str) -> CifsReplicaSink {
        CifsReplicaSink::new(name, &self.dir)
            .with_mount_check(MountCheck::new([self.fs_type.clone()]))
            .with_retry(RetryPolicy::new(2, std::time::Duration::from_millis(50)))
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Log lines written on this thread while the value lives; `retried` fires on each line that
/// announces a retry.
pub struct Logs {
    lines: Arc<Mutex<Vec<String>>>,
    /// Notified on each retry line.
    pub retried: Arc<tokio::sync::Notify>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct LogWriter {
    lines: Arc<Mutex<Vec<String>>>,
    retried: Arc<tokio::sync::Notify>,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf).into_owned();
        if line.contains("; retry ") {
            self.retried.notify_one();
        }
        self.lines.lock().unwrap().push(line);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures the log of this thread.
    pub fn capture() -> Logs {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let retried = Arc::new(tokio::sync::Notify::new());
        let writer = LogWriter {
            lines: lines.clone(),
            retried: retried.clone(),
        };
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        Logs {
            lines,
            retried,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// The lines that announced a retry.
    pub fn retries(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l.contains("; retry ")).cloned().collect()
    }
}

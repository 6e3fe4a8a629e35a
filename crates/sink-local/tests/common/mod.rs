//! Helpers shared by the integration tests: real packs on real filesystems.

#![allow(dead_code)]

use std::io::Write;
use std::path::Path;

use backup_core::{BackupKind, Compression, PackId, SealedPack, StagingPack};

/// Seals a pack of `plan` with id `id` in `dir`, with one artifact per entry of `sizes` (filled
/// with pseudo-random bytes, stored uncompressed so the size on disk is predictable).
pub fn sealed_pack(dir: &Path, plan: &str, id: &str, sizes: &[usize]) -> SealedPack {
    let pack = StagingPack::create(dir, plan, PackId::new(id).unwrap(), BackupKind::Full, chrono_tz::UTC).unwrap();
    pack.set_job_id(7);
    let mut x: u32 = 0x9e37_79b9;
    for (i, &size) in sizes.iter().enumerate() {
        let mut w = pack
            .artifact(&format!("test/part_{i:04}.bin"), "test", "file", Compression::None)
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

/// Names of the entries of `dir` (empty if it does not exist), sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// A tmpfs mounted on a fresh temporary directory for the life of the value (Linux, as root).
/// Mount failures panic: a test that needs a mount must never pass without one.
#[cfg(target_os = "linux")]
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

#[cfg(target_os = "linux")]
impl Tmpfs {
    /// Mounts a tmpfs with `options` (e.g. `size=1m` or `ro`).
    pub fn mount(options: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                options,
                "packrat-test",
                &dir.path().to_string_lossy(),
            ])
            .output()
            .expect("cannot run `mount`; these tests need Linux and root");
        assert!(
            out.status.success(),
            "mount -t tmpfs -o {options} failed (these tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    /// The mount point.
    pub fn path(&self) -> std::path::PathBuf {
        self.dir.path().to_path_buf()
    }
}

#[cfg(target_os = "linux")]
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let p = self.dir.path().to_string_lossy().into_owned();
        let ok = std::process::Command::new("umount")
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount").args(["-l", &p]).status();
        }
    }
}

//! Pack verification.
//!
//! *Quick*: every artifact is present with the size and sha256 the manifest records, the manifest
//! and `SHA256SUMS` agree, and no file in the pack is unaccounted for. *Deep*: quick, plus each
//! compressed artifact decompresses completely to its recorded raw size, plus the [`DeepCheck`]
//! registered for the artifact's type (e.g. SQLite's `PRAGMA integrity_check`).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::manifest::{ArtifactEntry, Compression, MANIFEST_FILE, REPLICATION_FILE, SUMS_FILE};
use crate::pack::{Pack, hash_reader};

/// How thoroughly to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VerifyLevel {
    /// Presence, sizes and checksums.
    #[default]
    Quick,
    /// Quick plus full decompression and the artifact type's own check.
    Deep,
}

/// A per-artifact-type deep check, provided by the crate that knows the format.
pub trait DeepCheck: Send + Sync + fmt::Debug {
    /// The artifact types (`ArtifactEntry::kind`) this check applies to.
    fn kinds(&self) -> &[&'static str];

    /// Checks one artifact; `Err` holds the reason, phrased for the operator.
    fn check(&self, pack: &Pack, entry: &ArtifactEntry) -> Result<(), String>;
}

/// One problem found by verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The file concerned, relative to the pack directory.
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// The result of verifying one pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Pack id.
    pub pack_id: String,
    /// Pack directory.
    pub dir: PathBuf,
    /// Level used.
    pub level: VerifyLevel,
    /// Artifacts checked.
    pub artifacts: usize,
    /// Problems; empty means the pack is good.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// A report for a directory that could not even be opened as a pack.
    pub fn unreadable(dir: &Path, reason: String) -> VerifyReport {
        VerifyReport {
            pack_id: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: dir.to_path_buf(),
            level: VerifyLevel::Quick,
            artifacts: 0,
            problems: vec![Problem {
                path: MANIFEST_FILE.into(),
                reason,
            }],
        }
    }
}

/// Verifies packs; holds the deep checks contributed by source crates.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    checks: BTreeMap<&'static str, Arc<dyn DeepCheck>>,
}

impl Verifier {
    /// A verifier with no type-specific deep checks (deep still decompresses every artifact).
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a deep check for the artifact types it names.
    pub fn with_check(mut self, check: Arc<dyn DeepCheck>) -> Self {
        for k in check.kinds() {
            self.checks.insert(k, check.clone());
        }
        self
    }

    /// Verifies `pack` at `level`. Never fails: problems are collected in the report.
    pub fn verify(&self, pack: &Pack, level: VerifyLevel) -> VerifyReport {
        let m = pack.manifest();
        let mut problems = Vec::new();
        let mut p = |path: &str, reason: String| {
            problems.push(Problem {
                path: path.to_string(),
                reason,
            })
        };

        // The manifest against SHA256SUMS, and SHA256SUMS against the manifest.
        let sums = read_sums(pack.dir());
        match &sums {
            Err(e) => p(SUMS_FILE, e.clone()),
            Ok(sums) => {
                match File::open(pack.dir().join(MANIFEST_FILE)).and_then(hash_reader) {
                    Ok((_, h)) => match sums.get(MANIFEST_FILE) {
                        Some(expect) if *expect == h => {}
                        Some(_) => p(
                            MANIFEST_FILE,
                            "sha256 does not match SHA256SUMS: the manifest (or SHA256SUMS) was modified or damaged"
                                .into(),
                        ),
                        None => p(SUMS_FILE, "has no line for manifest.json".into()),
                    },
                    Err(e) => p(MANIFEST_FILE, format!("cannot read: {e}")),
                }
                for a in &m.artifacts {
                    match sums.get(a.path.as_str()) {
                        Some(h) if *h == a.sha256 => {}
                        Some(_) => p(SUMS_FILE, format!("line for {} disagrees with manifest.json", a.path)),
                        None => p(SUMS_FILE, format!("has no line for {}", a.path)),
                    }
                }
                for name in sums.keys() {
                    if name != MANIFEST_FILE && m.artifact(name).is_none() {
                        p(SUMS_FILE, format!("lists {name}, which manifest.json does not"));
                    }
                }
            }
        }

        // Files on disk that the manifest does not know.
        for rel in list_files(pack.dir()) {
            if rel != MANIFEST_FILE && rel != SUMS_FILE && rel != REPLICATION_FILE && m.artifact(&rel).is_none() {
                p(&rel, "file is not listed in manifest.json".into());
            }
        }

        for a in &m.artifacts {
            if let Err(reason) = quick_check(pack, a) {
                p(&a.path, reason);
                continue;
            }
            if level == VerifyLevel::Deep {
                if let Err(reason) = decompress_check(pack, a) {
                    p(&a.path, reason);
                    continue;
                }
                if let Some(c) = self.checks.get(a.kind.as_str())
                    && let Err(reason) = c.check(pack, a)
                {
                    p(&a.path, reason);
                }
            }
        }

        VerifyReport {
            pack_id: m.pack_id.clone(),
            dir: pack.dir().to_path_buf(),
            level,
            artifacts: m.artifacts.len(),
            problems,
        }
    }
}

fn quick_check(pack: &Pack, a: &ArtifactEntry) -> Result<(), String> {
    let path = pack.path_of(a);
    let meta = fs::symlink_metadata(&path).map_err(|e| format!("missing or unreadable: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.len() != a.size {
        return Err(format!("size is {} bytes, manifest says {}", meta.len(), a.size));
    }
    let (_, h) = File::open(&path)
        .and_then(hash_reader)
        .map_err(|e| format!("cannot read: {e}"))?;
    if h != a.sha256 {
        return Err(format!("sha256 mismatch: file has {h}, manifest says {}", a.sha256));
    }
    Ok(())
}

fn decompress_check(pack: &Pack, a: &ArtifactEntry) -> Result<(), String> {
    if a.compression == Compression::None {
        return Ok(());
    }
    let r = pack.open_artifact(a).map_err(|e| e.to_string())?;
    let n = io::copy(&mut r.take(u64::MAX), &mut io::sink()).map_err(|e| format!("does not decompress: {e}"))?;
    if n != a.raw_size {
        return Err(format!("decompresses to {n} bytes, manifest says {}", a.raw_size));
    }
    Ok(())
}

fn read_sums(dir: &Path) -> Result<BTreeMap<String, String>, String> {
    let text = fs::read_to_string(dir.join(SUMS_FILE)).map_err(|e| format!("missing or unreadable: {e}"))?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let Some((hash, name)) = line.split_once("  ") else {
            return Err(format!("line {} is not `<sha256>  <path>`", i + 1));
        };
        out.insert(name.to_string(), hash.to_string());
    }
    Ok(out)
}

/// All regular files and symlinks below `dir`, as `/`-separated relative paths.
fn list_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, prefix)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push((e.path(), rel)),
                _ => out.push(rel),
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackupKind, PackId, StagingPack};
    use std::io::Write;

    fn make_pack(root: &Path) -> Pack {
        let id = PackId::new("p_20260101_000000").unwrap();
        let pack = StagingPack::create(&root.join(id.as_str()), "plan", id, BackupKind::Full, chrono_tz::UTC).unwrap();
        let mut w = pack.artifact("a/data.zst", "s", "file", Compression::Zstd).unwrap();
        w.write_all(&vec![7u8; 100_000]).unwrap();
        w.finish().unwrap();
        let mut w = pack.artifact("b.txt", "s", "file", Compression::None).unwrap();
        w.write_all(b"abc").unwrap();
        w.finish().unwrap();
        pack.seal().unwrap().to_pack()
    }

    #[test]
    fn good_pack_verifies_deep() {
        let t = tempfile::tempdir().unwrap();
        let p = make_pack(t.path());
        let r = Verifier::new().verify(&p, VerifyLevel::Deep);
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(r.artifacts, 2);
    }

    #[test]
    fn every_flipped_byte_is_detected_and_named() {
        let t = tempfile::tempdir().unwrap();
        let p = make_pack(t.path());
        for rel in ["a/data.zst", "b.txt", MANIFEST_FILE, SUMS_FILE] {
            let path = p.dir().join(rel);
            let orig = fs::read(&path).unwrap();
            for pos in [0, orig.len() / 2, orig.len() - 1] {
                let mut bad = orig.clone();
                bad[pos] ^= 0x01;
                fs::write(&path, &bad).unwrap();
                let report = match Pack::open(p.dir()) {
                    Ok(p2) => Verifier::new().verify(&p2, VerifyLevel::Quick),
                    Err(e) => VerifyReport::unreadable(p.dir(), e.to_string()),
                };
                assert!(!report.is_ok(), "flip at {pos} in {rel} undetected");
                assert!(
                    report
                        .problems
                        .iter()
                        .any(|pr| pr.path == rel || (rel == SUMS_FILE && pr.path == MANIFEST_FILE)),
                    "{rel}: {report:?}"
                );
                fs::write(&path, &orig).unwrap();
            }
        }
    }

    #[test]
    fn extra_and_missing_files_are_reported() {
        let t = tempfile::tempdir().unwrap();
        let p = make_pack(t.path());
        fs::write(p.dir().join("stray"), b"x").unwrap();
        fs::remove_file(p.dir().join("b.txt")).unwrap();
        let r = Verifier::new().verify(&p, VerifyLevel::Quick);
        assert!(r.problems.iter().any(|x| x.path == "stray"));
        assert!(r.problems.iter().any(|x| x.path == "b.txt"));
    }
}

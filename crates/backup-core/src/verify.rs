//! Pack verification.
//!
//! *Quick*: every artifact is present with the size and sha256 the manifest records, the manifest
//! and `SHA256SUMS` agree, and no file in the pack is unaccounted for. *Deep*: quick, plus each
//! compressed artifact decompresses completely to its recorded raw size, plus the [`DeepCheck`]
//! registered for the artifact's type (e.g. SQLite's `PRAGMA integrity_check`).
//!
//! Everything reads the pack through its [`PackReader`], so a pack is verified the same way
//! wherever its sink keeps it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::manifest::{ArtifactEntry, MANIFEST_FILE, REPLICATION_FILE, SUMS_FILE};
use crate::pack::{MAX_MANIFEST_BYTES, hash_reader};
use crate::reader::PackReader;
use crate::sums::Sums;

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

    /// Checks one artifact of `pack` (read it with [`PackReader::open_artifact`]); `Err` holds
    /// the reason, phrased for the operator.
    fn check(&self, pack: &dyn PackReader, entry: &ArtifactEntry) -> Result<(), String>;
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
    /// Where the pack is ([`PackReader::location`]).
    pub location: String,
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

    /// A report for a pack at `location` (a directory, `PLAN/ID`) that could not even be opened.
    pub fn unreadable(location: &str, reason: String) -> VerifyReport {
        VerifyReport {
            pack_id: location
                .trim_end_matches(['/', '\\'])
                .rsplit(['/', '\\'])
                .next()
                .unwrap_or_default()
                .to_string(),
            location: location.to_string(),
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
    pub fn verify(&self, pack: &dyn PackReader, level: VerifyLevel) -> VerifyReport {
        let m = pack.manifest();
        let (mut problems, _) = structure_problems(pack);
        let mut p = |path: &str, reason: String| problems.push(problem(path, reason));
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
            location: pack.location(),
            level,
            artifacts: m.artifacts.len(),
            problems,
        }
    }

    /// The check every restore runs before it writes anything: the quick verification of the
    /// whole pack, reading only the artifacts the restore will use.
    ///
    /// `manifest.json` and `SHA256SUMS` must agree, no file may be unaccounted for, every artifact
    /// must be present as a regular file of the recorded size, and each artifact in `wanted` must
    /// also have the recorded sha256 (it is read once for that, before the restore reads it
    /// again). A problem anywhere makes [`RestoreCheck::is_ok`] false; an artifact of `wanted` is
    /// [`usable`](RestoreCheck::usable) only when it checks out itself *and* the manifest that
    /// describes it is confirmed by `SHA256SUMS`. Never fails: problems are collected.
    pub fn check_for_restore(pack: &dyn PackReader, wanted: &[&ArtifactEntry]) -> RestoreCheck {
        let m = pack.manifest();
        let (mut problems, manifest_confirmed) = structure_problems(pack);
        let mut unusable = BTreeMap::new();
        for w in wanted {
            match m.artifact(&w.path) {
                Some(a) if a == *w => {}
                _ => {
                    let reason = "is not an artifact of this pack as its manifest.json describes it".to_string();
                    problems.push(problem(&w.path, reason.clone()));
                    unusable.insert(w.path.clone(), reason);
                }
            }
        }
        for a in &m.artifacts {
            let is_wanted = wanted.iter().any(|w| w.path == a.path);
            let result = if is_wanted {
                quick_check(pack, a)
            } else {
                stat_check(pack, a)
            };
            if let Err(reason) = result {
                problems.push(problem(&a.path, reason.clone()));
                if is_wanted {
                    unusable.insert(a.path.clone(), reason);
                }
            } else if is_wanted && !manifest_confirmed {
                unusable.insert(
                    a.path.clone(),
                    "its description in manifest.json is not confirmed by SHA256SUMS".into(),
                );
            }
        }
        RestoreCheck {
            pack_id: m.pack_id.clone(),
            location: pack.location(),
            problems,
            unusable,
            key_error: key_error(pack, wanted),
        }
    }
}

/// Opens the age header of every wanted encrypted artifact with the reader's identities, so a
/// restore without the right identity is refused before it writes anything.
fn key_error(pack: &dyn PackReader, wanted: &[&ArtifactEntry]) -> Option<String> {
    wanted.iter().filter(|w| w.encryption.is_some()).find_map(|w| {
        let opened = pack
            .open_file(&w.path)
            .map_err(|e| Error::io("open artifact", pack.location_of(&w.path))(e))
            .and_then(|f| pack.decode(w, f));
        match opened {
            Err(e) if e.kind() == crate::ErrorKind::Key => Some(e.to_string()),
            _ => None,
        }
    })
}

/// The result of [`Verifier::check_for_restore`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreCheck {
    /// Pack id.
    pub pack_id: String,
    /// Where the pack is ([`PackReader::location`]).
    pub location: String,
    /// Everything wrong with the pack; empty means it is intact.
    pub problems: Vec<Problem>,
    /// The wanted artifacts that must not be used, with the reason.
    pub unusable: BTreeMap<String, String>,
    /// Why the wanted encrypted artifacts cannot be read (no identity, or none that matches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_error: Option<String>,
}

impl RestoreCheck {
    /// True when the pack is intact.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Whether the wanted artifact at `path` checked out and may be restored.
    pub fn usable(&self, path: &str) -> bool {
        !self.unusable.contains_key(path)
    }

    /// `Ok` when the pack is intact, or when it is not but `allow_damaged` says to restore the
    /// intact part; [`Error::DamagedPack`] otherwise. [`Error::Key`] first when the wanted
    /// encrypted artifacts cannot be read with the identities given (never overridden).
    pub fn require(&self, allow_damaged: bool) -> Result<(), Error> {
        if let Some(e) = &self.key_error {
            return Err(Error::Key(e.clone()));
        }
        if self.is_ok() || allow_damaged {
            Ok(())
        } else {
            Err(Error::DamagedPack {
                pack: self.pack_id.clone(),
                location: self.location.clone(),
                problems: self.problems.clone(),
            })
        }
    }
}

/// Checks of the pack as a whole: `SHA256SUMS` readable and in agreement with `manifest.json`
/// (both ways, and on the manifest's own hash), no unlisted files. Returns the problems and
/// whether the manifest's own hash is confirmed by `SHA256SUMS`.
fn structure_problems(pack: &dyn PackReader) -> (Vec<Problem>, bool) {
    let m = pack.manifest();
    let mut problems = Vec::new();
    let mut confirmed = false;
    match Sums::read(pack) {
        Err(reason) => problems.push(problem(SUMS_FILE, reason)),
        Ok(sums) => match pack
            .read_file(MANIFEST_FILE, MAX_MANIFEST_BYTES)
            .and_then(|b| hash_reader(&b[..]))
        {
            Ok((_, h)) => {
                confirmed = sums.get(MANIFEST_FILE) == Some(h.as_str());
                problems.extend(sums.disagreements(m, &h));
            }
            Err(e) => problems.push(problem(MANIFEST_FILE, format!("cannot read: {e}"))),
        },
    }

    // Files stored in the pack that the manifest does not know.
    match pack.files() {
        Ok(files) => {
            for rel in files {
                if rel != MANIFEST_FILE && rel != SUMS_FILE && rel != REPLICATION_FILE && m.artifact(&rel).is_none() {
                    problems.push(problem(&rel, "file is not listed in manifest.json".into()));
                }
            }
        }
        Err(e) => problems.push(problem(".", format!("cannot list the pack's files: {e}"))),
    }
    (problems, confirmed)
}

fn problem(path: &str, reason: String) -> Problem {
    Problem {
        path: path.to_string(),
        reason,
    }
}

/// Present as a regular file of the recorded size.
fn stat_check(pack: &dyn PackReader, a: &ArtifactEntry) -> Result<(), String> {
    let size = pack.size(&a.path).map_err(|e| match e.kind() {
        // Not a regular file: the error says what it is.
        io::ErrorKind::InvalidInput => e.to_string(),
        _ => format!("missing or unreadable: {e}"),
    })?;
    if size != a.size {
        return Err(format!("size is {size} bytes, manifest says {}", a.size));
    }
    Ok(())
}

fn quick_check(pack: &dyn PackReader, a: &ArtifactEntry) -> Result<(), String> {
    stat_check(pack, a)?;
    let (n, h) = pack
        .open_file(&a.path)
        .and_then(hash_reader)
        .map_err(|e| format!("cannot read: {e}"))?;
    if n != a.size {
        return Err(format!("size is {n} bytes, manifest says {}", a.size));
    }
    if h != a.sha256 {
        return Err(format!("sha256 mismatch: file has {h}, manifest says {}", a.sha256));
    }
    Ok(())
}

fn decompress_check(pack: &dyn PackReader, a: &ArtifactEntry) -> Result<(), String> {
    if a.is_plain() {
        return Ok(());
    }
    let r = pack.open_artifact(a).map_err(|e| e.to_string())?;
    let what = if a.encryption.is_some() {
        "does not decrypt and decompress"
    } else {
        "does not decompress"
    };
    let n = io::copy(&mut r.take(u64::MAX), &mut io::sink()).map_err(|e| format!("{what}: {e}"))?;
    if n != a.raw_size {
        return Err(format!("decompresses to {n} bytes, manifest says {}", a.raw_size));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BackupKind, Compression, Pack, PackId, StagingPack};
    use std::fs;
    use std::io::Write;
    use std::path::Path;

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
                    Err(e) => VerifyReport::unreadable(&p.dir().display().to_string(), e.to_string()),
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
    fn restore_check_reads_what_it_uses_and_names_every_problem() {
        let t = tempfile::tempdir().unwrap();
        let p = make_pack(t.path());
        let data = p.manifest().artifact("a/data.zst").unwrap().clone();
        let txt = p.manifest().artifact("b.txt").unwrap().clone();
        let c = Verifier::check_for_restore(&p, &[&data]);
        assert!(c.is_ok() && c.usable("a/data.zst"), "{c:?}");
        c.require(false).unwrap();

        // Damage the artifact that is not used: same size, other bytes. Only a full read could
        // tell, and the restore does not read it.
        fs::write(p.dir().join("b.txt"), b"abd").unwrap();
        assert!(Verifier::check_for_restore(&p, &[&data]).is_ok());
        let c = Verifier::check_for_restore(&p, &[&data, &txt]);
        assert!(!c.is_ok());
        assert!(c.usable("a/data.zst") && !c.usable("b.txt"), "{c:?}");
        assert!(c.unusable["b.txt"].contains("sha256 mismatch"), "{c:?}");
        let e = c.require(false).unwrap_err().to_string();
        assert!(
            e.contains("b.txt: sha256 mismatch") && e.contains("--allow-damaged"),
            "{e}"
        );
        c.require(true).unwrap();

        // A truncated or missing artifact is seen even when not used.
        fs::write(p.dir().join("b.txt"), b"ab").unwrap();
        let c = Verifier::check_for_restore(&p, &[&data]);
        assert!(!c.is_ok() && c.usable("a/data.zst"), "{c:?}");
        assert!(c.problems[0].reason.contains("size is 2 bytes"), "{c:?}");
        fs::write(p.dir().join("b.txt"), b"abc").unwrap();

        // An entry that is not the manifest's is never usable.
        let mut forged = data.clone();
        forged.size += 1;
        assert!(!Verifier::check_for_restore(&p, &[&forged]).usable("a/data.zst"));

        // When manifest.json is not confirmed by SHA256SUMS, nothing it describes is usable.
        let sums = fs::read_to_string(p.dir().join(SUMS_FILE)).unwrap();
        let last = sums.lines().last().unwrap();
        let bad = sums.replace(last, &format!("{}  manifest.json", "0".repeat(64)));
        fs::write(p.dir().join(SUMS_FILE), bad).unwrap();
        let c = Verifier::check_for_restore(&p, &[&data]);
        assert!(!c.usable("a/data.zst"), "{c:?}");
        assert!(c.problems.iter().any(|x| x.path == MANIFEST_FILE), "{c:?}");
    }

    #[cfg(unix)]
    #[test]
    fn fifos_are_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let p = make_pack(t.path());
        let data = p.manifest().artifact("a/data.zst").unwrap().clone();
        let mkfifo = |path: &Path| {
            fs::remove_file(path).unwrap();
            let st = std::process::Command::new("mkfifo").arg(path).status().unwrap();
            assert!(st.success());
        };
        // An artifact: verify, the restore check and open_artifact all refuse it.
        let art = p.dir().join("a/data.zst");
        let orig = fs::read(&art).unwrap();
        mkfifo(&art);
        let r = Verifier::new().verify(&p, VerifyLevel::Deep);
        assert!(
            r.problems
                .iter()
                .any(|x| x.path == "a/data.zst" && x.reason.contains("FIFO")),
            "{r:?}"
        );
        let c = Verifier::check_for_restore(&p, &[&data]);
        assert!(c.unusable["a/data.zst"].contains("FIFO"), "{c:?}");
        let e = p.open_artifact(&data).err().unwrap().to_string();
        assert!(e.contains("FIFO"), "{e}");
        fs::remove_file(&art).unwrap();
        fs::write(&art, orig).unwrap();

        // SHA256SUMS and manifest.json.
        let sums = p.dir().join(SUMS_FILE);
        mkfifo(&sums);
        let r = Verifier::new().verify(&p, VerifyLevel::Quick);
        assert!(
            r.problems
                .iter()
                .any(|x| x.path == SUMS_FILE && x.reason.contains("FIFO")),
            "{r:?}"
        );
        let manifest = p.dir().join(MANIFEST_FILE);
        mkfifo(&manifest);
        let e = Pack::open(p.dir()).unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
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

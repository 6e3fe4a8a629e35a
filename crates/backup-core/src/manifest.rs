//! `manifest.json`: the description of a pack, written last when the pack is sealed.
//!
//! A directory without a valid manifest is not a pack. Next to it, `SHA256SUMS` lists the sha256
//! of every artifact and of the manifest itself in `sha256sum` format, so `sha256sum -c SHA256SUMS`
//! verifies a pack by hand.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{BackupKind, Error, JobId, Result};

/// Version of the pack format written by this build. Readers accept this and older versions.
///
/// 2 added the optional `watermarks` list; 3 added encrypted artifacts (`encryption`). A pack
/// without encrypted artifacts is written as version 2, so older readers still read it.
pub const FORMAT_VERSION: u32 = 3;
/// The version written for a pack without encrypted artifacts.
pub const FORMAT_VERSION_PLAIN: u32 = 2;
/// The marker in every manifest that says "this pack was written by packrat".
pub const FORMAT_NAME: &str = "packrat-pack";
/// File name of the manifest inside a pack directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// File name of the checksum list inside a pack directory.
pub const SUMS_FILE: &str = "SHA256SUMS";
/// File name of the record a replica sink adds to its copy of a pack (which pack, which job,
/// when, from which host). Not an artifact: verification accepts it next to the manifest.
pub const REPLICATION_FILE: &str = "replication_manifest.json";

/// How an artifact is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Stored as is.
    #[default]
    None,
    /// One zstd frame stream; `zstd -d` restores the original bytes.
    Zstd,
}

/// The time window of an incremental artifact: documents with `from <= field < to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// The time field the window applies to (e.g. `createdAt`).
    pub field: String,
    /// Inclusive lower bound; `None` means "from the beginning".
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound.
    pub to: DateTime<Utc>,
}

/// One file of a pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactEntry {
    /// Path relative to the pack directory, with `/` separators.
    pub path: String,
    /// Name of the source that wrote it.
    pub source: String,
    /// Artifact type, which selects the deep check and the restore: `sqlite`, `mongo-bson`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes as stored (compressed size for compressed artifacts).
    pub size: u64,
    /// Lowercase hex sha256 of the stored bytes.
    pub sha256: String,
    /// How it is stored.
    pub compression: Compression,
    /// Size before compression.
    pub raw_size: u64,
    /// Records (rows, documents) it holds, where the source counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// Files it holds (for archives), where the source counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// Time window of an incremental artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<TimeWindow>,
    /// Source-specific facts (database name, collection, volume, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, serde_json::Value>,
    /// How it is encrypted (age after zstd; `path` then ends in `.age`), for whom: public keys
    /// only. `size` and `sha256` are those of the ciphertext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<crate::crypt::EncryptionRecord>,
}

impl ArtifactEntry {
    /// The path without the `.age` of an encrypted artifact: the name the source gave it
    /// (`sqlite/app_db.db.zst`).
    pub fn plain_path(&self) -> &str {
        match self.encryption {
            Some(_) => self.path.strip_suffix(crate::crypt::AGE_SUFFIX).unwrap_or(&self.path),
            None => &self.path,
        }
    }

    /// True when the stored bytes are the original bytes (neither compressed nor encrypted).
    pub fn is_plain(&self) -> bool {
        self.compression == Compression::None && self.encryption.is_none()
    }
}

/// The manifest of a pack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`]: proves the pack is ours.
    pub format: String,
    /// Pack format version.
    pub format_version: u32,
    /// The pack id, equal to the pack's directory name.
    pub pack_id: String,
    /// The plan that produced it.
    pub plan: String,
    /// Full or incremental.
    pub kind: BackupKind,
    /// The job that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// IANA time zone of the plan, used for the pack id and the local times.
    pub time_zone: String,
    /// Start of the job (UTC).
    pub started_at: DateTime<Utc>,
    /// Start of the job in the plan's zone (RFC 3339 with offset).
    pub started_local: String,
    /// When the pack was sealed (UTC).
    pub finished_at: DateTime<Utc>,
    /// When the pack was sealed, in the plan's zone.
    pub finished_local: String,
    /// The tool that wrote it (`packrat`).
    pub tool: String,
    /// Version of the tool.
    pub tool_version: String,
    /// Host name of the machine that wrote it.
    pub host: String,
    /// Every artifact, sorted by path.
    pub artifacts: Vec<ArtifactEntry>,
    /// The watermarks this pack advances once it is in place (incremental sources). Recovery
    /// uses them when the process died after the pack was stored but before the state store
    /// recorded them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watermarks: Vec<ManifestWatermark>,
}

/// A watermark recorded in a manifest: everything of `key` in `source` before `value` is in this
/// pack or an older one of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestWatermark {
    /// Source name within the plan.
    pub source: String,
    /// Key within the source (`db.collection`).
    pub key: String,
    /// The new upper bound (exclusive).
    pub value: DateTime<Utc>,
}

impl Manifest {
    /// Parses and validates a manifest (format marker, version, artifact paths: each safe and
    /// listed once).
    pub fn from_json(bytes: &[u8]) -> std::result::Result<Manifest, String> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| format!("invalid manifest.json: {e}"))?;
        if m.format != FORMAT_NAME {
            return Err(format!(
                "manifest.json names format `{}`, not `{FORMAT_NAME}`; it is damaged or not packrat's",
                m.format
            ));
        }
        if m.format_version == 0 || m.format_version > FORMAT_VERSION {
            return Err(format!(
                "pack format version {} is not supported by this packrat (supports 1..={FORMAT_VERSION}); upgrade packrat",
                m.format_version
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &m.artifacts {
            check_relative_path(&a.path).map_err(|e| e.to_string())?;
            if !seen.insert(a.path.as_str()) {
                return Err(format!(
                    "manifest.json lists artifact path `{}` twice; the manifest is damaged or forged",
                    a.path
                ));
            }
        }
        Ok(m)
    }

    /// Serialises as pretty JSON with a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Total stored bytes of all artifacts.
    pub fn total_size(&self) -> u64 {
        self.artifacts.iter().map(|a| a.size).sum()
    }

    /// Total records of all artifacts that count them.
    pub fn total_records(&self) -> u64 {
        self.artifacts.iter().filter_map(|a| a.records).sum()
    }

    /// The artifact with this relative path.
    pub fn artifact(&self, path: &str) -> Option<&ArtifactEntry> {
        self.artifacts.iter().find(|a| a.path == path)
    }

    /// The artifact the source named `path`, encrypted or not ([`ArtifactEntry::plain_path`]).
    pub fn artifact_named(&self, path: &str) -> Option<&ArtifactEntry> {
        self.artifacts.iter().find(|a| a.plain_path() == path)
    }

    /// True when some artifact is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.artifacts.iter().any(|a| a.encryption.is_some())
    }
}

/// Checks that `path` is a safe relative artifact path: not empty, relative, no `..`, no `.`,
/// no backslashes or drive prefixes, not one of the pack's own files.
pub fn check_relative_path(path: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::ArtifactPath {
            path: path.to_string(),
            reason: reason.to_string(),
        })
    };
    if path.is_empty() {
        return bad("empty path");
    }
    if path.contains('\\') || path.contains(':') || path.contains('\0') {
        return bad("use `/` separators and no `:` or NUL");
    }
    if path.chars().any(char::is_control) {
        return bad("control characters (newlines, tabs, …) are not allowed");
    }
    if path.starts_with('/') {
        return bad("must be relative to the pack directory");
    }
    for c in Path::new(path).components() {
        if !matches!(c, Component::Normal(_)) {
            return bad("`.` and `..` components are not allowed");
        }
    }
    if path.split('/').any(|s| s.is_empty()) {
        return bad("empty path component");
    }
    if path == MANIFEST_FILE || path == SUMS_FILE || path == REPLICATION_FILE || path.starts_with(MANIFEST_FILE) {
        return bad("reserved for the pack's own files");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        for ok in ["sqlite/app.db", "mongo/db/c.bson.zst", "a"] {
            assert!(check_relative_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "./a",
            "a//b",
            "a\\b",
            "C:x",
            "a\nb",
            "a\tb",
            "manifest.json",
            "SHA256SUMS",
            "replication_manifest.json",
        ] {
            assert!(check_relative_path(bad).is_err(), "{bad}");
        }
    }

    fn manifest_with(paths: &[String]) -> Manifest {
        let at = DateTime::parse_from_rfc3339("2026-11-20T20:00:00.120Z")
            .unwrap()
            .with_timezone(&Utc);
        Manifest {
            format: FORMAT_NAME.into(),
            format_version: FORMAT_VERSION,
            pack_id: "migration_pack_20261121_040000".into(),
            plan: "nightly".into(),
            kind: BackupKind::Full,
            job_id: Some(42),
            time_zone: "Asia/Shanghai".into(),
            started_at: at,
            started_local: "2026-11-21T04:00:00+08:00".into(),
            finished_at: at,
            finished_local: "2026-11-21T04:00:00+08:00".into(),
            tool: "packrat".into(),
            tool_version: "0.1.0".into(),
            host: "h".into(),
            artifacts: paths
                .iter()
                .enumerate()
                .map(|(i, p)| ArtifactEntry {
                    path: p.clone(),
                    source: "s".into(),
                    kind: "file".into(),
                    size: i as u64,
                    sha256: "ab".repeat(32),
                    compression: if i % 2 == 0 {
                        Compression::Zstd
                    } else {
                        Compression::None
                    },
                    raw_size: 10,
                    records: Some(3),
                    files: None,
                    window: (i % 3 == 0).then(|| TimeWindow {
                        field: "createdAt".into(),
                        from: None,
                        to: at,
                    }),
                    meta: [("database".to_string(), serde_json::json!("mes"))].into(),
                    encryption: None,
                })
                .collect(),
            watermarks: Vec::new(),
        }
    }

    #[test]
    fn duplicate_artifact_paths_are_refused_naming_the_path() {
        let m = manifest_with(&["a/x.db".into(), "b".into(), "a/x.db".into()]);
        let e = Manifest::from_json(&m.to_json()).unwrap_err();
        assert!(e.contains("`a/x.db` twice"), "{e}");
        let ok = manifest_with(&["a/x.db".into(), "b".into()]);
        assert_eq!(Manifest::from_json(&ok.to_json()).unwrap(), ok);
    }

    mod fuzz {
        use super::*;
        use proptest::collection::{btree_set, vec};
        use proptest::prelude::*;
        use proptest::sample::Index;

        /// What every manifest that parses must satisfy.
        fn check_invariants(m: &Manifest) -> std::result::Result<(), TestCaseError> {
            let mut seen = std::collections::BTreeSet::new();
            for a in &m.artifacts {
                prop_assert!(check_relative_path(&a.path).is_ok(), "{}", a.path);
                prop_assert!(seen.insert(a.path.clone()), "duplicate {}", a.path);
            }
            let again = Manifest::from_json(&m.to_json());
            prop_assert!(again.is_ok(), "{:?}", again);
            let paths = |m: &Manifest| m.artifacts.iter().map(|a| a.path.clone()).collect::<Vec<_>>();
            prop_assert_eq!(paths(&again.unwrap()), paths(m));
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(10_000))]

            #[test]
            fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..400)) {
                if let Ok(m) = Manifest::from_json(&bytes) {
                    check_invariants(&m)?;
                }
            }

            /// Valid manifests with byte flips, insertions, deletions, truncation and duplicated
            /// entries: refused or valid, never a panic.
            #[test]
            fn mutated_manifests_are_refused_or_valid(
                paths in btree_set(
                    vec(0usize..6, 1..10).prop_map(|v| v.into_iter().map(|i| ['a', 'b', '/', '.', 'é', 'z'][i]).collect::<String>()),
                    0..5,
                ),
                edits in vec((any::<Index>(), any::<u8>(), 0u8..5), 1..4),
            ) {
                let mut paths: Vec<String> = paths.into_iter().collect();
                let m = manifest_with(&paths);
                let json = m.to_json();
                if paths.iter().all(|p| check_relative_path(p).is_ok()) {
                    prop_assert_eq!(Manifest::from_json(&json).unwrap(), m);
                }
                let mut bytes = json;
                for (at, byte, op) in edits {
                    match op {
                        0 if !bytes.is_empty() => { let i = at.index(bytes.len()); bytes[i] = byte; }
                        1 => { let i = at.index(bytes.len() + 1); bytes.insert(i, byte); }
                        2 if !bytes.is_empty() => { let i = at.index(bytes.len()); bytes.remove(i); }
                        3 => { let i = at.index(bytes.len() + 1); bytes.truncate(i); }
                        _ if !paths.is_empty() => {
                            // The same entry listed twice must be refused.
                            let p = paths[at.index(paths.len())].clone();
                            paths.push(p);
                            let dup = manifest_with(&paths).to_json();
                            prop_assert!(Manifest::from_json(&dup).is_err());
                            paths.pop();
                        }
                        _ => {}
                    }
                }
                if let Ok(m) = Manifest::from_json(&bytes) {
                    check_invariants(&m)?;
                }
            }
        }
    }

    #[test]
    fn rejects_foreign_and_future_manifests() {
        let foreign = br#"{"format":"other"}"#;
        assert!(Manifest::from_json(foreign).is_err());
        assert!(
            Manifest::from_json(b"not json")
                .unwrap_err()
                .contains("invalid manifest.json")
        );
    }
}

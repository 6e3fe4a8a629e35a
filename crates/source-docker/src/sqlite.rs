//! SQLite databases inside volumes (`sqlite_in_volumes`).
//!
//! Archiving a live database with tar can capture its main file and its `-wal` from different
//! moments. Where the volume's directory is on this host (local driver, engine on this machine),
//! the databases are found there before the volume is streamed ([`scan`]: every regular file
//! starting with the 16-byte `SQLite format 3\0` header), copied with SQLite's online backup API
//! into a temporary directory next to the staging pack ([`take`], integrity-checked by
//! [`source_sqlite::snapshot_file`]), and the tar stream then carries each copy in place of the
//! live file, without its `-wal`/`-shm`/`-journal` companions ([`Snapshots::edits`]). The stream
//! is watched for databases too ([`Edits::detect`]): that is the only detection where the
//! directory is not reachable, and a cross-check where it is ([`conclude`]).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use bollard::models::Volume;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::Endpoint;
use crate::error::Error;
use crate::tarstream::{Detected, EditReport, Edits};

/// The first 16 bytes of every SQLite 3 database file.
pub(crate) const MAGIC: &[u8] = b"SQLite format 3\0";
/// Suffixes of the files SQLite keeps next to a database.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// `sqlite_in_volumes`: what to do with SQLite databases found in a volume while the app runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteInVolumes {
    /// Archive a consistent copy (SQLite's online backup API) in place of the live file and its
    /// companions. Needs the volume's directory on this host; fails where it is not.
    #[default]
    Snapshot,
    /// Archive the files as they are. Unsafe for a database written during the backup: the
    /// archive may hold a torn database.
    Tar,
    /// Fail the backup, naming the databases.
    Fail,
}

/// How one volume's databases are handled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// The configured mode.
    pub mode: SqliteInVolumes,
    /// The app is stopped (`stop_during_backup`): files are quiet, archive them as they are.
    pub stopped: bool,
}

impl Policy {
    /// Whether the databases are only recorded (archived as they are).
    fn records_only(self) -> bool {
        self.stopped || self.mode == SqliteInVolumes::Tar
    }
}

/// A database found in a volume's directory on the host.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// Path relative to the volume's root, without `./` (`data/app.db`).
    pub rel: Vec<u8>,
    /// Where it is on the host.
    pub path: PathBuf,
    /// Size of the database plus its `-wal`, at the scan.
    pub bytes: u64,
    /// Other names of the same file (hard links), relative like `rel`.
    pub aliases: Vec<Vec<u8>>,
}

/// The snapshots of one volume's databases, in a temporary directory removed on drop.
#[derive(Debug)]
pub(crate) struct Snapshots {
    /// Held for its `Drop`, which deletes the copies.
    _dir: tempfile::TempDir,
    taken: Vec<Taken>,
}

#[derive(Debug)]
struct Taken {
    rel: Vec<u8>,
    aliases: Vec<Vec<u8>>,
    file: PathBuf,
    snapshot: source_sqlite::Snapshot,
}

/// What to do before the volume is streamed.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Watch the stream; the databases found are recorded or refused by [`conclude`].
    Watch {
        /// Why no snapshot can be taken here (`None`: none is wanted).
        unreachable: Option<String>,
    },
    /// Replace these snapshotted databases in the stream.
    Replace(Snapshots),
}

/// The volume's directory on this host, or why it is not reachable from here.
pub(crate) fn host_root(endpoint: &Endpoint, info: &Volume) -> Result<PathBuf, String> {
    if info.driver != "local" {
        return Err(format!(
            "the volume uses the `{}` driver, whose data is not a directory on this host",
            info.driver
        ));
    }
    if !is_local_engine(endpoint.host()) {
        return Err(format!(
            "the Docker engine at {} is reached over the network, so the volume's files are not on this host",
            endpoint.host()
        ));
    }
    if cfg!(not(unix)) {
        return Err("reading a volume's files from the host is supported on Linux only".into());
    }
    let dir = match (info.options.get("device"), info.options.get("o")) {
        (None, _) => PathBuf::from(&info.mountpoint),
        (Some(device), Some(o)) if o.split(',').any(|x| x == "bind") => PathBuf::from(device),
        (Some(_), _) => {
            return Err(
                "the volume mounts a device or network filesystem (its `device` option), which is not \
                 readable from the host while no container uses it"
                    .into(),
            );
        }
    };
    if dir.as_os_str().is_empty() {
        return Err("the engine reports no mountpoint for it".into());
    }
    match fs::read_dir(&dir) {
        Ok(_) => Ok(dir),
        Err(e) => Err(format!(
            "its directory {} is not readable here ({e}); run packrat on the Docker host as root",
            dir.display()
        )),
    }
}

/// Whether the engine address is on this machine (socket, pipe or loopback).
fn is_local_engine(host: &str) -> bool {
    if host.starts_with("unix://") || host.starts_with("npipe://") {
        return true;
    }
    let rest = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .or_else(|| host.strip_prefix("https://"))
        .unwrap_or(host);
    ["127.", "localhost:", "localhost/", "[::1]"]
        .iter()
        .any(|p| rest.starts_with(p))
        || rest == "localhost"
}

/// Decides, and for `snapshot` takes the snapshots (blocking: run it off the async threads).
/// `staging` is the pack's staging directory; the snapshots go into a temporary directory next
/// to it.
pub(crate) fn prepare(
    policy: Policy,
    root: Result<PathBuf, String>,
    volume: &str,
    staging: &Path,
    cancel: &AtomicBool,
) -> Result<Plan, Error> {
    if policy.records_only() {
        return Ok(Plan::Watch { unreachable: None });
    }
    let root = match root {
        Ok(r) => r,
        Err(why) => return Ok(Plan::Watch { unreachable: Some(why) }),
    };
    let found = scan(&root)?;
    if policy.mode == SqliteInVolumes::Fail {
        if !found.is_empty() {
            return Err(Error::SqliteInVolume {
                volume: volume.into(),
                files: list(found.iter().map(|f| f.rel.as_slice())),
            });
        }
        return Ok(Plan::Watch { unreachable: None });
    }
    let temp_parent = staging.parent().unwrap_or(staging);
    take(&found, volume, temp_parent, cancel).map(Plan::Replace)
}

/// Every SQLite database below `root` (symbolic links are not followed).
pub(crate) fn scan(root: &Path) -> Result<Vec<Found>, Error> {
    let mut out: Vec<Found> = Vec::new();
    // Hard-linked databases are one file: snapshotted once, under every name.
    let mut ids: HashMap<(u64, u64), usize> = HashMap::new();
    let mut dirs = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, rel)) = dirs.pop() {
        let mut entries = fs::read_dir(&dir)
            .map_err(Error::io("list", &dir))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(Error::io("list", &dir))?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let meta = fs::symlink_metadata(&path).map_err(Error::io("inspect", &path))?;
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name_bytes(&e.file_name()).as_ref());
            if meta.is_dir() {
                dirs.push((path, child));
            } else if meta.is_file() && meta.len() >= MAGIC.len() as u64 && is_database(&path)? {
                let id = linked_id(&meta);
                if let Some(&i) = id.as_ref().and_then(|id| ids.get(id)) {
                    out[i].aliases.push(child);
                    continue;
                }
                if let Some(id) = id {
                    ids.insert(id, out.len());
                }
                let wal = fs::metadata(sibling(&path, "-wal")).map(|m| m.len()).unwrap_or(0);
                out.push(Found {
                    rel: child,
                    path,
                    bytes: meta.len() + wal,
                    aliases: Vec::new(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

/// Device and inode of a file with more than one name.
#[cfg(unix)]
fn linked_id(meta: &fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    (meta.nlink() > 1).then(|| (meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn linked_id(_meta: &fs::Metadata) -> Option<(u64, u64)> {
    None
}

#[cfg(unix)]
fn name_bytes(name: &std::ffi::OsStr) -> std::borrow::Cow<'_, [u8]> {
    use std::os::unix::ffi::OsStrExt;
    std::borrow::Cow::Borrowed(name.as_bytes())
}

#[cfg(not(unix))]
fn name_bytes(name: &std::ffi::OsStr) -> std::borrow::Cow<'_, [u8]> {
    std::borrow::Cow::Owned(name.to_string_lossy().into_owned().into_bytes())
}

/// Whether the file starts with the SQLite header.
fn is_database(path: &Path) -> Result<bool, Error> {
    let mut head = [0u8; 16];
    let mut f = fs::File::open(path).map_err(Error::io("open", path))?;
    match f.read_exact(&mut head) {
        Ok(()) => Ok(head == MAGIC),
        // Shrunk since it was listed.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(Error::io("read", path)(e)),
    }
}

/// `<path><suffix>` (`app.db` → `app.db-wal`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Snapshots every database of `found` into a temporary directory in `temp_parent`, after
/// checking that each fits into the free space there.
pub(crate) fn take(found: &[Found], volume: &str, temp_parent: &Path, cancel: &AtomicBool) -> Result<Snapshots, Error> {
    let dir = tempfile::Builder::new()
        .prefix(".packrat-sqlite-")
        .tempdir_in(temp_parent)
        .map_err(Error::io("create a temporary directory in", temp_parent))?;
    let mut taken = Vec::new();
    for (i, f) in found.iter().enumerate() {
        check_space(f, volume, dir.path())?;
        let file = dir.path().join(format!("{i}.db"));
        let snapshot = source_sqlite::snapshot_file(&f.path, &file, source_sqlite::DEFAULT_BUSY_TIMEOUT, cancel)
            .map_err(|source| Error::SqliteSnapshot {
                volume: volume.into(),
                path: show(&f.rel),
                source: Box::new(source),
            })?;
        tracing::info!(volume, path = %show(&f.rel), bytes = snapshot.bytes, "SQLite database snapshotted");
        taken.push(Taken {
            rel: f.rel.clone(),
            aliases: f.aliases.clone(),
            file,
            snapshot,
        });
    }
    Ok(Snapshots { _dir: dir, taken })
}

/// Fails when the database and its WAL are larger than the free space in `dir`.
fn check_space(f: &Found, volume: &str, dir: &Path) -> Result<(), Error> {
    let available = fs4::available_space(dir).map_err(Error::io("read the free space of", dir))?;
    if f.bytes > available {
        return Err(Error::SqliteNoSpace {
            volume: volume.into(),
            path: show(&f.rel),
            needed: f.bytes,
            available,
            dir: dir.parent().unwrap_or(dir).to_path_buf(),
        });
    }
    Ok(())
}

impl Snapshots {
    /// The stream edits: each database replaced by its copy, its companions left out.
    pub(crate) fn edits(&self) -> Edits {
        let mut replace = HashMap::new();
        let mut omit = HashSet::new();
        for t in &self.taken {
            for rel in t.names() {
                replace.insert(rel.to_vec(), t.file.clone());
                for c in COMPANIONS {
                    let mut name = rel.to_vec();
                    name.extend_from_slice(c.as_bytes());
                    omit.insert(name);
                }
            }
        }
        Edits {
            replace,
            omit,
            detect: Some(MAGIC),
        }
    }
}

impl Taken {
    /// Every name of the database.
    fn names(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.rel.as_slice()).chain(self.aliases.iter().map(Vec::as_slice))
    }

    /// The name the archive holds the copy under (the others are hard links to it).
    fn archived_name(&self, report: &EditReport) -> Option<&[u8]> {
        self.names().find(|n| report.replaced.contains(*n))
    }
}

/// The stream edits of a plan.
pub(crate) fn edits(plan: &Plan) -> Edits {
    match plan {
        Plan::Replace(s) => s.edits(),
        Plan::Watch { .. } => Edits {
            detect: Some(MAGIC),
            ..Edits::default()
        },
    }
}

/// After the stream: checks what it held against the plan and returns the manifest's
/// `meta.sqlite_snapshots` (`None` when the volume holds no database).
pub(crate) fn conclude(policy: Policy, plan: &Plan, report: &EditReport, volume: &str) -> Result<Option<Value>, Error> {
    let detected = || list(report.detected.iter().map(|d| d.path.as_slice()));
    let mut out: Vec<Value> = Vec::new();
    match plan {
        Plan::Watch { .. } if report.detected.is_empty() => {}
        Plan::Watch { .. } if policy.records_only() => out.extend(report.detected.iter().map(recorded)),
        Plan::Watch { .. } if policy.mode == SqliteInVolumes::Fail => {
            return Err(Error::SqliteInVolume {
                volume: volume.into(),
                files: detected(),
            });
        }
        Plan::Watch {
            unreachable: Some(reason),
        } => {
            return Err(Error::SqliteUnreachable {
                volume: volume.into(),
                files: detected(),
                reason: reason.clone(),
            });
        }
        Plan::Watch { unreachable: None } => {
            return Err(changed(volume, detected(), "appeared while the volume was archived"));
        }
        Plan::Replace(s) => {
            if !report.detected.is_empty() {
                return Err(changed(
                    volume,
                    detected(),
                    "appeared after the volume's directory was scanned",
                ));
            }
            let missing: Vec<&[u8]> = s
                .taken
                .iter()
                .filter(|t| t.archived_name(report).is_none())
                .map(|t| t.rel.as_slice())
                .collect();
            if !missing.is_empty() {
                return Err(changed(
                    volume,
                    list(missing.into_iter()),
                    "found in the volume's directory on the host were not in the engine's archive of it (removed, \
                     or the host directory is not this volume's)",
                ));
            }
            out.extend(s.taken.iter().map(|t| snapshotted(t, report)));
        }
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

fn changed(volume: &str, files: String, what: &str) -> Error {
    Error::SqliteChanged {
        volume: volume.into(),
        detail: format!("the SQLite database(s) {files} {what}"),
    }
}

/// The manifest record of a database archived as it is.
fn recorded(d: &Detected) -> Value {
    json!({ "path": show(&d.path), "bytes": d.size, "snapshot": false })
}

/// The manifest record of a snapshotted database.
fn snapshotted(t: &Taken, report: &EditReport) -> Value {
    let name = t.archived_name(report).unwrap_or(&t.rel);
    let left_out: Vec<String> = t
        .names()
        .flat_map(|n| {
            COMPANIONS.iter().map(move |c| {
                let mut n = n.to_vec();
                n.extend_from_slice(c.as_bytes());
                n
            })
        })
        .filter(|n| report.omitted.contains(n))
        .map(|n| show(&n))
        .collect();
    let links: Vec<String> = t.names().filter(|n| *n != name).map(show).collect();
    let strategy = match t.snapshot.strategy {
        source_sqlite::CopyStrategy::Snapshot => "snapshot",
        source_sqlite::CopyStrategy::Stepped => "stepped",
        source_sqlite::CopyStrategy::SteppedThenLocked => "stepped_then_locked",
    };
    let mut v = json!({
        "path": show(name),
        "snapshot": true,
        "journal_mode": t.snapshot.journal_mode.as_str(),
        "strategy": strategy,
        "bytes": t.snapshot.bytes,
        "integrity_check": "ok",
        "table_rows": t.snapshot.facts.table_rows,
        "left_out": left_out,
    });
    if !links.is_empty() {
        v["hard_links"] = json!(links);
    }
    v
}

/// `./a.db`, as in the archive.
fn show(rel: &[u8]) -> String {
    format!("./{}", String::from_utf8_lossy(rel))
}

/// `` `./a.db`, `./b.db` ``.
fn list<'a>(rels: impl Iterator<Item = &'a [u8]>) -> String {
    rels.map(|r| format!("`{}`", show(r))).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_sockets_are_local() {
        for h in [
            "unix:///var/run/docker.sock",
            "npipe:////./pipe/docker_engine",
            "tcp://127.0.0.1:2375",
            "tcp://localhost:2375",
        ] {
            assert!(is_local_engine(h), "{h}");
        }
        for h in ["tcp://10.0.0.5:2375", "tcp://docker.example:2376", "ssh://host"] {
            assert!(!is_local_engine(h), "{h}");
        }
    }

    fn volume(driver: &str, options: &[(&str, &str)]) -> Volume {
        Volume {
            name: "v".into(),
            driver: driver.into(),
            mountpoint: std::env::temp_dir().display().to_string(),
            options: options.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Volume::default()
        }
    }

    #[test]
    fn snapshots_need_the_volume_directory_on_this_host() {
        let local = Endpoint::resolve(Some("unix:///var/run/docker.sock"));
        let remote = Endpoint::resolve(Some("tcp://10.1.2.3:2375"));
        let e = host_root(&local, &volume("rexray", &[])).unwrap_err();
        assert!(e.contains("`rexray` driver"), "{e}");
        let e = host_root(&remote, &volume("local", &[])).unwrap_err();
        assert!(
            e.contains("tcp://10.1.2.3:2375") && e.contains("over the network"),
            "{e}"
        );
        let e = host_root(&local, &volume("local", &[("type", "nfs"), ("device", ":/export")])).unwrap_err();
        assert!(e.contains("`device` option"), "{e}");
        if cfg!(unix) {
            assert_eq!(host_root(&local, &volume("local", &[])).unwrap(), std::env::temp_dir());
            let bind = volume("local", &[("type", "none"), ("o", "bind"), ("device", "/")]);
            assert_eq!(host_root(&local, &bind).unwrap(), Path::new("/"));
            let mut gone = volume("local", &[]);
            gone.mountpoint = "/nonexistent/packrat/_data".into();
            assert!(host_root(&local, &gone).unwrap_err().contains("not readable here"));
        }
    }

    #[test]
    fn databases_seen_only_in_the_stream_are_recorded_or_refused() {
        let report = EditReport {
            detected: vec![Detected {
                path: b"data/app.db".to_vec(),
                size: 4096,
            }],
            ..EditReport::default()
        };
        let policy = |mode, stopped| Policy { mode, stopped };
        let remote = Plan::Watch {
            unreachable: Some("the Docker engine at tcp://10.1.2.3:2375 is reached over the network".into()),
        };
        // Snapshot wanted, impossible: say why and what to do.
        let e = conclude(policy(SqliteInVolumes::Snapshot, false), &remote, &report, "v").unwrap_err();
        assert!(matches!(e, Error::SqliteUnreachable { .. }), "{e:?}");
        let m = e.to_string();
        for want in [
            "`./data/app.db`",
            "tcp://10.1.2.3:2375",
            "stop_during_backup = true",
            "type = \"sqlite\"",
            "sqlite_in_volumes = \"tar\"",
        ] {
            assert!(m.contains(want), "{want} missing from {m}");
        }
        // Fail: names the files, wherever they were seen.
        let e = conclude(policy(SqliteInVolumes::Fail, false), &remote, &report, "v").unwrap_err();
        assert!(matches!(e, Error::SqliteInVolume { .. }), "{e:?}");
        // Tar, or the app stopped: recorded, not snapshotted.
        let want = json!([{"path": "./data/app.db", "bytes": 4096, "snapshot": false}]);
        for p in [
            policy(SqliteInVolumes::Tar, false),
            policy(SqliteInVolumes::Snapshot, true),
        ] {
            assert_eq!(conclude(p, &remote, &report, "v").unwrap(), Some(want.clone()));
        }
        // Nothing found: nothing recorded.
        let none = EditReport::default();
        assert_eq!(
            conclude(policy(SqliteInVolumes::Snapshot, false), &remote, &none, "v").unwrap(),
            None
        );
    }

    #[test]
    fn modes_parse_lowercase() {
        #[derive(Deserialize)]
        struct T {
            m: SqliteInVolumes,
        }
        for (s, m) in [
            ("snapshot", SqliteInVolumes::Snapshot),
            ("tar", SqliteInVolumes::Tar),
            ("fail", SqliteInVolumes::Fail),
        ] {
            let t: T = serde_json::from_str(&format!("{{\"m\":\"{s}\"}}")).unwrap();
            assert_eq!(t.m, m);
        }
        assert!(serde_json::from_str::<T>("{\"m\":\"copy\"}").is_err());
    }
}

//! Pack writer and reader.
//!
//! A [`StagingPack`] is a directory being filled by sources through [`ArtifactWriter`]s that
//! compress (zstd, on request), checksum (sha256) and count while streaming to disk. Sealing writes
//! `SHA256SUMS` and then `manifest.json` last, fsyncs both and the directory, and returns a
//! [`SealedPack`]. A [`Pack`] reads a sealed pack back from a local directory: it is the
//! [`PackReader`] of such a pack.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cancel::CancelToken;
use crate::crypt::{AGE_SUFFIX, Encryption};
use crate::manifest::{
    ArtifactEntry, Compression, FORMAT_NAME, FORMAT_VERSION, FORMAT_VERSION_PLAIN, MANIFEST_FILE, Manifest,
    ManifestWatermark, REPLICATION_FILE, SUMS_FILE, TimeWindow, check_relative_path,
};
use crate::reader::PackReader;
use crate::sums::Sums;
use crate::{BackupKind, Error, JobId, Result};

const IO_BUF: usize = 256 * 1024;

/// A pack id: `<prefix>_<YYYYMMDD_HHMMSS>` (plus `_N` to break ties). Safe as a directory name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PackId(String);

impl PackId {
    /// Validates an id: 1–128 characters of `A-Z a-z 0-9 _ - .`, not starting with `.` or `_`.
    pub fn new(id: impl Into<String>) -> Result<PackId> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 128
            && !id.starts_with('.')
            && !id.starts_with('_')
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if ok {
            Ok(PackId(id))
        } else {
            Err(Error::Other(format!(
                "invalid pack id `{id}`: use 1-128 characters of A-Z a-z 0-9 _ - ., not starting with . or _"
            )))
        }
    }

    /// `<prefix>_<YYYYMMDD_HHMMSS>` of `at` in zone `tz`, with `_<n>` appended when `n > 1`.
    pub fn generate(prefix: &str, at: DateTime<Utc>, tz: Tz, n: u32) -> Result<PackId> {
        let stamp = at.with_timezone(&tz).format("%Y%m%d_%H%M%S");
        if n > 1 {
            PackId::new(format!("{prefix}_{stamp}_{n}"))
        } else {
            PackId::new(format!("{prefix}_{stamp}"))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PackId {
    type Error = Error;
    fn try_from(s: String) -> Result<PackId> {
        PackId::new(s)
    }
}

impl From<PackId> for String {
    fn from(p: PackId) -> String {
        p.0
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Validates a plan name for use as a directory name (same rules as a pack id).
pub fn check_plan_name(plan: &str) -> Result<()> {
    PackId::new(plan).map(|_| ()).map_err(|_| {
        Error::Config(format!(
            "invalid plan name `{plan}`: use A-Z a-z 0-9 _ - ., not starting with . or _"
        ))
    })
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    plan: String,
    id: PackId,
    kind: BackupKind,
    tz: Tz,
    started_at: DateTime<Utc>,
    job_id: Mutex<Option<JobId>>,
    zstd_level: Mutex<i32>,
    reserved: Mutex<BTreeSet<String>>,
    finished: Mutex<Vec<ArtifactEntry>>,
    watermarks: Mutex<Vec<ManifestWatermark>>,
    cancel: Mutex<Option<CancelToken>>,
    encryption: Mutex<Option<Arc<Encryption>>>,
}

/// A pack under construction. Cheap to clone; clones share the same pack, so sources may write
/// several artifacts concurrently.
#[derive(Debug, Clone)]
pub struct StagingPack {
    inner: Arc<Inner>,
}

impl StagingPack {
    /// Creates the staging directory `dir` (which must not exist or be empty).
    pub fn create(dir: &Path, plan: &str, id: PackId, kind: BackupKind, tz: Tz) -> Result<StagingPack> {
        check_plan_name(plan)?;
        fs::create_dir_all(dir).map_err(Error::io("create staging directory", dir))?;
        let mut entries = fs::read_dir(dir).map_err(Error::io("read staging directory", dir))?;
        if entries.next().is_some() {
            return Err(Error::Other(format!(
                "staging directory {} is not empty; remove it or run `packrat` again to clean leftovers",
                dir.display()
            )));
        }
        Ok(StagingPack {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                plan: plan.to_string(),
                id,
                kind,
                tz,
                started_at: Utc::now(),
                job_id: Mutex::new(None),
                zstd_level: Mutex::new(3),
                reserved: Mutex::new(BTreeSet::new()),
                finished: Mutex::new(Vec::new()),
                watermarks: Mutex::new(Vec::new()),
                cancel: Mutex::new(None),
                encryption: Mutex::new(None),
            }),
        })
    }

    /// Records the job that builds this pack (written to the manifest).
    pub fn set_job_id(&self, job: JobId) {
        *lock(&self.inner.job_id) = Some(job);
    }

    /// Ties the pack to a job's cancellation: once `token` is cancelled, artifact writers created
    /// from now on refuse further writes and the sealed pack reports it to sinks
    /// ([`SealedPack::is_cancelled`]), so blocking work stops within one buffer.
    pub fn set_cancel(&self, token: CancelToken) {
        *lock(&self.inner.cancel) = Some(token);
    }

    /// Records the watermarks this pack advances once it is in place (written to the manifest,
    /// so that recovery can advance them if the process dies right after the pack was stored).
    pub fn set_watermarks(&self, marks: Vec<ManifestWatermark>) {
        *lock(&self.inner.watermarks) = marks;
    }

    /// Encrypts artifacts created from now on with age (after zstd): each is stored as
    /// `REL.age` and its manifest entry records the recipients ([`crate::crypt`]).
    pub fn set_encryption(&self, encryption: Encryption) {
        *lock(&self.inner.encryption) = Some(Arc::new(encryption));
    }

    /// The encryption set with [`StagingPack::set_encryption`].
    pub fn encryption(&self) -> Option<Arc<Encryption>> {
        lock(&self.inner.encryption).clone()
    }

    /// The relative path an artifact the source names `rel` is stored at (`rel.age` when the
    /// pack is encrypted).
    pub fn stored_path(&self, rel: &str) -> String {
        match lock(&self.inner.encryption).as_ref() {
            Some(_) => format!("{rel}{AGE_SUFFIX}"),
            None => rel.to_string(),
        }
    }

    /// Sets the zstd level for artifacts created from now on (default 3).
    pub fn set_zstd_level(&self, level: i32) {
        *lock(&self.inner.zstd_level) = level;
    }

    /// The staging directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The plan name.
    pub fn plan(&self) -> &str {
        &self.inner.plan
    }

    /// The pack id.
    pub fn id(&self) -> &PackId {
        &self.inner.id
    }

    /// Full or incremental.
    pub fn kind(&self) -> BackupKind {
        self.inner.kind
    }

    /// The plan's time zone.
    pub fn time_zone(&self) -> Tz {
        self.inner.tz
    }

    /// The absolute path an artifact with relative path `rel` will have, after validating `rel`
    /// and reserving it. Parent directories are created. For sources whose client library writes
    /// the file itself (SQLite's backup API); finish with [`StagingPack::adopt`].
    pub fn reserve(&self, rel: &str) -> Result<PathBuf> {
        check_relative_path(rel)?;
        if !lock(&self.inner.reserved).insert(rel.to_string()) {
            return Err(Error::ArtifactPath {
                path: rel.to_string(),
                reason: "already written to this pack".into(),
            });
        }
        let path = self.inner.dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
        }
        Ok(path)
    }

    /// Starts a streaming artifact at relative path `rel`, written by source `source`, of type
    /// `kind`: compressed as asked, then encrypted when the pack is ([`StagingPack::set_encryption`];
    /// stored at `rel.age` then).
    pub fn artifact(&self, rel: &str, source: &str, kind: &str, compression: Compression) -> Result<ArtifactWriter> {
        self.reserve(rel)?;
        let stored = self.stored_path(rel);
        let path = self.inner.dir.join(&stored);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(Error::io("create artifact", &path))?;
        let sink = HashingWriter::new(BufWriter::with_capacity(IO_BUF, file));
        let encryption = self.encryption();
        let stored_out = match &encryption {
            None => Stored::Plain(sink),
            Some(e) => Stored::Age(e.wrap(sink).map_err(Error::io("start age encryption for", &path))?),
        };
        let out = match compression {
            Compression::None => Out::Plain(stored_out),
            Compression::Zstd => {
                let level = *lock(&self.inner.zstd_level);
                let enc =
                    zstd::stream::write::Encoder::new(stored_out, level).map_err(Error::io("start zstd for", &path))?;
                Out::Zstd(enc)
            }
        };
        let mut entry = new_entry(&stored, source, kind, compression);
        entry.encryption = encryption.map(|e| e.record().clone());
        Ok(ArtifactWriter {
            pack: self.clone(),
            path,
            out: Some(out),
            entry,
            cancel: lock(&self.inner.cancel).clone(),
        })
    }

    /// Adds a file that already exists at [`StagingPack::reserve`]d path `rel` (written by a
    /// client library): fsyncs it and computes its size and sha256 by streaming.
    pub fn adopt(&self, rel: &str, source: &str, kind: &str, records: Option<u64>) -> Result<ArtifactEntry> {
        if !lock(&self.inner.reserved).contains(rel) {
            return Err(Error::ArtifactPath {
                path: rel.into(),
                reason: "not reserved; call reserve() first".into(),
            });
        }
        let path = self.inner.dir.join(rel);
        if self.encryption().is_some() {
            return self.adopt_encrypted(rel, source, kind, records);
        }
        // Write access: Windows' FlushFileBuffers refuses a handle opened read-only
        // ("Access denied", os error 5).
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(Error::io("open artifact", &path))?;
        file.sync_all().map_err(Error::io("fsync", &path))?;
        let (size, sha) = hash_reader(file).map_err(Error::io("read", &path))?;
        let mut e = new_entry(rel, source, kind, Compression::None);
        e.size = size;
        e.raw_size = size;
        e.sha256 = sha;
        e.records = records;
        lock(&self.inner.finished).push(e.clone());
        Ok(e)
    }

    /// In an encrypted pack, a file a client library wrote at `rel` is streamed through the
    /// encryption into `rel.age` and the plain file removed.
    fn adopt_encrypted(&self, rel: &str, source: &str, kind: &str, records: Option<u64>) -> Result<ArtifactEntry> {
        let path = self.inner.dir.join(rel);
        let plain = File::open(&path).map_err(Error::io("open artifact", &path))?;
        // The plain file keeps its reservation under `rel`; the artifact is written beside it.
        lock(&self.inner.reserved).remove(rel);
        let mut w = self.artifact(rel, source, kind, Compression::None)?;
        let copied = io::copy(&mut BufReader::with_capacity(IO_BUF, plain), &mut w);
        let removed = fs::remove_file(&path);
        copied.map_err(Error::io("encrypt", &path))?;
        removed.map_err(Error::io("remove the plain copy", &path))?;
        if let Some(n) = records {
            w.add_records(n);
        }
        w.finish()
    }

    /// Forgets a reserved artifact and deletes its file (e.g. a temporary copy replaced by a
    /// compressed artifact), and its encrypted form.
    pub fn unreserve(&self, rel: &str) -> Result<()> {
        lock(&self.inner.reserved).remove(rel);
        let encrypted = format!("{rel}{AGE_SUFFIX}");
        lock(&self.inner.finished).retain(|e| e.path != rel && e.path != encrypted);
        for path in [self.inner.dir.join(rel), self.inner.dir.join(&encrypted)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &path)(e)),
            }
        }
        Ok(())
    }

    /// Sets `meta[key]` of the finished artifact the source named `rel` (encrypted or not): facts
    /// learnt after an [`adopt`](StagingPack::adopt)ed file was added. Returns the updated entry.
    pub fn set_artifact_meta(&self, rel: &str, key: &str, value: serde_json::Value) -> Result<ArtifactEntry> {
        let mut finished = lock(&self.inner.finished);
        let e = finished
            .iter_mut()
            .find(|e| e.path == rel || e.plain_path() == rel)
            .ok_or_else(|| Error::ArtifactPath {
                path: rel.into(),
                reason: "no finished artifact by that name".into(),
            })?;
        e.meta.insert(key.to_string(), value);
        Ok(e.clone())
    }

    /// Artifacts finished so far.
    pub fn artifacts(&self) -> Vec<ArtifactEntry> {
        lock(&self.inner.finished).clone()
    }

    /// Seals the pack: writes `SHA256SUMS`, then `manifest.json` last, fsyncs them and the
    /// directory. Fails if an artifact was started but not finished.
    pub fn seal(self) -> Result<SealedPack> {
        let inner = &self.inner;
        let mut artifacts = lock(&inner.finished).clone();
        artifacts.sort_by(|a, b| a.path.cmp(&b.path));
        let reserved = lock(&inner.reserved).clone();
        for r in &reserved {
            if !artifacts.iter().any(|a| &a.path == r || a.plain_path() == r) {
                return Err(Error::Other(format!(
                    "artifact {r} was started but never finished; the pack is incomplete"
                )));
            }
        }
        let finished_at = Utc::now();
        let manifest = Manifest {
            format: FORMAT_NAME.into(),
            format_version: if artifacts.iter().any(|a| a.encryption.is_some()) {
                FORMAT_VERSION
            } else {
                FORMAT_VERSION_PLAIN
            },
            pack_id: inner.id.to_string(),
            plan: inner.plan.clone(),
            kind: inner.kind,
            job_id: *lock(&inner.job_id),
            time_zone: inner.tz.name().to_string(),
            started_at: inner.started_at,
            started_local: local_time(inner.started_at, inner.tz),
            finished_at,
            finished_local: local_time(finished_at, inner.tz),
            tool: "packrat".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            artifacts,
            watermarks: lock(&inner.watermarks).clone(),
        };
        let json = manifest.to_json();
        let sums = Sums::for_manifest(&manifest, &json).to_text();
        // Make the artifacts' directory entries durable, deepest first.
        let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
        for a in &manifest.artifacts {
            let mut p = Path::new(&a.path).parent();
            while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
                dirs.insert(inner.dir.join(d));
                p = d.parent();
            }
        }
        for d in dirs.iter().rev() {
            sync_dir(d)?;
        }
        write_synced(&inner.dir.join(SUMS_FILE), sums.as_bytes())?;
        let tmp = inner.dir.join(".manifest.json.tmp");
        write_synced(&tmp, &json)?;
        let final_path = inner.dir.join(MANIFEST_FILE);
        fs::rename(&tmp, &final_path).map_err(Error::io("rename manifest into place at", &final_path))?;
        sync_dir(&inner.dir)?;
        Ok(SealedPack {
            dir: inner.dir.clone(),
            manifest,
            cancel: lock(&inner.cancel).clone(),
        })
    }

    /// Removes the staging directory and everything in it.
    pub fn discard(self) -> Result<()> {
        remove_dir_all_if_exists(&self.inner.dir)
    }

    fn finish_entry(&self, e: ArtifactEntry) {
        lock(&self.inner.finished).push(e);
    }
}

fn new_entry(rel: &str, source: &str, kind: &str, compression: Compression) -> ArtifactEntry {
    ArtifactEntry {
        path: rel.to_string(),
        source: source.to_string(),
        kind: kind.to_string(),
        size: 0,
        sha256: String::new(),
        compression,
        raw_size: 0,
        records: None,
        files: None,
        window: None,
        meta: Default::default(),
        encryption: None,
    }
}

/// A local time in RFC 3339 with the zone's offset.
pub fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes `bytes` to `path` (created or truncated) and fsyncs the file.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(Error::io("create", path))?;
    f.write_all(bytes).map_err(Error::io("write", path))?;
    f.sync_all().map_err(Error::io("fsync", path))
}

/// Fsyncs a directory so that renames and new entries in it are durable (no-op on Windows,
/// where directories cannot be opened for syncing).
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("fsync directory", dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// `remove_dir_all` that treats a missing directory as success.
pub fn remove_dir_all_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove directory", dir)(e)),
    }
}

/// Largest `manifest.json` read (about 100,000 artifacts); a larger one is refused.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024 * 1024;

/// Opens `path` for reading if it is a regular file, and fails otherwise (FIFO, socket, device,
/// directory, symbolic link), naming what it is.
///
/// Opening a FIFO for reading blocks until a writer appears, so the type is checked before
/// opening (without following symlinks); on Unix the file is then opened with
/// `O_NONBLOCK | O_NOFOLLOW` and checked again through the open handle, which closes the race
/// with a file swapped in between. (`O_NONBLOCK` has no effect on reads of regular files.)
pub fn open_regular(path: &Path) -> io::Result<File> {
    let meta = fs::symlink_metadata(path)?;
    not_regular(&meta.file_type())?;
    let mut o = OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        // FILE_FLAG_OPEN_REPARSE_POINT: open a symlink swapped in meanwhile as itself.
        o.custom_flags(0x0020_0000);
    }
    let f = o.open(path)?;
    not_regular(&f.metadata()?.file_type())?;
    Ok(f)
}

/// Reads a whole small file (a manifest, a checksum list) with [`open_regular`], refusing one
/// larger than `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let f = open_regular(path)?;
    let len = f.metadata()?.len();
    let too_big = || io::Error::new(io::ErrorKind::InvalidData, format!("is larger than {limit} bytes"));
    if len > limit {
        return Err(too_big());
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(bytes)
}

fn not_regular(t: &fs::FileType) -> io::Result<()> {
    if t.is_file() {
        return Ok(());
    }
    let what = if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link (not followed)"
    } else {
        special_kind(t)
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}, not a regular file"),
    ))
}

#[cfg(unix)]
fn special_kind(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: &fs::FileType) -> &'static str {
    "a special file"
}

/// Streams `r` through sha256; returns (bytes, lowercase hex digest).
pub fn hash_reader(mut r: impl Read) -> io::Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; IO_BUF];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex::encode(h.finalize())))
}

/// A writer that hashes and counts everything passing through it.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Returns (inner writer, bytes written, hex sha256).
    pub fn finish(self) -> (W, u64, String) {
        (self.inner, self.bytes, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

type FileSink = HashingWriter<BufWriter<File>>;

/// The stored bytes: the file itself, or an age stream into it.
enum Stored {
    Plain(FileSink),
    Age(age::stream::StreamWriter<FileSink>),
}

impl Stored {
    fn finish(self) -> io::Result<FileSink> {
        match self {
            Stored::Plain(s) => Ok(s),
            Stored::Age(w) => w.finish(),
        }
    }
}

impl Write for Stored {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stored::Plain(w) => w.write(buf),
            Stored::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stored::Plain(w) => w.flush(),
            Stored::Age(w) => w.flush(),
        }
    }
}

enum Out {
    Plain(Stored),
    Zstd(zstd::stream::write::Encoder<'static, Stored>),
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Out::Plain(_) => "Plain",
            Out::Zstd(_) => "Zstd",
        })
    }
}

/// Streams one artifact into a staging pack: optional zstd, sha256 and byte counts computed while
/// writing. Call [`ArtifactWriter::finish`] to fsync it and record it in the pack; an unfinished
/// writer leaves the pack unsealable.
#[derive(Debug)]
pub struct ArtifactWriter {
    pack: StagingPack,
    path: PathBuf,
    out: Option<Out>,
    entry: ArtifactEntry,
    cancel: Option<CancelToken>,
}

impl ArtifactWriter {
    /// Adds to the record count (rows, documents).
    pub fn add_records(&mut self, n: u64) {
        *self.entry.records.get_or_insert(0) += n;
    }

    /// Adds to the file count (archive entries).
    pub fn add_files(&mut self, n: u64) {
        *self.entry.files.get_or_insert(0) += n;
    }

    /// Records the time window of an incremental artifact.
    pub fn set_window(&mut self, window: TimeWindow) {
        self.entry.window = Some(window);
    }

    /// Records a source-specific fact in the manifest entry.
    pub fn set_meta(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.entry.meta.insert(key.to_string(), value.into());
    }

    /// Raw (uncompressed) bytes written so far.
    pub fn raw_bytes(&self) -> u64 {
        self.entry.raw_size
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Finishes the stream, fsyncs the file and records the artifact in the pack.
    pub fn finish(mut self) -> Result<ArtifactEntry> {
        let path = self.path.clone();
        let stored = match self.out.take() {
            Some(Out::Plain(s)) => s,
            Some(Out::Zstd(enc)) => enc.finish().map_err(Error::io("finish zstd stream of", &path))?,
            None => return Err(Error::Other("artifact already finished".into())),
        };
        let sink = stored.finish().map_err(Error::io("finish age stream of", &path))?;
        let (buf, size, sha) = sink.finish();
        let file = buf
            .into_inner()
            .map_err(|e| Error::io("write", &path)(e.into_error()))?;
        file.sync_all().map_err(Error::io("fsync", &path))?;
        self.entry.size = size;
        self.entry.sha256 = sha;
        let entry = self.entry.clone();
        self.pack.finish_entry(entry.clone());
        Ok(entry)
    }
}

impl Write for ArtifactWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(c) = self.cancel.as_ref().filter(|c| c.is_cancelled()) {
            return Err(c.io_error());
        }
        let n = match self.out.as_mut() {
            Some(Out::Plain(w)) => w.write(buf)?,
            Some(Out::Zstd(w)) => w.write(buf)?,
            None => return Err(io::Error::other("artifact already finished")),
        };
        self.entry.raw_size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(Out::Plain(w)) => w.flush(),
            Some(Out::Zstd(w)) => w.flush(),
            None => Ok(()),
        }
    }
}

/// A pack whose manifest has been written: complete and immutable.
#[derive(Debug, Clone)]
pub struct SealedPack {
    dir: PathBuf,
    manifest: Manifest,
    cancel: Option<CancelToken>,
}

impl SealedPack {
    /// Where it is now.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The same pack after it was moved to `dir`.
    pub fn moved_to(self, dir: PathBuf) -> SealedPack {
        SealedPack { dir, ..self }
    }

    /// True when the job storing this pack was cancelled: a sink copying it stops and fails
    /// (check it between chunks; see [`SealedPack::check_cancelled`]).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(CancelToken::is_cancelled)
    }

    /// `Err` (with the reason; kind `Other`) once the job was cancelled.
    pub fn check_cancelled(&self) -> io::Result<()> {
        match self.cancel.as_ref().filter(|c| c.is_cancelled()) {
            Some(c) => Err(c.io_error()),
            None => Ok(()),
        }
    }

    /// Reads the pack's own files, `manifest.json` and `SHA256SUMS`, for a sink that copies the
    /// pack, and checks them before gigabytes are copied: the manifest on disk must be the one
    /// this value holds, and `SHA256SUMS` must parse and list exactly every artifact with its
    /// sha256 and `manifest.json` with the sha256 of its bytes.
    pub fn own_files(&self) -> std::result::Result<OwnFiles, OwnFilesError> {
        let read = |name: &str, limit: u64| {
            let path = self.dir.join(name);
            read_regular(&path, limit).map_err(|source| OwnFilesError::Read { path, source })
        };
        let mismatch = |name: &str, reason: String| OwnFilesError::Mismatch {
            path: self.dir.join(name),
            reason,
        };
        let manifest = read(MANIFEST_FILE, MAX_MANIFEST_BYTES)?;
        match Manifest::from_json(&manifest) {
            Ok(on_disk) if on_disk == self.manifest => {}
            Ok(_) => {
                return Err(mismatch(
                    MANIFEST_FILE,
                    "it differs from the sealed pack's manifest".into(),
                ));
            }
            Err(reason) => return Err(mismatch(MANIFEST_FILE, reason)),
        }
        let sums = read(SUMS_FILE, crate::sums::MAX_SUMS_BYTES)?;
        let manifest_sha256 = hex::encode(Sha256::digest(&manifest));
        let parsed = Sums::parse(&sums).map_err(|reason| mismatch(SUMS_FILE, reason))?;
        if let Some(p) = parsed
            .disagreements(&self.manifest, &manifest_sha256)
            .into_iter()
            .next()
        {
            return Err(mismatch(&p.path, p.reason));
        }
        Ok(OwnFiles {
            manifest,
            sums,
            manifest_sha256,
        })
    }

    /// As a reader.
    pub fn to_pack(&self) -> Pack {
        Pack {
            dir: self.dir.clone(),
            manifest: self.manifest.clone(),
        }
    }

    /// As a shared reader, the way [`crate::Sink::open`] hands out packs.
    pub fn to_reader(&self) -> Arc<dyn PackReader> {
        self.to_pack().into_reader()
    }
}

/// The own files of a sealed pack, as [`SealedPack::own_files`] read and checked them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnFiles {
    /// The bytes of `manifest.json`.
    pub manifest: Vec<u8>,
    /// The bytes of `SHA256SUMS`.
    pub sums: Vec<u8>,
    /// The sha256 of `manifest.json`, lowercase hex.
    pub manifest_sha256: String,
}

/// Why [`SealedPack::own_files`] refused a pack.
#[derive(Debug, thiserror::Error)]
pub enum OwnFilesError {
    /// A file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file does not agree with the sealed pack's manifest.
    #[error("{}: {reason}", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
}

/// A sealed pack read back from disk: the [`PackReader`] of a pack in a local directory.
#[derive(Debug, Clone)]
pub struct Pack {
    dir: PathBuf,
    manifest: Manifest,
}

impl Pack {
    /// Opens the pack in `dir`: reads and validates `manifest.json`, and checks that the pack id
    /// equals the directory name. Fails with [`Error::NotAPack`] otherwise.
    pub fn open(dir: &Path) -> Result<Pack> {
        let not = |reason: String| Error::NotAPack {
            path: dir.to_path_buf(),
            reason,
        };
        let meta = fs::symlink_metadata(dir).map_err(|e| not(format!("cannot read it: {e}")))?;
        if !meta.is_dir() {
            return Err(not("not a directory (symlinks are not followed)".into()));
        }
        let mpath = dir.join(MANIFEST_FILE);
        let bytes = match read_regular(&mpath, MAX_MANIFEST_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(not("no manifest.json (an unfinished or foreign directory)".into()));
            }
            Err(e) => return Err(not(format!("cannot read manifest.json: {e}"))),
        };
        let manifest = Manifest::from_json(&bytes).map_err(not)?;
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if manifest.pack_id != name {
            return Err(not(format!(
                "manifest.json names pack `{}` but the directory is `{name}`",
                manifest.pack_id
            )));
        }
        Ok(Pack {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The pack directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The pack id.
    pub fn id(&self) -> &str {
        &self.manifest.pack_id
    }

    /// The same pack as a [`SealedPack`] (a pack with a valid manifest is sealed), e.g. to copy
    /// it to another sink with [`crate::Sink::store`].
    pub fn into_sealed(self) -> SealedPack {
        SealedPack {
            dir: self.dir,
            manifest: self.manifest,
            cancel: None,
        }
    }

    /// Absolute path of an artifact.
    pub fn path_of(&self, entry: &ArtifactEntry) -> PathBuf {
        self.dir.join(&entry.path)
    }

    /// Opens an artifact for reading its original bytes (decompressing zstd as it streams).
    /// Only a regular file is opened (see [`open_regular`]): a FIFO, device or symlink in its
    /// place is an error, never a hang. The same as [`PackReader::open_artifact`].
    pub fn open_artifact(&self, entry: &ArtifactEntry) -> Result<Box<dyn Read + Send>> {
        PackReader::open_artifact(self, entry)
    }

    /// The pack as a shared reader, as [`crate::Sink::open`] returns it.
    pub fn into_reader(self) -> Arc<dyn PackReader> {
        Arc::new(self)
    }

    /// The path of the stored file `rel`: one of the pack's own files, or a safe relative path.
    fn file_path(&self, rel: &str) -> io::Result<PathBuf> {
        if ![MANIFEST_FILE, SUMS_FILE, REPLICATION_FILE].contains(&rel) {
            check_relative_path(rel).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        }
        Ok(self.dir.join(rel))
    }
}

impl PackReader for Pack {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn location_of(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    /// Every regular file and symlink below the directory (symlinks are not followed).
    fn files(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.dir.clone(), String::new())];
        while let Some((d, prefix)) = stack.pop() {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if prefix.is_empty() => return Err(e),
                Err(_) => continue,
            };
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
        Ok(out)
    }

    fn size(&self, rel: &str) -> io::Result<u64> {
        let meta = fs::symlink_metadata(self.file_path(rel)?)?;
        not_regular(&meta.file_type())?;
        Ok(meta.len())
    }

    fn open_file(&self, rel: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(open_regular(&self.file_path(rel)?)?))
    }

    fn local_dir(&self) -> Option<&Path> {
        Some(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staging(dir: &Path) -> StagingPack {
        StagingPack::create(
            &dir.join("stage"),
            "nightly",
            PackId::new("migration_pack_20261121_040000").unwrap(),
            BackupKind::Full,
            chrono_tz::Asia::Shanghai,
        )
        .unwrap()
    }

    #[test]
    fn pack_id_generation_uses_plan_zone_and_suffix() {
        let at = DateTime::parse_from_rfc3339("2026-11-20T20:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = PackId::generate("migration_pack", at, chrono_tz::Asia::Shanghai, 1).unwrap();
        assert_eq!(id.as_str(), "migration_pack_20261121_040000");
        let id2 = PackId::generate("migration_pack", at, chrono_tz::Asia::Shanghai, 2).unwrap();
        assert_eq!(id2.as_str(), "migration_pack_20261121_040000_2");
        assert!(PackId::new("../x").is_err());
        assert!(PackId::new(".hidden").is_err());
        assert!(PackId::new("_tmp").is_err());
    }

    #[test]
    fn write_seal_and_read_back() {
        let t = tempfile::tempdir().unwrap();
        let pack = staging(t.path());
        pack.set_job_id(7);
        let mut w = pack
            .artifact("files/a.txt.zst", "src", "file", Compression::Zstd)
            .unwrap();
        for _ in 0..1000 {
            w.write_all(b"hello world ").unwrap();
        }
        w.add_records(1000);
        let e = w.finish().unwrap();
        assert_eq!(e.raw_size, 12_000);
        assert!(e.size < 12_000);
        let mut w = pack.artifact("files/b.txt", "src", "file", Compression::None).unwrap();
        w.write_all(b"plain").unwrap();
        w.finish().unwrap();
        assert!(
            pack.artifact("files/b.txt", "src", "file", Compression::None).is_err(),
            "duplicate path"
        );
        let sealed = pack.seal().unwrap();
        let dir = sealed.dir().to_path_buf();
        assert!(dir.join(MANIFEST_FILE).exists());
        assert!(!dir.join(".manifest.json.tmp").exists());
        let sums = fs::read_to_string(dir.join(SUMS_FILE)).unwrap();
        assert_eq!(sums.lines().count(), 3);

        // Directory must be named after the pack id to open.
        let final_dir = t.path().join("migration_pack_20261121_040000");
        fs::rename(&dir, &final_dir).unwrap();
        let p = Pack::open(&final_dir).unwrap();
        assert_eq!(p.manifest().job_id, Some(7));
        assert_eq!(p.manifest().artifacts.len(), 2);
        assert_eq!(p.manifest().total_records(), 1000);
        let a = p.manifest().artifact("files/a.txt.zst").unwrap().clone();
        let mut s = String::new();
        p.open_artifact(&a).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s.len(), 12_000);
        assert!(Pack::open(&dir).is_err());
    }

    #[test]
    fn unfinished_artifact_blocks_sealing() {
        let t = tempfile::tempdir().unwrap();
        let pack = staging(t.path());
        let w = pack.artifact("x.bin", "src", "file", Compression::None).unwrap();
        drop(w);
        let err = pack.seal().unwrap_err().to_string();
        assert!(err.contains("x.bin"), "{err}");
    }

    #[test]
    fn directory_without_manifest_is_not_a_pack() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("p1");
        fs::create_dir(&d).unwrap();
        let err = Pack::open(&d).unwrap_err().to_string();
        assert!(err.contains("no manifest.json"), "{err}");
    }
}

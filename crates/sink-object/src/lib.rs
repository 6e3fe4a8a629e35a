//! # sink-object
//!
//! A packrat sink on object storage through [Apache OpenDAL](https://opendal.apache.org):
//! `type = "s3"` for AWS S3 and S3-compatible stores (Garage, MinIO, Ceph RGW, …). A pack is the
//! objects `<prefix>/<plan>/<pack id>/<file>`; `manifest.json` is uploaded last and is the commit
//! point, so a prefix without a manifest is never listed as a pack. Uploads stream as multipart
//! uploads (bounded memory, several parts in flight, OpenDAL's retry and timeout layers), and every
//! object is read back and checked against the sha256 it was uploaded with before the manifest
//! goes up. Packs are read straight from the bucket through [`backup_core::PackReader`], so
//! `verify`, `list`, `prune` and every restore work on a host that has only the config.
//!
//! ```no_run
//! # async fn demo() -> backup_core::Result<()> {
//! use backup_core::Sink;
//! let config: sink_object::ObjectSinkConfig = toml::from_str(r#"
//!     endpoint = "http://127.0.0.1:3900"
//!     region = "garage"
//!     bucket = "backups"
//!     access_key_id_env = "S3_KEY_ID"
//!     secret_access_key_env = "S3_SECRET"
//! "#).unwrap();
//! let sink = sink_object::ObjectSink::new("offsite", config);
//! for pack in sink.list(Some("nightly")).await? {
//!     println!("{} at {}", pack.id, pack.location);
//! }
//! # Ok(()) }
//! ```
//!
//! A job killed mid-upload leaves objects without a manifest and a marker object
//! `.packrat-upload` (host, pid, job); [`Sink::clean_leftovers`] removes such prefixes once the
//! process that wrote them is gone (same host) or after a day (another host). Incomplete multipart
//! uploads of a killed process are aborted by the store's lifecycle rule (see docs/object-storage.md).

mod config;
mod error;
mod reader;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use backup_core::config::{Defaults, SinkSection};
use backup_core::manifest::check_relative_path;
use backup_core::pack::OwnFilesError;
use backup_core::{Error, JobId, Manifest, PackInfo, PackReader, SealedPack, Sink};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use opendal::Operator;
use opendal::layers::{RetryLayer, TimeoutLayer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tracing::{info, warn};

pub use config::{ByteSize, ObjectSinkConfig};
pub use error::ObjectError;
use error::{kind_of, message_of};
pub use reader::ObjectPack;

/// The commit point of a pack.
const MANIFEST: &str = "manifest.json";
/// The pack's checksum list.
const SUMS: &str = "SHA256SUMS";
/// The marker of an upload in progress (removed once the manifest is in).
pub const MARKER: &str = ".packrat-upload";
/// After this long, an incomplete upload of another host is a leftover.
const FOREIGN_LEFTOVER_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

impl SinkSection for ObjectSinkConfig {
    fn build(&self, name: &str, _: &Defaults) -> Arc<dyn Sink> {
        Arc::new(ObjectSink::new(name, self.clone()))
    }
}

/// What the marker object of an upload in progress says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Marker {
    host: String,
    pid: u32,
    job: JobId,
    started_at: DateTime<Utc>,
}

/// Packs in a bucket of an S3-compatible store.
#[derive(Debug)]
pub struct ObjectSink {
    name: String,
    config: ObjectSinkConfig,
    op: tokio::sync::OnceCell<Operator>,
    uploaded: AtomicU64,
}

impl ObjectSink {
    /// The sink named `name`. Credentials are read when it is first used.
    pub fn new(name: &str, config: ObjectSinkConfig) -> ObjectSink {
        ObjectSink {
            name: name.to_string(),
            config,
            op: tokio::sync::OnceCell::new(),
            uploaded: AtomicU64::new(0),
        }
    }

    /// Bytes uploaded by this sink since it was built.
    pub fn uploaded_bytes(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// The key prefix of everything this sink writes (`""` or `prefix/`).
    fn base(&self) -> String {
        if self.config.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.config.prefix)
        }
    }

    /// The key prefix of a pack: `<prefix>/<plan>/<id>/`.
    fn pack_dir(&self, plan: &str, id: &str) -> String {
        format!("{}{plan}/{id}/", self.base())
    }

    /// `s3://bucket/key`.
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.config.bucket)
    }

    /// `s3://bucket/key at ENDPOINT`, for errors.
    fn at(&self, key: &str) -> String {
        format!("{} at {}", self.url(key), self.config.endpoint)
    }

    fn store_err(&self, action: &'static str, key: &str) -> impl FnOnce(opendal::Error) -> ObjectError + '_ {
        let location = self.at(key);
        move |e| ObjectError::Store {
            action,
            location,
            message: message_of(&e),
            kind: kind_of(&e),
        }
    }

    /// The operator, built on first use (reading the credentials then).
    async fn op(&self) -> Result<&Operator, ObjectError> {
        self.op
            .get_or_try_init(|| async {
                let key = format!("sinks.{}", self.name);
                let cred = |what: &str, r: backup_core::config::SecretRef| {
                    r.resolve(&format!("{key}.{what}"))
                        .map_err(|e| ObjectError::Credentials(e.to_string()))
                };
                let id = cred("access_key_id", self.config.access_key_id_ref())?;
                let secret = cred("secret_access_key", self.config.secret_access_key_ref())?;
                let c = &self.config;
                // The HTTP transport (reqwest with rustls); first call installs it, later ones are no-ops.
                opendal::install_default();
                let mut b = opendal::services::S3::default()
                    .endpoint(&c.endpoint)
                    .region(&c.region)
                    .bucket(&c.bucket)
                    .root("/")
                    .access_key_id(id.expose())
                    .secret_access_key(secret.expose())
                    .disable_config_load()
                    .disable_ec2_metadata();
                if !c.path_style {
                    b = b.enable_virtual_host_style();
                }
                if let Some(class) = &c.storage_class {
                    b = b.default_storage_class(class);
                }
                let op = Operator::new(b).map_err(self.store_err("configure", ""))?;
                Ok(op
                    .layer(TimeoutLayer::new().with_timeout(c.timeout).with_io_timeout(c.timeout))
                    .layer(RetryLayer::new().with_max_times(c.retries).with_jitter()))
            })
            .await
    }

    /// Reads and checks the manifest of `plan`/`id`: only a valid manifest naming this plan and
    /// id is a pack of ours.
    async fn manifest(&self, plan: &str, id: &str) -> Result<Manifest, ObjectError> {
        let key = format!("{}{MANIFEST}", self.pack_dir(plan, id));
        let op = self.op().await?;
        let not_found = || {
            ObjectError::Core(Error::NotFound(format!(
                "no pack {plan}/{id} in {}",
                self.at(&self.base())
            )))
        };
        let bytes = match op.read(&key).await {
            Ok(b) => b.to_vec(),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(self.store_err("read", &key)(e)),
        };
        let m = Manifest::from_json(&bytes).map_err(|reason| {
            ObjectError::Core(Error::NotAPack {
                path: PathBuf::from(self.url(&key)),
                reason,
            })
        })?;
        if m.plan != plan || m.pack_id != id {
            return Err(not_found());
        }
        Ok(m)
    }

    /// Opens `plan`/`id` for reading.
    pub async fn open_pack(&self, plan: &str, id: &str) -> Result<ObjectPack, ObjectError> {
        let manifest = self.manifest(plan, id).await?;
        let dir = self.pack_dir(plan, id);
        let op = self.op().await?.clone();
        let entries = op
            .list_with(&dir)
            .recursive(true)
            .await
            .map_err(self.store_err("list", &dir))?;
        let files = entries
            .into_iter()
            .filter(|e| !e.metadata().is_dir())
            .filter_map(|e| {
                let rel = e.path().strip_prefix(&dir)?.to_string();
                (rel != MARKER).then(|| (rel, e.metadata().content_length()))
            })
            .collect();
        Ok(ObjectPack::new(op, dir.clone(), self.url(&dir), manifest, files))
    }

    /// The sub-"directories" of `key` (`a/` entries of a non-recursive listing), names only.
    async fn subdirs(&self, key: &str) -> Result<Vec<String>, ObjectError> {
        let op = self.op().await?;
        let entries = match op.list(key).await {
            Ok(e) => e,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.store_err("list", key)(e)),
        };
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_dir())
            .filter_map(|e| {
                let name = e.path().strip_prefix(key)?.trim_end_matches('/').to_string();
                (!name.is_empty() && !name.contains('/')).then_some(name)
            })
            .collect())
    }

    /// Uploads one local file to `key`, streaming it as a multipart upload, then reads the object
    /// back: both must hash to `sha256`. Returns the bytes sent.
    async fn upload_file(&self, pack: &SealedPack, from: &Path, key: &str, sha256: &str) -> Result<u64, ObjectError> {
        let op = self.op().await?;
        let local = |source| ObjectError::Local {
            path: from.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::open(from).await.map_err(local)?;
        let mut w = op
            .writer_with(key)
            .chunk(self.config.part_size.0 as usize)
            .concurrent(self.config.concurrency)
            .await
            .map_err(self.store_err("upload", key))?;
        let mut hasher = Sha256::new();
        let mut sent = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        let outcome: Result<(), ObjectError> = async {
            loop {
                let n = file.read(&mut buf).await.map_err(local)?;
                if n == 0 {
                    return Ok(());
                }
                if pack.is_cancelled() {
                    return Err(ObjectError::Core(Error::Cancelled(format!(
                        "upload of {}",
                        self.url(key)
                    ))));
                }
                hasher.update(&buf[..n]);
                w.write(Bytes::copy_from_slice(&buf[..n]))
                    .await
                    .map_err(self.store_err("upload", key))?;
                sent += n as u64;
            }
        }
        .await;
        if let Err(e) = outcome {
            let _ = w.abort().await; // the parts sent so far are dropped by the store
            return Err(e);
        }
        w.close().await.map_err(self.store_err("upload", key))?;
        let local_sha = hex::encode(hasher.finalize());
        if local_sha != sha256 {
            return Err(ObjectError::Core(Error::Other(format!(
                "{} changed while it was uploaded (sha256 {local_sha}, the pack says {sha256}); the pack is damaged, nothing was committed",
                from.display()
            ))));
        }
        self.read_back(key, sha256).await?;
        Ok(sent)
    }

    /// Uploads small bytes to `key` and reads them back.
    async fn upload_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<u64, ObjectError> {
        let op = self.op().await?;
        let sha = hex::encode(Sha256::digest(&bytes));
        let n = bytes.len() as u64;
        op.write(key, bytes).await.map_err(self.store_err("upload", key))?;
        self.read_back(key, &sha).await?;
        Ok(n)
    }

    /// Streams the object at `key` back and checks its sha256.
    ///
    /// One GET streamed through the hasher: ranged reads of `part_size` one after another
    /// (`.chunk(part_size)`) took 2.6 times as long on the benchmark's Garage cluster (each range
    /// buffered whole, then hashed, with no request in flight meanwhile) and held a part in memory.
    async fn read_back(&self, key: &str, sha256: &str) -> Result<(), ObjectError> {
        let op = self.op().await?;
        let reader = op.reader(key).await.map_err(self.store_err("read back", key))?;
        let mut stream = reader
            .into_bytes_stream(..)
            .await
            .map_err(self.store_err("read back", key))?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ObjectError::Store {
                action: "read back",
                location: self.at(key),
                message: e.to_string(),
                kind: backup_core::ErrorKind::Unavailable,
            })?;
            hasher.update(&chunk);
        }
        let got = hex::encode(hasher.finalize());
        if got != sha256 {
            return Err(ObjectError::ReadBack {
                location: self.at(key),
                expected: sha256.to_string(),
                got,
            });
        }
        Ok(())
    }

    /// Uploads every file of `pack` under its prefix, the manifest last.
    async fn upload(&self, pack: &SealedPack, job: JobId) -> Result<u64, ObjectError> {
        let m = pack.manifest();
        let dir = self.pack_dir(&m.plan, &m.pack_id);
        let own = pack.own_files().map_err(|e| match e {
            OwnFilesError::Read { path, source } => ObjectError::Local { path, source },
            OwnFilesError::Mismatch { path, reason } => ObjectError::Core(Error::NotAPack { path, reason }),
        })?;
        let marker = Marker {
            host: hostname(),
            pid: std::process::id(),
            job,
            started_at: Utc::now(),
        };
        let marker = serde_json::to_vec(&marker).map_err(|e| ObjectError::Core(Error::Other(e.to_string())))?;
        self.op()
            .await?
            .write(&format!("{dir}{MARKER}"), marker)
            .await
            .map_err(self.store_err("upload", &format!("{dir}{MARKER}")))?;
        let mut bytes = 0;
        for a in &m.artifacts {
            check_relative_path(&a.path)?;
            bytes += self
                .upload_file(pack, &pack.dir().join(&a.path), &format!("{dir}{}", a.path), &a.sha256)
                .await?;
        }
        bytes += self.upload_bytes(&format!("{dir}{SUMS}"), own.sums).await?;
        // The commit point: from here on the prefix is a pack.
        bytes += self.upload_bytes(&format!("{dir}{MANIFEST}"), own.manifest).await?;
        if let Err(e) = self.op().await?.delete(&format!("{dir}{MARKER}")).await {
            warn!(sink = %self.name, "cannot remove the upload marker of {}: {}", self.url(&dir), message_of(&e));
        }
        Ok(bytes)
    }

    async fn store_pack(&self, pack: &SealedPack, job: JobId) -> Result<PackInfo, ObjectError> {
        let m = pack.manifest();
        let dir = self.pack_dir(&m.plan, &m.pack_id);
        if self.exists_any(&dir).await? {
            return Err(ObjectError::Exists(self.at(&dir)));
        }
        match self.upload(pack, job).await {
            Ok(bytes) => {
                self.uploaded.fetch_add(bytes, Ordering::Relaxed);
                info!(sink = %self.name, location = %self.url(&dir), bytes, "pack uploaded and verified");
            }
            Err(e) => {
                // Nothing was committed; take back what went up (a leftover sweep does it otherwise).
                if let Ok(op) = self.op().await
                    && let Err(r) = op.delete_with(&dir).recursive(true).await
                {
                    warn!(sink = %self.name, "cannot remove the partial upload {}: {}", self.url(&dir), message_of(&r));
                }
                return Err(e);
            }
        }
        let pack = self.open_pack(&m.plan, &m.pack_id).await?;
        Ok(PackInfo::from_pack(&self.name, &pack))
    }

    /// Whether any object exists under `dir`.
    async fn exists_any(&self, dir: &str) -> Result<bool, ObjectError> {
        let op = self.op().await?;
        match op.list_with(dir).limit(1).await {
            Ok(v) => Ok(!v.is_empty()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.store_err("list", dir)(e)),
        }
    }

    async fn list_packs(&self, plan: Option<&str>) -> Result<Vec<PackInfo>, ObjectError> {
        let plans = match plan {
            Some(p) => vec![p.to_string()],
            None => self.subdirs(&self.base()).await?,
        };
        let mut packs = Vec::new();
        for plan in plans {
            for id in self.subdirs(&format!("{}{plan}/", self.base())).await? {
                // A prefix without a valid manifest of this plan and id is not a pack (yet).
                match self.manifest(&plan, &id).await {
                    Ok(m) => {
                        let location = self.url(self.pack_dir(&plan, &id).trim_end_matches('/'));
                        packs.push(PackInfo::from_manifest(&self.name, &m, location));
                    }
                    Err(ObjectError::Core(Error::NotFound(_) | Error::NotAPack { .. })) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        packs.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        Ok(packs)
    }

    async fn delete_pack(&self, plan: &str, id: &str) -> Result<(), ObjectError> {
        self.manifest(plan, id).await?; // only a valid pack of ours, whatever the caller listed
        let dir = self.pack_dir(plan, id);
        let op = self.op().await?;
        // The manifest first: the pack is gone from every listing at once.
        op.delete(&format!("{dir}{MANIFEST}"))
            .await
            .map_err(self.store_err("delete", &format!("{dir}{MANIFEST}")))?;
        op.delete_with(&dir)
            .recursive(true)
            .await
            .map_err(self.store_err("delete", &dir))
    }

    async fn sweep(&self) -> Result<Vec<PathBuf>, ObjectError> {
        let mut removed = Vec::new();
        let op = self.op().await?;
        for plan in self.subdirs(&self.base()).await? {
            for id in self.subdirs(&format!("{}{plan}/", self.base())).await? {
                let dir = self.pack_dir(&plan, &id);
                let marker_key = format!("{dir}{MARKER}");
                let marker: Option<Marker> = match op.read(&marker_key).await {
                    Ok(b) => serde_json::from_slice(&b.to_vec()).ok(),
                    Err(_) => None,
                };
                let Some(marker) = marker else { continue }; // not provably ours: left alone
                let committed = op.exists(&format!("{dir}{MANIFEST}")).await.unwrap_or(true);
                if committed {
                    // Killed between the manifest and the marker's removal: a complete pack.
                    let _ = op.delete(&marker_key).await;
                    continue;
                }
                let gone = if marker.host == hostname() {
                    !process_alive(marker.pid)
                } else {
                    Utc::now() - marker.started_at > FOREIGN_LEFTOVER_AGE
                };
                if gone {
                    op.delete_with(&dir)
                        .recursive(true)
                        .await
                        .map_err(self.store_err("delete", &dir))?;
                    info!(sink = %self.name, location = %self.url(&dir), job = marker.job, "removed the partial upload of a job that is gone");
                    removed.push(PathBuf::from(self.url(dir.trim_end_matches('/'))));
                }
            }
        }
        Ok(removed)
    }

    async fn check_store(&self) -> Result<(), ObjectError> {
        let op = self.op().await?;
        let base = self.base();
        op.list_with(&base)
            .limit(1)
            .await
            .map(drop)
            .or_else(|e| {
                if e.kind() == opendal::ErrorKind::NotFound && !base.is_empty() {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(self.store_err("list", &base))
    }
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Whether a process with this pid runs on this host (Linux: `/proc`; elsewhere assumed).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

#[async_trait]
impl Sink for ObjectSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn location(&self) -> String {
        format!("{} at {}", self.url(&self.base()), self.config.endpoint)
    }

    async fn store(&self, pack: &SealedPack, job: JobId) -> backup_core::Result<PackInfo> {
        self.store_pack(pack, job).await.map_err(Error::sink(&self.name))
    }

    async fn list(&self, plan: Option<&str>) -> backup_core::Result<Vec<PackInfo>> {
        self.list_packs(plan).await.map_err(Error::sink(&self.name))
    }

    async fn open(&self, plan: &str, id: &str) -> backup_core::Result<Arc<dyn PackReader>> {
        match self.open_pack(plan, id).await {
            Ok(p) => Ok(Arc::new(p)),
            Err(e) => Err(Error::sink(&self.name)(e)),
        }
    }

    async fn exists(&self, plan: &str, id: &str) -> backup_core::Result<bool> {
        self.exists_any(&self.pack_dir(plan, id))
            .await
            .map_err(Error::sink(&self.name))
    }

    async fn delete(&self, plan: &str, id: &str) -> backup_core::Result<()> {
        self.delete_pack(plan, id).await.map_err(Error::sink(&self.name))
    }

    async fn clean_leftovers(&self) -> backup_core::Result<Vec<PathBuf>> {
        self.sweep().await.map_err(Error::sink(&self.name))
    }

    async fn check(&self) -> backup_core::Result<()> {
        self.check_store().await.map_err(Error::sink(&self.name))
    }
}

//! # source-mongo
//!
//! The packrat source for MongoDB. [`MongoSource`] backs up the collections a plan selects
//! ([`Selection`]: names or globs, a time field, per-collection overrides), either whole (full)
//! or incrementally by a time field and a watermark, several collections at once. Documents
//! stream as raw BSON from the server's reply batches straight into a zstd writer — never
//! decoded or re-encoded — into `mongo/<db>/<collection>.bson.zst`, which decompresses to exactly
//! mongodump's `.bson` layout; indexes and options go into `<collection>.metadata.json` in
//! mongodump's shape. [`MongoCheck`] is the deep check of such artifacts, [`restore`] puts packs
//! (or a chain of them) back into a server, and [`sample`] compares random documents of a pack
//! with the live database.
//!
//! ```no_run
//! # async fn demo() -> backup_core::Result<()> {
//! use std::sync::Arc;
//! use backup_core::config::Secret;
//! use backup_core::{BackupContext, BackupKind, PackId, Source, StagingPack, Verifier, VerifyLevel};
//! use source_mongo::{MongoCheck, MongoSource, Selection};
//!
//! let uri = Secret::new(std::env::var("MES_MONGO_URI").unwrap());
//! let source = MongoSource::new("mes", uri, "mes")
//!     .with_selection(Selection::collections(["api_logs", "scan*"], Some("createdAt")))
//!     .with_parallelism(3);
//! let ctx = BackupContext::detached("hot", BackupKind::Incremental);
//! let id = PackId::new("migration_pack_20261121_040000")?;
//! let pack = StagingPack::create("/tmp/staging/job_1".as_ref(), "hot", id, BackupKind::Incremental, ctx.time_zone)?;
//! let report = source.backup(&ctx, &pack).await?; // mongo/mes/api_logs.bson.zst, …
//! let sealed = pack.seal()?;
//! // Only now, with the pack safely stored, would a runner advance `report.watermarks`.
//! let verifier = Verifier::new().with_check(Arc::new(MongoCheck));
//! assert!(verifier.verify(&sealed.to_pack(), VerifyLevel::Deep).is_ok());
//! # Ok(()) }
//! ```
//!
//! ## Incremental windows
//!
//! Each incremental run copies, per collection, the documents with `from <= time_field < to`:
//! `from` is the collection's watermark (key `<db>.<collection>`) for the plan, `to` is the job's
//! start minus the plan's `lag`. The new watermark `to` is returned in the
//! [`backup_core::SourceReport`]; the runner stores it only once the pack is safely in its first
//! sink, so a failed run changes nothing and the next one covers the whole gap. Without a
//! watermark the first window starts as `first_run` says (start of today in the plan's zone by
//! default). Documents whose time field is missing or not a date are counted and reported; full
//! backups include them. A full backup of a collection with a time field also returns a
//! watermark (`to`), so incremental runs continue from there.

mod backup;
mod bsonstream;
mod check;
mod config;
mod connect;
mod error;
mod metadata;
pub mod restore;
pub mod sample;
mod select;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use backup_core::config::Secret;
use backup_core::{BackupContext, BackupKind, Source, SourceReport, StagingPack};
use futures_util::StreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::{Client, Database};
use tokio::sync::{OnceCell, Semaphore};
use tokio::task::JoinSet;

pub use backup::{artifact_stem, file_name, watermark_key};
pub use bsonstream::{DocReader, validate};
pub use check::MongoCheck;
pub use config::{CollectionConfig, CollectionMode, DEFAULT_LAG, FirstRun, MongoPlanConfig, MongoSourceConfig};
pub use connect::Redactor;
pub use error::{Cause, Error, Result};
pub use metadata::Metadata;
pub use select::{Selection, glob_match};

/// The artifact type of a collection's documents (`ArtifactEntry::kind`).
pub const ARTIFACT_KIND: &str = "mongo-bson";
/// The artifact type of a collection's `metadata.json`.
pub const METADATA_KIND: &str = "mongo-metadata";
/// The source kind.
pub const SOURCE_KIND: &str = "mongo";
/// Default of [`MongoSource::with_parallelism`].
pub const DEFAULT_PARALLELISM: usize = 3;

#[derive(Debug, Clone)]
enum UriRef {
    Given(Secret),
    Config { env: Option<String>, file: Option<PathBuf> },
}

/// A connected client with the redactor for its URI's secrets.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The driver's client.
    pub client: Client,
    /// Removes the URI's secrets from messages.
    pub redactor: Redactor,
}

impl Connection {
    /// Connects (lazily: the first operation contacts the server) with `uri`.
    pub async fn open(uri: &Secret) -> Result<Connection> {
        let redactor = Redactor::new(uri);
        let client = connect::client(uri, &redactor).await?;
        Ok(Connection { client, redactor })
    }

    /// Pings the server through `database` (authenticating on the way).
    pub async fn ping(&self, database: &str) -> Result<()> {
        self.client
            .database(database)
            .run_command(doc! {"ping": 1})
            .await
            .map_err(|e| self.redactor.error(format!("connecting to database {database}"), e))?;
        Ok(())
    }
}

/// A MongoDB database to back up (`type = "mongo"`), with the collections a plan selects.
#[derive(Debug)]
pub struct MongoSource {
    name: String,
    database: String,
    uri: UriRef,
    selection: Selection,
    parallelism: usize,
    conn: OnceCell<Connection>,
}

impl MongoSource {
    /// A source named `name` for `database`, connecting with `uri`; every collection, full
    /// copies, [`DEFAULT_PARALLELISM`].
    pub fn new(name: impl Into<String>, uri: Secret, database: impl Into<String>) -> MongoSource {
        MongoSource {
            name: name.into(),
            database: database.into(),
            uri: UriRef::Given(uri),
            selection: Selection::all(),
            parallelism: DEFAULT_PARALLELISM,
            conn: OnceCell::new(),
        }
    }

    /// A source from its config entry. The URI is read from its environment variable or file
    /// when the source first connects, so a missing variable fails the job, not the config.
    pub fn from_config(name: impl Into<String>, cfg: &MongoSourceConfig) -> MongoSource {
        MongoSource {
            name: name.into(),
            database: cfg.database.clone(),
            uri: UriRef::Config {
                env: cfg.uri_env.clone(),
                file: cfg.uri_file.clone(),
            },
            selection: Selection::all(),
            parallelism: DEFAULT_PARALLELISM,
            conn: OnceCell::new(),
        }
    }

    /// A source from its config entry with the selection and parallelism of a plan's
    /// `[plans.NAME.mongo]` (`parallelism` is the config's top-level value, used when the plan
    /// sets none).
    pub fn for_plan(
        name: impl Into<String>,
        cfg: &MongoSourceConfig,
        plan: &MongoPlanConfig,
        parallelism: usize,
    ) -> Self {
        MongoSource::from_config(name, cfg)
            .with_selection(Selection::from_plan(plan))
            .with_parallelism(plan.effective_parallelism(parallelism))
    }

    /// Which collections, by which time field.
    pub fn with_selection(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// Most collections backed up at once (at least 1).
    pub fn with_parallelism(mut self, n: usize) -> Self {
        self.parallelism = n.max(1);
        self
    }

    /// The database.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The selection.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// The connection URI (resolved from the environment or file when configured so).
    pub fn uri(&self) -> Result<Secret> {
        match &self.uri {
            UriRef::Given(s) => Ok(s.clone()),
            UriRef::Config { env, file } => Secret::resolve(
                &format!("sources.{}.uri_env/uri_file", self.name),
                env.as_deref(),
                file.as_deref(),
            )
            .map_err(|e| Error::Uri(e.to_string())),
        }
    }

    /// The connection, opened on first use.
    pub async fn connection(&self) -> Result<&Connection> {
        self.conn
            .get_or_try_init(|| async { Connection::open(&self.uri()?).await })
            .await
    }

    async fn run_backup(&self, ctx: &BackupContext, pack: &StagingPack) -> Result<SourceReport> {
        let conn = self.connection().await?;
        let db = conn.client.database(&self.database);
        let specs = list_collections(&db, &conn.redactor, &self.database).await?;
        let names: Vec<String> = specs.keys().cloned().collect();
        let (picked, mut warnings) = self.selection.resolve(&self.database, &names)?;
        if picked.is_empty() {
            warnings.push(format!(
                "no collection of database `{}` is selected; the pack holds nothing from this source",
                self.database
            ));
        }
        let to = backup::to_millis(ctx.started_at - chrono::Duration::from_std(self.selection.lag).unwrap_or_default());
        let run = backup::RunInfo {
            kind: ctx.kind,
            first: self.selection.first_run,
            to,
            tz: ctx.time_zone,
            started: ctx.started_at,
        };
        let mut jobs = Vec::new();
        for name in &picked {
            let key = watermark_key(&self.database, name);
            let mark = match &ctx.state {
                Some(s) => s.watermark(&ctx.plan, &self.name, &key).map_err(Error::Core)?,
                None => None,
            };
            let field = self.selection.time_field_of(name);
            let mode = self.selection.mode_of(name);
            if ctx.kind == BackupKind::Incremental && field.is_none() && mode == CollectionMode::Incremental {
                warnings.push(format!(
                    "collection {}.{name} has no time field, so this incremental run copies it whole; set `time_field` \
                     (or per_collection.{name}.mode = \"full\" to say that this is intended)",
                    self.database
                ));
            }
            jobs.push(backup::plan_job(&run, name, mode, field, mark));
        }

        let shared = backup::Shared {
            db,
            database: self.database.clone(),
            source: self.name.clone(),
            pack: pack.clone(),
            redactor: conn.redactor.clone(),
            progress: ctx.progress.clone(),
            specs: Arc::new(specs),
        };
        let keys: Vec<String> = picked.iter().map(|n| watermark_key(&self.database, n)).collect();
        let limit = Arc::new(Semaphore::new(self.parallelism));
        let mut set = JoinSet::new();
        for (i, job) in jobs.into_iter().enumerate() {
            let shared = shared.clone();
            let limit = limit.clone();
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (i, backup::run(&shared, &job).await)
            });
        }
        let mut outcomes = Vec::new();
        while let Some(joined) = set.join_next().await {
            let (i, result) = joined.map_err(|e| Error::Restore(format!("a collection task failed: {e}")))?;
            match result {
                Ok(o) => outcomes.push((i, o)),
                Err(e) => {
                    // Health per collection: count the failure against the collection (not when
                    // the job was cancelled).
                    if let (Some(state), Some(key)) = (&ctx.state, keys.get(i))
                        && !ctx.cancel.is_cancelled()
                        && let Err(err) = state.record_collection_failure(&ctx.plan, &self.name, key, &e.to_string())
                    {
                        tracing::warn!(collection = %key, "cannot record the collection's failure: {}", err.chain());
                    }
                    set.abort_all();
                    while set.join_next().await.is_some() {}
                    return Err(e);
                }
            }
        }
        outcomes.sort_by_key(|(i, _)| *i);
        let mut report = SourceReport {
            warnings,
            ..SourceReport::default()
        };
        for (_, o) in outcomes {
            report.warnings.extend(o.warnings);
            report.watermarks.extend(o.watermark);
        }
        Ok(report)
    }

    async fn run_estimate(&self, ctx: &BackupContext) -> Result<u64> {
        if ctx.kind == BackupKind::Incremental {
            return Ok(0);
        }
        let conn = self.connection().await?;
        let db = conn.client.database(&self.database);
        let specs = list_collections(&db, &conn.redactor, &self.database).await?;
        let names: Vec<String> = specs.keys().cloned().collect();
        let (picked, _) = self.selection.resolve(&self.database, &names)?;
        let mut total = 0u64;
        for name in picked {
            total += collection_size(&db, &name).await;
        }
        Ok(total)
    }
}

/// The data size the server reports for collection `name` (0 when it reports none), for the
/// free-space estimate. Asks the `$collStats` stage, which mongod answers from its storage
/// engine's counters, before the `collStats` command that MongoDB 6.2 deprecated: some
/// wire-compatible servers compute the command's sizes by reading the whole collection, which
/// can take as long as the backup itself.
async fn collection_size(db: &Database, name: &str) -> u64 {
    let stage = vec![doc! {"$collStats": {"storageStats": {}}}];
    if let Ok(mut cursor) = db.collection::<Document>(name).aggregate(stage).await
        && let Some(Ok(stats)) = cursor.next().await
    {
        return stats.get_document("storageStats").map_or(0, |s| number(s.get("size")));
    }
    match db.run_command(doc! {"collStats": name}).await {
        Ok(s) => number(s.get("size")),
        Err(_) => 0,
    }
}

fn number(v: Option<&Bson>) -> u64 {
    match v {
        Some(Bson::Int32(n)) => (*n).max(0) as u64,
        Some(Bson::Int64(n)) => (*n).max(0) as u64,
        Some(Bson::Double(n)) if *n > 0.0 => *n as u64,
        _ => 0,
    }
}

/// The `listCollections` entries of the plain collections of `db` (views, time series and
/// `system.*` left out), by name.
pub(crate) async fn list_collections(
    db: &Database,
    redactor: &Redactor,
    database: &str,
) -> Result<BTreeMap<String, Document>> {
    let what = || format!("listing the collections of database {database}");
    let mut cursor = db
        .run_cursor_command(doc! {"listCollections": 1})
        .await
        .map_err(|e| redactor.error(what(), e))?;
    let mut out = BTreeMap::new();
    while let Some(spec) = cursor.next().await {
        let spec = spec.map_err(|e| redactor.error(what(), e))?;
        let kind = spec.get_str("type").unwrap_or("collection");
        if let Ok(name) = spec.get_str("name")
            && kind == "collection"
            && !name.starts_with("system.")
        {
            out.insert(name.to_string(), spec.clone());
        }
    }
    Ok(out)
}

#[async_trait]
impl Source for MongoSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        SOURCE_KIND
    }

    async fn estimate(&self, ctx: &BackupContext) -> backup_core::Result<u64> {
        self.run_estimate(ctx)
            .await
            .map_err(backup_core::Error::source(&self.name))
    }

    async fn backup(&self, ctx: &BackupContext, pack: &StagingPack) -> backup_core::Result<SourceReport> {
        self.run_backup(ctx, pack)
            .await
            .map_err(backup_core::Error::source(&self.name))
    }

    async fn check(&self) -> backup_core::Result<()> {
        async {
            let conn = self.connection().await?;
            let db = conn.client.database(&self.database);
            list_collections(&db, &conn.redactor, &self.database).await.map(|_| ())
        }
        .await
        .map_err(backup_core::Error::source(&self.name))
    }
}

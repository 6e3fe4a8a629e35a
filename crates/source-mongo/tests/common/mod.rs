//! Helpers for the tests against a real MongoDB-wire server (SecantusDB, started by
//! `cargo xtask ci`).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use backup_core::config::Secret;
use backup_core::state::Watermark;
use backup_core::{
    BackupContext, BackupKind, NoProgress, PackId, PackReader, SealedPack, Source, SourceReport, StagingPack,
    StateStore,
};
use chrono::{DateTime, Utc};
use mongodb::bson::{Bson, Document, RawDocumentBuf, doc};
use mongodb::{Client, Database};
use source_mongo::MongoSource;

/// The admin URI of the test server.
pub fn uri() -> Secret {
    Secret::new(std::env::var("PACKRAT_TEST_MONGO_URI").unwrap_or_else(|_| {
        panic!(
            "PACKRAT_TEST_MONGO_URI is not set: start the test server with `cargo xtask ci`, or set \
             PACKRAT_TEST_MONGO_URI to a mongodb:// URI of a MongoDB-wire server (with a root user)"
        )
    }))
}

/// A path named by a `PACKRAT_TEST_MONGO_*` variable.
pub fn env_path(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set: start the test server with `cargo xtask ci`"))
}

/// A database name unique to this test run.
pub fn db_name(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("t_{test}_{}_{nanos}", std::process::id())
}

/// A client of the test server.
pub async fn client() -> Client {
    Client::with_uri_str(uri().expose()).await.expect("client")
}

/// A fresh database on the test server.
pub async fn fresh_db(test: &str) -> Database {
    let c = client().await;
    let db = c.database(&db_name(test));
    db.drop().await.ok();
    db
}

/// A time `minutes` after the fixed base 2026-11-20T00:00:00Z.
pub fn t(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + chrono::Duration::minutes(minutes)
}

pub fn bdate(t: DateTime<Utc>) -> mongodb::bson::DateTime {
    mongodb::bson::DateTime::from_millis(t.timestamp_millis())
}

/// Inserts documents `{_id: i, createdAt: at(i), n: i}` for `ids`.
pub async fn insert_at(db: &Database, coll: &str, items: &[(i64, DateTime<Utc>)]) {
    let docs: Vec<Document> = items
        .iter()
        .map(|(i, at)| doc! {"_id": *i, "createdAt": bdate(*at), "n": *i, "pad": "x".repeat(50)})
        .collect();
    db.collection::<Document>(coll).insert_many(docs).await.expect("insert");
}

/// A runner in miniature: stage, back up, seal, and only then store the watermarks, as
/// `backup_core::Runner` does.
#[derive(Debug)]
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub state: Arc<StateStore>,
    pub job: i64,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(StateStore::open(&dir.path().join("state")).unwrap());
        Harness { dir, state, job: 0 }
    }

    pub fn ctx(&self, kind: BackupKind, started_at: DateTime<Utc>) -> BackupContext {
        BackupContext {
            plan: "hot".into(),
            job: self.job,
            kind,
            time_zone: chrono_tz::Asia::Shanghai,
            started_at,
            state: Some(self.state.clone()),
            progress: Arc::new(NoProgress),
            cancel: backup_core::CancelToken::new(),
        }
    }

    /// One run; returns the sealed pack and the report (watermarks already stored).
    pub async fn run(
        &mut self,
        source: &MongoSource,
        kind: BackupKind,
        started_at: DateTime<Utc>,
    ) -> (SealedPack, SourceReport) {
        self.job += 1;
        let ctx = self.ctx(kind, started_at);
        let id = PackId::generate("pack", started_at, chrono_tz::UTC, self.job as u32).unwrap();
        let pack = StagingPack::create(
            &self.dir.path().join("packs").join(id.as_str()),
            "hot",
            id,
            kind,
            chrono_tz::UTC,
        )
        .unwrap();
        let report = source
            .backup(&ctx, &pack)
            .await
            .unwrap_or_else(|e| panic!("backup failed: {}", e.chain()));
        let sealed = pack.seal().unwrap();
        let now = Utc::now();
        let marks: Vec<Watermark> = report
            .watermarks
            .iter()
            .map(|w| Watermark {
                plan: "hot".into(),
                source: source.name().into(),
                key: w.key.clone(),
                value: w.value,
                job: Some(self.job),
                updated_at: now,
            })
            .collect();
        if !marks.is_empty() {
            self.state.set_watermarks(self.job, &marks).unwrap();
        }
        (sealed, report)
    }
}

/// The raw documents of a collection artifact of a pack.
pub fn pack_docs(pack: &dyn PackReader, rel: &str) -> Vec<RawDocumentBuf> {
    let entry = pack
        .manifest()
        .artifact(rel)
        .unwrap_or_else(|| panic!("no {rel} in {:?}", pack.manifest().artifacts))
        .clone();
    let mut bytes = Vec::new();
    pack.open_artifact(&entry).unwrap().read_to_end(&mut bytes).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let n = i32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(RawDocumentBuf::from_bytes(bytes[at..at + n].to_vec()).unwrap());
        at += n;
    }
    assert_eq!(entry.records, Some(out.len() as u64), "manifest count of {rel}");
    out
}

/// `_id`s (as i64) of raw documents.
pub fn ids(docs: &[RawDocumentBuf]) -> Vec<i64> {
    docs.iter()
        .map(|d| match d.get("_id").unwrap().unwrap().to_raw_bson() {
            mongodb::bson::RawBson::Int64(i) => i,
            mongodb::bson::RawBson::Int32(i) => i as i64,
            other => panic!("unexpected _id {other:?}"),
        })
        .collect()
}

/// Every raw document of a live collection, sorted by `_id` bytes.
pub async fn live_docs(db: &Database, coll: &str) -> Vec<RawDocumentBuf> {
    use futures_util::TryStreamExt;
    let mut v: Vec<RawDocumentBuf> = db
        .collection::<RawDocumentBuf>(coll)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    v
}

/// Index specs of a live collection without the server-managed `v`/`ns`, sorted by name.
pub async fn index_specs(db: &Database, coll: &str) -> Vec<Document> {
    use futures_util::TryStreamExt;
    let mut v: Vec<Document> = db
        .run_cursor_command(doc! {"listIndexes": coll})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    for d in &mut v {
        d.remove("v");
        d.remove("ns");
    }
    v.sort_by_key(|d| d.get_str("name").unwrap_or_default().to_string());
    v
}

pub fn set(v: &[i64]) -> BTreeSet<i64> {
    v.iter().copied().collect()
}

pub fn as_bson(v: i64) -> Bson {
    Bson::Int64(v)
}

pub fn packs_dir(h: &Harness) -> std::path::PathBuf {
    h.dir.path().join("packs")
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

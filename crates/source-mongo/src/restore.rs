//! Restoring Mongo packs into a server: whole packs or chosen collections, optionally into
//! another database or collection name, by inserting into empty collections, dropping and
//! replacing, or upserting by `_id` (so replaying a chain of packs is idempotent). Indexes and
//! collection options are recreated from `metadata.json`. Documents go back byte for byte.
//! Packs are read through their [`PackReader`] (what `Sink::open` returns), streaming.
//!
//! ```no_run
//! # async fn demo(packs: Vec<std::sync::Arc<dyn backup_core::PackReader>>) -> source_mongo::Result<()> {
//! use backup_core::config::Secret;
//! use source_mongo::restore::{Mode, Options, chain, restore_chain};
//! use source_mongo::Connection;
//!
//! let conn = Connection::open(&Secret::new("mongodb://localhost:27017".to_string())).await?;
//! let opts = Options { mode: Mode::Replace, into_db: Some("mes_restored".into()), ..Options::default() };
//! let restored = restore_chain(&conn, &chain(packs), &opts).await?; // full, then incrementals
//! for r in restored {
//!     println!("{}.{}: {} documents from {}", r.database, r.collection, r.documents, r.pack);
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::sync::Arc;

use backup_core::{ArtifactEntry, BackupKind, PackReader, RestoreCheck, Verifier};
use mongodb::Database;
use mongodb::bson::{Document, RawArrayBuf, RawBson, RawDocumentBuf, doc};
use tokio::sync::mpsc;

use crate::bsonstream::DocReader;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::sample::SampleReport;
use crate::{ARTIFACT_KIND, Connection};

/// Documents per write command, at most.
const BATCH_DOCS: usize = 1000;
/// Bytes of documents per write command, at most.
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// How documents are put back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Insert into collections that are empty or do not exist; fail before writing anything if a
    /// target collection holds documents.
    #[default]
    Insert,
    /// Drop each target collection, then recreate and insert.
    Replace,
    /// Replace-or-insert every document by `_id`; other documents stay. Idempotent.
    Upsert,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Insert => "insert",
            Mode::Replace => "replace",
            Mode::Upsert => "upsert",
        })
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Mode, String> {
        match s {
            "insert" => Ok(Mode::Insert),
            "replace" => Ok(Mode::Replace),
            "upsert" => Ok(Mode::Upsert),
            _ => Err(format!("unknown restore mode `{s}`: use insert, replace or upsert")),
        }
    }
}

/// What to restore, and where.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// How documents are put back.
    pub mode: Mode,
    /// Only these collections (original names); empty: all.
    pub collections: Vec<String>,
    /// Only artifacts of this source; empty: all.
    pub source: Option<String>,
    /// Restore into this database instead of the original one.
    pub into_db: Option<String>,
    /// Restore collection `k` as `v`.
    pub rename: BTreeMap<String, String>,
    /// Restore the collections that check out even though a pack has problems elsewhere
    /// (damaged artifacts, unlisted files); a damaged collection is skipped, never restored.
    /// Off: a pack with any problem is refused before anything is written.
    pub allow_damaged: bool,
}

/// One pack of a restore after the check that runs before anything is written: the
/// collections that will be restored from it, and what was skipped.
#[derive(Debug, Clone)]
pub struct CheckedPack {
    /// The pack.
    pub pack: Arc<dyn PackReader>,
    /// The collections to restore (all checked out).
    pub items: Vec<CollectionArtifact>,
    /// The result of the pack's quick check.
    pub check: RestoreCheck,
    /// Collections selected but skipped because their artifacts are damaged (only with
    /// [`Options::allow_damaged`]).
    pub skipped: Vec<Skipped>,
}

/// A collection left out of a restore because its pack's artifacts for it are damaged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The pack.
    pub pack: String,
    /// Original database.
    pub database: String,
    /// Original collection.
    pub collection: String,
    /// The damaged artifact.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One collection restored from one pack.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Restored {
    /// The pack it came from.
    pub pack: String,
    /// Target database.
    pub database: String,
    /// Target collection.
    pub collection: String,
    /// Documents written.
    pub documents: u64,
    /// Indexes created (besides `_id`).
    pub indexes: usize,
    /// How.
    pub mode: String,
}

/// One collection artifact of a pack.
#[derive(Debug, Clone)]
pub struct CollectionArtifact {
    /// The documents.
    pub data: ArtifactEntry,
    /// Its `metadata.json`, when present.
    pub metadata: Option<ArtifactEntry>,
    /// Original database.
    pub database: String,
    /// Original collection.
    pub collection: String,
}

/// The collection artifacts of `pack`, optionally of one source only.
pub fn collections(pack: &dyn PackReader, source: Option<&str>) -> Vec<CollectionArtifact> {
    let m = pack.manifest();
    m.artifacts
        .iter()
        .filter(|a| a.kind == ARTIFACT_KIND && source.is_none_or(|s| a.source == s))
        .map(|a| {
            let plain = a.plain_path();
            let stem = plain
                .strip_suffix(".bson.zst")
                .or(plain.strip_suffix(".bson"))
                .unwrap_or(plain);
            let meta_path = format!("{stem}.metadata.json");
            let text = |k: &str| a.meta.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            CollectionArtifact {
                data: a.clone(),
                metadata: m.artifact_named(&meta_path).cloned(),
                database: text("database"),
                collection: text("collection"),
            }
        })
        .collect()
}

/// Orders packs for a chain restore: by start time, beginning with the newest full pack (all
/// of them when there is none). Packs without Mongo artifacts are left out.
pub fn chain(mut packs: Vec<Arc<dyn PackReader>>) -> Vec<Arc<dyn PackReader>> {
    packs.retain(|p| p.manifest().artifacts.iter().any(|a| a.kind == ARTIFACT_KIND));
    packs.sort_by(|a, b| (a.manifest().started_at, a.id()).cmp(&(b.manifest().started_at, b.id())));
    let start = packs
        .iter()
        .rposition(|p| p.manifest().kind == BackupKind::Full)
        .unwrap_or(0);
    packs.split_off(start)
}

/// Restores `packs` in order: the first with `opts.mode`, the rest by upsert. Every pack is
/// checked first ([`prepare`]); nothing is written if one is refused.
pub async fn restore_chain(conn: &Connection, packs: &[Arc<dyn PackReader>], opts: &Options) -> Result<Vec<Restored>> {
    let checked = prepare(packs, opts).await?;
    restore_checked(conn, &checked, opts).await
}

/// Restores the Mongo collections of one pack (checked first, see [`prepare`]).
pub async fn restore_pack(conn: &Connection, pack: &Arc<dyn PackReader>, opts: &Options) -> Result<Vec<Restored>> {
    restore_chain(conn, std::slice::from_ref(pack), opts).await
}

/// Selects the collections of every pack that `opts` asks for and runs the quick check of each
/// pack ([`Verifier::check_for_restore`]), reading every selected artifact once. Touches no
/// server. A pack with any problem is refused with [`backup_core::Error::DamagedPack`] naming
/// each file, unless `opts.allow_damaged`: then collections whose data or metadata artifact is
/// damaged are left out (listed in [`CheckedPack::skipped`]), and it fails only when nothing at
/// all is left to restore.
pub async fn prepare(packs: &[Arc<dyn PackReader>], opts: &Options) -> Result<Vec<CheckedPack>> {
    let mut out = Vec::new();
    for pack in packs {
        let items = select(&**pack, opts)?;
        let (p, it) = (pack.clone(), items.clone());
        let check = tokio::task::spawn_blocking(move || {
            let wanted: Vec<&ArtifactEntry> = it
                .iter()
                .flat_map(|i| std::iter::once(&i.data).chain(&i.metadata))
                .collect();
            Verifier::check_for_restore(&*p, &wanted)
        })
        .await
        .map_err(|e| Error::Restore(format!("checking pack {} failed: {e}", pack.id())))?;
        check.require(opts.allow_damaged)?;
        let mut keep = Vec::new();
        let mut skipped = Vec::new();
        for i in items {
            let bad = std::iter::once(&i.data)
                .chain(&i.metadata)
                .find_map(|a| check.unusable.get(&a.path).map(|r| (a.path.clone(), r.clone())));
            match bad {
                None => keep.push(i),
                Some((path, reason)) => skipped.push(Skipped {
                    pack: pack.id().to_string(),
                    database: i.database.clone(),
                    collection: i.collection.clone(),
                    path,
                    reason,
                }),
            }
        }
        out.push(CheckedPack {
            pack: pack.clone(),
            items: keep,
            check,
            skipped,
        });
    }
    if !out.is_empty() && out.iter().all(|c| c.items.is_empty()) {
        let what: Vec<String> = out
            .iter()
            .flat_map(|c| &c.skipped)
            .map(|s| format!("{}: {}", s.path, s.reason))
            .collect();
        return Err(Error::Restore(format!(
            "nothing to restore: every selected collection is damaged ({}); restore from another pack",
            what.join("; ")
        )));
    }
    Ok(out)
}

/// The collections of `pack` that `opts` selects; an error names what the pack holds.
fn select(pack: &dyn PackReader, opts: &Options) -> Result<Vec<CollectionArtifact>> {
    let mut items = collections(pack, opts.source.as_deref());
    if !opts.collections.is_empty() {
        for c in &opts.collections {
            if !items.iter().any(|i| &i.collection == c) {
                let have: Vec<_> = items.iter().map(|i| i.collection.as_str()).collect();
                return Err(Error::Restore(format!(
                    "pack {} has no collection `{c}` (it has: {})",
                    pack.id(),
                    if have.is_empty() {
                        "none".into()
                    } else {
                        have.join(", ")
                    }
                )));
            }
        }
        items.retain(|i| opts.collections.contains(&i.collection));
    }
    if items.is_empty() {
        return Err(Error::Restore(format!(
            "pack {} holds no MongoDB collections",
            pack.id()
        )));
    }
    Ok(items)
}

/// What a restore drill found for one collection: the documents in the scratch database after
/// the chain was restored, and the range the packs' records allow (at least the documents of the
/// chain's full pack, since a restore deletes nothing; at most the documents of every pack, since
/// an incremental one may carry new versions of documents already counted).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DrilledCollection {
    /// Original database.
    pub database: String,
    /// Original collection.
    pub collection: String,
    /// The scratch database it was restored into.
    pub scratch: String,
    /// Documents counted in the scratch database.
    pub documents: u64,
    /// The fewest the records allow.
    pub expected_min: u64,
    /// The most the records allow.
    pub expected_max: u64,
    /// Documents drawn at random from the newest pack of the chain holding the collection and
    /// compared, byte for byte, with the restored ones ([`DRILL_SAMPLE`] of them).
    pub sample: Option<SampleReport>,
}

/// How many documents of each collection a drill compares with the pack.
pub const DRILL_SAMPLE: usize = 10;

impl DrilledCollection {
    /// True when the count is within what the records allow and every sampled document came
    /// back identical.
    pub fn is_ok(&self) -> bool {
        (self.expected_min..=self.expected_max).contains(&self.documents)
            && self.sample.as_ref().is_none_or(|s| s.identical == s.sampled)
    }
}

/// MongoDB refuses database names of 64 bytes or more.
const MAX_DATABASE_NAME: usize = 63;

/// The scratch databases of a drill, one per source database of the chain (in name order):
/// `scratch` itself for a single database, `scratch_1`, `scratch_2`, … for several (a chain
/// whose source was pointed at another database keeps the two apart). An over-long `scratch` is
/// cut to fit MongoDB's limit, so callers put what makes it unique first.
pub fn scratch_databases<'a>(scratch: &str, databases: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, String> {
    let databases: std::collections::BTreeSet<&str> = databases.into_iter().collect();
    let suffix = |n: usize| {
        if databases.len() > 1 {
            format!("_{n}")
        } else {
            String::new()
        }
    };
    databases
        .iter()
        .enumerate()
        .map(|(n, d)| {
            let suffix = suffix(n + 1);
            let mut base = scratch.to_string();
            while base.len() + suffix.len() > MAX_DATABASE_NAME {
                base.pop();
            }
            (d.to_string(), format!("{base}{suffix}"))
        })
        .collect()
}

/// Drops the databases of the server that `ours` names as scratch databases of earlier drills
/// (see [`is_scratch_of`]). Returns the dropped names.
pub async fn drop_scratch(conn: &Connection, ours: &(dyn Fn(&str) -> bool + Sync)) -> Result<Vec<String>> {
    let names = conn
        .client
        .list_database_names()
        .await
        .map_err(|e| conn.redactor.error("listing databases", e))?;
    let mut dropped = Vec::new();
    for name in names.into_iter().filter(|n| ours(n)) {
        conn.client
            .database(&name)
            .drop()
            .await
            .map_err(|e| conn.redactor.error(format!("dropping the scratch database {name}"), e))?;
        dropped.push(name);
    }
    Ok(dropped)
}

/// Whether database `name` is one of the scratch databases named after `scratch`
/// ([`scratch_databases`]): `scratch` itself or `scratch_N`.
pub fn is_scratch_of(name: &str, scratch: &str) -> bool {
    name.strip_prefix(scratch).is_some_and(|rest| {
        rest.is_empty()
            || rest
                .strip_prefix('_')
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// A restore drill: restores the chain `packs` (see [`chain`]) of source `source` into scratch
/// databases named after `scratch` ([`scratch_databases`]), which must not hold collections,
/// counts the documents of every collection there, compares a sample with the pack, and drops
/// the scratch databases again — also when the restore failed half-way.
pub async fn drill_chain(
    conn: &Connection,
    packs: &[Arc<dyn PackReader>],
    source: &str,
    scratch: &str,
) -> Result<Vec<DrilledCollection>> {
    let opts = Options {
        source: Some(source.to_string()),
        ..Options::default()
    };
    let checked = prepare(packs, &opts).await?;
    let targets = scratch_databases(
        scratch,
        checked.iter().flat_map(|c| c.items.iter().map(|i| i.database.as_str())),
    );
    for target in targets.values() {
        let existing = conn
            .client
            .database(target)
            .list_collection_names()
            .await
            .map_err(|e| conn.redactor.error(format!("listing the scratch database {target}"), e))?;
        if !existing.is_empty() {
            return Err(Error::Restore(format!(
                "the scratch database {target} already holds collections ({}); drop it or let the next drill do so",
                existing.join(", ")
            )));
        }
    }
    let result = drill_into(conn, &checked, &opts, &targets).await;
    let mut dropped = Ok(());
    for target in targets.values() {
        if let Err(e) = conn.client.database(target).drop().await {
            dropped = dropped.and(Err(conn
                .redactor
                .error(format!("dropping the scratch database {target}"), e)));
        }
    }
    let found = result?;
    dropped?;
    Ok(found)
}

async fn drill_into(
    conn: &Connection,
    checked: &[CheckedPack],
    opts: &Options,
    targets: &BTreeMap<String, String>,
) -> Result<Vec<DrilledCollection>> {
    for (database, target) in targets {
        let of_database: Vec<CheckedPack> = checked
            .iter()
            .map(|c| CheckedPack {
                items: c.items.iter().filter(|i| &i.database == database).cloned().collect(),
                ..c.clone()
            })
            .collect();
        let into = Options {
            into_db: Some(target.clone()),
            ..opts.clone()
        };
        restore_checked(conn, &of_database, &into).await?;
    }
    let mut expected: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for (i, c) in checked.iter().enumerate() {
        let full = i == 0 && c.pack.manifest().kind == BackupKind::Full;
        for item in &c.items {
            let n = item.data.records.unwrap_or(0);
            let e = expected
                .entry((item.database.clone(), item.collection.clone()))
                .or_default();
            if full {
                e.0 += n;
            }
            e.1 += n;
        }
    }
    let mut out = Vec::new();
    for ((database, collection), (min, max)) in expected {
        let scratch = &targets[&database];
        let documents = conn
            .client
            .database(scratch)
            .collection::<Document>(&collection)
            .count_documents(doc! {})
            .await
            .map_err(|e| {
                conn.redactor
                    .error(format!("counting documents of {scratch}.{collection}"), e)
            })?;
        // The newest version of a document is the one of the newest pack holding it: a sample
        // of the newest pack with documents of the collection must come back identical.
        let newest = checked.iter().rev().find_map(|c| {
            c.items
                .iter()
                .find(|i| i.database == database && i.collection == collection && i.data.records != Some(0))
                .map(|i| (&c.pack, i))
        });
        let sample = match newest {
            Some((pack, item)) => Some(crate::sample::sample(conn, pack, item, DRILL_SAMPLE, Some(scratch)).await?),
            None => None,
        };
        out.push(DrilledCollection {
            database,
            collection,
            scratch: scratch.clone(),
            documents,
            expected_min: min,
            expected_max: max,
            sample,
        });
    }
    Ok(out)
}

/// Restores packs checked by [`prepare`] in order: the first with `opts.mode`, the rest by
/// upsert.
pub async fn restore_checked(conn: &Connection, packs: &[CheckedPack], opts: &Options) -> Result<Vec<Restored>> {
    let mut out = Vec::new();
    let mut first = true;
    for c in packs.iter().filter(|c| !c.items.is_empty()) {
        let mut o = opts.clone();
        if !first {
            o.mode = Mode::Upsert;
        }
        first = false;
        out.extend(restore_items(conn, &*c.pack, &c.items, &o).await?);
    }
    Ok(out)
}

/// Restores the given collections of one pack.
async fn restore_items(
    conn: &Connection,
    pack: &dyn PackReader,
    items: &[CollectionArtifact],
    opts: &Options,
) -> Result<Vec<Restored>> {
    let target = |i: &CollectionArtifact| {
        (
            opts.into_db.clone().unwrap_or_else(|| i.database.clone()),
            opts.rename
                .get(&i.collection)
                .cloned()
                .unwrap_or_else(|| i.collection.clone()),
        )
    };
    // Insert mode: refuse before writing anything if a target holds documents.
    if opts.mode == Mode::Insert {
        let mut busy = Vec::new();
        for i in items {
            let (db, coll) = target(i);
            let n = conn
                .client
                .database(&db)
                .collection::<Document>(&coll)
                .estimated_document_count()
                .await
                .map_err(|e| conn.redactor.error(format!("counting documents of {db}.{coll}"), e))?;
            if n > 0 {
                busy.push(format!("{db}.{coll} ({n} documents)"));
            }
        }
        if !busy.is_empty() {
            return Err(Error::Restore(format!(
                "target collections are not empty: {}; use --mode replace (drop them first) or --mode upsert",
                busy.join(", ")
            )));
        }
    }
    let mut out = Vec::new();
    for i in items {
        let (db_name, coll) = target(i);
        let db = conn.client.database(&db_name);
        let meta = match &i.metadata {
            Some(e) => Some(read_metadata(pack, e)?),
            None => None,
        };
        let what = |action: &str| format!("{action} {db_name}.{coll}");
        if opts.mode == Mode::Replace {
            db.collection::<Document>(&coll)
                .drop()
                .await
                .map_err(|e| conn.redactor.error(what("dropping"), e))?;
        }
        create_collection(&db, &coll, meta.as_ref())
            .await
            .map_err(|e| conn.redactor.error(what("creating"), e))?;
        let documents = write_documents(conn, &db, &coll, pack, &i.data, opts.mode).await?;
        let specs = meta.as_ref().map(Metadata::index_specs).unwrap_or_default();
        if !specs.is_empty() {
            db.run_command(doc! {"createIndexes": &coll, "indexes": specs.clone()})
                .await
                .map_err(|e| conn.redactor.error(what("creating indexes of"), e))?;
        }
        out.push(Restored {
            pack: pack.id().to_string(),
            database: db_name.clone(),
            collection: coll.clone(),
            documents,
            indexes: specs.len(),
            mode: opts.mode.to_string(),
        });
    }
    Ok(out)
}

fn read_metadata(pack: &dyn PackReader, e: &ArtifactEntry) -> Result<Metadata> {
    let mut bytes = Vec::new();
    pack.open_artifact(e)?
        .read_to_end(&mut bytes)
        .map_err(|err| Error::Artifact {
            path: e.path.clone(),
            reason: format!("cannot read: {err}"),
        })?;
    Metadata::parse(&bytes).map_err(|reason| Error::Artifact {
        path: e.path.clone(),
        reason,
    })
}

/// Creates the collection with its original options unless it exists.
async fn create_collection(db: &Database, coll: &str, meta: Option<&Metadata>) -> mongodb::error::Result<()> {
    let exists = db
        .list_collection_names()
        .filter(doc! {"name": coll})
        .await?
        .iter()
        .any(|n| n == coll);
    if exists {
        return Ok(());
    }
    let mut cmd = doc! {"create": coll};
    if let Some(m) = meta {
        for (k, v) in &m.options {
            cmd.insert(k.clone(), v.clone());
        }
    }
    match db.run_command(cmd).await {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 48) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Streams the artifact's documents (read on a blocking thread) into the target collection.
async fn write_documents(
    conn: &Connection,
    db: &Database,
    coll: &str,
    pack: &dyn PackReader,
    entry: &ArtifactEntry,
    mode: Mode,
) -> Result<u64> {
    let (tx, mut rx) = mpsc::channel::<Vec<RawDocumentBuf>>(2);
    let reader = pack.open_artifact(entry)?;
    let path = entry.path.clone();
    let read_task = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut r = DocReader::new(reader);
        let mut buf = Vec::new();
        let mut batch = Vec::new();
        let mut bytes = 0;
        let bad = |reason: String| Error::Artifact {
            path: path.clone(),
            reason,
        };
        while r.next_into(&mut buf).map_err(bad)? {
            bytes += buf.len();
            batch.push(RawDocumentBuf::from_bytes(buf.clone()).map_err(|e| bad(e.to_string()))?);
            if batch.len() >= BATCH_DOCS || bytes >= BATCH_BYTES {
                if tx.blocking_send(std::mem::take(&mut batch)).is_err() {
                    return Ok(());
                }
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(batch);
        }
        Ok(())
    });
    let target = db.collection::<RawDocumentBuf>(coll);
    let what = || format!("writing documents into {}.{coll}", db.name());
    let mut n = 0u64;
    let written: Result<()> = async {
        while let Some(batch) = rx.recv().await {
            let k = batch.len() as u64;
            match mode {
                Mode::Insert | Mode::Replace => {
                    target
                        .insert_many(&batch)
                        .await
                        .map_err(|e| conn.redactor.error(what(), e))?;
                }
                Mode::Upsert => upsert(conn, db, coll, batch).await?,
            }
            n += k;
        }
        Ok(())
    }
    .await;
    drop(rx);
    let read = read_task
        .await
        .map_err(|e| Error::Restore(format!("reading {} failed: {e}", entry.path)))?;
    written?;
    read?;
    Ok(n)
}

/// Replace-or-insert by `_id`, in one `update` command per batch, the documents' bytes untouched.
async fn upsert(conn: &Connection, db: &Database, coll: &str, batch: Vec<RawDocumentBuf>) -> Result<()> {
    let what = || format!("upserting documents into {}.{coll}", db.name());
    let mut updates = RawArrayBuf::new();
    for d in batch {
        let id = match d.get("_id") {
            Ok(Some(v)) => v.to_raw_bson(),
            _ => {
                return Err(Error::Restore(format!(
                    "{}: a document without _id cannot be upserted; use --mode insert or replace",
                    what()
                )));
            }
        };
        let mut q = RawDocumentBuf::new();
        q.append("_id", id);
        let mut stmt = RawDocumentBuf::new();
        stmt.append("q", q);
        stmt.append("u", d);
        stmt.append("upsert", true);
        updates.push(stmt);
    }
    let mut cmd = RawDocumentBuf::new();
    cmd.append("update", coll);
    cmd.append("updates", RawBson::Array(updates));
    cmd.append("ordered", true);
    let reply = db
        .run_raw_command(cmd)
        .await
        .map_err(|e| conn.redactor.error(what(), e))?;
    if let Ok(errs) = reply.get_array("writeErrors")
        && let Some(first) = errs.iter().next()
    {
        return Err(Error::Restore(format!("{}: write error {first:?}", what())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_scratch_database_per_source_database_within_the_name_limit() {
        let one = scratch_databases("packrat_drill_7_hot", ["mes", "mes"]);
        assert_eq!(one, BTreeMap::from([("mes".into(), "packrat_drill_7_hot".into())]));
        let two = scratch_databases("packrat_drill_7_hot", ["mes_old", "mes"]);
        assert_eq!(
            two,
            BTreeMap::from([
                ("mes".into(), "packrat_drill_7_hot_1".into()),
                ("mes_old".into(), "packrat_drill_7_hot_2".into())
            ])
        );
        let long = "x".repeat(80);
        for name in scratch_databases(&long, ["a", "b"]).values() {
            assert_eq!(name.len(), MAX_DATABASE_NAME, "{name}");
        }
    }

    #[test]
    fn only_a_drills_own_scratch_databases_are_its_leftovers() {
        for ok in ["packrat_drill_7_hot", "packrat_drill_7_hot_1", "packrat_drill_7_hot_12"] {
            assert!(is_scratch_of(ok, "packrat_drill_7_hot"), "{ok}");
        }
        for other in [
            "packrat_drill_7_hotter",
            "packrat_drill_7_hot_",
            "packrat_drill_7_hot_x",
            "packrat_drill_7_ho",
            "mes",
        ] {
            assert!(!is_scratch_of(other, "packrat_drill_7_hot"), "{other}");
        }
    }
}

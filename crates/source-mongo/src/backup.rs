//! Backing up one collection: its metadata, then its documents as raw BSON streamed from the
//! server's reply batches straight into the zstd artifact writer.

use std::io::Write;
use std::sync::Arc;

use crate::config::{CollectionMode, FirstRun};
use backup_core::manifest::TimeWindow;
use backup_core::{ArtifactWriter, BackupKind, Compression, Progress, StagingPack, WatermarkUpdate};
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use futures_util::StreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document, RawBsonRef, doc};
use mongodb::options::FindOptions;
use mongodb::raw_batch_cursor::RawBatch;
use tokio::sync::mpsc;

use crate::connect::Redactor;
use crate::error::{Error, Result};
use crate::metadata::Metadata;
use crate::{ARTIFACT_KIND, METADATA_KIND};

/// Documents the server is asked to put in one reply batch (`batchSize`). The server caps every
/// reply at 16 MiB, so memory per collection stays bounded by `QUEUE` + 1 replies whatever the
/// document size; for typical documents (~1 KiB) a batch is a few MiB. A fixed count avoids
/// asking for `collStats`, which some servers compute by scanning the whole collection.
const BATCH_DOCS: u32 = 4096;
/// Reply batches queued between the cursor and the writer thread.
const QUEUE: usize = 2;
/// The writer flushes documents to the compressor in chunks of this size.
const CHUNK: usize = 1024 * 1024;

/// What one collection's backup does.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// Collection name.
    pub name: String,
    /// Its time field, if it has one.
    pub time_field: Option<String>,
    /// Whole, or a window.
    pub scope: Scope,
}

/// Which documents of a collection.
#[derive(Debug, Clone)]
pub(crate) enum Scope {
    /// Every document; `watermark` is where incremental runs continue afterwards (collections
    /// with a time field in a full run).
    Full { watermark: Option<DateTime<Utc>> },
    /// Documents with `from <= time_field < to`.
    Window {
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
    },
}

/// What one collection's backup produced.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub watermark: Option<WatermarkUpdate>,
    pub warnings: Vec<String>,
}

/// Everything a collection job needs, shared by the jobs of one backup.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    pub db: Database,
    pub database: String,
    pub source: String,
    pub pack: StagingPack,
    pub redactor: Redactor,
    pub progress: Arc<dyn Progress>,
    /// `listCollections` entry of every collection, by name.
    pub specs: Arc<std::collections::BTreeMap<String, Document>>,
}

/// Truncates to whole milliseconds (BSON dates have millisecond precision).
pub(crate) fn to_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t.timestamp_millis()).single().unwrap_or(t)
}

fn bson_date(t: DateTime<Utc>) -> mongodb::bson::DateTime {
    mongodb::bson::DateTime::from_millis(t.timestamp_millis())
}

/// Midnight of `date` in `tz`, as UTC.
fn midnight(date: chrono::NaiveDate, tz: Tz) -> DateTime<Utc> {
    let naive = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&naive))
}

/// The lower bound of a collection's first incremental window.
pub(crate) fn first_from(first: FirstRun, started: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
    match first {
        FirstRun::Today => Some(midnight(started.with_timezone(&tz).date_naive(), tz)),
        FirstRun::All => None,
        FirstRun::Date(d) => Some(midnight(d, tz)),
        FirstRun::At(t) => Some(t),
    }
}

/// The facts of one run that every collection's job depends on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunInfo {
    /// Full or incremental.
    pub kind: BackupKind,
    /// Where first windows start.
    pub first: FirstRun,
    /// End of this run's windows (job start minus lag, whole milliseconds).
    pub to: DateTime<Utc>,
    /// The plan's zone.
    pub tz: Tz,
    /// The job's start.
    pub started: DateTime<Utc>,
}

/// Plans one collection's job from the run, its mode and time field, and its watermark.
pub(crate) fn plan_job(
    run: &RunInfo,
    name: &str,
    mode: CollectionMode,
    time_field: Option<&str>,
    watermark: Option<DateTime<Utc>>,
) -> Job {
    let scope = match (run.kind, mode, time_field) {
        (BackupKind::Incremental, CollectionMode::Incremental, Some(_)) => Scope::Window {
            from: watermark.or_else(|| first_from(run.first, run.started, run.tz)),
            to: run.to,
        },
        (_, CollectionMode::Full, _) | (_, _, None) => Scope::Full { watermark: None },
        (BackupKind::Full, CollectionMode::Incremental, Some(_)) => Scope::Full {
            watermark: Some(run.to),
        },
    };
    Job {
        name: name.to_string(),
        time_field: time_field.map(str::to_string),
        scope,
    }
}

/// Escapes a database or collection name for use as a file name: ASCII outside
/// `A-Z a-z 0-9 . _ -` becomes `%XX`; other characters stay.
pub fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') || !c.is_ascii() {
            out.push(c);
        } else {
            let mut b = [0u8; 4];
            for byte in c.encode_utf8(&mut b).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    if out.starts_with('.') {
        out.replace_range(0..1, "%2E");
    }
    out
}

/// `mongo/<db>/<collection>` (without extension).
pub fn artifact_stem(database: &str, collection: &str) -> String {
    format!("mongo/{}/{}", file_name(database), file_name(collection))
}

/// Runs one collection's backup.
pub(crate) async fn run(shared: &Shared, job: &Job) -> Result<Outcome> {
    let what = |action: &str| format!("{action} collection {}.{}", shared.database, job.name);
    let coll = shared.db.collection::<Document>(&job.name);
    let mut warnings = Vec::new();

    // Metadata: options and indexes.
    let spec = shared.specs.get(&job.name).cloned().unwrap_or_default();
    let indexes = list_indexes(&shared.db, &job.name)
        .await
        .map_err(|e| shared.redactor.error(what("listing indexes of"), e))?;
    let meta = Metadata {
        collection_name: job.name.clone(),
        kind: "collection".into(),
        options: spec.get_document("options").cloned().unwrap_or_default(),
        indexes,
        uuid: spec
            .get_document("info")
            .ok()
            .and_then(|i| i.get("uuid"))
            .and_then(|u| match u {
                Bson::Binary(b) => Some(hex(&b.bytes)),
                _ => None,
            }),
    };
    let stem = artifact_stem(&shared.database, &job.name);
    let meta_rel = format!("{stem}.metadata.json");
    let json = meta.to_json();
    let mut mw = shared
        .pack
        .artifact(&meta_rel, &shared.source, METADATA_KIND, Compression::None)?;
    mw.write_all(json.as_bytes()).map_err(|e| Error::Write {
        path: meta_rel.clone(),
        source: e,
    })?;
    mw.set_meta("database", shared.database.clone());
    mw.set_meta("collection", job.name.clone());
    mw.set_meta("indexes", meta.indexes.len() as u64);
    mw.finish()?;

    // Time field checks.
    let (filter, window) = match &job.scope {
        Scope::Full { .. } => (doc! {}, None),
        Scope::Window { from, to } => {
            let field = job.time_field.clone().unwrap_or_default();
            let mut range = doc! {"$lt": bson_date(*to)};
            if let Some(f) = from {
                range.insert("$gte", bson_date(*f));
            }
            (
                doc! {field.clone(): range},
                Some(TimeWindow {
                    field,
                    from: *from,
                    to: *to,
                }),
            )
        }
    };
    let mut missing_time = None;
    if let Some(field) = &job.time_field {
        let indexed = meta.indexes.iter().any(|ix| {
            ix.get_document("key")
                .ok()
                .and_then(|k| k.keys().next())
                .is_some_and(|k| k == field)
        });
        if !indexed && matches!(job.scope, Scope::Window { .. }) {
            warnings.push(format!(
                "collection {}.{}: time field `{field}` is not indexed, so every incremental run scans the whole \
                 collection; add an index: db.getSiblingDB(\"{}\").{}.createIndex({{{field}: 1}})",
                shared.database, job.name, shared.database, job.name
            ));
        }
        if matches!(job.scope, Scope::Window { .. }) {
            let n = coll
                .count_documents(doc! {field.clone(): {"$not": {"$type": "date"}}})
                .await
                .map_err(|e| {
                    shared
                        .redactor
                        .error(what("counting documents without the time field in"), e)
                })?;
            missing_time = Some(n);
        }
    }

    // Documents.
    let rel = format!("{stem}.bson.zst");
    let writer = shared
        .pack
        .artifact(&rel, &shared.source, ARTIFACT_KIND, Compression::Zstd)?;
    let (tx, rx) = mpsc::channel::<RawBatch>(QUEUE);
    let count_field = match job.scope {
        Scope::Full { .. } => job.time_field.clone(),
        Scope::Window { .. } => None,
    };
    let progress = shared.progress.clone();
    let rel2 = rel.clone();
    let write_task = tokio::task::spawn_blocking(move || write_batches(rx, writer, count_field, &rel2, &*progress));

    let opts = FindOptions::builder().batch_size(BATCH_DOCS).build();
    let fetched: Result<()> = async {
        let mut cursor = coll
            .find(filter)
            .with_options(opts)
            .batch()
            .await
            .map_err(|e| shared.redactor.error(what("reading"), e))?;
        while let Some(batch) = cursor.next().await {
            let batch = batch.map_err(|e| shared.redactor.error(what("reading"), e))?;
            if tx.send(batch).await.is_err() {
                // The writer stopped; its error is reported below.
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(tx);
    let written = write_task
        .await
        .map_err(|e| Error::Restore(format!("writer task of {rel} failed: {e}")))?;
    fetched?;
    let (mut writer, counts) = written?;

    writer.add_records(counts.docs);
    if let Some(w) = window {
        writer.set_window(w);
    }
    writer.set_meta("database", shared.database.clone());
    writer.set_meta("collection", job.name.clone());
    writer.set_meta(
        "mode",
        match job.scope {
            Scope::Full { .. } => "full",
            Scope::Window { .. } => "incremental",
        },
    );
    if let Some(f) = &job.time_field {
        writer.set_meta("time_field", f.clone());
    }
    let without = missing_time.or(counts.without_time_field);
    if let Some(n) = without {
        writer.set_meta("without_time_field", n);
    }
    if let Scope::Full { watermark: Some(w) } = job.scope {
        writer.set_meta("watermark", w.to_rfc3339());
    }
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .map_err(|e| Error::Restore(format!("finishing {rel} failed: {e}")))??;

    if let (Some(n), Some(f)) = (without, &job.time_field)
        && n > 0
    {
        let also = match job.scope {
            Scope::Window { .. } => "they are not in incremental packs (full backups include them)",
            Scope::Full { .. } => "they are included in this full backup but never in incremental packs",
        };
        warnings.push(format!(
            "collection {}.{}: {n} document(s) lack a date in time field `{f}`; {also}",
            shared.database, job.name
        ));
    }

    let watermark = match job.scope {
        Scope::Window { from, to } if from.is_none_or(|f| to > f) => Some(to),
        Scope::Window { .. } => None,
        Scope::Full { watermark } => watermark,
    }
    .map(|value| WatermarkUpdate {
        key: watermark_key(&shared.database, &job.name),
        value,
    });
    Ok(Outcome { watermark, warnings })
}

/// The `listIndexes` entries of a collection, as the server sends them.
pub(crate) async fn list_indexes(db: &Database, coll: &str) -> mongodb::error::Result<Vec<Document>> {
    let mut cursor = db.run_cursor_command(doc! {"listIndexes": coll}).await?;
    let mut out = Vec::new();
    while let Some(ix) = cursor.next().await {
        out.push(ix?);
    }
    Ok(out)
}

/// The watermark key of a collection: `<db>.<collection>`.
pub fn watermark_key(database: &str, collection: &str) -> String {
    format!("{database}.{collection}")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Debug, Default)]
struct Counts {
    docs: u64,
    without_time_field: Option<u64>,
}

/// The writer thread: copies each reply batch's documents, byte for byte, into the artifact.
fn write_batches(
    mut rx: mpsc::Receiver<RawBatch>,
    mut w: ArtifactWriter,
    count_field: Option<String>,
    rel: &str,
    progress: &dyn Progress,
) -> Result<(ArtifactWriter, Counts)> {
    let mut counts = Counts {
        docs: 0,
        without_time_field: count_field.as_ref().map(|_| 0),
    };
    let bad = |reason: String| Error::Artifact {
        path: rel.to_string(),
        reason: format!("the server sent an invalid batch: {reason}"),
    };
    let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK + 64 * 1024);
    while let Some(batch) = rx.blocking_recv() {
        let docs = batch.doc_slices().map_err(|e| bad(e.to_string()))?;
        for item in docs {
            let item = item.map_err(|e| bad(e.to_string()))?;
            let RawBsonRef::Document(d) = item else {
                return Err(bad("an element is not a document".into()));
            };
            chunk.extend_from_slice(d.as_bytes());
            counts.docs += 1;
            if let (Some(f), Some(n)) = (&count_field, counts.without_time_field.as_mut())
                && !matches!(d.get(f), Ok(Some(RawBsonRef::DateTime(_))))
            {
                *n += 1;
            }
            if chunk.len() >= CHUNK {
                w.write_all(&chunk).map_err(|e| Error::Write {
                    path: rel.to_string(),
                    source: e,
                })?;
                progress.advance(chunk.len() as u64);
                chunk.clear();
            }
        }
    }
    if !chunk.is_empty() {
        w.write_all(&chunk).map_err(|e| Error::Write {
            path: rel.to_string(),
            source: e,
        })?;
        progress.advance(chunk.len() as u64);
    }
    Ok((w, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_name("api_logs"), "api_logs");
        assert_eq!(file_name("a/b:c"), "a%2Fb%3Ac");
        assert_eq!(file_name(".hidden"), "%2Ehidden");
        assert_eq!(file_name("订单"), "订单");
        assert!(
            backup_core::manifest::check_relative_path(&format!("{}.bson.zst", artifact_stem("d b", "x\\y"))).is_ok()
        );
    }

    #[test]
    fn first_window_starts_at_local_midnight() {
        let started = DateTime::parse_from_rfc3339("2026-11-21T03:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let from = first_from(FirstRun::Today, started, chrono_tz::Asia::Shanghai).unwrap();
        assert_eq!(from.to_rfc3339(), "2026-11-20T16:00:00+00:00");
        assert_eq!(first_from(FirstRun::All, started, chrono_tz::UTC), None);
    }

    #[test]
    fn jobs_follow_kind_mode_and_watermark() {
        let t = Utc::now();
        let w = t - chrono::Duration::hours(1);
        let run = |kind| RunInfo {
            kind,
            first: FirstRun::All,
            to: t,
            tz: chrono_tz::UTC,
            started: t,
        };
        let inc = run(BackupKind::Incremental);
        let j = plan_job(&inc, "a", CollectionMode::Incremental, Some("createdAt"), Some(w));
        assert!(matches!(j.scope, Scope::Window { from: Some(f), to } if f == w && to == t));
        let j = plan_job(&inc, "a", CollectionMode::Full, Some("createdAt"), Some(w));
        assert!(matches!(j.scope, Scope::Full { watermark: None }));
        let j = plan_job(
            &run(BackupKind::Full),
            "a",
            CollectionMode::Incremental,
            Some("createdAt"),
            Some(w),
        );
        assert!(matches!(j.scope, Scope::Full { watermark: Some(x) } if x == t));
        let j = plan_job(&inc, "a", CollectionMode::Incremental, None, None);
        assert!(matches!(j.scope, Scope::Full { watermark: None }));
    }
}

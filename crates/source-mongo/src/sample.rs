//! Data sampling: compare random documents of a pack with the live database.
//!
//! For each collection artifact, `n` documents are drawn uniformly at random from the
//! decompressed stream (reservoir sampling: memory holds only the `n` documents), then looked up
//! by `_id` in the live collection and compared byte for byte. A live document that differs
//! but whose time field shows it was written after the backup's window is "updated since";
//! a document gone from the live collection is "deleted since". Only unexplained differences are
//! problems.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use backup_core::PackReader;
use chrono::{DateTime, Utc};
use mongodb::bson::{Bson, RawBsonRef, RawDocumentBuf, doc};
use serde::Serialize;

use crate::Connection;
use crate::bsonstream::DocReader;
use crate::error::{Error, Result};
use crate::restore::CollectionArtifact;

/// The outcome of sampling one collection.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SampleReport {
    /// The artifact.
    pub path: String,
    /// Live database compared with.
    pub database: String,
    /// Live collection compared with.
    pub collection: String,
    /// Documents drawn.
    pub sampled: usize,
    /// Identical to the live document.
    pub identical: usize,
    /// Differ, but the live time field says they were written after the backup.
    pub updated_since: usize,
    /// Not found in the live collection.
    pub deleted_since: usize,
    /// `_id`s (Extended JSON) of documents that differ without explanation.
    pub differing: Vec<String>,
}

impl SampleReport {
    /// True when no document differs without explanation.
    pub fn is_ok(&self) -> bool {
        self.differing.is_empty()
    }
}

struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Rng(seed | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// Draws up to `n` random documents of an artifact.
pub fn draw(pack: &dyn PackReader, item: &CollectionArtifact, n: usize) -> Result<Vec<RawDocumentBuf>> {
    let bad = |reason: String| Error::Artifact {
        path: item.data.path.clone(),
        reason,
    };
    let mut r = DocReader::new(pack.open_artifact(&item.data)?);
    let mut rng = Rng::new();
    let mut buf = Vec::new();
    let mut picked: Vec<RawDocumentBuf> = Vec::with_capacity(n);
    let mut seen = 0u64;
    while r.next_into(&mut buf).map_err(bad)? {
        seen += 1;
        if picked.len() < n {
            picked.push(RawDocumentBuf::from_bytes(buf.clone()).map_err(|e| bad(e.to_string()))?);
        } else {
            let j = rng.below(seen) as usize;
            if j < n {
                picked[j] = RawDocumentBuf::from_bytes(buf.clone()).map_err(|e| bad(e.to_string()))?;
            }
        }
    }
    Ok(picked)
}

/// Compares `n` random documents of `item` with `database.collection` on the live server
/// (the original names unless given).
pub async fn sample(
    conn: &Connection,
    pack: &Arc<dyn PackReader>,
    item: &CollectionArtifact,
    n: usize,
    database: Option<&str>,
) -> Result<SampleReport> {
    let pack2 = pack.clone();
    let item2 = item.clone();
    let docs = tokio::task::spawn_blocking(move || draw(&*pack2, &item2, n))
        .await
        .map_err(|e| Error::Restore(format!("sampling task failed: {e}")))??;
    let db_name = database.unwrap_or(&item.database).to_string();
    let coll = conn
        .client
        .database(&db_name)
        .collection::<RawDocumentBuf>(&item.collection);
    let field = item
        .data
        .meta
        .get("time_field")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    // Documents with a time at or after the end of what the pack covers may have been written
    // after it: the window's end, a full pack's watermark, or else the pack's start.
    let full_mark = item
        .data
        .meta
        .get("watermark")
        .and_then(|v| v.as_str())
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc));
    let since: DateTime<Utc> = item
        .data
        .window
        .as_ref()
        .map(|w| w.to)
        .or(full_mark)
        .unwrap_or(pack.manifest().started_at);
    let mut report = SampleReport {
        path: item.data.path.clone(),
        database: db_name.clone(),
        collection: item.collection.clone(),
        sampled: docs.len(),
        identical: 0,
        updated_since: 0,
        deleted_since: 0,
        differing: Vec::new(),
    };
    for d in docs {
        let id = match d.get("_id") {
            Ok(Some(v)) => Bson::try_from(v.to_raw_bson()).map_err(|e| Error::Artifact {
                path: item.data.path.clone(),
                reason: format!("unreadable _id: {e}"),
            })?,
            _ => {
                report.differing.push("(document without _id)".into());
                continue;
            }
        };
        let live = coll
            .find_one(doc! {"_id": id.clone()})
            .await
            .map_err(|e| conn.redactor.error(format!("reading {db_name}.{}", item.collection), e))?;
        match live {
            None => report.deleted_since += 1,
            Some(l) if l.as_bytes() == d.as_bytes() => report.identical += 1,
            Some(l) => {
                let newer = field.as_deref().is_some_and(|f| match l.get(f) {
                    Ok(Some(RawBsonRef::DateTime(t))) => t.timestamp_millis() >= since.timestamp_millis(),
                    _ => false,
                });
                if newer {
                    report.updated_since += 1;
                } else {
                    report.differing.push(id.into_relaxed_extjson().to_string());
                }
            }
        }
    }
    Ok(report)
}

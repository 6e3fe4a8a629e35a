//! `PRAGMA integrity_check` on copies, and the deep check of SQLite artifacts.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use backup_core::{ArtifactEntry, DeepCheck, PackReader};
use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, classify};
use crate::{ARTIFACT_KIND, CACHE_KIB, IO_BUF};

/// Problems `PRAGMA integrity_check` reports at most (SQLite's default is 100).
const MAX_PROBLEMS: u32 = 20;

/// The 16 bytes every SQLite 3 database file starts with.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Facts about a checked database file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbFacts {
    /// Page size in bytes.
    pub page_size: u64,
    /// Pages in the file.
    pub page_count: u64,
    /// Tables (not counting indexes, views and triggers).
    pub tables: u64,
    /// True when the file header asks for WAL mode.
    pub wal: bool,
    /// Rows of every ordinary table, by name (virtual tables are left out: counting them would
    /// need their module). Recorded in the manifest as `meta.table_rows`; a deep check and a
    /// restore drill compare with it.
    pub table_rows: BTreeMap<String, u64>,
}

impl DbFacts {
    /// Where `self` (a restored or checked copy) differs from the row counts `recorded` in the
    /// manifest: one line per table.
    pub fn row_differences(&self, recorded: &BTreeMap<String, u64>) -> Vec<String> {
        let mut out = Vec::new();
        for (t, want) in recorded {
            match self.table_rows.get(t) {
                Some(n) if n == want => {}
                Some(n) => out.push(format!("table {t} has {n} rows, the pack recorded {want}")),
                None => out.push(format!("table {t} is missing (the pack recorded {want} rows)")),
            }
        }
        for (t, n) in &self.table_rows {
            if !recorded.contains_key(t) {
                out.push(format!("table {t} ({n} rows) is not in the pack's record"));
            }
        }
        out
    }
}

/// The row counts recorded in a `sqlite` artifact's manifest entry (`meta.table_rows`), if the
/// pack was written by a packrat that records them.
pub fn recorded_rows(entry: &ArtifactEntry) -> Option<BTreeMap<String, u64>> {
    serde_json::from_value(entry.meta.get("table_rows")?.clone()).ok()
}

/// Checks that `path` starts with the SQLite header (an empty file counts as an empty database).
pub(crate) fn check_header(path: &Path) -> Result<(), Error> {
    let mut head = Vec::with_capacity(16);
    File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .map_err(Error::io("read", path))?;
    if head.is_empty() || head.as_slice() == MAGIC {
        Ok(())
    } else {
        Err(Error::NotADatabase {
            path: path.to_path_buf(),
            detail: "the file does not start with the SQLite header".into(),
        })
    }
}

/// The `file:` URI that opens `path` read-only as immutable: no locks, and no `-wal`/`-shm`
/// files are created next to it even when its header asks for WAL mode. Only for files nobody
/// else writes (our own copies).
pub(crate) fn immutable_uri(path: &Path) -> Result<String, Error> {
    let abs = std::path::absolute(path).map_err(Error::io("resolve", path))?;
    let Some(text) = abs.to_str() else {
        return Err(Error::BadTarget {
            path: path.to_path_buf(),
            reason: "the path is not valid UTF-8".into(),
        });
    };
    let mut text = text.to_string();
    if cfg!(windows) {
        // `C:\x\y.db` → `/C:/x/y.db`, which SQLite reads as the Windows path, and
        // `\\server\share\y.db` → `//server/share/y.db`.
        text = text.replace('\\', "/");
        if !text.starts_with('/') {
            text.insert(0, '/');
        }
    }
    // `file://` + an absolute path: an empty authority, so a UNC path's `//server` stays a path.
    let mut uri = String::from("file://");
    for c in text.chars() {
        match c {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    Ok(uri)
}

/// Opens our own copy at `path` read-only and immutable (see [`immutable_uri`]).
pub(crate) fn open_copy(path: &Path) -> Result<Connection, Error> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(immutable_uri(path)?, flags)
        .map_err(|e| classify("open", path, Duration::ZERO, e))?;
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .map_err(|e| classify("configure", path, Duration::ZERO, e))?;
    Ok(conn)
}

/// Runs `PRAGMA integrity_check` on our own copy at `path` and collects a few facts about it.
///
/// `what` names the file in the error ("the copy sqlite/app.db of /srv/app.db") and `advice`
/// says what to do when the check fails.
pub(crate) fn integrity_check(path: &Path, what: &str, advice: &str) -> Result<DbFacts, Error> {
    check_header(path)?;
    let conn = open_copy(path).map_err(|e| corrupt_as_failed(e, what, advice))?;
    let mut facts = check_connection(&conn, path, what, advice)?;
    // An immutable connection always reports journal mode `delete`: read the header.
    facts.wal = header_is_wal(path);
    Ok(facts)
}

/// Runs `PRAGMA integrity_check` on the database `conn` sees (in its current read transaction,
/// if one is open) and collects the facts; `path` names the file in SQLite errors. `wal` is left
/// false for the caller to set.
pub(crate) fn check_connection(conn: &Connection, path: &Path, what: &str, advice: &str) -> Result<DbFacts, Error> {
    let failed = |problems: String| Error::Integrity {
        what: what.to_string(),
        problems,
        advice: advice.to_string(),
    };
    let err = |e| classify("check", path, Duration::ZERO, e);
    let checked: Result<DbFacts, Error> = (|| {
        let mut stmt = conn
            .prepare(&format!("PRAGMA integrity_check({MAX_PROBLEMS})"))
            .map_err(err)?;
        let problems: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        drop(stmt);
        if problems.len() != 1 || problems[0] != "ok" {
            return Err(failed(problems.join("; ")));
        }
        facts(conn).map_err(err)
    })();
    checked.map_err(|e| corrupt_as_failed(e, what, advice))
}

/// SQLite may find the damage before the check itself runs (reading the schema): that is a failed
/// check too.
fn corrupt_as_failed(e: Error, what: &str, advice: &str) -> Error {
    match e {
        Error::Sqlite { source, .. } if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            Error::Integrity {
                what: what.to_string(),
                problems: source.to_string(),
                advice: advice.to_string(),
            }
        }
        e => e,
    }
}

fn facts(conn: &Connection) -> rusqlite::Result<DbFacts> {
    let page_size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    let page_count: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| {
        r.get(0)
    })?;
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' \
             AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut table_rows = BTreeMap::new();
    for name in names {
        let n: i64 = conn.query_row(
            &format!("SELECT count(*) FROM \"{}\"", name.replace('"', "\"\"")),
            [],
            |r| r.get(0),
        )?;
        table_rows.insert(name, n.max(0) as u64);
    }
    Ok(DbFacts {
        page_size: page_size.max(0) as u64,
        page_count: page_count.max(0) as u64,
        tables: tables.max(0) as u64,
        wal: false,
        table_rows,
    })
}

/// True when the database header at `path` asks for WAL mode (bytes 18 and 19 are 2).
pub(crate) fn header_is_wal(path: &Path) -> bool {
    let mut head = [0u8; 20];
    File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head[18] == 2 && head[19] == 2
}

/// The deep check of `sqlite` artifacts for [`backup_core::Verifier`]: the artifact must be a
/// SQLite database that passes `PRAGMA integrity_check`.
///
/// SQLite needs a file: an uncompressed artifact of a pack in a local directory is checked
/// where it is; others (compressed, or not in a local directory) are first streamed through
/// the pack's reader into a temporary file in the system's temporary directory (`TMPDIR`),
/// which therefore needs room for the uncompressed database.
///
/// ```
/// use std::sync::Arc;
/// let verifier = backup_core::Verifier::new().with_check(Arc::new(source_sqlite::SqliteCheck));
/// # let _ = verifier;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteCheck;

impl SqliteCheck {
    /// Checks one artifact, with this crate's error type.
    pub fn check_artifact(pack: &dyn PackReader, entry: &ArtifactEntry) -> Result<DbFacts, Error> {
        if entry.kind != ARTIFACT_KIND {
            return Err(Error::Artifact(format!(
                "artifact {} is of type `{}`, not `{ARTIFACT_KIND}`",
                entry.path, entry.kind
            )));
        }
        let what = format!("artifact {} of pack {}", entry.path, pack.id());
        let advice = "the backup is damaged; restore from another pack";
        if let (true, Some(dir)) = (entry.is_plain(), pack.local_dir()) {
            return integrity_check(&dir.join(&entry.path), &what, advice);
        }
        let tmp = tempfile::Builder::new()
            .prefix(".packrat-check-")
            .suffix(".db")
            .tempfile()
            .map_err(Error::io("create temporary file in", std::env::temp_dir()))?;
        let tmp_path: PathBuf = tmp.path().to_path_buf();
        let mut out = io::BufWriter::with_capacity(IO_BUF, tmp.as_file());
        let mut input = pack.open_artifact(entry)?;
        io::copy(&mut input, &mut out).map_err(|e| Error::Damaged {
            path: entry.path.clone(),
            reason: format!("does not decompress: {e}"),
        })?;
        out.into_inner()
            .map_err(|e| Error::io("write", &tmp_path)(e.into_error()))?;
        // Close our handle before SQLite opens the file by name; the path is removed on drop.
        let tmp = tmp.into_temp_path();
        integrity_check(&tmp, &what, advice)
    }
}

impl DeepCheck for SqliteCheck {
    fn kinds(&self) -> &[&'static str] {
        &[ARTIFACT_KIND]
    }

    /// `PRAGMA integrity_check`, then the row count of every table against the manifest's.
    fn check(&self, pack: &dyn PackReader, entry: &ArtifactEntry) -> Result<(), String> {
        let facts = SqliteCheck::check_artifact(pack, entry).map_err(|e| e.to_string())?;
        let diff = recorded_rows(entry)
            .map(|r| facts.row_differences(&r))
            .unwrap_or_default();
        if diff.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the database differs from the pack's record: {}",
                diff.join("; ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_escapes_special_characters() {
        let uri = immutable_uri(Path::new("/a b/x?y#z%.db")).unwrap();
        if cfg!(unix) {
            assert_eq!(uri, "file:///a b/x%3Fy%23z%25.db?immutable=1");
        }
    }

    #[test]
    fn checks_a_copy_with_odd_characters_in_its_path_without_side_files() {
        let t = tempfile::tempdir().unwrap();
        // Valid on Windows too; `%3F` must stay literal, not become `?`.
        let dir = t.path().join("a b#c%d");
        std::fs::create_dir(&dir).unwrap();
        let db = dir.join("x%3F.db");
        let c = Connection::open(&db).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        c.close().unwrap();
        let facts = integrity_check(&db, "x", "y").unwrap();
        assert!(facts.wal);
        assert_eq!(facts.tables, 1);
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("x%3F.db")],
            "no -wal/-shm next to a checked copy"
        );
    }

    #[test]
    fn header_check() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x");
        std::fs::write(&p, b"").unwrap();
        assert!(check_header(&p).is_ok());
        std::fs::write(&p, b"hello world, this is not sqlite").unwrap();
        let e = check_header(&p).unwrap_err().to_string();
        assert!(e.contains("is not a SQLite database"), "{e}");
    }
}

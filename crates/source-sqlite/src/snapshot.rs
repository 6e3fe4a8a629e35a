//! A consistent, checked copy of a live database file, for other crates (the Docker source uses
//! it for SQLite databases it finds inside volumes).

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use backup_core::NoProgress;

use crate::check::{self, DbFacts};
use crate::copy::{self, CopyStrategy, JournalMode};
use crate::error::Error;

/// What [`snapshot_file`] made.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The source's journal mode.
    pub journal_mode: JournalMode,
    /// How the copy was taken.
    pub strategy: CopyStrategy,
    /// Facts about the copy (it passed `PRAGMA integrity_check`).
    pub facts: DbFacts,
    /// Size of the copy in bytes.
    pub bytes: u64,
}

/// Copies the live database at `source` into the new file `dest` exactly as a [`crate::SqliteSource`]
/// does (one read transaction in WAL mode; small steps, then one locked pass after
/// [`crate::DEFAULT_ROLLBACK_BUDGET`], in rollback-journal mode), then runs `PRAGMA
/// integrity_check` on the copy. `dest` must not exist; on error it may be left behind for the
/// caller to delete. Setting `cancel` stops the copy with [`Error::Cancelled`].
pub fn snapshot_file(
    source: &Path,
    dest: &Path,
    busy_timeout: Duration,
    cancel: &AtomicBool,
) -> Result<Snapshot, Error> {
    check::check_header(source)?;
    let settings = copy::CopySettings {
        source,
        busy_timeout,
        rollback_budget: crate::DEFAULT_ROLLBACK_BUDGET,
        cancel,
        progress: &NoProgress,
    };
    let copied = copy::copy_database(&settings, dest)?;
    let what = format!("the snapshot of {}", source.display());
    let advice = format!(
        "the source may be damaged — run `sqlite3 {} \"PRAGMA integrity_check\"`",
        source.display()
    );
    let facts = check::integrity_check(dest, &what, &advice)?;
    let bytes = std::fs::metadata(dest).map_err(Error::io("inspect", dest))?.len();
    Ok(Snapshot {
        journal_mode: copied.journal_mode,
        strategy: copied.strategy,
        facts,
        bytes,
    })
}

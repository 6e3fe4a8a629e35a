//! Times one backup of a SQLite database into a throw-away staging pack, phase by phase.
//!
//! ```text
//! cargo run --release -p source-sqlite --example sqlite_backup_timing -- DB [--compress] [--keep DIR]
//! ```
//!
//! Prints how the copy was taken, the time of the copy, of `PRAGMA integrity_check` and of
//! fsync + sha256 (or compression), the total, and the peak RSS where the OS reports it; then,
//! for an uncompressed copy, what `PRAGMA integrity_check`, `PRAGMA quick_check` and sha256 cost
//! each on its own.

use std::path::PathBuf;
use std::time::Instant;

use backup_core::{BackupKind, NoProgress, PackId, StagingPack};
use rusqlite::{Connection, OpenFlags};
use source_sqlite::SqliteSource;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut db = None;
    let mut compress = false;
    let mut keep: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--compress" => compress = true,
            "--keep" => keep = args.next().map(PathBuf::from),
            _ => db = Some(PathBuf::from(a)),
        }
    }
    let Some(db) = db else {
        return Err("usage: sqlite_backup_timing DB [--compress] [--keep DIR]".into());
    };
    let tmp = tempfile::tempdir_in(keep.as_deref().unwrap_or(std::env::temp_dir().as_path()))?;
    let id = PackId::new("timing_20260101_000000")?;
    let pack = StagingPack::create(
        &tmp.path().join(id.as_str()),
        "timing",
        id,
        BackupKind::Full,
        chrono_tz::UTC,
    )?;
    let source = SqliteSource::new("db", &db).compress(compress);

    let t = Instant::now();
    let out = source.backup_blocking(&pack, &NoProgress)?;
    let total = t.elapsed();
    println!(
        "database      {} ({:.1} MiB)",
        db.display(),
        std::fs::metadata(&db)?.len() as f64 / 1048576.0
    );
    println!(
        "journal mode  {} ({:?}, {} restarts)",
        out.journal_mode.as_str(),
        out.strategy,
        out.restarts
    );
    println!(
        "artifact      {} ({:.1} MiB)",
        out.entry.path,
        out.entry.size as f64 / 1048576.0
    );
    println!("copy          {:>8.3} s", out.copy_time.as_secs_f64());
    println!(
        "integrity     {:>8.3} s (alongside store)",
        out.check_time.as_secs_f64()
    );
    println!(
        "store         {:>8.3} s (fsync + sha256{})",
        out.store_time.as_secs_f64(),
        if compress { " + zstd" } else { "" }
    );
    println!("total         {:>8.3} s", total.as_secs_f64());
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        for line in status.lines().filter(|l| l.starts_with("VmHWM")) {
            println!("peak RSS      {}", line.trim_start_matches("VmHWM:").trim());
        }
    }
    for w in &out.warnings {
        println!("warning: {w}");
    }

    // The two passes over the copy again, one after the other, to show what each costs alone.
    if !compress {
        let copy = pack.dir().join(&out.entry.path);
        let t = Instant::now();
        let uri = format!("file:{}?immutable=1", copy.display());
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(uri, flags)?;
        conn.pragma_update(None, "cache_size", -2048)?;
        let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        println!("alone: integrity_check {:>8.3} s ({ok})", t.elapsed().as_secs_f64());
        let t = Instant::now();
        let ok: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        println!("alone: quick_check     {:>8.3} s ({ok})", t.elapsed().as_secs_f64());
        let t = Instant::now();
        backup_core::pack::hash_reader(std::fs::File::open(&copy)?)?;
        println!("alone: sha256          {:>8.3} s", t.elapsed().as_secs_f64());
    }
    pack.discard()?;
    Ok(())
}

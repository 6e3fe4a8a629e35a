//! `cargo xtask bench sqlite`: `packrat run` of a SQLite source vs `sqlite3 SRC ".backup DST"`.
//!
//! The input is a WAL-mode database of about `--size-mib` MiB (an `events` table: integer key,
//! timestamp, kind, host, a JSON-like text payload of varying length, an optional blob that is
//! part random and part zeros; an index on the timestamp), generated once with the `sqlite3`
//! CLI and cached under `target/bench/sqlite/` (regenerated when the size or schema changes).
//!
//! `--compress` sets the source's `compress = true` (the copy stored as `.db.zst`); `--encrypt`
//! compares `packrat run` of the plan unencrypted and encrypted with age instead of packrat
//! against `sqlite3 .backup` (see [`super::encrypt`]).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::encrypt::{self, PackratPlan, toml_path};
use super::harness::{self, CommonArgs, Report, Scenario, Side};
use crate::prereqs::{self, Prereq};
use crate::util::{self, mib};

/// Bump when the generated database changes, to invalidate cached copies.
const SCHEMA_VERSION: u32 = 2;

/// Options of `cargo xtask bench sqlite`.
#[derive(Debug, Args)]
pub struct SqliteArgs {
    /// Approximate size of the generated source database, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    size_mib: u64,
    /// Benchmark this packrat binary instead of building `target/release/packrat`.
    #[arg(long, value_name = "PATH")]
    packrat_bin: Option<PathBuf>,
    /// Store the copy zstd-compressed (the sqlite source's `compress = true`).
    #[arg(long)]
    compress: bool,
    /// Measure the cost of encryption: `packrat run` of the plan unencrypted vs the same plan
    /// with `[plans.NAME.encrypt]` (age, a recipient generated for the run), not vs sqlite3.
    #[arg(long)]
    encrypt: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Runs the benchmark.
pub fn run(args: &SqliteArgs) -> Result<Report> {
    eprintln!("checking prerequisites");
    prereqs::ensure(&[Prereq::apt("sqlite3", "sqlite3")])?;

    let packrat = if let Some(bin) = &args.packrat_bin {
        std::path::absolute(bin).with_context(|| format!("resolve {}", bin.display()))?
    } else {
        eprintln!("building packrat (release)");
        util::run(util::cargo().args(["build", "--release", "-p", "packrat"]))?;
        util::target_dir().join("release").join("packrat")
    };
    if !packrat.is_file() {
        bail!("{} was not built", packrat.display());
    }

    let dir = util::target_dir().join("bench").join("sqlite");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let db = ensure_db(&dir, args.size_mib)?;

    let mut bench = SqliteBench {
        dir,
        packrat,
        db,
        compress: args.compress,
    };
    let report = if args.encrypt {
        encrypt::run(&mut bench, args.common.rounds)?
    } else {
        harness::run(&mut bench, args.common.rounds)?
    };
    Ok(report)
}

/// The generated source database.
#[derive(Debug)]
struct Db {
    path: PathBuf,
    bytes: u64,
    rows: u64,
    cached: bool,
}

#[derive(Debug)]
struct SqliteBench {
    dir: PathBuf,
    packrat: PathBuf,
    db: Db,
    compress: bool,
}

impl SqliteBench {
    fn backup_path(&self, round: u32) -> PathBuf {
        self.dir.join(format!("backup-{round}.db"))
    }

    fn packs_dir(&self, round: u32) -> PathBuf {
        self.dir.join(format!("packs-{round}"))
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("packrat.toml")
    }
}

impl Scenario for SqliteBench {
    fn name(&self) -> &str {
        "sqlite"
    }

    fn baseline_label(&self) -> &str {
        "sqlite3 .backup"
    }

    fn info(&self) -> Vec<(String, Value)> {
        let mut info = vec![
            ("database".into(), json!(self.db.path.display().to_string())),
            ("database_mib".into(), json!((mib(self.db.bytes) * 10.0).round() / 10.0)),
            ("rows".into(), json!(self.db.rows)),
            ("journal_mode".into(), json!("wal")),
            (
                "generated".into(),
                json!(if self.db.cached {
                    "cached from an earlier run"
                } else {
                    "this run"
                }),
            ),
        ];
        if self.compress {
            info.push(("compress".into(), json!(true)));
        }
        info
    }

    fn input_files(&self) -> Vec<PathBuf> {
        let mut wal = self.db.path.clone().into_os_string();
        wal.push("-wal");
        vec![self.db.path.clone(), wal.into()]
    }

    fn command(&mut self, side: Side, round: u32) -> Result<Command> {
        match side {
            Side::Baseline => {
                let dst = self.backup_path(round);
                util::remove_path(&dst)?;
                let mut cmd = Command::new("sqlite3");
                cmd.arg(&self.db.path)
                    .arg(format!(".backup {}", sqlite_quote(&dst)?))
                    .current_dir(&self.dir);
                Ok(cmd)
            }
            Side::Packrat => {
                let packs = self.packs_dir(round);
                util::remove_path(&packs)?;
                // Fresh state too, so no round benefits from an earlier one.
                util::remove_path(&self.state_dir())?;
                std::fs::create_dir_all(self.state_dir())?;
                let config = format!(
                    "state_dir = {}\n\n{}[sinks.local]\ntype = \"local\"\npath = {}\n\n{}",
                    toml_path(&self.state_dir()),
                    self.sources_toml(),
                    toml_path(&packs),
                    self.plan_toml("bench", "local"),
                );
                std::fs::write(self.config_path(), config)
                    .with_context(|| format!("write {}", self.config_path().display()))?;
                let mut cmd = Command::new(&self.packrat);
                cmd.arg("--config")
                    .arg(self.config_path())
                    .args(["run", "bench"])
                    .current_dir(&self.dir);
                Ok(cmd)
            }
        }
    }

    fn finish_round(&mut self, round: u32) -> Result<(u64, u64)> {
        let backup = self.backup_path(round);
        let packs = self.packs_dir(round);
        let backup_bytes = util::disk_usage(&backup)?;
        let packs_bytes = util::disk_usage(&packs)?;
        if backup_bytes == 0 {
            bail!("sqlite3 .backup wrote nothing to {}", backup.display());
        }
        if packs_bytes == 0 {
            bail!("packrat run wrote nothing to {}", packs.display());
        }
        util::remove_path(&backup)?;
        util::remove_path(&packs)?;
        Ok((backup_bytes, packs_bytes))
    }
}

impl PackratPlan for SqliteBench {
    fn packrat(&self) -> &Path {
        &self.packrat
    }

    fn work_dir(&self) -> &Path {
        &self.dir
    }

    fn sources_toml(&self) -> String {
        let compress = if self.compress { "compress = true\n" } else { "" };
        format!(
            "[sources.db]\ntype = \"sqlite\"\npath = {}\n{compress}\n",
            toml_path(&self.db.path)
        )
    }

    fn plan_toml(&self, plan: &str, sink: &str) -> String {
        format!("[plans.{plan}]\nsources = [\"db\"]\nsinks = [\"{sink}\"]\n")
    }
}

/// Returns the cached database, or generates it.
fn ensure_db(dir: &Path, size_mib: u64) -> Result<Db> {
    let path = dir.join("src.db");
    let meta_path = dir.join("src.db.meta");
    let key = format!("schema={SCHEMA_VERSION} size_mib={size_mib}");

    if let (Ok(meta), Ok(stat)) = (std::fs::read_to_string(&meta_path), path.metadata()) {
        let mut lines = meta.lines();
        if lines.next() == Some(key.as_str())
            && let Some(rows) = lines.next().and_then(|l| l.strip_prefix("rows="))
            && let Ok(rows) = rows.parse()
        {
            eprintln!(
                "using cached {} ({:.1} MiB, {rows} rows)",
                path.display(),
                mib(stat.len())
            );
            return Ok(Db {
                path,
                bytes: stat.len(),
                rows,
                cached: true,
            });
        }
    }

    util::remove_path(&meta_path)?;
    let (bytes, rows) = generate(dir, &path, size_mib)?;
    std::fs::write(&meta_path, format!("{key}\nrows={rows}\n"))
        .with_context(|| format!("write {}", meta_path.display()))?;
    Ok(Db {
        path,
        bytes,
        rows,
        cached: false,
    })
}

/// Generates a database of about `size_mib` MiB at `path`; returns (bytes, rows).
fn generate(dir: &Path, path: &Path, size_mib: u64) -> Result<(u64, u64)> {
    let t0 = std::time::Instant::now();
    let tmp = dir.join("src.db.partial");
    for suffix in ["", "-wal", "-shm", "-journal"] {
        util::remove_path(&dir.join(format!("src.db.partial{suffix}")))?;
        util::remove_path(&dir.join(format!("src.db{suffix}")))?;
    }
    eprintln!("generating {} (~{size_mib} MiB)", path.display());

    sqlite_script(
        &tmp,
        "CREATE TABLE events (\n\
           id         INTEGER PRIMARY KEY,\n\
           ts         INTEGER NOT NULL,  -- unix milliseconds\n\
           kind       TEXT NOT NULL,\n\
           host       TEXT NOT NULL,\n\
           payload    TEXT NOT NULL,\n\
           attachment BLOB\n\
         );\n\
         CREATE INDEX events_ts ON events(ts);\n",
    )?;

    let target = size_mib * 1024 * 1024;
    let lorem = lorem();
    let mut rows = 0_u64;
    let mut size = file_len(&tmp)?;
    // First batch small enough not to overshoot small targets; later ones sized by the
    // measured bytes per row.
    let mut batch = (target / 4096).clamp(100, 20_000);
    while size < target {
        sqlite_script(&tmp, &insert_sql(rows + 1, rows + batch, &lorem))?;
        rows += batch;
        size = file_len(&tmp)?;
        eprintln!("  {rows} rows, {:.0} MiB of {size_mib} MiB", mib(size));
        let per_row = (size / rows).max(1);
        batch = (target.saturating_sub(size) / per_row + 1).clamp(1, 100_000);
    }
    sqlite_script(&tmp, "PRAGMA journal_mode=WAL;\n")?;

    std::fs::rename(&tmp, path).with_context(|| format!("rename {} to {}", tmp.display(), path.display()))?;
    let size = file_len(path)?;
    eprintln!(
        "generated {:.1} MiB, {rows} rows in {}",
        mib(size),
        util::fmt_duration(t0.elapsed())
    );
    Ok((size, rows))
}

/// SQL inserting rows `first..=last`, generated inside SQLite (fast, no data through a pipe).
fn insert_sql(first: u64, last: u64, lorem: &str) -> String {
    let mut sql = String::from("PRAGMA journal_mode=OFF;\nPRAGMA synchronous=OFF;\nBEGIN;\n");
    let _ = write!(
        sql,
        "WITH RECURSIVE n(i) AS (SELECT {first} UNION ALL SELECT i + 1 FROM n WHERE i < {last})\n\
         INSERT INTO events (id, ts, kind, host, payload, attachment)\n\
         SELECT i,\n\
           1704067200000 + i * 250 + abs(random() % 250),\n\
           CASE abs(random() % 5) WHEN 0 THEN 'login' WHEN 1 THEN 'upload' WHEN 2 THEN 'query'\n\
             WHEN 3 THEN 'delete' ELSE 'error' END,\n\
           printf('host-%02d', abs(random() % 40)),\n\
           printf('{{\"user\":%d,\"request\":\"%s\",\"path\":\"/srv/data/%s/%d.dat\",\"note\":\"%s\"}}',\n\
             abs(random() % 100000), lower(hex(randomblob(8))), lower(hex(randomblob(4))),\n\
             abs(random() % 1000), substr('{lorem}', 1 + abs(random() % 400), 16 + abs(random() % 1200))),\n\
           CASE WHEN abs(random() % 4) = 0 THEN NULL\n\
             ELSE CAST(randomblob(abs(random() % 2048)) || zeroblob(abs(random() % 1024)) AS BLOB) END\n\
         FROM n;\n\
         COMMIT;\n"
    );
    sql
}

/// About 2 KiB of varied English-like text (no quotes).
fn lorem() -> String {
    const SENTENCES: [&str; 8] = [
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ",
        "Backup window exceeded for volume data-07; retrying with lower priority. ",
        "User uploaded a report with 42 attachments and a long description of the issue. ",
        "Sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. ",
        "Connection from 10.0.3.17 closed after 1532 ms, 18 queries, 0 errors. ",
        "Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris. ",
        "Scheduled job finished: 12873 rows archived, 311 skipped, 2 warnings. ",
        "Duis aute irure dolor in reprehenderit in voluptate velit esse cillum. ",
    ];
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 2048 {
        text.push_str(SENTENCES[(i * 5 + i / 8) % SENTENCES.len()]);
        i += 1;
    }
    text
}

/// Runs an SQL script with the `sqlite3` CLI on `db`, stopping at the first error.
fn sqlite_script(db: &Path, sql: &str) -> Result<()> {
    let mut child = Command::new("sqlite3")
        .arg("-bail")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start sqlite3")?;
    child
        .stdin
        .take()
        .context("sqlite3 stdin")?
        .write_all(sql.as_bytes())
        .context("write to sqlite3")?;
    let status = child.wait().context("wait for sqlite3")?;
    util::check_status(status, &format!("sqlite3 {}", db.display()))
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(path
        .metadata()
        .with_context(|| format!("stat {}", path.display()))?
        .len())
}

/// A path quoted for a sqlite3 shell dot-command argument (which has no escapes).
fn sqlite_quote(path: &Path) -> Result<String> {
    let path = path.display().to_string();
    if path.contains('\'') {
        bail!("cannot pass a path containing a single quote to sqlite3: {path}");
    }
    Ok(format!("'{path}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lorem_is_long_enough_and_quote_free() {
        let text = lorem();
        assert!(text.len() >= 400 + 16 + 1200);
        assert!(!text.contains('\''));
    }
}

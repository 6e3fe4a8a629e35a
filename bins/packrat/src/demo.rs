//! `packrat demo`: a real backup on an embedded default, needing no server.

use std::path::Path;

use crate::{CliError, exit, wire};

const CONFIG: &str = r#"# packrat quick-start config, written by `packrat demo`.
# Paths are relative to this file.
state_dir = "state"

[sources.app_db]
type = "sqlite"
path = "app.db"

[sinks.local]
type = "local"
path = "packs"

[plans.demo]
sources = ["app_db"]
sinks = ["local"]
prefix = "demo_pack"
"#;

/// Creates `<dir>/app.db` (a small live SQLite database in WAL mode) and `<dir>/packrat.toml`,
/// runs the `demo` plan, deep-verifies the pack and prints where it is.
pub async fn run(dir: &Path) -> Result<u8, CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;
    // `dunce`: on Windows a plain `D:\…` path, not the verbatim `\\?\D:\…` of
    // `std::fs::canonicalize` that every path derived from it would show.
    let dir =
        dunce::canonicalize(dir).map_err(|e| CliError::failed(format!("cannot resolve {}: {e}", dir.display())))?;
    let db = dir.join("app.db");
    seed(&db).map_err(|e| CliError::failed(format!("cannot create the demo database {}: {e}", db.display())))?;
    let cfg_path = dir.join("packrat.toml");
    std::fs::write(&cfg_path, CONFIG)
        .map_err(|e| CliError::failed(format!("cannot write {}: {e}", cfg_path.display())))?;

    let cfg = wire::load_config(Some(&cfg_path))?;
    let plan = wire::plan(&cfg, "demo")?;
    let state = wire::open_state(&cfg)?;
    let run = backup_core::Runner::new(state)
        .run(&plan, backup_core::BackupKind::Full, backup_core::Trigger::Manual)
        .await?;
    if !run.is_success() {
        return Err(CliError::failed(format!("demo backup failed: {}", run.job.detail)));
    }
    let Some(pack) = run.pack else {
        return Err(CliError::failed("demo backup produced no pack"));
    };
    // Read back through the sink that holds it.
    let report = plan.sinks[0]
        .verify(&pack.plan, &pack.id, &wire::verifier(), backup_core::VerifyLevel::Deep)
        .await?;
    if !report.is_ok() {
        return Err(CliError::failed(format!(
            "demo pack failed verification: {:?}",
            report.problems
        )));
    }
    let c = cfg_path.display();
    outln!("backed up {} into job {}", db.display(), run.job.id);
    outln!("pack: {}", pack.location);
    outln!("deep verification: OK ({} artifact(s))", report.artifacts);
    outln!();
    outln!("next steps:");
    outln!("  packrat --config {c} list");
    outln!("  packrat --config {c} status");
    outln!("  packrat --config {c} restore --latest demo --to /tmp/restored.db");
    outln!(
        "  sqlite3 {}/sqlite/app_db.db 'select count(*) from orders'",
        pack.location
    );
    Ok(exit::OK)
}

fn seed(db: &Path) -> rusqlite::Result<()> {
    let conn = rusqlite::Connection::open(db)?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT);
         CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, customer INTEGER REFERENCES customers(id),
                                           placed_at TEXT NOT NULL, total_cents INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS orders_placed ON orders(placed_at);",
    )?;
    let tx = conn.unchecked_transaction()?;
    let n: i64 = tx.query_row("SELECT count(*) FROM customers", [], |r| r.get(0))?;
    for i in n..n + 100 {
        tx.execute(
            "INSERT INTO customers(name, email) VALUES (?1, ?2)",
            (format!("customer {i}"), format!("c{i}@example.com")),
        )?;
        for k in 0..10 {
            tx.execute(
                "INSERT INTO orders(customer, placed_at, total_cents) VALUES (?1, datetime('now', ?2), ?3)",
                (i + 1, format!("-{k} days"), (i * 37 + k * 11) % 10_000),
            )?;
        }
    }
    tx.commit()
}

//! Schema versions of the state store: the core tables, tracked with `PRAGMA user_version`, and
//! the tables other components keep in the same file, tracked per component in the `components`
//! table (see [`StateStore::component_migrations`]).
//!
//! Core schema history:
//!
//! | version | change |
//! |---|---|
//! | 1 | `jobs`, `schedule_state`, `watermarks` (packrat 0.1 also created `alerts` here) |
//! | 2 | `components`: the schema version of each component's own tables |
//! | 3 | `cancel_requests` (cross-process cancel), `watermark_resets` (audit), `collection_health` |
//! | 4 | `audit`: the append-only audit trail (triggers refuse `UPDATE` and `DELETE`) |
//!
//! The `alerts` table is owned by the alerts crate since version 2. Databases written before
//! (version 1 with `alerts`) keep the table and its rows: the alerts crate creates it with
//! `CREATE TABLE IF NOT EXISTS` and the same shape, so old and new databases converge.
//!
//! Each migration runs in its own `IMMEDIATE` transaction, so two processes opening a store at
//! the same time never both apply one, and a crash leaves the schema at a whole version.

use std::path::Path;

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

#[cfg(doc)]
use super::StateStore;
use super::format_time;
use crate::error::{Error, Result};

/// Core schema migrations; migration `i` brings `user_version` from `i` to `i + 1`. Never edit
/// one that was released except to drop what moved to a component (as `alerts` did).
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: jobs, schedule state, watermarks.
    "
    CREATE TABLE jobs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        plan        TEXT    NOT NULL,
        kind        TEXT    NOT NULL,
        trigger     TEXT    NOT NULL,
        status      TEXT    NOT NULL,
        progress    INTEGER NOT NULL DEFAULT 0,
        message     TEXT    NOT NULL DEFAULT '',
        detail      TEXT    NOT NULL DEFAULT '',
        output_dir  TEXT,
        pack_id     TEXT,
        replication TEXT    NOT NULL DEFAULT 'none',
        bytes       INTEGER NOT NULL DEFAULT 0,
        artifacts   INTEGER NOT NULL DEFAULT 0,
        records     INTEGER NOT NULL DEFAULT 0,
        pid         INTEGER,
        created_at  TEXT    NOT NULL,
        started_at  TEXT,
        finished_at TEXT
    );
    CREATE INDEX jobs_plan_id ON jobs (plan, id);
    CREATE INDEX jobs_status ON jobs (status);

    CREATE TABLE schedule_state (
        plan            TEXT PRIMARY KEY NOT NULL,
        last_fired_slot TEXT,
        last_attempt    TEXT,
        last_success    TEXT
    );

    CREATE TABLE watermarks (
        plan       TEXT    NOT NULL,
        source     TEXT    NOT NULL,
        key        TEXT    NOT NULL,
        value      TEXT    NOT NULL,
        job        INTEGER,
        updated_at TEXT    NOT NULL,
        PRIMARY KEY (plan, source, key)
    );
    ",
    // 2: the schema versions of the components' own tables.
    "
    CREATE TABLE components (
        name        TEXT PRIMARY KEY NOT NULL,
        version     INTEGER NOT NULL,
        migrated_at TEXT    NOT NULL
    );
    ",
    // 3: cancel requests, the audit of watermark resets, health per collection.
    "
    CREATE TABLE cancel_requests (
        job          INTEGER PRIMARY KEY NOT NULL,
        requested_by TEXT    NOT NULL,
        requested_at TEXT    NOT NULL
    );

    CREATE TABLE watermark_resets (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        plan      TEXT NOT NULL,
        source    TEXT NOT NULL,
        key       TEXT NOT NULL,
        old_value TEXT,
        new_value TEXT,
        reset_by  TEXT NOT NULL,
        reset_at  TEXT NOT NULL
    );

    CREATE TABLE collection_health (
        plan                 TEXT    NOT NULL,
        source               TEXT    NOT NULL,
        key                  TEXT    NOT NULL,
        failures_total       INTEGER NOT NULL DEFAULT 0,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        last_error           TEXT    NOT NULL DEFAULT '',
        last_failure_at      TEXT,
        last_success_at      TEXT,
        window_from          TEXT,
        window_to            TEXT,
        PRIMARY KEY (plan, source, key)
    );
    ",
    // 4: the audit trail, append-only (the triggers refuse every change and deletion).
    "
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      TEXT NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        plan    TEXT,
        subject TEXT NOT NULL,
        detail  TEXT NOT NULL
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    ",
];

/// Brings the core schema up to date, one migration per transaction. A database of a newer
/// packrat (an unknown, higher version) is refused.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let state_err = |source| Error::state(path, source);
    let latest = MIGRATIONS.len();
    loop {
        // IMMEDIATE: two processes opening a fresh store at once must not both migrate.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(state_err)?;
        let version: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(state_err)?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version == latest {
            return Ok(());
        }
        if version > latest {
            return Err(Error::Other(format!(
                "state store {} has schema version {version}, newer than this packrat supports \
                 ({latest}); upgrade packrat",
                path.display()
            )));
        }
        tx.execute_batch(MIGRATIONS[version]).map_err(state_err)?;
        tx.pragma_update(None, "user_version", i64::try_from(version + 1).unwrap_or(i64::MAX))
            .map_err(state_err)?;
        tx.commit().map_err(state_err)?;
        tracing::debug!(path = %path.display(), version = version + 1, "state store schema migrated");
    }
}

/// Brings the tables of `component` up to date: applies `migrations[v..]` where `v` is the
/// version recorded in `components` (0 when none), each in its own transaction together with the
/// new version. A recorded version above `migrations.len()` (a newer packrat) is refused.
pub(super) fn migrate_component(
    conn: &mut Connection,
    path: &Path,
    component: &str,
    migrations: &[&str],
) -> Result<()> {
    check_component_name(component)?;
    let state_err = |source| Error::state(path, source);
    let latest = migrations.len();
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(state_err)?;
        let version: i64 = tx
            .query_row("SELECT version FROM components WHERE name = ?1", [component], |row| {
                row.get(0)
            })
            .optional()
            .map_err(state_err)?
            .unwrap_or(0);
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version == latest {
            return Ok(());
        }
        if version > latest {
            return Err(Error::Other(format!(
                "state store {}: the tables of `{component}` have schema version {version}, newer \
                 than this packrat supports ({latest}); upgrade packrat",
                path.display()
            )));
        }
        tx.execute_batch(migrations[version])
            .map_err(|e| match Error::state(path, e) {
                Error::State { source, .. } => Error::Other(format!(
                    "state store {}: migration {} of the `{component}` tables failed: {source}; the \
                 database is unchanged",
                    path.display(),
                    version + 1
                )),
                full => full,
            })?;
        tx.execute(
            "INSERT INTO components (name, version, migrated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET
                version = excluded.version, migrated_at = excluded.migrated_at",
            params![
                component,
                i64::try_from(version + 1).unwrap_or(i64::MAX),
                format_time(Utc::now())
            ],
        )
        .map_err(state_err)?;
        tx.commit().map_err(state_err)?;
        tracing::debug!(path = %path.display(), component, version = version + 1, "state store component schema migrated");
    }
}

/// Component names are short identifiers (`alerts`, `my-plugin`): lowercase ASCII letters,
/// digits, `-` and `_`.
fn check_component_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "state store component name `{name}` is not valid: use 1 to 64 lowercase letters, \
             digits, `-` or `_`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::job::{BackupKind, JobStatus, ReplicationStatus, Trigger};
    use crate::state::{ScheduleState, StateStore, Watermark};

    /// The schema of `user_version` 1 exactly as packrat 0.1 wrote it (its migration 1,
    /// verbatim), including the `alerts` table that the alerts crate owns now.
    const LEGACY_V1: &str = "
    CREATE TABLE jobs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        plan        TEXT    NOT NULL,
        kind        TEXT    NOT NULL,
        trigger     TEXT    NOT NULL,
        status      TEXT    NOT NULL,
        progress    INTEGER NOT NULL DEFAULT 0,
        message     TEXT    NOT NULL DEFAULT '',
        detail      TEXT    NOT NULL DEFAULT '',
        output_dir  TEXT,
        pack_id     TEXT,
        replication TEXT    NOT NULL DEFAULT 'none',
        bytes       INTEGER NOT NULL DEFAULT 0,
        artifacts   INTEGER NOT NULL DEFAULT 0,
        records     INTEGER NOT NULL DEFAULT 0,
        pid         INTEGER,
        created_at  TEXT    NOT NULL,
        started_at  TEXT,
        finished_at TEXT
    );
    CREATE INDEX jobs_plan_id ON jobs (plan, id);
    CREATE INDEX jobs_status ON jobs (status);

    CREATE TABLE schedule_state (
        plan            TEXT PRIMARY KEY NOT NULL,
        last_fired_slot TEXT,
        last_attempt    TEXT,
        last_success    TEXT
    );

    CREATE TABLE watermarks (
        plan       TEXT    NOT NULL,
        source     TEXT    NOT NULL,
        key        TEXT    NOT NULL,
        value      TEXT    NOT NULL,
        job        INTEGER,
        updated_at TEXT    NOT NULL,
        PRIMARY KEY (plan, source, key)
    );

    CREATE TABLE alerts (
        key         TEXT PRIMARY KEY NOT NULL,
        severity    TEXT    NOT NULL,
        message     TEXT    NOT NULL,
        first_seen  TEXT    NOT NULL,
        last_seen   TEXT    NOT NULL,
        count       INTEGER NOT NULL,
        resolved_at TEXT
    );
    ";

    /// Writes a `state.db` the way packrat 0.1 did: WAL, the v1 schema, `user_version = 1`, and
    /// rows in every table as that version wrote them.
    fn legacy_store(state_dir: &Path) {
        std::fs::create_dir_all(state_dir).unwrap();
        let conn = Connection::open(state_dir.join("state.db")).unwrap();
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.execute_batch(&format!("BEGIN; {LEGACY_V1} PRAGMA user_version = 1; COMMIT;"))
            .unwrap();
        conn.execute_batch(
            "INSERT INTO jobs (plan, kind, trigger, status, progress, message, detail, output_dir,
                 pack_id, replication, bytes, artifacts, records, pid, created_at, started_at, finished_at)
             VALUES ('nightly', 'full', 'schedule', 'completed', 100, 'backup completed', '',
                 '/backups/nightly/p1', 'p1', 'succeeded', 1234, 3, 42, 99,
                 '2026-11-21T04:00:00.000000Z', '2026-11-21T04:00:01.000000Z', '2026-11-21T04:00:09.000000Z');
             INSERT INTO jobs (plan, kind, trigger, status, created_at, started_at, pid)
             VALUES ('nightly', 'incremental', 'api', 'running', '2026-11-22T04:00:00.000000Z',
                 '2026-11-22T04:00:00.000000Z', 4242);
             INSERT INTO schedule_state VALUES ('nightly', '2026-11-22T04:00:00.000000Z',
                 '2026-11-22T04:00:00.100000Z', '2026-11-21T04:00:09.000000Z');
             INSERT INTO watermarks VALUES ('nightly', 'mongo', 'db.a', '2026-11-21T03:59:00.000000Z',
                 1, '2026-11-21T04:00:09.000000Z');
             INSERT INTO alerts VALUES ('plan:nightly:failures', 'critical', 'failed 3 times',
                 '2026-11-20T04:00:00.000000Z', '2026-11-21T04:00:00.000000Z', 5, NULL);",
        )
        .unwrap();
    }

    /// `(table, column list)` and `(index, table)` of every schema object, in name order: what a
    /// query can see of the schema.
    fn schema(conn: &Connection) -> Vec<String> {
        let mut out = Vec::new();
        let mut stmt = conn
            .prepare("SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap();
        let objects: Vec<(String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for (kind, name, table) in objects {
            if kind == "table" {
                let mut cols = conn
                    .prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1)")
                    .unwrap();
                let cols: Vec<String> = cols
                    .query_map([&name], |r| {
                        Ok(format!(
                            "{} {} nn={} d={:?} pk={}",
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, i64>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, i64>(4)?
                        ))
                    })
                    .unwrap()
                    .collect::<rusqlite::Result<_>>()
                    .unwrap();
                out.push(format!("table {name}: {}", cols.join(", ")));
            } else {
                out.push(format!("{kind} {name} on {table}"));
            }
        }
        out
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        drop(StateStore::open(&state).unwrap());
        let conn = Connection::open(state.join("state.db")).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = StateStore::open(&state).unwrap_err();
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }

    #[test]
    fn a_version_1_database_opens_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        legacy_store(&state);

        let store = StateStore::open(&state).unwrap();
        let v: i64 = store
            .with_conn(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);

        // Jobs: the finished one as it was; the running one (no lock file) is recoverable.
        let done = store.job(1).unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Completed);
        assert_eq!((done.bytes, done.artifacts, done.records), (1234, 3, 42));
        assert_eq!(done.pack_id.as_deref(), Some("p1"));
        assert_eq!(done.kind, BackupKind::Full);
        assert_eq!(done.trigger, Trigger::Schedule);
        assert_eq!(done.replication, ReplicationStatus::Succeeded);
        assert_eq!(
            done.finished_at,
            Some(Utc.with_ymd_and_hms(2026, 11, 21, 4, 0, 9).unwrap())
        );
        assert_eq!(store.last_success("nightly").unwrap().unwrap().id, 1);
        let marked = store.recover_interrupted().unwrap();
        assert_eq!(marked.len(), 1);
        assert_eq!(marked[0].id, 2);
        assert!(marked[0].detail.contains("(pid 4242)"), "{}", marked[0].detail);

        // Schedule state and watermarks as they were.
        assert_eq!(
            store.schedule_state("nightly").unwrap(),
            ScheduleState {
                plan: "nightly".into(),
                last_fired_slot: Some(Utc.with_ymd_and_hms(2026, 11, 22, 4, 0, 0).unwrap()),
                last_attempt: Some(
                    Utc.with_ymd_and_hms(2026, 11, 22, 4, 0, 0).unwrap() + chrono::Duration::milliseconds(100)
                ),
                last_success: Some(Utc.with_ymd_and_hms(2026, 11, 21, 4, 0, 9).unwrap()),
            }
        );
        assert_eq!(
            store.watermarks("nightly").unwrap(),
            vec![Watermark {
                plan: "nightly".into(),
                source: "mongo".into(),
                key: "db.a".into(),
                value: Utc.with_ymd_and_hms(2026, 11, 21, 3, 59, 0).unwrap(),
                job: Some(1),
                updated_at: Utc.with_ymd_and_hms(2026, 11, 21, 4, 0, 9).unwrap(),
            }]
        );

        // New work goes on after the old rows.
        let (job, _lock) = store.create_job("nightly", BackupKind::Full, Trigger::Manual).unwrap();
        assert_eq!(job.id, 3);

        // The alerts rows are still there, untouched, for the alerts crate to take over.
        let alerts: (String, i64) = store
            .with_conn(|c| c.query_row("SELECT key, count FROM alerts", [], |r| Ok((r.get(0)?, r.get(1)?))))
            .unwrap();
        assert_eq!(alerts, ("plan:nightly:failures".to_string(), 5));
        // Nothing is registered for it yet: the owner's `CREATE TABLE IF NOT EXISTS` keeps it.
        let components: i64 = store
            .with_conn(|c| c.query_row("SELECT COUNT(*) FROM components", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(components, 0);

        // Reopening is a no-op.
        drop(store);
        let store = StateStore::open(&state).unwrap();
        assert_eq!(store.jobs(&Default::default()).unwrap().len(), 3);
    }

    #[test]
    fn upgraded_and_fresh_databases_have_the_same_core_schema() {
        let dir = tempfile::tempdir().unwrap();
        legacy_store(&dir.path().join("old"));
        let old = StateStore::open(&dir.path().join("old")).unwrap();
        let fresh = StateStore::open(&dir.path().join("new")).unwrap();
        let old_schema = old.with_conn(|c| Ok(schema(c))).unwrap();
        let new_schema = fresh.with_conn(|c| Ok(schema(c))).unwrap();
        // The only difference: the legacy `alerts` table, which its owner adopts.
        let without_alerts: Vec<_> = old_schema
            .iter()
            .filter(|s| !s.starts_with("table alerts:"))
            .cloned()
            .collect();
        assert_eq!(without_alerts, new_schema);
        assert_eq!(old_schema.len(), new_schema.len() + 1);
        for table in ["components", "jobs", "schedule_state", "watermarks"] {
            assert!(
                new_schema.iter().any(|s| s.starts_with(&format!("table {table}:"))),
                "{new_schema:?}"
            );
        }
    }

    #[test]
    fn component_migrations_apply_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let v1: &[&str] = &["CREATE TABLE demo_items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"];
        let v2: &[&str] = &[
            v1[0],
            "ALTER TABLE demo_items ADD COLUMN size INTEGER NOT NULL DEFAULT 0;",
        ];
        let version = |store: &StateStore| -> Option<i64> {
            store
                .with_conn(|c| {
                    c.query_row("SELECT version FROM components WHERE name = 'demo'", [], |r| r.get(0))
                        .optional()
                })
                .unwrap()
        };
        {
            let store = StateStore::open(&state).unwrap();
            assert_eq!(version(&store), None);
            store.component_migrations("demo", v1).unwrap();
            assert_eq!(version(&store), Some(1));
            // Applying the same list again changes nothing (a second `CREATE TABLE` would fail).
            store.component_migrations("demo", v1).unwrap();
            store
                .with_conn(|c| c.execute("INSERT INTO demo_items (name) VALUES ('a')", []))
                .unwrap();
        }
        // A later release adds a migration: only the new one runs, the row survives.
        let store = StateStore::open(&state).unwrap();
        store.component_migrations("demo", v2).unwrap();
        assert_eq!(version(&store), Some(2));
        let row: (String, i64) = store
            .with_conn(|c| c.query_row("SELECT name, size FROM demo_items", [], |r| Ok((r.get(0)?, r.get(1)?))))
            .unwrap();
        assert_eq!(row, ("a".to_string(), 0));
        // Another component is tracked on its own.
        store.component_migrations("other", &[]).unwrap();
        assert_eq!(version(&store), Some(2));

        // An older packrat (knowing only v1) refuses the newer tables.
        let err = store.component_migrations("demo", v1).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("`demo`") && msg.contains("schema version 2") && msg.contains("upgrade packrat"),
            "{msg}"
        );
    }

    #[test]
    fn a_failing_component_migration_changes_nothing() {
        let (_dir, store) = crate::state::tests::store();
        let bad: &[&str] = &[
            "CREATE TABLE demo_a (id INTEGER PRIMARY KEY);",
            "CREATE TABLE demo_b (id INTEGER PRIMARY KEY); INSERT INTO no_such_table VALUES (1);",
        ];
        let err = store.component_migrations("demo", bad).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("migration 2 of the `demo` tables failed") && msg.contains("no_such_table"),
            "{msg}"
        );
        assert!(msg.contains(&store.path().display().to_string()), "{msg}");
        // Migration 1 stays applied; migration 2 left nothing behind.
        let (version, b_tables): (i64, i64) = store
            .with_conn(|c| {
                c.query_row(
                    "SELECT (SELECT version FROM components WHERE name = 'demo'),
                            (SELECT COUNT(*) FROM sqlite_master WHERE name = 'demo_b')",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .unwrap();
        assert_eq!((version, b_tables), (1, 0));
    }

    #[test]
    fn component_names_are_checked() {
        let (_dir, store) = crate::state::tests::store();
        for bad in ["", "Alerts", "a b", "x;DROP", &"a".repeat(65)] {
            let err = store.component_migrations(bad, &[]).unwrap_err();
            assert!(err.to_string().contains("is not valid"), "{bad}: {err}");
        }
        store.component_migrations("my-plugin_2", &[]).unwrap();
    }
}

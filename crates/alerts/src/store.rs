//! The alerts table: every alert by its stable key, raised, refreshed and resolved by the
//! [`AlertManager`](crate::AlertManager), listed by `packrat alert list`, the daemon's status API
//! and its metrics.
//!
//! The table lives in the installation's state store (`state.db`), owned by this crate: it is
//! declared with [`StateStore::component_migrations`] under the component name `alerts` and
//! queried through [`StateStore::with_conn`] / [`StateStore::with_transaction`]. Its shape is the
//! one packrat 0.1 created in the core schema, so the alerts of an existing installation are kept.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use backup_core::StateStore;
use backup_core::state::rusqlite::{self, Connection, OptionalExtension, Row, params};
use backup_core::state::{format_time, read_opt_time, read_parsed, read_time, read_u64};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The component name of the alerts tables in the state store.
const COMPONENT: &str = "alerts";

/// The schema of the alerts tables; migration `i` brings it from version `i` to `i + 1`. Append
/// only.
const MIGRATIONS: &[&str] = &[
    // 1: the table as packrat 0.1 created it in the core schema; `IF NOT EXISTS` adopts it.
    "
    CREATE TABLE IF NOT EXISTS alerts (
        key         TEXT PRIMARY KEY NOT NULL,
        severity    TEXT    NOT NULL,
        message     TEXT    NOT NULL,
        first_seen  TEXT    NOT NULL,
        last_seen   TEXT    NOT NULL,
        count       INTEGER NOT NULL,
        resolved_at TEXT
    );
    ",
];

/// The columns of `alerts`, in the order [`alert_from_row`] reads them.
const ALERT_COLUMNS: &str = "key, severity, message, first_seen, last_seen, count, resolved_at";

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For information only.
    Info,
    /// Needs attention soon.
    Warning,
    /// Backups are not happening or not usable.
    Critical,
}

impl Severity {
    /// `info`, `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "unknown severity `{other}` (expected info, warning or critical)"
            )),
        }
    }
}

/// A condition the health checker (or retention) reported, identified by a stable key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable key, e.g. `plan:nightly:overdue`.
    pub key: String,
    /// How bad it is.
    pub severity: Severity,
    /// Latest message, for operators.
    pub message: String,
    /// When it started firing (this time).
    pub first_seen: DateTime<Utc>,
    /// When it was last raised.
    pub last_seen: DateTime<Utc>,
    /// How many times it was raised since it started firing.
    pub count: u64,
    /// When it was resolved; `None` while firing.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// The alerts of one installation, in its state store. Cheap to clone (it shares the store).
#[derive(Debug, Clone)]
pub struct AlertStore {
    state: Arc<StateStore>,
}

impl AlertStore {
    /// The alerts of `state`: creates or upgrades the alerts table in its database (an existing
    /// table and its rows are kept). Fails when the database cannot be written, or when its
    /// alerts table was written by a newer packrat.
    pub fn open(state: Arc<StateStore>) -> backup_core::Result<AlertStore> {
        state.component_migrations(COMPONENT, MIGRATIONS)?;
        Ok(AlertStore { state })
    }

    /// The state store the alerts are kept in.
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// Raises (or refreshes) the alert `key`.
    ///
    /// - a new key is inserted with count 1 and `first_seen = last_seen = now`;
    /// - a firing alert gets count + 1, `last_seen = now` and the new severity and message;
    /// - a resolved alert is reopened as a new firing (count 1, `first_seen = now`).
    ///
    /// Returns the alert and whether it is new (was not firing before).
    pub fn raise(&self, key: &str, severity: Severity, message: &str) -> backup_core::Result<(Alert, bool)> {
        self.state.with_transaction(|tx| {
            let now = format_time(Utc::now());
            let firing: Option<bool> = tx
                .query_row("SELECT resolved_at IS NULL FROM alerts WHERE key = ?1", [key], |row| {
                    row.get(0)
                })
                .optional()?;
            let is_new = firing != Some(true);
            if is_new {
                tx.execute(
                    "INSERT INTO alerts (key, severity, message, first_seen, last_seen, count, resolved_at)
                     VALUES (?1, ?2, ?3, ?4, ?4, 1, NULL)
                     ON CONFLICT (key) DO UPDATE SET
                        severity = excluded.severity, message = excluded.message,
                        first_seen = excluded.first_seen, last_seen = excluded.last_seen,
                        count = 1, resolved_at = NULL",
                    params![key, severity.as_str(), message, now],
                )?;
            } else {
                tx.execute(
                    "UPDATE alerts SET severity = ?2, message = ?3, last_seen = ?4, count = count + 1
                     WHERE key = ?1",
                    params![key, severity.as_str(), message, now],
                )?;
            }
            // The row was written in this transaction: it is there.
            let alert = query_alert(tx, key)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            Ok((alert, is_new))
        })
    }

    /// Marks the alert `key` resolved (`resolved_at = now`); returns it if it was firing.
    pub fn resolve(&self, key: &str) -> backup_core::Result<Option<Alert>> {
        self.state.with_transaction(|tx| {
            let n = tx.execute(
                "UPDATE alerts SET resolved_at = ?2 WHERE key = ?1 AND resolved_at IS NULL",
                params![key, format_time(Utc::now())],
            )?;
            if n == 0 {
                return Ok(None);
            }
            query_alert(tx, key)
        })
    }

    /// The alerts that are firing, plus the resolved ones when `include_resolved`; firing ones
    /// first, then by `last_seen`, newest first.
    pub fn list(&self, include_resolved: bool) -> backup_core::Result<Vec<Alert>> {
        let filter = if include_resolved {
            ""
        } else {
            "WHERE resolved_at IS NULL"
        };
        self.state.with_conn(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts {filter}
                 ORDER BY resolved_at IS NOT NULL, last_seen DESC, key"
            ))?;
            let rows = stmt.query_map([], alert_from_row)?;
            rows.collect()
        })
    }
}

fn query_alert(conn: &Connection, key: &str) -> rusqlite::Result<Option<Alert>> {
    conn.query_row(
        &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE key = ?1"),
        [key],
        alert_from_row,
    )
    .optional()
}

fn alert_from_row(row: &Row<'_>) -> rusqlite::Result<Alert> {
    Ok(Alert {
        key: row.get(0)?,
        severity: read_parsed(row, 1)?,
        message: row.get(2)?,
        first_seen: read_time(row, 3)?,
        last_seen: read_time(row, 4)?,
        count: read_u64(row, 5)?,
        resolved_at: read_opt_time(row, 6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, AlertStore) {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(StateStore::open(&dir.path().join("state")).unwrap());
        (dir, AlertStore::open(state).unwrap())
    }

    #[test]
    fn alerts_raise_refresh_resolve_reopen() {
        let (_dir, store) = store();
        let (a, new) = store.raise("plan:nightly:overdue", Severity::Warning, "late").unwrap();
        assert!(new);
        assert_eq!(a.count, 1);
        assert_eq!(a.first_seen, a.last_seen);
        assert!(a.resolved_at.is_none());

        let (b, new) = store
            .raise("plan:nightly:overdue", Severity::Critical, "very late")
            .unwrap();
        assert!(!new);
        assert_eq!(b.count, 2);
        assert_eq!(b.first_seen, a.first_seen);
        assert!(b.last_seen >= a.last_seen);
        assert_eq!(b.message, "very late");
        assert_eq!(b.severity, Severity::Critical);

        store.raise("disk", Severity::Info, "80 %").unwrap();
        assert_eq!(store.list(false).unwrap().len(), 2);

        let r = store.resolve("plan:nightly:overdue").unwrap().unwrap();
        assert!(r.resolved_at.is_some());
        assert!(store.resolve("plan:nightly:overdue").unwrap().is_none());
        assert!(store.resolve("unknown").unwrap().is_none());
        let firing = store.list(false).unwrap();
        assert_eq!(firing.len(), 1);
        assert_eq!(firing[0].key, "disk");
        let all = store.list(true).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].key, "disk");

        let (c, new) = store
            .raise("plan:nightly:overdue", Severity::Warning, "late again")
            .unwrap();
        assert!(new);
        assert_eq!(c.count, 1);
        assert!(c.resolved_at.is_none());
        assert!(c.first_seen >= r.resolved_at.unwrap());
        assert_eq!(store.list(false).unwrap().len(), 2);

        assert_eq!("critical".parse::<Severity>().unwrap(), Severity::Critical);
        assert!("loud".parse::<Severity>().is_err());
        assert_eq!(serde_json::to_string(&Severity::Warning).unwrap(), "\"warning\"");
        assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Critical);
    }

    /// A `state.db` as packrat 0.1 wrote it: `user_version` 1, its migration 1 verbatim (the
    /// `alerts` table in the core schema), one firing and one resolved alert.
    fn legacy_state_dir(dir: &std::path::Path) {
        std::fs::create_dir_all(dir).unwrap();
        let conn = Connection::open(dir.join("state.db")).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(
            "BEGIN;
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
            PRAGMA user_version = 1;
            INSERT INTO alerts VALUES ('plan:nightly:failures', 'critical', 'failed 3 times in a row',
                '2026-11-20T04:00:00.000000Z', '2026-11-21T04:00:00.000000Z', 5, NULL);
            INSERT INTO alerts VALUES ('sink:nas:space', 'warning', 'low',
                '2026-11-19T04:00:00.000000Z', '2026-11-19T05:00:00.000000Z', 2,
                '2026-11-19T06:00:00.000000Z');
            COMMIT;",
        )
        .unwrap();
    }

    #[test]
    fn an_existing_alerts_table_is_adopted_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        legacy_state_dir(&state_dir);
        let store = AlertStore::open(Arc::new(StateStore::open(&state_dir).unwrap())).unwrap();

        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let all = store.list(true).unwrap();
        assert_eq!(
            all,
            vec![
                Alert {
                    key: "plan:nightly:failures".into(),
                    severity: Severity::Critical,
                    message: "failed 3 times in a row".into(),
                    first_seen: t("2026-11-20T04:00:00Z"),
                    last_seen: t("2026-11-21T04:00:00Z"),
                    count: 5,
                    resolved_at: None,
                },
                Alert {
                    key: "sink:nas:space".into(),
                    severity: Severity::Warning,
                    message: "low".into(),
                    first_seen: t("2026-11-19T04:00:00Z"),
                    last_seen: t("2026-11-19T05:00:00Z"),
                    count: 2,
                    resolved_at: Some(t("2026-11-19T06:00:00Z")),
                },
            ]
        );
        // It goes on counting where it was; the table is now registered as ours.
        let (a, new) = store
            .raise("plan:nightly:failures", Severity::Critical, "failed 4 times in a row")
            .unwrap();
        assert!(!new);
        assert_eq!((a.count, a.first_seen), (6, t("2026-11-20T04:00:00Z")));
        let version: i64 = store
            .state()
            .with_conn(|c| c.query_row("SELECT version FROM components WHERE name = 'alerts'", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(version, 1);
    }

    #[test]
    fn alerts_survive_reopening_and_are_shared_between_stores() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        {
            let store = AlertStore::open(Arc::new(StateStore::open(&state_dir).unwrap())).unwrap();
            store.raise("sink:nas:space", Severity::Warning, "low").unwrap();
        }
        // Another process: opening again is a no-op for the schema and sees the alert.
        let a = AlertStore::open(Arc::new(StateStore::open(&state_dir).unwrap())).unwrap();
        let b = AlertStore::open(Arc::new(StateStore::open(&state_dir).unwrap())).unwrap();
        assert_eq!(a.list(false).unwrap()[0].key, "sink:nas:space");
        b.resolve("sink:nas:space").unwrap().unwrap();
        assert!(a.list(false).unwrap().is_empty());
        let version: i64 = a
            .state()
            .with_conn(|c| c.query_row("SELECT version FROM components WHERE name = 'alerts'", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }
}

//! This crate's config types: the cron expressions of a plan's `full` / `incremental` keys
//! (checked when the config is read, so a bad one names its file, line and key) and `catch_up`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::parse_cron;

/// What the scheduler does about slots missed while packrat was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Run once to catch up (never once per missed slot). The default.
    #[default]
    Once,
    /// Do not catch up; wait for the next slot.
    Skip,
}

impl CatchUp {
    /// `once` or `skip`.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Once => "once",
            CatchUp::Skip => "skip",
        }
    }
}

/// A valid 5-field cron expression as written in the config (`"0 4 * * *"`, `"@daily"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CronExpr(String);

impl CronExpr {
    /// Checks `pattern`; `Err` says what is wrong and how to write one.
    pub fn new(pattern: &str) -> Result<CronExpr, String> {
        parse_cron(pattern).map_err(|reason| {
            format!(
                "`{pattern}` is not a valid 5-field cron expression ({reason}); write minute hour day-of-month \
                 month day-of-week, e.g. \"0 2 * * *\" for 02:00 every day"
            )
        })?;
        Ok(CronExpr(pattern.trim().to_string()))
    }

    /// The expression.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CronExpr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CronExpr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<CronExpr, D::Error> {
        let s = String::deserialize(d)?;
        CronExpr::new(&s).map_err(serde::de::Error::custom)
    }
}

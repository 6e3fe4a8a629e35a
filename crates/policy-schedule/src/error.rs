//! The error type of `policy-schedule`.

/// A schedule that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A cron expression does not parse.
    #[error(
        "[plans.{plan}] {field} = \"{pattern}\" is not a valid 5-field cron expression ({reason}); \
         write minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\" for 02:00 every day"
    )]
    InvalidCron {
        /// Plan name (empty outside a config).
        plan: String,
        /// `full` or `incremental`.
        field: &'static str,
        /// The expression.
        pattern: String,
        /// What the parser said.
        reason: String,
    },
    /// Neither `full` nor `incremental` is set.
    #[error("[plans.{plan}] has no schedule; set `full = \"CRON\"` and/or `incremental = \"CRON\"`")]
    Empty {
        /// Plan name.
        plan: String,
    },
    /// The plan is not in the config.
    #[error("no plan `{0}` in the config")]
    UnknownPlan(String),
}

impl From<ScheduleError> for backup_core::Error {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::UnknownPlan(_) => backup_core::Error::NotFound(e.to_string()),
            other => backup_core::Error::Config(other.to_string()),
        }
    }
}

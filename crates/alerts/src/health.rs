//! The health checks: what an operator would look at, run on an interval.

use std::sync::Arc;
use std::time::Duration;

use crate::config::HealthConfig;
use backup_core::state::JobFilter;
use backup_core::{JobStatus, Sink, StateStore};
use chrono::{DateTime, Utc};

use crate::{AlertError, Finding, Severity};

/// What the checker needs to know about one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanCheck {
    /// Plan name.
    pub name: String,
    /// Whether the scheduler runs it (disabled plans are not checked for age).
    pub enabled: bool,
    /// Alert when the last success is older than this (`None`: not checked, e.g. a plan run
    /// only by hand).
    pub max_age: Option<Duration>,
}

/// Runs the health checks over the state store and the sinks.
#[derive(Debug)]
pub struct HealthChecker {
    state: Arc<StateStore>,
    config: HealthConfig,
    plans: Vec<PlanCheck>,
    sinks: Vec<Arc<dyn Sink>>,
    since: DateTime<Utc>,
}

impl HealthChecker {
    /// A checker; `since` is when the daemon started (a plan that never succeeded is overdue
    /// only once `max_age` has passed since then).
    pub fn new(
        state: Arc<StateStore>,
        config: HealthConfig,
        plans: Vec<PlanCheck>,
        sinks: Vec<Arc<dyn Sink>>,
        since: DateTime<Utc>,
    ) -> HealthChecker {
        HealthChecker {
            state,
            config,
            plans,
            sinks,
            since,
        }
    }

    /// Every condition that holds at `now`.
    pub async fn check(&self, now: DateTime<Utc>) -> Result<Vec<Finding>, AlertError> {
        let mut out = Vec::new();
        let st = &self.state;
        for p in &self.plans {
            let failures = st.consecutive_failures(&p.name).map_err(AlertError::State)?;
            if failures >= self.config.max_consecutive_failures {
                let last = st
                    .jobs(&JobFilter {
                        plan: Some(p.name.clone()),
                        limit: Some(1),
                        ..JobFilter::default()
                    })
                    .map_err(AlertError::State)?;
                let why = last
                    .first()
                    .filter(|j| j.status.is_finished() && j.status != JobStatus::Completed)
                    .map(|j| {
                        i18n::tr!(
                            "alert-last-error",
                            job = j.id,
                            error = if j.detail.is_empty() {
                                j.message.as_str()
                            } else {
                                j.detail.as_str()
                            }
                        )
                    })
                    .unwrap_or_default();
                out.push(Finding::new(
                    format!("plan:{}:failures", p.name),
                    Severity::Critical,
                    i18n::tr!(
                        "alert-plan-failures",
                        plan = p.name.as_str(),
                        failures = failures,
                        why = why
                    ),
                ));
            }
            if let (true, Some(max_age)) = (p.enabled, p.max_age) {
                let last_success = st.last_success(&p.name).map_err(AlertError::State)?;
                let reference = match &last_success {
                    Some(j) => j.finished_at.or(j.started_at).unwrap_or(j.created_at),
                    None => self.since,
                };
                let max = chrono::TimeDelta::from_std(max_age).unwrap_or(chrono::TimeDelta::MAX);
                if now - reference > max {
                    let what = match &last_success {
                        Some(j) => i18n::tr!(
                            "alert-plan-overdue",
                            plan = p.name.as_str(),
                            at = reference.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                            job = j.id,
                            max = human(max_age)
                        ),
                        None => i18n::tr!("alert-plan-never", plan = p.name.as_str(), max = human(max_age)),
                    };
                    out.push(Finding::new(
                        format!("plan:{}:overdue", p.name),
                        Severity::Critical,
                        i18n::tr!("alert-run-doctor", what = what),
                    ));
                }
            }
        }
        // Health per collection (Mongo plans): a collection failing as often in a row as a plan
        // may is an alert of its own, naming the collection and its last good window.
        for h in st.collection_health(None).map_err(AlertError::State)? {
            if h.consecutive_failures >= u64::from(self.config.max_consecutive_failures) {
                out.push(Finding::new(
                    format!("collection:{}:{}:{}:failures", h.plan, h.source, h.key),
                    Severity::Critical,
                    format!(
                        "collection {} of plan `{}` (source {}) failed {} times in a row ({} in all); last error: {};                          last backed up up to {}. Run `packrat watermarks {}` and `packrat jobs --plan {}`",
                        h.key,
                        h.plan,
                        h.source,
                        h.consecutive_failures,
                        h.failures_total,
                        h.last_error,
                        h.window_to
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_else(|| "never".into()),
                        h.plan,
                        h.plan
                    ),
                ));
            }
        }
        let stuck_after = chrono::TimeDelta::from_std(self.config.stuck_after).unwrap_or(chrono::TimeDelta::MAX);
        for j in st.active_jobs().map_err(AlertError::State)? {
            let Some(started) = j.started_at else { continue };
            if now - started > stuck_after {
                out.push(Finding::new(
                    format!("plan:{}:stuck", j.plan),
                    Severity::Warning,
                    i18n::tr!(
                        "alert-job-stuck",
                        job = j.id,
                        plan = j.plan.as_str(),
                        since = started.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                        max = human(self.config.stuck_after),
                        stage = j.message.as_str(),
                        progress = j.progress
                    ),
                ));
            }
        }
        for s in &self.sinks {
            if let Err(e) = s.check().await {
                out.push(Finding::new(
                    format!("sink:{}:unavailable", s.name()),
                    Severity::Critical,
                    i18n::tr!(
                        "alert-sink-unusable",
                        sink = s.name(),
                        location = s.location(),
                        error = e.chain()
                    ),
                ));
                continue;
            }
            if let Ok(Some(free)) = s.free_space().await {
                let min = self.config.min_free_mb.saturating_mul(1024 * 1024);
                if free < min {
                    out.push(Finding::new(
                        format!("sink:{}:space", s.name()),
                        Severity::Warning,
                        i18n::tr!(
                            "alert-sink-space",
                            sink = s.name(),
                            location = s.location(),
                            free = free / (1024 * 1024),
                            min = self.config.min_free_mb
                        ),
                    ));
                }
            }
        }
        // Several stuck jobs of one plan make one alert.
        out.dedup_by(|a, b| a.key == b.key);
        Ok(out)
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(3600) && s >= 3600 {
        format!("{}h", s / 3600)
    } else if s.is_multiple_of(60) && s >= 60 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

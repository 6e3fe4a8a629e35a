//! The [`Scheduler`]: the schedules of all plans, applied against the state store on a clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use backup_core::{DueRun, SchedulePolicy, StateStore};
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::clock::Clock;

/// What the scheduler decided for a plan at a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start a job now.
    Fire {
        /// Plan name.
        plan: String,
        /// The slot, kind and whether it catches up.
        run: DueRun,
    },
    /// The slot was due but is skipped (and consumed: it will not fire later).
    Skip {
        /// Plan name.
        plan: String,
        /// The slot that was due.
        run: DueRun,
        /// Why, for the log ("the previous job of this plan is still running").
        reason: String,
    },
}

impl Decision {
    /// The plan the decision is about.
    pub fn plan(&self) -> &str {
        match self {
            Decision::Fire { plan, .. } | Decision::Skip { plan, .. } => plan,
        }
    }

    /// The due run.
    pub fn run(&self) -> &DueRun {
        match self {
            Decision::Fire { run, .. } | Decision::Skip { run, .. } => run,
        }
    }
}

/// Applies the [`SchedulePolicy::due`] of every plan against the state store at the [`Clock`]'s time.
///
/// Each tick reads the plan's [`ScheduleState`](backup_core::state::ScheduleState), asks its
/// policy whether a run is due and, if so, records the slot as fired **before** returning the
/// decision: a slot fires at most once, even when the process dies right after.
#[derive(Debug)]
pub struct Scheduler {
    state: Arc<StateStore>,
    clock: Arc<dyn Clock>,
    plans: BTreeMap<String, Arc<dyn SchedulePolicy>>,
}

impl Scheduler {
    /// A scheduler without plans.
    pub fn new(state: Arc<StateStore>, clock: Arc<dyn Clock>) -> Scheduler {
        Scheduler {
            state,
            clock,
            plans: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) the schedule of `plan`.
    pub fn add(&mut self, plan: &str, policy: Arc<dyn SchedulePolicy>) {
        self.plans.insert(plan.to_string(), policy);
    }

    /// The scheduled plans, by name.
    pub fn plans(&self) -> impl Iterator<Item = &str> {
        self.plans.keys().map(String::as_str)
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Decides what is due now. `busy(plan)` says whether a job of that plan is still running
    /// (or waiting to run); its due slot is then skipped with a reason, because a plan never
    /// overlaps itself.
    pub fn tick(&self, busy: &dyn Fn(&str) -> bool) -> backup_core::Result<Vec<Decision>> {
        let now = self.clock.now();
        let mut out = Vec::new();
        for (plan, policy) in &self.plans {
            let st = self.state.schedule_state(plan)?;
            let Some(run) = policy.due(&st, now) else { continue };
            self.state.set_last_fired(plan, run.slot)?;
            if busy(plan) {
                let reason = "the previous job of this plan is still running; a plan never overlaps itself".to_string();
                warn!(plan = %plan, slot = %run.slot, kind = %run.kind, "scheduled run skipped: {reason}");
                out.push(Decision::Skip {
                    plan: plan.clone(),
                    run,
                    reason,
                });
            } else {
                if run.catch_up {
                    info!(plan = %plan, slot = %run.slot, kind = %run.kind, last_fired = ?st.last_fired_slot,
                        "catching up once on slots missed while packrat was down");
                } else {
                    info!(plan = %plan, slot = %run.slot, kind = %run.kind, "scheduled run due");
                }
                out.push(Decision::Fire {
                    plan: plan.clone(),
                    run,
                });
            }
        }
        Ok(out)
    }

    /// When `plan` is due next (after now).
    pub fn next_due(&self, plan: &str) -> Option<DateTime<Utc>> {
        self.plans.get(plan)?.next_due(self.clock.now())
    }

    /// The earliest instant after now at which any plan is due.
    pub fn next_wakeup(&self) -> Option<DateTime<Utc>> {
        let now = self.clock.now();
        self.plans.values().filter_map(|p| p.next_due(now)).min()
    }

    /// How long to sleep before the next tick: until [`Scheduler::next_wakeup`], at most `max`
    /// (so that wall-clock jumps and suspends are noticed).
    pub fn sleep_for(&self, max: std::time::Duration) -> std::time::Duration {
        let now = self.clock.now();
        match self.next_wakeup() {
            Some(t) => (t - now).to_std().unwrap_or_default().min(max),
            None => max,
        }
    }
}

//! Pure selection: which packs to keep, with restic's semantics, made chain-aware.

use std::collections::BTreeMap;

use crate::config::RetentionConfig;
use backup_core::sink::PackInfo;
use backup_core::{BackupKind, RetentionPolicy, Verdict};
use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

/// Retention rules of one plan, evaluated in the plan's time zone. Implements
/// [`RetentionPolicy::retain`].
///
/// Semantics (restic ≥ 0.16 `forget`), over the packs of one plan:
///
/// - packs are ordered newest first by the time their job started;
/// - `keep_last N` keeps the N newest;
/// - `keep_hourly/daily/weekly/monthly/yearly N` keeps the newest pack of each of the last N
///   hours/days/ISO weeks/months/years **that have packs**, periods counted in the plan's zone;
///   while a rule's count is not used up, the oldest pack is kept too (restic ≥ 0.16);
/// - `keep_within D` keeps every pack that started after D before the newest pack (not before
///   now, so that packs are not lost while backups are failing); D is a
///   [`CalendarDuration`](crate::CalendarDuration): days and months step the
///   calendar of the plan's zone;
/// - a pack is kept when any rule keeps it; no rule at all keeps everything; a count or span of
///   0 (which the config refuses) counts as not set, never as "remove";
/// - `max_packs N` (ours) then removes the oldest kept packs beyond N;
/// - the newest pack is always kept, whatever the rules say.
///
/// Two protections apply after the rules (and again in [`prune`](crate::prune), whatever the
/// policy):
///
/// - **packs dated in the future** (started after `now`: the clock of the host that wrote them
///   was wrong) are set aside: they are always kept, never anchor `keep_within`, never count as
///   the newest pack and use up no count;
/// - **chains**: `restore --chain` of an incremental pack replays the newest full pack before
///   it and every pack after that full in time order. So for every kept incremental pack the
///   newest full pack before it and every pack between them are kept too ("base of 12
///   incremental packs", "needed by the chain of …"), even beyond `max_packs`. With no full pack
///   before it, the chain starts at the oldest pack, which after pruning is the oldest kept one:
///   every pack from there on is kept, so the chain has no holes.
#[derive(Debug, Clone)]
pub struct Retention {
    rules: RetentionConfig,
    tz: Tz,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    fn name(self) -> &'static str {
        match self {
            Period::Hourly => "keep_hourly",
            Period::Daily => "keep_daily",
            Period::Weekly => "keep_weekly",
            Period::Monthly => "keep_monthly",
            Period::Yearly => "keep_yearly",
        }
    }

    /// The period `t` falls in, in zone `tz`, as a sortable number and a label.
    fn bucket(self, t: DateTime<Utc>, tz: Tz) -> (i64, String) {
        let l = t.with_timezone(&tz);
        let (y, m, d, h) = (
            i64::from(l.year()),
            i64::from(l.month()),
            i64::from(l.day()),
            i64::from(l.hour()),
        );
        match self {
            Period::Hourly => (
                ((y * 100 + m) * 100 + d) * 100 + h,
                l.format("%Y-%m-%d %H:00").to_string(),
            ),
            Period::Daily => ((y * 100 + m) * 100 + d, l.format("%Y-%m-%d").to_string()),
            Period::Weekly => {
                let w = l.iso_week();
                (
                    i64::from(w.year()) * 100 + i64::from(w.week()),
                    format!("{}-W{:02}", w.year(), w.week()),
                )
            }
            Period::Monthly => (y * 100 + m, l.format("%Y-%m").to_string()),
            Period::Yearly => (y, l.format("%Y").to_string()),
        }
    }
}

/// `Some(0)` (refused by the config) is "not set".
fn set(n: Option<u32>) -> Option<u32> {
    n.filter(|&n| n > 0)
}

impl Retention {
    /// Rules `rules` with periods counted in zone `tz`. A count or span of 0 counts as not set.
    pub fn new(rules: RetentionConfig, tz: Tz) -> Retention {
        let rules = RetentionConfig {
            keep_within: rules.keep_within.filter(|d| !d.is_zero()),
            keep_last: set(rules.keep_last),
            keep_hourly: set(rules.keep_hourly),
            keep_daily: set(rules.keep_daily),
            keep_weekly: set(rules.keep_weekly),
            keep_monthly: set(rules.keep_monthly),
            keep_yearly: set(rules.keep_yearly),
            max_packs: set(rules.max_packs),
        };
        Retention { rules, tz }
    }

    /// The rules in effect (a 0 given to [`Retention::new`] is `None` here).
    pub fn rules(&self) -> &RetentionConfig {
        &self.rules
    }

    /// True when no rule is set (everything is kept).
    pub fn is_empty(&self) -> bool {
        self.rules.max_packs.is_none() && !self.has_keep_rules()
    }

    fn has_keep_rules(&self) -> bool {
        let r = &self.rules;
        r.keep_within.is_some()
            || r.keep_last.is_some()
            || r.keep_hourly.is_some()
            || r.keep_daily.is_some()
            || r.keep_weekly.is_some()
            || r.keep_monthly.is_some()
            || r.keep_yearly.is_some()
    }

    /// One verdict per pack (in the order of `packs`); packs started after `now` are in the
    /// future. Packs of different plans are judged separately, each plan keeping its own newest
    /// pack.
    pub fn select(&self, packs: &[PackInfo], now: DateTime<Utc>) -> Vec<Verdict> {
        let mut by_plan: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, p) in packs.iter().enumerate() {
            by_plan.entry(p.plan.as_str()).or_default().push(i);
        }
        let mut out: Vec<Option<Verdict>> = vec![None; packs.len()];
        for mut idx in by_plan.into_values() {
            idx.sort_by(|&a, &b| oldest_first(&packs[a], &packs[b]));
            let mine: Vec<&PackInfo> = idx.iter().map(|&i| &packs[i]).collect();
            for (&i, (keep, reason)) in idx.iter().zip(self.select_one_plan(&mine, now)) {
                out[i] = Some(Verdict {
                    pack_id: packs[i].id.clone(),
                    keep,
                    reason,
                });
            }
        }
        out.into_iter().flatten().collect()
    }

    /// Verdicts for the packs of one plan, sorted oldest first, in that order.
    fn select_one_plan(&self, packs: &[&PackInfo], now: DateTime<Utc>) -> Vec<(bool, String)> {
        let n = packs.len();
        // Packs that are not in the future, newest first.
        let order: Vec<usize> = (0..n).rev().filter(|&i| packs[i].started_at <= now).collect();
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); n];
        let r = &self.rules;

        if !self.has_keep_rules() {
            for &o in &order {
                reasons[o].push("no keep rule: everything is kept".into());
            }
        } else {
            if let Some(k) = r.keep_last {
                for (rank, &o) in order.iter().take(k as usize).enumerate() {
                    reasons[o].push(format!("keep_last {}/{k}", rank + 1));
                }
            }
            let periods = [
                (Period::Hourly, r.keep_hourly),
                (Period::Daily, r.keep_daily),
                (Period::Weekly, r.keep_weekly),
                (Period::Monthly, r.keep_monthly),
                (Period::Yearly, r.keep_yearly),
            ];
            for (period, k) in periods {
                let Some(k) = k else { continue };
                let mut last: Option<i64> = None;
                let mut used = 0u32;
                for (pos, &o) in order.iter().enumerate() {
                    if used >= k {
                        break;
                    }
                    let (key, label) = period.bucket(packs[o].started_at, self.tz);
                    let oldest = pos + 1 == order.len();
                    if last != Some(key) || oldest {
                        // restic ≥ 0.16: while counts are left, the oldest pack is kept too.
                        let note = if last == Some(key) { "oldest pack, " } else { "" };
                        last = Some(key);
                        used += 1;
                        reasons[o].push(format!("{} {used}/{k} ({note}{label})", period.name()));
                    }
                }
            }
            if let (Some(within), Some(&newest)) = (r.keep_within, order.first()) {
                let since = within.before(packs[newest].started_at, self.tz);
                for &o in &order {
                    if packs[o].started_at > since {
                        reasons[o].push(format!("keep_within {within} of the newest pack"));
                    }
                }
            }
        }

        let mut verdict: Vec<(bool, String)> = reasons
            .iter()
            .map(|rs| {
                if rs.is_empty() {
                    (false, "matches no keep rule".to_string())
                } else {
                    (true, rs.join(", "))
                }
            })
            .collect();

        if let Some(max) = r.max_packs {
            let mut kept = 0u32;
            for &o in &order {
                if verdict[o].0 {
                    kept += 1;
                    if kept > max {
                        verdict[o] = (false, format!("over max_packs {max} (kept by: {})", verdict[o].1));
                    }
                }
            }
        }
        if let Some(&newest) = order.first() {
            let v = &mut verdict[newest];
            v.1 = if v.0 {
                format!("newest pack (always kept), {}", v.1)
            } else {
                "newest pack (always kept)".to_string()
            };
            v.0 = true;
        }
        protect(packs, &mut verdict, now);
        verdict
    }
}

impl RetentionPolicy for Retention {
    fn retain(&self, packs: &[PackInfo], now: DateTime<Utc>) -> Vec<Verdict> {
        self.select(packs, now)
    }
}

/// Oldest first by start time, ties broken by id (the order of `restore --chain`).
pub(crate) fn oldest_first(a: &PackInfo, b: &PackInfo) -> std::cmp::Ordering {
    a.started_at.cmp(&b.started_at).then_with(|| a.id.cmp(&b.id))
}

/// Why a pack dated in the future is kept.
pub(crate) fn future_reason(p: &PackInfo) -> String {
    format!(
        "dated in the future ({}): clock skew on the host that wrote it? never removed by age",
        p.started_at.format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// The protections that hold whatever a policy said, over the packs of one plan sorted oldest
/// first (`verdict[i]` is about `packs[i]`): packs dated after `now` are kept, the newest pack
/// that is not in the future is kept, and every kept incremental pack keeps its chain (the
/// newest full pack before it and every pack between; with no full pack before it, every pack
/// from the oldest kept one). Returns the indices it changed from "remove" to "keep".
pub(crate) fn protect(packs: &[&PackInfo], verdict: &mut [(bool, String)], now: DateTime<Utc>) -> Vec<usize> {
    let mut changed = Vec::new();
    for (i, p) in packs.iter().enumerate() {
        if p.started_at > now && !verdict[i].0 {
            verdict[i] = (true, future_reason(p));
            changed.push(i);
        }
    }
    if let Some(newest) = (0..packs.len()).rev().find(|&i| packs[i].started_at <= now)
        && !verdict[newest].0
    {
        verdict[newest] = (true, "newest pack (always kept)".into());
        changed.push(newest);
    }

    let Some(first_kept) = verdict.iter().position(|v| v.0) else {
        return changed;
    };
    // Chain ends, newest first: a chain [start, end] covers every kept incremental inside it.
    let mut end = packs.len();
    while end > 0 {
        end -= 1;
        if !(verdict[end].0 && packs[end].kind == BackupKind::Incremental) {
            continue;
        }
        let base = (0..end).rev().find(|&j| packs[j].kind == BackupKind::Full);
        let start = base.unwrap_or(first_kept);
        if start >= end {
            continue;
        }
        let needed_by = format!("needed by the chain of {} (restore --chain)", packs[end].id);
        for (j, v) in verdict.iter_mut().enumerate().take(end).skip(start + 1) {
            if !v.0 {
                *v = (true, needed_by.clone());
                changed.push(j);
            }
        }
        let incrementals = (start + 1..=end)
            .filter(|&j| packs[j].kind == BackupKind::Incremental)
            .count();
        let plural = if incrementals == 1 { "" } else { "s" };
        let role = match base {
            Some(_) => format!("base of {incrementals} incremental pack{plural} (restore --chain)"),
            None => format!("start of the chain of {incrementals} incremental pack{plural} (no full pack before them)"),
        };
        let v = &mut verdict[start];
        if v.0 {
            // Idempotent: prune applies this again over the policy's verdicts.
            if !v.1.contains(&role) {
                v.1 = format!("{}, {role}", v.1);
            }
        } else {
            *v = (true, role);
            changed.push(start);
        }
        end = start;
    }
    changed
}

//! Pure selection: which packs to keep, with restic's semantics.

use std::collections::BTreeMap;

use backup_core::Policy;
use backup_core::config::RetentionConfig;
use backup_core::policy::Verdict;
use backup_core::sink::PackInfo;
use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

/// Retention rules of one plan, evaluated in the plan's time zone. Implements
/// [`Policy::retain`].
///
/// Semantics (restic's `forget`):
///
/// - packs are ordered newest first by the time their job started;
/// - `keep_last N` keeps the N newest;
/// - `keep_hourly/daily/weekly/monthly/yearly N` keeps the newest pack of each of the last N
///   hours/days/ISO weeks/months/years **that have packs**, periods counted in the plan's zone;
/// - `keep_within D` keeps every pack younger than D, measured from the newest pack (not from
///   now, so that packs are not lost while backups are failing);
/// - a pack is kept when any rule keeps it; no rule at all keeps everything;
/// - `max_packs N` (ours) then removes the oldest kept packs beyond N;
/// - the newest pack is always kept, whatever the rules say.
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

impl Retention {
    /// Rules `rules` with periods counted in zone `tz`.
    pub fn new(rules: RetentionConfig, tz: Tz) -> Retention {
        Retention { rules, tz }
    }

    /// The rules.
    pub fn rules(&self) -> &RetentionConfig {
        &self.rules
    }

    /// True when no rule is set (everything is kept).
    pub fn is_empty(&self) -> bool {
        let r = &self.rules;
        r.keep_within.is_none()
            && r.keep_last.is_none()
            && r.keep_hourly.is_none()
            && r.keep_daily.is_none()
            && r.keep_weekly.is_none()
            && r.keep_monthly.is_none()
            && r.keep_yearly.is_none()
            && r.max_packs.is_none()
    }

    /// One verdict per pack (in the order of `packs`). Packs of different plans are judged
    /// separately, each plan keeping its own newest pack.
    pub fn select(&self, packs: &[PackInfo]) -> Vec<Verdict> {
        let mut by_plan: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, p) in packs.iter().enumerate() {
            by_plan.entry(p.plan.as_str()).or_default().push(i);
        }
        let mut out: Vec<Option<Verdict>> = vec![None; packs.len()];
        for idx in by_plan.values() {
            for (i, v) in idx.iter().zip(self.select_one_plan(packs, idx)) {
                out[*i] = Some(v);
            }
        }
        out.into_iter().flatten().collect()
    }

    /// Verdicts for `packs[idx]` (one plan), in the order of `idx`.
    fn select_one_plan(&self, packs: &[PackInfo], idx: &[usize]) -> Vec<Verdict> {
        // Newest first; ties broken by id so that the order is total.
        let mut order: Vec<usize> = (0..idx.len()).collect();
        order.sort_by(|&a, &b| {
            let (pa, pb) = (&packs[idx[a]], &packs[idx[b]]);
            pb.started_at.cmp(&pa.started_at).then_with(|| pb.id.cmp(&pa.id))
        });
        let mut reasons: Vec<Vec<String>> = vec![Vec::new(); idx.len()];
        let r = &self.rules;
        let no_rules = self.is_empty()
            || (r.max_packs.is_some()
                && Retention::new(
                    RetentionConfig {
                        max_packs: None,
                        ..r.clone()
                    },
                    self.tz,
                )
                .is_empty());

        if no_rules {
            for reasons in &mut reasons {
                reasons.push("no keep rule: everything is kept".into());
            }
        } else {
            if let Some(n) = r.keep_last {
                for (rank, &o) in order.iter().take(n as usize).enumerate() {
                    reasons[o].push(format!("keep_last {}/{n}", rank + 1));
                }
            }
            let periods = [
                (Period::Hourly, r.keep_hourly),
                (Period::Daily, r.keep_daily),
                (Period::Weekly, r.keep_weekly),
                (Period::Monthly, r.keep_monthly),
                (Period::Yearly, r.keep_yearly),
            ];
            for (period, n) in periods {
                let Some(n) = n else { continue };
                let mut last: Option<i64> = None;
                let mut kept = 0u32;
                for &o in &order {
                    if kept >= n {
                        break;
                    }
                    let (key, label) = period.bucket(packs[idx[o]].started_at, self.tz);
                    if last != Some(key) {
                        last = Some(key);
                        kept += 1;
                        reasons[o].push(format!("{} {kept}/{n} ({label})", period.name()));
                    }
                }
            }
            if let (Some(within), Some(&newest)) = (r.keep_within, order.first()) {
                let newest_at = packs[idx[newest]].started_at;
                let within_td = chrono::TimeDelta::from_std(within).unwrap_or(chrono::TimeDelta::MAX);
                for &o in &order {
                    if newest_at - packs[idx[o]].started_at < within_td {
                        reasons[o].push(format!("keep_within {} of the newest pack", humanize(within)));
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
                    if kept > max.max(1) {
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

        idx.iter()
            .zip(verdict)
            .map(|(&i, (keep, reason))| Verdict {
                pack_id: packs[i].id.clone(),
                keep,
                reason,
            })
            .collect()
    }
}

impl Policy for Retention {
    fn retain(&self, packs: &[PackInfo], _now: DateTime<Utc>) -> Vec<Verdict> {
        self.select(packs)
    }
}

/// `72h`, `7days`: the humantime rendering without the noise of zero parts.
fn humanize(d: std::time::Duration) -> String {
    humantime_like(d.as_secs())
}

fn humantime_like(secs: u64) -> String {
    if secs.is_multiple_of(3600) && secs >= 3600 {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) && secs >= 60 {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

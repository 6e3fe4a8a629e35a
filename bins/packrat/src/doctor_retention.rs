//! The retention part of `packrat doctor`: per plan, how far back a restore can go when the
//! plan only runs incremental backups, and packs dated in the future (the clock of the host that
//! wrote them was wrong) on each of its sinks.

use chrono::Utc;
use packrat_app::config::Config;

use crate::doctor::Check;
use crate::wire;

/// One check per plan (more when something is wrong).
pub async fn checks(cfg: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let now = Utc::now();
    for (name, pc) in &cfg.plans {
        let check = i18n::tr!("doctor-retention", plan = name.as_str());
        let mut fine = true;
        if let Some((what, fix)) = pc.incremental_only_warning(name) {
            out.push(Check::warn(check.clone(), what, fix));
            fine = false;
        }
        for sink_name in &pc.sinks {
            // A sink that cannot be wired or listed is reported by the sink checks.
            let Ok(sink) = wire::sink(cfg, sink_name) else { continue };
            let Ok(packs) = sink.list(Some(name)).await else {
                continue;
            };
            let future: Vec<String> = packs
                .iter()
                .filter(|p| p.started_at > now)
                .map(|p| {
                    format!(
                        "{} ({})",
                        p.id,
                        crate::output::plan_time(Some(p.started_at), Some(&p.plan))
                    )
                })
                .collect();
            if !future.is_empty() {
                out.push(Check::warn(
                    i18n::tr!("doctor-future", plan = name.as_str(), sink = sink_name.as_str()),
                    i18n::tr!("doctor-future-found", count = future.len(), packs = future.join(", ")),
                    i18n::tr!("doctor-fix-future"),
                ));
                fine = false;
            }
        }
        if fine {
            let rules = retention::describe(&pc.retention);
            out.push(Check::ok(
                check,
                if rules.is_empty() {
                    i18n::tr!("doctor-retention-none")
                } else {
                    rules
                },
            ));
        }
    }
    out
}

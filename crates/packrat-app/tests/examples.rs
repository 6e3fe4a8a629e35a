//! The shipped examples parse under the retention grammar, and every MES category has a
//! periodic full backup, so a complete restore is always possible.

use std::path::Path;

use packrat_app::config::Config;
use retention::CalendarDuration;

fn example(name: &str) -> Config {
    Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name)).unwrap()
}

#[test]
fn the_mes_example_has_a_periodic_full_backup_per_category() {
    let cfg = example("mes.toml");
    assert_eq!(cfg.plans.len(), 4);
    for (name, pc) in &cfg.plans {
        assert!(pc.incremental.is_some(), "{name}");
        assert!(pc.full.is_some(), "{name} needs a periodic full backup");
        assert_eq!(pc.incremental_only_warning(name), None, "{name}");
        packrat_app::registry::schedule(&cfg, name).unwrap().unwrap();
    }
    let within = |plan: &str| cfg.plans[plan].retention.keep_within;
    assert_eq!(within("hot"), Some(CalendarDuration::hours(72)));
    assert_eq!(within("core"), Some(CalendarDuration::days(7)));
    assert_eq!(within("config"), Some(CalendarDuration::days(30)));
    assert_eq!(within("analytics"), Some(CalendarDuration::days(15)));

    // Without its full schedule, a plan is warned about, saying how far back a restore goes.
    let mut hot = cfg.plans["hot"].clone();
    hot.full = None;
    let (what, fix) = hot.incremental_only_warning("hot").unwrap();
    assert!(
        what.contains("can only go back as far as the retention window, 72h"),
        "{what}"
    );
    assert!(fix.contains("full = "), "{fix}");
}

#[test]
fn the_migration_pack_example_parses() {
    let cfg = example("migration-pack.toml");
    let r = &cfg.plans["nightly"].retention;
    assert_eq!((r.keep_daily, r.keep_weekly, r.max_packs), (Some(7), Some(4), Some(30)));
    assert_eq!(
        retention::describe(r),
        "keep_daily = 7, keep_weekly = 4, max_packs = 30"
    );
}

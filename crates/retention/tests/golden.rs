//! Golden cases: fixed pack histories with the exact keep sets and reasons.

use backup_core::BackupKind;
use backup_core::config::RetentionConfig;
use backup_core::sink::PackInfo;
use chrono::{DateTime, TimeDelta, Utc};
use retention::Retention;

fn pack(id: &str, at: DateTime<Utc>) -> PackInfo {
    PackInfo {
        sink: "local".into(),
        plan: "nightly".into(),
        id: id.into(),
        path: format!("/backups/nightly/{id}").into(),
        kind: BackupKind::Full,
        job_id: None,
        started_at: at,
        finished_at: at,
        bytes: 1,
        artifacts: 1,
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn kept(r: &Retention, packs: &[PackInfo]) -> Vec<String> {
    let v = r.select(packs);
    assert_eq!(v.len(), packs.len());
    v.into_iter().filter(|v| v.keep).map(|v| v.pack_id).collect()
}

#[test]
fn no_rules_keep_everything() {
    let packs: Vec<_> = (0..5)
        .map(|i| pack(&format!("p{i}"), utc("2026-01-01T00:00:00Z") + TimeDelta::hours(i)))
        .collect();
    let v = Retention::new(RetentionConfig::default(), chrono_tz::UTC).select(&packs);
    assert!(v.iter().all(|v| v.keep));
    assert!(v[0].reason.contains("no keep rule"), "{}", v[0].reason);
}

#[test]
fn daily_weekly_monthly_over_ninety_days() {
    // One pack a day at 04:00 UTC from 2026-01-01 (Thursday) to 2026-03-31, plus a second pack
    // on 2026-03-31 at 12:00.
    let start = utc("2026-01-01T04:00:00Z");
    let mut packs: Vec<_> = (0..90)
        .map(|d| {
            let at = start + TimeDelta::days(d);
            pack(&format!("p_{}", at.format("%m%d")), at)
        })
        .collect();
    packs.push(pack("p_0331_noon", utc("2026-03-31T12:00:00Z")));
    let rules = RetentionConfig {
        keep_daily: Some(3),
        keep_weekly: Some(3),
        keep_monthly: Some(3),
        ..RetentionConfig::default()
    };
    let r = Retention::new(rules, chrono_tz::UTC);
    let mut got = kept(&r, &packs);
    got.sort();
    // Daily: 03-31 (noon, the newest of that day), 03-30, 03-29.
    // Weekly (ISO, Monday first): W14 -> 03-31 noon; W13 (03-23..03-29) -> 03-29; W12 -> 03-22.
    // Monthly: March -> 03-31 noon; February -> 02-28; January -> 01-31.
    let mut want: Vec<String> = ["p_0331_noon", "p_0330", "p_0329", "p_0322", "p_0228", "p_0131"]
        .map(String::from)
        .to_vec();
    want.sort();
    assert_eq!(got, want);
    let v = r.select(&packs);
    let noon = v.iter().find(|v| v.pack_id == "p_0331_noon").unwrap();
    assert_eq!(
        noon.reason,
        "newest pack (always kept), keep_daily 1/3 (2026-03-31), keep_weekly 1/3 (2026-W14), keep_monthly 1/3 (2026-03)"
    );
    let morning = v.iter().find(|v| v.pack_id == "p_0331").unwrap();
    assert_eq!((morning.keep, morning.reason.as_str()), (false, "matches no keep rule"));
}

#[test]
fn periods_are_counted_in_the_plans_time_zone() {
    // 17:00 UTC and 15:00 UTC on the same UTC day are different days in Shanghai (UTC+8):
    // 01:00 on the 21st and 23:00 on the 20th.
    let packs = vec![
        pack("a", utc("2026-11-20T15:00:00Z")),
        pack("b", utc("2026-11-20T17:00:00Z")),
    ];
    let rules = RetentionConfig {
        keep_daily: Some(2),
        ..RetentionConfig::default()
    };
    assert_eq!(kept(&Retention::new(rules.clone(), chrono_tz::UTC), &packs), ["b"]);
    assert_eq!(
        kept(&Retention::new(rules, chrono_tz::Asia::Shanghai), &packs),
        ["a", "b"]
    );
}

#[test]
fn keep_within_is_measured_from_the_newest_pack_and_max_packs_caps() {
    // Hourly packs over five days; the original system kept 72 hours.
    let start = utc("2026-11-01T00:00:00Z");
    let packs: Vec<_> = (0..120)
        .map(|h| pack(&format!("h{h:03}"), start + TimeDelta::hours(h)))
        .collect();
    let rules = RetentionConfig {
        keep_within: Some(std::time::Duration::from_secs(72 * 3600)),
        ..RetentionConfig::default()
    };
    let r = Retention::new(rules.clone(), chrono_tz::UTC);
    let got = kept(&r, &packs);
    // Newest is h119; younger than 72h from it: h048..=h119.
    assert_eq!(got.len(), 72);
    assert_eq!(got.first().unwrap(), "h048");
    let v = r.select(&packs);
    assert_eq!(v[47].reason, "matches no keep rule");
    assert_eq!(v[48].reason, "keep_within 72h of the newest pack");

    let capped = Retention::new(
        RetentionConfig {
            max_packs: Some(10),
            ..rules
        },
        chrono_tz::UTC,
    );
    let v = capped.select(&packs);
    let got: Vec<_> = v.iter().filter(|v| v.keep).map(|v| v.pack_id.clone()).collect();
    assert_eq!(got, (110..120).map(|h| format!("h{h:03}")).collect::<Vec<_>>());
    assert!(v[109].reason.starts_with("over max_packs 10"), "{}", v[109].reason);
}

#[test]
fn the_newest_pack_survives_rules_that_keep_nothing() {
    let packs = vec![
        pack("old", utc("2026-01-01T00:00:00Z")),
        pack("new", utc("2026-06-01T00:00:00Z")),
    ];
    let rules = RetentionConfig {
        keep_within: Some(std::time::Duration::from_secs(1)),
        max_packs: Some(0),
        ..RetentionConfig::default()
    };
    let v = Retention::new(rules, chrono_tz::UTC).select(&packs);
    assert!(!v[0].keep);
    assert!(v[1].keep);
    assert!(v[1].reason.starts_with("newest pack (always kept)"));
}

#[test]
fn keep_last_and_hourly_with_restic_counting() {
    // restic counts periods that have packs, not calendar periods: a gap does not use up a slot.
    let packs = vec![
        pack("a", utc("2026-11-20T01:10:00Z")),
        pack("b", utc("2026-11-20T01:50:00Z")),
        pack("c", utc("2026-11-20T05:00:00Z")),
        pack("d", utc("2026-11-20T09:30:00Z")),
        pack("e", utc("2026-11-20T09:40:00Z")),
    ];
    let rules = RetentionConfig {
        keep_last: Some(1),
        keep_hourly: Some(3),
        ..RetentionConfig::default()
    };
    let v = Retention::new(rules, chrono_tz::UTC).select(&packs);
    let got: Vec<_> = v.iter().map(|v| (v.pack_id.as_str(), v.keep)).collect();
    assert_eq!(got, [("a", false), ("b", true), ("c", true), ("d", false), ("e", true)]);
    assert_eq!(v[1].reason, "keep_hourly 3/3 (2026-11-20 01:00)");
    assert_eq!(
        v[4].reason,
        "newest pack (always kept), keep_last 1/1, keep_hourly 1/3 (2026-11-20 09:00)"
    );
}

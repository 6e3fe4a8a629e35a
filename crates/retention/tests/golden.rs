//! Golden cases: fixed pack histories with the exact keep sets and reasons.

use backup_core::sink::PackInfo;
use backup_core::{BackupKind, Verdict};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use retention::Retention;
use retention::{CalendarDuration, RetentionConfig};

fn pack_of(kind: BackupKind, id: &str, at: DateTime<Utc>) -> PackInfo {
    PackInfo {
        sink: "local".into(),
        plan: "nightly".into(),
        id: id.into(),
        location: format!("/backups/nightly/{id}"),
        kind,
        job_id: None,
        started_at: at,
        finished_at: at,
        bytes: 1,
        artifacts: 1,
    }
}

fn pack(id: &str, at: DateTime<Utc>) -> PackInfo {
    pack_of(BackupKind::Full, id, at)
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// An hour after the newest pack.
fn after(packs: &[PackInfo]) -> DateTime<Utc> {
    packs.iter().map(|p| p.started_at).max().unwrap() + TimeDelta::hours(1)
}

fn select(r: &Retention, packs: &[PackInfo]) -> Vec<Verdict> {
    let v = r.select(packs, after(packs));
    assert_eq!(v.len(), packs.len());
    for (v, p) in v.iter().zip(packs) {
        assert_eq!(v.pack_id, p.id);
    }
    v
}

fn kept(r: &Retention, packs: &[PackInfo]) -> Vec<String> {
    select(r, packs)
        .into_iter()
        .filter(|v| v.keep)
        .map(|v| v.pack_id)
        .collect()
}

fn reason<'a>(v: &'a [Verdict], id: &str) -> &'a str {
    &v.iter().find(|v| v.pack_id == id).unwrap().reason
}

/// `n` packs an hour apart from `from`, ids by UTC time (`0329T2300Z`).
fn hourly(from: &str, n: i64) -> Vec<PackInfo> {
    let start = utc(from);
    (0..n)
        .map(|h| {
            let at = start + TimeDelta::hours(h);
            pack(&at.format("%m%dT%H%MZ").to_string(), at)
        })
        .collect()
}

/// The ids of `packs` started after `since` (exclusive) up to `until` (inclusive).
fn between(packs: &[PackInfo], since: &str, until: &str) -> Vec<String> {
    let (since, until) = (utc(since), utc(until));
    packs
        .iter()
        .filter(|p| p.started_at > since && p.started_at <= until)
        .map(|p| p.id.clone())
        .collect()
}

fn rules(f: impl FnOnce(&mut RetentionConfig)) -> RetentionConfig {
    let mut r = RetentionConfig::default();
    f(&mut r);
    r
}

fn within(s: &str) -> RetentionConfig {
    rules(|r| r.keep_within = Some(s.parse::<CalendarDuration>().unwrap()))
}

#[test]
fn no_rules_keep_everything() {
    let packs = hourly("2026-01-01T00:00:00Z", 5);
    let v = select(&Retention::new(RetentionConfig::default(), chrono_tz::UTC), &packs);
    assert!(v.iter().all(|v| v.keep));
    assert!(v[0].reason.contains("no keep rule"), "{}", v[0].reason);
}

#[test]
fn zero_rules_are_not_set_and_never_delete() {
    let packs = hourly("2026-01-01T00:00:00Z", 30);
    let zeros = RetentionConfig {
        keep_within: Some(CalendarDuration::default()),
        keep_last: Some(0),
        keep_hourly: Some(0),
        keep_daily: Some(0),
        keep_weekly: Some(0),
        keep_monthly: Some(0),
        keep_yearly: Some(0),
        max_packs: Some(0),
    };
    let r = Retention::new(zeros, chrono_tz::UTC);
    assert!(r.is_empty());
    let v = select(&r, &packs);
    assert!(
        v.iter()
            .all(|v| v.keep && v.reason.ends_with("no keep rule: everything is kept")),
        "{v:?}"
    );
    // A zero next to a real rule changes nothing.
    let with_zero = rules(|r| {
        r.keep_last = Some(3);
        r.keep_daily = Some(0);
    });
    assert_eq!(
        kept(&Retention::new(with_zero, chrono_tz::UTC), &packs),
        ["0102T0300Z", "0102T0400Z", "0102T0500Z"]
    );
}

#[test]
fn keep_last_one_keeps_only_the_newest() {
    let packs = hourly("2026-01-01T00:00:00Z", 10);
    let r = Retention::new(rules(|r| r.keep_last = Some(1)), chrono_tz::UTC);
    let v = select(&r, &packs);
    assert_eq!(kept(&r, &packs), ["0101T0900Z"]);
    assert_eq!(reason(&v, "0101T0900Z"), "newest pack (always kept), keep_last 1/1");
    assert_eq!(reason(&v, "0101T0800Z"), "matches no keep rule");
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
    let r = Retention::new(
        rules(|r| {
            r.keep_daily = Some(3);
            r.keep_weekly = Some(3);
            r.keep_monthly = Some(3);
        }),
        chrono_tz::UTC,
    );
    let mut got = kept(&r, &packs);
    got.sort();
    // Daily: 03-31 (noon, the newest of that day), 03-30, 03-29.
    // Weekly (ISO, Monday first): W14 -> 03-31 noon; W13 (03-23..03-29) -> 03-29; W12 -> 03-22.
    // Monthly: March -> 03-31 noon; February -> 02-28; January -> 01-31.
    // Every count is used up before the oldest pack, so it goes.
    let mut want: Vec<String> = ["p_0331_noon", "p_0330", "p_0329", "p_0322", "p_0228", "p_0131"]
        .map(String::from)
        .to_vec();
    want.sort();
    assert_eq!(got, want);
    let v = select(&r, &packs);
    assert_eq!(
        reason(&v, "p_0331_noon"),
        "newest pack (always kept), keep_daily 1/3 (2026-03-31), keep_weekly 1/3 (2026-W14), keep_monthly 1/3 (2026-03)"
    );
    assert_eq!(reason(&v, "p_0331"), "matches no keep rule");
}

#[test]
fn the_oldest_pack_is_kept_while_a_count_is_left() {
    // restic >= 0.16: two packs a day for three days and keep_daily 7: the newest of each day,
    // and the oldest pack with the fourth count.
    let packs = vec![
        pack("d1_a", utc("2026-05-01T01:00:00Z")),
        pack("d1_b", utc("2026-05-01T13:00:00Z")),
        pack("d2_a", utc("2026-05-02T01:00:00Z")),
        pack("d2_b", utc("2026-05-02T13:00:00Z")),
        pack("d3_a", utc("2026-05-03T01:00:00Z")),
        pack("d3_b", utc("2026-05-03T13:00:00Z")),
    ];
    let r = Retention::new(rules(|r| r.keep_daily = Some(7)), chrono_tz::UTC);
    let v = select(&r, &packs);
    assert_eq!(kept(&r, &packs), ["d1_a", "d1_b", "d2_b", "d3_b"]);
    assert_eq!(reason(&v, "d1_a"), "keep_daily 4/7 (oldest pack, 2026-05-01)");
    assert_eq!(reason(&v, "d2_a"), "matches no keep rule");
    // keep_last keeps the oldest too when it has counts left; when used up, not.
    let r = Retention::new(rules(|r| r.keep_daily = Some(3)), chrono_tz::UTC);
    assert_eq!(kept(&r, &packs), ["d1_b", "d2_b", "d3_b"]);
    // The oldest pack in a period of its own is simply the next count.
    let r = Retention::new(rules(|r| r.keep_monthly = Some(2)), chrono_tz::UTC);
    let v = select(&r, &packs);
    assert_eq!(kept(&r, &packs), ["d1_a", "d3_b"]);
    assert_eq!(reason(&v, "d1_a"), "keep_monthly 2/2 (oldest pack, 2026-05)");
}

#[test]
fn periods_are_counted_in_the_plans_time_zone() {
    // 17:00 UTC and 15:00 UTC on the same UTC day are different days in Shanghai (UTC+8):
    // 01:00 on the 21st and 23:00 on the 20th.
    let packs = vec![
        pack("a", utc("2026-11-20T15:00:00Z")),
        pack("b", utc("2026-11-20T17:00:00Z")),
        pack("c", utc("2026-11-20T18:00:00Z")),
    ];
    let r = rules(|r| r.keep_daily = Some(1));
    assert_eq!(kept(&Retention::new(r.clone(), chrono_tz::UTC), &packs), ["c"]);
    let r = rules(|r| r.keep_daily = Some(2));
    assert_eq!(kept(&Retention::new(r, chrono_tz::Asia::Shanghai), &packs), ["a", "c"]);
}

#[test]
fn keep_within_is_measured_from_the_newest_pack_and_max_packs_caps() {
    // Hourly packs over five days; the original system kept 72 hours.
    let packs = hourly("2026-11-01T00:00:00Z", 120);
    let r = Retention::new(within("72h"), chrono_tz::UTC);
    let got = kept(&r, &packs);
    // Newest is 11-05 23:00; younger than 72h from it: 11-03 00:00 ..= 11-05 23:00.
    assert_eq!(got.len(), 72);
    assert_eq!(got.first().unwrap(), "1103T0000Z");
    let v = select(&r, &packs);
    assert_eq!(v[47].reason, "matches no keep rule");
    assert_eq!(v[48].reason, "keep_within 72h of the newest pack");

    let capped = Retention::new(
        RetentionConfig {
            max_packs: Some(10),
            ..within("72h")
        },
        chrono_tz::UTC,
    );
    let v = select(&capped, &packs);
    let got: Vec<_> = v.iter().filter(|v| v.keep).map(|v| v.pack_id.clone()).collect();
    assert_eq!(got, packs[110..].iter().map(|p| p.id.clone()).collect::<Vec<_>>());
    assert!(v[109].reason.starts_with("over max_packs 10"), "{}", v[109].reason);
}

#[test]
fn the_newest_pack_survives_rules_that_keep_nothing_else() {
    let packs = vec![
        pack("old", utc("2026-01-01T00:00:00Z")),
        pack("new", utc("2026-06-01T00:00:00Z")),
    ];
    let r = Retention::new(
        RetentionConfig {
            max_packs: Some(1),
            ..within("1h")
        },
        chrono_tz::UTC,
    );
    let v = select(&r, &packs);
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
    let r = rules(|r| {
        r.keep_last = Some(1);
        r.keep_hourly = Some(3);
    });
    let v = select(&Retention::new(r, chrono_tz::UTC), &packs);
    let got: Vec<_> = v.iter().map(|v| (v.pack_id.as_str(), v.keep)).collect();
    assert_eq!(got, [("a", false), ("b", true), ("c", true), ("d", false), ("e", true)]);
    assert_eq!(v[1].reason, "keep_hourly 3/3 (2026-11-20 01:00)");
    assert_eq!(
        v[4].reason,
        "newest pack (always kept), keep_last 1/1, keep_hourly 1/3 (2026-11-20 09:00)"
    );
}

#[test]
fn packs_in_the_future_anchor_nothing_and_are_kept() {
    // Daily packs, and two from a host whose clock was a year ahead.
    let mut packs: Vec<_> = (0..10)
        .map(|d| {
            let at = utc("2026-11-01T04:00:00Z") + TimeDelta::days(d);
            pack(&format!("p{d}"), at)
        })
        .collect();
    packs.push(pack("skewed_1", utc("2027-11-20T04:00:00Z")));
    packs.push(pack("skewed_2", utc("2027-12-05T04:00:00Z")));
    let now = utc("2026-11-10T12:00:00Z");
    // Anchored on the newest pack that is not in the future (p9), not on skewed_2.
    let r = Retention::new(within("2d"), chrono_tz::UTC);
    let v = r.select(&packs, now);
    let got: Vec<_> = v.iter().filter(|v| v.keep).map(|v| v.pack_id.as_str()).collect();
    assert_eq!(got, ["p8", "p9", "skewed_1", "skewed_2"]);
    assert_eq!(
        v[9].reason,
        "newest pack (always kept), keep_within 2d of the newest pack"
    );
    assert_eq!(
        v[11].reason,
        "dated in the future (2027-12-05 04:00:00 UTC): clock skew on the host that wrote it? never removed by age"
    );
    // Future packs use up no count.
    let r = Retention::new(rules(|r| r.keep_last = Some(2)), chrono_tz::UTC);
    let got: Vec<_> = r
        .select(&packs, now)
        .into_iter()
        .filter(|v| v.keep)
        .map(|v| v.pack_id)
        .collect();
    assert_eq!(got, ["p8", "p9", "skewed_1", "skewed_2"]);
    // Only future packs: all kept, nothing to anchor on.
    let only = &packs[10..];
    let v = Retention::new(rules(|r| r.keep_last = Some(1)), chrono_tz::UTC).select(only, now);
    assert!(
        v.iter().all(|v| v.keep && v.reason.starts_with("dated in the future")),
        "{v:?}"
    );
}

fn chain_history() -> Vec<PackInfo> {
    // A full pack every Sunday 01:00 and incrementals every 6 hours in between.
    let start = utc("2026-11-01T01:00:00Z"); // Sunday
    (0..4 * 14)
        .map(|i| {
            let at = start + TimeDelta::hours(6 * i);
            let kind = if i % 28 == 0 {
                BackupKind::Full
            } else {
                BackupKind::Incremental
            };
            let tag = if kind == BackupKind::Full { "full" } else { "incr" };
            pack_of(kind, &format!("{tag}_{}", at.format("%m%dT%H")), at)
        })
        .collect()
}

#[test]
fn a_kept_incremental_keeps_its_base_and_the_packs_between() {
    let packs = chain_history();
    // keep_last 1: the newest incremental, its full base of 11-08 and the 26 incrementals
    // between.
    let r = Retention::new(rules(|r| r.keep_last = Some(1)), chrono_tz::UTC);
    let v = select(&r, &packs);
    let got = kept(&r, &packs);
    assert_eq!(got.len(), 28);
    assert_eq!(got.first().unwrap(), "full_1108T01");
    assert_eq!(
        reason(&v, "full_1108T01"),
        "base of 27 incremental packs (restore --chain)"
    );
    assert_eq!(
        reason(&v, "incr_1110T13"),
        "needed by the chain of incr_1114T19 (restore --chain)"
    );
    assert_eq!(reason(&v, "incr_1114T19"), "newest pack (always kept), keep_last 1/1");
    assert_eq!(reason(&v, "full_1101T01"), "matches no keep rule");
    assert!(!v.iter().find(|v| v.pack_id == "incr_1107T19").unwrap().keep);

    // keep_daily 9 keeps incrementals of the first week (11-06 and 11-07): its full stays, and
    // so do the incrementals between, so here every pack stays.
    let r = Retention::new(rules(|r| r.keep_daily = Some(9)), chrono_tz::UTC);
    let v = select(&r, &packs);
    assert_eq!(kept(&r, &packs).len(), packs.len());
    assert_eq!(
        reason(&v, "full_1101T01"),
        "base of 27 incremental packs (restore --chain)"
    );
    assert_eq!(
        reason(&v, "full_1108T01"),
        "base of 27 incremental packs (restore --chain)"
    );
    // The chains of a week ago (kept by keep_daily) reach back to their full pack.
    assert_eq!(reason(&v, "incr_1106T19"), "keep_daily 9/9 (2026-11-06)");
    assert_eq!(
        reason(&v, "incr_1106T13"),
        "needed by the chain of incr_1107T19 (restore --chain)"
    );

    // A full pack kept by a rule says both.
    let r = Retention::new(rules(|r| r.keep_last = Some(28)), chrono_tz::UTC);
    let v = select(&r, &packs);
    assert_eq!(
        reason(&v, "full_1108T01"),
        "keep_last 28/28, base of 27 incremental packs (restore --chain)"
    );

    // max_packs does not break a chain.
    let r = Retention::new(
        rules(|r| {
            r.keep_last = Some(3);
            r.max_packs = Some(2);
        }),
        chrono_tz::UTC,
    );
    assert_eq!(kept(&r, &packs).len(), 28);
}

#[test]
fn incremental_only_histories_keep_a_chain_without_holes() {
    // No full pack at all: restore --chain starts at the oldest pack, so everything from the
    // oldest kept pack on is kept.
    let packs: Vec<_> = chain_history()
        .into_iter()
        .filter(|p| p.kind == BackupKind::Incremental)
        .collect();
    let r = Retention::new(rules(|r| r.keep_daily = Some(3)), chrono_tz::UTC);
    let v = select(&r, &packs);
    let got = kept(&r, &packs);
    // keep_daily 3: 11-14, 11-13, 11-12 (19:00 each); from 11-12 19:00 on, everything.
    assert_eq!(got, between(&packs, "2026-11-12T18:00:00Z", "2026-11-30T00:00:00Z"));
    assert_eq!(
        reason(&v, "incr_1112T19"),
        "keep_daily 3/3 (2026-11-12), start of the chain of 8 incremental packs (no full pack before them)"
    );
    assert_eq!(
        reason(&v, "incr_1113T13"),
        "needed by the chain of incr_1114T19 (restore --chain)"
    );
}

// Daylight saving time. Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC), and
// 2026-10-25 03:00 CEST -> 02:00 CET (01:00 UTC). America/New_York: 2026-03-08 02:00 EST ->
// 03:00 EDT (07:00 UTC), and 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC).

const BERLIN: Tz = chrono_tz::Europe::Berlin;
const NEW_YORK: Tz = chrono_tz::America::New_York;

#[test]
fn dst_keep_daily_berlin_spring_forward() {
    // Hourly from 2026-03-28 00:00 CET to 2026-03-30 23:00 CEST; 2026-03-29 has 23 hours.
    let packs = hourly("2026-03-27T23:00:00Z", 71);
    let r = Retention::new(rules(|r| r.keep_daily = Some(3)), BERLIN);
    // The newest of each local day: 23:00 CEST (21:00 UTC) on the 30th and 29th, 23:00 CET
    // (22:00 UTC) on the 28th.
    assert_eq!(kept(&r, &packs), ["0328T2200Z", "0329T2100Z", "0330T2100Z"]);
    let r = Retention::new(rules(|r| r.keep_daily = Some(4)), BERLIN);
    let v = select(&r, &packs);
    assert_eq!(
        kept(&r, &packs),
        ["0327T2300Z", "0328T2200Z", "0329T2100Z", "0330T2100Z"]
    );
    assert_eq!(reason(&v, "0327T2300Z"), "keep_daily 4/4 (oldest pack, 2026-03-28)");
    assert_eq!(reason(&v, "0329T2100Z"), "keep_daily 2/4 (2026-03-29)");
    // In UTC the days are different.
    let r = Retention::new(rules(|r| r.keep_daily = Some(3)), chrono_tz::UTC);
    assert_eq!(kept(&r, &packs), ["0328T2300Z", "0329T2300Z", "0330T2100Z"]);
}

#[test]
fn dst_keep_within_days_berlin_spring_forward() {
    // Hourly up to 2026-03-30 01:00 CEST (2026-03-29 23:00 UTC).
    let packs = hourly("2026-03-27T12:00:00Z", 60);
    assert_eq!(packs.last().unwrap().id, "0329T2300Z");
    let k = |w: &str| kept(&Retention::new(within(w), BERLIN), &packs);
    // 1d back is 2026-03-29 01:00 CET = 00:00 UTC: 23 hours.
    assert_eq!(k("1d"), between(&packs, "2026-03-29T00:00:00Z", "2026-03-29T23:00:00Z"));
    assert_eq!(k("1d").len(), 23);
    assert_eq!(k("24h").len(), 24);
    // 2d back is 2026-03-28 01:00 CET = 00:00 UTC: 47 hours.
    assert_eq!(k("2d"), between(&packs, "2026-03-28T00:00:00Z", "2026-03-29T23:00:00Z"));
    assert_eq!(k("2d").len(), 47);
    assert_eq!(k("48h").len(), 48);
    assert_eq!(k("1d1h").len(), 24);
}

#[test]
fn dst_keep_within_days_berlin_fall_back() {
    // Hourly up to 2026-10-26 01:00 CET (00:00 UTC); 2026-10-25 has 25 hours.
    let packs = hourly("2026-10-23T00:00:00Z", 73);
    assert_eq!(packs.last().unwrap().id, "1026T0000Z");
    let k = |w: &str| kept(&Retention::new(within(w), BERLIN), &packs);
    // 1d back is 2026-10-25 01:00 CEST = 2026-10-24 23:00 UTC: 25 hours.
    assert_eq!(k("1d"), between(&packs, "2026-10-24T23:00:00Z", "2026-10-26T00:00:00Z"));
    assert_eq!(k("1d").len(), 25);
    assert_eq!(k("24h").len(), 24);
    // 2d back is 2026-10-24 01:00 CEST = 2026-10-23 23:00 UTC: 49 hours.
    assert_eq!(k("2d").len(), 49);
    // keep_daily on the long day: 23:00 CET is 22:00 UTC.
    let r = Retention::new(rules(|r| r.keep_daily = Some(3)), BERLIN);
    assert_eq!(kept(&r, &packs), ["1024T2100Z", "1025T2200Z", "1026T0000Z"]);
}

#[test]
fn dst_keep_within_days_new_york() {
    // Spring forward: up to 2026-03-09 01:00 EDT (05:00 UTC); 1d back is 2026-03-08 01:00 EST
    // (06:00 UTC), 23 hours; 2d back 2026-03-07 01:00 EST (06:00 UTC), 47 hours.
    let packs = hourly("2026-03-06T00:00:00Z", 78);
    assert_eq!(packs.last().unwrap().id, "0309T0500Z");
    let k = |w: &str| kept(&Retention::new(within(w), NEW_YORK), &packs);
    assert_eq!(k("1d"), between(&packs, "2026-03-08T06:00:00Z", "2026-03-09T05:00:00Z"));
    assert_eq!(k("1d").len(), 23);
    assert_eq!(k("2d").len(), 47);
    assert_eq!(k("24h").len(), 24);

    // Fall back: up to 2026-11-02 01:00 EST (06:00 UTC). 1d back is 2026-11-01 01:00, which
    // happens twice (EDT 05:00 UTC, EST 06:00 UTC): the earlier one, 25 hours.
    let packs = hourly("2026-10-30T00:00:00Z", 79);
    assert_eq!(packs.last().unwrap().id, "1102T0600Z");
    let k = |w: &str| kept(&Retention::new(within(w), NEW_YORK), &packs);
    assert_eq!(k("1d"), between(&packs, "2026-11-01T05:00:00Z", "2026-11-02T06:00:00Z"));
    assert_eq!(k("1d").len(), 25);
    assert_eq!(k("2d").len(), 49);
    // keep_daily: 2026-11-01 (25 hours) ends at 23:00 EST = 04:00 UTC on the 2nd.
    let r = Retention::new(rules(|r| r.keep_daily = Some(2)), NEW_YORK);
    assert_eq!(kept(&r, &packs), ["1102T0400Z", "1102T0600Z"]);
}

#[test]
fn keep_monthly_and_months_across_month_ends() {
    // Daily at 23:30 New York time (04:30 UTC the next day), 2026-01-25 to 2026-03-05.
    let start = utc("2026-01-26T04:30:00Z");
    let packs: Vec<_> = (0..40)
        .map(|d| {
            let at = start + TimeDelta::days(d);
            let local = at.with_timezone(&NEW_YORK);
            pack(&format!("ny_{}", local.format("%m%d")), at)
        })
        .collect();
    assert_eq!(packs.last().unwrap().id, "ny_0305");
    let monthly = rules(|r| r.keep_monthly = Some(3));
    // In New York the month ends at 23:30 local on the 31st and the 28th.
    assert_eq!(
        kept(&Retention::new(monthly.clone(), NEW_YORK), &packs),
        ["ny_0131", "ny_0228", "ny_0305"]
    );
    // In UTC those packs are already on the 1st of the next month.
    assert_eq!(
        kept(&Retention::new(monthly, chrono_tz::UTC), &packs),
        ["ny_0130", "ny_0227", "ny_0305"]
    );
    // 1m back from 2026-03-05 23:30 EST is 2026-02-05 23:30 EST.
    let got = kept(&Retention::new(within("1m"), NEW_YORK), &packs);
    assert_eq!(got.first().unwrap(), "ny_0206");
    assert_eq!(got.len(), 28);

    // 1m back from 31 March is the end of February (and across Berlin's spring forward).
    let start = utc("2026-02-20T11:00:00Z"); // 12:00 CET
    let packs: Vec<_> = (0..40)
        .map(|d| {
            let local = (start.with_timezone(&BERLIN).date_naive() + TimeDelta::days(d))
                .and_hms_opt(12, 0, 0)
                .unwrap();
            let at = local.and_local_timezone(BERLIN).unwrap().with_timezone(&Utc);
            pack(&format!("be_{}", local.format("%m%d")), at)
        })
        .collect();
    assert_eq!(packs.last().unwrap().id, "be_0331");
    let got = kept(&Retention::new(within("1m"), BERLIN), &packs);
    // Since 2026-02-28 12:00 CET, exclusive.
    assert_eq!(got.first().unwrap(), "be_0301");
    assert_eq!(got.len(), 31);
    let got = kept(&Retention::new(within("1m1d"), BERLIN), &packs);
    assert_eq!(got.first().unwrap(), "be_0228");
}

//! The scheduler driven by a controllable clock over simulated weeks, against a real state store
//! (SQLite in a temp directory): exact firing instants in Asia/Shanghai and across DST changes
//! in Europe/Berlin and America/New_York, no re-fire after a restart, one catch-up after downtime.

use std::path::Path;
use std::sync::Arc;

use backup_core::{BackupKind, StateStore};
use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use policy_schedule::CatchUp;
use policy_schedule::{Clock, Decision, ManualClock, Schedule, Scheduler};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn local(tz: Tz, y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    tz.with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

/// Steps a manual clock minute by minute over `[from, to)` and returns every fire as
/// (clock time, slot, kind, catch_up).
fn simulate(
    dir: &Path,
    plan: &str,
    schedule: Schedule,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>, BackupKind, bool)> {
    let state = Arc::new(StateStore::open(dir).unwrap());
    let clock = Arc::new(ManualClock::new(from));
    let mut s = Scheduler::new(state, clock.clone());
    s.add(plan, Arc::new(schedule));
    let mut fires = Vec::new();
    while clock.now() < to {
        for d in s.tick(&|_| false).unwrap() {
            match d {
                Decision::Fire { run, .. } => fires.push((clock.now(), run.slot, run.kind, run.catch_up)),
                other => panic!("unexpected {other:?}"),
            }
        }
        clock.advance(TimeDelta::minutes(1));
    }
    fires
}

fn instants(fires: &[(DateTime<Utc>, DateTime<Utc>, BackupKind, bool)]) -> Vec<DateTime<Utc>> {
    for (at, slot, _, catch_up) in fires {
        assert_eq!(at, slot, "fired late");
        assert!(!catch_up);
    }
    fires.iter().map(|f| f.0).collect()
}

#[test]
fn shanghai_week_hourly_six_hourly_and_daily_fire_exactly_on_time() {
    let tz = chrono_tz::Asia::Shanghai;
    let start = local(tz, 2026, 11, 16, 0); // Monday 00:00 local = Sunday 16:00 UTC
    let end = start + TimeDelta::days(7);
    let t = tempfile::tempdir().unwrap();

    let hourly = simulate(
        &t.path().join("h"),
        "hot",
        Schedule::new(None, Some("0 * * * *"), tz).unwrap(),
        start,
        end,
    );
    let expected: Vec<_> = (0..168).map(|h| start + TimeDelta::hours(h)).collect();
    assert_eq!(instants(&hourly), expected);
    assert!(hourly.iter().all(|f| f.2 == BackupKind::Incremental));

    let six = simulate(
        &t.path().join("s"),
        "core",
        Schedule::new(None, Some("0 */6 * * *"), tz).unwrap(),
        start,
        end,
    );
    let expected: Vec<_> = (0..28).map(|k| start + TimeDelta::hours(6 * k)).collect();
    assert_eq!(instants(&six), expected);

    let daily = simulate(
        &t.path().join("d"),
        "nightly",
        Schedule::new(Some("0 2 * * *"), None, tz).unwrap(),
        start,
        end,
    );
    let expected: Vec<_> = (16..23).map(|d| local(tz, 2026, 11, d, 2)).collect();
    assert_eq!(expected[0], utc("2026-11-15T18:00:00Z"));
    assert_eq!(instants(&daily), expected);
    assert!(daily.iter().all(|f| f.2 == BackupKind::Full));

    // Full daily at 02:00 plus hourly incrementals: 02:00 is full (full wins), the rest incremental.
    let both = simulate(
        &t.path().join("b"),
        "mixed",
        Schedule::new(Some("0 2 * * *"), Some("0 * * * *"), tz).unwrap(),
        start,
        end,
    );
    assert_eq!(both.len(), 168);
    let fulls: Vec<_> = both.iter().filter(|f| f.2 == BackupKind::Full).map(|f| f.0).collect();
    assert_eq!(fulls, expected);
}

#[test]
fn berlin_spring_forward_and_fall_back() {
    let tz = chrono_tz::Europe::Berlin;
    let t = tempfile::tempdir().unwrap();
    // Spring forward on Sunday 2026-03-29 (02:00 CET -> 03:00 CEST): 02:30 does not exist that
    // day, the job runs at 03:00 CEST, and exactly once per day all week.
    let daily = simulate(
        &t.path().join("a"),
        "nightly",
        Schedule::new(Some("30 2 * * *"), None, tz).unwrap(),
        utc("2026-03-26T00:00:00Z"),
        utc("2026-04-02T00:00:00Z"),
    );
    let expected = [
        "2026-03-26T01:30:00Z",
        "2026-03-27T01:30:00Z",
        "2026-03-28T01:30:00Z",
        "2026-03-29T01:00:00Z", // 03:00 CEST
        "2026-03-30T00:30:00Z",
        "2026-03-31T00:30:00Z",
        "2026-04-01T00:30:00Z",
    ]
    .map(utc);
    assert_eq!(instants(&daily), expected);

    // Fall back on Sunday 2026-10-25 (03:00 CEST -> 02:00 CET): 02:30 happens twice on the wall
    // clock, the job runs once.
    let daily = simulate(
        &t.path().join("b"),
        "nightly",
        Schedule::new(Some("30 2 * * *"), None, tz).unwrap(),
        utc("2026-10-22T00:00:00Z"),
        utc("2026-10-29T00:00:00Z"),
    );
    let expected = [
        "2026-10-22T00:30:00Z",
        "2026-10-23T00:30:00Z",
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z", // 02:30 CEST, the first of the two
        "2026-10-26T01:30:00Z",
        "2026-10-27T01:30:00Z",
        "2026-10-28T01:30:00Z",
    ]
    .map(utc);
    assert_eq!(instants(&daily), expected);

    // Hourly across both changes: every real hour exactly once — 23 runs on the short day,
    // 25 on the long one.
    for (day, runs) in [((2026, 3, 29), 23), ((2026, 10, 25), 25)] {
        let from = local(tz, day.0, day.1, day.2, 0);
        let next = NaiveDate::from_ymd_opt(day.0, day.1, day.2)
            .unwrap()
            .succ_opt()
            .unwrap();
        let to = tz
            .from_local_datetime(&next.and_hms_opt(0, 0, 0).unwrap())
            .single()
            .unwrap()
            .with_timezone(&Utc);
        let fires = simulate(
            &t.path().join(format!("h{}", day.1)),
            "hot",
            Schedule::new(None, Some("0 * * * *"), tz).unwrap(),
            from,
            to,
        );
        let expected: Vec<_> = (0..runs).map(|h| from + TimeDelta::hours(h)).collect();
        assert_eq!(instants(&fires), expected, "{day:?}");
    }
}

#[test]
fn new_york_spring_forward_and_fall_back() {
    let tz = chrono_tz::America::New_York;
    let t = tempfile::tempdir().unwrap();
    // 2026-03-08 02:00 EST -> 03:00 EDT: the 02:00 job runs at 03:00 EDT.
    let daily = simulate(
        &t.path().join("a"),
        "nightly",
        Schedule::new(Some("0 2 * * *"), None, tz).unwrap(),
        utc("2026-03-05T00:00:00Z"),
        utc("2026-03-12T00:00:00Z"),
    );
    let expected = [
        "2026-03-05T07:00:00Z",
        "2026-03-06T07:00:00Z",
        "2026-03-07T07:00:00Z",
        "2026-03-08T07:00:00Z", // 03:00 EDT
        "2026-03-09T06:00:00Z",
        "2026-03-10T06:00:00Z",
        "2026-03-11T06:00:00Z",
    ]
    .map(utc);
    assert_eq!(instants(&daily), expected);

    // 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens twice, the job runs once.
    let daily = simulate(
        &t.path().join("b"),
        "nightly",
        Schedule::new(Some("30 1 * * *"), None, tz).unwrap(),
        utc("2026-10-29T00:00:00Z"),
        utc("2026-11-05T00:00:00Z"),
    );
    let expected = [
        "2026-10-29T05:30:00Z",
        "2026-10-30T05:30:00Z",
        "2026-10-31T05:30:00Z",
        "2026-11-01T05:30:00Z", // 01:30 EDT
        "2026-11-02T06:30:00Z",
        "2026-11-03T06:30:00Z",
        "2026-11-04T06:30:00Z",
    ]
    .map(utc);
    assert_eq!(instants(&daily), expected);
}

#[test]
fn restart_mid_window_does_not_refire() {
    let tz = chrono_tz::Asia::Shanghai;
    let t = tempfile::tempdir().unwrap();
    let slot = local(tz, 2026, 11, 20, 2);
    let clock = Arc::new(ManualClock::new(slot));
    {
        let state = Arc::new(StateStore::open(t.path()).unwrap());
        let mut s = Scheduler::new(state, clock.clone());
        s.add("nightly", Arc::new(Schedule::new(Some("0 2 * * *"), None, tz).unwrap()));
        let d = s.tick(&|_| false).unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].run().slot, slot);
        assert!(s.tick(&|_| false).unwrap().is_empty(), "fired twice in one process");
    }
    // A new process 30 minutes later (the state store reopened from disk).
    clock.set(slot + TimeDelta::minutes(30));
    let state = Arc::new(StateStore::open(t.path()).unwrap());
    assert_eq!(state.schedule_state("nightly").unwrap().last_fired_slot, Some(slot));
    let mut s = Scheduler::new(state, clock.clone());
    s.add("nightly", Arc::new(Schedule::new(Some("0 2 * * *"), None, tz).unwrap()));
    for _ in 0..60 {
        assert!(
            s.tick(&|_| false).unwrap().is_empty(),
            "re-fired after a restart at {}",
            clock.now()
        );
        clock.advance(TimeDelta::minutes(1));
    }
    assert_eq!(s.next_wakeup(), Some(slot + TimeDelta::days(1)));
}

#[test]
fn downtime_catches_up_once_or_skips() {
    let tz = chrono_tz::Asia::Shanghai;
    let t = tempfile::tempdir().unwrap();
    let state = Arc::new(StateStore::open(t.path()).unwrap());
    let ten = local(tz, 2026, 11, 20, 10);
    let clock = Arc::new(ManualClock::new(ten));
    let mut s = Scheduler::new(state.clone(), clock.clone());
    s.add(
        "hot",
        Arc::new(Schedule::new(Some("0 0 * * *"), Some("0 * * * *"), tz).unwrap()),
    );
    s.add(
        "skipper",
        Arc::new(
            Schedule::new(None, Some("0 * * * *"), tz)
                .unwrap()
                .with_catch_up(CatchUp::Skip),
        ),
    );
    assert_eq!(s.tick(&|_| false).unwrap().len(), 2);

    // Down for five hours and twenty minutes, across no full slot.
    clock.set(ten + TimeDelta::minutes(5 * 60 + 20));
    let d = s.tick(&|_| false).unwrap();
    assert_eq!(d.len(), 1, "{d:?}");
    let Decision::Fire { plan, run } = &d[0] else {
        panic!("{d:?}")
    };
    assert_eq!(plan, "hot");
    assert!(run.catch_up);
    assert_eq!(run.kind, BackupKind::Incremental);
    assert_eq!(run.slot, ten + TimeDelta::hours(5));
    // Nothing more until the next hour, then both plans run normally again.
    for _ in 0..39 {
        clock.advance(TimeDelta::minutes(1));
        assert!(s.tick(&|_| false).unwrap().is_empty());
    }
    clock.advance(TimeDelta::minutes(1));
    let d = s.tick(&|_| false).unwrap();
    assert_eq!(d.len(), 2);
    assert!(
        d.iter()
            .all(|d| !d.run().catch_up && d.run().slot == ten + TimeDelta::hours(6))
    );

    // Down over midnight: one catch-up, and it is full because the full slot was missed.
    clock.set(local(tz, 2026, 11, 21, 3) + TimeDelta::minutes(7));
    let d = s.tick(&|_| false).unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].plan(), "hot");
    assert_eq!((d[0].run().kind, d[0].run().catch_up), (BackupKind::Full, true));
}

#[test]
fn busy_plan_skips_its_slot_with_a_reason() {
    let t = tempfile::tempdir().unwrap();
    let state = Arc::new(StateStore::open(t.path()).unwrap());
    let at = utc("2026-11-20T10:00:00Z");
    let clock = Arc::new(ManualClock::new(at));
    let mut s = Scheduler::new(state.clone(), clock.clone());
    s.add(
        "hot",
        Arc::new(Schedule::new(None, Some("* * * * *"), chrono_tz::UTC).unwrap()),
    );
    s.add(
        "cold",
        Arc::new(Schedule::new(None, Some("* * * * *"), chrono_tz::UTC).unwrap()),
    );
    let d = s.tick(&|p| p == "hot").unwrap();
    assert_eq!(d.len(), 2);
    let skip = d.iter().find(|d| d.plan() == "hot").unwrap();
    let Decision::Skip { reason, .. } = skip else {
        panic!("{skip:?}")
    };
    assert!(reason.contains("still running"), "{reason}");
    assert!(matches!(
        d.iter().find(|d| d.plan() == "cold").unwrap(),
        Decision::Fire { .. }
    ));
    // The skipped slot is consumed.
    assert_eq!(state.schedule_state("hot").unwrap().last_fired_slot, Some(at));
    assert!(s.tick(&|_| false).unwrap().is_empty());
    clock.advance(TimeDelta::seconds(61));
    assert_eq!(s.tick(&|_| false).unwrap().len(), 2);
    assert_eq!(
        s.sleep_for(std::time::Duration::from_secs(30)),
        std::time::Duration::from_secs(30)
    );
    assert_eq!(
        s.sleep_for(std::time::Duration::from_secs(120)),
        std::time::Duration::from_secs(59)
    );
}

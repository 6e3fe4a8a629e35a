//! Property tests: the newest pack, packs dated in the future and the chains of kept incremental
//! packs always survive; zero or nonsense rules never delete; keep sets match an independent
//! model of restic's rules; pruning a real local sink touches nothing but removable packs of
//! ours, whatever the policy says.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use backup_core::sink::PackInfo;
use backup_core::{BackupKind, Compression, Manifest, PackId, RetentionPolicy, Sink, StagingPack, Verdict};
use chrono::{DateTime, Datelike, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use retention::{CalendarDuration, RetentionConfig};
use retention::{Retention, prune};
use sink_local::LocalSink;

const ZONES: [Tz; 4] = [
    chrono_tz::UTC,
    chrono_tz::Asia::Shanghai,
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
];

fn info(plan: &str, id: String, kind: BackupKind, at: DateTime<Utc>) -> PackInfo {
    PackInfo {
        sink: "s".into(),
        plan: plan.into(),
        location: format!("/b/{plan}/{id}"),
        id,
        kind,
        job_id: None,
        started_at: at,
        finished_at: at,
        bytes: 0,
        artifacts: 0,
    }
}

fn base() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

/// A count that is 0 ("not set") as often as it is set.
fn zero_is_unset(n: Option<u32>) -> Option<u32> {
    n.filter(|&n| n > 0)
}

/// An independent model, transliterated from restic's `ApplyPolicy` (one pass over the packs,
/// newest first, with a bucket per rule), followed by max_packs, the newest pack, the packs in
/// the future, and the chains as a fixpoint.
fn model(rules: &RetentionConfig, tz: Tz, packs: &[PackInfo], now: DateTime<Utc>) -> BTreeSet<String> {
    let mut list: Vec<&PackInfo> = packs.iter().collect();
    list.sort_by(|a, b| (b.started_at, &b.id).cmp(&(a.started_at, &a.id)));
    let real: Vec<&PackInfo> = list.iter().copied().filter(|p| p.started_at <= now).collect();
    let mut keep: BTreeSet<String> = BTreeSet::new();
    if let Some(latest) = real.first().map(|p| p.started_at) {
        let within = rules.keep_within.filter(|d| !d.is_zero());
        let counts = [
            rules.keep_last,
            rules.keep_hourly,
            rules.keep_daily,
            rules.keep_weekly,
            rules.keep_monthly,
            rules.keep_yearly,
        ]
        .map(zero_is_unset);
        if within.is_none() && counts.iter().all(Option::is_none) {
            keep.extend(real.iter().map(|p| p.id.clone()));
        } else {
            let bucker = |which: usize, p: &PackInfo, nr: usize| -> String {
                let l = p.started_at.with_timezone(&tz);
                match which {
                    0 => nr.to_string(),
                    1 => format!("{}-{}-{} {}", l.year(), l.month(), l.day(), l.hour()),
                    2 => format!("{}-{}-{}", l.year(), l.month(), l.day()),
                    3 => format!("{:?}", l.iso_week()),
                    4 => format!("{}-{}", l.year(), l.month()),
                    _ => format!("{}", l.year()),
                }
            };
            let mut left: Vec<u32> = counts.iter().map(|c| c.unwrap_or(0)).collect();
            let mut last: Vec<Option<String>> = vec![None; 6];
            for (nr, cur) in real.iter().enumerate() {
                if let Some(w) = within
                    && cur.started_at > w.before(latest, tz)
                {
                    keep.insert(cur.id.clone());
                }
                for b in 0..6 {
                    if left[b] > 0 {
                        let val = bucker(b, cur, nr);
                        if last[b].as_ref() != Some(&val) || nr == real.len() - 1 {
                            keep.insert(cur.id.clone());
                            last[b] = Some(val);
                            left[b] -= 1;
                        }
                    }
                }
            }
        }
        if let Some(max) = zero_is_unset(rules.max_packs) {
            let capped: BTreeSet<String> = real
                .iter()
                .filter(|p| keep.contains(&p.id))
                .take(max as usize)
                .map(|p| p.id.clone())
                .collect();
            keep = capped;
        }
        keep.insert(real[0].id.clone());
    }
    keep.extend(list.iter().filter(|p| p.started_at > now).map(|p| p.id.clone()));
    // Chains, oldest first, until nothing changes.
    list.reverse();
    loop {
        let before = keep.len();
        let Some(first_kept) = list.iter().position(|p| keep.contains(&p.id)) else {
            break;
        };
        for i in 0..list.len() {
            if list[i].kind != BackupKind::Incremental || !keep.contains(&list[i].id) {
                continue;
            }
            let start = list[..i]
                .iter()
                .rposition(|p| p.kind == BackupKind::Full)
                .unwrap_or(first_kept);
            for p in &list[start.min(i)..i] {
                keep.insert(p.id.clone());
            }
        }
        if keep.len() == before {
            break;
        }
    }
    keep
}

fn count() -> impl Strategy<Value = Option<u32>> {
    proptest::option::of(0u32..6)
}

fn span() -> impl Strategy<Value = CalendarDuration> {
    (0u32..2, 0u32..8, 0u32..40, 0u32..100).prop_map(|(years, months, days, hours)| CalendarDuration {
        years,
        months,
        days,
        hours,
    })
}

fn rules_strategy() -> impl Strategy<Value = RetentionConfig> {
    (
        proptest::option::of(span()),
        count(),
        count(),
        count(),
        count(),
        count(),
        count(),
        proptest::option::of(0u32..12),
    )
        .prop_map(
            |(keep_within, keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, max_packs)| {
                RetentionConfig {
                    keep_within,
                    keep_last,
                    keep_hourly,
                    keep_daily,
                    keep_weekly,
                    keep_monthly,
                    keep_yearly,
                    max_packs,
                }
            },
        )
}

/// Packs of plans `a` and `b` over about two years (minutes since 2025-01-01), a third of them
/// full, and a `now` somewhere in that range, so some packs are in the future.
fn history() -> impl Strategy<Value = (Vec<PackInfo>, DateTime<Utc>)> {
    (
        proptest::collection::vec((0i64..1_100_000, 0usize..3, 0u8..3), 0..40),
        0i64..1_200_000,
    )
        .prop_map(|(offsets, now)| {
            let packs = offsets
                .into_iter()
                .enumerate()
                .map(|(i, (m, plan, kind))| {
                    let kind = if kind == 0 {
                        BackupKind::Full
                    } else {
                        BackupKind::Incremental
                    };
                    info(
                        ["a", "b", "a"][plan],
                        format!("p{i:03}"),
                        kind,
                        base() + TimeDelta::minutes(m),
                    )
                })
                .collect();
            (packs, base() + TimeDelta::minutes(now))
        })
}

fn of_plan<'a>(packs: &'a [PackInfo], verdicts: &'a [Verdict], plan: &str) -> Vec<(&'a PackInfo, &'a Verdict)> {
    let mut mine: Vec<_> = packs.iter().zip(verdicts).filter(|(p, _)| p.plan == plan).collect();
    mine.sort_by(|(a, _), (b, _)| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    mine
}

/// Every rule that is not set, set to 0.
fn with_zeros(r: &RetentionConfig) -> RetentionConfig {
    RetentionConfig {
        keep_within: r.keep_within.or(Some(CalendarDuration::default())),
        keep_last: r.keep_last.or(Some(0)),
        keep_hourly: r.keep_hourly.or(Some(0)),
        keep_daily: r.keep_daily.or(Some(0)),
        keep_weekly: r.keep_weekly.or(Some(0)),
        keep_monthly: r.keep_monthly.or(Some(0)),
        keep_yearly: r.keep_yearly.or(Some(0)),
        max_packs: r.max_packs.or(Some(0)),
    }
}

proptest! {
    // The core invariants: 10,000 histories.
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn the_newest_the_future_and_every_chain_survive(
        (packs, now) in history(),
        rules in rules_strategy(),
        zone in 0usize..4,
    ) {
        let tz = ZONES[zone];
        let r = Retention::new(rules.clone(), tz);
        let verdicts = r.select(&packs, now);
        prop_assert_eq!(verdicts.len(), packs.len());
        for (v, p) in verdicts.iter().zip(&packs) {
            prop_assert_eq!(&v.pack_id, &p.id);
            prop_assert!(!v.reason.is_empty());
        }
        for plan in ["a", "b"] {
            let mine = of_plan(&packs, &verdicts, plan);
            // The newest pack that is not in the future.
            if let Some((p, v)) = mine.iter().rev().find(|(p, _)| p.started_at <= now) {
                prop_assert!(v.keep, "newest pack {} of plan {} removed", p.id, plan);
                prop_assert!(v.reason.starts_with("newest pack (always kept)"), "{}", v.reason);
            }
            // Packs in the future are never removed by age (nor by anything else).
            for (p, v) in &mine {
                if p.started_at > now {
                    prop_assert!(v.keep && v.reason.starts_with("dated in the future"), "{}: {}", p.id, v.reason);
                }
            }
            // For every kept incremental pack, restore --chain over the kept packs replays the
            // same packs as over all of them (from its full base); with no full base, there is
            // no removed pack between the oldest kept one and it.
            let first_kept = mine.iter().position(|(_, v)| v.keep);
            for (i, (p, v)) in mine.iter().enumerate() {
                if !(v.keep && p.kind == BackupKind::Incremental) {
                    continue;
                }
                let base = mine[..i].iter().rposition(|(p, _)| p.kind == BackupKind::Full);
                let start = base.or(first_kept).unwrap();
                for (q, w) in &mine[start..i] {
                    prop_assert!(w.keep, "{} is needed by the chain of {} but removed ({})", q.id, p.id, w.reason);
                }
                if let Some(b) = base {
                    prop_assert!(mine[b].1.reason.contains("base of"), "{}", mine[b].1.reason);
                }
            }
        }
        // A rule of 0 is "not set": adding zeros changes nothing.
        prop_assert_eq!(&Retention::new(with_zeros(&rules), tz).select(&packs, now), &verdicts);
        // No rule (or only zeros): nothing is removed.
        for empty in [RetentionConfig::default(), with_zeros(&RetentionConfig::default())] {
            let v = Retention::new(empty, tz).select(&packs, now);
            prop_assert!(v.iter().all(|v| v.keep));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn verdicts_match_the_model(
        (packs, now) in history(),
        rules in rules_strategy(),
        zone in 0usize..4,
    ) {
        let tz = ZONES[zone];
        let verdicts = Retention::new(rules.clone(), tz).select(&packs, now);
        for plan in ["a", "b"] {
            let mine: Vec<PackInfo> = packs.iter().filter(|p| p.plan == plan).cloned().collect();
            let got: BTreeSet<String> = of_plan(&packs, &verdicts, plan)
                .into_iter()
                .filter(|(_, v)| v.keep)
                .map(|(p, _)| p.id.clone())
                .collect();
            prop_assert_eq!(&got, &model(&rules, tz, &mine, now), "plan {}", plan);
        }
    }

    /// Whatever is written for a rule, the config either refuses it (naming the file, line and
    /// key) or reads a rule that keeps something: never a zero, never a rule of minutes.
    #[test]
    fn nonsense_rules_are_refused_never_read_as_deletion(
        text in "[0-9ymdhsMw .+-]{0,8}",
        n in -3i64..4,
    ) {
        // The section as the application reads it: a `retention` table in a config file.
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Plan {
            retention: RetentionConfig,
        }
        let cfg = |retention: &str| {
            backup_core::config::parse_document::<Plan>(&format!("{retention}\n"), Path::new("/etc/packrat/p.toml"))
        };
        match cfg(&format!("retention = {{ keep_within = \"{text}\" }}")) {
            Ok(c) => {
                let w = c.retention.keep_within.unwrap();
                prop_assert!(!w.is_zero());
                prop_assert!(!text.contains(['s', 'M', 'w', '-', '.', '+']), "{text:?} accepted as {w}");
                prop_assert_eq!(w.to_string().parse::<CalendarDuration>().unwrap(), w);
            }
            Err(e) => {
                let e = e.to_string();
                prop_assert!(e.contains("/etc/packrat/p.toml, line 1, key `retention.keep_within`"), "{text:?}: {e}");
            }
        }
        match cfg(&format!("retention = {{ keep_daily = {n} }}")) {
            Ok(c) => prop_assert!(n >= 1 && c.retention.keep_daily == Some(n as u32)),
            Err(e) => {
                prop_assert!(n < 1);
                prop_assert!(e.to_string().contains("line 1, key `retention.keep_daily`"), "{e}");
            }
        }
    }
}

/// Stores a real pack `id` of `plan` and `kind` on `sink`, dated `at` (as written by a host
/// whose clock said `at`).
async fn store(sink: &LocalSink, staging: &Path, plan: &str, id: &str, kind: BackupKind, at: Option<DateTime<Utc>>) {
    let pid = PackId::new(id).unwrap();
    let claim = sink.stage(1, plan, &pid, 0).await.unwrap();
    let dir = claim.as_ref().map_or_else(|| staging.join(id), |c| c.to_path_buf());
    let pack = StagingPack::create(&dir, plan, pid, kind, chrono_tz::UTC).unwrap();
    let mut w = pack.artifact("notes/a.txt", "demo", "file", Compression::None).unwrap();
    std::io::Write::write_all(&mut w, id.as_bytes()).unwrap();
    w.finish().unwrap();
    let stored = sink.store(&pack.seal().unwrap(), 1).await.unwrap();
    if let Some(at) = at {
        redate(Path::new(&stored.location), at);
    }
}

/// Rewrites the start and end time of the pack in `dir`, and its line in `SHA256SUMS`, so the
/// pack stays valid.
fn redate(dir: &Path, at: DateTime<Utc>) {
    let mpath = dir.join("manifest.json");
    let mut m = Manifest::from_json(&std::fs::read(&mpath).unwrap()).unwrap();
    m.started_at = at;
    m.started_local = backup_core::pack::local_time(at, chrono_tz::UTC);
    m.finished_at = at;
    m.finished_local = m.started_local.clone();
    let json = m.to_json();
    std::fs::write(&mpath, &json).unwrap();
    let (_, sum) = backup_core::pack::hash_reader(&json[..]).unwrap();
    let sums = dir.join("SHA256SUMS");
    let text: String = std::fs::read_to_string(&sums)
        .unwrap()
        .lines()
        .map(|l| {
            if l.ends_with("  manifest.json") {
                format!("{sum}  manifest.json\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&sums, text).unwrap();
}

/// Every file and directory under `root` (not following symlinks) with its contents.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                out.insert(rel, format!("-> {}", std::fs::read_link(&p).unwrap().display()));
            } else if t.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read_to_string(&p).unwrap_or_else(|_| "<binary>".into()));
            }
        }
    }
    out
}

/// A policy that asks to remove every pack: the deletion step must still keep what it protects.
#[derive(Debug)]
struct RemoveEverything;

impl RetentionPolicy for RemoveEverything {
    fn retain(&self, packs: &[PackInfo], _now: DateTime<Utc>) -> Vec<Verdict> {
        packs
            .iter()
            .map(|p| Verdict {
                pack_id: p.id.clone(),
                keep: false,
                reason: "asked to remove".into(),
            })
            .collect()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn pruning_a_real_sink_touches_only_removable_packs_of_ours(
        n in 1usize..7,
        keep_last in proptest::option::of(0u32..4),
        max in proptest::option::of(0u32..4),
    ) {
        runtime().block_on(async {
            let t = tempfile::tempdir().unwrap();
            let root = t.path().join("sink");
            let outside = t.path().join("outside");
            let sink = LocalSink::new("local", &root).with_min_free_bytes(0);
            let ids: Vec<String> = (0..n).map(|i| format!("migration_pack_2026010{i}_000000")).collect();
            for (i, id) in ids.iter().enumerate() {
                let at = Utc.with_ymd_and_hms(2026, 1, 1 + i as u32, 0, 0, 0).unwrap();
                store(&sink, t.path(), "nightly", id, BackupKind::Full, Some(at)).await;
            }
            // Things that are not removable packs of ours.
            store(&sink, t.path(), "other", "migration_pack_20250101_000000", BackupKind::Full, None).await;
            let other_sink = LocalSink::new("x", &outside).with_min_free_bytes(0);
            store(&other_sink, t.path(), "nightly", "migration_pack_20200101_000000", BackupKind::Full, None).await;
            std::fs::create_dir_all(root.join("nightly/not_a_pack")).unwrap();
            std::fs::write(root.join("nightly/not_a_pack/data.txt"), "keep me").unwrap();
            std::fs::write(root.join("nightly/README"), "keep me too").unwrap();
            #[cfg(unix)]
            std::os::unix::fs::symlink(
                outside.join("nightly/migration_pack_20200101_000000"),
                root.join("nightly/migration_pack_20000101_000000"),
            )
            .unwrap();

            let before_outside = snapshot(&outside);
            let before = snapshot(&root);
            let rules = RetentionConfig { keep_last, max_packs: max, ..RetentionConfig::default() };
            let policy = Retention::new(rules, chrono_tz::UTC);
            let report = prune(&sink, "nightly", &policy, Utc::now(), false).await.unwrap();
            let after = snapshot(&root);

            // Only our packs were judged, the newest survived, and exactly the removals are gone.
            let judged: Vec<_> = report.packs.iter().map(|p| p.pack.id.clone()).collect();
            assert_eq!(judged, ids);
            assert!(report.packs.last().unwrap().keep);
            assert!(report.failures().is_empty(), "{:?}", report.failures());
            assert!(report.future.is_empty());
            let removed: BTreeSet<String> =
                report.packs.iter().filter(|p| !p.keep).map(|p| format!("nightly/{}", p.pack.id)).collect();
            assert_eq!(report.removed(), removed.len());
            // keep_last 0 is "not set": with max_packs, or alone, it never removes more.
            let expect_kept = match (keep_last.filter(|&k| k > 0), max.filter(|&m| m > 0)) {
                (None, None) => n,
                (Some(k), None) => (k as usize).clamp(1, n),
                (None, Some(m)) => (m as usize).min(n),
                (Some(k), Some(m)) => (k.min(m) as usize).clamp(1, n),
            };
            assert_eq!(report.kept(), expect_kept, "{report:?}");
            for (path, content) in &before {
                let in_removed = removed.iter().any(|r| path == r || path.starts_with(&format!("{r}/")));
                if in_removed {
                    assert!(!after.contains_key(path), "{path} should be gone");
                } else if !path.starts_with(".packrat-staging") {
                    assert_eq!(after.get(path), Some(content), "{path} was touched");
                }
            }
            assert_eq!(snapshot(&outside), before_outside, "something outside the sink was touched");

            // A dry run removes nothing.
            let before = snapshot(&root);
            let dry = prune(&sink, "nightly", &RemoveEverything, Utc::now(), true).await.unwrap();
            assert_eq!(snapshot(&root), before);
            assert!(dry.packs.iter().filter(|p| !p.keep).all(|p| p.outcome.as_deref() == Some("would remove")));
        });
    }

    #[test]
    fn pruning_keeps_chains_and_future_packs_whatever_the_policy_says(
        kinds in proptest::collection::vec(0u8..3, 1..9),
        future in 0usize..3,
    ) {
        runtime().block_on(async {
            let t = tempfile::tempdir().unwrap();
            let sink = LocalSink::new("local", t.path().join("sink")).with_min_free_bytes(0);
            let now = Utc::now();
            let mut packs = Vec::new();
            for (i, k) in kinds.iter().enumerate() {
                let kind = if *k == 0 { BackupKind::Full } else { BackupKind::Incremental };
                let at = now - TimeDelta::days(30) + TimeDelta::days(i as i64);
                packs.push((format!("nightly_{i:02}"), kind, at));
            }
            for i in 0..future {
                // Written by a host whose clock was a year ahead.
                let at = now + TimeDelta::days(365 + i as i64);
                packs.push((format!("skewed_{i:02}"), BackupKind::Incremental, at));
            }
            for (id, kind, at) in &packs {
                store(&sink, t.path(), "nightly", id, *kind, Some(*at)).await;
            }
            let report = prune(&sink, "nightly", &RemoveEverything, now, false).await.unwrap();
            let left: Vec<String> = sink.list(Some("nightly")).await.unwrap().into_iter().map(|p| p.id).collect();
            let kept: Vec<String> = report.packs.iter().filter(|p| p.keep).map(|p| p.pack.id.clone()).collect();
            assert_eq!(left, kept);
            // Expected: the newest real pack, the future ones, and the chain of the newest kept
            // incremental (the future ones are incrementals): back to the newest full pack, or
            // with no full pack everything from the oldest kept one.
            let n = kinds.len();
            let newest_full = kinds.iter().rposition(|k| *k == 0);
            let needs_chain = future > 0 || kinds[n - 1] != 0;
            let from = match (needs_chain, newest_full) {
                (false, _) => n - 1,
                (true, Some(f)) => f,
                (true, None) => n - 1,
            };
            let mut want: Vec<String> = (from..n).map(|i| format!("nightly_{i:02}")).collect();
            want.extend((0..future).map(|i| format!("skewed_{i:02}")));
            assert_eq!(kept, want, "{report:#?}");
            assert_eq!(report.future, (0..future).map(|i| format!("skewed_{i:02}")).collect::<Vec<_>>());
            assert_eq!(report.future_alert().is_some(), future > 0);
            if let Some((key, msg)) = report.future_alert() {
                assert_eq!(key, "retention:nightly:local:future-packs");
                assert!(msg.contains("skewed_00 ("), "{msg}");
                assert!(msg.contains("clock"), "{msg}");
            }
            // Applying the protections again (prune over the verdicts of Retention) changes
            // neither the verdicts nor the reasons.
            let dry = prune(&sink, "nightly", &Retention::new(
                RetentionConfig { keep_last: Some(1), ..RetentionConfig::default() },
                chrono_tz::UTC,
            ), now, true).await.unwrap();
            let listed: Vec<PackInfo> = dry.packs.iter().map(|p| p.pack.clone()).collect();
            let direct = Retention::new(RetentionConfig { keep_last: Some(1), ..RetentionConfig::default() }, chrono_tz::UTC)
                .select(&listed, now);
            for (d, v) in dry.packs.iter().zip(&direct) {
                assert_eq!((d.keep, &d.reason), (v.keep, &v.reason));
            }
            if let (true, Some(f)) = (needs_chain, newest_full) {
                let base = &report.packs[f];
                assert!(base.reason.contains("base of "), "{}", base.reason);
            }
        });
    }
}

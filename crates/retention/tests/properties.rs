//! Property tests: the newest pack always survives, keep sets match an independent model of the
//! rules, and pruning a real local sink touches nothing but removable packs of ours.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use backup_core::config::RetentionConfig;
use backup_core::sink::PackInfo;
use backup_core::{BackupKind, Compression, PackId, Sink, StagingPack};
use chrono::{DateTime, Datelike, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use retention::{Retention, prune};
use sink_local::LocalSink;

const ZONES: [Tz; 4] = [
    chrono_tz::UTC,
    chrono_tz::Asia::Shanghai,
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
];

fn info(plan: &str, id: String, at: DateTime<Utc>) -> PackInfo {
    PackInfo {
        sink: "s".into(),
        plan: plan.into(),
        path: format!("/b/{plan}/{id}").into(),
        id,
        kind: BackupKind::Full,
        job_id: None,
        started_at: at,
        finished_at: at,
        bytes: 0,
        artifacts: 0,
    }
}

/// An independent model of the rules: for each period rule, group by period, order the periods
/// newest first, take the first N and keep the newest pack of each.
fn model(rules: &RetentionConfig, tz: Tz, packs: &[PackInfo]) -> BTreeSet<String> {
    let mut sorted: Vec<&PackInfo> = packs.iter().collect();
    sorted.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| b.id.cmp(&a.id)));
    let Some(newest) = sorted.first() else {
        return BTreeSet::new();
    };
    let no_rules = rules.keep_within.is_none()
        && rules.keep_last.is_none()
        && rules.keep_hourly.is_none()
        && rules.keep_daily.is_none()
        && rules.keep_weekly.is_none()
        && rules.keep_monthly.is_none()
        && rules.keep_yearly.is_none();
    let mut keep: BTreeSet<String> = BTreeSet::new();
    if no_rules {
        keep.extend(sorted.iter().map(|p| p.id.clone()));
    } else {
        if let Some(n) = rules.keep_last {
            keep.extend(sorted.iter().take(n as usize).map(|p| p.id.clone()));
        }
        let key = |p: &PackInfo, which: usize| -> String {
            let l = p.started_at.with_timezone(&tz);
            match which {
                0 => format!("{}-{}-{} {}", l.year(), l.month(), l.day(), l.hour()),
                1 => format!("{}-{}-{}", l.year(), l.month(), l.day()),
                2 => format!("{:?}", l.iso_week()),
                3 => format!("{}-{}", l.year(), l.month()),
                _ => format!("{}", l.year()),
            }
        };
        let rules_by_period = [
            rules.keep_hourly,
            rules.keep_daily,
            rules.keep_weekly,
            rules.keep_monthly,
            rules.keep_yearly,
        ];
        for (which, n) in rules_by_period.iter().enumerate() {
            let Some(n) = n else { continue };
            // Newest pack of each period, periods in order of their newest pack.
            let mut seen: Vec<String> = Vec::new();
            let mut newest_of: BTreeMap<String, String> = BTreeMap::new();
            for p in &sorted {
                let k = key(p, which);
                if !newest_of.contains_key(&k) {
                    newest_of.insert(k.clone(), p.id.clone());
                    seen.push(k);
                }
            }
            for k in seen.iter().take(*n as usize) {
                keep.insert(newest_of[k].clone());
            }
        }
        if let Some(w) = rules.keep_within {
            let w = TimeDelta::from_std(w).unwrap();
            keep.extend(
                sorted
                    .iter()
                    .filter(|p| newest.started_at - p.started_at < w)
                    .map(|p| p.id.clone()),
            );
        }
    }
    if let Some(max) = rules.max_packs {
        let capped: BTreeSet<String> = sorted
            .iter()
            .filter(|p| keep.contains(&p.id))
            .take(max.max(1) as usize)
            .map(|p| p.id.clone())
            .collect();
        keep = capped;
    }
    keep.insert(newest.id.clone());
    keep
}

fn rules_strategy() -> impl Strategy<Value = RetentionConfig> {
    let n = || proptest::option::of(0u32..6);
    (
        proptest::option::of(0u64..2_000),
        n(),
        n(),
        n(),
        n(),
        n(),
        n(),
        proptest::option::of(0u32..12),
    )
        .prop_map(
            |(within_h, last, hourly, daily, weekly, monthly, yearly, max)| RetentionConfig {
                keep_within: within_h.map(|h| std::time::Duration::from_secs(h * 3600)),
                keep_last: last,
                keep_hourly: hourly,
                keep_daily: daily,
                keep_weekly: weekly,
                keep_monthly: monthly,
                keep_yearly: yearly,
                max_packs: max,
            },
        )
}

fn packs_strategy() -> impl Strategy<Value = Vec<PackInfo>> {
    // Minutes since 2025-01-01 over about two years; clusters make same-period packs likely.
    proptest::collection::vec((0i64..1_100_000, 0i64..3), 0..40).prop_map(|offsets| {
        let base = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        offsets
            .into_iter()
            .enumerate()
            .map(|(i, (m, plan))| {
                info(
                    ["a", "b", "a"][plan as usize],
                    format!("p{i:03}"),
                    base + TimeDelta::minutes(m),
                )
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn verdicts_match_the_model_and_keep_the_newest(
        packs in packs_strategy(),
        rules in rules_strategy(),
        zone in 0usize..4,
    ) {
        let tz = ZONES[zone];
        let verdicts = Retention::new(rules.clone(), tz).select(&packs);
        // One verdict per pack, in order.
        prop_assert_eq!(verdicts.len(), packs.len());
        for (v, p) in verdicts.iter().zip(&packs) {
            prop_assert_eq!(&v.pack_id, &p.id);
            prop_assert!(!v.reason.is_empty());
        }
        for plan in ["a", "b"] {
            let mine: Vec<PackInfo> = packs.iter().filter(|p| p.plan == plan).cloned().collect();
            let got: BTreeSet<String> = verdicts
                .iter()
                .zip(&packs)
                .filter(|(v, p)| p.plan == plan && v.keep)
                .map(|(v, _)| v.pack_id.clone())
                .collect();
            prop_assert_eq!(&got, &model(&rules, tz, &mine), "plan {}", plan);
            if let Some(newest) = mine.iter().max_by(|x, y| x.started_at.cmp(&y.started_at).then_with(|| x.id.cmp(&y.id))) {
                prop_assert!(got.contains(&newest.id), "newest pack {} of plan {} removed", newest.id, plan);
            }
        }
    }
}

/// Stores a real pack `id` of `plan` on `sink`.
async fn store(sink: &LocalSink, staging: &Path, plan: &str, id: &str) {
    let pid = PackId::new(id).unwrap();
    let claim = sink.stage(1, plan, &pid, 0).await.unwrap();
    let dir = claim.as_ref().map_or_else(|| staging.join(id), |c| c.to_path_buf());
    let pack = StagingPack::create(&dir, plan, pid, BackupKind::Full, chrono_tz::UTC).unwrap();
    let mut w = pack.artifact("notes/a.txt", "demo", "file", Compression::None).unwrap();
    std::io::Write::write_all(&mut w, id.as_bytes()).unwrap();
    w.finish().unwrap();
    sink.store(&pack.seal().unwrap(), 1).await.unwrap();
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn pruning_a_real_sink_touches_only_removable_packs_of_ours(
        n in 1usize..7,
        keep_last in proptest::option::of(0u32..4),
        max in proptest::option::of(0u32..4),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let t = tempfile::tempdir().unwrap();
            let root = t.path().join("sink");
            let outside = t.path().join("outside");
            let sink = LocalSink::new("local", &root).with_min_free_bytes(0);
            let ids: Vec<String> = (0..n).map(|i| format!("migration_pack_2026010{i}_000000")).collect();
            for id in &ids {
                store(&sink, t.path(), "nightly", id).await;
            }
            // Things that are not removable packs of ours.
            store(&sink, t.path(), "other", "migration_pack_20250101_000000").await;
            let other_sink = LocalSink::new("x", &outside).with_min_free_bytes(0);
            store(&other_sink, t.path(), "nightly", "migration_pack_20200101_000000").await;
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
            let removed: BTreeSet<String> =
                report.packs.iter().filter(|p| !p.keep).map(|p| format!("nightly/{}", p.pack.id)).collect();
            assert_eq!(report.removed(), removed.len());
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
            let dry = prune(&sink, "nightly", &Retention::new(
                RetentionConfig { keep_last: Some(0), max_packs: Some(1), ..RetentionConfig::default() },
                chrono_tz::UTC,
            ), Utc::now(), true).await.unwrap();
            assert_eq!(snapshot(&root), before);
            assert!(dry.packs.iter().filter(|p| !p.keep).all(|p| p.outcome.as_deref() == Some("would remove")));
        });
    }
}

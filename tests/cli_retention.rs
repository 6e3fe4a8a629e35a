//! Retention through the real binary, on real packs of a real SQLite plan: the chain of a kept
//! incremental pack survives every prune and `prune --dry-run` says why; a new full pack lets
//! the old chain go; keep counts of 0 and minute durations are config errors naming the file,
//! line and key; a pack dated in the future (written by a host with a wrong clock) is kept and
//! named by `prune` and `doctor`; `config check` warns about a plan that only runs
//! incrementals.

use packrat_e2e::{Env, redate_pack, seed_db, subdirs};
use serde_json::Value;

fn setup(retention: &str) -> (Env, std::path::PathBuf) {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 200, false);
    let sink = env.path("packs");
    env.standard_config(&db, &sink, "");
    let text = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{text}{retention}\n"));
    (env, sink)
}

fn run(env: &Env, kind: &[&str]) -> String {
    let mut args = vec!["run", "nightly", "--json"];
    args.extend_from_slice(kind);
    let run = env.run(&args).ok().json();
    assert_eq!(run["job"]["status"], "completed", "{run}");
    run["pack"]["id"].as_str().unwrap().to_string()
}

/// The `prune` line of pack `id`: (keep or remove, reason).
fn line<'a>(stdout: &'a str, id: &str) -> (&'a str, &'a str) {
    let l = stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(id))
        .unwrap_or_else(|| panic!("no line for {id} in:\n{stdout}"));
    let mut parts = l.split_whitespace();
    let what = parts.next().unwrap();
    let rest = l.trim_start()[what.len()..].trim_start()[id.len()..].trim();
    (what, rest)
}

#[test]
fn a_chain_of_real_packs_survives_and_prune_says_why() {
    let (env, sink) = setup("retention = { keep_last = 1 }");
    let full = run(&env, &[]);
    let incs: Vec<String> = (0..3).map(|_| run(&env, &["--incremental"])).collect();
    // Every run applied retention (keep_last = 1), and the chain stayed whole.
    let mut all = vec![full.clone()];
    all.extend(incs.iter().cloned());
    assert_eq!(subdirs(&sink.join("nightly")), all);

    let dry = env.run(&["prune", "--dry-run"]).ok();
    let out = &dry.stdout;
    assert!(
        out.contains("plan nightly on sink local (dry run): keep 4, would remove 0"),
        "{out}"
    );
    assert_eq!(
        line(out, &full),
        ("keep", "base of 3 incremental packs (restore --chain)")
    );
    for inc in &incs[..2] {
        assert_eq!(
            line(out, inc),
            (
                "keep",
                format!("needed by the chain of {} (restore --chain)", incs[2]).as_str()
            )
        );
    }
    assert_eq!(
        line(out, &incs[2]),
        ("keep", "newest pack (always kept), keep_last 1/1")
    );
    let json = env.run(&["prune", "--dry-run", "--json"]).ok().json();
    let packs = json[0]["packs"].as_array().unwrap();
    assert_eq!(packs[0]["reason"], "base of 3 incremental packs (restore --chain)");
    assert!(packs.iter().all(|p| p["keep"] == true), "{json}");
    assert_eq!(json[0]["future"], Value::Array(vec![]));

    // A new full pack starts a new chain: the next run's retention lets the old one go.
    let full2 = run(&env, &[]);
    assert_eq!(subdirs(&sink.join("nightly")), vec![full2.clone()]);
    let list = env.run(&["list", "nightly", "--json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

#[test]
fn zero_counts_and_minutes_are_config_errors_and_nothing_is_removed() {
    for (retention, key, says) in [
        (
            "retention = { keep_daily = 0 }",
            "keep_daily",
            "use `keep_last = 1` to keep only the newest pack",
        ),
        ("retention = { max_packs = 0 }", "max_packs", "max_packs = 0 is refused"),
        (
            "retention = { keep_within = \"1m30s\" }",
            "keep_within",
            "`m` means month here",
        ),
        (
            "retention = { keep_within = \"90s\" }",
            "keep_within",
            "`s` (seconds) is not a unit",
        ),
        (
            "retention = { keep_within = \"1M\" }",
            "keep_within",
            "months are written `m`",
        ),
    ] {
        let (env, sink) = setup("");
        let a = run(&env, &[]);
        let b = run(&env, &[]);
        let text = std::fs::read_to_string(env.config()).unwrap();
        env.write_config(&format!("{text}{retention}\n"));
        let line = text.lines().count() + 1;
        for args in [&["config", "check"][..], &["prune"][..], &["run", "nightly"][..]] {
            let r = env.run(args);
            assert_eq!(r.code, 2, "{args:?} {retention}: {}", r.all());
            let want = format!("packrat.toml, line {line}, key `plans.nightly.retention.{key}`");
            assert!(r.stderr.contains(&want), "{args:?} {retention}: {}", r.stderr);
            assert!(r.stderr.contains(says), "{args:?} {retention}: {}", r.stderr);
        }
        assert_eq!(subdirs(&sink.join("nightly")), vec![a, b], "{retention}");
    }
}

#[test]
fn a_pack_dated_in_the_future_is_kept_named_and_anchors_nothing() {
    let (env, sink) = setup("");
    let ids: Vec<String> = (0..3).map(|_| run(&env, &[])).collect();
    redate_pack(&sink.join("nightly").join(&ids[2]), "2099-12-05T04:00:00Z");
    env.run(&["verify", &format!("nightly/{}", ids[2]), "--deep"]).ok();
    let text = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{text}retention = {{ keep_last = 1 }}\n"));

    let dry = env.run(&["prune", "--dry-run"]).ok();
    let out = &dry.stdout;
    assert_eq!(
        line(out, &ids[2]),
        (
            "keep",
            "dated in the future (2099-12-05 04:00:00 UTC): clock skew on the host that wrote it? never removed by age"
        )
    );
    // The newest pack is the newest one that is not in the future.
    assert_eq!(line(out, &ids[1]), ("keep", "newest pack (always kept), keep_last 1/1"));
    assert_eq!(line(out, &ids[0]).0, "remove");
    assert!(
        out.contains(&format!(
            "warning: plan `nightly` on sink `local` has 1 pack(s) dated in the future: {} (2099-12-05 04:00:00 UTC)",
            ids[2]
        )),
        "{out}"
    );
    let json = env.run(&["prune", "--dry-run", "--json"]).ok().json();
    assert_eq!(json[0]["future"], serde_json::json!([ids[2]]));

    env.run(&["prune"]).ok();
    assert_eq!(subdirs(&sink.join("nightly")), ids[1..].to_vec());

    let doctor = env.run(&["doctor"]);
    assert!(
        doctor.stdout.contains(&format!(
            // doctor shows times in the plan's zone (Asia/Shanghai) with the offset.
            "packs dated in the future (nightly on local): 1 pack(s) started after now: {} (2099-12-05 12:00:00 +08:00)",
            ids[2]
        )),
        "{}",
        doctor.stdout
    );
}

#[test]
fn config_check_and_doctor_warn_about_a_plan_that_only_runs_incrementals() {
    let (env, _sink) = setup("incremental = \"0 * * * *\"\nretention = { keep_within = \"72h\" }");
    let check = env.run(&["config", "check"]).ok();
    assert!(
        check.stdout.contains(
            "warning: plan `nightly` only runs incremental backups (an `incremental` schedule and no `full` one), so \
             `restore --chain` can only go back as far as the retention window, 72h"
        ),
        "{}",
        check.stdout
    );
    assert!(
        check
            .stdout
            .contains("fix: add a periodic full backup to [plans.nightly]"),
        "{}",
        check.stdout
    );
    let doctor = env.run(&["doctor"]);
    assert!(
        doctor
            .stdout
            .contains("retention (nightly): plan `nightly` only runs incremental"),
        "{}",
        doctor.stdout
    );

    // With a full schedule too, no warning.
    let text = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&text.replace("incremental = ", "full = \"0 1 * * 0\"\nincremental = "));
    let check = env.run(&["config", "check"]).ok();
    assert!(!check.stdout.contains("warning"), "{}", check.stdout);
    let doctor = env.run(&["doctor"]);
    assert!(
        doctor.stdout.contains("retention (nightly): keep_within = \"72h\""),
        "{}",
        doctor.stdout
    );
}

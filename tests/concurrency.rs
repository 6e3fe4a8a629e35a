//! Concurrency through the real binary: five plans on one local sink run at once, round after
//! round, all succeed; two runs of one plan started together always race for its lock, and the
//! loser always exits 3 naming the winner's pid.
#![cfg(unix)]

use std::process::{Child, Stdio};

use packrat_e2e::crash::{assert_staging_clean, big_db, entries, listed};
use packrat_e2e::{Env, seed_db, subdirs};

fn spawn(env: &Env, plan: &str) -> Child {
    env.cmd()
        .args(["run", plan])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn packrat")
}

#[test]
fn five_plans_on_one_sink_twenty_rounds_all_succeed() {
    const PLANS: usize = 5;
    const ROUNDS: usize = 20;
    let env = Env::new();
    let mut config = format!(
        r#"state_dir = "state"

[sinks.local]
type = "local"
path = "{}"
min_free_mb = 1
"#,
        env.path("packs").display()
    );
    for p in 0..PLANS {
        let db = env.path(&format!("app{p}.db"));
        seed_db(&db, 20_000, p % 2 == 0);
        config.push_str(&format!(
            r#"
[sources.db{p}]
type = "sqlite"
path = "{}"

[plans.p{p}]
sources = ["db{p}"]
sinks = ["local"]
retention = {{ keep_last = 2 }}
"#,
            db.display()
        ));
    }
    env.write_config(&config);
    for round in 0..ROUNDS {
        let children: Vec<(usize, Child)> = (0..PLANS).map(|p| (p, spawn(&env, &format!("p{p}")))).collect();
        for (p, c) in children {
            let out = c.wait_with_output().expect("wait");
            assert_eq!(
                out.status.code(),
                Some(0),
                "round {round}, plan p{p}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // Every job completed; each plan keeps its two newest packs, all valid; nothing left over.
    let jobs = env.run(&["jobs", "--json", "--limit", "1000"]).ok().json();
    let jobs = jobs.as_array().expect("jobs");
    assert_eq!(jobs.len(), PLANS * ROUNDS);
    for j in jobs {
        assert_eq!(j["status"], "completed", "{j}");
    }
    for p in 0..PLANS {
        let plan = format!("p{p}");
        let packs = listed(&env, &plan, "local");
        assert_eq!(packs.len(), 2, "plan {plan}: {packs:?}");
        assert_eq!(subdirs(&env.path("packs").join(&plan)).len(), 2);
        for pk in &packs {
            env.run(&["verify", pk.path.to_str().expect("utf-8"), "--deep"]).ok();
        }
    }
    assert_staging_clean(&env.path("packs"), "after 100 concurrent runs");
    let locks: Vec<String> = entries(&env.path("state/locks"))
        .into_iter()
        .filter(|n| n.starts_with("job-"))
        .collect();
    assert!(locks.is_empty(), "job lock files left: {locks:?}");
}

#[test]
fn two_runs_of_one_plan_the_loser_exits_3_naming_the_winner_pid_every_time() {
    const RACES: usize = 24;
    let env = Env::new();
    let db = env.path("app.db");
    // Big enough that a run lasts far longer than it takes to start two processes.
    big_db(&db, 16);
    env.write_config(&format!(
        r#"state_dir = "state"
[sources.app_db]
type = "sqlite"
path = "{}"

[sinks.local]
type = "local"
path = "{}"
min_free_mb = 1

[plans.nightly]
sources = ["app_db"]
sinks = ["local"]
retention = {{ keep_last = 2 }}
"#,
        db.display(),
        env.path("packs").display()
    ));
    env.run(&["run", "nightly"]).ok();
    for race in 0..RACES {
        let a = spawn(&env, "nightly");
        let b = spawn(&env, "nightly");
        let (pa, pb) = (a.id(), b.id());
        let oa = a.wait_with_output().expect("wait");
        let ob = b.wait_with_output().expect("wait");
        let (winner, loser, loser_out) = match (oa.status.code(), ob.status.code()) {
            (Some(0), Some(3)) => (pa, pb, ob),
            (Some(3), Some(0)) => (pb, pa, oa),
            other => panic!(
                "race {race}: exactly one run must win and the other exit 3 (busy), got {other:?}:\n{}\n{}",
                String::from_utf8_lossy(&oa.stderr),
                String::from_utf8_lossy(&ob.stderr)
            ),
        };
        let msg = String::from_utf8_lossy(&loser_out.stderr);
        assert!(
            msg.contains("plan `nightly` is locked by another packrat process")
                && msg.contains(&format!("(pid {winner})")),
            "race {race}: the loser (pid {loser}) must name the winner's pid {winner}: {msg}"
        );
    }
    // Each race made exactly one pack, and no job of a loser exists.
    let jobs = env.run(&["jobs", "--json", "--limit", "1000"]).ok().json();
    assert_eq!(jobs.as_array().map(Vec::len), Some(RACES + 1));
    assert_staging_clean(&env.path("packs"), "after the races");
}

//! The audit trail and self-describing packs, through the real binaries: every operation is
//! recorded with its actor, the trail cannot be changed, and every pack carries its plan's
//! configuration (listed, checksummed, loadable as a config).

#![cfg(unix)]

use std::time::Duration;

use packrat_e2e::daemon::{Daemon, addr, http, wait_for};
use packrat_e2e::{Env, dump, seed_db};
use serde_json::Value;

fn trail(env: &Env, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", "--json"];
    args.extend_from_slice(extra);
    env.run(&args).ok().json().as_array().expect("an array").clone()
}

fn actions(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn runs_deletions_verifications_and_restores_are_recorded_and_the_trail_cannot_be_changed() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 200, true);
    env.standard_config(&db, &env.path("packs"), "");
    let cfg = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{cfg}retention = {{ keep_last = 1 }}\n"));
    assert!(trail(&env, &[]).is_empty());
    assert!(env.run(&["audit"]).ok().stdout.contains("no audit entries"));

    let first = env.run(&["run", "nightly", "--json"]).ok().json()["pack"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let second = env.run(&["run", "nightly", "--json"]).ok().json()["pack"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let verify = env
        .cmd()
        .env("USER", "mallory")
        .args(["verify", "--latest", "nightly", "--deep"])
        .status()
        .unwrap();
    assert!(verify.success());
    let target = env.path("restored.db");
    env.run(&["restore", "--latest", "nightly", "--to", target.to_str().unwrap()])
        .ok();
    assert_eq!(dump(&target), dump(&db));

    let all = trail(&env, &[]);
    assert_eq!(actions(&all), ["run", "run", "delete", "verify", "restore"], "{all:#?}");
    // The user as the system names it (`id -un`), whatever USER says: the run below sets a
    // false one.
    let id = std::process::Command::new("id").arg("-un").output().unwrap();
    let user = String::from_utf8(id.stdout).unwrap().trim().to_string();
    assert!(!user.is_empty());
    for e in &all {
        assert_eq!(e["plan"], "nightly", "{e}");
        let actor = e["actor"].as_str().unwrap();
        assert!(actor.contains(&format!("(user {user} on host ")), "{e}");
    }
    assert_eq!(all[0]["subject"], "job 1");
    assert_eq!(all[0]["detail"], "full backup, trigger manual");
    assert!(all[0]["actor"].as_str().unwrap().starts_with("packrat run ("));
    // The second run's retention removed the first pack, saying by which rule.
    assert_eq!(all[2]["subject"], first.as_str());
    let detail = all[2]["detail"].as_str().unwrap();
    assert_eq!(detail, "removed from sink local by retention: matches no keep rule");
    assert_eq!(all[3]["subject"], second.as_str());
    assert!(
        all[3]["detail"].as_str().unwrap().starts_with("deep verification at "),
        "{}",
        all[3]
    );
    assert!(all[3]["detail"].as_str().unwrap().ends_with(": ok"), "{}", all[3]);
    assert_eq!(all[4]["subject"], second.as_str());
    let detail = all[4]["detail"].as_str().unwrap();
    assert!(
        detail.contains("source app_db") && detail.contains(target.to_str().unwrap()),
        "{detail}"
    );
    // Ids increase; times do not go back.
    for w in all.windows(2) {
        assert!(w[0]["id"].as_i64() < w[1]["id"].as_i64());
        assert!(w[0]["at"].as_str() <= w[1]["at"].as_str());
    }

    // Filters.
    assert_eq!(actions(&trail(&env, &["--action", "delete"])), ["delete"]);
    assert_eq!(trail(&env, &["--plan", "weekly"]).len(), 0);
    assert_eq!(trail(&env, &["--since", "1h"]).len(), 5);
    assert_eq!(trail(&env, &["--since", "2999-01-01"]).len(), 0);
    let human = env.run(&["audit", "--since", "2000-01-01 00:00"]).ok().stdout;
    assert_eq!(human.lines().count(), 5, "{human}");
    assert!(
        human.contains(" CST ") && human.contains("delete") && human.contains(&first),
        "{human}"
    );
    for (bad, says) in [
        (&["audit", "--since", "yesterday"][..], "--since"),
        (&["audit", "--action", "explode"][..], "not an audit action"),
    ] {
        let r = env.run(bad);
        assert_eq!(r.code, 2, "{}", r.all());
        assert!(r.stderr.contains(says), "{}", r.stderr);
    }

    // Append-only, whoever opens the database.
    let conn = rusqlite::Connection::open(env.path("state/state.db")).unwrap();
    for sql in [
        "UPDATE audit SET actor = 'nobody'",
        "DELETE FROM audit WHERE action = 'delete'",
    ] {
        let e = conn.execute(sql, []).unwrap_err().to_string();
        assert!(e.contains("append-only"), "{sql}: {e}");
    }
    assert_eq!(trail(&env, &[]), all);
}

#[test]
fn every_pack_carries_its_plan_config_listed_checksummed_and_loadable() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 50, true);
    env.standard_config(&db, &env.path("packs"), "compress = true");
    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    let dir = std::path::PathBuf::from(run["pack"]["location"].as_str().unwrap());
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let entry = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == "packrat/plan.toml")
        .unwrap_or_else(|| panic!("no packrat/plan.toml in {manifest:#}"))
        .clone();
    assert_eq!(
        (entry["type"].as_str(), entry["source"].as_str()),
        (Some("plan-config"), Some("packrat"))
    );
    assert_eq!(manifest["tool_version"], env!("CARGO_PKG_VERSION"));
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    assert!(sums.lines().any(|l| l.ends_with("  packrat/plan.toml")), "{sums}");
    let st = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&dir)
        .status()
        .expect("sha256sum");
    assert!(st.success());

    // A config of its own: the plan, its source and sink, paths absolute.
    let plan = dir.join("packrat/plan.toml");
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(
        text.contains(&format!("packrat {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains(&format!("path = \"{}\"", db.display())), "{text}");
    assert!(
        text.contains("[plans.nightly]") && text.contains("compress = true"),
        "{text}"
    );
    assert!(text.contains("time_zone = \"Asia/Shanghai\""), "{text}");
    let check = std::process::Command::new(packrat_e2e::packrat_bin())
        .args(["--config", plan.to_str().unwrap(), "config", "check"])
        .env_remove("PACKRAT_CONFIG")
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // And `verify --deep` covers it like every artifact.
    env.run(&["verify", dir.to_str().unwrap(), "--deep"]).ok();
}

#[test]
fn the_daemon_records_its_config_at_start_and_the_api_mutations_with_the_client_address() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 50, true);
    std::fs::write(env.path("token"), "audit-token-7f1e\n").unwrap();
    let config = |extra: &str| {
        env.standard_config(&db, &env.path("packs"), extra);
        let cfg = std::fs::read_to_string(env.config()).unwrap();
        env.write_config(&format!(
            "{cfg}\n[api]\nbind = \"127.0.0.1:0\"\ntoken_file = \"token\"\n"
        ));
    };
    let start = || {
        let _ = std::fs::remove_file(env.path("state/packratd.addr"));
        let d = Daemon::start(&env, "packratd");
        let a = wait_for("the API address", Duration::from_secs(30), || addr(&env.path("state")));
        (d, a)
    };
    config("");
    let (mut d, a) = start();
    let (code, body) = http(&a, "POST", "/api/plans/nightly/run", Some("audit-token-7f1e"));
    assert_eq!(code, 202, "{body}");
    let (code, _) = http(&a, "POST", "/api/plans/weekly/run", Some("audit-token-7f1e"));
    assert_eq!(code, 404);
    // Refused for a wrong token: not a mutation, not recorded.
    let (code, _) = http(&a, "POST", "/api/plans/nightly/run", Some("wrong"));
    assert!(code == 401 || code == 403, "{code}");
    wait_for("the API's job", Duration::from_secs(60), || {
        trail(&env, &["--action", "run"]).first().cloned()
    });
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(d.wait(Duration::from_secs(60)).success(), "{}", d.output());
    // The same config again, then a changed one.
    let (mut d, _) = start();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait(Duration::from_secs(60));
    config("compress = true");
    let (mut d, _) = start();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.wait(Duration::from_secs(60));

    let starts = trail(&env, &["--action", "daemon-start"]);
    let details: Vec<&str> = starts.iter().map(|e| e["detail"].as_str().unwrap()).collect();
    assert_eq!(details.len(), 3, "{starts:#?}");
    assert!(details[0].ends_with("first start recorded"), "{details:?}");
    assert!(details[1].ends_with("unchanged since the last start"), "{details:?}");
    let hash = |d: &str| d.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(hash(details[0]), hash(details[1]));
    assert!(
        details[2].contains(&format!("changed since the last start (was {})", hash(details[1]))),
        "{details:?}"
    );
    assert_eq!(hash(details[0]).len(), 64);
    for e in &starts {
        assert_eq!(e["subject"], env.config().to_str().unwrap());
        assert!(e["actor"].as_str().unwrap().starts_with("packratd ("), "{e}");
    }

    let api = trail(&env, &["--action", "api"]);
    assert_eq!(api.len(), 2, "{api:#?}");
    for e in &api {
        assert!(e["actor"].as_str().unwrap().starts_with("api client 127.0.0.1:"), "{e}");
    }
    assert_eq!(api[0]["subject"], "POST /api/plans/nightly/run");
    assert_eq!(api[0]["plan"], "nightly");
    assert!(
        api[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("full backup queued as job "),
        "{}",
        api[0]
    );
    assert_eq!(api[1]["subject"], "POST /api/plans/weekly/run");
    assert!(
        api[1]["detail"].as_str().unwrap().starts_with("refused: "),
        "{}",
        api[1]
    );
    let runs = trail(&env, &["--action", "run"]);
    assert_eq!(runs[0]["detail"], "full backup, trigger api");
    assert!(
        runs[0]["actor"].as_str().unwrap().starts_with("packratd ("),
        "{}",
        runs[0]
    );
    // The token never shows.
    let all = env.run(&["audit", "--json"]).ok().stdout;
    assert!(!all.contains("audit-token-7f1e"));
}

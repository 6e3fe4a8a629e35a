//! End-to-end: a real `packratd` applies retention after a job and raises an alert naming a
//! pack dated in the future (written by a host with a wrong clock), through the alert manager;
//! once the pack is gone the next job's retention resolves it.

#![cfg(unix)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use packrat_e2e::{Env, packrat_bin, redate_pack, seed_db, subdirs};
use serde_json::Value;

const TOKEN: &str = "e2e-token-retention-41c7";
const KEY: &str = "retention:nightly:local:future-packs";

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn post(addr: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_whitespace().nth(1).unwrap_or("0").parse().unwrap()
}

fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < within, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn completed_jobs(env: &Env) -> usize {
    let jobs = env.run(&["jobs", "--json", "--limit", "100"]).ok().json();
    jobs.as_array()
        .unwrap()
        .iter()
        .filter(|j| j["status"] == "completed")
        .count()
}

fn firing(env: &Env) -> Vec<Value> {
    let list = env.run(&["alert", "list", "--json"]).ok().json();
    list["firing"].as_array().unwrap().clone()
}

#[test]
fn the_daemon_alerts_on_a_pack_dated_in_the_future_and_resolves_it() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 200, false);
    let sink = env.path("packs");
    std::fs::write(env.path("token"), format!("{TOKEN}\n")).unwrap();
    env.standard_config(&db, &sink, "");
    let text = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!(
        "{text}retention = {{ keep_last = 1 }}\n\n[api]\nbind = \"127.0.0.1:0\"\ntoken_file = \"token\"\n"
    ));
    // Two packs by hand; the second one as a host a century ahead would have dated it.
    let id = |r: Value| r["pack"]["id"].as_str().unwrap().to_string();
    let first = id(env.run(&["run", "nightly", "--json"]).ok().json());
    let skewed = id(env.run(&["run", "nightly", "--json"]).ok().json());
    redate_pack(&sink.join("nightly").join(&skewed), "2126-01-01T00:00:00Z");

    let log = std::fs::File::create(env.path("packratd.out")).unwrap();
    let bin: PathBuf = packrat_bin().with_file_name(format!("packratd{}", std::env::consts::EXE_SUFFIX));
    let _daemon = Daemon(
        Command::new(&bin)
            .arg("--config")
            .arg(env.config())
            .env_remove("PACKRAT_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}; build it with `cargo build -p packratd`", bin.display())),
    );
    let state = env.path("state");
    let api = wait_for("packratd.addr", Duration::from_secs(30), || {
        std::fs::read_to_string(state.join("packratd.addr"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    });

    // A job, then retention: the skewed pack is kept and alerted on, by name.
    assert_eq!(post(&api, "/api/plans/nightly/run"), 202);
    let alert = wait_for("the future-packs alert", Duration::from_secs(60), || {
        firing(&env).into_iter().find(|a| a["key"] == KEY)
    });
    let msg = alert["message"].as_str().unwrap();
    assert!(msg.contains(&format!("{skewed} (2126-01-01 00:00:00 UTC)")), "{msg}");
    assert_eq!(alert["severity"], "warning");
    wait_for("the first daemon job", Duration::from_secs(60), || {
        (completed_jobs(&env) == 3).then_some(())
    });
    let left = subdirs(&sink.join("nightly"));
    assert!(left.contains(&skewed) && !left.contains(&first), "{left:?}");
    let log = std::fs::read_to_string(env.path("packratd.out")).unwrap();
    assert!(log.contains("packs dated in the future"), "{log}");

    // The operator removes the bad pack; the next job's retention resolves the alert.
    std::fs::remove_dir_all(sink.join("nightly").join(&skewed)).unwrap();
    assert_eq!(post(&api, "/api/plans/nightly/run"), 202);
    wait_for("the alert to resolve", Duration::from_secs(60), || {
        (completed_jobs(&env) == 4 && !firing(&env).iter().any(|a| a["key"] == KEY)).then_some(())
    });
}

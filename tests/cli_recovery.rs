//! End-to-end: `packrat run` cancelled by SIGINT / SIGTERM ends `cancelled` with its staging
//! removed and the documented exit code; a job whose process died after its pack was in place is
//! recovered as `completed`; the busy message of a plan lock race always names the holder's pid.

#![cfg(unix)]

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use packrat_e2e::{Env, seed_db, subdirs};
use serde_json::Value;

fn signal(child: &Child, sig: Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, sig).unwrap();
}

/// Waits for `child` (panics after `within`); returns its exit code.
fn wait_code(child: &mut Child, within: Duration) -> i32 {
    let t0 = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if t0.elapsed() > within {
            let _ = child.kill();
            panic!("packrat did not exit within {within:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn job(env: &Env, id: &str) -> Value {
    env.run(&["job", id, "--json"]).ok().json()
}

/// Staging entries left on the local sink (directories and lock files).
fn staging(sink: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(sink.join(".packrat-staging")) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn sigint_and_sigterm_cancel_the_job_remove_its_staging_and_exit_130_and_143() {
    for (sig, code, name) in [(Signal::SIGINT, 130, "SIGINT"), (Signal::SIGTERM, 143, "SIGTERM")] {
        let env = Env::new();
        let db = env.path("app.db");
        // A rollback-journal database locked exclusively: the job waits inside the source.
        seed_db(&db, 200, false);
        let sink = env.path("packs");
        env.standard_config(&db, &sink, "busy_timeout = \"300s\"");
        let locker = rusqlite::Connection::open(&db).unwrap();
        locker.execute_batch("BEGIN EXCLUSIVE;").unwrap();

        let mut child = env
            .cmd()
            .args(["run", "nightly", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The job is in the middle of the backup: its staging directory exists and it waits in
        // the source (the staging is made before the source stage begins).
        wait_until("the job to wait in its source", Duration::from_secs(60), || {
            staging(&sink)
                .iter()
                .any(|n| n.starts_with("job_1_") && !n.ends_with(".lock"))
                && serde_json::from_str::<Value>(&env.run(&["job", "1", "--json"]).stdout)
                    .is_ok_and(|j| j["message"].as_str().is_some_and(|m| m.contains("app_db")))
        });
        signal(&child, sig);
        let exit = wait_code(&mut child, Duration::from_secs(30));
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(exit, code, "{name}: exit code; stderr: {stderr}");
        assert!(stderr.contains(&format!("{name} received")), "{stderr}");
        locker.execute_batch("COMMIT;").unwrap();

        let j = job(&env, "1");
        assert_eq!(j["status"], "cancelled", "{j}");
        let detail = j["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("cancelled by {name}"))
                && detail.contains("while backing up source app_db")
                && detail.contains("its staging was removed"),
            "{detail}"
        );
        assert!(j["finished_at"].is_string(), "{j}");
        assert_eq!(staging(&sink), Vec::<String>::new(), "{name}: staging removed");
        assert_eq!(subdirs(&sink.join("nightly")), Vec::<String>::new(), "{name}: no pack");
        // The run's JSON says so too, and the next run is not hindered.
        let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed["job"]["status"], "cancelled");
        let next = env.run(&["run", "nightly", "--json"]).ok().json();
        assert_eq!(next["job"]["status"], "completed");
    }
}

#[test]
fn a_job_killed_after_its_pack_was_in_place_is_recovered_as_completed() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 300, true);
    let sink = env.path("packs");
    env.standard_config(&db, &sink, "");
    let first = env.run(&["run", "nightly", "--json"]).ok().json();
    let pack_dir = first["pack"]["location"].as_str().unwrap().to_string();

    // What a SIGKILL right after the rename into place leaves: the row still `running`, the
    // pack under its final name, the job lock free.
    let state = rusqlite::Connection::open(env.path("state/state.db")).unwrap();
    state
        .execute_batch(
            "UPDATE jobs SET status = 'running', message = 'storing pack in sink local', progress = 85,
                 output_dir = NULL, bytes = 0, artifacts = 0, finished_at = NULL WHERE id = 1;
             DELETE FROM schedule_state;",
        )
        .unwrap();
    drop(state);

    let second = env.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(second["job"]["status"], "completed");
    let recovered = job(&env, "1");
    assert_eq!(recovered["status"], "completed", "{recovered}");
    assert!(
        recovered["message"].as_str().unwrap().contains("recovered"),
        "{recovered}"
    );
    assert_eq!(recovered["output_dir"], pack_dir.as_str());
    assert!(recovered["bytes"].as_u64().unwrap() > 0, "{recovered}");
    // Both packs are there and verify.
    let list = env.run(&["list", "nightly", "--json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    env.run(&["verify", "--latest", "nightly", "--deep"]).ok();

    // A job killed before its pack was in place stays interrupted.
    let state = rusqlite::Connection::open(env.path("state/state.db")).unwrap();
    state
        .execute_batch(
            "UPDATE jobs SET status = 'running', pack_id = 'migration_pack_20000101_000000', finished_at = NULL
             WHERE id = 2;",
        )
        .unwrap();
    drop(state);
    env.run(&["run", "nightly"]).ok();
    assert_eq!(job(&env, "2")["status"], "interrupted");
}

#[test]
fn the_loser_of_a_plan_lock_race_always_names_the_holder_pid() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 2000, true);
    let sink = env.path("packs");
    env.standard_config(&db, &sink, "");
    let busy = packrat_e2e::race_two_runs(24, || {
        let mut c = env.cmd();
        c.args(["run", "nightly"]);
        c
    });
    // Two runs started together overlap almost always; the check above must have run.
    assert!(busy > 0, "no race happened in 24 rounds");
}

//! The Windows build (`x86_64-pc-windows-gnu`) of packrat, run under Wine with Windows paths on a
//! mapped drive `D:` (the `wine` service of `cargo xtask ci` builds it and maps the drive).
//!
//! The databases are written and read back on the Linux side with SQLite, so the checks do not
//! trust the Windows build's own account of what it wrote.

use std::process::Stdio;

use packrat_e2e::wine::WinEnv;
use packrat_e2e::{dump, seed_db};

/// A SQLite source `app_db` at `D:\…\app.db`, a local sink at `D:\…\incrementalBackups`, plan
/// `nightly` keeping the last two packs, every path written as a Windows user writes it.
fn sqlite_config(env: &WinEnv) -> String {
    format!(
        r#"state_dir = '{state}'
time_zone = "Asia/Shanghai"

[sources.app_db]
type = "sqlite"
path = '{db}'

[sinks.local]
type = "local"
path = '{sink}'
min_free_mb = 1

[plans.nightly]
sources = ["app_db"]
sinks = ["local"]
retention = {{ keep_last = 2 }}
"#,
        state = env.win_path("state"),
        db = env.win_path("app.db"),
        sink = env.win_path("incrementalBackups"),
    )
}

#[test]
fn demo_runs_and_shows_plain_windows_paths() {
    let env = WinEnv::new("demo");
    let dir = env.win_path("demo");
    let run = env.run(&["demo", "--dir", &dir]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("deep verification: OK"), "{}", run.stdout);
    // Paths as Windows users write them: `D:\…`, never the verbatim `\\?\D:\…` form.
    assert!(
        run.stdout.contains(&format!(r"pack: {dir}\packs\demo\demo_pack_")),
        "{}",
        run.stdout
    );
    assert!(!run.all().contains(r"\\?\"), "{}", run.all());
    // The pack the Windows build wrote checks out with the Linux tools.
    let packs = env.unix_path(r"demo\packs\demo");
    let pack = std::fs::read_dir(&packs).unwrap().next().unwrap().unwrap().path();
    let sums = std::process::Command::new("sha256sum")
        .args(["--quiet", "-c", "SHA256SUMS"])
        .current_dir(&pack)
        .output()
        .unwrap();
    assert!(sums.status.success(), "{}", String::from_utf8_lossy(&sums.stdout));
    let orders = |db: &std::path::Path| -> (String, i64) {
        let c = rusqlite::Connection::open(db).unwrap();
        let ok = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        (
            ok,
            c.query_row("SELECT count(*) FROM orders", [], |r| r.get(0)).unwrap(),
        )
    };
    let (ok, copied) = orders(&pack.join("sqlite/app_db.db"));
    assert_eq!(ok, "ok");
    assert!(copied > 0);
    assert_eq!(orders(&env.unix_path(r"demo\app.db")).1, copied);
}

#[test]
fn a_sqlite_plan_on_windows_paths_runs_lists_verifies_restores_and_prunes() {
    let env = WinEnv::new("sqlite");
    let db = env.unix_path("app.db");
    seed_db(&db, 3_000, true);
    env.write_config(&sqlite_config(&env));
    let before = dump(&db);

    for n in 1..=3 {
        let run = env.run(&["run", "nightly", "--json"]);
        assert_eq!(run.code, 0, "run {n}: {}", run.all());
        let job = run.json();
        assert_eq!(job["job"]["status"], "completed", "{job}");
        let location = job["pack"]["location"].as_str().unwrap().to_string();
        assert!(
            location.starts_with(&env.win_path(r"incrementalBackups\nightly\migration_pack_")),
            "{location}"
        );
    }
    // keep_last = 2, applied after every run.
    let packs = packrat_e2e::subdirs(&env.unix_path(r"incrementalBackups\nightly"));
    assert_eq!(packs.len(), 2, "{packs:?}");

    let jobs = env.run(&["jobs", "--json"]);
    assert_eq!(jobs.code, 0, "{}", jobs.all());
    let jobs = jobs.json();
    let jobs = jobs.as_array().expect("a list of jobs");
    assert_eq!(jobs.len(), 3);
    assert!(jobs.iter().all(|j| j["status"] == "completed"), "{jobs:?}");
    let status = env.run(&["status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.all());
    let status = status.json();
    assert_eq!(status["statistics"]["success_count"], 3, "{status}");
    assert_eq!(
        status["plans"]["nightly"]["last_job"]["status"], "completed",
        "{status}"
    );
    assert_eq!(
        jobs[0]["output_dir"].as_str().map(|p| p.starts_with(r"D:\")),
        Some(true),
        "{jobs:?}"
    );

    let verify = env.run(&["verify", "--latest", "nightly", "--deep"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
    assert!(verify.stdout.starts_with("OK"), "{}", verify.stdout);

    // Restore, refuse an existing target without --overwrite, then overwrite.
    let target = env.win_path(r"restore\app.db");
    std::fs::create_dir_all(env.unix_path("restore")).unwrap();
    let restore = env.run(&["restore", "--latest", "nightly", "--to", &target]);
    assert_eq!(restore.code, 0, "{}", restore.all());
    assert_eq!(dump(&env.unix_path(r"restore\app.db")), before);
    std::fs::write(env.unix_path(r"restore\app.db"), b"not a database").unwrap();
    let again = env.run(&["restore", "--latest", "nightly", "--to", &target]);
    assert_eq!(again.code, 1, "{}", again.all());
    assert!(again.stderr.contains("--overwrite"), "{}", again.stderr);
    assert_eq!(
        std::fs::read(env.unix_path(r"restore\app.db")).unwrap(),
        b"not a database"
    );
    let overwrite = env.run(&["restore", "--latest", "nightly", "--to", &target, "--overwrite"]);
    assert_eq!(overwrite.code, 0, "{}", overwrite.all());
    assert_eq!(dump(&env.unix_path(r"restore\app.db")), before);

    // prune with the same rule keeps both and says why.
    let prune = env.run(&["prune", "nightly"]);
    assert_eq!(prune.code, 0, "{}", prune.all());
    assert_eq!(
        packrat_e2e::subdirs(&env.unix_path(r"incrementalBackups\nightly")),
        packs
    );
    assert!(prune.stdout.contains("keep"), "{}", prune.stdout);
}

#[test]
fn config_check_names_the_line_and_key_of_an_error() {
    let env = WinEnv::new("config");
    let text = sqlite_config(&env).replace("min_free_mb = 1", "min_free_mb = 1\nmin_fre_mb = 2");
    env.write_config(&text);
    let check = env.run(&["config", "check"]);
    assert_eq!(check.code, 2, "{}", check.all());
    assert!(
        check.stderr.contains("line 12, key `sinks.local.min_fre_mb`"),
        "{}",
        check.stderr
    );
    assert!(check.stderr.contains("packrat.toml"), "{}", check.stderr);
}

#[test]
fn a_second_run_of_a_running_plan_exits_3_naming_the_holder() {
    let env = WinEnv::new("lock");
    seed_db(&env.unix_path("app.db"), 200_000, true);
    env.write_config(&sqlite_config(&env));
    let busy = packrat_e2e::race_two_runs(6, || env.cmd(&["run", "nightly"]));
    assert!(
        busy > 0,
        "no run ever found the plan locked in 6 rounds of two concurrent runs"
    );
}

#[test]
fn a_run_killed_midway_leaves_no_pack_and_the_next_run_is_clean() {
    let env = WinEnv::new("kill");
    seed_db(&env.unix_path("app.db"), 400_000, true);
    env.write_config(&sqlite_config(&env));
    let staging = env.unix_path(r"incrementalBackups\.packrat-staging");
    let mut child = env
        .cmd(&["run", "nightly"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once its staging pack exists (the Windows process is the `wine` process itself).
    let mut killed_while_running = false;
    for _ in 0..3000 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::fs::read_dir(&staging).is_ok_and(|mut d| d.next().is_some()) {
            child.kill().unwrap();
            killed_while_running = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.wait().unwrap();
    assert!(
        killed_while_running,
        "the run finished before its staging pack was seen"
    );
    let nightly = env.unix_path(r"incrementalBackups\nightly");
    assert!(packrat_e2e::subdirs(&nightly).is_empty(), "a killed run left a pack");

    // An empty free claim lock, as a job killed between creating its lock file and writing its
    // pid leaves one: the next run removes it (file identities are compared on Windows too).
    let empty_orphan = staging.join("job_999_0_orphan.lock");
    std::fs::write(&empty_orphan, b"").unwrap();
    let run = env.run(&["run", "nightly", "--json"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(packrat_e2e::subdirs(&nightly).len(), 1);
    assert!(
        !empty_orphan.exists(),
        "an empty free lock file is left after the next run"
    );
    // The killed job is recorded as interrupted, and its staging is gone.
    let jobs = env.run(&["jobs", "--json"]).json();
    let statuses: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["completed", "interrupted"], "{jobs}");
    let left = || -> Vec<String> {
        std::fs::read_dir(&staging)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    // No half-written pack is left. The killed job's claim lock may outlive it for a moment:
    // wineserver (like Windows after TerminateProcess) releases a killed process's locks
    // asynchronously, and packrat never removes a lock it cannot take. The run after removes it.
    let after_next = left();
    assert!(
        after_next.iter().all(|n| n.ends_with(".lock")),
        "staging left behind: {after_next:?}"
    );
    if !after_next.is_empty() {
        let again = env.run(&["run", "nightly"]);
        assert_eq!(again.code, 0, "{}", again.all());
        assert!(left().is_empty(), "staging left behind after two runs: {:?}", left());
    }
    let verify = env.run(&["verify", "--latest", "nightly", "--deep"]);
    assert_eq!(verify.code, 0, "{}", verify.all());
}

/// packratd.exe under Wine: starts, fires the scheduled run of a new plan (its last slot, a
/// minute old at most), serves the API, and stops gracefully on `packrat daemon stop`
/// (`POST /api/shutdown`, the path SIGTERM takes on Linux), exit code 0, the job completed, its
/// pack on `D:`.
#[test]
fn packratd_starts_runs_the_schedule_and_stops_on_request() {
    use packrat_e2e::daemon::{http, wait_for};
    use std::time::Duration;
    const TOKEN: &str = "wine-e2e-token-51c2";
    let env = WinEnv::new("daemon");
    seed_db(&env.unix_path("app.db"), 2_000, true);
    std::fs::write(env.unix_path("token"), format!("{TOKEN}\n")).unwrap();
    let config = sqlite_config(&env).replace("retention = {", "full = \"* * * * *\"\nretention = {")
        + &format!(
            "\n[daemon]\ngrace_period = \"3s\"\n\n[api]\nbind = \"127.0.0.1:0\"\ntoken_file = '{}'\n",
            env.win_path("token")
        );
    env.write_config(&config);
    let log = std::fs::File::create(env.unix_path("packratd.log")).unwrap();
    let mut child = env
        .daemon()
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start packratd.exe under wine");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let guard = Kill(&mut child);
    let log_text = || std::fs::read_to_string(env.unix_path("packratd.log")).unwrap_or_default();
    let api = wait_for("packratd.exe's API address", Duration::from_secs(120), || {
        std::fs::read_to_string(env.unix_path(r"state\packratd.addr"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    });
    assert_eq!(
        http(&api, "GET", "/healthz", None),
        (200, "ok\n".to_string()),
        "{}",
        log_text()
    );
    let job = wait_for("the scheduled job to complete", Duration::from_secs(180), || {
        let (code, body) = http(&api, "GET", "/api/jobs", None);
        (code == 200).then_some(())?;
        let jobs: serde_json::Value = serde_json::from_str(&body).ok()?;
        jobs.as_array()?.iter().find(|j| j["status"] == "completed").cloned()
    });
    assert_eq!(job["plan"], "nightly", "{job}");
    assert_eq!(job["trigger"], "schedule", "a scheduled run, not a manual one: {job}");
    assert_eq!(
        http(&api, "POST", "/api/shutdown", None).0,
        401,
        "shutdown needs the token"
    );
    // The `.bat stop` of the MES: `packrat daemon stop` (POST /api/shutdown with the token from
    // the config, then it waits for the exit).
    let stop = env.run(&["daemon", "stop"]);
    assert_eq!(stop.code, 0, "{}", stop.all());
    let status = wait_for("packratd.exe to exit", Duration::from_secs(60), || {
        guard.0.try_wait().unwrap()
    });
    assert!(status.success(), "packratd.exe exited with {status}: {}", log_text());
    drop(guard);
    // The pack is on D:, whole (checked by the Linux side's SQLite), and the record says so.
    let nightly = env.unix_path(r"incrementalBackups\nightly");
    assert!(!packrat_e2e::subdirs(&nightly).is_empty(), "no pack: {}", log_text());
    let jobs = env.run(&["jobs", "--json"]).json();
    let jobs = jobs.as_array().unwrap();
    assert!(
        jobs.iter().any(|j| j["id"] == job["id"] && j["status"] == "completed"),
        "{jobs:?}"
    );
    // A later slot's job, if one started before the stop, was not left `running`.
    assert!(jobs.iter().all(|j| j["status"] != "running"), "{jobs:?}");
    let st = env.run(&["status"]);
    assert_eq!(st.code, 0, "{}", st.all());
    assert!(
        !st.stdout.contains("daemon: running"),
        "the daemon stopped: {}",
        st.stdout
    );
}

/// packratd.exe as a Windows service, through Wine's service manager: `service install` (with
/// the config), `start`, `status` (running, its pid), a scheduled job completes, `stop` (the
/// daemon's graceful shutdown, logged as asked for by the service manager), `uninstall`; and
/// the errors say what to do.
#[test]
fn packratd_runs_as_a_windows_service_installed_started_stopped_and_removed() {
    use packrat_e2e::daemon::wait_for;
    use std::time::Duration;
    let env = WinEnv::new("service");
    seed_db(&env.unix_path("app.db"), 2_000, true);
    let config = sqlite_config(&env).replace("retention = {", "full = \"* * * * *\"\nretention = {")
        + "\n[daemon]\ngrace_period = \"3s\"\n\n[api]\nbind = \"127.0.0.1:0\"\n";
    env.write_config(&config);
    let service_log = || -> String {
        std::fs::read_dir(env.unix_path(r"state\logs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("packratd.log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    };
    let service = |args: &[&str]| {
        let mut a = vec!["service"];
        a.extend_from_slice(args);
        packrat_e2e::run_guarded(env.daemon().args(&a), Duration::from_secs(180))
    };
    struct Uninstall<'a>(&'a dyn Fn(&[&str]) -> packrat_e2e::Run);
    impl Drop for Uninstall<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["uninstall"]);
        }
    }
    let st = service(&["status"]);
    assert_eq!(st.code, 1, "not installed yet: {}", st.all());
    assert!(st.stderr.contains("service install"), "{}", st.all());
    let inst = service(&["install"]);
    assert_eq!(inst.code, 0, "{}", inst.all());
    let _uninstall = Uninstall(&service);
    assert!(inst.stdout.contains(&env.win_path("packrat.toml")), "{}", inst.stdout);
    let again = service(&["install"]);
    assert_eq!(again.code, 1, "{}", again.all());
    assert!(again.stderr.contains("installed already"), "{}", again.all());
    let st = service(&["status"]);
    assert_eq!(
        (st.code, st.stdout.trim()),
        (1, "service packratd: stopped"),
        "{}",
        st.all()
    );

    let started = service(&["start"]);
    assert_eq!(
        (started.code, started.stdout.trim()),
        (0, "service packratd started"),
        "{}\nlog:\n{}",
        started.all(),
        service_log()
    );
    let st = service(&["status"]);
    assert_eq!(st.code, 0, "{}", st.all());
    assert!(
        st.stdout.starts_with("service packratd: running (pid "),
        "{}",
        st.stdout
    );
    // The service runs the daemon: the plan's schedule fires and the job completes.
    let job = wait_for(
        "a scheduled job of the service to complete",
        Duration::from_secs(180),
        || {
            let jobs = env.run(&["jobs", "--json"]);
            (jobs.code == 0).then_some(())?;
            jobs.json()
                .as_array()?
                .iter()
                .find(|j| j["status"] == "completed")
                .cloned()
        },
    );
    assert_eq!(job["trigger"], "schedule", "{job}");

    let stopped = service(&["stop"]);
    assert_eq!(
        (stopped.code, stopped.stdout.trim()),
        (0, "service packratd stopped"),
        "{}",
        stopped.all()
    );
    let log = service_log();
    assert!(
        log.contains("stop requested by=\"the Windows service manager\"") && log.contains("packratd stopped"),
        "{log}"
    );
    let jobs = env.run(&["jobs", "--json"]).json();
    assert!(
        jobs.as_array().unwrap().iter().all(|j| j["status"] != "running"),
        "{jobs}"
    );
    let removed = service(&["uninstall"]);
    assert_eq!(
        (removed.code, removed.stdout.trim()),
        (0, "service packratd removed"),
        "{}",
        removed.all()
    );
    let st = service(&["status"]);
    assert_eq!(st.code, 1, "{}", st.all());
}

/// The CIFS replica on Windows: a path on a local drive (here `D:`, a drive Wine maps to a Linux
/// directory, which Windows resolves as local) is refused by the mount check and by a run, with
/// the path as the user wrote it, where it resolves to, and what to give instead; nothing is
/// written there.
#[test]
fn a_replica_on_a_local_drive_is_refused_naming_the_path_and_the_fix() {
    let env = WinEnv::new("replica");
    seed_db(&env.unix_path("app.db"), 200, true);
    let replica = env.win_path("replica");
    std::fs::create_dir_all(env.unix_path("replica")).unwrap();
    let config = sqlite_config(&env).replace("sinks = [\"local\"]", "sinks = [\"local\", \"windows\"]")
        + &format!("\n[sinks.windows]\ntype = \"cifs-replica\"\npath = '{replica}'\n");
    env.write_config(&config);
    let check = env.run(&["mount-check", &replica]);
    assert_eq!(check.code, 1, "{}", check.all());
    let expected = format!("{replica} is not on a network share (it resolves to {replica}, a local drive)");
    assert!(check.all().contains(&expected), "{}", check.all());
    assert!(check.all().contains(r"\\server\share\dir"), "{}", check.all());
    let run = env.run(&["run", "nightly"]);
    assert_ne!(run.code, 0, "{}", run.all());
    assert!(
        run.stderr.contains(&expected) && run.stderr.contains("sinks.windows.path"),
        "{}",
        run.all()
    );
    assert_eq!(
        std::fs::read_dir(env.unix_path("replica")).unwrap().count(),
        0,
        "nothing written to the refused replica"
    );
}

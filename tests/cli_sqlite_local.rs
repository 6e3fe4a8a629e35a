//! The happy path through the real binary: backup, list, status, verify, restore, by hand too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use packrat_e2e::{Env, dump, seed_db, subdirs};

#[test]
fn backup_verify_restore_round_trip() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 5_000, true);
    env.standard_config(&db, &env.path("packs"), "");
    let before = dump(&db);

    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(run["job"]["status"], "completed");
    assert_eq!(run["job"]["message"], "backup completed");
    let pack_dir = run["pack"]["location"].as_str().expect("pack path").to_string();
    let pack_id = run["pack"]["id"].as_str().expect("id").to_string();
    assert!(pack_id.starts_with("migration_pack_"), "{pack_id}");
    assert!(pack_dir.ends_with(&format!("packs/nightly/{pack_id}")), "{pack_dir}");

    // The human form prints job id and pack path.
    let human = env.run(&["run", "nightly"]).ok();
    assert!(human.stdout.contains("job 2: completed"), "{}", human.stdout);
    assert!(
        human.stdout.contains("packs/nightly/migration_pack_"),
        "{}",
        human.stdout
    );

    let verify = env.run(&["verify", "--latest", "nightly", "--deep"]).ok();
    assert!(verify.stdout.starts_with("OK"), "{}", verify.stdout);
    env.run(&["verify", &pack_dir, "--deep", "--json"]).ok();
    env.run(&["verify", &format!("nightly/{pack_id}")]).ok();

    let list = env.run(&["list", "nightly", "--json"]).ok().json();
    assert_eq!(list.as_array().map(Vec::len), Some(2));

    // Restore with packrat, and by hand (the artifact is a plain SQLite file).
    let target = env.path("restored.db");
    env.run(&["restore", &pack_dir, "--to", target.to_str().unwrap()]).ok();
    assert_eq!(dump(&target), before);
    assert_eq!(dump(&std::path::Path::new(&pack_dir).join("sqlite/app_db.db")), before);

    // Restore refuses to overwrite, unless told to.
    let again = env.run(&["restore", &pack_dir, "--to", target.to_str().unwrap()]);
    assert_eq!(again.code, 1, "{}", again.all());
    assert!(again.stderr.contains("--overwrite"), "{}", again.stderr);
    env.run(&[
        "restore",
        "--latest",
        "nightly",
        "--to",
        target.to_str().unwrap(),
        "--overwrite",
    ])
    .ok();
    assert_eq!(dump(&target), before);
}

#[test]
fn compressed_pack_restores_with_standard_tools_and_status_counts() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 2_000, false);
    env.standard_config(&db, &env.path("packs"), "compress = true");
    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    let pack = std::path::PathBuf::from(run["pack"]["location"].as_str().unwrap());
    let art = pack.join("sqlite/app_db.db.zst");
    assert!(art.exists());
    // zstd -d restores a database that sqlite3 can read.
    let out = env.path("by_hand.db");
    let st = std::process::Command::new("zstd")
        .args(["-q", "-d", art.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .status()
        .expect("zstd CLI (cargo xtask ci installs it)");
    assert!(st.success());
    assert_eq!(dump(&out), dump(&db));
    // sha256sum -c verifies the pack by hand.
    let st = std::process::Command::new("sha256sum")
        .args(["--quiet", "-c", "SHA256SUMS"])
        .current_dir(&pack)
        .status()
        .expect("sha256sum");
    assert!(st.success());

    let status = env.run(&["status", "--json"]).ok().json();
    let s = &status["statistics"];
    assert_eq!(s["total_backups"], 1);
    assert_eq!(s["success_count"], 1);
    assert_eq!(s["failure_count"], 0);
    assert_eq!(s["success_rate"], 100.0);
    assert!(s["total_size_mb"].as_f64().unwrap() > 0.0);
    assert_eq!(s["active_jobs"], 0);
    assert_eq!(status["plans"]["nightly"]["last_job"]["status"], "completed");
    let jobs = env.run(&["jobs", "--json"]).ok().json();
    assert_eq!(jobs[0]["output_dir"], pack.to_str().unwrap());
}

#[test]
fn flipping_any_byte_fails_verify_and_names_the_file() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 500, true);
    env.standard_config(&db, &env.path("packs"), "compress = true");
    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    let pack = std::path::PathBuf::from(run["pack"]["location"].as_str().unwrap());
    for file in ["sqlite/app_db.db.zst", "manifest.json", "SHA256SUMS"] {
        let path = pack.join(file);
        let orig = std::fs::read(&path).unwrap();
        for pos in [0, orig.len() / 3, orig.len() - 2] {
            let mut bad = orig.clone();
            bad[pos] ^= 0x20;
            std::fs::write(&path, &bad).unwrap();
            let v = env.run(&["verify", pack.to_str().unwrap()]);
            assert_eq!(v.code, 1, "flip at {pos} of {file} not detected: {}", v.all());
            let named = v.stdout.contains(file) || (file == "SHA256SUMS" && v.stdout.contains("manifest.json"));
            assert!(named, "{file} not named: {}", v.stdout);
            std::fs::write(&path, &orig).unwrap();
        }
    }
    env.run(&["verify", pack.to_str().unwrap(), "--deep"]).ok();
}

#[test]
fn backup_while_a_writer_inserts_holds_a_consistent_prefix() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 20_000, true);
    env.standard_config(&db, &env.path("packs"), "");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let db = db.clone();
        std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Pairs in one transaction: a torn copy would show an odd count of `w` rows.
                let tx = c.unchecked_transaction().unwrap();
                tx.execute("INSERT INTO t(payload, n) VALUES ('w', ?1)", [i]).unwrap();
                tx.execute("INSERT INTO t(payload, n) VALUES ('w', ?1)", [i]).unwrap();
                tx.commit().unwrap();
                i += 1;
            }
            i
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(100));
    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 0);
    let copy = std::path::PathBuf::from(run["pack"]["location"].as_str().unwrap()).join("sqlite/app_db.db");
    let c = rusqlite::Connection::open(&copy).unwrap();
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
    let (n, max_id): (i64, i64) = c
        .query_row("SELECT count(*), max(id) FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(n, max_id, "ids must be a gap-free prefix");
    let w: i64 = c
        .query_row("SELECT count(*) FROM t WHERE payload = 'w'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(w % 2, 0, "a transaction was torn");
}

#[test]
fn demo_runs_a_real_backup_on_the_embedded_default() {
    let env = Env::new();
    let dir = env.path("demo");
    let out = std::process::Command::new(packrat_e2e::packrat_bin())
        .args(["demo", "--dir", dir.to_str().unwrap()])
        .env_remove("PACKRAT_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("deep verification: OK"), "{stdout}");
    assert_eq!(subdirs(&dir.join("packs/demo")).len(), 1);
    // Running it again adds a second pack.
    let out = std::process::Command::new(packrat_e2e::packrat_bin())
        .args(["demo", "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(subdirs(&dir.join("packs/demo")).len(), 2);
}

//! The replica through the real binary, against the real Samba share that `cargo xtask ci`
//! mounts through FUSE (`PACKRAT_TEST_SMB_MOUNT`, type `PACKRAT_TEST_SMB_FSTYPE`): byte-identical
//! replicas, a share that is not mounted (or of the wrong type), a copy killed midway.
#![cfg(target_os = "linux")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use packrat_e2e::{Env, seed_db};

/// A fresh directory on the test share, removed on drop. Fails (never skips) without the share.
struct Share {
    dir: PathBuf,
    backing: Option<PathBuf>,
    fs_type: String,
}

impl Share {
    fn new(tag: &str) -> Share {
        let mount = std::env::var_os("PACKRAT_TEST_SMB_MOUNT").unwrap_or_else(|| {
            panic!(
                "PACKRAT_TEST_SMB_MOUNT is not set: start the Samba test share with `cargo xtask ci` \
                 (or `cargo xtask samba start` for local runs)"
            )
        });
        let fs_type = std::env::var("PACKRAT_TEST_SMB_FSTYPE").unwrap_or_else(|_| "fuse.smbnetfs".into());
        let name = format!("e2e_{tag}_{}", std::process::id());
        let dir = PathBuf::from(mount).join(&name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {} on the test share: {e}", dir.display()));
        let backing = std::env::var_os("PACKRAT_TEST_SMB_BACKING").map(|b| PathBuf::from(b).join(&name));
        Share { dir, backing, fs_type }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Config: sqlite source, local sink `local`, replica sink `windows` at `replica` (with extra
/// keys), plan `nightly` to both.
fn config(env: &Env, db: &Path, replica: &str, extra: &str, plan_extra: &str) {
    env.write_config(&format!(
        r#"state_dir = "state"
time_zone = "Asia/Shanghai"

[sources.app_db]
type = "sqlite"
path = "{}"

[sinks.local]
type = "local"
path = "{}"
min_free_mb = 1

[sinks.windows]
type = "cifs-replica"
{replica}
{extra}

[plans.nightly]
sources = ["app_db"]
sinks = ["local", "windows"]
{plan_extra}
"#,
        db.display(),
        env.path("packs").display()
    ));
}

/// Every file below `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_replica_of_a_real_pack_is_byte_identical_and_verifies() {
    let share = Share::new("ok");
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 20_000, true);
    let allow = format!("allowed_fs_types = [\"{}\"]", share.fs_type);
    config(&env, &db, &format!("path = \"{}\"", share.dir.display()), &allow, "");

    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(run["job"]["status"], "completed");
    assert_eq!(run["job"]["message"], "backup completed (synced)");
    assert_eq!(run["job"]["replication"], "succeeded");
    let local = PathBuf::from(run["pack"]["location"].as_str().unwrap());
    let id = run["pack"]["id"].as_str().unwrap().to_string();
    let replica = PathBuf::from(run["replicas"][0]["location"].as_str().unwrap());
    assert_eq!(replica, fs::canonicalize(share.dir.join("nightly").join(&id)).unwrap());

    // Byte-identical, on the share and on the server's disk; plus the replication record.
    let want = files(&local);
    assert!(want.contains(&"sqlite/app_db.db".to_string()), "{want:?}");
    let mut got = files(&replica);
    assert!(got.contains(&"replication_manifest.json".to_string()), "{got:?}");
    got.retain(|f| f != "replication_manifest.json");
    assert_eq!(got, want);
    for f in &want {
        let bytes = fs::read(local.join(f)).unwrap();
        assert!(fs::read(replica.join(f)).unwrap() == bytes, "{f} differs on the share");
        if let Some(b) = &share.backing {
            assert!(
                fs::read(b.join("nightly").join(&id).join(f)).unwrap() == bytes,
                "{f} differs on the server"
            );
        }
    }
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(replica.join("replication_manifest.json")).unwrap()).unwrap();
    assert_eq!(record["pack_id"], id.as_str());
    assert_eq!(record["job_id"], run["job"]["id"]);
    assert_eq!(record["source_path"], local.display().to_string());

    // It verifies: deep through packrat, and by hand.
    let v = env
        .run(&["verify", "--sink", "windows", "--latest", "nightly", "--deep"])
        .ok();
    assert!(v.stdout.starts_with("OK"), "{}", v.stdout);
    let st = Command::new("sha256sum")
        .args(["--quiet", "-c", "SHA256SUMS"])
        .current_dir(&replica)
        .status()
        .unwrap();
    assert!(st.success());
    let list = env.run(&["list", "nightly", "--sink", "windows", "--json"]).ok().json();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert!(
        entries(&share.dir.join("_tmp")).is_empty(),
        "{:?}",
        entries(&share.dir.join("_tmp"))
    );

    // mount-check and doctor see the share.
    let dir = share.dir.display().to_string();
    let mc = env.run(&["mount-check", &dir, "--allow", &share.fs_type]).ok();
    assert!(
        mc.stdout.contains(&format!("type:         {}", share.fs_type)),
        "{}",
        mc.stdout
    );
    assert!(mc.stdout.contains("result:       OK"), "{}", mc.stdout);
    let mc = env.run(&["mount-check", "--sink", "windows", "--json"]).ok().json();
    assert_eq!(mc["allowed"], true);
    let strict = env.run(&["mount-check", &dir]);
    assert_eq!(strict.code, 1, "{}", strict.all());
    assert!(
        strict.stdout.contains("NOT ALLOWED") && strict.stdout.contains("is not on a CIFS mount"),
        "{}",
        strict.stdout
    );
    let doctor = env.run(&["doctor"]).ok();
    for line in [
        "OK    share mounted (windows)",
        "OK    replica target writable (windows)",
        "OK    no stale _tmp leftovers (windows)",
        "OK    latest job (nightly): job 1 backup completed (synced)",
    ] {
        assert!(doctor.stdout.contains(line), "{line}\n{}", doctor.stdout);
    }
}

/// Mounts `src` on `dst` with a bind mount (Linux, root); unmounted on drop.
struct Bind(PathBuf);

impl Bind {
    fn mount(src: &Path, dst: &Path) -> Bind {
        fs::create_dir_all(dst).unwrap();
        let out = Command::new("mount")
            .arg("--bind")
            .arg(src)
            .arg(dst)
            .output()
            .expect("mount (needs root)");
        assert!(
            out.status.success(),
            "mount --bind failed (these tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Bind(dst.to_path_buf())
    }
    fn unmount(&self) {
        let out = Command::new("umount").arg(&self.0).output().unwrap();
        assert!(out.status.success(), "umount: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).stderr(Stdio::null()).status();
    }
}

#[test]
fn an_unmounted_share_or_the_wrong_type_fails_the_job_with_the_reason_and_writes_nothing() {
    let share = Share::new("unmounted");
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 1_000, false);
    // The share mounted at its own mount point, like /mnt/replica.
    let mnt = env.path("mnt/replica");
    let bind = Bind::mount(&share.dir, &mnt);
    let target = mnt.join("App");
    fs::create_dir(&target).unwrap();
    let allow = format!("allowed_fs_types = [\"{}\"]", share.fs_type);
    config(&env, &db, &format!("path = \"{}\"", target.display()), &allow, "");
    env.run(&["run", "nightly"]).ok();

    // Unmounted: the mount point is an empty local directory now.
    bind.unmount();
    assert!(entries(&mnt).is_empty());
    let run = env.run(&["run", "nightly", "--json"]);
    assert_eq!(run.code, 1, "{}", run.all());
    let job = &run.json()["job"];
    assert_eq!(job["status"], "failed");
    assert_eq!(job["replication"], "failed");
    let detail = job["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!(
            "sink windows: sink `windows`: {} is not on a mount of type {} (it is on ",
            target.display(),
            share.fs_type
        )) && detail.ends_with("mount the share or fix sinks.windows.path"),
        "{detail}"
    );
    assert!(
        entries(&mnt).is_empty(),
        "nothing may be written under the mount point: {:?}",
        entries(&mnt)
    );
    // The local pack is intact and verifies.
    let local = PathBuf::from(run.json()["pack"]["location"].as_str().unwrap_or_default());
    let packs = env.run(&["list", "nightly", "--sink", "local", "--json"]).ok().json();
    assert_eq!(packs.as_array().map(Vec::len), Some(2));
    let latest = packs[1]["location"].as_str().unwrap().to_string();
    assert!(local.as_os_str().is_empty() || local == Path::new(&latest));
    env.run(&["verify", &latest, "--deep"]).ok();

    // doctor says what is wrong and what to do; mount-check exits 1.
    let doctor = env.run(&["doctor"]);
    assert_eq!(doctor.code, 1, "{}", doctor.all());
    assert!(
        doctor.stdout.contains("FAIL  share mounted (windows):") && doctor.stdout.contains("-> fix: mount the share"),
        "{}",
        doctor.stdout
    );
    assert!(
        doctor.stdout.contains("FAIL  latest job (nightly): job 2 failed"),
        "{}",
        doctor.stdout
    );
    let mc = env.run(&["mount-check", "--sink", "windows"]);
    assert_eq!(mc.code, 1, "{}", mc.all());

    // Mounted again but with the default allowed types (cifs, smb3): the type check fails.
    let _bind = Bind::mount(&share.dir, &mnt);
    config(
        &env,
        &db,
        &format!("path = \"{}\"", target.display()),
        "",
        "replication_required = false",
    );
    let before = files(&share.dir);
    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(
        run["job"]["status"], "completed",
        "replication_required = false only marks it"
    );
    assert_eq!(run["job"]["message"], "backup completed (replication failed)");
    assert_eq!(run["job"]["replication"], "failed");
    let detail = run["job"]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("is not on a CIFS mount (it is on {}", share.fs_type)),
        "{detail}"
    );
    assert_eq!(files(&share.dir), before, "nothing written on the share");

    // An empty path says so.
    config(&env, &db, "", "", "");
    let run = env.run(&["run", "nightly", "--json"]);
    assert_eq!(run.code, 1);
    assert!(
        run.json()["job"]["detail"]
            .as_str()
            .unwrap()
            .contains("replica path is empty"),
        "{}",
        run.stdout
    );
}

/// A SQLite database of about `mib` MiB of incompressible data.
fn big_db(path: &Path, mib: u32) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "PRAGMA journal_mode=OFF; CREATE TABLE blobs(id INTEGER PRIMARY KEY, b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {mib})
         INSERT INTO blobs(b) SELECT randomblob(1048576) FROM n;"
    ))
    .unwrap();
}

#[test]
fn a_copy_killed_midway_leaves_no_final_directory_and_the_next_run_cleans_up() {
    let share = Share::new("killed");
    let env = Env::new();
    let db = env.path("app.db");
    big_db(&db, 160);
    let allow = format!("allowed_fs_types = [\"{}\"]", share.fs_type);
    config(&env, &db, &format!("path = \"{}\"", share.dir.display()), &allow, "");

    let mut child = env
        .cmd()
        .args(["run", "nightly"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tmp = share.dir.join("_tmp");
    let t0 = Instant::now();
    let work = loop {
        // Wait until the copy to the share is under way: the artifact exists in the work dir.
        let found = entries(&tmp)
            .into_iter()
            .find(|n| n.starts_with("job_1_"))
            .map(|n| tmp.join(n));
        if let Some(w) = found
            && fs::metadata(w.join("sqlite/app_db.db")).is_ok_and(|m| m.len() > 0)
        {
            break w;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "packrat finished before it could be killed mid-copy"
        );
        assert!(t0.elapsed() < Duration::from_secs(180), "the copy never started");
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(work.exists(), "the half copy is left in _tmp");
    assert!(
        files(&share.dir.join("nightly")).is_empty(),
        "no final directory: {:?}",
        files(&share.dir)
    );

    // doctor sees the leftover (the dead job is recovered first).
    let doctor = env.run(&["doctor"]);
    assert!(
        doctor
            .stdout
            .contains("WARN  no stale _tmp leftovers (windows): 1 leftover(s)"),
        "{}",
        doctor.stdout
    );
    // The local pack was already in place when the copy was killed: the job is recovered as
    // completed, with the replica copy missing.
    assert!(
        doctor.stdout.contains(
            "FAIL  latest job (nightly): job 1 completed but is not synced (replication failed): the process stopped before the copy to sink(s) windows was made"
        ),
        "{}",
        doctor.stdout
    );

    // The next run removes the leftover and succeeds.
    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(run["job"]["message"], "backup completed (synced)");
    assert!(!work.exists(), "the leftover is removed");
    assert!(entries(&tmp).is_empty(), "{:?}", entries(&tmp));
    let id = run["pack"]["id"].as_str().unwrap();
    assert_eq!(entries(&share.dir.join("nightly")), vec![id.to_string()]);
    env.run(&["verify", "--sink", "windows", &format!("nightly/{id}")]).ok();
    let jobs = env.run(&["jobs", "--json"]).ok().json();
    assert_eq!(jobs[1]["status"], "completed", "{jobs}");
    assert_eq!(jobs[1]["replication"], "failed", "{jobs}");
}

#[test]
fn mount_check_reads_an_injected_mount_table() {
    let env = Env::new();
    let dir = fs::canonicalize(env.dir.path()).unwrap();
    let share = dir.join("my share");
    fs::create_dir(&share).unwrap();
    let esc = share.display().to_string().replace(' ', "\\040");
    let table = env.path("mountinfo");
    fs::write(
        &table,
        format!("27 1 254:0 / / rw - ext4 /dev/vda rw\n60 27 0:60 / {esc} rw - smb3 //nas/backup rw\n"),
    )
    .unwrap();
    let target = share.join("App");
    let ok = env
        .run(&[
            "mount-check",
            target.to_str().unwrap(),
            "--mountinfo",
            table.to_str().unwrap(),
        ])
        .ok();
    assert!(ok.stdout.contains("does not exist yet"), "{}", ok.stdout);
    assert!(
        ok.stdout.contains(&format!("mount point:  {}", share.display())),
        "{}",
        ok.stdout
    );
    assert!(ok.stdout.contains("source:       //nas/backup"), "{}", ok.stdout);
    let json = env
        .run(&[
            "mount-check",
            dir.to_str().unwrap(),
            "--mountinfo",
            table.to_str().unwrap(),
            "--json",
        ])
        .json();
    assert_eq!(json["allowed"], false);
    assert_eq!(json["report"]["fs_type"], "ext4");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("is not on a CIFS mount (it is on ext4 /)"),
        "{json}"
    );
}

#[test]
fn retention_prunes_the_replica_like_a_local_sink_and_spares_foreign_data() {
    let share = Share::new("retention");
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 500, false);
    let allow = format!("allowed_fs_types = [\"{}\"]", share.fs_type);
    config(
        &env,
        &db,
        &format!("path = \"{}\"", share.dir.display()),
        &allow,
        "retention = { keep_last = 1 }",
    );
    let foreign = share.dir.join("nightly").join("not_ours");
    fs::create_dir_all(&foreign).unwrap();
    fs::write(foreign.join("keep.txt"), b"keep me").unwrap();
    env.run(&["run", "nightly"]).ok();
    let last = env.run(&["run", "nightly", "--json"]).ok().json();
    env.run(&["prune", "nightly"]).ok();
    let list = env.run(&["list", "nightly", "--sink", "windows", "--json"]).ok().json();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![last["pack"]["id"].as_str().unwrap()], "{list}");
    assert_eq!(
        entries(&share.dir.join("nightly")),
        vec![ids[0].to_string(), "not_ours".to_string()]
    );
    assert!(foreign.join("keep.txt").exists(), "foreign data survives");
}

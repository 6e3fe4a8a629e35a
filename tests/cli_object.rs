//! End to end against the real 3-node Garage cluster of the test services: a plan whose only
//! sink is a bucket (stages locally, uploads), list/verify/prune/restore straight from the bucket,
//! a Garage node killed mid-upload (quorum: the job completes and verifies), two nodes down (the
//! job fails naming the endpoint, nothing is listed, the next run after recovery succeeds),
//! packrat killed mid-upload (no pack; the next run removes the leftovers), and a wrong secret.
//!
//! These tests stop Garage nodes: they run one at a time with the other bucket tests
//! (`.config/nextest.toml`, group `object-store`).
#![cfg(unix)]

use std::time::{Duration, Instant};

use packrat_e2e::bucket::Bucket;
use packrat_e2e::crash::{big_db, integrity, run_and_kill_after};
use packrat_e2e::garage::Cluster;
use packrat_e2e::{Env, dump, seed_db};

/// A config: SQLite source `app_db` at `db`, the bucket as the only sink, `retention` if any.
fn config(env: &Env, bucket: &Bucket, db: &std::path::Path, extra_sink: &str, retention: &str) -> String {
    let _ = env;
    format!(
        r#"state_dir = "state"
[sources.app_db]
type = "sqlite"
path = "{}"

{}{extra_sink}
[plans.nightly]
sources = ["app_db"]
sinks = ["offsite"]
{retention}
"#,
        db.display(),
        bucket.sink_toml("offsite")
    )
}

/// The raw bucket, to look at what lies under a prefix as an operator with another tool would.
fn raw(cluster: &Cluster) -> opendal::blocking::Operator {
    opendal::install_default();
    let op = opendal::Operator::new(
        opendal::services::S3::default()
            .endpoint(&cluster.endpoint)
            .region(&cluster.region)
            .bucket(&cluster.bucket)
            .access_key_id(&cluster.access_key_id)
            .secret_access_key(&cluster.secret_access_key)
            .disable_config_load(),
    )
    .expect("operator");
    let rt = Box::leak(Box::new(tokio::runtime::Runtime::new().expect("runtime")));
    let _guard = rt.enter();
    opendal::blocking::Operator::new(op).expect("blocking operator")
}

/// Every object key under `prefix/`.
fn keys(op: &opendal::blocking::Operator, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = op
        .list_options(
            &format!("{prefix}/"),
            opendal::options::ListOptions {
                recursive: true,
                ..Default::default()
            },
        )
        .expect("list")
        .into_iter()
        .filter(|e| !e.metadata().is_dir())
        .map(|e| e.path().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn a_plan_on_the_bucket_alone_lists_verifies_prunes_and_restores_from_it() {
    let cluster = Cluster::from_env();
    let env = Env::new();
    let bucket = Bucket::new("only");
    let db = env.path("app.db");
    seed_db(&db, 2000, true);
    env.write_config(&config(&env, &bucket, &db, "", "retention = { keep_last = 2 }"));
    let op = raw(&cluster);
    // Someone else's file under the prefix: never listed, never deleted.
    op.write(
        &format!("{}/nightly/notes/readme.txt", bucket.prefix),
        b"not a pack".to_vec(),
    )
    .expect("foreign object");

    let mut ids = Vec::new();
    for _ in 0..3 {
        let run = env.run(&["run", "nightly", "--json"]).ok().json();
        assert_eq!(run["job"]["status"], "completed", "{run}");
        let location = run["pack"]["location"].as_str().unwrap().to_string();
        assert!(
            location.starts_with(&format!("s3://{}/{}/nightly/", bucket.bucket, bucket.prefix)),
            "{location}"
        );
        ids.push(run["pack"]["id"].as_str().unwrap().to_string());
        std::thread::sleep(Duration::from_millis(1100)); // distinct pack ids
    }
    // status shows what the bucket received.
    let status = env.run(&["status", "--json"]).ok().json();
    let offsite = &status["sinks"]["offsite"];
    assert_eq!(offsite["type"], "s3", "{status}");
    assert_eq!(offsite["packs"], 3, "{status}");
    assert!(offsite["bytes"].as_u64().unwrap() > 0, "{status}");
    assert!(env.run(&["status"]).ok().stdout.contains("sink offsite"));
    // keep_last = 2 after every run: the oldest went, the foreign object stayed.
    let list = env.run(&["list", "nightly", "--json"]).ok().json();
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[1].as_str(), ids[2].as_str()], "{list}");
    assert!(keys(&op, &bucket.prefix).contains(&format!("{}/nightly/notes/readme.txt", bucket.prefix)));
    assert!(
        !keys(&op, &bucket.prefix).iter().any(|k| k.contains(&ids[0])),
        "the pruned pack's objects are gone"
    );
    // Nothing of the packs is on this host: staging is empty, and every read goes to the bucket.
    let staging = env.path("state/staging");
    assert!(
        packrat_e2e::subdirs(&staging).is_empty(),
        "{:?}",
        packrat_e2e::subdirs(&staging)
    );
    env.run(&["verify", "--latest", "nightly", "--deep"]).ok();
    let to = env.path("restored.db");
    env.run(&["restore", "--latest", "nightly", "--to", to.to_str().unwrap()])
        .ok();
    assert_eq!(dump(&to), dump(&db));
    // A flipped byte in the bucket is found by verify and refused by restore.
    let victim = format!("{}/nightly/{}/sqlite/app_db.db", bucket.prefix, ids[2]);
    let mut bytes = op.read(&victim).expect("read").to_vec();
    bytes[100] ^= 0x40;
    op.write(&victim, bytes).expect("write");
    let v = env.run(&["verify", "--latest", "nightly"]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(v.all().contains("sqlite/app_db.db"), "{}", v.all());
    let r = env.run(&[
        "restore",
        "--latest",
        "nightly",
        "--to",
        env.path("r2.db").to_str().unwrap(),
    ]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(!env.path("r2.db").exists());
    // doctor checks the bucket.
    let doctor = env.run(&["doctor"]);
    assert!(doctor.stdout.contains("offsite"), "{}", doctor.all());
}

#[test]
fn a_garage_node_killed_mid_upload_does_not_stop_the_job() {
    let cluster = Cluster::from_env();
    cluster.wait_healthy();
    let env = Env::new();
    let bucket = Bucket::new("node-killed");
    let db = env.path("big.db");
    big_db(&db, 48);
    env.write_config(&config(&env, &bucket, &db, "", ""));
    let op = raw(&cluster);
    let mut child = env
        .cmd()
        .args(["run", "nightly", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Kill node 2 once the upload has started (its marker is in the bucket).
    let t = Instant::now();
    while !keys(&op, &bucket.prefix).iter().any(|k| k.ends_with(".packrat-upload")) {
        assert!(t.elapsed() < Duration::from_secs(120), "the upload never started");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before its upload started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = cluster.kill_node(2);
    let out = child.wait_with_output().expect("wait");
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(run["job"]["status"], "completed", "{run}");
    // Verified deep from the bucket while the node is still down, and again once it is back.
    env.run(&["verify", "--latest", "nightly", "--deep"]).ok();
    killed.restart();
    env.run(&["verify", "--latest", "nightly", "--deep"]).ok();
    let to = env.path("restored.db");
    env.run(&["restore", "--latest", "nightly", "--to", to.to_str().unwrap()])
        .ok();
    assert_eq!(integrity(&to), integrity(&db));
}

#[test]
fn two_nodes_down_fail_the_job_naming_the_endpoint_and_the_next_run_succeeds() {
    let cluster = Cluster::from_env();
    cluster.wait_healthy();
    let env = Env::new();
    let bucket = Bucket::new("quorum-lost");
    let db = env.path("app.db");
    seed_db(&db, 500, true);
    // Short timeouts: without quorum Garage answers with errors or not at all.
    let cfg = config(&env, &bucket, &db, "", "").replace(
        "secret_access_key_env = \"PACKRAT_TEST_S3_SECRET_ACCESS_KEY\"\n",
        "secret_access_key_env = \"PACKRAT_TEST_S3_SECRET_ACCESS_KEY\"\ntimeout = \"5s\"\nretries = 1\n",
    );
    env.write_config(&cfg);
    {
        let first = cluster.kill_node(1);
        let second = cluster.kill_node(2);
        let run = env.run(&["run", "nightly", "--json"]);
        assert_eq!(run.code, 1, "{}", run.all());
        let job = &run.json()["job"];
        assert_eq!(job["status"], "failed", "{job}");
        let detail = job["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains(&cluster.endpoint),
            "the error names the endpoint: {detail}"
        );
        second.restart();
        first.restart();
    }
    cluster.wait_healthy();
    let list = env.run(&["list", "nightly", "--json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 0, "nothing is a pack: {list}");
    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(run["job"]["status"], "completed", "{run}");
    env.run(&["verify", "--latest", "nightly", "--deep"]).ok();
}

#[test]
fn packrat_killed_mid_upload_leaves_no_pack_and_the_next_run_removes_its_objects() {
    let cluster = Cluster::from_env();
    let env = Env::new();
    let bucket = Bucket::new("killed");
    let db = env.path("big.db");
    big_db(&db, 40);
    env.write_config(&config(&env, &bucket, &db, "", ""));
    let op = raw(&cluster);
    let uploading = || keys(&op, &bucket.prefix).iter().any(|k| k.ends_with(".packrat-upload"));
    let killed = run_and_kill_after(
        env.cmd().args(["run", "nightly"]),
        &uploading,
        Duration::from_millis(300),
    );
    assert!(killed.was_killed(), "the run finished before the kill");
    let left = keys(&op, &bucket.prefix);
    assert!(left.iter().any(|k| k.ends_with(".packrat-upload")), "{left:?}");
    assert!(
        !left.iter().any(|k| k.ends_with("manifest.json")),
        "no manifest: {left:?}"
    );
    let list = env.run(&["list", "nightly", "--json"]).ok().json();
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "a prefix without a manifest is no pack: {list}"
    );
    // The next run completes, and its after-job step removes the dead job's objects.
    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(run["job"]["status"], "completed", "{run}");
    let id = run["pack"]["id"].as_str().unwrap().to_string();
    let left = keys(&op, &bucket.prefix);
    assert!(
        left.iter().all(|k| k.contains(&id)),
        "only the new pack is left: {left:?}"
    );
    assert!(!left.iter().any(|k| k.ends_with(".packrat-upload")), "{left:?}");
}

#[test]
fn a_wrong_secret_fails_with_what_to_do_and_never_shows_the_secret() {
    let _cluster = Cluster::from_env();
    let env = Env::new();
    let bucket = Bucket::new("denied");
    let db = env.path("app.db");
    seed_db(&db, 10, true);
    let secret = "not-the-secret-5b8e2d41c9";
    std::fs::write(env.path("secret"), secret).unwrap();
    let cfg = config(&env, &bucket, &db, "", "").replace(
        "secret_access_key_env = \"PACKRAT_TEST_S3_SECRET_ACCESS_KEY\"",
        &format!("secret_access_key_file = \"{}\"", env.path("secret").display()),
    );
    env.write_config(&cfg);
    let run = env.run(&["run", "nightly"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.all().contains("check access_key_id/secret_access_key"),
        "{}",
        run.all()
    );
    assert!(!run.all().contains(secret), "{}", run.all());
    let doctor = env.run(&["doctor"]);
    assert_eq!(doctor.code, 1, "{}", doctor.all());
    assert!(
        doctor.all().contains("check access_key_id/secret_access_key"),
        "{}",
        doctor.all()
    );
    assert!(!doctor.all().contains(secret), "{}", doctor.all());
}

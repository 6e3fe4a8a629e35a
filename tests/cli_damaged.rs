//! Damaged or hostile packs through the real binary: `restore` checks the whole pack before it
//! touches the target and refuses every pack that `verify` refuses, naming the file;
//! `--allow-damaged` restores only what checks out; a FIFO never hangs it; the leftovers of a
//! killed restore are reported by `doctor` and removed by the next restore.

#![cfg(unix)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use packrat_e2e::{Env, Rng, copy_tree, dump, seed_db};

/// Hang guard for commands that must never block.
const LIMIT: Duration = Duration::from_secs(120);

/// Backs `db` up with plan `nightly`; returns the pack directory.
fn backup(env: &Env) -> PathBuf {
    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(run["job"]["status"], "completed", "{run}");
    PathBuf::from(run["pack"]["location"].as_str().unwrap())
}

/// Files of a pack directory, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

/// Rewrites SHA256SUMS' line for manifest.json after the manifest was edited, so that only the
/// edit itself is wrong with the pack.
fn reseal_manifest_line(dir: &Path) {
    let sums = fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let mut lines: Vec<String> = sums.lines().map(str::to_string).collect();
    let last = lines.len() - 1;
    lines[last] = format!("{}  manifest.json", sha256(&dir.join("manifest.json")));
    fs::write(dir.join("SHA256SUMS"), lines.join("\n") + "\n").unwrap();
}

/// Damages the pack in `dir` in the `n`th way, using `rng` for positions; returns what was done.
fn damage(dir: &Path, n: usize, rng: &mut Rng) -> String {
    let artifacts: Vec<String> = files(dir)
        .into_iter()
        // The database the restore reads (the pack's other file, packrat/plan.toml, is not
        // read by a restore: see the end of the test below).
        .filter(|f| f.starts_with("sqlite/"))
        .collect();
    let art = artifacts[rng.below(artifacts.len())].clone();
    let pick = |rng: &mut Rng| match rng.below(3) {
        0 => art.clone(),
        1 => "manifest.json".to_string(),
        _ => "SHA256SUMS".to_string(),
    };
    match n % 10 {
        // Byte flips (most of the cases), anywhere in any file.
        0..=4 => {
            let f = if n.is_multiple_of(10) { art.clone() } else { pick(rng) };
            let path = dir.join(&f);
            let mut bytes = fs::read(&path).unwrap();
            let pos = rng.below(bytes.len());
            bytes[pos] ^= 1 + rng.below(255) as u8;
            fs::write(&path, &bytes).unwrap();
            format!("flipped byte {pos} of {f}")
        }
        5 => {
            let f = pick(rng);
            let path = dir.join(&f);
            let bytes = fs::read(&path).unwrap();
            let len = rng.below(bytes.len());
            fs::write(&path, &bytes[..len]).unwrap();
            format!("truncated {f} to {len} bytes")
        }
        6 => {
            let f = ["stray.txt", "sqlite/extra.db", "notes/x"][rng.below(3)];
            fs::create_dir_all(dir.join(f).parent().unwrap()).unwrap();
            fs::write(dir.join(f), b"not part of the pack").unwrap();
            format!("added unlisted {f}")
        }
        7 => {
            let path = dir.join("manifest.json");
            let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
            let first = m["artifacts"][0].clone();
            m["artifacts"].as_array_mut().unwrap().push(first);
            fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
            reseal_manifest_line(dir);
            "listed the artifact twice in manifest.json".into()
        }
        8 => {
            // The same bytes, but through a symlink.
            let path = dir.join(&art);
            let elsewhere = dir.parent().unwrap().join("elsewhere");
            fs::rename(&path, &elsewhere).unwrap();
            std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
            format!("replaced {art} by a symlink to an identical file")
        }
        _ => {
            let f = if rng.below(2) == 0 {
                art.clone()
            } else {
                "SHA256SUMS".to_string()
            };
            fs::remove_file(dir.join(&f)).unwrap();
            format!("removed {f}")
        }
    }
}

#[test]
fn restore_refuses_every_damaged_pack_that_verify_refuses_and_creates_nothing() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 300, true);
    let mut packs = Vec::new();
    for compress in [false, true] {
        env.standard_config(&db, &env.path("packs"), if compress { "compress = true" } else { "" });
        packs.push(backup(&env));
    }
    let mut rng = Rng::new(9);
    let (mut verify_refused, mut restore_refused) = (0, 0);
    for n in 0..100 {
        let good = &packs[n % 2];
        let dir = env.path(&format!("damaged/{n}")).join(good.file_name().unwrap());
        copy_tree(good, &dir);
        let what = damage(&dir, n / 2, &mut rng);
        let out = env.path(&format!("out/{n}"));
        fs::create_dir_all(&out).unwrap();
        let target = out.join("restored.db");

        let v = env.run_guarded(&["verify", dir.to_str().unwrap(), "--json"], LIMIT);
        let problems: Vec<String> = serde_json::from_str::<serde_json::Value>(&v.stdout)
            .unwrap_or_else(|e| panic!("{what}: verify --json: {e}: {}", v.all()))["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["path"].as_str().unwrap().to_string())
            .collect();
        let r = env.run_guarded(
            &["restore", dir.to_str().unwrap(), "--to", target.to_str().unwrap()],
            LIMIT,
        );
        if v.code != 0 {
            verify_refused += 1;
            assert_eq!(r.code, 1, "{what}: verify refused it, restore must too:\n{}", r.all());
            restore_refused += 1;
            assert!(
                problems.iter().any(|p| r.stderr.contains(p.as_str())),
                "{what}: the refusal must name the file ({problems:?}):\n{}",
                r.stderr
            );
            assert_eq!(
                fs::read_dir(&out).unwrap().count(),
                0,
                "{what}: restore created something"
            );
        } else {
            r.ok();
            assert_eq!(dump(&target), dump(&db), "{what}");
        }
    }
    // Every damage above is real, and verify sees all of it.
    assert_eq!(verify_refused, 100);
    assert_eq!(restore_refused, 100);

    // A flipped byte in the plan's configuration: verify refuses the pack and names the file;
    // a restore reads only the database (whose sha256 it checks) and the sizes of the rest, so
    // it restores the intact database.
    let dir = env.path("damaged/plan").join(packs[0].file_name().unwrap());
    copy_tree(&packs[0], &dir);
    let path = dir.join("packrat/plan.toml");
    let mut bytes = fs::read(&path).unwrap();
    bytes[10] ^= 0x20;
    fs::write(&path, &bytes).unwrap();
    let v = env.run_guarded(&["verify", dir.to_str().unwrap()], LIMIT);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(v.all().contains("packrat/plan.toml"), "{}", v.all());
    let target = env.path("out/plan/restored.db");
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    env.run_guarded(
        &["restore", dir.to_str().unwrap(), "--to", target.to_str().unwrap()],
        LIMIT,
    )
    .ok();
    assert_eq!(dump(&target), dump(&db));
}

#[test]
fn a_fifo_in_place_of_a_pack_file_is_refused_without_hanging() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 50, true);
    env.standard_config(&db, &env.path("packs"), "");
    let good = backup(&env);
    for (i, file) in ["sqlite/app_db.db", "SHA256SUMS", "manifest.json"]
        .into_iter()
        .enumerate()
    {
        let dir = env.path(&format!("fifo/{i}")).join(good.file_name().unwrap());
        copy_tree(&good, &dir);
        packrat_e2e::make_fifo(&dir.join(file));
        let target = env.path(&format!("fifo-out/{i}/restored.db"));
        fs::create_dir_all(target.parent().unwrap()).unwrap();

        let v = env.run_guarded(&["verify", dir.to_str().unwrap()], LIMIT);
        assert_eq!(v.code, 1, "{file}: {}", v.all());
        assert!(
            v.all().contains(file) && v.all().contains("FIFO"),
            "{file}: {}",
            v.all()
        );
        for args in [&[][..], &["--allow-damaged"][..]] {
            let mut a = vec!["restore", dir.to_str().unwrap(), "--to", target.to_str().unwrap()];
            a.extend_from_slice(args);
            let r = env.run_guarded(&a, LIMIT);
            assert_eq!(r.code, 1, "{file} {args:?}: {}", r.all());
            assert!(r.stderr.contains(file), "{file} {args:?}: {}", r.stderr);
            assert!(
                r.stderr.contains("FIFO") || r.stderr.contains("confirmed"),
                "{file}: {}",
                r.stderr
            );
            assert_eq!(fs::read_dir(target.parent().unwrap()).unwrap().count(), 0);
        }
    }
}

#[test]
fn allow_damaged_restores_only_the_artifacts_that_check_out() {
    let env = Env::new();
    let (a, b) = (env.path("a.db"), env.path("b.db"));
    seed_db(&a, 200, true);
    seed_db(&b, 300, false);
    env.write_config(&format!(
        r#"state_dir = "state"
[sources.app_a]
type = "sqlite"
path = "{}"
[sources.app_b]
type = "sqlite"
path = "{}"
compress = true
[sinks.local]
type = "local"
path = "{}"
min_free_mb = 1
[plans.nightly]
sources = ["app_a", "app_b"]
sinks = ["local"]
"#,
        a.display(),
        b.display(),
        env.path("packs").display()
    ));
    let pack = backup(&env);
    // app_b's artifact loses its tail (artifacts a restore does not use are checked for presence
    // and size; the ones it uses are read completely), and a stray file appears.
    let bad = pack.join("sqlite/app_b.db.zst");
    let bytes = fs::read(&bad).unwrap();
    fs::write(&bad, &bytes[..bytes.len() - 100]).unwrap();
    fs::write(pack.join("stray.txt"), b"x").unwrap();
    let pack = pack.to_str().unwrap();
    let target = env.path("out/a.db");
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    let t = target.to_str().unwrap();

    // The intact database of a damaged pack: refused by default, naming every problem.
    let r = env.run(&["restore", pack, "--source", "app_a", "--to", t]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("is damaged, nothing was restored")
            && r.stderr.contains("sqlite/app_b.db.zst: size is")
            && r.stderr.contains("stray.txt: file is not listed")
            && r.stderr.contains("--allow-damaged"),
        "{}",
        r.stderr
    );
    assert!(!target.exists());

    // On request: restored, with a loud warning of what is wrong.
    let r = env
        .run(&["restore", pack, "--source", "app_a", "--to", t, "--allow-damaged"])
        .ok();
    assert!(
        r.stderr.contains("WARNING: pack")
            && r.stderr.contains("problem: sqlite/app_b.db.zst: size is")
            && r.stderr.contains("problem: stray.txt"),
        "{}",
        r.stderr
    );
    assert_eq!(dump(&target), dump(&a));

    // The damaged database is never restored, flag or not.
    let target_b = env.path("out/b.db");
    for extra in [&[][..], &["--allow-damaged"][..]] {
        let mut args = vec!["restore", pack, "--source", "app_b", "--to", target_b.to_str().unwrap()];
        args.extend_from_slice(extra);
        let r = env.run(&args);
        assert_eq!(r.code, 1, "{extra:?}: {}", r.all());
        assert!(
            r.stderr.contains("sqlite/app_b.db.zst: size is")
                || r.stderr.contains("artifact sqlite/app_b.db.zst is damaged: size is"),
            "{}",
            r.stderr
        );
        assert!(!target_b.exists());
    }
}

/// Starts a restore to `target` and SIGKILLs it while its temporary file exists. Returns false
/// if the restore finished before it could be caught (the caller tries again).
fn kill_mid_restore(env: &Env, target: &Path) -> bool {
    let dir = target.parent().unwrap();
    let prefix = format!(".{}.packrat-restore-", target.file_name().unwrap().to_string_lossy());
    let before: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    let mut child = env
        .cmd()
        .args(["restore", "--latest", "nightly", "--to", target.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let fresh = fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).any(|n| {
            n.to_string_lossy().starts_with(&prefix)
                && !before.contains(&n)
                && fs::metadata(dir.join(&n)).is_ok_and(|m| m.len() > 0)
        });
        if fresh {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return !target.exists();
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never started writing"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_killed_restore_leaves_a_temp_file_that_doctor_reports_and_the_next_restore_removes() {
    let env = Env::new();
    let db = env.path("app.db");
    // About 25 MB of incompressible rows and an index: the restore takes long enough to be caught writing.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, n INTEGER);
         CREATE INDEX t_payload ON t(payload);
         WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
         INSERT INTO t(payload, n) SELECT hex(randomblob(80)), x FROM c;",
    )
    .unwrap();
    drop(c);
    env.standard_config(&db, &env.path("packs"), "");
    backup(&env);
    let dir = env.path("restore-check");
    fs::create_dir(&dir).unwrap();
    let target = dir.join("app.db");

    let leftovers = || -> Vec<PathBuf> {
        fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".app.db.packrat-restore-")
            })
            .collect()
    };
    // Each killed restore leaves its temporary file; the next one removes it before it writes
    // its own, so they never pile up.
    let mut seen: Vec<Vec<PathBuf>> = Vec::new();
    for _ in 0..20 {
        if kill_mid_restore(&env, &target) {
            seen.push(leftovers());
            if seen.len() == 2 {
                break;
            }
        } else {
            let _ = fs::remove_file(&target);
        }
    }
    assert_eq!(seen.len(), 2, "could not catch the restore while it was writing");
    assert_eq!(seen[0].len(), 1, "{seen:?}");
    assert_eq!(seen[1].len(), 1, "{seen:?}");
    assert_ne!(seen[0], seen[1], "the second restore removed the first one's leftover");
    let left = leftovers();
    assert!(fs::metadata(&left[0]).unwrap().len() > 0);
    assert!(!target.exists(), "never a half-written target");

    // Also a leftover next to the configured database itself.
    let by_source = env.path(".app.db.packrat-restore-Zz9Yx8");
    fs::write(&by_source, b"half").unwrap();

    let doctor = env.run(&["doctor"]);
    for l in left.iter().chain([&by_source]) {
        let line = doctor
            .stdout
            .lines()
            .find(|line| line.contains(l.to_str().unwrap()))
            .unwrap_or_else(|| panic!("doctor does not report {}:\n{}", l.display(), doctor.stdout));
        assert!(
            line.starts_with("WARN")
                && line.contains("interrupted restore")
                && line.contains("-> fix: the next restore to"),
            "{line}"
        );
    }

    // The next restore removes them (and says so), then restores.
    let r = env
        .run(&["restore", "--latest", "nightly", "--to", target.to_str().unwrap()])
        .ok();
    for l in &left {
        assert!(r.stderr.contains(&format!("removed {}", l.display())), "{}", r.stderr);
    }
    let names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["app.db"]);
    assert_eq!(dump(&target), dump(&db));
    let r = env
        .run(&[
            "restore",
            "--latest",
            "nightly",
            "--to",
            db.to_str().unwrap(),
            "--overwrite",
        ])
        .ok();
    assert!(
        r.stderr.contains(&format!("removed {}", by_source.display())),
        "{}",
        r.stderr
    );
    let doctor = env.run(&["doctor"]);
    assert!(
        doctor
            .stdout
            .lines()
            .any(|l| l.starts_with("OK") && l.contains("restore leftovers: none in 2 directories")),
        "{}",
        doctor.stdout
    );
}

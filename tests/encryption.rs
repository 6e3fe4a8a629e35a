//! End to end: encrypted packs (`[plans.NAME.encrypt]`, age over zstd) through the real binary,
//! against the real test servers: SQLite sources (plain and compressed) with two recipients made
//! by `packrat key generate`, opened by packrat with either identity and by hand with the
//! standard `age` and `zstd` tools; a wrong identity and a flipped ciphertext byte refused before
//! anything is written; a passphrase plan; no secret in any output, state file or pack file; a
//! MongoDB plan (full and incremental, chain restore); a Docker compose project's volumes; the
//! copies on the Samba share and in the Garage bucket; retention of encrypted packs.
//!
//! Needs the test services (`cargo xtask services up`, then `source target/ci-services/env.sh`;
//! `cargo xtask ci` does both) and Debian's `age`, `zstd` and `tar`: without them the tests fail.
#![cfg(target_os = "linux")]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use packrat_e2e::bucket::Bucket;
use packrat_e2e::crash::{self, Docker, Project, Share};
use packrat_e2e::garage::Cluster;
use packrat_e2e::{Env, Run, dump, seed_db, subdirs};
use serde_json::{Value, json};

// ----- helpers ----------------------------------------------------------------------------------

/// An age identity made by `packrat key generate`.
struct Key {
    /// The identity file.
    file: PathBuf,
    /// Its recipient (`age1…`), as `key generate` printed it.
    recipient: String,
    /// The secret line (`AGE-SECRET-KEY-1…`) of the file.
    secret: String,
}

impl Key {
    fn path(&self) -> &str {
        self.file.to_str().expect("utf-8 path")
    }
}

/// `packrat key generate -o <env>/<name>`: a 0600 file whose recipient is printed on stdout (and
/// is what `packrat key recipient` prints for it). The output is appended to `log` when given.
fn keygen(env: &Env, name: &str, log: Option<&mut Vec<String>>) -> Key {
    let file = env.path(name);
    let r = env.run(&["key", "generate", "-o", file.to_str().unwrap()]).ok();
    let recipient = r.stdout.trim().to_string();
    assert!(
        recipient.starts_with("age1") && !recipient.contains('\n'),
        "{}",
        r.all()
    );
    let text = fs::read_to_string(&file).expect("identity file");
    let secret = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap_or_else(|| panic!("no identity line in {text}"))
        .to_string();
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", file.display());
    }
    let again = env.run(&["key", "recipient", file.to_str().unwrap()]).ok();
    assert_eq!(again.stdout.trim(), recipient);
    // Never overwritten.
    let twice = env.run(&["key", "generate", "-o", file.to_str().unwrap()]);
    assert_eq!(twice.code, 2, "{}", twice.all());
    assert!(twice.stderr.contains("never overwritten"), "{}", twice.stderr);
    assert_eq!(fs::read_to_string(&file).unwrap(), text);
    if let Some(log) = log {
        log.extend([r.all(), again.all(), twice.all()]);
    }
    Key {
        file,
        recipient,
        secret,
    }
}

/// `recipients = ["age1…", …]`.
fn recipients(keys: &[&Key]) -> String {
    let list: Vec<String> = keys.iter().map(|k| format!("\"{}\"", k.recipient)).collect();
    format!("recipients = [{}]", list.join(", "))
}

/// `[sinks.local]` at `<env>/packs`.
fn local_sink(env: &Env) -> String {
    format!(
        "[sinks.local]\ntype = \"local\"\npath = \"{}\"\nmin_free_mb = 1\n",
        env.path("packs").display()
    )
}

/// `[sources.NAME]` of type sqlite.
fn sqlite_source(name: &str, db: &Path, compress: bool) -> String {
    format!(
        "[sources.{name}]\ntype = \"sqlite\"\npath = \"{}\"\ncompress = {compress}\n",
        db.display()
    )
}

/// A config: `tables` (sources, sinks), plan `nightly` with the keys `plan`, and its
/// `[plans.nightly.encrypt]` table with `encrypt`.
fn write_config(env: &Env, tables: &str, plan: &str, encrypt: &str) {
    env.write_config(&format!(
        "state_dir = \"state\"\ntime_zone = \"Asia/Shanghai\"\n\n{tables}\n[plans.nightly]\n{plan}\n\n\
         [plans.nightly.encrypt]\n{encrypt}\n"
    ));
}

/// Runs packrat with `args` and the environment variables `vars`.
fn run_with(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = env.cmd();
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let o = cmd.args(args).output().expect("spawn packrat");
    Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `packrat run nightly --json`: asserts a completed job, returns the JSON.
#[track_caller]
fn backup(env: &Env, vars: &[(&str, &str)], extra: &[&str]) -> Value {
    let mut args = vec!["run", "nightly", "--json"];
    args.extend_from_slice(extra);
    let run = run_with(env, vars, &args).ok().json();
    assert_eq!(run["job"]["status"], "completed", "{run}");
    run
}

/// The pack directory a `run --json` reported.
fn pack_dir(run: &Value) -> PathBuf {
    PathBuf::from(run["pack"]["location"].as_str().expect("pack location"))
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("manifest.json")).expect("manifest.json")).expect("manifest JSON")
}

/// The artifact paths of a manifest, sorted.
fn artifact_paths(m: &Value) -> Vec<String> {
    let mut v: Vec<String> = m["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| a["path"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// Asserts that every artifact of the pack in `dir` is stored encrypted (`.age`, the age header,
/// no SQLite/tar/BSON plaintext) and recorded as encrypted with `want` in the manifest.
#[track_caller]
fn assert_all_encrypted(dir: &Path, want: &Value) {
    let m = manifest(dir);
    assert_eq!(m["format_version"], 3, "{m}");
    for a in m["artifacts"].as_array().unwrap() {
        let path = a["path"].as_str().unwrap();
        assert!(path.ends_with(".age"), "{path} is not stored as .age");
        assert_eq!(&a["encryption"], want, "{path}: {a}");
        let bytes = fs::read(dir.join(path)).unwrap();
        assert!(
            bytes.starts_with(b"age-encryption.org/v1\n"),
            "{path} does not start with the age header"
        );
        for plain in [&b"SQLite format 3"[..], b"ustar", b"row 42 "] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain),
                "{path} holds plaintext {:?}",
                String::from_utf8_lossy(plain)
            );
        }
        // The plaintext name is not in the pack.
        assert!(!dir.join(path.trim_end_matches(".age")).exists(), "{path}");
    }
}

/// `bash -c 'set -euo pipefail; SCRIPT'` with `$1…` = `args`: asserts success, returns stdout.
#[track_caller]
fn sh(script: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail; {script}"))
        .arg("sh")
        .args(args)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "`{script}` {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `sha256sum -c SHA256SUMS` in `dir`: true when every file checks out.
fn sha256sum_ok(dir: &Path) -> bool {
    Command::new("sha256sum")
        .args(["--quiet", "-c", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .expect("sha256sum (coreutils)")
        .status
        .success()
}

/// `PRAGMA integrity_check` of a database file is `ok`.
#[track_caller]
fn assert_integrity(db: &Path) {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let ok: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok", "{}", db.display());
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

/// The message of a deep verification without an identity, for artifact `path`.
fn needs_identity(path: &str, keys: &[&Key]) -> String {
    let list: Vec<&str> = keys.iter().map(|k| k.recipient.as_str()).collect();
    format!(
        "{path} is encrypted (age) for {}; reading it needs an identity: pass --identity FILE",
        list.join(", ")
    )
}

// ----- SQLite -----------------------------------------------------------------------------------

#[test]
fn sqlite_packs_for_two_recipients_verify_without_a_key_and_open_with_either_identity_and_with_age() {
    let env = Env::new();
    let ops = keygen(&env, "ops.key", None);
    let escrow = keygen(&env, "escrow.key", None);
    assert_ne!(ops.recipient, escrow.recipient);
    // One source stored as it is, one compressed: `.db.age` and `.db.zst.age`.
    let (app, logs) = (env.path("app.db"), env.path("logs.db"));
    seed_db(&app, 3_000, true);
    seed_db(&logs, 2_000, false);
    write_config(
        &env,
        &format!(
            "{}\n{}\n{}",
            sqlite_source("app_db", &app, false),
            sqlite_source("logs_db", &logs, true),
            local_sink(&env)
        ),
        "sources = [\"app_db\", \"logs_db\"]\nsinks = [\"local\"]",
        &recipients(&[&ops, &escrow]),
    );
    env.run(&["config", "check"]).ok();
    let run = backup(&env, &[], &[]);
    let dir = pack_dir(&run);
    let (app_art, logs_art) = ("sqlite/app_db.db.age", "sqlite/logs_db.db.zst.age");
    let m = manifest(&dir);
    // The plan's configuration is encrypted like the data (it names paths and hosts).
    assert_eq!(artifact_paths(&m), ["packrat/plan.toml.age", app_art, logs_art], "{m}");
    for a in m["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["type"] == "sqlite")
    {
        let want = if a["path"] == app_art { "none" } else { "zstd" };
        assert_eq!(a["compression"], want, "{a}");
    }
    assert_all_encrypted(
        &dir,
        &json!({"scheme": "age", "recipients": [&ops.recipient, &escrow.recipient]}),
    );
    assert_eq!(
        files(&dir),
        [
            "SHA256SUMS",
            "manifest.json",
            "packrat/plan.toml.age",
            app_art,
            logs_art
        ]
    );

    // No key needed to check the stored bytes: packrat's quick verify and sha256sum -c.
    let quick = env.run(&["verify", "--latest", "nightly"]).ok();
    assert!(quick.stdout.starts_with("OK"), "{}", quick.stdout);
    env.run(&["verify", dir.to_str().unwrap()]).ok();
    assert!(sha256sum_ok(&dir), "sha256sum -c SHA256SUMS fails in {}", dir.display());

    // Deep verification reads the plaintext: without an identity it fails for each artifact,
    // naming both recipients and --identity; with either identity it passes.
    let deep = env.run(&["verify", "--latest", "nightly", "--deep"]);
    assert_eq!(deep.code, 1, "{}", deep.all());
    for art in [app_art, logs_art] {
        assert!(
            deep.stdout.contains(&needs_identity(art, &[&ops, &escrow])),
            "{art}: {}",
            deep.stdout
        );
    }
    for key in [&ops, &escrow] {
        let v = env
            .run(&["verify", "--latest", "nightly", "--deep", "--identity", key.path()])
            .ok();
        assert!(v.stdout.starts_with("OK"), "{}", v.stdout);
        env.run(&["verify", dir.to_str().unwrap(), "--deep", "--identity", key.path()])
            .ok();
    }

    // Restores with either identity give the same rows.
    for (key, tag) in [(&ops, "ops"), (&escrow, "escrow")] {
        for (source, db) in [("app_db", &app), ("logs_db", &logs)] {
            let to = env.path(&format!("restored_{source}_{tag}.db"));
            env.run(&[
                "restore",
                "--latest",
                "nightly",
                "--source",
                source,
                "--to",
                to.to_str().unwrap(),
                "--identity",
                key.path(),
            ])
            .ok();
            assert_integrity(&to);
            assert_eq!(dump(&to), dump(db), "{source} restored with {tag}");
        }
    }

    // By hand, with the standard tools: age -d (| zstd -d for the compressed one).
    let by_hand = env.path("by_hand_app.db");
    sh(
        "age -d -i \"$1\" -o \"$3\" \"$2\"",
        &[
            ops.path(),
            dir.join(app_art).to_str().unwrap(),
            by_hand.to_str().unwrap(),
        ],
    );
    assert_integrity(&by_hand);
    assert_eq!(dump(&by_hand), dump(&app));
    let by_hand = env.path("by_hand_logs.db");
    sh(
        "age -d -i \"$1\" \"$2\" | zstd -q -d > \"$3\"",
        &[
            escrow.path(),
            dir.join(logs_art).to_str().unwrap(),
            by_hand.to_str().unwrap(),
        ],
    );
    assert_integrity(&by_hand);
    assert_eq!(dump(&by_hand), dump(&logs));
}

#[test]
fn a_wrong_identity_is_refused_with_exit_2_naming_the_recipients_and_nothing_is_written() {
    let env = Env::new();
    let ops = keygen(&env, "ops.key", None);
    let escrow = keygen(&env, "escrow.key", None);
    let wrong = keygen(&env, "wrong.key", None);
    let db = env.path("app.db");
    seed_db(&db, 1_000, true);
    write_config(
        &env,
        &format!("{}\n{}", sqlite_source("app_db", &db, true), local_sink(&env)),
        "sources = [\"app_db\"]\nsinks = [\"local\"]",
        &recipients(&[&ops, &escrow]),
    );
    let dir = pack_dir(&backup(&env, &[], &[]));
    let art = "sqlite/app_db.db.zst.age";
    let out_dir = env.path("restores");
    fs::create_dir(&out_dir).unwrap();
    let target = out_dir.join("new.db");
    let restore = |to: &Path, extra: &[&str]| {
        let mut args = vec!["restore", "--latest", "nightly", "--to", to.to_str().unwrap()];
        args.extend_from_slice(extra);
        env.run(&args)
    };
    let expected = format!(
        "{} is encrypted for {}, {}; none of the identities given opens it ({} from identity file {}); give the \
         identity of one of those recipients",
        dir.join(art).display(),
        ops.recipient,
        escrow.recipient,
        wrong.recipient,
        wrong.path()
    );

    // A new target: exit 2, the message names the recipients and the identity tried, nothing
    // appears in the target's directory.
    let r = restore(&target, &["--identity", wrong.path()]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains(&expected), "{}", r.stderr);
    assert!(!target.exists());
    assert_eq!(files(&out_dir), Vec::<String>::new());

    // No identity at all: exit 2, says to pass --identity.
    let r = restore(&target, &[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains(&needs_identity(art, &[&ops, &escrow])),
        "{}",
        r.stderr
    );
    assert!(!target.exists());

    // A recipient (public key) given as the identity: said so, exit 2.
    let public = env.path("ops.pub");
    fs::write(&public, format!("{}\n", ops.recipient)).unwrap();
    let r = restore(&target, &["--identity", public.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("it is a recipient"), "{}", r.stderr);
    assert!(!target.exists());

    // An existing target with --overwrite: left byte for byte as it was.
    let existing = out_dir.join("existing.db");
    seed_db(&existing, 10, false);
    let before = fs::read(&existing).unwrap();
    let r = restore(&existing, &["--overwrite", "--identity", wrong.path()]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains(&expected), "{}", r.stderr);
    assert!(
        fs::read(&existing).unwrap() == before,
        "the existing target was changed"
    );
    assert_eq!(files(&out_dir), ["existing.db"]);

    // Deep verification with the wrong identity fails the same way (exit 1: a finding).
    let v = env.run(&["verify", "--latest", "nightly", "--deep", "--identity", wrong.path()]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(
        v.stdout.contains("none of the identities given opens it"),
        "{}",
        v.stdout
    );

    // The right identity next to the wrong one is enough.
    let r = restore(
        &existing,
        &["--overwrite", "--identity", wrong.path(), "--identity", escrow.path()],
    )
    .ok();
    assert!(r.stdout.contains("restored to"), "{}", r.stdout);
    assert_eq!(dump(&existing), dump(&db));
}

/// The hex SHA-256 of a file (coreutils `sha256sum`).
fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

#[test]
fn a_flipped_ciphertext_byte_fails_quick_and_deep_verify_and_restore_refuses() {
    let env = Env::new();
    let ops = keygen(&env, "ops.key", None);
    let db = env.path("app.db");
    seed_db(&db, 3_000, true);
    write_config(
        &env,
        &format!("{}\n{}", sqlite_source("app_db", &db, true), local_sink(&env)),
        "sources = [\"app_db\"]\nsinks = [\"local\"]",
        &recipients(&[&ops]),
    );
    let dir = pack_dir(&backup(&env, &[], &[]));
    let art = "sqlite/app_db.db.zst.age";
    let path = dir.join(art);
    let orig = fs::read(&path).unwrap();
    assert!(orig.len() > 4096, "{} bytes", orig.len());
    let mut bad = orig.clone();
    bad[orig.len() / 2] ^= 0x10;
    fs::write(&path, &bad).unwrap();
    let target = env.path("restored.db");
    let id = ["--identity", ops.path()];

    // Quick: the stored bytes no longer match SHA256SUMS; no key needed to see it.
    let v = env.run(&["verify", "--latest", "nightly"]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(v.stdout.contains(&format!("{art}: sha256 mismatch")), "{}", v.stdout);
    assert!(!sha256sum_ok(&dir));
    // Deep, with the identity: fails too, naming the file.
    let v = env.run(&["verify", "--latest", "nightly", "--deep", id[0], id[1]]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(v.stdout.contains(&format!("{art}: sha256 mismatch")), "{}", v.stdout);
    // Restore refuses before writing.
    let r = env.run(&[
        "restore",
        "--latest",
        "nightly",
        "--to",
        target.to_str().unwrap(),
        id[0],
        id[1],
    ]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains(&format!("{art}: sha256 mismatch")) && r.stderr.contains("nothing was restored"),
        "{}",
        r.stderr
    );
    assert!(!target.exists());

    // Someone rewrites the checksums to match the damaged file: quick verification cannot tell
    // any more, but age's authentication does, in deep verification, restores and by hand.
    reseal_artifact(&dir, art, &path);
    assert!(sha256sum_ok(&dir));
    env.run(&["verify", "--latest", "nightly"]).ok();
    let v = env.run(&["verify", "--latest", "nightly", "--deep", id[0], id[1]]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(
        v.stdout
            .contains(&format!("{art}: does not decrypt and decompress: decryption error")),
        "{}",
        v.stdout
    );
    let r = env.run(&[
        "restore",
        "--latest",
        "nightly",
        "--to",
        target.to_str().unwrap(),
        id[0],
        id[1],
    ]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains(&format!("artifact {art} is damaged")) && r.stderr.contains("decryption error"),
        "{}",
        r.stderr
    );
    assert!(!target.exists(), "a restore that failed leaves no target");
    assert_eq!(
        files(env.dir.path())
            .iter()
            .filter(|f| f.starts_with("restored"))
            .count(),
        0,
        "{:?}",
        files(env.dir.path())
    );
    let st = Command::new("age")
        .args(["-d", "-i", ops.path(), "-o", "/dev/null"])
        .arg(&path)
        .output()
        .expect("age");
    assert!(!st.status.success(), "age -d accepted the damaged file");

    // The original bytes back (and the original checksums): everything passes again.
    fs::write(&path, &orig).unwrap();
    reseal_artifact(&dir, art, &path);
    env.run(&["verify", "--latest", "nightly", "--deep", id[0], id[1]]).ok();
    env.run(&[
        "restore",
        "--latest",
        "nightly",
        "--to",
        target.to_str().unwrap(),
        id[0],
        id[1],
    ])
    .ok();
    assert_eq!(dump(&target), dump(&db));
}

const PASS_VAR: &str = "PACKRAT_E2E_PASSPHRASE";

#[test]
fn a_passphrase_plan_restores_with_the_configured_passphrase_and_records_no_recipients() {
    let env = Env::new();
    let passphrase = "e2e passphrase 4b1d-9c7e, with spaces";
    let db = env.path("app.db");
    seed_db(&db, 1_500, true);
    write_config(
        &env,
        &format!("{}\n{}", sqlite_source("app_db", &db, true), local_sink(&env)),
        "sources = [\"app_db\"]\nsinks = [\"local\"]",
        &format!("passphrase_env = \"{PASS_VAR}\""),
    );
    let with = [(PASS_VAR, passphrase)];
    let dir = pack_dir(&backup(&env, &with, &[]));
    let art = "sqlite/app_db.db.zst.age";
    assert_all_encrypted(&dir, &json!({"scheme": "age", "passphrase": true}));
    let m = manifest(&dir);
    assert!(m["artifacts"][0]["encryption"].get("recipients").is_none(), "{m}");
    let head = fs::read(dir.join(art)).unwrap();
    assert!(
        head.windows(10).any(|w| w == b"-> scrypt "),
        "the age header has no scrypt stanza"
    );

    // Quick verification needs no passphrase (not even the variable).
    env.run(&["verify", "--latest", "nightly"]).ok();
    assert!(sha256sum_ok(&dir));
    // Deep verification and the restore use the plan's passphrase from the config: no --identity.
    run_with(&env, &with, &["verify", "--latest", "nightly", "--deep"]).ok();
    let target = env.path("restored.db");
    let r = run_with(
        &env,
        &with,
        &["restore", "--latest", "nightly", "--to", target.to_str().unwrap()],
    )
    .ok();
    assert!(r.stdout.contains("restored to"), "{}", r.stdout);
    assert_integrity(&target);
    assert_eq!(dump(&target), dump(&db));

    // By hand: age asks for the passphrase on a terminal (here the pseudo-terminal of
    // util-linux `script`), then zstd -d.
    let by_hand = env.path("by_hand.db");
    sh(
        "printf '%s\\n' \"$1\" | timeout 300 script -qec \"age -d -o $(printf %q \"$3.zst\") $(printf %q \"$2\")\" \
         /dev/null > /dev/null; zstd -q -d --rm \"$3.zst\" -o \"$3\"",
        &[passphrase, dir.join(art).to_str().unwrap(), by_hand.to_str().unwrap()],
    );
    assert_integrity(&by_hand);
    assert_eq!(dump(&by_hand), dump(&db));

    // Without the variable: exit 2, the variable named, nothing written; deep verification
    // says so too.
    let v = env.run(&["verify", "--latest", "nightly", "--deep"]);
    assert_eq!(v.code, 2, "{}", v.all());
    assert!(
        v.stderr
            .contains(&format!("environment variable {PASS_VAR} is not set")),
        "{}",
        v.stderr
    );
    let other = env.path("other.db");
    let r = env.run(&["restore", "--latest", "nightly", "--to", other.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr
            .contains(&format!("environment variable {PASS_VAR} is not set")),
        "{}",
        r.stderr
    );
    assert!(!other.exists());
    // A wrong passphrase: exit 2, nothing written.
    let r = run_with(
        &env,
        &[(PASS_VAR, "not the passphrase")],
        &["restore", "--latest", "nightly", "--to", other.to_str().unwrap()],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr.contains(&format!(
            "{} is encrypted to a passphrase; the passphrase given does not open it",
            dir.join(art).display()
        )),
        "{}",
        r.stderr
    );
    assert!(!other.exists());
    let v = run_with(
        &env,
        &[(PASS_VAR, "not the passphrase")],
        &["verify", "--latest", "nightly", "--deep"],
    );
    assert_eq!(v.code, 1, "{}", v.all());
    for text in [r.all(), v.all()] {
        assert!(
            !text.contains(passphrase) && !text.contains("not the passphrase"),
            "{text}"
        );
    }
}

/// Every file below `dir` whose bytes contain one of `needles`, with the needle.
fn files_containing(dir: &Path, needles: &[String]) -> Vec<String> {
    let mut hits = Vec::new();
    for f in files(dir) {
        let bytes = fs::read(dir.join(&f)).unwrap_or_default();
        for n in needles {
            if bytes.windows(n.len()).any(|w| w == n.as_bytes()) {
                hits.push(format!("{f} holds {n:?}"));
            }
        }
    }
    hits
}

#[test]
fn no_identity_or_passphrase_appears_in_any_output_state_or_pack_file() {
    let env = Env::new();
    let mut log = Vec::new();
    let ops = keygen(&env, "ops.key", Some(&mut log));
    let escrow = keygen(&env, "escrow.key", Some(&mut log));
    let wrong = keygen(&env, "wrong.key", Some(&mut log));
    let passphrase = "vault-passphrase-0c5e8f2a71d3";
    let db = env.path("app.db");
    seed_db(&db, 500, true);
    // Plan `nightly`: two recipients, its identity from an environment variable; plan `vault`:
    // a passphrase from another one.
    env.write_config(&format!(
        "state_dir = \"state\"\n\n{}\n{}\n[plans.nightly]\nsources = [\"app_db\"]\nsinks = [\"local\"]\n\
         [plans.nightly.encrypt]\n{}\nidentity_env = \"PACKRAT_E2E_IDENTITY\"\n\n\
         [plans.vault]\nsources = [\"app_db\"]\nsinks = [\"local\"]\n[plans.vault.encrypt]\npassphrase_env = \"{PASS_VAR}\"\n",
        sqlite_source("app_db", &db, true),
        local_sink(&env),
        recipients(&[&ops, &escrow])
    ));
    let identity_text = fs::read_to_string(&ops.file).unwrap();
    let vars = [("PACKRAT_E2E_IDENTITY", identity_text.as_str()), (PASS_VAR, passphrase)];
    let restored = |n: &str| env.path(&format!("restored_{n}.db")).to_str().unwrap().to_string();
    let (r1, r2, r3, r4) = (restored("1"), restored("2"), restored("3"), restored("4"));
    let commands: Vec<(Vec<&str>, i32)> = vec![
        (vec!["config", "check"], 0),
        (vec!["config", "show"], 0),
        (vec!["run", "nightly"], 0),
        (vec!["run", "nightly", "--json"], 0),
        (vec!["run", "vault", "--json"], 0),
        (vec!["list", "--json"], 0),
        (vec!["list"], 0),
        (vec!["status"], 0),
        (vec!["status", "--json"], 0),
        (vec!["jobs", "--json"], 0),
        (vec!["verify", "--latest", "nightly"], 0),
        (vec!["verify", "--latest", "nightly", "--deep", "--json"], 0),
        (vec!["verify", "--latest", "vault", "--deep"], 0),
        (vec!["restore", "--latest", "nightly", "--to", &r1], 0),
        (vec!["restore", "--latest", "vault", "--to", &r2, "--json"], 0),
        (
            vec!["restore", "--latest", "nightly", "--to", &r1, "--overwrite", "--json"],
            0,
        ),
        (vec!["prune", "--dry-run"], 0),
        (vec!["doctor"], -1),
    ];
    for (args, code) in &commands {
        let r = run_with(&env, &vars, args);
        if *code >= 0 {
            assert_eq!(r.code, *code, "{args:?}: {}", r.all());
        }
        log.push(r.all());
    }
    // With debug logging, too.
    for args in [
        vec!["run", "nightly"],
        vec!["verify", "--latest", "vault", "--deep"],
        vec!["restore", "--latest", "nightly", "--to", &r3],
    ] {
        let mut cmd = env.cmd();
        cmd.env("RUST_LOG", "debug").envs(vars.iter().copied()).args(&args);
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        log.push(format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    // Failures name things, never secrets: the wrong identity, a wrong passphrase.
    let r = env.run(&[
        "restore",
        "--latest",
        "nightly",
        "--to",
        &r4,
        "--identity",
        wrong.path(),
    ]);
    assert_eq!(r.code, 2, "{}", r.all());
    log.push(r.all());
    let r = run_with(
        &env,
        &[(PASS_VAR, "a-wrong-passphrase-3e9b")],
        &["restore", "--latest", "vault", "--to", &r4],
    );
    assert_eq!(r.code, 2, "{}", r.all());
    log.push(r.all());
    // The identity variable holding garbage: said so, without its value.
    let r = run_with(
        &env,
        &[("PACKRAT_E2E_IDENTITY", "AGE-SECRET-KEY-1NOTAKEY7f3a")],
        &["verify", "--latest", "nightly", "--deep"],
    );
    assert_ne!(r.code, 0, "{}", r.all());
    assert!(r.all().contains("PACKRAT_E2E_IDENTITY"), "{}", r.all());
    log.push(r.all());

    let mut secrets = Vec::new();
    for k in [&ops, &escrow, &wrong] {
        let body = k.secret["AGE-SECRET-KEY-1".len()..].to_string();
        secrets.extend([
            k.secret.clone(),
            k.secret.to_lowercase(),
            body.clone(),
            body.to_lowercase(),
        ]);
    }
    secrets.extend([
        passphrase.to_string(),
        "a-wrong-passphrase-3e9b".to_string(),
        "NOTAKEY7f3a".to_string(),
    ]);
    for (i, text) in log.iter().enumerate() {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "output {i} holds a secret ({s:?}):\n{text}");
        }
    }
    // config show names the variables, not their values.
    let show = run_with(&env, &vars, &["config", "show"]).ok();
    assert!(
        show.stdout.contains("identity_env = \"PACKRAT_E2E_IDENTITY\"")
            && show.stdout.contains(&format!("passphrase_env = \"{PASS_VAR}\"")),
        "{}",
        show.stdout
    );
    // State (state.db, logs, anything else) and packs (manifests, SHA256SUMS, artifacts).
    let state = env.path("state");
    assert!(
        files(&state).iter().any(|f| f.ends_with("state.db")),
        "{:?}",
        files(&state)
    );
    let packs = env.path("packs");
    assert!(
        files(&packs).iter().filter(|f| f.ends_with("manifest.json")).count() >= 3,
        "{:?}",
        files(&packs)
    );
    // (The scan finds what is there: the identity files themselves hold the secrets.)
    assert_eq!(
        files_containing(env.dir.path(), std::slice::from_ref(&ops.secret)),
        ["ops.key holds ".to_string() + &format!("{:?}", ops.secret)]
    );
    for dir in [&state, &packs] {
        let hits = files_containing(dir, &secrets);
        assert!(hits.is_empty(), "{hits:?}");
    }
    // The restores worked (so the commands above really read the packs).
    for r in [&r1, &r2, &r3] {
        assert_eq!(dump(Path::new(r)), dump(&db));
    }
    assert!(!Path::new(&r4).exists());
}

// ----- MongoDB ----------------------------------------------------------------------------------

/// The `_id`s of a `.bson.zst.age` artifact decrypted and decompressed by hand, decoded with
/// pymongo's `bson` (the test server's Python).
fn bson_ids_by_hand(key: &Key, artifact: &Path) -> Vec<i64> {
    const DECODE: &str = "import sys, bson\n\
print(' '.join(str(d['_id']) for d in bson.decode_all(sys.stdin.buffer.read())))\n";
    let out = sh(
        "age -d -i \"$1\" \"$2\" | zstd -q -d | \"$3\" -c \"$4\"",
        &[
            key.path(),
            artifact.to_str().unwrap(),
            &crash::var("PACKRAT_TEST_MONGO_PYTHON"),
            DECODE,
        ],
    );
    String::from_utf8(out)
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().expect("an integer _id"))
        .collect()
}

#[test]
fn mongo_full_and_incremental_encrypted_packs_chain_restore_and_decrypt_by_hand() {
    let uri = crash::var("PACKRAT_TEST_MONGO_URI");
    let db = format!("e2e_enc_{}", std::process::id());
    let target = format!("{db}_restored");
    struct Drop2(String, Vec<String>);
    impl Drop for Drop2 {
        fn drop(&mut self) {
            let dbs: Vec<&str> = self.1.iter().map(String::as_str).collect();
            crash::mongo_drop(&self.0, &dbs);
        }
    }
    let _drop = Drop2(uri.clone(), vec![db.clone(), target.clone()]);
    let env = Env::new();
    let ops = keygen(&env, "ops.key", None);
    let escrow = keygen(&env, "escrow.key", None);
    // The recipients from a file, as `age -R` reads it.
    let rfile = env.path("recipients.txt");
    fs::write(
        &rfile,
        format!("# ops\n{}\n\n# escrow\n{}\n", ops.recipient, escrow.recipient),
    )
    .unwrap();
    env.write_config(&format!(
        r#"state_dir = "state"

[sources.mes]
type = "mongo"
uri_env = "MES_URI"
database = "{db}"

{}
[plans.hot]
source = "mes"
sinks = ["local"]
[plans.hot.mongo]
collections = ["logs"]
time_field = "createdAt"
first_run = "all"
lag = "1s"
[plans.hot.encrypt]
recipients_file = "{}"
"#,
        local_sink(&env),
        rfile.display()
    ));
    let vars = [("MES_URI", uri.as_str())];
    let lagged = || std::thread::sleep(std::time::Duration::from_millis(1500)); // past the 1 s lag
    crash::mongo_seed(&uri, &db, 300, 0, 200);
    lagged();
    let full = run_with(&env, &vars, &["run", "hot", "--full", "--json"]).ok().json();
    assert_eq!(full["job"]["records"], 300, "{full}");
    crash::mongo_seed(&uri, &db, 200, 300, 200);
    lagged();
    let inc = run_with(&env, &vars, &["run", "hot", "--incremental", "--json"])
        .ok()
        .json();
    assert_eq!(inc["job"]["records"], 200, "only the new documents: {inc}");
    let (full_dir, inc_dir) = (pack_dir(&full), pack_dir(&inc));
    let want = json!({"scheme": "age", "recipients": [&ops.recipient, &escrow.recipient]});
    let data = format!("mongo/{db}/logs.bson.zst.age");
    for dir in [&full_dir, &inc_dir] {
        assert_all_encrypted(dir, &want);
        let paths = artifact_paths(&manifest(dir));
        assert!(
            paths.contains(&data) && paths.contains(&format!("mongo/{db}/logs.metadata.json.age")),
            "{paths:?}"
        );
        env.run(&["verify", dir.to_str().unwrap()]).ok();
        env.run(&["verify", dir.to_str().unwrap(), "--deep", "--identity", ops.path()])
            .ok();
    }

    // A chain restore without an identity: exit 2, nothing written.
    let restore = |extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--latest",
            "hot",
            "--chain",
            "--to-uri-env",
            "MES_URI",
            "--into-db",
            &target,
        ];
        args.extend_from_slice(extra);
        run_with(&env, &vars, &args)
    };
    let list = "import sys, pymongo\nc = pymongo.MongoClient(sys.argv[1])\nprint(sorted(c[sys.argv[2]].list_collection_names()))\n";
    let r = restore(&[]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("--identity"), "{}", r.stderr);
    assert_eq!(crash::py(list, &[&uri, &target]), "[]", "nothing may be written");
    // With the identity: both packs, every document.
    let r = restore(&["--identity", escrow.path(), "--json"]).ok().json();
    assert_eq!(r["packs"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(crash::mongo_ids(&uri, &target), (0..500).collect::<Vec<i64>>());
    assert_eq!(crash::mongo_ids(&uri, &target), crash::mongo_ids(&uri, &db));

    // By hand: age -d | zstd -d gives the BSON of each pack's documents.
    assert_eq!(
        bson_ids_by_hand(&ops, &full_dir.join(&data)),
        (0..300).collect::<Vec<i64>>()
    );
    assert_eq!(
        bson_ids_by_hand(&escrow, &inc_dir.join(&data)),
        (300..500).collect::<Vec<i64>>()
    );
    let meta = sh(
        "age -d -i \"$1\" \"$2\"",
        &[
            ops.path(),
            full_dir
                .join(format!("mongo/{db}/logs.metadata.json.age"))
                .to_str()
                .unwrap(),
        ],
    );
    let meta: Value = serde_json::from_slice(&meta).expect("the metadata decrypts to JSON");
    assert!(meta.is_object(), "{meta}");
}

// ----- Docker -----------------------------------------------------------------------------------

#[test]
fn docker_volume_archives_are_encrypted_list_with_age_and_tar_and_restore_with_the_identity() {
    let d = Docker::from_env();
    let env = Env::new();
    let project = Project::up(&d, env.dir.path(), &format!("encd{}", std::process::id()));
    project.fill(30, 8);
    let volume = project.volume();
    let before = d.fingerprint(&volume);
    let ops = keygen(&env, "ops.key", None);
    write_config(
        &env,
        &format!(
            "[sources.app_stack]\ntype = \"docker\"\ncompose_file = \"{}\"\nhelper_image = \"{}\"\ndocker_host = \"{}\"\n\n{}",
            project.file.display(),
            d.image,
            d.host,
            local_sink(&env)
        ),
        "sources = [\"app_stack\"]\nsinks = [\"local\"]",
        &recipients(&[&ops]),
    );
    let dir = pack_dir(&backup(&env, &[], &[]));
    assert_all_encrypted(&dir, &json!({"scheme": "age", "recipients": [&ops.recipient]}));
    let archive = format!("docker/volumes/{volume}.tar.zst.age");
    let compose = format!("docker/compose/{}/docker-compose.yml.age", project.name);
    let paths = artifact_paths(&manifest(&dir));
    assert!(paths.contains(&archive) && paths.contains(&compose), "{paths:?}");
    env.run(&["verify", "--latest", "nightly"]).ok();
    env.run(&["verify", "--latest", "nightly", "--deep", "--identity", ops.path()])
        .ok();

    // By hand: age -d | zstd -d | tar t lists every file of the volume.
    let listing = String::from_utf8(sh(
        "age -d -i \"$1\" \"$2\" | zstd -q -d | tar -t",
        &[ops.path(), dir.join(&archive).to_str().unwrap()],
    ))
    .unwrap();
    let names: BTreeSet<&str> = listing.lines().map(|l| l.trim_start_matches("./")).collect();
    for i in 0..30 {
        let f = format!("d{}/f{i}", i % 20);
        assert!(names.contains(f.as_str()), "{f} not in the archive:\n{listing}");
    }
    let compose_file = sh(
        "age -d -i \"$1\" \"$2\"",
        &[ops.path(), dir.join(&compose).to_str().unwrap()],
    );
    assert!(
        compose_file == fs::read(&project.file).unwrap(),
        "the compose file differs"
    );

    // The app and its volume gone: a restore without the identity is refused and creates no
    // volume; with it, the volume comes back as it was.
    project
        .docker
        .compose(&project.file, &project.name, &["down", "-v", "-t", "1"]);
    assert!(!d.volume_exists(&volume));
    let r = env.run(&["restore", "--latest", "nightly", "--volumes"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains(&needs_identity(&archive, &[&ops])), "{}", r.stderr);
    assert!(!d.volume_exists(&volume), "no volume may be created");
    let r = env
        .run(&["restore", "--latest", "nightly", "--volumes", "--identity", ops.path()])
        .ok();
    assert!(r.stdout.contains(&format!("restored volume {volume}")), "{}", r.stdout);
    assert_eq!(d.fingerprint(&volume), before);
}

// ----- sinks: the CIFS replica and the bucket ---------------------------------------------------

#[test]
fn an_encrypted_pack_replicates_to_the_cifs_share_verifies_there_and_restores_from_it() {
    let share = Share::new("enc");
    let env = Env::new();
    let ops = keygen(&env, "ops.key", None);
    let escrow = keygen(&env, "escrow.key", None);
    let db = env.path("app.db");
    seed_db(&db, 5_000, true);
    write_config(
        &env,
        &format!(
            "{}\n{}\n[sinks.windows]\ntype = \"cifs-replica\"\npath = \"{}\"\nallowed_fs_types = [\"{}\"]\n",
            sqlite_source("app_db", &db, true),
            local_sink(&env),
            share.dir.display(),
            share.fs_type
        ),
        "sources = [\"app_db\"]\nsinks = [\"local\", \"windows\"]",
        &recipients(&[&ops, &escrow]),
    );
    let run = backup(&env, &[], &[]);
    assert_eq!(run["job"]["message"], "backup completed (synced)", "{run}");
    assert_eq!(run["job"]["replication"], "succeeded", "{run}");
    let local = pack_dir(&run);
    let replica = PathBuf::from(run["replicas"][0]["location"].as_str().expect("replica location"));
    // The ciphertext, byte for byte, on the share.
    let want = files(&local);
    assert!(want.contains(&"sqlite/app_db.db.zst.age".to_string()), "{want:?}");
    let mut got = files(&replica);
    got.retain(|f| f != "replication_manifest.json");
    assert_eq!(got, want);
    for f in &want {
        assert!(
            fs::read(replica.join(f)).unwrap() == fs::read(local.join(f)).unwrap(),
            "{f} differs on the share"
        );
    }
    assert_all_encrypted(
        &replica,
        &json!({"scheme": "age", "recipients": [&ops.recipient, &escrow.recipient]}),
    );
    assert!(sha256sum_ok(&replica));

    // Verified on the share: quick without a key, deep only with an identity.
    env.run(&["verify", "--sink", "windows", "--latest", "nightly"]).ok();
    let v = env.run(&["verify", "--sink", "windows", "--latest", "nightly", "--deep"]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(
        v.stdout
            .contains(&needs_identity("sqlite/app_db.db.zst.age", &[&ops, &escrow])),
        "{}",
        v.stdout
    );
    let v = env
        .run(&[
            "verify",
            "--sink",
            "windows",
            "--latest",
            "nightly",
            "--deep",
            "--identity",
            escrow.path(),
        ])
        .ok();
    assert!(v.stdout.starts_with("OK"), "{}", v.stdout);

    // The local disk lost: the restore comes from the share.
    fs::remove_dir_all(env.path("packs")).unwrap();
    let to = env.path("restored.db");
    env.run(&[
        "restore",
        "--latest",
        "nightly",
        "--sink",
        "windows",
        "--to",
        to.to_str().unwrap(),
        "--identity",
        ops.path(),
    ])
    .ok();
    assert_integrity(&to);
    assert_eq!(dump(&to), dump(&db));
}

/// The raw bucket, as another tool sees it.
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

#[test]
fn an_encrypted_pack_replicates_to_the_bucket_verifies_there_and_restores_from_it() {
    let cluster = Cluster::from_env();
    let bucket = Bucket::new("enc");
    let env = Env::new();
    let ops = keygen(&env, "ops.key", None);
    let escrow = keygen(&env, "escrow.key", None);
    let db = env.path("app.db");
    seed_db(&db, 5_000, true);
    write_config(
        &env,
        &format!(
            "{}\n{}\n{}",
            sqlite_source("app_db", &db, true),
            local_sink(&env),
            bucket.sink_toml("offsite")
        ),
        "sources = [\"app_db\"]\nsinks = [\"local\", \"offsite\"]",
        &recipients(&[&ops, &escrow]),
    );
    let run = backup(&env, &[], &[]);
    assert_eq!(run["job"]["message"], "backup completed (synced)", "{run}");
    assert_eq!(run["job"]["replication"], "succeeded", "{run}");
    let local = pack_dir(&run);
    let id = run["pack"]["id"].as_str().unwrap().to_string();

    // The bucket holds the ciphertext, byte for byte, and no plaintext name.
    let op = raw(&cluster);
    let prefix = format!("{}/nightly/{id}", bucket.prefix);
    let mut keys: Vec<String> = op
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
    keys.sort();
    let art = "sqlite/app_db.db.zst.age";
    let key = format!("{prefix}/{art}");
    assert!(keys.contains(&key), "{keys:?}");
    assert!(
        !keys.iter().any(|k| k.ends_with(".db.zst") || k.ends_with(".db")),
        "{keys:?}"
    );
    let stored = op.read(&key).expect("read").to_vec();
    assert!(
        stored == fs::read(local.join(art)).unwrap(),
        "the bucket's copy differs"
    );

    // Verified straight from the bucket: quick without a key, deep only with an identity.
    env.run(&["verify", "--sink", "offsite", "--latest", "nightly"]).ok();
    let v = env.run(&["verify", "--sink", "offsite", "--latest", "nightly", "--deep"]);
    assert_eq!(v.code, 1, "{}", v.all());
    assert!(v.stdout.contains("reading it needs an identity"), "{}", v.stdout);
    let v = env
        .run(&[
            "verify",
            "--sink",
            "offsite",
            "--latest",
            "nightly",
            "--deep",
            "--identity",
            ops.path(),
        ])
        .ok();
    assert!(v.stdout.starts_with("OK"), "{}", v.stdout);

    // The local disk lost: the restore comes from the bucket.
    fs::remove_dir_all(env.path("packs")).unwrap();
    let to = env.path("restored.db");
    let r = env.run(&[
        "restore",
        "--latest",
        "nightly",
        "--sink",
        "offsite",
        "--to",
        to.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(!to.exists());
    env.run(&[
        "restore",
        "--latest",
        "nightly",
        "--sink",
        "offsite",
        "--to",
        to.to_str().unwrap(),
        "--identity",
        escrow.path(),
    ])
    .ok();
    assert_integrity(&to);
    assert_eq!(dump(&to), dump(&db));
}

// ----- retention --------------------------------------------------------------------------------

#[test]
fn retention_prunes_encrypted_packs_without_a_key_and_the_kept_ones_deep_verify() {
    let env = Env::new();
    let ops = keygen(&env, "ops.key", None);
    let db = env.path("app.db");
    seed_db(&db, 300, true);
    let config = |retention: &str, identity: bool| {
        let id = if identity {
            format!("\nidentity_file = \"{}\"", ops.path())
        } else {
            String::new()
        };
        write_config(
            &env,
            &format!("{}\n{}", sqlite_source("app_db", &db, true), local_sink(&env)),
            &format!("sources = [\"app_db\"]\nsinks = [\"local\"]\n{retention}"),
            &format!("{}{id}", recipients(&[&ops])),
        );
    };
    let plan_dir = env.path("packs/nightly");
    let id_of = |run: &Value| run["pack"]["id"].as_str().unwrap().to_string();
    // The pack directories, as a set (ids made within one second get a suffix, and a removed
    // pack's id may be given again, so their names need not sort by time).
    let packs = || subdirs(&plan_dir).into_iter().collect::<BTreeSet<String>>();
    let set = |ids: &[&String]| ids.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();

    // No identity anywhere in the config: retention reads manifests only.
    config("", false);
    let a = id_of(&backup(&env, &[], &[]));
    let b = id_of(&backup(&env, &[], &[]));
    let c = id_of(&backup(&env, &[], &[]));
    assert_eq!(packs(), set(&[&a, &b, &c]));
    config("retention = { keep_last = 2 }", false);
    let dry = env.run(&["prune", "--dry-run"]).ok();
    assert!(
        dry.stdout
            .contains("plan nightly on sink local (dry run): keep 2, would remove 1"),
        "{}",
        dry.stdout
    );
    assert_eq!(packs(), set(&[&a, &b, &c]), "a dry run removes nothing");
    let pruned = env.run(&["prune"]).ok();
    let verdict = |id: &str| {
        pruned
            .stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_string)
    };
    assert_eq!(verdict(&a).as_deref(), Some("remove"), "{}", pruned.stdout);
    assert_eq!(verdict(&b).as_deref(), Some("keep"), "{}", pruned.stdout);
    assert_eq!(verdict(&c).as_deref(), Some("keep"), "{}", pruned.stdout);
    assert_eq!(packs(), set(&[&b, &c]));

    // keep_last = 1 and an incremental on top of c: c stays as the base of its chain, b goes
    // (retention after the run).
    config("retention = { keep_last = 1 }", false);
    let d = id_of(&backup(&env, &[], &["--incremental"]));
    assert_eq!(packs(), set(&[&c, &d]));
    let list = env.run(&["list", "nightly", "--json"]).ok().json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");

    // The kept packs deep-verify: with --identity, and with the plan's identity_file.
    for id in [&c, &d] {
        let sel = format!("nightly/{id}");
        let v = env.run(&["verify", &sel, "--deep"]);
        assert_eq!(v.code, 1, "{}", v.all());
        env.run(&["verify", &sel, "--deep", "--identity", ops.path()]).ok();
        assert!(sha256sum_ok(&plan_dir.join(id)));
    }
    config("retention = { keep_last = 1 }", true);
    for id in [&c, &d] {
        let v = env.run(&["verify", &format!("nightly/{id}"), "--deep"]).ok();
        assert!(v.stdout.starts_with("OK"), "{}", v.stdout);
    }
    let to = env.path("restored.db");
    env.run(&["restore", "--latest", "nightly", "--to", to.to_str().unwrap()])
        .ok();
    assert_eq!(dump(&to), dump(&db));
}

/// Records the sha256 of the file at `path` (artifact `art` of the pack in `dir`) in the
/// manifest and `SHA256SUMS`, as someone covering up a change would.
fn reseal_artifact(dir: &Path, art: &str, path: &Path) {
    let mut m = manifest(dir);
    for a in m["artifacts"].as_array_mut().unwrap() {
        if a["path"] == art {
            a["sha256"] = Value::from(sha256_hex(path));
        }
    }
    let mut text = serde_json::to_vec_pretty(&m).unwrap();
    text.push(b'\n');
    fs::write(dir.join("manifest.json"), &text).unwrap();
    let sums: String = fs::read_to_string(dir.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|l| {
            if l.ends_with(&format!("  {art}")) {
                format!("{}  {art}\n", sha256_hex(path))
            } else if l.ends_with("  manifest.json") {
                format!("{}  manifest.json\n", sha256_hex(&dir.join("manifest.json")))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    fs::write(dir.join("SHA256SUMS"), sums).unwrap();
}

//! Fuzzing the config loader: random and mutated configs (the examples in `examples/`, the
//! README's config and one that sets every daemon table, mutated by bytes, lines, keys and
//! values, with non-UTF-8 inserted) go through `Config::parse` and `Config::load`.
//!
//! Properties, for every input: no panic and no hang; `load` and `parse` agree; every error
//! names the config file and a line; every accepted config survives `config show` (its redacted
//! TOML parses again to the same config).
//!
//! 10,000 inputs per test by default; `PACKRAT_FUZZ_CASES` sets another count.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use packrat_app::config::Config;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};

const MES: &str = include_str!("../../../examples/mes.toml");
const MIGRATION: &str = include_str!("../../../examples/migration-pack.toml");
const README: &str = include_str!("../../../README.md");

/// Every table the examples leave out, so mutations reach their checks too.
const DAEMON: &str = r#"
state_dir = "state"
catch_up = "skip"
[sources.db]
type = "sqlite"
path = "app.db"
name = "app"
[sources.stack]
type = "docker"
project = "app"
volumes = ["app_data"]
extra_files = ["nginx.conf"]
[sinks.local]
type = "local"
path = "packs"
[sinks.windows]
type = "cifs-replica"
path = "/mnt/replica/App"
layout = "date"
retries = 3
[plans.nightly]
sources = ["db", "stack"]
sinks = ["local", "windows"]
full = "0 2 * * *"
max_age = "36h"
retention.keep_daily = 7
[daemon]
grace_period = "30s"
log_dir = "logs"
log_level = "packratd=debug,info"
[api]
bind = "127.0.0.1:0"
token_file = "token"
[health]
interval = "1m"
[alerts.ops]
type = "slack"
url_env = "SLACK_URL"
min_severity = "warning"
[alerts.ding]
type = "dingtalk"
url_file = "ding.url"
secret_env = "DING_SECRET"
[alerts.mail]
type = "email"
host = "smtp.example.com"
password_env = "SMTP_PASSWORD"
from = "backup@example.com"
to = ["ops@example.com"]
"#;

/// The first ```toml block of the README.
fn readme_config() -> &'static str {
    let start = README.find("```toml\n").expect("README has a toml block") + "```toml\n".len();
    let len = README[start..].find("```").expect("closed block");
    &README[start..start + len]
}

fn seeds() -> Vec<&'static str> {
    vec![MES, MIGRATION, readme_config(), DAEMON]
}

/// Values that hit the checks: empty and blank strings, Windows paths, zeros, wrong types,
/// huge numbers, odd strings.
const VALUES: &[&str] = &[
    "\"\"",
    "\"  \"",
    "''",
    "\"D:/incrementalBackups\"",
    "'D:\\incrementalBackups'",
    "\"C:\"",
    "'\\\\server\\share'",
    "0",
    "-1",
    "99999999999999999999",
    "1e400",
    "nan",
    "true",
    "[]",
    "[\"\"]",
    "[\"a\", 1]",
    "{}",
    "{ keep_daily = 0 }",
    "{ a = { b = 1 } }",
    "1979-05-27T07:32:00Z",
    "\"0 * * *\"",
    "\"* * * * * * *\"",
    "\"@daily\"",
    "\"60 24 32 13 8\"",
    "\"0s\"",
    "\"72h\"",
    "\"-5s\"",
    "\"99999999999999999999h\"",
    "\"today\"",
    "\"2026-02-30\"",
    "\"Mars/Base\"",
    "\"0.0.0.0:8787\"",
    "\"$bad\"",
    "\"a\\u0000b\"",
    "\"../../etc\"",
    "\"ünïcödé\"",
    "\"mongo\"",
    "\"cifs-replica\"",
    "\"sqlite\"",
    "\"local\"",
];

/// Keys of the schema (and a few that are not), to rename a key into another valid one.
const KEYS: &[&str] = &[
    "state_dir",
    "time_zone",
    "parallelism",
    "catch_up",
    "type",
    "path",
    "name",
    "compress",
    "busy_timeout",
    "uri_env",
    "uri_file",
    "database",
    "compose_file",
    "project",
    "volumes",
    "volume_prefix",
    "exclude_volumes",
    "extra_files",
    "helper_image",
    "docker_host",
    "min_free_mb",
    "allowed_fs_types",
    "layout",
    "retries",
    "retry_delay",
    "source",
    "sources",
    "sinks",
    "prefix",
    "full",
    "incremental",
    "retention",
    "retention.keep_daily",
    "retention.max_packs",
    "enabled",
    "zstd_level",
    "max_age",
    "collections",
    "exclude_collections",
    "time_field",
    "lag",
    "first_run",
    "per_collection.x.mode",
    "log_dir",
    "log_level",
    "bind",
    "token_env",
    "token_file",
    "url_env",
    "url_file",
    "secret_env",
    "host",
    "to",
    "from",
    "\"\"",
    "a.b.c",
    "unknown_key",
];

/// Whole lines to insert.
const LINES: &[&str] = &[
    "[plans.extra]",
    "[sources.x]",
    "[sinks.x]",
    "[[plans]]",
    "[daemon]",
    "[api]",
    "[health]",
    "[alerts.x]",
    "[plans.hot.per_collection.chat]",
    "[sources.\"\"]",
    "[\"\"]",
    "parallelism = 0",
    "state_dir = \"\"",
    "source = \"mes\"",
    "sources = [\"mes\"]",
    "type = \"email\"",
    "= 1",
    "[",
    "]]",
    "\"unterminated",
    "a = \"\"\"\nmulti\nline\"\"\"",
    "x = { y = 1, y = 2 }",
    "state_dir = \"a\"\nstate_dir = \"b\"",
    "\u{feff}bom = 1",
];

#[derive(Debug, Clone)]
enum Mutation {
    SetByte(usize, u8),
    InsertBytes(usize, Vec<u8>),
    DeleteRange(usize, usize),
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    InsertLine(usize, String),
    ReplaceValue(usize, String),
    ReplaceKey(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let any_value = prop_oneof![
        3 => proptest::sample::select(VALUES).prop_map(str::to_string),
        1 => "\"[ -~]{0,12}\"".prop_map(|s| s.replace('\\', "/")),
        1 => any::<i64>().prop_map(|i| i.to_string()),
    ];
    let any_line = prop_oneof![
        3 => proptest::sample::select(LINES).prop_map(str::to_string),
        1 => (proptest::sample::select(KEYS), proptest::sample::select(VALUES)).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => "[ -~]{0,30}",
    ];
    prop_oneof![
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..6)).prop_map(|(i, b)| Mutation::InsertBytes(i, b)),
        1 => (any::<usize>(), 0usize..40).prop_map(|(i, n)| Mutation::DeleteRange(i, n)),
        2 => any::<usize>().prop_map(Mutation::DeleteLine),
        1 => any::<usize>().prop_map(Mutation::DuplicateLine),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        2 => (any::<usize>(), any_line).prop_map(|(i, l)| Mutation::InsertLine(i, l)),
        4 => (any::<usize>(), any_value).prop_map(|(i, v)| Mutation::ReplaceValue(i, v)),
        2 => (any::<usize>(), proptest::sample::select(KEYS)).prop_map(|(i, k)| Mutation::ReplaceKey(i, k.to_string())),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let lines = |b: &[u8]| -> Vec<Vec<u8>> { b.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect() };
    let join = |l: Vec<Vec<u8>>| l.join(&b'\n');
    match m {
        Mutation::SetByte(i, b) if !bytes.is_empty() => {
            let n = bytes.len();
            bytes[i % n] = *b;
        }
        Mutation::InsertBytes(i, b) => {
            let at = i % (bytes.len() + 1);
            bytes.splice(at..at, b.iter().copied());
        }
        Mutation::DeleteRange(i, n) if !bytes.is_empty() => {
            let at = i % bytes.len();
            let end = (at + n).min(bytes.len());
            bytes.drain(at..end);
        }
        Mutation::DeleteLine(i) => {
            let mut l = lines(bytes);
            let n = l.len();
            l.remove(i % n);
            *bytes = join(l);
        }
        Mutation::DuplicateLine(i) => {
            let mut l = lines(bytes);
            let at = i % l.len();
            let copy = l[at].clone();
            l.insert(at, copy);
            *bytes = join(l);
        }
        Mutation::SwapLines(a, b) => {
            let mut l = lines(bytes);
            let n = l.len();
            l.swap(a % n, b % n);
            *bytes = join(l);
        }
        Mutation::InsertLine(i, s) => {
            let mut l = lines(bytes);
            let at = i % (l.len() + 1);
            l.insert(at, s.as_bytes().to_vec());
            *bytes = join(l);
        }
        Mutation::ReplaceValue(i, v) | Mutation::ReplaceKey(i, v) => {
            let mut l = lines(bytes);
            let with_eq: Vec<usize> = (0..l.len()).filter(|&j| l[j].contains(&b'=')).collect();
            if with_eq.is_empty() {
                return;
            }
            let j = with_eq[i % with_eq.len()];
            let eq = l[j].iter().position(|&c| c == b'=').unwrap_or(0);
            let line = &l[j];
            l[j] = if matches!(m, Mutation::ReplaceValue(..)) {
                [&line[..=eq], b" ", v.as_bytes()].concat()
            } else {
                [v.as_bytes(), b" ", &line[eq..]].concat()
            };
            *bytes = join(l);
        }
        _ => {}
    }
}

/// Outcome counters, to check that the inputs reach both accepted and refused configs.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    err: AtomicUsize,
    not_utf8: AtomicUsize,
}

/// Runs `Config::load` and `Config::parse` on `bytes` and checks the properties.
fn check(bytes: &[u8], file: &Path, tally: &Tally) -> Result<(), TestCaseError> {
    std::fs::write(file, bytes).map_err(|e| TestCaseError::fail(format!("write {}: {e}", file.display())))?;
    let loaded = Config::load(file);
    let shown_file = file.display().to_string();
    if let Ok(text) = std::str::from_utf8(bytes) {
        let parsed = Config::parse(text, file);
        prop_assert_eq!(
            loaded.as_ref().map_err(ToString::to_string).map(|_| ()),
            parsed.as_ref().map_err(ToString::to_string).map(|_| ()),
            "load and parse disagree"
        );
    } else {
        tally.not_utf8.fetch_add(1, Ordering::Relaxed);
    }
    match loaded {
        Ok(cfg) => {
            tally.ok.fetch_add(1, Ordering::Relaxed);
            let shown = cfg.to_redacted_toml();
            let again = Config::parse(&shown, file);
            prop_assert!(
                again.is_ok(),
                "config show does not parse again: {:?}\n{}",
                again.err(),
                shown
            );
            let again = again.unwrap();
            prop_assert_eq!(&again.sources, &cfg.sources);
            prop_assert_eq!(&again.sinks, &cfg.sinks);
            prop_assert_eq!(&again.plans, &cfg.plans);
            prop_assert_eq!(&again.state_dir, &cfg.state_dir);
        }
        Err(e) => {
            tally.err.fetch_add(1, Ordering::Relaxed);
            let msg = e.to_string();
            prop_assert!(msg.contains(&shown_file), "error does not name the file: {}", msg);
            prop_assert!(msg.contains("line "), "error does not name a line: {}", msg);
        }
    }
    Ok(())
}

/// The input being checked, and since when.
type Current = Option<(Instant, Vec<u8>)>;

/// Runs `cases` inputs from `strategy` on a worker thread, failing when one panics, breaks a
/// property or does not return within a minute (a hang; a normal input takes milliseconds).
fn fuzz<S>(name: &str, strategy: S, to_bytes: fn(&S::Value) -> Vec<u8>) -> Arc<Tally>
where
    S: Strategy + Send + 'static,
    S::Value: std::fmt::Debug,
{
    let cases: u32 = std::env::var("PACKRAT_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("packrat.toml");
    let tally = Arc::new(Tally::default());
    let current: Arc<Mutex<Current>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let worker = {
        let (tally, current, done) = (tally.clone(), current.clone(), done.clone());
        std::thread::spawn(move || {
            let mut runner = TestRunner::new(RunnerConfig {
                cases,
                failure_persistence: None,
                ..RunnerConfig::default()
            });
            let result = runner.run(&strategy, |input| {
                let bytes = to_bytes(&input);
                *current.lock().unwrap() = Some((Instant::now(), bytes.clone()));
                let r = check(&bytes, &file, &tally);
                *current.lock().unwrap() = None;
                done.fetch_add(1, Ordering::Relaxed);
                r
            });
            drop(dir);
            result.map_err(|e| e.to_string())
        })
    };
    while !worker.is_finished() {
        std::thread::sleep(Duration::from_millis(200));
        if let Some((since, bytes)) = current.lock().unwrap().as_ref()
            && since.elapsed() > Duration::from_secs(60)
        {
            panic!(
                "{name}: the loader hangs (over 60 s) on this input:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    match worker.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{name}: {e}"),
        Err(_) => panic!("{name}: the worker panicked"),
    }
    let (ok, err, not_utf8) = (
        tally.ok.load(Ordering::Relaxed),
        tally.err.load(Ordering::Relaxed),
        tally.not_utf8.load(Ordering::Relaxed),
    );
    eprintln!("{name}: {ok} accepted, {err} refused ({not_utf8} not UTF-8)");
    assert!(ok + err >= cases as usize, "{name}: only {} inputs ran", ok + err);
    tally
}

#[test]
fn mutated_configs_never_panic_and_every_error_names_file_and_line() {
    let seeds = seeds();
    for s in &seeds {
        Config::parse(s, Path::new("/etc/packrat/packrat.toml")).expect("every seed is a valid config");
    }
    let strategy = (
        proptest::sample::select(seeds),
        proptest::collection::vec(mutation(), 1..5),
    );
    let tally = fuzz("mutated", strategy, |(seed, muts)| {
        let mut bytes = seed.as_bytes().to_vec();
        for m in muts {
            apply(&mut bytes, m);
        }
        bytes
    });
    let (ok, err, not_utf8) = (
        tally.ok.load(Ordering::Relaxed),
        tally.err.load(Ordering::Relaxed),
        tally.not_utf8.load(Ordering::Relaxed),
    );
    assert!(
        ok >= 200 && err >= 2_000 && not_utf8 >= 100,
        "inputs too uniform: {ok} ok, {err} err, {not_utf8} not UTF-8"
    );
}

/// A config assembled from schema vocabulary: tables and `key = value` lines in random order.
fn random_config() -> impl Strategy<Value = String> {
    let table = prop_oneof![
        Just(String::new()),
        proptest::sample::select(&["sources", "sinks", "plans", "alerts", "per_collection"][..]).prop_flat_map(|t| {
            proptest::sample::select(&["a", "db", "mes", "local", "x.y", "\"\""][..])
                .prop_map(move |n| format!("[{t}.{n}]"))
        }),
        proptest::sample::select(
            &[
                "[daemon]",
                "[api]",
                "[health]",
                "[plans.a.per_collection.c]",
                "[[plans]]"
            ][..]
        )
        .prop_map(str::to_string),
    ];
    let line =
        (proptest::sample::select(KEYS), proptest::sample::select(VALUES)).prop_map(|(k, v)| format!("{k} = {v}"));
    let block =
        (table, proptest::collection::vec(line, 0..6)).prop_map(|(t, lines)| format!("{t}\n{}", lines.join("\n")));
    proptest::collection::vec(block, 0..8).prop_map(|blocks| blocks.join("\n"))
}

#[test]
fn random_configs_never_panic_and_every_error_names_file_and_line() {
    let tally = fuzz("random", random_config(), |s: &String| s.clone().into_bytes());
    assert!(tally.err.load(Ordering::Relaxed) >= 1_000);
}

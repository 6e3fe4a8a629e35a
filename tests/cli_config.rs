//! Config errors through the real binaries: `packrat config check`, `packrat run` and
//! `packratd` exit 2 with the file, the line and the key, and touch nothing.

use std::process::Command;

use packrat_e2e::{Env, packrat_bin};

/// A valid config with every table the cases below edit; line numbers matter.
const BASE: &str = r#"state_dir = "state"
time_zone = "Asia/Shanghai"

[sources.app_db]
type = "sqlite"
path = "app.db"

[sinks.local]
type = "local"
path = "packs"

[plans.nightly]
sources = ["app_db"]
sinks = ["local"]
full = "0 4 * * *"

[daemon]
log_level = "info"

[api]
token_env = "PACKRAT_TOKEN"

[alerts.ops]
type = "slack"
url_env = "SLACK_URL"
"#;

/// (what to replace, replacement, line, key, words the message must contain)
const CASES: &[(&str, &str, usize, &str, &str)] = &[
    (
        "state_dir = \"state\"",
        "state_dir = \"\"",
        1,
        "state_dir",
        "must not be empty",
    ),
    (
        "path = \"app.db\"",
        "path = \"\"",
        6,
        "sources.app_db.path",
        "must not be empty",
    ),
    (
        "url_env = \"SLACK_URL\"",
        "url_env = \"\"",
        25,
        "alerts.ops.url_env",
        "must not be empty",
    ),
    (
        "token_env = \"PACKRAT_TOKEN\"",
        "token_file = \"\"",
        21,
        "api.token_file",
        "must not be empty",
    ),
    (
        "log_level = \"info\"",
        "log_level = \"\"",
        18,
        "daemon.log_level",
        "must not be empty",
    ),
    (
        "log_level = \"info\"",
        "log_level = \"packratd=loud\"",
        18,
        "daemon.log_level",
        "is not a log level",
    ),
    (
        "sinks = [\"local\"]",
        "sinks = [\"local\"]\nsource = \"app_db\"",
        15,
        "plans.nightly.source",
        "not both",
    ),
    (
        "time_zone",
        "parallelism = 0\ntime_zone",
        2,
        "parallelism",
        "must be at least 1",
    ),
    (
        "full = \"0 4 * * *\"",
        "full = \"0 4 * *\"",
        15,
        "plans.nightly.full",
        "is not a valid 5-field cron expression",
    ),
    (
        "full = \"0 4 * * *\"",
        "full = \"0 25 * * *\"",
        15,
        "plans.nightly.full",
        "is not a valid 5-field cron expression",
    ),
    (
        "path = \"packs\"",
        "path = \"D:/incrementalBackups\"",
        10,
        "sinks.local.path",
        "looks like a Windows path (drive D:); on Linux use an absolute path such as /srv/backups",
    ),
    (
        "path = \"packs\"",
        "path = '\\\\fileserver\\backup'",
        10,
        "sinks.local.path",
        "looks like a Windows network (UNC) path",
    ),
];

#[test]
fn every_config_error_names_file_line_and_key_and_exits_2() {
    let env = Env::new();
    env.write_config(BASE);
    env.run(&["config", "check"]).ok();
    let file = env.config().display().to_string();
    for (from, to, line, key, words) in CASES {
        let text = BASE.replace(from, to);
        assert_ne!(text, BASE, "{from}");
        env.write_config(&text);
        let r = env.run(&["config", "check"]);
        assert_eq!(r.code, 2, "{to}: {}", r.all());
        let want = format!("error: config file {file}, line {line}, key `{key}`: ");
        assert!(r.stderr.starts_with(&want), "{to}:\n{}\nwanted: {want}", r.stderr);
        assert!(r.stderr.contains(words), "{to}: {}", r.stderr);
        assert!(!r.stderr.contains("[]"), "{}", r.stderr);
    }
    assert!(!env.path("state").exists(), "a bad config must not create state");
}

#[test]
fn run_and_the_daemon_refuse_a_bad_schedule_before_touching_anything() {
    let env = Env::new();
    env.write_config(&BASE.replace("full = \"0 4 * * *\"", "full = \"every night\""));
    let r = env.run(&["run", "nightly"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(
        r.stderr
            .contains("line 15, key `plans.nightly.full`: `every night` is not a valid"),
        "{}",
        r.stderr
    );
    let daemon = packrat_bin().with_file_name(format!("packratd{}", std::env::consts::EXE_SUFFIX));
    let out = Command::new(&daemon)
        .arg("--config")
        .arg(env.config())
        .env_remove("PACKRAT_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", daemon.display()));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 15, key `plans.nightly.full`"), "{stderr}");
    assert!(!env.path("state").exists());
    assert!(!env.path("packs").exists());
}

#[test]
fn a_config_that_is_not_utf8_is_named_with_offset_and_line() {
    let env = Env::new();
    let mut bytes = BASE.as_bytes().to_vec();
    // "Latin-1" editors write é as one byte: 0xE9 in the sink path on line 10.
    let at = BASE.find("packs").unwrap();
    bytes.splice(at..at, [0xE9]);
    std::fs::write(env.config(), &bytes).unwrap();
    let r = env.run(&["config", "check"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert_eq!(
        r.stderr.trim_end(),
        format!(
            "error: config file {} is not UTF-8: invalid byte 0xE9 at offset {at} (line 10); save it as UTF-8",
            env.config().display()
        )
    );
}

#[test]
fn a_windows_path_in_the_mes_guide_style_is_refused_not_created_under_the_config_dir() {
    // The original MES setup wrote its target as `D:/incrementalBackups`; on Linux that used to
    // become <config dir>/D:/incrementalBackups.
    let env = Env::new();
    packrat_e2e::seed_db(&env.path("app.db"), 5, true);
    env.write_config(&BASE.replace("path = \"packs\"", "path = \"D:/incrementalBackups\""));
    let r = env.run(&["run", "nightly"]);
    assert_eq!(r.code, 2, "{}", r.all());
    assert!(r.stderr.contains("key `sinks.local.path`"), "{}", r.stderr);
    assert!(
        !env.path("D:").exists(),
        "nothing may be created under the config's directory"
    );
}

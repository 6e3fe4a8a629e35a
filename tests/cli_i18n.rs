//! Chinese and English through the real binary: the config's `language` (or the locale) picks
//! the language of job messages, `run`/`jobs`/`status` output, doctor lines, alert texts and
//! errors; JSON keys and values that scripts rely on (status, replication) stay English.

use packrat_e2e::{Env, seed_db};

/// An installation with a SQLite source, one local sink (two with `second_sink`), and
/// `language_line` at the top of the config.
fn setup(language_line: &str, second_sink: bool) -> Env {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 200, true);
    let replica = if second_sink {
        format!(
            "\n[sinks.copy]\ntype = \"local\"\npath = \"{}\"\nmin_free_mb = 1\n",
            env.path("copy").display()
        )
    } else {
        String::new()
    };
    let sinks = if second_sink {
        r#"["local", "copy"]"#
    } else {
        r#"["local"]"#
    };
    env.write_config(&format!(
        r#"{language_line}
state_dir = "state"
time_zone = "Asia/Shanghai"

[sources.app_db]
type = "sqlite"
path = "{}"

[sinks.local]
type = "local"
path = "{}"
min_free_mb = 1
{replica}
[plans.nightly]
sources = ["app_db"]
sinks = {sinks}
"#,
        db.display(),
        env.path("packs").display()
    ));
    env
}

/// The keys of a JSON value, recursively (objects' keys with their paths; array items as `[]`).
fn keys(v: &serde_json::Value, at: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{at}.{k}");
                out.push(p.clone());
                keys(v, &p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for v in a {
                keys(v, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

fn key_set(v: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    keys(v, "", &mut out);
    out.sort();
    out.dedup();
    out
}

#[test]
fn chinese_job_messages_output_doctor_and_alerts() {
    let env = setup(r#"language = "zh-CN""#, false);
    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(run["job"]["status"], "completed", "status values stay English");
    assert_eq!(run["job"]["message"], "备份完成");
    let jobs = env.run(&["jobs", "--json"]).ok().json();
    assert_eq!(jobs[0]["message"], "备份完成", "{jobs}");

    let human = env.run(&["run", "nightly"]).ok();
    assert!(human.stdout.contains("任务 2：已完成，备份完成"), "{}", human.stdout);
    assert!(human.stdout.contains("备份包"), "{}", human.stdout);
    let table = env.run(&["jobs"]).ok();
    assert!(
        table.stdout.contains("计划") && table.stdout.contains("已完成"),
        "{}",
        table.stdout
    );
    let status = env.run(&["status"]).ok();
    assert!(status.stdout.contains("备份：共 2 次，成功 2 次"), "{}", status.stdout);

    let doctor = env.run(&["doctor"]).ok();
    assert!(doctor.stdout.contains("正常  存储 local："), "{}", doctor.stdout);
    assert!(
        doctor.stdout.contains("最近的任务（nightly）：任务 2 备份完成"),
        "{}",
        doctor.stdout
    );
    assert!(!doctor.stdout.contains("latest job"), "{}", doctor.stdout);

    let alert = env.run(&["alert", "test", "log", "--json"]).ok().json();
    let log = std::fs::read_to_string(alert["path"].as_str().unwrap()).unwrap();
    assert!(log.contains("[测试] packrat 告警渠道测试"), "{log}");
    assert!(log.contains("来自 packrat 的测试消息"), "{log}");

    let err = env.run(&["run", "nope"]);
    assert_eq!(err.code, 2, "{}", err.stderr);
    assert!(err.stderr.starts_with("错误："), "{}", err.stderr);
    assert!(err.stderr.contains("配置中没有计划 `nope`"), "{}", err.stderr);
}

#[test]
fn chinese_synced_message_with_a_second_sink() {
    let env = setup(r#"language = "zh-CN""#, true);
    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(run["job"]["message"], "备份完成（已同步）");
    assert_eq!(run["job"]["replication"], "succeeded");
    let doctor = env.run(&["doctor"]).ok();
    assert!(doctor.stdout.contains("任务 1 备份完成（已同步）"), "{}", doctor.stdout);
}

#[test]
fn english_texts_and_the_same_json_keys() {
    let en = setup(r#"language = "en""#, false);
    let zh = setup(r#"language = "zh-CN""#, false);
    let run_en = en.run(&["run", "nightly", "--json"]).ok().json();
    let run_zh = zh.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(run_en["job"]["message"], "backup completed");
    assert_eq!(key_set(&run_en), key_set(&run_zh));
    for args in [
        &["jobs", "--json"][..],
        &["status", "--json"],
        &["doctor", "--json"],
        &["list", "--json"],
    ] {
        let a = en.run(args).ok().json();
        let b = zh.run(args).ok().json();
        assert_eq!(key_set(&a), key_set(&b), "{args:?}");
    }
    let doctor = en.run(&["doctor"]).ok();
    assert!(
        doctor.stdout.contains("latest job (nightly): job 1 backup completed"),
        "{}",
        doctor.stdout
    );
    let alert = en.run(&["alert", "test", "log", "--json"]).ok().json();
    let log = std::fs::read_to_string(alert["path"].as_str().unwrap()).unwrap();
    assert!(log.contains("[TEST] packrat alert channel test"), "{log}");
    let err = en.run(&["run", "nope"]);
    assert!(err.stderr.starts_with("error: no plan `nope`"), "{}", err.stderr);
}

#[test]
fn the_locale_is_the_default() {
    let env = setup("", false);
    let mut cmd = env.cmd();
    cmd.env("LANG", "zh_CN.UTF-8").args(["run", "nightly", "--json"]);
    let out = cmd.output().expect("spawn packrat");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["job"]["message"], "备份完成");
    // Without a config the locale decides too.
    let out = std::process::Command::new(packrat_e2e::packrat_bin())
        .env_remove("PACKRAT_CONFIG")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("LANG", "zh_CN.UTF-8")
        .args(["status"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("未指定配置文件"),
        "{:?}",
        out
    );
    // C locale, no `language`: English.
    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(run["job"]["message"], "backup completed");
}

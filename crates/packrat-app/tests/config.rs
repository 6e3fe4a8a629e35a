//! The composed configuration: parsing, path resolution, and errors that name the file, the line
//! and the key, for every section.

mod composed {
    #![allow(unused_imports)]
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use alerts::Severity;
    use alerts::{AlertChannelConfig, HealthConfig, SmtpTls};
    use backup_core::config::Secret;
    use packrat_app::config::*;
    use policy_schedule::CatchUp;
    use retention::{CalendarDuration, RetentionConfig};
    use sink_cifs_replica::{CifsReplicaSinkConfig, ReplicaLayout};
    use source_mongo::{CollectionMode, FirstRun, MongoPlanConfig};

    const GOOD: &str = r#"
time_zone = "Asia/Shanghai"
state_dir = "state"

[sources.app_db]
type = "sqlite"
path = "data/app.db"
compress = true
busy_timeout = "5s"

[sinks.local]
type = "local"
path = "/backups"

[plans.nightly]
sources = ["app_db"]
sinks = ["local"]
full = "0 4 * * *"
retention = { keep_daily = 7, keep_within = "72h" }
"#;

    #[test]
    fn a_mongo_plan_key_at_its_old_place_names_the_new_table() {
        for key in [
            "time_field = \"t\"",
            "collections = [\"a\"]",
            "first_run = \"all\"",
            "lag = \"1m\"",
        ] {
            let bad = format!("{GOOD}{key}\n");
            let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err().to_string();
            let name = key.split(' ').next().unwrap();
            assert!(
                e.starts_with(&format!(
                    "config file p.toml, line 20, key `plans.nightly.{name}`: unknown field `{name}`"
                )) && e.contains("the MongoDB plan keys moved to their own table [plans.nightly.mongo]"),
                "{e}"
            );
        }
        // Other unknown keys get no such hint.
        let e = Config::parse(&format!("{GOOD}colour = \"red\"\n"), Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `colour`") && !e.contains("MongoDB"), "{e}");
    }

    #[test]
    fn parses_and_resolves_relative_paths() {
        let c = Config::parse(GOOD, Path::new("/etc/packrat/packrat.toml")).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/etc/packrat/state"));
        let SourceConfig::Sqlite(s) = &c.sources["app_db"] else {
            panic!("sqlite")
        };
        assert_eq!(s.path, PathBuf::from("/etc/packrat/data/app.db"));
        assert_eq!(s.busy_timeout, Duration::from_secs(5));
        assert_eq!(
            c.plans["nightly"].retention.keep_within,
            Some(CalendarDuration::hours(72))
        );
        assert_eq!(c.plan_time_zone(&c.plans["nightly"]), chrono_tz::Asia::Shanghai);
        let shown = c.to_redacted_toml();
        assert!(Config::parse(&shown, Path::new("/x/y.toml")).is_ok(), "{shown}");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let bad = GOOD.replace("compress = true", "compres = true");
        let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("p.toml"), "{e}");
        assert!(e.contains("line 8"), "{e}");
        assert!(e.contains("compres"), "{e}");
    }

    #[test]
    fn unknown_type_and_references_are_explained() {
        let bad = GOOD.replace("type = \"sqlite\"", "type = \"oracle\"");
        let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("oracle"), "{e}");
        let bad = GOOD.replace("sinks = [\"local\"]", "sinks = [\"nas\"]");
        let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err().to_string();
        assert!(
            e.contains("line 17, key `plans.nightly.sinks`: unknown sink `nas`") && e.contains("local"),
            "{e}"
        );
    }

    fn parse_err(text: &str) -> String {
        Config::parse(text, Path::new("/etc/packrat/packrat.toml"))
            .unwrap_err()
            .to_string()
    }

    /// `GOOD` plus a mongo source, a docker source, a replica sink and every daemon table, so that
    /// every string-valued key is present once.
    const ALL_KEYS: &str = r#"
time_zone = "UTC"
state_dir = "/var/lib/packrat"
[sources.app_db]
type = "sqlite"
path = "/srv/app.db"
name = "app"
[sources.mes]
type = "mongo"
uri_env = "MES_URI"
database = "mes"
[sources.stack]
type = "docker"
compose_file = "/srv/app/docker-compose.yml"
project = "app"
exclude_volumes = ["app_cache"]
extra_files = ["/srv/app/nginx.conf"]
helper_image = "busybox:latest"
docker_host = "unix:///var/run/docker.sock"
[sinks.local]
type = "local"
path = "/backups"
[sinks.windows]
type = "cifs-replica"
path = "/mnt/replica/App"
allowed_fs_types = ["cifs"]
[plans.nightly]
sources = ["app_db", "stack"]
sinks = ["local", "windows"]
prefix = "nightly"
full = "0 4 * * *"
retention = { keep_within = "72h" }
[plans.hot]
source = "mes"
sinks = ["local"]
incremental = "0 * * * *"
[plans.hot.mongo]
collections = ["api_logs"]
time_field = "createdAt"
[plans.hot.mongo.per_collection.chat]
time_field = "updatedAt"
[daemon]
log_dir = "/var/log/packrat"
log_level = "info"
[api]
token_env = "PACKRAT_TOKEN"
[alerts.hook]
type = "webhook"
url_env = "HOOK_URL"
[alerts.ding]
type = "dingtalk"
url_file = "/etc/packrat/ding.url"
secret_env = "DING_SECRET"
[alerts.mail]
type = "email"
host = "smtp.example.com"
username = "backup"
password_file = "/etc/packrat/smtp.pw"
from = "backup@example.com"
to = ["ops@example.com"]
"#;

    /// The document every pack carries: a config file of its own that parses back to the same
    /// plan, sources and sinks, and nothing of other plans or of the daemon.
    #[test]
    fn a_plan_document_is_a_config_of_that_plan_alone_that_parses_back() {
        let c = Config::parse(ALL_KEYS, Path::new("/etc/packrat/packrat.toml")).unwrap();
        for (plan, sources, sinks) in [
            ("nightly", &["app_db", "stack"][..], &["local", "windows"][..]),
            ("hot", &["mes"][..], &["local"][..]),
        ] {
            let doc = c.plan_document(plan).unwrap();
            assert!(
                doc.starts_with(&format!("# The effective configuration of plan `{plan}`")),
                "{doc}"
            );
            assert!(doc.contains(env!("CARGO_PKG_VERSION")), "{doc}");
            let back =
                Config::parse(&doc, Path::new("/packs/x/packrat/plan.toml")).unwrap_or_else(|e| panic!("{e}\n{doc}"));
            assert_eq!(back.plans.keys().collect::<Vec<_>>(), vec![plan], "{doc}");
            assert_eq!(back.plans[plan], c.plans[plan], "{doc}");
            assert_eq!(back.sources.keys().map(String::as_str).collect::<Vec<_>>(), sources);
            assert_eq!(back.sinks.keys().map(String::as_str).collect::<Vec<_>>(), sinks);
            for s in sources {
                assert_eq!(back.sources[*s], c.sources[*s]);
            }
            for s in sinks {
                assert_eq!(back.sinks[*s], c.sinks[*s]);
            }
            assert_eq!((back.time_zone, &back.state_dir), (c.time_zone, &c.state_dir));
            // No alert channels, API or daemon settings: they are not the plan's.
            assert!(
                back.alerts.is_empty() && !doc.contains("PACKRAT_TOKEN") && !doc.contains("[daemon]"),
                "{doc}"
            );
        }
        // The secrets' references are there, by name.
        assert!(c.plan_document("hot").unwrap().contains("uri_env = \"MES_URI\""));
        let e = c.plan_document("weekly").unwrap_err().to_string();
        assert!(e.contains("weekly"), "{e}");
    }

    #[test]
    fn every_string_key_refuses_an_empty_value_naming_file_line_and_key() {
        Config::parse(ALL_KEYS, Path::new("/etc/packrat/packrat.toml")).unwrap();
        let lines: Vec<&str> = ALL_KEYS.lines().collect();
        let mut tested = 0;
        let mut table = String::new();
        for (i, l) in lines.iter().enumerate() {
            if let Some(t) = l.strip_prefix('[') {
                table = t.trim_end_matches(']').to_string();
                continue;
            }
            let Some((key, value)) = l.split_once(" = ") else {
                continue;
            };
            if key == "type" || !value.contains('"') {
                continue;
            }
            // `key = ""`, and for lists `key = [""]`.
            let empty = if value.starts_with('[') { "[\"\"]" } else { "\"\"" };
            let mut bad = lines.clone();
            let replaced = format!("{key} = {empty}");
            bad[i] = &replaced;
            let text = bad.join("\n");
            let e = parse_err(&text);
            let full_key = if table.is_empty() {
                key.to_string()
            } else {
                format!("{table}.{key}")
            };
            let want = format!(
                "config file /etc/packrat/packrat.toml, line {}, key `{full_key}`: must not be empty",
                i + 1
            );
            assert!(e.starts_with(&want), "{replaced}: {e}\nwanted: {want}");
            tested += 1;
        }
        assert!(tested >= 35, "{tested} keys tested");
        // Blank counts as empty; so does an empty name.
        let e = parse_err(&ALL_KEYS.replace("state_dir = \"/var/lib/packrat\"", "state_dir = \"   \""));
        assert!(
            e.contains("line 3, key `state_dir`: must not be empty; give a path"),
            "{e}"
        );
        let e = parse_err(&ALL_KEYS.replace("[sources.app_db]", "[sources.\"\"]"));
        assert!(
            e.contains("line 4, key `sources.\"\"`: a name must not be empty"),
            "{e}"
        );
        let e = parse_err(&ALL_KEYS.replace("uri_env = \"MES_URI\"", "uri_env = \"\""));
        assert!(e.contains("name the environment variable"), "{e}");
    }

    #[test]
    fn the_issue_examples_are_refused_with_file_line_and_key() {
        let cases = [
            ("state_dir = \"state\"", "state_dir = \"\"", 3, "state_dir"),
            ("path = \"data/app.db\"", "path = \"\"", 7, "sources.app_db.path"),
            (
                "[plans.nightly]",
                "[daemon]\nlog_level = \"\"\n[plans.nightly]",
                16,
                "daemon.log_level",
            ),
            (
                "[plans.nightly]",
                "[api]\ntoken_file = \"\"\n[plans.nightly]",
                16,
                "api.token_file",
            ),
            (
                "[plans.nightly]",
                "[alerts.ops]\ntype = \"slack\"\nurl_env = \"\"\n[plans.nightly]",
                17,
                "alerts.ops.url_env",
            ),
            ("time_zone", "parallelism = 0\ntime_zone", 2, "parallelism"),
            (
                "sinks = [\"local\"]",
                "sinks = [\"local\"]\nparallelism = 0",
                18,
                "plans.nightly.parallelism",
            ),
            (
                "sources = [\"app_db\"]",
                "sources = [\"app_db\"]\nsource = \"app_db\"",
                17,
                "plans.nightly.source",
            ),
        ];
        for (from, to, line, key) in cases {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD);
            let e = parse_err(&text);
            let want = format!("config file /etc/packrat/packrat.toml, line {line}, key `{key}`: ");
            assert!(e.starts_with(&want), "{to}: {e}\nwanted: {want}");
            assert!(!e.contains("[]"), "{e}");
        }
        let e = parse_err(&GOOD.replace("time_zone", "parallelism = 0\ntime_zone"));
        assert!(e.contains("must be at least 1\n  2 | parallelism = 0"), "{e}");
        let e = parse_err(&GOOD.replace("sources = [\"app_db\"]", "sources = [\"app_db\"]\nsource = \"app_db\""));
        assert!(e.contains("not both"), "{e}");
    }

    #[cfg(not(windows))]
    #[test]
    fn windows_paths_are_refused_on_linux() {
        for (key_line, p) in [
            ("path = \"/backups\"", "D:/incrementalBackups"),
            ("path = \"/backups\"", "D:\\\\incrementalBackups"),
            ("state_dir = \"state\"", "C:"),
            ("path = \"data/app.db\"", "\\\\\\\\server\\\\share\\\\app.db"),
        ] {
            let key = key_line.split(" = ").next().unwrap();
            let text = GOOD.replace(key_line, &format!("{key} = \"{p}\""));
            assert_ne!(text, GOOD);
            let e = parse_err(&text);
            assert!(e.contains("looks like a Windows"), "{p}: {e}");
            assert!(e.contains(", key `") && e.contains(", line "), "{p}: {e}");
        }
        let e = parse_err(&GOOD.replace("path = \"/backups\"", "path = \"D:/incrementalBackups\""));
        assert!(
            e.starts_with(
                "config file /etc/packrat/packrat.toml, line 13, key `sinks.local.path`: `D:/incrementalBackups` looks \
                 like a Windows path (drive D:); on Linux use an absolute path such as /srv/backups"
            ),
            "{e}"
        );
        let e = parse_err(&GOOD.replace("[plans.nightly]", "[daemon]\nlog_dir = 'E:\\logs'\n[plans.nightly]"));
        assert!(e.contains("key `daemon.log_dir`"), "{e}");
    }

    #[test]
    fn non_utf8_files_are_refused_with_offset_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("packrat.toml");
        let mut bytes = GOOD.as_bytes().to_vec();
        let at = GOOD.find("data/app.db").unwrap();
        bytes[at] = 0xFF;
        std::fs::write(&f, &bytes).unwrap();
        let e = Config::load(&f).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "config file {} is not UTF-8: invalid byte 0xFF at offset {at} (line 7); save it as UTF-8",
                f.display()
            )
        );
    }

    #[test]
    fn type_errors_and_missing_keys_name_the_key() {
        // Inside a tagged table (`type = ".."`) the parser only knows the table: the key whose
        // value the message quotes is looked up.
        let e = parse_err(&GOOD.replace("busy_timeout = \"5s\"", "busy_timeout = 5"));
        assert!(
            e.contains("line 9, key `sources.app_db.busy_timeout`: invalid type: integer `5`"),
            "{e}"
        );
        let e = parse_err(&GOOD.replace("compress = true", "compress = \"yes\""));
        assert!(e.contains("line 8, key `sources.app_db.compress`"), "{e}");
        let e = parse_err(&GOOD.replace("type = \"sqlite\"", "type = \"oracle\""));
        assert!(
            e.contains("line 6, key `sources.app_db.type`: unknown variant `oracle`"),
            "{e}"
        );
        let e = parse_err(&GOOD.replace("path = \"data/app.db\"\n", ""));
        assert!(
            e.contains("line 5, key `sources.app_db.path`: missing field `path`"),
            "{e}"
        );
        let e = parse_err(&GOOD.replace("state_dir = \"state\"\n", ""));
        assert!(e.contains("key `state_dir`") && e.contains("missing field"), "{e}");
        let e = parse_err(
            &GOOD
                .replace("zstd", "x")
                .replace("full = ", "zstd_level = \"high\"\nfull = "),
        );
        assert!(e.contains("line 18, key `plans.nightly.zstd_level`"), "{e}");
    }

    #[test]
    fn checks_from_other_crates_use_the_same_format() {
        let c = Config::parse(GOOD, Path::new("/etc/packrat/packrat.toml")).unwrap();
        assert_eq!(c.file(), Path::new("/etc/packrat/packrat.toml"));
        assert_eq!(c.line_of(&["plans", "nightly", "full"]), Some(18));
        let e = c.key_error(&["plans", "nightly", "full"], "bad cron").to_string();
        assert_eq!(
            e,
            "config file /etc/packrat/packrat.toml, line 18, key `plans.nightly.full`: bad cron\n  18 | full = \"0 4 * * *\""
        );
        assert_eq!(
            c.line_of(&["plans", "nightly", "retention", "keep_daily"]),
            Some(19),
            "inline table"
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.redact("uri mongodb://u:hunter2@h"), "uri mongodb://u:***@h");
        assert!(Secret::resolve("x", Some("PACKRAT_TEST_SURELY_UNSET_VAR"), None).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("uri");
        std::fs::write(&f, "\n").unwrap();
        let e = Secret::resolve("sources.mes.uri_env/uri_file", None, Some(&f))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "sources.mes.uri_env/uri_file: secret file {} is empty; put the value there",
                f.display()
            )
        );
    }
}

mod daemon {
    #![allow(unused_imports)]
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use alerts::Severity;
    use alerts::{AlertChannelConfig, HealthConfig, SmtpTls};
    use backup_core::config::Secret;
    use packrat_app::config::*;
    use policy_schedule::CatchUp;
    use retention::{CalendarDuration, RetentionConfig};
    use sink_cifs_replica::{CifsReplicaSinkConfig, ReplicaLayout};
    use source_mongo::{CollectionMode, FirstRun, MongoPlanConfig};

    const BASE: &str = r#"
state_dir = "state"
catch_up = "skip"

[sources.app_db]
type = "sqlite"
path = "app.db"

[sinks.local]
type = "local"
path = "/backups"

[plans.nightly]
sources = ["app_db"]
sinks = ["local"]
full = "0 2 * * *"
catch_up = "once"
max_age = "36h"

[daemon]
grace_period = "30s"
log_dir = "logs"

[api]
bind = "127.0.0.1:0"
token_file = "token"

[health]
interval = "1m"
cooldown = "10m"

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
tls = "tls"
username = "backup"
password_env = "SMTP_PASSWORD"
from = "backup@example.com"
to = ["ops@example.com"]
"#;

    #[test]
    fn daemon_sections_parse_resolve_and_round_trip() {
        let c = Config::parse(BASE, Path::new("/etc/packrat/packrat.toml")).unwrap();
        assert_eq!(c.catch_up, CatchUp::Skip);
        assert_eq!(c.plan_catch_up(&c.plans["nightly"]), CatchUp::Once);
        assert_eq!(c.plans["nightly"].max_age, Some(Duration::from_secs(36 * 3600)));
        assert_eq!(c.daemon.grace_period, Duration::from_secs(30));
        assert_eq!(c.log_dir(), PathBuf::from("/etc/packrat/logs"));
        assert_eq!(c.api.token_file, Some(PathBuf::from("/etc/packrat/token")));
        assert_eq!(c.health.max_consecutive_failures, 3);
        assert_eq!(c.alerts["ops"].kind(), "slack");
        assert_eq!(c.alerts["ops"].min_severity(), Severity::Warning);
        let AlertChannelConfig::Dingtalk(d) = &c.alerts["ding"] else {
            panic!("dingtalk")
        };
        assert_eq!(d.url_file, Some(PathBuf::from("/etc/packrat/ding.url")));
        let AlertChannelConfig::Email(e) = &c.alerts["mail"] else {
            panic!("email")
        };
        assert_eq!(e.port(), 465);
        let shown = c.to_redacted_toml();
        let again = Config::parse(&shown, Path::new("/x/y.toml")).unwrap();
        assert_eq!(again.alerts, c.alerts);
        assert_eq!(again.health, c.health);
    }

    #[test]
    fn unsafe_api_and_inline_secrets_are_refused() {
        let open = BASE.replace(
            "bind = \"127.0.0.1:0\"\ntoken_file = \"token\"",
            "bind = \"0.0.0.0:8787\"",
        );
        let e = Config::parse(&open, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("not a loopback address") && e.contains("token"), "{e}");
        let inline = BASE.replace("url_env = \"SLACK_URL\"", "url = \"https://hooks.slack.com/x\"");
        let e = Config::parse(&inline, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("unknown field `url`"), "{e}");
        let none = BASE.replace("url_env = \"SLACK_URL\"\n", "");
        let e = Config::parse(&none, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("alerts.ops") && e.contains("url_env"), "{e}");
        let bad = BASE.replace("grace_period", "grace");
        assert!(Config::parse(&bad, Path::new("p.toml")).is_err());
    }

    #[test]
    fn api_token_from_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("token"), "s3cret\n").unwrap();
        let c = Config::parse(BASE, &t.path().join("packrat.toml")).unwrap();
        assert_eq!(c.api.token().unwrap().unwrap().expose(), "s3cret");
        assert!(ApiConfig::default().token().unwrap().is_none());
    }
}

mod mongo {
    #![allow(unused_imports)]
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use alerts::Severity;
    use alerts::{AlertChannelConfig, HealthConfig, SmtpTls};
    use backup_core::config::Secret;
    use packrat_app::config::*;
    use policy_schedule::CatchUp;
    use retention::{CalendarDuration, RetentionConfig};
    use sink_cifs_replica::{CifsReplicaSinkConfig, ReplicaLayout};
    use source_mongo::{CollectionMode, FirstRun, MongoPlanConfig};

    const MES: &str = r#"
time_zone = "Asia/Shanghai"
state_dir = "state"
parallelism = 2
[sources.mes]
type = "mongo"
uri_env = "MES_MONGO_URI"
database = "mes"
[sinks.local]
type = "local"
path = "/backups"
[plans.hot]
source = "mes"
sinks = ["local"]
incremental = "0 * * * *"
[plans.hot.mongo]
collections = ["api_logs", "scan*"]
exclude_collections = ["*_tmp"]
time_field = "createdAt"
lag = "2m"
first_run = "2026-01-01"
[plans.hot.mongo.per_collection.chat]
mode = "full"
[plans.hot.mongo.per_collection.scanrecords]
time_field = "updatedAt"
"#;

    #[test]
    fn mongo_plan_keys_parse_and_round_trip() {
        let c = Config::parse(MES, Path::new("/etc/packrat.toml")).unwrap();
        let plan = &c.plans["hot"];
        let p = plan.mongo();
        assert_eq!(p.collections, ["api_logs", "scan*"]);
        assert_eq!(p.lag(), Duration::from_secs(120));
        assert_eq!(
            p.first_run,
            Some(FirstRun::Date(chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()))
        );
        assert_eq!(p.per_collection["chat"].mode, Some(CollectionMode::Full));
        assert_eq!(p.effective_parallelism(c.parallelism), 2);
        let again = Config::parse(&c.to_redacted_toml(), Path::new("/x.toml")).unwrap();
        assert_eq!(again.plans["hot"], *plan);
    }

    #[test]
    fn bad_mongo_keys_are_explained() {
        let bad = MES.replace("first_run = \"2026-01-01\"", "first_run = \"yesterday\"");
        let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("first_run") && e.contains("yesterday"), "{e}");
        let bad = MES.replace("time_field = \"createdAt\"", "time_field = \"$bad\"");
        let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err().to_string();
        assert!(e.contains("line 19, key `plans.hot.mongo.time_field`: `$bad`"), "{e}");
        let bad = MES.replace("mode = \"full\"", "mode = \"fast\"");
        assert!(Config::parse(&bad, Path::new("p.toml")).is_err());
        let bad = MES.replace(
            "type = \"mongo\"\nuri_env = \"MES_MONGO_URI\"\ndatabase = \"mes\"",
            "type = \"sqlite\"\npath = \"x.db\"",
        );
        let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err().to_string();
        assert!(
            e.contains("key `plans.hot.mongo`") && e.contains("applies to mongo sources"),
            "{e}"
        );
    }

    #[test]
    fn first_run_forms() {
        assert_eq!("today".parse::<FirstRun>().unwrap(), FirstRun::Today);
        assert_eq!("all".parse::<FirstRun>().unwrap(), FirstRun::All);
        assert!(matches!(
            "2026-01-01T08:00:00+08:00".parse::<FirstRun>().unwrap(),
            FirstRun::At(_)
        ));
        assert!("2026-13-01".parse::<FirstRun>().is_err());
    }
}

mod replica {
    #![allow(unused_imports)]
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use alerts::Severity;
    use alerts::{AlertChannelConfig, HealthConfig, SmtpTls};
    use backup_core::config::Secret;
    use packrat_app::config::*;
    use policy_schedule::CatchUp;
    use retention::{CalendarDuration, RetentionConfig};
    use sink_cifs_replica::{CifsReplicaSinkConfig, ReplicaLayout};
    use source_mongo::{CollectionMode, FirstRun, MongoPlanConfig};

    const BASE: &str = r#"
state_dir = "state"
[sources.db]
type = "sqlite"
path = "app.db"
[sinks.local]
type = "local"
path = "packs"
[sinks.windows]
type = "cifs-replica"
SINK
[plans.nightly]
sources = ["db"]
sinks = ["local", "windows"]
"#;

    fn parse(sink: &str) -> backup_core::Result<Config> {
        Config::parse(&BASE.replace("SINK", sink), Path::new("/etc/packrat/packrat.toml"))
    }

    fn replica(c: &Config) -> &CifsReplicaSinkConfig {
        match &c.sinks["windows"] {
            SinkConfig::CifsReplica(r) => r,
            other => panic!("not a replica: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse("path = \"replica\"").unwrap();
        let r = replica(&c);
        assert_eq!(r.path, PathBuf::from("/etc/packrat/replica"));
        assert_eq!(r.allowed_fs_types, vec!["cifs", "smb3"]);
        assert_eq!(r.layout, ReplicaLayout::Flat);
        assert_eq!((r.retries, r.retry_delay), (3, Duration::from_secs(1)));
        assert_eq!(c.sinks["windows"].kind(), "cifs-replica");
        let shown = c.to_redacted_toml();
        assert!(Config::parse(&shown, Path::new("/x/y.toml")).is_ok(), "{shown}");
    }

    #[test]
    fn an_unset_path_stays_empty_so_the_job_can_say_so() {
        let c = parse("layout = \"date\"").unwrap();
        assert_eq!(replica(&c).path, PathBuf::new());
        assert_eq!(replica(&c).layout, ReplicaLayout::Date);
        let shown = c.to_redacted_toml();
        assert_eq!(
            replica(&Config::parse(&shown, Path::new("/x/y.toml")).unwrap()).path,
            PathBuf::new()
        );
        let e = parse("path = \"\"").unwrap_err().to_string();
        assert!(e.contains("key `sinks.windows.path`: must not be empty"), "{e}");
    }

    #[test]
    fn bad_values_are_explained() {
        let e = parse("path = \"/mnt/r\"\nallowed_fs_types = []")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `sinks.windows.allowed_fs_types`: is empty"), "{e}");
        let e = parse("path = \"/mnt/r\"\nlayout = \"weekly\"").unwrap_err().to_string();
        assert!(e.contains("weekly"), "{e}");
        let e = parse("path = \"/mnt/r\"\nretries = 99").unwrap_err().to_string();
        assert!(e.contains("key `sinks.windows.retries`: 99 is out of range"), "{e}");
        let e = parse("path = \"/mnt/r\"\nmount = \"x\"").unwrap_err().to_string();
        assert!(e.contains("mount"), "{e}");
    }
}

mod retention_rules {
    #![allow(unused_imports)]
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use alerts::Severity;
    use alerts::{AlertChannelConfig, HealthConfig, SmtpTls};
    use backup_core::config::Secret;
    use packrat_app::config::*;
    use policy_schedule::CatchUp;
    use retention::{CalendarDuration, RetentionConfig};
    use sink_cifs_replica::{CifsReplicaSinkConfig, ReplicaLayout};
    use source_mongo::{CollectionMode, FirstRun, MongoPlanConfig};

    const PLAN: &str = r#"
state_dir = "/var/lib/packrat"

[sources.app_db]
type = "sqlite"
path = "/srv/app.db"

[sinks.local]
type = "local"
path = "/backups"

[plans.nightly]
sources = ["app_db"]
sinks = ["local"]
RETENTION
"#;

    fn config(retention: &str) -> Result<Config, String> {
        Config::parse(&PLAN.replace("RETENTION", retention), Path::new("/etc/packrat/p.toml"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn config_errors_name_file_line_key_and_fix() {
        for (retention, key, says) in [
            (
                "retention = { keep_daily = 0 }",
                "keep_daily",
                "remove the key to not use the rule, or use `keep_last = 1`",
            ),
            (
                "retention = { keep_within = \"72h\", keep_last = 0 }",
                "keep_last",
                "keep count of 0",
            ),
            ("retention = { max_packs = 0 }", "max_packs", "max_packs = 0 is refused"),
            (
                "retention = { keep_within = \"0d\" }",
                "keep_within",
                "keep_within of 0",
            ),
            (
                "retention = { keep_within = \"1m30s\" }",
                "keep_within",
                "`s` (seconds)",
            ),
            ("retention = { keep_within = \"5min\" }", "keep_within", "(minutes)"),
            (
                "retention = { keep_within = \"1M\" }",
                "keep_within",
                "months are written `m`",
            ),
            ("retention = { keep_within = \"-3d\" }", "keep_within", "negative"),
            ("retention = { keep_within = \"\" }", "keep_within", "empty"),
            (
                "[plans.nightly.retention]\nkeep_weekly = 4\nkeep_monthly = 0",
                "keep_monthly",
                "keep count of 0",
            ),
            ("retention = { keep_daily = -1 }", "keep_daily", "u32"),
        ] {
            let e = config(retention).unwrap_err();
            let line = PLAN.lines().position(|l| l == "RETENTION").unwrap()
                + 1
                + retention.lines().position(|l| l.contains(key)).unwrap();
            assert!(e.contains("/etc/packrat/p.toml"), "{retention}: {e}");
            assert!(
                e.contains(&format!("line {line}, key `plans.nightly.retention.{key}`")),
                "{retention}: {e}"
            );
            assert!(e.contains(says), "{retention}: {e}");
        }
    }

    #[test]
    fn good_rules_parse_and_round_trip() {
        let c = config("retention = { keep_within = \"1y6m\", keep_last = 1, max_packs = 30 }").unwrap();
        let r = &c.plans["nightly"].retention;
        assert_eq!(r.keep_within.unwrap().to_string(), "1y6m");
        assert_eq!((r.keep_last, r.max_packs), (Some(1), Some(30)));
        let shown = c.to_redacted_toml();
        let again = Config::parse(&shown, Path::new("/x/p.toml")).unwrap();
        assert_eq!(again.plans["nightly"].retention, *r, "{shown}");
        let c = config("retention = { keep_within = \"72h\" }").unwrap();
        assert_eq!(
            c.plans["nightly"].retention.keep_within,
            Some(CalendarDuration::hours(72))
        );
        let c = config("").unwrap();
        assert_eq!(c.plans["nightly"].retention, RetentionConfig::default());
    }
}

mod schedule {
    #![allow(unused_imports)]
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use alerts::Severity;
    use alerts::{AlertChannelConfig, HealthConfig, SmtpTls};
    use backup_core::config::Secret;
    use packrat_app::config::*;
    use policy_schedule::CatchUp;
    use retention::{CalendarDuration, RetentionConfig};
    use sink_cifs_replica::{CifsReplicaSinkConfig, ReplicaLayout};
    use source_mongo::{CollectionMode, FirstRun, MongoPlanConfig};

    #[test]
    fn bad_cron_in_a_config_names_file_line_and_key() {
        let text = "state_dir = \"/s\"\n[sources.db]\ntype = \"sqlite\"\npath = \"/db\"\n[sinks.l]\ntype = \"local\"\n\
                    path = \"/b\"\n[plans.hot]\nsource = \"db\"\nsinks = [\"l\"]\nfull = \"0 4 * * *\"\n\
                    incremental = \"0 * * *\"\n";
        let e = Config::parse(text, std::path::Path::new("/etc/packrat.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "config file /etc/packrat.toml, line 12, key `plans.hot.incremental`: `0 * * *` is not a valid \
                 5-field cron expression ("
            ),
            "{e}"
        );
        Config::parse(
            &text.replace("0 * * *\"", "0 * * * *\""),
            std::path::Path::new("/etc/packrat.toml"),
        )
        .unwrap();
    }
}

//! The `type = "docker"` configuration: the example parses, relative paths are resolved, bad
//! combinations are explained. (No engine needed.)

use std::path::Path;
use std::time::Duration;

use backup_core::Source;
use packrat_app::config::{Config, SourceConfig};
use source_docker::{DockerSource, SqliteInVolumes};

fn parse(source: &str) -> Result<Config, String> {
    let text = format!(
        "state_dir = \"state\"\n[sources.stack]\n{source}\n[sinks.local]\ntype = \"local\"\npath = \"/b\"\n\
         [plans.nightly]\nsources = [\"stack\"]\nsinks = [\"local\"]\n"
    );
    Config::parse(&text, Path::new("/etc/packrat/packrat.toml")).map_err(|e| e.to_string())
}

#[test]
fn the_migration_pack_example_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/migration-pack.toml");
    let cfg = Config::load(&path).unwrap();
    let SourceConfig::Docker(c) = &cfg.sources["app_stack"] else {
        panic!("app_stack must be a docker source")
    };
    assert!(c.stop_during_backup && c.include_images);
    assert_eq!(c.stop_timeout, Duration::from_secs(30));
    let plan = &cfg.plans["nightly"];
    assert_eq!(plan.source_names(), ["app_db", "app_stack"]);
    assert_eq!(plan.full.as_ref().map(|c| c.as_str()), Some("0 4 * * *"));
    assert_eq!(cfg.plan_time_zone(plan), chrono_tz::Asia::Shanghai);
    let s = DockerSource::from_config("app_stack", c);
    assert_eq!(s.kind(), "docker");
    assert_eq!(s.name(), "app_stack");
}

#[test]
fn relative_paths_resolve_against_the_config_file() {
    let cfg = parse("type = \"docker\"\ncompose_file = \"app/docker-compose.yml\"\nextra_files = [\"app/nginx.conf\"]")
        .unwrap();
    let SourceConfig::Docker(c) = &cfg.sources["stack"] else {
        panic!()
    };
    assert_eq!(
        c.compose_file.as_deref(),
        Some(Path::new("/etc/packrat/app/docker-compose.yml"))
    );
    assert_eq!(c.extra_files, [Path::new("/etc/packrat/app/nginx.conf")]);
    assert!(!c.stop_during_backup && !c.include_images);
    // config show round-trips.
    let shown = cfg.to_redacted_toml();
    assert!(Config::parse(&shown, Path::new("/x/p.toml")).is_ok(), "{shown}");
}

#[test]
fn sqlite_in_volumes_defaults_to_snapshot_and_takes_three_modes() {
    let cfg = parse("type = \"docker\"\nproject = \"app\"").unwrap();
    let SourceConfig::Docker(c) = &cfg.sources["stack"] else {
        panic!()
    };
    assert_eq!(c.sqlite_in_volumes, SqliteInVolumes::Snapshot);
    for (s, want) in [
        ("snapshot", SqliteInVolumes::Snapshot),
        ("tar", SqliteInVolumes::Tar),
        ("fail", SqliteInVolumes::Fail),
    ] {
        let cfg = parse(&format!(
            "type = \"docker\"\nproject = \"app\"\nsqlite_in_volumes = \"{s}\""
        ))
        .unwrap();
        let SourceConfig::Docker(c) = &cfg.sources["stack"] else {
            panic!()
        };
        assert_eq!(c.sqlite_in_volumes, want);
        let shown = cfg.to_redacted_toml();
        assert!(shown.contains(&format!("sqlite_in_volumes = \"{s}\"")), "{shown}");
    }
    let e = parse("type = \"docker\"\nproject = \"app\"\nsqlite_in_volumes = \"copy\"").unwrap_err();
    assert!(e.contains("sqlite_in_volumes") || e.contains("copy"), "{e}");
}

#[test]
fn bad_combinations_are_explained() {
    for (src, want) in [
        ("type = \"docker\"", "needs `compose_file` or `project`"),
        (
            "type = \"docker\"\nproject = \"app\"\nvolumes = [\"a_b\"]\nvolume_prefix = \"a_\"",
            "either `volumes`",
        ),
        (
            "type = \"docker\"\nvolumes = [\"a_b\"]\nstop_during_backup = true",
            "need the project",
        ),
        ("type = \"docker\"\nproject = \"My App\"", "invalid project `My App`"),
        (
            "type = \"docker\"\nproject = \"app\"\nvolumes = [\"../x\"]",
            "invalid volume name `../x`",
        ),
        (
            "type = \"docker\"\nproject = \"app\"\nstop_during_bakup = true",
            "stop_during_bakup",
        ),
    ] {
        let e = parse(src).unwrap_err();
        assert!(e.contains(want), "{src}: {e}");
        assert!(e.contains("packrat.toml"), "{e}");
    }
}

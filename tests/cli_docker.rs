//! End to end: the migration-pack example (`examples/migration-pack.toml`: a SQLite database and
//! a Docker compose project in one plan) run by the real binary against a real engine, drilled,
//! then restored "on a new host" with `packrat restore`: first with the volumes removed, then from
//! the pack directory alone onto a second engine started on an empty state directory.

use std::path::Path;
use std::process::Command;

use packrat_e2e::{Env, dump, seed_db};

struct Docker {
    host: String,
    image: String,
    cli: String,
    compose: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: this test needs a real Docker engine; start it with `cargo xtask ci` or set it")
    })
}

impl Docker {
    fn from_env() -> Docker {
        Docker {
            host: var("PACKRAT_TEST_DOCKER_HOST"),
            image: var("PACKRAT_TEST_DOCKER_IMAGE"),
            cli: var("PACKRAT_TEST_DOCKER_CLI"),
            compose: var("PACKRAT_TEST_DOCKER_COMPOSE"),
        }
    }

    #[track_caller]
    fn run(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .env("DOCKER_HOST", &self.host)
            .output()
            .expect("spawn");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn compose(&self, file: &Path, project: &str, args: &[&str]) -> String {
        let mut all = vec!["-f", file.to_str().unwrap(), "-p", project];
        all.extend_from_slice(args);
        self.run(&self.compose, &all)
    }

    fn fingerprint(&self, volume: &str) -> String {
        self.run(
            &self.cli,
            &[
                "run",
                "--rm",
                "-v",
                &format!("{volume}:/v"),
                &self.image,
                "sh",
                "-c",
                "cd /v && find . | LC_ALL=C sort | while read -r f; do stat -c '%n|%a|%u|%g|%F|%N' \"$f\"; \
                 [ -f \"$f\" ] && [ ! -L \"$f\" ] && md5sum \"$f\" | cut -c1-32; done; true",
            ],
        )
    }
}

/// A second Docker engine on an empty state directory of its own ("a new host": no images,
/// no volumes, no containers), stopped and removed on drop.
struct FreshEngine {
    child: std::process::Child,
    data_root: std::path::PathBuf,
    exec_root: std::path::PathBuf,
    docker: Docker,
    /// Dropped after the engine stopped (fields drop after `drop`).
    _bridge: Bridge,
}

/// A network bridge made for a test engine, deleted on drop.
struct Bridge(String);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

impl FreshEngine {
    fn start(d: &Docker, dir: &Path) -> FreshEngine {
        let dockerd = var("PACKRAT_TEST_DOCKERD");
        std::fs::create_dir_all(dir).unwrap();
        let data_root = dir.join("data");
        // containerd's socket paths must stay short: its state goes below /run.
        let exec_root = std::path::PathBuf::from(format!("/run/packrat-e2e-docker-{}", std::process::id()));
        let sock = dir.join("docker.sock");
        // A default bridge of its own: `--bridge=none` would make dockerd delete the host
        // engine's docker0.
        let bridge = Bridge(format!("pke2e{}", std::process::id() % 1_000_000));
        let subnet = format!("10.254.{}.1/24", std::process::id() % 250);
        let name = bridge.0.as_str();
        for args in [
            vec!["link", "add", name, "type", "bridge"],
            vec!["addr", "add", subnet.as_str(), "dev", name],
            vec!["link", "set", name, "up"],
        ] {
            let st = Command::new("ip").args(&args).status().expect("run ip (iproute2)");
            assert!(st.success(), "ip {args:?} failed");
        }
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let child = Command::new(dockerd)
            .arg("--data-root")
            .arg(&data_root)
            .arg("--exec-root")
            .arg(&exec_root)
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", sock.display()))
            // No iptables rules: the host's engine owns those.
            .arg(format!("--bridge={name}"))
            .args(["--iptables=false", "--ip6tables=false", "--shutdown-timeout", "5"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a second dockerd");
        let engine = FreshEngine {
            child,
            data_root,
            exec_root,
            docker: Docker {
                host: format!("unix://{}", sock.display()),
                image: d.image.clone(),
                cli: d.cli.clone(),
                compose: d.compose.clone(),
            },
            _bridge: bridge,
        };
        let t0 = std::time::Instant::now();
        loop {
            let ok = Command::new(&engine.docker.cli)
                .args(["-H", &engine.docker.host, "info"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(60),
                "the second dockerd did not answer within 60 s: {}",
                std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        engine
    }
}

impl Drop for FreshEngine {
    fn drop(&mut self) {
        // SIGTERM: dockerd stops its containers and its containerd, and unmounts.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_root);
        let _ = std::fs::remove_dir_all(&self.exec_root);
    }
}

#[test]
fn migration_pack_example_backs_up_and_restores_on_a_new_host() {
    let d = Docker::from_env();
    let env = Env::new();
    let project = format!("mig{}", std::process::id());
    let app_dir = env.path(&project);
    std::fs::create_dir(&app_dir).unwrap();
    let compose_file = app_dir.join("docker-compose.yml");
    std::fs::write(
        &compose_file,
        format!(
            "version: \"2.4\"\nservices:\n  web:\n    image: {img}\n    init: true\n    command: [\"sleep\", \"1000000\"]\n    \
             volumes:\n      - uploads:/uploads\n      - cache:/cache\n  worker:\n    image: {img}\n    init: true\n    \
             command: [\"sleep\", \"1000000\"]\n    volumes:\n      - uploads:/uploads\nvolumes:\n  uploads:\n  cache:\n",
            img = d.image
        ),
    )
    .unwrap();
    std::fs::write(app_dir.join(".env"), "SECRET_KEY_FILE=/run/secrets/key\n").unwrap();
    d.compose(&compose_file, &project, &["up", "-d"]);
    struct Down<'a>(&'a Docker, std::path::PathBuf, String);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = Command::new(&self.0.compose)
                .arg("-f")
                .arg(&self.1)
                .args(["-p", &self.2, "down", "-v", "-t", "1"])
                .env("DOCKER_HOST", &self.0.host)
                .output();
        }
    }
    let _down = Down(&d, compose_file.clone(), project.clone());
    let web = d
        .compose(&compose_file, &project, &["ps", "-q", "web"])
        .trim()
        .to_string();
    d.run(
        &d.cli,
        &[
            "exec",
            &web,
            "sh",
            "-c",
            "mkdir -p /uploads/2026/11 && echo report > '/uploads/2026/11/Bericht März.pdf' && \
             ln -s 2026 /uploads/latest && chmod 0640 '/uploads/2026/11/Bericht März.pdf' && echo tmp > /cache/x",
        ],
    );
    let uploads = format!("{project}_uploads");
    let before = d.fingerprint(&uploads);
    let db = env.path("app.db");
    seed_db(&db, 500, true);

    let share = packrat_e2e::crash::Share::new("migration");
    let bucket = packrat_e2e::bucket::Bucket::new("migration");
    // The example config, pointed at this scratch installation.
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/migration-pack.toml"))
            .expect("examples/migration-pack.toml");
    let config = example
        .replace("/srv/app/data/app.db", db.to_str().unwrap())
        .replace("/srv/app/docker-compose.yml", compose_file.to_str().unwrap())
        .replace("/var/lib/packrat", env.path("state").to_str().unwrap())
        .replace(
            "\"/backups\"",
            &format!("\"{}\"\nmin_free_mb = 1", env.path("packs").display()),
        )
        .replace("\"app_cache\"", &format!("\"{project}_cache\""))
        // 3-2-1 for real: the test share and the test cluster's bucket.
        .replace(
            "\"/mnt/replica/App\"",
            &format!(
                "\"{}\"\nallowed_fs_types = [\"{}\"]",
                share.dir.display(),
                share.fs_type
            ),
        )
        .replace("https://s3.backup.example.net", &bucket.endpoint)
        .replace("region = \"garage\"", &format!("region = \"{}\"", bucket.region))
        .replace("\"app-backups\"", &format!("\"{}\"", bucket.bucket))
        .replace("prefix = \"migration\"", &format!("prefix = \"{}\"", bucket.prefix))
        .replace(
            "access_key_id_file = \"/etc/packrat/s3-key-id\"",
            "access_key_id_env = \"PACKRAT_TEST_S3_ACCESS_KEY_ID\"",
        )
        .replace(
            "secret_access_key_file = \"/etc/packrat/s3-secret\"",
            "secret_access_key_env = \"PACKRAT_TEST_S3_SECRET_ACCESS_KEY\"",
        );
    assert!(
        !config.contains("endpoint = \"https://s3.backup.example.net") && !config.contains("path = \"/mnt/replica"),
        "{config}"
    );
    env.write_config(&config);
    env.run(&["config", "check"]).ok();

    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    assert_eq!(run["job"]["status"], "completed", "{run}");
    assert_eq!(run["job"]["replication"], "succeeded", "{run}");
    env.run(&["verify", "--latest", "nightly", "--deep"]).ok();
    // Every copy verifies deep, the bucket's straight from the bucket.
    for sink in ["windows", "offsite"] {
        env.run(&["verify", "--latest", "nightly", "--deep", "--sink", sink])
            .ok();
    }
    let list = env.run(&["list", "nightly", "--json"]).ok().json();
    let pack_dir = list[0]["location"].as_str().expect("pack path").to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(&pack_dir).join("manifest.json")).unwrap()).unwrap();
    let paths: Vec<&str> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    for want in [
        "sqlite/app_db.db.zst".to_string(),
        format!("docker/volumes/{uploads}.tar.zst"),
        format!("docker/compose/{project}/docker-compose.yml"),
        format!("docker/compose/{project}/.env"),
        "docker/images/packrat-test_busybox_latest.tar.zst".to_string(),
    ] {
        assert!(paths.contains(&want.as_str()), "{want} missing: {paths:?}");
    }
    assert!(
        !paths.iter().any(|p| p.contains("_cache")),
        "excluded volume: {paths:?}"
    );
    // stop_during_backup started the containers again.
    let state = d.run(&d.cli, &["inspect", "-f", "{{.State.Status}}", &web]);
    assert_eq!(state.trim(), "running");

    // A restore drill of the whole pack, the app running: the database into a temp file, the
    // volume into a scratch volume read back and compared, both removed. What a killed drill
    // left (a scratch volume of this plan, held by a helper) is removed first; scratch volumes
    // of other plans are not touched.
    let leftover = "packrat-drill-nightly-run-0-x";
    let foreign = format!("packrat-drill-other{project}-run-0-x");
    for (name, plan) in [(leftover, "nightly"), (foreign.as_str(), "other")] {
        d.run(
            &d.cli,
            &[
                "volume",
                "create",
                "--label",
                &format!("io.packrat.drill.plan={plan}"),
                "--label",
                "io.packrat.drill=x",
                name,
            ],
        );
    }
    d.run(&d.cli, &["create", "-v", &format!("{leftover}:/v"), &d.image, "true"]);
    let drill = env.run(&["drill", "nightly", "--json"]);
    let run: serde_json::Value = serde_json::from_str(&drill.stdout).unwrap_or_else(|e| panic!("{e}: {}", drill.all()));
    assert_eq!((drill.code, run["status"].as_str()), (0, Some("passed")), "{run}");
    let checks: Vec<&str> = run["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let volume_check = checks
        .iter()
        .find(|c| c.starts_with(&format!("docker/volumes/{uploads}.tar.zst of source app_stack: restored into the scratch volume packrat-drill-nightly-run-")))
        .unwrap_or_else(|| panic!("no volume check: {checks:?}"));
    assert!(
        volume_check.contains("file bytes as recorded, then removed"),
        "{volume_check}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.starts_with("sqlite/app_db.db.zst of source app_db")),
        "{checks:?}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.starts_with("2 compose file(s) of source app_stack")),
        "{checks:?}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.contains("image(s) of source app_stack not loaded")),
        "{checks:?}"
    );
    let drill_volumes = d.run(&d.cli, &["volume", "ls", "-q", "--filter", "label=io.packrat.drill"]);
    assert_eq!(
        drill_volumes.split_whitespace().collect::<Vec<_>>(),
        [foreign.as_str()],
        "only the other plan's scratch volume stays"
    );
    d.run(&d.cli, &["volume", "rm", &foreign]);
    let helpers = d.run(&d.cli, &["ps", "-aq", "--filter", "label=io.packrat.helper"]);
    assert_eq!(helpers.trim(), "", "no helper container is left");
    assert_eq!(d.fingerprint(&uploads), before, "the drill left the app's volume alone");

    // "New host": the stack and its volumes are gone, and so is the local disk with the packs:
    // everything below comes straight from the bucket.
    d.compose(&compose_file, &project, &["down", "-v", "-t", "1"]);
    // (An operator also carries the pack directory itself: used at the end, without a config.)
    let carried = env.path("carried").join(Path::new(&pack_dir).file_name().unwrap());
    packrat_e2e::copy_tree(Path::new(&pack_dir), &carried);
    std::fs::remove_dir_all(env.path("packs")).unwrap();
    let new_dir = env.path("newhost").join(&project);
    let out = env
        .run(&[
            "restore",
            "--latest",
            "nightly",
            "--sink",
            "offsite",
            "--source",
            "app_stack",
            "--images",
            "--volumes",
            "--compose-dir",
            new_dir.to_str().unwrap(),
        ])
        .ok();
    assert!(
        out.stdout.contains(&format!("restored volume {uploads}")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("loaded image"), "{}", out.stdout);
    assert_eq!(d.fingerprint(&uploads), before);
    assert_eq!(
        std::fs::read_to_string(new_dir.join(".env")).unwrap(),
        "SECRET_KEY_FILE=/run/secrets/key\n"
    );
    let restored_db = env.path("restored.db");
    env.run(&[
        "restore",
        "--latest",
        "nightly",
        "--sink",
        "offsite",
        "--source",
        "app_db",
        "--to",
        restored_db.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(dump(&restored_db), dump(&db));

    // The restored compose files bring the app up on the restored volumes.
    let new_file = new_dir.join("docker-compose.yml");
    d.compose(&new_file, &project, &["up", "-d"]);
    let web = d.compose(&new_file, &project, &["ps", "-q", "web"]).trim().to_string();
    let got = d.run(&d.cli, &["exec", &web, "cat", "/uploads/latest/11/Bericht März.pdf"]);
    assert_eq!(got, "report\n");

    // Restoring again over the live, non-empty volume is refused (exit 1, says what to do).
    let again = env.run(&[
        "restore",
        "--latest",
        "nightly",
        "--source",
        "app_stack",
        "--volumes",
        uploads.as_str(),
    ]);
    assert_eq!(again.code, 1, "{}", again.all());
    assert!(
        again.stderr.contains("not empty") && again.stderr.contains("--overwrite"),
        "{}",
        again.stderr
    );

    // From the pack alone (plus the secrets): no config, no state store, and a new host — an
    // engine started on an empty state directory, without the app's image. The pack says how it
    // was made (its plan's configuration, with the secrets only by name) and restores the
    // database, the image, the volumes and the compose files from its directory.
    d.compose(&new_file, &project, &["down", "-v", "-t", "1"]);
    let fresh = FreshEngine::start(&d, &env.path("engine2"));
    let d2 = &fresh.docker;
    assert_eq!(
        d2.run(&d2.cli, &["images", "-q"]).trim(),
        "",
        "a new host has no images"
    );
    let plan_toml = carried.join("packrat/plan.toml");
    let described = std::fs::read_to_string(&plan_toml).unwrap();
    for want in [
        "[plans.nightly]".to_string(),
        format!("compose_file = \"{}\"", compose_file.display()),
        "secret_access_key_env = \"PACKRAT_TEST_S3_SECRET_ACCESS_KEY\"".to_string(),
    ] {
        assert!(described.contains(&want), "{want} missing:\n{described}");
    }
    let secret = std::env::var("PACKRAT_TEST_S3_SECRET_ACCESS_KEY").unwrap();
    assert!(!described.contains(&secret), "a secret in the pack:\n{described}");
    let bare = |args: &[&str]| {
        let o = Command::new(packrat_e2e::packrat_bin())
            .args(args)
            .env_remove("PACKRAT_CONFIG")
            .env("LANG", "C.UTF-8")
            .env("DOCKER_HOST", &d2.host)
            .output()
            .expect("spawn packrat");
        packrat_e2e::Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    bare(&["--config", plan_toml.to_str().unwrap(), "config", "check"]).ok();
    let host2 = env.path("host2").join(&project);
    let out = bare(&[
        "restore",
        carried.to_str().unwrap(),
        "--source",
        "app_stack",
        "--images",
        "--volumes",
        "--compose-dir",
        host2.to_str().unwrap(),
    ])
    .ok();
    assert!(
        out.stdout.contains(&format!("restored volume {uploads}")),
        "{}",
        out.stdout
    );
    let db2 = env.path("host2/app.db");
    bare(&[
        "restore",
        carried.to_str().unwrap(),
        "--source",
        "app_db",
        "--to",
        db2.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(dump(&db2), dump(&db));
    assert!(out.stdout.contains("loaded image"), "{}", out.stdout);
    let file2 = host2.join("docker-compose.yml");
    d2.compose(&file2, &project, &["up", "-d"]);
    let web = d2.compose(&file2, &project, &["ps", "-q", "web"]).trim().to_string();
    let got = d2.run(&d2.cli, &["exec", &web, "cat", "/uploads/latest/11/Bericht März.pdf"]);
    assert_eq!(got, "report\n");
    assert_eq!(d2.fingerprint(&uploads), before);
    d2.compose(&file2, &project, &["down", "-v", "-t", "1"]);
    // The old host's engine never saw any of it.
    let old = d.run(&d.cli, &["volume", "ls", "-q", "--filter", &format!("name={uploads}")]);
    assert_eq!(old.trim(), "", "restored onto the old host instead: {old}");
}

#[cfg(unix)]
#[test]
fn damaged_volume_archives_are_refused_before_anything_is_written() {
    let d = Docker::from_env();
    let env = Env::new();
    let pid = std::process::id();
    let (good, bad) = (format!("dmggood{pid}"), format!("dmgbad{pid}"));
    struct Rm<'a>(&'a Docker, Vec<String>);
    impl Drop for Rm<'_> {
        fn drop(&mut self) {
            for v in &self.1 {
                let _ = Command::new(&self.0.cli)
                    .args(["volume", "rm", "-f", v])
                    .env("DOCKER_HOST", &self.0.host)
                    .output();
            }
        }
    }
    let _rm = Rm(&d, vec![good.clone(), bad.clone()]);
    for v in [&good, &bad] {
        d.run(&d.cli, &["volume", "create", v]);
        d.run(
            &d.cli,
            &[
                "run",
                "--rm",
                "-v",
                &format!("{v}:/v"),
                &d.image,
                "sh",
                "-c",
                &format!("echo {v} > /v/f"),
            ],
        );
    }
    let before = d.fingerprint(&good);
    env.write_config(&format!(
        r#"state_dir = "state"
[sources.vols]
type = "docker"
volumes = ["{good}", "{bad}"]
helper_image = "{image}"
docker_host = "{host}"
[sinks.local]
type = "local"
path = "{packs}"
min_free_mb = 1
[plans.nightly]
sources = ["vols"]
sinks = ["local"]
"#,
        image = d.image,
        host = d.host,
        packs = env.path("packs").display()
    ));
    let run = env.run(&["run", "nightly", "--json"]).ok().json();
    let pack = std::path::PathBuf::from(run["pack"]["location"].as_str().unwrap());
    d.run(&d.cli, &["volume", "rm", &good, &bad]);
    let exists = |v: &str| {
        Command::new(&d.cli)
            .args(["volume", "inspect", v])
            .env("DOCKER_HOST", &d.host)
            .output()
            .unwrap()
            .status
            .success()
    };
    let restore = |extra: &[&str]| {
        let mut args = vec!["restore", "--latest", "nightly", "--volumes"];
        args.extend_from_slice(extra);
        packrat_e2e::run_guarded(env.cmd().args(&args), std::time::Duration::from_secs(300))
    };

    // One archive damaged: the whole restore is refused, no volume is created.
    let bad_rel = format!("docker/volumes/{bad}.tar.zst");
    let bad_path = pack.join(&bad_rel);
    let mut bytes = std::fs::read(&bad_path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&bad_path, &bytes).unwrap();
    let r = restore(&[]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains(&format!("{bad_rel}: sha256 mismatch")) && r.stderr.contains("nothing was restored"),
        "{}",
        r.stderr
    );
    assert!(!exists(&good) && !exists(&bad), "no volume may be created");

    // A FIFO in place of the good archive: refused at once, even with --allow-damaged.
    let good_path = pack.join(format!("docker/volumes/{good}.tar.zst"));
    let good_bytes = std::fs::read(&good_path).unwrap();
    packrat_e2e::make_fifo(&good_path);
    let r = restore(&[&good, "--allow-damaged"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains(&format!("{good}.tar.zst")) && r.stderr.contains("FIFO"),
        "{}",
        r.stderr
    );
    assert!(!exists(&good));
    std::fs::remove_file(&good_path).unwrap();
    std::fs::write(&good_path, good_bytes).unwrap();

    // --allow-damaged: the intact volume comes back, the damaged one is skipped and named.
    let r = restore(&["--allow-damaged"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains(&format!("SKIPPED: {bad_rel}: sha256 mismatch"))
            && r.stderr.contains("restore incomplete: 1 damaged artifact(s) skipped"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains(&format!("restored volume {good}")), "{}", r.stdout);
    assert_eq!(d.fingerprint(&good), before);
    assert!(!exists(&bad), "a damaged archive is never used");
}

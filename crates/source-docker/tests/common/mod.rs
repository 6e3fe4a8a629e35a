//! Helpers shared by the integration tests: a real Docker engine (started by `cargo xtask ci`),
//! real compose projects run with Debian's `docker-compose`, real volumes.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use backup_core::{BackupContext, BackupKind, PackId, Progress, StagingPack, Verifier};
use source_docker::DockerCheck;

/// Where the engine and the test tools are, from the environment `cargo xtask ci` sets.
#[derive(Debug, Clone)]
pub struct Env {
    /// Engine address (`unix://…`).
    pub host: String,
    /// The local busybox test image.
    pub image: String,
    /// `/usr/bin/docker`.
    pub cli: String,
    /// `docker-compose` (v1).
    pub compose: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need a real Docker engine; start it with `cargo xtask ci` \
             (which sets PACKRAT_TEST_DOCKER_HOST, _IMAGE, _CLI and _COMPOSE), or start dockerd and \
             set them yourself"
        )
    })
}

/// The test environment; panics with instructions when it is not set up.
pub fn env() -> Env {
    let e = Env {
        host: var("PACKRAT_TEST_DOCKER_HOST"),
        image: var("PACKRAT_TEST_DOCKER_IMAGE"),
        cli: var("PACKRAT_TEST_DOCKER_CLI"),
        compose: var("PACKRAT_TEST_DOCKER_COMPOSE"),
    };
    // The source under test reads DOCKER_HOST like every Docker client.
    assert_eq!(
        std::env::var("DOCKER_HOST").ok().as_deref(),
        Some(e.host.as_str()),
        "DOCKER_HOST must equal PACKRAT_TEST_DOCKER_HOST"
    );
    e
}

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}{}x{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos % 10_000
    )
}

impl Env {
    /// Runs the Docker CLI; returns stdout, panics on failure.
    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new(&self.cli)
            .args(["-H", &self.host])
            .args(args)
            .output()
            .expect("run docker");
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the Docker CLI; returns whether it succeeded.
    pub fn docker_ok(&self, args: &[&str]) -> bool {
        Command::new(&self.cli)
            .args(["-H", &self.host])
            .args(args)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    /// Whether a volume exists.
    pub fn volume_exists(&self, name: &str) -> bool {
        self.docker_ok(&["volume", "inspect", name])
    }

    /// `running`, `exited`, `created`, … of a container.
    pub fn state(&self, container: &str) -> String {
        self.docker(&["inspect", "-f", "{{.State.Status}}", container])
            .trim()
            .to_string()
    }

    /// Runs a shell script in a throw-away container with `volume` at `/v`.
    #[track_caller]
    pub fn sh_in_volume(&self, volume: &str, script: &str) -> String {
        self.docker(&[
            "run",
            "--rm",
            "-v",
            &format!("{volume}:/v"),
            &self.image,
            "sh",
            "-c",
            script,
        ])
    }

    /// Everything about a volume's content: names, modes, owners, types, sizes, mtimes of
    /// non-directories, link counts, symlink targets and file checksums.
    pub fn fingerprint(&self, volume: &str) -> String {
        self.sh_in_volume(
            volume,
            r#"cd /v && find . | LC_ALL=C sort | while read -r f; do
                 if [ -d "$f" ] && [ ! -L "$f" ]; then stat -c '%n|%a|%u|%g|%F' "$f";
                 else stat -c '%n|%a|%u|%g|%F|%s|%Y|%h|%N' "$f"; fi
                 if [ -f "$f" ] && [ ! -L "$f" ]; then md5sum "$f" | cut -c1-32; fi
               done"#,
        )
    }
}

/// Content for a volume: files, a 3 MB random file with a hard link, a symlink (relative and
/// absolute), an empty sticky directory, a name with spaces and non-ASCII, setuid and private
/// modes, another owner, a FIFO, an old mtime.
pub const POPULATE: &str = r#"set -e
cd /v
mkdir -p docs/deep/er empty
echo hello > docs/hello.txt
seq 1 20000 > docs/deep/er/numbers.txt
head -c 3000000 /dev/urandom > blob.bin
ln blob.bin hardlink.bin
echo spaced > 'file with spaces ä ö ✓.txt'
chmod 4755 'file with spaces ä ö ✓.txt'
chmod 0600 docs/hello.txt
chown 1000:1000 docs/hello.txt docs
chmod 1777 empty
ln -s docs/hello.txt link-rel
ln -s /etc/passwd link-abs
mkfifo fifo
touch -d '2020-01-02 03:04:05' docs/deep/er/numbers.txt
"#;

/// A compose project run with `docker-compose` from a file in a temp directory; `down -v` on
/// drop.
#[derive(Debug)]
pub struct Project {
    /// Test environment.
    pub env: Env,
    /// Project name (also the directory name).
    pub name: String,
    /// The compose file.
    pub file: PathBuf,
    /// Temp directory holding the project directory.
    pub tmp: tempfile::TempDir,
}

impl Project {
    /// Writes `compose` (with `IMAGE` replaced by the test image) as `<tmp>/<name>/docker-compose.yml`
    /// and `.env`, and runs `docker-compose up -d`.
    pub fn up(env: &Env, compose: &str) -> Project {
        let tmp = tempfile::tempdir().expect("tempdir");
        let name = unique("pr");
        let dir = tmp.path().join(&name);
        std::fs::create_dir(&dir).expect("mkdir");
        let file = dir.join("docker-compose.yml");
        std::fs::write(&file, compose.replace("IMAGE", &env.image)).expect("write compose");
        std::fs::write(dir.join(".env"), "APP_GREETING=hello from .env\n").expect("write .env");
        let p = Project {
            env: env.clone(),
            name,
            file,
            tmp,
        };
        p.compose(&["up", "-d"]);
        p
    }

    /// Runs `docker-compose -f FILE -p NAME ARGS…`.
    #[track_caller]
    pub fn compose(&self, args: &[&str]) -> String {
        compose_in(&self.env, &self.file, &self.name, args)
    }

    /// The container of `service`.
    pub fn container(&self, service: &str) -> String {
        let id = self.compose(&["ps", "-q", service]).trim().to_string();
        assert!(!id.is_empty(), "service {service} has no container");
        id
    }

    /// The volume compose made for the project's volume `key`.
    pub fn volume(&self, key: &str) -> String {
        format!("{}_{key}", self.name)
    }

    /// Runs a script in the container of `service`.
    #[track_caller]
    pub fn exec(&self, service: &str, script: &str) -> String {
        self.env.docker(&["exec", &self.container(service), "sh", "-c", script])
    }
}

/// `docker-compose -f file -p project args…`, panicking on failure.
#[track_caller]
pub fn compose_in(env: &Env, file: &Path, project: &str, args: &[&str]) -> String {
    let out = Command::new(&env.compose)
        .arg("-f")
        .arg(file)
        .args(["-p", project])
        .args(args)
        .env("DOCKER_HOST", &env.host)
        .output()
        .expect("run docker-compose");
    assert!(
        out.status.success(),
        "docker-compose {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new(&self.env.compose)
            .arg("-f")
            .arg(&self.file)
            .args(["-p", &self.name, "down", "-v", "--timeout", "1"])
            .env("DOCKER_HOST", &self.env.host)
            .output();
    }
}

/// A verifier with the Docker deep check.
pub fn verifier() -> Verifier {
    Verifier::new().with_check(Arc::new(DockerCheck))
}

/// A fresh staging pack in `root`, directory named after the id (so that it opens once sealed).
pub fn staging(root: &Path, id: &str, kind: BackupKind) -> StagingPack {
    let id = PackId::new(id).unwrap();
    StagingPack::create(&root.join(id.as_str()), "test", id, kind, chrono_tz::UTC).unwrap()
}

/// A [`Progress`] that calls `f` with every stage message.
pub struct Hook<F: Fn(&str) + Send + Sync>(pub F);

impl<F: Fn(&str) + Send + Sync> std::fmt::Debug for Hook<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

impl<F: Fn(&str) + Send + Sync> Progress for Hook<F> {
    fn stage(&self, message: &str) {
        (self.0)(message)
    }
}

/// A full-backup context whose progress stages go to `f`.
pub fn ctx_with_hook(f: impl Fn(&str) + Send + Sync + 'static) -> BackupContext {
    let mut ctx = BackupContext::detached("test", BackupKind::Full);
    ctx.progress = Arc::new(Hook(f));
    ctx
}

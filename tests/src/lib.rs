//! Helpers for packrat's end-to-end tests: run the real `packrat` binary in a scratch
//! installation (config, state, sinks in a temp directory) against real SQLite databases.

#[cfg(unix)]
pub mod daemon;
#[cfg(unix)]
pub mod garage;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod bucket;
pub mod crash;
pub mod wine;

/// The `packrat` binary built for this test run (`target/<profile>/packrat`), or `$PACKRAT_BIN`.
///
/// `cargo xtask ci` builds it before running the tests; a missing binary fails loudly.
pub fn packrat_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PACKRAT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test binary>
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = profile_dir.join(format!("packrat{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} does not exist; build it first with `cargo build -p packrat` (cargo xtask ci does this)",
        bin.display()
    );
    bin
}

/// The result of one packrat invocation.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Asserts exit code 0 and returns self.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "packrat failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Parses stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A scratch installation: `<tmp>/packrat.toml`, `<tmp>/state`, `<tmp>/packs`, `<tmp>/app.db`.
#[derive(Debug)]
pub struct Env {
    /// The temp directory (removed on drop).
    pub dir: tempfile::TempDir,
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Env {
    /// An empty scratch directory.
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A path inside the scratch directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The config file path.
    pub fn config(&self) -> PathBuf {
        self.path("packrat.toml")
    }

    /// Writes the config file.
    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config(), text).expect("write config");
    }

    /// A standard config: sqlite source `app_db` (at `db`, with extra source keys), local sink
    /// `local` at `sink`, plan `nightly`.
    pub fn standard_config(&self, db: &Path, sink: &Path, source_extra: &str) {
        self.write_config(&format!(
            r#"state_dir = "state"
time_zone = "Asia/Shanghai"

[sources.app_db]
type = "sqlite"
path = "{}"
{source_extra}

[sinks.local]
type = "local"
path = "{}"
min_free_mb = 1

[plans.nightly]
sources = ["app_db"]
sinks = ["local"]
"#,
            db.display(),
            sink.display()
        ));
    }

    /// A `packrat` command with `--config` set and a clean environment.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(packrat_bin());
        c.arg("--config").arg(self.config());
        c.env_remove("PACKRAT_CONFIG").env_remove("RUST_LOG");
        // English unless a test asks for another language (the default follows the locale).
        c.env_remove("LC_ALL").env_remove("LC_MESSAGES").env("LANG", "C.UTF-8");
        c
    }

    /// Runs packrat with `args` and waits.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd().args(args).output().expect("spawn packrat"))
    }

    /// Runs packrat with `args`, but kills it and fails the test if it has not finished after
    /// `limit` (a hang guard for inputs that could block it, not a timing assertion).
    #[track_caller]
    pub fn run_guarded(&self, args: &[&str], limit: std::time::Duration) -> Run {
        run_guarded(self.cmd().args(args), limit)
    }
}

/// Starts two runs of plan `nightly` at once (`command` builds one), `rounds` times, and checks
/// every loser: exit 3 and a message naming the plan and the holder's pid. Exit 0 is a winner;
/// anything else fails. Returns how many losers there were.
#[track_caller]
pub fn race_two_runs(rounds: u32, mut command: impl FnMut() -> Command) -> u32 {
    let mut busy = 0;
    for round in 0..rounds {
        let children = [Guarded::spawn(&mut command()), Guarded::spawn(&mut command())];
        for c in children {
            let run = c.finish(std::time::Duration::from_secs(300));
            match run.code {
                0 => {}
                3 => {
                    busy += 1;
                    assert!(
                        run.stderr.contains("plan `nightly`") && run.stderr.contains("pid "),
                        "round {round}: the busy message must name the holder's pid: {}",
                        run.stderr
                    );
                }
                other => panic!("round {round}: exit {other}: {}", run.all()),
            }
        }
    }
    busy
}

/// Runs `cmd` with captured output; kills it and panics if it has not exited after `limit`.
#[track_caller]
pub fn run_guarded(cmd: &mut Command, limit: std::time::Duration) -> Run {
    Guarded::spawn(cmd).finish(limit)
}

/// A child whose stdout and stderr go to anonymous files, not pipes: a process it leaves behind
/// holding them (Wine starts its `services.exe` from the first command of a prefix, and that
/// inherits the handles) cannot keep the reader waiting after the child exited.
struct Guarded {
    child: std::process::Child,
    out: std::fs::File,
    err: std::fs::File,
    what: String,
}

impl Guarded {
    #[track_caller]
    fn spawn(cmd: &mut Command) -> Guarded {
        let out = tempfile::tempfile().expect("temp file for stdout");
        let err = tempfile::tempfile().expect("temp file for stderr");
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().expect("dup stdout"))
            .stderr(err.try_clone().expect("dup stderr"))
            .spawn()
            .expect("spawn");
        Guarded {
            child,
            out,
            err,
            what: format!("{cmd:?}"),
        }
    }

    #[track_caller]
    fn finish(mut self, limit: std::time::Duration) -> Run {
        use std::io::{Read, Seek};
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st;
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("{} did not finish within {limit:?}: it hangs", self.what);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let read = |f: &mut std::fs::File| {
            let mut s = Vec::new();
            f.rewind().expect("rewind");
            f.read_to_end(&mut s).expect("read captured output");
            String::from_utf8_lossy(&s).into_owned()
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: read(&mut self.out),
            stderr: read(&mut self.err),
        }
    }
}

/// A deterministic pseudo-random sequence (xorshift), for reproducible damage in tests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A sequence from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Copies the directory tree `from` to `to` (regular files and directories).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// Replaces `path` by a FIFO (named pipe) with `mkfifo`.
#[cfg(unix)]
pub fn make_fifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let st = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(st.success(), "mkfifo {}", path.display());
}

/// Creates a SQLite database with `rows` rows in table `t(id, payload)`, in WAL or rollback mode.
pub fn seed_db(path: &Path, rows: u32, wal: bool) {
    let c = rusqlite::Connection::open(path).expect("open");
    c.pragma_update(None, "journal_mode", if wal { "wal" } else { "delete" })
        .expect("journal mode");
    c.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT NOT NULL, n INTEGER);")
        .expect("schema");
    let tx = c.unchecked_transaction().expect("tx");
    for i in 0..rows {
        tx.execute(
            "INSERT INTO t(payload, n) VALUES (?1, ?2)",
            (format!("row {i} {}", "x".repeat((i % 200) as usize)), i),
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
}

/// Every row of table `t`, ordered, as text: a cheap equality check of two databases.
pub fn dump(path: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let mut st = c.prepare("SELECT id, payload, n FROM t ORDER BY id").expect("prepare");
    st.query_map([], |r| {
        Ok(format!(
            "{}|{}|{}",
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?
        ))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

/// Directories directly inside `dir` (empty when `dir` does not exist).
pub fn subdirs(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Waits until a directory whose name starts with `prefix` exists in `dir` (a drill's scratch
/// directory, say), polling every millisecond, since what creates it may be done a moment later;
/// panics after `within` with `context()`.
#[track_caller]
pub fn wait_for_subdir(dir: &Path, prefix: &str, within: std::time::Duration, mut context: impl FnMut() -> String) {
    let t0 = std::time::Instant::now();
    while !subdirs(dir).iter().any(|s| s.starts_with(prefix)) {
        assert!(
            t0.elapsed() < within,
            "no {prefix}* directory in {} after {within:?}: {}",
            dir.display(),
            context()
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Sends SIGINT (Ctrl-C) to `child`, a `packrat … --json` command with piped output, and
/// returns its JSON answer once it exited 130, as a command cancelled by Ctrl-C does.
#[cfg(unix)]
#[track_caller]
pub fn interrupt_json(child: std::process::Child) -> serde_json::Value {
    crash::signal(child.id(), nix::sys::signal::Signal::SIGINT);
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Rewrites the start and end time of the pack in `dir` to `at` (RFC 3339), as a host whose
/// clock said `at` would have written it, keeping `SHA256SUMS` right so the pack stays valid.
pub fn redate_pack(dir: &Path, at: &str) {
    rewrite_manifest(dir, |m| {
        m["started_at"] = serde_json::Value::from(at);
        m["finished_at"] = serde_json::Value::from(at);
    });
}

/// Changes the manifest of the pack in `dir` with `edit`, keeping `SHA256SUMS` right so the
/// pack stays valid (a forged or mistaken record, not damage).
pub fn rewrite_manifest(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mpath = dir.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&mpath).expect("read manifest")).expect("manifest JSON");
    edit(&mut m);
    let mut json = serde_json::to_vec_pretty(&m).expect("JSON");
    json.push(b'\n');
    std::fs::write(&mpath, &json).expect("write manifest");
    let out = Command::new("sha256sum")
        .arg(&mpath)
        .output()
        .expect("sha256sum (coreutils)");
    assert!(out.status.success());
    let out = String::from_utf8(out.stdout).expect("utf-8");
    let sum = out.split_whitespace().next().expect("a digest");
    let sums = dir.join("SHA256SUMS");
    let text: String = std::fs::read_to_string(&sums)
        .expect("read SHA256SUMS")
        .lines()
        .map(|l| {
            if l.ends_with("  manifest.json") {
                format!("{sum}  manifest.json\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&sums, text).expect("write SHA256SUMS");
}

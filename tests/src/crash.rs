//! Helpers of the crash matrix (`tests/crash_matrix.rs`) and the concurrency tests
//! (`tests/concurrency.rs`): seeded kill points, packrat processes killed after a delay, the
//! invariants checked after every kill, and the real servers (Docker engine, Samba share, MongoDB)
//! those tests run against.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Env, Run, subdirs};

/// A seeded pseudo-random sequence (splitmix64), so that a failing kill sequence can be replayed.
#[derive(Debug, Clone)]
pub struct Seeded {
    state: u64,
}

impl Seeded {
    /// A sequence from `$PACKRAT_CRASH_SEED` when set, else from the clock; prints the seed with
    /// the line that replays it.
    pub fn from_env(scenario: &str) -> Seeded {
        let seed = match std::env::var("PACKRAT_CRASH_SEED") {
            Ok(s) => s
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("PACKRAT_CRASH_SEED={s:?} is not a number")),
            Err(_) => {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
                    ^ u64::from(std::process::id())
            }
        };
        eprintln!("[{scenario}] seed {seed} (replay with PACKRAT_CRASH_SEED={seed})");
        Seeded::new(seed)
    }

    /// The sequence of `seed`.
    pub fn new(seed: u64) -> Seeded {
        Seeded { state: seed }
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A duration in `[lo, hi)`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        lo + (hi.saturating_sub(lo)).mul_f64(self.unit())
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `n` kill points as fractions of a command's typical duration: one very early (the first 2 %:
/// process start, config, recovery), one very late (97–110 %: the rename into place, the job
/// record, retention), the others uniform over 0–110 %; shuffled. See [`KillClock`].
pub fn kill_points(rng: &mut Seeded, n: usize) -> Vec<f64> {
    assert!(n >= 2, "at least one early and one late kill");
    let mut v = vec![0.02 * rng.unit(), 0.97 + 0.13 * rng.unit()];
    while v.len() < n {
        v.push(1.10 * rng.unit());
    }
    for i in (1..v.len()).rev() {
        let j = rng.below(i + 1);
        v.swap(i, j);
    }
    v
}

/// Where kill points fall: over the typical duration of a command (or of the phase under test),
/// the median of the uninterrupted runs seen so far: the first is measured up front, and every
/// run that finished before its kill adds one (as does, for whole commands, every successful run
/// after a kill). So a first measurement taken while the machine was busy does not push every
/// later kill past the end of faster runs: each miss teaches the clock.
#[derive(Debug, Default)]
pub struct KillClock {
    seen: Vec<Duration>,
}

impl KillClock {
    /// Adds the wall time of one uninterrupted run (or phase).
    pub fn add(&mut self, took: Duration) {
        self.seen.push(took);
    }

    /// The median run time so far (the lower one of an even count: after one miss, the faster
    /// run counts).
    pub fn typical(&self) -> Duration {
        let mut v = self.seen.clone();
        v.sort();
        assert!(!v.is_empty(), "measure one run first");
        v[(v.len() - 1) / 2]
    }

    /// The delay of kill point `fraction` of the typical duration.
    pub fn delay(&self, fraction: f64) -> Duration {
        self.typical().mul_f64(fraction)
    }
}

/// A command that was started and SIGKILLed after a delay (unless it had finished by then).
#[derive(Debug)]
pub struct Killed {
    /// The delay after which it was killed.
    pub delay: Duration,
    /// Its pid.
    pub pid: u32,
    /// `Some` when it had exited on its own before the kill.
    pub finished: Option<ExitStatus>,
    /// When it exited on its own: how long it ran (from its start, or from the start of the
    /// phase under test): an uninterrupted run for the [`KillClock`].
    pub took: Option<Duration>,
}

impl Killed {
    /// Whether the SIGKILL hit a live process.
    pub fn was_killed(&self) -> bool {
        self.finished.is_none()
    }
}

/// Starts `cmd` (output discarded) and SIGKILLs it after `delay`, unless it finished first.
pub fn run_and_kill(cmd: &mut Command, delay: Duration) -> Killed {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn packrat");
    kill_timed(&mut child, delay)
}

/// SIGKILLs `child` `delay` from now unless it exits first, timing it if it does.
fn kill_timed(child: &mut Child, delay: Duration) -> Killed {
    let start = Instant::now();
    let finished = kill_at(child, start + delay);
    let took = finished.as_ref().map(|_| start.elapsed());
    Killed {
        delay,
        pid: child.id(),
        finished,
        took,
    }
}

/// SIGKILLs `child` at `at` unless it exits before; returns its own exit status if it did.
pub fn kill_at(child: &mut Child, at: Instant) -> Option<ExitStatus> {
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            return Some(st);
        }
        let now = Instant::now();
        if now >= at {
            break;
        }
        std::thread::sleep((at - now).min(Duration::from_millis(2)));
    }
    // SIGKILL (Child::kill) — unless it exited in this very moment.
    match child.kill() {
        Ok(()) => {
            child.wait().expect("wait");
            None
        }
        Err(_) => Some(child.wait().expect("wait")),
    }
}

/// Starts `cmd` (output discarded), waits until `started()` says the phase under test has begun
/// (polled every 100 µs; gives up when the command exits first), then SIGKILLs it `delay` later
/// unless it finished. Kill points measured from the start of the phase itself, not of the
/// process, so a short phase after a slow start (a prune's deletions after opening the state)
/// is still hit mid-way.
pub fn run_and_kill_after(cmd: &mut Command, started: &dyn Fn() -> bool, delay: Duration) -> Killed {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn packrat");
    let pid = child.id();
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            // Over before the phase was seen: says nothing about the phase's length.
            return Killed {
                delay,
                pid,
                finished: Some(st),
                took: None,
            };
        }
        if started() {
            break;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    kill_timed(&mut child, delay)
}

/// Runs `cmd` to the end (asserting exit 0) and returns how long the phase that `started()`
/// detects lasted: from the first poll that saw it to the exit. See [`run_and_kill_after`].
#[track_caller]
pub fn timed_phase(cmd: &mut Command, started: &dyn Fn() -> bool) -> Duration {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn packrat");
    let mut begun: Option<Instant> = None;
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            assert!(st.success(), "the uninterrupted run failed: {st:?}");
            let begun = begun.expect("the phase under test never started");
            return begun.elapsed();
        }
        if begun.is_none() && started() {
            begun = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Runs `cmd` to the end and returns its wall time, asserting exit 0.
#[track_caller]
pub fn timed_ok(cmd: &mut Command) -> (Run, Duration) {
    let t0 = Instant::now();
    let o = cmd.output().expect("spawn");
    let took = t0.elapsed();
    let run = Run {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    (run.ok(), took)
}

/// The id of the newest job, 0 when there is none.
pub fn last_job_id(env: &Env) -> i64 {
    let jobs = env.run(&["jobs", "--json", "--limit", "1"]).ok().json();
    jobs.as_array()
        .and_then(|a| a.first())
        .and_then(|j| j["id"].as_i64())
        .unwrap_or(0)
}

/// Every job with an id above `after`, oldest first.
pub fn jobs_after(env: &Env, after: i64) -> Vec<Value> {
    let jobs = env.run(&["jobs", "--json", "--limit", "1000"]).ok().json();
    let mut v: Vec<Value> = jobs
        .as_array()
        .expect("jobs array")
        .iter()
        .filter(|j| j["id"].as_i64().unwrap_or(0) > after)
        .cloned()
        .collect();
    v.sort_by_key(|j| j["id"].as_i64());
    v
}

/// A pack as `packrat list --json` shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Pack id.
    pub id: String,
    /// Its directory.
    pub path: PathBuf,
    /// The job that made it (from its manifest).
    pub job_id: Option<i64>,
}

/// The packs `packrat list` shows for `plan` on `sink`, oldest first.
pub fn listed(env: &Env, plan: &str, sink: &str) -> Vec<Listed> {
    let list = env.run(&["list", plan, "--sink", sink, "--json"]).ok().json();
    list.as_array()
        .expect("list array")
        .iter()
        .map(|p| Listed {
            id: p["id"].as_str().expect("id").to_string(),
            path: PathBuf::from(p["location"].as_str().expect("location")),
            job_id: p["job_id"].as_i64(),
        })
        .collect()
}

/// Nothing half-written under a final name: every directory in `plan_dir` (`<sink>/<plan>/`) is a
/// pack `packrat list` shows (a valid manifest), and every listed pack passes `packrat verify
/// --deep`. Returns the ids.
///
/// Packs in `verified` (`sink/plan/id`) passed before and are only checked to be listed: nothing
/// writes into a pack in place, so deep-verifying them again after every kill would only cost
/// time. Newly verified packs are added to it. With `deep = false` only the listing is compared.
#[track_caller]
pub fn assert_packs_complete(
    env: &Env,
    plan: &str,
    sink: &str,
    plan_dir: &Path,
    verified: &mut BTreeSet<String>,
    ctx: &str,
) -> BTreeSet<String> {
    assert_packs_listed(env, plan, sink, plan_dir, Some(verified), ctx)
}

/// [`assert_packs_complete`]; `verified: None` compares the listing only.
#[track_caller]
pub fn assert_packs_listed(
    env: &Env,
    plan: &str,
    sink: &str,
    plan_dir: &Path,
    verified: Option<&mut BTreeSet<String>>,
    ctx: &str,
) -> BTreeSet<String> {
    let packs = listed(env, plan, sink);
    let ids: BTreeSet<String> = packs.iter().map(|p| p.id.clone()).collect();
    let dirs: BTreeSet<String> = subdirs(plan_dir).into_iter().collect();
    assert_eq!(
        dirs,
        ids,
        "{ctx}: the directories under {} and the packs packrat lists differ (a directory without a valid manifest?)",
        plan_dir.display()
    );
    let Some(verified) = verified else {
        return ids;
    };
    for Listed { id, .. } in &packs {
        let key = format!("{sink}/{plan}/{id}");
        if verified.contains(&key) {
            continue;
        }
        let v = env.run(&["verify", "--sink", sink, &format!("{plan}/{id}"), "--deep"]);
        assert_eq!(
            v.code,
            0,
            "{ctx}: pack {id} on sink {sink} does not verify: {}",
            v.all()
        );
        verified.insert(key);
    }
    ids
}

/// Entries of `dir` (sorted names; empty when it does not exist).
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A local sink's staging area holds no work directories (`job_*`, `delete_*`) and no lock files.
#[track_caller]
pub fn assert_staging_clean(sink_root: &Path, ctx: &str) {
    let staging = sink_root.join(".packrat-staging");
    let left: Vec<String> = entries(&staging)
        .into_iter()
        .filter(|n| n.starts_with("job_") || n.starts_with("delete_") || n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{ctx}: leftovers in {}: {left:?}", staging.display());
}

/// `dir` is missing or empty.
#[track_caller]
pub fn assert_empty(dir: &Path, ctx: &str) {
    let e = entries(dir);
    assert!(e.is_empty(), "{ctx}: {} is not empty: {e:?}", dir.display());
}

/// `packrat doctor --json` names no leftovers: every check about leftovers is OK.
#[track_caller]
pub fn assert_doctor_sees_no_leftovers(env: &Env, ctx: &str) {
    let d = env.run(&["doctor", "--json"]);
    let checks = d.json();
    for c in checks.as_array().expect("doctor checks") {
        let name = c["name"].as_str().unwrap_or_default();
        if name.contains("leftover") {
            assert_eq!(c["status"], "ok", "{ctx}: doctor reports leftovers: {c}");
        }
    }
}

/// What became of a killed job once the next `packrat run` has started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The kill came before the job was created.
    NoJob,
    /// Marked interrupted; no pack of it is in place.
    Interrupted,
    /// Its pack was in place (or the command had finished): completed.
    Completed,
}

/// Checks the job(s) of a killed `packrat run` (the jobs after `before`, except the job of the
/// run that followed, `next`): at most one, never left queued/running; `interrupted` with no pack
/// of it under a final name on `first_sink`, or `completed` with its pack listed there.
#[track_caller]
pub fn assert_killed_job_settled(
    env: &Env,
    before: i64,
    next: i64,
    plan: &str,
    first_sink: &str,
    killed: &Killed,
    ctx: &str,
) -> Fate {
    let jobs: Vec<Value> = jobs_after(env, before)
        .into_iter()
        .filter(|j| j["id"].as_i64() != Some(next))
        .collect();
    assert!(jobs.len() <= 1, "{ctx}: one killed command made several jobs: {jobs:?}");
    let Some(job) = jobs.first() else {
        assert!(
            killed.was_killed(),
            "{ctx}: the command finished ({:?}) without a job",
            killed.finished
        );
        return Fate::NoJob;
    };
    let status = job["status"].as_str().unwrap_or_default();
    let job_id = job["id"].as_i64();
    let packs = listed(env, plan, first_sink);
    let pack_id = job["pack_id"].as_str().map(str::to_string);
    if let Some(st) = killed.finished {
        assert!(
            st.success(),
            "{ctx}: the run finished by itself but failed ({st}): {job}"
        );
        assert_eq!(status, "completed", "{ctx}: {job}");
    }
    match status {
        "interrupted" => {
            assert!(
                job["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("stopped before it finished"),
                "{ctx}: {job}"
            );
            // (Its pack id may be taken by the next run's pack, made in the same second.)
            if let Some(p) = packs.iter().find(|p| p.job_id == job_id) {
                panic!(
                    "{ctx}: job {} is marked interrupted but its pack {} is in place on sink {first_sink}: \
                     recovery must mark it completed (and advance its watermarks)",
                    job["id"], p.id
                );
            }
            Fate::Interrupted
        }
        "completed" => {
            let id = pack_id.unwrap_or_else(|| panic!("{ctx}: a completed job without a pack id: {job}"));
            // Retention after a later run may have removed it again; otherwise it is listed.
            let out = job["output_dir"].as_str().unwrap_or_default();
            assert!(
                packs.iter().any(|p| p.id == id && p.job_id == job_id) || !Path::new(out).exists(),
                "{ctx}: completed job's pack {id} is not listed: {job}"
            );
            Fate::Completed
        }
        other => panic!("{ctx}: the killed job is `{other}`, it must be interrupted or completed: {job}"),
    }
}

/// A running tally of what the kills hit, printed at the end of a scenario.
#[derive(Debug, Default)]
pub struct Tally {
    /// Kills before the job existed.
    pub no_job: u32,
    /// Jobs marked interrupted.
    pub interrupted: u32,
    /// Jobs completed (pack was in place, or the command finished first).
    pub completed: u32,
    /// Commands that had finished before the kill.
    pub finished_first: u32,
}

impl Tally {
    /// Counts one outcome.
    pub fn add(&mut self, fate: Fate, killed: &Killed) {
        match fate {
            Fate::NoJob => self.no_job += 1,
            Fate::Interrupted => self.interrupted += 1,
            Fate::Completed => self.completed += 1,
        }
        if !killed.was_killed() {
            self.finished_first += 1;
        }
    }
}

/// The environment variable `name`, or a panic that says how to start the servers.
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the real test servers; start them with `cargo xtask ci` \
             (or `source target/ci-services/env.sh`)"
        )
    })
}

/// Sends `sig` to `pid`.
#[cfg(unix)]
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let p = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
    nix::sys::signal::kill(p, sig).unwrap_or_else(|e| panic!("kill -{sig} {pid}: {e}"));
}

/// A SQLite database of about `mib` MiB of incompressible rows.
pub fn big_db(path: &Path, mib: u32) {
    let c = rusqlite::Connection::open(path).expect("open");
    c.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS blobs(id INTEGER PRIMARY KEY, b BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {})
         INSERT INTO blobs(b) SELECT randomblob(16384) FROM n;",
        mib * 64
    ))
    .expect("fill");
}

/// `PRAGMA integrity_check` of a database file, and its row count of `blobs`.
///
/// Opened `immutable`, so that reading it leaves no `-shm` file next to it.
pub fn integrity(path: &Path) -> (String, i64) {
    let uri = format!("file:{}?immutable=1", path.display());
    let c = rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .expect("open");
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    let n: i64 = c
        .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .expect("count");
    (ok, n)
}

// ----- the Docker engine ------------------------------------------------------------------------

/// The test Docker engine (`PACKRAT_TEST_DOCKER_*`).
#[derive(Debug, Clone)]
pub struct Docker {
    /// `DOCKER_HOST`.
    pub host: String,
    /// The test image (busybox).
    pub image: String,
    /// The docker CLI.
    pub cli: String,
    /// The docker-compose CLI.
    pub compose: String,
}

impl Docker {
    /// From the environment; fails (never skips) without the engine.
    pub fn from_env() -> Docker {
        Docker {
            host: var("PACKRAT_TEST_DOCKER_HOST"),
            image: var("PACKRAT_TEST_DOCKER_IMAGE"),
            cli: var("PACKRAT_TEST_DOCKER_CLI"),
            compose: var("PACKRAT_TEST_DOCKER_COMPOSE"),
        }
    }

    /// Runs `program args` against the engine, asserting success; returns stdout.
    #[track_caller]
    pub fn run(&self, program: &str, args: &[&str]) -> String {
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

    /// `docker ARGS`.
    #[track_caller]
    pub fn docker(&self, args: &[&str]) -> String {
        self.run(&self.cli, args)
    }

    /// `docker-compose -f FILE -p PROJECT ARGS`.
    #[track_caller]
    pub fn compose(&self, file: &Path, project: &str, args: &[&str]) -> String {
        let mut all = vec!["-f", file.to_str().expect("utf-8 path"), "-p", project];
        all.extend_from_slice(args);
        self.run(&self.compose, &all)
    }

    /// A listing of every entry of `volume` with mode, owner, type and content hash.
    pub fn fingerprint(&self, volume: &str) -> String {
        self.docker(&[
            "run",
            "--rm",
            "-v",
            &format!("{volume}:/v"),
            &self.image,
            "sh",
            "-c",
            "cd /v && find . | LC_ALL=C sort | while read -r f; do stat -c '%n|%a|%u|%g|%F|%N' \"$f\"; \
             [ -f \"$f\" ] && [ ! -L \"$f\" ] && md5sum \"$f\" | cut -c1-32; done; true",
        ])
    }

    /// `State.Status` of a container.
    pub fn state(&self, container: &str) -> String {
        self.docker(&["inspect", "-f", "{{.State.Status}}", container])
            .trim()
            .to_string()
    }

    /// Ids of packrat's helper containers (label `io.packrat.helper`) that mount `volume`.
    pub fn helpers_of(&self, volume: &str) -> Vec<String> {
        self.docker(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            "label=io.packrat.helper",
            "--filter",
            &format!("label=io.packrat.volume={volume}"),
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect()
    }

    /// Whether volume `name` exists.
    pub fn volume_exists(&self, name: &str) -> bool {
        Command::new(&self.cli)
            .args(["volume", "inspect", name])
            .env("DOCKER_HOST", &self.host)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("docker")
            .success()
    }
}

/// A compose project on the test engine (one `web` service with volume `data`), taken down with
/// its volumes (and any container still using them) on drop.
#[derive(Debug)]
pub struct Project {
    /// The engine.
    pub docker: Docker,
    /// The project name.
    pub name: String,
    /// Its compose file.
    pub file: PathBuf,
}

impl Project {
    /// Writes the compose file into `<dir>/<name>/` and brings the project up.
    pub fn up(docker: &Docker, dir: &Path, name: &str) -> Project {
        let app = dir.join(name);
        std::fs::create_dir_all(&app).expect("create project dir");
        let file = app.join("docker-compose.yml");
        std::fs::write(
            &file,
            format!(
                "version: \"2.4\"\nservices:\n  web:\n    image: {img}\n    init: true\n    command: [\"sleep\", \"1000000\"]\n    \
                 volumes:\n      - data:/data\nvolumes:\n  data:\n",
                img = docker.image
            ),
        )
        .expect("write compose file");
        let p = Project {
            docker: docker.clone(),
            name: name.to_string(),
            file,
        };
        p.docker.compose(&p.file, name, &["up", "-d"]);
        p
    }

    /// The volume `data` as the engine names it.
    pub fn volume(&self) -> String {
        format!("{}_data", self.name)
    }

    /// The container id of service `web`.
    pub fn web(&self) -> String {
        self.docker
            .compose(&self.file, &self.name, &["ps", "-q", "web"])
            .trim()
            .to_string()
    }

    /// Fills the volume with `files` files of random data, `kib` KiB each, in subdirectories.
    pub fn fill(&self, files: u32, kib: u32) {
        let web = self.web();
        self.docker.docker(&[
            "exec",
            &web,
            "sh",
            "-c",
            &format!(
                "i=0; while [ $i -lt {files} ]; do d=/data/d$((i % 20)); mkdir -p $d; \
                 dd if=/dev/urandom of=$d/f$i bs=1024 count={kib} 2>/dev/null; i=$((i + 1)); done"
            ),
        ]);
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let vol = self.volume();
        // Helper containers left by killed processes keep the volume busy: remove them first.
        for id in self.docker.helpers_of(&vol) {
            let _ = Command::new(&self.docker.cli)
                .args(["rm", "-f", &id])
                .env("DOCKER_HOST", &self.docker.host)
                .output();
        }
        let _ = Command::new(&self.docker.compose)
            .arg("-f")
            .arg(&self.file)
            .args(["-p", &self.name, "down", "-v", "-t", "1"])
            .env("DOCKER_HOST", &self.docker.host)
            .output();
        let _ = Command::new(&self.docker.cli)
            .args(["volume", "rm", "-f", &vol])
            .env("DOCKER_HOST", &self.docker.host)
            .output();
    }
}

// ----- the Samba share --------------------------------------------------------------------------

/// A fresh directory on the test share, removed on drop. Fails (never skips) without the share.
#[derive(Debug)]
pub struct Share {
    /// The directory on the mounted share.
    pub dir: PathBuf,
    /// Its filesystem type (`fuse.smbnetfs`).
    pub fs_type: String,
}

impl Share {
    /// `e2e_<tag>_<pid>` on the share.
    pub fn new(tag: &str) -> Share {
        let mount = var("PACKRAT_TEST_SMB_MOUNT");
        let fs_type = std::env::var("PACKRAT_TEST_SMB_FSTYPE").unwrap_or_else(|_| "fuse.smbnetfs".into());
        let dir = PathBuf::from(mount).join(format!("e2e_{tag}_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("cannot create {} on the test share: {e}", dir.display()));
        Share { dir, fs_type }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ----- MongoDB ----------------------------------------------------------------------------------

/// Runs a pymongo script (the test server's Python) with `args`; returns stdout.
#[track_caller]
pub fn py(script: &str, args: &[&str]) -> String {
    let out = Command::new(var("PACKRAT_TEST_MONGO_PYTHON"))
        .args(["-c", script])
        .args(args)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Inserts documents `_id` `start..start+n` into `db.logs` with `createdAt` = now and a
/// `size`-byte message (and an index on `createdAt`).
pub fn mongo_seed(uri: &str, db: &str, n: u64, start: u64, size: u64) {
    const SEED: &str = r#"
import sys, datetime, pymongo
c = pymongo.MongoClient(sys.argv[1])
db = c[sys.argv[2]]
n, start, size = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
db.logs.create_index('createdAt')
for s in range(start, start + n, 5000):
    now = datetime.datetime.now(datetime.timezone.utc)
    db.logs.insert_many([{'_id': i, 'createdAt': now, 'host': 'line-%d' % (i % 7),
                          'msg': 'x' * size, 'v': {'a': [i, str(i)]}} for i in range(s, min(start + n, s + 5000))])
"#;
    py(SEED, &[uri, db, &n.to_string(), &start.to_string(), &size.to_string()]);
}

/// The `_id`s of `db.logs`, sorted.
pub fn mongo_ids(uri: &str, db: &str) -> Vec<i64> {
    const IDS: &str = "import sys, pymongo\n\
c = pymongo.MongoClient(sys.argv[1])\n\
print(' '.join(str(d['_id']) for d in c[sys.argv[2]].logs.find({}, {'_id': 1}).sort('_id', 1)))\n";
    let mut v: Vec<i64> = py(IDS, &[uri, db])
        .split_whitespace()
        .map(|s| s.parse().expect("an integer _id"))
        .collect();
    v.sort_unstable();
    v
}

/// The `_id` of every document in the `*.bson.zst` artifacts of the packs in `dirs`, in pack
/// order, duplicates kept (decompressed with the zstd CLI, decoded with pymongo's `bson`).
pub fn pack_doc_ids(dirs: &[PathBuf]) -> Vec<i64> {
    const READ: &str = r#"
import sys, json, subprocess, bson
out = []
for d in sys.argv[1:]:
    m = json.load(open(d + '/manifest.json'))
    for a in m['artifacts']:
        if a['path'].endswith('.bson.zst'):
            raw = subprocess.run(['zstd', '-q', '-d', '-c', d + '/' + a['path']], check=True, capture_output=True).stdout
            out.extend(str(doc['_id']) for doc in bson.decode_all(raw))
print(' '.join(out))
"#;
    if dirs.is_empty() {
        return Vec::new();
    }
    let args: Vec<&str> = dirs.iter().map(|d| d.to_str().expect("utf-8 path")).collect();
    py(READ, &args)
        .split_whitespace()
        .map(|s| s.parse().expect("an integer _id"))
        .collect()
}

/// Drops databases on the test server.
pub fn mongo_drop(uri: &str, dbs: &[&str]) {
    const DROP: &str = "import sys, pymongo\nc = pymongo.MongoClient(sys.argv[1])\n\
for d in sys.argv[2:]:\n    c.drop_database(d)\n";
    let mut args = vec![uri];
    args.extend_from_slice(dbs);
    py(DROP, &args);
}

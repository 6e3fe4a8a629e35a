//! The `garage` service: a real three-node Garage cluster (a distributed S3-compatible store)
//! on loopback, for the tests of the S3 sink and the end-to-end tests.
//!
//! * The `garage` binary (version [`VERSION`], from crates.io) is built once with
//!   `cargo install --locked --root <cache>/garage-<VERSION>` into a cache outside the checkout
//!   (`$PACKRAT_CI_CACHE`, else `$HOME/.cache/packrat-ci`), so a fresh clone reuses it. Building
//!   it takes about 15 minutes on two cores.
//! * Starts three `garage -c nodeN.toml server` processes (N = 1..3) on 127.0.0.1 with free
//!   ports (RPC, S3 API, admin API per node), SQLite metadata, `replication_factor = 3`, one
//!   shared random `rpc_secret`, region [`REGION`], and fresh state under
//!   `target/ci-services/garage/nodeN/`. Joins them, gives each its own zone (`dc1`..`dc3`, so
//!   every node holds one copy of everything), applies the layout, waits until every node
//!   reports the cluster healthy, creates bucket [`BUCKET`] and key [`KEY_NAME`] (read, write,
//!   owner) and proves a signed S3 round trip (PUT through node 1, GET through nodes 2 and 3).
//! * Exports `PACKRAT_TEST_S3_ENDPOINT` (node 1), `PACKRAT_TEST_S3_ENDPOINTS` (all three,
//!   node 1 first), `PACKRAT_TEST_S3_REGION`, `PACKRAT_TEST_S3_BUCKET`,
//!   `PACKRAT_TEST_S3_ACCESS_KEY_ID`, `PACKRAT_TEST_S3_SECRET_ACCESS_KEY`,
//!   `PACKRAT_TEST_GARAGE_BIN` and `PACKRAT_TEST_GARAGE_DIR` (the node configs `nodeN.toml` and
//!   pid files `nodeN.pid`, used by the tests' `packrat_e2e::garage` helper to kill and restart
//!   nodes).
//! * `stop` kills whatever pid is in the pid files (a node restarted by a test is not our
//!   child); a leftover cluster of an interrupted run is killed the same way on the next start.

use std::ffi::OsString;
use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::Service;
use crate::prereqs::{Kind, Prereq};
use crate::util;

/// The Garage release the tests run against.
pub const VERSION: &str = "2.5.0";
/// Number of nodes in the test cluster.
pub const NODES: usize = 3;
/// The bucket the tests use.
pub const BUCKET: &str = "packrat-test";
/// The name of the access key the tests use.
pub const KEY_NAME: &str = "packrat-test";
/// The S3 region of the cluster.
pub const REGION: &str = "garage";

/// How long the cluster may take to become healthy.
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// The three-node Garage cluster.
#[derive(Debug, Default)]
pub struct Garage {
    children: Vec<Child>,
    /// Whether this instance took the cluster over in `start` (then `stop` kills the nodes;
    /// otherwise they belong to another xtask and are left alone).
    owns: bool,
}

/// The ports of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePorts {
    /// Inter-node RPC.
    pub rpc: u16,
    /// S3 API.
    pub s3: u16,
    /// Admin API (`/health`, `/metrics`, admin endpoints).
    pub admin: u16,
}

/// `$PACKRAT_CI_CACHE`, else `$HOME/.cache/packrat-ci`: where CI tools are cached across clones.
fn cache_root_from(cache: Option<OsString>, home: Option<OsString>) -> Result<PathBuf> {
    if let Some(dir) = cache.filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    match home.filter(|h| !h.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("packrat-ci")),
        None => bail!("neither PACKRAT_CI_CACHE nor HOME is set: set one to say where to cache the garage binary"),
    }
}

/// The cache root for tools built by xtask (see [`cache_root_from`]).
pub fn cache_root() -> Result<PathBuf> {
    cache_root_from(std::env::var_os("PACKRAT_CI_CACHE"), std::env::var_os("HOME"))
}

/// `<cache>/garage-<VERSION>`, the `--root` of `cargo install`.
pub fn install_root() -> Result<PathBuf> {
    Ok(cache_root()?.join(format!("garage-{VERSION}")))
}

/// The cached `garage` binary (it may not exist yet).
pub fn binary() -> Result<PathBuf> {
    Ok(install_root()?.join("bin").join("garage"))
}

/// Whether `bin --version` runs and names [`VERSION`].
fn binary_works(bin: &Path) -> bool {
    bin.is_file()
        && Command::new(bin)
            .arg("--version")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .is_ok_and(|o| o.status.success() && version_matches(&String::from_utf8_lossy(&o.stdout)))
}

/// `garage --version` prints `garage v2.5.0 [features: ...]` for a build from git, `garage
/// cargo:2.5.0 [...]` for one from crates.io.
fn version_matches(out: &str) -> bool {
    out.split_whitespace().nth(1).is_some_and(|w| {
        let w = w.strip_prefix("cargo:").unwrap_or(w);
        w.strip_prefix('v').unwrap_or(w) == VERSION
    })
}

/// Whether the cached binary is present and works (the prerequisite check).
fn is_installed() -> bool {
    binary().is_ok_and(|b| binary_works(&b))
}

/// Builds and installs the binary into the cache unless a working one is there; returns it.
pub fn ensure_installed() -> Result<PathBuf> {
    let bin = binary()?;
    if binary_works(&bin) {
        return Ok(bin);
    }
    let root = install_root()?;
    fs::create_dir_all(&root).with_context(|| format!("create {}", root.display()))?;
    eprintln!(
        "  building garage {VERSION} into {} (not cached yet; takes about 15 minutes on 2 cores)",
        root.display()
    );
    let t0 = Instant::now();
    let mut cmd = util::cargo();
    cmd.args(["install", "garage", "--version", VERSION, "--locked", "--root"])
        .arg(&root)
        // Not the workspace's target dir: cargo install uses a temporary one, deleted after.
        .env_remove("CARGO_TARGET_DIR")
        .env("CARGO_INCREMENTAL", "0");
    util::run(&mut cmd).context("building garage (cargo install); the error is above")?;
    eprintln!("  built garage {VERSION} in {}", util::fmt_duration(t0.elapsed()));
    if !binary_works(&bin) {
        bail!(
            "{} was installed but `{} --version` does not run or does not print {VERSION}; remove {} and retry",
            bin.display(),
            bin.display(),
            root.display()
        );
    }
    Ok(bin)
}

/// The prerequisite for the cached garage binary (built in the `prereqs` step of `ci`).
pub fn prereq() -> Prereq {
    Prereq {
        name: "garage",
        kind: Kind::Cached {
            is_present: is_installed,
            install: || ensure_installed().map(|_| ()),
        },
    }
}

/// Debian's rclone, the S3 client the S3 benchmark compares packrat with.
pub fn rclone_prereq() -> Prereq {
    Prereq::apt("rclone", "rclone")
}

/// 32 random bytes as 64 hex digits.
fn random_hex() -> Result<String> {
    let mut buf = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("read /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// `n` distinct free loopback ports (all held open together while choosing).
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("find free ports")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .context("find free ports")
}

/// The config of node `n` (1-based), with its state under `node_dir`.
pub fn node_config(node_dir: &Path, ports: NodePorts, rpc_secret: &str, admin_token: &str) -> String {
    let d = node_dir.display();
    format!(
        "# Garage test node, written by `cargo xtask services` (packrat); fresh on every start.\n\
         metadata_dir = \"{d}/meta\"\n\
         data_dir = \"{d}/data\"\n\
         db_engine = \"sqlite\"\n\
         replication_factor = 3\n\
         rpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
         rpc_public_addr = \"127.0.0.1:{rpc}\"\n\
         rpc_secret = \"{rpc_secret}\"\n\
         \n\
         [s3_api]\n\
         s3_region = \"{REGION}\"\n\
         api_bind_addr = \"127.0.0.1:{s3}\"\n\
         \n\
         [admin]\n\
         api_bind_addr = \"127.0.0.1:{admin}\"\n\
         admin_token = \"{admin_token}\"\n",
        rpc = ports.rpc,
        s3 = ports.s3,
        admin = ports.admin,
    )
}

/// The node id (64 hex digits) from `garage node id -q` (`<id>@<addr>`).
fn parse_node_id(out: &str) -> Result<(String, String)> {
    let line = out.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    let Some((id, addr)) = line.split_once('@') else {
        bail!("`garage node id` printed {line:?}, expected <node id>@<address>");
    };
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("`garage node id` printed {line:?}: the node id is not 64 hex digits");
    }
    Ok((id.to_owned(), addr.to_owned()))
}

/// The health reported by `garage json-api GetClusterHealth`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Health {
    status: String,
    storage_nodes: u64,
    storage_nodes_up: u64,
    partitions: u64,
    partitions_all_ok: u64,
}

impl Health {
    /// Every storage node of the layout connected and every partition fully available.
    fn is_healthy(&self, nodes: u64) -> bool {
        self.status == "healthy"
            && self.storage_nodes == nodes
            && self.storage_nodes_up == nodes
            && self.partitions > 0
            && self.partitions_all_ok == self.partitions
    }
}

fn parse_health(out: &str) -> Result<Health> {
    let v: Value = serde_json::from_str(out).context("GetClusterHealth did not print JSON")?;
    let num = |k: &str| {
        v[k].as_u64()
            .with_context(|| format!("GetClusterHealth: no number {k:?} in {v}"))
    };
    Ok(Health {
        status: v["status"]
            .as_str()
            .with_context(|| format!("GetClusterHealth: no \"status\" in {v}"))?
            .to_owned(),
        storage_nodes: num("storageNodes")?,
        // `storageNodesUp` in Garage 2.5 (measured), `storageNodesOk` in 2.0.
        storage_nodes_up: num("storageNodesUp").or_else(|_| num("storageNodesOk"))?,
        partitions: num("partitions")?,
        partitions_all_ok: num("partitionsAllOk")?,
    })
}

/// The ids of the nodes `garage json-api GetClusterStatus` shows as up.
fn parse_up_nodes(out: &str) -> Result<Vec<String>> {
    let v: Value = serde_json::from_str(out).context("GetClusterStatus did not print JSON")?;
    let nodes = v["nodes"]
        .as_array()
        .with_context(|| format!("GetClusterStatus: no \"nodes\" list in {v}"))?;
    Ok(nodes
        .iter()
        .filter(|n| n["isUp"].as_bool() == Some(true))
        .filter_map(|n| n["id"].as_str().map(str::to_owned))
        .collect())
}

/// Key id and secret from `garage json-api CreateKey` (the secret never goes into an error).
fn parse_created_key(out: &str) -> Result<(String, String)> {
    let v: Value = serde_json::from_str(out).map_err(|_| anyhow::anyhow!("CreateKey did not print JSON"))?;
    let id = v["accessKeyId"].as_str().filter(|s| !s.is_empty());
    let secret = v["secretAccessKey"].as_str().filter(|s| !s.is_empty());
    match (id, secret) {
        (Some(id), Some(secret)) => Ok((id.to_owned(), secret.to_owned())),
        _ => bail!("CreateKey printed no accessKeyId/secretAccessKey"),
    }
}

/// Whether `/proc/<pid>` is a live (not zombie) garage process running config `config`.
fn is_our_node(pid: u32, config: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let config = config.as_os_str().as_encoded_bytes();
    let runs_config = args.windows(2).any(|w| w[0] == b"-c" && w[1] == config);
    let is_garage = args
        .first()
        .is_some_and(|a| a.rsplit(|&b| b == b'/').next() == Some(b"garage"));
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true);
    is_garage && runs_config && !zombie
}

/// `curl` for one S3 request signed with SigV4; the credentials come through stdin (`-K -`,
/// see [`run_curl`]), never on the command line.
fn curl_s3(method: &str, url: &str) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args([
        "--silent",
        "--show-error",
        "--fail-with-body",
        "--max-time",
        "30",
        "-K",
        "-",
        "-X",
        method,
        // curl 7.88 signs the request but sends no payload hash, which S3 requires.
        "-H",
        "x-amz-content-sha256: UNSIGNED-PAYLOAD",
    ])
    .arg(url);
    cmd
}

/// Runs a [`curl_s3`] command with the key `(id, secret)`: its body, or an error with curl's
/// message and S3's error document (neither holds the secret).
fn run_curl(mut cmd: Command, (id, secret): (&str, &str)) -> Result<String> {
    let shown = util::display_cmd(&cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    child
        .stdin
        .take()
        .context("curl's stdin")?
        .write_all(format!("user = \"{id}:{secret}\"\naws-sigv4 = \"aws:amz:{REGION}:s3\"\n").as_bytes())
        .context("write curl's config")?;
    let out = child
        .wait_with_output()
        .with_context(|| format!("wait for `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Garage {
    /// `target/ci-services/garage`.
    pub fn dir() -> PathBuf {
        util::target_dir().join("ci-services").join("garage")
    }

    /// `nodeN.toml` (N = 1..3).
    fn config(n: usize) -> PathBuf {
        Self::dir().join(format!("node{n}.toml"))
    }

    fn pid_file(n: usize) -> PathBuf {
        Self::dir().join(format!("node{n}.pid"))
    }

    fn node_dir(n: usize) -> PathBuf {
        Self::dir().join(format!("node{n}"))
    }

    /// `garage -c nodeN.toml ARGS...`
    fn cli(bin: &Path, n: usize) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(Self::config(n));
        cmd
    }

    /// Kills the node in `nodeN.pid` (ours or restarted by a test): TERM, then KILL after 10 s.
    /// Returns whether a node was running.
    fn kill_node(&mut self, n: usize) -> Result<bool> {
        let pid_file = Self::pid_file(n);
        let Ok(text) = fs::read_to_string(&pid_file) else {
            return Ok(false);
        };
        let mut killed = false;
        if let Ok(pid) = text.trim().parse::<u32>()
            && is_our_node(pid, &Self::config(n))
        {
            killed = true;
            let pid_s = pid.to_string();
            let _ = util::signal("TERM", &pid_s);
            let t0 = Instant::now();
            while is_our_node(pid, &Self::config(n)) {
                self.reap();
                if t0.elapsed() > Duration::from_secs(10) {
                    let _ = util::signal("KILL", &pid_s);
                }
                if t0.elapsed() > Duration::from_secs(20) {
                    bail!("garage node {n} (pid {pid}) does not die; kill it by hand");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        fs::remove_file(&pid_file).with_context(|| format!("remove {}", pid_file.display()))?;
        Ok(killed)
    }

    /// Waits for our children that have exited (so they do not linger as zombies).
    fn reap(&mut self) {
        self.children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
    }

    fn stop_all(&mut self) -> Result<()> {
        if !self.owns {
            return Ok(());
        }
        let mut problems = Vec::new();
        for n in 1..=NODES {
            if let Err(e) = self.kill_node(n) {
                problems.push(format!("{e:#}"));
            }
        }
        for mut child in self.children.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if fs::read_to_string(Self::owner_file()).is_ok_and(|p| p.trim() == std::process::id().to_string()) {
            let _ = fs::remove_file(Self::owner_file());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            bail!(problems.join("; "))
        }
    }

    fn log_tail(n: usize) -> String {
        let log = Self::node_dir(n).join("server.log");
        let text = fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "last lines of {}:\n{}",
            log.display(),
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }

    fn spawn_node(&mut self, bin: &Path, n: usize) -> Result<()> {
        let log_path = Self::node_dir(n).join("server.log");
        let log = fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let mut cmd = Self::cli(bin, n);
        cmd.arg("server")
            .env("RUST_LOG", "garage=info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        {
            // Its own process group: a Ctrl-C of xtask does not kill it half-way; the next
            // start kills it by pid file.
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", util::display_cmd(&cmd)))?;
        fs::write(Self::pid_file(n), format!("{}\n", child.id()))?;
        self.children.push(child);
        Ok(())
    }

    /// Waits until node `n` listens on all its ports.
    fn wait_listening(&mut self, n: usize, ports: NodePorts) -> Result<()> {
        let t0 = Instant::now();
        loop {
            if [ports.rpc, ports.s3, ports.admin]
                .iter()
                .all(|&p| TcpStream::connect(("127.0.0.1", p)).is_ok())
            {
                return Ok(());
            }
            if let Some(status) = self.children[n - 1].try_wait()? {
                bail!(
                    "garage node {n} exited ({status}) before listening; {}",
                    Self::log_tail(n)
                );
            }
            if t0.elapsed() > READY_TIMEOUT {
                bail!(
                    "garage node {n} did not listen on ports {ports:?} within {} s; {}",
                    READY_TIMEOUT.as_secs(),
                    Self::log_tail(n)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a garage CLI command until it succeeds (the RPC may need a moment after a start).
    fn retry(what: &str, mut make: impl FnMut() -> Command) -> Result<String> {
        let t0 = Instant::now();
        loop {
            match util::stdout_of(&mut make()) {
                Ok(out) => return Ok(out),
                Err(e) if t0.elapsed() > READY_TIMEOUT => {
                    return Err(e).with_context(|| format!("{what} (retried for {} s)", READY_TIMEOUT.as_secs()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }

    /// Waits until every node sees all `NODES` storage nodes connected and all partitions ok.
    fn wait_healthy(bin: &Path) -> Result<()> {
        let t0 = Instant::now();
        for n in 1..=NODES {
            loop {
                let out = util::stdout_of(Self::cli(bin, n).args(["json-api", "GetClusterHealth"]));
                let last = match out.and_then(|o| parse_health(&o)) {
                    Ok(h) if h.is_healthy(NODES as u64) => break,
                    Ok(h) => format!("{h:?}"),
                    Err(e) => format!("{e:#}"),
                };
                if t0.elapsed() > READY_TIMEOUT {
                    bail!(
                        "the garage cluster is not healthy on node {n} after {} s; last answer: {last}",
                        READY_TIMEOUT.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        Ok(())
    }

    /// PUT an object through node 1 with the test key, GET it through the other nodes, DELETE.
    fn probe(dir: &Path, endpoints: &[String], key_id: &str, secret: &str) -> Result<()> {
        let body = format!("packrat probe {}", random_hex()?);
        let body_file = dir.join("probe.body");
        fs::write(&body_file, &body).with_context(|| format!("write {}", body_file.display()))?;
        let url = |endpoint: &str| format!("{endpoint}/{BUCKET}/.xtask-probe");
        let creds = (key_id, secret);
        let mut put = curl_s3("PUT", &url(&endpoints[0]));
        put.arg("--upload-file").arg(&body_file);
        run_curl(put, creds).context("PUT a probe object through node 1")?;
        for (i, endpoint) in endpoints.iter().enumerate().skip(1) {
            let got = run_curl(curl_s3("GET", &url(endpoint)), creds)
                .with_context(|| format!("GET the probe object through node {}", i + 1))?;
            if got != body {
                bail!(
                    "node {} returned {} bytes for the probe object, not the {} written through node 1",
                    i + 1,
                    got.len(),
                    body.len()
                );
            }
        }
        run_curl(curl_s3("DELETE", &url(&endpoints[0])), creds).context("DELETE the probe object")?;
        let _ = fs::remove_file(&body_file);
        Ok(())
    }

    /// `owner.pid`: the xtask process that started the cluster.
    fn owner_file() -> PathBuf {
        Self::dir().join("owner.pid")
    }

    /// Fails if another live xtask (e.g. a `services up` in another shell) runs this cluster:
    /// starting would kill it under that run's tests.
    fn check_not_owned_by_another_xtask() -> Result<()> {
        let Ok(text) = fs::read_to_string(Self::owner_file()) else {
            return Ok(());
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            return Ok(());
        };
        if pid == std::process::id() {
            return Ok(());
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let is_xtask = cmdline
            .split(|&b| b == 0)
            .next()
            .is_some_and(|a| a.rsplit(|&b| b == b'/').next() == Some(b"xtask"));
        let nodes_alive = (1..=NODES).any(|n| {
            fs::read_to_string(Self::pid_file(n))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
                .is_some_and(|p| is_our_node(p, &Self::config(n)))
        });
        if is_xtask && nodes_alive {
            bail!(
                "the garage cluster in {} is running, started by xtask pid {pid} (`cargo xtask services up` \
                 or `ci`); use it (`source target/ci-services/env.sh` or `garage.env.sh`) or stop it first \
                 (`cargo xtask services down`, with `--only garage` if it was started so)",
                Self::dir().display()
            );
        }
        Ok(())
    }

    /// Kills nodes of an earlier run whose pid files are still there.
    fn kill_leftovers(&mut self) {
        for n in 1..=NODES {
            match self.kill_node(n) {
                Ok(true) => eprintln!("  killed leftover garage node {n}"),
                Ok(false) => {}
                Err(e) => eprintln!("  warning: {e:#}"),
            }
        }
    }
}

impl Service for Garage {
    fn name(&self) -> &'static str {
        "garage"
    }

    fn prereqs(&self) -> Vec<Prereq> {
        vec![Prereq::apt("curl", "curl"), rclone_prereq(), prereq()]
    }

    fn start(&mut self) -> Result<Vec<(String, String)>> {
        Self::check_not_owned_by_another_xtask()?;
        self.owns = true;
        self.kill_leftovers();
        let bin = ensure_installed()?;
        let dir = Self::dir();
        util::remove_path(&dir)?;
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        fs::write(Self::owner_file(), format!("{}\n", std::process::id()))?;

        let rpc_secret = random_hex()?;
        let admin_token = random_hex()?;
        let ports: Vec<NodePorts> = free_ports(3 * NODES)?
            .chunks(3)
            .map(|p| NodePorts {
                rpc: p[0],
                s3: p[1],
                admin: p[2],
            })
            .collect();
        for (i, p) in ports.iter().enumerate() {
            let n = i + 1;
            let node_dir = Self::node_dir(n);
            for sub in ["meta", "data"] {
                fs::create_dir_all(node_dir.join(sub))
                    .with_context(|| format!("create {}", node_dir.join(sub).display()))?;
            }
            let config = Self::config(n);
            // The config holds the rpc secret and admin token: owner-only.
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&config)
                .and_then(|mut f| f.write_all(node_config(&node_dir, *p, &rpc_secret, &admin_token).as_bytes()))
                .with_context(|| format!("write {}", config.display()))?;
        }
        for n in 1..=NODES {
            self.spawn_node(&bin, n)?;
        }
        for (i, p) in ports.iter().enumerate() {
            self.wait_listening(i + 1, *p)?;
        }

        let mut ids = Vec::new();
        for n in 1..=NODES {
            let out = Self::retry(&format!("garage node id of node {n}"), || {
                let mut c = Self::cli(&bin, n);
                c.args(["node", "id", "-q"]);
                c
            })?;
            ids.push(parse_node_id(&out)?);
        }
        for (id, addr) in &ids[1..] {
            Self::retry("garage node connect", || {
                let mut c = Self::cli(&bin, 1);
                c.args(["node", "connect", &format!("{id}@{addr}")]);
                c
            })?;
        }
        let t0 = Instant::now();
        loop {
            let up = util::stdout_of(Self::cli(&bin, 1).args(["json-api", "GetClusterStatus"]))
                .and_then(|o| parse_up_nodes(&o))
                .unwrap_or_default();
            if ids.iter().all(|(id, _)| up.contains(id)) {
                break;
            }
            if t0.elapsed() > READY_TIMEOUT {
                bail!(
                    "garage nodes did not all connect within {} s (up: {up:?})",
                    READY_TIMEOUT.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for (i, (id, _)) in ids.iter().enumerate() {
            util::stdout_of(Self::cli(&bin, 1).args([
                "layout",
                "assign",
                "-z",
                &format!("dc{}", i + 1),
                "-c",
                "1G",
                id,
            ]))?;
        }
        util::stdout_of(Self::cli(&bin, 1).args(["layout", "apply", "--version", "1"]))?;
        Self::wait_healthy(&bin)?;

        util::stdout_of(Self::cli(&bin, 1).args(["bucket", "create", BUCKET]))?;
        let out = util::stdout_of(Self::cli(&bin, 1).args([
            "json-api",
            "CreateKey",
            &format!("{{\"name\": \"{KEY_NAME}\"}}"),
        ]))?;
        let (key_id, secret) = parse_created_key(&out)?;
        util::stdout_of(Self::cli(&bin, 1).args([
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", &key_id,
        ]))?;

        let endpoints: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{}", p.s3)).collect();
        Self::probe(&dir, &endpoints, &key_id, &secret)?;
        Ok(vec![
            ("PACKRAT_TEST_S3_ENDPOINT".into(), endpoints[0].clone()),
            ("PACKRAT_TEST_S3_ENDPOINTS".into(), endpoints.join(",")),
            ("PACKRAT_TEST_S3_REGION".into(), REGION.into()),
            ("PACKRAT_TEST_S3_BUCKET".into(), BUCKET.into()),
            ("PACKRAT_TEST_S3_ACCESS_KEY_ID".into(), key_id),
            ("PACKRAT_TEST_S3_SECRET_ACCESS_KEY".into(), secret),
            ("PACKRAT_TEST_GARAGE_BIN".into(), bin.display().to_string()),
            ("PACKRAT_TEST_GARAGE_DIR".into(), dir.display().to_string()),
        ])
    }

    fn stop(&mut self) -> Result<()> {
        self.stop_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_root_prefers_the_override_then_home() {
        assert_eq!(
            cache_root_from(Some("/c".into()), Some("/h".into())).unwrap(),
            PathBuf::from("/c")
        );
        assert_eq!(
            cache_root_from(Some("".into()), Some("/h".into())).unwrap(),
            PathBuf::from("/h/.cache/packrat-ci")
        );
        assert_eq!(
            cache_root_from(None, Some("/h".into())).unwrap(),
            PathBuf::from("/h/.cache/packrat-ci")
        );
        let err = cache_root_from(None, None).unwrap_err().to_string();
        assert!(err.contains("PACKRAT_CI_CACHE") && err.contains("HOME"), "{err}");
    }

    #[test]
    fn version_is_read_from_garage_version_output() {
        assert!(version_matches(
            "garage v2.5.0 [features: k2v, lmdb, sqlite, metrics, bundled-libs]\n"
        ));
        // What `cargo install garage` builds (measured).
        assert!(version_matches(
            "garage cargo:2.5.0 [features: bundled-libs, k2v, lmdb, metrics, sqlite]\n"
        ));
        assert!(!version_matches("garage cargo:2.5.01 [features: sqlite]"));
        assert!(!version_matches("garage v2.5.1 [features: sqlite]"));
        assert!(!version_matches("garage v1.2.0"));
        assert!(!version_matches(""));
    }

    #[test]
    fn node_config_has_every_setting() {
        let ports = NodePorts {
            rpc: 40001,
            s3: 40002,
            admin: 40003,
        };
        let text = node_config(Path::new("/t/garage/node2"), ports, &"ab".repeat(32), "tok");
        let lines: Vec<&str> = text.lines().collect();
        for want in [
            "metadata_dir = \"/t/garage/node2/meta\"",
            "data_dir = \"/t/garage/node2/data\"",
            "db_engine = \"sqlite\"",
            "replication_factor = 3",
            "rpc_bind_addr = \"127.0.0.1:40001\"",
            "rpc_public_addr = \"127.0.0.1:40001\"",
            &format!("rpc_secret = \"{}\"", "ab".repeat(32)),
            "[s3_api]",
            "s3_region = \"garage\"",
            "api_bind_addr = \"127.0.0.1:40002\"",
            "[admin]",
            "api_bind_addr = \"127.0.0.1:40003\"",
            "admin_token = \"tok\"",
        ] {
            assert!(lines.contains(&want), "missing {want:?} in:\n{text}");
        }
        // The S3 bind address belongs to [s3_api], the admin one to [admin].
        let s3 = text.find("[s3_api]").unwrap();
        let admin = text.find("[admin]").unwrap();
        let s3_bind = text.find("127.0.0.1:40002").unwrap();
        assert!(s3 < s3_bind && s3_bind < admin);
    }

    #[test]
    fn random_hex_is_64_hex_digits_and_differs() {
        let a = random_hex().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_hex().unwrap());
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(9).unwrap();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 9);
    }

    #[test]
    fn node_id_is_parsed() {
        let id = "563e1ac825ee3323aa441e72c26d1030d3ce8dbdf9e89da60a8fa1b2c3d4e5f6";
        let (got, addr) = parse_node_id(&format!("{id}@127.0.0.1:3901\n")).unwrap();
        assert_eq!(got, id);
        assert_eq!(addr, "127.0.0.1:3901");
        assert!(parse_node_id("").is_err());
        assert!(parse_node_id("563e1ac8@127.0.0.1:3901").is_err());
        assert!(parse_node_id(id).is_err());
    }

    #[test]
    fn health_is_parsed_and_judged() {
        // Garage 2.5.0's output (measured).
        let healthy = r#"{
  "connectedNodes": 3,
  "knownNodes": 3,
  "partitions": 256,
  "partitionsAllOk": 256,
  "partitionsQuorum": 256,
  "status": "healthy",
  "storageNodes": 3,
  "storageNodesUp": 3
}"#;
        let h = parse_health(healthy).unwrap();
        assert!(h.is_healthy(3));
        assert!(!h.is_healthy(2));
        let degraded = r#"{"status":"degraded","knownNodes":3,"connectedNodes":2,"storageNodes":3,
            "storageNodesUp":2,"partitions":256,"partitionsQuorum":256,"partitionsAllOk":0}"#;
        assert!(!parse_health(degraded).unwrap().is_healthy(3));
        // Before the layout is applied there are no storage nodes.
        let empty = r#"{"status":"unavailable","knownNodes":3,"connectedNodes":3,"storageNodes":0,
            "storageNodesUp":0,"partitions":256,"partitionsQuorum":0,"partitionsAllOk":0}"#;
        assert!(!parse_health(empty).unwrap().is_healthy(3));
        // Garage 2.0 named the count `storageNodesOk`.
        let v20 = r#"{"status":"healthy","knownNodes":3,"connectedNodes":3,"storageNodes":3,
            "storageNodesOk":3,"partitions":256,"partitionsQuorum":256,"partitionsAllOk":256}"#;
        assert!(parse_health(v20).unwrap().is_healthy(3));
        assert!(parse_health("Error: no RPC").is_err());
        assert!(parse_health(r#"{"status":"healthy"}"#).is_err());
    }

    #[test]
    fn up_nodes_are_parsed_from_cluster_status() {
        let out = r#"{"layoutVersion":0,"nodes":[
            {"id":"aa","garageVersion":"v2.5.0","addr":"127.0.0.1:1","hostname":"h","isUp":true,
             "lastSeenSecsAgo":null,"role":null,"draining":false},
            {"id":"bb","garageVersion":null,"addr":"127.0.0.1:2","hostname":null,"isUp":false,
             "lastSeenSecsAgo":12,"role":null,"draining":false}]}"#;
        assert_eq!(parse_up_nodes(out).unwrap(), ["aa"]);
        assert!(parse_up_nodes("{}").is_err());
    }

    #[test]
    fn created_key_is_parsed_without_leaking_the_secret() {
        let out = r#"{"name":"packrat-test","accessKeyId":"GK0123","secretAccessKey":"s3cr3t","expired":false}"#;
        assert_eq!(parse_created_key(out).unwrap(), ("GK0123".into(), "s3cr3t".into()));
        let err = parse_created_key(r#"{"accessKeyId":"GK0123","secretAccessKey":null}"#).unwrap_err();
        assert!(!err.to_string().contains("GK0123"));
        let err = parse_created_key("secret s3cr3t, not json").unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"));
    }

    #[test]
    fn only_live_garage_processes_with_our_config_count_as_nodes() {
        // This test process is not garage.
        assert!(!is_our_node(std::process::id(), Path::new("/x/node1.toml")));
        assert!(!is_our_node(u32::MAX, Path::new("/x/node1.toml")));
    }
}

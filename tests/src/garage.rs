//! The three-node Garage (S3) test cluster that `cargo xtask ci` and `cargo xtask services up`
//! start: its endpoints and credentials from the environment, and killing and restarting
//! single nodes for failure tests.
//!
//! ```no_run
//! let cluster = packrat_e2e::garage::Cluster::from_env();
//! // ... write through cluster.endpoint with cluster.access_key_id / secret_access_key ...
//! let down = cluster.kill_node(2); // SIGKILL node 2; restarted when `down` is dropped
//! // ... writes still succeed: a quorum of 2 of 3 nodes is up ...
//! down.restart(); // or let it drop at the end of the test
//! let all = cluster.all_nodes_up(); // no node is killed while `all` lives
//! let keys = cluster.list_keys(2, "plan/").unwrap(); // listed through node 2
//! drop(all);
//! ```
//!
//! **Killing a node affects every test using the cluster at that moment** (nextest runs tests in
//! parallel processes, all against this one cluster). Hence:
//! * [`Cluster::kill_node`] returns a [`KilledNode`] guard that restarts the node when dropped
//!   (also when the test panics): a test never returns with a node down. Keep the guard alive
//!   only as long as the test needs the node down.
//! * While a guard lives it holds an exclusive lock on `$PACKRAT_TEST_GARAGE_DIR/faults.lock`,
//!   so only one test at a time has nodes down (other tests that kill nodes wait). A test that
//!   kills one node leaves every other test a quorum (2 of 3) for reads and writes. A test may
//!   kill a second node (its guards share the lock) to lose the quorum on purpose: tests
//!   using `PACKRAT_TEST_S3_ENDPOINT` at that moment fail, so keep that short and rare.
//! * Kill node 1 or 2: node 0 serves `PACKRAT_TEST_S3_ENDPOINT`, which the other tests use.
//! * A test that talks to nodes 1 or 2 directly (e.g. reads back through every endpoint) holds
//!   [`Cluster::all_nodes_up`] while it does: a shared lock on the same file, so no node is
//!   killed meanwhile (killers wait for it, it waits for a killed node to be back). Tests that
//!   use only `PACKRAT_TEST_S3_ENDPOINT`, or tolerate a down endpoint, need no lock.
//!
//! Node `i` (0..3) is the `i`-th entry of `PACKRAT_TEST_S3_ENDPOINTS`; its files are
//! `node{i+1}.toml`, `node{i+1}.pid` and `node{i+1}/server.log` in `PACKRAT_TEST_GARAGE_DIR`.

use std::cell::RefCell;
use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Number of nodes in the test cluster.
pub const NODES: usize = 3;

/// How long a restarted node may take to rejoin the cluster.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(90);

thread_local! {
    /// The exclusive fault lock this thread's [`KilledNode`]s share (released with the last).
    static EXCLUSIVE: RefCell<Weak<fs::File>> = const { RefCell::new(Weak::new()) };
    /// The shared fault lock this thread's [`AllNodesUp`]s share.
    static SHARED: RefCell<Weak<fs::File>> = const { RefCell::new(Weak::new()) };
}

/// The running test cluster, as described by the `PACKRAT_TEST_S3_*` / `PACKRAT_TEST_GARAGE_*`
/// environment.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// `PACKRAT_TEST_S3_ENDPOINT`: node 0's S3 API, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// `PACKRAT_TEST_S3_ENDPOINTS`: the S3 API of every node, node 0 first.
    pub endpoints: Vec<String>,
    /// `PACKRAT_TEST_S3_REGION` (`garage`).
    pub region: String,
    /// `PACKRAT_TEST_S3_BUCKET` (`packrat-test`); read, write and owner rights for the key.
    pub bucket: String,
    /// `PACKRAT_TEST_S3_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `PACKRAT_TEST_S3_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `PACKRAT_TEST_GARAGE_BIN`: the `garage` binary.
    pub bin: PathBuf,
    /// `PACKRAT_TEST_GARAGE_DIR`: node configs, pid files, node state and logs.
    pub dir: PathBuf,
}

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the Garage test cluster is not running. Start it with \
             `cargo xtask services up --only garage` and `source target/ci-services/garage.env.sh` \
             (or run everything with `cargo xtask ci`)"
        ),
    }
}

impl Cluster {
    /// The cluster from the environment; panics naming the missing variable when it is not set
    /// up (a test never skips).
    pub fn from_env() -> Cluster {
        let endpoints: Vec<String> = required_env("PACKRAT_TEST_S3_ENDPOINTS")
            .split(',')
            .map(|s| s.trim().to_owned())
            .collect();
        let cluster = Cluster {
            endpoint: required_env("PACKRAT_TEST_S3_ENDPOINT"),
            endpoints,
            region: required_env("PACKRAT_TEST_S3_REGION"),
            bucket: required_env("PACKRAT_TEST_S3_BUCKET"),
            access_key_id: required_env("PACKRAT_TEST_S3_ACCESS_KEY_ID"),
            secret_access_key: required_env("PACKRAT_TEST_S3_SECRET_ACCESS_KEY"),
            bin: PathBuf::from(required_env("PACKRAT_TEST_GARAGE_BIN")),
            dir: PathBuf::from(required_env("PACKRAT_TEST_GARAGE_DIR")),
        };
        assert_eq!(
            cluster.endpoints.len(),
            NODES,
            "PACKRAT_TEST_S3_ENDPOINTS should list {NODES} endpoints: {:?}",
            cluster.endpoints
        );
        assert_eq!(
            cluster.endpoints[0], cluster.endpoint,
            "PACKRAT_TEST_S3_ENDPOINTS should start with PACKRAT_TEST_S3_ENDPOINT"
        );
        for i in 0..NODES {
            assert!(
                cluster.config(i).is_file(),
                "{} is missing: PACKRAT_TEST_GARAGE_DIR does not hold a running test cluster",
                cluster.config(i).display()
            );
        }
        cluster
    }

    /// `node{i+1}.toml`.
    pub fn config(&self, i: usize) -> PathBuf {
        assert!(
            i < NODES,
            "node {i} does not exist: the test cluster has nodes 0..{NODES}"
        );
        self.dir.join(format!("node{}.toml", i + 1))
    }

    /// `node{i+1}.pid`, written by whoever started the node last.
    pub fn pid_file(&self, i: usize) -> PathBuf {
        self.config(i).with_extension("pid")
    }

    /// `node{i+1}/server.log`.
    pub fn log(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node{}", i + 1)).join("server.log")
    }

    /// `host:port` of node `i`'s S3 API.
    fn s3_addr(&self, i: usize) -> &str {
        let e = &self.endpoints[i];
        e.strip_prefix("http://").unwrap_or(e).trim_end_matches('/')
    }

    /// `garage -c node{i+1}.toml ARGS...`
    pub fn cli(&self, i: usize) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(self.config(i)).stdin(Stdio::null());
        cmd
    }

    /// The pid in node `i`'s pid file, if that process is a live garage server of node `i`.
    fn live_pid(&self, i: usize) -> Option<u32> {
        let pid = fs::read_to_string(self.pid_file(i)).ok()?.trim().parse().ok()?;
        is_node_process(pid, &self.config(i)).then_some(pid)
    }

    /// Whether node `i`'s process runs and its S3 API accepts connections.
    pub fn is_up(&self, i: usize) -> bool {
        self.live_pid(i).is_some() && TcpStream::connect(self.s3_addr(i)).is_ok()
    }

    /// SIGKILLs node `i` (by its pid file) and waits until it is gone and the other running
    /// nodes have noticed. The returned guard restarts it when dropped; until then (until this
    /// test's last [`KilledNode`] is gone) no other test kills a node or holds
    /// [`Cluster::all_nodes_up`] (see the module doc). Waits while another test holds either.
    /// Panics if node `i` is not running or this thread holds [`Cluster::all_nodes_up`].
    #[must_use = "the node is restarted when the guard is dropped"]
    pub fn kill_node(&self, i: usize) -> KilledNode<'_> {
        assert!(
            SHARED.with_borrow(Weak::strong_count) == 0,
            "this test holds Cluster::all_nodes_up(); drop that guard before killing a node"
        );
        let lock = EXCLUSIVE.with_borrow(Weak::upgrade).unwrap_or_else(|| {
            let file = self.fault_lock();
            // Waits while another test has a node down or needs all nodes up.
            file.lock()
                .unwrap_or_else(|e| panic!("lock {}: {e}", self.dir.join("faults.lock").display()));
            let rc = Rc::new(file);
            EXCLUSIVE.set(Rc::downgrade(&rc));
            rc
        });
        let Some(pid) = self.live_pid(i) else {
            panic!(
                "garage node {i} is not running (pid file {}); was it killed and not restarted?",
                self.pid_file(i).display()
            );
        };
        let guard = KilledNode {
            cluster: self,
            node: i,
            _lock: lock,
            restarted: false,
        };
        signal_kill(pid);
        let t0 = Instant::now();
        while is_node_process(pid, &self.config(i)) {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "garage node {i} (pid {pid}) still runs 30 s after SIGKILL"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Err(e) = self.wait_seen_down(i) {
            panic!("{e}");
        }
        guard
    }

    /// Waits until every other node has noticed that node `i` is gone (closed its connection
    /// to it). Until then a survivor may still send to the dead connection, and a node started
    /// again in that window is not reconnected to at once: requests to it would fail with
    /// `channel closed`, on top of any other node being down. Garage notices at its next
    /// message to the node (a ping every 15 s); asking the survivor for node `i`'s info sends
    /// one now.
    fn wait_seen_down(&self, i: usize) -> Result<(), String> {
        let Some(id) = self
            .node_id(i)
            .and_then(|a| a.split_once('@').map(|(id, _)| id.to_owned()))
        else {
            return Err(format!("cannot read node {i}'s id (garage node id)"));
        };
        let t0 = Instant::now();
        loop {
            let still_up: Vec<usize> = (0..NODES)
                .filter(|&o| o != i && self.live_pid(o).is_some())
                .filter(|&o| {
                    let _ = self
                        .cli(o)
                        .args(["json-api", "GetNodeInfo", &format!(r#"{{"node":"{id}","body":null}}"#)])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                    self.up_ids(o).map_or(true, |up| up.contains(&id))
                })
                .collect();
            if still_up.is_empty() {
                return Ok(());
            }
            if t0.elapsed() > REJOIN_TIMEOUT {
                return Err(format!(
                    "nodes {still_up:?} still see garage node {i} up {} s after it died",
                    REJOIN_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The ids of the nodes node `o` sees up (`garage json-api GetClusterStatus`).
    fn up_ids(&self, o: usize) -> Result<Vec<String>, String> {
        let out = self
            .cli(o)
            .args(["json-api", "GetClusterStatus"])
            .output()
            .map_err(|e| format!("run {}: {e}", self.bin.display()))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        let v: Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("GetClusterStatus printed no JSON: {e}"))?;
        Ok(v["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["isUp"] == true)
            .filter_map(|n| n["id"].as_str().map(str::to_owned))
            .collect())
    }

    /// Waits until no node is down (no test holds a [`KilledNode`]) and keeps every node up
    /// while the returned guard lives: for tests that talk to nodes 1 and 2 directly. Many
    /// tests may hold it at once; [`Cluster::kill_node`] waits for all of them.
    #[must_use = "nodes may be killed again as soon as the guard is dropped"]
    pub fn all_nodes_up(&self) -> AllNodesUp {
        assert!(
            EXCLUSIVE.with_borrow(Weak::strong_count) == 0,
            "this test has a Garage node down; restart it before Cluster::all_nodes_up()"
        );
        let lock = SHARED.with_borrow(Weak::upgrade).unwrap_or_else(|| {
            let file = self.fault_lock();
            file.lock_shared()
                .unwrap_or_else(|e| panic!("lock {}: {e}", self.dir.join("faults.lock").display()));
            let rc = Rc::new(file);
            SHARED.set(Rc::downgrade(&rc));
            rc
        });
        let guard = AllNodesUp { _lock: lock };
        self.wait_healthy();
        guard
    }

    /// `faults.lock`: exclusive while a node is down, shared while a test needs all nodes.
    fn fault_lock(&self) -> fs::File {
        let path = self.dir.join("faults.lock");
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
    }

    /// Starts node `i` again (detached, with its config, logging to [`Cluster::log`]) unless it
    /// is up, writes its pid file, and waits until it answers on its S3 port and every running
    /// node sees every running node up (with all three running: the cluster healthy on every
    /// node). Panics (with the end of its log) if it does not rejoin within 90 s.
    pub fn start_node(&self, i: usize) {
        if let Err(e) = self.try_start_node(i) {
            panic!("{e}");
        }
    }

    fn try_start_node(&self, i: usize) -> Result<(), String> {
        if self.live_pid(i).is_none() {
            self.wait_seen_down(i)?;
            self.spawn_detached(i)?;
        }
        let t0 = Instant::now();
        while TcpStream::connect(self.s3_addr(i)).is_err() {
            if self.live_pid(i).is_none() {
                return Err(format!(
                    "garage node {i} exited after its restart; {}",
                    self.log_tail(i)
                ));
            }
            if t0.elapsed() > REJOIN_TIMEOUT {
                return Err(format!(
                    "garage node {i} does not listen on {} {} s after its restart; {}",
                    self.s3_addr(i),
                    REJOIN_TIMEOUT.as_secs(),
                    self.log_tail(i)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // The nodes reconnect by themselves (the others retry every 30 s); connecting them
        // both ways now saves that wait. Errors only mean: not ready yet.
        let ids: Vec<Option<String>> = (0..NODES).map(|n| self.node_id(n)).collect();
        let live = |n: usize| self.live_pid(n).is_some();
        for other in (0..NODES).filter(|&o| o != i && live(o)) {
            for (from, to) in [(i, &ids[other]), (other, &ids[i])] {
                if let Some(to) = to {
                    let _ = self
                        .cli(from)
                        .args(["node", "connect", to])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        // Rejoined: every running node sees every running node up (other nodes may be down on
        // purpose, e.g. a test that takes two down), and with all running, the cluster is
        // healthy everywhere.
        let short = |id: &Option<String>| id.as_deref().map_or("?", |a| &a[..16.min(a.len())]).to_owned();
        loop {
            let running: Vec<usize> = (0..NODES).filter(|&n| live(n)).collect();
            if !running.contains(&i) {
                return Err(format!(
                    "garage node {i} exited after its restart; {}",
                    self.log_tail(i)
                ));
            }
            let mut missing = Vec::new();
            for &o in &running {
                match self.up_ids(o) {
                    Ok(up) => {
                        for &n in &running {
                            let id = ids[n].as_deref().and_then(|a| a.split_once('@')).map(|(id, _)| id);
                            if !id.is_some_and(|id| up.iter().any(|u| u == id)) {
                                missing.push(format!("node {o} does not see node {n} ({}) up", short(&ids[n])));
                            }
                        }
                    }
                    Err(e) => missing.push(format!("node {o}: {e}")),
                }
            }
            if missing.is_empty() && running.len() == NODES {
                for n in 0..NODES {
                    match self.health(n) {
                        Ok(h) if is_healthy(&h) => {}
                        Ok(h) => missing.push(format!("node {n}: {h}")),
                        Err(e) => missing.push(format!("node {n}: {e}")),
                    }
                }
            }
            if missing.is_empty() {
                return Ok(());
            }
            if t0.elapsed() > REJOIN_TIMEOUT {
                return Err(format!(
                    "garage node {i} did not rejoin the cluster within {} s: {}; {}",
                    REJOIN_TIMEOUT.as_secs(),
                    missing.join("; "),
                    self.log_tail(i)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every node reports the whole cluster connected (e.g. before a test that
    /// needs all three copies). Panics after 90 s.
    pub fn wait_healthy(&self) {
        let t0 = Instant::now();
        for n in 0..NODES {
            loop {
                let last = match self.health(n) {
                    Ok(h) if is_healthy(&h) => break,
                    Ok(h) => h.to_string(),
                    Err(e) => e,
                };
                assert!(
                    t0.elapsed() < REJOIN_TIMEOUT,
                    "the garage cluster is not healthy on node {n} after {} s: {last}",
                    REJOIN_TIMEOUT.as_secs()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// `garage json-api GetClusterHealth` asked of node `n`.
    fn health(&self, n: usize) -> Result<Value, String> {
        let out = self
            .cli(n)
            .args(["json-api", "GetClusterHealth"])
            .output()
            .map_err(|e| format!("run {}: {e}", self.bin.display()))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("GetClusterHealth printed no JSON: {e}"))
    }

    /// `<node id>@<rpc address>` of node `n` (read from its metadata dir, works when it is down).
    fn node_id(&self, n: usize) -> Option<String> {
        let out = self
            .cli(n)
            .args(["node", "id", "-q"])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && text.contains('@')).then_some(text)
    }

    /// Starts `garage -c node{i+1}.toml server` through `sh ... &`, so it is nobody's child
    /// here (reparented to init when sh exits) and in its own process group (a test's timeout
    /// does not kill it), then records its pid.
    fn spawn_detached(&self, i: usize) -> Result<(), String> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#""$0" -c "$1" server >>"$2" 2>&1 </dev/null & echo $!"#)
            .arg(&self.bin)
            .arg(self.config(i))
            .arg(self.log(i))
            .env("RUST_LOG", "garage=info")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let out = cmd.output().map_err(|e| format!("start sh for garage node {i}: {e}"))?;
        let pid: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| format!("starting garage node {i}: sh printed no pid ({})", out.status))?;
        let pid_file = self.pid_file(i);
        let tmp = pid_file.with_extension("pid.tmp");
        fs::write(&tmp, format!("{pid}\n"))
            .and_then(|()| fs::rename(&tmp, &pid_file))
            .map_err(|e| format!("write {}: {e}", pid_file.display()))
    }

    /// A `curl` request signed with the test key (SigV4) to node `i`'s S3 API for `path`
    /// (`/<bucket>/<key>`, already percent-encoded); the credentials go through stdin (`-K -`,
    /// see [`Cluster::run_s3`]), never on the command line. An S3 client independent of packrat, to check what a sink
    /// stored.
    pub fn s3_request(&self, i: usize, method: &str, path: &str) -> Command {
        let mut cmd = Command::new("curl");
        cmd.args([
            "--silent",
            "--show-error",
            "--fail-with-body",
            "--max-time",
            "60",
            "-K",
            "-",
            "-X",
            method,
            // curl 7.88 signs the request but sends no payload hash, which S3 requires.
            "-H",
            "x-amz-content-sha256: UNSIGNED-PAYLOAD",
        ])
        .arg(format!("{}{path}", self.endpoints[i]));
        cmd
    }

    /// Runs a command from [`Cluster::s3_request`]: the body it returned, or the error (curl's
    /// message and S3's error document).
    pub fn run_s3(&self, mut cmd: Command) -> Result<Vec<u8>, String> {
        use std::io::Write as _;
        let shown = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("start curl: {e}"))?;
        let config = format!(
            "user = \"{}:{}\"\naws-sigv4 = \"aws:amz:{}:s3\"\n",
            self.access_key_id, self.secret_access_key, self.region
        );
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(config.as_bytes())
            .map_err(|e| format!("write curl's config: {e}"))?;
        let out = child.wait_with_output().map_err(|e| format!("wait for curl: {e}"))?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "{shown} failed ({}): {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ))
        }
    }

    /// `/<bucket>/<key>` with the key percent-encoded (`/` kept).
    fn object_path(&self, key: &str) -> String {
        format!("/{}/{}", self.bucket, encode_key(key))
    }

    /// PUTs the file `body` as object `key` through node `i`.
    pub fn put_object(&self, i: usize, key: &str, body: &Path) -> Result<(), String> {
        let mut cmd = self.s3_request(i, "PUT", &self.object_path(key));
        cmd.arg("--upload-file").arg(body);
        self.run_s3(cmd).map(drop)
    }

    /// GETs object `key` through node `i` (whole, into memory: for small test objects).
    pub fn get_object(&self, i: usize, key: &str) -> Result<Vec<u8>, String> {
        self.run_s3(self.s3_request(i, "GET", &self.object_path(key)))
    }

    /// DELETEs object `key` through node `i`.
    pub fn delete_object(&self, i: usize, key: &str) -> Result<(), String> {
        self.run_s3(self.s3_request(i, "DELETE", &self.object_path(key)))
            .map(drop)
    }

    /// The keys under `prefix` in the test bucket, listed through node `i` (ListObjectsV2,
    /// every page).
    pub fn list_keys(&self, i: usize, prefix: &str) -> Result<Vec<String>, String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = format!("?list-type=2&prefix={}", encode_key(prefix).replace('/', "%2F"));
            if let Some(t) = &token {
                query.push_str(&format!("&continuation-token={}", encode_key(t).replace('/', "%2F")));
            }
            let body = self.run_s3(self.s3_request(i, "GET", &format!("/{}{query}", self.bucket)))?;
            let xml = String::from_utf8_lossy(&body);
            keys.extend(xml_values(&xml, "Key").into_iter().map(|k| xml_unescape(&k)));
            token = xml_values(&xml, "NextContinuationToken")
                .into_iter()
                .next()
                .map(|t| xml_unescape(&t));
            if token.is_none() {
                return Ok(keys);
            }
        }
    }

    fn log_tail(&self, i: usize) -> String {
        let text = fs::read_to_string(self.log(i)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "last lines of {}:\n{}",
            self.log(i).display(),
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }
}

/// Percent-encodes everything but unreserved characters and `/`.
fn encode_key(key: &str) -> String {
    key.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The texts of every `<tag>…</tag>` in `xml` (flat, enough for S3 listings).
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once(close.as_str()).map(|(v, _)| v.to_owned()))
        .collect()
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// All storage nodes connected and every partition complete.
fn is_healthy(h: &Value) -> bool {
    let n = |k: &str| h[k].as_u64();
    h["status"] == "healthy"
        && n("storageNodes") == Some(NODES as u64)
        // `storageNodesUp` in Garage 2.5, `storageNodesOk` in 2.0.
        && n("storageNodesUp").or(n("storageNodesOk")) == Some(NODES as u64)
        && n("partitions").is_some_and(|p| p > 0)
        && n("partitionsAllOk") == n("partitions")
}

/// Whether `pid` is a live (not zombie) garage process running `config`.
fn is_node_process(pid: u32, config: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let config = config.as_os_str().as_encoded_bytes();
    let runs_config = args.windows(2).any(|w| w[0] == b"-c" && w[1] == config);
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true);
    runs_config && !zombie
}

fn signal_kill(pid: u32) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let pid = i32::try_from(pid).expect("pid fits in i32");
    assert!(pid > 1, "refusing to signal pid {pid}");
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// From [`Cluster::all_nodes_up`]: while it lives, no test kills a node.
#[derive(Debug)]
pub struct AllNodesUp {
    _lock: Rc<fs::File>,
}

/// A node killed by [`Cluster::kill_node`]; restarted by [`KilledNode::restart`] or when
/// dropped. Holds the cluster's fault lock until then.
#[derive(Debug)]
pub struct KilledNode<'a> {
    cluster: &'a Cluster,
    node: usize,
    _lock: Rc<fs::File>,
    restarted: bool,
}

impl KilledNode<'_> {
    /// The killed node's index.
    pub fn node(&self) -> usize {
        self.node
    }

    /// Restarts the node and waits until it has rejoined (see [`Cluster::start_node`]).
    pub fn restart(mut self) {
        self.restarted = true;
        self.cluster.start_node(self.node);
    }
}

impl Drop for KilledNode<'_> {
    fn drop(&mut self) {
        if self.restarted {
            return;
        }
        if let Err(e) = self.cluster.try_start_node(self.node) {
            if std::thread::panicking() {
                eprintln!("restarting garage node {} after a failed test: {e}", self.node);
            } else {
                panic!("{e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_for_urls() {
        assert_eq!(
            encode_key("plan/2026-01-01T00:00:00Z/a b+c"),
            "plan/2026-01-01T00%3A00%3A00Z/a%20b%2Bc"
        );
        assert_eq!(encode_key("ü"), "%C3%BC");
    }

    #[test]
    fn listing_xml_is_read() {
        let xml = "<ListBucketResult><Contents><Key>a/1</Key></Contents><Contents><Key>a/&amp;2</Key>\
                   </Contents><NextContinuationToken>tok</NextContinuationToken></ListBucketResult>";
        assert_eq!(xml_values(xml, "Key"), ["a/1", "a/&amp;2"]);
        assert_eq!(xml_unescape("a/&amp;2&lt;"), "a/&2<");
        assert_eq!(xml_values(xml, "NextContinuationToken"), ["tok"]);
        assert!(xml_values("<x/>", "Key").is_empty());
    }
}

//! Helpers for tests of the real `packratd`: start, signal and wait for it, talk HTTP to its API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Env, packrat_bin};

/// The `packratd` binary next to `packrat`.
pub fn packratd_bin() -> PathBuf {
    let bin = packrat_bin().with_file_name(format!("packratd{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} does not exist; build it first with `cargo build -p packrat` (cargo xtask ci does this)",
        bin.display()
    );
    bin
}

/// A running `packratd`, killed when dropped; its stdout and stderr go to a log file.
#[derive(Debug)]
pub struct Daemon {
    /// The process.
    pub child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `packratd --config <env config>` (`RUST_LOG=info`), logging to `<env>/<name>.out`.
    pub fn start(env: &Env, name: &str) -> Daemon {
        let log = env.path(&format!("{name}.out"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(packratd_bin())
            .arg("--config")
            .arg(env.config())
            .env_remove("PACKRAT_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn packratd");
        Daemon { child, log }
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig`.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, sig).unwrap_or_else(|e| panic!("kill {sig}: {e}"));
    }

    /// Waits for it to exit (panics after `within`).
    pub fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                t0.elapsed() < within,
                "packratd did not exit within {within:?}:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 client: returns (status, body).
pub fn http(addr: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("0").parse().unwrap();
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `f` every 200 ms until it returns `Some` (panics after `within`).
pub fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < within, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `packrat jobs --json --limit 100`, newest first.
pub fn jobs(env: &Env) -> Vec<Value> {
    env.run(&["jobs", "--json", "--limit", "100"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

/// The API address the daemon wrote into `<state>/packratd.addr`, once it did.
pub fn addr(state: &Path) -> Option<String> {
    std::fs::read_to_string(state.join("packratd.addr"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

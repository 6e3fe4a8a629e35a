//! Small helpers shared by the xtask commands: paths, running commands, formatting.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// The workspace root (the parent of the `xtask` crate).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// A `cargo` command (the same cargo that runs xtask, when known) run from the workspace root.
///
/// Without the variables `cargo run` sets for the xtask binary (`CARGO_PKG_NAME=xtask`,
/// `CARGO_MANIFEST_DIR`, ...): build scripts such as ring's rerun when those change, so a build
/// from xtask and one from a shell would otherwise keep rebuilding each other's dependencies.
pub fn cargo() -> Command {
    let program = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root());
    for (key, _) in env::vars_os() {
        let name = key.to_string_lossy();
        let set_by_cargo_run = name.starts_with("CARGO_PKG_")
            || matches!(
                name.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            );
        if set_by_cargo_run {
            cmd.env_remove(&key);
        }
    }
    cmd
}

/// Looks `program` up on `PATH`, like `command -v`.
pub fn find_in_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| {
        candidate
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// A shell-like rendering of a command line, for logs and error messages.
pub fn display_cmd(cmd: &Command) -> String {
    let mut out = shell_word(cmd.get_program());
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&shell_word(arg));
    }
    out
}

fn shell_word(word: &OsStr) -> String {
    let s = word.to_string_lossy();
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` with inherited stdio after echoing it; fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display_cmd(cmd);
    eprintln!("$ {shown}");
    let status = cmd.status().with_context(|| format!("cannot start `{shown}`"))?;
    check_status(status, &shown)
}

/// Turns a non-success exit status into an error naming the command.
pub fn check_status(status: ExitStatus, shown: &str) -> Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("`{shown}` failed ({status})")
    }
}

/// Runs `cmd` silently and reports whether it started and exited successfully.
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` and returns its stdout; fails (with its stderr) unless it exits successfully.
pub fn stdout_of(cmd: &mut Command) -> Result<String> {
    let shown = display_cmd(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Human-readable duration: `850ms`, `12.3s`, `4m 05s`.
pub fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        format!("{}ms", d.as_millis())
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m {:02}s", whole / 60, whole % 60)
    }
}

/// Total size in bytes of the files under `path` (a file or a directory); 0 if it is missing.
pub fn disk_usage(path: &Path) -> Result<u64> {
    let meta = match path.symlink_metadata() {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
    };
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).with_context(|| format!("read {}", path.display()))? {
        total += disk_usage(&entry?.path())?;
    }
    Ok(total)
}

/// Removes a file or directory tree; a missing path is fine.
pub fn remove_path(path: &Path) -> Result<()> {
    let result = match path.symlink_metadata() {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    result.with_context(|| format!("remove {}", path.display()))
}

/// Bytes to MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Sends signal `sig` (`TERM`, `KILL`, `INT`, `HUP`) to `target`: a pid, or `-PGID` for a whole
/// process group. Uses the kill(2)/killpg(2) system calls directly — never the `kill` command,
/// whose procps-ng version parses `kill -KILL -12345` as `kill -1`, i.e. every process — and
/// refuses targets ≤ 1 (`-1`/`0`/`1` would hit everything or init).
pub fn signal(sig: &str, target: &str) -> bool {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    let sig = match sig.trim_start_matches("SIG") {
        "TERM" => Signal::SIGTERM,
        "KILL" => Signal::SIGKILL,
        "INT" => Signal::SIGINT,
        "HUP" => Signal::SIGHUP,
        _ => return false,
    };
    let (group, num) = match target.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, target),
    };
    let Ok(pid) = num.trim().parse::<i32>() else {
        return false;
    };
    if pid <= 1 {
        return false;
    }
    let pid = Pid::from_raw(pid);
    if group {
        killpg(pid, sig).is_ok()
    } else {
        kill(pid, sig).is_ok()
    }
}

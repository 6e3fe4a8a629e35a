//! `packrat mount-check PATH`: what the replica's strict mount check sees at a path.

use std::path::{Path, PathBuf};

use clap::Args;
use packrat_app::config::SinkConfig;
use sink_cifs_replica::mount::magic_name;
use sink_cifs_replica::{MountCheck, MountInfoSource, MountReport};

use crate::{CliError, exit, output, wire};

/// `packrat mount-check`.
#[derive(Debug, Args)]
pub struct MountCheckArgs {
    /// The path to check (default with --sink: the sink's path).
    #[arg(required_unless_present = "sink")]
    pub path: Option<PathBuf>,
    /// Use the path and allowed types of this `cifs-replica` sink from the config.
    #[arg(long)]
    pub sink: Option<String>,
    /// An allowed filesystem type (repeatable; default cifs and smb3, or the sink's list).
    #[arg(long = "allow", value_name = "TYPE")]
    pub allow: Vec<String>,
    /// Read this mount table instead of /proc/self/mountinfo (for diagnosis; turns the statfs
    /// probe off, since the table describes another view of the system).
    #[arg(long, value_name = "FILE")]
    pub mountinfo: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `packrat mount-check`; exit 0 when the path is on an allowed mount, 1 otherwise.
pub fn run(config: Option<&Path>, a: MountCheckArgs) -> Result<u8, CliError> {
    let (mut path, mut allowed, mut key) = (a.path.clone(), a.allow.clone(), None);
    if let Some(name) = &a.sink {
        let cfg = wire::load_config(config)?;
        match cfg.sinks.get(name) {
            Some(SinkConfig::CifsReplica(c)) => {
                path = path.or_else(|| Some(c.path.clone()));
                if allowed.is_empty() {
                    allowed = c.allowed_fs_types.clone();
                }
                key = Some(format!("sinks.{name}.path"));
            }
            Some(other) => {
                return Err(CliError::usage(format!(
                    "sink `{name}` is of type {}, not cifs-replica",
                    other.kind()
                )));
            }
            None => return Err(CliError::usage(format!("no sink `{name}` in the config"))),
        }
    }
    let mut check = if allowed.is_empty() {
        MountCheck::default()
    } else {
        MountCheck::new(allowed)
    };
    if let Some(file) = &a.mountinfo {
        check = check.with_mountinfo(MountInfoSource::File(file.clone()));
    }
    if let Some(k) = key {
        check = check.with_config_key(k);
    }
    let path = path.unwrap_or_default();
    let report = match check.inspect(&path) {
        Ok(r) => r,
        Err(e) => {
            if a.json {
                output::json(&serde_json::json!({ "path": path, "allowed": false, "error": e.to_string() }));
                return Ok(exit::FAILED);
            }
            return Err(CliError::failed(e.to_string()));
        }
    };
    let problem = report.problem(&check_key(&a));
    if a.json {
        output::json(&serde_json::json!({
            "report": report,
            "allowed": problem.is_none(),
            "error": problem.as_ref().map(ToString::to_string),
        }));
    } else {
        print_human(&report, problem.as_ref().map(ToString::to_string));
    }
    Ok(if problem.is_none() { exit::OK } else { exit::FAILED })
}

fn check_key(a: &MountCheckArgs) -> String {
    a.sink
        .as_ref()
        .map(|s| format!("sinks.{s}.path"))
        .unwrap_or_else(|| "the path".into())
}

fn print_human(r: &MountReport, problem: Option<String>) {
    let exists = if r.exists {
        "exists"
    } else {
        "does not exist yet; its nearest existing parent was checked"
    };
    outln!("path:         {}", r.path.display());
    outln!("resolved:     {} ({exists})", r.resolved.display());
    outln!("mount point:  {}", r.mount_point.display());
    outln!("type:         {}", r.fs_type);
    outln!("source:       {}", r.source);
    match r.fs_magic {
        Some(m) => outln!("fs magic:     {m:#x} ({})", magic_name(m)),
        None => outln!("fs magic:     not probed"),
    }
    outln!("mount table:  {}", r.mount_table);
    outln!("allowed:      {}", r.allowed_fs_types.join(", "));
    match problem {
        None => outln!("result:       OK, on an allowed mount"),
        Some(p) => outln!("result:       NOT ALLOWED: {p}"),
    }
}

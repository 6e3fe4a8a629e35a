//! `[sinks.NAME] type = "cifs-replica"`: verified copies of packs on a mounted Windows share.
//!
//! ```toml
//! [sinks.windows]
//! type = "cifs-replica"
//! path = "/mnt/replica/App"              # must lie on a CIFS/SMB3 mount
//! allowed_fs_types = ["cifs", "smb3"]    # the default
//! layout = "date"                        # <path>/<plan>/YYYY/MM/DD/<pack id>; default "flat"
//! retries = 3                            # transient I/O errors retried with backoff
//! retry_delay = "1s"                     # first pause, doubled on every retry
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, SinkConfig};
use crate::Result;

/// Where packs go below the replica's target directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaLayout {
    /// `<path>/<plan>/<pack id>`. Default.
    #[default]
    Flat,
    /// `<path>/<plan>/YYYY/MM/DD/<pack id>`, by the pack's start date in the plan's time zone.
    Date,
}

impl ReplicaLayout {
    /// `flat` or `date`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaLayout::Flat => "flat",
            ReplicaLayout::Date => "date",
        }
    }
}

/// `type = "cifs-replica"`: packs copied to a directory on a mounted SMB/CIFS share, only when
/// that directory really lies on a mount of an allowed type; every copy goes through
/// `<path>/_tmp/`, is verified by reading it back, and is renamed into place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CifsReplicaSinkConfig {
    /// The target directory on the mounted share. Empty (or missing) makes every copy fail with
    /// "replica path is empty", so a job shows it. `path = ""` is a config error.
    #[serde(default, skip_serializing_if = "is_empty")]
    pub path: PathBuf,
    /// Filesystem types (as `/proc/self/mountinfo` names them) the path must be mounted as.
    /// Default `["cifs", "smb3"]`.
    #[serde(default = "default_allowed_fs_types")]
    pub allowed_fs_types: Vec<String>,
    /// `flat` (default) or `date`.
    #[serde(default)]
    pub layout: ReplicaLayout,
    /// How often an operation that failed with a transient I/O error (timeout, connection reset,
    /// EIO) is retried. Default 3.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The pause before the first retry; doubled on each further one (at most 60 s). Default 1s.
    #[serde(default = "default_retry_delay", with = "humantime_serde")]
    pub retry_delay: Duration,
}

fn is_empty(p: &std::path::Path) -> bool {
    p.as_os_str().is_empty()
}

/// The default of `allowed_fs_types`: `cifs` and `smb3`.
pub fn default_allowed_fs_types() -> Vec<String> {
    vec!["cifs".into(), "smb3".into()]
}

fn default_retries() -> u32 {
    3
}

fn default_retry_delay() -> Duration {
    Duration::from_secs(1)
}

impl Default for CifsReplicaSinkConfig {
    fn default() -> Self {
        CifsReplicaSinkConfig {
            path: PathBuf::new(),
            allowed_fs_types: default_allowed_fs_types(),
            layout: ReplicaLayout::Flat,
            retries: default_retries(),
            retry_delay: default_retry_delay(),
        }
    }
}

impl Config {
    pub(super) fn validate_replicas(&self) -> Result<()> {
        for (name, sink) in &self.sinks {
            let SinkConfig::CifsReplica(c) = sink else { continue };
            let err = |key: &str, msg: String| self.key_error(&["sinks", name, key], msg);
            if c.allowed_fs_types.is_empty() {
                return Err(err(
                    "allowed_fs_types",
                    "is empty, so no mount would ever be accepted; remove the key for the default [\"cifs\", \"smb3\"]"
                        .into(),
                ));
            }
            if let Some(bad) = c
                .allowed_fs_types
                .iter()
                .find(|t| t.is_empty() || t.chars().any(char::is_whitespace))
            {
                return Err(err(
                    "allowed_fs_types",
                    format!("`{bad}` is not a filesystem type name (as in /proc/self/mountinfo)"),
                ));
            }
            if c.retries > 20 {
                return Err(err("retries", format!("{} is out of range 0..=20", c.retries)));
            }
            if c.retry_delay > Duration::from_secs(60) {
                return Err(err("retry_delay", "must be at most 60s".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const BASE: &str = r#"
state_dir = "state"
[sources.db]
type = "sqlite"
path = "app.db"
[sinks.local]
type = "local"
path = "packs"
[sinks.windows]
type = "cifs-replica"
SINK
[plans.nightly]
sources = ["db"]
sinks = ["local", "windows"]
"#;

    fn parse(sink: &str) -> Result<Config> {
        Config::parse(&BASE.replace("SINK", sink), Path::new("/etc/packrat/packrat.toml"))
    }

    fn replica(c: &Config) -> &CifsReplicaSinkConfig {
        match &c.sinks["windows"] {
            SinkConfig::CifsReplica(r) => r,
            other => panic!("not a replica: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse("path = \"replica\"").unwrap();
        let r = replica(&c);
        assert_eq!(r.path, PathBuf::from("/etc/packrat/replica"));
        assert_eq!(r.allowed_fs_types, vec!["cifs", "smb3"]);
        assert_eq!(r.layout, ReplicaLayout::Flat);
        assert_eq!((r.retries, r.retry_delay), (3, Duration::from_secs(1)));
        assert_eq!(c.sinks["windows"].kind(), "cifs-replica");
        let shown = c.to_redacted_toml();
        assert!(Config::parse(&shown, Path::new("/x/y.toml")).is_ok(), "{shown}");
    }

    #[test]
    fn an_unset_path_stays_empty_so_the_job_can_say_so() {
        let c = parse("layout = \"date\"").unwrap();
        assert_eq!(replica(&c).path, PathBuf::new());
        assert_eq!(replica(&c).layout, ReplicaLayout::Date);
        let shown = c.to_redacted_toml();
        assert_eq!(
            replica(&Config::parse(&shown, Path::new("/x/y.toml")).unwrap()).path,
            PathBuf::new()
        );
        let e = parse("path = \"\"").unwrap_err().to_string();
        assert!(e.contains("key `sinks.windows.path`: must not be empty"), "{e}");
    }

    #[test]
    fn bad_values_are_explained() {
        let e = parse("path = \"/mnt/r\"\nallowed_fs_types = []")
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `sinks.windows.allowed_fs_types`: is empty"), "{e}");
        let e = parse("path = \"/mnt/r\"\nlayout = \"weekly\"").unwrap_err().to_string();
        assert!(e.contains("weekly"), "{e}");
        let e = parse("path = \"/mnt/r\"\nretries = 99").unwrap_err().to_string();
        assert!(e.contains("key `sinks.windows.retries`: 99 is out of range"), "{e}");
        let e = parse("path = \"/mnt/r\"\nmount = \"x\"").unwrap_err().to_string();
        assert!(e.contains("mount"), "{e}");
    }
}

//! This sink's config section, `[sinks.NAME] type = "cifs-replica"`: verified copies of packs on a mounted Windows share.
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

use backup_core::config::{Issue, Section};
use serde::{Deserialize, Serialize};

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

impl Section for CifsReplicaSinkConfig {
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        // An unset path stays empty: the sink then reports "replica path is empty".
        if self.path.as_os_str().is_empty() {
            Vec::new()
        } else {
            vec![("path", &mut self.path)]
        }
    }

    fn validate(&self) -> Result<(), Issue> {
        let c = self;
        if c.allowed_fs_types.is_empty() {
            return Err(Issue::new(
                "allowed_fs_types",
                "is empty, so no mount would ever be accepted; remove the key for the default [\"cifs\", \"smb3\"]",
            ));
        }
        if let Some(bad) = c
            .allowed_fs_types
            .iter()
            .find(|t| t.is_empty() || t.chars().any(char::is_whitespace))
        {
            return Err(Issue::new(
                "allowed_fs_types",
                format!("`{bad}` is not a filesystem type name (as in /proc/self/mountinfo)"),
            ));
        }
        if c.retries > 20 {
            return Err(Issue::new("retries", format!("{} is out of range 0..=20", c.retries)));
        }
        if c.retry_delay > Duration::from_secs(60) {
            return Err(Issue::new("retry_delay", "must be at most 60s"));
        }
        Ok(())
    }
}

impl backup_core::config::SinkSection for CifsReplicaSinkConfig {
    fn build(&self, name: &str, _defaults: &backup_core::config::Defaults) -> std::sync::Arc<dyn backup_core::Sink> {
        std::sync::Arc::new(crate::CifsReplicaSink::from_config(name, self))
    }
}

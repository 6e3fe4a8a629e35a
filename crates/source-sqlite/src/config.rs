//! `type = "sqlite"`: this source's config section.

use std::path::PathBuf;
use std::time::Duration;

use backup_core::PackId;
use backup_core::config::{Issue, Section};
use serde::{Deserialize, Serialize};

/// `type = "sqlite"`: a consistent online copy of a live SQLite database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSourceConfig {
    /// The database file.
    pub path: PathBuf,
    /// Store the copy zstd-compressed (`sqlite/<name>.db.zst`). Default false.
    #[serde(default)]
    pub compress: bool,
    /// Artifact name (`sqlite/<name>.db`). Default: the source's name.
    #[serde(default)]
    pub name: Option<String>,
    /// How long to wait for a lock held by another connection before failing. Default 30s.
    #[serde(default = "default_busy_timeout", with = "humantime_serde")]
    pub busy_timeout: Duration,
}

fn default_busy_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Section for SqliteSourceConfig {
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        vec![("path", &mut self.path)]
    }

    fn validate(&self) -> Result<(), Issue> {
        if let Some(n) = &self.name {
            PackId::new(n.clone())
                .map_err(|_| Issue::new("name", format!("invalid name `{n}`: use A-Z a-z 0-9 _ - .")))?;
        }
        Ok(())
    }
}

impl backup_core::config::SourceSection for SqliteSourceConfig {
    fn build(&self, name: &str, _defaults: &backup_core::config::Defaults) -> std::sync::Arc<dyn backup_core::Source> {
        std::sync::Arc::new(crate::SqliteSource::from_config(name, self))
    }
}

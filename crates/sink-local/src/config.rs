//! This sink's config section, `[sinks.NAME] type = "local"`.

use std::path::PathBuf;

use backup_core::config::Section;
use serde::{Deserialize, Serialize};

/// `type = "local"`: packs in a directory on a local filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalSinkConfig {
    /// Root directory; packs live in `<path>/<plan>/<pack id>`.
    pub path: PathBuf,
    /// Space to leave free on the filesystem, in MiB, on top of the expected pack size. Default 64.
    #[serde(default = "default_min_free")]
    pub min_free_mb: u64,
}

fn default_min_free() -> u64 {
    64
}

impl Section for LocalSinkConfig {
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        vec![("path", &mut self.path)]
    }
}

impl backup_core::config::SinkSection for LocalSinkConfig {
    fn build(&self, name: &str, _defaults: &backup_core::config::Defaults) -> std::sync::Arc<dyn backup_core::Sink> {
        std::sync::Arc::new(crate::LocalSink::from_config(name, self))
    }
}

//! # source-example
//!
//! A complete packrat source in under 150 lines, written as a crate outside packrat would be:
//! it backs up a list of settings files, each streamed zstd-compressed into
//! `files/<name>.zst`. It owns its config section, says what its errors are, and passes the
//! conformance kit. Walked through in `docs/writing-a-source.md`.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use backup_core::{BackupContext, BackupKind, PackId, Source, StagingPack};
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("app.env"), "MODE=prod\n")?;
//! let source = source_example::FilesSource::new("settings", vec![dir.path().join("app.env")]);
//! let id = PackId::new("example_20261201_040000")?;
//! let pack = StagingPack::create(&dir.path().join("staging"), "nightly", id, BackupKind::Full, chrono_tz::UTC)?;
//! source.backup(&BackupContext::detached("nightly", BackupKind::Full), &pack).await?;
//! assert_eq!(pack.artifacts()[0].path, "files/app.env.zst");
//! # Ok(()) }
//! ```

use std::path::PathBuf;

use async_trait::async_trait;
use backup_core::config::{Issue, Section};
use backup_core::{BackupContext, Compression, ErrorKind, HasKind, Source, SourceReport, StagingPack};
use serde::{Deserialize, Serialize};

/// The source's config section: `[sources.NAME] type = "files"` with `paths = [..]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSourceConfig {
    /// The files to back up.
    pub paths: Vec<PathBuf>,
}

impl Section for FilesSourceConfig {
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        self.paths.iter_mut().map(|p| ("paths", p)).collect()
    }

    fn validate(&self) -> Result<(), Issue> {
        if self.paths.is_empty() {
            return Err(Issue::new("paths", "needs at least one file in `paths = [..]`"));
        }
        Ok(())
    }
}

impl backup_core::config::SourceSection for FilesSourceConfig {
    fn build(&self, name: &str, _: &backup_core::config::Defaults) -> std::sync::Arc<dyn Source> {
        std::sync::Arc::new(FilesSource::from_config(name, self))
    }
}

/// What can go wrong, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A file could not be read.
    #[error("cannot read {}: {source}; check the path in sources.NAME.paths", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing into the pack failed.
    #[error(transparent)]
    Pack(#[from] backup_core::Error),
}

impl HasKind for FilesError {
    fn kind(&self) -> ErrorKind {
        match self {
            FilesError::Read { source, .. } => ErrorKind::of_io(source),
            FilesError::Pack(e) => e.kind(),
        }
    }
}

/// Backs up a list of files.
#[derive(Debug, Clone)]
pub struct FilesSource {
    name: String,
    paths: Vec<PathBuf>,
}

impl FilesSource {
    /// A source named `name` for `paths`.
    pub fn new(name: impl Into<String>, paths: Vec<PathBuf>) -> FilesSource {
        FilesSource {
            name: name.into(),
            paths,
        }
    }

    /// A source from its config section.
    pub fn from_config(name: &str, config: &FilesSourceConfig) -> FilesSource {
        FilesSource::new(name, config.paths.clone())
    }

    /// Streams every file into the pack (blocking I/O: run it off the async threads).
    fn copy_all(&self, pack: &StagingPack) -> Result<(), FilesError> {
        for path in &self.paths {
            let read = |source| FilesError::Read {
                path: path.clone(),
                source,
            };
            let mut file = std::fs::File::open(path).map_err(read)?;
            let base = path.file_name().unwrap_or_default().to_string_lossy();
            let mut out = pack.artifact(&format!("files/{base}.zst"), &self.name, "file", Compression::Zstd)?;
            // Streams (never the whole file in memory); a cancelled job's writer refuses writes.
            std::io::copy(&mut file, &mut out).map_err(read)?;
            out.add_files(1);
            out.finish()?;
        }
        Ok(())
    }
}

#[async_trait]
impl Source for FilesSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "files"
    }

    async fn estimate(&self, _ctx: &BackupContext) -> backup_core::Result<u64> {
        Ok(self
            .paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum())
    }

    async fn backup(&self, _ctx: &BackupContext, pack: &StagingPack) -> backup_core::Result<SourceReport> {
        let (this, pack) = (self.clone(), pack.clone());
        tokio::task::spawn_blocking(move || this.copy_all(&pack))
            .await
            .map_err(|e| backup_core::Error::Other(format!("backup task failed: {e}")))?
            .map_err(backup_core::Error::source(&self.name))?;
        Ok(SourceReport::default())
    }
}

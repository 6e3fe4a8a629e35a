//! `type = "docker"`: this source's config section.

use std::path::PathBuf;
use std::time::Duration;

use backup_core::config::{Issue, Section};
use serde::{Deserialize, Serialize};

use crate::sqlite::SqliteInVolumes;

/// `type = "docker"`: a Docker compose app: its named volumes (one tar archive each), its compose
/// files and `.env`, and on full backups optionally its images.
///
/// Select the project with `compose_file` (the project name is derived as compose does) and/or
/// `project`; its volumes are those labelled `com.docker.compose.project=<project>`, unless
/// `volumes` (an explicit list) or `volume_prefix` is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerSourceConfig {
    /// The project's compose file; it and the `.env` next to it go to `docker/compose/<project>/`.
    /// Project name: `project`, else `COMPOSE_PROJECT_NAME` from that `.env`, else the file's
    /// top-level `name:`, else its directory's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compose_file: Option<PathBuf>,
    /// The compose project name (overrides the derived one; alone, selects the project by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Back up exactly these volumes instead of the project's labelled ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Back up every volume whose name starts with this prefix instead of the labelled ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_prefix: Option<String>,
    /// Volumes to leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_volumes: Vec<String>,
    /// More files to copy into `docker/compose/<project>/` (override files, configs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_files: Vec<PathBuf>,
    /// Image of the helper containers that read the volumes (they are created, never started, so
    /// any local image works). Default: the image of one of the project's containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helper_image: Option<String>,
    /// Stop the project's running containers while the volumes are archived, then start exactly
    /// those again (also when the backup fails). Default false.
    #[serde(default)]
    pub stop_during_backup: bool,
    /// What to do with SQLite databases found in a volume while the app runs: `snapshot` (the
    /// default) puts a consistent copy taken with SQLite's online backup API in the archive in
    /// place of the live file and its `-wal`/`-shm`/`-journal` companions; `fail` fails the
    /// backup naming the files; `tar` archives them as they are (unsafe for a live database).
    /// With `stop_during_backup` the files are quiet and archived as they are.
    #[serde(default)]
    pub sqlite_in_volumes: SqliteInVolumes,
    /// How long a container may take to stop before it is killed. Default 30s.
    #[serde(default = "default_stop_timeout", with = "humantime_serde")]
    pub stop_timeout: Duration,
    /// Include the images of the project's containers in full backups. Default false.
    #[serde(default)]
    pub include_images: bool,
    /// Engine address (`unix:///var/run/docker.sock`, `tcp://127.0.0.1:2375`,
    /// `npipe:////./pipe/docker_engine`). Default: `DOCKER_HOST`, else the platform's socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,
}

fn default_stop_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Section for DockerSourceConfig {
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        let mut out: Vec<(&'static str, &mut PathBuf)> =
            self.compose_file.iter_mut().map(|f| ("compose_file", f)).collect();
        out.extend(self.extra_files.iter_mut().map(|f| ("extra_files", f)));
        out
    }

    fn validate(&self) -> Result<(), Issue> {
        self.check().map_err(|(k, m)| Issue::new(k, m))
    }
}

impl DockerSourceConfig {
    /// Checks the combination of keys; `Err` holds the key the message is about (`""`: the
    /// table) and the message.
    fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        let has_project = self.compose_file.is_some() || self.project.is_some();
        if !self.volumes.is_empty() && self.volume_prefix.is_some() {
            return Err((
                "volume_prefix",
                "set either `volumes` (an explicit list) or `volume_prefix`, not both".into(),
            ));
        }
        if !has_project && self.volumes.is_empty() && self.volume_prefix.is_none() {
            return Err((
                "",
                "needs `compose_file` or `project` (or an explicit `volumes` list or `volume_prefix`)".into(),
            ));
        }
        if !has_project && (self.stop_during_backup || self.include_images) {
            return Err((
                if self.stop_during_backup {
                    "stop_during_backup"
                } else {
                    "include_images"
                },
                "`stop_during_backup` and `include_images` need the project: set `compose_file` or `project`".into(),
            ));
        }
        if let Some(p) = &self.project {
            let ok = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
                && p.starts_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                return Err((
                    "project",
                    format!(
                        "invalid project `{p}`: compose project names use a-z 0-9 _ - and start with a letter or digit"
                    ),
                ));
            }
        }
        for (key, list) in [("volumes", &self.volumes), ("exclude_volumes", &self.exclude_volumes)] {
            for v in list {
                let ok = v.len() > 1
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                    && v.starts_with(|c: char| c.is_ascii_alphanumeric());
                if !ok {
                    return Err((
                        key,
                        format!(
                            "invalid volume name `{v}`: Docker volume names use A-Z a-z 0-9 _ . - and start with a letter or digit"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl backup_core::config::SourceSection for DockerSourceConfig {
    fn build(&self, name: &str, _defaults: &backup_core::config::Defaults) -> std::sync::Arc<dyn backup_core::Source> {
        std::sync::Arc::new(crate::DockerSource::from_config(name, self))
    }
}

//! # source-docker
//!
//! The packrat source for Docker compose apps. [`DockerSource`] backs up a compose project:
//!
//! - every selected named volume as `docker/volumes/<volume>.tar.zst` (type `docker-volume`);
//! - the compose file(s) and the `.env` next to them as `docker/compose/<project>/<file>`
//!   (type `docker-compose`, stored as is);
//! - on full backups with `include_images`, the images of the project's containers as
//!   `docker/images/<image>.tar.zst` (type `docker-image`, `docker save` format).
//!
//! [`DockerCheck`] is the deep check of the archives for [`backup_core::Verifier`],
//! [`restore()`] recreates volumes, loads images and writes compose files, and [`drill`] proves a
//! pack restores: its volumes into scratch volumes, read back, compared and removed.
//!
//! ```no_run
//! # async fn demo() -> backup_core::Result<()> {
//! use std::sync::Arc;
//! use backup_core::{BackupContext, BackupKind, PackId, Source, StagingPack, Verifier, VerifyLevel};
//! use source_docker::{DockerCheck, DockerSource, RestoreOptions};
//!
//! let source = DockerSource::new("app_stack")
//!     .compose_file("/srv/app/docker-compose.yml")
//!     .stop_during_backup(true)
//!     .include_images(true);
//! let ctx = BackupContext::detached("nightly", BackupKind::Full);
//! let id = PackId::new("migration_pack_20261121_040000")?;
//! let pack = StagingPack::create("/tmp/staging/job_1".as_ref(), "nightly", id, BackupKind::Full, ctx.time_zone)?;
//! source.backup(&ctx, &pack).await?; // docker/volumes/…, docker/compose/app/…, docker/images/…
//! let sealed = pack.seal()?;
//! let verifier = Verifier::new().with_check(Arc::new(DockerCheck));
//! assert!(verifier.verify(&sealed.to_pack(), VerifyLevel::Deep).is_ok());
//!
//! // On the new host: images first, then the volumes, compose files into /srv/app.
//! let opts = RestoreOptions {
//!     volumes: Some(Vec::new()),
//!     compose_dir: Some("/srv/app".into()),
//!     images: true,
//!     ..RestoreOptions::default()
//! };
//! source_docker::restore(&sealed.to_reader(), Some("app_stack"), &opts)
//!     .await
//!     .map_err(backup_core::Error::source("app_stack"))?;
//! # Ok(()) }
//! ```
//!
//! ## How a volume is read
//!
//! A *helper container* is created (never started) from the helper image with the volume
//! mounted read-only at `/packrat_v`, and the engine's archive endpoint
//! (`GET /containers/{id}/archive?path=/packrat_v/.`) streams the volume as a tar. The stream goes
//! through a bounded channel into a blocking task that parses every header (checksums, names;
//! see the `tarstream` module), counts entries and file bytes, and writes the unchanged bytes
//! into the pack's zstd + sha256 writer: no temporary file (but for SQLite snapshots, below), a
//! few MiB of memory whatever the volume size.
//!
//! **Entry names.** Asked for `/packrat_v` the endpoint prefixes every entry with the directory
//! name (`packrat_v/data.db`). We ask for `/packrat_v/.`, which yields `./data.db` — the layout
//! of `tar -C DIR -c .` — and rebase any `packrat_v/…` entry (engines that ignore the `/.`) to
//! `./…` while streaming (header, PAX path and hard-link targets). So
//! `zstd -d < VOL.tar.zst | tar -x -C DIR` puts the volume's content, not a `packrat_v`
//! directory, into `DIR`, and the first entry `./` carries the volume root's mode and owner.
//!
//! The helper image defaults to the image of one of the project's containers, so nothing has
//! to be pulled (no registry needs to be reachable).
//!
//! ## Stopping the app
//!
//! With `stop_during_backup`, the project's *running* containers are stopped before the
//! volumes are archived and exactly those are started again afterwards, oldest first (compose
//! creates dependencies first); containers that were stopped stay stopped. The restart is held by
//! a [`StopGuard`]: if the backup fails, panics or its future is dropped (cancelled), the
//! guard's `Drop` starts the containers on a thread with its own connection and waits for it.
//! Images are exported after the restart, so they do not lengthen the downtime.
//!
//! ## SQLite databases in volumes
//!
//! Without the stop, a SQLite database the app writes could be archived torn (main file and
//! `-wal` from different moments). The `sqlite` module finds the databases (the 16-byte
//! `SQLite format 3\0` header) in the volume's directory on this host, copies each with
//! SQLite's online backup API ([`source_sqlite::snapshot_file`], integrity-checked) next to the
//! staging pack, and the tar stream carries the copy in place of the live entry (same name,
//! owner, mode, mtime) without its `-wal`/`-shm`/`-journal`; the stream is watched for databases
//! too. [`SqliteInVolumes`] chooses `snapshot` (default), `tar` (as is, unsafe) or `fail`; the
//! manifest lists the databases in `meta.sqlite_snapshots`. Where the volume's directory is not
//! on this host (other drivers, a remote engine), `snapshot` fails saying what to do.
//!
//! The engine is reached at `docker_host`, else `DOCKER_HOST`, else the platform's socket, and
//! the API version is negotiated (Docker 20.10 speaks API 1.41; this client defaults to newer).

mod backup;
mod check;
mod config;
pub mod drill;
mod engine;
mod error;
mod pipe;
mod project;
mod restore;
mod sqlite;
mod tarstream;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use backup_core::{ArtifactEntry, BackupContext, BackupKind, Source, SourceReport, StagingPack};
use bollard::Docker;
use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use tracing::{info, warn};

pub use backup::VolumeSelection;
pub use check::DockerCheck;
pub use config::DockerSourceConfig;
pub use engine::{Endpoint, FILL_LABEL, HELPER_LABEL, OWNER_LABEL, StopGuard};
pub use error::Error;
pub use project::{PROJECT_LABEL, normalize_project_name, project_name};
pub use restore::{
    RestoreOptions, RestoreReport, RestoredVolume, docker_artifacts, restore, validate_volume_archive, volume_name,
};
pub use sqlite::SqliteInVolumes;
pub use tarstream::TarStats;

#[doc(hidden)]
pub use tarstream::build as tar_build;

/// The source kind, and the directory of its artifacts (`docker/…`).
pub const KIND: &str = "docker";
/// Artifact type of a volume archive.
pub const VOLUME_KIND: &str = "docker-volume";
/// Artifact type of a compose file or `.env`.
pub const COMPOSE_KIND: &str = "docker-compose";
/// Artifact type of an image archive.
pub const IMAGE_KIND: &str = "docker-image";
/// Default of [`DockerSource::stop_timeout`].
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A Docker compose app to back up (`type = "docker"`).
#[derive(Debug, Clone)]
pub struct DockerSource {
    name: String,
    endpoint: Endpoint,
    compose_file: Option<PathBuf>,
    project: Option<String>,
    selection: VolumeSelection,
    exclude: Vec<String>,
    extra_files: Vec<PathBuf>,
    helper_image: Option<String>,
    stop_during_backup: bool,
    stop_timeout: Duration,
    sqlite_in_volumes: SqliteInVolumes,
    include_images: bool,
}

/// What [`DockerSource::prepare`] found.
struct Prepared {
    project: Option<String>,
    docker: Docker,
    containers: Vec<ContainerSummary>,
    volumes: Vec<bollard::models::Volume>,
    helper_image: String,
}

/// What one backup wrote.
#[derive(Debug, Clone, Default)]
pub struct BackupOutcome {
    /// Every artifact added to the pack.
    pub artifacts: Vec<ArtifactEntry>,
    /// The compose project, when known.
    pub project: Option<String>,
    /// Containers stopped for the backup (and started again).
    pub stopped: Vec<String>,
    /// Things the operator should know.
    pub warnings: Vec<String>,
}

impl DockerSource {
    /// A source named `name` with nothing selected yet: set [`DockerSource::compose_file`],
    /// [`DockerSource::project`] or [`DockerSource::volumes`].
    pub fn new(name: impl Into<String>) -> DockerSource {
        DockerSource {
            name: name.into(),
            endpoint: Endpoint::resolve(None),
            compose_file: None,
            project: None,
            selection: VolumeSelection::Project,
            exclude: Vec::new(),
            extra_files: Vec::new(),
            helper_image: None,
            stop_during_backup: false,
            stop_timeout: DEFAULT_STOP_TIMEOUT,
            sqlite_in_volumes: SqliteInVolumes::default(),
            include_images: false,
        }
    }

    /// The source `sources.<name>` of the configuration.
    pub fn from_config(name: &str, c: &DockerSourceConfig) -> DockerSource {
        let mut s = DockerSource::new(name)
            .docker_host(c.docker_host.as_deref())
            .exclude_volumes(c.exclude_volumes.clone())
            .extra_files(c.extra_files.clone())
            .stop_during_backup(c.stop_during_backup)
            .stop_timeout(c.stop_timeout)
            .sqlite_in_volumes(c.sqlite_in_volumes)
            .include_images(c.include_images);
        if let Some(f) = &c.compose_file {
            s = s.compose_file(f.clone());
        }
        if let Some(p) = &c.project {
            s = s.project(p.clone());
        }
        if !c.volumes.is_empty() {
            s = s.volumes(c.volumes.clone());
        }
        if let Some(p) = &c.volume_prefix {
            s = s.volume_prefix(p.clone());
        }
        if let Some(i) = &c.helper_image {
            s = s.helper_image(i.clone());
        }
        s
    }

    /// The project's compose file (its `.env` is backed up too; it names the project unless
    /// [`DockerSource::project`] is set).
    pub fn compose_file(mut self, path: impl Into<PathBuf>) -> DockerSource {
        self.compose_file = Some(path.into());
        self
    }

    /// The compose project name.
    pub fn project(mut self, project: impl Into<String>) -> DockerSource {
        self.project = Some(project.into());
        self
    }

    /// Back up exactly these volumes.
    pub fn volumes(mut self, names: Vec<String>) -> DockerSource {
        self.selection = VolumeSelection::Names(names);
        self
    }

    /// Back up every volume whose name starts with `prefix`.
    pub fn volume_prefix(mut self, prefix: impl Into<String>) -> DockerSource {
        self.selection = VolumeSelection::Prefix(prefix.into());
        self
    }

    /// Leave these volumes out.
    pub fn exclude_volumes(mut self, names: Vec<String>) -> DockerSource {
        self.exclude = names;
        self
    }

    /// More files for `docker/compose/<project>/`.
    pub fn extra_files(mut self, files: Vec<PathBuf>) -> DockerSource {
        self.extra_files = files;
        self
    }

    /// Image of the helper containers (default: an image of the project's containers).
    pub fn helper_image(mut self, image: impl Into<String>) -> DockerSource {
        self.helper_image = Some(image.into());
        self
    }

    /// Stop the running containers while the volumes are archived.
    pub fn stop_during_backup(mut self, on: bool) -> DockerSource {
        self.stop_during_backup = on;
        self
    }

    /// How long a container may take to stop before it is killed.
    pub fn stop_timeout(mut self, timeout: Duration) -> DockerSource {
        self.stop_timeout = timeout;
        self
    }

    /// What to do with SQLite databases found in the volumes (default
    /// [`SqliteInVolumes::Snapshot`]).
    pub fn sqlite_in_volumes(mut self, mode: SqliteInVolumes) -> DockerSource {
        self.sqlite_in_volumes = mode;
        self
    }

    /// Save the project's images on full backups.
    pub fn include_images(mut self, on: bool) -> DockerSource {
        self.include_images = on;
        self
    }

    /// Engine address; `None` means `DOCKER_HOST` or the platform's socket.
    pub fn docker_host(mut self, host: Option<&str>) -> DockerSource {
        self.endpoint = Endpoint::resolve(host);
        self
    }

    /// The engine address in use.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The compose project name: configured, or derived from the compose file.
    pub fn resolve_project(&self) -> Result<Option<String>, Error> {
        if let Some(f) = &self.compose_file {
            project::read_compose(f)?;
        }
        match (&self.project, &self.compose_file) {
            (Some(p), _) => Ok(Some(p.clone())),
            (None, Some(f)) => Ok(Some(project_name(f)?)),
            (None, None) => Ok(None),
        }
    }

    /// Backs up into `pack`; `ctx.progress` gets a stage per volume (`archiving volume X`).
    pub async fn run(&self, ctx: &BackupContext, pack: &StagingPack) -> Result<BackupOutcome, Error> {
        let Prepared {
            project,
            docker,
            containers,
            volumes,
            helper_image,
        } = self.prepare().await?;
        let mut out = BackupOutcome {
            project: project.clone(),
            ..BackupOutcome::default()
        };

        // Compose files first: small, and independent of the containers' state.
        let dir = project.clone().unwrap_or_else(|| self.name.clone());
        for f in self.compose_files(&containers, &mut out.warnings) {
            out.artifacts.push(backup::copy_file(pack, &self.name, &dir, &f)?);
        }

        let running: Vec<ContainerSummary> = containers
            .iter()
            .filter(|c| c.state == Some(ContainerSummaryStateEnum::RUNNING))
            .cloned()
            .collect();
        let guard = if self.stop_during_backup && !running.is_empty() {
            ctx.progress.stage(&format!("stopping {} container(s)", running.len()));
            let (guard, stopped) = StopGuard::stop(&self.endpoint, &docker, &running, self.stop_timeout).await;
            out.stopped = guard.names();
            if let Err(e) = stopped {
                return Err(match guard.restart().await {
                    Ok(()) => e,
                    Err(r) => Error::Both(Box::new(e), Box::new(r)),
                });
            }
            Some(guard)
        } else {
            None
        };

        let archived = async {
            let mut entries = Vec::new();
            for v in &volumes {
                ctx.progress.stage(&format!("archiving volume {}", v.name));
                info!(volume = %v.name, "archiving");
                entries.push(
                    backup::archive_volume(
                        (&docker, &self.endpoint),
                        &v.name,
                        &helper_image,
                        (pack, &self.name),
                        project.as_deref(),
                        &ctx.progress,
                        sqlite::Policy {
                            mode: self.sqlite_in_volumes,
                            stopped: self.stop_during_backup,
                        },
                    )
                    .await?,
                );
            }
            Ok::<_, Error>(entries)
        }
        .await;
        let restarted = match guard {
            Some(g) => {
                ctx.progress.stage("starting the stopped containers again");
                g.restart().await
            }
            None => Ok(()),
        };
        match (archived, restarted) {
            (Ok(v), Ok(())) => out.artifacts.extend(v),
            (Err(e), Ok(())) => return Err(e),
            (Ok(_), Err(r)) => return Err(r),
            (Err(e), Err(r)) => return Err(Error::Both(Box::new(e), Box::new(r))),
        }

        if self.include_images && ctx.kind == BackupKind::Full {
            let images = project_images(&containers);
            if images.is_empty() {
                out.warnings
                    .push("include_images: the project has no containers, so no image was saved".into());
            }
            let mut used = std::collections::BTreeSet::new();
            for image in images {
                ctx.progress.stage(&format!("saving image {image}"));
                let mut name = backup::image_artifact_name(&image);
                let base = name.clone();
                let mut n = 1;
                while !used.insert(name.clone()) {
                    n += 1;
                    name = format!("{base}_{n}");
                }
                out.artifacts
                    .push(backup::export_image(&docker, &image, &name, pack, &self.name, &ctx.progress).await?);
            }
        }
        Ok(out)
    }

    /// Checks what a backup needs without changing anything: the engine answers, the compose
    /// file is there, volumes are found, the helper image exists.
    pub async fn check_ready(&self) -> Result<Vec<String>, Error> {
        Ok(self.prepare().await?.volumes.into_iter().map(|v| v.name).collect())
    }

    /// What a backup starts from: the project, the engine (its dead helpers swept), the project's
    /// containers, the selected volumes (none of them partly restored) and the helper image.
    async fn prepare(&self) -> Result<Prepared, Error> {
        let project = self.resolve_project()?;
        let docker = self.endpoint.connect().await?;
        let half_filled = engine::sweep_dead_helpers(&docker).await;
        let containers = match &project {
            Some(p) => engine::project_containers(&docker, p).await?,
            None => Vec::new(),
        };
        let volumes = backup::select_volumes(&docker, &self.selection, project.as_deref(), &self.exclude).await?;
        // A partly restored volume is never backed up as if it were complete.
        if let Some(h) = half_filled.iter().find(|h| volumes.iter().any(|v| v.name == h.volume)) {
            return Err(Error::HalfRestored {
                volume: h.volume.clone(),
                container: h.container.clone(),
            });
        }
        let helper_image = self.helper_image_for(&docker, &containers).await?;
        Ok(Prepared {
            project,
            docker,
            containers,
            volumes,
            helper_image,
        })
    }

    async fn helper_image_for(&self, docker: &Docker, containers: &[ContainerSummary]) -> Result<String, Error> {
        if let Some(i) = &self.helper_image {
            engine::require_image(docker, i).await?;
            return Ok(i.clone());
        }
        for c in containers {
            for image in [&c.image_id, &c.image].into_iter().flatten() {
                if docker.inspect_image(image).await.is_ok() {
                    return Ok(image.clone());
                }
            }
        }
        Err(Error::NoHelperImage(format!(
            "source `{}`: no helper image to read the volumes with: the project has no container to borrow an \
             image from; set `helper_image` to any image on the Docker host (it is created, never started)",
            self.name
        )))
    }

    /// The compose file, its `.env`, and the extra files; without a compose file, the files the
    /// containers' compose labels name, when they exist on this host.
    fn compose_files(&self, containers: &[ContainerSummary], warnings: &mut Vec<String>) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(f) = &self.compose_file {
            files.push(f.clone());
            let env = project::compose_dir(f).join(".env");
            if env.is_file() {
                files.push(env);
            }
        } else if let Some(labels) = containers.iter().find_map(|c| c.labels.as_ref()) {
            let dir = labels.get(project::WORKING_DIR_LABEL).map(PathBuf::from);
            if let Some(list) = labels.get(project::CONFIG_FILES_LABEL) {
                for f in list.split(',').filter(|f| !f.is_empty()) {
                    let p = match &dir {
                        Some(d) if Path::new(f).is_relative() => d.join(f),
                        _ => PathBuf::from(f),
                    };
                    if p.is_file() {
                        files.push(p);
                    } else {
                        warnings.push(format!(
                            "compose file {} (from the containers' labels) is not readable here; set `compose_file`",
                            p.display()
                        ));
                    }
                }
            }
            if let Some(env) = dir.map(|d| d.join(".env")).filter(|e| e.is_file()) {
                files.push(env);
            }
        }
        files.extend(self.extra_files.iter().cloned());
        files
    }
}

/// The images of the project's containers (as referenced at creation), without duplicates.
fn project_images(containers: &[ContainerSummary]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in containers {
        if let Some(i) = c.image.clone().or_else(|| c.image_id.clone())
            && !out.contains(&i)
        {
            out.push(i);
        }
    }
    out
}

#[async_trait]
impl Source for DockerSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    async fn backup(&self, ctx: &BackupContext, pack: &StagingPack) -> backup_core::Result<SourceReport> {
        let out = self
            .run(ctx, pack)
            .await
            .map_err(backup_core::Error::source(&self.name))?;
        for w in &out.warnings {
            warn!(source = %self.name, "{w}");
        }
        Ok(SourceReport {
            watermarks: Vec::new(),
            warnings: out.warnings,
        })
    }

    async fn check(&self) -> backup_core::Result<()> {
        self.check_ready()
            .await
            .map(|_| ())
            .map_err(backup_core::Error::source(&self.name))
    }
}

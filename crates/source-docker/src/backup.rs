//! Writing a project's artifacts into a staging pack.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use backup_core::{ArtifactEntry, Compression, Progress, StagingPack};
use bollard::Docker;
use bollard::models::Volume;
use bollard::query_parameters::{DownloadFromContainerOptions, ListVolumesOptions};
use tokio::sync::mpsc;

use crate::engine::{self, Endpoint, Helper, MOUNT_DIR};
use crate::error::Error;
use crate::pipe::{self, ChannelReader};
use crate::sqlite;
use crate::tarstream::{self, Options, TarError, TarStats};
use crate::{COMPOSE_KIND, IMAGE_KIND, PROJECT_LABEL, VOLUME_KIND};

/// How volumes are selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSelection {
    /// Volumes labelled `com.docker.compose.project=<project>`.
    Project,
    /// Exactly these.
    Names(Vec<String>),
    /// Every volume whose name starts with this.
    Prefix(String),
}

/// Finds the volumes to back up, sorted by name.
pub(crate) async fn select_volumes(
    docker: &Docker,
    selection: &VolumeSelection,
    project: Option<&str>,
    exclude: &[String],
) -> Result<Vec<Volume>, Error> {
    let (filters, tried) = match (selection, project) {
        (VolumeSelection::Names(names), _) => {
            let mut out = Vec::new();
            for n in names.iter().filter(|n| !exclude.contains(n)) {
                out.push(engine::inspect_volume(docker, n).await.map_err(|e| {
                    match e {
                        Error::VolumeVanished(v) => Error::NoVolumes {
                            selection: format!("the configured name `{v}`"),
                            hint:
                                "it does not exist on this Docker host; check `volumes` (`docker volume ls` lists them)"
                                    .into(),
                        },
                        e => e,
                    }
                })?);
            }
            if out.is_empty() {
                return Err(Error::NoVolumes {
                    selection: "`volumes` (every configured name is excluded)".into(),
                    hint: "check `volumes` and `exclude_volumes`".into(),
                });
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            return Ok(out);
        }
        (VolumeSelection::Prefix(p), _) => (HashMap::new(), format!("the name prefix `{p}`")),
        (VolumeSelection::Project, Some(project)) => (
            HashMap::from([("label".to_string(), vec![format!("{PROJECT_LABEL}={project}")])]),
            format!("the label `{PROJECT_LABEL}={project}`"),
        ),
        (VolumeSelection::Project, None) => {
            return Err(Error::NoVolumes {
                selection: "this source".into(),
                hint: "set `compose_file`, `project`, `volumes` or `volume_prefix`".into(),
            });
        }
    };
    let list = docker
        .list_volumes(Some(ListVolumesOptions { filters: Some(filters) }))
        .await
        .map_err(Error::engine("list volumes"))?;
    let mut vols: Vec<Volume> = list
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter(|v| match selection {
            VolumeSelection::Prefix(p) => v.name.starts_with(p.as_str()),
            _ => true,
        })
        .filter(|v| !exclude.contains(&v.name))
        .collect();
    if vols.is_empty() {
        let hint = match selection {
            VolumeSelection::Project => {
                "is the project deployed on this host (`docker-compose up`)? Volumes declared `external` carry no \
                 compose label: list them in `volumes` or use `volume_prefix`"
            }
            _ => "check the prefix against `docker volume ls`",
        };
        return Err(Error::NoVolumes {
            selection: format!(
                "{tried}{}",
                if exclude.is_empty() {
                    String::new()
                } else {
                    format!(" (excluding {})", exclude.join(", "))
                }
            ),
            hint: hint.into(),
        });
    }
    vols.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(vols)
}

/// Archives one volume as `docker/volumes/<volume>.tar.zst`: a helper container mounts it
/// read-only and the engine's archive endpoint streams it, through validation, into the pack.
/// `engine` is the connection and the address it was made to (a dropped helper is removed
/// through a connection of its own).
pub(crate) async fn archive_volume(
    (docker, endpoint): (&Docker, &Endpoint),
    volume: &str,
    helper_image: &str,
    (pack, source): (&StagingPack, &str),
    project: Option<&str>,
    progress: &Arc<dyn Progress>,
    policy: sqlite::Policy,
) -> Result<ArtifactEntry, Error> {
    // Inspect right before: a missing volume would otherwise be created empty by the helper.
    let info = engine::inspect_volume(docker, volume).await?;
    let plan = sqlite_plan(policy, endpoint, &info, pack).await?;
    let edits = sqlite::edits(&plan);
    let helper = Helper::create(docker, endpoint, helper_image, volume, false).await?;
    let rel = format!("docker/volumes/{volume}.tar.zst");
    let mut w = pack.artifact(&rel, source, VOLUME_KIND, Compression::Zstd)?;
    w.set_meta("volume", volume);
    w.set_meta("driver", info.driver.clone());
    if !info.labels.is_empty() {
        w.set_meta("labels", serde_json::to_value(sorted(&info.labels)).unwrap_or_default());
    }
    if !info.options.is_empty() {
        w.set_meta(
            "options",
            serde_json::to_value(sorted(&info.options)).unwrap_or_default(),
        );
    }
    if let Some(p) = project {
        w.set_meta("project", p);
    }
    w.set_meta("helper_image", helper_image);
    let stream = docker.download_from_container(
        &helper.id,
        Some(DownloadFromContainerOptions {
            path: format!("/{MOUNT_DIR}/."),
        }),
    );
    let result = stream_into(stream, progress, move |r| {
        let opts = Options {
            rebase: Some(MOUNT_DIR.into()),
            strict: false,
        };
        let (stats, report) = tarstream::process_edited(r, &mut w, &opts, &edits)?;
        Ok((w, stats, report))
    })
    .await;
    let removed = helper.remove().await;
    let (mut w, stats, report) = result.map_err(|e| archive_error(e, &format!("volume `{volume}`")))?;
    removed?;
    if let Some(found) = sqlite::conclude(policy, &plan, &report, volume)? {
        w.set_meta("sqlite_snapshots", found);
    }
    drop(plan); // removes the snapshots
    w.add_files(stats.entries);
    w.set_meta("content_bytes", stats.content_bytes);
    Ok(w.finish()?)
}

/// Finds (and for `snapshot`, copies) the SQLite databases of a volume, on a blocking thread.
/// The copy stops when this future is dropped (the job is cancelled).
async fn sqlite_plan(
    policy: sqlite::Policy,
    endpoint: &Endpoint,
    info: &Volume,
    pack: &StagingPack,
) -> Result<sqlite::Plan, Error> {
    /// Sets the flag when dropped.
    struct CancelOnDrop(Arc<AtomicBool>);
    impl Drop for CancelOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let root = sqlite::host_root(endpoint, info);
    let volume = info.name.clone();
    let staging = pack.dir().to_path_buf();
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = cancel.0.clone();
    let plan = tokio::task::spawn_blocking(move || sqlite::prepare(policy, root, &volume, &staging, &flag))
        .await
        .map_err(|e| Error::Archive(format!("the SQLite snapshot task failed: {e}")))?;
    drop(cancel);
    plan
}

/// Exports an image (`docker save`) as `docker/images/<name>.tar.zst`.
pub(crate) async fn export_image(
    docker: &Docker,
    image: &str,
    artifact_name: &str,
    pack: &StagingPack,
    source: &str,
    progress: &Arc<dyn Progress>,
) -> Result<ArtifactEntry, Error> {
    let inspect = docker
        .inspect_image(image)
        .await
        .map_err(Error::engine(format!("inspect image `{image}`")))?;
    let rel = format!("docker/images/{artifact_name}.tar.zst");
    let mut w = pack.artifact(&rel, source, IMAGE_KIND, Compression::Zstd)?;
    w.set_meta("image", image);
    if let Some(id) = inspect.id {
        w.set_meta("id", id);
    }
    let stream = docker.export_image(image);
    let (mut w, stats) = stream_into(stream, progress, move |r| {
        let stats = tarstream::process(r, &mut w, &Options::default())?;
        Ok((w, stats))
    })
    .await
    .map_err(|e| archive_error(e, &format!("image `{image}`")))?;
    w.add_files(stats.entries);
    w.set_meta("content_bytes", stats.content_bytes);
    Ok(w.finish()?)
}

/// Errors of a streamed archive.
#[derive(Debug)]
pub(crate) enum StreamError {
    Tar(TarError),
    Task(String),
}

impl From<TarError> for StreamError {
    fn from(e: TarError) -> StreamError {
        StreamError::Tar(e)
    }
}

fn archive_error(e: StreamError, what: &str) -> Error {
    match e {
        StreamError::Tar(TarError::Read(e)) => Error::Engine {
            action: format!("read {what}"),
            message: e.to_string(),
        },
        StreamError::Tar(TarError::Write(e)) => Error::Io {
            action: "write the archive of",
            path: PathBuf::from(what),
            source: e,
        },
        StreamError::Tar(TarError::Bad(m)) => Error::Archive(format!("{what}: {m}")),
        StreamError::Tar(TarError::Local(path, source)) => Error::Io {
            action: "read the SQLite snapshot for",
            path,
            source,
        },
        StreamError::Task(m) => Error::Archive(format!("{what}: {m}")),
    }
}

/// Runs `consume` on a blocking thread, reading what `stream` delivers (bounded channel).
async fn stream_into<S, T, F>(stream: S, progress: &Arc<dyn Progress>, consume: F) -> Result<T, StreamError>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, bollard::errors::Error>>,
    T: Send + 'static,
    F: FnOnce(ChannelReader) -> Result<T, StreamError> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(pipe::DEPTH);
    let task = tokio::task::spawn_blocking(move || consume(ChannelReader::new(rx)));
    let progress = progress.clone();
    let counted = futures_util::StreamExt::inspect(stream, move |item| {
        if let Ok(b) = item {
            progress.advance(b.len() as u64);
        }
    });
    let (_, result) = tokio::join!(pipe::pump(counted, tx), task);
    result.map_err(|e| StreamError::Task(format!("the archiving task failed: {e}")))?
}

/// Copies a local file into `docker/compose/<dir>/<file name>` (uncompressed).
pub(crate) fn copy_file(pack: &StagingPack, source: &str, dir: &str, path: &Path) -> Result<ArtifactEntry, Error> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::ComposeFile {
            path: path.to_path_buf(),
            reason: "has no file name".into(),
        })?;
    let mut f = File::open(path).map_err(|e| Error::ComposeFile {
        path: path.to_path_buf(),
        reason: if e.kind() == io::ErrorKind::NotFound {
            "not found".into()
        } else {
            format!("cannot be read: {e}")
        },
    })?;
    let rel = format!("docker/compose/{dir}/{name}");
    let mut w = pack.artifact(&rel, source, COMPOSE_KIND, Compression::None)?;
    io::copy(&mut f, &mut w).map_err(Error::io("copy", path))?;
    w.set_meta("original_path", path.display().to_string());
    Ok(w.finish()?)
}

/// A file-name-safe form of an image reference (`registry/app:1.2` → `registry_app_1.2`).
pub(crate) fn image_artifact_name(image: &str) -> String {
    let s: String = image
        .trim_start_matches("sha256:")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.trim_start_matches(['.', '_']).to_string()
}

fn sorted(m: &HashMap<String, String>) -> BTreeMap<&String, &String> {
    m.iter().collect()
}

/// Stats of an artifact's tar stream, as recorded in its manifest entry.
pub(crate) fn recorded(entry: &ArtifactEntry) -> (Option<u64>, Option<u64>) {
    (
        entry.files,
        entry.meta.get("content_bytes").and_then(serde_json::Value::as_u64),
    )
}

/// Compares a stream's stats with the manifest entry.
pub(crate) fn compare(entry: &ArtifactEntry, stats: &TarStats) -> Result<(), String> {
    let (files, content) = recorded(entry);
    if let Some(f) = files
        && f != stats.entries
    {
        return Err(format!(
            "the archive lists {} entries, the manifest says {f}",
            stats.entries
        ));
    }
    if let Some(c) = content
        && c != stats.content_bytes
    {
        return Err(format!(
            "the archive's files hold {} bytes, the manifest says {c}",
            stats.content_bytes
        ));
    }
    if stats.tar_bytes != entry.raw_size {
        return Err(format!(
            "the archive is {} bytes, the manifest says {}",
            stats.tar_bytes, entry.raw_size
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_are_path_safe() {
        assert_eq!(
            image_artifact_name("packrat-test/busybox:latest"),
            "packrat-test_busybox_latest"
        );
        assert_eq!(
            image_artifact_name("reg.io:5000/a/b@sha256:ab"),
            "reg.io_5000_a_b_sha256_ab"
        );
        assert_eq!(image_artifact_name("sha256:abc"), "abc");
    }
}

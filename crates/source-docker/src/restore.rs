//! Restoring a Docker app from a pack: images loaded, volumes recreated and filled through a
//! helper container, compose files written to a directory.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::restore_temp::{self, RestoreTemp};
use backup_core::verify::Problem;
use backup_core::{ArtifactEntry, PackReader, Verifier};
use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{
    DownloadFromContainerOptions, ImportImageOptions, RemoveVolumeOptions, UploadToContainerOptions,
};
use futures_util::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::engine::{self, Endpoint, Helper, MOUNT_DIR};
use crate::error::{Error, engine_message, status_of};
use crate::pipe::{self, ChannelReader, ChannelWriter};
use crate::tarstream::{self, Options, TarError, TarStats};
use crate::{COMPOSE_KIND, IMAGE_KIND, VOLUME_KIND};

/// What to restore and how.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Restore volumes: `None` none, `Some(empty)` all, `Some(names)` these.
    pub volumes: Option<Vec<String>>,
    /// Write the compose files (and `.env`) into this directory.
    pub compose_dir: Option<PathBuf>,
    /// Load the images in the pack.
    pub images: bool,
    /// Replace non-empty volumes (removed and recreated: the app must be down) and existing
    /// compose files.
    pub overwrite: bool,
    /// Image for the helper containers. Default: the one used for the backup if present, else an
    /// image loaded from the pack.
    pub helper_image: Option<String>,
    /// Engine address (default: `DOCKER_HOST` or the platform's socket).
    pub docker_host: Option<String>,
    /// Restore the artifacts that check out even though the pack has problems elsewhere; damaged
    /// ones are skipped (listed in [`RestoreReport::skipped`]), never used. Off: a pack with any
    /// problem is refused before anything is written.
    pub allow_damaged: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// Volumes filled, with the entries and file bytes restored into each.
    pub volumes: Vec<RestoredVolume>,
    /// Compose files written.
    pub compose_files: Vec<PathBuf>,
    /// Images loaded.
    pub images: Vec<String>,
    /// Selected artifacts left out because they are damaged (only with `allow_damaged`).
    pub skipped: Vec<Skipped>,
    /// Problems of the pack that `allow_damaged` let pass; empty for an intact pack.
    pub pack_problems: Vec<Problem>,
    /// Temporary files of earlier, killed restores of the compose files that were removed.
    pub removed_leftovers: Vec<PathBuf>,
}

/// An artifact left out of a restore because it is damaged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The artifact.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One restored volume.
#[derive(Debug, Clone, Serialize)]
pub struct RestoredVolume {
    /// Volume name.
    pub name: String,
    /// Archive entries restored.
    pub entries: u64,
    /// Bytes of file content restored.
    pub bytes: u64,
    /// Whether the volume was created by the restore.
    pub created: bool,
    /// Whether it replaced a partly restored volume (left by a killed restore, see
    /// [`crate::FILL_LABEL`]); no `overwrite` is needed for that.
    pub replaced_partial: bool,
}

/// The Docker artifacts of `pack`, optionally of one source only.
pub fn docker_artifacts<'a>(pack: &'a dyn PackReader, source: Option<&str>) -> Vec<&'a ArtifactEntry> {
    pack.manifest()
        .artifacts
        .iter()
        .filter(|e| matches!(e.kind.as_str(), VOLUME_KIND | COMPOSE_KIND | IMAGE_KIND))
        .filter(|e| source.is_none_or(|s| e.source == s))
        .collect()
}

/// The volume name of a volume artifact.
pub fn volume_name(e: &ArtifactEntry) -> String {
    e.meta
        .get("volume")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            let file = e.plain_path().rsplit('/').next().unwrap_or_default();
            file.trim_end_matches(".tar.zst").trim_end_matches(".tar").to_string()
        })
}

/// Checks every entry of a volume archive without writing anything: relative names, no `..`,
/// nothing below a symlink the archive creates, complete and undamaged.
pub fn validate_volume_archive(pack: &dyn PackReader, entry: &ArtifactEntry) -> Result<TarStats, Error> {
    let r = pack.open_artifact(entry)?;
    tarstream::process(r, io::sink(), &strict()).map_err(|e| archive_error(e, entry))
}

pub(crate) fn strict() -> Options {
    Options {
        rebase: None,
        strict: true,
    }
}

fn archive_error(e: TarError, entry: &ArtifactEntry) -> Error {
    Error::Archive(format!("{}: {e}; nothing was restored from it", entry.path))
}

/// Restores the Docker artifacts of `pack` (of source `source`, if given) as `opts` says.
///
/// Order: first the pack's quick check ([`Verifier::check_for_restore`], reading every selected
/// artifact once: a damaged pack is refused with [`backup_core::Error::DamagedPack`] naming each
/// file, unless `opts.allow_damaged`, which skips the damaged artifacts) and the validation of
/// every selected volume archive (a refused archive stops the restore); nothing is written
/// before both pass. Then compose files, then images, then volumes.
pub async fn restore(
    pack: &Arc<dyn PackReader>,
    source: Option<&str>,
    opts: &RestoreOptions,
) -> Result<RestoreReport, Error> {
    let all = docker_artifacts(pack, source);
    if all.is_empty() {
        return Err(Error::NotInPack(format!(
            "pack {} has no Docker artifacts{}",
            pack.id(),
            source.map(|s| format!(" of source `{s}`")).unwrap_or_default()
        )));
    }
    let volumes: Vec<&ArtifactEntry> = match &opts.volumes {
        None => Vec::new(),
        Some(names) => {
            let vols: Vec<&ArtifactEntry> = all.iter().copied().filter(|e| e.kind == VOLUME_KIND).collect();
            for n in names {
                if !vols.iter().any(|e| volume_name(e) == *n) {
                    return Err(Error::NotInPack(format!(
                        "pack {} has no archive of volume `{n}` (it has: {})",
                        pack.id(),
                        vols.iter().map(|e| volume_name(e)).collect::<Vec<_>>().join(", ")
                    )));
                }
            }
            vols.into_iter()
                .filter(|e| names.is_empty() || names.contains(&volume_name(e)))
                .collect()
        }
    };
    let compose: Vec<&ArtifactEntry> = all.iter().copied().filter(|e| e.kind == COMPOSE_KIND).collect();
    let images: Vec<&ArtifactEntry> = all.iter().copied().filter(|e| e.kind == IMAGE_KIND).collect();
    if opts.images && images.is_empty() {
        return Err(Error::NotInPack(format!(
            "pack {} holds no images (they are written on full backups with `include_images = true`)",
            pack.id()
        )));
    }
    if opts.compose_dir.is_some() && compose.is_empty() {
        return Err(Error::NotInPack(format!("pack {} holds no compose files", pack.id())));
    }

    // 1. The quick check of the pack, reading every selected artifact once; then every volume
    //    archive is validated entry by entry. Nothing is touched before both pass.
    let mut wanted: Vec<&ArtifactEntry> = volumes.clone();
    if opts.compose_dir.is_some() {
        wanted.extend(&compose);
    }
    if opts.images {
        wanted.extend(&images);
    }
    let (p, w) = (pack.clone(), wanted.iter().map(|e| (*e).clone()).collect::<Vec<_>>());
    let check = tokio::task::spawn_blocking(move || Verifier::check_for_restore(&p, &w.iter().collect::<Vec<_>>()))
        .await
        .map_err(|e| Error::Archive(format!("checking the pack failed: {e}")))?;
    check.require(opts.allow_damaged)?;
    let mut report = RestoreReport::default();
    for e in &wanted {
        if let Some(reason) = check.unusable.get(&e.path) {
            report.skipped.push(Skipped {
                path: e.path.clone(),
                reason: reason.clone(),
            });
        }
    }
    if !wanted.is_empty() && report.skipped.len() == wanted.len() {
        return Err(Error::Archive(format!(
            "nothing to restore: every selected artifact of pack {} is damaged ({}); restore from another pack",
            pack.id(),
            report
                .skipped
                .iter()
                .map(|s| format!("{}: {}", s.path, s.reason))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    report.pack_problems = check.problems.clone();
    let volumes: Vec<&ArtifactEntry> = volumes.into_iter().filter(|e| check.usable(&e.path)).collect();
    let compose: Vec<&ArtifactEntry> = compose.into_iter().filter(|e| check.usable(&e.path)).collect();
    let images: Vec<&ArtifactEntry> = images.into_iter().filter(|e| check.usable(&e.path)).collect();

    for e in &volumes {
        let (p, e2) = (pack.clone(), (*e).clone());
        tokio::task::spawn_blocking(move || validate_volume_archive(&p, &e2))
            .await
            .map_err(|e| Error::Archive(format!("validation task failed: {e}")))??;
    }

    // 2. Compose files.
    if let Some(dir) = &opts.compose_dir {
        let (written, removed) = write_compose(pack, &compose, dir, opts.overwrite)?;
        report.compose_files = written;
        report.removed_leftovers = removed;
    }

    if volumes.is_empty() && !opts.images {
        return Ok(report);
    }
    let endpoint = Endpoint::resolve(opts.docker_host.as_deref());
    let docker = endpoint.connect().await?;
    let half_filled = engine::sweep_dead_helpers(&docker).await;

    // 3. Images.
    if opts.images {
        for e in &images {
            let name = load_image(&docker, pack, e).await?;
            report.images.push(name);
        }
    }

    // 4. Volumes.
    if !volumes.is_empty() {
        let helper_image = helper_image(&docker, opts, &volumes, &report.images).await?;
        for e in volumes {
            report
                .volumes
                .push(restore_volume(&docker, &endpoint, pack, e, &helper_image, opts.overwrite, &half_filled).await?);
        }
    }
    Ok(report)
}

/// Writes the compose files into `dir`, each through a temporary file next to it; returns the
/// files written and the leftovers of killed earlier restores that were removed.
pub(crate) fn write_compose(
    pack: &Arc<dyn PackReader>,
    files: &[&ArtifactEntry],
    dir: &Path,
    overwrite: bool,
) -> Result<(Vec<PathBuf>, Vec<PathBuf>), Error> {
    fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    let mut targets = Vec::new();
    for e in files {
        let name = e.plain_path().rsplit('/').next().unwrap_or_default();
        let target = dir.join(name);
        if target.exists() && !overwrite {
            return Err(Error::Refused(format!(
                "{} exists; pass --overwrite to replace it (or choose another --compose-dir)",
                target.display()
            )));
        }
        targets.push((e, target));
    }
    let mut written = Vec::new();
    let mut removed = Vec::new();
    for (e, target) in targets {
        removed.extend(restore_temp::remove_stale(&target)?.into_iter().map(|l| l.path));
        let mut tmp = RestoreTemp::create(&target)?;
        let tmp_path = tmp.path().to_path_buf();
        let mut r = pack.open_artifact(e)?;
        io::copy(&mut r, tmp.as_file_mut()).map_err(Error::io("write", &tmp_path))?;
        tmp.as_file().sync_all().map_err(Error::io("fsync", &tmp_path))?;
        let moved = if overwrite {
            tmp.persist(&target)
        } else {
            tmp.persist_noclobber(&target)
        };
        moved.map_err(|err| {
            if err.kind() == io::ErrorKind::AlreadyExists {
                Error::Refused(format!(
                    "{} appeared meanwhile; pass --overwrite to replace it",
                    target.display()
                ))
            } else {
                Error::io("rename into place", &target)(err)
            }
        })?;
        written.push(target);
    }
    backup_core::pack::sync_dir(dir)?;
    Ok((written, removed))
}

async fn load_image(docker: &Docker, pack: &Arc<dyn PackReader>, e: &ArtifactEntry) -> Result<String, Error> {
    let name = e
        .meta
        .get("image")
        .and_then(|v| v.as_str())
        .unwrap_or(e.path.as_str())
        .to_string();
    info!(image = %name, "loading image");
    let (tx, rx) = mpsc::channel(pipe::DEPTH);
    let (p, e2) = (pack.clone(), e.clone());
    let producer = tokio::task::spawn_blocking(move || feed(&p, &e2, tx, &Options::default()));
    let client = engine::long_calls(docker);
    let load = async {
        let mut out = client.import_image_stream(ImportImageOptions::default(), pipe::stream(rx), None);
        let mut last = None;
        while let Some(item) = out.next().await {
            match item {
                Ok(info) => {
                    if let Some(err) = info.error_detail.and_then(|d| d.message) {
                        return Err(err);
                    }
                    last = info.stream.or(last);
                }
                Err(e) => return Err(engine_message(&e)),
            }
        }
        Ok(last)
    };
    let (produced, loaded) = tokio::join!(producer, load);
    produced.map_err(|e| Error::Archive(format!("image task failed: {e}")))??;
    loaded.map_err(|m| Error::Engine {
        action: format!("load image {name} from {}", e.path),
        message: m,
    })?;
    Ok(name)
}

/// Streams an artifact through validation into a channel; a refused archive makes the receiving
/// stream fail, so the engine sees an aborted upload and the bad entry is never sent.
fn feed(
    pack: &Arc<dyn PackReader>,
    e: &ArtifactEntry,
    tx: mpsc::Sender<io::Result<bytes::Bytes>>,
    opts: &Options,
) -> Result<TarStats, Error> {
    let mut w = ChannelWriter::new(tx);
    let r = match pack.open_artifact(e) {
        Ok(r) => r,
        Err(err) => {
            w.fail(io::Error::other(err.to_string()));
            return Err(err.into());
        }
    };
    match tarstream::process(r, &mut w, opts) {
        Ok(stats) => match w.flush() {
            Ok(()) => Ok(stats),
            Err(err) => Err(Error::Engine {
                action: format!("send {}", e.path),
                message: err.to_string(),
            }),
        },
        Err(err) => {
            let msg = err.to_string();
            w.fail(io::Error::other(msg));
            Err(archive_error(err, e))
        }
    }
}

pub(crate) async fn helper_image(
    docker: &Docker,
    opts: &RestoreOptions,
    volumes: &[&ArtifactEntry],
    loaded: &[String],
) -> Result<String, Error> {
    if let Some(i) = &opts.helper_image {
        engine::require_image(docker, i).await?;
        return Ok(i.clone());
    }
    let mut candidates: Vec<String> = volumes
        .iter()
        .filter_map(|e| e.meta.get("helper_image").and_then(|v| v.as_str()).map(str::to_string))
        .collect();
    candidates.extend(loaded.iter().cloned());
    for c in &candidates {
        if docker.inspect_image(c).await.is_ok() {
            return Ok(c.clone());
        }
    }
    Err(Error::NoHelperImage(format!(
        "no helper image to fill the volumes with: none of {} is on this Docker host; pass --helper-image IMAGE \
         (any local image: it is never started), or restore the images first with --images",
        if candidates.is_empty() {
            "the images recorded in the pack".to_string()
        } else {
            candidates.join(", ")
        }
    )))
}

async fn restore_volume(
    docker: &Docker,
    endpoint: &Endpoint,
    pack: &Arc<dyn PackReader>,
    e: &ArtifactEntry,
    helper_image: &str,
    overwrite: bool,
    half_filled: &[engine::HalfFilled],
) -> Result<RestoredVolume, Error> {
    let name = volume_name(e);
    // A volume partly filled by a killed restore is replaced, whatever it holds: drop its marks.
    let marks: Vec<&engine::HalfFilled> = half_filled.iter().filter(|h| h.volume == name).collect();
    for m in &marks {
        engine::remove_mark(docker, m).await?;
    }
    let partial = !marks.is_empty();
    if partial {
        info!(volume = %name, "replacing a partly restored volume (a restore filling it was killed)");
    }
    let created = match docker.inspect_volume(&name).await {
        Ok(_) => {
            if partial || !volume_is_empty(docker, endpoint, &name, helper_image).await? {
                if !overwrite && !partial {
                    return Err(Error::Refused(format!(
                        "volume `{name}` exists and is not empty; pass --overwrite to replace its content \
                         (it is removed and recreated, so stop the app first: `docker-compose down`)"
                    )));
                }
                info!(volume = %name, "removing the existing volume to replace it");
                docker
                    .remove_volume(&name, None::<RemoveVolumeOptions>)
                    .await
                    .map_err(|err| match status_of(&err) {
                        Some(409) => Error::Refused(format!(
                            "volume `{name}` is in use by a container; stop the app (`docker-compose down`) and restore again"
                        )),
                        _ => Error::engine(format!("remove volume `{name}`"))(err),
                    })?;
                create_volume(docker, e, &name).await?;
                true
            } else {
                false
            }
        }
        Err(err) if status_of(&err) == Some(404) => {
            create_volume(docker, e, &name).await?;
            true
        }
        Err(err) => return Err(Error::engine(format!("inspect volume `{name}`"))(err)),
    };
    info!(volume = %name, created, "filling volume");
    let stats = fill_volume(docker, endpoint, pack, e, helper_image, &name).await?;
    Ok(RestoredVolume {
        name,
        entries: stats.entries,
        bytes: stats.content_bytes,
        created,
        replaced_partial: partial,
    })
}

/// Fills volume `target` with the archive `e` of `pack`, through a writable helper container
/// (created from `helper_image`, never started) and the engine's archive upload; every entry is
/// validated on the way ([`strict`]). Returns the stats of what was sent. On failure the helper
/// stays, as the mark of a partly filled volume ([`crate::FILL_LABEL`]).
pub(crate) async fn fill_volume(
    docker: &Docker,
    endpoint: &Endpoint,
    pack: &Arc<dyn PackReader>,
    e: &ArtifactEntry,
    helper_image: &str,
    target: &str,
) -> Result<TarStats, Error> {
    let helper = Helper::create(docker, endpoint, helper_image, target, true).await?;
    let (tx, rx) = mpsc::channel(pipe::DEPTH);
    let (p, e2) = (pack.clone(), e.clone());
    let producer = tokio::task::spawn_blocking(move || feed(&p, &e2, tx, &strict()));
    let client = engine::long_calls(docker);
    let upload = client.upload_to_container(
        &helper.id,
        Some(UploadToContainerOptions {
            path: format!("/{MOUNT_DIR}"),
            ..Default::default()
        }),
        bollard::body_try_stream(pipe::stream(rx)),
    );
    let (produced, uploaded) = tokio::join!(producer, upload);
    let filled = match (produced, uploaded) {
        (Ok(Ok(stats)), Ok(_)) => Ok(stats),
        // Our own refusal explains more than the engine's aborted-upload error.
        (Err(err), _) => Err(Error::Archive(format!("restore task failed: {err}"))),
        (Ok(Err(err)), _) => Err(err),
        (Ok(Ok(_)), Err(err)) => Err(Error::engine(format!("fill volume `{target}` from {}", e.path))(err)),
    };
    match filled {
        Ok(stats) => {
            helper.remove().await?;
            Ok(stats)
        }
        Err(err) => {
            // Partly filled: the helper stays as the mark (backups refuse the volume, the next
            // restore replaces it).
            warn!(volume = %target, container = %helper.id, "the volume is only partly restored; restore it again");
            helper.keep();
            Err(err)
        }
    }
}

async fn create_volume(docker: &Docker, e: &ArtifactEntry, name: &str) -> Result<(), Error> {
    let map = |key: &str| -> Option<HashMap<String, String>> {
        e.meta.get(key).and_then(|v| serde_json::from_value(v.clone()).ok())
    };
    let driver = e.meta.get("driver").and_then(|v| v.as_str()).map(str::to_string);
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(name.to_string()),
            driver,
            driver_opts: map("options"),
            labels: map("labels"),
            ..Default::default()
        })
        .await
        .map_err(Error::engine(format!("create volume `{name}`")))?;
    Ok(())
}

/// Streams volume `name` as the engine's archive endpoint gives it (a read-only helper mounts
/// it at `/packrat_v`, asked for `/packrat_v/.`) into `consume`, run on a blocking thread; the
/// helper is removed afterwards. Backups, restores and drills all read a volume this way.
pub(crate) async fn read_volume<T: Send + 'static>(
    docker: &Docker,
    endpoint: &Endpoint,
    name: &str,
    helper_image: &str,
    consume: impl FnOnce(ChannelReader) -> T + Send + 'static,
) -> Result<T, Error> {
    let helper = Helper::create(docker, endpoint, helper_image, name, false).await?;
    let (tx, rx) = mpsc::channel(pipe::DEPTH);
    let stream = docker.download_from_container(
        &helper.id,
        Some(DownloadFromContainerOptions {
            path: format!("/{MOUNT_DIR}/."),
        }),
    );
    let reader = tokio::task::spawn_blocking(move || consume(ChannelReader::new(rx)));
    let (_, consumed) = tokio::join!(pipe::pump(stream, tx), reader);
    helper.remove().await?;
    consumed.map_err(|e| Error::Archive(format!("reading volume `{name}` failed: {e}")))
}

/// True when the volume holds nothing but its root directory.
async fn volume_is_empty(docker: &Docker, endpoint: &Endpoint, name: &str, helper_image: &str) -> Result<bool, Error> {
    let n = read_volume(docker, endpoint, name, helper_image, |r| first_entries(r, 2))
        .await?
        .map_err(|e| Error::Engine {
            action: format!("read volume `{name}`"),
            message: e.to_string(),
        })?;
    Ok(n <= 1)
}

/// Counts entries up to `limit`, reading no further (the sender sees the receiver hang up).
fn first_entries(mut r: impl Read, limit: u64) -> io::Result<u64> {
    let mut n = 0;
    let mut block = [0u8; 512];
    while n < limit {
        if r.read_exact(&mut block).is_err() || block.iter().all(|&b| b == 0) {
            break;
        }
        n += 1;
        // Skip the entry's data (header-only types have none).
        let size = if matches!(block[156], b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
            0
        } else {
            let s: String = block[124..136]
                .iter()
                .take_while(|&&b| b != 0 && b != b' ')
                .map(|&b| b as char)
                .collect();
            u64::from_str_radix(s.trim(), 8).unwrap_or(0)
        };
        io::copy(
            &mut (&mut r).take(size.div_ceil(512).saturating_mul(512)),
            &mut io::sink(),
        )?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarstream::build;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(10_000))]

        /// The entry counter reads the engine's tar stream: any header, any size field, any
        /// truncation gives a count or an error, never a panic.
        #[test]
        fn entry_counter_never_panics(
            size in proptest::prop_oneof![proptest::prelude::any::<u64>(), u64::MAX - 1024..=u64::MAX, 0..2048u64],
            kind in proptest::prelude::any::<u8>(),
            cut in 0usize..3000,
        ) {
            let mut t = Vec::new();
            let mut h = build::header(b"./a", kind, 0, 0o644, b"");
            let octal = format!("{size:o}");
            let n = octal.len().min(11);
            h[124..124 + n].copy_from_slice(&octal.as_bytes()[..n]);
            t.extend_from_slice(&h);
            t.extend_from_slice(&[1u8; 1200]);
            build::entry(&mut t, b"./b", b'0', b"x", 0o644, b"");
            t.truncate(cut);
            let _ = first_entries(&t[..], 3);
        }
    }

    #[test]
    fn counts_first_entries_only() {
        let mut t = Vec::new();
        build::entry(&mut t, b"./", b'5', b"", 0o755, b"");
        assert_eq!(first_entries(&t[..], 2).unwrap(), 1, "no end marker needed");
        build::entry(&mut t, b"./a", b'0', &[1u8; 700], 0o644, b"");
        build::entry(&mut t, b"./b", b'0', b"x", 0o644, b"");
        build::end(&mut t);
        assert_eq!(first_entries(&t[..], 2).unwrap(), 2);
        assert_eq!(first_entries(&t[..], 9).unwrap(), 3);
    }
}

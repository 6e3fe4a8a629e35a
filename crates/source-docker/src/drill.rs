//! Restore drills of a Docker app: every volume of a pack restored into a *scratch volume*, read
//! back through the engine and compared with the pack's record (entries and file bytes), then
//! removed; the compose files written into a scratch directory.
//!
//! A scratch volume is named `packrat-drill-<TAG>-<volume>` and labelled
//! [`DRILL_LABEL`]`=<TAG>` and [`DRILL_PLAN_LABEL`]`=<plan>`; it carries none of the original's
//! labels, so no compose project (and no backup selecting volumes by project) ever sees it.
//! A drill killed half-way leaves its scratch volumes behind: [`sweep`] removes those of a plan
//! (the caller holds the plan's lock, so no drill of it is alive). Images are not loaded: a drill
//! must not change what the host runs.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use backup_core::{ArtifactEntry, PackReader};
use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListContainersOptions, ListVolumesOptions, RemoveVolumeOptions};
use serde::Serialize;
use tracing::{info, warn};

use crate::engine::{self, Endpoint, MOUNT_DIR};
use crate::error::{Error, status_of};
use crate::restore::{self, RestoreOptions};
use crate::tarstream::{self, Options, TarStats};
use crate::{COMPOSE_KIND, IMAGE_KIND, VOLUME_KIND};

/// Label of a scratch volume: the drill's tag.
pub const DRILL_LABEL: &str = "io.packrat.drill";
/// Label of a scratch volume: the plan drilled.
pub const DRILL_PLAN_LABEL: &str = "io.packrat.drill.plan";

/// What to drill and where.
#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// The plan the pack belongs to (labels the scratch volumes, for [`sweep`]).
    pub plan: String,
    /// Names this drill's scratch volumes (`packrat-drill-<tag>-<volume>`), e.g. `nightly-run-7`.
    pub tag: String,
    /// Write the compose files into this (scratch) directory; `None` leaves them out.
    pub compose_dir: Option<PathBuf>,
    /// Image for the helper containers; default: the one recorded with each volume.
    pub helper_image: Option<String>,
    /// Engine address (default: `DOCKER_HOST` or the platform's socket).
    pub docker_host: Option<String>,
}

/// What a drill found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DrillReport {
    /// Every volume of the pack, restored, read back and removed.
    pub volumes: Vec<DrilledVolume>,
    /// Compose files written into the scratch directory.
    pub compose_files: Vec<PathBuf>,
    /// Images in the pack, not loaded (a drill does not change what the host runs).
    pub images_not_loaded: Vec<String>,
}

/// One volume of a drill.
#[derive(Debug, Clone, Serialize)]
pub struct DrilledVolume {
    /// The volume as backed up.
    pub volume: String,
    /// The scratch volume it was restored into (removed again).
    pub scratch: String,
    /// The artifact.
    pub path: String,
    /// Entries read back from the scratch volume.
    pub entries: u64,
    /// File bytes read back from the scratch volume.
    pub bytes: u64,
    /// Entries the manifest records.
    pub recorded_entries: Option<u64>,
    /// File bytes the manifest records.
    pub recorded_bytes: Option<u64>,
    /// Seconds the restore and the read-back took.
    pub seconds: f64,
}

impl DrilledVolume {
    /// What differs between the volume read back and the record; empty when it came back whole.
    pub fn differences(&self) -> Vec<String> {
        let mut d = Vec::new();
        match self.recorded_entries {
            Some(n) if n != self.entries => d.push(format!(
                "volume {}: {} entries came back, the pack records {n}",
                self.volume, self.entries
            )),
            None => d.push(format!("volume {}: the pack records no entry count", self.volume)),
            _ => {}
        }
        match self.recorded_bytes {
            Some(n) if n != self.bytes => d.push(format!(
                "volume {}: {} file bytes came back, the pack records {n}",
                self.volume, self.bytes
            )),
            None => d.push(format!("volume {}: the pack records no byte count", self.volume)),
            _ => {}
        }
        d
    }
}

/// The scratch volume of `volume` for the drill `tag`.
pub fn scratch_name(tag: &str, volume: &str) -> String {
    let clean: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("packrat-drill-{clean}-{volume}")
}

/// Drills the Docker artifacts of `pack` (of source `source`, if given): each volume into its
/// scratch volume, read back, compared and removed; the compose files into
/// `opts.compose_dir`. A volume that cannot be restored fails the drill with the error; one that
/// comes back different is reported in its [`DrilledVolume::differences`]. Scratch volumes are
/// removed whatever happened (a killed drill leaves them to [`sweep`]).
pub async fn drill(
    pack: &Arc<dyn PackReader>,
    source: Option<&str>,
    opts: &DrillOptions,
) -> Result<DrillReport, Error> {
    let all = restore::docker_artifacts(pack, source);
    let volumes: Vec<&ArtifactEntry> = all.iter().copied().filter(|e| e.kind == VOLUME_KIND).collect();
    let compose: Vec<&ArtifactEntry> = all.iter().copied().filter(|e| e.kind == COMPOSE_KIND).collect();
    let mut report = DrillReport {
        images_not_loaded: all
            .iter()
            .filter(|e| e.kind == IMAGE_KIND)
            .map(|e| {
                e.meta
                    .get("image")
                    .and_then(|v| v.as_str())
                    .unwrap_or(&e.path)
                    .to_string()
            })
            .collect(),
        ..DrillReport::default()
    };
    if let Some(dir) = &opts.compose_dir
        && !compose.is_empty()
    {
        report.compose_files = restore::write_compose(pack, &compose, dir, false)?.0;
    }
    if volumes.is_empty() {
        return Ok(report);
    }
    let endpoint = Endpoint::resolve(opts.docker_host.as_deref());
    let docker = endpoint.connect().await?;
    let restore_opts = RestoreOptions {
        helper_image: opts.helper_image.clone(),
        ..RestoreOptions::default()
    };
    let helper_image = restore::helper_image(&docker, &restore_opts, &volumes, &[]).await?;
    for e in volumes {
        report
            .volumes
            .push(drill_volume(&docker, &endpoint, pack, e, &helper_image, opts).await?);
    }
    Ok(report)
}

async fn drill_volume(
    docker: &Docker,
    endpoint: &Endpoint,
    pack: &Arc<dyn PackReader>,
    e: &ArtifactEntry,
    helper_image: &str,
    opts: &DrillOptions,
) -> Result<DrilledVolume, Error> {
    let volume = restore::volume_name(e);
    let scratch = scratch_name(&opts.tag, &volume);
    let started = Instant::now();
    // A leftover of the same name (an earlier run with this tag) would mix its content in.
    remove_volume(docker, &scratch).await?;
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(scratch.clone()),
            labels: Some(HashMap::from([
                (DRILL_LABEL.to_string(), opts.tag.clone()),
                (DRILL_PLAN_LABEL.to_string(), opts.plan.clone()),
            ])),
            ..Default::default()
        })
        .await
        .map_err(Error::engine(format!("create scratch volume `{scratch}`")))?;
    info!(volume = %volume, scratch = %scratch, "drill: restoring into a scratch volume");
    let result = async {
        restore::fill_volume(docker, endpoint, pack, e, helper_image, &scratch).await?;
        read_back(docker, endpoint, &scratch, helper_image).await
    }
    .await;
    let removed = remove_volume(docker, &scratch).await;
    let stats = result?;
    removed?;
    let (recorded_entries, recorded_bytes) = crate::backup::recorded(e);
    Ok(DrilledVolume {
        volume,
        scratch,
        path: e.path.clone(),
        entries: stats.entries,
        bytes: stats.content_bytes,
        recorded_entries,
        recorded_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Reads volume `name` back as a backup does and counts its entries and file bytes.
async fn read_back(docker: &Docker, endpoint: &Endpoint, name: &str, helper_image: &str) -> Result<TarStats, Error> {
    let opts = Options {
        rebase: Some(MOUNT_DIR.into()),
        strict: false,
    };
    restore::read_volume(docker, endpoint, name, helper_image, move |r| {
        tarstream::process(r, io::sink(), &opts)
    })
    .await?
    .map_err(|e| Error::Engine {
        action: format!("read scratch volume `{name}` back"),
        message: e.to_string(),
    })
}

/// Removes volume `name` and every container using it (helpers of a drill); a missing volume is
/// fine.
async fn remove_volume(docker: &Docker, name: &str) -> Result<(), Error> {
    let users = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("volume".to_string(), vec![name.to_string()])])),
            ..Default::default()
        }))
        .await
        .map_err(Error::engine(format!("list the containers using volume `{name}`")))?;
    for c in users {
        if let Some(id) = c.id.as_deref() {
            engine::remove_container(docker, id).await?;
        }
    }
    match docker.remove_volume(name, None::<RemoveVolumeOptions>).await {
        Ok(()) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Ok(()),
        Err(e) => Err(Error::engine(format!("remove scratch volume `{name}`"))(e)),
    }
}

/// Removes the scratch volumes of `plan`'s drills (and their helper containers) left by drills
/// that were killed; returns their names. Call it holding the plan's lock.
pub async fn sweep(docker_host: Option<&str>, plan: &str) -> Result<Vec<String>, Error> {
    let endpoint = Endpoint::resolve(docker_host);
    let docker = endpoint.connect().await?;
    let list = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("{DRILL_PLAN_LABEL}={plan}")],
            )])),
        }))
        .await
        .map_err(Error::engine("list the drill scratch volumes"))?;
    let mut removed = Vec::new();
    for v in list.volumes.unwrap_or_default() {
        match remove_volume(&docker, &v.name).await {
            Ok(()) => {
                info!(volume = %v.name, "removed a scratch volume left by a drill that did not finish");
                removed.push(v.name);
            }
            Err(e) => warn!("cannot remove the scratch volume {}: {e}", v.name),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_are_valid_volume_names() {
        assert_eq!(
            scratch_name("nightly-run-7", "app_data"),
            "packrat-drill-nightly-run-7-app_data"
        );
        assert_eq!(scratch_name("夜间 run/7", "v"), "packrat-drill-___run_7-v");
    }

    #[test]
    fn differences_name_what_came_back_wrong() {
        let mut v = DrilledVolume {
            volume: "data".into(),
            scratch: "s".into(),
            path: "docker/volumes/data.tar.zst".into(),
            entries: 3,
            bytes: 10,
            recorded_entries: Some(3),
            recorded_bytes: Some(10),
            seconds: 0.1,
        };
        assert!(v.differences().is_empty());
        v.entries = 2;
        v.recorded_bytes = None;
        let d = v.differences();
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("2 entries came back, the pack records 3"), "{d:?}");
        assert!(d[1].contains("no byte count"), "{d:?}");
    }
}

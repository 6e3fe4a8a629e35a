//! The Docker engine: connecting (with API version negotiation), helper containers, volumes,
//! and the guard that starts stopped containers again.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerSummary, HostConfig, Mount, MountType, Volume};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
};
use tracing::{info, warn};

use crate::error::{Error, engine_message, status_of};

/// Where helper containers mount the volume. The archive endpoint is asked for `<this>/.`, so
/// entries come as `./…`; entries named `packrat_v/…` (engines that ignore the `/.`) are rebased.
pub(crate) const MOUNT_DIR: &str = "packrat_v";
/// Label on every helper container (`docker rm -f $(docker ps -aq --filter label=io.packrat.helper)`
/// removes leftovers of a killed packrat).
pub const HELPER_LABEL: &str = "io.packrat.helper";
/// Timeout of calls that stream a whole archive or image into the engine.
const LONG: Duration = Duration::from_secs(24 * 3600);

/// How to reach the engine: an address, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
}

impl Endpoint {
    /// `host` if given, else `DOCKER_HOST`, else the platform's default socket.
    pub fn resolve(host: Option<&str>) -> Endpoint {
        let host = host
            .map(str::to_string)
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| {
                if cfg!(windows) {
                    "npipe:////./pipe/docker_engine".into()
                } else {
                    "unix:///var/run/docker.sock".into()
                }
            });
        Endpoint { host }
    }

    /// The address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Connects and negotiates the API version (the engine may be older than the client).
    pub async fn connect(&self) -> Result<Docker, Error> {
        let unavailable = |reason: String| Error::Unavailable {
            host: self.host.clone(),
            reason,
        };
        if let Some(path) = self.host.strip_prefix("unix://")
            && !std::path::Path::new(path).exists()
        {
            return Err(unavailable(format!("the socket {path} does not exist")));
        }
        let docker = Docker::connect_with_host(&self.host).map_err(|e| unavailable(e.to_string()))?;
        let docker = tokio::time::timeout(Duration::from_secs(30), docker.negotiate_version())
            .await
            .map_err(|_| unavailable("no answer within 30s".into()))?
            .map_err(|e| unavailable(describe_connect_error(&e)))?;
        Ok(docker)
    }
}

fn describe_connect_error(e: &bollard::errors::Error) -> String {
    let mut s = engine_message(e);
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The containers of compose project `project` (running or not), oldest first.
pub(crate) async fn project_containers(docker: &Docker, project: &str) -> Result<Vec<ContainerSummary>, Error> {
    let filters = HashMap::from([("label".to_string(), vec![format!("{}={project}", crate::PROJECT_LABEL)])]);
    let mut list = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(Error::engine(format!("list the containers of project `{project}`")))?;
    list.sort_by_key(|c| (c.created.unwrap_or_default(), container_name(c)));
    Ok(list)
}

/// A container's name without the leading `/`.
pub(crate) fn container_name(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .or_else(|| c.id.clone())
        .unwrap_or_default()
}

/// Inspects a volume; a missing one is [`Error::VolumeVanished`].
pub(crate) async fn inspect_volume(docker: &Docker, name: &str) -> Result<Volume, Error> {
    match docker.inspect_volume(name).await {
        Ok(v) => Ok(v),
        Err(e) if status_of(&e) == Some(404) => Err(Error::VolumeVanished(name.to_string())),
        Err(e) => Err(Error::engine(format!("inspect volume `{name}`"))(e)),
    }
}

/// Checks that `image` exists on the engine's host.
pub(crate) async fn require_image(docker: &Docker, image: &str) -> Result<(), Error> {
    match docker.inspect_image(image).await {
        Ok(_) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Err(Error::HelperImageMissing(image.to_string())),
        Err(e) => Err(Error::engine(format!("inspect image `{image}`"))(e)),
    }
}

/// A created (never started) container with one volume mounted at `/packrat_v`. Removed by
/// [`Helper::remove`], or in the background when dropped (a cancelled backup).
#[derive(Debug)]
pub(crate) struct Helper {
    docker: Docker,
    pub(crate) id: String,
    removed: bool,
}

impl Helper {
    /// Creates the helper for `volume`, read-only unless `writable`.
    pub(crate) async fn create(docker: &Docker, image: &str, volume: &str, writable: bool) -> Result<Helper, Error> {
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            // Never started: the command only has to be syntactically present.
            entrypoint: Some(vec!["/packrat-helper-is-never-started".into()]),
            cmd: Some(Vec::new()),
            network_disabled: Some(true),
            labels: Some(HashMap::from([
                (HELPER_LABEL.to_string(), "1".to_string()),
                ("io.packrat.volume".to_string(), volume.to_string()),
            ])),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                mounts: Some(vec![Mount {
                    target: Some(format!("/{MOUNT_DIR}")),
                    source: Some(volume.to_string()),
                    typ: Some(MountType::VOLUME),
                    read_only: Some(!writable),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = docker
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .map_err(|e| match status_of(&e) {
                Some(404) if engine_message(&e).contains("image") => Error::HelperImageMissing(image.to_string()),
                _ => Error::engine(format!(
                    "create a helper container for volume `{volume}` from image `{image}`"
                ))(e),
            })?;
        Ok(Helper {
            docker: docker.clone(),
            id: created.id,
            removed: false,
        })
    }

    /// Removes the container (and any anonymous volume its image declared).
    pub(crate) async fn remove(mut self) -> Result<(), Error> {
        self.removed = true;
        remove_container(&self.docker, &self.id).await
    }
}

async fn remove_container(docker: &Docker, id: &str) -> Result<(), Error> {
    match docker
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if status_of(&e) == Some(404) => Ok(()),
        Err(e) => Err(Error::engine(format!("remove helper container {id}"))(e)),
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let (docker, id) = (self.docker.clone(), self.id.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = remove_container(&docker, &id).await {
                    warn!("{e}");
                }
            });
        }
    }
}

/// A client for calls that stream a whole archive or image into the engine: the request's
/// timeout covers the upload, so it is long.
pub(crate) fn long_calls(docker: &Docker) -> Docker {
    docker.clone().with_timeout(LONG)
}

/// The running containers stopped for a backup. [`StopGuard::restart`] starts exactly those
/// again; if the guard is dropped without it (the backup future errored out of scope, panicked or
/// was cancelled), `Drop` starts them on a thread of its own, with its own connection, and waits
/// for it — so the containers run again before the drop returns.
#[derive(Debug)]
pub struct StopGuard {
    endpoint: Endpoint,
    docker: Docker,
    /// (id, name), in the order they should start (oldest first).
    stopped: Vec<(String, String)>,
    armed: bool,
}

impl StopGuard {
    /// Stops `running` (all at once, each given `timeout` before it is killed). The guard covers
    /// every container whose stop was attempted, so that a failure half-way still restarts them.
    pub(crate) async fn stop(
        endpoint: &Endpoint,
        docker: &Docker,
        running: &[ContainerSummary],
        timeout: Duration,
    ) -> (StopGuard, Result<(), Error>) {
        let stopped: Vec<(String, String)> = running
            .iter()
            .filter_map(|c| c.id.clone().map(|id| (id, container_name(c))))
            .collect();
        let guard = StopGuard {
            endpoint: endpoint.clone(),
            docker: docker.clone(),
            stopped,
            armed: true,
        };
        let client = docker.clone().with_timeout(timeout + Duration::from_secs(60));
        let secs = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let results = futures_util::future::join_all(guard.stopped.iter().map(|(id, name)| {
            let client = client.clone();
            async move {
                info!(container = %name, "stopping for the backup");
                client
                    .stop_container(
                        id,
                        Some(StopContainerOptions {
                            t: Some(secs),
                            ..Default::default()
                        }),
                    )
                    .await
                    .map_err(|e| format!("{name}: {}", engine_message(&e)))
            }
        }))
        .await;
        let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        let result = if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::Engine {
                action: "stop the project's containers for the backup".into(),
                message: failures.join("; "),
            })
        };
        (guard, result)
    }

    /// Names of the containers this guard will start again.
    pub fn names(&self) -> Vec<String> {
        self.stopped.iter().map(|(_, n)| n.clone()).collect()
    }

    /// Starts the stopped containers again and disarms the guard.
    pub async fn restart(mut self) -> Result<(), Error> {
        self.armed = false;
        start_all(&self.docker, &self.stopped).await
    }
}

async fn start_all(docker: &Docker, containers: &[(String, String)]) -> Result<(), Error> {
    let mut failures = Vec::new();
    for (id, name) in containers {
        info!(container = %name, "starting again after the backup");
        match docker.start_container(id, None::<StartContainerOptions>).await {
            Ok(()) => {}
            Err(e) if status_of(&e) == Some(304) => {}
            Err(e) => failures.push(format!("{name}: {}", engine_message(&e))),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Restart {
            failures: failures.join("; "),
            names: containers.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(" "),
        })
    }
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        if !self.armed || self.stopped.is_empty() {
            return;
        }
        warn!(
            containers = ?self.names(),
            "backup ended early; starting the stopped containers again"
        );
        let endpoint = self.endpoint.clone();
        let stopped = std::mem::take(&mut self.stopped);
        // Our runtime may be shutting down (or blocked in this very drop), so use a thread with a
        // runtime and a connection of its own.
        let worker = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return Err(format!("cannot start a runtime: {e}")),
            };
            rt.block_on(async {
                let docker = endpoint.connect().await.map_err(|e| e.to_string())?;
                start_all(&docker, &stopped).await.map_err(|e| e.to_string())
            })
        });
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("{e}"),
            Err(_) => tracing::error!("restarting the stopped containers panicked"),
        }
    }
}

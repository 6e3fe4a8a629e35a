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
/// removes leftovers of a killed packrat by hand).
pub const HELPER_LABEL: &str = "io.packrat.helper";
/// Label naming the process that created a helper container (Linux:
/// `<machine id>/<boot id>/<pid>/<process start time>`), so that the next backup or restore
/// removes the helpers of a packrat process that is gone (SIGKILL, crash, power loss).
pub const OWNER_LABEL: &str = "io.packrat.owner";
/// Label on the helper containers that fill a volume during a restore. Docker cannot rename a
/// volume, so a restore fills the volume under its final name; when the restore is killed, its
/// fill helper stays behind as the mark that the volume is only partly restored: backups refuse
/// that volume and the next restore of it replaces it.
pub const FILL_LABEL: &str = "io.packrat.fill";
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
    endpoint: Endpoint,
    /// The container's id, or its name until the engine confirmed the creation.
    pub(crate) id: String,
    /// Whether the engine answered the create request (else a drop looks for it by name).
    created: bool,
    removed: bool,
}

impl Helper {
    /// Creates the helper for `volume` on the engine `docker` (reached at `endpoint`), read-only
    /// unless `writable`.
    pub(crate) async fn create(
        docker: &Docker,
        endpoint: &Endpoint,
        image: &str,
        volume: &str,
        writable: bool,
    ) -> Result<Helper, Error> {
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            // Never started: the command only has to be syntactically present.
            entrypoint: Some(vec!["/packrat-helper-is-never-started".into()]),
            cmd: Some(Vec::new()),
            network_disabled: Some(true),
            labels: Some({
                let mut labels = HashMap::from([
                    (HELPER_LABEL.to_string(), "1".to_string()),
                    ("io.packrat.volume".to_string(), volume.to_string()),
                ]);
                if let Some(owner) = owner::this_process() {
                    labels.insert(OWNER_LABEL.to_string(), owner.to_string());
                }
                if writable {
                    labels.insert(FILL_LABEL.to_string(), "1".to_string());
                }
                labels
            }),
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
        // Named up front, and guarded before the request is sent: a job cancelled while the engine
        // creates the container drops the guard, which then finds the container by its name and
        // removes it, instead of leaving a helper nobody knows the id of.
        let name = unique_name();
        let mut helper = Helper {
            docker: docker.clone(),
            endpoint: endpoint.clone(),
            id: name.clone(),
            created: false,
            removed: false,
        };
        let options = CreateContainerOptions {
            name: Some(name),
            ..Default::default()
        };
        match docker.create_container(Some(options), body).await {
            Ok(created) => {
                helper.id = created.id;
                helper.created = true;
                Ok(helper)
            }
            Err(e) => {
                helper.removed = true; // the engine refused it: nothing to remove
                Err(match status_of(&e) {
                    Some(404) if engine_message(&e).contains("image") => Error::HelperImageMissing(image.to_string()),
                    _ => Error::engine(format!(
                        "create a helper container for volume `{volume}` from image `{image}`"
                    ))(e),
                })
            }
        }
    }

    /// Leaves the container in place (not even removed on drop): the mark of a partly filled
    /// volume (see [`FILL_LABEL`]).
    pub(crate) fn keep(mut self) {
        self.removed = true;
    }

    /// Removes the container (and any anonymous volume its image declared).
    pub(crate) async fn remove(mut self) -> Result<(), Error> {
        let result = remove_container(&self.docker, &self.id).await;
        // Only now: a job cancelled while the request was out drops `self` still armed, and the
        // drop removes the container (or finds it gone).
        self.removed = true;
        result
    }
}

pub(crate) async fn remove_container(docker: &Docker, id: &str) -> Result<(), Error> {
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

/// How long (in steps of 100 ms) a dropped helper whose creation was not confirmed waits for the
/// engine to finish creating it: a busy engine has been seen to take over 3 s, so 15 s.
const CREATE_WAIT_STEPS: u32 = 150;

/// A container name no other helper has: `packrat-helper-<pid>-<nanoseconds>-<n>`.
fn unique_name() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("packrat-helper-{}-{nanos}-{n}", std::process::id())
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // Dropped mid-stream: the job was cancelled (SIGINT/SIGTERM), and the process may exit
        // right after, before a task spawned on our runtime would run. So remove it now, on a
        // thread with a runtime and a connection of its own (our runtime may be blocked in this
        // very drop), and wait for it. Should that fail, the next backup or restore removes it.
        // Dropped while the create request was out: the engine may still be creating it, so wait
        // a moment for it to appear under its name.
        let (endpoint, id, created) = (self.endpoint.clone(), self.id.clone(), self.created);
        let worker = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return Err(format!("cannot start a runtime: {e}")),
            };
            rt.block_on(async {
                let docker = endpoint.connect().await.map_err(|e| e.to_string())?;
                if !created {
                    for _ in 0..CREATE_WAIT_STEPS {
                        match docker.inspect_container(&id, None).await {
                            Ok(_) => break,
                            Err(e) if status_of(&e) == Some(404) => {
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            }
                            Err(e) => return Err(format!("cannot look for helper container {id}: {e}")),
                        }
                    }
                }
                remove_container(&docker, &id).await.map_err(|e| e.to_string())
            })
        });
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!("{e}"),
            Err(_) => warn!("removing a helper container panicked"),
        }
    }
}

/// A volume partly filled by a restore that was killed: its fill helper, left as the mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HalfFilled {
    /// The volume.
    pub volume: String,
    /// The helper container that marks it.
    pub container: String,
}

/// Removes the read-only helper containers left by packrat processes on this host that are gone
/// (killed before they could remove them: they would otherwise stay forever and keep their
/// volumes busy, so that `docker volume rm` and `docker-compose down -v` refuse them). Helpers of
/// live processes (this one included), of other hosts and without an owner label are left alone.
///
/// The fill helpers of gone restores are left in place too, as the mark of a partly restored
/// volume, and returned. Problems are logged, never fatal.
pub(crate) async fn sweep_dead_helpers(docker: &Docker) -> Vec<HalfFilled> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![HELPER_LABEL.to_string(), OWNER_LABEL.to_string()],
    )]);
    let list = match docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
    {
        Ok(l) => l,
        Err(e) => {
            warn!(
                "cannot list packrat's helper containers to remove leftovers: {}",
                engine_message(&e)
            );
            return Vec::new();
        }
    };
    let mut half = Vec::new();
    for c in list {
        let labels = c.labels.clone().unwrap_or_default();
        let (Some(id), Some(owner)) = (c.id.as_deref(), labels.get(OWNER_LABEL)) else {
            continue;
        };
        if owner::is_gone(owner) != Some(true) {
            continue;
        }
        if labels.contains_key(FILL_LABEL) {
            let volume = labels.get("io.packrat.volume").cloned().unwrap_or_default();
            warn!(volume = %volume, container = %container_name(&c), "volume is only partly restored: the restore filling it was killed");
            half.push(HalfFilled {
                volume,
                container: id.to_string(),
            });
            continue;
        }
        match remove_container(docker, id).await {
            Ok(()) => {
                info!(container = %container_name(&c), owner = %owner, "removed a helper container left by a packrat process that is gone");
            }
            Err(e) => warn!("cannot remove a leftover helper container: {e}"),
        }
    }
    half
}

/// Removes the mark of a partly restored volume (its dead fill helper), before it is replaced.
pub(crate) async fn remove_mark(docker: &Docker, mark: &HalfFilled) -> Result<(), Error> {
    remove_container(docker, &mark.container).await
}

/// Who created a helper container, and whether that process is gone.
mod owner {
    /// This process as written into [`super::OWNER_LABEL`]; `None` where it cannot be told
    /// (then helpers carry no owner and are never swept).
    pub(crate) fn this_process() -> Option<&'static str> {
        static ME: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
        ME.get_or_init(imp::this_process).as_deref()
    }

    /// `Some(true)` when the process named by `owner` is gone, `Some(false)` when it is alive,
    /// `None` when this cannot be told (another host, an unknown format, not Linux).
    pub(crate) fn is_gone(owner: &str) -> Option<bool> {
        imp::is_gone(owner)
    }

    #[cfg(target_os = "linux")]
    mod imp {
        fn read_trim(path: &str) -> Option<String> {
            let s = std::fs::read_to_string(path).ok()?;
            let s = s.trim();
            (!s.is_empty() && !s.contains('/')).then(|| s.to_string())
        }

        fn machine() -> Option<String> {
            read_trim("/etc/machine-id").or_else(|| read_trim("/proc/sys/kernel/hostname"))
        }

        fn boot() -> Option<String> {
            read_trim("/proc/sys/kernel/random/boot_id")
        }

        /// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot): a pid reused by
        /// another process has another start time.
        fn start_time(pid: u32) -> Option<u64> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after_comm = stat.rsplit_once(')')?.1;
            after_comm.split_whitespace().nth(19)?.parse().ok()
        }

        pub(super) fn this_process() -> Option<String> {
            let pid = std::process::id();
            Some(format!("{}/{}/{pid}/{}", machine()?, boot()?, start_time(pid)?))
        }

        pub(super) fn is_gone(owner: &str) -> Option<bool> {
            let mut parts = owner.split('/');
            let (machine, boot, pid, start) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() || Some(machine) != self::machine().as_deref() {
                return None;
            }
            let pid: u32 = pid.parse().ok()?;
            let start: u64 = start.parse().ok()?;
            if Some(boot) != self::boot().as_deref() {
                return Some(true); // the host rebooted since: every process of then is gone
            }
            Some(start_time(pid) != Some(start))
        }
    }

    #[cfg(not(target_os = "linux"))]
    mod imp {
        pub(super) fn this_process() -> Option<String> {
            None
        }

        pub(super) fn is_gone(_owner: &str) -> Option<bool> {
            None
        }
    }

    #[cfg(all(test, target_os = "linux"))]
    mod tests {
        use super::*;

        #[test]
        fn this_process_is_alive_and_a_dead_or_reused_pid_is_gone() {
            let me = this_process().expect("an owner on Linux");
            assert_eq!(is_gone(me), Some(false));
            let parts: Vec<&str> = me.split('/').collect();
            // Same pid, other start time: the pid was reused.
            let reused = format!(
                "{}/{}/{}/{}",
                parts[0],
                parts[1],
                parts[2],
                parts[3].parse::<u64>().unwrap() + 1
            );
            assert_eq!(is_gone(&reused), Some(true));
            // A pid that does not exist (above the kernel's maximum).
            let dead = format!("{}/{}/4194305/1", parts[0], parts[1]);
            assert_eq!(is_gone(&dead), Some(true));
            // Before the last boot.
            let before_boot = format!(
                "{}/00000000-0000-0000-0000-000000000000/{}/{}",
                parts[0], parts[2], parts[3]
            );
            assert_eq!(is_gone(&before_boot), Some(true));
            // Another host, or not ours: cannot tell.
            assert_eq!(
                is_gone(&format!("other-host/{}/{}/{}", parts[1], parts[2], parts[3])),
                None
            );
            assert_eq!(is_gone("1"), None);
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
        let result = start_all(&self.docker, &self.stopped).await;
        // Only now: a job cancelled half-way through the starts drops the guard still armed, and
        // the drop starts them all (a running one answers 304).
        self.armed = false;
        result
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

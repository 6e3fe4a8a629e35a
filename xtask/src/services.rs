//! Background services the tests need: a MongoDB-wire server, a Docker engine, an SMTP server,
//! a Samba share, a three-node Garage (S3) cluster and the Windows build under Wine.
//!
//! `cargo xtask ci` collects the prerequisites of every service with the other prerequisites,
//! starts all services (via [`Running::start`]) right before the first test step, passes the
//! environment variables they return to the test commands, and stops them after the last test
//! step. [`Running`] also stops them when dropped, so they are stopped when a test step fails
//! or any error unwinds out of `ci`.
//!
//! To add one: implement [`Service`] and add it to [`all`]. A service should spawn its daemon
//! with its state under `target/ci-services/<name>/` and make `stop` idempotent.
//! Ctrl-C kills xtask without running destructors, so a daemon should also die with xtask
//! (e.g. its own process group killed on the next start, or `PR_SET_PDEATHSIG`).

use anyhow::{Context, Result, bail};

use crate::prereqs::Prereq;
use crate::util::fmt_duration;

/// A daemon started before the tests and stopped after them.
pub trait Service: std::fmt::Debug {
    /// Short name for logs (`docker`, `samba`, `mongo`).
    fn name(&self) -> &'static str;

    /// Tools this service needs installed; checked in the `prereqs` step.
    fn prereqs(&self) -> Vec<Prereq> {
        Vec::new()
    }

    /// Starts the service and waits until it is ready. Returns environment variables for the
    /// test processes (e.g. `PACKRAT_TEST_MONGO_URI`).
    fn start(&mut self) -> Result<Vec<(String, String)>>;

    /// Stops the service. Must be safe to call when `start` failed half-way or twice.
    fn stop(&mut self) -> Result<()>;
}

pub mod docker;
pub mod garage;
pub mod mongo;
pub mod samba;
pub mod smtp;
pub mod wine;

/// Every service the tests need.
pub fn all() -> Vec<Box<dyn Service>> {
    vec![
        Box::new(mongo::Mongo::default()),
        Box::new(docker::Docker::default()),
        Box::new(smtp::Smtp::default()),
        Box::new(samba::Samba::default()),
        Box::new(garage::Garage::default()),
        Box::new(wine::Wine::default()),
    ]
}

/// The services named in `only` (all of them when it is empty), in the order of [`all`].
pub fn select(only: &[String]) -> Result<Vec<Box<dyn Service>>> {
    let all = all();
    if let Some(unknown) = only.iter().find(|n| !all.iter().any(|s| s.name() == n.as_str())) {
        let names: Vec<&str> = all.iter().map(|s| s.name()).collect();
        bail!("no service named {unknown:?}; the services are: {}", names.join(", "));
    }
    Ok(all
        .into_iter()
        .filter(|s| only.is_empty() || only.iter().any(|n| n == s.name()))
        .collect())
}

/// The prerequisites of every service in [`all`].
pub fn prereqs() -> Vec<Prereq> {
    all().iter().flat_map(|s| s.prereqs()).collect()
}

/// Options of `cargo xtask services`.
#[derive(Debug, clap::Args)]
pub struct ServicesArgs {
    /// `up`: install what is missing, start every test service, write their environment to
    /// `target/ci-services/env.sh` and keep them running until `down` (or Ctrl-C).
    /// `down`: stop services started by `up`.
    #[arg(value_parser = ["up", "down"])]
    action: String,
    /// Only these services (repeatable, e.g. `--only garage`), next to a running full `up`:
    /// their environment goes to `target/ci-services/<names>.env.sh` (e.g. `garage.env.sh`)
    /// and `down --only <the same names>` stops them.
    #[arg(long = "only", value_name = "SERVICE")]
    only: Vec<String>,
}

/// The name of a selection in file names: `services` for all, else the names joined by `+`.
fn selection_name(only: &[String]) -> String {
    if only.is_empty() {
        "services".to_owned()
    } else {
        let mut names = only.to_vec();
        names.sort();
        names.dedup();
        names.join("+")
    }
}

/// The file `services up` writes the test environment to (`source` it in a shell):
/// `env.sh` for all services, `<names>.env.sh` for `--only`.
fn env_file(only: &[String]) -> std::path::PathBuf {
    let name = if only.is_empty() {
        "env.sh".to_owned()
    } else {
        format!("{}.env.sh", selection_name(only))
    };
    crate::util::target_dir().join("ci-services").join(name)
}

/// The file whose appearance tells a running `services up` (of the same selection) to stop.
fn stop_file(only: &[String]) -> std::path::PathBuf {
    crate::util::target_dir()
        .join("ci-services")
        .join(format!("{}.stop", selection_name(only)))
}

/// `cargo xtask services up|down`: the test services for local runs of `cargo nextest`.
pub fn run_services(args: &ServicesArgs) -> Result<()> {
    let services = select(&args.only)?;
    let stop = stop_file(&args.only);
    if args.action == "down" {
        if let Some(dir) = stop.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&stop, b"stop\n")?;
        eprintln!(
            "asked the running `cargo xtask services up{}` to stop its services",
            args.only.iter().map(|n| format!(" --only {n}")).collect::<String>()
        );
        return Ok(());
    }
    let _ = std::fs::remove_file(&stop);
    let prereqs: Vec<Prereq> = services.iter().flat_map(|s| s.prereqs()).collect();
    crate::prereqs::ensure(&prereqs)?;
    let running = Running::start(services)?;
    let env = env_file(&args.only);
    if let Some(dir) = env.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text: String = running
        .env()
        .iter()
        .map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', "'\\''")))
        .collect();
    std::fs::write(&env, text)?;
    eprintln!(
        "services up; environment in {} (run `cargo xtask services down{}` to stop)",
        env.display(),
        args.only.iter().map(|n| format!(" --only {n}")).collect::<String>()
    );
    while !stop.exists() {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let _ = std::fs::remove_file(&stop);
    let _ = std::fs::remove_file(&env);
    running.stop()
}

/// Started services; stops them (in reverse order) on [`Running::stop`] or when dropped.
#[derive(Debug)]
pub struct Running {
    started: Vec<Box<dyn Service>>,
    env: Vec<(String, String)>,
}

impl Running {
    /// Starts `services` in order. If one fails, those already started are stopped.
    pub fn start(services: Vec<Box<dyn Service>>) -> Result<Self> {
        let mut running = Self {
            started: Vec::new(),
            env: Vec::new(),
        };
        for mut service in services {
            let name = service.name();
            let t0 = std::time::Instant::now();
            eprintln!("  starting service {name}");
            match service.start() {
                Ok(env) => {
                    eprintln!("  service {name} ready in {}", fmt_duration(t0.elapsed()));
                    running.env.extend(env);
                    running.started.push(service);
                }
                Err(err) => {
                    // Stop what this service may have left behind; `running` stops the rest.
                    if let Err(stop_err) = service.stop() {
                        eprintln!("  warning: stopping service {name}: {stop_err:#}");
                    }
                    return Err(err).with_context(|| format!("starting service {name}"));
                }
            }
        }
        Ok(running)
    }

    /// Environment variables the tests need to reach the services.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Stops every service, reporting all failures.
    pub fn stop(mut self) -> Result<()> {
        let failures = self.stop_all();
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("stopping services failed: {}", failures.join("; "))
        }
    }

    fn stop_all(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        while let Some(mut service) = self.started.pop() {
            let name = service.name();
            eprintln!("  stopping service {name}");
            if let Err(err) = service.stop() {
                failures.push(format!("{name}: {err:#}"));
            }
        }
        failures
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for failure in self.stop_all() {
            eprintln!("  warning: stopping service {failure}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Debug)]
    struct Fake {
        name: &'static str,
        fail_start: bool,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Service for Fake {
        fn name(&self) -> &'static str {
            self.name
        }

        fn start(&mut self) -> Result<Vec<(String, String)>> {
            self.log.lock().unwrap().push(format!("start {}", self.name));
            if self.fail_start {
                bail!("boom");
            }
            Ok(vec![(format!("SVC_{}", self.name), "1".into())])
        }

        fn stop(&mut self) -> Result<()> {
            self.log.lock().unwrap().push(format!("stop {}", self.name));
            Ok(())
        }
    }

    fn fakes(log: &Arc<Mutex<Vec<String>>>, fail_second: bool) -> Vec<Box<dyn Service>> {
        ["a", "b"]
            .into_iter()
            .map(|name| {
                Box::new(Fake {
                    name,
                    fail_start: fail_second && name == "b",
                    log: Arc::clone(log),
                }) as Box<dyn Service>
            })
            .collect()
    }

    #[test]
    fn stops_in_reverse_order_when_dropped() {
        let log = Arc::default();
        {
            let running = Running::start(fakes(&log, false)).unwrap();
            assert_eq!(running.env().len(), 2);
        }
        assert_eq!(*log.lock().unwrap(), ["start a", "start b", "stop b", "stop a"]);
    }

    #[test]
    fn failed_start_stops_everything_started() {
        let log = Arc::default();
        assert!(Running::start(fakes(&log, true)).is_err());
        assert_eq!(*log.lock().unwrap(), ["start a", "start b", "stop b", "stop a"]);
    }

    #[test]
    fn only_selects_named_services_and_rejects_unknown_ones() {
        let names = |only: &[&str]| -> Vec<&'static str> {
            let only: Vec<String> = only.iter().map(|s| (*s).to_owned()).collect();
            select(&only).unwrap().iter().map(|s| s.name()).collect()
        };
        assert_eq!(names(&["garage"]), ["garage"]);
        assert_eq!(names(&[]).len(), all().len());
        assert!(names(&[]).contains(&"garage"));
        let err = select(&["s3".to_owned()]).unwrap_err().to_string();
        assert!(err.contains("\"s3\"") && err.contains("garage"), "{err}");
    }

    #[test]
    fn a_selection_has_its_own_env_and_stop_files() {
        assert!(env_file(&[]).ends_with("ci-services/env.sh"));
        assert!(stop_file(&[]).ends_with("ci-services/services.stop"));
        let only = ["garage".to_owned()];
        assert!(env_file(&only).ends_with("ci-services/garage.env.sh"));
        assert!(stop_file(&only).ends_with("ci-services/garage.stop"));
        let two = ["smtp".to_owned(), "garage".to_owned()];
        assert_eq!(env_file(&two), env_file(&["garage".to_owned(), "smtp".to_owned()]));
    }

    #[test]
    fn explicit_stop_does_not_stop_twice() {
        let log = Arc::default();
        Running::start(fakes(&log, false)).unwrap().stop().unwrap();
        assert_eq!(log.lock().unwrap().len(), 4);
    }
}

//! Background services the tests need (later: Docker engine, Samba, a MongoDB-wire server).
//!
//! `cargo xtask ci` collects the prerequisites of every service with the other prerequisites,
//! starts all services (via [`Running::start`]) right before the first test step, passes the
//! environment variables they return to the test commands, and stops them after the last test
//! step. [`Running`] also stops them when dropped, so they are stopped when a test step fails
//! or any error unwinds out of `ci`.
//!
//! To add one: implement [`Service`] and add it to [`all`]. A service should spawn its daemon
//! with its state under `target/ci-services/<name>/` and make `stop` idempotent.

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

/// Every service the tests need. None yet.
pub fn all() -> Vec<Box<dyn Service>> {
    Vec::new()
}

/// The prerequisites of every service in [`all`].
pub fn prereqs() -> Vec<Prereq> {
    all().iter().flat_map(|s| s.prereqs()).collect()
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

//! `packratd service install|uninstall|start|stop|status`: packratd as a Windows service.
//!
//! `install` registers the service `packratd` (automatic start, LocalSystem) to run this
//! executable as `packratd.exe --config CONFIG service run`; the service manager then calls the
//! service entry point, which runs the daemon exactly as a console start does (logs in the
//! configured log directory: a service has no console) and turns the manager's *stop* and
//! *shutdown* controls into the daemon's graceful shutdown (the path SIGTERM takes on Linux).
//! On other systems every action fails with a pointer to systemd.

use std::path::PathBuf;

use packrat_app::exit::ExitError;

/// The service's name in the service manager.
pub const NAME: &str = "packratd";

/// What to do with the Windows service.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Action {
    /// Register packratd as a service (automatic start) running with this `--config`.
    Install,
    /// Stop the service if it runs, and remove it.
    Uninstall,
    /// Start the installed service and wait until it runs.
    Start {
        /// Give up waiting after this many seconds (exit 1).
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
    },
    /// Stop the service gracefully and wait until it stopped.
    Stop {
        /// Give up waiting after this many seconds (exit 1).
        #[arg(long, value_name = "SECONDS", default_value_t = 120)]
        timeout: u64,
    },
    /// Show whether the service is installed and its state; exit 0 when it runs, 1 when not.
    Status,
    /// The entry point the service manager starts (not for use by hand).
    #[command(hide = true)]
    Run,
}

/// Runs `action`; `config` is the daemon's `--config` (an absolute path is stored at install).
pub fn run(action: &Action, config: Option<PathBuf>, log_json: bool) -> Result<(), ExitError> {
    imp::run(action, config, log_json)
}

#[cfg(not(windows))]
mod imp {
    use super::*;

    pub fn run(_action: &Action, _config: Option<PathBuf>, _log_json: bool) -> Result<(), ExitError> {
        Err(ExitError::usage(format!(
            "`packratd service` manages the Windows service {NAME}; on Linux run packratd under systemd \
             (docs/packratd.service, see docs/daemon.md)"
        )))
    }
}

#[cfg(windows)]
mod imp {
    use std::ffi::OsString;
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use windows_service::service::{
        ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode, ServiceInfo,
        ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
    use windows_service::{define_windows_service, service_dispatcher};

    use super::*;

    /// The daemon's arguments, for the service entry point (called by the service manager).
    static ARGS: OnceLock<(Option<PathBuf>, bool)> = OnceLock::new();

    fn failed(what: &str) -> impl FnOnce(windows_service::Error) -> ExitError + '_ {
        move |e| {
            let hint = match &e {
                windows_service::Error::Winapi(io) if io.raw_os_error() == Some(5) => {
                    " (access denied: run it from an administrator prompt)"
                }
                windows_service::Error::Winapi(io) if io.raw_os_error() == Some(1060) => {
                    " (the service is not installed: `packratd --config CONFIG service install`)"
                }
                windows_service::Error::Winapi(io) if io.raw_os_error() == Some(1073) => {
                    " (it is installed already: `packratd service uninstall` first to change it)"
                }
                _ => "",
            };
            ExitError::failed(format!("cannot {what} the Windows service {NAME}: {e}{hint}"))
        }
    }

    fn manager(access: ServiceManagerAccess) -> Result<ServiceManager, ExitError> {
        ServiceManager::local_computer(None::<&str>, access).map_err(failed("reach the service manager for"))
    }

    pub fn run(action: &Action, config: Option<PathBuf>, log_json: bool) -> Result<(), ExitError> {
        match action {
            Action::Install => install(config, log_json),
            Action::Uninstall => uninstall(),
            Action::Start { timeout } => start(Duration::from_secs(*timeout)),
            Action::Stop { timeout } => stop(Duration::from_secs(*timeout)),
            Action::Status => {
                let m = manager(ServiceManagerAccess::CONNECT)?;
                let s = m
                    .open_service(NAME, ServiceAccess::QUERY_STATUS)
                    .map_err(failed("open"))?;
                let st = s.query_status().map_err(failed("query"))?;
                let pid = st.process_id.map(|p| format!(" (pid {p})")).unwrap_or_default();
                println!("service {NAME}: {}{pid}", state_name(st.current_state));
                if st.current_state == ServiceState::Running {
                    Ok(())
                } else {
                    Err(ExitError {
                        code: packrat_app::exit::FAILED,
                        message: format!("service {NAME} is not running"),
                    })
                }
            }
            Action::Run => {
                let _ = ARGS.set((config, log_json));
                service_dispatcher::start(NAME, ffi_service_main).map_err(|e| {
                    ExitError::failed(format!(
                        "cannot connect to the service manager: {e}; `service run` is what the service manager \
                         starts: start packratd by hand without it, or with `packratd service start`"
                    ))
                })
            }
        }
    }

    fn install(config: Option<PathBuf>, log_json: bool) -> Result<(), ExitError> {
        let config = config.ok_or_else(|| {
            ExitError::usage(
                "give the config the service runs with: `packratd --config D:\\packrat\\packrat.toml service install`",
            )
        })?;
        let config = std::path::absolute(&config).unwrap_or(config);
        // A config that does not load would make every start of the service fail: refuse it now.
        packrat_app::config::Config::load(&config)?;
        let exe = std::env::current_exe()
            .map_err(|e| ExitError::failed(format!("cannot tell where packratd.exe is: {e}")))?;
        let mut launch_arguments: Vec<OsString> = vec!["--config".into(), config.clone().into()];
        if log_json {
            launch_arguments.push("--log-json".into());
        }
        launch_arguments.extend(["service".into(), "run".into()]);
        let info = ServiceInfo {
            name: NAME.into(),
            display_name: "packrat backup daemon".into(),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: exe.clone(),
            launch_arguments,
            dependencies: vec![],
            account_name: None,
            account_password: None,
        };
        let m = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
        let s = m
            .create_service(&info, ServiceAccess::CHANGE_CONFIG)
            .map_err(failed("install"))?;
        let _ = s.set_description("packrat: scheduled backups, replication, verification and retention");
        println!(
            "service {NAME} installed: {} --config {} (automatic start); start it with `packratd service start`",
            exe.display(),
            config.display()
        );
        Ok(())
    }

    /// Starts the service and waits until it reports *running* (like `net start`): a service
    /// that stops again at once (a config that no longer loads, a port in use) is a failure
    /// with its exit code, not a "started".
    fn start(timeout: Duration) -> Result<(), ExitError> {
        let m = manager(ServiceManagerAccess::CONNECT)?;
        let s = m
            .open_service(NAME, ServiceAccess::START | ServiceAccess::QUERY_STATUS)
            .map_err(failed("open"))?;
        s.start::<&str>(&[]).map_err(failed("start"))?;
        let t0 = Instant::now();
        // Wine's and Windows' managers may still say *stopped* for a moment after StartService.
        let mut seen_pending = false;
        await_state(&s, timeout, "", |st| match st.current_state {
            ServiceState::Running => Some(Ok(())),
            ServiceState::Stopped if seen_pending || t0.elapsed() > Duration::from_secs(5) => {
                let code = match st.exit_code {
                    ServiceExitCode::ServiceSpecific(c) => format!("exit code {c}"),
                    ServiceExitCode::Win32(c) => format!("Windows error {c}"),
                };
                Some(Err(ExitError::failed(format!(
                    "service {NAME} stopped right after its start ({code}); the reason is in packratd.log \
                     in the configured log directory ([daemon] log_dir, default STATE_DIR\\logs)"
                ))))
            }
            ServiceState::Stopped => None,
            _ => {
                seen_pending = true;
                None
            }
        })?;
        println!("service {NAME} started");
        Ok(())
    }

    fn stop(timeout: Duration) -> Result<(), ExitError> {
        let m = manager(ServiceManagerAccess::CONNECT)?;
        let s = m
            .open_service(NAME, ServiceAccess::STOP | ServiceAccess::QUERY_STATUS)
            .map_err(failed("open"))?;
        if s.query_status().map_err(failed("query"))?.current_state == ServiceState::Stopped {
            println!("service {NAME} is not running");
            return Ok(());
        }
        s.stop().map_err(failed("stop"))?;
        await_state(
            &s,
            timeout,
            " (its jobs get the grace period, then they are cancelled)",
            |st| (st.current_state == ServiceState::Stopped).then_some(Ok(())),
        )?;
        println!("service {NAME} stopped");
        Ok(())
    }

    /// Polls the service's status until `done` gives a result, or fails after `timeout` naming
    /// the state it is still in (`why` explains a long wait).
    fn await_state(
        s: &windows_service::service::Service,
        timeout: Duration,
        why: &str,
        mut done: impl FnMut(&ServiceStatus) -> Option<Result<(), ExitError>>,
    ) -> Result<(), ExitError> {
        let t0 = Instant::now();
        loop {
            let st = s.query_status().map_err(failed("query"))?;
            if let Some(result) = done(&st) {
                return result;
            }
            if t0.elapsed() > timeout {
                return Err(ExitError::failed(format!(
                    "service {NAME} is still {} after {} s{why}; see packratd.log in the configured log directory",
                    state_name(st.current_state),
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn uninstall() -> Result<(), ExitError> {
        let m = manager(ServiceManagerAccess::CONNECT)?;
        let s = m
            .open_service(
                NAME,
                ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
            )
            .map_err(failed("open"))?;
        if s.query_status().map_err(failed("query"))?.current_state != ServiceState::Stopped {
            stop(Duration::from_secs(120))?;
        }
        s.delete().map_err(failed("remove"))?;
        println!("service {NAME} removed");
        Ok(())
    }

    fn state_name(s: ServiceState) -> &'static str {
        match s {
            ServiceState::Stopped => "stopped",
            ServiceState::StartPending => "starting",
            ServiceState::StopPending => "stopping",
            ServiceState::Running => "running",
            ServiceState::ContinuePending => "continuing",
            ServiceState::PausePending => "pausing",
            ServiceState::Paused => "paused",
        }
    }

    define_windows_service!(ffi_service_main, service_main);

    fn status(state: ServiceState, accept: ServiceControlAccept, code: u32) -> ServiceStatus {
        ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code: if code == 0 {
                ServiceExitCode::Win32(0)
            } else {
                ServiceExitCode::ServiceSpecific(code)
            },
            checkpoint: 0,
            wait_hint: Duration::from_secs(if state == ServiceState::StopPending { 90 } else { 0 }),
            process_id: None,
        }
    }

    /// Called by the service manager on a thread of its own: runs the daemon until a stop.
    fn service_main(_args: Vec<OsString>) {
        let handler = |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                crate::daemon::request_stop("the Windows service manager");
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        };
        let Ok(handle) = service_control_handler::register(NAME, handler) else {
            return;
        };
        let _ = handle.set_service_status(status(
            ServiceState::Running,
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN,
            0,
        ));
        let (config, log_json) = ARGS.get().cloned().unwrap_or((None, false));
        let code = match crate::start(config, log_json) {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!("{}", e.message);
                u32::from(e.code)
            }
        };
        let _ = handle.set_service_status(status(ServiceState::Stopped, ServiceControlAccept::empty(), code));
    }
}

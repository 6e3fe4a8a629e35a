//! Logs to stdout and to daily-rotated files: `packratd.log.YYYY-MM-DD` (everything) and
//! `alerts.log.YYYY-MM-DD` (alert notices only), as text or JSON lines.

use packrat_app::config::Config;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

/// Keeps the background writers alive; dropping it flushes the files.
#[derive(Debug)]
pub struct Guards {
    _guards: Vec<WorkerGuard>,
}

type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global subscriber. `RUST_LOG` overrides `[daemon] log_level`.
pub fn init(cfg: &Config, json_flag: bool) -> Result<Guards, String> {
    let json = json_flag || cfg.daemon.log_json;
    let dir = cfg.log_dir();
    std::fs::create_dir_all(&dir).map_err(|e| {
        format!(
            "cannot create the log directory {}: {e}; create it or set [daemon] log_dir",
            dir.display()
        )
    })?;
    let (main, g1) = tracing_appender::non_blocking(tracing_appender::rolling::daily(&dir, "packratd.log"));
    let (alerts, g2) = tracing_appender::non_blocking(tracing_appender::rolling::daily(&dir, "alerts.log"));
    let filter = || {
        EnvFilter::try_from_default_env()
            .or_else(|_| EnvFilter::try_new(&cfg.daemon.log_level))
            .unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let alert_only = || Targets::new().with_target(alerts::ALERT_TARGET, tracing::Level::TRACE);

    let layers: Vec<Boxed> = if json {
        vec![
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stdout)
                .with_filter(filter())
                .boxed(),
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(main)
                .with_filter(filter())
                .boxed(),
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(alerts)
                .with_filter(alert_only())
                .boxed(),
        ]
    } else {
        vec![
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::io::stdout)
                .with_filter(filter())
                .boxed(),
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(main)
                .with_filter(filter())
                .boxed(),
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(alerts)
                .with_filter(alert_only())
                .boxed(),
        ]
    };
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok(Guards { _guards: vec![g1, g2] })
}

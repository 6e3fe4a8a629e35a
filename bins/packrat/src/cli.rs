//! Command-line definition (clap).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  the operation ran and failed (job failed, verification found problems, restore failed)
  2  bad usage or configuration (unknown flag, invalid config, unknown plan or pack,
     no or the wrong identity for an encrypted pack)
  3  busy: the plan is already running in another packrat process (`run --all`: every plan was)
130  `run` was cancelled by SIGINT / Ctrl-C or by `packrat cancel` (the job is recorded
     `cancelled`, its staging removed)
143  `run` was cancelled by SIGTERM (likewise)";

/// packrat: backups of SQLite, MongoDB and Docker apps into verified packs.
#[derive(Debug, Parser)]
#[command(name = "packrat", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Config file (TOML).
    #[arg(long, short = 'c', global = true, env = "PACKRAT_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More log output on stderr (-v info, -vv debug).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a plan once now; prints the job id and the pack path.
    Run(RunArgs),
    /// List jobs, newest first.
    Jobs(JobsArgs),
    /// Cancel a queued or running job, whether `packrat run` (any process) or packratd runs it;
    /// exit 2 when the job is unknown or already finished.
    Cancel {
        /// Job id.
        id: i64,
        /// Wait this many seconds for the job to end.
        #[arg(long, default_value_t = 30, value_name = "SECONDS")]
        wait: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The daemon: stop it gracefully, or show whether it runs.
    Daemon {
        /// stop or status.
        #[command(subcommand)]
        action: crate::control::DaemonAction,
    },
    /// Watermarks per collection (what incremental runs start from), failures and last backup;
    /// `reset` moves one by hand (audited).
    Watermarks(crate::control::WatermarksArgs),
    /// Show one job.
    Job {
        /// Job id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Statistics, active jobs and the last job of every plan.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the packs of a plan (or all plans) on every sink.
    List {
        /// Only this plan.
        plan: Option<String>,
        /// Only this sink.
        #[arg(long)]
        sink: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a pack: sizes and checksums; --deep also decompresses and checks every artifact.
    Verify(VerifyArgs),
    /// Restore from a pack.
    Restore(Box<RestoreArgs>),
    /// Check or show the configuration.
    Config {
        /// check or show.
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Quick start: create a demo SQLite database and back it up to a local directory.
    Demo {
        /// Directory for the demo database, config, state and packs.
        #[arg(long, default_value = "packrat-demo")]
        dir: PathBuf,
    },
    /// Apply each plan's retention to its sinks; prints keep/remove with the reason per pack.
    Prune(crate::prune::PruneArgs),
    /// Show what the replica's strict mount check sees at PATH; exit 1 unless it is an allowed mount.
    MountCheck(crate::mount_check::MountCheckArgs),
    /// Daily self-check: shares mounted, targets writable, latest jobs completed and synced, no
    /// leftovers; one line per check with what to do; exit 1 when one fails.
    Doctor(crate::doctor::DoctorArgs),
    /// Alert channels: send a test message, list channels and firing alerts.
    Alert {
        /// test or list.
        #[command(subcommand)]
        action: crate::alert::AlertAction,
    },
    /// Age identities for encrypted packs: generate one, show its recipient.
    Key {
        /// generate or recipient.
        #[command(subcommand)]
        action: crate::key::KeyAction,
    },
    /// A restore drill of a plan now: its newest pack restored into a scratch place, checked
    /// against the pack's record, removed; --verify deep-verifies it on every sink instead.
    Drill(crate::drill::DrillArgs),
    /// The recorded verifications and restore drills, newest first.
    Drills(crate::drill::DrillsArgs),
    /// The audit trail: who ran, restored, deleted, verified or cancelled what, and when
    /// (append-only).
    Audit(crate::audit::AuditArgs),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `packrat run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Plan name.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub plan: Option<String>,
    /// Every enabled plan once, at most `parallelism` at a time.
    #[arg(long)]
    pub all: bool,
    /// Full backup (the default).
    #[arg(long, conflicts_with = "incremental")]
    pub full: bool,
    /// Incremental backup (sources without increments do a full copy).
    #[arg(long)]
    pub incremental: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `packrat jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Only this plan.
    #[arg(long)]
    pub plan: Option<String>,
    /// Only jobs in this status (queued, running, completed, failed, cancelled, interrupted).
    #[arg(long)]
    pub status: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which pack: a path, `PLAN/PACK_ID`, a pack id, or `--latest PLAN`.
#[derive(Debug, Args)]
pub struct PackSelector {
    /// A pack directory, `PLAN/PACK_ID`, or a pack id.
    #[arg(required_unless_present = "latest", conflicts_with = "latest")]
    pub pack: Option<String>,
    /// The newest pack of this plan.
    #[arg(long, value_name = "PLAN")]
    pub latest: Option<String>,
    /// Look in this sink only (default: every sink, in config order).
    #[arg(long)]
    pub sink: Option<String>,
    /// An age identity file to read an encrypted pack with (repeatable); the plan's
    /// `[plans.NAME.encrypt]` identity is used too.
    #[arg(long, value_name = "FILE")]
    pub identity: Vec<PathBuf>,
}

/// `packrat verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The pack.
    #[command(flatten)]
    pub pack: PackSelector,
    /// Decompress and check every artifact (SQLite integrity_check, …).
    #[arg(long)]
    pub deep: bool,
    /// Data sampling against the live MongoDB source.
    #[command(flatten)]
    pub sample: crate::restore_mongo::SampleArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `packrat restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The pack.
    #[command(flatten)]
    pub pack: PackSelector,
    /// Restore the artifacts of this source (needed when the pack holds several).
    #[arg(long)]
    pub source: Option<String>,
    /// Where to restore a SQLite database to (the database file to create). For MongoDB packs use
    /// --to-uri-env or --to-uri-file.
    #[arg(long, value_name = "PATH")]
    pub to: Option<PathBuf>,
    /// MongoDB restore options.
    #[command(flatten)]
    pub mongo: crate::restore_mongo::MongoRestoreArgs,
    /// Docker restore options.
    #[command(flatten)]
    pub docker: Box<crate::restore_docker::DockerRestoreArgs>,
    /// Replace an existing target.
    #[arg(long)]
    pub overwrite: bool,
    /// Restore from a damaged pack: only the artifacts that check out are restored, each damaged
    /// one is skipped and named (exit 1 when anything was skipped). Without it, a pack with any
    /// problem is refused before anything is written.
    #[arg(long)]
    pub allow_damaged: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `packrat config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Parse and validate the config; exit 2 with file, line and key on error.
    Check,
    /// Print the effective config (paths resolved, secrets redacted).
    Show,
}

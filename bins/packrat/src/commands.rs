//! The subcommands.

use std::path::Path;
use std::sync::Arc;

use backup_core::state::JobFilter;
use backup_core::{BackupKind, JobStatus, Pack, PackReader, Sink, Trigger, VerifyLevel, VerifyReport};
use clap::CommandFactory;

use crate::cli::{Cli, Command, ConfigAction, JobsArgs, PackSelector, RestoreArgs, RunArgs, VerifyArgs};
use crate::progress::TermProgress;
use crate::{CliError, exit, output, wire};

/// Runs the parsed command; returns the exit code.
pub async fn dispatch(cli: Cli) -> Result<u8, CliError> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Run(a) => run(config, a).await,
        Command::Jobs(a) => jobs(config, a),
        Command::Job { id, json } => job(config, id, json),
        Command::Status { json } => crate::daemon_client::status(config, json).await,
        Command::Prune(a) => crate::prune::run(config, a).await,
        Command::MountCheck(a) => crate::mount_check::run(config, a),
        Command::Doctor(a) => crate::doctor::run(config, a).await,
        Command::Alert { action } => crate::alert::run(config, action).await,
        Command::List { plan, sink, json } => list(config, plan.as_deref(), sink.as_deref(), json).await,
        Command::Verify(a) => verify(config, a).await,
        Command::Restore(a) => restore(config, *a).await,
        Command::Config { action } => config_cmd(config, action),
        Command::Demo { dir } => crate::demo::run(&dir).await,
        Command::Key { action } => crate::key::run(action),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "packrat", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            Ok(exit::OK)
        }
    }
}

async fn run(config: Option<&Path>, a: RunArgs) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    let plan = wire::plan(&cfg, &a.plan)?;
    let state = wire::open_state(&cfg)?;
    let kind = if a.incremental {
        BackupKind::Incremental
    } else {
        BackupKind::Full
    };
    let progress = Arc::new(TermProgress::new());
    let runner = backup_core::Runner::new(state)
        .with_progress(progress.clone())
        .with_plan_sinks(wire::plan_sinks(&cfg));
    // Ctrl-C / SIGTERM cancel the job: it ends `cancelled`, its staging is removed, stopped
    // containers start again; a second signal exits at once.
    let cancel = backup_core::CancelToken::new();
    let signals = crate::signals::cancel_on_signal(cancel.clone());
    let result = runner.run_cancellable(&plan, kind, Trigger::Manual, &cancel).await;
    progress.finish();
    let run = result?;
    if run.is_success() {
        crate::prune::after_job(&cfg, &plan).await;
    }
    if a.json {
        output::json(&output::run_json(&run));
    } else {
        output::run_human(&run);
    }
    Ok(match run.job.status {
        JobStatus::Completed => exit::OK,
        JobStatus::Cancelled => signals.exit_code(),
        _ => exit::FAILED,
    })
}

fn jobs(config: Option<&Path>, a: JobsArgs) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    let state = wire::open_state(&cfg)?;
    let status = match a.status.as_deref() {
        Some(s) => Some(s.parse::<JobStatus>().map_err(CliError::usage)?),
        None => None,
    };
    let jobs = state.jobs(&JobFilter {
        plan: a.plan,
        status,
        limit: Some(a.limit),
    })?;
    if a.json {
        output::json(&jobs);
    } else {
        output::jobs_table(&jobs);
    }
    Ok(exit::OK)
}

fn job(config: Option<&Path>, id: i64, json: bool) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    let state = wire::open_state(&cfg)?;
    let job = state.job(id)?.ok_or_else(|| CliError::usage(format!("no job {id}")))?;
    if json {
        output::json(&job);
    } else {
        output::job_detail(&job);
    }
    Ok(exit::OK)
}

pub(crate) fn status(config: Option<&Path>, json: bool) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    let state = wire::open_state(&cfg)?;
    let status = output::Status::collect(&cfg, &state)?;
    if json {
        output::json(&status);
    } else {
        status.print_human();
    }
    Ok(exit::OK)
}

async fn list(config: Option<&Path>, plan: Option<&str>, sink: Option<&str>, json: bool) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    if let Some(p) = plan {
        cfg.plan(p)?;
    }
    let mut all = Vec::new();
    for s in wire::sinks(&cfg, sink)? {
        all.extend(s.list(plan).await?);
    }
    if json {
        output::json(&all);
    } else {
        output::packs_table(&all);
    }
    Ok(exit::OK)
}

/// Finds the pack a selector names.
async fn resolve_pack(cfg: &packrat_app::config::Config, sel: &PackSelector) -> Result<Arc<dyn PackReader>, CliError> {
    let sinks: Vec<Arc<dyn Sink>> = match (&sel.sink, &sel.latest) {
        (Some(s), _) => vec![wire::sink(cfg, s)?],
        (None, Some(plan)) => cfg
            .plan(plan)?
            .sinks
            .iter()
            .map(|s| wire::sink(cfg, s))
            .collect::<Result<_, _>>()?,
        (None, None) => wire::sinks(cfg, None)?,
    };
    if let Some(plan) = &sel.latest {
        for s in &sinks {
            if let Some(p) = s.list(Some(plan)).await?.last() {
                return Ok(s.open(plan, &p.id).await?);
            }
        }
        return Err(CliError::usage(format!(
            "plan `{plan}` has no packs yet; run `packrat run {plan}` first"
        )));
    }
    let arg = sel.pack.as_deref().unwrap_or_default();
    let as_path = Path::new(arg);
    if as_path.is_dir() {
        return Ok(Pack::open(as_path)?.into_reader());
    }
    let (plan, id) = match arg.split_once('/') {
        Some((p, i)) => (Some(p), i),
        None => (None, arg),
    };
    for s in &sinks {
        if let Some(p) = s.list(plan).await?.into_iter().find(|p| p.id == id) {
            return Ok(s.open(&p.plan, &p.id).await?);
        }
    }
    Err(CliError::usage(format!(
        "no pack `{arg}` found (give a pack directory, PLAN/PACK_ID, a pack id, or --latest PLAN; `packrat list` shows the packs)"
    )))
}

async fn verify(config: Option<&Path>, a: VerifyArgs) -> Result<u8, CliError> {
    let pack = match resolve_pack_for(config, &a.pack).await {
        Ok(p) => Ok(p),
        // A pack directory that cannot be opened is reported, not an error of the command.
        Err(e) if a.pack.latest.is_none() && a.pack.pack.as_deref().is_some_and(|p| Path::new(p).is_dir()) => Err(e),
        Err(e) => return Err(e),
    };
    let level = if a.deep { VerifyLevel::Deep } else { VerifyLevel::Quick };
    let for_sample = pack.as_ref().ok().cloned();
    let mut report = match pack {
        Ok(pack) => tokio::task::spawn_blocking(move || wire::verifier().verify(&*pack, level))
            .await
            .map_err(|e| CliError::failed(format!("verification task failed: {e}")))?,
        Err(e) => {
            let dir = a.pack.pack.as_deref().unwrap_or_default();
            VerifyReport::unreadable(dir, e.message)
        }
    };
    if let Some(p) = for_sample {
        crate::restore_mongo::sample_against_source(config, &a.sample, &p, &mut report, a.json).await?;
    }
    if a.json {
        output::json(&report);
    } else {
        output::verify_human(&report);
    }
    Ok(if report.is_ok() { exit::OK } else { exit::FAILED })
}

/// The pack a selector names: a pack directory (no config needed) or via the config's sinks;
/// an encrypted pack comes with the identities of `--identity` and of its plan's
/// `[plans.NAME.encrypt]`.
pub(crate) async fn resolve_pack_for(
    config: Option<&Path>,
    sel: &PackSelector,
) -> Result<Arc<dyn PackReader>, CliError> {
    let (reader, cfg) = if sel.latest.is_none() && sel.pack.as_deref().is_some_and(|p| Path::new(p).is_dir()) {
        // A config is not needed for a pack directory; one given may hold the plan's identity.
        let cfg = config.and_then(|c| wire::load_config(Some(c)).ok());
        (
            Pack::open(Path::new(sel.pack.as_deref().unwrap_or_default()))?.into_reader(),
            cfg,
        )
    } else {
        let cfg = wire::load_config(config)?;
        (resolve_pack(&cfg, sel).await?, Some(cfg))
    };
    Ok(packrat_app::registry::keyed(cfg.as_ref(), reader, &sel.identity)?)
}

async fn restore(config: Option<&Path>, a: RestoreArgs) -> Result<u8, CliError> {
    // Docker parts are asked for with --volumes/--compose-dir/--images.
    if a.docker.wanted() {
        return crate::restore_docker::restore(config, a).await;
    }
    // MongoDB packs restore into a server (--to-uri-env/--to-uri-file), SQLite ones into --to PATH.
    let Some(to) = a.to.clone() else {
        return crate::restore_mongo::restore(config, a).await;
    };
    let pack = resolve_pack_for(config, &a.pack).await?;
    let candidates: Vec<_> = pack
        .manifest()
        .artifacts
        .iter()
        .filter(|e| a.source.as_deref().is_none_or(|s| e.source == s))
        .filter(|e| e.kind == "sqlite")
        .cloned()
        .collect();
    let entry = match candidates.as_slice() {
        [one] => one.clone(),
        [] => {
            let sources: Vec<_> = pack
                .manifest()
                .artifacts
                .iter()
                .map(|e| format!("{} ({})", e.source, e.kind))
                .collect();
            return Err(CliError::usage(format!(
                "pack {} has no restorable artifact{}; it holds: {}",
                pack.id(),
                a.source
                    .as_deref()
                    .map(|s| format!(" of source `{s}`"))
                    .unwrap_or_default(),
                if sources.is_empty() {
                    "nothing".into()
                } else {
                    sources.join(", ")
                }
            )));
        }
        many => {
            let names: Vec<_> = many.iter().map(|e| e.source.clone()).collect();
            return Err(CliError::usage(format!(
                "pack {} holds several databases; choose one with --source ({})",
                pack.id(),
                names.join(", ")
            )));
        }
    };
    if let Some(dir) = to.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        crate::restore_common::record_target_dir(config, dir);
    }
    let target = to.clone();
    let opts = source_sqlite::RestoreOptions {
        overwrite: a.overwrite,
        allow_damaged: a.allow_damaged,
    };
    let (pack_id, location) = (pack.id().to_string(), pack.location());
    let report = tokio::task::spawn_blocking(move || source_sqlite::restore_with(&*pack, &entry, &target, &opts))
        .await
        .map_err(|e| CliError::failed(format!("restore task failed: {e}")))?
        .map_err(|e| crate::restore_common::restore_failed(&e))?;
    crate::restore_common::warn_damaged(&pack_id, &location, &report.pack_problems, &[]);
    crate::restore_common::note_removed(&report.removed_leftovers);
    if a.json {
        output::json(&serde_json::json!({
            "restored_to": to,
            "bytes": report.bytes,
            "pack_problems": report.pack_problems,
            "removed_leftovers": report.removed_leftovers,
        }));
    } else {
        outln!("restored to {} ({})", to.display(), output::bytes(report.bytes));
    }
    Ok(exit::OK)
}

fn config_cmd(config: Option<&Path>, action: ConfigAction) -> Result<u8, CliError> {
    let cfg = wire::load_config(config)?;
    match action {
        ConfigAction::Check => {
            for name in cfg.plans.keys() {
                wire::plan(&cfg, name)?;
                packrat_app::registry::schedule(&cfg, name).map_err(|e| CliError::usage(e.to_string()))?;
            }
            for (name, pc) in &cfg.plans {
                if let Some((what, fix)) = pc.incremental_only_warning(name) {
                    outln!("warning: {what}\n  fix: {fix}");
                }
            }
            outln!(
                "config OK: {} source(s), {} sink(s), {} plan(s)",
                cfg.sources.len(),
                cfg.sinks.len(),
                cfg.plans.len()
            );
        }
        ConfigAction::Show => out!("{}", cfg.to_redacted_toml()),
    }
    Ok(exit::OK)
}

//! The subcommands.

use std::path::Path;
use std::sync::Arc;

use backup_core::state::AuditAction;
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
        Command::Cancel { id, wait, json } => crate::control::cancel(config, id, wait, json).await,
        Command::Daemon { action } => crate::control::daemon(config, action).await,
        Command::Watermarks(a) => crate::control::watermarks(config, a),
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
        Command::Audit(a) => crate::audit::run(config, a),
        Command::Drill(a) => crate::drill::run(config, a).await,
        Command::Drills(a) => crate::drill::list(config, a),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "packrat", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            Ok(exit::OK)
        }
    }
}

async fn run(config: Option<&Path>, a: RunArgs) -> Result<u8, CliError> {
    let kind = if a.incremental {
        BackupKind::Incremental
    } else {
        BackupKind::Full
    };
    let Some(name) = a.plan.as_deref().filter(|_| !a.all) else {
        return crate::control::run_all(config, kind, a.json).await;
    };
    let cfg = wire::load_config(config)?;
    let plan = wire::plan(&cfg, name)?;
    let state = wire::open_state(&cfg)?;
    let progress = Arc::new(TermProgress::new());
    let runner = backup_core::Runner::new(state.clone())
        .with_progress(progress.clone())
        .with_plan_sinks(wire::plan_sinks(&cfg))
        .with_actor(wire::actor("packrat run"));
    // Ctrl-C / SIGTERM cancel the job: it ends `cancelled`, its staging is removed, stopped
    // containers start again; a second signal exits at once.
    let cancel = backup_core::CancelToken::new();
    let signals = crate::signals::cancel_on_signal(cancel.clone());
    let result = runner.run_cancellable(&plan, kind, Trigger::Manual, &cancel).await;
    progress.finish();
    let run = result?;
    if run.is_success() {
        crate::prune::after_job(&cfg, &plan, &state).await;
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
        return Err(CliError::usage(i18n::tr!("error-plan-no-packs", plan = plan)));
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
    Err(CliError::usage(i18n::tr!("error-pack-not-found", pack = arg)))
}

async fn verify(config: Option<&Path>, a: VerifyArgs) -> Result<u8, CliError> {
    // Quick verification checks the stored (encrypted) bytes against SHA256SUMS: it needs no
    // identity, so a plan identity or passphrase that is not available here must not stop it.
    let keys = a.deep || a.sample.against_source;
    let pack = match resolve_pack_with(config, &a.pack, keys).await {
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
    if let Some(p) = &for_sample {
        crate::restore_mongo::sample_against_source(config, &a.sample, p, &mut report, a.json).await?;
    }
    if let Some(p) = &for_sample {
        crate::restore_common::audit(
            config,
            "packrat verify",
            AuditAction::Verify,
            &p.manifest().plan,
            p.id(),
            &format!(
                "{} verification at {}: {}",
                if a.deep { "deep" } else { "quick" },
                p.location(),
                if report.is_ok() {
                    "ok".to_string()
                } else {
                    format!("{} problem(s)", report.problems.len())
                }
            ),
        );
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
    resolve_pack_with(config, sel, true).await
}

/// [`resolve_pack_for`], with the identities only when `keys`: a quick verification reads no
/// artifact's bytes, so it needs none, and an identity or passphrase missing here is no error.
async fn resolve_pack_with(
    config: Option<&Path>,
    sel: &PackSelector,
    keys: bool,
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
    if !keys {
        return Ok(reader);
    }
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
    let (plan, source) = (pack.manifest().plan.clone(), entry.source.clone());
    let report = tokio::task::spawn_blocking(move || source_sqlite::restore_with(&*pack, &entry, &target, &opts))
        .await
        .map_err(|e| CliError::failed(format!("restore task failed: {e}")))?
        .map_err(|e| crate::restore_common::restore_failed(&e))?;
    crate::restore_common::warn_damaged(&pack_id, &location, &report.pack_problems, &[]);
    crate::restore_common::note_removed(&report.removed_leftovers);
    crate::restore_common::audit(
        config,
        "packrat restore",
        AuditAction::Restore,
        &plan,
        &pack_id,
        &format!(
            "SQLite database of source {source} from {location} to {} ({} bytes{})",
            to.display(),
            report.bytes,
            if a.overwrite { ", replacing it" } else { "" }
        ),
    );
    if a.json {
        output::json(&serde_json::json!({
            "restored_to": to,
            "bytes": report.bytes,
            "pack_problems": report.pack_problems,
            "removed_leftovers": report.removed_leftovers,
        }));
    } else {
        outln!(
            "{}",
            i18n::tr!(
                "restore-done",
                target = to.display().to_string(),
                size = output::bytes(report.bytes)
            )
        );
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
                    outln!(
                        "{}",
                        i18n::tr!("warning-fix", warning = what.as_str(), fix = fix.as_str())
                    );
                }
            }
            outln!(
                "{}",
                i18n::tr!(
                    "config-ok",
                    sources = cfg.sources.len(),
                    sinks = cfg.sinks.len(),
                    plans = cfg.plans.len()
                )
            );
        }
        ConfigAction::Show => out!("{}", cfg.to_redacted_toml()),
    }
    Ok(exit::OK)
}

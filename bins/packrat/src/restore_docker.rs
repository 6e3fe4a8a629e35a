//! `packrat restore` of Docker artifacts: volumes, compose files, images — the command-line side
//! of `source_docker::restore`.

use std::path::{Path, PathBuf};

use clap::Args;
use packrat_app::config::SourceConfig;
use source_docker::RestoreOptions;

use crate::cli::RestoreArgs;
use crate::restore_common::SkippedLine;
use crate::{CliError, exit, output, wire};

/// Docker options of `packrat restore`.
#[derive(Debug, Args)]
pub struct DockerRestoreArgs {
    /// Docker: recreate and fill the volumes of the pack (all, or only the given names,
    /// comma-separated). A non-empty volume is refused unless --overwrite (which removes and
    /// recreates it: stop the app first).
    #[arg(long, value_name = "NAMES", num_args = 0.., value_delimiter = ',')]
    pub volumes: Option<Vec<String>>,
    /// Docker: write the compose files and `.env` into this directory (name it after the project
    /// so that compose uses the same project and volume names).
    #[arg(long, value_name = "DIR")]
    pub compose_dir: Option<PathBuf>,
    /// Docker: load the images saved in the pack (full backups with `include_images`).
    #[arg(long)]
    pub images: bool,
    /// Docker: image for the helper containers that fill the volumes (never started). Default:
    /// the one used for the backup, if present, or one loaded with --images.
    #[arg(long, value_name = "IMAGE")]
    pub helper_image: Option<String>,
    /// Docker: engine address (default: the source's `docker_host`, DOCKER_HOST, or the local socket).
    #[arg(long, value_name = "URL")]
    pub docker_host: Option<String>,
}

impl DockerRestoreArgs {
    /// Whether any Docker part was asked for.
    pub fn wanted(&self) -> bool {
        self.volumes.is_some() || self.compose_dir.is_some() || self.images
    }
}

/// Restores the Docker parts `a.docker` asks for.
pub async fn restore(config: Option<&Path>, a: RestoreArgs) -> Result<u8, CliError> {
    let pack = crate::commands::resolve_pack_for(config, &a.pack).await?;
    let d = &a.docker;
    // Defaults from the source's config, when there is a config naming it.
    let source_cfg = config.and_then(|c| wire::load_config(Some(c)).ok()).and_then(|cfg| {
        let name = a.source.clone().or_else(|| {
            source_docker::docker_artifacts(&pack, None)
                .first()
                .map(|e| e.source.clone())
        })?;
        match cfg.sources.get(&name) {
            Some(SourceConfig::Docker(c)) => Some(c.clone()),
            _ => None,
        }
    });
    let opts = RestoreOptions {
        volumes: d.volumes.clone(),
        compose_dir: d.compose_dir.clone(),
        images: d.images,
        overwrite: a.overwrite,
        helper_image: d.helper_image.clone(),
        docker_host: d
            .docker_host
            .clone()
            .or_else(|| source_cfg.as_ref().and_then(|c| c.docker_host.clone())),
        allow_damaged: a.allow_damaged,
    };
    let sources: std::collections::BTreeSet<String> = source_docker::docker_artifacts(&pack, None)
        .iter()
        .map(|e| e.source.clone())
        .collect();
    if a.source.is_none() && sources.len() > 1 {
        return Err(CliError::usage(format!(
            "pack {} holds several Docker sources; choose one with --source ({})",
            pack.id(),
            sources.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    if let Some(dir) = &d.compose_dir {
        crate::restore_common::record_target_dir(config, dir);
    }
    let report = source_docker::restore(&pack, a.source.as_deref(), &opts)
        .await
        .map_err(|e| match e {
            source_docker::Error::NotInPack(m) => CliError::usage(m),
            e => crate::restore_common::restore_failed(&e),
        })?;
    let lines: Vec<SkippedLine> = report
        .skipped
        .iter()
        .map(|s| SkippedLine {
            path: s.path.clone(),
            what: None,
            reason: s.reason.clone(),
        })
        .collect();
    crate::restore_common::warn_damaged(pack.id(), &pack.location(), &report.pack_problems, &lines);
    crate::restore_common::note_removed(&report.removed_leftovers);
    let mut what: Vec<String> = report.volumes.iter().map(|v| format!("volume {}", v.name)).collect();
    what.extend(report.images.iter().map(|i| format!("image {i}")));
    what.extend(report.compose_files.iter().map(|f| format!("file {}", f.display())));
    crate::restore_common::audit(
        config,
        "packrat restore",
        backup_core::state::AuditAction::Restore,
        &pack.manifest().plan,
        pack.id(),
        &format!(
            "Docker from {}: {}{}{}",
            pack.location(),
            if what.is_empty() {
                "nothing".to_string()
            } else {
                what.join(", ")
            },
            if a.overwrite { " (replacing)" } else { "" },
            if report.skipped.is_empty() {
                String::new()
            } else {
                format!("; {} skipped", report.skipped.len())
            }
        ),
    );
    if a.json {
        output::json(&report);
    } else {
        for i in &report.images {
            outln!("loaded image {i}");
        }
        for v in &report.volumes {
            outln!(
                "restored volume {} ({} entries, {}{}{})",
                v.name,
                v.entries,
                output::bytes(v.bytes),
                if v.created { ", created" } else { "" },
                if v.replaced_partial {
                    ", replacing a partial restore"
                } else {
                    ""
                }
            );
        }
        for f in &report.compose_files {
            outln!("wrote {}", f.display());
        }
    }
    if !report.skipped.is_empty() {
        eprintln!("{}", crate::restore_common::skipped_summary(report.skipped.len()));
        return Ok(exit::FAILED);
    }
    Ok(exit::OK)
}

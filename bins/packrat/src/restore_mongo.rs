//! `packrat restore` of MongoDB packs (one pack or a chain) and `packrat verify --sample N
//! --against-source`: the command-line side of `source_mongo::{restore, sample}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backup_core::config::Secret;
use backup_core::verify::Problem;
use std::sync::Arc;

use backup_core::{Pack, PackReader, VerifyReport};
use clap::Args;
use source_mongo::Connection;
use source_mongo::restore::{self, Mode, Options};

use crate::cli::RestoreArgs;
use crate::restore_common::SkippedLine;
use crate::{CliError, output, wire};

/// MongoDB options of `packrat restore`.
#[derive(Debug, Args)]
pub struct MongoRestoreArgs {
    /// MongoDB: environment variable holding the target's connection URI.
    #[arg(long, value_name = "VAR", conflicts_with = "to_uri_file")]
    pub to_uri_env: Option<String>,
    /// MongoDB: file holding the target's connection URI.
    #[arg(long, value_name = "FILE")]
    pub to_uri_file: Option<PathBuf>,
    /// MongoDB: restore only this collection (repeatable; original name).
    #[arg(long = "collection", value_name = "NAME")]
    pub collections: Vec<String>,
    /// MongoDB: restore into this database instead of the original one.
    #[arg(long, value_name = "DB", alias = "rename-db", alias = "into")]
    pub into_db: Option<String>,
    /// MongoDB: restore collection FROM under the name TO (repeatable).
    #[arg(long, value_name = "FROM=TO")]
    pub rename: Vec<String>,
    /// MongoDB: `insert` into empty collections, `replace` (drop first) or `upsert` by _id.
    #[arg(long, value_name = "MODE", default_value = "insert", value_parser = ["insert", "replace", "upsert"])]
    pub mode: String,
    /// MongoDB: restore the chain ending at the selected pack: the newest full pack before it (or
    /// the oldest pack when there is none), then every later pack of the plan in time order, by
    /// upsert.
    #[arg(long)]
    pub chain: bool,
}

/// Options of `packrat verify` that compare a pack with the live MongoDB source.
#[derive(Debug, Args)]
pub struct SampleArgs {
    /// Compare random documents of every MongoDB collection with the live database (the
    /// source's URI from the config).
    #[arg(long)]
    pub against_source: bool,
    /// Documents per collection to compare.
    #[arg(long, value_name = "N", default_value_t = 10, requires = "against_source")]
    pub sample: usize,
}

/// `packrat restore` of a pack that holds MongoDB collections (or `--chain`).
pub async fn restore(config: Option<&Path>, a: RestoreArgs) -> Result<u8, CliError> {
    let m = &a.mongo;
    let uri = match (&m.to_uri_env, &m.to_uri_file) {
        (None, None) => {
            return Err(CliError::usage(
                "say where to restore to: --to PATH for a SQLite database, --to-uri-env VAR or --to-uri-file FILE \
                 for MongoDB collections",
            ));
        }
        (env, file) => Secret::resolve("restore target URI", env.as_deref(), file.as_deref())?,
    };
    let end = crate::commands::resolve_pack_for(config, &a.pack).await?;
    let (packs, left_out) = if m.chain {
        chain_to(&end, a.allow_damaged)?
    } else {
        (vec![end], 0)
    };
    let mut rename = BTreeMap::new();
    for r in &m.rename {
        let (from, to) = r
            .split_once('=')
            .filter(|(f, t)| !f.is_empty() && !t.is_empty())
            .ok_or_else(|| CliError::usage(format!("--rename {r}: use FROM=TO")))?;
        rename.insert(from.to_string(), to.to_string());
    }
    let opts = Options {
        mode: m.mode.parse::<Mode>().map_err(CliError::usage)?,
        collections: m.collections.clone(),
        source: a.source.clone(),
        into_db: m.into_db.clone(),
        rename,
        allow_damaged: a.allow_damaged,
    };
    for p in &packs {
        if restore::collections(p, opts.source.as_deref()).is_empty() {
            return Err(CliError::usage(format!(
                "pack {} holds no MongoDB collections{}",
                p.id(),
                opts.source
                    .as_deref()
                    .map(|s| format!(" of source `{s}`"))
                    .unwrap_or_default()
            )));
        }
    }
    // Every pack is checked before the server is even contacted; nothing is written if one is
    // refused.
    let checked = restore::prepare(&packs, &opts)
        .await
        .map_err(|e| crate::restore_common::restore_failed(&e))?;
    let mut skipped = Vec::new();
    for c in &checked {
        let lines: Vec<SkippedLine> = c
            .skipped
            .iter()
            .map(|s| SkippedLine {
                path: s.path.clone(),
                what: Some(format!("collection {}.{}", s.database, s.collection)),
                reason: s.reason.clone(),
            })
            .collect();
        crate::restore_common::warn_damaged(c.pack.id(), &c.pack.location(), &c.check.problems, &lines);
        skipped.extend(c.skipped.iter().cloned());
    }
    let conn = Connection::open(&uri)
        .await
        .map_err(|e| CliError::failed(e.to_string()))?;
    let restored = restore::restore_checked(&conn, &checked, &opts)
        .await
        .map_err(|e| CliError::failed(format!("restore failed: {e}")))?;
    // The target by the name of what holds its URI: the URI itself carries credentials.
    let target = match (&m.to_uri_env, &m.to_uri_file) {
        (Some(v), _) => format!("the server of ${v}"),
        (None, Some(f)) => format!("the server of {}", f.display()),
        (None, None) => "?".to_string(),
    };
    for p in &packs {
        let n = restored.iter().filter(|r| r.pack == p.id()).count();
        crate::restore_common::audit(
            config,
            "packrat restore",
            backup_core::state::AuditAction::Restore,
            &p.manifest().plan,
            p.id(),
            &format!(
                "{n} MongoDB collection(s) from {} to {target} ({})",
                p.location(),
                m.mode
            ),
        );
    }
    if a.json {
        output::json(&serde_json::json!({
            "packs": packs.iter().map(|p| p.id().to_string()).collect::<Vec<_>>(),
            "collections": restored,
            "skipped": skipped,
            "pack_problems": checked
                .iter()
                .map(|c| (c.pack.id().to_string(), c.check.problems.clone()))
                .filter(|(_, p)| !p.is_empty())
                .collect::<BTreeMap<_, _>>(),
        }));
    } else {
        for r in &restored {
            outln!(
                "restored {}.{}: {} document(s), {} index(es) ({}) from {}",
                r.database,
                r.collection,
                r.documents,
                r.indexes,
                r.mode,
                r.pack
            );
        }
    }
    if !skipped.is_empty() || left_out > 0 {
        eprintln!("{}", crate::restore_common::skipped_summary(skipped.len() + left_out));
        return Ok(crate::exit::FAILED);
    }
    Ok(crate::exit::OK)
}

/// The chain of packs ending at `end`, from the pack directories next to it (the plan's
/// directory on the same sink). A directory there that is not a readable pack may be a damaged
/// link of the chain: it is refused, or with `allow_damaged` skipped with a warning.
/// Returns the packs and how many directories were left out.
fn chain_to(end: &Arc<dyn PackReader>, allow_damaged: bool) -> Result<(Vec<Arc<dyn PackReader>>, usize), CliError> {
    let plan_dir = end.local_dir().and_then(Path::parent).ok_or_else(|| {
        CliError::usage(format!(
            "pack {} at {} is not in a local directory; --chain reads the packs next to it",
            end.id(),
            end.location()
        ))
    })?;
    let mut packs = Vec::new();
    let rd = std::fs::read_dir(plan_dir)
        .map_err(|e| CliError::failed(format!("cannot list {}: {e}", plan_dir.display())))?;
    let mut unreadable = Vec::new();
    for e in rd.flatten() {
        let hidden = e.file_name().to_string_lossy().starts_with('.');
        if hidden || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match Pack::open(&e.path()) {
            Ok(p) => {
                if p.manifest().plan == end.manifest().plan
                    && (p.manifest().started_at, p.id()) <= (end.manifest().started_at, end.id())
                {
                    let keys = end.keyring().cloned().map(Arc::new);
                    packs.push(backup_core::crypt::keyed(p.into_reader(), keys));
                }
            }
            Err(err) => unreadable.push(err.to_string()),
        }
    }
    unreadable.sort();
    if !unreadable.is_empty() {
        if !allow_damaged {
            return Err(CliError::failed(format!(
                "cannot build the chain, nothing was restored: {}; it may be a pack of the chain. Fix or remove it, \
                 or pass --allow-damaged to restore the chain without it",
                unreadable.join("; ")
            )));
        }
        for u in &unreadable {
            eprintln!("WARNING: left out of the chain (--allow-damaged): {u}");
        }
    }
    Ok((restore::chain(packs), unreadable.len()))
}

/// `verify --against-source`: samples every Mongo collection of `pack` and adds unexplained
/// differences to `report` as problems. Prints a summary line per collection unless `json`.
pub async fn sample_against_source(
    config: Option<&Path>,
    args: &SampleArgs,
    pack: &Arc<dyn PackReader>,
    report: &mut VerifyReport,
    json: bool,
) -> Result<(), CliError> {
    if !args.against_source {
        return Ok(());
    }
    let cfg = wire::load_config(config)?;
    if restore::collections(pack, None).is_empty() {
        return Err(CliError::usage(format!(
            "pack {} holds no MongoDB collections to sample",
            pack.id()
        )));
    }
    for (item, sampled) in packrat_app::drill::sample_against_source(&cfg, pack, args.sample).await? {
        match sampled {
            Ok(r) => {
                if !json {
                    outln!(
                        "sample {}.{}: {} compared, {} identical, {} updated since, {} deleted since, {} differ",
                        r.database,
                        r.collection,
                        r.sampled,
                        r.identical,
                        r.updated_since,
                        r.deleted_since,
                        r.differing.len()
                    );
                }
                if !r.is_ok() {
                    report.problems.push(Problem {
                        path: r.path.clone(),
                        reason: format!(
                            "{} of {} sampled document(s) differ from the live collection {}.{} (_id: {})",
                            r.differing.len(),
                            r.sampled,
                            r.database,
                            r.collection,
                            r.differing.join(", ")
                        ),
                    });
                }
            }
            Err(e) => report.problems.push(Problem {
                path: item.data.path.clone(),
                reason: format!("cannot compare with the live database: {e}"),
            }),
        }
    }
    Ok(())
}

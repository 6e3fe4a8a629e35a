//! What every `packrat restore` shares: the warning when `--allow-damaged` lets a damaged pack
//! through, the note about removed leftovers of killed restores, the record of restore targets
//! (so `packrat doctor` can look there for leftovers), and doctor's leftover check.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use backup_core::restore_temp::{self, LeftoverState};
use backup_core::verify::Problem;
use packrat_app::config::{Config, SourceConfig};

use crate::doctor::Check;
use crate::{CliError, output};

/// File in the state directory listing the directories restores wrote into, one per line.
const TARGETS_FILE: &str = "restore-targets";
/// At most this many directories are remembered (the oldest are forgotten).
const MAX_TARGETS: usize = 200;

/// A selected artifact that `--allow-damaged` left out.
#[derive(Debug, Clone)]
pub struct SkippedLine {
    /// The artifact.
    pub path: String,
    /// What it holds, for the reader (`mes.logs`), if anything more than the path.
    pub what: Option<String>,
    /// Why.
    pub reason: String,
}

/// Prints, on stderr, the problems of a damaged pack that `--allow-damaged` let through and
/// what was skipped. Nothing when `problems` is empty.
pub fn warn_damaged(pack: &str, location: &str, problems: &[Problem], skipped: &[SkippedLine]) {
    if problems.is_empty() {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "WARNING: pack {pack} ({location}) is damaged; restoring only the artifacts that check out (--allow-damaged):"
    );
    for p in problems {
        let _ = writeln!(err, "  problem: {}: {}", p.path, p.reason);
    }
    for s in skipped {
        match &s.what {
            Some(w) => {
                let _ = writeln!(err, "  SKIPPED: {} ({w}): {}", s.path, s.reason);
            }
            None => {
                let _ = writeln!(err, "  SKIPPED: {}: {}", s.path, s.reason);
            }
        }
    }
    if skipped.is_empty() {
        let _ = writeln!(err, "  nothing that this restore uses is damaged; nothing skipped");
    }
}

/// The closing line when something was skipped; the restore then exits 1.
pub fn skipped_summary(n: usize) -> String {
    format!("restore incomplete: {n} damaged artifact(s) skipped (listed above); restore them from another pack")
}

/// Prints, on stderr, the leftovers of killed restores that a restore removed.
pub fn note_removed(removed: &[PathBuf]) {
    for p in removed {
        eprintln!(
            "{}",
            i18n::tr!("restore-removed-leftover", path = p.display().to_string())
        );
    }
}

/// Records `action` of `command` on pack `pack` (of `plan`) in the audit trail of the config's
/// state store. Best effort: without a config that loads (a pack directory restored on another
/// host) there is no state store to record it in, and a failure to record never fails the
/// command that already happened.
pub fn audit(
    config: Option<&Path>,
    command: &str,
    action: backup_core::state::AuditAction,
    plan: &str,
    pack: &str,
    detail: &str,
) {
    let Some(config) = config else { return };
    let Ok(cfg) = Config::load(config) else { return };
    match packrat_app::registry::open_state(&cfg) {
        Ok(state) => state.audit_or_warn(&crate::wire::actor(command), action, Some(plan), pack, detail),
        Err(e) => tracing::warn!("cannot record the {command} in the audit trail: {}", e.chain()),
    }
}

/// Remembers that a restore writes into `dir`, for `packrat doctor`. Best effort: only with a
/// config that loads, and never failing the restore.
pub fn record_target_dir(config: Option<&Path>, dir: &Path) {
    let Some(config) = config else { return };
    let Ok(cfg) = Config::load(config) else { return };
    if let Err(e) = record(&cfg.state_dir, dir) {
        tracing::debug!("cannot record the restore target {}: {e}", dir.display());
    }
}

fn record(state_dir: &Path, dir: &Path) -> std::io::Result<()> {
    let dir = std::path::absolute(dir)?;
    let line = dir.to_string_lossy().into_owned();
    if line.contains('\n') {
        return Ok(());
    }
    let file = state_dir.join(TARGETS_FILE);
    let mut known = recorded_in(state_dir);
    if known.contains(&dir) {
        return Ok(());
    }
    fs::create_dir_all(state_dir)?;
    if known.len() < MAX_TARGETS {
        let mut f = fs::OpenOptions::new().create(true).append(true).open(&file)?;
        return writeln!(f, "{line}");
    }
    known.push(dir);
    let keep = &known[known.len() - MAX_TARGETS..];
    let tmp = state_dir.join(format!(".{TARGETS_FILE}.tmp"));
    let mut text = String::new();
    for d in keep {
        text.push_str(&d.to_string_lossy());
        text.push('\n');
    }
    fs::write(&tmp, text)?;
    fs::rename(&tmp, &file)
}

/// The directories recorded in `state_dir`, oldest first, without repeats.
fn recorded_in(state_dir: &Path) -> Vec<PathBuf> {
    let text = backup_core::pack::read_regular(&state_dir.join(TARGETS_FILE), 1 << 20).unwrap_or_default();
    let mut seen = BTreeSet::new();
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .filter(|p| seen.insert(p.clone()))
        .collect()
}

/// `packrat doctor`: leftovers of killed restores next to the configured SQLite databases, in
/// the directories of the configured compose files, and in every directory a restore wrote
/// into. One line per leftover, with the fix.
pub fn doctor_checks(cfg: &Config) -> Vec<Check> {
    let mut dirs = BTreeSet::new();
    for sc in cfg.sources.values() {
        let file = match sc {
            SourceConfig::Sqlite(c) => Some(c.path.clone()),
            SourceConfig::Docker(c) => c.compose_file.clone(),
            SourceConfig::Mongo(_) => None,
        };
        if let Some(parent) = file.as_deref().and_then(Path::parent)
            && !parent.as_os_str().is_empty()
        {
            dirs.insert(parent.to_path_buf());
        }
    }
    dirs.extend(recorded_in(&cfg.state_dir));
    let mut out = Vec::new();
    let mut in_use = 0;
    for dir in &dirs {
        let name = i18n::tr!("doctor-restore-leftovers-in", dir = dir.display().to_string());
        let found = match restore_temp::find(dir) {
            Ok(f) => f,
            Err(e) => {
                out.push(Check::warn(
                    name,
                    i18n::tr!(
                        "doctor-cannot-look",
                        dir = dir.display().to_string(),
                        error = e.to_string()
                    ),
                    i18n::tr!("doctor-fix-permissions"),
                ));
                continue;
            }
        };
        for l in found {
            let file = l.path.display().to_string();
            match l.state {
                LeftoverState::InUse => in_use += 1,
                LeftoverState::Stale => out.push(Check::warn(
                    name.clone(),
                    i18n::tr!(
                        "doctor-restore-stale",
                        file = file.as_str(),
                        size = output::bytes(l.bytes),
                        target = l.target.display().to_string()
                    ),
                    i18n::tr!(
                        "doctor-fix-restore-stale",
                        file = file.as_str(),
                        target = l.target.display().to_string()
                    ),
                )),
                LeftoverState::Unknown(why) => out.push(Check::warn(
                    name.clone(),
                    i18n::tr!(
                        "doctor-restore-unknown",
                        file = file.as_str(),
                        size = output::bytes(l.bytes),
                        target = l.target.display().to_string(),
                        why = why.to_string()
                    ),
                    i18n::tr!("doctor-fix-restore-unknown", file = file.as_str()),
                )),
            }
        }
    }
    if out.is_empty() {
        out.push(Check::ok(
            i18n::tr!("doctor-restore-leftovers"),
            i18n::tr!(
                "doctor-restore-none",
                dirs = dirs.len(),
                in_use = if in_use > 0 {
                    i18n::tr!("doctor-restore-in-use", count = in_use)
                } else {
                    String::new()
                }
            ),
        ));
    }
    out
}

/// The exit error of a failed restore: exit 2 when the identity for an encrypted pack is
/// missing or wrong (the message says which recipients it expects), 1 otherwise.
pub fn restore_failed<E: std::error::Error + backup_core::HasKind + 'static>(e: &E) -> CliError {
    let message = backup_core::error::error_chain(e);
    if e.kind() == backup_core::ErrorKind::Key {
        CliError::usage(message)
    } else {
        CliError::failed(message)
    }
}

//! Listing, opening, deleting packs on the replica, and the `_tmp` leftovers.
//!
//! Every operation runs the strict mount check first: on an unmounted share the local
//! directory under the mount point is never listed, changed or cleaned.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use backup_core::lock::{ClaimedDir, FileLock, Probe, claim_lock_path};
use backup_core::manifest::MANIFEST_FILE;
use backup_core::pack::check_plan_name;
use backup_core::{Pack, PackId, PackInfo};
use tracing::{debug, info, warn};

use crate::store::{decode_rel, stamp};
use crate::{CifsReplicaSink, ReplicaError, Result, TMP_DIR, Target, io_err};

/// What a `_tmp` entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Leftover {
    /// A copy (or any work directory) of a job that is gone: remove.
    Job,
    /// A pack being deleted: remove.
    Delete,
    /// An earlier copy moved aside for a replacement; `rel` is where it came from. Removed when
    /// something is in place there again, else moved back.
    Replaced { rel: PathBuf },
}

impl CifsReplicaSink {
    /// Names of the real subdirectories of `dir` that are not hidden or ours (`.`, `_`); empty
    /// when `dir` does not exist.
    fn subdirs(&self, dir: &Path) -> Result<Vec<String>> {
        let entries = match fs::read_dir(dir) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("read", dir))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.starts_with(['.', '_']) && entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Candidate pack directories of a plan: `<plan>/<id>` and `<plan>/YYYY/MM/DD/<id>` (both
    /// layouts are read, so switching the layout keeps older packs visible).
    fn pack_dirs(&self, plan_dir: &Path) -> Result<Vec<PathBuf>> {
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let mut out = Vec::new();
        for name in self.subdirs(plan_dir)? {
            let d = plan_dir.join(&name);
            if digits(&name, 4) && !d.join(MANIFEST_FILE).exists() {
                for month in self.subdirs(&d)?.into_iter().filter(|m| digits(m, 2)) {
                    let md = d.join(month);
                    for day in self.subdirs(&md)?.into_iter().filter(|x| digits(x, 2)) {
                        let dd = md.join(day);
                        out.extend(self.subdirs(&dd)?.into_iter().map(|id| dd.join(id)));
                    }
                }
            } else {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Opens `dir` if it is a valid pack of plan `plan`.
    fn open_dir(&self, plan: &str, dir: &Path) -> Result<Pack> {
        let meta = fs::symlink_metadata(dir).map_err(io_err("inspect", dir))?;
        if meta.file_type().is_symlink() || !meta.is_dir() {
            return Err(ReplicaError::NotOurPack {
                path: dir.into(),
                reason: "not a real directory (symlinks are never followed)".into(),
            });
        }
        let pack = Pack::open(dir).map_err(|e| ReplicaError::NotOurPack {
            path: dir.into(),
            reason: match e {
                backup_core::Error::NotAPack { reason, .. } => reason,
                other => other.to_string(),
            },
        })?;
        if pack.manifest().plan != plan {
            return Err(ReplicaError::NotOurPack {
                path: dir.into(),
                reason: format!(
                    "manifest.json names plan `{}`, but the pack sits under `{plan}`",
                    pack.manifest().plan
                ),
            });
        }
        Ok(pack)
    }

    /// The plan directory, if it is a real directory.
    fn plan_dir(&self, t: &Target, plan: &str) -> Result<Option<PathBuf>> {
        check_plan_name(plan)?;
        let dir = t.dir.join(plan);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => {
                debug!(sink = %self.name, path = %dir.display(), "skipping symlinked plan directory");
                Ok(None)
            }
            Ok(m) if m.is_dir() => Ok(Some(dir)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("inspect", &dir)(e)),
        }
    }

    pub(crate) fn list_sync(&self, plan: Option<&str>) -> Result<Vec<PackInfo>> {
        let t = self.target()?;
        let plans = match plan {
            Some(p) => vec![p.to_string()],
            None => self
                .subdirs(&t.dir)?
                .into_iter()
                .filter(|p| check_plan_name(p).is_ok())
                .collect(),
        };
        let mut out = Vec::new();
        for plan in plans {
            let Some(plan_dir) = self.plan_dir(&t, &plan)? else {
                continue;
            };
            for dir in self.pack_dirs(&plan_dir)? {
                match self.open_dir(&plan, &dir) {
                    Ok(pack) => out.push(PackInfo::from_pack(&self.name, &pack)),
                    Err(e) => debug!(sink = %self.name, "skipping {}: {e}", dir.display()),
                }
            }
        }
        out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The directories named `id` among the plan's pack directories.
    fn candidates(&self, t: &Target, plan: &str, id: &str) -> Result<Vec<PathBuf>> {
        PackId::new(id)?;
        let Some(plan_dir) = self.plan_dir(t, plan)? else {
            return Ok(Vec::new());
        };
        Ok(self
            .pack_dirs(&plan_dir)?
            .into_iter()
            .filter(|d| d.file_name().is_some_and(|n| n == id))
            .collect())
    }

    fn find(&self, t: &Target, plan: &str, id: &str) -> Result<Pack> {
        let mut first_error = None;
        for dir in self.candidates(t, plan, id)? {
            match self.open_dir(plan, &dir) {
                Ok(p) => return Ok(p),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| ReplicaError::NotFound {
            plan: plan.into(),
            id: id.into(),
            target: self.path.clone(),
        }))
    }

    pub(crate) fn open_sync(&self, plan: &str, id: &str) -> Result<Pack> {
        let t = self.target()?;
        self.find(&t, plan, id)
    }

    pub(crate) fn exists_sync(&self, plan: &str, id: &str) -> Result<bool> {
        let t = self.target()?;
        check_plan_name(plan)?;
        PackId::new(id)?;
        let flat = t.dir.join(plan).join(id);
        if fs::symlink_metadata(&flat).is_ok() {
            return Ok(true);
        }
        Ok(!self.candidates(&t, plan, id)?.is_empty())
    }

    pub(crate) fn delete_sync(&self, plan: &str, id: &str) -> Result<()> {
        let t = self.target()?;
        let pack = self.find(&t, plan, id)?;
        let dir = pack.dir().to_path_buf();
        // Out of its place with one rename first: a crash part-way through the removal leaves
        // a leftover in _tmp, never a half pack under a final name.
        let tmp = self.ensure_tmp(&t)?;
        let aside = tmp.join(format!("delete_{id}_{}", stamp()));
        // Claimed while it is removed; a prune killed half-way leaves it to the next cleanup.
        let _claim = ClaimedDir::claim_only(&aside)?;
        self.rename(&dir, &aside)?;
        match fs::remove_dir_all(&aside) {
            Ok(()) => {}
            Err(_) if fs::symlink_metadata(&aside).is_err() => {}
            Err(source) => return Err(ReplicaError::DeleteIncomplete { path: aside, source }),
        }
        info!(sink = %self.name, path = %dir.display(), "pack deleted from the replica");
        Ok(())
    }

    /// The `_tmp` entries that are leftovers: work directories whose claim is not held (their
    /// job or prune is gone, see [`backup_core::lock`]).
    pub(crate) fn classify_tmp(&self, t: &Target) -> Result<Vec<(PathBuf, Leftover)>> {
        let tmp = t.dir.join(TMP_DIR);
        match fs::symlink_metadata(&tmp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("inspect", &tmp)(e)),
            Ok(m) if m.file_type().is_symlink() => return Err(ReplicaError::Symlink { path: tmp }),
            Ok(_) => {}
        }
        let entries = fs::read_dir(&tmp).map_err(io_err("read", &tmp))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("read", &tmp))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".lock") && entry.file_type().is_ok_and(|t| t.is_file()) {
                backup_core::lock::remove_orphan_lock(&entry.path());
                continue;
            }
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let kind = if name.starts_with("job_") {
                Some(Leftover::Job)
            } else if name.starts_with("delete_") {
                Some(Leftover::Delete)
            } else if let Some(rest) = name.strip_prefix("replaced_") {
                rest.split_once('+')
                    .and_then(|(_, rel)| decode_rel(rel))
                    .map(|rel| Leftover::Replaced { rel })
            } else {
                None
            };
            let Some(kind) = kind else { continue };
            let path = entry.path();
            if matches!(FileLock::probe(&claim_lock_path(&path)), Ok(Probe::Held(_)) | Err(_)) {
                continue; // a live job (or we cannot tell): not a leftover
            }
            out.push((path, kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    pub(crate) fn clean_leftovers_sync(&self) -> Result<Vec<PathBuf>> {
        let t = self.target()?;
        let mut removed = Vec::new();
        let mut first_error = None;
        for (path, kind) in self.classify_tmp(&t)? {
            // Hold the claim while acting, so that nobody else acts on it at the same time.
            let lock_path = claim_lock_path(&path);
            let lock = match FileLock::probe(&lock_path) {
                Ok(Probe::Free(lock)) => Some(lock),
                Ok(Probe::Missing) => None,
                Ok(Probe::Held(_)) | Err(_) => continue,
            };
            let release = |lock: Option<FileLock>| {
                if let Some(l) = lock {
                    l.release_and_remove();
                }
            };
            if let Leftover::Replaced { rel } = &kind {
                let home = t.dir.join(rel);
                if fs::symlink_metadata(&home).is_err() {
                    // The replacement never got in place: the earlier copy goes back.
                    match fs::rename(&path, &home) {
                        Ok(()) => {
                            info!(sink = %self.name, path = %home.display(), "moved an earlier copy back in place")
                        }
                        Err(e) => {
                            warn!(sink = %self.name, "cannot move {} back to {}: {e}", path.display(), home.display());
                            first_error.get_or_insert_with(|| io_err("move back", &path)(e));
                        }
                    }
                    release(lock);
                    continue;
                }
            }
            match self.retry.run("remove a leftover", || fs::remove_dir_all(&path)) {
                Ok(()) => {
                    info!(sink = %self.name, path = %path.display(), "removed replica leftover");
                    removed.push(path);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(sink = %self.name, path = %path.display(), "cannot remove replica leftover: {e}");
                    first_error.get_or_insert_with(|| io_err("remove leftover", &path)(e));
                }
            }
            release(lock);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }
}

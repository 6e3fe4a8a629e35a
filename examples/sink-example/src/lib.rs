//! # sink-example
//!
//! A packrat sink in 150 lines, as an outside crate would write it: packs live in
//! `<root>/<plan>/<pack id>/` (say, on a removable disk), assembled or copied in a claimed working
//! directory and renamed into place, complete or not at all. Walked through in `docs/writing-a-sink.md`.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let sink = sink_example::CopySink::new("usb", dir.path());
//! assert!(backup_core::SyncSink::list(&sink, None).unwrap().is_empty());
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::config::{Defaults, Section, SinkSection};
use backup_core::lock::{ClaimedDir, sweep};
use backup_core::{Error, JobId, Pack, PackId, PackInfo, PackReader, SealedPack, Sink, SyncSink};
use serde::{Deserialize, Serialize};

/// The sink's config section: `[sinks.NAME] type = "copy"` with `path = ".."`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopySinkConfig {
    /// The directory holding the packs.
    pub path: PathBuf,
}

impl Section for CopySinkConfig {
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        vec![("path", &mut self.path)]
    }
}

impl SinkSection for CopySinkConfig {
    fn build(&self, name: &str, _: &Defaults) -> Arc<dyn Sink> {
        Arc::new(CopySink::new(name, &self.path))
    }
}

/// The names of the subdirectories of `dir` that can be plans or packs (none if it is missing).
fn subdirs(dir: &Path) -> Result<Vec<String>, Error> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r.map_err(Error::io("list", dir))?,
    };
    let dirs = entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir()));
    let names = dirs.map(|e| e.file_name().to_string_lossy().into_owned());
    Ok(names.filter(|n| !n.starts_with('.')).collect())
}

/// Keeps packs as directories under `root`.
#[derive(Debug, Clone)]
pub struct CopySink {
    name: String,
    root: PathBuf,
}

impl CopySink {
    /// A sink named `name` keeping its packs under `root`.
    pub fn new(name: &str, root: &Path) -> CopySink {
        let (name, root) = (name.to_string(), root.to_path_buf());
        CopySink { name, root }
    }

    /// The working directory `name` in `.incoming` (which is created if needed).
    fn work(&self, name: &str) -> Result<PathBuf, Error> {
        let incoming = self.root.join(".incoming");
        fs::create_dir_all(&incoming).map_err(Error::io("create", &incoming))?;
        Ok(incoming.join(name))
    }

    /// The pack `plan`/`id`, only if it is a valid pack of ours: its manifest names this plan and id.
    fn pack(&self, plan: &str, id: &str) -> Result<Pack, Error> {
        let dir = self.root.join(plan).join(id);
        let not_ours = || Error::NotFound(format!("no pack {plan}/{id} in {}", self.root.display()));
        let pack = Pack::open(&dir).map_err(|_| not_ours())?;
        let ours = pack.manifest().plan == plan && pack.manifest().pack_id == id;
        if ours { Ok(pack) } else { Err(not_ours()) }
    }
}

impl SyncSink for CopySink {
    type Error = Error;
    fn name(&self) -> &str {
        &self.name
    }
    fn location(&self) -> String {
        self.root.display().to_string()
    }
    fn stage(&self, job: JobId, _: &str, id: &PackId, _: u64) -> Result<Option<ClaimedDir>, Error> {
        Ok(Some(ClaimedDir::create(&self.work(&format!("job_{job}_{id}"))?)?))
    }
    fn store(&self, pack: &SealedPack, job: JobId) -> Result<PackInfo, Error> {
        let (plan, id, dir) = (&pack.manifest().plan, &pack.manifest().pack_id, pack.dir());
        let to = self.root.join(plan).join(id);
        if to.exists() {
            let exists = format!("{} exists; packs are never overwritten", to.display());
            return Err(Error::Other(exists));
        }
        let mut copy = None; // the claim of a copy, held until the rename
        let from = if dir.starts_with(self.root.join(".incoming")) {
            dir.to_path_buf() // assembled in our staging: claimed by the job
        } else {
            let claim = copy.insert(ClaimedDir::create(&self.work(&format!("job_{job}_{id}"))?)?);
            for rel in Pack::open(dir)?.files().map_err(Error::io("list", dir))? {
                let (a, b) = (dir.join(&rel), claim.join(&rel));
                fs::create_dir_all(b.parent().unwrap_or(claim)).map_err(Error::io("create", &b))?;
                let copied = fs::copy(&a, &b).and_then(|_| fs::File::open(&b)?.sync_all());
                copied.map_err(Error::io("copy", &a))?;
            }
            claim.to_path_buf()
        };
        fs::create_dir_all(self.root.join(plan)).map_err(Error::io("create", &to))?;
        fs::rename(&from, &to).map_err(Error::io("rename", &from))?;
        drop(copy);
        Ok(PackInfo::from_pack(&self.name, &self.pack(plan, id)?))
    }

    fn list(&self, plan: Option<&str>) -> Result<Vec<PackInfo>, Error> {
        let plans = plan.map_or_else(|| subdirs(&self.root), |p| Ok(vec![p.to_string()]))?;
        let mut packs = Vec::new();
        for plan in plans {
            for id in subdirs(&self.root.join(&plan))? {
                // Anything that is not a valid pack of this plan and id is not ours: skipped.
                if let Ok(pack) = self.pack(&plan, &id) {
                    packs.push(PackInfo::from_pack(&self.name, &pack));
                }
            }
        }
        packs.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
        Ok(packs)
    }
    fn open(&self, plan: &str, id: &str) -> Result<Arc<dyn PackReader>, Error> {
        Ok(Arc::new(self.pack(plan, id)?))
    }

    fn delete(&self, plan: &str, id: &str) -> Result<(), Error> {
        let pack = self.pack(plan, id)?; // only a valid pack of ours, whatever the caller listed
        let gone = ClaimedDir::claim_only(&self.work(&format!("delete_{plan}_{id}"))?)?;
        fs::rename(pack.dir(), &gone).map_err(Error::io("rename", pack.dir()))?; // unlisted at once
        fs::remove_dir_all(&gone).map_err(Error::io("remove", &gone))
    }
    fn clean_leftovers(&self) -> Result<Vec<PathBuf>, Error> {
        sweep(&self.root.join(".incoming"), &["job_", "delete_"], &|p| {
            fs::remove_dir_all(p)
        })
    }
}

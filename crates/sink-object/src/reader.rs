//! Reading a pack straight from the bucket.

use std::collections::BTreeMap;
use std::io::{self, Read};

use backup_core::{Manifest, PackReader};
use opendal::Operator;

/// A pack in the bucket, read through OpenDAL's blocking operator: call it from blocking code
/// (`tokio::task::spawn_blocking`), as every [`PackReader`] user does.
#[derive(Debug)]
pub struct ObjectPack {
    op: opendal::blocking::Operator,
    dir: String,
    location: String,
    manifest: Manifest,
    files: BTreeMap<String, u64>,
}

impl ObjectPack {
    /// The pack under key prefix `dir` (`…/<plan>/<id>/`) with the objects `files` (relative
    /// path, size) found there. Must be called inside a tokio runtime.
    pub(crate) fn new(
        op: Operator,
        dir: String,
        location: String,
        manifest: Manifest,
        files: Vec<(String, u64)>,
    ) -> backup_core::Result<ObjectPack> {
        let op = opendal::blocking::Operator::new(op)
            .map_err(|e| backup_core::Error::Other(format!("cannot read {location}: {e}")))?;
        Ok(ObjectPack {
            op,
            dir,
            location,
            manifest,
            files: files.into_iter().collect(),
        })
    }

    fn key(&self, rel: &str) -> String {
        format!("{}{rel}", self.dir)
    }
}

impl PackReader for ObjectPack {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn location(&self) -> String {
        self.location.trim_end_matches('/').to_string()
    }

    fn files(&self) -> io::Result<Vec<String>> {
        Ok(self.files.keys().cloned().collect())
    }

    fn size(&self, rel: &str) -> io::Result<u64> {
        self.files.get(rel).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not in the bucket", self.location_of(rel)),
            )
        })
    }

    fn open_file(&self, rel: &str) -> io::Result<Box<dyn Read + Send>> {
        self.size(rel)?;
        let key = self.key(rel);
        let at = self.location_of(rel);
        let reader = self.op.reader(&key).map_err(|e| crate::error::to_io(&at, &e))?;
        let read = reader.into_std_read(..).map_err(|e| crate::error::to_io(&at, &e))?;
        Ok(Box::new(read))
    }
}

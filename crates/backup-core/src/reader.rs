//! [`PackReader`]: a sealed pack read through the sink that keeps it.
//!
//! Everything that reads a stored pack — verification (quick and deep), the deep checks of the
//! source crates, every restore — works on a `PackReader`, never on a directory path, so a sink
//! whose packs do not sit in a local directory (an object store, a remote host) serves them the
//! same way. A reader offers the manifest, the stored files by relative path (listed, sized and
//! opened as streams) and, on top of that, each artifact's original bytes
//! ([`PackReader::open_artifact`], decrypting and decompressing as it streams). [`Pack`](crate::Pack) is the reader of a pack
//! in a local directory; [`crate::Sink::open`] returns the reader of a stored pack.
//!
//! ```no_run
//! # fn demo() -> backup_core::Result<()> {
//! use std::io::Read;
//! use backup_core::{Pack, PackReader};
//! let pack = Pack::open("/backups/nightly/migration_pack_20261121_040000".as_ref())?;
//! let reader: &dyn PackReader = &pack;
//! for a in &reader.manifest().artifacts {
//!     let mut bytes = 0;
//!     let mut r = reader.open_artifact(a)?;
//!     bytes += std::io::copy(&mut r, &mut std::io::sink()).unwrap_or(0);
//!     println!("{}: {bytes} bytes at {}", a.path, reader.location());
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use crate::crypt::{Keyring, missing_identity};
use crate::manifest::{ArtifactEntry, Compression, Manifest};
use crate::{Error, Result};

/// Buffer for reading stored files.
const IO_BUF: usize = 256 * 1024;

/// A sealed pack, read where it is stored. Cheap to share (sinks hand it out as
/// `Arc<dyn PackReader>`); every method may be called from any thread and blocks (call it from
/// blocking code, e.g. inside `tokio::task::spawn_blocking`).
///
/// Paths are the `/`-separated paths relative to the pack, as in the manifest (`manifest.json`,
/// `SHA256SUMS`, `sqlite/app.db.zst`).
pub trait PackReader: Send + Sync + fmt::Debug {
    /// The manifest, as read and validated when the pack was opened.
    fn manifest(&self) -> &Manifest;

    /// Where the pack is, for messages and reports: a path, or a URL without credentials.
    fn location(&self) -> String;

    /// Every file stored in the pack, sorted: the artifacts, `manifest.json`, `SHA256SUMS` and
    /// anything else found there (verification reports files the manifest does not list).
    fn files(&self) -> io::Result<Vec<String>>;

    /// The stored size of file `rel`. A missing file is an error of kind `NotFound`; something
    /// that is not a regular file (a FIFO, a directory, a symbolic link) is an error of kind
    /// `InvalidInput` saying what it is.
    fn size(&self, rel: &str) -> io::Result<u64>;

    /// Opens the stored file `rel` as it is stored (a compressed artifact stays compressed).
    /// Only a regular file is opened: anything else is an error, never a hang.
    fn open_file(&self, rel: &str) -> io::Result<Box<dyn Read + Send>>;

    /// The local directory holding the pack, when there is one, for tools that need a file
    /// (`None` for packs that are not in a local directory).
    fn local_dir(&self) -> Option<&Path> {
        None
    }

    /// The pack id.
    fn id(&self) -> &str {
        &self.manifest().pack_id
    }

    /// Where the stored file `rel` is, for messages.
    fn location_of(&self, rel: &str) -> String {
        format!("{}/{rel}", self.location().trim_end_matches(['/', '\\']))
    }

    /// Reads a whole small file (`manifest.json`, `SHA256SUMS`), refusing one larger than
    /// `limit` bytes.
    fn read_file(&self, rel: &str, limit: u64) -> io::Result<Vec<u8>> {
        let too_big = || io::Error::new(io::ErrorKind::InvalidData, format!("is larger than {limit} bytes"));
        if self.size(rel)? > limit {
            return Err(too_big());
        }
        let mut bytes = Vec::new();
        self.open_file(rel)?.take(limit + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limit {
            return Err(too_big());
        }
        Ok(bytes)
    }

    /// The identities this reader decrypts encrypted artifacts with (see
    /// [`crypt::keyed`](crate::crypt::keyed)); `None` by default.
    fn keyring(&self) -> Option<&Keyring> {
        None
    }

    /// Turns the stored bytes of `entry` (as [`PackReader::open_file`] gives them) into its
    /// original bytes: decrypts an encrypted artifact with [`PackReader::keyring`] (an error of
    /// kind `Key` saying which recipients the pack expects when there is no identity, or none
    /// matches), then decompresses zstd, streaming.
    fn decode<'a>(
        &self,
        entry: &ArtifactEntry,
        stored: Box<dyn Read + Send + 'a>,
    ) -> Result<Box<dyn Read + Send + 'a>> {
        let at = self.location_of(&entry.path);
        let plain: Box<dyn Read + Send + 'a> = match &entry.encryption {
            None => stored,
            Some(record) => match self.keyring().filter(|k| !k.is_empty()) {
                Some(keys) => keys.decrypt(entry, &at, stored)?,
                None => return Err(missing_identity(&at, &record.describe(), Some(&self.manifest().plan))),
            },
        };
        let r = BufReader::with_capacity(IO_BUF, plain);
        Ok(match entry.compression {
            Compression::None => Box::new(r),
            Compression::Zstd => {
                Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(|e| Error::io("start zstd for", &at)(e))?)
            }
        })
    }

    /// Opens an artifact for reading its original bytes ([`PackReader::decode`] of the stored
    /// file): decrypting and decompressing as it streams.
    fn open_artifact(&self, entry: &ArtifactEntry) -> Result<Box<dyn Read + Send>> {
        let f = self
            .open_file(&entry.path)
            .map_err(|e| Error::io("open artifact", self.location_of(&entry.path))(e))?;
        self.decode(entry, f)
    }
}

/// A shared reader reads the same pack (so `&Arc<dyn PackReader>` passes where a
/// `&dyn PackReader` is asked for).
impl<P: PackReader + ?Sized> PackReader for Arc<P> {
    fn manifest(&self) -> &Manifest {
        (**self).manifest()
    }

    fn location(&self) -> String {
        (**self).location()
    }

    fn files(&self) -> io::Result<Vec<String>> {
        (**self).files()
    }

    fn size(&self, rel: &str) -> io::Result<u64> {
        (**self).size(rel)
    }

    fn open_file(&self, rel: &str) -> io::Result<Box<dyn Read + Send>> {
        (**self).open_file(rel)
    }

    fn local_dir(&self) -> Option<&Path> {
        (**self).local_dir()
    }

    fn id(&self) -> &str {
        (**self).id()
    }

    fn location_of(&self, rel: &str) -> String {
        (**self).location_of(rel)
    }

    fn read_file(&self, rel: &str, limit: u64) -> io::Result<Vec<u8>> {
        (**self).read_file(rel, limit)
    }

    fn keyring(&self) -> Option<&Keyring> {
        (**self).keyring()
    }

    fn decode<'a>(
        &self,
        entry: &ArtifactEntry,
        stored: Box<dyn Read + Send + 'a>,
    ) -> Result<Box<dyn Read + Send + 'a>> {
        (**self).decode(entry, stored)
    }

    fn open_artifact(&self, entry: &ArtifactEntry) -> Result<Box<dyn Read + Send>> {
        (**self).open_artifact(entry)
    }
}

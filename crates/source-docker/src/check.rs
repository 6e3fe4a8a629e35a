//! The deep check of volume and image archives.

use std::io;

use backup_core::{ArtifactEntry, DeepCheck, PackReader};

use crate::backup::compare;
use crate::tarstream::{self, Options};
use crate::{IMAGE_KIND, VOLUME_KIND};

/// Deep check of `docker-volume` and `docker-image` artifacts for [`backup_core::Verifier`]: the
/// archive decompresses and lists completely (every header's checksum, no truncation, in volume
/// archives no unsafe name), and its entry count, file bytes and size match the manifest.
#[derive(Debug, Default, Clone, Copy)]
pub struct DockerCheck;

impl DeepCheck for DockerCheck {
    fn kinds(&self) -> &[&'static str] {
        &[VOLUME_KIND, IMAGE_KIND]
    }

    fn check(&self, pack: &dyn PackReader, entry: &ArtifactEntry) -> Result<(), String> {
        let r = pack.open_artifact(entry).map_err(|e| e.to_string())?;
        let opts = Options {
            rebase: None,
            strict: entry.kind == VOLUME_KIND,
        };
        let stats = tarstream::process(r, io::sink(), &opts).map_err(|e| format!("does not list completely: {e}"))?;
        compare(entry, &stats)
    }
}

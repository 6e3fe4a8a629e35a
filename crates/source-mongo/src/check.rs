//! The deep check of Mongo artifacts for [`backup_core::Verifier`].

use backup_core::{ArtifactEntry, DeepCheck, PackReader};

use crate::bsonstream::{DocReader, validate};
use crate::metadata::Metadata;
use crate::{ARTIFACT_KIND, METADATA_KIND};

/// Deep check of `mongo-bson` artifacts (decompress, parse every document down to its nested
/// values, compare the count with the manifest) and `mongo-metadata` artifacts (parse, and
/// require an index list).
#[derive(Debug, Clone, Copy, Default)]
pub struct MongoCheck;

impl DeepCheck for MongoCheck {
    fn kinds(&self) -> &[&'static str] {
        &[ARTIFACT_KIND, METADATA_KIND]
    }

    fn check(&self, pack: &dyn PackReader, entry: &ArtifactEntry) -> Result<(), String> {
        let r = pack.open_artifact(entry).map_err(|e| e.to_string())?;
        if entry.kind == METADATA_KIND {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut { r }, &mut bytes).map_err(|e| format!("cannot read: {e}"))?;
            let m = Metadata::parse(&bytes).map_err(|e| format!("invalid metadata: {e}"))?;
            if m.collection_name.is_empty() {
                return Err("invalid metadata: no collectionName".into());
            }
            return Ok(());
        }
        let mut reader = DocReader::new(r);
        let mut buf = Vec::new();
        while reader.next_into(&mut buf)? {
            validate(&buf).map_err(|e| format!("document {} is not valid BSON: {e}", reader.count()))?;
        }
        if let Some(expected) = entry.records
            && expected != reader.count()
        {
            return Err(format!(
                "holds {} documents, the manifest says {expected}",
                reader.count()
            ));
        }
        Ok(())
    }
}

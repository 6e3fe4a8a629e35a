//! The bucket of the test Garage cluster, under a prefix of one's own.

use std::time::{SystemTime, UNIX_EPOCH};

/// Where a test's packs go in the test cluster's bucket (`PACKRAT_TEST_S3_*`). Fails (never
/// skips) without the cluster. The credentials stay in the environment: configs name
/// `PACKRAT_TEST_S3_ACCESS_KEY_ID` / `PACKRAT_TEST_S3_SECRET_ACCESS_KEY` with `*_env`.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// The S3 endpoint (node 1).
    pub endpoint: String,
    /// The region.
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// A prefix no other test uses.
    pub prefix: String,
}

impl Bucket {
    /// `e2e/<tag>/<pid>_<nanos>` in the test bucket.
    pub fn new(tag: &str) -> Bucket {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Bucket {
            endpoint: crate::crash::var("PACKRAT_TEST_S3_ENDPOINT"),
            region: crate::crash::var("PACKRAT_TEST_S3_REGION"),
            bucket: crate::crash::var("PACKRAT_TEST_S3_BUCKET"),
            prefix: format!("e2e/{tag}/{}_{nanos}", std::process::id()),
        }
    }

    /// A `[sinks.NAME]` table for this bucket.
    pub fn sink_toml(&self, name: &str) -> String {
        format!(
            "[sinks.{name}]\ntype = \"s3\"\nendpoint = \"{}\"\nregion = \"{}\"\nbucket = \"{}\"\nprefix = \"{}\"\n\
             access_key_id_env = \"PACKRAT_TEST_S3_ACCESS_KEY_ID\"\nsecret_access_key_env = \"PACKRAT_TEST_S3_SECRET_ACCESS_KEY\"\n",
            self.endpoint, self.region, self.bucket, self.prefix
        )
    }
}

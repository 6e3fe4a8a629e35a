//! This sink's config section, `[sinks.NAME] type = "s3"`: packs on an S3-compatible object store.
//!
//! ```toml
//! [sinks.offsite]
//! type = "s3"
//! endpoint = "https://s3.eu-central-1.amazonaws.com"   # or http://garage.lan:3900, https://minio…
//! region = "eu-central-1"                              # Garage: "garage"
//! bucket = "backups"
//! prefix = "packrat/app1"                              # objects under <prefix>/<plan>/<pack id>/
//! access_key_id_env = "PACKRAT_S3_KEY_ID"              # or access_key_id_file
//! secret_access_key_file = "/etc/packrat/s3.secret"    # or secret_access_key_env
//! # path_style = true        # default; false for virtual-hosted buckets (bucket.endpoint)
//! # storage_class = "STANDARD_IA"
//! # part_size = "8MiB"       # multipart part size (5 MiB … 5 GiB)
//! # concurrency = 4          # parts in flight per object
//! # timeout = "60s"          # per request (and per read/write of a body chunk)
//! # retries = 4              # transient failures retried with backoff
//! ```

use std::path::PathBuf;
use std::time::Duration;

use backup_core::config::{Issue, SecretRef, Section};
use serde::{Deserialize, Serialize};

/// `type = "s3"`: packs as objects `<prefix>/<plan>/<pack id>/…` in a bucket of an S3-compatible
/// store, `manifest.json` written last as the commit point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectSinkConfig {
    /// The S3 endpoint URL (`https://…` or `http://…`).
    pub endpoint: String,
    /// The signing region. Default `us-east-1`.
    #[serde(default = "default_region")]
    pub region: String,
    /// The bucket (it must exist).
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing `/`. Default: none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// Environment variable holding the access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_env: Option<String>,
    /// File holding the access key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_file: Option<PathBuf>,
    /// Environment variable holding the secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_env: Option<String>,
    /// File holding the secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_file: Option<PathBuf>,
    /// Path-style addressing (`endpoint/bucket/key`). Default true; false for virtual-hosted style.
    #[serde(default = "yes")]
    pub path_style: bool,
    /// Storage class of new objects (`STANDARD`, `STANDARD_IA`, …). Default: the bucket's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Multipart part size, e.g. `"8MiB"`. Default 8 MiB; 5 MiB to 5 GiB.
    #[serde(default = "default_part_size")]
    pub part_size: ByteSize,
    /// Parts in flight per object. Default 4 (peak RSS measured 64 MiB with 8 MiB parts).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Timeout of every request, and of every read or write of a body chunk. Default 60s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How often a transient failure (timeout, 5xx, connection reset, throttling) is retried with
    /// backoff. Default 4.
    #[serde(default = "default_retries")]
    pub retries: usize,
}

/// A size in bytes written as `"8MiB"`, `"16MB"`, `"5242880"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const MIB: u64 = 1 << 20;
        if self.0.is_multiple_of(MIB) {
            s.serialize_str(&format!("{}MiB", self.0 / MIB))
        } else {
            s.serialize_str(&self.0.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ByteSize::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl ByteSize {
    /// Parses `"8MiB"`, `"8 MiB"`, `"16MB"`, `"512KiB"`, `"1GiB"` or a plain number of bytes.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a size; write e.g. \"8MiB\""))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` in `{text}`; use B, KiB, MiB, GiB, KB, MB or GB"
                ));
            }
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("`{text}` is too large"))
    }
}

fn default_region() -> String {
    "us-east-1".into()
}

fn yes() -> bool {
    true
}

fn default_part_size() -> ByteSize {
    ByteSize(8 << 20)
}

fn default_concurrency() -> usize {
    4
}

fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_retries() -> usize {
    4
}

impl ObjectSinkConfig {
    /// The access key id's reference (`access_key_id_env` / `access_key_id_file`).
    pub fn access_key_id_ref(&self) -> SecretRef {
        SecretRef::new(self.access_key_id_env.as_deref(), self.access_key_id_file.as_deref())
    }

    /// The secret access key's reference (`secret_access_key_env` / `secret_access_key_file`).
    pub fn secret_access_key_ref(&self) -> SecretRef {
        SecretRef::new(
            self.secret_access_key_env.as_deref(),
            self.secret_access_key_file.as_deref(),
        )
    }
}

impl Section for ObjectSinkConfig {
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        let mut v = Vec::new();
        if let Some(f) = self.access_key_id_file.as_mut() {
            v.push(("access_key_id_file", f));
        }
        if let Some(f) = self.secret_access_key_file.as_mut() {
            v.push(("secret_access_key_file", f));
        }
        v
    }

    fn validate(&self) -> Result<(), Issue> {
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            return Err(Issue::new(
                "endpoint",
                format!("`{}` is not an http:// or https:// URL", self.endpoint),
            ));
        }
        if self.endpoint.contains('@') {
            return Err(Issue::new(
                "endpoint",
                "must not carry credentials; use access_key_id_env/_file and secret_access_key_env/_file",
            ));
        }
        if self.prefix.starts_with('/') || self.prefix.ends_with('/') || self.prefix.contains("//") {
            return Err(Issue::new(
                "prefix",
                format!(
                    "`{}`: write the prefix without leading, trailing or double `/`",
                    self.prefix
                ),
            ));
        }
        self.access_key_id_ref().check("access_key_id", true)?;
        self.secret_access_key_ref().check("secret_access_key", true)?;
        if !(5 << 20..=5 << 30).contains(&self.part_size.0) {
            return Err(Issue::new(
                "part_size",
                "must be between 5MiB and 5GiB (S3's multipart limits)",
            ));
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            return Err(Issue::new("concurrency", "must be between 1 and 64"));
        }
        if self.timeout.is_zero() {
            return Err(Issue::new("timeout", "must be longer than 0s"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(ByteSize::parse("8MiB").unwrap(), ByteSize(8 << 20));
        assert_eq!(ByteSize::parse("16 MB").unwrap(), ByteSize(16_000_000));
        assert_eq!(ByteSize::parse("5242880").unwrap(), ByteSize(5 << 20));
        assert!(ByteSize::parse("8 parsecs").unwrap_err().contains("unknown size unit"));
        assert!(ByteSize::parse("MiB").unwrap_err().contains("not a size"));
    }
}

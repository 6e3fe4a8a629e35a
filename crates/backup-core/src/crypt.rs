//! Encrypted artifacts: [age](https://age-encryption.org) over zstd, readable by the standard
//! `age` tool.
//!
//! A plan's `[plans.NAME.encrypt]` ([`EncryptConfig`]) names who may read its packs: age X25519
//! recipients (`age1…` public keys, inline or in a `recipients_file`), or a passphrase (scrypt)
//! from `passphrase_env`/`passphrase_file`. A [`StagingPack`](crate::StagingPack) given an
//! [`Encryption`] writes every artifact as `zstd → age` (`sqlite/app_db.db.zst.age`), streamed,
//! and records in the manifest that it is encrypted and for whom ([`EncryptionRecord`]: public
//! keys only). `SHA256SUMS` covers the ciphertext, so quick verification and `sha256sum -c` need
//! no key; reading an artifact's bytes (deep verification, every restore) needs a [`Keyring`]
//! given to the reader ([`keyed`]).
//!
//! ```
//! use std::io::{Read, Write};
//! use backup_core::crypt::{self, Encryption, Keyring};
//! use backup_core::{BackupKind, Compression, PackId, StagingPack};
//! # fn main() -> backup_core::Result<()> {
//! let (identity, recipient) = crypt::generate();
//! let dir = tempfile::tempdir().unwrap();
//! let pack = StagingPack::create(&dir.path().join("p"), "demo", PackId::new("p")?, BackupKind::Full, chrono_tz::UTC)?;
//! pack.set_encryption(Encryption::to_recipients(&[recipient])?);
//! let mut w = pack.artifact("notes/a.txt.zst", "demo", "file", Compression::Zstd)?;
//! w.write_all(b"secret notes").unwrap();
//! assert_eq!(w.finish()?.path, "notes/a.txt.zst.age");
//! let sealed = pack.seal()?;
//! let mut keys = Keyring::new();
//! keys.add_identities(identity.expose(), "the demo identity")?;
//! let reader = crypt::keyed(backup_core::Pack::open(sealed.dir())?.into_reader(), Some(keys.into()));
//! let mut text = String::new();
//! reader.open_artifact(&reader.manifest().artifacts[0])?.read_to_string(&mut text).unwrap();
//! assert_eq!(text, "secret notes");
//! # Ok(()) }
//! ```

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use age::secrecy::{ExposeSecret, SecretString};
use age::{scrypt, x25519};
use serde::{Deserialize, Serialize};

use crate::config::{Issue, Secret, SecretRef, Section};
use crate::manifest::{ArtifactEntry, Manifest};
use crate::reader::PackReader;
use crate::{Error, Result};

/// Suffix of an encrypted artifact's stored name (`app_db.db.zst.age`).
pub const AGE_SUFFIX: &str = ".age";
/// The scheme recorded in the manifest.
pub const SCHEME: &str = "age";
/// scrypt work factor (log2 N) of passphrase-encrypted artifacts: age's usual ~1 s.
const SCRYPT_LOG_N: u8 = 18;
/// Largest work factor a passphrase identity accepts when decrypting.
const SCRYPT_MAX_LOG_N: u8 = 22;
const IO_BUF: usize = 256 * 1024;

/// How an artifact is encrypted, as the manifest records it: never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionRecord {
    /// Always `age`.
    pub scheme: String,
    /// The X25519 recipients (`age1…` public keys: public by design) it is encrypted to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// True when it is encrypted to a passphrase (scrypt) instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub passphrase: bool,
}

impl EncryptionRecord {
    /// Who can read it, for messages: `age1abc…, age1def…` or `a passphrase`.
    pub fn describe(&self) -> String {
        if self.passphrase {
            "a passphrase (scrypt)".into()
        } else {
            self.recipients.join(", ")
        }
    }
}

/// What a pack's artifacts are encrypted to. `Debug` shows the recipients, never a passphrase.
#[derive(Clone)]
pub struct Encryption {
    recipients: Vec<x25519::Recipient>,
    passphrase: Option<SecretString>,
    record: EncryptionRecord,
}

impl Encryption {
    /// Encryption to X25519 recipients (`age1…`); at least one. A second recipient whose
    /// identity is kept elsewhere is the key escrow.
    pub fn to_recipients(list: &[String]) -> Result<Encryption> {
        if list.is_empty() {
            return Err(Error::Config(
                "encryption needs at least one recipient (an age1… public key); `packrat key generate` makes one"
                    .into(),
            ));
        }
        let mut recipients = Vec::new();
        let mut shown = Vec::new();
        for r in list {
            let r = r.trim();
            let parsed = x25519::Recipient::from_str(r).map_err(|e| Error::Config(bad_recipient(r, e)))?;
            if !shown.contains(&r.to_string()) {
                shown.push(r.to_string());
                recipients.push(parsed);
            }
        }
        Ok(Encryption {
            recipients,
            passphrase: None,
            record: EncryptionRecord {
                scheme: SCHEME.into(),
                recipients: shown,
                passphrase: false,
            },
        })
    }

    /// Encryption to a passphrase (age's scrypt recipient).
    pub fn to_passphrase(passphrase: &Secret) -> Encryption {
        Encryption {
            recipients: Vec::new(),
            passphrase: Some(SecretString::from(passphrase.expose().to_string())),
            record: EncryptionRecord {
                scheme: SCHEME.into(),
                recipients: Vec::new(),
                passphrase: true,
            },
        }
    }

    /// What the manifest records.
    pub fn record(&self) -> &EncryptionRecord {
        &self.record
    }

    /// Starts an age stream on `out`: the header is written now, every chunk as it fills;
    /// call [`age::stream::StreamWriter::finish`] at the end.
    pub fn wrap<W: Write>(&self, out: W) -> io::Result<age::stream::StreamWriter<W>> {
        let encryptor = match &self.passphrase {
            Some(p) => {
                let mut r = scrypt::Recipient::new(p.clone());
                r.set_work_factor(SCRYPT_LOG_N);
                age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
            }
            None => age::Encryptor::with_recipients(self.recipients.iter().map(|r| r as &dyn age::Recipient)),
        }
        .map_err(|e| io::Error::other(format!("cannot start age encryption: {e}")))?;
        encryptor.wrap_output(out)
    }
}

impl fmt::Debug for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Encryption(age to {})", self.record.describe())
    }
}

fn bad_recipient(r: &str, e: &str) -> String {
    let shown: String = r.chars().take(16).collect();
    if r.starts_with("AGE-SECRET-KEY-") {
        "a recipient is an age identity (AGE-SECRET-KEY-…), which is secret: give its public key (age1…, \
         printed by `packrat key generate` and `age-keygen -y`) and keep the identity away from the config"
            .into()
    } else {
        format!("`{shown}…` is not an age X25519 recipient ({e}); recipients are public keys that start with age1")
    }
}

/// The identities that decrypt artifacts: X25519 identities (`AGE-SECRET-KEY-1…`, from identity
/// files or an environment variable) and passphrases. `Debug` names where each came from, never
/// its value.
#[derive(Clone, Default)]
pub struct Keyring {
    x25519: Vec<(x25519::Identity, String, String)>,
    passphrases: Vec<(SecretString, String)>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.x25519.is_empty() && self.passphrases.is_empty()
    }

    /// Adds the identities of an age identity file (as written by `age-keygen` and
    /// `packrat key generate`: `AGE-SECRET-KEY-1…` lines, `#` comments).
    pub fn add_identity_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Key(format!(
                "cannot read identity file {}: {e}; give the age identity file that `packrat key generate` wrote",
                path.display()
            ))
        })?;
        self.add_identities(&text, &format!("identity file {}", path.display()))
    }

    /// Adds the identities in `text` (the content of an identity file); `from` names where it
    /// came from, for messages.
    pub fn add_identities(&mut self, text: &str, from: &str) -> Result<()> {
        let mut found = 0;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id = x25519::Identity::from_str(line).map_err(|e| {
                let hint = if line.starts_with("age1") {
                    " (it is a recipient, a public key; give the identity, AGE-SECRET-KEY-1…)"
                } else {
                    ""
                };
                Error::Key(format!("{from}, line {}: not an age identity: {e}{hint}", n + 1))
            })?;
            let public = id.to_public().to_string();
            self.x25519.push((id, public, from.to_string()));
            found += 1;
        }
        if found == 0 {
            return Err(Error::Key(format!(
                "{from} holds no age identity (AGE-SECRET-KEY-1… line)"
            )));
        }
        Ok(())
    }

    /// Adds a passphrase (for packs encrypted to one).
    pub fn add_passphrase(&mut self, passphrase: &Secret, from: &str) {
        self.passphrases
            .push((SecretString::from(passphrase.expose().to_string()), from.to_string()));
    }

    /// Adds every identity of `other`.
    pub fn merge(&mut self, other: Keyring) {
        self.x25519.extend(other.x25519);
        self.passphrases.extend(other.passphrases);
    }

    /// The public keys (`age1…`) of its X25519 identities.
    pub fn recipients(&self) -> Vec<String> {
        self.x25519.iter().map(|(_, p, _)| p.clone()).collect()
    }

    /// What it holds, for messages: public keys and where each came from.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .x25519
            .iter()
            .map(|(_, public, from)| format!("{public} from {from}"))
            .collect();
        parts.extend(
            self.passphrases
                .iter()
                .map(|(_, from)| format!("a passphrase from {from}")),
        );
        parts.join("; ")
    }

    /// True when one of its identities can read what `record` describes (as far as the
    /// manifest tells: X25519 public keys are compared; a passphrase is tried only on reading).
    pub fn matches(&self, record: &EncryptionRecord) -> bool {
        if record.passphrase {
            return !self.passphrases.is_empty();
        }
        self.x25519.iter().any(|(_, p, _)| record.recipients.contains(p))
    }

    /// Decrypts the stored stream `stored` of `entry` (at `at`, for messages). Fails at once
    /// when no identity opens the header; a damaged chunk later is an `InvalidData` read error.
    pub fn decrypt<'a>(
        &self,
        entry: &ArtifactEntry,
        at: &str,
        stored: Box<dyn Read + Send + 'a>,
    ) -> Result<Box<dyn Read + Send + 'a>> {
        let record = entry.encryption.as_ref();
        let expects = record.map(EncryptionRecord::describe).unwrap_or_default();
        let dec = age::Decryptor::new_buffered(BufReader::with_capacity(IO_BUF, stored)).map_err(|e| match e {
            age::DecryptError::Io(io) => Error::io("read", at)(io),
            e => Error::Damaged(format!("{at}: its age header is unreadable ({e}); the file is damaged")),
        })?;
        let mut ids: Vec<Box<dyn age::Identity>> = Vec::new();
        if dec.is_scrypt() {
            for (p, _) in &self.passphrases {
                let mut id = scrypt::Identity::new(p.clone());
                id.set_max_work_factor(SCRYPT_MAX_LOG_N);
                ids.push(Box::new(id));
            }
        } else {
            for (id, _, _) in &self.x25519 {
                ids.push(Box::new(id.clone()));
            }
        }
        match dec.decrypt(ids.iter().map(|b| b.as_ref() as &dyn age::Identity)) {
            Ok(r) => Ok(Box::new(r)),
            Err(age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed) if !self.is_empty() => {
                Err(Error::Key(format!(
                    "{at} is encrypted for {expects}; none of the identities given opens it ({}); give the identity \
                     of one of those recipients",
                    self.describe()
                )))
            }
            Err(age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed) => {
                Err(missing_identity(at, &expects, None))
            }
            Err(age::DecryptError::Io(io)) => Err(Error::io("read", at)(io)),
            Err(e) => Err(Error::Damaged(format!("{at}: cannot decrypt: {e}"))),
        }
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyring({})", self.describe())
    }
}

/// The error for an encrypted artifact read without any identity.
pub fn missing_identity(at: &str, expects: &str, plan: Option<&str>) -> Error {
    let section = plan.map_or("[plans.NAME.encrypt]".to_string(), |p| format!("[plans.{p}.encrypt]"));
    Error::Key(format!(
        "{at} is encrypted (age) for {expects}; reading it needs an identity: pass --identity FILE, or set \
         identity_file or identity_env in {section}"
    ))
}

/// Generates a new X25519 identity: (the identity file's text, its recipient `age1…`).
pub fn generate() -> (Secret, String) {
    let id = x25519::Identity::generate();
    let public = id.to_public().to_string();
    let text = format!(
        "# created: {} by packrat {}\n# public key: {public}\n{}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        env!("CARGO_PKG_VERSION"),
        id.to_string().expose_secret()
    );
    (Secret::new(text), public)
}

/// Writes a new identity file at `path` (created, never overwritten; mode 0600 on Unix) and
/// returns its recipient.
pub fn generate_file(path: &Path) -> Result<String> {
    let (text, public) = generate();
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            Error::Config(format!(
                "{} exists; an identity file is never overwritten (packs encrypted to it would be lost): choose \
                 another path",
                path.display()
            ))
        } else {
            Error::io("create identity file", path)(e)
        }
    })?;
    f.write_all(text.expose().as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(Error::io("write identity file", path))?;
    Ok(public)
}

/// `[plans.NAME.encrypt]`: who may read the plan's packs, and (optionally) the identity this
/// installation reads them with.
///
/// ```toml
/// [plans.nightly.encrypt]
/// recipients = ["age1…ops", "age1…escrow"]   # or recipients_file, or passphrase_env/_file
/// identity_file = "/etc/packrat/backup.key"  # for verify --deep, restores, drills
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptConfig {
    /// X25519 recipients (`age1…` public keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// A file of recipients, one `age1…` per line (`#` comments), as `age -R` reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients_file: Option<PathBuf>,
    /// Environment variable holding a passphrase (instead of recipients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_env: Option<String>,
    /// File holding a passphrase (instead of recipients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<PathBuf>,
    /// Identity file used to read the packs (deep verification, restores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    /// Environment variable holding identities (the content of an identity file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_env: Option<String>,
}

impl EncryptConfig {
    fn passphrase(&self) -> SecretRef {
        SecretRef::new(self.passphrase_env.as_deref(), self.passphrase_file.as_deref())
    }

    /// Reads the recipients (inline and from `recipients_file`) or the passphrase.
    pub fn encryption(&self, key: &str) -> Result<Encryption> {
        if let Some(p) = self.passphrase().resolve_optional(&format!("{key}.passphrase"))? {
            return Ok(Encryption::to_passphrase(&p));
        }
        let mut list = self.recipients.clone();
        if let Some(f) = &self.recipients_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| Error::Config(format!("{key}.recipients_file: cannot read {}: {e}", f.display())))?;
            list.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_string),
            );
        }
        Encryption::to_recipients(&list).map_err(|e| Error::Config(format!("{key}: {e}")))
    }

    /// The identities this installation reads the packs with (`identity_file`, `identity_env`,
    /// and the passphrase, which decrypts too). Empty when none is configured.
    pub fn keyring(&self, key: &str) -> Result<Keyring> {
        let mut keys = Keyring::new();
        if let Some(f) = &self.identity_file {
            keys.add_identity_file(f)?;
        }
        if let Some(var) = &self.identity_env {
            let text = std::env::var(var).map_err(|_| {
                Error::Key(format!(
                    "{key}.identity_env: environment variable {var} is not set; export it"
                ))
            })?;
            keys.add_identities(&text, &format!("environment variable {var}"))?;
        }
        if let Some(p) = self.passphrase().resolve_optional(&format!("{key}.passphrase"))? {
            keys.add_passphrase(&p, &format!("{key}.passphrase"));
        }
        Ok(keys)
    }
}

impl Section for EncryptConfig {
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        let mut v = Vec::new();
        if let Some(p) = self.recipients_file.as_mut() {
            v.push(("recipients_file", p));
        }
        if let Some(p) = self.passphrase_file.as_mut() {
            v.push(("passphrase_file", p));
        }
        if let Some(p) = self.identity_file.as_mut() {
            v.push(("identity_file", p));
        }
        v
    }

    fn validate(&self) -> std::result::Result<(), Issue> {
        self.passphrase().check("passphrase", false)?;
        let has_recipients = !self.recipients.is_empty() || self.recipients_file.is_some();
        if self.passphrase().is_set() && has_recipients {
            return Err(Issue::new(
                if self.recipients.is_empty() {
                    "recipients_file"
                } else {
                    "recipients"
                },
                "the age format cannot encrypt a file to a passphrase and to public-key recipients at once; use \
                 recipients (a second recipient is the escrow key) or a passphrase alone",
            ));
        }
        if !self.passphrase().is_set() && !has_recipients {
            return Err(Issue::new(
                "",
                "needs `recipients = [\"age1…\"]` (or `recipients_file`), or `passphrase_env`/`passphrase_file`; \
                 `packrat key generate` makes an identity and prints its recipient",
            ));
        }
        for r in &self.recipients {
            x25519::Recipient::from_str(r.trim()).map_err(|e| Issue::new("recipients", bad_recipient(r, e)))?;
        }
        Ok(())
    }
}

/// A reader that decrypts with `keys`: every read of an artifact's bytes through it
/// ([`PackReader::open_artifact`], [`PackReader::decode`]) uses them. Without keys the reader is
/// returned as it is.
pub fn keyed(reader: Arc<dyn PackReader>, keys: Option<Arc<Keyring>>) -> Arc<dyn PackReader> {
    match keys {
        Some(keys) if !keys.is_empty() => Arc::new(Keyed { inner: reader, keys }),
        _ => reader,
    }
}

#[derive(Debug)]
struct Keyed {
    inner: Arc<dyn PackReader>,
    keys: Arc<Keyring>,
}

impl PackReader for Keyed {
    fn manifest(&self) -> &Manifest {
        self.inner.manifest()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
    fn files(&self) -> io::Result<Vec<String>> {
        self.inner.files()
    }
    fn size(&self, rel: &str) -> io::Result<u64> {
        self.inner.size(rel)
    }
    fn open_file(&self, rel: &str) -> io::Result<Box<dyn Read + Send>> {
        self.inner.open_file(rel)
    }
    fn local_dir(&self) -> Option<&Path> {
        self.inner.local_dir()
    }
    fn location_of(&self, rel: &str) -> String {
        self.inner.location_of(rel)
    }
    fn read_file(&self, rel: &str, limit: u64) -> io::Result<Vec<u8>> {
        self.inner.read_file(rel, limit)
    }
    fn keyring(&self) -> Option<&Keyring> {
        Some(&self.keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_checked_and_identities_never_shown() {
        let (id, public) = generate();
        assert!(Encryption::to_recipients(std::slice::from_ref(&public)).is_ok());
        let secret_line = id.expose().lines().last().unwrap().to_string();
        let e = Encryption::to_recipients(std::slice::from_ref(&secret_line))
            .unwrap_err()
            .to_string();
        assert!(!e.contains(&secret_line[20..]), "{e}");
        assert!(e.contains("which is secret"), "{e}");
        let mut keys = Keyring::new();
        keys.add_identities(id.expose(), "test").unwrap();
        assert_eq!(keys.recipients(), vec![public.clone()]);
        let shown = format!("{keys:?} {}", keys.describe());
        assert!(!shown.contains(&secret_line[20..]), "{shown}");
        let e = Keyring::new().add_identities(&public, "f").unwrap_err().to_string();
        assert!(e.contains("it is a recipient"), "{e}");
    }

    #[test]
    fn passphrase_and_recipients_do_not_mix() {
        let c = EncryptConfig {
            recipients: vec![generate().1],
            passphrase_env: Some("P".into()),
            ..EncryptConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "recipients");
        assert_eq!(EncryptConfig::default().validate().unwrap_err().key, "");
    }
}

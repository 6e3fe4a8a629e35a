//! Configuration support shared by every crate that owns a config section.
//!
//! Each crate owns the serde struct of its section (`deny_unknown_fields`) and implements
//! [`Section`] for it: the path-valued keys (resolved against the config file's directory,
//! Windows-style paths refused on other systems) and the checks of the combination of keys. The
//! application crate composes the sections into the whole file and loads it with
//! [`parse_document`]; every error names the file, the line and the key ([`key_error`]):
//!
//! ```text
//! config file /etc/packrat/packrat.toml, line 4, key `state_dir`: must not be empty
//!   4 | state_dir = ""
//! ```
//!
//! Secrets are never written inline: a section refers to them by environment variable
//! (`*_env`) or file (`*_file`), one [`SecretRef`] per pair, resolved into a [`Secret`] whose
//! `Debug`/`Display` print `***`.
//!
//! ```
//! use backup_core::config::{Issue, Section, SecretRef};
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Hook { url_env: Option<String>, url_file: Option<std::path::PathBuf> }
//! impl Section for Hook {
//!     fn validate(&self) -> Result<(), Issue> {
//!         SecretRef::new(self.url_env.as_deref(), self.url_file.as_deref()).check("url", true)
//!     }
//! }
//! let hook: Hook = backup_core::config::parse_document("url_env = \"HOOK\"\n", "h.toml".as_ref()).unwrap();
//! assert!(hook.validate().is_ok());
//! let e = Hook { url_env: None, url_file: None }.validate().unwrap_err();
//! assert_eq!(e.key, "");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::{Error, Result};

mod locate;
pub use locate::{display_key, key_error, line_of_key};

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "PACKRAT_CONFIG";

/// A problem a [`Section`] found in itself: the key within the section (`""` for the section as
/// a whole, dotted for nested keys: `per_collection.chat.mode`) and what is wrong, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The key within the section, `""` for the section itself.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl Issue {
    /// An issue with `key` (`""`: the section itself).
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The full key below `prefix` (`["sources", "app_db"]` + `volumes`).
    pub fn full_key<'a>(&'a self, prefix: &[&'a str]) -> Vec<&'a str> {
        let mut k: Vec<&str> = prefix.to_vec();
        k.extend(self.key.split('.').filter(|s| !s.is_empty()));
        k
    }
}

/// A config section owned by a crate: a source's, a sink's or a channel's table, a plan's
/// `retention` or `mongo` table. Both methods have neutral defaults.
pub trait Section {
    /// Its path-valued keys (key within the section, path), so the loader can refuse Windows-style
    /// paths on other systems and resolve relative paths against the config file's directory.
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        Vec::new()
    }

    /// Checks the combination of keys (what serde cannot: either/or, ranges, names).
    fn validate(&self) -> std::result::Result<(), Issue> {
        Ok(())
    }
}

/// Top-level settings a section may need when it builds its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    /// The top-level `parallelism` (jobs at once; within a job, e.g. collections at once).
    pub parallelism: usize,
}

/// A source type's config section (`[sources.NAME] type = "…"`): it builds the source it
/// describes. Implement it in the source's crate; the application lists the type once.
pub trait SourceSection: Section {
    /// The source named `name`.
    fn build(&self, name: &str, defaults: &Defaults) -> std::sync::Arc<dyn crate::Source>;
}

/// A sink type's config section (`[sinks.NAME] type = "…"`): it builds the sink it describes.
pub trait SinkSection: Section {
    /// The sink named `name`.
    fn build(&self, name: &str, defaults: &Defaults) -> std::sync::Arc<dyn crate::Sink>;
}

/// The text of a loaded config file, for errors about its keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigText {
    /// The file (absolute when loaded from disk).
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
}

impl ConfigText {
    /// The error "config file FILE, line L, key `KEY`: MSG" about `key` (segments:
    /// `["plans", "hot", "incremental"]`).
    pub fn key_error(&self, key: &[&str], msg: impl fmt::Display) -> Error {
        key_error(&self.path, &self.text, key, msg)
    }

    /// The error of `issue`, found in the section at `prefix`.
    pub fn issue_error(&self, prefix: &[&str], issue: &Issue) -> Error {
        self.key_error(&issue.full_key(prefix), &issue.message)
    }

    /// The 1-based line of `key` (see [`line_of_key`]).
    pub fn line_of(&self, key: &[&str]) -> Option<usize> {
        line_of_key(&self.text, key)
    }
}

/// Reads a config file as UTF-8; `Err` names the file (and, for bytes that are not UTF-8, the
/// offset and line). Returns the absolute path and the text.
pub fn read_text(path: &Path) -> Result<ConfigText> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::Config(if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "config file {} not found; pass --config FILE or set {CONFIG_ENV}",
                path.display()
            )
        } else {
            format!("cannot read config file {}: {e}", path.display())
        })
    })?;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let text = String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let at = e.utf8_error().valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::Config(format!(
            "config file {} is not UTF-8: invalid byte 0x{:02X} at offset {at} (line {line}); save it as UTF-8",
            abs.display(),
            bytes[at]
        ))
    })?;
    Ok(ConfigText { path: abs, text })
}

/// Parses TOML `text` into `T`: refuses empty values (`state_dir = ""`, an empty name, an empty
/// list element) and reports schema errors (unknown keys, types, missing keys) with file, line and
/// key; `path` is for messages.
pub fn parse_document<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T> {
    let doc = toml::de::DeTable::parse(text).map_err(|e| toml_error(text, path, &e))?;
    if let Some((key, at)) = locate::find_blank(doc.get_ref()) {
        let shown = display_key(&key.iter().map(String::as_str).collect::<Vec<_>>());
        return Err(locate::at_line(
            path,
            text,
            Some(locate::line_at(text, at)),
            &shown,
            &locate::blank_advice(&key),
        ));
    }
    T::deserialize(toml::de::Deserializer::from(doc)).map_err(|e| toml_error(text, path, &e))
}

/// Refuses Windows-style paths (on other systems) and resolves relative paths against `base`;
/// `Err` holds the key and the message of the first bad path.
pub fn resolve_paths(
    base: &Path,
    paths: Vec<(Vec<String>, &mut PathBuf)>,
) -> std::result::Result<(), (Vec<String>, String)> {
    for (key, p) in paths {
        if let Some(msg) = locate::windows_path_problem(p) {
            return Err((key, msg));
        }
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(())
}

/// The names defined in `m`, for "unknown source `x` (defined: a, b)".
pub fn names<V>(m: &BTreeMap<String, V>) -> String {
    if m.is_empty() {
        "none".into()
    } else {
        m.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Phrases a TOML error with file, line and key. For tagged tables (`type = ".."`) the parser
/// only knows the table's span, so the line of an unknown key is looked up inside that table.
fn toml_error(text: &str, path: &Path, e: &toml::de::Error) -> Error {
    let msg = e.message().trim_end();
    let start = e.span().map(|s| s.start).unwrap_or(0).min(text.len());
    let mut line = locate::line_at(text, start);
    let mut key = None;
    let named = |prefix: &str| {
        msg.strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
    };
    if let Some(field) = named("unknown field `") {
        for (i, l) in text.lines().enumerate().skip(line) {
            let t = l.trim_start();
            if t.starts_with('[') {
                break;
            }
            if t.split(['=', ' ', '.']).next() == Some(field.as_str()) {
                line = i + 1;
                break;
            }
        }
        key = toml::de::DeTable::parse(text)
            .ok()
            .and_then(|doc| locate::key_on_line(doc.get_ref(), text, line, &field))
            .map(|k| display_key(&k.iter().map(String::as_str).collect::<Vec<_>>()))
            .or(Some(field));
    } else if let Ok(doc) = toml::de::DeTable::parse(text) {
        let doc = doc.get_ref();
        let at = locate::key_at(doc, start);
        let table = at.as_deref().and_then(|k| locate::table_at(doc, k));
        let show = |k: &[String]| display_key(&k.iter().map(String::as_str).collect::<Vec<_>>());
        if let Some(field) = named("missing field `") {
            let mut k = at.clone().filter(|_| table.is_some()).unwrap_or_default();
            k.push(field);
            key = Some(show(&k));
        } else if let Some((inner, offset)) = table.and_then(|t| locate::key_quoted_in(t, msg)) {
            // A tagged table: the parser only knows the table; find the key whose value it quotes.
            let mut k = at.clone().unwrap_or_default();
            k.extend(inner);
            key = Some(show(&k));
            line = locate::line_at(text, offset);
        } else {
            key = at.as_deref().map(show);
        }
    } else if let Some(field) = named("missing field `") {
        key = Some(field);
    }
    locate::at_line(path, text, Some(line), key.as_deref().unwrap_or(""), msg)
}

/// A reference to a secret: the `X_env` / `X_file` pair of a config section (environment
/// variable or file; exactly one when required). The one place such pairs are checked and
/// resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretRef {
    /// The environment variable.
    pub env: Option<String>,
    /// The file.
    pub file: Option<PathBuf>,
}

impl SecretRef {
    /// The pair as written in a section.
    pub fn new(env: Option<&str>, file: Option<&Path>) -> SecretRef {
        SecretRef {
            env: env.map(str::to_string),
            file: file.map(Path::to_path_buf),
        }
    }

    /// True when either form is set.
    pub fn is_set(&self) -> bool {
        self.env.is_some() || self.file.is_some()
    }

    /// Checks the pair of `what` (`url` for `url_env`/`url_file`): never both, and one of them
    /// when `required`.
    pub fn check(&self, what: &str, required: bool) -> std::result::Result<(), Issue> {
        if self.env.is_some() && self.file.is_some() {
            return Err(Issue::new(
                format!("{what}_file"),
                format!("set either `{what}_env` or `{what}_file`, not both"),
            ));
        }
        if required && !self.is_set() {
            return Err(Issue::new(
                "",
                format!(
                    "set `{what}_env` (environment variable) or `{what}_file` (file); it carries a secret and is \
                     never written in the config"
                ),
            ));
        }
        Ok(())
    }

    /// Reads the secret; `key` names it for messages (`alerts.ops.url`).
    pub fn resolve(&self, key: &str) -> Result<Secret> {
        let short = key.rsplit('.').next().unwrap_or(key);
        Secret::resolve(
            &format!("{key}_env/{short}_file"),
            self.env.as_deref(),
            self.file.as_deref(),
        )
    }

    /// Reads the secret when one is configured.
    pub fn resolve_optional(&self, key: &str) -> Result<Option<Secret>> {
        if self.is_set() {
            self.resolve(key).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// A secret value (password, token, URI with credentials). `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself: pass it to the client library, never to a log or message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret from environment variable `var` or file `file` (exactly one must be set);
    /// `what` names the config key for messages.
    pub fn resolve(what: &str, var: Option<&str>, file: Option<&Path>) -> Result<Secret> {
        let non_empty = |s: Secret, from: String| {
            if s.0.trim().is_empty() {
                Err(Error::Config(format!("{what}: {from} is empty; put the value there")))
            } else {
                Ok(s)
            }
        };
        match (var, file) {
            (Some(v), None) => std::env::var(v)
                .map_err(|_| {
                    Error::Config(format!(
                        "{what}: environment variable {v} is not set; export it or use a file"
                    ))
                })
                .and_then(|s| non_empty(Secret(s), format!("environment variable {v}"))),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| Error::Config(format!("{what}: cannot read secret file {}: {e}", f.display())))
                .and_then(|s| {
                    non_empty(
                        Secret(s.trim_end_matches(['\r', '\n']).to_string()),
                        format!("secret file {}", f.display()),
                    )
                }),
            (Some(_), Some(_)) => Err(Error::Config(format!(
                "{what}: set either the _env or the _file form, not both"
            ))),
            (None, None) => Err(Error::Config(format!(
                "{what}: missing; set it via an environment variable or a file"
            ))),
        }
    }

    /// Replaces every occurrence of this secret in `text` by `***`.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "***")
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.redact("uri mongodb://u:hunter2@h"), "uri mongodb://u:***@h");
        assert!(Secret::resolve("x", Some("PACKRAT_TEST_SURELY_UNSET_VAR"), None).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("uri");
        std::fs::write(&f, "\n").unwrap();
        let e = Secret::resolve("sources.mes.uri_env/uri_file", None, Some(&f))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "sources.mes.uri_env/uri_file: secret file {} is empty; put the value there",
                f.display()
            )
        );
    }

    #[test]
    fn secret_refs_are_checked_in_one_place() {
        let both = SecretRef::new(Some("A"), Some(Path::new("/f")));
        assert_eq!(both.check("url", true).unwrap_err().key, "url_file");
        assert_eq!(SecretRef::default().check("url", true).unwrap_err().key, "");
        assert!(SecretRef::default().check("secret", false).is_ok());
        assert!(SecretRef::default().resolve_optional("x").unwrap().is_none());
        let e = SecretRef::new(Some("PACKRAT_TEST_SURELY_UNSET_VAR"), None)
            .resolve("alerts.ops.url")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("alerts.ops.url_env/url_file: environment variable"),
            "{e}"
        );
    }
}

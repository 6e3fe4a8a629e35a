//! Connecting with a secret URI, and turning driver errors into redacted, classified [`Error`]s.

use std::time::Duration;

use backup_core::config::Secret;
use mongodb::Client;
use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;

use crate::error::{Cause, Error, Result};

/// Server selection timeout used when the URI does not set `serverSelectionTimeoutMS`.
const DEFAULT_SELECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// Removes every form of the URI's secrets (the whole URI, the password as written and
/// percent-decoded) from text.
#[derive(Debug, Clone)]
pub struct Redactor {
    secrets: Vec<Secret>,
}

impl Redactor {
    /// A redactor for `uri`.
    pub fn new(uri: &Secret) -> Redactor {
        let mut secrets = vec![uri.clone()];
        if let Some(pw) = password_of(uri.expose()) {
            let decoded = percent_decode(pw);
            if decoded != pw && !decoded.is_empty() {
                secrets.push(Secret::new(decoded));
            }
            if !pw.is_empty() {
                secrets.push(Secret::new(pw));
            }
        }
        Redactor { secrets }
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_string(), |t, s| s.redact(&t))
    }

    /// Classifies a driver error and wraps it, redacted, naming `what` we were doing.
    pub fn error(&self, what: impl Into<String>, e: mongodb::error::Error) -> Error {
        if let Some(found) = incompatible(&e) {
            return found.into_error(what.into());
        }
        Error::Driver {
            what: what.into(),
            cause: classify(&e),
            detail: self.redact(&describe(&e)),
        }
    }
}

/// The password part of a `mongodb://user:password@host/...` URI, as written.
fn password_of(uri: &str) -> Option<&str> {
    let rest = uri.split_once("://")?.1;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let (userinfo, _) = authority.rsplit_once('@')?;
    userinfo.split_once(':').map(|(_, p)| p)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The cause of a driver error in the operator's terms.
pub fn classify(e: &mongodb::error::Error) -> Cause {
    match e.kind.as_ref() {
        ErrorKind::Authentication { .. } => Cause::AuthFailed,
        ErrorKind::ServerSelection { .. } | ErrorKind::DnsResolve { .. } | ErrorKind::InvalidTlsConfig { .. } => {
            Cause::Unreachable
        }
        ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. } => Cause::ConnectionLost,
        ErrorKind::Command(c) => match c.code {
            18 => Cause::AuthFailed,
            13 => Cause::Unauthorized,
            6 | 7 | 89 | 91 | 189 | 9001 | 11600 | 11602 => Cause::ConnectionLost,
            _ => Cause::Server,
        },
        _ => Cause::Server,
    }
}

/// A server the driver refuses because of its wire version, as the driver reports it.
#[derive(Debug, PartialEq, Eq)]
enum Incompatible {
    /// "Server at ADDR reports wire version N, but this version of the MongoDB Rust driver requires
    /// at least M (MongoDB V)."
    TooOld {
        address: String,
        wire: i32,
        min_wire: i32,
        min: String,
    },
    /// "Server at ADDR requires wire version N, but this version of the MongoDB Rust driver only
    /// supports up to M"
    TooNew { address: String, wire: i32, max: i32 },
}

impl Incompatible {
    fn into_error(self, what: String) -> Error {
        match self {
            Incompatible::TooOld {
                address,
                wire,
                min_wire,
                min,
            } => Error::ServerTooOld {
                what,
                address,
                wire,
                version: mongodb_release(wire),
                min,
                min_wire,
            },
            Incompatible::TooNew { address, wire, max } => Error::ServerTooNew {
                what,
                address,
                wire,
                max,
            },
        }
    }
}

/// The driver's compatibility error in `e` (a server selection error whose message is the
/// driver's compatibility check), if that is what it is.
fn incompatible(e: &mongodb::error::Error) -> Option<Incompatible> {
    match e.kind.as_ref() {
        ErrorKind::ServerSelection { message, .. } => parse_incompatible(message),
        _ => None,
    }
}

/// Parses the driver's compatibility message (mongodb 3.x, `sdam/description/server.rs`).
fn parse_incompatible(message: &str) -> Option<Incompatible> {
    let rest = &message[message.find("Server at ")? + "Server at ".len()..];
    let number = |s: &str| -> Option<i32> {
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    if let Some((address, tail)) = rest.split_once(" reports wire version ") {
        let wire = number(tail)?;
        let after = &tail[tail.find("requires at least ")? + "requires at least ".len()..];
        let min_wire = number(after)?;
        let min = after
            .split_once("(MongoDB ")
            .and_then(|(_, v)| v.split_once(')'))
            .map(|(v, _)| v.to_string())
            .unwrap_or_else(|| mongodb_release(min_wire).trim_start_matches("MongoDB ").to_string());
        return Some(Incompatible::TooOld {
            address: address.to_string(),
            wire,
            min_wire,
            min,
        });
    }
    let (address, tail) = rest.split_once(" requires wire version ")?;
    let wire = number(tail)?;
    let max = number(&tail[tail.find("supports up to ")? + "supports up to ".len()..])?;
    Some(Incompatible::TooNew {
        address: address.to_string(),
        wire,
        max,
    })
}

/// The MongoDB release that introduced wire version `wire` (MongoDB's driver compatibility
/// table), for the releases older than the driver supports.
fn mongodb_release(wire: i32) -> String {
    let v = match wire {
        i32::MIN..=0 => return "MongoDB 2.4 or older".into(),
        1 | 2 => "2.6",
        3 => "3.0",
        4 => "3.2",
        5 => "3.4",
        6 => "3.6",
        7 => "4.0",
        8 => "4.2",
        9 => "4.4",
        _ => return format!("a MongoDB release with wire version {wire}"),
    };
    format!("MongoDB {v}")
}

/// A one-line description of a driver error (without the error labels noise).
fn describe(e: &mongodb::error::Error) -> String {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => format!("{} (code {} {})", c.message, c.code, c.code_name),
        ErrorKind::Authentication { message, .. } => message.clone(),
        ErrorKind::ServerSelection { message, .. } => message.clone(),
        ErrorKind::Io(io) => io.to_string(),
        _ => e.kind.to_string(),
    }
}

/// A client for `uri`. Nothing is contacted yet: errors about the server surface on the first
/// operation. The application name is `packrat` and, unless the URI says otherwise, server
/// selection gives up after 15 s.
pub async fn client(uri: &Secret, redactor: &Redactor) -> Result<Client> {
    let mut opts = ClientOptions::parse(uri.expose())
        .await
        .map_err(|e| Error::Uri(redactor.redact(&describe(&e))))?;
    if opts.app_name.is_none() {
        opts.app_name = Some("packrat".into());
    }
    if opts.server_selection_timeout.is_none() {
        opts.server_selection_timeout = Some(DEFAULT_SELECTION_TIMEOUT);
    }
    Client::with_options(opts).map_err(|e| Error::Uri(redactor.redact(&describe(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drivers_compatibility_messages_are_understood() {
        // The exact texts of mongodb 3.9 (sdam/description/server.rs).
        let old = "Server at db1.example.com:27017 reports wire version 7, but this version of the MongoDB Rust \
                   driver requires at least 9 (MongoDB 4.4).";
        assert_eq!(
            parse_incompatible(old),
            Some(Incompatible::TooOld {
                address: "db1.example.com:27017".into(),
                wire: 7,
                min_wire: 9,
                min: "4.4".into()
            })
        );
        let e = parse_incompatible(old)
            .unwrap()
            .into_error("connecting to database mes".into());
        assert_eq!(
            e.to_string(),
            "connecting to database mes: MongoDB server at db1.example.com:27017 reports wire version 7 (MongoDB \
             4.0); packrat's MongoDB driver supports MongoDB 4.4 and newer (wire version 9+): upgrade the server \
             to MongoDB 4.4 or newer, or keep backing it up with the mongodump of its own version until then (see \
             docs/mongo.md)"
        );
        assert_eq!(e.cause(), Some(Cause::IncompatibleServer));
        let new = "Server at [::1]:27017 requires wire version 40, but this version of the MongoDB Rust driver only \
                   supports up to 29";
        assert_eq!(
            parse_incompatible(new),
            Some(Incompatible::TooNew {
                address: "[::1]:27017".into(),
                wire: 40,
                max: 29
            })
        );
        assert_eq!(
            parse_incompatible("Server selection timeout: No available servers"),
            None
        );
        assert_eq!(mongodb_release(8), "MongoDB 4.2");
        assert_eq!(mongodb_release(0), "MongoDB 2.4 or older");
    }

    #[test]
    fn passwords_in_every_form_are_redacted() {
        let uri = Secret::new("mongodb://backup:p%40ss%3Aw0rd@db1:27017,db2/mes?authSource=admin");
        let r = Redactor::new(&uri);
        let text = format!("failed for {} with p%40ss%3Aw0rd and p@ss:w0rd", uri.expose());
        let out = r.redact(&text);
        assert!(!out.contains("w0rd"), "{out}");
        assert_eq!(password_of("mongodb://u@h/x"), None);
        assert_eq!(password_of("mongodb+srv://u:pw@h/x?y=1"), Some("pw"));
        assert_eq!(password_of("mongodb://h:27017/x"), None);
    }
}

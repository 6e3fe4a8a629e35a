//! The sink's one error type; messages name the endpoint, bucket and key, never a credential.

use std::path::PathBuf;

use backup_core::{ErrorKind, HasKind};

/// What went wrong with the object store, phrased for the operator.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The store answered with an error (or could not be reached).
    #[error("{action} {location}: {message}{}", advice(*kind))]
    Store {
        /// What we were doing (`upload`, `list`, `read`, `delete`).
        action: &'static str,
        /// `s3://bucket/key` and the endpoint.
        location: String,
        /// The store's message (no credentials).
        message: String,
        /// What kind of failure.
        kind: ErrorKind,
    },
    /// A credential could not be read.
    #[error("{0}")]
    Credentials(String),
    /// A local file of the pack could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Local {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An uploaded object did not read back as what was sent.
    #[error(
        "{location} reads back with sha256 {got} but {expected} was uploaded; the store altered or lost the object. Nothing was committed; run the job again and check the store"
    )]
    ReadBack {
        /// The object.
        location: String,
        /// The expected sha256.
        expected: String,
        /// What was read back.
        got: String,
    },
    /// The pack already exists in the bucket.
    #[error("{0} already exists; packs are never overwritten")]
    Exists(String),
    /// Another `backup-core` operation failed.
    #[error(transparent)]
    Core(#[from] backup_core::Error),
}

fn advice(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Denied => "; check access_key_id/secret_access_key and that the key may read and write the bucket",
        ErrorKind::Unavailable => "; check that the endpoint is reachable and the store is up (retried with backoff)",
        ErrorKind::NotFound => "",
        ErrorKind::Config => "; check endpoint, region, bucket and path_style",
        _ => "",
    }
}

/// The kind of an OpenDAL error.
pub(crate) fn kind_of(e: &opendal::Error) -> ErrorKind {
    use opendal::ErrorKind as K;
    match e.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::PermissionDenied => ErrorKind::Denied,
        K::ConfigInvalid => ErrorKind::Config,
        K::RateLimited => ErrorKind::Unavailable,
        K::AlreadyExists | K::ConditionNotMatch => ErrorKind::Busy,
        // Temporary, or temporary and still failing after the retries (persistent).
        _ if e.is_temporary() || e.is_persistent() => ErrorKind::Unavailable,
        _ => ErrorKind::Other,
    }
}

/// The operator-facing text of an OpenDAL error: its kind and the store's message, without the
/// request context (which may carry signed URLs).
pub(crate) fn message_of(e: &opendal::Error) -> String {
    let mut msg = e.message().trim().to_string();
    if msg.is_empty() {
        msg = e.kind().to_string();
    }
    // S3 error bodies are XML (or OpenDAL's parsed `S3Error { code: "…", message: "…" }`);
    // keep the code and the message when they are there.
    if let (Some(code), Some(text)) = (xml_tag(&msg, "Code"), xml_tag(&msg, "Message")) {
        return format!("{code}: {text}");
    }
    if let (Some(code), Some(text)) = (quoted_field(&msg, "code"), quoted_field(&msg, "message")) {
        return format!("{code}: {text}");
    }
    if msg.len() > 300 {
        msg.truncate(300);
        msg.push('…');
    }
    msg
}

fn quoted_field(text: &str, field: &str) -> Option<String> {
    let start = text.find(&format!("{field}: \""))? + field.len() + 3;
    let end = text[start..].find('"')? + start;
    Some(text[start..end].to_string())
}

fn xml_tag(text: &str, tag: &str) -> Option<String> {
    let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(text[start..end].to_string())
}

impl HasKind for ObjectError {
    fn kind(&self) -> ErrorKind {
        match self {
            ObjectError::Store { kind, .. } => *kind,
            ObjectError::Credentials(_) => ErrorKind::Config,
            ObjectError::Local { source, .. } => ErrorKind::of_io(source),
            ObjectError::ReadBack { .. } => ErrorKind::Damaged,
            ObjectError::Exists(_) => ErrorKind::Other,
            ObjectError::Core(e) => e.kind(),
        }
    }
}

/// The `io::Error` a [`backup_core::PackReader`] returns for an OpenDAL error.
pub(crate) fn to_io(location: &str, e: &opendal::Error) -> std::io::Error {
    use std::io::ErrorKind as K;
    let kind = match kind_of(e) {
        ErrorKind::NotFound => K::NotFound,
        ErrorKind::Denied => K::PermissionDenied,
        ErrorKind::Unavailable => K::TimedOut,
        _ => K::Other,
    };
    std::io::Error::new(kind, format!("{location}: {}", message_of(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_xml_errors_are_shortened_to_code_and_message() {
        let body = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Forbidden: no such key</Message><Resource>/b</Resource></Error>";
        assert_eq!(
            xml_tag(body, "Code").zip(xml_tag(body, "Message")),
            Some(("AccessDenied".to_string(), "Forbidden: no such key".to_string()))
        );
        let parsed = r#"S3Error { code: "AccessDenied", message: "Forbidden: Invalid signature", resource: "/b" }"#;
        assert_eq!(quoted_field(parsed, "code").as_deref(), Some("AccessDenied"));
        assert_eq!(
            quoted_field(parsed, "message").as_deref(),
            Some("Forbidden: Invalid signature")
        );
    }
}

//! Config errors that name the file, the line and the key.
//!
//! Every error about a loaded config goes through [`key_error`] (or [`super::ConfigText::key_error`]), so
//! they all read the same way:
//!
//! ```text
//! config file /etc/packrat/packrat.toml, line 4, key `state_dir`: must not be empty
//!   4 | state_dir = ""
//! ```
//!
//! Lines are found in the parsed TOML document (keys carry their spans), so a key is found in a
//! `[table]`, in a dotted key (`retention.keep_daily = 7`) and in an inline table
//! (`retention = { keep_daily = 7 }`) alike.

use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};

use crate::Error;

/// The 1-based line of `key` (segments: `["plans", "hot", "incremental"]`) in the TOML `text`.
///
/// When the key itself is absent, the line of the nearest enclosing table or key that is present
/// (`[plans.hot]`); `None` when not even the first segment is present or `text` is not TOML.
///
/// ```
/// use backup_core::config::line_of_key;
/// let text = "state_dir = \"/s\"\n[plans.hot]\nsinks = []\nretention = { keep_daily = 0 }\n";
/// assert_eq!(line_of_key(text, &["plans", "hot", "retention", "keep_daily"]), Some(4));
/// assert_eq!(line_of_key(text, &["plans", "hot", "full"]), Some(2));
/// assert_eq!(line_of_key(text, &["state_dir"]), Some(1));
/// ```
pub fn line_of_key(text: &str, key: &[&str]) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    span_of_key(doc.get_ref(), key).map(|s| line_at(text, s.start))
}

/// The span of `key`, or of its nearest present ancestor.
fn span_of_key(root: &DeTable<'_>, key: &[&str]) -> Option<Range<usize>> {
    let mut table = root;
    let mut best = None;
    for seg in key {
        let Some((k, v)) = table.get_key_value(*seg) else {
            break;
        };
        best = Some(k.span());
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    best
}

/// The key whose value is written at byte offset `at` (the innermost one), for parser errors
/// that only carry a span.
pub(super) fn key_at(root: &DeTable<'_>, at: usize) -> Option<Vec<String>> {
    fn walk(t: &DeTable<'_>, at: usize, prefix: &mut Vec<String>, best: &mut Option<(usize, Vec<String>)>) {
        for (k, v) in t.iter() {
            prefix.push(k.get_ref().to_string());
            let span = v.span();
            let inside = span.start <= at && at < span.end.max(span.start + 1);
            if inside && best.as_ref().is_none_or(|(len, _)| span.len() <= *len) {
                *best = Some((span.len(), prefix.clone()));
            }
            match v.get_ref() {
                DeValue::Table(inner) => walk(inner, at, prefix, best),
                DeValue::Array(items) => {
                    for item in items.iter() {
                        if let DeValue::Table(inner) = item.get_ref() {
                            walk(inner, at, prefix, best);
                        }
                    }
                }
                _ => {}
            }
            prefix.pop();
        }
    }
    let mut best = None;
    walk(root, at, &mut Vec::new(), &mut best);
    best.map(|(_, k)| k)
}

/// The full key of the key named `name` written on line `line` (for unknown-key errors, whose
/// message only names the last segment).
pub(super) fn key_on_line(root: &DeTable<'_>, text: &str, line: usize, name: &str) -> Option<Vec<String>> {
    fn walk(t: &DeTable<'_>, text: &str, line: usize, name: &str, prefix: &mut Vec<String>) -> Option<Vec<String>> {
        for (k, v) in t.iter() {
            prefix.push(k.get_ref().to_string());
            if k.get_ref() == name && line_at(text, k.span().start) == line {
                return Some(prefix.clone());
            }
            if let DeValue::Table(inner) = v.get_ref()
                && let Some(found) = walk(inner, text, line, name, prefix)
            {
                return Some(found);
            }
            prefix.pop();
        }
        None
    }
    walk(root, text, line, name, &mut Vec::new())
}

/// The table at `key`, if there is one.
pub(super) fn table_at<'a, 'i>(root: &'a DeTable<'i>, key: &[String]) -> Option<&'a DeTable<'i>> {
    let mut t = root;
    for seg in key {
        match t.get(seg.as_str())?.get_ref() {
            DeValue::Table(inner) => t = inner,
            _ => return None,
        }
    }
    Some(t)
}

/// The one key inside `table` whose value the serde message `msg` quotes (`invalid type:
/// integer `5`, expected a duration`, `unknown variant `oracle``), with the offset of the value.
/// For errors in tagged tables (`type = ".."`), where the parser only knows the table's span.
pub(super) fn key_quoted_in(table: &DeTable<'_>, msg: &str) -> Option<(Vec<String>, usize)> {
    fn quoted(v: &DeValue<'_>, msg: &str) -> bool {
        match v {
            DeValue::String(s) => msg.contains(&format!("{s:?}")) || msg.contains(&format!("`{s}`")),
            DeValue::Integer(i) => msg.contains(&format!("integer `{}`", i.as_str().replace('_', ""))),
            DeValue::Float(f) => msg.contains(&format!("floating point `{}`", f.as_str().replace('_', ""))),
            DeValue::Boolean(b) => msg.contains(&format!("boolean `{b}`")),
            DeValue::Array(_) => msg.starts_with("invalid type: sequence"),
            DeValue::Datetime(_) | DeValue::Table(_) => false,
        }
    }
    fn walk(t: &DeTable<'_>, msg: &str, prefix: &mut Vec<String>, found: &mut Vec<(Vec<String>, usize)>) {
        for (k, v) in t.iter() {
            prefix.push(k.get_ref().to_string());
            match v.get_ref() {
                DeValue::Table(inner) => walk(inner, msg, prefix, found),
                other if quoted(other, msg) => found.push((prefix.clone(), v.span().start)),
                _ => {}
            }
            prefix.pop();
        }
    }
    let mut found = Vec::new();
    walk(table, msg, &mut Vec::new(), &mut found);
    if found.len() == 1 { found.pop() } else { None }
}

/// The 1-based line of byte offset `at` in `text`.
pub(super) fn line_at(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1
}

/// `plans.hot.incremental`; segments that are not bare TOML keys are quoted
/// (`sources."my db".path`).
pub fn display_key(key: &[&str]) -> String {
    key.iter()
        .map(|s| {
            let bare = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if bare { (*s).to_string() } else { format!("{s:?}") }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The error "config file FILE, line L, key `KEY`: MSG", followed by the line itself.
///
/// `path` is the config file, `text` its content (used to find the line of `key`).
pub fn key_error(path: &Path, text: &str, key: &[&str], msg: impl std::fmt::Display) -> Error {
    at_line(path, text, line_of_key(text, key), &display_key(key), &msg.to_string())
}

/// The error text with an already known line (`None`: unknown) and key (`""`: none).
pub(super) fn at_line(path: &Path, text: &str, line: Option<usize>, key: &str, msg: &str) -> Error {
    let mut out = format!("config file {}", path.display());
    if let Some(l) = line {
        out.push_str(&format!(", line {l}"));
    }
    if !key.is_empty() {
        out.push_str(&format!(", key `{key}`"));
    }
    out.push_str(": ");
    out.push_str(msg);
    if let Some(l) = line {
        let snippet = text.lines().nth(l - 1).unwrap_or("").trim();
        if !snippet.is_empty() {
            out.push_str(&format!("\n  {l} | {}", shorten(snippet, 120)));
        }
    }
    Error::Config(out)
}

/// `s`, cut to at most `max` characters (with `…`).
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// A string value (or a name) that is empty or only blanks: its key, and the byte offset where
/// it is written. Array elements report the array's key.
pub(super) fn find_blank(root: &DeTable<'_>) -> Option<(Vec<String>, usize)> {
    fn walk(t: &DeTable<'_>, prefix: &mut Vec<String>) -> Option<(Vec<String>, usize)> {
        for (k, v) in t.iter() {
            prefix.push(k.get_ref().to_string());
            if k.get_ref().trim().is_empty() {
                return Some((prefix.clone(), k.span().start));
            }
            let found = match v.get_ref() {
                DeValue::String(s) if s.trim().is_empty() => Some((prefix.clone(), v.span().start)),
                DeValue::Table(inner) => walk(inner, prefix),
                DeValue::Array(items) => items.iter().find_map(|item| match item.get_ref() {
                    DeValue::String(s) if s.trim().is_empty() => Some((prefix.clone(), item.span().start)),
                    DeValue::Table(inner) => walk(inner, prefix),
                    _ => None,
                }),
                _ => None,
            };
            if found.is_some() {
                return found;
            }
            prefix.pop();
        }
        None
    }
    walk(root, &mut Vec::new())
}

/// What to say about an empty value of `key` (its last segment).
pub(super) fn blank_advice(key: &[String]) -> String {
    let last = key.last().map(String::as_str).unwrap_or("");
    if last.trim().is_empty() {
        return "a name must not be empty; name the table, e.g. [sources.app_db]".into();
    }
    let what = if last.ends_with("_env") {
        "name the environment variable that holds the value"
    } else if last == "path" || last.ends_with("_file") || last.ends_with("_dir") || last.ends_with("_files") {
        "give a path (absolute, or relative to the config file's directory)"
    } else {
        "set a value, or remove the key to use its default"
    };
    format!("must not be empty; {what}")
}

/// On Linux and other non-Windows systems, a path written the Windows way (`D:/x`, `D:\x`,
/// `C:`, `\\server\share`) is a mistake: it would silently become a relative directory.
pub(super) fn windows_path_problem(p: &Path) -> Option<String> {
    if cfg!(windows) {
        return None;
    }
    let s = p.to_string_lossy();
    let b = s.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Some(format!(
            "`{s}` looks like a Windows path (drive {}:); on Linux use an absolute path such as /srv/backups",
            b[0] as char
        ));
    }
    if s.starts_with("\\\\") {
        return Some(format!(
            "`{s}` looks like a Windows network (UNC) path; on Linux mount the share (e.g. at /mnt/share) and use \
             that path"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"parallelism = 0
state_dir = "/s"

[sources."my db"]
type = "sqlite"
path = ""

[plans.hot]
source = "x"
retention.keep_daily = 3
per_collection.chat = { mode = "full" }
[plans.nightly]
sinks = ["a", " "]
retention = { keep_daily = 0,
  keep_weekly = 2 }
"#;

    #[test]
    fn keys_are_found_in_tables_dotted_keys_and_inline_tables() {
        let at = |k: &[&str]| line_of_key(TEXT, k);
        assert_eq!(at(&["parallelism"]), Some(1));
        assert_eq!(at(&["state_dir"]), Some(2));
        assert_eq!(at(&["sources", "my db"]), Some(4));
        assert_eq!(at(&["sources", "my db", "path"]), Some(6));
        assert_eq!(at(&["plans", "hot"]), Some(8));
        assert_eq!(at(&["plans", "hot", "source"]), Some(9));
        assert_eq!(at(&["plans", "hot", "retention", "keep_daily"]), Some(10));
        assert_eq!(at(&["plans", "hot", "per_collection", "chat", "mode"]), Some(11));
        assert_eq!(at(&["plans", "nightly", "sinks"]), Some(13));
        assert_eq!(at(&["plans", "nightly", "retention", "keep_daily"]), Some(14));
        assert_eq!(at(&["plans", "nightly", "retention", "keep_weekly"]), Some(15));
        // Absent keys: the nearest enclosing table.
        assert_eq!(at(&["plans", "nightly", "full"]), Some(12));
        assert_eq!(at(&["daemon", "log_level"]), None);
        assert_eq!(line_of_key("not = [toml", &["not"]), None);
    }

    #[test]
    fn messages_name_file_line_and_key_without_empty_brackets() {
        let e = key_error(Path::new("/etc/p.toml"), TEXT, &["parallelism"], "must be at least 1").to_string();
        assert_eq!(
            e,
            "config file /etc/p.toml, line 1, key `parallelism`: must be at least 1\n  1 | parallelism = 0"
        );
        let e = key_error(Path::new("p.toml"), TEXT, &["sources", "my db", "path"], "x").to_string();
        assert!(
            e.starts_with("config file p.toml, line 6, key `sources.\"my db\".path`: x"),
            "{e}"
        );
        let e = key_error(Path::new("p.toml"), "", &["daemon", "log_level"], "bad").to_string();
        assert_eq!(e, "config file p.toml, key `daemon.log_level`: bad");
    }

    #[test]
    fn blank_strings_and_names_are_found() {
        let doc = DeTable::parse(TEXT).unwrap();
        let (key, at) = find_blank(doc.get_ref()).unwrap();
        assert_eq!(
            key,
            ["plans", "nightly", "sinks"],
            "BTreeMap order: plans before sources"
        );
        assert_eq!(line_at(TEXT, at), 13);
        let doc = DeTable::parse("[sources.\"\"]\ntype = \"sqlite\"\n").unwrap();
        let (key, at) = find_blank(doc.get_ref()).unwrap();
        assert_eq!(key, ["sources", ""]);
        assert_eq!(line_at("[sources.\"\"]\n", at), 1);
        assert!(blank_advice(&key).contains("a name must not be empty"));
    }

    #[cfg(not(windows))]
    #[test]
    fn windows_paths_are_recognised_on_linux() {
        for p in [
            "D:/incrementalBackups",
            "D:\\incrementalBackups",
            "C:",
            "c:relative",
            "\\\\server\\share\\dir",
        ] {
            assert!(windows_path_problem(Path::new(p)).is_some(), "{p}");
        }
        for p in ["/srv/backups", "backups", "./D:", "data/C:x", "//srv/backups", "D"] {
            assert!(windows_path_problem(Path::new(p)).is_none(), "{p}");
        }
    }
}

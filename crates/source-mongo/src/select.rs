//! Which collections a plan backs up, by which time field, and in which mode.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{CollectionConfig, CollectionMode, DEFAULT_LAG, FirstRun, MongoPlanConfig};

use crate::error::{Error, Result};

/// The collections of one database a plan selects, with their time fields and modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Names or globs (`*`, `?`, `[a-z]`); empty selects every collection. A plain name must
    /// exist.
    pub collections: Vec<String>,
    /// Names or globs to leave out.
    pub exclude: Vec<String>,
    /// Default time field of incremental windows.
    pub time_field: Option<String>,
    /// Incremental windows end this far behind the job's start.
    pub lag: Duration,
    /// Where the first incremental run starts.
    pub first_run: FirstRun,
    /// Per-collection time field and mode.
    pub per_collection: BTreeMap<String, CollectionConfig>,
}

impl Default for Selection {
    fn default() -> Self {
        Selection::all()
    }
}

impl Selection {
    /// Every collection, no time field (full copies), default lag, first run `today`.
    pub fn all() -> Selection {
        Selection {
            collections: Vec::new(),
            exclude: Vec::new(),
            time_field: None,
            lag: DEFAULT_LAG,
            first_run: FirstRun::Today,
            per_collection: BTreeMap::new(),
        }
    }

    /// These collections (names or globs), incremental by `time_field`.
    pub fn collections<I, S>(names: I, time_field: Option<&str>) -> Selection
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Selection {
            collections: names.into_iter().map(Into::into).collect(),
            time_field: time_field.map(str::to_string),
            ..Selection::all()
        }
    }

    /// The selection a plan's `[plans.NAME.mongo]` describes.
    pub fn from_plan(plan: &MongoPlanConfig) -> Selection {
        Selection {
            collections: plan.collections.clone(),
            exclude: plan.exclude_collections.clone(),
            time_field: plan.time_field.clone(),
            lag: plan.lag(),
            first_run: plan.first_run.unwrap_or_default(),
            per_collection: plan.per_collection.clone(),
        }
    }

    /// The time field of `collection`, if it has one.
    pub fn time_field_of(&self, collection: &str) -> Option<&str> {
        self.per_collection
            .get(collection)
            .and_then(|c| c.time_field.as_deref())
            .or(self.time_field.as_deref())
    }

    /// The mode of `collection`.
    pub fn mode_of(&self, collection: &str) -> CollectionMode {
        self.per_collection
            .get(collection)
            .and_then(|c| c.mode)
            .unwrap_or_default()
    }

    /// Picks the selected collections out of those that exist, in name order. Plain names that
    /// do not exist fail with [`Error::CollectionMissing`]; patterns that match nothing are
    /// returned as warnings. System collections (`system.*`) are never selected by a pattern.
    pub fn resolve(&self, database: &str, existing: &[String]) -> Result<(Vec<String>, Vec<String>)> {
        let mut warnings = Vec::new();
        let mut picked: Vec<String> = Vec::new();
        let usable = |n: &&String| !n.starts_with("system.");
        if self.collections.is_empty() {
            picked.extend(existing.iter().filter(usable).cloned());
        }
        for pattern in &self.collections {
            if is_glob(pattern) {
                let before = picked.len();
                picked.extend(
                    existing
                        .iter()
                        .filter(usable)
                        .filter(|n| glob_match(pattern, n))
                        .cloned(),
                );
                if picked.len() == before {
                    warnings.push(format!(
                        "pattern `{pattern}` matches no collection of database `{database}`"
                    ));
                }
            } else if existing.iter().any(|n| n == pattern) {
                picked.push(pattern.clone());
            } else {
                let mut names: Vec<&str> = existing.iter().map(String::as_str).collect();
                names.sort_unstable();
                return Err(Error::CollectionMissing {
                    database: database.to_string(),
                    collection: pattern.clone(),
                    existing: if names.is_empty() {
                        "no collections".into()
                    } else {
                        names.join(", ")
                    },
                });
            }
        }
        picked.retain(|n| !self.exclude.iter().any(|p| glob_match(p, n)));
        picked.sort();
        picked.dedup();
        Ok((picked, warnings))
    }
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Shell-style glob: `*` any run, `?` one character, `[abc]`/`[a-z]`/`[!a]` a class.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    matches(&p, &n)
}

fn matches(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, len)) = class(&p[pi..], n[ni])
                        && ok
                    {
                        pi += len;
                        ni += 1;
                        continue;
                    }
                }
                c if c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class at the start of `p` (`[...]`); returns (matched, class length).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let end = p.iter().skip(1).position(|&x| x == ']')? + 1;
    let body = &p[1..end];
    let (negate, body) = match body.first() {
        Some('!') | Some('^') => (true, &body[1..]),
        _ => (false, body),
    };
    let mut hit = false;
    let mut i = 0;
    while i < body.len() {
        if i + 2 < body.len() && body[i + 1] == '-' {
            hit |= body[i] <= c && c <= body[i + 2];
            i += 3;
        } else {
            hit |= body[i] == c;
            i += 1;
        }
    }
    Some((hit != negate, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("scan*", "scanrecords"));
        assert!(glob_match("*_logs", "api_logs"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "abbc"));
        assert!(glob_match("[a-c]*", "chat"));
        assert!(!glob_match("[!a-c]*", "chat"));
        assert!(glob_match("*", ""));
        assert!(glob_match("*a*b", "xxaxxb"));
        assert!(!glob_match("*a*b", "xxaxxbc"));
    }

    #[test]
    fn resolve_names_globs_and_excludes() {
        let existing: Vec<String> = ["api_logs", "chat", "scanrecords", "scan_tmp", "system.views"]
            .into_iter()
            .map(String::from)
            .collect();
        let mut s = Selection::collections(["chat", "scan*"], Some("createdAt"));
        s.exclude = vec!["*_tmp".into()];
        let (picked, warnings) = s.resolve("mes", &existing).unwrap();
        assert_eq!(picked, ["chat", "scanrecords"]);
        assert!(warnings.is_empty());

        let (all, _) = Selection::all().resolve("mes", &existing).unwrap();
        assert_eq!(all, ["api_logs", "chat", "scan_tmp", "scanrecords"]);

        let e = Selection::collections(["nope"], None)
            .resolve("mes", &existing)
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("`nope` not found in database `mes`") && msg.contains("api_logs"),
            "{msg}"
        );

        let (_, w) = Selection::collections(["zz*"], None).resolve("mes", &existing).unwrap();
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn per_collection_overrides() {
        let mut s = Selection::collections(["a", "b"], Some("createdAt"));
        s.per_collection.insert(
            "b".into(),
            CollectionConfig {
                time_field: Some("updatedAt".into()),
                mode: Some(CollectionMode::Full),
            },
        );
        assert_eq!(s.time_field_of("a"), Some("createdAt"));
        assert_eq!(s.time_field_of("b"), Some("updatedAt"));
        assert_eq!(s.mode_of("b"), CollectionMode::Full);
        assert_eq!(s.mode_of("a"), CollectionMode::Incremental);
    }
}

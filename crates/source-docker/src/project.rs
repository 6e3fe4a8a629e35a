//! The compose project: its name (derived as compose derives it) and its files.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Error;

/// The label compose puts on every container, network and volume of a project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// The label compose (v1 and v2) puts on containers naming the compose files used.
pub(crate) const CONFIG_FILES_LABEL: &str = "com.docker.compose.project.config_files";
/// The label compose puts on containers naming the project directory.
pub(crate) const WORKING_DIR_LABEL: &str = "com.docker.compose.project.working_dir";

/// Compose's normalisation of a project name: lower case, only `a-z 0-9 _ -`, starting with a
/// letter or digit.
pub fn normalize_project_name(name: &str) -> String {
    let s: String = name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    s.trim_start_matches(['_', '-']).to_string()
}

/// The project name compose would use for `compose_file` without `-p`: `COMPOSE_PROJECT_NAME`
/// from the `.env` next to it, else the file's top-level `name:`, else the directory's name.
pub fn project_name(compose_file: &Path) -> Result<String, Error> {
    let text = read_compose(compose_file)?;
    let dir = compose_dir(compose_file);
    if let Some(n) = dotenv_value(&dir.join(".env"), "COMPOSE_PROJECT_NAME") {
        let n = normalize_project_name(&n);
        if !n.is_empty() {
            return Ok(n);
        }
    }
    if let Some(n) = top_level_name(&text) {
        let n = normalize_project_name(&n);
        if !n.is_empty() {
            return Ok(n);
        }
    }
    let base = fs::canonicalize(&dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let n = normalize_project_name(&base);
    if n.is_empty() {
        return Err(Error::ComposeFile {
            path: compose_file.to_path_buf(),
            reason: format!("gives no usable project name (directory `{base}`); set `project` in the config"),
        });
    }
    Ok(n)
}

/// Reads the compose file, with errors that say what is wrong.
pub(crate) fn read_compose(path: &Path) -> Result<String, Error> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::ComposeFile {
            path: path.to_path_buf(),
            reason: "not found".into(),
        }),
        Err(e) => Err(Error::ComposeFile {
            path: path.to_path_buf(),
            reason: format!("cannot be read: {e}"),
        }),
    }
}

/// The directory of a compose file (`.` for a bare file name).
pub(crate) fn compose_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The value of a top-level `name:` key of a YAML document (only the simple scalar forms compose
/// files use: `name: x`, `name: "x"`, `name: 'x'`, with an optional comment).
pub(crate) fn top_level_name(yaml: &str) -> Option<String> {
    for line in yaml.lines() {
        let Some(rest) = line.strip_prefix("name:") else {
            continue;
        };
        let v = rest.trim();
        let v = match v.chars().next() {
            Some(q @ ('"' | '\'')) => v[1..].split(q).next().unwrap_or_default(),
            _ => v.split(" #").next().unwrap_or_default().trim(),
        };
        if !v.is_empty() {
            return Some(v.to_string());
        }
    }
    None
}

/// The value of `key` in a `.env` file (`KEY=value`, optional `export `, quotes, comments).
pub(crate) fn dotenv_value(path: &Path, key: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else { continue };
        if k.trim() != key {
            continue;
        }
        let v = v.trim();
        let v = match v.chars().next() {
            Some(q @ ('"' | '\'')) => v[1..].split(q).next().unwrap_or_default(),
            _ => v.split(" #").next().unwrap_or_default().trim(),
        };
        return Some(v.to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised_like_compose() {
        assert_eq!(normalize_project_name("My App.v2"), "myappv2");
        assert_eq!(normalize_project_name("_x-Y"), "x-y");
        assert_eq!(normalize_project_name("..."), "");
    }

    #[test]
    fn name_precedence_env_then_name_key_then_directory() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("Shop Stack");
        fs::create_dir(&dir).unwrap();
        let f = dir.join("docker-compose.yml");
        fs::write(&f, "version: '3'\nservices:\n  a:\n    image: x\n").unwrap();
        assert_eq!(project_name(&f).unwrap(), "shopstack");
        fs::write(
            &f,
            "name: \"Billing\" # the app\nservices:\n  a:\n    image: x\n    name: no\n",
        )
        .unwrap();
        assert_eq!(project_name(&f).unwrap(), "billing");
        fs::write(
            dir.join(".env"),
            "# env\nexport COMPOSE_PROJECT_NAME='from_env'\nOTHER=1\n",
        )
        .unwrap();
        assert_eq!(project_name(&f).unwrap(), "from_env");
        let e = project_name(&dir.join("missing.yml")).unwrap_err().to_string();
        assert!(e.contains("missing.yml") && e.contains("not found"), "{e}");
    }
}

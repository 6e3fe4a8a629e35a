//! `SHA256SUMS`: the checksum list of a pack, in the format `sha256sum` writes and `sha256sum -c`
//! reads.
//!
//! One line per file, `<64 lowercase hex digits>  <path>\n`, the artifacts first and
//! `manifest.json` last. The parser is strict: a file that is not exactly what packrat writes is
//! reported, naming the line (so even `sha256sum -b`'s ` *` marker is refused: a damaged space
//! could turn into it), and damage to `SHA256SUMS` is never silently tolerated. Whatever parses
//! serialises back to the same bytes.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

use crate::manifest::{MANIFEST_FILE, Manifest, SUMS_FILE};
use crate::reader::PackReader;
use crate::verify::Problem;

/// Largest `SHA256SUMS` read (about 600,000 lines); a larger one is refused as damaged.
pub const MAX_SUMS_BYTES: u64 = 64 * 1024 * 1024;

/// The parsed `SHA256SUMS` of a pack: path → lowercase hex sha256, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sums {
    lines: Vec<(String, String)>,
    index: BTreeMap<String, usize>,
}

impl Sums {
    /// The list that sealing a pack with `manifest` (serialised as `manifest_json`) writes:
    /// every artifact in manifest order, then `manifest.json`.
    pub fn for_manifest(manifest: &Manifest, manifest_json: &[u8]) -> Sums {
        let mut s = Sums::default();
        for a in &manifest.artifacts {
            s.push(a.path.clone(), a.sha256.clone());
        }
        s.push(MANIFEST_FILE.to_string(), hex::encode(Sha256::digest(manifest_json)));
        s
    }

    /// Parses the bytes of a `SHA256SUMS` file. `Err` names the line and what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<Sums, String> {
        if bytes.len() as u64 > MAX_SUMS_BYTES {
            return Err(format!("is larger than {MAX_SUMS_BYTES} bytes"));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            format!("line {line} is not UTF-8 text")
        })?;
        if text.is_empty() {
            return Err("is empty".into());
        }
        let Some(body) = text.strip_suffix('\n') else {
            return Err("does not end with a newline (truncated?)".into());
        };
        let mut s = Sums::default();
        for (i, line) in body.split('\n').enumerate() {
            let n = i + 1;
            let (hash, name) = split_line(line).map_err(|why| format!("line {n}: {why}"))?;
            if let Some(&first) = s.index.get(name) {
                return Err(format!("line {n} lists {name} again (first on line {})", first + 1));
            }
            s.push(name.to_string(), hash.to_string());
        }
        Ok(s)
    }

    /// Reads and parses the `SHA256SUMS` of `pack` (only a regular file: never blocks on a
    /// FIFO).
    pub fn read(pack: &dyn PackReader) -> Result<Sums, String> {
        let bytes = pack
            .read_file(SUMS_FILE, MAX_SUMS_BYTES)
            .map_err(|e| format!("missing or unreadable: {e}"))?;
        Sums::parse(&bytes)
    }

    /// Where this list disagrees with `manifest` (whose bytes hash to `manifest_sha256`): the
    /// line for `manifest.json` (reported under `manifest.json` when its hash differs), one line
    /// per artifact with the manifest's sha256, and no other line. Empty when they agree.
    pub fn disagreements(&self, manifest: &Manifest, manifest_sha256: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut p = |path: &str, reason: String| {
            out.push(Problem {
                path: path.to_string(),
                reason,
            })
        };
        match self.get(MANIFEST_FILE) {
            Some(h) if h == manifest_sha256 => {}
            Some(_) => p(
                MANIFEST_FILE,
                "sha256 does not match SHA256SUMS: the manifest (or SHA256SUMS) was modified or damaged".into(),
            ),
            None => p(SUMS_FILE, "has no line for manifest.json".into()),
        }
        for a in &manifest.artifacts {
            match self.get(&a.path) {
                Some(h) if h == a.sha256 => {}
                Some(_) => p(SUMS_FILE, format!("line for {} disagrees with manifest.json", a.path)),
                None => p(SUMS_FILE, format!("has no line for {}", a.path)),
            }
        }
        for name in self.paths() {
            if name != MANIFEST_FILE && manifest.artifact(name).is_none() {
                p(SUMS_FILE, format!("lists {name}, which manifest.json does not"));
            }
        }
        out
    }

    /// The hash recorded for `path`.
    pub fn get(&self, path: &str) -> Option<&str> {
        self.index.get(path).map(|&i| self.lines[i].1.as_str())
    }

    /// The listed paths, in file order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(|(p, _)| p.as_str())
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when no line is listed.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The file's text, in `sha256sum` format.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (path, hash) in &self.lines {
            out.push_str(hash);
            out.push_str("  ");
            out.push_str(path);
            out.push('\n');
        }
        out
    }

    fn push(&mut self, path: String, hash: String) {
        self.index.insert(path.clone(), self.lines.len());
        self.lines.push((path, hash));
    }
}

/// `<hash>  <name>` → (hash, name).
fn split_line(line: &str) -> Result<(&str, &str), String> {
    if line.is_empty() {
        return Err("is empty".into());
    }
    if line.starts_with('\\') {
        return Err("uses sha256sum's escaped-name form, which packrat never writes".into());
    }
    let b = line.as_bytes();
    let hex_ok = b.len() >= 64 && b[..64].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if !hex_ok {
        return Err("does not start with a sha256 of 64 lowercase hex digits".into());
    }
    let (hash, rest) = line.split_at(64);
    let Some(name) = rest.strip_prefix("  ") else {
        return Err("is not `<sha256>  <path>`".into());
    };
    if name.is_empty() {
        return Err("has no path".into());
    }
    if name.chars().any(char::is_control) {
        return Err("has a control character in the path".into());
    }
    Ok((hash, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H1: &str = "0000000000000000000000000000000000000000000000000000000000000001";
    const H2: &str = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

    #[test]
    fn parses_what_sha256sum_writes() {
        let text = format!("{H1}  sqlite/app.db\n{H2}  manifest.json\n");
        let s = Sums::parse(text.as_bytes()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.get("sqlite/app.db"), Some(H1));
        assert_eq!(s.get("manifest.json"), Some(H2));
        assert_eq!(s.paths().collect::<Vec<_>>(), ["sqlite/app.db", "manifest.json"]);
        assert_eq!(s.to_text(), text);
    }

    #[test]
    fn refuses_damage_naming_the_line() {
        for (text, want) in [
            (String::new(), "is empty"),
            (format!("{H1}  a"), "newline"),
            (format!("{H1}  a\n\n"), "line 2: is empty"),
            (format!("{H1}  a\n{H1}  a\n"), "line 2 lists a again (first on line 1)"),
            (format!("{}  a\n", H2.to_uppercase()), "line 1: does not start"),
            (format!("{}  a\n", &H1[1..]), "line 1: does not start"),
            (format!("{H1} a\n"), "line 1: is not"),
            (format!("{H1} *a\n"), "line 1: is not"),
            (format!("{H1}\ta\n"), "line 1: is not"),
            (format!("{H1}  \n"), "line 1: has no path"),
            (format!("{H1}  a\r\n"), "control character"),
            (format!("\\{H1}  a\\\\b\n"), "escaped"),
        ] {
            let e = Sums::parse(text.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let e = Sums::parse(&[b'a', b'\n', 0xff, b'\n']).unwrap_err();
        assert!(e.contains("line 2 is not UTF-8"), "{e}");
    }

    /// Paths from a small alphabet (cheaper to generate than a regex strategy).
    fn arb_name() -> impl Strategy<Value = String> {
        const CHARS: [char; 12] = ['a', 'b', 'Z', '0', '_', '.', '-', ' ', '/', 'é', '*', '订'];
        proptest::collection::vec(0..CHARS.len(), 1..12).prop_map(|v| v.into_iter().map(|i| CHARS[i]).collect())
    }

    fn arb_sums() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::btree_map(arb_name(), any::<[u8; 32]>().prop_map(hex::encode), 0..6)
            .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// Arbitrary bytes: an error or a list that round-trips, never a panic.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(s) = Sums::parse(&bytes) {
                prop_assert_eq!(s.to_text().into_bytes(), bytes);
            }
        }

        /// Valid lists round-trip; any mutation of one is refused or parses to a list that
        /// serialises back to exactly the mutated bytes (nothing is silently "repaired").
        #[test]
        fn valid_lists_round_trip_and_mutations_are_exact(
            lines in arb_sums(),
            pos in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
            op in 0u8..4,
        ) {
            let mut s = Sums::default();
            for (p, h) in &lines {
                s.push(p.clone(), h.clone());
            }
            let text = s.to_text();
            if !lines.is_empty() {
                prop_assert_eq!(&Sums::parse(text.as_bytes()).unwrap(), &s);
            }
            let mut bytes = text.into_bytes();
            match op {
                0 if !bytes.is_empty() => { let i = pos.index(bytes.len()); bytes[i] = byte; }
                1 => { let i = pos.index(bytes.len() + 1); bytes.insert(i, byte); }
                2 if !bytes.is_empty() => { let i = pos.index(bytes.len()); bytes.remove(i); }
                _ => { let i = cut.index(bytes.len() + 1); bytes.truncate(i); }
            }
            if let Ok(parsed) = Sums::parse(&bytes) {
                prop_assert_eq!(parsed.to_text().into_bytes(), bytes);
            }
        }
    }
}

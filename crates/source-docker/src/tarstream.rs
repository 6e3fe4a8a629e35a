//! Streaming tar processing: every header is parsed and validated while the bytes pass through
//! unchanged, entries are counted, and (on request) a leading directory is rebased to `./`.
//!
//! One pass, 512-byte blocks, bounded memory: only extended headers (PAX `x`, GNU `L`/`K`, each
//! at most [`MAX_META`] bytes) are held until the entry they describe arrives. File data is copied
//! through a fixed buffer. Header-only types (links, directories, devices, FIFOs) carry no data,
//! as in Go's `archive/tar`, which the Docker engine uses on both ends.
//!
//! Validation refuses what could write outside the extraction directory: absolute paths, `..`
//! components (in entry names and hard-link targets), and, in strict mode, entries that would be
//! extracted through a symbolic link the archive itself created earlier.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// Tar block size.
const BLOCK: usize = 512;
/// Largest extended header (PAX record set, GNU long name) accepted.
pub(crate) const MAX_META: u64 = 1 << 20;
/// Most extended headers in front of one entry.
const MAX_PENDING: usize = 16;
/// Copy buffer.
const BUF: usize = 256 * 1024;

/// What a tar stream holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarStats {
    /// Entries (files, directories, links, devices), not counting extended headers.
    pub entries: u64,
    /// Sum of the sizes of regular files.
    pub content_bytes: u64,
    /// Bytes of the tar stream read (including the end marker and any padding after it).
    pub tar_bytes: u64,
}

/// How to process a stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// Rewrite entries named `<dir>` or `<dir>/…` to `./` and `./…` (hard-link targets too).
    pub rebase: Option<String>,
    /// Also refuse entries below a symlink that an earlier entry of the archive created.
    pub strict: bool,
}

/// Changes to regular files on the way through, and what to look for. Paths are relative to the
/// archive's root, without `./` (`data/app.db`), after rebasing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Edits {
    /// Regular files whose data is replaced by the content of a local file (same name, owner,
    /// mode and mtime; the size is the local file's).
    pub replace: HashMap<Vec<u8>, PathBuf>,
    /// Regular files left out of the output.
    pub omit: HashSet<Vec<u8>>,
    /// Report the regular files (not replaced nor omitted) whose data starts with these bytes.
    pub detect: Option<&'static [u8]>,
}

/// A regular file whose data starts with [`Edits::detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Detected {
    /// Its path, relative to the archive's root, without `./`.
    pub path: Vec<u8>,
    /// Its size in the archive.
    pub size: u64,
}

/// What [`process_edited`] did besides copying.
#[derive(Debug, Clone, Default)]
pub(crate) struct EditReport {
    /// Files found by [`Edits::detect`], in archive order.
    pub detected: Vec<Detected>,
    /// Entries of [`Edits::replace`] that were replaced.
    pub replaced: HashSet<Vec<u8>>,
    /// Entries of [`Edits::omit`] that were left out.
    pub omitted: HashSet<Vec<u8>>,
}

/// Why processing stopped.
#[derive(Debug)]
pub(crate) enum TarError {
    /// Reading the input failed.
    Read(io::Error),
    /// Writing the output failed.
    Write(io::Error),
    /// The archive is malformed or unsafe; the message names the entry.
    Bad(String),
    /// Reading a local file put in place of an entry failed.
    Local(PathBuf, io::Error),
}

impl std::fmt::Display for TarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TarError::Read(e) => write!(f, "reading the archive failed: {e}"),
            TarError::Write(e) => write!(f, "writing the archive failed: {e}"),
            TarError::Bad(m) => f.write_str(m),
            TarError::Local(p, e) => write!(f, "reading {} failed: {e}", p.display()),
        }
    }
}

type Block = [u8; BLOCK];
/// PAX records, `(key, value)`, in order.
type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// An extended header waiting for its entry.
enum Meta {
    Pax { header: Block, records: Records },
    LongName { header: Block, name: Vec<u8> },
    LongLink { header: Block, name: Vec<u8> },
}

/// Reads a tar stream from `r`, validates it and writes it (rebased if asked) to `w`.
pub(crate) fn process<R: Read, W: Write>(r: R, w: W, opts: &Options) -> Result<TarStats, TarError> {
    process_edited(r, w, opts, &Edits::default()).map(|(stats, _)| stats)
}

/// [`process`], applying `edits` to regular files on the way.
pub(crate) fn process_edited<R: Read, W: Write>(
    r: R,
    w: W,
    opts: &Options,
    edits: &Edits,
) -> Result<(TarStats, EditReport), TarError> {
    let mut p = Processor {
        r,
        w,
        opts,
        edits,
        report: EditReport::default(),
        stats: TarStats::default(),
        symlinks: HashSet::new(),
        buf: vec![0u8; BUF],
    };
    let stats = p.run()?;
    Ok((stats, p.report))
}

struct Processor<'a, R, W> {
    r: R,
    w: W,
    opts: &'a Options,
    edits: &'a Edits,
    report: EditReport,
    stats: TarStats,
    symlinks: HashSet<Vec<u8>>,
    buf: Vec<u8>,
}

impl<R: Read, W: Write> Processor<'_, R, W> {
    fn run(&mut self) -> Result<TarStats, TarError> {
        let mut pending: Vec<Meta> = Vec::new();
        loop {
            let Some(header) = self.read_block()? else {
                return Err(TarError::Bad(if self.stats.tar_bytes == 0 {
                    "the archive is empty".into()
                } else {
                    "the archive ends without an end-of-archive marker (truncated)".into()
                }));
            };
            if header.iter().all(|&b| b == 0) {
                if !pending.is_empty() {
                    return Err(TarError::Bad("an extended header is not followed by an entry".into()));
                }
                self.write(&header)?;
                // The rest (a second zero block, record padding) is passed through unparsed.
                loop {
                    let n = self.r.read(&mut self.buf).map_err(TarError::Read)?;
                    if n == 0 {
                        break;
                    }
                    self.w.write_all(&self.buf[..n]).map_err(TarError::Write)?;
                    self.stats.tar_bytes += n as u64;
                }
                self.w.flush().map_err(TarError::Write)?;
                return Ok(self.stats);
            }
            check_checksum(&header, self.stats.tar_bytes - BLOCK as u64)?;
            let kind = header[156];
            match kind {
                b'x' | b'L' | b'K' => {
                    if pending.len() >= MAX_PENDING {
                        return Err(TarError::Bad("too many extended headers in a row".into()));
                    }
                    let size = parse_number(&header[124..136]).ok_or_else(|| bad_field("size", &header))?;
                    if size > MAX_META {
                        return Err(TarError::Bad(format!(
                            "an extended header of {size} bytes is larger than the {MAX_META} bytes accepted"
                        )));
                    }
                    let data = self.read_data(size)?;
                    pending.push(match kind {
                        b'x' => Meta::Pax {
                            header,
                            records: parse_pax(&data)?,
                        },
                        b'L' => Meta::LongName {
                            header,
                            name: trim_nul(&data).to_vec(),
                        },
                        _ => Meta::LongLink {
                            header,
                            name: trim_nul(&data).to_vec(),
                        },
                    });
                }
                b'g' => {
                    let size = parse_number(&header[124..136]).ok_or_else(|| bad_field("size", &header))?;
                    if size > MAX_META {
                        return Err(TarError::Bad("a global extended header is too large".into()));
                    }
                    let data = self.read_data(size)?;
                    let records = parse_pax(&data)?;
                    if self.opts.strict && records.iter().any(|(k, _)| k == b"path" || k == b"linkpath") {
                        return Err(TarError::Bad(
                            "a global extended header sets a path for every entry; refused".into(),
                        ));
                    }
                    self.write(&header)?;
                    self.write_padded(&data)?;
                }
                _ => {
                    self.entry(header, std::mem::take(&mut pending))?;
                }
            }
        }
    }

    fn entry(&mut self, mut header: Block, mut pending: Vec<Meta>) -> Result<(), TarError> {
        let kind = header[156];
        // The effective path, link target and size: PAX beats GNU long names beats the header.
        let mut path = ustar_path(&header);
        let mut link = trim_nul(&header[157..257]).to_vec();
        let mut size = parse_number(&header[124..136]).ok_or_else(|| bad_field("size", &header))?;
        for m in &pending {
            match m {
                Meta::LongName { name, .. } => path = name.clone(),
                Meta::LongLink { name, .. } => link = name.clone(),
                Meta::Pax { .. } => {}
            }
        }
        for m in &pending {
            if let Meta::Pax { records, .. } = m {
                for (k, v) in records {
                    match k.as_slice() {
                        b"path" => path = v.clone(),
                        b"linkpath" => link = v.clone(),
                        b"size" => {
                            size = std::str::from_utf8(v)
                                .ok()
                                .and_then(|s| s.parse().ok())
                                .ok_or_else(|| TarError::Bad(format!("invalid PAX size of {}", show(&path))))?
                        }
                        _ => {}
                    }
                }
            }
        }
        let hardlink = kind == b'1';
        let components = check_path(&path).map_err(|why| TarError::Bad(format!("entry {}: {why}", show(&path))))?;
        if hardlink {
            check_path(&link)
                .map_err(|why| TarError::Bad(format!("hard link {} -> {}: {why}", show(&path), show(&link))))?;
        }
        if self.opts.strict {
            // Every proper ancestor must not be a symlink made by this archive.
            for i in 1..components.len() {
                let ancestor = components[..i].join(&b'/');
                if self.symlinks.contains(&ancestor) {
                    return Err(TarError::Bad(format!(
                        "entry {} would be written through the symbolic link {} earlier in the archive; refused",
                        show(&path),
                        show(&ancestor)
                    )));
                }
            }
            let me = components.join(&b'/');
            if kind == b'2' {
                self.symlinks.insert(me);
            } else {
                self.symlinks.remove(&me);
            }
        }

        // Rebase `<dir>/…` to `./…`.
        let new_path = self.opts.rebase.as_deref().and_then(|d| rebase(&path, d));
        let new_link = if hardlink {
            self.opts.rebase.as_deref().and_then(|d| rebase(&link, d))
        } else {
            None
        };
        if new_path.is_some() || new_link.is_some() {
            for m in &mut pending {
                match m {
                    Meta::Pax { records, .. } => {
                        for (k, v) in records.iter_mut() {
                            match (k.as_slice(), &new_path, &new_link) {
                                (b"path", Some(p), _) => *v = p.clone(),
                                (b"linkpath", _, Some(l)) => *v = l.clone(),
                                _ => {}
                            }
                        }
                    }
                    Meta::LongName { name, .. } => {
                        if let Some(p) = &new_path {
                            *name = p.clone();
                        }
                    }
                    Meta::LongLink { name, .. } => {
                        if let Some(l) = &new_link {
                            *name = l.clone();
                        }
                    }
                }
            }
            if let Some(p) = &new_path {
                let current = ustar_path(&header);
                let target = rebase(&current, self.opts.rebase.as_deref().unwrap_or_default()).unwrap_or(current);
                // A shorter path always fits where the longer one did.
                set_ustar_path(&mut header, if target.len() <= p.len() { &target } else { p });
            }
            if new_link.is_some() {
                let current = trim_nul(&header[157..257]).to_vec();
                if let Some(t) = rebase(&current, self.opts.rebase.as_deref().unwrap_or_default()) {
                    header[157..257].fill(0);
                    header[157..157 + t.len()].copy_from_slice(&t);
                }
            }
            set_checksum(&mut header);
        }

        let regular = matches!(kind, b'0' | 0 | b'7');
        let key = if regular {
            relative_key(new_path.as_deref().unwrap_or(&path))
        } else {
            Vec::new()
        };
        if regular && self.edits.omit.contains(&key) {
            self.skip_data(size, &path)?;
            self.report.omitted.insert(key);
            return Ok(());
        }
        if regular && let Some(local) = self.edits.replace.get(&key) {
            let local = local.clone();
            return self.replace(header, pending, size, &path, key, &local);
        }

        for m in pending {
            self.write_meta(m)?;
        }
        self.write(&header)?;
        self.stats.entries += 1;
        let has_data = !matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        if has_data {
            if regular {
                self.stats.content_bytes = self.stats.content_bytes.saturating_add(size);
                if let Some(magic) = self.edits.detect {
                    return self.copy_detecting(size, &path, key, magic);
                }
            }
            self.copy_data(size, &path)?;
        }
        Ok(())
    }

    /// Writes the entry with the content of `local` instead of its own data (which is skipped):
    /// its headers with the new size (PAX `size` records too), then the file and padding.
    fn replace(
        &mut self,
        mut header: Block,
        mut pending: Vec<Meta>,
        size: u64,
        path: &[u8],
        key: Vec<u8>,
        local: &std::path::Path,
    ) -> Result<(), TarError> {
        self.skip_data(size, path)?;
        let local_err = |e| TarError::Local(local.to_path_buf(), e);
        let mut file = File::open(local).map_err(local_err)?;
        let new_size = file.metadata().map_err(local_err)?.len();
        for m in &mut pending {
            if let Meta::Pax { records, .. } = m {
                for (k, v) in records.iter_mut() {
                    if k == b"size" {
                        *v = new_size.to_string().into_bytes();
                    }
                }
            }
        }
        set_number(&mut header[124..136], new_size);
        set_checksum(&mut header);
        for m in pending {
            self.write_meta(m)?;
        }
        self.write(&header)?;
        self.stats.entries += 1;
        self.stats.content_bytes = self.stats.content_bytes.saturating_add(new_size);
        let mut left = new_size;
        while left > 0 {
            let n = left.min(self.buf.len() as u64) as usize;
            file.read_exact(&mut self.buf[..n]).map_err(local_err)?;
            self.w.write_all(&self.buf[..n]).map_err(TarError::Write)?;
            left -= n as u64;
        }
        let pad = (padded(new_size) - new_size) as usize;
        self.w.write_all(&[0u8; BLOCK][..pad]).map_err(TarError::Write)?;
        self.report.replaced.insert(key);
        Ok(())
    }

    /// Copies a regular file's data, reporting it when its first bytes are `magic`.
    fn copy_detecting(&mut self, size: u64, path: &[u8], key: Vec<u8>, magic: &[u8]) -> Result<(), TarError> {
        if size < magic.len() as u64 {
            return self.copy_data(size, path);
        }
        // The first block holds the magic (size > 0, so there is at least one block).
        let mut first = [0u8; BLOCK];
        self.r.read_exact(&mut first).map_err(|e| truncated(e, &show(path)))?;
        self.stats.tar_bytes += BLOCK as u64;
        self.write(&first)?;
        if first.starts_with(magic) {
            self.report.detected.push(Detected { path: key, size });
        }
        self.copy_data(size.saturating_sub(BLOCK as u64), path)
    }

    /// Reads and drops an entry's data.
    fn skip_data(&mut self, size: u64, path: &[u8]) -> Result<(), TarError> {
        self.pass_data(size, path, false)
    }

    fn write_meta(&mut self, m: Meta) -> Result<(), TarError> {
        let (mut header, data) = match m {
            Meta::Pax { header, records } => (header, serialize_pax(&records)),
            Meta::LongName { header, mut name } | Meta::LongLink { header, mut name } => {
                name.push(0);
                (header, name)
            }
        };
        set_number(&mut header[124..136], data.len() as u64);
        set_checksum(&mut header);
        self.write(&header)?;
        self.write_padded(&data)
    }

    /// Reads one block; `None` at a clean end of input.
    fn read_block(&mut self) -> Result<Option<Block>, TarError> {
        let mut block = [0u8; BLOCK];
        let mut got = 0;
        while got < BLOCK {
            match self.r.read(&mut block[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Read(e)),
            }
        }
        match got {
            0 => Ok(None),
            BLOCK => {
                self.stats.tar_bytes += BLOCK as u64;
                Ok(Some(block))
            }
            _ => Err(TarError::Bad(
                "the archive ends in the middle of a header (truncated)".into(),
            )),
        }
    }

    /// Reads `size` bytes of an extended header's data plus padding (not written yet).
    fn read_data(&mut self, size: u64) -> Result<Vec<u8>, TarError> {
        let padded = padded(size) as usize;
        let mut data = vec![0u8; padded];
        self.r
            .read_exact(&mut data)
            .map_err(|e| truncated(e, "an extended header"))?;
        self.stats.tar_bytes += padded as u64;
        data.truncate(size as usize);
        Ok(data)
    }

    fn copy_data(&mut self, size: u64, path: &[u8]) -> Result<(), TarError> {
        self.pass_data(size, path, true)
    }

    /// Reads an entry's `size` bytes of data and padding, writing them out when `keep`.
    fn pass_data(&mut self, size: u64, path: &[u8], keep: bool) -> Result<(), TarError> {
        let mut left = size
            .checked_next_multiple_of(BLOCK as u64)
            .ok_or_else(|| TarError::Bad(format!("entry {}: invalid size {size}", show(path))))?;
        while left > 0 {
            let n = left.min(self.buf.len() as u64) as usize;
            let got = self.r.read(&mut self.buf[..n]).map_err(TarError::Read)?;
            if got == 0 {
                return Err(TarError::Bad(format!(
                    "the archive ends in the middle of {} (truncated)",
                    show(path)
                )));
            }
            if keep {
                self.w.write_all(&self.buf[..got]).map_err(TarError::Write)?;
            }
            left -= got as u64;
            self.stats.tar_bytes += got as u64;
        }
        Ok(())
    }

    fn write(&mut self, block: &Block) -> Result<(), TarError> {
        self.w.write_all(block).map_err(TarError::Write)
    }

    fn write_padded(&mut self, data: &[u8]) -> Result<(), TarError> {
        self.w.write_all(data).map_err(TarError::Write)?;
        let pad = padded(data.len() as u64) as usize - data.len();
        self.w.write_all(&[0u8; BLOCK][..pad]).map_err(TarError::Write)
    }
}

fn truncated(e: io::Error, what: &str) -> TarError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        TarError::Bad(format!("the archive ends in the middle of {what} (truncated)"))
    } else {
        TarError::Read(e)
    }
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

fn trim_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

fn is_ustar(h: &Block) -> bool {
    &h[257..262] == b"ustar"
}

/// The path stored in the header itself (ustar `prefix/name`, or the old 100-byte name).
fn ustar_path(h: &Block) -> Vec<u8> {
    let name = trim_nul(&h[0..100]);
    if is_ustar(h) && &h[257..263] == b"ustar\0" {
        let prefix = trim_nul(&h[345..500]);
        if !prefix.is_empty() {
            let mut p = prefix.to_vec();
            p.push(b'/');
            p.extend_from_slice(name);
            return p;
        }
    }
    name.to_vec()
}

/// Stores `path` in the header's name (and, for POSIX ustar, prefix) fields when it fits.
fn set_ustar_path(h: &mut Block, path: &[u8]) {
    let posix = &h[257..263] == b"ustar\0";
    if path.len() <= 100 {
        h[0..100].fill(0);
        h[..path.len()].copy_from_slice(path);
        if posix {
            h[345..500].fill(0);
        }
        return;
    }
    if posix {
        // Split at a '/' so that prefix <= 155 and name <= 100.
        for (i, &c) in path.iter().enumerate() {
            if c == b'/' && i <= 155 && path.len() - i - 1 <= 100 && i > 0 {
                h[0..100].fill(0);
                h[..path.len() - i - 1].copy_from_slice(&path[i + 1..]);
                h[345..500].fill(0);
                h[345..345 + i].copy_from_slice(&path[..i]);
                return;
            }
        }
    }
}

/// `<dir>` or `<dir>/…` (optionally with a leading `./` or `/`) as `./` or `./…`; `None` when
/// `path` is not below `dir`.
fn rebase(path: &[u8], dir: &str) -> Option<Vec<u8>> {
    let mut p = path;
    while let Some(rest) = p.strip_prefix(b"./") {
        p = rest;
    }
    let p = p.strip_prefix(b"/").unwrap_or(p);
    let rest = p.strip_prefix(dir.as_bytes())?;
    if rest.is_empty() || rest == b"/" {
        return Some(b"./".to_vec());
    }
    let rest = rest.strip_prefix(b"/")?;
    let mut out = b"./".to_vec();
    out.extend_from_slice(rest);
    Some(out)
}

/// `path` relative to the archive's root: its components joined by `/` (`./a//b` → `a/b`).
pub(crate) fn relative_key(path: &[u8]) -> Vec<u8> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect::<Vec<_>>()
        .join(&b'/')
}

/// Checks that an entry path stays inside the extraction directory; returns its components
/// (without `.` and empty ones).
pub(crate) fn check_path(path: &[u8]) -> Result<Vec<&[u8]>, String> {
    if path.is_empty() {
        return Err("empty name".into());
    }
    if path.contains(&0) {
        return Err("NUL in the name".into());
    }
    if path[0] == b'/' {
        return Err("absolute path; refused (entries must be relative to the volume)".into());
    }
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("`..` component; refused (it would write outside the volume)".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn show(path: &[u8]) -> String {
    format!("`{}`", String::from_utf8_lossy(path))
}

fn bad_field(field: &str, h: &Block) -> TarError {
    TarError::Bad(format!("entry {}: invalid {field} field", show(&ustar_path(h))))
}

/// Parses an octal (space/NUL terminated) or base-256 number field.
fn parse_number(f: &[u8]) -> Option<u64> {
    if f.first().is_some_and(|&b| b & 0x80 != 0) {
        if f[0] & 0x40 != 0 {
            return None; // negative
        }
        let mut n: u64 = u64::from(f[0] & 0x3f);
        for &b in &f[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(n);
    }
    let s = f
        .iter()
        .skip_while(|&&b| b == b' ' || b == 0)
        .take_while(|&&b| b != b' ' && b != 0)
        .copied()
        .collect::<Vec<u8>>();
    if s.is_empty() {
        return Some(0);
    }
    let s = std::str::from_utf8(&s).ok()?;
    u64::from_str_radix(s, 8).ok()
}

/// Writes `n` into a numeric field: octal when it fits, else base-256.
fn set_number(f: &mut [u8], n: u64) {
    let width = f.len() - 1;
    let octal = format!("{n:0width$o}");
    if octal.len() <= width {
        f[..width].copy_from_slice(octal.as_bytes());
        f[width] = 0;
    } else {
        f.fill(0);
        f[0] = 0x80;
        let bytes = n.to_be_bytes();
        let len = f.len();
        f[len - 8..].copy_from_slice(&bytes);
    }
}

fn header_sum(h: &Block) -> u64 {
    h.iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                u64::from(b' ')
            } else {
                u64::from(b)
            }
        })
        .sum()
}

fn check_checksum(h: &Block, offset: u64) -> Result<(), TarError> {
    let stored = parse_number(&h[148..156]);
    let unsigned = header_sum(h);
    // Some old writers summed signed bytes.
    let signed: i64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                i64::from(b' ')
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    match stored {
        Some(s) if s == unsigned || i64::try_from(s).ok() == Some(signed) => Ok(()),
        _ => Err(TarError::Bad(format!(
            "header at byte {offset} has a bad checksum: the archive is damaged or not a tar archive"
        ))),
    }
}

fn set_checksum(h: &mut Block) {
    let sum = header_sum(h);
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
}

fn parse_pax(data: &[u8]) -> Result<Records, TarError> {
    let bad = || TarError::Bad("malformed PAX extended header".into());
    let mut out = Vec::new();
    let mut rest = trim_nul(data);
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = &rest[sp + 1..len - 1];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

fn serialize_pax(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        // "<len> <k>=<v>\n" where len counts itself.
        let body = k.len() + v.len() + 3; // space, '=', '\n'
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// Builds tar streams by hand, for tests here and in the integration tests (the `tar` crate
/// refuses to write unsafe names, which is exactly what the tests need).
#[doc(hidden)]
pub mod build {
    use super::*;

    /// A ustar header for `path` of type `kind` with `size` bytes and `mode`; `link` for links.
    pub fn header(path: &[u8], kind: u8, size: u64, mode: u32, link: &[u8]) -> [u8; 512] {
        let mut h = [0u8; BLOCK];
        let n = path.len().min(100);
        h[..n].copy_from_slice(&path[..n]);
        set_number(&mut h[100..108], u64::from(mode));
        set_number(&mut h[108..116], 0);
        set_number(&mut h[116..124], 0);
        set_number(&mut h[124..136], size);
        set_number(&mut h[136..148], 1_700_000_000);
        h[156] = kind;
        let l = link.len().min(100);
        h[157..157 + l].copy_from_slice(&link[..l]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        set_checksum(&mut h);
        h
    }

    /// Appends an entry (header, data, padding) to `out`.
    pub fn entry(out: &mut Vec<u8>, path: &[u8], kind: u8, data: &[u8], mode: u32, link: &[u8]) {
        out.extend_from_slice(&header(path, kind, data.len() as u64, mode, link));
        out.extend_from_slice(data);
        out.resize(out.len() + (padded(data.len() as u64) as usize - data.len()), 0);
    }

    /// Appends a PAX extended header with `records`.
    pub fn pax(out: &mut Vec<u8>, records: &[(&[u8], &[u8])]) {
        let recs: Vec<(Vec<u8>, Vec<u8>)> = records.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        let data = serialize_pax(&recs);
        entry(out, b"PaxHeaders.0/x", b'x', &data, 0o644, b"");
    }

    /// Appends the end-of-archive marker (two zero blocks).
    pub fn end(out: &mut Vec<u8>) {
        out.resize(out.len() + 2 * BLOCK, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn run(data: &[u8], opts: &Options) -> Result<(TarStats, Vec<u8>), String> {
        let mut out = Vec::new();
        process(data, &mut out, opts)
            .map(|s| (s, out))
            .map_err(|e| e.to_string())
    }

    fn sample(prefix: &str) -> Vec<u8> {
        let mut t = Vec::new();
        entry(&mut t, format!("{prefix}/").as_bytes(), b'5', b"", 0o755, b"");
        entry(&mut t, format!("{prefix}/a.txt").as_bytes(), b'0', b"hello", 0o644, b"");
        pax(
            &mut t,
            &[(b"path", format!("{prefix}/ä b.txt").as_bytes()), (b"mtime", b"1.5")],
        );
        entry(
            &mut t,
            format!("{prefix}/ b.txt").as_bytes(),
            b'0',
            &[7u8; 1000],
            0o4750,
            b"",
        );
        entry(&mut t, format!("{prefix}/link").as_bytes(), b'2', b"", 0o777, b"a.txt");
        entry(
            &mut t,
            format!("{prefix}/hard").as_bytes(),
            b'1',
            b"",
            0o644,
            format!("{prefix}/a.txt").as_bytes(),
        );
        end(&mut t);
        t
    }

    #[test]
    fn passes_through_unchanged_and_counts() {
        let t = sample(".");
        let (s, out) = run(&t, &Options::default()).unwrap();
        assert_eq!(out, t);
        assert_eq!(s.entries, 5);
        assert_eq!(s.content_bytes, 1005);
        assert_eq!(s.tar_bytes, t.len() as u64);
    }

    #[test]
    fn rebases_names_pax_paths_and_hardlink_targets() {
        let t = sample("packrat_v");
        let (s, out) = run(
            &t,
            &Options {
                rebase: Some("packrat_v".into()),
                strict: true,
            },
        )
        .unwrap();
        assert_eq!(s.entries, 5);
        assert_eq!(out.len(), t.len(), "the same layout, shorter names");
        // Everything but the PAX record (length prefix differs) matches a `./` archive.
        let mut ar = tar::Archive::new(out.as_slice());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default();
                format!("{}>{link}", e.path().unwrap().display())
            })
            .collect();
        assert_eq!(
            names,
            ["./>", "./a.txt>", "./ä b.txt>", "./link>a.txt", "./hard>./a.txt"]
        );
        // A second pass sees nothing to rebase.
        let (_, again) = run(&out, &Options::default()).unwrap();
        assert_eq!(again, out);
    }

    #[test]
    fn refuses_escaping_entries() {
        for (path, kind, link) in [
            (&b"../evil"[..], b'0', &b""[..]),
            (b"./a/../../evil", b'0', b""),
            (b"/etc/evil", b'0', b""),
            (b"./ok", b'1', b"../../etc/passwd"),
            (b"./ok", b'1', b"/etc/passwd"),
        ] {
            let mut t = Vec::new();
            entry(&mut t, b"./", b'5', b"", 0o755, b"");
            entry(&mut t, path, kind, b"x", 0o644, link);
            end(&mut t);
            let e = run(&t, &Options::default()).unwrap_err();
            assert!(e.contains("refused"), "{e}");
        }
        // A PAX path overrides a harmless header name.
        let mut t = Vec::new();
        pax(&mut t, &[(b"path", b"../../x")]);
        entry(&mut t, b"./harmless", b'0', b"x", 0o644, b"");
        end(&mut t);
        assert!(run(&t, &Options::default()).unwrap_err().contains("`../../x`"));
    }

    #[test]
    fn strict_mode_refuses_writing_through_a_symlink() {
        let mut t = Vec::new();
        entry(&mut t, b"./d", b'2', b"", 0o777, b"/etc");
        entry(&mut t, b"./d/passwd", b'0', b"x", 0o644, b"");
        end(&mut t);
        assert!(run(&t, &Options::default()).is_ok(), "content only, not strict");
        let e = run(
            &t,
            &Options {
                strict: true,
                ..Options::default()
            },
        )
        .unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn detects_damage_and_truncation() {
        let t = sample(".");
        let mut bad = t.clone();
        bad[10] ^= 1;
        assert!(run(&bad, &Options::default()).unwrap_err().contains("checksum"));
        let e = run(&t[..600], &Options::default()).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let e = run(&t[..1024], &Options::default()).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        assert!(run(b"", &Options::default()).unwrap_err().contains("empty"));
    }

    #[test]
    fn replaces_omits_and_detects_regular_files() {
        let magic: &'static [u8] = b"MAGIC";
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("copy");
        std::fs::write(&local, vec![9u8; 700]).unwrap();
        let mut t = Vec::new();
        entry(&mut t, b"packrat_v/", b'5', b"", 0o755, b"");
        pax(&mut t, &[(b"size", b"5"), (b"mtime", b"1.5")]);
        entry(&mut t, b"packrat_v/a.db", b'0', b"MAGIC", 0o640, b"");
        entry(&mut t, b"packrat_v/a.db-wal", b'0', &[1u8; 600], 0o640, b"");
        entry(&mut t, b"packrat_v/sub/b.db", b'0', b"MAGIC and more", 0o600, b"");
        entry(&mut t, b"packrat_v/c.txt", b'0', b"MAG", 0o600, b"");
        end(&mut t);
        let edits = Edits {
            replace: HashMap::from([(b"a.db".to_vec(), local)]),
            omit: HashSet::from([b"a.db-wal".to_vec(), b"a.db-shm".to_vec()]),
            detect: Some(magic),
        };
        let opts = Options {
            rebase: Some("packrat_v".into()),
            strict: true,
        };
        let mut out = Vec::new();
        let (stats, report) = process_edited(&t[..], &mut out, &opts, &edits).unwrap();
        assert_eq!(stats.entries, 4);
        assert_eq!(stats.content_bytes, 700 + 14 + 3);
        assert_eq!(
            report.detected,
            [Detected {
                path: b"sub/b.db".to_vec(),
                size: 14
            }]
        );
        assert!(report.replaced.contains(&b"a.db"[..]));
        assert!(report.omitted.contains(&b"a.db-wal"[..]));
        let mut ar = tar::Archive::new(out.as_slice());
        let got: Vec<(String, u64, u32, Vec<u8>)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.size(),
                    e.header().mode().unwrap(),
                    data,
                )
            })
            .collect();
        assert_eq!(got[1], ("./a.db".to_string(), 700, 0o640, vec![9u8; 700]));
        assert_eq!(got[2].0, "./sub/b.db");
        assert_eq!(got.len(), 4);
        // The output is a valid stream.
        assert!(process(&out[..], io::sink(), &Options::default()).is_ok());
    }

    #[test]
    fn numbers_and_pax_round_trip() {
        let mut f = [0u8; 12];
        set_number(&mut f, 0o777);
        assert_eq!(parse_number(&f), Some(0o777));
        set_number(&mut f, 1 << 40);
        assert_eq!(parse_number(&f), Some(1 << 40));
        let recs = vec![(b"path".to_vec(), vec![b'a'; 95])];
        let data = serialize_pax(&recs);
        assert_eq!(parse_pax(&data).unwrap(), recs);
        assert!(data.starts_with(b"105 "), "{}", String::from_utf8_lossy(&data));
    }
}

/// Property tests: random, mutated and truncated tar streams through the validating reader and
/// the rewriter must give an error or a valid stream, never a panic or a hang (every loop is
/// bounded by the input, which is finite here).
#[cfg(test)]
mod fuzz {
    use super::build::*;
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;

    const NAMES: [&[u8]; 10] = [
        b"./",
        b"./a",
        b"./a/b",
        b"./d/",
        b"../x",
        b"/abs",
        b"./a/../../x",
        b"packrat_v/",
        b"packrat_v/f",
        b"x",
    ];
    const KINDS: [u8; 10] = [b'0', 0, b'1', b'2', b'3', b'5', b'6', b'7', b'x', b'L'];

    /// `len` pseudo-random bytes from `seed` (much cheaper than a proptest value per byte).
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        (any::<u64>(), 0..max).prop_map(|(seed, len)| bytes(seed, len))
    }

    /// One entry: a name, a type, a link target and some data.
    fn arb_entry() -> impl Strategy<Value = (usize, usize, usize, Vec<u8>)> {
        (0..NAMES.len(), 0..KINDS.len(), 0..NAMES.len(), arb_bytes(700))
    }

    fn build_tar(entries: &[(usize, usize, usize, Vec<u8>)], with_end: bool) -> Vec<u8> {
        let mut t = Vec::new();
        for (n, k, l, data) in entries {
            match KINDS[*k] {
                b'x' => pax(
                    &mut t,
                    &[(b"path", NAMES[*n]), (b"linkpath", NAMES[*l]), (b"mtime", b"1.5")],
                ),
                b'L' => {
                    let mut name = NAMES[*n].repeat(1 + data.len() % 40);
                    name.push(0);
                    entry(&mut t, b"././@LongLink", b'L', &name, 0o644, b"");
                }
                kind => entry(&mut t, NAMES[*n], kind, data, 0o644, NAMES[*l]),
            }
        }
        if with_end {
            end(&mut t);
        }
        t
    }

    fn all_options() -> [Options; 3] {
        [
            Options::default(),
            Options {
                rebase: None,
                strict: true,
            },
            Options {
                rebase: Some("packrat_v".into()),
                strict: true,
            },
        ]
    }

    /// Every mode on `input`; an accepted stream must be accepted again as written.
    fn check(input: &[u8]) -> Result<(), TestCaseError> {
        for opts in all_options() {
            let mut out = Vec::new();
            if let Ok(stats) = process(input, &mut out, &opts) {
                prop_assert_eq!(stats.tar_bytes, input.len() as u64);
                let mut again = Vec::new();
                let second = process(
                    &out[..],
                    &mut again,
                    &Options {
                        rebase: None,
                        ..opts.clone()
                    },
                );
                prop_assert!(second.is_ok(), "output refused: {}", second.unwrap_err());
                prop_assert_eq!(second.unwrap().entries, stats.entries);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn random_bytes_never_panic(input in arb_bytes(3000)) {
            check(&input)?;
        }

        /// Valid streams of every entry type, then damaged: bytes flipped (with the header
        /// checksum fixed, so the damage reaches the parser), bytes inserted or removed, the
        /// stream cut anywhere.
        #[test]
        fn mutated_streams_are_refused_or_valid(
            entries in vec(arb_entry(), 0..6),
            with_end in any::<bool>(),
            edits in vec((any::<Index>(), any::<u8>(), 0u8..5), 0..4),
        ) {
            let mut t = build_tar(&entries, with_end);
            check(&t)?;
            for (at, byte, op) in edits {
                match op {
                    0 | 1 if !t.is_empty() => {
                        let i = at.index(t.len());
                        t[i] = byte;
                        if op == 1 {
                            // Fix the checksum of the block that was hit.
                            let start = i / BLOCK * BLOCK;
                            if start + BLOCK <= t.len() {
                                let mut h = [0u8; BLOCK];
                                h.copy_from_slice(&t[start..start + BLOCK]);
                                set_checksum(&mut h);
                                t[start..start + BLOCK].copy_from_slice(&h);
                            }
                        }
                    }
                    2 => { let i = at.index(t.len() + 1); t.insert(i, byte); }
                    3 if !t.is_empty() => { let i = at.index(t.len()); t.remove(i); }
                    _ => { let i = at.index(t.len() + 1); t.truncate(i); }
                }
            }
            check(&t)?;
        }

        /// Size fields anywhere in the number range (octal and base-256), in headers and PAX.
        #[test]
        fn any_size_field_is_handled(
            size in prop_oneof![any::<u64>(), u64::MAX - 2048..=u64::MAX, 0..4096u64, Just(1 << 33)],
            pax_size in any::<bool>(),
            kind in 0..KINDS.len(),
        ) {
            let mut t = Vec::new();
            if pax_size {
                pax(&mut t, &[(b"size", size.to_string().as_bytes())]);
                entry(&mut t, b"./f", KINDS[kind], b"data", 0o644, b"");
            } else {
                let mut h = header(b"./f", KINDS[kind], 0, 0o644, b"");
                set_number(&mut h[124..136], size);
                set_checksum(&mut h);
                t.extend_from_slice(&h);
                t.extend_from_slice(&[7u8; 1024]);
            }
            end(&mut t);
            check(&t)?;
        }
    }
}

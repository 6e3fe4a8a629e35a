//! Reading a plain concatenation of BSON documents (mongodump's `.bson` layout), one document
//! at a time, with full validation.

use std::io::{self, Read};

use mongodb::bson::{RawBsonRef, RawDocument};

/// Largest document accepted: MongoDB's 16 MiB limit plus the 16 KiB it allows internally.
pub const MAX_DOC: usize = 16 * 1024 * 1024 + 16 * 1024;

/// Reads documents from a stream of concatenated BSON documents.
#[derive(Debug)]
pub struct DocReader<R> {
    r: R,
    offset: u64,
    count: u64,
}

impl<R: Read> DocReader<R> {
    /// Reads from `r` (already decompressed).
    pub fn new(r: R) -> DocReader<R> {
        DocReader { r, offset: 0, count: 0 }
    }

    /// Documents read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Reads the next document's bytes into `buf` (replacing its content) and checks its
    /// framing. Returns `false` at a clean end of stream; fails on a truncated or oversized
    /// document, naming the document number and byte offset.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Result<bool, String> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.r.read(&mut len[got..]) {
                Ok(0) if got == 0 => return Ok(false),
                Ok(0) => return Err(self.at("stream ends inside a document's length prefix")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.at(&format!("cannot read: {e}"))),
            }
        }
        let n = i32::from_le_bytes(len);
        if n < 5 || n as usize > MAX_DOC {
            return Err(self.at(&format!("invalid document length {n}")));
        }
        let n = n as usize;
        buf.clear();
        buf.extend_from_slice(&len);
        buf.resize(n, 0);
        self.r.read_exact(&mut buf[4..]).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                self.at("stream ends inside a document (truncated)")
            } else {
                self.at(&format!("cannot read: {e}"))
            }
        })?;
        self.offset += n as u64;
        self.count += 1;
        Ok(true)
    }

    fn at(&self, what: &str) -> String {
        format!("document {} at byte {}: {what}", self.count + 1, self.offset)
    }
}

/// Parses `bytes` as one BSON document and walks every element, nested documents and arrays
/// included, so that any malformed value is found.
pub fn validate(bytes: &[u8]) -> Result<&RawDocument, String> {
    let doc = RawDocument::from_bytes(bytes).map_err(|e| e.to_string())?;
    walk_doc(doc, 0)?;
    Ok(doc)
}

fn walk_doc(doc: &RawDocument, depth: usize) -> Result<(), String> {
    if depth > 200 {
        return Err("documents nested more than 200 levels deep".into());
    }
    for el in doc {
        let (_, v) = el.map_err(|e| e.to_string())?;
        walk_value(v, depth)?;
    }
    Ok(())
}

fn walk_value(v: RawBsonRef<'_>, depth: usize) -> Result<(), String> {
    match v {
        RawBsonRef::Document(d) => walk_doc(d, depth + 1),
        RawBsonRef::Array(a) => {
            for item in a {
                walk_value(item.map_err(|e| e.to_string())?, depth + 1)?;
            }
            Ok(())
        }
        RawBsonRef::JavaScriptCodeWithScope(c) => walk_doc(c.scope, depth + 1),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, to_vec};

    use super::*;

    #[test]
    fn reads_validates_and_reports_truncation() {
        let mut bytes = Vec::new();
        for i in 0..3 {
            bytes.extend(to_vec(&doc! {"i": i, "a": [1, {"x": "y"}]}).unwrap());
        }
        let mut r = DocReader::new(&bytes[..]);
        let mut buf = Vec::new();
        let mut n = 0;
        while r.next_into(&mut buf).unwrap() {
            validate(&buf).unwrap();
            n += 1;
        }
        assert_eq!(n, 3);
        let cut = &bytes[..bytes.len() - 3];
        let mut r = DocReader::new(cut);
        let err = loop {
            match r.next_into(&mut buf) {
                Ok(true) => {}
                Ok(false) => panic!("truncation undetected"),
                Err(e) => break e,
            }
        };
        assert!(err.contains("document 3") && err.contains("truncated"), "{err}");
        let mut bad = bytes.clone();
        bad[11] = 0x7f; // an invalid element type inside document 1
        assert!(validate(&bad[..to_vec(&doc! {"i": 0, "a": [1, {"x": "y"}]}).unwrap().len()]).is_err());
    }
}

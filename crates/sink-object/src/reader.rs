//! Reading a pack straight from the bucket.
//!
//! A [`PackReader`] blocks; its callers are meant to call it from blocking code, but some run it
//! on an async thread. So the objects are streamed by tasks on a small runtime of this crate's
//! own, and handed to the caller's thread through a bounded channel: reading works from any
//! thread, and memory stays at a few chunks per open file.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::LazyLock;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use backup_core::{Manifest, PackReader};
use bytes::Bytes;
use futures_util::StreamExt;
use opendal::Operator;

/// Chunks buffered between the reading task and the caller.
const IN_FLIGHT: usize = 2;

/// The runtime that streams objects for readers.
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("packrat-object-read")
        .enable_all()
        .build()
        .expect("start the object reader's runtime")
});

/// A pack in the bucket.
#[derive(Debug)]
pub struct ObjectPack {
    op: Operator,
    dir: String,
    location: String,
    manifest: Manifest,
    files: BTreeMap<String, u64>,
}

impl ObjectPack {
    /// The pack under key prefix `dir` (`…/<plan>/<id>/`) with the objects `files` (relative
    /// path, size) found there.
    pub(crate) fn new(
        op: Operator,
        dir: String,
        location: String,
        manifest: Manifest,
        files: Vec<(String, u64)>,
    ) -> ObjectPack {
        ObjectPack {
            op,
            dir,
            location,
            manifest,
            files: files.into_iter().collect(),
        }
    }
}

/// What the reading task sends.
enum Msg {
    Data(Bytes),
    End,
    Failed(io::Error),
}

/// The caller's side of a streamed object.
struct ChannelReader {
    rx: Receiver<Msg>,
    buf: Bytes,
    done: bool,
    at: String,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.buf.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Msg::Data(b)) => self.buf = b,
                Ok(Msg::End) => self.done = true,
                Ok(Msg::Failed(e)) => return Err(e),
                Err(_) => {
                    return Err(io::Error::other(format!(
                        "{}: the download stopped before the end of the object",
                        self.at
                    )));
                }
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

/// Streams `key` into `tx`, waiting (off the runtime's async threads) while the channel is full.
async fn stream(op: Operator, key: String, at: String, tx: SyncSender<Msg>) {
    let send = |m: Msg| tokio::task::block_in_place(|| tx.send(m).is_ok());
    // One streamed GET (ranged reads one after another are much slower, see `read_back`).
    let opened = async { op.reader(&key).await?.into_bytes_stream(..).await }.await;
    let mut s = match opened {
        Ok(s) => s,
        Err(e) => {
            send(Msg::Failed(crate::error::to_io(&at, &e)));
            return;
        }
    };
    while let Some(item) = s.next().await {
        let msg = match item {
            Ok(b) => Msg::Data(b),
            Err(e) => Msg::Failed(io::Error::new(e.kind(), format!("{at}: {e}"))),
        };
        let failed = matches!(msg, Msg::Failed(_));
        if !send(msg) || failed {
            return; // the caller stopped reading, or the download failed
        }
    }
    send(Msg::End);
}

impl PackReader for ObjectPack {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn location(&self) -> String {
        self.location.trim_end_matches('/').to_string()
    }

    fn files(&self) -> io::Result<Vec<String>> {
        Ok(self.files.keys().cloned().collect())
    }

    fn size(&self, rel: &str) -> io::Result<u64> {
        self.files.get(rel).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} is not in the bucket", self.location_of(rel)),
            )
        })
    }

    fn open_file(&self, rel: &str) -> io::Result<Box<dyn Read + Send>> {
        self.size(rel)?;
        let at = self.location_of(rel);
        let (tx, rx) = sync_channel(IN_FLIGHT);
        RUNTIME.spawn(stream(self.op.clone(), format!("{}{rel}", self.dir), at.clone(), tx));
        Ok(Box::new(ChannelReader {
            rx,
            buf: Bytes::new(),
            done: false,
            at,
        }))
    }
}

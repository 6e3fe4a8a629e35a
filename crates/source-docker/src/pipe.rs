//! Bridges between the engine's async byte streams and blocking readers/writers, through
//! bounded channels: memory stays at a few chunks whatever the size of the data.

use std::io::{self, Read, Write};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

/// Chunks in flight between the async and the blocking side.
pub(crate) const DEPTH: usize = 16;
/// Size of the chunks a [`ChannelWriter`] sends.
const CHUNK: usize = 256 * 1024;

/// A blocking [`Read`] over chunks sent by [`pump`].
#[derive(Debug)]
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    cur: Bytes,
}

impl ChannelReader {
    pub(crate) fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> ChannelReader {
        ChannelReader { rx, cur: Bytes::new() }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// Forwards `stream` into `tx` until it ends, fails (the error is forwarded as an
/// [`io::Error`]) or the receiving side hangs up. Returns the bytes forwarded.
pub(crate) async fn pump<S>(stream: S, tx: mpsc::Sender<io::Result<Bytes>>) -> u64
where
    S: Stream<Item = Result<Bytes, bollard::errors::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut n = 0u64;
    while let Some(item) = stream.next().await {
        let item = item.map_err(|e| io::Error::other(crate::error::engine_message(&e)));
        let failed = item.is_err();
        if let Ok(b) = &item {
            n += b.len() as u64;
        }
        if tx.send(item).await.is_err() || failed {
            break;
        }
    }
    n
}

/// A blocking [`Write`] that sends its bytes, in chunks, to an async stream (see [`stream`]).
#[derive(Debug)]
pub(crate) struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub(crate) fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> ChannelWriter {
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the Docker engine stopped reading"))
    }

    /// Makes the receiving stream fail with `e` (so that the engine sees an aborted upload).
    pub(crate) fn fail(self, e: io::Error) {
        let _ = self.tx.blocking_send(Err(e));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// The receiving end of a [`ChannelWriter`] as a stream for a request body.
pub(crate) fn stream(rx: mpsc::Receiver<io::Result<Bytes>>) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

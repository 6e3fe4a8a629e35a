//! The sink wrappers of `backup-core` around a real local sink: `DryRunSink` changes nothing
//! and fails where the real operation would; `RetrySink` passes the conformance kit, retries a
//! transient failure until it clears and returns permanent failures at once.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backup_core::{DryRunSink, ErrorKind, PackId, RetryPolicy, RetrySink, Sink, Verifier, VerifyLevel};
use common::sealed_pack;
use sink_local::LocalSink;

const PLAN: &str = "nightly";

/// Every file and directory below `root` with its size (directories: `None`).
fn tree(root: &Path) -> BTreeMap<String, Option<u64>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                out.insert(rel, None);
                stack.push(e.path());
            } else {
                out.insert(rel, Some(meta.len()));
            }
        }
    }
    out
}

async fn store_staged(sink: &LocalSink, id: &str, job: i64) {
    let dir = sink
        .stage(job, PLAN, &PackId::new(id).unwrap(), 0)
        .await
        .unwrap()
        .unwrap();
    sink.store(&sealed_pack(&dir, PLAN, id, &[100, 2000]), job)
        .await
        .unwrap();
}

#[tokio::test]
async fn dry_run_changes_nothing_reads_for_real_and_fails_where_the_real_run_would() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("backups");
    let sink = Arc::new(LocalSink::new("local", &root).with_min_free_bytes(0));
    store_staged(&sink, "p_20260101_000000", 1).await;
    store_staged(&sink, "p_20260102_000000", 2).await;
    std::fs::create_dir_all(root.join(PLAN).join("not_a_pack")).unwrap();
    // A leftover of a job that is gone: its claim is released.
    let leftover = sink
        .stage(9, PLAN, &PackId::new("p_20260109_000000").unwrap(), 0)
        .await
        .unwrap()
        .unwrap();
    std::fs::write(leftover.join("partial"), b"x").unwrap();
    let leftover_dir = leftover.dir().to_path_buf();
    drop(leftover);
    let before = tree(&root);

    let dry = DryRunSink::new(sink.clone());
    assert_eq!(dry.name(), "local");
    // Reads pass through.
    assert_eq!(
        dry.list(Some(PLAN)).await.unwrap(),
        sink.list(Some(PLAN)).await.unwrap()
    );
    let pack = dry.open(PLAN, "p_20260101_000000").await.unwrap();
    assert_eq!(pack.manifest().artifacts.len(), 2);
    let r = dry
        .verify(PLAN, "p_20260102_000000", &Verifier::new(), VerifyLevel::Deep)
        .await
        .unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert!(dry.exists(PLAN, "p_20260101_000000").await.unwrap());

    // Writes, deletions and cleaning are skipped.
    let elsewhere = sealed_pack(&tmp.path().join("p_20260103_000000"), PLAN, "p_20260103_000000", &[10]);
    let info = dry.store(&elsewhere, 3).await.unwrap();
    assert_eq!(info.location, elsewhere.dir().display().to_string());
    let id = PackId::new("p_20260104_000000").unwrap();
    assert!(
        dry.stage(4, PLAN, &id, 0).await.unwrap().is_none(),
        "a dry run hosts no staging"
    );
    dry.delete(PLAN, "p_20260101_000000").await.unwrap();
    assert!(dry.clean_leftovers().await.unwrap().is_empty());
    assert_eq!(tree(&root), before, "a dry run must not change the sink");
    assert!(leftover_dir.exists());

    // A deletion the sink would refuse fails in the dry run too.
    let missing = dry.delete(PLAN, "p_20250101_000000").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
    let foreign = dry.delete(PLAN, "not_a_pack").await.unwrap_err().chain();
    assert!(foreign.contains("is not a packrat pack of this sink"), "{foreign}");
    assert_eq!(tree(&root), before);

    // The real sink does what the dry run skipped.
    sink.delete(PLAN, "p_20260101_000000").await.unwrap();
    assert_eq!(sink.clean_leftovers().await.unwrap(), vec![leftover_dir]);
}

#[tokio::test]
async fn a_local_sink_behind_retries_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Arc::new(LocalSink::new("local", tmp.path().join("backups")).with_min_free_bytes(0));
    let retrying = RetrySink::new(sink, RetryPolicy::new(2, Duration::from_millis(10)));
    assert_eq!(retrying.policy().retries, 2);
    backup_core::conformance::check_sink(Arc::new(retrying)).await;
}

/// Log lines written while the value lives (this thread only); `notify` fires on each line
/// that announces a retry.
struct Logs {
    lines: Arc<Mutex<Vec<String>>>,
    retried: Arc<tokio::sync::Notify>,
    _guard: tracing::subscriber::DefaultGuard,
}

#[derive(Clone)]
struct LogWriter {
    lines: Arc<Mutex<Vec<String>>>,
    retried: Arc<tokio::sync::Notify>,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf).into_owned();
        if line.contains("; retry ") {
            self.retried.notify_one();
        }
        self.lines.lock().unwrap().push(line);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> Logs {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let retried = Arc::new(tokio::sync::Notify::new());
        let writer = LogWriter {
            lines: lines.clone(),
            retried: retried.clone(),
        };
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        Logs {
            lines,
            retried,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    fn retries(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l.contains("; retry ")).cloned().collect()
    }
}

#[tokio::test]
async fn a_transient_failure_is_retried_until_it_clears() {
    let logs = Logs::capture();
    let tmp = tempfile::tempdir().unwrap();
    // The root is a file for now: reading it fails with an I/O error (not a directory).
    let root = tmp.path().join("backups");
    std::fs::write(&root, b"not yet a directory").unwrap();
    let sink = Arc::new(LocalSink::new("local", &root).with_min_free_bytes(0));
    let e = sink.list(None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");

    let retrying = RetrySink::new(sink.clone(), RetryPolicy::new(5, Duration::from_millis(20)));
    // The failure clears while the retry waits: the root becomes a directory with a pack.
    let fix = async {
        logs.retried.notified().await;
        std::fs::remove_file(&root).unwrap();
        let elsewhere = sealed_pack(&tmp.path().join("p_20260101_000000"), PLAN, "p_20260101_000000", &[10]);
        std::fs::create_dir_all(root.join(PLAN)).unwrap();
        let dest = root.join(PLAN).join("p_20260101_000000");
        std::fs::rename(elsewhere.dir(), &dest).unwrap();
    };
    let (listed, ()) = tokio::join!(retrying.list(None), fix);
    let ids: Vec<String> = listed.unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, ["p_20260101_000000"]);
    let retries = logs.retries();
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert!(
        retries[0].contains("sink `local`: list failed") && retries[0].contains("retry 1 of 5"),
        "{retries:?}"
    );
}

#[tokio::test]
async fn permanent_failures_are_returned_at_once() {
    let logs = Logs::capture();
    let tmp = tempfile::tempdir().unwrap();
    let sink = Arc::new(LocalSink::new("local", tmp.path().join("backups")).with_min_free_bytes(0));
    store_staged(&sink, "p_20260101_000000", 1).await;
    let retrying = RetrySink::new(sink.clone(), RetryPolicy::new(5, Duration::from_secs(60)));

    let e = retrying.open(PLAN, "p_20250101_000000").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // Storing over an existing pack is refused, not retried.
    let again = sealed_pack(&tmp.path().join("p_20260101_000000"), PLAN, "p_20260101_000000", &[10]);
    let e = retrying.store(&again, 2).await.unwrap_err();
    assert!(e.chain().contains("already exists"), "{}", e.chain());
    // So is deleting what is not a pack of ours.
    assert!(retrying.delete(PLAN, "p_20250101_000000").await.is_err());
    assert!(logs.retries().is_empty(), "{:?}", logs.retries());
}

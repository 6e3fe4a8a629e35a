//! Uploads one sealed pack to an S3-compatible bucket with [`ObjectSink::store`] (multipart
//! upload of every file, each object streamed back and its sha256 checked, `SHA256SUMS` and
//! `manifest.json` last), as a job's store step does. Used by `cargo xtask bench object`; handy for
//! trying a store by hand.
//!
//! ```text
//! upload SINK.toml PACK_DIR [--job N]          # ObjectSink::store, nothing else
//! upload SINK.toml --read-back PLAN/ID [--chunk stream|part|MIB] [--concurrent N]
//!                                              # only the read-back phase of a stored pack
//! upload SINK.toml --upload-only PACK_DIR [--read-mib N]   # experiment: the upload phase alone
//! upload --make-pack DIR --size-mib N [--files K]   # a pack of incompressible test data
//! ```
//!
//! `SINK.toml` is the body of a `[sinks.NAME] type = "s3"` section (without `type`), e.g.
//! `endpoint`, `region`, `bucket`, `prefix`, `access_key_id_env`, `secret_access_key_env`,
//! `part_size`, `concurrency`.
//!
//! `--read-back` streams every object of the pack back and checks it against `SHA256SUMS`
//! the way `store` verifies each upload (one streamed GET per object); the benchmark times it to
//! report which share of `store` is the verification. `--chunk` and `--concurrent` try other
//! reads (`--chunk part`: ranged reads of `part_size` one at a time).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use backup_core::config::Section;
use backup_core::{BackupKind, Compression, Pack, PackId, Sink, StagingPack, Sums};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use sink_object::{ObjectSink, ObjectSinkConfig};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("--make-pack") {
        make_pack(&args[1..])
    } else {
        run(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: upload SINK.toml PACK_DIR [--job N] | upload SINK.toml --read-back PLAN/ID";

fn value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.windows(2).find(|w| w[0] == flag).map(|w| w[1].as_str())
}

fn load_config(path: &str) -> Result<ObjectSinkConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let config: ObjectSinkConfig = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    config
        .validate()
        .map_err(|issue| format!("{path}: {}: {}", issue.key, issue.message))?;
    Ok(config)
}

fn run(args: &[String]) -> Result<(), String> {
    let config = load_config(args.first().filter(|a| !a.starts_with("--")).ok_or(USAGE)?)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    if let Some(pack) = value(args, "--read-back") {
        let (plan, id) = pack.split_once('/').ok_or(USAGE)?;
        // As the sink reads back: one streamed GET per object. Experiments: `--chunk part`
        // (ranged reads of part_size, the sink's first version), `--chunk MIB`, `--concurrent N`.
        let chunk = match value(args, "--chunk") {
            None | Some("stream") => None,
            Some("part") => Some(config.part_size.0 as usize),
            Some(mib) => Some(mib.parse::<usize>().map_err(|e| format!("--chunk: {e}"))? << 20),
        };
        let concurrent = value(args, "--concurrent")
            .map_or(Ok(1), str::parse)
            .map_err(|e| format!("--concurrent: {e}"))?;
        return rt.block_on(read_back(&config, plan, id, chunk, concurrent));
    }
    if let Some(dir) = value(args, "--upload-only") {
        let pack = Pack::open(PathBuf::from(dir).as_path()).map_err(|e| e.to_string())?;
        let read_mib: usize = value(args, "--read-mib")
            .map_or(Ok(1), str::parse)
            .map_err(|e| format!("--read-mib: {e}"))?;
        return rt.block_on(upload_only(&config, &pack, read_mib << 20));
    }
    let pack_dir = args.get(1).filter(|a| !a.starts_with("--")).ok_or(USAGE)?;
    let job = value(args, "--job")
        .map_or(Ok(1), str::parse)
        .map_err(|e| format!("--job: {e}"))?;
    let pack = Pack::open(PathBuf::from(pack_dir).as_path()).map_err(|e| e.to_string())?;
    let sink = ObjectSink::new("bench", config);
    let t0 = Instant::now();
    let info = rt
        .block_on(sink.store(&pack.into_sealed(), job))
        .map_err(|e| e.chain())?;
    println!(
        "{} bytes={} uploaded={} store_s={:.3}",
        info.location,
        info.bytes,
        sink.uploaded_bytes(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Streams every object the stored pack `plan`/`id` lists in its `SHA256SUMS` (artifacts and
/// `manifest.json`) back and checks its sha256, with the same reads as the sink's verification
/// of an upload (unless `chunk`/`concurrent` say otherwise). Prints the objects, bytes and
/// seconds.
async fn read_back(
    config: &ObjectSinkConfig,
    plan: &str,
    id: &str,
    chunk: Option<usize>,
    concurrent: usize,
) -> Result<(), String> {
    let op = operator(config)?;
    let dir = pack_dir(config, plan, id);
    let t0 = Instant::now();
    let sums = op
        .read(&format!("{dir}SHA256SUMS"))
        .await
        .map_err(|e| format!("read {dir}SHA256SUMS: {e}"))?
        .to_vec();
    let sums = Sums::parse(&sums).map_err(|e| format!("{dir}SHA256SUMS {e}"))?;
    let (mut objects, mut bytes) = (0u64, 0u64);
    for path in sums.paths() {
        let sha256 = sums.get(path).unwrap_or_default();
        let key = format!("{dir}{path}");
        let mut reader = op.reader_with(&key).concurrent(concurrent);
        if let Some(chunk) = chunk {
            reader = reader.chunk(chunk);
        }
        let reader = reader.await.map_err(|e| format!("read back {key}: {e}"))?;
        let mut stream = reader
            .into_bytes_stream(..)
            .await
            .map_err(|e| format!("read back {key}: {e}"))?;
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("read back {key}: {e}"))?;
            bytes += chunk.len() as u64;
            hasher.update(&chunk);
        }
        let got = hex::encode(hasher.finalize());
        if got != sha256 {
            return Err(format!("{key} reads back with sha256 {got}, SHA256SUMS says {sha256}"));
        }
        objects += 1;
    }
    println!(
        "read back {objects} objects, {bytes} bytes in {:.3} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// An operator on the sink's bucket, built as the sink builds its own (without the retry and
/// timeout layers).
fn operator(config: &ObjectSinkConfig) -> Result<opendal::Operator, String> {
    let secret = |what: &str, r: backup_core::config::SecretRef| {
        r.resolve(what)
            .map(|s| s.expose().to_string())
            .map_err(|e| e.to_string())
    };
    opendal::install_default(); // the HTTP transport, as the sink installs it
    opendal::Operator::new(
        opendal::services::S3::default()
            .endpoint(&config.endpoint)
            .region(&config.region)
            .bucket(&config.bucket)
            .root("/")
            .access_key_id(&secret("access_key_id", config.access_key_id_ref())?)
            .secret_access_key(&secret("secret_access_key", config.secret_access_key_ref())?)
            .disable_config_load()
            .disable_ec2_metadata(),
    )
    .map_err(|e| e.to_string())
}

/// The key prefix of pack `plan`/`id`, as the sink lays it out.
fn pack_dir(config: &ObjectSinkConfig, plan: &str, id: &str) -> String {
    if config.prefix.is_empty() {
        format!("{plan}/{id}/")
    } else {
        format!("{}/{plan}/{id}/", config.prefix)
    }
}

/// Experiment: only the upload phase of `store`, as the sink uploads a file (1 MiB reads or
/// `--read-mib N`,
/// sha256, a multipart writer of `part_size` with `concurrency` parts in flight), for every file
/// of the pack, without the read-back, the marker and the checks. Prints each file's seconds.
async fn upload_only(config: &ObjectSinkConfig, pack: &Pack, read_size: usize) -> Result<(), String> {
    use tokio::io::AsyncReadExt;
    let op = operator(config)?;
    let m = pack.manifest();
    let dir = pack_dir(config, &m.plan, &m.pack_id);
    let mut files: Vec<String> = m.artifacts.iter().map(|a| a.path.clone()).collect();
    files.extend(["SHA256SUMS".to_string(), "manifest.json".to_string()]);
    let t0 = Instant::now();
    for rel in files {
        let t = Instant::now();
        let key = format!("{dir}{rel}");
        let path = pack.dir().join(&rel);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut w = op
            .writer_with(&key)
            .chunk(config.part_size.0 as usize)
            .concurrent(config.concurrency)
            .await
            .map_err(|e| format!("upload {key}: {e}"))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; read_size];
        let mut sent = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            w.write(bytes::Bytes::copy_from_slice(&buf[..n]))
                .await
                .map_err(|e| format!("upload {key}: {e}"))?;
            sent += n as u64;
        }
        w.close().await.map_err(|e| format!("upload {key}: {e}"))?;
        let _ = hex::encode(hasher.finalize());
        println!("{rel}: {sent} bytes in {:.3} s", t.elapsed().as_secs_f64());
    }
    println!("uploaded in {:.3} s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn make_pack(args: &[String]) -> Result<(), String> {
    let usage = "usage: upload --make-pack DIR --size-mib N [--files K]";
    let dir = args.first().filter(|a| !a.starts_with("--")).ok_or(usage)?;
    let mib: u64 = value(args, "--size-mib").ok_or(usage)?.parse().map_err(|_| usage)?;
    let files: u64 = value(args, "--files").unwrap_or("4").parse().map_err(|_| usage)?;
    let dir = PathBuf::from(dir);
    let id = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("DIR must end in a pack id")?;
    let pack = StagingPack::create(
        &dir,
        "bench",
        PackId::new(id).map_err(|e| e.to_string())?,
        BackupKind::Full,
        chrono_tz::UTC,
    )
    .map_err(|e| e.to_string())?;
    // One big artifact (most of the bytes) and a few small ones, like a real pack; xorshift
    // data, so neither side nor the store can compress it.
    let total = mib << 20;
    let small = (total / 100).min(4 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for i in 0..files.max(1) {
        let size = if i == 0 {
            total - small * (files.max(1) - 1)
        } else {
            small
        };
        let mut w = pack
            .artifact(&format!("bench/part_{i:02}.bin"), "bench", "file", Compression::None)
            .map_err(|e| e.to_string())?;
        let mut left = size;
        while left > 0 {
            for chunk in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            let n = left.min(block.len() as u64) as usize;
            w.write_all(&block[..n]).map_err(|e| e.to_string())?;
            left -= n as u64;
        }
        w.finish().map_err(|e| e.to_string())?;
    }
    let sealed = pack.seal().map_err(|e| e.to_string())?;
    println!("{}", sealed.dir().display());
    Ok(())
}

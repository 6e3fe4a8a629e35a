//! `cargo xtask bench object`: the S3 sink's `store` of a ~1 GiB pack to the three-node Garage
//! cluster (multipart upload of every file, every object streamed back and its sha256 checked,
//! `SHA256SUMS` and `manifest.json` last) versus `rclone copy` (Debian's rclone) of the same pack
//! directory to the same bucket.
//!
//! * The cluster is the `garage` CI service (three nodes on loopback, replication factor 3),
//!   started for the benchmark and stopped (and its data removed) afterwards; with
//!   `--cluster-from-env` the cluster in `PACKRAT_TEST_S3_*` is used instead (e.g. after
//!   `source target/ci-services/garage.env.sh`) and left running. Both sides talk to node 1.
//! * The pack (one big artifact and a few small ones of incompressible data) is generated once
//!   and cached under `target/bench/object/`. packrat's side is the `upload` example of
//!   `sink-object`, built in release mode: it runs exactly `ObjectSink::store` with the default
//!   `part_size` (8 MiB) and `concurrency` (4). rclone gets the same part size and concurrency
//!   (`--s3-chunk-size 8M --s3-upload-concurrency 4 --transfers 4`), is configured through
//!   environment variables only (`--config ""`: no config file is read) and skips its
//!   create-bucket request (`--s3-no-check-bucket`; the bucket exists, packrat does not try).
//! * Every round uses fresh prefixes (`bench-object/<run>/{rclone,packrat}-<round>/`), checks
//!   that both sides put every file of the pack (count and bytes) into the bucket, and deletes
//!   them.
//! * packrat reads every object back; rclone by default does not (it compares MD5/ETag). So each
//!   round also times, with a dropped page cache, the read-back alone (`upload --read-back`: the
//!   same ranged reads and sha256 as `store`) and `rclone check --download` of rclone's copy (it
//!   downloads every object and compares it with the local file). The report adds the
//!   read-back's share of packrat's time and the ratio of packrat to
//!   `rclone copy` + `rclone check --download`, the like-for-like comparison.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::harness::{self, CommonArgs, Report, Scenario, Side, Targets, median};
use crate::rss::Usage;
use crate::services::Service;
use crate::services::garage::{self, Garage};
use crate::util::{self, mib};

const PLAN: &str = "bench";
const PACK_ID: &str = "bench_20260101_000000";
/// The rclone remote defined through `RCLONE_CONFIG_GARAGE_*`.
const REMOTE: &str = "garage";
/// The part size and parts in flight of both sides (packrat's defaults).
const PART_SIZE_MIB: u64 = 8;
const CONCURRENCY: usize = 4;
/// The environment variables the `upload` example reads the credentials from.
const KEY_ID_VAR: &str = "PACKRAT_BENCH_S3_ACCESS_KEY_ID";
const SECRET_VAR: &str = "PACKRAT_BENCH_S3_SECRET_ACCESS_KEY";

/// Options of `cargo xtask bench object`.
#[derive(Debug, Args)]
pub struct ObjectArgs {
    /// Size of the generated pack, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    size_mib: u64,
    /// Use the running Garage cluster in `PACKRAT_TEST_S3_*` (e.g. after
    /// `source target/ci-services/garage.env.sh`) instead of starting one for the benchmark.
    #[arg(long)]
    cluster_from_env: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Where the cluster is and how to sign in.
#[derive(Debug, Clone)]
struct Cluster {
    endpoint: String,
    region: String,
    bucket: String,
    key_id: String,
    secret: String,
}

impl Cluster {
    fn from_pairs(pairs: &[(String, String)]) -> Result<Self> {
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .with_context(|| format!("the garage service did not export {name}"))
        };
        Ok(Self {
            endpoint: get("PACKRAT_TEST_S3_ENDPOINT")?,
            region: get("PACKRAT_TEST_S3_REGION")?,
            bucket: get("PACKRAT_TEST_S3_BUCKET")?,
            key_id: get("PACKRAT_TEST_S3_ACCESS_KEY_ID")?,
            secret: get("PACKRAT_TEST_S3_SECRET_ACCESS_KEY")?,
        })
    }

    fn from_env() -> Result<Self> {
        let names = [
            "PACKRAT_TEST_S3_ENDPOINT",
            "PACKRAT_TEST_S3_REGION",
            "PACKRAT_TEST_S3_BUCKET",
            "PACKRAT_TEST_S3_ACCESS_KEY_ID",
            "PACKRAT_TEST_S3_SECRET_ACCESS_KEY",
        ];
        let mut pairs = Vec::new();
        for name in names {
            let value = std::env::var(name).with_context(|| {
                format!(
                    "--cluster-from-env: {name} is not set; start the cluster with \
                     `cargo xtask services up --only garage` and `source target/ci-services/garage.env.sh`, \
                     or run without --cluster-from-env to let the benchmark start one"
                )
            })?;
            pairs.push((name.to_owned(), value));
        }
        Self::from_pairs(&pairs)
    }
}

/// Runs the benchmark.
pub fn run(args: &ObjectArgs) -> Result<Report> {
    eprintln!("checking prerequisites");
    let mut service = Garage::default();
    if args.cluster_from_env {
        crate::prereqs::ensure(&[garage::rclone_prereq()])?;
    } else {
        crate::prereqs::ensure(&service.prereqs())?;
    }
    let rclone_version = util::stdout_of(Command::new("rclone").arg("version"))?
        .lines()
        .next()
        .unwrap_or("rclone")
        .trim()
        .to_owned();
    eprintln!("building the upload example (release)");
    util::run(util::cargo().args(["build", "--release", "-p", "sink-object", "--example", "upload"]))?;
    let tool = util::target_dir().join("release").join("examples").join("upload");
    if !tool.is_file() {
        bail!("{} was not built", tool.display());
    }

    let dir = util::target_dir().join("bench").join("object");
    let pack = harness::ensure_pack(&tool, &dir, args.size_mib, PACK_ID)?;
    let (pack_files, pack_bytes) = count_files(&pack)?;

    let cluster = if args.cluster_from_env {
        eprintln!("using the Garage cluster of the environment");
        Cluster::from_env()?
    } else {
        eprintln!("starting the Garage cluster (3 nodes)");
        match service.start() {
            Ok(env) => Cluster::from_pairs(&env)?,
            Err(e) => {
                let _ = service.stop();
                return Err(e.context("starting the Garage cluster"));
            }
        }
    };
    let run_id = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut bench = ObjectBench {
        tool,
        pack,
        pack_files,
        pack_bytes,
        cluster,
        base: format!("bench-object/{run_id}"),
        work: dir,
        size_mib: args.size_mib,
        rclone_version,
        extras: Vec::new(),
    };
    let result = (|| -> Result<Report> {
        let mut report = harness::run(&mut bench, args.common.rounds)?;
        bench.add_comparisons(&mut report);
        Ok(report)
    })();
    // Whatever happened: nothing of this run stays in the bucket.
    let cleaned = bench.purge(&bench.base.clone());
    let stopped = if args.cluster_from_env {
        Ok(())
    } else {
        // The cluster holds several copies of every round (Garage frees deleted blocks later).
        service.stop().and_then(|()| util::remove_path(&Garage::dir()))
    };
    let report = result?;
    cleaned?;
    stopped?;
    Ok(report)
}

/// The files under `dir` (recursively) and their total size.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

fn count_files(dir: &Path) -> Result<(u64, u64)> {
    let mut bytes = 0;
    let files = files_under(dir);
    for f in &files {
        bytes += f.metadata().with_context(|| format!("stat {}", f.display()))?.len();
    }
    Ok((files.len() as u64, bytes))
}

/// The extra measurements of one round (outside the timed pair).
#[derive(Debug, Clone, Copy)]
struct Extras {
    /// `upload --read-back` of packrat's pack: the verification phase alone.
    read_back: Usage,
    /// `rclone check --download` of rclone's copy.
    rclone_check: Usage,
}

#[derive(Debug)]
struct ObjectBench {
    tool: PathBuf,
    pack: PathBuf,
    pack_files: u64,
    pack_bytes: u64,
    cluster: Cluster,
    /// The key prefix of this run.
    base: String,
    /// `target/bench/object`: the pack cache and the sink configs.
    work: PathBuf,
    size_mib: u64,
    rclone_version: String,
    extras: Vec<Extras>,
}

impl ObjectBench {
    fn rclone_prefix(&self, round: u32) -> String {
        format!("{}/rclone-{round}", self.base)
    }

    fn packrat_prefix(&self, round: u32) -> String {
        format!("{}/packrat-{round}", self.base)
    }

    /// `garage:BUCKET/KEY`.
    fn remote(&self, key: &str) -> String {
        format!("{REMOTE}:{}/{key}", self.cluster.bucket)
    }

    /// `rclone` configured for the cluster through the environment only.
    fn rclone(&self) -> Command {
        let c = &self.cluster;
        let mut cmd = Command::new("rclone");
        cmd.args(["--config", ""]);
        // rclone's AWS SDK refuses a custom CA bundle with rclone's own HTTP transport (the
        // endpoint is plain http on loopback anyway).
        cmd.env_remove("AWS_CA_BUNDLE");
        for (key, value) in [
            ("TYPE", "s3"),
            ("PROVIDER", "Other"),
            ("ENDPOINT", c.endpoint.as_str()),
            ("ACCESS_KEY_ID", c.key_id.as_str()),
            ("SECRET_ACCESS_KEY", c.secret.as_str()),
            ("REGION", c.region.as_str()),
            ("FORCE_PATH_STYLE", "true"),
        ] {
            cmd.env(format!("RCLONE_CONFIG_{}_{key}", REMOTE.to_uppercase()), value);
        }
        cmd
    }

    /// The `upload` example's sink config for `prefix` (credentials by variable name only).
    fn sink_config(&self, prefix: &str) -> Result<PathBuf> {
        let c = &self.cluster;
        let text = format!(
            "endpoint = {endpoint}\nregion = {region}\nbucket = {bucket}\nprefix = {prefix}\n\
             access_key_id_env = \"{KEY_ID_VAR}\"\nsecret_access_key_env = \"{SECRET_VAR}\"\n\
             part_size = \"{PART_SIZE_MIB}MiB\"\nconcurrency = {CONCURRENCY}\n",
            endpoint = json!(c.endpoint),
            region = json!(c.region),
            bucket = json!(c.bucket),
            prefix = json!(prefix),
        );
        let path = self.work.join(format!("sink-{}.toml", prefix.replace('/', "_")));
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    fn upload(&self, config: &Path) -> Command {
        let mut cmd = Command::new(&self.tool);
        cmd.arg(config)
            .env(KEY_ID_VAR, &self.cluster.key_id)
            .env(SECRET_VAR, &self.cluster.secret);
        cmd
    }

    /// `rclone size --json`: (objects, bytes) under `key`.
    fn size_of(&self, key: &str) -> Result<(u64, u64)> {
        let out = util::stdout_of(self.rclone().args(["size", "--json"]).arg(self.remote(key)))?;
        let v: Value = serde_json::from_str(out.trim()).with_context(|| format!("rclone size printed {out:?}"))?;
        match (v["count"].as_u64(), v["bytes"].as_u64()) {
            (Some(count), Some(bytes)) => Ok((count, bytes)),
            _ => bail!("rclone size printed {out:?}"),
        }
    }

    /// Deletes every object under `key`.
    fn purge(&self, key: &str) -> Result<()> {
        let (count, _) = self.size_of(key)?;
        if count > 0 {
            util::stdout_of(self.rclone().arg("purge").arg(self.remote(key)))?;
        }
        Ok(())
    }

    /// Checks that `key` holds exactly the pack's files and bytes.
    fn check_complete(&self, key: &str, who: &str) -> Result<u64> {
        let (count, bytes) = self.size_of(key)?;
        if (count, bytes) != (self.pack_files, self.pack_bytes) {
            bail!(
                "{who} left {count} objects of {bytes} bytes under {}, the pack has {} files of {} bytes",
                self.remote(key),
                self.pack_files,
                self.pack_bytes
            );
        }
        Ok(bytes)
    }

    /// Times `cmd` alone with a dropped page cache (when permitted).
    fn measure_extra(&self, cmd: &Command) -> Result<Usage> {
        drop_caches();
        let report_file = util::target_dir()
            .join("bench")
            .join(format!(".rss-extra-{}", std::process::id()));
        let usage = harness::measure(cmd, &report_file);
        let _ = std::fs::remove_file(&report_file);
        usage
    }

    /// Adds the like-for-like figures (read-back share, packrat vs rclone copy + check).
    fn add_comparisons(&self, report: &mut Report) {
        let rounds = report.rounds().to_vec();
        let secs = |u: &Usage| u.elapsed.as_secs_f64();
        let read_back: Vec<f64> = self.extras.iter().map(|e| secs(&e.read_back)).collect();
        let check: Vec<f64> = self.extras.iter().map(|e| secs(&e.rclone_check)).collect();
        let share: Vec<f64> = rounds
            .iter()
            .zip(&self.extras)
            .map(|(r, e)| secs(&e.read_back) / secs(&r.packrat).max(1e-9))
            .collect();
        let upload_only: Vec<f64> = rounds
            .iter()
            .zip(&self.extras)
            .map(|(r, e)| (secs(&r.packrat) - secs(&e.read_back)) / secs(&r.baseline).max(1e-9))
            .collect();
        let verified: Vec<f64> = rounds
            .iter()
            .zip(&self.extras)
            .map(|(r, e)| secs(&r.packrat) / (secs(&r.baseline) + secs(&e.rclone_check)).max(1e-9))
            .collect();
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        let round3 = |v: &[f64]| v.iter().copied().map(r3).collect::<Vec<_>>();
        report.push_info(
            "read_back_s",
            json!({"rounds": round3(&read_back), "median": r3(median(&read_back))}),
        );
        report.push_info(
            "read_back_share_of_packrat",
            json!({"rounds": round3(&share), "median": r3(median(&share))}),
        );
        report.push_info(
            "ratio_upload_phase_vs_rclone_copy",
            json!({
                "what": "(packrat time - read-back time) / rclone copy time",
                "rounds": round3(&upload_only),
                "median": r3(median(&upload_only)),
            }),
        );
        report.push_info(
            "rclone_check_download_s",
            json!({"rounds": round3(&check), "median": r3(median(&check))}),
        );
        report.push_info(
            "ratio_vs_rclone_copy_plus_check",
            json!({
                "what": "packrat time / (rclone copy + rclone check --download time)",
                "rounds": round3(&verified),
                "median": r3(median(&verified)),
            }),
        );
        #[allow(clippy::cast_precision_loss)]
        let peak =
            |f: fn(&Extras) -> Usage| self.extras.iter().map(|e| f(e).max_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
        report.push_info(
            "peak_rss_mib_extras",
            json!({"read_back": peak(|e| e.read_back), "rclone_check": peak(|e| e.rclone_check)}),
        );
    }
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`, when permitted (as the harness does).
fn drop_caches() {
    let _ = util::succeeds(&mut Command::new("sync"));
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3\n");
}

impl Scenario for ObjectBench {
    fn name(&self) -> &str {
        "object"
    }

    fn baseline_label(&self) -> &str {
        "rclone copy"
    }

    fn info(&self) -> Vec<(String, Value)> {
        vec![
            ("pack".into(), json!(self.pack.display().to_string())),
            ("pack_mib".into(), json!(self.size_mib)),
            (
                "pack_files".into(),
                json!(format!("{} files, {} bytes", self.pack_files, self.pack_bytes)),
            ),
            (
                "store".into(),
                json!(format!(
                    "Garage {} (3 nodes on 127.0.0.1, replication factor 3), bucket {} via node 1 at {}",
                    garage::VERSION,
                    self.cluster.bucket,
                    self.cluster.endpoint
                )),
            ),
            (
                "packrat_side".into(),
                json!(format!(
                    "sink-object ObjectSink::store (examples/upload, release): part_size {PART_SIZE_MIB} MiB, \
                     concurrency {CONCURRENCY}, files one after another, every object read back + sha256, \
                     SHA256SUMS and manifest.json last"
                )),
            ),
            (
                "baseline".into(),
                json!(format!(
                    "{}: rclone copy --s3-chunk-size {PART_SIZE_MIB}M --s3-upload-concurrency {CONCURRENCY} \
                     --transfers {CONCURRENCY} --s3-no-check-bucket (MD5 of the big file before upload, \
                     ETag/MD5 check, no read-back)",
                    self.rclone_version
                )),
            ),
            (
                "extras".into(),
                json!(
                    "per round, not in the timed pair, page cache dropped: `upload --read-back` (packrat's \
                     verification phase alone) and `rclone check --download` of rclone's copy"
                ),
            ),
        ]
    }

    fn input_files(&self) -> Vec<PathBuf> {
        files_under(&self.pack)
    }

    fn command(&mut self, side: Side, round: u32) -> Result<Command> {
        match side {
            Side::Baseline => {
                let prefix = self.rclone_prefix(round);
                self.purge(&prefix)?;
                let mut cmd = self.rclone();
                cmd.arg("copy")
                    .arg(&self.pack)
                    .arg(self.remote(&format!("{prefix}/{PLAN}/{PACK_ID}")))
                    .args(["--s3-chunk-size", &format!("{PART_SIZE_MIB}M")])
                    .args(["--s3-upload-concurrency", &CONCURRENCY.to_string()])
                    .args(["--transfers", &CONCURRENCY.to_string()])
                    .arg("--s3-no-check-bucket");
                Ok(cmd)
            }
            Side::Packrat => {
                let prefix = self.packrat_prefix(round);
                self.purge(&prefix)?;
                let config = self.sink_config(&prefix)?;
                let mut cmd = self.upload(&config);
                cmd.arg(&self.pack).args(["--job", &round.to_string()]);
                Ok(cmd)
            }
        }
    }

    fn finish_round(&mut self, round: u32) -> Result<(u64, u64)> {
        let rclone_prefix = self.rclone_prefix(round);
        let packrat_prefix = self.packrat_prefix(round);
        let rclone_bytes = self.check_complete(&rclone_prefix, "rclone copy")?;
        let packrat_bytes = self.check_complete(&packrat_prefix, "packrat")?;

        let config = self.sink_config(&packrat_prefix)?;
        let mut read_back = self.upload(&config);
        read_back.args(["--read-back", &format!("{PLAN}/{PACK_ID}")]);
        let read_back = self.measure_extra(&read_back)?;
        let mut check = self.rclone();
        check
            .args(["check", "--download"])
            .arg(&self.pack)
            .arg(self.remote(&format!("{rclone_prefix}/{PLAN}/{PACK_ID}")));
        let rclone_check = self.measure_extra(&check)?;
        eprintln!(
            "  round {round}: {:.0} MiB each side; read-back alone {:.3} s, rclone check --download {:.3} s",
            mib(packrat_bytes),
            read_back.elapsed.as_secs_f64(),
            rclone_check.elapsed.as_secs_f64()
        );
        self.extras.push(Extras {
            read_back,
            rclone_check,
        });

        self.purge(&rclone_prefix)?;
        self.purge(&packrat_prefix)?;
        let _ = std::fs::remove_file(&config);
        Ok((rclone_bytes, packrat_bytes))
    }

    fn targets(&self) -> Targets {
        Targets {
            max_ratio: 1.00,
            max_rss_mib: 64.0,
        }
    }
}

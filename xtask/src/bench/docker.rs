//! `cargo xtask bench docker`: packrat's backup of a Docker volume vs the plain pipeline
//! `docker run --rm --log-driver none -v VOL:/data IMAGE tar c /data | zstd -3 > out`.
//!
//! The baseline runs with `--log-driver none`: with the engine's default `json-file` driver,
//! dockerd also writes the whole piped tar stream into the container's log as JSON lines, work
//! that has nothing to do with the backup and made the ratio flatter packrat (0.24).
//!
//! The engine is the `docker` service of `cargo xtask ci` (started here if no engine answers at
//! the default socket, stopped afterwards). The input is a volume of about `--size-mib` MiB of
//! mixed files — 40% random (incompressible) files of 8 MiB, 45% log-like text files, 15% small
//! files of 1–8 KiB (half random, half text) in nested directories — generated once inside a
//! container and kept for later runs.
//!
//! `--encrypt` compares `packrat run` of the plan unencrypted and encrypted with age instead
//! (see [`super::encrypt`]).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::encrypt::{self, PackratPlan, toml_path, toml_string};
use super::harness::{self, CommonArgs, Report, Scenario, Side, Targets};
use crate::prereqs::{self, Prereq};
use crate::services::docker::{self as svc, Docker};
use crate::util::{self, mib};

/// Bump when the generated volume changes, to regenerate cached ones.
const GENERATOR: u32 = 1;
const VOLUME: &str = "packrat-bench-data";
const LABEL: &str = "io.packrat.bench";

/// Options of `cargo xtask bench docker`.
#[derive(Debug, Args)]
pub struct DockerArgs {
    /// Approximate size of the generated volume, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(16..))]
    size_mib: u64,
    /// Benchmark this packrat binary instead of building `target/release/packrat`.
    #[arg(long, value_name = "PATH")]
    packrat_bin: Option<PathBuf>,
    /// Measure the cost of encryption: `packrat run` of the plan unencrypted vs the same plan
    /// with `[plans.NAME.encrypt]` (age, a recipient generated for the run).
    #[arg(long)]
    encrypt: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Runs the benchmark.
pub fn run(args: &DockerArgs) -> Result<Report> {
    eprintln!("checking prerequisites");
    prereqs::ensure(&[
        Prereq::apt("dockerd", "docker.io"),
        Prereq::apt("busybox", "busybox-static"),
        Prereq::apt("zstd", "zstd"),
    ])?;
    let packrat = if let Some(bin) = &args.packrat_bin {
        std::path::absolute(bin).with_context(|| format!("resolve {}", bin.display()))?
    } else {
        eprintln!("building packrat (release)");
        util::run(util::cargo().args(["build", "--release", "-p", "packrat"]))?;
        util::target_dir().join("release").join("packrat")
    };
    if !packrat.is_file() {
        bail!("{} was not built", packrat.display());
    }

    // Stops the engine (if we started it) when dropped.
    let mut engine = Docker::default();
    let host = engine.start_engine()?;
    let dir = util::target_dir().join("bench").join("docker");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let (mountpoint, cached) = ensure_volume(&host, &dir, args.size_mib)?;
    let (files, bytes) = walk(&mountpoint)?;

    let mut bench = DockerBench {
        dir,
        packrat,
        host,
        files,
        bytes,
        cached,
    };
    let report = if args.encrypt {
        encrypt::run(&mut bench, args.common.rounds)?
    } else {
        harness::run(&mut bench, args.common.rounds)?
    };
    Ok(report)
}

#[derive(Debug)]
struct DockerBench {
    dir: PathBuf,
    packrat: PathBuf,
    host: String,
    files: Vec<PathBuf>,
    bytes: u64,
    cached: bool,
}

impl DockerBench {
    fn out_path(&self, round: u32) -> PathBuf {
        self.dir.join(format!("baseline-{round}.tar.zst"))
    }

    fn packs_dir(&self, round: u32) -> PathBuf {
        self.dir.join(format!("packs-{round}"))
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("packrat.toml")
    }
}

impl Scenario for DockerBench {
    fn name(&self) -> &str {
        "docker"
    }

    fn baseline_label(&self) -> &str {
        "docker run (no log) tar | zstd -3"
    }

    fn info(&self) -> Vec<(String, Value)> {
        vec![
            ("volume".into(), json!(VOLUME)),
            ("volume_mib".into(), json!((mib(self.bytes) * 10.0).round() / 10.0)),
            ("files".into(), json!(self.files.len())),
            ("image".into(), json!(svc::IMAGE)),
            ("engine".into(), json!(self.host)),
            (
                "generated".into(),
                json!(if self.cached {
                    "cached from an earlier run"
                } else {
                    "this run"
                }),
            ),
        ]
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.files.clone()
    }

    fn command(&mut self, side: Side, round: u32) -> Result<Command> {
        match side {
            Side::Baseline => {
                let out = self.out_path(round);
                util::remove_path(&out)?;
                let mut cmd = Command::new("bash");
                cmd.arg("-c")
                    .arg(format!(
                        "set -o pipefail; {cli} -H {host} run --rm --log-driver none -v {VOLUME}:/data {image} tar c /data \
                         | zstd -3 -q -o {out}",
                        cli = svc::CLI,
                        host = sh_quote(&self.host),
                        image = svc::IMAGE,
                        out = sh_quote(&out.display().to_string()),
                    ))
                    .current_dir(&self.dir);
                Ok(cmd)
            }
            Side::Packrat => {
                let packs = self.packs_dir(round);
                util::remove_path(&packs)?;
                util::remove_path(&self.state_dir())?;
                std::fs::create_dir_all(self.state_dir())?;
                let config = format!(
                    "state_dir = {}\n\n{}[sinks.local]\ntype = \"local\"\npath = {}\nmin_free_mb = 1\n\n{}",
                    toml_path(&self.state_dir()),
                    self.sources_toml(),
                    toml_path(&packs),
                    self.plan_toml("bench", "local"),
                );
                std::fs::write(self.config_path(), config)
                    .with_context(|| format!("write {}", self.config_path().display()))?;
                let mut cmd = Command::new(&self.packrat);
                cmd.arg("--config")
                    .arg(self.config_path())
                    .args(["run", "bench"])
                    .current_dir(&self.dir);
                Ok(cmd)
            }
        }
    }

    fn finish_round(&mut self, round: u32) -> Result<(u64, u64)> {
        let out = self.out_path(round);
        let packs = self.packs_dir(round);
        let out_bytes = util::disk_usage(&out)?;
        let packs_bytes = util::disk_usage(&packs)?;
        if out_bytes == 0 {
            bail!("the baseline wrote nothing to {}", out.display());
        }
        if packs_bytes == 0 {
            bail!("packrat run wrote nothing to {}", packs.display());
        }
        util::remove_path(&out)?;
        util::remove_path(&packs)?;
        Ok((out_bytes, packs_bytes))
    }

    fn targets(&self) -> Targets {
        Targets {
            max_ratio: 1.00,
            max_rss_mib: 64.0,
        }
    }
}

/// Returns the volume's mount point on the host, generating its content unless cached. The
/// cache key (generator version, size, the volume's creation time) is kept in
/// `target/bench/docker/volume.meta`, written only after a complete generation.
fn ensure_volume(host: &str, dir: &Path, size_mib: u64) -> Result<(PathBuf, bool)> {
    let inspect = |format: &str| -> Result<String> {
        Ok(
            util::stdout_of(Docker::cli(host).args(["volume", "inspect", "-f", format, VOLUME]))?
                .trim()
                .to_string(),
        )
    };
    let meta = dir.join("volume.meta");
    let key = |created: &str| format!("generator={GENERATOR} size_mib={size_mib} created={created}");
    if let Ok(created) = inspect("{{.CreatedAt}}")
        && std::fs::read_to_string(&meta).is_ok_and(|m| m.trim() == key(&created))
    {
        eprintln!("using cached volume {VOLUME} (~{size_mib} MiB)");
        return Ok((PathBuf::from(inspect("{{.Mountpoint}}")?), true));
    }
    util::remove_path(&meta)?;
    let _ = util::succeeds(Docker::cli(host).args(["volume", "rm", "-f", VOLUME]));
    util::run(Docker::cli(host).args(["volume", "create", "--label", &format!("{LABEL}=1"), VOLUME]))?;
    let t0 = std::time::Instant::now();
    eprintln!("generating ~{size_mib} MiB of mixed files in volume {VOLUME}");
    let random_files = (size_mib * 40 / 100 / 8).max(1);
    let log_files = (size_mib * 45 / 100 / 10).max(1);
    let small_files = (size_mib * 15 / 100 * 1024 / 4).max(1);
    let script = format!(
        r#"set -e
cd /data
mkdir -p big logs
i=0; while [ $i -lt {random_files} ]; do head -c 8388608 /dev/urandom > big/r$i.bin; i=$((i+1)); done
i=0; while [ $i -lt {log_files} ]; do
  awk -v s=$i 'BEGIN {{ for (n = 0; n < 118000; n++) printf "2026-11-%02d 12:%02d:%02d host-%02d INFO request id=%d path=/api/v1/items/%d status=200 took=%dms\n", s % 28 + 1, n % 60, n % 59, n % 40, n * 7 + s, n % 1000, n % 300 }}' > logs/app$i.log
  i=$((i+1))
done
i=0; while [ $i -lt {small_files} ]; do
  d=small/$((i / 500))/$((i % 7)); mkdir -p $d
  n=$((1024 + (i * 2654435761) % 7168))
  if [ $((i % 2)) -eq 0 ]; then head -c $n /dev/urandom > $d/f$i.bin; else seq $i $((i + n / 6)) | head -c $n > $d/f$i.txt; fi
  i=$((i+1))
done
"#
    );
    util::run(Docker::cli(host).args([
        "run",
        "--rm",
        "-v",
        &format!("{VOLUME}:/data"),
        svc::IMAGE,
        "sh",
        "-c",
        &script,
    ]))?;
    std::fs::write(&meta, key(&inspect("{{.CreatedAt}}")?)).with_context(|| format!("write {}", meta.display()))?;
    eprintln!("generated in {}", util::fmt_duration(t0.elapsed()));
    Ok((PathBuf::from(inspect("{{.Mountpoint}}")?), false))
}

/// Regular files below `dir` and their total size.
fn walk(dir: &Path) -> Result<(Vec<PathBuf>, u64)> {
    let mut files = Vec::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("read {}", d.display()))? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                total += e.metadata()?.len();
                files.push(e.path());
            }
        }
    }
    Ok((files, total))
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl PackratPlan for DockerBench {
    fn packrat(&self) -> &Path {
        &self.packrat
    }

    fn work_dir(&self) -> &Path {
        &self.dir
    }

    fn sources_toml(&self) -> String {
        format!(
            "[sources.vol]\ntype = \"docker\"\nvolumes = [\"{VOLUME}\"]\nhelper_image = \"{}\"\ndocker_host = {}\n\n",
            svc::IMAGE,
            toml_string(&self.host),
        )
    }

    fn plan_toml(&self, plan: &str, sink: &str) -> String {
        format!("[plans.{plan}]\nsources = [\"vol\"]\nsinks = [\"{sink}\"]\n")
    }
}

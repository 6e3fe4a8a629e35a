//! `cargo xtask bench replica`: the replica's copy + verify of a ~1 GiB pack to the Samba test
//! share (the full protocol: mount check, `_tmp` copy, fsync, read-back verification from the
//! share, `replication_manifest.json`, rename) versus `cp -r` of the same pack to the same share.
//!
//! The share is the `samba` CI service (Samba on loopback, mounted through FUSE with
//! smbnetfs), started for the benchmark and stopped afterwards. The pack (one big artifact and a
//! few small ones of incompressible data) is generated once and cached under
//! `target/bench/replica/`. packrat's side is the `replicate` example of `sink-cifs-replica`,
//! built in release mode: it runs exactly the sink's `store`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::harness::{self, CommonArgs, Report, Scenario, Side, Targets};
use crate::services::Service;
use crate::services::samba::{FS_TYPE, Samba};
use crate::util::{self, mib};

const PACK_ID: &str = "bench_20260101_000000";

/// Options of `cargo xtask bench replica`.
#[derive(Debug, Args)]
pub struct ReplicaArgs {
    /// Size of the generated pack, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    size_mib: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Runs the benchmark.
pub fn run(args: &ReplicaArgs) -> Result<Report> {
    eprintln!("checking prerequisites");
    let mut samba = Samba::default();
    crate::prereqs::ensure(&samba.prereqs())?;
    eprintln!("building the replicate example (release)");
    util::run(util::cargo().args([
        "build",
        "--release",
        "-p",
        "sink-cifs-replica",
        "--example",
        "replicate",
    ]))?;
    let tool = util::target_dir().join("release").join("examples").join("replicate");
    if !tool.is_file() {
        bail!("{} was not built", tool.display());
    }

    let dir = util::target_dir().join("bench").join("replica");
    let pack = harness::ensure_pack(&tool, &dir, args.size_mib, PACK_ID)?;

    eprintln!("starting the Samba test share");
    samba.start()?;
    let result = (|| -> Result<Report> {
        let share = Samba::mount_point().join("bench");
        util::remove_path(&share)?;
        std::fs::create_dir(&share).with_context(|| format!("create {}", share.display()))?;
        let mut bench = ReplicaBench {
            tool,
            pack,
            share,
            size_mib: args.size_mib,
        };
        let mut report = harness::run(&mut bench, args.common.rounds)?;
        eprintln!("measuring where the time goes (write, read back, both at once)");
        for (key, value) in breakdown(&bench)? {
            report.push_info(&key, value);
        }
        util::remove_path(&bench.share)?;
        Ok(report)
    })();
    let stopped = samba.stop();
    let report = result?;
    stopped?;
    Ok(report)
}

/// Times the two halves of the replica's work on the pack's largest file, each from a cold page
/// cache: writing it to the share (`dd … conv=fsync`), and reading it back (`dd … of=/dev/null`,
/// with 1 MiB and with 8 MiB requests); then a write of one copy while another is read back, at
/// once, as a pipelined replica would do. If "at once" takes as long as one after the other, the
/// share serves one request at a time and the floor of packrat/`cp` is (write + read) / write.
fn breakdown(bench: &ReplicaBench) -> Result<Vec<(String, Value)>> {
    let big = bench
        .input_files()
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .context("the pack has no files")?;
    let bytes = std::fs::metadata(&big)
        .with_context(|| format!("inspect {}", big.display()))?
        .len();
    let dir = bench.share.join("breakdown");
    util::remove_path(&dir)?;
    std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
    let (a, b) = (dir.join("a"), dir.join("b"));
    let dd = |args: &[String]| {
        let mut c = Command::new("dd");
        c.args(args).arg("status=none");
        c
    };
    let write = |to: &std::path::Path| {
        dd(&[
            format!("if={}", big.display()),
            format!("of={}", to.display()),
            "bs=1M".into(),
            "conv=fsync".into(),
        ])
    };
    let read = |from: &std::path::Path, bs: &str| {
        dd(&[
            format!("if={}", from.display()),
            "of=/dev/null".into(),
            format!("bs={bs}"),
        ])
    };
    let timed = |cmds: Vec<Command>| -> Result<f64> {
        harness::drop_caches()?;
        let t = std::time::Instant::now();
        let children: Vec<_> = cmds
            .into_iter()
            .map(|mut c| c.spawn().with_context(|| util::display_cmd(&c)))
            .collect::<Result<_>>()?;
        for mut child in children {
            let status = child.wait().context("wait for dd")?;
            util::check_status(status, "dd")?;
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let w = timed(vec![write(&a)])?;
    let r = timed(vec![read(&a, "1M")])?;
    let r8 = timed(vec![read(&a, "8M")])?;
    let both = timed(vec![write(&b), read(&a, "1M")])?;
    util::remove_path(&dir)?;
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let file_mib = mib(bytes);
    eprintln!(
        "  {file_mib:.0} MiB: write {w:.2} s, read back {r:.2} s (8 MiB requests: {r8:.2} s), \
         write + read back at once {both:.2} s (one after the other: {:.2} s)",
        w + r
    );
    Ok(vec![
        ("breakdown_file_mib".into(), json!(round(file_mib))),
        ("breakdown_write_s".into(), json!(round(w))),
        ("breakdown_read_back_s".into(), json!(round(r))),
        ("breakdown_read_back_8m_requests_s".into(), json!(round(r8))),
        ("breakdown_write_and_read_at_once_s".into(), json!(round(both))),
        ("breakdown_floor_ratio".into(), json!(round((w + r) / w))),
        ("breakdown_pipelining_gain".into(), json!(round((w + r) / both))),
    ])
}

#[derive(Debug)]
struct ReplicaBench {
    tool: PathBuf,
    pack: PathBuf,
    share: PathBuf,
    size_mib: u64,
}

impl ReplicaBench {
    fn cp_dir(&self, round: u32) -> PathBuf {
        self.share.join(format!("cp-{round}"))
    }

    fn replica_dir(&self, round: u32) -> PathBuf {
        self.share.join(format!("replica-{round}"))
    }
}

impl Scenario for ReplicaBench {
    fn name(&self) -> &str {
        "replica"
    }

    fn baseline_label(&self) -> &str {
        "cp -r"
    }

    fn info(&self) -> Vec<(String, Value)> {
        vec![
            ("pack".into(), json!(self.pack.display().to_string())),
            ("pack_mib".into(), json!(self.size_mib)),
            (
                "share".into(),
                json!(format!("Samba on 127.0.0.1 via smbnetfs ({FS_TYPE})")),
            ),
            (
                "packrat_side".into(),
                json!("sink-cifs-replica store: copy to _tmp, fsync, read back + sha256 of every file, record, rename"),
            ),
        ]
    }

    fn input_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.pack.clone()];
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

    fn command(&mut self, side: Side, round: u32) -> Result<Command> {
        match side {
            Side::Baseline => {
                let dst = self.cp_dir(round);
                util::remove_path(&dst)?;
                let mut cmd = Command::new("cp");
                cmd.arg("-r").arg(&self.pack).arg(&dst);
                Ok(cmd)
            }
            Side::Packrat => {
                let dst = self.replica_dir(round);
                util::remove_path(&dst)?;
                std::fs::create_dir(&dst).with_context(|| format!("create {}", dst.display()))?;
                let mut cmd = Command::new(&self.tool);
                cmd.arg(&self.pack)
                    .arg(&dst)
                    .args(["--allow", FS_TYPE, "--job", &round.to_string()]);
                Ok(cmd)
            }
        }
    }

    fn finish_round(&mut self, round: u32) -> Result<(u64, u64)> {
        let cp = self.cp_dir(round);
        let replica = self.replica_dir(round);
        let cp_bytes = util::disk_usage(&cp)?;
        let placed = replica.join("bench").join(PACK_ID);
        if !placed.join("replication_manifest.json").is_file() {
            bail!("the replica is not in place at {}", placed.display());
        }
        let replica_bytes = util::disk_usage(&placed)?;
        if cp_bytes == 0 {
            bail!("cp -r wrote nothing to {}", cp.display());
        }
        util::remove_path(&cp)?;
        util::remove_path(&replica)?;
        eprintln!("  round {round}: {:.0} MiB each side", mib(replica_bytes));
        Ok((cp_bytes, replica_bytes))
    }

    fn targets(&self) -> Targets {
        Targets {
            max_ratio: 1.30,
            max_rss_mib: 64.0,
        }
    }
}

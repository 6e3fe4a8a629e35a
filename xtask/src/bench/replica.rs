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

use super::harness::{self, CommonArgs, Scenario, Side, Targets};
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
    common: CommonArgs,
}

/// Runs the benchmark.
pub fn run(args: &ReplicaArgs) -> Result<()> {
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
    let result = (|| {
        let share = Samba::mount_point().join("bench");
        util::remove_path(&share)?;
        std::fs::create_dir(&share).with_context(|| format!("create {}", share.display()))?;
        let mut bench = ReplicaBench {
            tool,
            pack,
            share,
            size_mib: args.size_mib,
        };
        let report = harness::run(&mut bench, args.common.rounds)?;
        util::remove_path(&bench.share)?;
        report.emit(args.common.json);
        Ok(())
    })();
    let stopped = samba.stop();
    result.and(stopped)
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

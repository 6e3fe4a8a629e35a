//! Replicates one sealed pack to a share with the full copy protocol (mount check, `_tmp` copy,
//! read-back verification, `replication_manifest.json`, rename), as a job's replication step
//! does. Used by `cargo xtask bench replica`; handy for trying a share by hand.
//!
//! ```text
//! replicate PACK_DIR TARGET [--allow TYPE]... [--job N] [--layout flat|date]
//! replicate --make-pack DIR --size-mib N [--files K]    # a pack of incompressible test data
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use backup_core::{BackupKind, Compression, Pack, PackId, Sink, StagingPack};
use sink_cifs_replica::ReplicaLayout;
use sink_cifs_replica::{CifsReplicaSink, MountCheck};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("--make-pack") {
        make_pack(&args[1..])
    } else {
        replicate(&args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.windows(2).find(|w| w[0] == flag).map(|w| w[1].as_str())
}

fn replicate(args: &[String]) -> Result<(), String> {
    let usage = "usage: replicate PACK_DIR TARGET [--allow TYPE]... [--job N] [--layout flat|date]";
    let positional: Vec<&String> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && (*i == 0 || !args[i - 1].starts_with("--")))
        .map(|(_, a)| a)
        .collect();
    let [pack_dir, target] = positional.as_slice() else {
        return Err(usage.into());
    };
    let allowed: Vec<String> = args
        .windows(2)
        .filter(|w| w[0] == "--allow")
        .map(|w| w[1].clone())
        .collect();
    let check = if allowed.is_empty() {
        MountCheck::default()
    } else {
        MountCheck::new(allowed)
    };
    let job = value(args, "--job")
        .map_or(Ok(1), str::parse)
        .map_err(|e| format!("--job: {e}"))?;
    let layout = match value(args, "--layout") {
        None | Some("flat") => ReplicaLayout::Flat,
        Some("date") => ReplicaLayout::Date,
        Some(other) => return Err(format!("--layout {other}: use flat or date")),
    };
    let pack = Pack::open(PathBuf::from(pack_dir).as_path()).map_err(|e| e.to_string())?;
    let sink = CifsReplicaSink::new("replica", target.as_str())
        .with_mount_check(check)
        .with_layout(layout);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let info = rt
        .block_on(sink.store(&pack.into_sealed(), job))
        .map_err(|e| e.chain())?;
    println!("{}", info.location);
    Ok(())
}

fn make_pack(args: &[String]) -> Result<(), String> {
    let usage = "usage: replicate --make-pack DIR --size-mib N [--files K]";
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
    // One big artifact (most of the bytes) and a few small ones, like a real pack.
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

//! The shared benchmark pattern: in each round, time the baseline tool and packrat on the same
//! input under the same page-cache conditions, then report per-round times, medians, the median
//! packrat/baseline ratio and packrat's peak RSS against the targets.
//!
//! A benchmark implements [`Scenario`] (prepare fresh outputs, build the two commands, check and
//! clean up after a round) and calls [`run`]; [`Report::emit`] prints the result as text or JSON.
//! Every command runs through `xtask rss` (see [`crate::rss`]), so both sides pay the same
//! wrapper cost and both get an exact peak RSS.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::rss::Usage;
use crate::util::{self, mib};

/// Options every benchmark takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Number of rounds (each times the baseline and packrat once).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Print the figures as JSON on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Which side of the comparison a command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The source's native tool (`sqlite3 .backup`, `mongodump`, ...).
    Baseline,
    /// `packrat run`.
    Packrat,
}

/// Pass/fail limits of a benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    /// Median packrat/baseline time ratio must be at most this.
    pub max_ratio: f64,
    /// Packrat's peak RSS (max over rounds) must be at most this many MiB.
    pub max_rss_mib: f64,
}

impl Default for Targets {
    fn default() -> Self {
        Self {
            max_ratio: 1.10,
            max_rss_mib: 64.0,
        }
    }
}

/// One benchmark: the input is prepared before [`run`]; each round needs fresh outputs.
pub trait Scenario {
    /// Benchmark name (`sqlite`).
    fn name(&self) -> &str;
    /// What the baseline is (`sqlite3 .backup`).
    fn baseline_label(&self) -> &str;
    /// What the measured side is: `packrat`, unless packrat is compared with itself (`--encrypt`).
    fn packrat_label(&self) -> &str {
        "packrat"
    }
    /// Facts about the input for the report (size, rows, ...).
    fn info(&self) -> Vec<(String, Value)>;
    /// Input files, read to warm the page cache when it cannot be dropped.
    fn input_files(&self) -> Vec<PathBuf>;
    /// Prepares a fresh output for `side` in `round` (1-based) and returns the command to time.
    fn command(&mut self, side: Side, round: u32) -> Result<Command>;
    /// Checks and removes the round's outputs; returns their sizes in bytes
    /// (baseline, packrat).
    fn finish_round(&mut self, round: u32) -> Result<(u64, u64)>;
    /// Pass/fail limits.
    fn targets(&self) -> Targets {
        Targets::default()
    }
}

/// How the page cache is made equal for every timed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// `sync; echo 3 > /proc/sys/vm/drop_caches` before every timed command (cold cache).
    Dropped,
    /// Dropping is not permitted: `sync`, then read the input files fully before every timed
    /// command (warm cache).
    Warmed,
}

impl CachePolicy {
    /// Drops the cache if permitted, else falls back to warming.
    pub fn detect() -> Self {
        if drop_caches().is_ok() {
            Self::Dropped
        } else {
            Self::Warmed
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Dropped => "cold: `sync; echo 3 > /proc/sys/vm/drop_caches` before every timed command",
            Self::Warmed => {
                "warm: drop_caches not permitted, so `sync` and a full read of the input \
                 before every timed command"
            }
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Dropped => "dropped",
            Self::Warmed => "warmed",
        }
    }

    /// Brings the cache into the policy's state.
    fn prepare(self, inputs: &[PathBuf]) -> Result<()> {
        match self {
            Self::Dropped => {
                if let Err(err) = drop_caches() {
                    eprintln!("  warning: dropping the page cache failed: {err:#}");
                }
                Ok(())
            }
            Self::Warmed => {
                sync();
                for path in inputs {
                    if path.exists() {
                        let mut file = File::open(path).with_context(|| format!("open {}", path.display()))?;
                        io::copy(&mut file, &mut io::sink()).with_context(|| format!("read {}", path.display()))?;
                    }
                }
                Ok(())
            }
        }
    }
}

fn sync() {
    // Flush earlier outputs so their writeback does not land in the next timing.
    let _ = util::succeeds(&mut Command::new("sync"));
}

/// `sync`, then drops the page cache (needs root).
pub fn drop_caches() -> Result<()> {
    sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").context("write /proc/sys/vm/drop_caches")
}

/// One round's measurements.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// The baseline command.
    pub baseline: Usage,
    /// The packrat command.
    pub packrat: Usage,
    /// Size of the baseline's output in bytes.
    pub baseline_bytes: u64,
    /// Size of packrat's output in bytes.
    pub packrat_bytes: u64,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.packrat.elapsed.as_secs_f64() / self.baseline.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs `rounds` rounds of `scenario`. The order alternates (baseline first in odd rounds,
/// packrat first in even ones) so neither side always runs right after the other.
pub fn run(scenario: &mut dyn Scenario, rounds: u32) -> Result<Report> {
    let cache = CachePolicy::detect();
    let name = scenario.name().to_owned();
    let baseline_label = scenario.baseline_label().to_owned();
    let packrat_label = scenario.packrat_label().to_owned();
    eprintln!("bench {name}: {rounds} round(s); page cache {}", cache.describe());
    let report_file = util::target_dir()
        .join("bench")
        .join(format!(".rss-{}", std::process::id()));

    let mut results = Vec::new();
    for round in 1..=rounds {
        let order = if round % 2 == 1 {
            [Side::Baseline, Side::Packrat]
        } else {
            [Side::Packrat, Side::Baseline]
        };
        let (mut baseline, mut packrat) = (None, None);
        for side in order {
            let cmd = scenario.command(side, round)?;
            cache.prepare(&scenario.input_files())?;
            let usage = measure(&cmd, &report_file)?;
            let label = match side {
                Side::Baseline => baseline_label.as_str(),
                Side::Packrat => packrat_label.as_str(),
            };
            eprintln!(
                "  round {round}: {label:<18} {:>9.3} s   peak RSS {:>7.1} MiB",
                usage.elapsed.as_secs_f64(),
                kib_to_mib(usage.max_rss_kib)
            );
            match side {
                Side::Baseline => baseline = Some(usage),
                Side::Packrat => packrat = Some(usage),
            }
        }
        let (baseline_bytes, packrat_bytes) = scenario.finish_round(round)?;
        results.push(Round {
            baseline: baseline.context("baseline not measured")?,
            packrat: packrat.context("packrat not measured")?,
            baseline_bytes,
            packrat_bytes,
        });
    }
    let _ = std::fs::remove_file(&report_file);

    Ok(Report {
        name,
        baseline_label,
        packrat_label,
        cache,
        info: scenario.info(),
        rounds: results,
        targets: scenario.targets(),
    })
}

/// Runs `cmd` under `xtask rss` and returns its usage. The command's output is captured and
/// shown only if it fails.
pub fn measure(cmd: &Command, report_file: &Path) -> Result<Usage> {
    let exe = std::env::current_exe().context("locate the xtask executable")?;
    let mut wrapper = Command::new(exe);
    wrapper
        .arg("rss")
        .arg("--out")
        .arg(report_file)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null());
    if let Some(dir) = cmd.get_current_dir() {
        wrapper.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapper.env(key, value),
            None => wrapper.env_remove(key),
        };
    }

    let shown = util::display_cmd(cmd);
    let _ = std::fs::remove_file(report_file);
    let out = wrapper.output().with_context(|| format!("cannot start `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim_end(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    let line =
        std::fs::read_to_string(report_file).with_context(|| format!("read rss report {}", report_file.display()))?;
    Usage::parse(line.trim())
}

/// Median of `values` (mean of the two middle values for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

#[allow(clippy::cast_precision_loss)]
fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The result of a benchmark.
#[derive(Debug)]
pub struct Report {
    name: String,
    baseline_label: String,
    packrat_label: String,
    cache: CachePolicy,
    info: Vec<(String, Value)>,
    rounds: Vec<Round>,
    targets: Targets,
}

impl Report {
    fn secs(&self, f: impl Fn(&Round) -> Duration) -> Vec<f64> {
        self.rounds.iter().map(|r| f(r).as_secs_f64()).collect()
    }

    /// The per-round packrat/baseline ratios.
    pub fn ratios(&self) -> Vec<f64> {
        self.rounds.iter().map(Round::ratio).collect()
    }

    /// What the baseline is.
    pub fn baseline_label(&self) -> &str {
        &self.baseline_label
    }

    /// The pass/fail limits.
    pub fn targets(&self) -> Targets {
        self.targets
    }

    /// The input fact `key`, if the benchmark reported it.
    pub fn info(&self, key: &str) -> Option<&Value> {
        self.info.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The measured rounds, for a benchmark that derives more figures from them.
    pub fn rounds(&self) -> &[Round] {
        &self.rounds
    }

    /// Adds a fact to the report (printed and in the JSON with the input facts).
    pub fn push_info(&mut self, key: &str, value: Value) {
        self.info.push((key.to_owned(), value));
    }

    /// Median of the per-round packrat/baseline ratios (rounds are paired: same conditions).
    pub fn median_ratio(&self) -> f64 {
        median(&self.ratios())
    }

    /// Packrat's peak RSS in MiB, the maximum over all rounds.
    pub fn peak_rss_mib(&self) -> f64 {
        kib_to_mib(self.rounds.iter().map(|r| r.packrat.max_rss_kib).max().unwrap_or(0))
    }

    fn baseline_peak_rss_mib(&self) -> f64 {
        kib_to_mib(self.rounds.iter().map(|r| r.baseline.max_rss_kib).max().unwrap_or(0))
    }

    /// The median ratio is within the target.
    pub fn ratio_pass(&self) -> bool {
        self.median_ratio() <= self.targets.max_ratio
    }

    /// The peak RSS is within the target.
    pub fn rss_pass(&self) -> bool {
        self.peak_rss_mib() <= self.targets.max_rss_mib
    }

    /// Prints the report: JSON on stdout with `json`, else a table on stdout.
    pub fn emit(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string_pretty(&self.to_json()).unwrap_or_default());
        } else {
            self.print_text();
        }
    }

    fn print_text(&self) {
        let pass = |ok: bool| if ok { "PASS" } else { "MISS" };
        println!("\n== bench {} ==", self.name);
        for (key, value) in &self.info {
            match value {
                Value::String(s) => println!("{key}: {s}"),
                other => println!("{key}: {other}"),
            }
        }
        println!("page cache: {}", self.cache.describe());
        let label = &self.packrat_label;
        let (rss_label, output_label) = (format!("{label} RSS"), format!("{label} output"));
        // Column widths fit the labels (the defaults for `packrat`).
        let (w_time, w_rss, w_out) = (label.len().max(12), rss_label.len().max(12), output_label.len().max(14));
        println!(
            "{:<7} {:>20} {:>w_time$} {:>8} {:>w_rss$} {:>w_out$}",
            "round", self.baseline_label, label, "ratio", rss_label, output_label
        );
        for (i, r) in self.rounds.iter().enumerate() {
            println!(
                "{:<7} {:>18.3} s {:>w2$.3} s {:>8.3} {:>w4$.1} MiB {:>w5$.1} MiB",
                i + 1,
                r.baseline.elapsed.as_secs_f64(),
                r.packrat.elapsed.as_secs_f64(),
                r.ratio(),
                kib_to_mib(r.packrat.max_rss_kib),
                mib(r.packrat_bytes),
                w2 = w_time - 2,
                w4 = w_rss - 4,
                w5 = w_out - 4,
            );
        }
        println!(
            "{:<7} {:>18.3} s {:>w2$.3} s {:>8.3}",
            "median",
            median(&self.secs(|r| r.baseline.elapsed)),
            median(&self.secs(|r| r.packrat.elapsed)),
            self.median_ratio(),
            w2 = w_time - 2,
        );
        println!(
            "peak RSS: {label} {:.1} MiB, {} {:.1} MiB (max over rounds)",
            self.peak_rss_mib(),
            self.baseline_label,
            self.baseline_peak_rss_mib()
        );
        println!(
            "{}  time: median {label}/{} ratio {:.3} (target <= {:.2})",
            pass(self.ratio_pass()),
            self.baseline_label,
            self.median_ratio(),
            self.targets.max_ratio
        );
        println!(
            "{}  memory: {label} peak RSS {:.1} MiB (target <= {:.0} MiB)",
            pass(self.rss_pass()),
            self.peak_rss_mib(),
            self.targets.max_rss_mib
        );
    }

    fn side_json(&self, label: &str, pick: impl Fn(&Round) -> (Usage, u64)) -> Value {
        let times: Vec<f64> = self.rounds.iter().map(|r| pick(r).0.elapsed.as_secs_f64()).collect();
        let rss: Vec<f64> = self.rounds.iter().map(|r| kib_to_mib(pick(r).0.max_rss_kib)).collect();
        json!({
            "label": label,
            "times_s": times,
            "median_s": median(&times),
            "user_s": self.rounds.iter().map(|r| pick(r).0.user.as_secs_f64()).collect::<Vec<_>>(),
            "sys_s": self.rounds.iter().map(|r| pick(r).0.sys.as_secs_f64()).collect::<Vec<_>>(),
            "peak_rss_mib": rss,
            "max_peak_rss_mib": rss.iter().copied().fold(0.0, f64::max),
            "output_bytes": self.rounds.iter().map(|r| pick(r).1).collect::<Vec<_>>(),
        })
    }

    fn to_json(&self) -> Value {
        let info: serde_json::Map<String, Value> = self.info.iter().cloned().collect();
        json!({
            "bench": self.name,
            "rounds": self.rounds.len(),
            "page_cache": self.cache.key(),
            "input": info,
            "baseline": self.side_json(&self.baseline_label, |r| (r.baseline, r.baseline_bytes)),
            "packrat": self.side_json(&self.packrat_label, |r| (r.packrat, r.packrat_bytes)),
            "ratios": self.ratios(),
            "median_ratio": self.median_ratio(),
            "peak_rss_mib": self.peak_rss_mib(),
            "targets": {
                "ratio": {
                    "max": self.targets.max_ratio,
                    "value": self.median_ratio(),
                    "pass": self.ratio_pass(),
                },
                "peak_rss_mib": {
                    "max": self.targets.max_rss_mib,
                    "value": self.peak_rss_mib(),
                    "pass": self.rss_pass(),
                },
            },
        })
    }
}

/// The generated pack `<dir>/<size>mib/<pack_id>` of a sink benchmark, made by `tool --make-pack`
/// (an example binary of the sink's crate) when it is missing, else reused.
pub fn ensure_pack(tool: &Path, dir: &Path, size_mib: u64, pack_id: &str) -> Result<PathBuf> {
    let pack = dir.join(format!("{size_mib}mib")).join(pack_id);
    if pack.join("manifest.json").is_file() {
        eprintln!("using cached pack {}", pack.display());
        return Ok(pack);
    }
    util::remove_path(&pack)?;
    std::fs::create_dir_all(pack.parent().unwrap_or(dir))?;
    eprintln!("generating a {size_mib} MiB pack at {}", pack.display());
    util::run(
        Command::new(tool)
            .arg("--make-pack")
            .arg(&pack)
            .args(["--size-mib", &size_mib.to_string()]),
    )?;
    Ok(pack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < 1e-12);
        assert!((median(&[4.0, 1.0, 3.0, 2.0]) - 2.5).abs() < 1e-12);
        assert!(median(&[]).abs() < 1e-12);
    }

    #[test]
    fn rss_report_round_trips() {
        let usage = Usage::parse("elapsed_ns=1500000000 max_rss_kib=2048 user_us=10 sys_us=20 exit=0").unwrap();
        assert_eq!(usage.elapsed, Duration::from_millis(1500));
        assert_eq!(usage.max_rss_kib, 2048);
        assert!(Usage::parse("max_rss_kib=1").is_err());
    }
}

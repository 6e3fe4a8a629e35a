//! `--encrypt` of a `packrat run` benchmark: the cost of age encryption, packrat against itself.
//!
//! The benchmark's config gets two plans over the same source, each with its own local sink:
//! `bench` as the benchmark normally runs it, and `bench_age`, the same plan with
//! `[plans.bench_age.encrypt] recipients = [...]`, the recipient of an identity made by
//! `packrat key generate` in the benchmark's directory. The harness then times
//! `packrat run bench` as the baseline side and `packrat run bench_age` as the measured side, in
//! alternating order, and reports the per-round ratios encrypted/unencrypted, their median and
//! both peak RSS against the targets (ratio ≤ 1.10, the benchmark's RSS limit). Round 1's
//! encrypted pack is checked with `packrat verify --deep --identity KEY` (outside the timings).
//!
//! A benchmark takes `--encrypt` by implementing [`PackratPlan`] and calling [`run`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::harness::{self, Report, Scenario, Side, Targets};
use crate::rss::Usage;
use crate::util;

/// The unencrypted plan.
pub const PLAIN_PLAN: &str = "bench";
/// The encrypted plan.
pub const AGE_PLAN: &str = "bench_age";

/// A benchmark whose packrat side is one plan of a generated config.
pub trait PackratPlan: Scenario {
    /// The packrat binary.
    fn packrat(&self) -> &Path;
    /// The benchmark's work directory (outputs, state, config).
    fn work_dir(&self) -> &Path;
    /// The config's `[sources.*]` tables, ending with a blank line.
    fn sources_toml(&self) -> String;
    /// Plan `plan` writing to sink `sink`: `[plans.PLAN]` and its sub-tables, except `encrypt`.
    fn plan_toml(&self, plan: &str, sink: &str) -> String;
    /// Arguments after `packrat run PLAN` (`--full`).
    fn run_args(&self) -> Vec<String> {
        Vec::new()
    }
    /// Environment the config refers to (`uri_env`), for `packrat run` and `packrat verify`.
    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// A TOML basic string.
pub fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A path as a TOML basic string.
pub fn toml_path(path: &Path) -> String {
    toml_string(&path.display().to_string())
}

/// Runs the `--encrypt` comparison of `inner` for `rounds` rounds; the caller emits the report.
pub fn run(inner: &mut dyn PackratPlan, rounds: u32) -> Result<Report> {
    let key_dir = inner.work_dir().join("age");
    util::remove_path(&key_dir)?;
    std::fs::create_dir_all(&key_dir).with_context(|| format!("create {}", key_dir.display()))?;
    let identity = key_dir.join("bench.key");
    let out = util::stdout_of(
        Command::new(inner.packrat())
            .args(["key", "generate", "-o"])
            .arg(&identity),
    )?;
    let recipient = out.trim().to_owned();
    if !recipient.starts_with("age1") || recipient.contains(char::is_whitespace) {
        bail!("`packrat key generate` printed {out:?}, not one age1… recipient");
    }
    eprintln!("generated age identity {} (recipient {recipient})", identity.display());

    let name = format!("{} --encrypt", inner.name());
    let targets = Targets {
        max_ratio: 1.10,
        max_rss_mib: inner.targets().max_rss_mib,
    };
    let mut bench = EncryptBench {
        inner,
        name,
        recipient,
        identity,
        targets,
        verified: None,
    };
    let mut report = harness::run(&mut bench, rounds)?;
    if let Some(verified) = bench.verified.take() {
        report.push_info("verified", json!(verified));
    }
    report.push_info("cpu_median", json!(cpu_summary(&report)));
    report.push_info("cpu_ratio", json!(cpu_ratios(&report)));
    Ok(report)
}

/// The per-round ratios of CPU time (user + sys) encrypted/unencrypted and their median, as
/// text: less sensitive than wall time to the load of a shared machine.
fn cpu_ratios(report: &Report) -> String {
    let cpu = |u: &Usage| (u.user + u.sys).as_secs_f64();
    let ratios: Vec<f64> = report
        .rounds()
        .iter()
        .map(|r| cpu(&r.packrat) / cpu(&r.baseline).max(1e-9))
        .collect();
    let list: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    format!(
        "median {:.3} of the per-round (user + sys) ratios packrat+age/packrat {}",
        harness::median(&ratios),
        list.join(", ")
    )
}

/// Median user and system CPU seconds of both sides, as text.
fn cpu_summary(report: &Report) -> String {
    let med = |f: &dyn Fn(&harness::Round) -> f64| harness::median(&report.rounds().iter().map(f).collect::<Vec<_>>());
    format!(
        "packrat {:.2} s user + {:.2} s sys, packrat+age {:.2} s user + {:.2} s sys",
        med(&|r| r.baseline.user.as_secs_f64()),
        med(&|r| r.baseline.sys.as_secs_f64()),
        med(&|r| r.packrat.user.as_secs_f64()),
        med(&|r| r.packrat.sys.as_secs_f64()),
    )
}

struct EncryptBench<'a> {
    inner: &'a mut dyn PackratPlan,
    name: String,
    recipient: String,
    identity: PathBuf,
    targets: Targets,
    /// What the check of round 1's encrypted pack found.
    verified: Option<String>,
}

impl EncryptBench<'_> {
    fn packs_dir(&self, side: Side) -> PathBuf {
        self.inner.work_dir().join(match side {
            Side::Baseline => "packs-plain",
            Side::Packrat => "packs-age",
        })
    }

    fn state_dir(&self) -> PathBuf {
        self.inner.work_dir().join("state-encrypt")
    }

    fn config_path(&self) -> PathBuf {
        self.inner.work_dir().join("packrat-encrypt.toml")
    }

    fn config(&self) -> String {
        let mut config = format!(
            "state_dir = {}\n\n{}",
            toml_path(&self.state_dir()),
            self.inner.sources_toml()
        );
        for (sink, side) in [("plain", Side::Baseline), ("age", Side::Packrat)] {
            let _ = write!(
                config,
                "[sinks.{sink}]\ntype = \"local\"\npath = {}\nmin_free_mb = 1\n\n",
                toml_path(&self.packs_dir(side))
            );
        }
        config.push_str(&self.inner.plan_toml(PLAIN_PLAN, "plain"));
        config.push('\n');
        config.push_str(&self.inner.plan_toml(AGE_PLAN, "age"));
        let _ = write!(
            config,
            "[plans.{AGE_PLAN}.encrypt]\nrecipients = [{}]\n",
            toml_string(&self.recipient)
        );
        config
    }

    /// Deep-verifies the encrypted pack with the generated identity.
    fn verify(&self) -> Result<String> {
        let mut cmd = Command::new(self.inner.packrat());
        cmd.arg("--config")
            .arg(self.config_path())
            .args(["verify", "--deep", "--latest", AGE_PLAN, "--identity"])
            .arg(&self.identity)
            .current_dir(self.inner.work_dir())
            .envs(self.inner.env());
        util::stdout_of(&mut cmd)?;
        Ok(format!(
            "round 1's encrypted pack passed `packrat verify --deep --identity {}`",
            self.identity.display()
        ))
    }
}

/// The files under `dir` whose name ends with `.age`, and all files.
fn count_files(dir: &Path) -> Result<(usize, usize)> {
    let (mut age, mut all) = (0, 0);
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let (a, n) = count_files(&entry.path())?;
            age += a;
            all += n;
        } else {
            all += 1;
            if entry.file_name().to_string_lossy().ends_with(".age") {
                age += 1;
            }
        }
    }
    Ok((age, all))
}

impl Scenario for EncryptBench<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn baseline_label(&self) -> &str {
        "packrat"
    }

    fn packrat_label(&self) -> &str {
        "packrat+age"
    }

    fn info(&self) -> Vec<(String, Value)> {
        let mut info = self.inner.info();
        info.push((
            "compared".into(),
            json!(format!(
                "`packrat run {PLAIN_PLAN}` vs `packrat run {AGE_PLAN}`: the same plan, same source, \
                 with [plans.{AGE_PLAN}.encrypt] recipients = [1 X25519 recipient]"
            )),
        ));
        info.push(("recipient".into(), json!(self.recipient)));
        info
    }

    fn input_files(&self) -> Vec<PathBuf> {
        self.inner.input_files()
    }

    fn command(&mut self, side: Side, _round: u32) -> Result<Command> {
        util::remove_path(&self.packs_dir(side))?;
        // Fresh state, so no run benefits from an earlier one.
        util::remove_path(&self.state_dir())?;
        std::fs::create_dir_all(self.state_dir())?;
        std::fs::write(self.config_path(), self.config())
            .with_context(|| format!("write {}", self.config_path().display()))?;
        let plan = match side {
            Side::Baseline => PLAIN_PLAN,
            Side::Packrat => AGE_PLAN,
        };
        let mut cmd = Command::new(self.inner.packrat());
        cmd.arg("--config")
            .arg(self.config_path())
            .args(["run", plan])
            .args(self.inner.run_args())
            .envs(self.inner.env())
            .current_dir(self.inner.work_dir());
        Ok(cmd)
    }

    fn finish_round(&mut self, round: u32) -> Result<(u64, u64)> {
        let plain = self.packs_dir(Side::Baseline);
        let age = self.packs_dir(Side::Packrat);
        let (plain_bytes, age_bytes) = (util::disk_usage(&plain)?, util::disk_usage(&age)?);
        if plain_bytes == 0 {
            bail!("packrat run {PLAIN_PLAN} wrote nothing to {}", plain.display());
        }
        if age_bytes == 0 {
            bail!("packrat run {AGE_PLAN} wrote nothing to {}", age.display());
        }
        let (plain_age, _) = count_files(&plain)?;
        let (age_files, _) = count_files(&age)?;
        if plain_age != 0 {
            bail!("the unencrypted plan wrote .age files to {}", plain.display());
        }
        if age_files == 0 {
            bail!("the encrypted plan wrote no .age artifact to {}", age.display());
        }
        if round == 1 {
            eprintln!("  round 1: checking the encrypted pack (packrat verify --deep, not timed)");
            self.verified = Some(self.verify()?);
        }
        util::remove_path(&plain)?;
        util::remove_path(&age)?;
        Ok((plain_bytes, age_bytes))
    }

    fn targets(&self) -> Targets {
        self.targets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plan like the mongo benchmark's: a sub-table, `--full`, an environment variable.
    struct Fake {
        dir: PathBuf,
    }

    impl Scenario for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn baseline_label(&self) -> &str {
            "nothing"
        }
        fn info(&self) -> Vec<(String, Value)> {
            Vec::new()
        }
        fn input_files(&self) -> Vec<PathBuf> {
            Vec::new()
        }
        fn command(&mut self, _side: Side, _round: u32) -> Result<Command> {
            bail!("not used")
        }
        fn finish_round(&mut self, _round: u32) -> Result<(u64, u64)> {
            bail!("not used")
        }
    }

    impl PackratPlan for Fake {
        fn packrat(&self) -> &Path {
            Path::new("/bin/packrat")
        }
        fn work_dir(&self) -> &Path {
            &self.dir
        }
        fn sources_toml(&self) -> String {
            "[sources.mes]\ntype = \"mongo\"\n\n".into()
        }
        fn plan_toml(&self, plan: &str, sink: &str) -> String {
            format!(
                "[plans.{plan}]\nsource = \"mes\"\nsinks = [\"{sink}\"]\n[plans.{plan}.mongo]\ncollections = [\"c\"]\n"
            )
        }
        fn run_args(&self) -> Vec<String> {
            vec!["--full".into()]
        }
        fn env(&self) -> Vec<(String, String)> {
            vec![("URI".into(), "mongodb://x".into())]
        }
    }

    #[test]
    fn config_has_both_plans_and_the_encrypt_table() {
        let mut fake = Fake { dir: "/w".into() };
        let bench = EncryptBench {
            inner: &mut fake,
            name: "fake --encrypt".into(),
            recipient: "age1xyz".into(),
            identity: "/w/age/bench.key".into(),
            targets: Targets::default(),
            verified: None,
        };
        assert_eq!(
            bench.config(),
            "state_dir = \"/w/state-encrypt\"\n\n[sources.mes]\ntype = \"mongo\"\n\n\
             [sinks.plain]\ntype = \"local\"\npath = \"/w/packs-plain\"\nmin_free_mb = 1\n\n\
             [sinks.age]\ntype = \"local\"\npath = \"/w/packs-age\"\nmin_free_mb = 1\n\n\
             [plans.bench]\nsource = \"mes\"\nsinks = [\"plain\"]\n[plans.bench.mongo]\ncollections = [\"c\"]\n\n\
             [plans.bench_age]\nsource = \"mes\"\nsinks = [\"age\"]\n[plans.bench_age.mongo]\ncollections = [\"c\"]\n\
             [plans.bench_age.encrypt]\nrecipients = [\"age1xyz\"]\n"
        );
    }

    #[test]
    fn commands_run_each_plan_with_its_extras() {
        let dir = std::env::temp_dir().join(format!("xtask-encrypt-test-{}", std::process::id()));
        let mut fake = Fake { dir: dir.clone() };
        let mut bench = EncryptBench {
            inner: &mut fake,
            name: "fake --encrypt".into(),
            recipient: "age1xyz".into(),
            identity: dir.join("k"),
            targets: Targets::default(),
            verified: None,
        };
        std::fs::create_dir_all(&dir).unwrap();
        for (side, plan) in [(Side::Baseline, PLAIN_PLAN), (Side::Packrat, AGE_PLAN)] {
            let cmd = bench.command(side, 1).unwrap();
            let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
            assert_eq!(args[2..], ["run", plan, "--full"]);
            assert!(cmd.get_envs().any(|(k, v)| k == "URI" && v.is_some()));
        }
        assert!(
            std::fs::read_to_string(dir.join("packrat-encrypt.toml"))
                .unwrap()
                .contains("[plans.bench_age.encrypt]")
        );
        util::remove_path(&dir).unwrap();
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_path(Path::new("/a/b c")), "\"/a/b c\"");
        assert_eq!(toml_path(Path::new("/a\"b\\c")), "\"/a\\\"b\\\\c\"");
        assert_eq!(toml_string("a\nb"), "\"a\\u000Ab\"");
    }
}

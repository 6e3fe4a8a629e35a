//! `cargo xtask bench mongo`: `packrat run` (full) of one MongoDB collection vs a bare driver
//! cursor drain of the same collection as raw documents to nowhere (`source-mongo`'s `drain`
//! example, same driver, release build).
//!
//! The input is about `--size-mib` MiB (BSON size) of MES-like API log documents (time, method,
//! URL, status, duration, user, line, a header sub-document, a text body of varying length built
//! from a vocabulary, tags) in collection `bench.api_logs` with an index on `createdAt`, loaded
//! with pymongo into a private SecantusDB server (the `mongo` service's venv) whose storage under
//! `target/bench/mongo/` is kept between runs (reloaded when the size or generator changes).
//! SecantusDB is a Python server: loading 1 GiB takes a few minutes, reading it back tens of
//! seconds, so both sides of the comparison are bound by the server.
//!
//! `--encrypt` compares `packrat run --full` of the plan unencrypted and encrypted with age
//! instead (see [`super::encrypt`]).

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::encrypt::{self, PackratPlan, toml_path};
use super::harness::{self, CommonArgs, Report, Scenario, Side};
use crate::services::mongo::Mongo;
use crate::util::{self, mib};

/// Bump when the generated data changes, to invalidate the kept storage.
const SCHEMA_VERSION: u32 = 1;
const DB: &str = "bench";
const COLL: &str = "api_logs";

/// Options of `cargo xtask bench mongo`.
#[derive(Debug, Args)]
pub struct MongoArgs {
    /// Approximate BSON size of the generated collection, in MiB.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    size_mib: u64,
    /// Benchmark this packrat binary instead of building `target/release/packrat`.
    #[arg(long, value_name = "PATH")]
    packrat_bin: Option<PathBuf>,
    /// Measure the cost of encryption: `packrat run --full` of the plan unencrypted vs the same
    /// plan with `[plans.NAME.encrypt]` (age, a recipient generated for the run).
    #[arg(long)]
    encrypt: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

const GENERATOR: &str = r#"
import sys, random, datetime, pymongo, bson
uri, target = sys.argv[1], int(sys.argv[2]) * 1024 * 1024
coll = pymongo.MongoClient(uri)["bench"]["api_logs"]
coll.drop()
rnd = random.Random(7)
words = ("scan barcode station line order pallet quality inspection pass fail retry timeout operator "
         "material batch shift equipment alarm cleared sensor value ok warn error sync upload k3 erp "
         "workorder product serial label printer plc heartbeat").split()
base = datetime.datetime(2026, 1, 1)
total = n = 0
batch = []
while total < target:
    d = {
        "_id": bson.ObjectId(),
        "createdAt": base + datetime.timedelta(milliseconds=n * 250),
        "method": rnd.choice(["GET", "GET", "POST", "PUT", "DELETE"]),
        "url": "/api/v1/%s/%d" % (rnd.choice(["orders", "scan", "equipment", "users", "barcode"]), rnd.randint(1, 100000)),
        "status": rnd.choice([200, 200, 200, 201, 400, 404, 500]),
        "durationMs": rnd.random() * 900,
        "userId": bson.int64.Int64(rnd.randint(1, 5000)),
        "line": "L%02d" % rnd.randint(1, 40),
        "headers": {"ua": "MES-Client/%d.%d" % (rnd.randint(1, 9), rnd.randint(0, 20)),
                    "ip": "10.%d.%d.%d" % (rnd.randint(0, 255), rnd.randint(0, 255), rnd.randint(1, 254))},
        "body": " ".join(rnd.choices(words, k=rnd.randint(10, 300))),
        "tags": rnd.sample(words, rnd.randint(0, 5)),
    }
    batch.append(d)
    total += len(bson.encode(d))
    n += 1
    if len(batch) == 2000:
        coll.insert_many(batch, ordered=False)
        batch = []
if batch:
    coll.insert_many(batch, ordered=False)
coll.create_index("createdAt")
print(n, total)
"#;

#[derive(Debug)]
struct Data {
    docs: u64,
    bytes: u64,
    load_secs: Option<f64>,
}

#[derive(Debug)]
struct MongoBench {
    dir: PathBuf,
    packrat: PathBuf,
    drain: PathBuf,
    uri: String,
    data: Data,
    size_mib: u64,
}

/// Runs the benchmark.
pub fn run(args: &MongoArgs) -> Result<Report> {
    eprintln!("checking the SecantusDB venv");
    Mongo::ensure_installed()?;
    let packrat = if let Some(bin) = &args.packrat_bin {
        std::path::absolute(bin).with_context(|| format!("resolve {}", bin.display()))?
    } else {
        eprintln!("building packrat and the drain baseline (release)");
        util::run(util::cargo().args(["build", "--release", "-p", "packrat"]))?;
        util::target_dir().join("release").join("packrat")
    };
    util::run(util::cargo().args(["build", "--release", "-p", "source-mongo", "--example", "drain"]))?;
    let drain = util::target_dir().join("release").join("examples").join("drain");
    for b in [&packrat, &drain] {
        if !b.is_file() {
            bail!("{} was not built", b.display());
        }
    }

    let dir = util::target_dir().join("bench").join("mongo");
    fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let key = format!("schema={SCHEMA_VERSION} size_mib={}", args.size_mib);
    let meta_path = dir.join("data.meta");
    let cached = fs::read_to_string(&meta_path)
        .ok()
        .filter(|m| m.lines().next() == Some(key.as_str()));
    if cached.is_none() {
        util::remove_path(&dir.join("data"))?;
    }
    let port = free_port()?;
    let mut server = Server::start(&dir, port)?;
    let uri = format!("mongodb://127.0.0.1:{port}/");
    let data = match cached.as_deref().and_then(parse_meta) {
        Some((docs, bytes)) => {
            eprintln!("using the kept collection ({docs} documents, {:.1} MiB)", mib(bytes));
            Data {
                docs,
                bytes,
                load_secs: None,
            }
        }
        None => {
            eprintln!(
                "loading about {} MiB of documents (SecantusDB is a Python server: minutes per GiB)",
                args.size_mib
            );
            let t0 = Instant::now();
            let out = util::stdout_of(
                Command::new(venv_python())
                    .args(["-c", GENERATOR, &uri])
                    .arg(args.size_mib.to_string()),
            )?;
            let secs = t0.elapsed().as_secs_f64();
            let (docs, bytes) =
                parse_meta(&format!("x\ndocs={}", out.trim().replace(' ', "\nbytes="))).context("generator output")?;
            eprintln!("loaded {docs} documents, {:.1} MiB in {secs:.1} s", mib(bytes));
            fs::write(&meta_path, format!("{key}\ndocs={docs}\nbytes={bytes}\n"))?;
            Data {
                docs,
                bytes,
                load_secs: Some(secs),
            }
        }
    };

    let mut bench = MongoBench {
        dir,
        packrat,
        drain,
        uri,
        data,
        size_mib: args.size_mib,
    };
    let result = if args.encrypt {
        encrypt::run(&mut bench, args.common.rounds)
    } else {
        harness::run(&mut bench, args.common.rounds)
    };
    server.stop();
    result
}

fn parse_meta(text: &str) -> Option<(u64, u64)> {
    let mut docs = None;
    let mut bytes = None;
    for l in text.lines().skip(1) {
        if let Some(v) = l.strip_prefix("docs=") {
            docs = v.trim().parse().ok();
        }
        if let Some(v) = l.strip_prefix("bytes=") {
            bytes = v.trim().parse().ok();
        }
    }
    Some((docs?, bytes?))
}

fn venv_python() -> PathBuf {
    util::target_dir()
        .join("ci-services")
        .join("mongo")
        .join("venv")
        .join("bin")
        .join("python")
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[derive(Debug)]
struct Server(Option<Child>);

impl Server {
    fn start(dir: &Path, port: u16) -> Result<Server> {
        let log = fs::File::create(dir.join("server.log"))?;
        let secantusd = venv_python().with_file_name("secantusd-py");
        let child = Command::new(secantusd)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--log-level",
                "WARNING",
                "--storage-path",
            ])
            .arg(dir.join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start secantusd-py")?;
        let mut s = Server(Some(child));
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t0.elapsed() > Duration::from_secs(120) {
                s.stop();
                bail!(
                    "secantusd-py did not listen on port {port}; see {}",
                    dir.join("server.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(s)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = crate::util::signal("TERM", &c.id().to_string());
            let t0 = Instant::now();
            while matches!(c.try_wait(), Ok(None)) && t0.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

impl MongoBench {
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

impl Scenario for MongoBench {
    fn name(&self) -> &str {
        "mongo"
    }

    fn baseline_label(&self) -> &str {
        "driver cursor drain"
    }

    fn info(&self) -> Vec<(String, Value)> {
        vec![
            ("collection".into(), json!(format!("{DB}.{COLL}"))),
            ("documents".into(), json!(self.data.docs)),
            ("bson_mib".into(), json!((mib(self.data.bytes) * 10.0).round() / 10.0)),
            ("size_mib_requested".into(), json!(self.size_mib)),
            ("server".into(), json!(crate::services::mongo::SECANTUS)),
            (
                "load".into(),
                json!(match self.data.load_secs {
                    Some(s) => format!("this run, {s:.1} s"),
                    None => "kept from an earlier run".into(),
                }),
            ),
        ]
    }

    fn input_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    fn command(&mut self, side: Side, round: u32) -> Result<Command> {
        match side {
            Side::Baseline => {
                let mut cmd = Command::new(&self.drain);
                cmd.args([DB, COLL]).env("MONGO_URI", &self.uri).current_dir(&self.dir);
                Ok(cmd)
            }
            Side::Packrat => {
                let packs = self.packs_dir(round);
                util::remove_path(&packs)?;
                util::remove_path(&self.state_dir())?;
                fs::create_dir_all(self.state_dir())?;
                let config = format!(
                    "state_dir = {}\n\n{}[sinks.local]\ntype = \"local\"\npath = {}\nmin_free_mb = 1\n\n{}",
                    toml_path(&self.state_dir()),
                    self.sources_toml(),
                    toml_path(&packs),
                    self.plan_toml("bench", "local"),
                );
                fs::write(self.config_path(), config)?;
                let mut cmd = Command::new(&self.packrat);
                cmd.arg("--config")
                    .arg(self.config_path())
                    .args(["run", "bench"])
                    .args(self.run_args())
                    .envs(self.env())
                    .current_dir(&self.dir);
                Ok(cmd)
            }
        }
    }

    fn finish_round(&mut self, round: u32) -> Result<(u64, u64)> {
        let packs = self.packs_dir(round);
        let bytes = util::disk_usage(&packs)?;
        if bytes == 0 {
            bail!("packrat run wrote nothing to {}", packs.display());
        }
        util::remove_path(&packs)?;
        Ok((0, bytes))
    }
}

impl PackratPlan for MongoBench {
    fn packrat(&self) -> &Path {
        &self.packrat
    }

    fn work_dir(&self) -> &Path {
        &self.dir
    }

    fn sources_toml(&self) -> String {
        format!("[sources.mes]\ntype = \"mongo\"\nuri_env = \"BENCH_MONGO_URI\"\ndatabase = \"{DB}\"\n\n")
    }

    fn plan_toml(&self, plan: &str, sink: &str) -> String {
        format!(
            "[plans.{plan}]\nsource = \"mes\"\nsinks = [\"{sink}\"]\n[plans.{plan}.mongo]\ncollections = [\"{COLL}\"]\n"
        )
    }

    fn run_args(&self) -> Vec<String> {
        vec!["--full".into()]
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("BENCH_MONGO_URI".into(), self.uri.clone())]
    }
}

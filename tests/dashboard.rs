//! The dashboard of a real packratd in a real browser: headless Chromium driven over WebDriver
//! (`chromedriver`, Debian `chromium-driver`; `cargo xtask ci` installs both). The page lists
//! the daemon's jobs, "run now" starts a job that appears and completes without a reload,
//! "cancel" stops a running job, a wrong token is refused visibly, and the Chinese page shows
//! Chinese texts. Plus the HTTP side of `POST /api/jobs/{id}/cancel` and the cross-site
//! protection of the mutations.
//!
//! `PACKRAT_SCREENSHOTS=docs/img cargo test -p packrat-e2e --test dashboard` also writes the
//! screenshots of docs/dashboard.md.
#![cfg(unix)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use packrat_e2e::daemon::{Daemon, addr, http, wait_for};
use packrat_e2e::{Env, seed_db};
use serde_json::{Value, json};

const TOKEN: &str = "dash-token-5d1e";
/// Generous: a condition, not a timing, is asserted.
const WAIT: Duration = Duration::from_secs(90);

/// A chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let bin = which("chromedriver").unwrap_or_else(|| {
            panic!("chromedriver is not on PATH; install Debian's chromium and chromium-driver (cargo xtask ci does)")
        });
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let d = Driver { child, port };
        wait_for("chromedriver to listen", Duration::from_secs(60), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        d
    }

    async fn browser(&self) -> Client {
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,1000",
            "--lang=en-US",
        ];
        args.push("--hide-scrollbars");
        let mut opts = json!({ "args": args });
        if Path::new("/usr/bin/chromium").exists() {
            opts["binary"] = json!("/usr/bin/chromium");
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), opts);
        // chromedriver listens on loopback: plain HTTP, no TLS stack needed.
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a WebDriver session with headless Chromium")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// A daemon with plans `quick` (a free database) and `slow` (a database the test may lock),
/// one local sink, an API token and `parallelism = 1`.
struct Setup {
    env: Env,
    daemon: Option<Daemon>,
    api: String,
}

impl Setup {
    fn new(language: &str) -> Setup {
        let env = Env::new();
        let quick = env.path("quick.db");
        let slow = env.path("slow.db");
        seed_db(&quick, 200, false);
        seed_db(&slow, 200, false); // rollback journal: an exclusive lock blocks the copy
        std::fs::write(env.path("token"), format!("{TOKEN}\n")).unwrap();
        env.write_config(&format!(
            r#"state_dir = "state"
time_zone = "Asia/Shanghai"
language = "{language}"
parallelism = 1

[sources.quick_db]
type = "sqlite"
path = "{}"

[sources.slow_db]
type = "sqlite"
path = "{}"
busy_timeout = "300s"

[sinks.local]
type = "local"
path = "{}"
min_free_mb = 1

[plans.quick]
sources = ["quick_db"]
sinks = ["local"]
full = "0 4 * * *"
max_age = "2d"

[plans.slow]
sources = ["slow_db"]
sinks = ["local"]

[daemon]
grace_period = "2s"

[api]
bind = "127.0.0.1:0"
token_file = "token"

[health]
interval = "2s"
"#,
            quick.display(),
            slow.display(),
            env.path("packs").display()
        ));
        let daemon = Daemon::start(&env, "packratd");
        let state = env.path("state");
        let api = wait_for("packratd.addr", WAIT, || addr(&state));
        wait_for("the API", WAIT, || {
            (http(&api, "GET", "/healthz", None).0 == 200).then_some(())
        });
        Setup {
            env,
            daemon: Some(daemon),
            api,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    /// An exclusive lock on the slow plan's database: its job waits inside the source.
    fn lock_slow(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(self.env.path("slow.db")).unwrap();
        c.execute_batch("BEGIN EXCLUSIVE;").unwrap();
        c
    }

    fn job(&self, id: i64) -> Value {
        let (code, body) = http(&self.api, "GET", &format!("/api/jobs/{id}"), None);
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Runs `plan` over the API and waits for the job to finish; returns its id.
    fn run_and_wait(&self, plan: &str) -> i64 {
        let (code, body) = http(&self.api, "POST", &format!("/api/plans/{plan}/run"), Some(TOKEN));
        assert_eq!(code, 202, "{body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["job"].as_i64().unwrap();
        self.wait_status(id, "completed");
        id
    }

    fn wait_status(&self, id: i64, status: &str) -> Value {
        wait_for(&format!("job {id} to be {status}"), WAIT, || {
            let j = self.job(id);
            (j["status"] == status).then_some(j)
        })
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(d) = self.daemon.take()
            && std::thread::panicking()
        {
            eprintln!("packratd output:\n{}", d.output());
        }
    }
}

/// Waits until `js` (a function body returning a value) returns something truthy; returns it.
async fn until(c: &Client, what: &str, js: &str, args: Vec<Value>) -> Value {
    let t0 = Instant::now();
    loop {
        let v = c.execute(js, args.clone()).await.unwrap_or(Value::Null);
        let truthy = match &v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            return v;
        }
        if t0.elapsed() > WAIT {
            let html = c.source().await.unwrap_or_default();
            panic!("timed out after {WAIT:?} waiting for {what}; the page:\n{html}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The `data-status` of the job's row once it is `status`.
async fn row_status(c: &Client, job: i64, status: &str) {
    until(
        c,
        &format!("the row of job {job} to show {status}"),
        "var r = document.getElementById('job-' + arguments[0]); return r && r.getAttribute('data-status') === arguments[1];",
        vec![json!(job), json!(status)],
    )
    .await;
}

/// The live refresh replaces the elements every 2 s: an element found just before a swap is
/// stale by the time it is read or clicked, so such a step is retried on the new one.
const STALE_RETRIES: usize = 5;

async fn text_of(c: &Client, css: &str) -> String {
    for _ in 0..STALE_RETRIES {
        match c.find(Locator::Css(css)).await.unwrap().text().await {
            Err(e) if e.is_stale_element_reference() => continue,
            r => return r.unwrap(),
        }
    }
    panic!("{css} stayed stale");
}

async fn set_token(c: &Client, token: &str) {
    let input = c.find(Locator::Css("#token")).await.unwrap();
    input.send_keys(token).await.unwrap();
    c.find(Locator::Css("#token-save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn click(c: &Client, css: &str) {
    for _ in 0..STALE_RETRIES {
        match c.find(Locator::Css(css)).await.unwrap().click().await {
            Err(e) if e.is_stale_element_reference() => continue,
            r => return r.unwrap(),
        }
    }
    panic!("{css} stayed stale");
}

/// Saves a screenshot as `$PACKRAT_SCREENSHOTS/<name>.png` at `width`×`height`, when asked to.
async fn screenshot(c: &Client, name: &str, width: u32, height: u32) {
    screenshot_at(c, name, width, height, None).await;
}

/// [`screenshot`] scrolled to the element with id `at`.
async fn screenshot_at(c: &Client, name: &str, width: u32, height: u32, at: Option<&str>) {
    let Some(dir) = std::env::var_os("PACKRAT_SCREENSHOTS") else {
        return;
    };
    c.set_window_size(width, height).await.unwrap();
    // Let the layout settle after the resize (a screenshot, not an assertion).
    tokio::time::sleep(Duration::from_millis(500)).await;
    if let Some(id) = at {
        c.execute(
            "document.getElementById(arguments[0]).scrollIntoView();",
            vec![json!(id)],
        )
        .await
        .unwrap();
    }
    let png = c.screenshot().await.unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(Path::new(&dir).join(format!("{name}.png")), png).unwrap();
    c.set_window_size(1280, 1000).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_jobs_refuses_a_wrong_token_and_run_now_completes_without_a_reload() {
    let s = Setup::new("en");
    let first = s.run_and_wait("quick");
    let driver = Driver::start();
    let c = driver.browser().await;
    c.goto(&s.url("/")).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "Data security · Data security");
    row_status(&c, first, "completed").await;
    let row = text_of(&c, &format!("#job-{first}")).await;
    assert!(row.contains("quick") && row.contains("completed"), "{row}");
    // Times in the plan's zone, with the offset.
    assert!(row.contains("+08:00"), "{row}");
    let plans = text_of(&c, "#plans").await;
    assert!(plans.contains("(max 2d)") && plans.contains("ago"), "{plans}");
    assert!(text_of(&c, "#sinks").await.contains("reachable"));
    // A marker that a reload would lose.
    c.execute("window.__kept = 'yes';", vec![]).await.unwrap();

    // Without a token, the page asks for one; with a wrong one, the daemon's refusal shows.
    click(&c, "#run-quick-full").await;
    until(
        &c,
        "the need-a-token error",
        "var f = document.getElementById('flash'); return f.className === 'error' && f.textContent.indexOf('Enter the API token') >= 0;",
        vec![],
    )
    .await;
    set_token(&c, "not-the-token").await;
    click(&c, "#run-quick-full").await;
    until(
        &c,
        "the wrong-token error",
        "var f = document.getElementById('flash'); return f.className === 'error' && f.textContent.indexOf('Wrong token') >= 0;",
        vec![],
    )
    .await;
    let (_, body) = http(&s.api, "GET", "/api/jobs", None);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap().as_array().unwrap().len(),
        1,
        "{body}"
    );

    // The right token: the job appears and completes, without a reload.
    click(&c, "#token-forget").await;
    set_token(&c, TOKEN).await;
    click(&c, "#run-quick-incremental").await;
    let second = first + 1;
    until(
        &c,
        "the run-started notice",
        "var f = document.getElementById('flash'); return f.className === 'ok' && f.textContent.indexOf('Job ' + arguments[0] + ' started') >= 0;",
        vec![json!(second)],
    )
    .await;
    row_status(&c, second, "completed").await;
    let row = text_of(&c, &format!("#job-{second}")).await;
    assert!(row.contains("incremental") && row.contains("API"), "{row}");
    assert_eq!(c.execute("return window.__kept;", vec![]).await.unwrap(), json!("yes"));
    assert_eq!(s.job(second)["status"], "completed");

    // Filters: by status and plan (a plain GET form).
    c.goto(&s.url("/?plan=slow")).await.unwrap();
    assert!(c.find(Locator::Css("#no-jobs")).await.is_ok());
    c.goto(&s.url("/?plan=quick&status=completed")).await.unwrap();
    assert!(c.find(Locator::Css(&format!("#job-{second}"))).await.is_ok());

    c.goto(&s.url("/")).await.unwrap();
    row_status(&c, second, "completed").await;
    screenshot(&c, "dashboard-en-laptop", 1280, 1000).await;
    screenshot(&c, "dashboard-en-phone", 375, 1400).await;
    screenshot_at(&c, "jobs-en-phone", 375, 1000, Some("jobs")).await;

    // A job's page.
    c.goto(&s.url(&format!("/jobs/{first}"))).await.unwrap();
    let page = text_of(&c, "#job").await;
    let output = s.job(first)["output_dir"].as_str().unwrap().to_string();
    assert!(page.contains(&output) && page.contains("completed"), "{page}");
    screenshot(&c, "job-en-laptop", 1280, 900).await;
    screenshot(&c, "job-en-phone", 375, 1100).await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_in_the_page_stops_a_running_job() {
    let s = Setup::new("en");
    let locker = s.lock_slow();
    let driver = Driver::start();
    let c = driver.browser().await;
    c.goto(&s.url("/")).await.unwrap();
    set_token(&c, TOKEN).await;
    click(&c, "#run-slow-full").await;
    row_status(&c, 1, "running").await;
    // The run buttons of a busy plan are disabled.
    until(
        &c,
        "the busy plan's buttons disabled",
        "return document.getElementById('run-slow-full').disabled;",
        vec![],
    )
    .await;
    click(&c, "#cancel-1").await;
    row_status(&c, 1, "cancelled").await;
    let j = s.job(1);
    let detail = j["detail"].as_str().unwrap();
    assert!(detail.contains("cancelled by API client 127.0.0.1:"), "{j}");
    assert!(text_of(&c, "#job-1").await.contains("cancelled by API client"));
    // The job's page says so too, and offers no cancel any more.
    c.goto(&s.url("/jobs/1")).await.unwrap();
    assert!(text_of(&c, "#job").await.contains("cancelled"));
    assert!(c.find(Locator::Css("#cancel-1")).await.is_err());
    locker.execute_batch("COMMIT;").unwrap();
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chinese_page_shows_chinese_texts() {
    let s = Setup::new("zh-CN");
    let first = s.run_and_wait("quick");
    let locker = s.lock_slow();
    let (code, _) = http(&s.api, "POST", "/api/plans/slow/run", Some(TOKEN));
    assert_eq!(code, 202);
    s.wait_status(2, "running");
    let driver = Driver::start();
    let c = driver.browser().await;
    c.goto(&s.url("/")).await.unwrap();
    assert_eq!(c.title().await.unwrap(), "数据安全 · 数据安全");
    row_status(&c, first, "completed").await;
    let body = text_of(&c, "body").await;
    for t in [
        "数据安全",
        "备份计划",
        "备份任务",
        "存储目标",
        "已完成",
        "运行中",
        "立即全量备份",
        "输出目录",
        "上次校验",
        "上次恢复演练",
        "从未",
    ] {
        assert!(body.contains(t), "{t} missing in:\n{body}");
    }
    assert!(!body.contains("Run full now"), "{body}");
    // A wrong token is refused in Chinese.
    set_token(&c, "wrong").await;
    click(&c, "#cancel-2").await;
    until(
        &c,
        "the wrong-token error in Chinese",
        "var f = document.getElementById('flash'); return f.className === 'error' && f.textContent.indexOf('令牌错误') >= 0;",
        vec![],
    )
    .await;
    screenshot(&c, "dashboard-zh-laptop", 1280, 1000).await;
    screenshot(&c, "dashboard-zh-phone", 375, 1400).await;
    screenshot_at(&c, "jobs-zh-phone", 375, 1000, Some("jobs")).await;
    c.goto(&s.url(&format!("/jobs/{first}"))).await.unwrap();
    assert!(text_of(&c, "#job").await.contains("已完成"));
    screenshot(&c, "job-zh-laptop", 1280, 900).await;
    screenshot(&c, "job-zh-phone", 375, 1100).await;
    locker.execute_batch("COMMIT;").unwrap();
    c.close().await.unwrap();
}

/// The one SQLite artifact of `plan`'s newest pack on the `packs` sink.
fn newest_artifact(s: &Setup, plan: &str) -> PathBuf {
    let root = s.env.path("packs").join(plan);
    let pack = root.join(packrat_e2e::subdirs(&root).pop().expect("a pack"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(pack.join("sqlite"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_cards_show_the_last_drill_and_the_last_verification_with_its_failures() {
    let s = Setup::new("en");
    s.run_and_wait("quick");
    // A passing drill, then a verification that fails on a damaged artifact.
    let drill = s.env.run(&["drill", "quick", "--json"]).ok().json();
    assert_eq!(drill["status"], "passed", "{drill}");
    let secs = drill["restore_seconds"].as_f64().expect("a restore time");
    let art = newest_artifact(&s, "quick");
    let mut bytes = std::fs::read(&art).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&art, &bytes).unwrap();
    let r = s.env.run(&["drill", "quick", "--verify", "--json"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let verify = r.json();
    assert_eq!(verify["status"], "failed", "{verify}");
    let failure = verify["failures"][0].as_str().expect("a failure").to_string();
    assert!(failure.contains("sink local"), "{failure}");

    let driver = Driver::start();
    let c = driver.browser().await;
    c.goto(&s.url("/")).await.unwrap();
    let badge = |id: &str| {
        format!("var b = document.querySelector('#{id} .badge'); return b && b.getAttribute('data-status');")
    };
    let st = until(&c, "the drill's status", &badge("drill-quick"), vec![]).await;
    assert_eq!(st, json!("passed"));
    let st = until(&c, "the verification's status", &badge("verify-quick"), vec![]).await;
    assert_eq!(st, json!("failed"));
    let drill_text = text_of(&c, "#drill-quick").await;
    assert!(drill_text.starts_with("passed "), "{drill_text}");
    assert!(drill_text.contains(&format!("restore {secs:.2} s")), "{drill_text}");
    assert!(drill_text.contains("+08:00"), "{drill_text}");
    let verify_text = text_of(&c, "#verify-quick").await;
    assert!(verify_text.starts_with("failed "), "{verify_text}");
    assert!(verify_text.contains(&failure), "{failure} missing in: {verify_text}");
    assert!(
        verify_text.contains("+08:00") && !verify_text.contains("restore"),
        "{verify_text}"
    );
    // The failure is text, and the list's title carries every failure.
    let title = c
        .execute(
            "return document.querySelector('#verify-quick ul.failures').title;",
            vec![],
        )
        .await
        .unwrap();
    assert!(title.as_str().unwrap().contains(&failure), "{title}");
    // The badges are styled like job statuses.
    let class = c
        .execute(
            "return document.querySelector('#verify-quick .badge').className;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(class, json!("badge st-failed"));
    // A plan never drilled says so.
    assert_eq!(text_of(&c, "#verify-slow").await, "never");
    assert_eq!(text_of(&c, "#drill-slow").await, "never");
    // The live refresh keeps them.
    let before = c
        .execute("return document.body.getAttribute('data-refreshed');", vec![])
        .await
        .unwrap();
    until(
        &c,
        "a refresh",
        "return document.body.getAttribute('data-refreshed') !== arguments[0] && document.getElementById('verify-quick') !== null;",
        vec![before],
    )
    .await;
    assert!(text_of(&c, "#verify-quick").await.contains(&failure));
    c.close().await.unwrap();
}

/// One raw HTTP/1.1 request with extra header lines; returns (status, body).
fn raw(addr: &str, method: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (
        head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

#[test]
fn the_cancel_endpoint_and_the_cross_site_protection() {
    let s = Setup::new("en");
    let auth = format!("Authorization: Bearer {TOKEN}");
    // Read-only pages need no token.
    let (code, page) = raw(&s.api, "GET", "/", &[]);
    assert_eq!(code, 200);
    assert!(
        page.contains("Data security") && page.contains("/assets/dashboard.js"),
        "{page}"
    );
    assert_eq!(raw(&s.api, "GET", "/assets/dashboard.js", &[]).0, 200);
    assert_eq!(raw(&s.api, "GET", "/assets/dashboard.css", &[]).0, 200);
    assert_eq!(raw(&s.api, "GET", "/jobs/99", &[]).0, 404);

    // Unknown and finished jobs.
    let (code, body) = raw(&s.api, "POST", "/api/jobs/99/cancel", &[&auth]);
    assert_eq!(code, 404, "{body}");
    let done = s.run_and_wait("quick");
    let (code, body) = raw(&s.api, "POST", &format!("/api/jobs/{done}/cancel"), &[&auth]);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("already finished"), "{body}");

    // A running job and, behind it (parallelism 1), a queued one.
    let locker = s.lock_slow();
    let (code, body) = http(&s.api, "POST", "/api/plans/slow/run", Some(TOKEN));
    assert_eq!(code, 202, "{body}");
    let running = done + 1;
    s.wait_status(running, "running");
    let (code, _) = http(&s.api, "POST", "/api/plans/quick/run", Some(TOKEN));
    assert_eq!(code, 202);
    let queued = running + 1;
    assert_eq!(s.job(queued)["status"], "queued");

    // Cross-site attempts and missing or wrong tokens are refused and change nothing.
    let path = format!("/api/jobs/{running}/cancel");
    let (code, body) = raw(&s.api, "POST", &path, &[&auth, "Origin: http://evil.example"]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("cross-site"), "{body}");
    let (code, _) = raw(&s.api, "POST", &path, &[&auth, "Origin: null"]);
    assert_eq!(code, 403);
    for ct in [
        "application/x-www-form-urlencoded",
        "text/plain;charset=UTF-8",
        "multipart/form-data; boundary=x",
    ] {
        let (code, body) = raw(&s.api, "POST", &path, &[&auth, &format!("Content-Type: {ct}")]);
        assert_eq!(code, 403, "{ct}: {body}");
    }
    let (code, _) = raw(
        &s.api,
        "POST",
        "/api/plans/quick/run",
        &[&auth, "Origin: http://evil.example"],
    );
    assert_eq!(code, 403);
    assert_eq!(raw(&s.api, "POST", &path, &[]).0, 401);
    assert_eq!(raw(&s.api, "POST", &path, &["Authorization: Bearer nope"]).0, 401);
    assert_eq!(s.job(running)["status"], "running");

    // The same origin is fine: the queued job is cancelled before it starts, the running one
    // stops where it is.
    let origin = format!("Origin: http://{}", s.api);
    let (code, body) = raw(&s.api, "POST", &format!("/api/jobs/{queued}/cancel"), &[&auth, &origin]);
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"job": queued, "cancelling": true})
    );
    let q = s.wait_status(queued, "cancelled");
    assert!(q["detail"].as_str().unwrap().contains("cancelled by API client"), "{q}");
    assert!(q["started_at"].is_null(), "{q}");
    let (code, body) = raw(&s.api, "POST", &path, &[&auth, "Content-Type: application/json"]);
    assert_eq!(code, 202, "{body}");
    let r = s.wait_status(running, "cancelled");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .contains("cancelled by API client 127.0.0.1:"),
        "{r}"
    );
    // Cancelling again: it is finished now.
    assert_eq!(raw(&s.api, "POST", &path, &[&auth]).0, 409);
    locker.execute_batch("COMMIT;").unwrap();
    // The plan runs again afterwards.
    s.run_and_wait("slow");
}

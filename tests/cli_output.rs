//! What `packrat` prints: a closed stdout ends a command quietly, and docs/cli.md documents
//! every subcommand and flag of the real binary.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use packrat_e2e::{Env, packrat_bin, seed_db};

/// Runs `packrat ARGS` with stdout a pipe that is closed right away (`read_lines = 0`) or after
/// reading that many lines, as `| head -N` does; returns (exit code, stderr).
fn run_into_closed_pipe(env: &Env, args: &[&str], read_lines: usize) -> (Option<i32>, String) {
    let mut child = env
        .cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn packrat");
    let stdout = child.stdout.take().expect("stdout");
    if read_lines > 0 {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        for _ in 0..read_lines {
            line.clear();
            r.read_line(&mut line).expect("read");
        }
    } else {
        drop(stdout);
    }
    let out = child.wait_with_output().expect("wait");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_closed_stdout_ends_every_printing_command_quietly_with_its_normal_code() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 20, true);
    env.standard_config(&db, &env.path("packs"), "");
    for _ in 0..3 {
        env.run(&["run", "nightly"]).ok();
    }
    // The commands of the issue, many times: closed at once (every write fails with EPIPE) and
    // after two lines (`| head -2`, the write fails whenever packrat is still writing).
    for args in [&["status", "--json"][..], &["jobs", "--json"][..]] {
        for i in 0..50 {
            let (code, stderr) = run_into_closed_pipe(&env, args, if i % 2 == 0 { 0 } else { 2 });
            assert_eq!(code, Some(0), "packrat {args:?} (run {i}): {stderr}");
            assert!(
                !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
                "packrat {args:?} (run {i}): {stderr}"
            );
        }
    }
    // Every other command that prints, human and JSON.
    let others: &[&[&str]] = &[
        &["status"],
        &["jobs"],
        &["job", "1"],
        &["job", "1", "--json"],
        &["list"],
        &["list", "--json"],
        &["verify", "--latest", "nightly"],
        &["verify", "--latest", "nightly", "--json"],
        &["prune", "--dry-run"],
        &["prune", "--dry-run", "--json"],
        &["config", "show"],
        &["config", "check"],
        &["alert", "list"],
        &["alert", "list", "--json"],
        &["doctor", "--json"],
        &["completions", "bash"],
        &["--help"],
    ];
    for args in others {
        for lines in [0, 1] {
            let (code, stderr) = run_into_closed_pipe(&env, args, lines);
            assert!(
                !stderr.contains("panicked") && code != Some(101),
                "packrat {args:?}: exit {code:?}: {stderr}"
            );
            if args[0] != "doctor" {
                // doctor exits 1 here (no daemon runs); the others succeed.
                assert_eq!(code, Some(0), "packrat {args:?}: {stderr}");
            }
        }
    }
    // A failing job keeps its exit code when nobody reads its output.
    env.standard_config(&env.path("missing.db"), &env.path("packs"), "");
    let (code, stderr) = run_into_closed_pipe(&env, &["run", "nightly", "--json"], 0);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[cfg(target_os = "linux")]
#[test]
fn a_stdout_that_cannot_be_written_is_an_error() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 5, true);
    env.standard_config(&db, &env.path("packs"), "");
    env.run(&["run", "nightly"]).ok();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = env.cmd().args(["jobs", "--json"]).stdout(full).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: cannot write to stdout: No space left on device"),
        "{stderr}"
    );
}

/// `packrat ARGS --help`.
fn help(args: &[&str]) -> String {
    let out = Command::new(packrat_bin())
        .args(args)
        .arg("--help")
        .env_remove("PACKRAT_CONFIG")
        .output()
        .expect("spawn packrat");
    assert!(out.status.success(), "packrat {args:?} --help failed");
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// The entries of a help section (`Commands:`, `Options:`): the first word of each indented line.
fn section(help: &str, title: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if line == title {
            inside = true;
            continue;
        }
        if inside {
            if !line.starts_with("  ") {
                break;
            }
            let entry = line.trim_start();
            // Continuation lines of a long description are indented further.
            if line.starts_with("   ") && !entry.starts_with('-') {
                continue;
            }
            out.push(entry.to_string());
        }
    }
    out
}

/// The long flags (`--json`) listed under `Options:`.
fn long_flags(help: &str) -> BTreeSet<String> {
    section(help, "Options:")
        .iter()
        .flat_map(|e| {
            e.split([' ', ','])
                .filter(|w| w.starts_with("--"))
                .map(|w| w.trim_end_matches('.').to_string())
        })
        .collect()
}

/// The text of the section of docs/cli.md whose heading names `` `packrat PATH` ``, up to the
/// next heading of the same or a higher level.
fn doc_section<'a>(doc: &'a str, path: &str) -> Option<&'a str> {
    let needle = format!("`packrat {path}`");
    let lines: Vec<&str> = doc.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with('#') && l.trim_start_matches('#').trim() == needle)?;
    let level = lines[start].chars().take_while(|&c| c == '#').count();
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with('#') && l.chars().take_while(|&c| c == '#').count() <= level)
        .map(|i| start + 1 + i)
        .unwrap_or(lines.len());
    let from = lines[..start].iter().map(|l| l.len() + 1).sum::<usize>();
    let to = lines[..end].iter().map(|l| l.len() + 1).sum::<usize>().min(doc.len());
    Some(&doc[from..to])
}

#[test]
fn docs_cli_md_documents_every_subcommand_and_flag_of_the_binary() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md")).expect("docs/cli.md");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    assert!(readme.contains("(docs/cli.md)"), "the README links docs/cli.md");

    let top = help(&[]);
    let global = long_flags(&top);
    assert!(
        global.contains("--config") && global.contains("--version"),
        "{global:?}"
    );
    let globals_doc = doc.split("## Global options").nth(1).expect("a Global options section");
    for f in &global {
        assert!(
            globals_doc.contains(&format!("`{f}")),
            "global flag {f} is not documented"
        );
    }

    // Every command path, depth first: run, jobs, …, alert test, alert list, config check, …
    let mut todo: Vec<Vec<String>> = section(&top, "Commands:")
        .iter()
        .map(|e| vec![e.split_whitespace().next().unwrap().to_string()])
        .collect();
    let mut checked = Vec::new();
    while let Some(path) = todo.pop() {
        let args: Vec<&str> = path.iter().map(String::as_str).collect();
        let name = args.join(" ");
        let text = doc_section(&doc, &name).unwrap_or_else(|| panic!("docs/cli.md has no section `packrat {name}`"));
        if path.last().map(String::as_str) == Some("help") {
            checked.push(name);
            continue;
        }
        let h = help(&args);
        for f in long_flags(&h).difference(&global) {
            assert!(
                text.contains(f.as_str()),
                "docs/cli.md, section `packrat {name}`: flag {f} is not documented"
            );
        }
        for sub in section(&h, "Commands:") {
            let sub = sub.split_whitespace().next().unwrap().to_string();
            if sub != "help" {
                let mut p = path.clone();
                p.push(sub);
                todo.push(p);
            }
        }
        checked.push(name);
    }
    assert!(checked.len() >= 15, "the help was not parsed: {checked:?}");
}

/// The alerts log files in `dir` (`alerts.log.YYYY-MM-DD`).
fn alert_logs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p: &std::path::PathBuf| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        name.strip_prefix("alerts.log.").is_some_and(|d| {
            d.len() == 10
                && d.chars()
                    .enumerate()
                    .all(|(i, c)| if i == 4 || i == 7 { c == '-' } else { c.is_ascii_digit() })
        })
    });
    v
}

#[test]
fn alert_test_log_writes_the_notice_to_the_alerts_log() {
    let env = Env::new();
    let db = env.path("app.db");
    seed_db(&db, 5, true);
    env.standard_config(&db, &env.path("packs"), "");
    let r = env.run(&["alert", "test", "log"]).ok();
    let logs = alert_logs(&env.path("state/logs"));
    assert_eq!(logs.len(), 1, "one alerts log of today in <state_dir>/logs: {logs:?}");
    assert!(
        r.stdout
            .contains(&format!("test alert written to the alerts log {}", logs[0].display())),
        "{}",
        r.stdout
    );
    let r = env.run(&["alert", "test", "log", "--json"]).ok().json();
    assert_eq!(r["delivered"], true);
    assert_eq!(r["path"], logs[0].display().to_string());
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    assert_eq!(
        text.matches("INFO packrat::alerts:").count(),
        2,
        "appended, not replaced:\n{text}"
    );
    assert_eq!(text.matches("key=test:log").count(), 2, "{text}");
    assert!(text.contains("test message from packrat to channel `log`"), "{text}");

    // With `[daemon] log_json`, JSON lines as packratd writes them, into `log_dir`.
    let text = std::fs::read_to_string(env.config()).unwrap();
    env.write_config(&format!("{text}\n[daemon]\nlog_json = true\nlog_dir = \"alerts\"\n"));
    env.run(&["alert", "test", "log"]).ok();
    let logs = alert_logs(&env.path("alerts"));
    assert_eq!(logs.len(), 1, "{logs:?}");
    let line = std::fs::read_to_string(&logs[0]).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["target"], "packrat::alerts");
    assert_eq!(v["fields"]["key"], "test:log");

    // A log directory that cannot exist fails the test delivery (exit 1) and says where.
    std::fs::write(env.path("blocker"), "a file").unwrap();
    env.write_config(&format!("{text}\n[daemon]\nlog_dir = \"blocker/logs\"\n"));
    let r = env.run(&["alert", "test", "log"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(
        r.stderr.contains("cannot create the directory of the alerts log") && r.stderr.contains("blocker/logs"),
        "{}",
        r.stderr
    );
}

//! The `loadtest` binary end to end: `origin` serves until SIGTERM, and `run --json` against it
//! prints one JSON object.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_loadtest");

#[test]
fn origin_serves_until_sigterm_and_run_reports_json() {
    let mut origin = Command::new(BINARY)
        .args([
            "origin",
            "--listen",
            "127.0.0.1:0",
            "--mode",
            "json",
            "--name",
            "cli",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(origin.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    assert!(
        line.starts_with("origin cli (Json) listening on "),
        "{line}"
    );

    let run = Command::new(BINARY)
        .args([
            "run",
            &format!("http://{addr}/x"),
            "-c",
            "2",
            "-d",
            "300ms",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"]["total"], 0, "{report}");
    assert_eq!(report["url"], format!("http://{addr}/x"));

    // SAFETY: kill(2) with the pid of a child we spawned and have not yet waited for.
    let sent = unsafe { libc::kill(origin.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = origin.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "origin ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "origin cli stopped by signal 15");
}

#[test]
fn bad_arguments_exit_with_usage() {
    let output = Command::new(BINARY)
        .args(["run", "http://127.0.0.1:1/", "-c", "zero"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("-c wants a whole number"), "{stderr}");
    assert!(stderr.contains("usage:"), "{stderr}");
}

/// `loadtest run` as a user runs it: its threads pinned to the core asked for, a progress
/// line each second on stderr, and the text report with every percentile.
#[test]
fn run_pins_its_threads_prints_progress_and_reports_percentiles() {
    use coregate_loadtest::origin::{Mode, Origin, OriginConfig};
    let origin = Origin::start(OriginConfig::new("cli", Mode::Fixed)).unwrap();
    let core = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let run = Command::new(BINARY)
        .args([
            "run",
            &format!("http://{}/", origin.addr()),
            "-c",
            "2",
            "-t",
            "1",
            "-d",
            "1500ms",
            "--cores",
            &core.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The load thread, by name, and the cores it may run on.
    std::thread::sleep(Duration::from_millis(700));
    let tasks = std::fs::read_dir(format!("/proc/{}/task", run.id())).unwrap();
    let allowed: Vec<String> = tasks
        .filter_map(|task| {
            let path = task.ok()?.path();
            let comm = std::fs::read_to_string(path.join("comm")).ok()?;
            (comm.trim() == "loadtest-0").then(|| {
                let status = std::fs::read_to_string(path.join("status")).unwrap();
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .unwrap()
                    .trim()
                    .to_owned()
            })
        })
        .collect();
    let output = run.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(allowed, vec![core.to_string()], "the load thread's cores");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("[   1s]") && l.contains(" req/s ") && l.ends_with(" errors")),
        "no progress line: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    for field in ["p50", "p90", "p99", "p99.9", "max"] {
        assert!(stdout.contains(&format!(" {field} ")), "{field}: {stdout}");
    }
}

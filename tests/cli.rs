//! The command line: `check` (exit codes, located errors), `run` (start-up lines, pinned
//! workers) and `demo` (driven with curl, as a user would).

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;

const VALID: &str = r#"[server]
workers = 1

[[listener]]
name = "public"
address = "127.0.0.1:18080"

[upstreams.users]
endpoints = [{ address = "127.0.0.1:19001", weight = 2 }, { address = "127.0.0.1:19002" }]
balancer = "round_robin"

[[route]]
name = "users"
path = "/users/{id}"
upstream = "users"
"#;

#[test]
fn check_accepts_a_valid_file() {
    let file = TempFile::new("valid", VALID);
    let (status, stdout, stderr) = run_cli(&["check", "-c", file.path().to_str().unwrap()]);
    assert!(status.success(), "exit {status:?}; stderr {stderr}");
    assert_eq!(status.code(), Some(0));
    assert!(stdout.contains("ok"), "summary {stdout:?}");
    assert!(stderr.is_empty(), "stderr {stderr:?}");
}

/// Runs `check` on `text`, expects exit 1 and returns stderr.
fn check_fails(text: &str) -> (String, String) {
    let file = TempFile::new("invalid", text);
    let path = file.path().to_str().unwrap().to_owned();
    let (status, stdout, stderr) = run_cli(&["check", "-c", &path]);
    assert_eq!(
        status.code(),
        Some(1),
        "stdout {stdout:?} stderr {stderr:?}"
    );
    assert!(
        stderr.starts_with(&format!("error: {path}:")),
        "stderr should start with `error: FILE:LINE:COL:`: {stderr:?}"
    );
    (stderr, path)
}

#[test]
fn check_reports_the_line_of_a_bad_reference() {
    // Line 15 names an upstream that does not exist.
    let text = VALID.replace("upstream = \"users\"", "upstream = \"user\"");
    assert_eq!(
        text.lines().nth(14),
        Some("upstream = \"user\""),
        "test text layout"
    );
    let (stderr, path) = check_fails(&text);
    assert!(
        stderr.contains(&format!("{path}:15:")),
        "line 15 expected: {stderr:?}"
    );
    assert!(stderr.contains("route[0].upstream"), "field: {stderr:?}");
    assert!(stderr.contains("  hint: "), "hint line: {stderr:?}");
    assert!(
        stderr.contains("users"),
        "hint names the defined upstreams: {stderr:?}"
    );
}

#[test]
fn check_rejects_an_unknown_field_with_its_line() {
    let text = VALID.replace("workers = 1\n", "workers = 1\nheader_bytes = 4096\n");
    let (stderr, path) = check_fails(&text);
    assert!(
        stderr.contains(&format!("{path}:3:")),
        "line 3 expected: {stderr:?}"
    );
    assert!(stderr.contains("header_bytes"), "names the key: {stderr:?}");
    assert!(
        stderr.contains("header_bytes_max"),
        "hint suggests the right key: {stderr:?}"
    );
}

#[test]
fn check_rejects_bad_values_with_their_line() {
    for (text, line, field) in [
        (VALID.replace("weight = 2", "weight = 0"), 9, "weight"),
        (
            VALID.replace("127.0.0.1:18080", "localhost:8080"),
            6,
            "listener[0].address",
        ),
        (
            VALID.replace("path = \"/users/{id}\"", "path = \"users\""),
            14,
            "route[0].path",
        ),
    ] {
        let (stderr, path) = check_fails(&text);
        assert!(
            stderr.contains(&format!("{path}:{line}:")),
            "line {line} expected: {stderr:?}"
        );
        assert!(stderr.contains(field), "field {field}: {stderr:?}");
    }
}

#[test]
fn check_on_a_missing_file_fails() {
    let (status, _, stderr) = run_cli(&["check", "-c", "/nonexistent/coregate.toml"]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.starts_with("error: "), "{stderr:?}");
}

#[test]
fn run_refuses_an_invalid_file() {
    let text = VALID.replace("upstream = \"users\"", "upstream = \"user\"");
    let file = TempFile::new("invalid-run", &text);
    let mut child = Command::new(BIN)
        .args(["run", "-c", file.path().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It must exit on its own; give it plenty of time before calling it a hang.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert_eq!(status.code(), Some(1));
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("`coregate run` with an invalid config did not exit");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(":15:"), "{stderr:?}");
}

#[test]
fn run_prints_start_up_lines() {
    let o = origin("o", Mode::Json);
    let config = format!(
        "[server]\nworkers = 2\n\n[[listener]]\nname = \"pub\"\naddress = \"{{listen}}\"\n\n{}{}",
        upstream_toml("o", &[o.addr()], ""),
        route_toml("all", "path_prefix = \"/\"", "o")
    );
    let gw = start_gateway(&config);
    let lines = gw.stdout_lines();
    for w in 0..2 {
        let prefix = format!("worker {w}: ");
        let line = lines
            .iter()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in {lines:?}"));
        assert!(line.contains("driver "), "{line:?}");
    }
    let listening = format!("listening on http://{} (pub)", gw.addr);
    assert!(lines.contains(&listening), "no {listening:?} in {lines:?}");
    assert_eq!(gw.get("/x").status, 200);
}

/// The cores this test process may run on.
fn allowed_cores(status_text: &str) -> BTreeSet<usize> {
    let list = status_text
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap_or("")
        .trim();
    let mut cores = BTreeSet::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                cores.extend(a..=b);
            }
            None => {
                cores.insert(part.parse().unwrap());
            }
        }
    }
    cores
}

#[test]
fn workers_are_pinned_to_distinct_cores() {
    let mine = allowed_cores(&std::fs::read_to_string("/proc/self/status").unwrap());
    if mine.len() < 2 {
        eprintln!(
            "skipped: this machine lets the test run on {} core(s)",
            mine.len()
        );
        return;
    }
    let o = origin("o", Mode::Json);
    let config = format!(
        "{}{}{}",
        server_toml(2, ""),
        upstream_toml("o", &[o.addr()], ""),
        route_toml("all", "path_prefix = \"/\"", "o")
    );
    let gw = start_gateway(&config);
    let pid = gw.pid();
    let mut pinned = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if comm == "coregate-w0" || comm == "coregate-w1" {
            let status = std::fs::read_to_string(dir.join("status")).unwrap();
            pinned.push((comm.to_owned(), allowed_cores(&status)));
        }
    }
    pinned.sort();
    let names: Vec<&str> = pinned.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["coregate-w0", "coregate-w1"],
        "worker threads by name"
    );
    for (name, cores) in &pinned {
        assert_eq!(cores.len(), 1, "{name} may run on {cores:?}: not pinned");
        assert!(
            cores.is_subset(&mine),
            "{name} pinned outside the allowed set"
        );
    }
    assert_ne!(
        pinned[0].1, pinned[1].1,
        "both workers on one core: {pinned:?}"
    );
    // The start-up lines say the same.
    let lines = gw.stdout_lines();
    for (i, (_, cores)) in pinned.iter().enumerate() {
        let core = cores.iter().next().unwrap();
        let want = format!("worker {i}: core {core}, driver ");
        assert!(
            lines.iter().any(|l| l.starts_with(&want)),
            "no {want:?} line in {lines:?}"
        );
    }
}

/// `curl -s -o - -w '\n%{http_code}' [args] URL` → (body, status).
fn curl(args: &[&str], url: &str) -> (String, u16) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("run curl (CI installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (
        body.to_owned(),
        code.trim()
            .parse()
            .unwrap_or_else(|_| panic!("curl output {text:?}")),
    )
}

#[test]
fn demo_answers_with_curl() {
    if !curl_available() {
        return;
    }
    let gw = start_demo();
    let base = format!("http://{}", gw.addr);
    for path in [
        "/users/1",
        "/api/users/1",
        "/users",
        "/orders/2",
        "/products",
    ] {
        let (body, status) = curl(&[], &format!("{base}{path}"));
        assert_eq!(status, 200, "GET {path}: {body:?}");
        let v: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body:?}"));
        assert!(!v.is_null(), "GET {path}: {body:?}");
    }
    // /api strips its prefix: the same record as /users/1.
    assert_eq!(
        curl(&[], &format!("{base}/users/1")).0,
        curl(&[], &format!("{base}/api/users/1")).0
    );
    let (body, status) = curl(&["-X", "POST", "-d", "{}"], &format!("{base}/orders"));
    assert_eq!(status, 405, "POST /orders: {body:?}");
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "-X", "POST"])
        .arg(format!("{base}/orders"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        head.contains("allow: get, head"),
        "405 Allow header: {head:?}"
    );
    let (body, status) = curl(&[], &format!("{base}/nowhere"));
    assert_eq!(status, 404, "{body:?}");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(v["status"], 404, "404 JSON: {body:?}");
}

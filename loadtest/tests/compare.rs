//! `loadtest compare` end to end in tiny configurations: against coregate and the forwarder
//! (the Markdown table has their rows with requests per second above zero, the ratio of
//! coregate to the forwarder, and no proxy outlives the run), the forwarder alone, coregate
//! beside a baseline build (`--baseline`), a proxy started again when its port was taken,
//! nginx and HAProxy beside coregate (where installed; `.ci/run` installs them), and
//! the https scenario against the origin alone (and coregate, the forwarder left out). Needs
//! the coregate binary: COREGATE_BIN, else ../target/debug/coregate; without either the
//! coregate tests print a note and pass, and the https one measures the origin alone.

use std::path::PathBuf;
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_loadtest");

fn coregate_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("COREGATE_BIN") {
        return Some(PathBuf::from(path));
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/coregate");
    path.is_file().then_some(path)
}

/// `loadtest compare --coregate BIN` with the coregate binary, or None (after a note) when
/// there is none to run.
fn compare_with_coregate() -> Option<(Command, PathBuf)> {
    let Some(coregate) = coregate_binary() else {
        println!("note: skipped: set COREGATE_BIN or build ../target/debug/coregate");
        return None;
    };
    let mut command = Command::new(BINARY);
    command.args(["compare", "--coregate"]).arg(&coregate);
    Some((command, coregate))
}

/// The cell values of the first table row whose first cell is `name`.
fn row<'a>(markdown: &'a str, name: &str) -> Option<Vec<&'a str>> {
    rows(markdown, name).into_iter().next()
}

/// Runs `command` (a `compare` with its targets) on `scenarios` in the tiniest configuration
/// (300 ms runs, 4 connections, no idle figure), pinned as the machine allows; its stdout,
/// after asserting it succeeded, and stderr.
fn tiny_run(mut command: Command, scenarios: &str) -> (String, String) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (proxy_core, other_cores) = if cores >= 2 { ("0", "1") } else { ("0", "0") };
    let output = command
        .args(["--scenarios", scenarios])
        .args([
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--connections",
            "4",
        ])
        .args(["--idle-connections", "0"])
        .args(["--proxy-core", proxy_core, "--other-cores", other_cores])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    (stdout, stderr)
}

#[test]
fn compare_measures_coregate_against_the_origin() {
    let Some(coregate) = coregate_binary() else {
        println!(
            "note: skipped: set COREGATE_BIN or build ../target/debug/coregate \
             (cargo build) to run loadtest compare against coregate"
        );
        return;
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // On one core everything shares it; the figures mean little, but the run still works.
    let (proxy_core, other_cores) = if cores >= 2 { ("0", "1") } else { ("0", "0") };
    let child = Command::new(BINARY)
        .args(["compare", "--coregate"])
        .arg(&coregate)
        .args([
            "--targets",
            "forwarder,coregate",
            "--scenarios",
            "small",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--connections",
            "4",
            "--idle-connections",
            "20",
            "--proxy-core",
            proxy_core,
            "--other-cores",
            other_cores,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let coregate_row = row(&stdout, "coregate").unwrap_or_else(|| panic!("{stdout}"));
    let rps: f64 = coregate_row[1]
        .parse()
        .unwrap_or_else(|_| panic!("{stdout}"));
    assert!(rps > 0.0, "{stdout}");
    let cpu_us: f64 = coregate_row[2]
        .parse()
        .unwrap_or_else(|_| panic!("{stdout}"));
    assert!(cpu_us > 0.0, "{stdout}");
    assert_eq!(coregate_row.last(), Some(&"0"), "no errors: {stdout}");
    let origin_row = row(&stdout, "origin alone¹").unwrap_or_else(|| panic!("{stdout}"));
    assert!(origin_row[1].parse::<f64>().unwrap() > 0.0, "{stdout}");
    assert_measured(&stdout, "forwarder²");
    // The floors first, then the proxies.
    let position = |name: &str| stdout.find(&format!("| {name} |")).unwrap();
    assert!(
        position("origin alone¹") < position("forwarder²"),
        "{stdout}"
    );
    assert!(position("forwarder²") < position("coregate"), "{stdout}");
    assert!(
        stdout.contains("coregate / forwarder: CPU per request"),
        "{stdout}"
    );
    assert!(row(&stdout, "nginx").is_none(), "{stdout}");
    assert!(
        stdout.contains("| coregate | 20 |"),
        "idle memory row: {stdout}"
    );
    // The forwarder's memory is not a figure worth having; the report says so.
    assert!(!stdout.contains("| forwarder | 20 |"), "{stdout}");
    assert!(
        stdout.contains("The forwarder is not measured here"),
        "{stdout}"
    );

    // The run's temporary directories (named coregate-LABEL-PID-N) are gone with it.
    let marker = format!("-{pid}-");
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("coregate-") && name.contains(&marker))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The forwarder needs no other program: measured like a proxy, with its footnote, and no
/// ratio line without nginx or coregate to compare it with.
#[test]
fn compare_measures_the_forwarder() {
    let mut command = Command::new(BINARY);
    command.args(["compare", "--targets", "forwarder"]);
    let (stdout, _) = tiny_run(command, "16k");
    assert_measured(&stdout, "forwarder²");
    assert!(
        stdout.contains("² `loadtest forward`"),
        "footnote: {stdout}"
    );
    assert!(stdout.contains("- forwarder: "), "version line: {stdout}");
    assert!(!stdout.contains("forwarder / "), "no ratio: {stdout}");
}

/// Asserts that the table row `name` shows requests per second and CPU per request above zero
/// and no errors.
fn assert_measured(markdown: &str, name: &str) {
    let cells = row(markdown, name).unwrap_or_else(|| panic!("no {name} row: {markdown}"));
    for (cell, what) in [(cells[1], "req/s"), (cells[2], "CPU µs/req")] {
        let value: f64 = cell
            .parse()
            .unwrap_or_else(|_| panic!("{name} {what}: {markdown}"));
        assert!(value > 0.0, "{name} {what}: {markdown}");
    }
    assert_eq!(cells.last(), Some(&"0"), "{name}: no errors: {markdown}");
}

/// The coregate-only scenarios: plain coregate beside its variants (JWT HS256 and ES256 with a
/// rate limit; the access log), every request answered 2xx, so the tokens the harness mints
/// are accepted and the rate limit refuses nothing.
#[test]
fn compare_runs_the_coregate_only_scenarios() {
    let Some((mut command, _)) = compare_with_coregate() else {
        return;
    };
    command.args(["--targets", "coregate,nginx"]);
    let (stdout, stderr) = tiny_run(command, "policies,access-log");

    assert!(stdout.contains("#### Scenario policies"), "{stdout}");
    assert!(stdout.contains("#### Scenario access-log"), "{stdout}");
    // coregate plain appears once per scenario; each variant once.
    for name in [
        "coregate",
        "coregate+policies",
        "coregate+es256",
        "coregate+access-log",
    ] {
        let cells = row(&stdout, name).unwrap_or_else(|| panic!("no {name} row: {stdout}"));
        let rps: f64 = cells[1].parse().unwrap_or_else(|_| panic!("{stdout}"));
        assert!(rps > 0.0, "{name}: {stdout}");
        assert_eq!(cells.last(), Some(&"0"), "{name}: no errors: {stdout}");
    }
    // These scenarios measure coregate against itself: nginx is not started for them.
    assert!(row(&stdout, "nginx").is_none(), "{stdout}");
    assert!(
        stdout.contains("coregate+policies / coregate: CPU per request"),
        "{stdout}"
    );
    assert!(
        stdout.contains("coregate+access-log / coregate: CPU per request"),
        "{stdout}"
    );
    assert!(
        stderr.contains("access log: "),
        "the log was written: {stderr}"
    );
}

/// The cell values of every table row whose first cell is `name`.
fn rows<'a>(markdown: &'a str, name: &str) -> Vec<Vec<&'a str>> {
    markdown
        .lines()
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect::<Vec<_>>()
        })
        .filter(|cells| cells.first() == Some(&name))
        .collect()
}

/// Scenario https with the origin alone serving HTTPS (and coregate terminating TLS when its
/// binary is there): certificates made for the run, keep-alive, new and resumed handshakes,
/// no errors. Needs neither nginx nor HAProxy.
#[test]
fn compare_runs_the_https_scenario() {
    let mut command = Command::new(BINARY);
    command.arg("compare");
    match coregate_binary() {
        Some(coregate) => command
            .arg("--coregate")
            .arg(coregate)
            .args(["--targets", "origin,forwarder,coregate"]),
        None => command.args(["--targets", "origin,forwarder"]),
    };
    let (stdout, stderr) = tiny_run(command, "https");
    assert!(stdout.contains("#### Scenario https"), "{stdout}");
    // The forwarder speaks no TLS: left out, and said so.
    assert!(rows(&stdout, "forwarder²").is_empty(), "{stdout}");
    assert!(stdout.contains("The forwarder speaks no TLS"), "{stdout}");

    let origin = rows(&stdout, "origin alone¹");
    // The keep-alive row, then the full and resumed handshake rows.
    assert_eq!(origin.len(), 3, "{stdout}");
    let rps = |cell: &str| cell.parse::<f64>().unwrap_or_else(|_| panic!("{stdout}"));
    assert!(rps(origin[0][1]) > 0.0, "{stdout}");
    for cells in &origin {
        assert_eq!(cells.last(), Some(&"0"), "no errors: {stdout}");
    }
    assert_eq!(origin[1][1], "full", "{stdout}");
    assert!(rps(origin[1][2]) > 0.0, "{stdout}");
    assert_eq!(origin[1][6], "0 %", "nothing resumed: {stdout}");
    assert_eq!(origin[2][1], "resumed", "{stdout}");
    assert!(rps(origin[2][2]) > 0.0, "{stdout}");
    assert_ne!(origin[2][6], "0 %", "sessions resumed: {stdout}");
    // A coregate that terminates TLS is measured like the origin; one that does not is
    // reported as not measured.
    let coregate = rows(&stdout, "coregate");
    if coregate.is_empty() {
        assert!(
            stderr.contains("not measured") || !stderr.contains("coregate"),
            "{stderr}"
        );
    } else {
        assert_eq!(coregate.len(), 3, "{stdout}");
        for cells in &coregate {
            assert_eq!(cells.last(), Some(&"0"), "no errors: {stdout}");
        }
    }
}

/// `--baseline`: a second coregate binary (here the same one) measured beside the first with
/// the same configuration, with its own row, its path on the version line and a ratio line.
#[test]
fn compare_measures_a_baseline_coregate_beside_coregate() {
    let Some((mut command, coregate)) = compare_with_coregate() else {
        return;
    };
    command
        .arg("--baseline")
        .arg(&coregate)
        .args(["--targets", "coregate"]);
    let (stdout, _) = tiny_run(command, "small");
    assert_measured(&stdout, "coregate");
    assert_measured(&stdout, "coregate-baseline");
    assert!(
        stdout.contains(&format!(
            "- coregate-baseline: coregate {}",
            env!("CARGO_PKG_VERSION")
        )) && stdout.contains(&format!("({})", coregate.display())),
        "version lines: {stdout}"
    );
    assert!(
        stdout.contains("coregate / coregate-baseline: CPU per request"),
        "ratio line: {stdout}"
    );
    assert!(
        row(&stdout, "forwarder²").is_none(),
        "not asked for: {stdout}"
    );
}

/// A proxy whose port was taken before it bound it is started again on another port: here a
/// stand-in for coregate that fails its first start as coregate does when its listener's
/// port is in use, then listens where its second configuration says.
#[test]
fn a_proxy_whose_port_was_taken_starts_again_on_another() {
    use coregate_loadtest::compare::proxies::{self, Kind};
    let dir = std::env::temp_dir().join(format!("compare-retry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let failed_once = dir.join("failed-once");
    let program = dir.join("coregate");
    // `coregate run -c FILE`: the listener's address is the first `address = "…"` line.
    std::fs::write(
        &program,
        format!(
            "#!/bin/sh\n\
             if [ ! -e '{marker}' ]; then\n\
             \ttouch '{marker}'\n\
             \techo 'error: cannot start: listener: Address already in use (os error 98)' >&2\n\
             \texit 1\n\
             fi\n\
             addr=$(grep '^address' \"$3\" | head -1 | cut -d'\"' -f2)\n\
             exec python3 -c 'import socket, sys, time\n\
             host, port = sys.argv[1].rsplit(\":\", 1)\n\
             s = socket.socket()\n\
             s.bind((host, int(port)))\n\
             s.listen()\n\
             time.sleep(60)' \"$addr\"\n",
            marker = failed_once.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &program,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let origin: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let started = proxies::start(Kind::Coregate, &program, origin, &[0], None);
    let _ = std::fs::remove_dir_all(&dir);
    let proxy = started.expect("started on the second attempt");
    assert!(std::net::TcpStream::connect(proxy.addr).is_ok());
}

/// nginx and HAProxy, where installed (`.ci/run` installs both): compare starts each with
/// one worker on the proxy core, in front of the same origin, measures it like coregate and
/// puts the ratios under the table.
#[test]
fn compare_measures_nginx_and_haproxy_beside_coregate() {
    use coregate_loadtest::compare::process::find_program;
    let missing: Vec<&str> = ["nginx", "haproxy"]
        .into_iter()
        .filter(|program| find_program(program).is_none())
        .collect();
    if !missing.is_empty() {
        println!("note: skipped: {missing:?} not installed");
        return;
    }
    let Some((mut command, _)) = compare_with_coregate() else {
        return;
    };
    command.args(["--targets", "coregate,nginx,haproxy"]);
    let (stdout, _) = tiny_run(command, "small");
    for name in ["coregate", "nginx", "haproxy"] {
        assert_measured(&stdout, name);
    }
    for proxy in ["nginx", "haproxy"] {
        assert!(
            stdout.contains(&format!("coregate / {proxy}: CPU per request")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("- nginx: nginx version"), "{stdout}");
}

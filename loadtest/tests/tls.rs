//! HTTPS end to end on loopback: a TLS fixture origin with certificates made by rcgen for the
//! test, driven by the `loadtest run https://…` binary in each connection mode. Checks the
//! counts on both sides (connections, full and resumed handshakes), never timings: each run
//! is bounded by its duration.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use coregate_loadtest::origin::{Mode, Origin, OriginConfig, OriginTls};
use coregate_loadtest::tls::{CertificateFiles, TestCertificates};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_loadtest");
/// Connections of each run.
const CONNECTIONS: u64 = 4;

/// A directory of this test's own, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new(label: &str) -> Dir {
        let path =
            std::env::temp_dir().join(format!("loadtest-tls-test-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn certificates(dir: &Path) -> CertificateFiles {
    TestCertificates::generate(&["localhost", "127.0.0.1"])
        .unwrap()
        .write(dir)
        .unwrap()
}

fn tls_origin(files: &CertificateFiles, mode: Mode) -> Origin {
    let mut cfg = OriginConfig::new("tls", mode);
    cfg.tls = Some(OriginTls {
        cert_file: files.cert_file.clone(),
        key_file: files.key_file.clone(),
    });
    Origin::start(cfg).unwrap()
}

/// `loadtest run URL -c 4 -d 400ms ARGS --json`, its JSON report.
fn run(url: &str, args: &[&str]) -> Value {
    let output = Command::new(BINARY)
        .args(["run", url, "-c", "4", "-d", "400ms", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "loadtest run {url} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn count(report: &Value, pointer: &str) -> u64 {
    report
        .pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no {pointer} in {report}"))
}

/// Waits until `condition` holds: the origin finishes a handshake when it reads the client's
/// last flight, which may be after the client has exited. The bound is generous; the test
/// asserts on counts, not on how long they take.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Requests were answered 200, none failed.
fn assert_clean(report: &Value) -> u64 {
    let requests = count(report, "/requests");
    assert!(requests > 0, "{report}");
    assert_eq!(count(report, "/errors/total"), 0, "{report}");
    assert_eq!(count(report, "/status/200"), requests, "{report}");
    requests
}

#[test]
fn https_in_each_connection_mode() {
    let dir = Dir::new("modes");
    let files = certificates(&dir.0);
    let ca = files.ca_file.to_str().unwrap();

    // Keep-alive: one handshake per connection, then request after request.
    let origin = tls_origin(&files, Mode::Fixed);
    let url = format!("https://{}/", origin.addr());
    let report = run(&url, &["--ca", ca]);
    let requests = assert_clean(&report);
    assert_eq!(report["conn"], "keep-alive");
    assert!(report["url"].as_str().unwrap().starts_with("https://"));
    assert_eq!(count(&report, "/connections_opened"), CONNECTIONS);
    let handshakes =
        count(&report, "/tls_handshakes/full") + count(&report, "/tls_handshakes/resumed");
    assert_eq!(handshakes, CONNECTIONS, "{report}");
    assert_eq!(origin.connections_accepted(), CONNECTIONS);
    assert_eq!(origin.tls_handshakes(), CONNECTIONS);
    assert_eq!(origin.tls_handshake_failures(), 0);
    assert!(origin.requests() >= requests);
    drop(origin);

    // New: a TCP connection and a full handshake per request, nothing resumed on either side.
    // A request cut short by the end of the run may have opened its connection uncounted.
    let origin = tls_origin(&files, Mode::Fixed);
    let url = format!("https://{}/", origin.addr());
    let report = run(&url, &["--ca", ca, "--conn", "new"]);
    let requests = assert_clean(&report);
    let opened = count(&report, "/connections_opened");
    assert!(
        (requests..=requests + CONNECTIONS).contains(&opened),
        "{report}"
    );
    assert_eq!(count(&report, "/tls_handshakes/full"), opened, "{report}");
    assert_eq!(count(&report, "/tls_handshakes/resumed"), 0, "{report}");
    eventually("the origin counts every handshake", || {
        origin.tls_handshakes() >= opened
    });
    assert!(origin.tls_handshakes() <= opened + CONNECTIONS);
    assert_eq!(origin.tls_resumed_handshakes(), 0);
    assert!(origin.tls_full_handshakes() >= opened);
    assert!(origin.connections_accepted() >= opened);
    drop(origin);

    // Resume: a new connection per request, each resuming a session of an earlier one; only
    // the first connection of each slot, with no session yet, makes a full handshake.
    let origin = tls_origin(&files, Mode::Fixed);
    let url = format!("https://{}/", origin.addr());
    let report = run(&url, &["--ca", ca, "--conn", "resume"]);
    let requests = assert_clean(&report);
    let opened = count(&report, "/connections_opened");
    assert!(
        (requests..=requests + CONNECTIONS).contains(&opened),
        "{report}"
    );
    let full = count(&report, "/tls_handshakes/full");
    let resumed = count(&report, "/tls_handshakes/resumed");
    assert_eq!(full + resumed, opened, "{report}");
    assert!(full <= CONNECTIONS, "{report}");
    assert!(resumed > 0, "{report}");
    eventually("the origin counts every resumption", || {
        origin.tls_resumed_handshakes() >= resumed
    });
    assert!(origin.tls_full_handshakes() <= CONNECTIONS);
    // Handshakes in flight when the run ended broke off.
    assert!(origin.tls_handshake_failures() <= CONNECTIONS);
}

#[test]
fn https_origin_serves_every_mode() {
    let dir = Dir::new("echo");
    let files = certificates(&dir.0);
    let ca = files.ca_file.to_str().unwrap();
    // Bodies both ways, a chunked-free echo through TLS.
    let origin = tls_origin(&files, Mode::Echo);
    let url = format!("https://localhost:{}/echo", origin.addr().port());
    let report = run(&url, &["--ca", ca, "-m", "POST", "--body-bytes", "20000"]);
    let requests = assert_clean(&report);
    assert!(
        count(&report, "/bytes_read") >= requests * 20_000,
        "{report}"
    );
    assert!(origin.body_bytes_received() >= requests * 20_000);
    drop(origin);
    // The JSON description, and SNI checked against the certificate's DNS name.
    let origin = tls_origin(&files, Mode::Json);
    let url = format!("https://{}/?bytes=100", origin.addr());
    let report = run(&url, &["--ca", ca, "--sni", "localhost", "--conn", "new"]);
    assert_clean(&report);
}

#[test]
fn handshake_failures_are_their_own_kind() {
    let dir = Dir::new("failures");
    let files = certificates(&dir.0);
    let origin = tls_origin(&files, Mode::Fixed);
    let url = format!("https://{}/", origin.addr());

    // A CA that did not sign the origin's certificate.
    let other = Dir::new("failures-other");
    let other_files = certificates(&other.0);
    let report = run(&url, &["--ca", other_files.ca_file.to_str().unwrap()]);
    // A name the certificate is not for.
    let wrong_name = run(
        &url,
        &[
            "--ca",
            files.ca_file.to_str().unwrap(),
            "--sni",
            "elsewhere.test",
        ],
    );
    for report in [report, wrong_name] {
        assert_eq!(count(&report, "/requests"), 0, "{report}");
        let failures = count(&report, "/errors/handshake");
        assert!(failures > 0, "{report}");
        assert_eq!(count(&report, "/errors/total"), failures, "{report}");
        assert_eq!(count(&report, "/connections_opened"), 0, "{report}");
    }
    eventually("the origin counts the failed handshakes", || {
        origin.tls_handshake_failures() > 0
    });
    assert_eq!(origin.tls_handshakes(), 0);

    // Plain HTTP to a TLS port: the origin refuses the bytes as a handshake, and the client
    // gets no response.
    let plain = run(&format!("http://{}/", origin.addr()), &[]);
    assert_eq!(count(&plain, "/requests"), 0, "{plain}");
    assert!(count(&plain, "/errors/total") > 0, "{plain}");
}

//! The load generator against fixture origins on loopback: closed and open loop, warm-up,
//! request bodies, response framings, and each kind of error. Runs are short (under a second
//! each) and bounded by their duration.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use coregate_loadtest::load::{self, ConnectionMode, Report, RunConfig, Target};
use coregate_loadtest::origin::{Mode, Origin, OriginConfig};

fn origin(mode: Mode, tweak: impl FnOnce(&mut OriginConfig)) -> Origin {
    let mut cfg = OriginConfig::new("o", mode);
    tweak(&mut cfg);
    Origin::start(cfg).unwrap()
}

fn config(url: &str, duration_ms: u64) -> RunConfig {
    let mut cfg = RunConfig::new(Target::parse(url).unwrap());
    cfg.connections = 4;
    cfg.duration = Duration::from_millis(duration_ms);
    cfg
}

fn run(cfg: &RunConfig) -> Report {
    load::run(cfg, |_| {}).unwrap()
}

#[test]
fn closed_loop_keeps_connections_alive() {
    let origin = origin(Mode::Fixed, |_| {});
    let mut cfg = config(&format!("http://{}/", origin.addr()), 500);
    cfg.threads = 2;
    let report = run(&cfg);
    assert!(report.responses > 100, "{}", report.text());
    assert_eq!(report.errors.total(), 0, "{}", report.text());
    assert_eq!(report.statuses, vec![(200, report.responses)]);
    assert_eq!(report.threads, 2);
    assert!(report.latency.p50_us > 0 && report.latency.max_us >= report.latency.p99_us);
    assert!(report.bytes_read >= report.responses * 13);
    assert_eq!(origin.connections_accepted(), 4);
    assert_eq!(report.connections_opened, 4);
    assert!(origin.requests() >= report.responses);

    let json = report.json();
    assert_eq!(json["mode"], "closed");
    assert_eq!(json["requests"], report.responses);
    assert_eq!(json["status"]["200"], report.responses);
    assert_eq!(json["errors"]["total"], 0);
    assert!(json["latency_us"]["p99_9"].as_u64().is_some());
}

#[test]
fn open_loop_holds_the_rate_and_reports_progress() {
    let origin = origin(Mode::Fixed, |_| {});
    let mut cfg = config(&format!("http://{}/", origin.addr()), 1000);
    cfg.rate = Some(400.0);
    let mut ticks = Vec::new();
    let report = load::run(&cfg, |progress| ticks.push(*progress)).unwrap();
    // 400 requests are due within the second; the last ones may still be in flight.
    assert!((380..=400).contains(&report.responses), "{}", report.text());
    assert_eq!(report.errors.total(), 0);
    assert_eq!(report.json()["mode"], "open");
    assert_eq!(ticks.len(), 1);
    assert!(!ticks[0].warmup);
    assert!(ticks[0].responses_per_second > 300.0);
}

#[test]
fn open_loop_charges_queueing_to_the_server() {
    // Each response takes 100 ms but one is due every 50 ms: request k waits for the k
    // before it, so measured from its due time it takes 100 + 50k ms, not 100 ms.
    let origin = origin(Mode::Slow, |cfg| cfg.delay_ms = 100);
    let mut cfg = config(&format!("http://{}/", origin.addr()), 1000);
    cfg.connections = 1;
    cfg.rate = Some(20.0);
    let report = run(&cfg);
    assert!((8..=10).contains(&report.responses), "{}", report.text());
    assert!(report.latency.p50_us >= 250_000, "{}", report.text());
    assert!(report.latency.max_us >= 450_000, "{}", report.text());
}

#[test]
fn warmup_is_not_counted() {
    let origin = origin(Mode::Fixed, |_| {});
    let mut cfg = config(&format!("http://{}/", origin.addr()), 300);
    cfg.warmup = Duration::from_millis(300);
    let report = run(&cfg);
    assert!(report.responses > 0);
    assert!(
        origin.requests() > report.responses + report.responses / 4,
        "origin saw {} requests, report counted {}",
        origin.requests(),
        report.responses
    );
}

#[test]
fn request_bodies_and_headers_reach_the_origin() {
    let origin = origin(Mode::Json, |_| {});
    let mut cfg = config(&format!("http://{}/upload", origin.addr()), 300);
    cfg.method = "POST".to_owned();
    cfg.body_bytes = 1000;
    cfg.headers.push(("X-Test".to_owned(), "1".to_owned()));
    let report = run(&cfg);
    assert!(report.responses > 0);
    assert_eq!(report.errors.total(), 0, "{}", report.text());
    // Requests cut off by the end of the run may have been received but not answered.
    assert!(origin.body_bytes_received() >= 1000 * report.responses);
    assert_eq!(origin.body_bytes_received() % 1000, 0);
}

#[test]
fn chunked_close_delimited_and_bodyless_responses_are_read() {
    let origin = origin(Mode::Json, |_| {});
    for (query, connections_per_response) in [
        ("?bytes=100000&chunked=1", false),
        ("?status=204", false),
        ("?status=304", false),
        ("?close=1", true),
    ] {
        let accepted_before = origin.connections_accepted();
        let cfg = config(&format!("http://{}/{query}", origin.addr()), 300);
        let report = run(&cfg);
        assert!(report.responses > 0, "{query}");
        assert_eq!(report.errors.total(), 0, "{query}: {}", report.text());
        let accepted = origin.connections_accepted() - accepted_before;
        if connections_per_response {
            assert!(accepted >= report.responses, "{query}");
        } else {
            assert_eq!(accepted, 4, "{query}");
        }
    }
}

#[test]
fn new_connection_per_request_over_plain_http() {
    for mode in [ConnectionMode::New, ConnectionMode::Resume] {
        let origin = origin(Mode::Fixed, |_| {});
        let mut cfg = config(&format!("http://{}/", origin.addr()), 300);
        cfg.conn = mode;
        let report = run(&cfg);
        assert!(report.responses > 0, "{}", report.text());
        assert_eq!(report.errors.total(), 0, "{}", report.text());
        // One connection per request; a request cut short by the end of the run may have
        // opened one too.
        let opened = report.connections_opened;
        assert!(
            (report.responses..=report.responses + 4).contains(&opened),
            "{}",
            report.text()
        );
        assert!(origin.connections_accepted() >= opened);
        assert_eq!((report.handshakes_full, report.handshakes_resumed), (0, 0));
        assert_eq!(report.json()["conn"], mode.name());
    }
}

#[test]
fn refused_connections_are_connect_errors() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let report = run(&config(&format!("http://127.0.0.1:{port}/"), 200));
    assert_eq!(report.responses, 0);
    assert!(report.errors.connect > 0);
    assert_eq!(report.errors.total(), report.errors.connect);
}

#[test]
fn slow_responses_are_timeouts() {
    let origin = origin(Mode::Slow, |cfg| cfg.delay_ms = 200);
    let mut cfg = config(&format!("http://{}/", origin.addr()), 500);
    cfg.timeout = Duration::from_millis(50);
    let report = run(&cfg);
    assert_eq!(report.responses, 0);
    assert!(report.errors.timeout >= 4, "{}", report.text());
}

#[test]
fn flaky_failures_are_statuses_and_read_errors() {
    let origin = origin(Mode::Flaky, |cfg| cfg.failure_rate = 0.5);
    let report = run(&config(&format!("http://{}/", origin.addr()), 300));
    let status = |code| {
        report
            .statuses
            .iter()
            .find(|(s, _)| *s == code)
            .map_or(0, |(_, n)| *n)
    };
    assert!(status(200) > 0 && status(500) > 0, "{}", report.text());
    assert!(report.errors.read > 0, "{}", report.text());
}

#[test]
fn garbage_responses_are_parse_errors() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // A server that answers every connection with bytes that are not HTTP, then closes.
    let server = thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let mut stream = stream.unwrap();
            let mut request = [0; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"SPDY/9 200 nope\r\n\r\n");
        }
    });
    let mut cfg = config(&format!("http://{addr}/"), 300);
    cfg.connections = 1;
    let report = run(&cfg);
    assert!(report.errors.parse >= 1, "{}", report.text());
    assert_eq!(report.responses, 0);
    // Unblock the server's accept loop if it is still waiting for connections.
    for _ in 0..4 {
        let _ = std::net::TcpStream::connect(addr);
    }
    server.join().unwrap();
}

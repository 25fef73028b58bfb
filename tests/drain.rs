//! Graceful drain: SIGTERM/SIGINT stop accepting, let in-flight requests finish (up to
//! `drain_timeout_ms`), close idle keep-alive connections and exit 0.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

fn config(fast: SocketAddr, slow: SocketAddr, drain_timeout_ms: u64) -> String {
    format!(
        "{}{}{}{}{}{ADMIN_TOML}",
        server_toml(2, &format!("drain_timeout_ms = {drain_timeout_ms}")),
        upstream_toml("fast", &[fast], ""),
        upstream_toml("slow", &[slow], ""),
        route_toml("fast", "path_prefix = \"/fast\"", "fast"),
        route_toml("slow", "path_prefix = \"/slow\"", "slow")
    )
}

fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
}

fn drains_on(signal: i32) {
    let fast = origin("fast", Mode::Json);
    let slow = origin_with("slow", Mode::Slow, |c| c.delay_ms = 1500);
    let (mut gw, admin) = start_gateway_with_admin(&config(fast.addr(), slow.addr(), 10_000));
    let mut idle = gw.connect();
    idle.send(b"GET /fast HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(idle.read_response().status, 200);
    let mut busy = gw.connect();
    busy.send(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(
        eventually(Duration::from_secs(5), || slow.requests() == 1),
        "the slow request did not reach the origin"
    );
    let signalled = Instant::now();
    gw.signal(signal);
    // Idle keep-alive connections close at once, new connections are refused.
    assert!(
        idle.closed_within(Duration::from_secs(2)),
        "idle connection kept open"
    );
    assert!(
        eventually(Duration::from_secs(2), || refused(gw.addr)),
        "still accepting after the signal"
    );
    assert_eq!(
        admin_get(admin, "/ready").status,
        503,
        "ready while draining"
    );
    // The request in flight finishes.
    let resp = busy.read_response();
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    assert_eq!(resp.header("x-origin"), Some("slow"));
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "waited {:?} for a 1.5 s request",
        signalled.elapsed()
    );
    let status = gw.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "stderr:\n{}",
        gw.stderr()
    );
    assert!(gw.stderr().contains("draining"), "{}", gw.stderr());
}

#[test]
fn sigterm_lets_a_slow_request_finish_and_exits_0() {
    drains_on(libc::SIGTERM);
}

#[test]
fn sigint_drains_too() {
    drains_on(libc::SIGINT);
}

#[test]
fn the_drain_timeout_cuts_off_what_is_left_and_still_exits_0() {
    let fast = origin("fast", Mode::Json);
    let slow = origin_with("slow", Mode::Slow, |c| c.delay_ms = 20_000);
    let (mut gw, _admin) = start_gateway_with_admin(&config(fast.addr(), slow.addr(), 300));
    let mut busy = gw.connect();
    busy.send(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(eventually(Duration::from_secs(5), || slow.requests() == 1));
    gw.signal(libc::SIGTERM);
    let status = gw.wait_exit(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "stderr:\n{}",
        gw.stderr()
    );
    assert!(
        gw.stderr().contains("cut off by drain_timeout_ms"),
        "{}",
        gw.stderr()
    );
    assert!(busy.closed_within(Duration::from_secs(2)));
}

#[test]
fn a_second_signal_ends_the_drain_at_once() {
    let fast = origin("fast", Mode::Json);
    let slow = origin_with("slow", Mode::Slow, |c| c.delay_ms = 20_000);
    let (mut gw, _admin) = start_gateway_with_admin(&config(fast.addr(), slow.addr(), 30_000));
    let mut busy = gw.connect();
    busy.send(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(eventually(Duration::from_secs(5), || slow.requests() == 1));
    gw.signal(libc::SIGTERM);
    assert!(gw.stderr_contains_within("draining", Duration::from_secs(5)));
    gw.signal(libc::SIGINT);
    let status = gw.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "stderr:\n{}",
        gw.stderr()
    );
    assert!(
        gw.stderr().contains("second stop signal"),
        "{}",
        gw.stderr()
    );
}

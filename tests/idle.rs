//! Keep-alive connections between requests. After about 100 ms of quiet a connection parks
//! (its serving task ends; a small task waits for readiness) — so these tests pause past that
//! window: a parked connection is served again on the same socket, closed once quiet past
//! `client_idle_timeout_ms`, and closed at once when the gateway drains. And what one costs
//! while it waits: at most 2 KiB of RSS (issue 3).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// Well past the park window (100–150 ms by the worker's coarse timer).
const PARKED: Duration = Duration::from_millis(400);

fn config(origin: SocketAddr, server_extra: &str) -> String {
    format!(
        "{}{}{}{ADMIN_TOML}",
        server_toml(1, server_extra),
        upstream_toml("o", &[origin], ""),
        route_toml("all", "path_prefix = \"/\"", "o")
    )
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

#[test]
fn a_parked_connection_is_served_again_on_the_same_socket() {
    let o = origin("o", Mode::Json);
    let (gw, _admin) = start_gateway_with_admin(&config(o.addr(), ""));
    let mut c = gw.connect();
    for i in 0..3 {
        c.send(get(&format!("/round/{i}")).as_bytes());
        let resp = c.read_response();
        assert_eq!(resp.status, 200, "round {i}");
        assert!(
            String::from_utf8_lossy(&resp.body).contains(&format!("/round/{i}")),
            "round {i}: {}",
            show(&resp.body)
        );
        std::thread::sleep(PARKED);
    }
    // Two requests in one write after a park: both answered, in order.
    c.send(format!("{}{}", get("/a"), get("/b")).as_bytes());
    for path in ["/a", "/b"] {
        let resp = c.read_response();
        assert!(String::from_utf8_lossy(&resp.body).contains(path), "{path}");
    }
    assert_eq!(
        o.connections_accepted(),
        1,
        "all on one upstream connection"
    );
}

#[test]
fn a_connection_quiet_past_client_idle_timeout_is_closed_and_a_busy_one_is_not() {
    let o = origin("o", Mode::Json);
    let (gw, _admin) = start_gateway_with_admin(&config(o.addr(), "client_idle_timeout_ms = 600"));
    let mut quiet = gw.connect();
    quiet.send(get("/once").as_bytes());
    assert_eq!(quiet.read_response().status, 200);
    let mut busy = gw.connect();
    // 1.5 s of a request every 200 ms: never quiet for 600 ms, parked between requests.
    for i in 0..8 {
        busy.send(get(&format!("/busy/{i}")).as_bytes());
        assert_eq!(busy.read_response().status, 200, "busy request {i}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        quiet.closed_within(Duration::from_secs(10)),
        "the quiet connection was not closed"
    );
}

#[test]
fn parked_connections_close_when_the_gateway_drains() {
    let o = origin("o", Mode::Json);
    let (mut gw, _admin) = start_gateway_with_admin(&config(o.addr(), ""));
    let mut clients: Vec<Client> = (0..20).map(|_| gw.connect()).collect();
    for c in &mut clients {
        c.send(get("/x").as_bytes());
        assert_eq!(c.read_response().status, 200);
    }
    std::thread::sleep(PARKED);
    gw.signal(libc::SIGTERM);
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(
            c.closed_within(Duration::from_secs(5)),
            "parked connection {i} kept open"
        );
    }
    let status = gw.wait_exit(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "exit status");
}

/// Issue 3's memory target: an idle keep-alive client connection costs at most 2 KiB of
/// resident memory. Measured as `loadtest compare` does (its `idle::measure`): 2 000
/// connections, one request each, then quiet; the gateway's RSS before and after, once
/// they have parked. A read pinning a buffer per idle connection would not fit.
#[test]
fn an_idle_keep_alive_connection_costs_at_most_2_kib() {
    use coregate_loadtest::compare::{idle, process};
    const CONNECTIONS: usize = 2_000;
    // The connections are this process's sockets too; the gateway inherits the limit.
    let files = process::raise_open_files_limit();
    if files < (CONNECTIONS + 500) as u64 {
        eprintln!("skipped: {files} open files allowed, {CONNECTIONS} connections needed");
        return;
    }
    let o = origin("o", Mode::Fixed);
    let (gw, _admin) = start_gateway_with_admin(&config(o.addr(), ""));
    let memory = idle::measure(gw.pid(), gw.addr, CONNECTIONS).unwrap();
    assert_eq!(memory.connections, CONNECTIONS);
    assert!(
        memory.bytes_per_connection() <= 2048.0,
        "{:.0} B per idle connection ({memory:?})",
        memory.bytes_per_connection()
    );
}

//! Connection-level defects of the security review (issue 14, area `conn`): a pooled upstream
//! connection poisoned by a late response (defect 3), slow clients holding connections
//! (defect 7), and access-log lines of rejected heads that named the previous request
//! (defect 11). Upstreams with a misbehaviour of their own are small `TcpListener` threads
//! here; each reports what it saw over a channel, so the tests wait for events, not sleeps.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;

/// Generous: the suite runs on a loaded two-core machine.
const EVENT_WAIT: Duration = Duration::from_secs(15);

fn config(upstream: SocketAddr, server_extra: &str, extra: &str) -> String {
    format!(
        "{}{}{}{extra}",
        server_toml(1, server_extra),
        upstream_toml("o", &[upstream], ""),
        route_toml("all", "path_prefix = \"/\"", "o"),
    )
}

/// Reads one request head (up to its blank line) from `stream`; None at end of stream.
fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

// ---------------------------------------------------------------------------------------------
// Defect 3: a late body after a bodiless response poisons a pooled upstream connection.

/// An upstream that answers `HEAD` with `Content-Length: 44` and no body (as RFC 9110 §9.3.2
/// says) and then, `delay` later (in the same write when zero), writes a whole extra response
/// with a poison body on the same connection; a GET gets `clean`. Tells `events` "poisoned"
/// once it has written the stray response, and "closed" when the gateway closes a connection.
fn late_body_upstream(delay: Duration, events: mpsc::Sender<&'static str>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let events = events.clone();
            std::thread::spawn(move || {
                while let Some(head) = read_head(&mut stream) {
                    if head.starts_with(b"HEAD ") {
                        let mut answer = b"HTTP/1.1 200 OK\r\nContent-Length: 44\r\n\r\n".to_vec();
                        if !delay.is_zero() {
                            let _ = stream.write_all(&answer);
                            answer.clear();
                            std::thread::sleep(delay);
                        }
                        answer.extend_from_slice(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Poison: 1\r\n\r\npoison",
                        );
                        let _ = stream.write_all(&answer);
                        let _ = events.send("poisoned");
                    } else {
                        let _ =
                            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nclean");
                    }
                }
                let _ = events.send("closed");
            });
        }
    });
    addr
}

/// The stray response arrives while the connection sits in the pool: only a check when it is
/// taken finds it.
#[test]
fn a_late_response_after_head_does_not_reach_the_next_client() {
    stray_response_after_head_is_not_served(Duration::from_millis(100));
}

/// The stray response arrives with the HEAD answer, in one read: the relay sees the bytes
/// left over after the response and closes the connection at once, without pooling it.
#[test]
fn a_response_after_head_in_the_same_read_closes_the_upstream_connection() {
    let events = stray_response_after_head_is_not_served(Duration::ZERO);
    assert_eq!(events.first().copied(), Some("closed"), "{events:?}");
}

/// Sends HEAD, then GETs on another connection and on the same one; returns the upstream's
/// events after "poisoned" that came before the GETs.
fn stray_response_after_head_is_not_served(delay: Duration) -> Vec<&'static str> {
    let (events_tx, events) = mpsc::channel();
    let upstream = late_body_upstream(delay, events_tx);
    let gw = start_gateway(&config(upstream, "", ""));

    let mut first = gw.connect();
    first.send(b"HEAD /upload HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = first.read_response_to(true);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("44"));
    assert_eq!(events.recv_timeout(EVENT_WAIT), Ok("poisoned"));
    // What the gateway does next with the connection it got the stray bytes on.
    let before_next: Vec<_> = events
        .recv_timeout(Duration::from_secs(2))
        .into_iter()
        .collect();

    // Another client, then the same one: neither may be answered with the stray response
    // sitting on the pooled connection.
    for client in [&mut gw.connect(), &mut first] {
        client.send(b"GET /next HTTP/1.1\r\nHost: t\r\n\r\n");
        let resp = client.read_response();
        assert_eq!(resp.header("x-poison"), None, "{}", show(&resp.body));
        assert_eq!(resp.body, b"clean");
    }
    before_next
}

/// An upstream that ends its HEAD answer and then closes the connection (an upstream that
/// timed it out while pooled): the next request must go on a fresh connection, not fail.
#[test]
fn a_pooled_connection_the_upstream_closed_is_not_used() {
    let (closed_tx, closed) = mpsc::channel();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let closed = closed_tx.clone();
            std::thread::spawn(move || {
                if read_head(&mut stream).is_some() {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
                    // A POST on the reused connection would not be replayed: shut it.
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    let _ = closed.send(());
                }
            });
        }
    });
    let gw = start_gateway(&config(upstream, "", ""));
    let mut c = gw.connect();
    c.send(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.read_response().body, b"first");
    closed
        .recv_timeout(EVENT_WAIT)
        .expect("the upstream closed");
    // The FIN reaches the gateway's socket at once over loopback; a POST is not replayable,
    // so a reused dead connection would answer 502.
    c.send(b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{}", show(&resp.body));
    assert_eq!(resp.body, b"first");
}

// ---------------------------------------------------------------------------------------------
// Defect 7: slow clients.

/// An upstream that takes a request head and reads its body without answering, reporting
/// the body bytes it got once the gateway closes the connection.
fn silent_upstream(closed: mpsc::Sender<usize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let closed = closed.clone();
            std::thread::spawn(move || {
                if read_head(&mut stream).is_none() {
                    return;
                }
                let mut body = 0;
                let mut chunk = [0u8; 1024];
                loop {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => body += n,
                    }
                }
                let _ = closed.send(body);
            });
        }
    });
    addr
}

#[test]
fn a_dribbled_body_gets_408_at_body_timeout_ms_and_frees_the_upstream() {
    let (closed_tx, upstream_closed) = mpsc::channel();
    let upstream = silent_upstream(closed_tx);
    let gw = start_gateway(&config(
        upstream,
        "body_read_timeout_ms = 1000\nbody_timeout_ms = 2000",
        "",
    ));
    let mut c = gw.connect();
    c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n");
    // One byte every 500 ms: each read is well inside the 1 s per-read limit, and the 100
    // bytes would take 50 s.
    let mut writer = c.stream.try_clone().unwrap();
    let dribble = std::thread::spawn(move || {
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(500));
            if writer.write_all(b"x").is_err() {
                return;
            }
        }
    });
    let resp = c.read_response();
    assert_eq!(resp.status, 408, "{}", show(&resp.body));
    let body = upstream_closed
        .recv_timeout(EVENT_WAIT)
        .expect("the upstream connection was closed, not held or pooled");
    assert!(body < 100, "the body was not complete: {body} bytes");
    assert!(c.closed_within(CLOSE_WAIT), "the client connection closes");
    drop(c);
    dribble.join().unwrap();
}

#[test]
fn a_new_connection_that_sends_nothing_is_closed_after_header_read_timeout_ms() {
    let o = origin("o", Mode::Json);
    let gw = start_gateway(&config(
        o.addr(),
        "header_read_timeout_ms = 500\nclient_idle_timeout_ms = 60000",
        "",
    ));
    let mut silent = gw.connect();
    assert!(
        silent.closed_within(Duration::from_secs(10)),
        "a silent new connection was kept (for client_idle_timeout_ms?)"
    );

    // A keep-alive connection between requests still waits client_idle_timeout_ms.
    let mut busy = gw.connect();
    busy.send(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(busy.read_response().status, 200);
    assert!(
        !busy.closed_within(Duration::from_millis(1500)),
        "an idle keep-alive connection was closed after header_read_timeout_ms"
    );
    busy.send(b"GET /two HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(busy.read_response().status, 200);
}

// ---------------------------------------------------------------------------------------------
// Defect 11: the access-log line of a rejected head.

#[test]
fn a_rejected_head_is_logged_as_received_not_as_the_previous_request() {
    let log = std::env::temp_dir().join(format!(
        "coregate-test-{}-conn-rejected-access.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&log);
    let o = origin("o", Mode::Json);
    let gw = start_gateway(&config(
        o.addr(),
        "header_read_timeout_ms = 500\nheader_count_max = 10",
        &format!("\n[access_log]\npath = \"{}\"\n", log.display()),
    ));
    let mut too_many = b"GET /too-large HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..12 {
        too_many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    too_many.extend_from_slice(b"\r\n");
    // Each connection: a good request, then a head that is refused.
    let bad_heads: [&[u8]; 4] = [
        // The request line parses; a header name does not (400).
        b"GET /rejected-target HTTP/1.1\r\nHost: t\r\nBad Name: x\r\n\r\n",
        // No request line at all (400).
        b"\x01\x02 nonsense\r\n\r\n",
        // Too many header fields (431).
        &too_many[..],
        // A head that never ends (408).
        b"PUT /slow-target HTTP/1.1\r\nHost: t\r\n",
    ];
    for (i, bad) in bad_heads.iter().enumerate() {
        let mut c = gw.connect();
        c.send(format!("GET /good-{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert_eq!(c.read_response().status, 200);
        c.send(bad);
        let (answer, _) = read_until_close(&mut c.stream, CLOSE_WAIT);
        let expected = [b"400", b"400", b"431", b"408"][i];
        assert!(
            answer.starts_with(b"HTTP/1.1 ") && answer[9..].starts_with(expected),
            "head {i}: {}",
            show(&answer)
        );
    }
    let lines = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let deadline = Instant::now() + EVENT_WAIT;
    while lines().len() < 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines = lines();
    let _ = std::fs::remove_file(&log);
    let logged = |status: u64| -> Vec<(String, String)> {
        lines
            .iter()
            .filter(|l| l["status"] == status)
            .map(|l| {
                let field = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
                (field("method"), field("path"))
            })
            .collect()
    };
    for i in 0..4 {
        let good = format!("/good-{i}");
        assert_eq!(
            logged(200).iter().filter(|(_, p)| *p == good).count(),
            1,
            "{lines:?}"
        );
    }
    let rejected = logged(400);
    let pair = |m: &str, p: &str| (m.to_owned(), p.to_owned());
    assert!(
        rejected.contains(&pair("GET", "/rejected-target")),
        "{lines:?}"
    );
    assert!(rejected.contains(&pair("-", "-")), "{lines:?}");
    assert_eq!(rejected.len(), 2, "{lines:?}");
    assert_eq!(logged(431), vec![pair("GET", "/too-large")], "{lines:?}");
    assert_eq!(logged(408), vec![pair("PUT", "/slow-target")], "{lines:?}");
}

//! The upstream side: failures mapped to 502/504 JSON, a client that vanishes mid-body,
//! hop-by-hop headers and X-Forwarded-*, and the balancers.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use common::*;

fn assert_error_json(resp: &Response, status: u16) {
    assert_eq!(resp.status, status, "body {:?}", resp.body_text());
    let v = resp.json();
    assert_eq!(v["status"], status, "error body {v}");
    assert!(
        v["error"].as_str().is_some_and(|e| !e.is_empty()),
        "error body needs an error text: {v}"
    );
    assert!(
        resp.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "error Content-Type: {:?}",
        resp.header("content-type")
    );
}

#[test]
fn origin_down_is_502_json() {
    let nowhere = free_addr();
    let config = format!(
        "{}{}{}",
        server_toml(1, ""),
        upstream_toml("down", &[nowhere], ""),
        route_toml("all", "path_prefix = \"/\"", "down")
    );
    let mut gw = start_gateway(&config);
    let mut c = gw.connect();
    for _ in 0..3 {
        c.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_error_json(&c.read_response(), 502);
    }
    // With a body, too.
    let resp = gw.request("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
    assert_error_json(&resp, 502);
    gw.assert_running();
}

#[test]
fn slow_origin_is_504_json() {
    let slow = origin_with("slow", Mode::Slow, |c| c.delay_ms = 3000);
    let config = format!(
        "{}{}{}",
        server_toml(1, ""),
        upstream_toml("slow", &[slow.addr()], "response_header_timeout_ms = 300"),
        route_toml("all", "path_prefix = \"/\"", "slow")
    );
    let mut gw = start_gateway(&config);
    let resp = gw.get("/late");
    assert_error_json(&resp, 504);
    assert_eq!(slow.requests(), 1, "the request did reach the origin");
    gw.assert_running();
}

/// A listener whose accept queue is full, so that further connection attempts hang in
/// SYN-SENT: an endpoint that never answers a connect. Keep the returned values alive.
fn unanswering_endpoint() -> (std::net::TcpListener, Vec<std::net::TcpStream>) {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen(2) on a descriptor `listener` owns and keeps open for this call; it
    // touches no memory of ours. A second listen() on Linux only changes the backlog.
    let rc = unsafe { libc::listen(listener.as_raw_fd(), 0) };
    assert_eq!(rc, 0, "listen");
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    (listener, fillers)
}

#[test]
fn connect_timeout_is_504_json() {
    let (listener, _fillers) = unanswering_endpoint();
    let addr = listener.local_addr().unwrap();
    // The queue is full when a connect from here hangs too.
    if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok() {
        eprintln!("skipped: this kernel accepted connections beyond the listen backlog");
        return;
    }
    let config = format!(
        "{}{}{}",
        server_toml(1, ""),
        upstream_toml("hang", &[addr], "")
            .replace("connect_timeout_ms = 2000", "connect_timeout_ms = 300"),
        route_toml("all", "path_prefix = \"/\"", "hang")
    );
    let mut gw = start_gateway(&config);
    assert_error_json(&gw.get("/x"), 504);
    gw.assert_running();
}

#[test]
fn client_gone_mid_body_does_not_hurt_the_gateway() {
    let o = origin("o", Mode::Json);
    let config = format!(
        "{}{}{}",
        server_toml(1, ""),
        upstream_toml("o", &[o.addr()], ""),
        route_toml("all", "path_prefix = \"/\"", "o")
    );
    let mut gw = start_gateway(&config);
    for round in 0..3 {
        let mut stream = connect(gw.addr);
        stream
            .write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 8388608\r\n\r\n")
            .unwrap();
        let half = pattern(4 * MIB);
        // Write half the body, then vanish (with or without unread data on either side).
        let _ = stream.write_all(&half);
        std::thread::sleep(Duration::from_millis(50));
        drop(stream);
        std::thread::sleep(Duration::from_millis(100));
        gw.assert_running();
        // The gateway keeps serving, on new connections and on the same worker.
        let resp = gw.get(&format!("/after/{round}"));
        assert_eq!(resp.status, 200, "round {round}: {:?}", resp.body_text());
        assert_eq!(Seen::from_response(&resp).target, format!("/after/{round}"));
    }
    // A chunked upload abandoned halfway, too.
    let mut stream = connect(gw.addr);
    let body = chunked_encode(&pattern(2 * MIB), &[65536]);
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let _ = stream.write_all(&body[..body.len() / 2]);
    drop(stream);
    std::thread::sleep(Duration::from_millis(100));
    gw.assert_running();
    assert_eq!(gw.get("/final").status, 200);
}

#[test]
fn hop_by_hop_removed_and_forwarded_headers_set() {
    let o = origin("o", Mode::Json);
    let config = format!(
        "{}{}{}",
        server_toml(1, ""),
        upstream_toml("o", &[o.addr()], ""),
        route_toml("all", "path_prefix = \"/\"", "o")
    );
    let gw = start_gateway(&config);
    let raw = concat!(
        "GET /hop HTTP/1.1\r\n",
        "Host: api.example.com:8080\r\n",
        "Connection: keep-alive, X-Custom-Hop\r\n",
        "X-Custom-Hop: secret\r\n",
        "Keep-Alive: timeout=5\r\n",
        "TE: trailers\r\n",
        "Trailer: X-Checksum\r\n",
        "Upgrade: websocket\r\n",
        "Proxy-Authorization: Basic Zm9vOmJhcg==\r\n",
        "Proxy-Connection: keep-alive\r\n",
        "X-Keep: yes\r\n",
        "X-Forwarded-For: 203.0.113.9\r\n",
        "\r\n"
    );
    let resp = gw.request(raw);
    assert_eq!(resp.status, 200, "{:?}", resp.body_text());
    let seen = Seen::from_response(&resp);
    for name in [
        "x-custom-hop",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert!(
            seen.all(name).is_empty(),
            "hop-by-hop {name} forwarded: {:?}",
            seen.headers
        );
    }
    for value in seen.all("connection") {
        assert!(
            !value.to_ascii_lowercase().contains("x-custom-hop"),
            "client's Connection forwarded: {value:?}"
        );
    }
    assert_eq!(seen.all("x-keep"), ["yes"], "end-to-end header kept");
    // No trusted proxies (the default): the client's X-Forwarded-For is replaced, not
    // appended to (issue 14, defect 6).
    assert_eq!(
        seen.all("x-forwarded-for"),
        ["127.0.0.1"],
        "X-Forwarded-For replaced: {:?}",
        seen.headers
    );
    assert_eq!(seen.all("x-forwarded-proto"), ["http"]);
    let xfh = seen.all("x-forwarded-host");
    assert_eq!(xfh.len(), 1, "one X-Forwarded-Host: {:?}", seen.headers);
    assert!(
        xfh[0] == "api.example.com:8080" || xfh[0] == "api.example.com",
        "X-Forwarded-Host {:?}",
        xfh[0]
    );
    // Without an incoming X-Forwarded-For, the client address alone; client-sent
    // X-Forwarded-Proto/Host are replaced, not appended to.
    let resp = gw.request(concat!(
        "GET /hop2 HTTP/1.1\r\nHost: b.test\r\n",
        "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n\r\n"
    ));
    let seen = Seen::from_response(&resp);
    assert_eq!(seen.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(
        seen.all("x-forwarded-proto"),
        ["http"],
        "{:?}",
        seen.headers
    );
    assert_eq!(
        seen.all("x-forwarded-host"),
        ["b.test"],
        "{:?}",
        seen.headers
    );
}

/// Two Json origins behind one balanced upstream; returns the gateway and the origins.
fn balanced(workers: usize, upstream: &str) -> (Gateway, Vec<Origin>) {
    let origins = vec![origin("one", Mode::Json), origin("two", Mode::Json)];
    let mut config = server_toml(workers, "");
    config.push_str(
        &upstream
            .replace("{one}", &origins[0].addr().to_string())
            .replace("{two}", &origins[1].addr().to_string()),
    );
    config.push_str(&route_toml("all", "path_prefix = \"/\"", "pool"));
    (start_gateway(&config), origins)
}

#[test]
fn round_robin_follows_weights() {
    let (gw, origins) = balanced(
        1,
        "[upstreams.pool]\nendpoints = [{ address = \"{one}\", weight = 1 }, { address = \"{two}\", weight = 3 }]\nbalancer = \"round_robin\"\n\n",
    );
    let mut c = gw.connect();
    let mut responses = Vec::new();
    for i in 0..40 {
        c.send(format!("GET /rr/{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        let resp = c.read_response();
        assert_eq!(resp.status, 200);
        responses.push(resp);
    }
    let counts = count_origins(&responses);
    let want: BTreeMap<String, usize> = [("one".to_owned(), 10), ("two".to_owned(), 30)].into();
    assert_eq!(counts, want, "40 requests at weights 1:3 on one worker");
    // Smooth: never more than 3 in a row to "two", and "one" never twice in a row.
    let names: Vec<&str> = responses
        .iter()
        .map(|r| r.header("x-origin").unwrap_or(""))
        .collect();
    assert!(
        names.windows(2).all(|w| w != ["one", "one"]),
        "not interleaved: {names:?}"
    );
    assert_eq!(origins[0].requests() + origins[1].requests(), 40);
    // Each origin kept one pooled connection.
    assert_eq!(origins[0].connections_accepted(), 1);
    assert_eq!(origins[1].connections_accepted(), 1);
}

#[test]
fn round_robin_equal_weights_spread_evenly() {
    let (gw, _origins) = balanced(
        1,
        "[upstreams.pool]\nendpoints = [{ address = \"{one}\" }, { address = \"{two}\" }]\n\n",
    );
    // Separate client connections: the balancer state is per worker, not per connection.
    let responses: Vec<Response> = (0..20).map(|i| gw.get(&format!("/e/{i}"))).collect();
    let counts = count_origins(&responses);
    let want: BTreeMap<String, usize> = [("one".to_owned(), 10), ("two".to_owned(), 10)].into();
    assert_eq!(counts, want);
}

#[test]
fn consistent_hash_by_header_is_sticky() {
    let origins: Vec<Origin> = ["h1", "h2", "h3"]
        .iter()
        .map(|n| origin(n, Mode::Json))
        .collect();
    let addrs: Vec<_> = origins.iter().map(Origin::addr).collect();
    let config = format!(
        "{}{}{}",
        server_toml(2, ""),
        upstream_toml(
            "pool",
            &addrs,
            "balancer = \"consistent_hash\"\nhash_key = \"header:x-user\""
        ),
        route_toml("all", "path_prefix = \"/\"", "pool")
    );
    let gw = start_gateway(&config);
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    for round in 0..4 {
        for user in 0..12 {
            let key = format!("user-{user}");
            // A new connection each time: it may land on either worker; both must agree.
            let resp = gw.request(&format!(
                "GET /ch/{round} HTTP/1.1\r\nHost: a\r\nX-User: {key}\r\n\r\n"
            ));
            assert_eq!(resp.status, 200);
            let name = resp.header("x-origin").unwrap_or("").to_owned();
            match chosen.get(&key) {
                None => {
                    chosen.insert(key, name);
                }
                Some(first) => assert_eq!(
                    first, &name,
                    "{key} moved from {first} to {name} in round {round}"
                ),
            }
        }
    }
    let used: BTreeSet<&String> = chosen.values().collect();
    assert!(
        used.len() >= 2,
        "12 keys all hashed to one of 3 endpoints: {chosen:?}"
    );
}

#[test]
fn origin_closing_without_answer_is_502() {
    let flaky = origin_with("flaky", Mode::Flaky, |c| c.failure_rate = 1.0);
    let config = format!(
        "{}{}{}",
        server_toml(1, ""),
        upstream_toml("flaky", &[flaky.addr()], ""),
        route_toml("all", "path_prefix = \"/\"", "flaky")
    );
    let mut gw = start_gateway(&config);
    let mut statuses = Vec::new();
    for i in 0..12 {
        // POST is not idempotent, so the gateway may not retry it elsewhere.
        let resp = gw.request(&format!(
            "POST /f/{i} HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
        ));
        match resp.status {
            // The origin's own failure answer, relayed.
            500 => assert_eq!(resp.header("x-origin"), Some("flaky"), "{resp:?}"),
            // The origin closed without an answer.
            502 => assert_error_json(&resp, 502),
            other => panic!("request {i}: unexpected {other}: {:?}", resp.body_text()),
        }
        statuses.push(resp.status);
    }
    assert!(
        statuses.contains(&502),
        "the origin's fixed-seed draws closed no connection? {statuses:?}"
    );
    assert!(statuses.contains(&500), "{statuses:?}");
    gw.assert_running();
    assert_eq!(flaky.requests(), 12, "each POST was sent exactly once");
}

/// An upstream that answers the requests of one connection with `answers`, in turn, each
/// once the request's head has arrived.
fn scripted_upstream(answers: Vec<&'static [u8]>) -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        for answer in answers {
            while find(&buf, b"\r\n\r\n").is_none() {
                let mut chunk = [0; 4096];
                let n = std::io::Read::read(&mut stream, &mut chunk).unwrap();
                assert!(n > 0, "the gateway closed the upstream connection");
                buf.extend_from_slice(&chunk[..n]);
            }
            let end = find(&buf, b"\r\n\r\n").unwrap() + 4;
            buf.drain(..end);
            stream.write_all(answer).unwrap();
        }
        // Held open until the test ends, so that nothing here closes the connection.
        std::thread::sleep(Duration::from_secs(30));
    });
    addr
}

#[test]
fn a_plain_response_head_goes_out_as_it_came_and_any_other_is_rewritten() {
    let plain: &[u8] = b"HTTP/1.1 200 OK\r\nX-B: 1\r\nContent-Length: 2\r\nX-A: 2\r\n\r\nhi";
    let upstream = scripted_upstream(vec![
        plain,
        b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 02\r\nX-A: 2\r\n\r\nhi",
        b"HTTP/1.0 201 Created\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nhi",
        plain,
    ]);
    let config = format!(
        "{}{}{}",
        server_toml(1, ""),
        upstream_toml("o", &[upstream], ""),
        route_toml("all", "path_prefix = \"/\"", "o")
    );
    let gw = start_gateway(&config);
    let mut client = connect(gw.addr);
    let mut exchange = |expected: &[u8]| {
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            .unwrap();
        let mut got = vec![0; expected.len()];
        std::io::Read::read_exact(&mut client, &mut got).unwrap();
        assert_eq!(show(&got), show(expected));
    };
    // Byte for byte: field order, Content-Length where the upstream put it.
    exchange(plain);
    // A hop-by-hop field dropped and the Content-Length written plainly.
    exchange(b"HTTP/1.1 200 OK\r\nX-A: 2\r\nContent-Length: 2\r\n\r\nhi");
    // An HTTP/1.0 status line becomes HTTP/1.1, its Connection field goes.
    exchange(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhi");
    // And the next plain one goes as it came again, on the same two connections.
    exchange(plain);
}

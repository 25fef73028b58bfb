//! The HTTP/1.1 server side: keep-alive on both sides, pipelining, HTTP/1.0,
//! `Connection: close`, `Expect: 100-continue`, and responses without a body (HEAD, 204, 304)
//! in the middle of a pipeline.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// A gateway with `workers` workers and one route `/` to one origin.
fn single(workers: usize, mode: Mode) -> (Gateway, Origin) {
    let o = origin("o", mode);
    let config = format!(
        "{}{}{}",
        server_toml(workers, ""),
        upstream_toml("o", &[o.addr()], ""),
        route_toml("all", "path_prefix = \"/\"", "o")
    );
    (start_gateway(&config), o)
}

#[test]
fn keep_alive_reuses_both_connections() {
    let (gw, o) = single(2, Mode::Json);
    let mut c = gw.connect();
    for i in 0..20 {
        c.send(format!("GET /ka/{i} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        let resp = c.read_response();
        assert_eq!(resp.status, 200, "request {i}: {:?}", resp.body_text());
        assert!(
            !resp.says_close(),
            "request {i}: the gateway asked to close"
        );
        assert_eq!(Seen::from_response(&resp).target, format!("/ka/{i}"));
    }
    assert_eq!(o.requests(), 20);
    // One client connection is served by one worker, which keeps one upstream connection.
    assert_eq!(
        o.connections_accepted(),
        1,
        "the gateway opened a new upstream connection per request"
    );
    // A second client connection may land on the other worker: at most one more.
    let mut c2 = gw.connect();
    for i in 0..5 {
        c2.send(format!("GET /second/{i} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        assert_eq!(c2.read_response().status, 200);
    }
    assert!(
        o.connections_accepted() <= 2,
        "{}",
        o.connections_accepted()
    );
}

#[test]
fn keep_alive_with_curl() {
    if !curl_available() {
        return;
    }
    let (gw, o) = single(2, Mode::Json);
    let urls: Vec<String> = (0..5)
        .map(|i| format!("http://{}/curl/{i}", gw.addr))
        .collect();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "30"])
        .args(["-w", "%{http_code} %{num_connects}\\n"]);
    for url in &urls {
        cmd.args(["-o", "/dev/null", url]);
    }
    let out = cmd.output().expect("run curl (CI installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        5,
        "curl output {text:?}, stderr {:?}",
        out.stderr
    );
    assert_eq!(lines[0], "200 1", "first request opens the connection");
    for line in &lines[1..] {
        assert_eq!(*line, "200 0", "curl had to reconnect: {text:?}");
    }
    assert_eq!(o.requests(), 5);
    assert_eq!(
        o.connections_accepted(),
        1,
        "upstream connection not reused"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (gw, o) = single(1, Mode::Json);
    let mut c = gw.connect();
    let mut batch = Vec::new();
    batch.extend_from_slice(b"GET /p/0 HTTP/1.1\r\nHost: test\r\n\r\n");
    batch.extend_from_slice(b"POST /p/1 HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello");
    batch.extend_from_slice(b"GET /p/2?x=1 HTTP/1.1\r\nHost: test\r\n\r\n");
    batch.extend_from_slice(
        b"PUT /p/3 HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    batch.extend_from_slice(b"GET /p/4 HTTP/1.1\r\nHost: test\r\n\r\n");
    batch.extend_from_slice(b"DELETE /p/5 HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n");
    c.send(&batch);
    let want = [
        ("GET", "/p/0", 0),
        ("POST", "/p/1", 5),
        ("GET", "/p/2?x=1", 0),
        ("PUT", "/p/3", 5),
        ("GET", "/p/4", 0),
        ("DELETE", "/p/5", 0),
    ];
    for (i, (method, target, body)) in want.iter().enumerate() {
        let resp = c.read_response();
        assert_eq!(resp.status, 200, "answer {i}: {:?}", resp.body_text());
        let seen = Seen::from_response(&resp);
        assert_eq!(
            (seen.method.as_str(), seen.target.as_str(), seen.body_bytes),
            (*method, *target, *body as u64),
            "answer {i} is not the answer to request {i}"
        );
    }
    assert_eq!(o.requests(), 6);
    assert!(c.pending().is_empty(), "extra bytes after the last answer");
}

#[test]
fn http10_is_answered_and_closed() {
    let (gw, o) = single(1, Mode::Json);
    // HTTP/1.0 without Host is valid.
    let (bytes, closed) = send_raw_closed(gw.addr, b"GET /old HTTP/1.0\r\n\r\n");
    assert!(closed, "the gateway kept an HTTP/1.0 connection open");
    let resp = first_response(&bytes);
    assert_eq!(resp.status, 200, "{:?}", show(&bytes));
    assert_eq!(Seen::from_response(&resp).target, "/old");
    // A chunked upstream response reaches an HTTP/1.0 client without chunked framing.
    let (bytes, closed) = send_raw_closed(
        gw.addr,
        b"GET /old?bytes=3000&chunked=1 HTTP/1.0\r\nHost: test\r\n\r\n",
    );
    assert!(closed);
    let resp = first_response(&bytes);
    assert_eq!(resp.status, 200);
    assert!(
        !resp.chunked,
        "chunked framing sent to an HTTP/1.0 client: {:?}",
        show(&bytes)
    );
    assert_eq!(resp.body.len(), 3000, "body length");
    let all = parse_all(&bytes, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), 1, "one answer only");
    assert_eq!(o.requests(), 2);
}

#[test]
fn connection_close_is_honoured() {
    let (gw, o) = single(1, Mode::Json);
    let mut c = gw.connect();
    c.send(b"GET /bye HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status, 200);
    assert!(
        c.closed_within(Duration::from_secs(10)),
        "connection still open after `Connection: close`"
    );
    // Connection is hop-by-hop: the origin must not have been told to close.
    let seen = Seen::from_response(&resp);
    assert!(
        seen.all("connection").iter().all(|v| !v.contains("close")),
        "client's Connection forwarded: {:?}",
        seen.headers
    );
    // A request pipelined behind the closing one is not answered.
    let (bytes, closed) = send_raw_closed(
        gw.addr,
        b"GET /a HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: test\r\n\r\n",
    );
    assert!(closed);
    let all = parse_all(&bytes, &[]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), 1, "answered past `Connection: close`");
    assert_eq!(Seen::from_response(&all[0]).target, "/a");
    assert_eq!(o.requests(), 2);
}

#[test]
fn expect_100_continue() {
    let (gw, o) = single(1, Mode::Echo);
    let mut c = gw.connect();
    c.send(
        b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
    );
    // The body is held back until the interim answer arrives.
    let interim = c.read_response();
    assert_eq!(
        interim.status, 100,
        "expected 100 Continue first: {interim:?}"
    );
    c.send(b"hello world");
    let resp = c.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello world", "echoed body");
    assert_eq!(o.body_bytes_received(), 11);
    // The connection stays usable.
    c.send(b"POST /again HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nok");
    let resp = c.read_response();
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"ok"[..]));
}

#[test]
fn head_204_304_have_no_body() {
    let (gw, o) = single(1, Mode::Json);
    let mut c = gw.connect();
    let batch = concat!(
        "HEAD /h HTTP/1.1\r\nHost: test\r\n\r\n",
        "GET /x?status=204 HTTP/1.1\r\nHost: test\r\n\r\n",
        "GET /x?status=304 HTTP/1.1\r\nHost: test\r\n\r\n",
        "HEAD /h?bytes=5000&chunked=1 HTTP/1.1\r\nHost: test\r\n\r\n",
        "GET /last HTTP/1.1\r\nHost: test\r\n\r\n",
    );
    c.send(batch.as_bytes());
    let head = c.read_response_to(true);
    assert_eq!(head.status, 200, "HEAD: {head:?}");
    let r204 = c.read_response();
    assert_eq!(r204.status, 204, "{r204:?}");
    let r304 = c.read_response();
    assert_eq!(r304.status, 304, "{r304:?}");
    let head2 = c.read_response_to(true);
    assert_eq!(head2.status, 200, "HEAD (chunked): {head2:?}");
    // If any of the above carried body bytes, this parse fails or finds the wrong answer.
    let last = c.read_response();
    assert_eq!(last.status, 200, "{last:?}");
    assert_eq!(Seen::from_response(&last).target, "/last");
    assert!(
        c.pending().is_empty(),
        "extra bytes: {:?}",
        show(c.pending())
    );
    assert_eq!(o.requests(), 5);
}

#[test]
fn close_delimited_upstream_response_is_relayed() {
    let (gw, o) = single(1, Mode::Json);
    let mut c = gw.connect();
    c.send(b"GET /until-close?close=1 HTTP/1.1\r\nHost: test\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(Seen::from_response(&resp).target, "/until-close?close=1");
    if resp.until_close {
        assert!(c.pending().is_empty());
    } else {
        // Re-framed for the client (chunked or with a length): the connection may stay.
        assert!(resp.chunked || resp.header("content-length").is_some());
    }
    // The upstream connection ended with that response; the next request opens another.
    let resp = gw.get("/next");
    assert_eq!(resp.status, 200);
    assert_eq!(Seen::from_response(&resp).target, "/next");
    assert_eq!(
        o.connections_accepted(),
        2,
        "a closed upstream connection was reused"
    );
}

//! The fixture origin over real loopback sockets, spoken to in raw bytes by a blocking client:
//! every mode, keep-alive, pipelining, HTTP/1.0, request framing, and stop.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use coregate_loadtest::chunked::ChunkedDecoder;
use coregate_loadtest::origin::{Mode, Origin, OriginConfig};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// A blocking HTTP/1.1 client that keeps bytes read past one response for the next.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads more; 0 at end of stream (a reset counts as the end too).
    fn read_more(&mut self) -> usize {
        let mut chunk = [0; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                n
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read failed: {e}"),
        }
    }

    fn head(&mut self) -> Response {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = response.parse(&self.buf).unwrap() {
                let parsed = Response {
                    status: response.code.unwrap(),
                    headers: response
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8(h.value.to_vec()).unwrap(),
                            )
                        })
                        .collect(),
                    body: Vec::new(),
                };
                self.buf.drain(..len);
                return parsed;
            }
            assert!(
                self.read_more() > 0,
                "connection closed before a response head"
            );
        }
    }

    /// Reads one response to a request of `method`.
    fn response_to(&mut self, method: &str) -> Response {
        let mut response = self.head();
        if method == "HEAD" || matches!(response.status, 100..=199 | 204 | 304) {
            return response;
        }
        if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().unwrap();
            while self.buf.len() < length {
                assert!(self.read_more() > 0, "closed inside a body");
            }
            response.body = self.buf.drain(..length).collect();
        } else if response.header("transfer-encoding") == Some("chunked") {
            let mut decoder = ChunkedDecoder::new();
            loop {
                let step = decoder.decode(&self.buf).unwrap();
                response
                    .body
                    .extend_from_slice(&self.buf[step.data.clone()]);
                self.buf.drain(..step.consumed);
                if decoder.is_done() {
                    break;
                }
                if self.buf.is_empty() {
                    assert!(self.read_more() > 0, "closed inside a chunked body");
                }
            }
        } else {
            while self.read_more() > 0 {}
            response.body = std::mem::take(&mut self.buf);
        }
        response
    }

    fn response(&mut self) -> Response {
        self.response_to("GET")
    }

    /// True when the peer has closed: a read returns end of stream.
    fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.read_more() == 0
    }
}

fn start(cfg: OriginConfig) -> Origin {
    Origin::start(cfg).expect("origin starts")
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

#[test]
fn fixed_keeps_the_connection_alive() {
    let origin = start(OriginConfig::new("fixed", Mode::Fixed));
    let mut client = Client::connect(origin.addr());
    for _ in 0..3 {
        client.send(&get("/"));
        let response = client.response();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"Hello, world!");
        assert_eq!(response.header("x-origin"), Some("fixed"));
        assert_eq!(response.header("content-type"), Some("text/plain"));
    }
    assert_eq!(origin.connections_accepted(), 1);
    assert_eq!(origin.requests(), 3);
}

#[test]
fn fixed_body_size_and_head_requests() {
    let mut cfg = OriginConfig::new("big", Mode::Fixed);
    cfg.body_bytes = 100_000;
    let origin = start(cfg);
    let mut client = Client::connect(origin.addr());
    client.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.response_to("HEAD");
    assert_eq!(head.header("content-length"), Some("100000"));
    client.send(&get("/"));
    let response = client.response();
    assert_eq!(response.body.len(), 100_000);
    assert!(response.body.starts_with(b"Hello, world!Hello"));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let origin = start(OriginConfig::new("json", Mode::Json));
    let mut client = Client::connect(origin.addr());
    let mut batch = Vec::new();
    for i in 0..20 {
        batch.extend_from_slice(&get(&format!("/item/{i}")));
    }
    // A POST with a body in the middle of the pipeline, then more GETs.
    batch.extend_from_slice(b"POST /post HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    batch.extend_from_slice(&get("/last"));
    client.send(&batch);
    for i in 0..20 {
        let response = client.response();
        assert_eq!(response.json()["target"], format!("/item/{i}"));
    }
    let post = client.response().json();
    assert_eq!(post["method"], "POST");
    assert_eq!(post["body_bytes"], 5);
    assert_eq!(client.response().json()["target"], "/last");
    assert_eq!(origin.connections_accepted(), 1);
    assert_eq!(origin.requests(), 22);
    assert_eq!(origin.body_bytes_received(), 5);
}

#[test]
fn http10_closes_unless_asked_to_keep_alive() {
    let origin = start(OriginConfig::new("old", Mode::Fixed));
    let mut client = Client::connect(origin.addr());
    client.send(b"GET / HTTP/1.0\r\n\r\n");
    let response = client.response();
    assert_eq!(response.body, b"Hello, world!");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.closed());

    let mut client = Client::connect(origin.addr());
    for _ in 0..2 {
        client.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let response = client.response();
        assert_eq!(response.header("connection"), Some("keep-alive"));
    }
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(client.response().header("connection"), Some("close"));
    assert!(client.closed());
    assert_eq!(origin.connections_accepted(), 2);
}

#[test]
fn json_describes_the_request() {
    let origin = start(OriginConfig::new("users", Mode::Json));
    let mut client = Client::connect(origin.addr());
    client.send(
        b"PUT /users/7?x=1 HTTP/1.1\r\nHost: api.test\r\nX-Request-Id: abc\r\n\
          Content-Length: 11\r\n\r\nhello world",
    );
    let response = client.response();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let json = response.json();
    assert_eq!(json["origin"], "users");
    assert_eq!(json["method"], "PUT");
    assert_eq!(json["target"], "/users/7?x=1");
    assert_eq!(json["version"], "HTTP/1.1");
    assert_eq!(json["headers"][0], serde_json::json!(["Host", "api.test"]));
    assert_eq!(
        json["headers"][1],
        serde_json::json!(["X-Request-Id", "abc"])
    );
    assert_eq!(json["body_bytes"], 11);

    // A chunked body is decoded and counted, extensions and trailers aside.
    client.send(
        b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    assert_eq!(client.response().json()["body_bytes"], 7);
    assert_eq!(origin.body_bytes_received(), 18);
    assert_eq!(origin.connections_accepted(), 1);
}

#[test]
fn json_query_parameters_shape_the_answer() {
    let origin = start(OriginConfig::new("q", Mode::Json));
    let mut client = Client::connect(origin.addr());

    client.send(&get("/missing?status=404"));
    let response = client.response();
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["target"], "/missing?status=404");

    for status in [204, 304] {
        client.send(&get(&format!("/?status={status}")));
        let response = client.response();
        assert_eq!(response.status, status);
        assert_eq!(response.header("content-length"), None);
        assert_eq!(response.header("transfer-encoding"), None);
    }

    client.send(&get("/?bytes=200000&chunked=1"));
    let response = client.response();
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.body.len(), 200_000);

    client.send(&get("/?bytes=10"));
    assert_eq!(client.response().body, b"Hello, wor");

    client.send(&get("/?status=503&close=1"));
    let response = client.response();
    assert_eq!(response.status, 503);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.json()["target"], "/?status=503&close=1");
    assert!(client.closed());
    assert_eq!(origin.connections_accepted(), 1);
}

#[test]
fn echo_copies_body_framing_and_content_type() {
    let origin = start(OriginConfig::new("echo", Mode::Echo));
    let mut client = Client::connect(origin.addr());
    client.send(
        b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-test\r\n\
          Content-Length: 5\r\n\r\nhello",
    );
    let response = client.response();
    assert_eq!(response.header("content-length"), Some("5"));
    assert_eq!(response.header("content-type"), Some("application/x-test"));
    assert_eq!(response.body, b"hello");

    client.send(
        b"POST /e HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    );
    let response = client.response();
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(response.header("content-type"), None);
    assert_eq!(response.body, b"abcde");

    client.send(&get("/no-body"));
    let response = client.response();
    assert_eq!(response.header("content-length"), Some("0"));
    assert!(response.body.is_empty());
    assert_eq!(origin.connections_accepted(), 1);
}

#[test]
fn expect_continue_gets_an_interim_response() {
    let origin = start(OriginConfig::new("json", Mode::Json));
    let mut client = Client::connect(origin.addr());
    client.send(b"POST / HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(client.head().status, 100);
    client.send(b"abc");
    assert_eq!(client.response().json()["body_bytes"], 3);
}

#[test]
fn demo_serves_users_orders_and_products() {
    let origin = start(OriginConfig::new("users", Mode::Demo));
    let mut client = Client::connect(origin.addr());
    client.send(&get("/users/2"));
    let response = client.response();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-origin"), Some("users"));
    assert_eq!(response.json()["name"], "Alan Turing");

    client.send(&get("/users/9"));
    let response = client.response();
    assert_eq!(response.status, 404);
    assert_eq!(response.json()["error"], "user not found");

    client.send(&get("/orders"));
    assert_eq!(client.response().json().as_array().unwrap().len(), 3);
    client.send(&get("/products/1"));
    assert_eq!(client.response().json()["price_cents"], 8900);

    client.send(b"DELETE /users/1 HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = client.response();
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
}

#[test]
fn slow_waits_before_answering() {
    let mut cfg = OriginConfig::new("slow", Mode::Slow);
    cfg.delay_ms = 200;
    let origin = start(cfg);
    let mut client = Client::connect(origin.addr());
    let started = Instant::now();
    client.send(&get("/slow"));
    assert_eq!(client.response().json()["target"], "/slow");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

/// What a Flaky origin did with each of `count` requests, one connection per request.
fn flaky_outcomes(count: usize) -> Vec<&'static str> {
    let mut cfg = OriginConfig::new("flaky", Mode::Flaky);
    cfg.failure_rate = 0.5;
    let origin = start(cfg);
    (0..count)
        .map(|_| {
            let mut client = Client::connect(origin.addr());
            client.send(&get("/f"));
            if client.closed() {
                return "closed";
            }
            match client.response().status {
                200 => "ok",
                500 => "500",
                other => panic!("unexpected status {other}"),
            }
        })
        .collect()
}

#[test]
fn flaky_fails_reproducibly() {
    let first = flaky_outcomes(60);
    for outcome in ["ok", "500", "closed"] {
        let seen = first.iter().filter(|&&o| o == outcome).count();
        assert!(seen >= 5, "{outcome} seen {seen} times in {first:?}");
    }
    assert_eq!(first, flaky_outcomes(60));
}

#[test]
fn malformed_and_oversized_requests_are_refused() {
    let origin = start(OriginConfig::new("strict", Mode::Json));
    let cases: [(&[u8], u16); 4] = [
        (b"NOT HTTP\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
        (b"GET /?status=42 HTTP/1.1\r\n\r\n", 400),
    ];
    for (request, status) in cases {
        let mut client = Client::connect(origin.addr());
        client.send(request);
        let response = client.response();
        assert_eq!(
            response.status,
            status,
            "{}",
            String::from_utf8_lossy(request)
        );
        assert!(client.closed());
    }
    let mut client = Client::connect(origin.addr());
    let mut huge = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    huge.resize(huge.len() + 70 * 1024, b'a');
    huge.extend_from_slice(b"\r\n\r\n");
    client.send(&huge);
    assert_eq!(client.response().status, 431);
}

#[test]
fn threads_share_the_port() {
    let mut cfg = OriginConfig::new("multi", Mode::Fixed);
    cfg.threads = 3;
    let origin = start(cfg);
    let mut clients: Vec<Client> = (0..12).map(|_| Client::connect(origin.addr())).collect();
    for client in &mut clients {
        client.send(&get("/"));
        assert_eq!(client.response().status, 200);
    }
    assert_eq!(origin.connections_accepted(), 12);
    assert_eq!(origin.requests(), 12);
}

#[test]
fn stop_closes_connections_and_refuses_new_ones() {
    let origin = start(OriginConfig::new("stop", Mode::Fixed));
    let addr = origin.addr();
    let mut idle = Client::connect(addr);
    idle.send(&get("/"));
    assert_eq!(idle.response().status, 200);
    let started = Instant::now();
    origin.stop();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(idle.closed(), "kept-alive connection closed by stop");
    let refused = TcpStream::connect(addr).expect_err("connection after stop");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn a_taken_port_is_an_error() {
    let first = start(OriginConfig::new("first", Mode::Fixed));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = OriginConfig::new("second", Mode::Fixed);
    cfg.listen = listener.local_addr().unwrap();
    assert!(Origin::start(cfg).is_err());
    // The first origin is unaffected.
    let mut client = Client::connect(first.addr());
    client.send(&get("/"));
    assert_eq!(client.response().status, 200);
}

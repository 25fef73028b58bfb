//! Criterion benches of the per-request pieces of the data plane, without sockets:
//! request-head parsing (small, a typical browser request, 60 headers), path normalisation
//! (a path already normal, and one with dot-segments and escapes), router lookup with
//! 10, 1 000 and 10 000 routes, the snapshot check a worker does before every request, and
//! the whole in-process path (parse → route → rewrite → forwarded head serialisation).
//!
//! Run: `cargo bench --bench hot_path`. Figures and history are in perf.md.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use coregate_config::Config;
use coregate_engine::http::{
    encode_request_head, normalize_in_place, ClientAddr, FieldEdits, Forward, Limits, PathOptions,
    RequestHead,
};
use coregate_engine::router::{HeaderLookup, RouteRequest, RouteResult, Router};
use coregate_engine::{Snapshot, SnapshotCell};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SMALL: &[u8] = b"GET /users/42 HTTP/1.1\r\nHost: api.example.com\r\n\r\n";

const BROWSER: &[u8] = b"GET /products/1234?ref=home&utm_source=newsletter HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://shop.example.com/\r\n\
Cookie: session=4f8c2e1a9b7d6c5e3f2a1b0c9d8e7f6a; theme=dark; cart=3\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-User: ?1\r\n\
Cache-Control: max-age=0\r\n\r\n";

fn many_headers(count: usize) -> Vec<u8> {
    let mut head = b"GET /orders HTTP/1.1\r\nHost: api.example.com\r\n".to_vec();
    for i in 1..count {
        head.extend_from_slice(format!("X-Header-{i}: value-number-{i}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

fn limits() -> Limits {
    Limits {
        request_line_bytes_max: 8192,
        header_bytes_max: 64 * 1024,
        header_count_max: 256,
    }
}

fn parse(c: &mut Criterion) {
    let sixty = many_headers(60);
    let mut group = c.benchmark_group("parse_request_head");
    for (name, input) in [
        ("small", SMALL),
        ("browser", BROWSER),
        ("60_headers", &sixty[..]),
    ] {
        group.throughput(Throughput::Bytes(input.len() as u64));
        let mut head = RequestHead::new();
        let limits = limits();
        group.bench_function(name, |b| {
            b.iter(|| head.parse(black_box(input), &limits).unwrap().unwrap())
        });
    }
    group.finish();
}

/// A config with `n` routes spread over hosts and path shapes, the shape of a real API
/// catalogue: exact paths, `{param}` paths and prefixes on 10 hosts.
fn config_with_routes(n: usize) -> Config {
    let mut text = String::from(
        "[[listener]]\naddress = \"127.0.0.1:8080\"\n\
         [upstreams.u]\nendpoints = [{ address = \"127.0.0.1:9000\" }]\n",
    );
    for i in 0..n {
        let host = format!("svc{}.example.com", i % 10);
        let path = match i % 3 {
            0 => format!("path = \"/api/v1/resource{i}\""),
            1 => format!("path = \"/api/v1/resource{i}/{{id}}\""),
            _ => format!("path_prefix = \"/static/bundle{i}\""),
        };
        text.push_str(&format!(
            "[[route]]\nhost = \"{host}\"\n{path}\nupstream = \"u\"\n"
        ));
    }
    coregate_config::load_str(&text, "<bench>").expect("bench config is valid")
}

struct NoHeaders;

impl HeaderLookup for NoHeaders {
    fn header(&self, _: &str) -> Option<&[u8]> {
        None
    }
}

fn route(c: &mut Criterion) {
    let mut group = c.benchmark_group("router_lookup");
    for n in [10usize, 1_000, 10_000] {
        let config = config_with_routes(n);
        let router = Router::new(&config.routes);
        // A `{param}` route near the end of the table: the worst case for a linear scan.
        let last_param = (0..n).rev().find(|i| i % 3 == 1).unwrap();
        let path = format!("/api/v1/resource{last_param}/12345");
        let host = format!("svc{}.example.com", last_param % 10);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let req = RouteRequest {
                    host: Some(black_box(host.as_bytes())),
                    method: b"GET",
                    path: black_box(path.as_bytes()),
                    headers: &NoHeaders,
                };
                match router.lookup(&req) {
                    RouteResult::Matched(m) => m.route,
                    _ => panic!("bench route must match"),
                }
            })
        });
    }
    group.finish();
}

fn snapshot_read(c: &mut Criterion) {
    let snapshot =
        Snapshot::compile(config_with_routes(10), 1, None).expect("bench config compiles");
    let cell = Arc::new(SnapshotCell::new(snapshot));
    // What a worker does per request: compare the published version with the one it holds.
    c.bench_function("snapshot_version_check", |b| {
        b.iter(|| black_box(cell.version()) == 1)
    });
    // What it does once per reload.
    c.bench_function("snapshot_load_on_reload", |b| b.iter(|| cell.load()));
}

struct HeadHeaders<'a> {
    head: &'a RequestHead,
    buf: &'a [u8],
}

impl HeaderLookup for HeadHeaders<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header(self.buf, name)
    }
}

/// The in-place normaliser on a path that is already normal (the common case: one scan, no
/// write) and on one that needs the rewrite. Each iteration first copies the path into a
/// stack buffer, the same for both, since the rewrite changes its input.
fn normalize_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize_path");
    for (name, input) in [
        ("normal", &b"/api/v1/resource997/12345/orders"[..]),
        ("dotted", b"/api/v1/./resource997/%7e12345/../orders//x"),
    ] {
        let options = PathOptions::default();
        let mut buf = [0u8; 64];
        group.bench_function(name, |b| {
            b.iter(|| {
                let path = &mut buf[..input.len()];
                path.copy_from_slice(black_box(input));
                normalize_in_place(path, options).unwrap()
            })
        });
    }
    group.finish();
}

fn whole_path(c: &mut Criterion) {
    let config = config_with_routes(1_000);
    let router = Router::new(&config.routes);
    let input = b"GET /api/v1/resource997/12345?x=1 HTTP/1.1\r\nHost: svc7.example.com\r\n\
User-Agent: bench\r\nAccept: */*\r\nX-Forwarded-For: 10.0.0.1\r\nConnection: keep-alive\r\n\r\n";
    let limits = limits();
    let mut head = RequestHead::new();
    let mut path = Vec::with_capacity(256);
    let mut out = Vec::with_capacity(1024);
    c.bench_function("request_path_parse_route_encode", |b| {
        b.iter(|| {
            let buf = black_box(&input[..]);
            head.parse(buf, &limits).unwrap().unwrap();
            let lookup = HeadHeaders { head: &head, buf };
            let req = RouteRequest {
                host: head.host.map(|s| s.get(buf)),
                method: head.method_span.get(buf),
                path: head.path.get(buf),
                headers: &lookup,
            };
            let RouteResult::Matched(m) = router.lookup(&req) else {
                panic!("bench route must match")
            };
            path.clear();
            router.rewrite_path(
                &m,
                head.path.get(buf),
                head.query.map(|q| q.get(buf)),
                &mut path,
            );
            out.clear();
            encode_request_head(
                buf,
                &head,
                &Forward {
                    path_and_query: &path,
                    client: ClientAddr::peer(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
                    proto: "http",
                    default_host: b"127.0.0.1:9000",
                    edits: FieldEdits::default(),
                },
                &mut out,
            );
            out.len()
        })
    });
}

criterion_group!(
    benches,
    parse,
    normalize_path,
    route,
    snapshot_read,
    whole_path
);
criterion_main!(benches);

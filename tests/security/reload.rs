//! Issue 14, defects 10 and 13: HEAD on an aggregate route, and per-worker state that must
//! survive a reload.
//!
//! - Defect 10: a HEAD on an aggregate route was fanned out as HEAD, so every part answered
//!   a head announcing a body it never sent and the gateway waited for it until the part
//!   timed out. The parts are now asked with GET and the client gets the GET answer's head
//!   (its Content-Length) without the body, on a connection that stays usable.
//! - Defect 13: every reload rebuilt each worker's circuit breakers and verified-token caches
//!   from scratch, so a reload during an outage sent traffic straight back to the dead
//!   endpoint. Breakers now carry over for every endpoint whose upstream name and address are
//!   unchanged, and token caches for every JWT policy whose keys and checks are unchanged.

use std::net::SocketAddr;

use crate::common::*;

// ---------------------------------------------------------------------------------------
// Defect 10: HEAD on an aggregate route

/// An aggregate route over `users` and `orders`, with the `methods` line given.
fn aggregate_config(users: SocketAddr, orders: SocketAddr, methods: &str) -> String {
    format!(
        r#"{}{}{}
[[route]]
name = "dashboard"
path = "/api/dashboard/{{id}}"
{methods}

[[route.aggregate]]
key = "profile"
upstream = "users"
path = "/users/{{id}}"
timeout_ms = 10000

[[route.aggregate]]
key = "orders"
upstream = "orders"
path = "/orders?user={{id}}"
timeout_ms = 10000
"#,
        server_toml(1, ""),
        upstream_toml("users", &[users], ""),
        upstream_toml("orders", &[orders], ""),
    )
}

#[test]
fn head_on_an_aggregate_route_gets_the_get_head_without_a_body() {
    let (users, orders) = (origin("users", Mode::Json), origin("orders", Mode::Json));
    let gw = start_gateway(&aggregate_config(
        users.addr(),
        orders.addr(),
        "methods = [\"GET\", \"HEAD\"]",
    ));
    let mut client = gw.connect();
    // The parts' timeout is 10 s: before the fix the HEAD hung until then (the parts'
    // answers to HEAD announce a body that never comes) and then failed with 502.
    client.send(b"HEAD /api/dashboard/7 HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.read_response_to(true);
    assert_eq!(head.status, 200, "HEAD: {head:?}");
    assert_eq!(head.header("x-coregate-complete"), Some("true"));
    assert!(head.body.is_empty());
    let head_length: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("HEAD answer without Content-Length: {head:?}"));
    // No body bytes followed the head, and the connection takes the next request.
    assert!(
        client.pending().is_empty(),
        "bytes after a HEAD answer: {:?}",
        show(client.pending())
    );
    client.send(b"GET /api/dashboard/7 HTTP/1.1\r\nHost: t\r\n\r\n");
    let get = client.read_response();
    assert_eq!(get.status, 200, "{}", get.body_text());
    // RFC 9110 §9.3.2: the HEAD answer's head is the GET answer's; the parts were asked with
    // GET both times, so the merged bodies are the same length.
    assert_eq!(
        get.header("content-length"),
        Some(&*head_length.to_string())
    );
    assert_eq!(get.body.len(), head_length);
    let merged = get.json();
    assert_eq!(merged["profile"]["method"], "GET", "{merged}");
    assert_eq!(merged["orders"]["method"], "GET", "{merged}");
    assert_eq!(users.requests(), 2);
    assert_eq!(orders.requests(), 2);
}

#[test]
fn an_aggregate_route_refuses_methods_other_than_get_and_head() {
    let (users, orders) = (origin("users", Mode::Json), origin("orders", Mode::Json));
    // Without `methods` the route matches any method; its parts are reads, so a DELETE must
    // not be fanned out (it was, as DELETE, before the fix) nor answered with their reads.
    let gw = start_gateway(&aggregate_config(users.addr(), orders.addr(), ""));
    let mut client = gw.connect();
    client.send(b"DELETE /api/dashboard/7 HTTP/1.1\r\nHost: t\r\n\r\n");
    let refused = client.read_response();
    assert_eq!(refused.status, 405, "{}", refused.body_text());
    assert_eq!(refused.header("allow"), Some("GET, HEAD"));
    assert_eq!((users.requests(), orders.requests()), (0, 0));
    // The connection stays usable, and GET still aggregates.
    client.send(b"GET /api/dashboard/7 HTTP/1.1\r\nHost: t\r\n\r\n");
    let get = client.read_response();
    assert_eq!(get.status, 200, "{}", get.body_text());
    assert_eq!(get.json()["profile"]["method"], "GET");
}

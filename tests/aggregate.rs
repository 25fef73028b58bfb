//! Aggregate routes: one request fans out to several upstreams concurrently and the JSON
//! answers come back merged under their keys; a late optional part becomes null and is listed
//! in `errors`; a failed required part makes the answer 502; identity headers reach every
//! part.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;

fn config(
    users: SocketAddr,
    orders: SocketAddr,
    metrics: SocketAddr,
    metrics_timeout: u64,
) -> String {
    format!(
        r#"[server]
workers = 1

[[listener]]
address = "{{listen}}"

[upstreams.users]
endpoints = [{{ address = "{users}" }}]
[upstreams.orders]
endpoints = [{{ address = "{orders}" }}]
[upstreams.metrics]
endpoints = [{{ address = "{metrics}" }}]

[[route]]
name = "dashboard"
path = "/api/dashboard/{{id}}"
methods = ["GET"]

[[route.aggregate]]
key = "profile"
upstream = "users"
path = "/users/{{id}}"

[[route.aggregate]]
key = "orders"
upstream = "orders"
path = "/orders?user={{id}}"

[[route.aggregate]]
key = "metrics"
upstream = "metrics"
path = "/metrics/{{id}}"
required = false
timeout_ms = {metrics_timeout}
"#
    )
}

#[test]
fn parts_are_merged_under_their_keys() {
    let (u, o, m) = (
        origin("users", Mode::Json),
        origin("orders", Mode::Json),
        origin("metrics", Mode::Json),
    );
    let gw = start_gateway(&config(u.addr(), o.addr(), m.addr(), 2000));
    let r = gw.request("GET /api/dashboard/7 HTTP/1.1\r\nHost: t\r\nX-Trace: abc\r\n\r\n");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("x-coregate-complete"), Some("true"));
    let v = r.json();
    assert_eq!(v["profile"]["origin"], "users");
    assert_eq!(v["profile"]["target"], "/users/7");
    assert_eq!(v["orders"]["target"], "/orders?user=7");
    assert_eq!(v["metrics"]["origin"], "metrics");
    assert_eq!(v["errors"].as_array().unwrap().len(), 0);
    // The client's headers went to every part.
    let traced = v["orders"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h[0] == "X-Trace" && h[1] == "abc");
    assert!(traced, "{v}");
}

#[test]
fn parts_run_concurrently_and_a_late_optional_part_is_null() {
    // Each part takes 1.5 s (inside the parts' default 2 s timeout) and metrics gives up at
    // 0.3 s: one after the other would take 3.3 s, side by side about 1.5 s.
    let slow = |name| origin_with(name, Mode::Slow, |c| c.delay_ms = 1_500);
    let (u, o, m) = (slow("users"), slow("orders"), slow("metrics"));
    let gw = start_gateway(&config(u.addr(), o.addr(), m.addr(), 300));
    let started = Instant::now();
    let r = gw.get("/api/dashboard/1");
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert!(
        took < Duration::from_millis(2_500),
        "parts did not run concurrently: {took:?}"
    );
    assert_eq!(r.header("x-coregate-complete"), Some("false"));
    let v = r.json();
    assert!(v["metrics"].is_null());
    assert_eq!(v["errors"][0]["part"], "metrics");
    assert_eq!(v["errors"][0]["reason"], "timed out");
    assert_eq!(v["profile"]["origin"], "users");
}

#[test]
fn a_failed_required_part_is_502() {
    let (o, m) = (origin("orders", Mode::Json), origin("metrics", Mode::Json));
    let gw = start_gateway(&config(free_addr(), o.addr(), m.addr(), 2000));
    let r = gw.get("/api/dashboard/1");
    assert_eq!(r.status, 502);
    assert!(r.body_text().contains("profile"), "{}", r.body_text());
}

/// The demo's dashboard merges its users, orders and products services, and still answers
/// when the products service fails.
#[test]
fn the_demo_dashboard_merges_three_services() {
    let gw = start_demo();
    let r = gw.get("/api/dashboard/1");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("x-coregate-complete"), Some("true"));
    let v = r.json();
    assert_eq!(v["profile"]["name"], "Ada Lovelace");
    assert!(v["orders"].as_array().is_some_and(|o| !o.is_empty()));
    assert!(v["products"].as_array().is_some_and(|p| !p.is_empty()));
    assert_eq!(gw.get("/products/fail?seconds=30").status, 200);
    let r = gw.get("/api/dashboard/2");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("x-coregate-complete"), Some("false"));
    assert!(r.json()["products"].is_null());
    assert_eq!(r.json()["profile"]["name"], "Alan Turing");
}

//! Circuit breakers and fallbacks end to end: an endpoint that keeps failing is cut off by
//! the worker's breaker, requests are then answered at once from the route's fallback (the
//! last good response, marked stale, or a static response) without touching the endpoint,
//! and a probe after the cool-down lets it back in.

mod common;

use std::time::Duration;

use common::*;

fn config(endpoint: std::net::SocketAddr, fallback: &str) -> String {
    format!(
        r#"{}connect_timeout_ms = 500

[upstreams.o.breaker]
consecutive_failures = 3
failure_ratio = 0
cooldown_ms = 400
cooldown_max_ms = 400
half_open_probes = 1
failure_statuses = [500, 502, 503, 504]

[[route]]
name = "r"
path_prefix = "/"
upstream = "o"

[route.fallback]
{fallback}
"#,
        one_upstream_config(endpoint)
    )
}

#[test]
fn an_open_breaker_answers_from_the_static_fallback_without_the_endpoint() {
    let o = origin_with("bad", Mode::Flaky, |c| c.failure_rate = 1.0);
    let fallback = "status = 503\nbody = '{\"error\":\"try later\"}'";
    let text = format!("{}{ADMIN_TOML}", config(o.addr(), fallback));
    let (gw, admin) = start_gateway_with_admin(&text);
    // Three failures (500s or closed connections) trip it.
    for _ in 0..3 {
        let r = gw.get("/x");
        assert!(r.status >= 500, "{}", r.status);
    }
    let seen = o.requests();
    for _ in 0..5 {
        let r = gw.get("/x");
        assert_eq!(r.status, 503);
        assert_eq!(r.body_text(), "{\"error\":\"try later\"}");
    }
    assert_eq!(o.requests(), seen, "an open breaker still sent requests");
    // The admin endpoint shows the worker's breaker open, with its trip counted.
    let breaker_of = || {
        let upstreams = admin_get(admin, "/upstreams").json();
        let list = upstreams["upstreams"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        list.iter()
            .flat_map(|u| u["endpoints"].as_array().cloned().unwrap_or_default())
            .flat_map(|e| e["breakers"].as_array().cloned().unwrap_or_default())
            .next()
    };
    assert!(
        eventually(Duration::from_secs(3), || breaker_of()
            .is_some_and(
                |b| b["state"] == "open" && b["trips"].as_u64() >= Some(1)
            )),
        "{:?}",
        breaker_of()
    );
    // After the cool-down a probe goes through (and fails again, re-opening it). The origin
    // may count two requests for it: a pooled connection it closed is retried once on a
    // fresh one (GET is idempotent).
    std::thread::sleep(Duration::from_millis(500));
    let _ = gw.get("/x");
    assert!(o.requests() > seen, "no probe after the cool-down");
    let reopened = o.requests();
    assert_eq!(gw.get("/x").status, 503);
    assert_eq!(
        o.requests(),
        reopened,
        "the failed probe did not re-open the breaker"
    );
}

#[test]
fn the_last_good_response_is_served_stale_while_the_endpoint_is_cut_off() {
    let o = origin("good", Mode::Json);
    let addr = o.addr();
    let gw = start_gateway(&config(addr, "stale = true"));
    let fresh = gw.get("/users/1");
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.header("x-coregate-stale"), None);
    o.stop();
    // Connect refused three times: the breaker opens.
    for _ in 0..3 {
        assert_eq!(gw.get("/users/1").status, 502);
    }
    let stale = gw.get("/users/1");
    assert_eq!(stale.status, 200);
    assert_eq!(stale.header("x-coregate-stale"), Some("1"));
    assert!(stale
        .header("warning")
        .unwrap_or_default()
        .starts_with("110"));
    assert_eq!(stale.body_text(), fresh.body_text());
    // A target never answered before has no stale copy: 503 JSON.
    let missing = gw.get("/users/2");
    assert_eq!(missing.status, 503);
    // The origin comes back on the same address: after the cool-down the probe succeeds and
    // fresh answers return.
    let _back = Origin::start({
        let mut c = OriginConfig::new("good", Mode::Json);
        c.listen = addr;
        c
    })
    .expect("restart the origin on its address");
    assert!(eventually(Duration::from_secs(5), || {
        let r = gw.get("/users/1");
        r.status == 200 && r.header("x-coregate-stale").is_none()
    }));
}

/// The demo shows it end to end: a header transform on users, and a products service told
/// to fail, cut off by its breaker and answered from the stale fallback.
#[test]
fn the_demo_shows_transforms_breaker_and_stale_answers() {
    let gw = start_demo();
    let users = gw.get("/users/1");
    assert_eq!(users.header("x-served-by"), Some("coregate route users"));
    assert!(users.header("x-request-id").is_some());
    // Each worker keeps its own breakers and stale copies: warm both (each request is a new
    // connection, spread over the workers by the kernel).
    let fresh = gw.get("/products/1");
    assert_eq!(fresh.status, 200);
    for _ in 0..8 {
        assert_eq!(gw.get("/products/1").status, 200);
    }
    assert_eq!(gw.get("/products/fail?seconds=30").status, 200);
    let statuses: Vec<u16> = (0..10).map(|_| gw.get("/products/1").status).collect();
    assert!(statuses.contains(&503), "{statuses:?}");
    let stale = (0..10)
        .map(|_| gw.get("/products/1"))
        .find(|r| r.header("x-coregate-stale") == Some("1"))
        .expect("no stale answer once the breakers opened");
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body_text(), fresh.body_text());
}

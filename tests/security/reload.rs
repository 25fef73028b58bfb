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
use std::time::Duration;

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

// ---------------------------------------------------------------------------------------
// Defect 13: breakers and token caches across a reload

/// The config version the admin listener reports.
fn config_version(admin: SocketAddr) -> u64 {
    admin_get(admin, "/config").json()["version"]
        .as_u64()
        .expect("/config has a version")
}

/// Rewrites the config, signals the reload and waits until `version` serves. The admin
/// address must stay the same, so `{admin}` is filled in.
fn reload_to(gw: &Gateway, admin: SocketAddr, text: &str, version: u64) {
    gw.rewrite_config(&text.replace("{admin}", &admin.to_string()));
    gw.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(10), || config_version(admin) == version),
        "version {version} not served; stderr:\n{}",
        gw.stderr()
    );
}

/// One worker (a breaker and a token cache are per worker), upstream `o` over `endpoints`
/// with a breaker that stays open for a minute once tripped, route `/x` to it with a static
/// fallback, and `extra` (more upstreams and routes).
fn breaker_config(endpoints: &[SocketAddr], extra: &str) -> String {
    let breaker = "[upstreams.o.breaker]\nconsecutive_failures = 3\nfailure_ratio = 0\n\
                   cooldown_ms = 60000\ncooldown_max_ms = 60000\nhalf_open_probes = 1\n\
                   failure_statuses = [500, 502, 503, 504]\n";
    format!(
        "{}{}{breaker}\n{}[route.fallback]\nstatus = 503\nbody = 'cut off'\n\n{extra}{ADMIN_TOML}",
        server_toml(1, ""),
        upstream_toml("o", endpoints, ""),
        route_toml("x", "path_prefix = \"/x\"", "o"),
    )
}

/// The state of this worker's breaker for `endpoint`, as `/upstreams` shows it.
fn breaker_state(admin: SocketAddr, endpoint: SocketAddr) -> Option<String> {
    let upstreams = admin_get(admin, "/upstreams").json();
    let list = upstreams["upstreams"].as_array()?.clone();
    list.iter()
        .flat_map(|u| u["endpoints"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["address"].as_str() == Some(&*endpoint.to_string()))
        .flat_map(|e| e["breakers"].as_array().cloned().unwrap_or_default())
        .find_map(|b| b["state"].as_str().map(str::to_owned))
}

#[test]
fn an_open_breaker_stays_open_across_a_reload_keyed_by_upstream_and_address() {
    let dead = origin_with("dead", Mode::Flaky, |c| c.failure_rate = 1.0);
    let other = origin("other", Mode::Json);
    let text = breaker_config(&[dead.addr()], "");
    let (gw, admin) = start_gateway_with_admin(&text);
    for _ in 0..3 {
        let r = gw.get("/x/1");
        assert!(r.status >= 500, "{}", r.status);
    }
    assert!(
        eventually(Duration::from_secs(5), || {
            breaker_state(admin, dead.addr()).as_deref() == Some("open")
        }),
        "the breaker did not open: {:?}",
        breaker_state(admin, dead.addr())
    );
    let seen = dead.requests();
    assert_eq!(gw.get("/x/1").body_text(), "cut off");

    // A reload that leaves upstream `o` alone (it adds a route, which answers once the new
    // config serves): the dead endpoint stays cut off. Before the fix the breaker was
    // rebuilt closed and the next requests went to the dead endpoint again.
    let extra = format!(
        "{}{}",
        upstream_toml("other", &[other.addr()], ""),
        route_toml("new", "path_prefix = \"/new\"", "other")
    );
    reload_to(&gw, admin, &breaker_config(&[dead.addr()], &extra), 2);
    assert_eq!(gw.get("/new").status, 200, "the reload's new route");
    for _ in 0..3 {
        let r = gw.get("/x/1");
        assert_eq!((r.status, r.body_text().as_str()), (503, "cut off"));
    }
    assert_eq!(
        dead.requests(),
        seen,
        "requests reached the cut-off endpoint"
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            breaker_state(admin, dead.addr()).as_deref() == Some("open")
        }),
        "{:?}",
        breaker_state(admin, dead.addr())
    );

    // The state follows the address, not the position: with a new endpoint put first, the
    // new one starts closed and takes every request, the dead one stays cut off.
    let fresh = origin("fresh", Mode::Json);
    reload_to(
        &gw,
        admin,
        &breaker_config(&[fresh.addr(), dead.addr()], &extra),
        3,
    );
    for _ in 0..4 {
        let r = gw.get("/x/1");
        assert_eq!(r.status, 200, "{}", r.body_text());
        assert_eq!(r.header("x-origin"), Some("fresh"));
    }
    assert_eq!(
        dead.requests(),
        seen,
        "requests reached the cut-off endpoint"
    );
}

const SECRET: &str = "a-reload-test-secret-long-enough-for-hs256";
const ROTATED: &str = "the-rotated-secret-also-long-enough-for-hs256";

fn hs256(secret: &str, sub: &str) -> String {
    let exp = unix_now() + 3600;
    let claims = format!(r#"{{"sub":"{sub}","exp":{exp}}}"#);
    hs256_sign(secret, br#"{"alg":"HS256","typ":"JWT"}"#, claims.as_bytes())
}

/// One worker, route `/hs` behind JWT policy `hs` with `secret`, and `extra`.
fn jwt_config(upstream: SocketAddr, secret: &str, extra: &str) -> String {
    format!(
        "{}{}[auth.jwt.hs]\nalgorithms = [\"HS256\"]\nsecret = \"{secret}\"\n\n{}{extra}{ADMIN_TOML}",
        server_toml(1, ""),
        upstream_toml("o", &[upstream], ""),
        route_toml("hs", "path_prefix = \"/hs\"\nauth = \"hs\"", "o"),
    )
}

/// (hits, misses) of the worker's verified-token cache, once `lookups` have been reported.
fn token_lookups(gw: &Gateway, admin: SocketAddr, lookups: f64) -> (f64, f64) {
    let read = || {
        let hits = metric(admin, "coregate_jwt_cache_lookups_total{result=\"hit\"}");
        let misses = metric(admin, "coregate_jwt_cache_lookups_total{result=\"miss\"}");
        (hits.unwrap_or(0.0), misses.unwrap_or(0.0))
    };
    assert!(
        eventually(Duration::from_secs(5), || {
            let (hits, misses) = read();
            hits + misses >= lookups
        }),
        "{lookups} token lookups not reported: {:?}; stderr:\n{}",
        read(),
        gw.stderr()
    );
    read()
}

fn get_with_token(gw: &Gateway, token: &str) -> Response {
    gw.request(&format!(
        "GET /hs/1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n"
    ))
}

#[test]
fn verified_tokens_stay_cached_across_a_reload_unless_the_policy_changed() {
    let o = origin("o", Mode::Json);
    let (gw, admin) = start_gateway_with_admin(&jwt_config(o.addr(), SECRET, ""));
    let token = hs256(SECRET, "alice");
    assert_eq!(get_with_token(&gw, &token).status, 200);
    assert_eq!(
        token_lookups(&gw, admin, 1.0),
        (0.0, 1.0),
        "first sight: a miss"
    );
    assert_eq!(get_with_token(&gw, &token).status, 200);
    assert_eq!(token_lookups(&gw, admin, 2.0), (1.0, 1.0), "then a hit");

    // A reload that leaves the policy alone (it adds a route, which answers once the new
    // config serves): the token is still a hit. Before the fix every reload emptied the
    // cache, so it was verified again.
    let extra = route_toml("new", "path_prefix = \"/new\"", "o");
    reload_to(&gw, admin, &jwt_config(o.addr(), SECRET, &extra), 2);
    assert_eq!(gw.get("/new").status, 200, "the reload's new route");
    assert_eq!(get_with_token(&gw, &token).status, 200);
    assert_eq!(
        token_lookups(&gw, admin, 3.0),
        (2.0, 1.0),
        "the cache did not survive the reload"
    );

    // A rotated secret is another policy: nothing verified under the old one is kept, so
    // the old token is refused and the new one verified afresh.
    reload_to(&gw, admin, &jwt_config(o.addr(), ROTATED, &extra), 3);
    assert_eq!(get_with_token(&gw, &token).status, 401);
    assert_eq!(get_with_token(&gw, &hs256(ROTATED, "bob")).status, 200);
    assert_eq!(token_lookups(&gw, admin, 5.0), (2.0, 3.0));
}

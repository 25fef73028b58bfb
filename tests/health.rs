//! Active health checks: an endpoint that stops answering is taken out after
//! `unhealthy_threshold` failed probes, requests go to the others, 503 JSON when none is up,
//! and an endpoint back on its address is taken in again after `healthy_threshold` successes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

const CHECK: &str = "[upstreams.o.health_check]\npath = \"/healthz\"\ninterval_ms = 100\n\
                     timeout_ms = 100\nhealthy_threshold = 2\nunhealthy_threshold = 2\n\
                     expected_status = 200\n";

fn config(endpoints: &[SocketAddr]) -> String {
    format!(
        "{}{}{CHECK}\n{}{ADMIN_TOML}",
        server_toml(2, ""),
        upstream_toml("o", endpoints, "pool_idle_max = 0"),
        route_toml("all", "path_prefix = \"/\"", "o"),
    )
}

/// The `health` of `endpoint` in `/upstreams`.
fn health_of(admin: SocketAddr, endpoint: SocketAddr) -> String {
    let v = admin_get(admin, "/upstreams").json();
    v["upstreams"][0]["endpoints"]
        .as_array()
        .and_then(|list| {
            list.iter()
                .find(|e| e["address"] == endpoint.to_string().as_str())
        })
        .and_then(|e| e["health"].as_str())
        .unwrap_or("<absent>")
        .to_owned()
}

fn wait_health(gw: &Gateway, admin: SocketAddr, endpoint: SocketAddr, want: &str) {
    assert!(
        eventually(Duration::from_secs(10), || health_of(admin, endpoint)
            == want),
        "{endpoint} not {want}: {}\nstderr:\n{}",
        admin_get(admin, "/upstreams").body_text(),
        gw.stderr()
    );
}

#[test]
fn down_endpoints_are_skipped_503_when_none_is_up_and_a_returning_one_is_used_again() {
    let a = origin("a", Mode::Json);
    let b = origin("b", Mode::Json);
    let (a_addr, b_addr) = (a.addr(), b.addr());
    let (gw, admin) = start_gateway_with_admin(&config(&[a_addr, b_addr]));
    wait_health(&gw, admin, a_addr, "up");
    wait_health(&gw, admin, b_addr, "up");
    assert!(a.requests() > 0, "a was never probed");

    a.stop();
    wait_health(&gw, admin, a_addr, "down");
    assert!(
        gw.stderr().contains(&format!("health: {a_addr} is down")),
        "{}",
        gw.stderr()
    );
    assert_eq!(
        metric(
            admin,
            &format!("coregate_upstream_endpoint_up{{upstream=\"o\",endpoint=\"{a_addr}\"}}")
        ),
        Some(0.0)
    );
    for _ in 0..20 {
        let resp = gw.get("/x");
        assert_eq!(resp.status, 200, "{}", resp.body_text());
        assert_eq!(resp.header("x-origin"), Some("b"));
    }

    b.stop();
    wait_health(&gw, admin, b_addr, "down");
    let resp = gw.get("/x");
    assert_eq!(resp.status, 503, "{}", resp.body_text());
    assert_eq!(resp.json()["status"], 503);

    // An origin comes back on a's address.
    let back = origin_with("a2", Mode::Json, |c| c.listen = a_addr);
    wait_health(&gw, admin, a_addr, "up");
    assert!(
        gw.stderr().contains(&format!("health: {a_addr} is up")),
        "{}",
        gw.stderr()
    );
    for _ in 0..5 {
        let resp = gw.get("/x");
        assert_eq!(resp.status, 200, "{}", resp.body_text());
        assert_eq!(resp.header("x-origin"), Some("a2"));
    }
    drop(back);
}

#[test]
fn a_wrong_status_counts_as_a_failure() {
    let a = origin("a", Mode::Json);
    let b = origin("b", Mode::Json);
    // The Json origin answers `?status=NNN` with that status.
    let text = config(&[a.addr(), b.addr()])
        .replace("path = \"/healthz\"", "path = \"/healthz?status=500\"");
    let (gw, admin) = start_gateway_with_admin(&text);
    wait_health(&gw, admin, a.addr(), "down");
    wait_health(&gw, admin, b.addr(), "down");
    let v = admin_get(admin, "/upstreams").json();
    let last = v["upstreams"][0]["endpoints"][0]["checks"]["last_probe"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(last.contains("status 500, expected 200"), "{v}");
}

#[test]
fn checks_follow_a_reload() {
    let a = origin("a", Mode::Json);
    let without = format!(
        "{}{}\n{}{ADMIN_TOML}",
        server_toml(1, ""),
        upstream_toml("o", &[a.addr()], ""),
        route_toml("all", "path_prefix = \"/\"", "o"),
    );
    let (gw, admin) = start_gateway_with_admin(&without);
    assert_eq!(health_of(admin, a.addr()), "unchecked");
    let with = without.replace(
        "[[route]]",
        &format!(
            "{}\n[[route]]",
            CHECK.replace("path = \"/healthz\"", "path = \"/healthz?status=503\"")
        ),
    );
    gw.rewrite_config(&with.replace("{admin}", &admin.to_string()));
    gw.signal(libc::SIGHUP);
    wait_health(&gw, admin, a.addr(), "down");
    assert_eq!(gw.get("/x").status, 503);
    // Taking the check out again brings the endpoint back at once.
    gw.rewrite_config(&without.replace("{admin}", &admin.to_string()));
    gw.signal(libc::SIGHUP);
    wait_health(&gw, admin, a.addr(), "unchecked");
    assert_eq!(gw.get("/x").status, 200);
}

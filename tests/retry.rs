//! Retries: an idempotent request whose endpoint refuses the connection (or answers a
//! configured status) is sent again to another endpoint; a POST is not; and the route's
//! `timeout_ms` bounds the whole exchange.

mod common;

use common::*;

fn config(endpoints: &[std::net::SocketAddr], retry: &str, timeout: &str) -> String {
    let list: Vec<String> = endpoints
        .iter()
        .map(|a| format!("{{ address = \"{a}\" }}"))
        .collect();
    format!(
        r#"[server]
workers = 1

[[listener]]
address = "{{listen}}"

[upstreams.o]
endpoints = [{}]
connect_timeout_ms = 500

[[route]]
name = "r"
path_prefix = "/"
upstream = "o"
{timeout}

{retry}
"#,
        list.join(", ")
    )
}

#[test]
fn idempotent_requests_move_to_another_endpoint_and_posts_do_not() {
    let good = origin("good", Mode::Json);
    let dead = free_addr();
    let gw = start_gateway(&config(
        &[dead, good.addr()],
        "[route.retry]\nattempts = 1",
        "",
    ));
    // Round robin alternates, so half the first attempts hit the dead endpoint.
    for i in 0..6 {
        let r = gw.get(&format!("/x/{i}"));
        assert_eq!(r.status, 200, "GET {i} was not retried: {}", r.body_text());
    }
    let posts: Vec<u16> = (0..4)
        .map(|_| {
            gw.request("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi")
                .status
        })
        .collect();
    assert!(posts.contains(&502), "a POST was retried: {posts:?}");
}

#[test]
fn without_retries_the_dead_endpoint_shows() {
    let good = origin("good", Mode::Json);
    let dead = free_addr();
    let gw = start_gateway(&config(&[dead, good.addr()], "", ""));
    let statuses: Vec<u16> = (0..4).map(|i| gw.get(&format!("/x/{i}")).status).collect();
    assert!(statuses.contains(&502), "{statuses:?}");
}

#[test]
fn the_route_timeout_bounds_the_exchange() {
    let slow = origin_with("slow", Mode::Slow, |c| c.delay_ms = 3_000);
    let gw = start_gateway(&config(&[slow.addr()], "", "timeout_ms = 300"));
    // The origin answers after 3 s, well inside the upstream's response-header timeout
    // (30 s): only the route's 300 ms can make this a 504.
    let r = gw.get("/x");
    assert_eq!(r.status, 504, "{}", r.body_text());
}

#[test]
fn a_configured_status_is_retried_once_on_the_other_endpoint() {
    let (a, b) = (origin("a", Mode::Json), origin("b", Mode::Json));
    let gw = start_gateway(&config(
        &[a.addr(), b.addr()],
        "[route.retry]\nattempts = 1\non_statuses = [503]",
        "",
    ));
    // Both endpoints answer 503 here: one retry, then the second answer is relayed.
    assert_eq!(gw.get("/x?status=503").status, 503);
    assert_eq!(a.requests() + b.requests(), 2);
    assert_eq!(a.requests(), 1, "the retry went to the same endpoint");
    // A status not listed is not retried.
    assert_eq!(gw.get("/x?status=500").status, 500);
    assert_eq!(a.requests() + b.requests(), 3);
}

//! Transformation on the wire: a path template from the route's parameters, request and
//! response header edits with variables, and X-Request-Id passed upstream and returned
//! (the client's when it sent one, generated otherwise).

mod common;

use common::*;

fn config(origin: std::net::SocketAddr) -> String {
    format!(
        r#"{}
[[route]]
name = "users"
path = "/v1/users/{{id}}"
rewrite_path = "/users/{{id}}"
upstream = "o"
request_id = true

[route.request_headers]
remove = ["x-debug"]
rename = {{ "x-old" = "X-New" }}
set = {{ "X-Env" = "prod" }}
add = {{ "X-Client" = "${{client_ip}}", "X-Route" = "${{route}}/${{param.id}}", "X-Req" = "${{request_id}}" }}

[route.response_headers]
remove = ["x-origin"]
add = {{ "X-Served-By" = "coregate ${{route}}" }}

[[route]]
name = "plain"
path_prefix = "/plain"
upstream = "o"
request_id = false
"#,
        one_upstream_config(origin)
    )
}

fn seen_header(r: &Response, name: &str) -> Vec<String> {
    r.json()["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0].as_str().unwrap().eq_ignore_ascii_case(name))
        .map(|h| h[1].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn paths_and_headers_are_rewritten_both_ways() {
    let o = origin("o", Mode::Json);
    let gw = start_gateway(&config(o.addr()));
    let r = gw.request(
        "GET /v1/users/42?x=1 HTTP/1.1\r\nHost: t\r\nX-Debug: 1\r\nX-Old: kept\r\nX-Env: dev\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.json()["target"], "/users/42?x=1");
    assert!(seen_header(&r, "x-debug").is_empty());
    assert!(seen_header(&r, "x-old").is_empty());
    assert_eq!(seen_header(&r, "x-new"), ["kept"]);
    assert_eq!(seen_header(&r, "x-env"), ["prod"], "set replaces");
    assert_eq!(seen_header(&r, "x-client"), ["127.0.0.1"]);
    assert_eq!(seen_header(&r, "x-route"), ["users/42"]);
    // A generated request id goes upstream, into the ${request_id} variable, and back.
    let id = seen_header(&r, "x-request-id");
    assert_eq!(id.len(), 1);
    assert_eq!(seen_header(&r, "x-req"), id);
    assert_eq!(r.header("x-request-id"), Some(id[0].as_str()));
    // Response edits.
    assert_eq!(r.header("x-origin"), None);
    assert_eq!(r.header("x-served-by"), Some("coregate users"));
    // Generated ids differ per request.
    let again = gw.get("/v1/users/1");
    assert_ne!(again.header("x-request-id"), Some(id[0].as_str()));
}

#[test]
fn a_client_request_id_is_kept_and_routes_can_turn_ids_off() {
    let o = origin("o", Mode::Json);
    let gw = start_gateway(&config(o.addr()));
    let r = gw.request("GET /v1/users/7 HTTP/1.1\r\nHost: t\r\nX-Request-Id: abc-123\r\n\r\n");
    assert_eq!(seen_header(&r, "x-request-id"), ["abc-123"]);
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let plain = gw.get("/plain/x");
    assert!(seen_header(&plain, "x-request-id").is_empty());
    assert_eq!(plain.header("x-request-id"), None);
    assert_eq!(
        plain.header("x-origin"),
        Some("o"),
        "other routes keep their headers"
    );
}

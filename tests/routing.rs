//! Routing matrix: host (exact, wildcard, any), path (exact, `{param}`, prefix by whole
//! segments), methods (405 with `Allow`), header matchers, 404 JSON, prefix rewrites and the
//! tie-breaks (more constraints, then declared order). Every route has its own Json-mode
//! origin, so the `X-Origin` of the answer names the route that won, and the origin's
//! description shows the target it was sent.

mod common;

use common::*;

/// The routes of one test and their origins, in front of one gateway.
struct Matrix {
    gw: Gateway,
    _origins: Vec<Origin>,
}

/// Starts one Json origin per `(route name, route fields)` (upstream and origin named after
/// the route) and a gateway with the routes in the given order.
fn matrix(routes: &[(&str, &str)]) -> Matrix {
    let mut config = server_toml(1, "");
    let mut origins = Vec::new();
    for (name, _) in routes {
        let o = origin(name, Mode::Json);
        config.push_str(&upstream_toml(name, &[o.addr()], ""));
        origins.push(o);
    }
    for (name, fields) in routes {
        config.push_str(&route_toml(name, fields, name));
    }
    Matrix {
        gw: start_gateway(&config),
        _origins: origins,
    }
}

impl Matrix {
    fn send(&self, method: &str, host: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        self.gw
            .request(&request_text(method, host, target, headers))
    }

    /// Asserts that the request reaches origin `want` and returns what the origin saw.
    fn expect(
        &self,
        method: &str,
        host: &str,
        target: &str,
        headers: &[(&str, &str)],
        want: &str,
    ) -> Seen {
        let resp = self.send(method, host, target, headers);
        let what = format!("{method} {target} (Host: {host}, headers {headers:?})");
        assert_eq!(
            resp.status,
            200,
            "{what}: status, body {:?}",
            resp.body_text()
        );
        assert_eq!(
            resp.header("x-origin"),
            Some(want),
            "{what}: answered by the wrong route"
        );
        let seen = Seen::from_response(&resp);
        assert_eq!(seen.method, method, "{what}: method seen upstream");
        seen
    }
}

#[test]
fn host_exact_wildcard_and_any() {
    let m = matrix(&[
        ("any", "path_prefix = \"/\""),
        ("wild", "host = \"*.example.com\"\npath_prefix = \"/\""),
        (
            "wild_eu",
            "host = \"*.eu.example.com\"\npath_prefix = \"/\"",
        ),
        ("exact", "host = \"api.example.com\"\npath_prefix = \"/\""),
        ("only", "host = \"only.example.com\"\npath = \"/only\""),
    ]);
    // Exact host beats every wildcard and the any-host route declared before it.
    m.expect("GET", "api.example.com", "/x", &[], "exact");
    // Matched without the port and case-insensitively.
    m.expect("GET", "API.Example.COM:8080", "/x", &[], "exact");
    m.expect("GET", "foo.example.com", "/x", &[], "wild");
    m.expect("GET", "a.b.example.com", "/x", &[], "wild");
    // The longest wildcard suffix wins.
    m.expect("GET", "x.eu.example.com", "/x", &[], "wild_eu");
    m.expect("GET", "x.EU.example.com:1", "/x", &[], "wild_eu");
    // `*.example.com` does not match `example.com` itself.
    m.expect("GET", "example.com", "/x", &[], "any");
    m.expect("GET", "other.test", "/x", &[], "any");
    // An exact host whose routes do not match the path falls back to the wildcard.
    m.expect("GET", "only.example.com", "/only", &[], "only");
    m.expect("GET", "only.example.com", "/else", &[], "wild");
}

#[test]
fn any_host_fallback_and_404_json() {
    let m = matrix(&[
        (
            "exact",
            "host = \"api.example.com\"\npath_prefix = \"/api\"",
        ),
        ("any", "path_prefix = \"/pub\""),
    ]);
    m.expect("GET", "api.example.com", "/api/1", &[], "exact");
    m.expect("GET", "api.example.com", "/pub/1", &[], "any");
    m.expect("GET", "elsewhere.test", "/pub", &[], "any");
    for (host, target) in [
        ("elsewhere.test", "/api/1"),
        ("api.example.com", "/nothing"),
        ("elsewhere.test", "/"),
        ("elsewhere.test", "/public"),
    ] {
        let resp = m.send("GET", host, target, &[]);
        assert_eq!(resp.status, 404, "{host} {target}: {:?}", resp.body_text());
        let v = resp.json();
        assert_eq!(v["status"], 404, "404 body {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "404 body needs an error text: {v}"
        );
        assert!(
            resp.header("x-origin").is_none(),
            "a 404 must not come from an origin"
        );
    }
}

#[test]
fn path_exact_param_and_prefix() {
    let m = matrix(&[
        ("root", "path_prefix = \"/\""),
        ("prefix", "path_prefix = \"/users\""),
        ("param", "path = \"/users/{id}\""),
        ("param2", "path = \"/users/{id}/orders/{oid}\""),
        ("exact", "path = \"/users/me\""),
        ("api", "path_prefix = \"/api\""),
    ]);
    // Exact beats a parameter pattern, which beats a prefix.
    m.expect("GET", "h", "/users/me", &[], "exact");
    let seen = m.expect("GET", "h", "/users/42", &[], "param");
    assert_eq!(seen.target, "/users/42");
    let seen = m.expect("GET", "h", "/users/42/orders/7?x=1", &[], "param2");
    assert_eq!(seen.target, "/users/42/orders/7?x=1", "query kept");
    // A parameter matches one non-empty segment only.
    m.expect("GET", "h", "/users", &[], "prefix");
    m.expect("GET", "h", "/users/", &[], "prefix");
    m.expect("GET", "h", "/users/42/x", &[], "prefix");
    m.expect("GET", "h", "/users/42/orders", &[], "prefix");
    let seen = m.expect("GET", "h", "/users/me?q=a%20b", &[], "exact");
    assert_eq!(seen.target, "/users/me?q=a%20b", "query kept as sent");
    // Prefixes match whole segments.
    m.expect("GET", "h", "/api", &[], "api");
    m.expect("GET", "h", "/api/", &[], "api");
    m.expect("GET", "h", "/api/v1/x", &[], "api");
    m.expect("GET", "h", "/apix", &[], "root");
    m.expect("GET", "h", "/usersx", &[], "root");
    m.expect("GET", "h", "/", &[], "root");
}

#[test]
fn methods_and_405_with_allow() {
    let m = matrix(&[
        ("get", "path = \"/items\"\nmethods = [\"GET\", \"HEAD\"]"),
        ("post", "path = \"/items\"\nmethods = [\"post\"]"),
        ("delete", "path_prefix = \"/items\"\nmethods = [\"DELETE\"]"),
    ]);
    m.expect("GET", "h", "/items", &[], "get");
    m.expect("POST", "h", "/items", &[], "post");
    m.expect("DELETE", "h", "/items", &[], "delete");
    m.expect("DELETE", "h", "/items/3", &[], "delete");
    // HEAD is named by the first route; its answer has no body.
    let mut c = m.gw.connect();
    c.send(request_text("HEAD", "h", "/items", &[]).as_bytes());
    let resp = c.read_response_to(true);
    assert_eq!(resp.status, 200, "HEAD /items: {resp:?}");
    assert_eq!(resp.header("x-origin"), Some("get"), "HEAD /items");
    // Only the method differs: 405 with the union of the candidates' methods.
    for (method, target, want) in [
        ("PUT", "/items", &["DELETE", "GET", "HEAD", "POST"][..]),
        ("GET", "/items/3", &["DELETE"][..]),
    ] {
        let resp = m.send(method, "h", target, &[]);
        assert_eq!(
            resp.status,
            405,
            "{method} {target}: {:?}",
            resp.body_text()
        );
        let allow = resp
            .header("allow")
            .unwrap_or_else(|| panic!("405 without Allow: {resp:?}"));
        let mut got: Vec<String> = allow.split(',').map(|s| s.trim().to_owned()).collect();
        got.sort();
        assert_eq!(got, want, "{method} {target}: Allow {allow:?}");
        assert_eq!(resp.json()["status"], 405, "405 body");
    }
    // A path no route has is still 404, not 405.
    assert_eq!(m.send("PUT", "h", "/other", &[]).status, 404);
}

#[test]
fn header_equality_and_presence() {
    let m = matrix(&[
        ("plain", "path_prefix = \"/svc\""),
        ("debug", "path_prefix = \"/svc\"\nheaders_present = [\"x-debug\"]"),
        ("beta", "path_prefix = \"/svc\"\nheaders = { \"X-Version\" = \"beta\" }"),
        (
            "both",
            "path_prefix = \"/svc\"\nheaders = { \"x-version\" = \"beta\" }\nheaders_present = [\"X-Debug\"]",
        ),
    ]);
    m.expect("GET", "h", "/svc/a", &[], "plain");
    m.expect("GET", "h", "/svc/a", &[("X-Version", "beta")], "beta");
    // Names are case-insensitive, values case-sensitive.
    m.expect("GET", "h", "/svc/a", &[("x-VERSION", "beta")], "beta");
    m.expect("GET", "h", "/svc/a", &[("X-Version", "Beta")], "plain");
    m.expect("GET", "h", "/svc/a", &[("X-Version", "stable")], "plain");
    m.expect("GET", "h", "/svc/a", &[("X-Debug", "")], "debug");
    m.expect("GET", "h", "/svc/a", &[("x-debug", "1")], "debug");
    // Both matchers satisfied: the route with more constraints wins.
    m.expect(
        "GET",
        "h",
        "/svc/a",
        &[("X-Debug", "1"), ("X-Version", "beta")],
        "both",
    );
    m.expect(
        "GET",
        "h",
        "/svc/a",
        &[("X-Debug", "1"), ("X-Version", "gamma")],
        "debug",
    );
}

#[test]
fn strip_and_replace_prefix() {
    let m = matrix(&[
        ("strip", "path_prefix = \"/api\"\nstrip_prefix = true"),
        (
            "replace",
            "path_prefix = \"/old/v1\"\nreplace_prefix = \"/v2\"",
        ),
        ("to_root", "path_prefix = \"/r\"\nreplace_prefix = \"/\""),
        ("keep", "path_prefix = \"/keep\""),
    ]);
    for (target, route, want) in [
        ("/api/users/1", "strip", "/users/1"),
        ("/api/users/1?x=y", "strip", "/users/1?x=y"),
        ("/api", "strip", "/"),
        ("/api/", "strip", "/"),
        ("/api?q=1", "strip", "/?q=1"),
        ("/old/v1/users", "replace", "/v2/users"),
        ("/old/v1", "replace", "/v2"),
        ("/old/v1/a/b?c=d", "replace", "/v2/a/b?c=d"),
        ("/r/x", "to_root", "/x"),
        ("/r", "to_root", "/"),
        ("/keep/x?y", "keep", "/keep/x?y"),
    ] {
        let seen = m.expect("GET", "h", target, &[], route);
        assert_eq!(
            seen.target, want,
            "{target} via {route}: target sent upstream"
        );
    }
}

#[test]
fn ties_constraints_then_declared_order() {
    // Upstream names sort in the opposite order of the routes, so "declared order" cannot be
    // confused with the order of upstreams or of names.
    let m = matrix(&[
        ("z_first", "path_prefix = \"/tie\""),
        ("a_second", "path_prefix = \"/tie\""),
        ("m_any_method", "path = \"/m\""),
        ("b_get_only", "path = \"/m\"\nmethods = [\"GET\"]"),
        ("y_hdr_a", "path = \"/h\"\nheaders_present = [\"x-a\"]"),
        ("c_hdr_b", "path = \"/h\"\nheaders_present = [\"x-b\"]"),
    ]);
    m.expect("GET", "h", "/tie", &[], "z_first");
    m.expect("GET", "h", "/tie/x", &[], "z_first");
    // Naming a method is one more constraint than naming none, whatever the order.
    m.expect("GET", "h", "/m", &[], "b_get_only");
    m.expect("POST", "h", "/m", &[], "m_any_method");
    // Same number of constraints, both satisfied: declared order.
    m.expect("GET", "h", "/h", &[("x-a", "1"), ("x-b", "1")], "y_hdr_a");
    m.expect("GET", "h", "/h", &[("x-b", "1")], "c_hdr_b");
    assert_eq!(m.send("GET", "h", "/h", &[]).status, 404);
}

//! Defect 5, path normalisation: the gateway routes and forwards the RFC 3986 normal form of
//! the path, so `/open/../hs/secret` is `/hs/secret` for the router, the authentication in
//! front of it and the upstream alike; encoded `/`, `\` and NUL are refused before anything
//! is forwarded. Every route has its own Json-mode origin, so `X-Origin` names the route that
//! answered and the origin's description shows the target it received.

use crate::common::*;

/// Any 64 hex digits: no request here carries a key, the route only has to demand one.
const KEY_SHA256: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A gateway with an open route, an authenticated one, a `{param}` route and a catch-all,
/// each with its own origin.
struct Setup {
    gw: Gateway,
    open: Origin,
    hs: Origin,
    users: Origin,
    _rest: Origin,
}

fn setup(server_extra: &str) -> Setup {
    let open = origin("open", Mode::Json);
    let hs = origin("hs", Mode::Json);
    let users = origin("users", Mode::Json);
    let rest = origin("rest", Mode::Json);
    let mut config = server_toml(1, server_extra);
    for (name, o) in [
        ("open", &open),
        ("hs", &hs),
        ("users", &users),
        ("rest", &rest),
    ] {
        config.push_str(&upstream_toml(name, &[o.addr()], ""));
    }
    config.push_str(&format!(
        "[auth.api_keys.partners]\nkeys = [{{ consumer = \"acme\", sha256 = \"{KEY_SHA256}\" }}]\n\n"
    ));
    config.push_str(&route_toml("open", "path_prefix = \"/open\"", "open"));
    config.push_str(&route_toml(
        "hs",
        "path_prefix = \"/hs\"\nauth = \"partners\"",
        "hs",
    ));
    config.push_str(&route_toml(
        "users",
        "path = \"/users/{id}\"\nrewrite_path = \"/u/{id}\"",
        "users",
    ));
    config.push_str(&route_toml("rest", "path_prefix = \"/\"", "rest"));
    Setup {
        gw: start_gateway(&config),
        open,
        hs,
        users,
        _rest: rest,
    }
}

/// `GET target` with `Host: test`; asserts a 200 from origin `want` and returns the target
/// that origin received.
fn forwarded(gw: &Gateway, target: &str, want: &str) -> String {
    let resp = gw.get(target);
    assert_eq!(
        resp.status,
        200,
        "GET {target}: body {:?}",
        resp.body_text()
    );
    assert_eq!(resp.header("x-origin"), Some(want), "GET {target}");
    Seen::from_response(&resp).target
}

#[test]
fn dot_segments_cannot_reach_an_authenticated_route_through_an_open_one() {
    let s = setup("");
    for target in [
        "/open/../hs/secret",
        "/open/%2e%2e/hs/secret",
        "/open/.%2E/hs/secret",
        "/open/./../hs/secret",
        "/open//../../hs/secret",
        "http://test/open/../hs/secret",
    ] {
        let resp = s.gw.get(target);
        assert_eq!(
            resp.status,
            401,
            "GET {target} must meet /hs's authentication: {:?}",
            resp.body_text()
        );
    }
    assert_eq!(
        s.open.requests(),
        0,
        "the open route's upstream was reached"
    );
    assert_eq!(s.hs.requests(), 0, "the guarded upstream was reached");
}

#[test]
fn upstream_receives_the_normalised_path_and_the_query_untouched() {
    let s = setup("");
    for (target, want) in [
        ("/open/a/./b/../c", "/open/a/c"),
        ("/open/%41%62%7e%2d%5F", "/open/Ab~-_"),
        ("/open/x%2a%3ay%c3%a9", "/open/x%2A%3Ay%C3%A9"),
        ("/open/a/.", "/open/a/"),
        ("/open/x?q=/../%2f&r=%41", "/open/x?q=/../%2f&r=%41"),
        ("/open/a/..?q=1", "/open/?q=1"),
        ("http://test/open/./x?y", "/open/x?y"),
    ] {
        assert_eq!(forwarded(&s.gw, target, "open"), want, "GET {target}");
    }
    // Above the root is the root (RFC 3986 §5.2.4), which the catch-all serves.
    assert_eq!(forwarded(&s.gw, "/../../open/x", "open"), "/open/x");
    assert_eq!(forwarded(&s.gw, "/open/../..", "rest"), "/");
    // The asterisk-form is left alone: no route matches it.
    let resp = s.gw.request("OPTIONS * HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(resp.status, 404, "{:?}", resp.body_text());
}

#[test]
fn encoded_slash_backslash_nul_broken_escapes_and_dot_params_are_refused() {
    let s = setup("");
    for target in [
        "/open/a%2Fb",
        "/open/a%2fb",
        "/open/..%2Fhs/secret",
        "/open/a%5Cb",
        "/open/a%5c..%5chs",
        "/open/a%00b",
        "/open/a\\b",
        "/open/%zz",
        "/open/%4",
        "/open/..;/hs/secret",
        "/open/.%2e;x=1/hs/secret",
        "/open/a%",
        "http://test/open/a%2fb",
    ] {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: test\r\n\r\n");
        let (bytes, closed) = send_raw_closed(s.gw.addr, raw.as_bytes());
        let resp = first_response(&bytes);
        assert_eq!(resp.status, 400, "GET {target}: {}", show(&bytes));
        assert!(
            closed,
            "GET {target}: the connection stays open after a 400"
        );
    }
    assert_eq!(s.open.requests(), 0, "a refused path was forwarded");
    assert_eq!(s.hs.requests(), 0, "a refused path was forwarded");
}

#[test]
fn repeated_slashes_are_merged() {
    let s = setup("");
    assert_eq!(forwarded(&s.gw, "//open///x//", "open"), "/open/x/");
    assert_eq!(forwarded(&s.gw, "/open//./x", "open"), "/open/x");
    let resp = s.gw.get("//hs//secret");
    assert_eq!(resp.status, 401, "{:?}", resp.body_text());
    assert_eq!(s.hs.requests(), 0);
}

#[test]
fn a_param_never_captures_a_dot_segment_or_a_slash() {
    let s = setup("");
    assert_eq!(forwarded(&s.gw, "/users/42", "users"), "/u/42");
    assert_eq!(forwarded(&s.gw, "/users/x/../7", "users"), "/u/7");
    assert_eq!(forwarded(&s.gw, "/users/%2E%2e", "rest"), "/");
    assert_eq!(forwarded(&s.gw, "/users/..", "rest"), "/");
    assert_eq!(forwarded(&s.gw, "/users/.", "rest"), "/users/");
    assert_eq!(s.gw.get("/users/a%2Fb").status, 400);
    // Only the two good requests above reached the `{param}` route.
    assert_eq!(s.users.requests(), 2);
}

#[test]
fn merge_slashes_and_allow_encoded_slashes_are_server_settings() {
    let s = setup("merge_slashes = false\nallow_encoded_slashes = true");
    // Unmerged, `//open` has an empty first segment and is not the /open route.
    assert_eq!(forwarded(&s.gw, "//open///x", "rest"), "//open///x");
    assert_eq!(forwarded(&s.gw, "/open//../x", "open"), "/open/x");
    // Allowed encoded slashes stay encoded, inside one segment, with upper-case hex.
    assert_eq!(forwarded(&s.gw, "/open/a%2fb%5c", "open"), "/open/a%2Fb%5C");
    assert_eq!(forwarded(&s.gw, "/users/a%2fb", "users"), "/u/a%2Fb");
    // NUL never passes, and dot-segments are still resolved.
    assert_eq!(s.gw.get("/open/a%00").status, 400);
    assert_eq!(s.gw.get("/open/../hs/x").status, 401);
    assert_eq!(s.hs.requests(), 0);
}

/// `coregate check` on `config`: the error output, asserting that the config was refused.
fn refused(config: &str) -> String {
    let config = config.replace("{listen}", "127.0.0.1:1");
    let file = TempFile::new("path-settings", &config);
    let path = file.path().to_str().unwrap();
    let (status, out, err) = run_cli(&["check", "-c", path]);
    assert!(!status.success(), "accepted: {out}\n{config}");
    err
}

#[test]
fn bad_path_settings_and_unmatchable_routes_are_refused_at_load_time() {
    let upstream = upstream_toml("o", &[free_addr()], "");
    let err = refused(&format!(
        "{}{upstream}{}",
        server_toml(1, "merge_slashes = \"yes\""),
        route_toml("r", "path_prefix = \"/\"", "o"),
    ));
    assert!(err.contains("merge_slashes"), "{err}");
    assert!(err.contains(":3"), "no line number: {err}");
    // A route no normalised request path can match is a mistake, not a silent 404.
    for (pattern, says) in [
        ("path_prefix = \"/open/../hs\"", "\"..\""),
        ("path = \"/a/%41\"", "%41"),
        ("path = \"/a%2fb\"", "%2F"),
        ("path_prefix = \"/a%3a\"", "%3A"),
    ] {
        let config = format!(
            "{}{upstream}{}",
            server_toml(1, ""),
            route_toml("r", pattern, "o")
        );
        let err = refused(&config);
        let line = config.lines().position(|l| l == pattern).unwrap() + 1;
        assert!(err.contains(says), "{pattern}: {err}");
        assert!(
            err.contains(&format!(":{line}:")),
            "{pattern}: no line {line}: {err}"
        );
    }
}

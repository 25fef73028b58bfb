//! The routing matrix: host tables, path precedence, methods, headers, ties, rewrites.

use super::*;
use coregate_config::{PathKind, PathPattern};

struct Headers(Vec<(&'static str, &'static str)>);

impl HeaderLookup for Headers {
    fn header(&self, lower_name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(name, _)| *name == lower_name)
            .map(|(_, value)| value.as_bytes())
    }
}

fn pattern(kind: PathKind, path: &str) -> PathPattern {
    let body = path.strip_prefix('/').expect("patterns start with /");
    let segments = if body.is_empty() {
        Vec::new()
    } else {
        body.split('/')
            .map(
                |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Param(name.to_string()),
                    None => Segment::Literal(segment.to_string()),
                },
            )
            .collect()
    };
    PathPattern { kind, segments }
}

fn route(kind: PathKind, path: &str) -> Route {
    Route {
        name: path.to_string(),
        host: HostMatch::Any,
        methods: Vec::new(),
        path: pattern(kind, path),
        headers: Vec::new(),
        headers_present: Vec::new(),
        upstream: 0,
        rewrite: Rewrite::None,
        body_bytes_max: 1024,
        auth: None,
        rate_limit: None,
        fallback: coregate_config::Fallback {
            stale: false,
            stale_per_identity: false,
            static_response: None,
        },
        request_headers: Default::default(),
        response_headers: Default::default(),
        request_id: true,
        retry: None,
        timeout_ms: None,
        aggregate: Vec::new(),
        json_filter: None,
    }
}

fn exact(path: &str) -> Route {
    route(PathKind::Exact, path)
}

fn prefix(path: &str) -> Route {
    route(PathKind::Prefix, path)
}

/// Builder-style tweaks for test routes.
trait RouteExt {
    fn host(self, host: &str) -> Self;
    fn methods(self, methods: &[&str]) -> Self;
    fn header(self, name: &str, value: &str) -> Self;
    fn present(self, name: &str) -> Self;
    fn rewrite(self, rewrite: Rewrite) -> Self;
}

impl RouteExt for Route {
    fn host(mut self, host: &str) -> Self {
        self.host = match host.strip_prefix('*') {
            Some(suffix) => HostMatch::Suffix(suffix.to_string()),
            None => HostMatch::Exact(host.to_string()),
        };
        self
    }
    fn methods(mut self, methods: &[&str]) -> Self {
        self.methods = methods.iter().map(|m| m.to_string()).collect();
        self
    }
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    fn present(mut self, name: &str) -> Self {
        self.headers_present.push(name.to_string());
        self
    }
    fn rewrite(mut self, rewrite: Rewrite) -> Self {
        self.rewrite = rewrite;
        self
    }
}

fn lookup_full(
    router: &Router,
    host: Option<&str>,
    method: &str,
    path: &str,
    headers: &[(&'static str, &'static str)],
) -> RouteResult {
    let headers = Headers(headers.to_vec());
    router.lookup(&RouteRequest {
        host: host.map(str::as_bytes),
        method: method.as_bytes(),
        path: path.as_bytes(),
        headers: &headers,
    })
}

/// The matched route index, or `None` for a 404 or 405.
fn pick(router: &Router, host: Option<&str>, method: &str, path: &str) -> Option<usize> {
    match lookup_full(router, host, method, path, &[]) {
        RouteResult::Matched(m) => Some(m.route),
        _ => None,
    }
}

fn get(router: &Router, path: &str) -> Option<usize> {
    pick(router, None, "GET", path)
}

fn matched(result: RouteResult) -> Match {
    match result {
        RouteResult::Matched(m) => m,
        other => panic!("expected a match, got {other:?}"),
    }
}

#[test]
fn router_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Router>();
}

#[test]
fn host_tables_most_specific_first() {
    let router = Router::new(&[
        prefix("/").host("api.example.com"),
        prefix("/").host("*.example.com"),
        prefix("/").host("*.b.example.com"),
        prefix("/"),
    ]);
    let host = |h| pick(&router, Some(h), "GET", "/x");
    assert_eq!(host("api.example.com"), Some(0));
    assert_eq!(host("API.Example.COM:8443"), Some(0), "case and port");
    assert_eq!(host("api.example.com."), Some(0), "trailing dot");
    assert_eq!(host("api.example.com.:80"), Some(0));
    assert_eq!(host("x.example.com"), Some(1));
    assert_eq!(host("x.y.example.com"), Some(1));
    assert_eq!(host("x.b.example.com"), Some(2), "longest wildcard");
    assert_eq!(
        host("B.example.com"),
        Some(1),
        "*.b.x needs a label before .b"
    );
    assert_eq!(
        host("example.com"),
        Some(3),
        "a wildcard never matches its apex"
    );
    assert_eq!(host("other.org"), Some(3));
    assert_eq!(host("[::1]:8080"), Some(3));
    assert_eq!(pick(&router, None, "GET", "/x"), Some(3), "no Host field");
}

#[test]
fn ipv6_hosts() {
    let router = Router::new(&[exact("/").host("::1"), exact("/").host("[fe80::1]")]);
    assert_eq!(pick(&router, Some("[::1]:8080"), "GET", "/"), Some(0));
    assert_eq!(pick(&router, Some("[FE80::1]"), "GET", "/"), Some(1));
    assert_eq!(pick(&router, Some("[::2]"), "GET", "/"), None);
}

#[test]
fn host_table_without_a_path_match_falls_through() {
    let router = Router::new(&[
        exact("/admin").host("api.example.com"),
        exact("/status").host("*.example.com"),
        prefix("/"),
    ]);
    assert_eq!(
        pick(&router, Some("api.example.com"), "GET", "/admin"),
        Some(0)
    );
    assert_eq!(
        pick(&router, Some("api.example.com"), "GET", "/status"),
        Some(1)
    );
    assert_eq!(
        pick(&router, Some("api.example.com"), "GET", "/other"),
        Some(2)
    );
    let without_any = Router::new(&[exact("/admin").host("api.example.com")]);
    assert_eq!(
        lookup_full(&without_any, Some("www.example.com"), "GET", "/admin", &[]),
        RouteResult::NotFound
    );
    assert_eq!(
        lookup_full(&without_any, None, "GET", "/admin", &[]),
        RouteResult::NotFound
    );
}

#[test]
fn exact_beats_param_beats_prefix() {
    let router = Router::new(&[
        prefix("/users"),
        exact("/users/{id}"),
        exact("/users/me"),
        exact("/users/{id}/posts"),
        prefix("/"),
    ]);
    assert_eq!(get(&router, "/users/me"), Some(2));
    assert_eq!(get(&router, "/users/42"), Some(1));
    assert_eq!(get(&router, "/users/42/posts"), Some(3));
    assert_eq!(
        get(&router, "/users/me/posts"),
        Some(3),
        "backtracks from me"
    );
    assert_eq!(get(&router, "/users/42/other"), Some(0));
    assert_eq!(get(&router, "/users"), Some(0));
    assert_eq!(
        get(&router, "/users/"),
        Some(0),
        "{{id}} needs a non-empty segment"
    );
    assert_eq!(
        get(&router, "/usersx"),
        Some(4),
        "prefixes match whole segments"
    );
}

#[test]
fn later_first_param_is_more_specific() {
    let router = Router::new(&[
        exact("/{a}/{b}/{c}"),
        exact("/{a}/b/{c}"),
        exact("/a/{b}/{c}"),
        exact("/a/{b}/c"),
    ]);
    assert_eq!(get(&router, "/a/b/c"), Some(3));
    assert_eq!(get(&router, "/a/b/d"), Some(2));
    assert_eq!(get(&router, "/x/b/d"), Some(1));
    assert_eq!(get(&router, "/x/y/z"), Some(0));
}

#[test]
fn static_branch_backtracks_to_param_branch() {
    let router = Router::new(&[exact("/a/b/c"), exact("/{x}/b/d")]);
    assert_eq!(get(&router, "/a/b/c"), Some(0));
    assert_eq!(get(&router, "/a/b/d"), Some(1));
    assert_eq!(get(&router, "/a/b/e"), None);
}

#[test]
fn longest_prefix_wins() {
    let router = Router::new(&[
        prefix("/"),
        prefix("/api/v1"),
        prefix("/api"),
        exact("/api"),
    ]);
    assert_eq!(get(&router, "/api/v1/users"), Some(1));
    assert_eq!(get(&router, "/api/v1"), Some(1));
    assert_eq!(get(&router, "/api/v1/"), Some(1));
    assert_eq!(get(&router, "/api/v2"), Some(2));
    assert_eq!(get(&router, "/api/"), Some(2));
    assert_eq!(get(&router, "/api"), Some(3), "exact beats the same prefix");
    assert_eq!(get(&router, "/apix"), Some(0));
    assert_eq!(get(&router, "/"), Some(0));
}

#[test]
fn root_prefix_catches_all() {
    let router = Router::new(&[prefix("/")]);
    for path in ["/", "/x", "/x/y/z", "//", "/a/", "/%2F"] {
        let m = matched(lookup_full(&router, Some("any.host"), "BREW", path, &[]));
        assert_eq!((m.route, m.prefix_len), (0, 0), "{path}");
    }
    assert_eq!(get(&router, "*"), None, "asterisk-form is not a path");
    assert_eq!(get(&router, ""), None);
    assert_eq!(get(&router, "http://a/x"), None);
}

#[test]
fn trailing_slash_is_a_segment() {
    let router = Router::new(&[exact("/a"), exact("/a/"), exact("/")]);
    assert_eq!(get(&router, "/a"), Some(0));
    assert_eq!(get(&router, "/a/"), Some(1));
    assert_eq!(get(&router, "/"), Some(2));
    assert_eq!(get(&router, "/a//"), None);
    let only_slash = Router::new(&[exact("/a/")]);
    assert_eq!(get(&only_slash, "/a"), None);
}

#[test]
fn params_are_captured() {
    let router = Router::new(&[
        exact("/users/{uid}/posts/{pid}"),
        prefix("/static"),
        exact("/files/{name}"),
    ]);
    let path = "/users/7/posts/abc";
    let m = matched(lookup_full(&router, None, "GET", path, &[]));
    assert_eq!(m.prefix_len, path.len());
    assert_eq!(m.params.len(), 2);
    assert_eq!(&path[m.params.get(0).unwrap()], "7");
    assert_eq!(&path[m.params.get(1).unwrap()], "abc");
    assert_eq!(&path[router.param(&m, "pid").unwrap()], "abc");
    assert_eq!(router.param(&m, "nope"), None);
    let names: Vec<&str> = router.param_names(0).iter().map(|n| &**n).collect();
    assert_eq!(names, ["uid", "pid"]);
    let ranges: Vec<_> = m.params.iter().collect();
    assert_eq!(ranges, [7..8, 15..18]);

    let m = matched(lookup_full(&router, None, "GET", "/static/a/b", &[]));
    assert!(m.params.is_empty());
    assert_eq!(m.prefix_len, "/static".len());

    // Raw bytes: no percent-decoding, `%2F` does not split a segment.
    let path = "/files/a%2Fb";
    let m = matched(lookup_full(&router, None, "GET", path, &[]));
    assert_eq!(&path[m.params.get(0).unwrap()], "a%2Fb");
}

#[test]
fn percent_encoding_is_not_decoded() {
    let router = Router::new(&[exact("/a/b"), exact("/A")]);
    assert_eq!(get(&router, "/a/b"), Some(0));
    assert_eq!(get(&router, "/a%2Fb"), None);
    assert_eq!(get(&router, "/%61/b"), None);
    assert_eq!(get(&router, "/%41"), None);
    assert_eq!(get(&router, "/a"), None, "paths are case-sensitive");
}

#[test]
fn method_not_allowed_lists_configured_methods() {
    let router = Router::new(&[
        exact("/items").methods(&["HEAD", "GET"]),
        exact("/items").methods(&["POST", "PURGE"]),
        exact("/items").methods(&["DELETE"]).header("x-admin", "1"),
        exact("/other"),
    ]);
    assert_eq!(get(&router, "/items"), Some(0));
    assert_eq!(pick(&router, None, "PURGE", "/items"), Some(1));
    assert_eq!(
        lookup_full(&router, None, "PUT", "/items", &[]),
        RouteResult::MethodNotAllowed {
            allow: "GET, HEAD, POST, PURGE".to_string()
        },
        "a route whose headers do not match is no 405 candidate"
    );
    assert_eq!(
        lookup_full(&router, None, "PUT", "/items", &[("x-admin", "1")]),
        RouteResult::MethodNotAllowed {
            allow: "DELETE, GET, HEAD, POST, PURGE".to_string()
        }
    );
    assert_eq!(
        lookup_full(&router, None, "get", "/items", &[]),
        RouteResult::MethodNotAllowed {
            allow: "GET, HEAD, POST, PURGE".to_string()
        },
        "methods are case-sensitive"
    );
    assert_eq!(
        lookup_full(&router, None, "PUT", "/nothing", &[]),
        RouteResult::NotFound
    );
}

#[test]
fn method_refusal_falls_through_to_less_specific_matches() {
    let router = Router::new(&[
        exact("/users/me").methods(&["GET"]),
        exact("/users/{id}").methods(&["GET", "DELETE"]),
        exact("/x").methods(&["GET"]).host("api.example.com"),
        exact("/x").methods(&["POST"]).host("*.example.com"),
        prefix("/x"),
        exact("/y").methods(&["GET"]).host("api.example.com"),
        exact("/y").methods(&["PUT"]),
    ]);
    assert_eq!(pick(&router, None, "DELETE", "/users/me"), Some(1));
    assert_eq!(
        lookup_full(&router, None, "POST", "/users/me", &[]),
        RouteResult::MethodNotAllowed {
            allow: "DELETE, GET".to_string()
        }
    );
    let api = Some("api.example.com");
    assert_eq!(pick(&router, api, "GET", "/x"), Some(2));
    assert_eq!(pick(&router, api, "POST", "/x"), Some(3));
    assert_eq!(pick(&router, api, "PATCH", "/x"), Some(4));
    assert_eq!(
        lookup_full(&router, api, "DELETE", "/y", &[]),
        RouteResult::MethodNotAllowed {
            allow: "GET, PUT".to_string()
        },
        "405 candidates from every host table"
    );
}

#[test]
fn header_matchers() {
    let router = Router::new(&[
        exact("/h").header("x-env", "canary"),
        exact("/h").present("x-debug"),
        exact("/h"),
        exact("/h").header("x-env", "canary").present("x-debug"),
    ]);
    let with = |headers: &[(&'static str, &'static str)]| {
        matched(lookup_full(&router, None, "GET", "/h", headers)).route
    };
    assert_eq!(with(&[]), 2);
    assert_eq!(with(&[("x-env", "canary")]), 0);
    assert_eq!(with(&[("x-env", "Canary")]), 2, "values are case-sensitive");
    assert_eq!(with(&[("x-env", "prod")]), 2);
    assert_eq!(with(&[("x-debug", "")]), 1, "present with an empty value");
    assert_eq!(
        with(&[("x-debug", "1"), ("x-env", "canary")]),
        3,
        "two constraints beat one"
    );
    assert_eq!(
        with(&[("x-env", "prod"), ("x-env", "canary")]),
        2,
        "the first field counts"
    );
}

#[test]
fn ties_by_constraints_then_declared_order() {
    let router = Router::new(&[
        exact("/t"),
        exact("/t").methods(&["GET"]),
        exact("/t").methods(&["GET"]),
        prefix("/p"),
        prefix("/p"),
        prefix("/p").methods(&["POST"]),
    ]);
    assert_eq!(get(&router, "/t"), Some(1));
    assert_eq!(pick(&router, None, "POST", "/t"), Some(0));
    assert_eq!(get(&router, "/p/x"), Some(3));
    assert_eq!(pick(&router, None, "POST", "/p/x"), Some(5));
}

#[test]
fn many_routes_still_route() {
    let mut routes: Vec<Route> = (0..2000)
        .map(|i| exact(&format!("/svc{i}/items/{{id}}")))
        .collect();
    routes.extend((0..2000).map(|i| prefix(&format!("/p{i}")).host(&format!("h{i}.example.com"))));
    routes.push(prefix("/").host("*.example.com"));
    let router = Router::new(&routes);
    assert_eq!(get(&router, "/svc1234/items/9"), Some(1234));
    assert_eq!(get(&router, "/svc1999/items/"), None);
    assert_eq!(
        pick(&router, Some("h77.example.com"), "GET", "/p77/x"),
        Some(2077)
    );
    assert_eq!(
        pick(&router, Some("h77.example.com"), "GET", "/p78/x"),
        Some(4000)
    );
}

fn rewritten(router: &Router, path: &str, query: Option<&str>) -> String {
    let m = matched(lookup_full(router, None, "GET", path, &[]));
    let mut out = b"GET ".to_vec();
    router.rewrite_path(&m, path.as_bytes(), query.map(str::as_bytes), &mut out);
    String::from_utf8(out).unwrap()
}

#[test]
fn rewrites() {
    let router = Router::new(&[
        prefix("/api").rewrite(Rewrite::StripPrefix),
        prefix("/old").rewrite(Rewrite::ReplacePrefix("/v2".into())),
        prefix("/flat").rewrite(Rewrite::ReplacePrefix("/".into())),
        prefix("/keep"),
        exact("/e/{id}").rewrite(Rewrite::StripPrefix),
        prefix("/").rewrite(Rewrite::ReplacePrefix("/root".into())),
    ]);
    let r = |path, query| rewritten(&router, path, query);
    assert_eq!(r("/api/users", Some("a=1&b")), "GET /users?a=1&b");
    assert_eq!(r("/api", None), "GET /");
    assert_eq!(r("/api/", None), "GET /");
    assert_eq!(r("/api", Some("q")), "GET /?q");
    assert_eq!(r("/old/users/1", None), "GET /v2/users/1");
    assert_eq!(r("/old", None), "GET /v2");
    assert_eq!(
        r("/old/", Some("")),
        "GET /v2/?",
        "an empty query keeps its ?"
    );
    assert_eq!(r("/flat/users", None), "GET /users");
    assert_eq!(r("/flat", None), "GET /");
    assert_eq!(r("/keep/a%20b", Some("x=1")), "GET /keep/a%20b?x=1");
    assert_eq!(
        r("/e/5", None),
        "GET /",
        "an exact pattern consumes the path"
    );
    assert_eq!(r("/x/y", None), "GET /root/x/y");
    assert_eq!(r("/", None), "GET /root/");
}

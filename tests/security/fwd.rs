//! Defect 6: forwarding headers from the client were trusted. `Forwarded`, `X-Real-IP` and
//! the `X-Forwarded-*` fields a client sent reached the upstream, and frameworks that give
//! `Forwarded` precedence (Spring) took the client's word for its own address, scheme and
//! host. Now a peer outside `server.trusted_proxies` gets all of them replaced by the
//! gateway's own; a trusted peer's X-Forwarded-For is appended to and names the client, and
//! `${client_ip}`, the rate-limit key and the access log use that client.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;

/// Every forwarding field a client can send, in mixed case, each naming a forged client,
/// scheme or host; `X-Forwarded-For` twice.
const FORGED: &str = "Forwarded: for=6.6.6.6;proto=https;host=evil.example\r\n\
    fOrWaRdEd: for=\"[2001:db8::6]\"\r\n\
    X-Real-IP: 6.6.6.6\r\n\
    x-forwarded-for: 6.6.6.6\r\n\
    X-FORWARDED-FOR: 7.7.7.7, 6.6.6.6\r\n\
    X-Forwarded-Host: evil.example\r\n\
    x-forwarded-port: 6666\r\n\
    X-Forwarded-Proto: https\r\n\
    X-Forwarded-Prefix: /evil\r\n\
    X-Forwarded-Ssl: on\r\n";

/// A route to `o` that passes `${client_ip}` on as `X-Client`.
const API_ROUTE: &str = "[[route]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"o\"\n\
    [route.request_headers]\nadd = { \"X-Client\" = \"${client_ip}\" }\n\n";

fn config(origin: SocketAddr, server_extra: &str) -> String {
    format!(
        "{}{}{}",
        server_toml(1, server_extra),
        upstream_toml("o", &[origin], ""),
        API_ROUTE,
    )
}

/// The request the origin saw, for raw `request` bytes sent on a fresh connection.
fn seen(gw: &Gateway, request: &str) -> Seen {
    let resp = gw.request(request);
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    Seen::from_response(&resp)
}

/// The forwarding fields the origin received, lower-cased names with their values.
fn forwarding(seen: &Seen) -> Vec<(String, String)> {
    seen.headers
        .iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .filter(|(n, _)| n == "forwarded" || n == "x-real-ip" || n.starts_with("x-forwarded-"))
        .collect()
}

#[test]
fn an_untrusted_clients_forwarding_headers_are_replaced() {
    let o = origin("o", Mode::Json);
    // No trusted proxies (the default), and a list that does not hold the test's loopback
    // peer: both must treat the client as untrusted.
    for server_extra in ["", "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]"] {
        let gw = start_gateway(&config(o.addr(), server_extra));
        let request = format!("GET /x HTTP/1.1\r\nHost: api.test\r\n{FORGED}\r\n");
        let seen = seen(&gw, &request);
        let mut got = forwarding(&seen);
        got.sort();
        let want: Vec<(String, String)> = [
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-host", "api.test"),
            ("x-forwarded-proto", "http"),
            ("x-real-ip", "127.0.0.1"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want, "with [{server_extra}]: {:?}", seen.headers);
        assert_eq!(seen.header("x-client"), Some("127.0.0.1"));
        for (name, value) in &seen.headers {
            for forged in ["6.6.6.6", "7.7.7.7", "2001:db8::6", "evil", "6666"] {
                assert!(!value.contains(forged), "{name}: {value} passed through");
            }
        }
    }
}

#[test]
fn a_trusted_proxys_chain_is_appended_and_names_the_client() {
    let o = origin("o", Mode::Json);
    let log = std::env::temp_dir().join(format!(
        "coregate-test-{}-fwd-access.log",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&log);
    let rest = format!(
        "[rate_limits.per_ip]\nrate_per_second = 0.001\nburst = 1\nkey = \"client_ip\"\n\n\
         [[route]]\nname = \"limited\"\npath_prefix = \"/limited\"\nupstream = \"o\"\n\
         rate_limit = \"per_ip\"\n\n\
         [access_log]\npath = \"{}\"\n",
        log.display()
    );
    let text = format!(
        "{}{}{rest_routes}{}",
        server_toml(1, "trusted_proxies = [\"127.0.0.0/8\", \"10.0.0.0/8\"]"),
        upstream_toml("o", &[o.addr()], ""),
        API_ROUTE,
        rest_routes = rest,
    );
    let gw = start_gateway(&text);

    // The client 203.0.113.9 went through a proxy at 10.1.2.3, then the trusted loopback
    // peer; what it wrote itself (6.6.6.6) stays in the chain but names nobody.
    let request = "GET /x HTTP/1.1\r\nHost: api.test\r\n\
        x-forwarded-for: 6.6.6.6, 203.0.113.9\r\n\
        X-Forwarded-For: 10.1.2.3\r\n\
        X-Forwarded-Proto: https\r\n\
        X-Forwarded-Host: shop.example\r\n\
        X-Real-IP: 6.6.6.6\r\n\
        Forwarded: for=6.6.6.6\r\n\r\n";
    let seen = seen(&gw, request);
    assert_eq!(
        seen.all("x-forwarded-for"),
        ["6.6.6.6, 203.0.113.9, 10.1.2.3, 127.0.0.1"],
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.all("x-real-ip"), ["203.0.113.9"], "{:?}", seen.headers);
    assert_eq!(seen.header("x-client"), Some("203.0.113.9"));
    // The trusted proxy knows the scheme and host the client used.
    assert_eq!(seen.all("x-forwarded-proto"), ["https"]);
    assert_eq!(seen.all("x-forwarded-host"), ["shop.example"]);
    // The gateway never consults Forwarded, so it never passes one on.
    assert!(seen.all("forwarded").is_empty(), "{:?}", seen.headers);

    // An unparsable hop stops the walk: the last good address (the trusted 10.1.2.3) is the
    // client, never the forged one to its left.
    let request = "GET /x HTTP/1.1\r\nHost: api.test\r\n\
        X-Forwarded-For: 6.6.6.6, not-an-ip, 10.1.2.3\r\n\r\n";
    assert_eq!(seen_client(&gw, request), "10.1.2.3");
    // Only trusted hops: the leftmost is the client.
    let request = "GET /x HTTP/1.1\r\nHost: api.test\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n";
    assert_eq!(seen_client(&gw, request), "10.9.9.9");

    // The rate limit keys on the client from X-Forwarded-For: 203.0.113.9's budget of one
    // is spent by its second request whatever the proxy, and 198.51.100.4 has its own.
    let limited = |client: &str, proxy: &str| {
        gw.request(&format!(
            "GET /limited HTTP/1.1\r\nHost: api.test\r\nX-Forwarded-For: {client}, {proxy}\r\n\r\n"
        ))
        .status
    };
    assert_eq!(limited("203.0.113.9", "10.0.0.1"), 200);
    assert_eq!(limited("203.0.113.9", "10.0.0.2"), 429);
    assert_eq!(limited("198.51.100.4", "10.0.0.1"), 200);

    // The access log names the client, not the proxy.
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        eventually(Duration::from_secs(10), || lines().lines().count() >= 6),
        "{}",
        lines()
    );
    let text = lines();
    let _ = std::fs::remove_file(&log);
    let clients: Vec<String> = text
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect(line);
            v["client"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(
        clients,
        [
            "203.0.113.9",
            "10.1.2.3",
            "10.9.9.9",
            "203.0.113.9",
            "203.0.113.9",
            "198.51.100.4"
        ],
        "{text}"
    );
}

/// The `${client_ip}` the origin saw for `request`.
fn seen_client(gw: &Gateway, request: &str) -> String {
    let seen = seen(gw, request);
    let client = seen.header("x-client").expect("X-Client").to_owned();
    assert_eq!(seen.header("x-real-ip"), Some(client.as_str()));
    client
}

#[test]
fn an_aggregate_routes_parts_get_the_same_fresh_forwarding_headers() {
    let o = origin("o", Mode::Json);
    let text = format!(
        "{}{}[[route]]\nname = \"agg\"\npath = \"/agg\"\nmethods = [\"GET\"]\n\n\
         [[route.aggregate]]\nkey = \"part\"\nupstream = \"o\"\npath = \"/part\"\n",
        server_toml(1, ""),
        upstream_toml("o", &[o.addr()], ""),
    );
    let gw = start_gateway(&text);
    let resp = gw.request(&format!(
        "GET /agg HTTP/1.1\r\nHost: api.test\r\n{FORGED}\r\n"
    ));
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    let body = resp.json();
    let headers = body["part"]["headers"].as_array().expect("part headers");
    let mut got: Vec<(String, String)> = headers
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap_or_default().to_ascii_lowercase(),
                pair[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .filter(|(n, _)| n == "forwarded" || n == "x-real-ip" || n.starts_with("x-forwarded-"))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("x-forwarded-for".to_owned(), "127.0.0.1".to_owned()),
            ("x-forwarded-host".to_owned(), "api.test".to_owned()),
            ("x-forwarded-proto".to_owned(), "http".to_owned()),
            ("x-real-ip".to_owned(), "127.0.0.1".to_owned()),
        ],
        "{body}"
    );
}

#[test]
fn a_bad_trusted_proxy_cidr_is_refused_with_its_line() {
    let text = format!(
        "{}{}{}",
        server_toml(
            1,
            "trusted_proxies = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/33\",\n]"
        ),
        upstream_toml("o", &["127.0.0.1:9".parse().unwrap()], ""),
        route_toml("api", "path_prefix = \"/\"", "o"),
    );
    let file = TempFile::new("fwd-cidr", &text);
    let path = file.path().to_str().unwrap().to_owned();
    let (status, stdout, stderr) = run_cli(&["check", "-c", &path]);
    assert_eq!(status.code(), Some(1), "{stdout} {stderr}");
    // server_toml puts `[server]` on line 1 and `workers` on 2, so the bad entry is line 5.
    assert!(stderr.starts_with(&format!("error: {path}:5:")), "{stderr}");
    assert!(stderr.contains("10.0.0.0/33"), "{stderr}");
}

//! Defect 1: the stale fallback served one user's response to another. Each test fills the
//! cache through the real binary from a fixture upstream that answers per request (echoing
//! the credential, cookie or varied header it saw), then makes that upstream fail until the
//! worker's breaker opens, and checks which clients get a stale answer: never one made for
//! somebody else, nor one HTTP caching rules forbid keeping (RFC 9111).
//!
//! The follow-up: the key named the route by its name, and entries outlive a reload, so a
//! reload that reordered unnamed routes handed the default name `route-0`, and with it the
//! old `route-0`'s answers, to another route. The key now holds the route's fingerprint (what
//! it matches, where it forwards, how, and for whom); the reload tests change the config
//! under a running gateway and check who gets the kept answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coregate_engine::policy::jwt::base64url_encode as b64url;

use crate::common::*;

/// One request as the fixture upstream read it.
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    /// The first field called `name`, or "".
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }
}

/// What the fixture answers a request with while it works: extra head lines (each ending in
/// CRLF) and a body, sent as a 200 with Content-Length.
type Respond = fn(&Seen) -> (String, String);

/// A keep-alive upstream on loopback that answers with `respond`, or with an empty 503 (a
/// breaker failure) once `fail` was called. Stops accepting on drop.
struct Upstream {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
}

impl Upstream {
    fn start(respond: Respond) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fixture upstream");
        let addr = listener.local_addr().expect("its address");
        let failing = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        let (fail, stop) = (failing.clone(), stopped.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let fail = fail.clone();
                thread::spawn(move || serve(stream, respond, &fail));
            }
        });
        Upstream {
            addr,
            failing,
            stopped,
        }
    }

    fn fail(&self) {
        self.failing.store(true, Ordering::SeqCst);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Serves requests on one connection until the gateway closes it.
fn serve(stream: TcpStream, respond: Respond, failing: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = match (parts.next(), parts.next()) {
            (Some(m), Some(t)) => (m.to_owned(), t.to_owned()),
            _ => return,
        };
        let mut headers = Vec::new();
        loop {
            let mut field = String::new();
            if reader.read_line(&mut field).unwrap_or(0) == 0 {
                return;
            }
            let field = field.trim_end();
            if field.is_empty() {
                break;
            }
            if let Some((name, value)) = field.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let seen = Seen {
            method,
            target,
            headers,
        };
        let length: usize = seen.header("content-length").parse().unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer = if failing.load(Ordering::SeqCst) {
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_owned()
        } else {
            let (lines, body) = respond(&seen);
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{lines}\r\n{body}",
                body.len()
            )
        };
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
/// SHA-256 of `alice-key`.
const ALICE_KEY_SHA256: &str = "72ee9d4355ccb9d3a4c9dbf37382e38e75c1b1a225b5bd1f729ee91bbda30c20";

/// A gateway with one worker and `server` lines, the upstream `o` (one endpoint, a breaker
/// that opens after three failures and stays open for the test), the JWT verifier `j`, a
/// route `trip` for `/trip` without a fallback, then `routes`.
fn gateway(up: &Upstream, server: &str, routes: &str) -> Gateway {
    let config = format!(
        r#"{server}
[upstreams.o]
endpoints = [{{ address = "{addr}" }}]
connect_timeout_ms = 2000

[upstreams.o.breaker]
consecutive_failures = 3
failure_ratio = 0
cooldown_ms = 600000
cooldown_max_ms = 600000
half_open_probes = 1
failure_statuses = [503]

[auth.jwt.j]
algorithms = ["HS256"]
secret = "{SECRET}"

[[route]]
name = "trip"
path = "/trip"
upstream = "o"

{routes}"#,
        server = server_toml(1, server),
        addr = up.addr,
    );
    start_gateway(&config)
}

/// A route called `name` on upstream `o` with a stale fallback; `fields` are more route keys,
/// `fallback` more fallback keys.
fn stale_route(name: &str, fields: &str, fallback: &str) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\n{fields}\nupstream = \"o\"\n\n\
         [route.fallback]\nstale = true\n{fallback}\n\n"
    )
}

/// `GET target` with these header lines (each ending in CRLF), on a fresh connection.
fn get(gw: &Gateway, target: &str, lines: &str) -> Response {
    gw.request(&format!("GET {target} HTTP/1.1\r\nHost: t\r\n{lines}\r\n"))
}

/// Makes the upstream fail until the worker's breaker is open: the fallback (a 503 with the
/// gateway's JSON body, where the upstream's 503 is empty) answers `/trip`.
fn trip(gw: &Gateway, up: &Upstream) {
    up.fail();
    let opened = eventually(Duration::from_secs(20), || {
        let r = get(gw, "/trip", "");
        r.status == 503 && !r.body.is_empty()
    });
    assert!(opened, "the breaker did not open");
}

/// A fresh answer (not stale) from the working upstream.
#[track_caller]
fn fresh(r: Response) -> Response {
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("x-coregate-stale"), None);
    r
}

/// A stale answer with `body`.
#[track_caller]
fn assert_stale(r: &Response, body: &str) {
    assert_eq!(
        (r.status, r.header("x-coregate-stale")),
        (200, Some("1")),
        "no stale answer: {}",
        r.body_text()
    );
    assert_eq!(r.body_text(), body);
}

/// No stale answer: the fallback's 503, nothing of the cached body or its cookies.
#[track_caller]
fn assert_not_stale(r: &Response, what: &str) {
    assert_eq!(
        r.status,
        503,
        "{what}: got {} {:?} {}",
        r.status,
        r.headers,
        r.body_text()
    );
    assert_eq!(r.header("x-coregate-stale"), None, "{what}");
    assert_eq!(r.header("set-cookie"), None, "{what}");
}

/// Echoes the request's cookie; `/login` hands out a session cookie as well.
fn cookie_page(seen: &Seen) -> (String, String) {
    let body = format!("page for {}", seen.header("cookie"));
    if seen.target == "/login" {
        ("Set-Cookie: session=alice-secret\r\n".to_owned(), body)
    } else {
        (String::new(), body)
    }
}

#[test]
fn a_response_with_set_cookie_is_never_kept_and_cookies_must_match() {
    let up = Upstream::start(cookie_page);
    let gw = gateway(&up, "", &stale_route("r", "path_prefix = \"/\"", ""));
    let login = fresh(get(&gw, "/login", ""));
    assert_eq!(login.header("set-cookie"), Some("session=alice-secret"));
    fresh(get(&gw, "/home", "Cookie: session=alice\r\n"));
    trip(&gw, &up);
    // Bob asks for what alice got: neither her session cookie nor her page.
    assert_not_stale(&get(&gw, "/login", ""), "Set-Cookie response");
    assert_not_stale(&get(&gw, "/home", ""), "bob without cookie");
    assert_not_stale(
        &get(&gw, "/home", "Cookie: session=bob\r\n"),
        "bob with his cookie",
    );
    // Alice, with the same cookie, gets her own page back.
    assert_stale(
        &get(&gw, "/home", "Cookie: session=alice\r\n"),
        "page for session=alice",
    );
}

/// Answers by path: `/private`, `/no-store` and `/flip` (public first, then private) say
/// what they allow in Cache-Control; `/public` allows keeping.
fn cache_control_page(seen: &Seen) -> (String, String) {
    static FLIPPED: AtomicBool = AtomicBool::new(false);
    let control = match seen.target.as_str() {
        "/private" => "private, max-age=60",
        "/no-store" => "no-store",
        "/flip" if FLIPPED.swap(true, Ordering::SeqCst) => "private",
        _ => "public, max-age=60",
    };
    (
        format!("Cache-Control: {control}\r\n"),
        format!("{} for alice", seen.target),
    )
}

#[test]
fn cache_control_private_and_no_store_are_never_kept() {
    let up = Upstream::start(cache_control_page);
    let gw = gateway(&up, "", &stale_route("r", "path_prefix = \"/\"", ""));
    for target in ["/private", "/no-store", "/public", "/flip", "/flip"] {
        fresh(get(&gw, target, ""));
    }
    trip(&gw, &up);
    assert_not_stale(&get(&gw, "/private", ""), "Cache-Control: private");
    assert_not_stale(&get(&gw, "/no-store", ""), "Cache-Control: no-store");
    // The last answer to /flip may not be kept, so the older public one is gone too.
    assert_not_stale(&get(&gw, "/flip", ""), "a newer private answer");
    assert_stale(&get(&gw, "/public", ""), "/public for alice");
}

/// Echoes the credentials the upstream saw.
fn credential_page(seen: &Seen) -> (String, String) {
    let body = format!(
        "secret of {}{}{}",
        seen.header("authorization"),
        seen.header("x-consumer"),
        seen.header("x-user-id")
    );
    (String::new(), body)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An HS256 token for `sub`, valid for ten minutes.
fn token(sub: &str) -> String {
    let header = b64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = b64url(format!(r#"{{"sub":"{sub}","exp":{}}}"#, now() + 600).as_bytes());
    let input = format!("{header}.{claims}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64url(tag.as_ref()))
}

#[test]
fn a_request_with_credentials_is_not_kept_without_the_per_identity_opt_in() {
    let up = Upstream::start(credential_page);
    let routes = [
        stale_route("open", "path_prefix = \"/open\"", ""),
        stale_route("keyed", "path_prefix = \"/keyed\"\nauth = \"k\"", ""),
        stale_route("jwt", "path_prefix = \"/jwt\"\nauth = \"j\"", ""),
    ]
    .concat();
    let keys = format!(
        "[auth.api_keys.k]\nkeys = [{{ consumer = \"alice\", sha256 = \"{ALICE_KEY_SHA256}\" }}]\n\n"
    );
    let gw = gateway(&up, "", &format!("{keys}{routes}"));
    let alice = format!("Authorization: Bearer {}\r\n", token("alice"));
    let key = "X-Api-Key: alice-key\r\n";
    fresh(get(&gw, "/open/x", "Authorization: Bearer alice-token\r\n"));
    fresh(get(&gw, "/keyed/x", key));
    fresh(get(&gw, "/jwt/x", &alice));
    trip(&gw, &up);
    assert_not_stale(&get(&gw, "/open/x", ""), "bob after alice's Authorization");
    assert_not_stale(
        &get(&gw, "/open/x", "Authorization: Bearer alice-token\r\n"),
        "Authorization on a route without auth",
    );
    assert_not_stale(
        &get(&gw, "/keyed/x", key),
        "an API-key route without opt-in",
    );
    assert_not_stale(&get(&gw, "/jwt/x", &alice), "a JWT route without opt-in");
}

#[test]
fn an_authenticated_route_with_the_opt_in_keys_stale_answers_by_identity() {
    let up = Upstream::start(credential_page);
    let routes = stale_route(
        "jwt",
        "path_prefix = \"/\"\nauth = \"j\"",
        "stale_per_identity = true",
    );
    let gw = gateway(&up, "", &routes);
    let alice = format!("Authorization: Bearer {}\r\n", token("alice"));
    let bob = format!("Authorization: Bearer {}\r\n", token("bob"));
    let page = fresh(get(&gw, "/me", &alice)).body_text();
    assert!(page.ends_with("alice"), "{page}");
    trip(&gw, &up);
    assert_not_stale(&get(&gw, "/me", &bob), "bob on alice's page");
    assert_eq!(get(&gw, "/me", "").status, 401, "no token, no answer");
    assert_stale(&get(&gw, "/me", &alice), &page);
}

/// Varies on Accept-Language at `/lang`, on everything (`Vary: *`) elsewhere.
fn vary_page(seen: &Seen) -> (String, String) {
    let vary = if seen.target == "/lang" {
        "Accept-Language"
    } else {
        "*"
    };
    (
        format!("Vary: {vary}\r\n"),
        format!("in {}", seen.header("accept-language")),
    )
}

#[test]
fn vary_is_honoured_and_vary_star_never_kept() {
    let up = Upstream::start(vary_page);
    let gw = gateway(&up, "", &stale_route("r", "path_prefix = \"/\"", ""));
    fresh(get(&gw, "/lang", "Accept-Language: en\r\n"));
    fresh(get(&gw, "/star", "Accept-Language: en\r\n"));
    trip(&gw, &up);
    assert_not_stale(
        &get(&gw, "/lang", "Accept-Language: fr\r\n"),
        "another language",
    );
    assert_not_stale(&get(&gw, "/lang", ""), "no language");
    assert_not_stale(&get(&gw, "/star", "Accept-Language: en\r\n"), "Vary: *");
    assert_stale(&get(&gw, "/lang", "Accept-Language: en\r\n"), "in en");
}

/// Echoes the route's version header and the method.
fn version_page(seen: &Seen) -> (String, String) {
    (
        String::new(),
        format!("{} version={}", seen.method, seen.header("x-version")),
    )
}

#[test]
fn routes_and_methods_keep_apart() {
    let up = Upstream::start(version_page);
    let routes = [
        stale_route(
            "v2",
            "path_prefix = \"/\"\nheaders = { \"x-version\" = \"2\" }",
            "",
        ),
        stale_route("v1", "path_prefix = \"/\"", ""),
    ]
    .concat();
    let gw = gateway(&up, "", &routes);
    fresh(get(&gw, "/r", "X-Version: 2\r\n"));
    trip(&gw, &up);
    assert_not_stale(&get(&gw, "/r", ""), "another route, same target");
    let post =
        gw.request("POST /r HTTP/1.1\r\nHost: t\r\nX-Version: 2\r\nContent-Length: 0\r\n\r\n");
    assert_not_stale(&post, "another method");
    assert_stale(&get(&gw, "/r", "X-Version: 2\r\n"), "GET version=2");
}

/// The answering request's own lines: its request id, never the one of the request that
/// filled the cache.
#[test]
fn a_stale_answer_carries_the_answering_requests_own_lines() {
    let up = Upstream::start(version_page);
    let gw = gateway(
        &up,
        "",
        &stale_route("r", "path_prefix = \"/\"\nrequest_id = true", ""),
    );
    let first = fresh(get(&gw, "/x", "X-Request-Id: alice-request\r\n"));
    assert_eq!(first.header("x-request-id"), Some("alice-request"));
    trip(&gw, &up);
    let stale = get(&gw, "/x", "X-Request-Id: bob-request\r\n");
    assert_stale(&stale, "GET version=");
    let ids: Vec<&str> = stale
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-request-id"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(ids, ["bob-request"]);
}

/// A body of 1500 bytes per target.
fn big_page(seen: &Seen) -> (String, String) {
    let mut body = seen.target.clone();
    body.extend(std::iter::repeat_n('.', 1500 - body.len()));
    (String::new(), body)
}

#[test]
fn the_byte_bound_evicts_the_oldest_answers() {
    let up = Upstream::start(big_page);
    // Two answers of about 1.7 KiB each fit in 4 KiB; a third pushes out the first.
    let gw = gateway(
        &up,
        "stale_bytes_max = 4096",
        &stale_route("r", "path_prefix = \"/\"", ""),
    );
    let pages: Vec<String> = ["/a", "/b", "/c"]
        .iter()
        .map(|t| fresh(get(&gw, t, "")).body_text())
        .collect();
    trip(&gw, &up);
    assert_not_stale(&get(&gw, "/a", ""), "the oldest answer");
    assert_stale(&get(&gw, "/b", ""), &pages[1]);
    assert_stale(&get(&gw, "/c", ""), &pages[2]);
}

// ---------------------------------------------------------------------------------------
// Follow-up: stale answers across a reload

/// Answers `upstream NAME for TARGET`, naming the fixture by the `X-Up` field the route adds.
fn named_page(seen: &Seen) -> (String, String) {
    (
        String::new(),
        format!("upstream {} for {}", seen.header("x-up"), seen.target),
    )
}

/// Upstream `name` over `up` with the breaker of [`gateway`] (opens after three 503s, stays
/// open for the test).
fn breaker_upstream(name: &str, up: &Upstream) -> String {
    format!(
        "[upstreams.{name}]\nendpoints = [{{ address = \"{}\" }}]\nconnect_timeout_ms = 2000\n\n\
         [upstreams.{name}.breaker]\nconsecutive_failures = 3\nfailure_ratio = 0\n\
         cooldown_ms = 600000\ncooldown_max_ms = 600000\nhalf_open_probes = 1\n\
         failure_statuses = [503]\n\n",
        up.addr
    )
}

/// An unnamed route (so called `route-N` by its position) with `fields`, to `upstream`, that
/// tells the fixture which upstream it is and has a stale fallback.
fn unnamed_stale_route(fields: &str, upstream: &str) -> String {
    format!(
        "[[route]]\n{fields}\nupstream = \"{upstream}\"\n\n\
         [route.request_headers]\nset = {{ \"x-up\" = \"{upstream}\" }}\n\n\
         [route.fallback]\nstale = true\n\n"
    )
}

/// One worker, the admin listener, upstreams `a` and `b`, then `routes`.
fn reload_config(a: &Upstream, b: &Upstream, routes: &str) -> String {
    format!(
        "{}{}{}{routes}{ADMIN_TOML}",
        server_toml(1, ""),
        breaker_upstream("a", a),
        breaker_upstream("b", b),
    )
}

/// Rewrites the config, signals the reload and waits until the admin listener reports
/// config `version`.
fn reload_to(gw: &Gateway, admin: SocketAddr, text: &str, version: u64) {
    gw.rewrite_config(&text.replace("{admin}", &admin.to_string()));
    gw.signal(libc::SIGHUP);
    let serving = eventually(Duration::from_secs(20), || {
        admin_get(admin, "/config").json()["version"].as_u64() == Some(version)
    });
    assert!(serving, "version {version} not served: {}", gw.stderr());
}

/// Makes `up` fail until its breaker is open: `target` (on a route to `up`) gets the
/// fallback's 503 with the gateway's JSON body, where the upstream's 503 is empty.
fn trip_at(gw: &Gateway, up: &Upstream, target: &str) {
    up.fail();
    let opened = eventually(Duration::from_secs(20), || {
        let r = get(gw, target, "");
        r.status == 503 && !r.body.is_empty()
    });
    assert!(opened, "the breaker did not open");
}

/// A reload that reorders unnamed routes hands the default name `route-0` to another route.
/// Its upstream down, that route must answer with its own fallback, never with the stale
/// answer the old `route-0` kept for the same GET. Before the fix the cache was keyed by the
/// route's name, and the new `route-0` served the old one's answer from upstream `a`.
#[test]
fn a_route_that_takes_an_old_routes_default_name_never_gets_its_stale_answers() {
    let (a, b) = (Upstream::start(named_page), Upstream::start(named_page));
    let before = [
        unnamed_stale_route("path_prefix = \"/x\"", "a"),
        unnamed_stale_route("path_prefix = \"/\"", "b"),
    ]
    .concat();
    let (gw, admin) = start_gateway_with_admin(&reload_config(&a, &b, &before));
    let kept = fresh(get(&gw, "/x", "")).body_text();
    assert_eq!(kept, "upstream a for /x");

    // Reordered: `route-0` is now the catch-all to `b`, and `/x` is no longer a's.
    let after = [
        unnamed_stale_route("path_prefix = \"/\"", "b"),
        unnamed_stale_route("path_prefix = \"/y\"", "a"),
    ]
    .concat();
    reload_to(&gw, admin, &reload_config(&a, &b, &after), 2);
    trip_at(&gw, &b, "/trip");
    assert_not_stale(
        &get(&gw, "/x", ""),
        "the new route-0 on the old route-0's answer",
    );

    // Reverted: the route that made the answer is back, and only it gets the answer again.
    reload_to(&gw, admin, &reload_config(&a, &b, &before), 3);
    trip_at(&gw, &a, "/x/trip");
    assert_stale(&get(&gw, "/x", ""), &kept);
}

/// A route whose meaning a reload changed under the same name (here its upstream request:
/// another path prefix) starts without stale answers; one the reload left alone keeps them,
/// even when routes were added in front of it, so a reload during an outage loses nothing it
/// may keep.
#[test]
fn stale_answers_survive_a_reload_only_for_an_unchanged_route() {
    let (a, b) = (Upstream::start(named_page), Upstream::start(named_page));
    let route = |rewrite: &str| {
        format!(
            "[[route]]\nname = \"r\"\npath_prefix = \"/x\"\n{rewrite}\nupstream = \"a\"\n\n\
             [route.request_headers]\nset = {{ \"x-up\" = \"a\" }}\n\n\
             [route.fallback]\nstale = true\n\n"
        )
    };
    let (gw, admin) = start_gateway_with_admin(&reload_config(&a, &b, &route("")));
    let kept = fresh(get(&gw, "/x/1", "")).body_text();
    assert_eq!(kept, "upstream a for /x/1");

    // Unchanged, with a new route in front of it.
    let added = unnamed_stale_route("path_prefix = \"/b\"", "b");
    let unchanged = format!("{added}{}", route(""));
    reload_to(&gw, admin, &reload_config(&a, &b, &unchanged), 2);
    fresh(get(&gw, "/b", ""));
    trip_at(&gw, &a, "/x/trip");
    assert_stale(&get(&gw, "/x/1", ""), &kept);

    // The same name, but its upstream now gets another path: the old answer is not its own.
    let changed = format!("{added}{}", route("replace_prefix = \"/v2\""));
    reload_to(&gw, admin, &reload_config(&a, &b, &changed), 3);
    assert_not_stale(&get(&gw, "/x/1", ""), "a route changed under the same name");
}

//! Live reload: SIGHUP and file changes publish a new snapshot without dropping a request;
//! bad files and changes that need a restart are rejected while the old config keeps serving.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use coregate_loadtest::load::{self, RunConfig, Target};

/// A config whose only route sends everything to `target` (one of the upstreams `a`, `b`).
fn routes_to(a: SocketAddr, b: SocketAddr, target: &str) -> String {
    format!(
        "{}{}{}{}{ADMIN_TOML}",
        server_toml(2, ""),
        upstream_toml("a", &[a], ""),
        upstream_toml("b", &[b], ""),
        route_toml("all", "path_prefix = \"/\"", target)
    )
}

/// The admin address survives rewrites: the file must keep naming the same one.
fn with_admin(text: &str, admin: SocketAddr) -> String {
    text.replace("{admin}", &admin.to_string())
}

fn config_version(admin: SocketAddr) -> u64 {
    admin_get(admin, "/config").json()["version"]
        .as_u64()
        .expect("/config has a version")
}

fn origin_of(gw: &Gateway) -> String {
    gw.get("/x")
        .header("x-origin")
        .unwrap_or("<none>")
        .to_owned()
}

#[test]
fn sighup_switches_routes_for_new_requests_and_kept_alive_connections() {
    let (a, b) = (origin("a", Mode::Json), origin("b", Mode::Json));
    let (gw, admin) = start_gateway_with_admin(&routes_to(a.addr(), b.addr(), "a"));
    let mut kept = gw.connect();
    kept.send(b"GET /1 HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(kept.read_response().header("x-origin"), Some("a"));

    gw.rewrite_config(&with_admin(&routes_to(a.addr(), b.addr(), "b"), admin));
    gw.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || config_version(admin) == 2),
        "no version 2; stderr:\n{}",
        gw.stderr()
    );
    assert_eq!(origin_of(&gw), "b");
    // The connection opened before the reload uses the new routes for its next request.
    kept.send(b"GET /2 HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(kept.read_response().header("x-origin"), Some("b"));
    assert!(
        gw.stderr().contains("now serving version 2"),
        "{}",
        gw.stderr()
    );
    assert_eq!(
        metric(admin, "coregate_config_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );
}

#[test]
fn a_changed_file_is_reloaded_without_a_signal() {
    let (a, b) = (origin("a", Mode::Json), origin("b", Mode::Json));
    let (gw, admin) = start_gateway_with_admin(&routes_to(a.addr(), b.addr(), "a"));
    assert_eq!(origin_of(&gw), "a");
    gw.rewrite_config(&with_admin(&routes_to(a.addr(), b.addr(), "b"), admin));
    assert!(
        eventually(Duration::from_secs(5), || origin_of(&gw) == "b"),
        "the file change was not picked up; stderr:\n{}",
        gw.stderr()
    );
    assert!(
        gw.stderr().contains("reload (file change)"),
        "{}",
        gw.stderr()
    );
    // Rewriting the same content is not a reload.
    gw.rewrite_config(&with_admin(&routes_to(a.addr(), b.addr(), "b"), admin));
    gw.signal(libc::SIGHUP);
    assert!(gw.stderr_contains_within("unchanged", Duration::from_secs(5)));
    assert_eq!(config_version(admin), 2);
}

#[test]
fn a_bad_file_is_rejected_with_its_line_and_the_old_config_keeps_serving() {
    let (a, b) = (origin("a", Mode::Json), origin("b", Mode::Json));
    let (gw, admin) = start_gateway_with_admin(&routes_to(a.addr(), b.addr(), "a"));
    let good = with_admin(&routes_to(a.addr(), b.addr(), "a"), admin);
    let bad = good.replace("upstream = \"a\"", "upstream = \"nope\"");
    assert_ne!(good, bad);
    let line = bad
        .lines()
        .position(|l| l.contains("\"nope\""))
        .expect("bad line")
        + 1;
    gw.rewrite_config(&bad);
    gw.signal(libc::SIGHUP);
    let path = gw.config_path().unwrap().display().to_string();
    let wanted = format!("rejected: {path}:{line}:");
    assert!(
        gw.stderr_contains_within(&wanted, Duration::from_secs(5)),
        "no {wanted:?} in stderr:\n{}",
        gw.stderr()
    );
    assert!(gw.stderr().contains("no upstream named `nope`"));
    assert_eq!(origin_of(&gw), "a");
    assert_eq!(config_version(admin), 1);
    // At least once: the file watch may have tried the file before the signal did.
    let invalid = metric(admin, "coregate_config_reloads_total{result=\"invalid\"}");
    assert!(invalid.unwrap_or(0.0) >= 1.0, "{invalid:?}");
    let config = admin_get(admin, "/config").json();
    let last = config["reloads"]["last_error"].as_str().unwrap_or_default();
    assert!(last.contains("no upstream named"), "{config}");
    // A fixed file is taken again.
    gw.rewrite_config(&good.replace("path_prefix = \"/\"", "path_prefix = \"/x\""));
    gw.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || config_version(admin) == 2));
}

#[test]
fn listener_and_worker_changes_need_a_restart_and_change_nothing() {
    let (a, b) = (origin("a", Mode::Json), origin("b", Mode::Json));
    let (gw, admin) = start_gateway_with_admin(&routes_to(a.addr(), b.addr(), "a"));
    let other = free_addr();
    // The routes change too: nothing of it may apply.
    let moved = with_admin(&routes_to(a.addr(), b.addr(), "b"), admin)
        .replace("{listen}", &other.to_string());
    gw.rewrite_config(&moved);
    gw.signal(libc::SIGHUP);
    assert!(
        gw.stderr_contains_within(
            "needs a restart: listener addresses changed",
            Duration::from_secs(5)
        ),
        "{}",
        gw.stderr()
    );
    assert_eq!(origin_of(&gw), "a");
    let workers = with_admin(&routes_to(a.addr(), b.addr(), "b"), admin)
        .replace("workers = 2", "workers = 1");
    gw.rewrite_config(&workers);
    gw.signal(libc::SIGHUP);
    assert!(
        gw.stderr_contains_within("server.workers changed (2 → 1)", Duration::from_secs(5)),
        "{}",
        gw.stderr()
    );
    assert_eq!(origin_of(&gw), "a");
    assert_eq!(config_version(admin), 1);
    let rejected = metric(
        admin,
        "coregate_config_reloads_total{result=\"needs_restart\"}",
    );
    assert!(rejected.unwrap_or(0.0) >= 2.0, "{rejected:?}");
}

/// Sends requests back to back over keep-alive connections (a fresh one every
/// `PER_CONNECTION` requests) until `stop`; every response must be a 200 from `a` or `b`.
fn client_loop(
    addr: SocketAddr,
    stop: &AtomicBool,
    sent: &AtomicU64,
    errors: &Mutex<Vec<String>>,
    seen: &Mutex<std::collections::BTreeMap<String, u64>>,
) {
    const PER_CONNECTION: usize = 50;
    while !stop.load(Ordering::Relaxed) {
        let mut client = Client::connect(addr);
        for i in 0..PER_CONNECTION {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let request = format!("GET /r/{i} HTTP/1.1\r\nHost: test\r\n\r\n");
            if let Err(e) = client.stream.write_all(request.as_bytes()) {
                errors.lock().unwrap().push(format!("write: {e}"));
                break;
            }
            sent.fetch_add(1, Ordering::Relaxed);
            match client.try_read_response(false) {
                Ok(resp) => {
                    let origin = resp.header("x-origin").unwrap_or("<none>").to_owned();
                    if resp.status != 200 || (origin != "a" && origin != "b") {
                        errors.lock().unwrap().push(format!(
                            "status {} from {origin}: {}",
                            resp.status,
                            resp.body_text()
                        ));
                    }
                    *seen.lock().unwrap().entry(origin).or_insert(0) += 1;
                }
                Err(e) => {
                    errors.lock().unwrap().push(e);
                    break;
                }
            }
        }
    }
}

#[test]
fn two_hundred_reloads_under_load_fail_no_request() {
    const RELOADS: u64 = 200;
    const CLIENTS: usize = 2;
    let (a, b) = (origin("a", Mode::Json), origin("b", Mode::Json));
    let (gw, admin) = start_gateway_with_admin(&routes_to(a.addr(), b.addr(), "a"));
    let tables = [
        with_admin(&routes_to(a.addr(), b.addr(), "a"), admin),
        with_admin(&routes_to(a.addr(), b.addr(), "b"), admin),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (stop, sent, errors, seen) =
                (stop.clone(), sent.clone(), errors.clone(), seen.clone());
            let addr = gw.addr;
            std::thread::spawn(move || client_loop(addr, &stop, &sent, &errors, &seen))
        })
        .collect();
    // And a fixed-rate (open-loop) client, the load harness's: requests leave on schedule
    // whatever the answers do, so a stall would show as errors or timeouts, not as a pause.
    let open_loop = {
        let url = format!("http://{}/r/open", gw.addr);
        std::thread::spawn(move || {
            let mut cfg = RunConfig::new(Target::parse(&url).expect("target"));
            cfg.rate = Some(400.0);
            cfg.connections = 8;
            cfg.duration = Duration::from_secs(6);
            load::run(&cfg, |_| {}).expect("open-loop run")
        })
    };
    for i in 1..=RELOADS {
        gw.rewrite_config(&tables[(i % 2) as usize]);
        gw.signal(libc::SIGHUP);
        // Each rewrite changes the content, so it is exactly one new version, whether the
        // signal or the file watch gets there first.
        assert!(
            eventually(Duration::from_secs(10), || config_version(admin) == 1 + i),
            "reload {i} not applied; stderr:\n{}",
            gw.stderr()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let report = open_loop.join().expect("open-loop thread");
    let e = &report.errors;
    assert_eq!(
        (e.connect, e.read, e.write, e.timeout, e.parse),
        (0, 0, 0, 0, 0),
        "open-loop errors during reloads"
    );
    assert!(
        report.statuses.iter().all(|&(status, _)| status == 200) && !report.statuses.is_empty(),
        "{:?}",
        report.statuses
    );
    let errors = errors.lock().unwrap();
    let seen = seen.lock().unwrap();
    let total = sent.load(Ordering::Relaxed);
    assert!(
        errors.is_empty(),
        "{} of {total} requests failed, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert!(total >= RELOADS, "only {total} requests sent");
    assert!(
        seen.get("a").copied().unwrap_or(0) > 0 && seen.get("b").copied().unwrap_or(0) > 0,
        "{seen:?}"
    );
    assert_eq!(
        metric(admin, "coregate_config_reloads_total{result=\"ok\"}"),
        Some(RELOADS as f64)
    );
    assert!(!gw.stderr().contains("rejected"), "{}", gw.stderr());
}

#[test]
fn a_request_in_flight_finishes_on_the_config_it_started_with() {
    let a = origin_with("a", Mode::Slow, |c| c.delay_ms = 1000);
    let b = origin("b", Mode::Json);
    let (gw, admin) = start_gateway_with_admin(&routes_to(a.addr(), b.addr(), "a"));
    let mut busy = gw.connect();
    busy.send(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(eventually(Duration::from_secs(5), || a.requests() == 1));
    gw.rewrite_config(&with_admin(&routes_to(a.addr(), b.addr(), "b"), admin));
    gw.signal(libc::SIGHUP);
    assert!(eventually(Duration::from_secs(5), || config_version(admin) == 2));
    assert_eq!(origin_of(&gw), "b");
    let resp = busy.read_response();
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    assert_eq!(resp.header("x-origin"), Some("a"));
    // Its next request on the same connection takes the new routes.
    busy.send(b"GET /next HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(busy.read_response().header("x-origin"), Some("b"));
}

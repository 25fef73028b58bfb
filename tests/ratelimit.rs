//! Rate limiting end to end: 429 with Retry-After and RateLimit-* once a key's budget is
//! spent, separate budgets per key, RateLimit-* on admitted responses, and the per-worker
//! buckets syncing into one global limit across two workers.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn config(origin: std::net::SocketAddr, workers: usize, rate: f64, burst: u32) -> String {
    format!(
        r#"[server]
workers = {workers}
rate_limit_sync_interval_ms = 100

[[listener]]
address = "{{listen}}"

[upstreams.o]
endpoints = [{{ address = "{origin}" }}]

[rate_limits.per_client]
rate_per_second = {rate:?}
burst = {burst}
key = "header:x-client"

[[route]]
name = "limited"
path_prefix = "/"
upstream = "o"
rate_limit = "per_client"
"#
    )
}

fn get(gw: &Gateway, client: &str) -> Response {
    gw.request(&format!(
        "GET /x HTTP/1.1\r\nHost: t\r\nX-Client: {client}\r\n\r\n"
    ))
}

#[test]
fn a_spent_budget_gets_429_with_headers_and_keys_are_separate() {
    let o = origin("o", Mode::Json);
    let gw = start_gateway(&config(o.addr(), 1, 1.0, 5));
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(get(&gw, "alice"));
    }
    let ok = statuses.iter().filter(|r| r.status == 200).count();
    assert!((5..=6).contains(&ok), "burst 5 at 1/s admitted {ok}");
    let first = &statuses[0];
    assert_eq!(first.header("ratelimit-limit"), Some("5"));
    assert!(first.header("ratelimit-remaining").is_some());
    let refused = statuses.iter().find(|r| r.status == 429).expect("a 429");
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert_eq!(refused.header("ratelimit-remaining"), Some("0"));
    assert!(refused.body_text().contains("rate limit"));
    // Another key has its own budget.
    assert_eq!(get(&gw, "bob").status, 200);
}

/// Two workers, traffic on many connections (so both workers serve the key): over 4 s the
/// admitted count stays near rate × time + burst, which no per-worker limit could give.
#[test]
fn two_workers_share_one_global_limit() {
    let o = origin("o", Mode::Fixed);
    let (rate, burst, secs) = (50.0, 10u32, 4.0);
    let gw = Arc::new(start_gateway(&config(o.addr(), 2, rate, burst)));
    let admitted = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (gw, admitted) = (gw.clone(), admitted.clone());
            std::thread::spawn(move || {
                // Uneven load: thread 0 sends far more than the others.
                let pause = if i == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_millis(20)
                };
                let mut client = gw.connect();
                while Instant::now() < deadline {
                    client.send(b"GET /x HTTP/1.1\r\nHost: t\r\nX-Client: shared\r\n\r\n");
                    let r = client.read_response();
                    if r.status == 200 {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(pause);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let got = admitted.load(Ordering::Relaxed) as f64;
    let expected = rate * secs + f64::from(burst);
    assert!(
        (got - expected).abs() <= expected * 0.05,
        "admitted {got}, expected about {expected}"
    );
}

//! The I/O driver a worker gets: io_uring where the kernel allows it, and the epoll fallback,
//! announced at start-up, where it does not. The fallback is forced for real by setting
//! `kernel.io_uring_disabled = 2` (needs root; this file holds only this test, so no other
//! test binary runs while the sysctl is changed). The old value is restored on every exit.
//!
//! On the fallback the gateway is driven through the paths the runtime's epoll driver carries
//! differently from io_uring: keep-alive request after request, a body larger than the
//! socket buffers both ways (writes that wait for room), a connection that goes quiet long
//! enough to park (readiness, then the next request), and the upstream timer.

mod common;

use common::*;
use coregate_loadtest::origin::Mode;

const SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";

/// Puts the sysctl back when dropped, also when an assertion fails.
struct Restore(String);

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(SYSCTL, &self.0);
    }
}

/// The fixtures: a JSON origin for everything, an echo origin under /echo, a slow one
/// (3 s) under /slow with a 300 ms response-header timeout.
struct Origins {
    json: Origin,
    echo: Origin,
    slow: Origin,
}

fn origins() -> Origins {
    Origins {
        json: origin("o", Mode::Json),
        echo: origin("e", Mode::Echo),
        slow: origin_with("s", Mode::Slow, |c| c.delay_ms = 3000),
    }
}

fn config(o: &Origins) -> String {
    format!(
        "[server]\nworkers = 1\n\n[[listener]]\naddress = \"{{listen}}\"\n\n{}{}{}{}{}{}",
        upstream_toml("o", &[o.json.addr()], ""),
        upstream_toml("e", &[o.echo.addr()], ""),
        upstream_toml("s", &[o.slow.addr()], "response_header_timeout_ms = 300"),
        route_toml("echo", "path_prefix = \"/echo\"", "e"),
        route_toml("slow", "path_prefix = \"/slow\"", "s"),
        route_toml("all", "path_prefix = \"/\"", "o")
    )
}

/// The paths the epoll driver carries differently, on one gateway.
fn exercise(gw: &Gateway) {
    let mut client = Client::connect(gw.addr);
    for i in 0..20 {
        client.send(request_text("GET", "x", &format!("/k{i}"), &[]).as_bytes());
        assert_eq!(client.read_response().status, 200, "request {i}");
    }
    // More than the socket buffers hold, so writes wait for room on both sides.
    let body: Vec<u8> = (0..600_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut post = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(&body);
    client.send(&post);
    let echoed = client.read_response();
    assert_eq!(echoed.status, 200);
    assert!(echoed.body == body, "echoed {} bytes", echoed.body.len());
    // Quiet for longer than a connection waits before parking; the next request wakes it.
    std::thread::sleep(std::time::Duration::from_millis(400));
    client.send(request_text("GET", "x", "/after-park", &[]).as_bytes());
    assert_eq!(client.read_response().status, 200);
    // The worker's timer fires on this driver too.
    assert_eq!(gw.get("/slow").status, 504);
}

#[test]
fn io_uring_by_default_and_epoll_when_it_is_disabled() {
    let o = origins();
    let Ok(before) = std::fs::read_to_string(SYSCTL) else {
        eprintln!("skipped: {SYSCTL} not readable on this kernel");
        return;
    };
    if before.trim() == "0" {
        let gw = start_gateway(&config(&o));
        let lines = gw.stdout_lines();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("worker 0:") && l.contains("driver io_uring")),
            "{lines:?}"
        );
        assert_eq!(gw.get("/x").status, 200);
    }
    if std::fs::write(SYSCTL, "2").is_err() {
        eprintln!("skipped the fallback half: cannot write {SYSCTL} (not root)");
        return;
    }
    let _restore = Restore(before);
    let gw = start_gateway(&config(&o));
    let lines = gw.stdout_lines();
    assert!(
        lines.iter().any(
            |l| l.starts_with("worker 0:") && l.contains("driver epoll (io_uring unavailable)")
        ),
        "{lines:?}"
    );
    assert_eq!(gw.get("/x").status, 200);
    exercise(&gw);
}

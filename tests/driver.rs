//! The I/O driver a worker gets: io_uring where the kernel allows it, and the epoll fallback,
//! announced at start-up, where it does not. The fallback is forced for real by setting
//! `kernel.io_uring_disabled = 2` (needs root; this file holds only this test, so no other
//! test binary runs while the sysctl is changed). The old value is restored on every exit.

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

fn config(origin: std::net::SocketAddr) -> String {
    format!(
        "[server]\nworkers = 1\n\n[[listener]]\naddress = \"{{listen}}\"\n\n{}{}",
        upstream_toml("o", &[origin], ""),
        route_toml("all", "path_prefix = \"/\"", "o")
    )
}

#[test]
fn io_uring_by_default_and_epoll_when_it_is_disabled() {
    let o = origin("o", Mode::Json);
    let Ok(before) = std::fs::read_to_string(SYSCTL) else {
        eprintln!("skipped: {SYSCTL} not readable on this kernel");
        return;
    };
    if before.trim() == "0" {
        let gw = start_gateway(&config(o.addr()));
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
    let gw = start_gateway(&config(o.addr()));
    let lines = gw.stdout_lines();
    assert!(
        lines.iter().any(
            |l| l.starts_with("worker 0:") && l.contains("driver epoll (io_uring unavailable)")
        ),
        "{lines:?}"
    );
    assert_eq!(gw.get("/x").status, 200);
}

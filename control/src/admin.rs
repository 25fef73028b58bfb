//! The admin listener: a small blocking HTTP/1.1 server on its own threads and its own
//! address (never a public listener), answering from the control side's [`Status`].
//!
//! `GET /metrics` (Prometheus text), `/healthz` (the process is alive), `/ready` (config
//! loaded, every worker serving, not draining), `/config` (version, hash, file, load time,
//! reload counters) and `/upstreams` (endpoints and their health). Never touches a worker: it
//! reads what the control thread last stored.
//!
//! Orchestrators poll `/healthz` and `/ready`, so no client may hold the listener up:
//! - connections are served concurrently, one short-lived thread each, at most
//!   [`CONNECTIONS_MAX`] at once; one beyond that gets a `503` (written without waiting)
//!   and is closed;
//! - the whole request head must arrive within [`HEAD_TIMEOUT_MS`] of the accept (a client
//!   dribbling a byte at a time is cut, `408`), and the answer must be taken within
//!   [`WRITE_TIMEOUT_MS`]; one request per connection (`Connection: close`).
//!
//! DNS rebinding: a web page on an attacker's name can have that name resolve to 127.0.0.1
//! and then read this listener from the victim's browser, same-origin. So only requests whose
//! `Host` names this listener are answered: `localhost`, a loopback address, or the address
//! the connection came in on (the listen address; the pod or host IP when it listens on all
//! addresses), with any port or none (a page can pick the port, never put one of these names
//! in `Host`; port forwarding changes the port). Any other `Host` gets `421 Misdirected
//! Request` (RFC 9110 §15.5.20). An HTTP/1.0 request without `Host` is answered (a browser
//! always sends one); an HTTP/1.1 one is refused with `400` (RFC 9112 §3.2).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coregate_config::Balancer;
use serde_json::{json, Value};

use coregate_engine::access_log::rfc3339;

use crate::metrics::{escape, header};
use crate::Status;

/// Longest admin request head read.
const HEAD_BYTES_MAX: usize = 8 * 1024;
/// Most header fields an admin request may carry.
const HEADERS_MAX: usize = 64;
/// Admin connections served at once; one more is answered `503` and closed.
pub const CONNECTIONS_MAX: usize = 64;
/// Time from the accept to the end of the request head, however the bytes trickle in.
pub const HEAD_TIMEOUT_MS: u64 = 5_000;
/// Time to write the whole answer, however slowly the client reads.
pub const WRITE_TIMEOUT_MS: u64 = 5_000;
/// Pause after a failed accept (say EMFILE), so the loop does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 20;
/// Stack of a connection thread: it parses one small head and formats one answer.
const CONNECTION_STACK_BYTES: usize = 256 * 1024;

/// Serves `listener` on a new thread until the process ends.
pub fn spawn(listener: TcpListener, status: Arc<Mutex<Status>>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("coregate-admin".to_owned())
        .spawn(move || {
            let open = Arc::new(AtomicUsize::new(0));
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => accept(stream, &status, &open),
                    Err(_) => std::thread::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)),
                }
            }
        })?;
    Ok(())
}

/// Hands an accepted connection to a thread of its own, or refuses it when
/// [`CONNECTIONS_MAX`] are being served.
fn accept(stream: TcpStream, status: &Arc<Mutex<Status>>, open: &Arc<AtomicUsize>) {
    let started = Instant::now();
    if open.fetch_add(1, Ordering::AcqRel) >= CONNECTIONS_MAX {
        open.fetch_sub(1, Ordering::AcqRel);
        refuse(stream);
        return;
    }
    // Counted out when the thread ends, whichever way it ends.
    let slot = Slot(open.clone());
    let status = status.clone();
    let spawned = std::thread::Builder::new()
        .name("coregate-admin-conn".to_owned())
        .stack_size(CONNECTION_STACK_BYTES)
        .spawn(move || {
            let _slot = slot;
            serve(stream, &status, started);
        });
    // On failure the closure, with the stream and the slot, is dropped: closed and counted.
    drop(spawned);
}

/// One of the [`CONNECTIONS_MAX`] slots, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tells a connection beyond the bound to come back later, without waiting on it: the
/// answer goes into the empty socket buffer or not at all. What the client already sent is
/// read first (as far as it is there), so that the close is a FIN after the answer rather
/// than a reset that may discard it.
fn refuse(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(true);
    let mut sent = [0u8; 1024];
    let _ = stream.read(&mut sent);
    let body = json_text(&json!({"error": "too many admin connections", "status": 503}));
    let _ = stream.write_all(response(503, "application/json", &body, false).as_bytes());
}

fn serve(mut stream: TcpStream, status: &Mutex<Status>, started: Instant) {
    let head_deadline = started + Duration::from_millis(HEAD_TIMEOUT_MS);
    let head = match read_head(&mut stream, head_deadline) {
        Ok(head) => head,
        Err(HeadError::TooLarge) => {
            let body = error_json(431, "request head too large");
            return reply(&mut stream, 431, &body, false);
        }
        Err(HeadError::Timeout) => {
            let body = error_json(408, "request head not received in time");
            return reply(&mut stream, 408, &body, false);
        }
        Err(HeadError::Closed) => return,
    };
    let mut fields = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut fields);
    let (code, kind, body, head_only) = match req.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {
            let local = stream.local_addr().ok().map(|a| a.ip());
            let method = req.method.unwrap_or("");
            let head_only = method == "HEAD";
            match host_check(req.version, req.headers, local) {
                Err((code, why)) => (code, JSON, error_json(code, why), head_only),
                Ok(()) if method != "GET" && !head_only => {
                    (405, JSON, error_json(405, "method not allowed"), false)
                }
                Ok(()) => {
                    let target = req.path.unwrap_or("");
                    let path = target.split('?').next().unwrap_or("");
                    let (code, kind, body) = answer(path, status);
                    (code, kind, body, head_only)
                }
            }
        }
        Ok(httparse::Status::Partial) | Err(_) => {
            (400, JSON, error_json(400, "malformed request"), false)
        }
    };
    let deadline = Instant::now() + Duration::from_millis(WRITE_TIMEOUT_MS);
    let _ = write_by(
        &mut stream,
        response(code, kind, &body, head_only).as_bytes(),
        deadline,
    );
}

/// How reading a request head failed.
enum HeadError {
    TooLarge,
    Timeout,
    Closed,
}

/// Reads up to the end of the request head (what follows, if anything, is ignored: one
/// request per connection), by `deadline` in total.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::Timeout);
        }
        // A zero timeout would mean none; `left` is not zero here.
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) => return Err(HeadError::Closed),
            Ok(n) => {
                // Only the bytes that could complete `\r\n\r\n` are searched again.
                let from = head.len().saturating_sub(3);
                head.extend_from_slice(&chunk[..n]);
                if let Some(end) = head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                    head.truncate(from + end + 4);
                    return Ok(head);
                }
                if head.len() > HEAD_BYTES_MAX {
                    return Err(HeadError::TooLarge);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Err(HeadError::Closed),
        }
    }
}

/// Whether the request's `Host` names this listener (module doc): Err(status, reason) if not.
fn host_check(
    version: Option<u8>,
    fields: &[httparse::Header<'_>],
    local: Option<IpAddr>,
) -> Result<(), (u16, &'static str)> {
    let mut hosts = fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case("host"));
    let host = match (hosts.next(), hosts.next()) {
        (Some(host), None) => host.value,
        (None, _) if version == Some(0) => return Ok(()),
        (None, _) => return Err((400, "missing Host")),
        (Some(_), Some(_)) => return Err((400, "more than one Host")),
    };
    let Ok(host) = std::str::from_utf8(host) else {
        return Err((400, "malformed Host"));
    };
    match admin_host(host.trim_matches([' ', '\t']), local) {
        Some(true) => Ok(()),
        Some(false) => Err((421, "this is the admin listener: Host must be localhost, a loopback address or the address it listens on")),
        None => Err((400, "malformed Host")),
    }
}

/// Whether `host` (a `Host` value: `name[:port]`, `IPv4[:port]`, `[IPv6][:port]`) is
/// `localhost`, a loopback address or `local`, whatever the port; None when it does not
/// parse as a `Host` value (RFC 9110 §7.2: `uri-host [ ":" port ]`).
fn admin_host(host: &str, local: Option<IpAddr>) -> Option<bool> {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            let port = if after.is_empty() {
                ""
            } else {
                after.strip_prefix(':')?
            };
            (v6, port)
        }
        None => host.split_once(':').unwrap_or((host, "")),
    };
    if !port.bytes().all(|b| b.is_ascii_digit())
        || (!port.is_empty() && port.parse::<u16>().is_err())
    {
        return None;
    }
    if name.eq_ignore_ascii_case("localhost") {
        return Some(true);
    }
    let ip = if host.starts_with('[') {
        IpAddr::V6(name.parse().ok()?)
    } else {
        match name.parse::<std::net::Ipv4Addr>() {
            Ok(v4) => IpAddr::V4(v4),
            // A name (or nothing): not one of this listener's.
            Err(_) => return Some(false),
        }
    };
    Some(ip.is_loopback() || local.is_some_and(|local| same_ip(local, ip)))
}

/// `a == b`, with an IPv4-mapped IPv6 address equal to its IPv4 one (a dual-stack socket
/// reports IPv4 clients' connections that way).
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

const JSON: &str = "application/json";

fn error_json(code: u16, why: &str) -> String {
    json_text(&json!({"error": why, "status": code}))
}

/// Writes `body` as the answer, by a [`WRITE_TIMEOUT_MS`] deadline.
fn reply(stream: &mut TcpStream, code: u16, body: &str, head_only: bool) {
    let deadline = Instant::now() + Duration::from_millis(WRITE_TIMEOUT_MS);
    let _ = write_by(
        stream,
        response(code, JSON, body, head_only).as_bytes(),
        deadline,
    );
}

/// Writes all of `bytes` by `deadline`, however slowly the peer reads.
fn write_by(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Status, content type and body for `path`.
fn answer(path: &str, status: &Mutex<Status>) -> (u16, &'static str, String) {
    let status = match status.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    match path {
        "/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(&status),
        ),
        "/healthz" => (200, JSON, json_text(&json!({"status": "alive"}))),
        "/ready" => {
            let serving = status.workers - status.workers_exited;
            let ready = !status.draining && serving == status.workers;
            let body = json!({
                "ready": ready,
                "config_version": status.snapshot.version,
                "workers": status.workers,
                "workers_serving": serving,
                "draining": status.draining,
            });
            (if ready { 200 } else { 503 }, JSON, json_text(&body))
        }
        "/config" => (200, JSON, json_text(&config(&status))),
        "/upstreams" => (200, JSON, json_text(&upstreams(&status))),
        _ => (
            404,
            JSON,
            json_text(&json!({
                "error": "not found",
                "status": 404,
                "paths": ["/metrics", "/healthz", "/ready", "/config", "/upstreams"],
            })),
        ),
    }
}

fn json_text(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// The whole answer: status line, fields, and the body unless `head_only`.
fn response(code: u16, kind: &str, body: &str, head_only: bool) -> String {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    out
}

fn metrics(status: &Status) -> String {
    let mut extra = String::new();
    header(
        &mut extra,
        "coregate_config_version",
        "gauge",
        "Version of the config snapshot being served (1 at start, +1 per reload).",
    );
    let _ = writeln!(extra, "coregate_config_version {}", status.snapshot.version);
    header(
        &mut extra,
        "coregate_workers_serving",
        "gauge",
        "Worker threads serving.",
    );
    let _ = writeln!(
        extra,
        "coregate_workers_serving {}",
        status.workers - status.workers_exited
    );
    header(
        &mut extra,
        "coregate_upstream_endpoint_up",
        "gauge",
        "1 when an endpoint takes traffic, 0 when its health checks took it out.",
    );
    for upstream in &status.snapshot.config.upstreams {
        for endpoint in &upstream.endpoints {
            let up = status.health.get(&endpoint.address).is_none_or(|h| h.up);
            let _ = writeln!(
                extra,
                "coregate_upstream_endpoint_up{{upstream=\"{}\",endpoint=\"{}\"}} {}",
                escape(&upstream.name),
                endpoint.address,
                u8::from(up)
            );
        }
    }
    status.metrics.render(&extra)
}

fn config(status: &Status) -> Value {
    let config = &status.snapshot.config;
    let source = &config.source;
    json!({
        "version": status.snapshot.version,
        "hash": format!("fnv1a64:{:016x}", source.hash),
        "file": source.path.as_ref().map(|p| p.display().to_string()),
        "source": source.display_name,
        "loaded_at": rfc3339(source.loaded_at),
        "loaded_at_unix_ms": unix_ms(source.loaded_at),
        "listeners": config.listeners.iter().map(|l| json!({
            "name": l.name, "address": l.address.to_string()
        })).collect::<Vec<_>>(),
        "routes": config.routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "upstreams": config.upstreams.iter().map(|u| u.name.clone()).collect::<Vec<_>>(),
        "reloads": {
            "ok": status.metrics.reloads_ok,
            "invalid": status.metrics.reloads_invalid,
            "needs_restart": status.metrics.reloads_needs_restart,
            "last_error": status.last_reload_error,
        },
    })
}

fn upstreams(status: &Status) -> Value {
    let list: Vec<Value> = status
        .snapshot
        .config
        .upstreams
        .iter()
        .map(|u| {
            let endpoints: Vec<Value> = u
                .endpoints
                .iter()
                .map(|e| {
                    let (health, detail) = match status.health.get(&e.address) {
                        None => ("unchecked", json!(null)),
                        Some(h) => (
                            if h.up { "up" } else { "down" },
                            json!({
                                "consecutive_successes": h.successes,
                                "consecutive_failures": h.failures,
                                "last_probe": match &h.last {
                                    None => json!(null),
                                    Some(Ok(())) => json!("ok"),
                                    Some(Err(why)) => json!(why),
                                },
                            }),
                        ),
                    };
                    // Each worker keeps its own breaker for the endpoint.
                    let breakers: Vec<Value> = status
                        .breakers
                        .iter()
                        .flat_map(|(worker, reports)| {
                            reports
                                .iter()
                                .filter(|b| *b.upstream == *u.name && b.endpoint == e.address)
                                .map(move |b| {
                                    json!({
                                        "worker": worker,
                                        "state": b.state,
                                        "trips": b.trips,
                                        "recoveries": b.recoveries,
                                    })
                                })
                        })
                        .collect();
                    json!({
                        "address": e.address.to_string(),
                        "weight": e.weight,
                        "health": health,
                        "checks": detail,
                        "breakers": breakers,
                    })
                })
                .collect();
            let balancer = match &u.balancer {
                Balancer::RoundRobin => "round_robin",
                Balancer::LeastOutstanding => "least_outstanding",
                Balancer::ConsistentHash(_) => "consistent_hash",
            };
            json!({
                "name": u.name,
                "balancer": balancer,
                "health_check": u.health_check.as_ref().map(|c| json!({
                    "path": c.path,
                    "interval_ms": c.interval_ms,
                    "timeout_ms": c.timeout_ms,
                    "healthy_threshold": c.healthy_threshold,
                    "unhealthy_threshold": c.unhealthy_threshold,
                    "expected_status": c.expected_status,
                })),
                "endpoints": endpoints,
            })
        })
        .collect();
    json!({
        "health_version": status.health_version,
        "upstreams": list,
    })
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::admin_host;
    use std::net::IpAddr;

    #[test]
    fn only_names_of_this_listener_pass_the_host_check() {
        let local: Option<IpAddr> = "10.1.2.3".parse().ok();
        for (host, want) in [
            ("localhost", Some(true)),
            ("LocalHost:9901", Some(true)),
            ("localhost:1", Some(true)),
            ("127.0.0.1", Some(true)),
            ("127.9.8.7:9901", Some(true)),
            ("[::1]", Some(true)),
            ("[::1]:9901", Some(true)),
            ("10.1.2.3:9901", Some(true)),
            ("[::ffff:10.1.2.3]:9901", Some(true)),
            ("10.1.2.4:9901", Some(false)),
            ("evil.example", Some(false)),
            ("evil.example:9901", Some(false)),
            ("localhost.evil.example", Some(false)),
            ("127.0.0.1.evil.example", Some(false)),
            ("localhost.", Some(false)),
            ("", Some(false)),
            ("[::2]", Some(false)),
            ("localhost:99999", None),
            ("localhost:9901:1", None),
            ("localhost:x", None),
            ("[::1", None),
            ("[::1]x", None),
            ("[evil]", None),
        ] {
            assert_eq!(admin_host(host, local), want, "{host:?}");
        }
    }
}

//! The admin listener: a small blocking HTTP/1.1 server on its own thread and its own
//! address (never a public listener), answering from the control side's [`Status`].
//!
//! `GET /metrics` (Prometheus text), `/healthz` (the process is alive), `/ready` (config
//! loaded, every worker serving, not draining), `/config` (version, hash, file, load time,
//! reload counters) and `/upstreams` (endpoints and their health). One connection at a time,
//! `Connection: close`, with short socket timeouts so a stuck client cannot hold it long. Never
//! touches a worker: it reads what the control thread last stored.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coregate_config::Balancer;
use serde_json::{json, Value};

use coregate_engine::access_log::rfc3339;

use crate::metrics::{escape, header};
use crate::Status;

/// Longest admin request head read.
const HEAD_BYTES_MAX: usize = 8 * 1024;
/// Read and write timeout of an admin connection.
const IO_TIMEOUT_MS: u64 = 2_000;

/// Serves `listener` on a new thread until the process ends.
pub fn spawn(listener: TcpListener, status: Arc<Mutex<Status>>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("coregate-admin".to_owned())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => serve(stream, &status),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })?;
    Ok(())
}

fn serve(mut stream: TcpStream, status: &Mutex<Status>) {
    let timeout = Some(Duration::from_millis(IO_TIMEOUT_MS));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > HEAD_BYTES_MAX {
            let _ = respond(&mut stream, 431, "text/plain", "head too large\n", false);
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        let _ = respond(
            &mut stream,
            405,
            "application/json",
            &json_text(&json!({"error": "method not allowed", "status": 405})),
            false,
        );
        return;
    }
    let (code, kind, body) = answer(path, status);
    let _ = respond(&mut stream, code, kind, &body, head_only);
}

/// Status, content type and body for `path`.
fn answer(path: &str, status: &Mutex<Status>) -> (u16, &'static str, String) {
    let status = match status.lock() {
        Ok(s) => s,
        Err(poisoned) => poisoned.into_inner(),
    };
    const JSON: &str = "application/json";
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

fn respond(
    stream: &mut TcpStream,
    code: u16,
    kind: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
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
    stream.write_all(out.as_bytes())?;
    stream.flush()
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

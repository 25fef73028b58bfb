//! The result of a run: a [`Report`] built from the merged measurements, printed for people
//! ([`Report::text`]) or as one JSON object for machines ([`Report::json`]).

use std::fmt::Write;

use serde_json::{json, Map, Value};

use super::stats::{ErrorCounts, ErrorKind, Stats};
use super::{ConnectionMode, RunConfig};
use crate::runtime::Driver;

/// Latency percentiles of the counted responses (microseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

/// What a run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub url: String,
    pub method: String,
    pub connections: usize,
    pub threads: usize,
    /// The I/O driver the threads ran on.
    pub driver: Driver,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Open loop: the requested rate (requests per second); None for a closed loop.
    pub rate: Option<f64>,
    /// Keep-alive or a new connection per request.
    pub conn: ConnectionMode,
    /// The URL is https.
    pub tls: bool,
    /// Responses counted (after the warm-up, complete before the end).
    pub responses: u64,
    /// Counted responses per second of measured time.
    pub throughput_rps: f64,
    pub bytes_read: u64,
    /// Connections opened for counted requests.
    pub connections_opened: u64,
    /// TLS handshakes of those connections: full (certificate sent) and resumed.
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
    pub errors: ErrorCounts,
    /// Responses by status, ascending; status 0 stands for codes of 600 and up.
    pub statuses: Vec<(u16, u64)>,
    pub latency: Latency,
}

impl Report {
    pub(super) fn new(cfg: &RunConfig, threads: usize, driver: Driver, stats: &Stats) -> Self {
        let histogram = &stats.latency_us;
        let duration_s = cfg.duration.as_secs_f64();
        let responses = stats.responses();
        Report {
            url: cfg.target.url(),
            method: cfg.method.clone(),
            connections: cfg.connections,
            threads,
            driver,
            duration_s,
            warmup_s: cfg.warmup.as_secs_f64(),
            rate: cfg.rate,
            conn: cfg.conn,
            tls: cfg.target.tls,
            responses,
            throughput_rps: responses as f64 / duration_s,
            bytes_read: stats.bytes_read,
            connections_opened: stats.connections,
            handshakes_full: stats.handshakes_full,
            handshakes_resumed: stats.handshakes_resumed,
            errors: stats.errors,
            statuses: stats.statuses(),
            latency: Latency {
                p50_us: histogram.value_at_quantile(0.50),
                p90_us: histogram.value_at_quantile(0.90),
                p99_us: histogram.value_at_quantile(0.99),
                p999_us: histogram.value_at_quantile(0.999),
                max_us: histogram.max(),
                mean_us: histogram.mean(),
            },
        }
    }

    fn mode(&self) -> &'static str {
        if self.rate.is_some() {
            "open"
        } else {
            "closed"
        }
    }

    /// A few lines for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let loop_kind = match self.rate {
            Some(rate) => format!("open loop at {rate} req/s"),
            None => "closed loop".to_owned(),
        };
        // Writes into a String cannot fail.
        let reuse = match self.conn {
            ConnectionMode::KeepAlive => "kept alive",
            ConnectionMode::New if self.tls => "new per request, full handshakes",
            ConnectionMode::Resume if self.tls => "new per request, sessions resumed",
            ConnectionMode::New | ConnectionMode::Resume => "new per request",
        };
        let _ = writeln!(
            out,
            "{} {} for {:.1}s (warm-up {:.1}s), {loop_kind}, {} connections ({reuse}) on {} \
             threads ({})",
            self.method,
            self.url,
            self.duration_s,
            self.warmup_s,
            self.connections,
            self.threads,
            self.driver
        );
        let _ = writeln!(
            out,
            "  requests   {} ({:.1} req/s), {:.1} MiB read",
            self.responses,
            self.throughput_rps,
            self.bytes_read as f64 / (1024.0 * 1024.0)
        );
        let l = &self.latency;
        let _ = writeln!(
            out,
            "  latency us p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.mean_us
        );
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, count)| format!("{status}: {count}"))
            .collect();
        let _ = writeln!(out, "  status     {}", statuses.join(", "));
        let _ = write!(out, "  connected  {}", self.connections_opened);
        if self.tls {
            let _ = write!(
                out,
                " (TLS handshakes: {} full, {} resumed)",
                self.handshakes_full, self.handshakes_resumed
            );
        }
        out.push('\n');
        let errors: Vec<String> = ErrorKind::ALL
            .iter()
            .map(|&kind| format!("{} {}", kind.name(), self.errors.get(kind)))
            .collect();
        let _ = writeln!(out, "  errors     {}", errors.join(", "));
        out
    }

    /// One JSON object for machines.
    pub fn json(&self) -> Value {
        let mut errors = Map::new();
        for kind in ErrorKind::ALL {
            errors.insert(kind.name().to_owned(), json!(self.errors.get(kind)));
        }
        errors.insert("total".to_owned(), json!(self.errors.total()));
        let statuses: Map<String, Value> = self
            .statuses
            .iter()
            .map(|(status, count)| (status.to_string(), json!(count)))
            .collect();
        let l = &self.latency;
        json!({
            "url": self.url,
            "method": self.method,
            "mode": self.mode(),
            "rate": self.rate,
            "conn": self.conn.name(),
            "connections": self.connections,
            "threads": self.threads,
            "driver": self.driver.to_string(),
            "duration_s": self.duration_s,
            "warmup_s": self.warmup_s,
            "requests": self.responses,
            "throughput_rps": self.throughput_rps,
            "bytes_read": self.bytes_read,
            "connections_opened": self.connections_opened,
            "tls_handshakes": if self.tls {
                json!({ "full": self.handshakes_full, "resumed": self.handshakes_resumed })
            } else {
                Value::Null
            },
            "latency_us": {
                "p50": l.p50_us,
                "p90": l.p90_us,
                "p99": l.p99_us,
                "p99_9": l.p999_us,
                "max": l.max_us,
                "mean": l.mean_us,
            },
            "status": statuses,
            "errors": errors,
        })
    }
}

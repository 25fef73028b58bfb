//! Merging the workers' stats reports, and rendering them in the Prometheus text format.
//!
//! Workers send deltas (see `coregate_engine::stats`); this adds them up per route name, so a
//! route keeps its counters across reloads that reorder the routes. Runs on the control
//! thread; the admin thread renders under the status lock. Nothing here is on a request path.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use coregate_engine::stats::{latency_histogram, Rejection, StatsReport, TlsCounters};
use hdrhistogram::Histogram;

/// Quantiles exported for each latency summary.
const QUANTILES: [(f64, &str); 3] = [(0.5, "0.5"), (0.99, "0.99"), (0.999, "0.999")];

/// What one route saw since start.
pub struct RouteTotals {
    /// By status class, 1xx..5xx.
    pub responses: [u64; 5],
    pub latency_us: Histogram<u64>,
}

/// Everything the gateway counted since start.
pub struct Metrics {
    pub routes: BTreeMap<String, RouteTotals>,
    pub rejections: [u64; Rejection::COUNT],
    pub upstream_latency_us: Histogram<u64>,
    pub connections_accepted: u64,
    /// Per worker, the latest gauge.
    pub connections_open: Vec<u64>,
    pub reloads_ok: u64,
    pub reloads_invalid: u64,
    pub reloads_needs_restart: u64,
    pub access_log_bytes: u64,
    pub access_log_errors: u64,
    pub json_filter_skipped: u64,
    pub upstream_truncated: u64,
    pub jwt_cache_hits: u64,
    pub jwt_cache_misses: u64,
    pub tls: TlsCounters,
}

impl Metrics {
    pub fn new(workers: usize) -> Metrics {
        Metrics {
            routes: BTreeMap::new(),
            rejections: [0; Rejection::COUNT],
            upstream_latency_us: latency_histogram(),
            connections_accepted: 0,
            connections_open: vec![0; workers],
            reloads_ok: 0,
            reloads_invalid: 0,
            reloads_needs_restart: 0,
            access_log_bytes: 0,
            access_log_errors: 0,
            json_filter_skipped: 0,
            upstream_truncated: 0,
            jwt_cache_hits: 0,
            jwt_cache_misses: 0,
            tls: TlsCounters::default(),
        }
    }

    /// Makes sure every route of the served config has a line, even before traffic.
    pub fn know_routes<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) {
        for name in names {
            self.routes
                .entry(name.to_owned())
                .or_insert_with(|| RouteTotals {
                    responses: [0; 5],
                    latency_us: latency_histogram(),
                });
        }
    }

    /// Adds one worker's report.
    pub fn add(&mut self, report: &StatsReport) {
        for route in &report.routes {
            let totals = self
                .routes
                .entry(route.name.to_string())
                .or_insert_with(|| RouteTotals {
                    responses: [0; 5],
                    latency_us: latency_histogram(),
                });
            for (sum, n) in totals.responses.iter_mut().zip(route.responses) {
                *sum += n;
            }
            // Both histograms have the same bounds, so adding cannot fail.
            let _ = totals.latency_us.add(&route.latency_us);
        }
        for (sum, n) in self.rejections.iter_mut().zip(report.rejections) {
            *sum += n;
        }
        let _ = self.upstream_latency_us.add(&report.upstream_latency_us);
        self.connections_accepted += report.connections_accepted;
        self.json_filter_skipped += report.json_filter_skipped;
        self.upstream_truncated += report.upstream_truncated;
        self.jwt_cache_hits += report.jwt_cache_hits;
        self.jwt_cache_misses += report.jwt_cache_misses;
        self.tls.add(&report.tls);
        if let Some(open) = self.connections_open.get_mut(report.worker) {
            *open = report.connections_open;
        }
    }

    /// Responses relayed for `route`, all classes.
    pub fn route_requests(&self, route: &str) -> u64 {
        self.routes
            .get(route)
            .map_or(0, |r| r.responses.iter().sum())
    }

    /// The Prometheus text exposition (format 0.0.4). `extra` is appended as is (gauges the
    /// caller knows, e.g. config version and endpoint health).
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::with_capacity(4096);
        header(
            &mut out,
            "coregate_requests_total",
            "counter",
            "Responses relayed from upstreams, by route and status class.",
        );
        for (name, route) in &self.routes {
            for (class, n) in route.responses.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "coregate_requests_total{{route=\"{}\",class=\"{}xx\"}} {n}",
                    escape(name),
                    class + 1
                );
            }
        }
        let rejections: Vec<(&str, u64)> = Rejection::ALL
            .iter()
            .map(|&kind| (kind.name(), self.rejections[kind as usize]))
            .collect();
        series(
            &mut out,
            "coregate_rejections_total",
            "counter",
            "Requests the gateway answered itself, by reason.",
            "reason",
            &rejections,
        );
        header(
            &mut out,
            "coregate_request_duration_us",
            "summary",
            "Time from the complete request head to the end of the response, microseconds.",
        );
        for (name, route) in &self.routes {
            summary(
                &mut out,
                "coregate_request_duration_us",
                &format!("route=\"{}\"", escape(name)),
                &route.latency_us,
            );
        }
        header(
            &mut out,
            "coregate_upstream_duration_us",
            "summary",
            "Time from sending a request upstream to its complete response head, microseconds.",
        );
        summary(
            &mut out,
            "coregate_upstream_duration_us",
            "",
            &self.upstream_latency_us,
        );
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            series(out, name, "counter", help, "", &[("", value)]);
        };
        counter(
            &mut out,
            "coregate_connections_accepted_total",
            "Client connections accepted.",
            self.connections_accepted,
        );
        counter(
            &mut out,
            "coregate_json_filter_skipped_total",
            "Responses of JSON-filtered routes passed unchanged (too large, not JSON or not length-framed).",
            self.json_filter_skipped,
        );
        counter(
            &mut out,
            "coregate_upstream_truncated_total",
            "Close-delimited upstream bodies cut short (reset, stall, or TLS close without close_notify); the client saw no clean end.",
            self.upstream_truncated,
        );
        series(
            &mut out,
            "coregate_jwt_cache_lookups_total",
            "counter",
            "Verified-token cache lookups of JWT routes: hit (no signature check) or miss.",
            "result",
            &[
                ("hit", self.jwt_cache_hits),
                ("miss", self.jwt_cache_misses),
            ],
        );
        let tls = &self.tls;
        series(
            &mut out,
            "coregate_tls_handshakes_total",
            "counter",
            "Client TLS handshakes by result: ok (full), resumed, failed (refused or broken off) or timeout.",
            "result",
            &[
                ("ok", tls.handshakes - tls.resumed),
                ("resumed", tls.resumed),
                ("failed", tls.failures),
                ("timeout", tls.timeouts),
            ],
        );
        counter(
            &mut out,
            "coregate_https_redirects_total",
            "Plain HTTP requests answered with a redirect to HTTPS.",
            tls.redirects,
        );
        counter(
            &mut out,
            "coregate_upstream_tls_failures_total",
            "TLS handshakes to upstream endpoints that failed.",
            tls.upstream_failures,
        );
        series(
            &mut out,
            "coregate_connections_open",
            "gauge",
            "Client connections open, as last reported by each worker.",
            "",
            &[("", self.connections_open.iter().sum::<u64>())],
        );
        series(
            &mut out,
            "coregate_config_reloads_total",
            "counter",
            "Config reloads by result: ok, invalid (rejected file) or needs_restart.",
            "result",
            &[
                ("ok", self.reloads_ok),
                ("invalid", self.reloads_invalid),
                ("needs_restart", self.reloads_needs_restart),
            ],
        );
        counter(
            &mut out,
            "coregate_access_log_bytes_total",
            "Bytes appended to the access log.",
            self.access_log_bytes,
        );
        counter(
            &mut out,
            "coregate_access_log_errors_total",
            "Failed writes to the access log (the batch is dropped).",
            self.access_log_errors,
        );
        out.push_str(extra);
        out
    }
}

/// `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A metric with its `# HELP` and `# TYPE` lines and one sample per `(label value, value)`;
/// `label` empty: one unlabelled sample.
fn series(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) {
    header(out, name, kind, help);
    for (value_of_label, value) in values {
        if label.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{label}=\"{value_of_label}\"}} {value}");
        }
    }
}

/// A summary: the quantiles, `_sum` and `_count`.
fn summary(out: &mut String, name: &str, labels: &str, h: &Histogram<u64>) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (q, label) in QUANTILES {
        let value = if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q)
        };
        let _ = writeln!(out, "{name}{{{labels}{sep}quantile=\"{label}\"}} {value}");
    }
    let braces = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    // hdrhistogram keeps no exact sum; mean × count is within its 1 % resolution.
    let sum = (h.mean() * h.len() as f64).round() as u64;
    let _ = writeln!(out, "{name}_sum{braces} {sum}");
    let _ = writeln!(out, "{name}_count{braces} {}", h.len());
}

/// A label value with `\`, `"` and newlines escaped, as the text format asks.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use coregate_engine::stats::RouteStats;

    fn report(worker: usize, route: &str, ok: u64, latency_us: u64) -> StatsReport {
        let mut r = RouteStats::new(route);
        r.responses[1] = ok;
        for _ in 0..ok {
            r.latency_us.record(latency_us).unwrap();
        }
        let mut rejections = [0; Rejection::COUNT];
        rejections[Rejection::NoRoute as usize] = 1;
        StatsReport {
            worker,
            snapshot_version: 1,
            routes: vec![r],
            rejections,
            upstream_latency_us: latency_histogram(),
            connections_accepted: 2,
            connections_open: 1,
            breakers: Vec::new(),
            json_filter_skipped: 0,
            upstream_truncated: 0,
            jwt_cache_hits: 5,
            jwt_cache_misses: 1,
            tls: TlsCounters::default(),
        }
    }

    #[test]
    fn reports_add_up_by_route_name() {
        let mut m = Metrics::new(2);
        m.add(&report(0, "users", 3, 100));
        m.add(&report(1, "users", 4, 200));
        m.add(&report(1, "orders", 1, 50));
        assert_eq!(m.route_requests("users"), 7);
        assert_eq!(m.route_requests("orders"), 1);
        assert_eq!(m.rejections[Rejection::NoRoute as usize], 3);
        assert_eq!(m.connections_accepted, 6);
        assert_eq!(m.connections_open, vec![1, 1]);
        let text = m.render("");
        assert!(
            text.contains("coregate_requests_total{route=\"users\",class=\"2xx\"} 7"),
            "{text}"
        );
        assert!(text.contains("coregate_rejections_total{reason=\"no_route\"} 3"));
        assert!(text.contains("coregate_request_duration_us{route=\"users\",quantile=\"0.99\"}"));
        assert!(text.contains("coregate_request_duration_us_count{route=\"users\"} 7"));
        assert!(text.contains("coregate_upstream_duration_us{quantile=\"0.5\"} 0"));
        assert!(text.contains("coregate_jwt_cache_lookups_total{result=\"hit\"} 15"));
        assert!(text.contains("coregate_jwt_cache_lookups_total{result=\"miss\"} 3"));
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}

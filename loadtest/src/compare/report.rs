//! The result of a comparison, as Markdown tables for people and perf.md
//! ([`CompareReport::markdown`]) or one JSON object for machines ([`CompareReport::json`]).

use std::fmt::Write;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use super::{
    cpu_us_median, CompareConfig, IdleMemory, Kind, Measurement, Scenario, ScenarioResult,
    TargetResult,
};

/// The pairs with a ratio line of their own besides coregate against nginx and HAProxy: how
/// far the forwarder floor is below nginx, how far coregate is above that floor, and (with
/// `--baseline`) coregate against the other build.
const EXTRA_PAIRS: [(Kind, Kind); 3] = [
    (Kind::Forwarder, Kind::Nginx),
    (Kind::Coregate, Kind::Forwarder),
    (Kind::Coregate, Kind::Baseline),
];

/// Everything a comparison measured, with what it ran on.
#[derive(Debug, Clone)]
pub struct CompareReport {
    pub cfg: CompareConfig,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// The model name of the first CPU in /proc/cpuinfo.
    pub cpu_model: String,
    /// The running kernel's release.
    pub kernel: String,
    /// The open-file limit the load ran with.
    pub open_files_limit: u64,
    /// The version line of each proxy found.
    pub versions: Vec<(Kind, String)>,
    /// Proxies not measured, and why.
    pub skipped: Vec<(Kind, String)>,
    /// Idle keep-alive connection memory per proxy, or why it was not measured.
    pub idle: Vec<(Kind, Result<IdleMemory, String>)>,
    pub scenarios: Vec<ScenarioResult>,
}

impl CompareReport {
    pub(super) fn new(cfg: &CompareConfig, open_files_limit: u64) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".to_owned(), |(_, model)| model.trim().to_owned());
        CompareReport {
            cfg: cfg.clone(),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or("unknown".to_owned(), |s| s.trim().to_owned()),
            open_files_limit,
            versions: Vec::new(),
            skipped: Vec::new(),
            idle: Vec::new(),
            scenarios: Vec::new(),
        }
    }

    /// Markdown: the set-up, one table per scenario, ratios against nginx, HAProxy and the
    /// forwarder, and the idle-connection memory.
    pub fn markdown(&self) -> String {
        let cfg = &self.cfg;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Machine: {} CPUs, {}, kernel {}.",
            self.cpus, self.cpu_model, self.kernel
        );
        for (kind, version) in &self.versions {
            let _ = writeln!(out, "- {}: {version}", kind.name());
        }
        let _ = writeln!(
            out,
            "\nProxies and the forwarder pinned to cores {:?}; origin and load generator to \
             cores {:?}. \
             {} keep-alive connections, {:.1} s measured after {:.1} s of warm-up per run, \
             {} round(s) of each (medians shown: throughput and CPU per request of the \
             closed loop; latency and CPU per request of the open-loop run of median p99).",
            cfg.proxy_cores,
            cfg.other_cores,
            cfg.connections,
            cfg.duration.as_secs_f64(),
            cfg.warmup.as_secs_f64(),
            cfg.rounds
        );
        for (kind, why) in &self.skipped {
            let _ = writeln!(out, "\nNot measured: {}: {why}", kind.name());
        }
        for scenario in &self.scenarios {
            scenario_markdown(&mut out, scenario, cfg);
        }
        if !self.idle.is_empty() {
            let _ = writeln!(
                out,
                "\n#### Idle keep-alive connections (one request each, then idle)\n"
            );
            let _ = writeln!(
                out,
                "| target | connections | RSS before | RSS after | per connection |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|");
            for (kind, result) in &self.idle {
                match result {
                    Ok(m) => {
                        let _ = writeln!(
                            out,
                            "| {} | {} | {:.1} MiB | {:.1} MiB | {:.0} B |",
                            kind.name(),
                            m.connections,
                            mib(m.rss_before_bytes),
                            mib(m.rss_after_bytes),
                            m.bytes_per_connection()
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(out, "| {} | not measured: {e} | | | |", kind.name());
                    }
                }
            }
            if cfg.targets.contains(&Kind::Forwarder) {
                let _ = writeln!(
                    out,
                    "\nThe forwarder is not measured here: it holds two buffers per connection \
                     by design, a floor of CPU, not of memory."
                );
            }
        }
        out
    }

    /// One JSON object with every run, rounds included.
    pub fn json(&self) -> Value {
        let cfg = &self.cfg;
        json!({
            "machine": {
                "cpus": self.cpus,
                "cpu_model": self.cpu_model,
                "kernel": self.kernel,
                "open_files_limit": self.open_files_limit,
            },
            "config": {
                "connections": cfg.connections,
                "duration_s": cfg.duration.as_secs_f64(),
                "warmup_s": cfg.warmup.as_secs_f64(),
                "rounds": cfg.rounds,
                "proxy_cores": cfg.proxy_cores,
                "other_cores": cfg.other_cores,
                "rate": cfg.rate,
                "idle_connections": cfg.idle_connections,
            },
            "versions": self.versions.iter()
                .map(|(kind, v)| (kind.name().to_owned(), json!(v)))
                .collect::<serde_json::Map<_, _>>(),
            "skipped": self.skipped.iter()
                .map(|(kind, why)| (kind.name().to_owned(), json!(why)))
                .collect::<serde_json::Map<_, _>>(),
            "idle": self.idle.iter().map(|(kind, result)| match result {
                Ok(m) => json!({
                    "target": kind.name(),
                    "connections": m.connections,
                    "rss_before_bytes": m.rss_before_bytes,
                    "rss_after_bytes": m.rss_after_bytes,
                    "bytes_per_connection": m.bytes_per_connection(),
                }),
                Err(e) => json!({ "target": kind.name(), "error": e }),
            }).collect::<Vec<_>>(),
            "scenarios": self.scenarios.iter().map(scenario_json).collect::<Vec<_>>(),
        })
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn scenario_markdown(out: &mut String, scenario: &ScenarioResult, cfg: &CompareConfig) {
    let rounds = cfg.rounds;
    let _ = writeln!(
        out,
        "\n#### Scenario {} (origin body {} bytes), fixed rate {:.0} req/s\n",
        scenario.scenario.name(),
        scenario.scenario.body_bytes(),
        scenario.rate
    );
    match scenario.scenario {
        Scenario::Policies => {
            let _ = writeln!(
                out,
                "coregate+policies: the route requires an HS256 JWT (`Authorization: Bearer`, \
                 the same token on every request) and applies a rate limit per client IP of \
                 {limit} req/s, burst {limit} (nothing refused); coregate+es256: the same with \
                 an ES256 JWT checked against a JWKS file.\n",
                limit = super::policies::RATE_LIMIT
            );
        }
        Scenario::AccessLog => {
            let _ = writeln!(
                out,
                "coregate+access-log: `[access_log]` on, one JSON line per request to a file \
                 (CPU counted over the whole process, the control thread writing the file \
                 included).\n"
            );
        }
        Scenario::Https => {
            let _ = writeln!(
                out,
                "Each proxy terminates TLS (TLS 1.2 and 1.3, an ECDSA P-256 certificate, session \
                 tickets and a session cache on) in front of the plain-HTTP origin; the origin \
                 alone serves HTTPS itself (rustls). This table: keep-alive connections, one \
                 handshake each; the next: a new connection per request.{}\n",
                if cfg.targets.contains(&Kind::Forwarder) {
                    " The forwarder speaks no TLS and is not run here."
                } else {
                    ""
                }
            );
        }
        Scenario::Small | Scenario::Body16k => {}
    }
    let _ = writeln!(
        out,
        "| target | req/s (closed) | CPU µs/req (closed) | core busy (closed) | \
         CPU µs/req (at rate) | p50 µs | p99 µs | p99.9 µs | errors |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for target in &scenario.targets {
        let Some(closed) = target.closed_median() else {
            continue;
        };
        let throughput = if rounds > 1 {
            let (low, high) = throughput_range(target);
            format!("{:.0} ({low:.0}–{high:.0})", closed.throughput_rps)
        } else {
            format!("{:.0}", closed.throughput_rps)
        };
        let name = row_name(target.kind);
        let errors: u64 = target
            .closed
            .iter()
            .chain(&target.open)
            .map(|m| m.errors)
            .sum();
        let (open_cpu, p50, p99, p999) = match target.open_median() {
            Some(open) => (
                format!("{:.2}", open.cpu_us_per_request()),
                open.latency.p50_us.to_string(),
                open.latency.p99_us.to_string(),
                open.latency.p999_us.to_string(),
            ),
            None => Default::default(),
        };
        let _ = writeln!(
            out,
            "| {name} | {throughput} | {:.2} | {:.0} % | {open_cpu} | {p50} | {p99} | {p999} | \
             {errors} |",
            target.closed_cpu_us_median().unwrap_or(f64::NAN),
            closed.core_share() * 100.0,
        );
    }
    let _ = writeln!(
        out,
        "\n¹ The origin's own threads, on the load generator's cores; for the proxies, every \
         thread of every process of the proxy."
    );
    if scenario.targets.iter().any(|t| t.kind == Kind::Forwarder) {
        let _ = writeln!(
            out,
            "\n² `loadtest forward`, pinned and measured like the proxies: a byte forwarder \
             that parses nothing, one upstream connection per client connection, one read and \
             one write per chunk and direction, the gateway's io_uring set-up. The floor a \
             proxy approaches, not a proxy."
        );
    }
    if scenario.scenario.tls() {
        handshake_markdown(out, scenario, rounds);
    }
    for peer in [Kind::Nginx, Kind::Haproxy] {
        let Some(line) = ratio_line(scenario, Kind::Coregate, peer) else {
            continue;
        };
        let _ = writeln!(out, "\n{line}");
        if let Some(line) = handshake_ratio_line(scenario, peer) {
            let _ = writeln!(out, "\n{line}");
        }
    }
    for (ours, theirs) in EXTRA_PAIRS {
        if let Some(line) = ratio_line(scenario, ours, theirs) {
            let _ = writeln!(out, "\n{line}");
        }
    }
    for line in variant_lines(scenario) {
        let _ = writeln!(out, "\n{line}");
    }
}

/// A target's name in the tables, with the mark of its footnote.
fn row_name(kind: Kind) -> String {
    match kind {
        Kind::Origin => "origin alone¹".to_owned(),
        Kind::Forwarder => "forwarder²".to_owned(),
        _ => kind.name().to_owned(),
    }
}

/// The https scenario's runs with a new connection per request: a row per target and kind
/// of handshake.
fn handshake_markdown(out: &mut String, scenario: &ScenarioResult, rounds: usize) {
    let _ = writeln!(
        out,
        "\n#### Scenario https: a new connection per request, closed loop\n\n\
         `full`: a full handshake every time (the client keeps no session); `resumed`: each \
         connection resumes a session of an earlier one (TLS 1.3 ticket or TLS 1.2 session). \
         *load busy* is the share of its cores the load generator used: near 100 % the \
         generator, not the target, bounded the throughput (its CPU per request stays \
         comparable).\n"
    );
    let _ = writeln!(
        out,
        "| target | handshakes | req/s (closed) | CPU µs/req | core busy | load busy | resumed \
         | errors |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for target in &scenario.targets {
        for (label, runs) in [("full", &target.new), ("resumed", &target.resumed)] {
            let Some(m) = TargetResult::median(runs) else {
                continue;
            };
            let name = row_name(target.kind);
            let throughput = if rounds > 1 {
                let (low, high) = range(runs);
                format!("{:.0} ({low:.0}–{high:.0})", m.throughput_rps)
            } else {
                format!("{:.0}", m.throughput_rps)
            };
            let errors: u64 = runs.iter().map(|m| m.errors).sum();
            let _ = writeln!(
                out,
                "| {name} | {label} | {throughput} | {:.2} | {:.0} % | {:.0} % | {:.0} % | \
                 {errors} |",
                cpu_us_median(runs).unwrap_or(f64::NAN),
                m.core_share() * 100.0,
                m.load_core_share() * 100.0,
                m.resumed_share() * 100.0,
            );
        }
    }
}

/// coregate against `peer` with a new connection per request: CPU per request and
/// throughput, full and resumed handshakes.
fn handshake_ratio_line(scenario: &ScenarioResult, peer: Kind) -> Option<String> {
    let find = |kind| scenario.targets.iter().find(|t| t.kind == kind);
    let ours = find(Kind::Coregate)?;
    let theirs = find(peer)?;
    let mut parts = Vec::new();
    for (label, a, b) in [
        ("full handshakes", &ours.new, &theirs.new),
        ("resumed handshakes", &ours.resumed, &theirs.resumed),
    ] {
        let (Some(cpu_a), Some(cpu_b)) = (cpu_us_median(a), cpu_us_median(b)) else {
            continue;
        };
        let (Some(ma), Some(mb)) = (TargetResult::median(a), TargetResult::median(b)) else {
            continue;
        };
        parts.push(format!(
            "{label}: CPU per request {:.2}×, throughput {:.2}×",
            cpu_a / cpu_b,
            ma.throughput_rps / mb.throughput_rps
        ));
    }
    (!parts.is_empty()).then(|| {
        format!(
            "coregate / {}, new connection per request: {}",
            peer.name(),
            parts.join("; ")
        )
    })
}

/// Each coregate variant against plain coregate: ratios, and the CPU difference in µs.
fn variant_lines(scenario: &ScenarioResult) -> Vec<String> {
    let Some(plain) = scenario.targets.iter().find(|t| t.kind == Kind::Coregate) else {
        return Vec::new();
    };
    scenario
        .targets
        .iter()
        .filter(|t| t.kind.is_coregate_variant())
        .filter_map(|variant| {
            let r = ratios(variant, plain)?;
            let extra = cpu_difference_us(variant, plain)?;
            let mut line = format!(
                "{} / coregate: CPU per request {:.2}× ({extra:+.2} µs per request), \
                 closed-loop throughput {:.2}×",
                variant.kind.name(),
                r.cpu,
                r.throughput
            );
            if let (Some(p99), Some(p999)) = (r.p99, r.p999) {
                let _ = write!(line, ", p99 {p99:.2}×, p99.9 {p999:.2}× at the fixed rate");
            }
            Some(line)
        })
        .collect()
}

/// Median closed-loop CPU µs per request of `variant` minus that of `plain`.
fn cpu_difference_us(variant: &TargetResult, plain: &TargetResult) -> Option<f64> {
    Some(variant.closed_cpu_us_median()? - plain.closed_cpu_us_median()?)
}

fn throughput_range(target: &TargetResult) -> (f64, f64) {
    range(&target.closed)
}

/// The lowest and highest throughput of `runs`.
fn range(runs: &[Measurement]) -> (f64, f64) {
    runs.iter().fold((f64::INFINITY, 0.0), |(low, high), m| {
        (low.min(m.throughput_rps), high.max(m.throughput_rps))
    })
}

/// `ours` against `theirs`: CPU per request, throughput and tail latency as ratios.
fn ratio_line(scenario: &ScenarioResult, ours: Kind, theirs: Kind) -> Option<String> {
    let find = |kind| scenario.targets.iter().find(|t| t.kind == kind);
    let r = ratios(find(ours)?, find(theirs)?)?;
    let mut line = format!(
        "{} / {}: CPU per request {:.2}×, closed-loop throughput {:.2}×",
        ours.name(),
        theirs.name(),
        r.cpu,
        r.throughput
    );
    if let (Some(p99), Some(p999)) = (r.p99, r.p999) {
        let _ = write!(line, ", p99 {p99:.2}×, p99.9 {p999:.2}× at the fixed rate");
    }
    Some(line)
}

struct Ratios {
    cpu: f64,
    throughput: f64,
    p99: Option<f64>,
    p999: Option<f64>,
}

impl Ratios {
    /// The ratios as one JSON object, with the fields of `extra` (an object) added.
    fn json(&self, extra: Value) -> Value {
        let mut value = json!({
            "cpu_per_request": self.cpu,
            "throughput": self.throughput,
            "p99": self.p99,
            "p99_9": self.p999,
        });
        if let (Value::Object(fields), Value::Object(extra)) = (&mut value, extra) {
            fields.extend(extra);
        }
        value
    }
}

fn ratios(ours: &TargetResult, theirs: &TargetResult) -> Option<Ratios> {
    let throughput = ours.closed_median()?.throughput_rps / theirs.closed_median()?.throughput_rps;
    let cpu = ours.closed_cpu_us_median()? / theirs.closed_cpu_us_median()?;
    let (p99, p999) = match (ours.open_median(), theirs.open_median()) {
        (Some(a), Some(b)) => (
            Some(a.latency.p99_us as f64 / b.latency.p99_us.max(1) as f64),
            Some(a.latency.p999_us as f64 / b.latency.p999_us.max(1) as f64),
        ),
        _ => (None, None),
    };
    Some(Ratios {
        cpu,
        throughput,
        p99,
        p999,
    })
}

fn measurement_json(m: &Measurement) -> Value {
    json!({
        "requests": m.responses,
        "throughput_rps": m.throughput_rps,
        "errors": m.errors,
        "cpu_ns": m.cpu_ns,
        "window_ns": m.window_ns,
        "cpu_us_per_request": m.cpu_us_per_request(),
        "core_share": m.core_share(),
        "load_cpu_ns": m.load_cpu_ns,
        "load_core_share": m.load_core_share(),
        "connections_opened": m.connections,
        "handshakes": { "full": m.handshakes_full, "resumed": m.handshakes_resumed },
        "latency_us": {
            "p50": m.latency.p50_us,
            "p90": m.latency.p90_us,
            "p99": m.latency.p99_us,
            "p99_9": m.latency.p999_us,
            "max": m.latency.max_us,
            "mean": m.latency.mean_us,
        },
    })
}

fn scenario_json(scenario: &ScenarioResult) -> Value {
    let find = |kind| scenario.targets.iter().find(|t| t.kind == kind);
    let mut ratios_json = serde_json::Map::new();
    if let Some(plain) = find(Kind::Coregate) {
        for variant in scenario
            .targets
            .iter()
            .filter(|t| t.kind.is_coregate_variant())
        {
            if let Some(r) = ratios(variant, plain) {
                ratios_json.insert(
                    format!("{}_vs_coregate", variant.kind.name()),
                    r.json(json!({
                        "cpu_us_per_request_difference": cpu_difference_us(variant, plain),
                    })),
                );
            }
        }
    }
    if let Some(ours) = find(Kind::Coregate) {
        for peer in [Kind::Nginx, Kind::Haproxy] {
            let Some(theirs) = find(peer) else {
                continue;
            };
            if let Some(r) = ratios(ours, theirs) {
                let cpu_ratio = |a: &[Measurement], b: &[Measurement]| {
                    Some(cpu_us_median(a)? / cpu_us_median(b)?)
                };
                ratios_json.insert(
                    format!("coregate_vs_{}", peer.name()),
                    r.json(json!({
                        "new_cpu_per_request": cpu_ratio(&ours.new, &theirs.new),
                        "resumed_cpu_per_request": cpu_ratio(&ours.resumed, &theirs.resumed),
                    })),
                );
            }
        }
    }
    for (ours, theirs) in EXTRA_PAIRS {
        if let Some(r) = find(ours).zip(find(theirs)).and_then(|(a, b)| ratios(a, b)) {
            ratios_json.insert(
                format!("{}_vs_{}", ours.name(), theirs.name()),
                r.json(json!({})),
            );
        }
    }
    json!({
        "scenario": scenario.scenario.name(),
        "body_bytes": scenario.scenario.body_bytes(),
        "rate": scenario.rate,
        "targets": scenario.targets.iter().map(|t| json!({
            "target": t.kind.name(),
            "closed_median_throughput_rps": t.closed_median().map(|m| m.throughput_rps),
            "closed_median_cpu_us_per_request": t.closed_cpu_us_median(),
            "closed": t.closed.iter().map(measurement_json).collect::<Vec<_>>(),
            "open": t.open.iter().map(measurement_json).collect::<Vec<_>>(),
            "new_median_throughput_rps": TargetResult::median(&t.new).map(|m| m.throughput_rps),
            "new_median_cpu_us_per_request": cpu_us_median(&t.new),
            "resumed_median_throughput_rps":
                TargetResult::median(&t.resumed).map(|m| m.throughput_rps),
            "resumed_median_cpu_us_per_request": cpu_us_median(&t.resumed),
            "new": t.new.iter().map(measurement_json).collect::<Vec<_>>(),
            "resumed": t.resumed.iter().map(measurement_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "ratios": ratios_json,
    })
}

/// The first line a proxy prints about its version, or "unknown"; for the forwarder, this
/// executable, what it runs.
pub(super) fn version_of(kind: Kind, program: &Path) -> String {
    let arg = match kind {
        Kind::Forwarder => {
            return format!(
                "{} forward (coregate-loadtest {})",
                program.display(),
                env!("CARGO_PKG_VERSION")
            )
        }
        Kind::Coregate | Kind::Baseline => "version",
        _ => "-v",
    };
    let version = match Command::new(program).arg(arg).output() {
        Ok(output) => {
            // nginx prints its version on stderr.
            let text = if output.stdout.is_empty() {
                output.stderr
            } else {
                output.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("unknown")
                .trim()
                .to_owned()
        }
        Err(_) => "unknown".to_owned(),
    };
    // Two coregate builds of one version are told apart by their paths.
    match kind {
        Kind::Coregate | Kind::Baseline => format!("{version} ({})", program.display()),
        _ => version,
    }
}

//! `loadtest compare`: coregate, nginx and HAProxy side by side, each a one-worker reverse
//! proxy pinned to the same core in front of the same fixture origin, with two floors: the
//! origin alone, and the bare byte forwarder of [`crate::forward`] pinned and measured like the
//! proxies (the least a proxy in front of the origin can cost). For each scenario (origin body size) and target it measures, in one run of
//! this process so that the figures are comparable:
//!
//! - a closed-loop run (as fast as `connections` keep-alive connections go): requests per
//!   second, and the proxy's CPU time per request — the growth of the first field of
//!   /proc/PID/task/TID/schedstat (nanoseconds on CPU) summed over every thread of every
//!   process of the proxy (nginx's master and worker, for instance) over the measured window,
//!   divided by the responses counted in that window;
//! - open-loop runs at one fixed rate for all targets (`rate`, or half of the lowest
//!   closed-loop throughput among the proxies), with latency taken from the scheduled send
//!   time (coordinated omission corrected, see [`crate::load`]): p50, p99 and p99.9;
//! - once, before the load of the first plain-HTTP scenario, the resident memory an idle
//!   keep-alive connection costs each proxy ([`idle`]).
//!
//! The load generator and the origin share the other cores. Rounds of closed-loop runs visit
//! the targets in turn (starting one further each round), so that a neighbour's noise on a
//! shared machine spreads over all of them; so do the rounds of open-loop runs. The tables
//! give medians over rounds: of throughput, of CPU per request, and the open-loop run of
//! median p99.
//!
//! Scenario `https` has each proxy terminate TLS (TLS 1.2 and 1.3, session tickets and a
//! session cache on, an ECDSA P-256 certificate for `localhost` from a CA made for the run)
//! in front of the same plain-HTTP origin, and the origin alone serve HTTPS itself. Besides
//! the keep-alive runs above it makes closed-loop runs with a new connection per request:
//! one with full handshakes (`--conn new`) and one resuming sessions (`--conn resume`), each
//! with the CPU per request of the target and the busy share of the load generator's cores,
//! which a full handshake loads more than the server (see [`crate::tls`]).
//!
//! Scenarios `small`, `16k` and `https` run every proxy found, and the first two the forwarder
//! (which speaks no TLS); it is left out of the idle-memory figure, since it holds its two
//! buffers per connection by design and is a floor of CPU, not of memory. Scenarios `policies` and
//! `access-log` run coregate only, plain beside variants of itself with a feature on (a JWT
//! verifier and a rate limit; the access log: see [`policies`]), so that their ratios give the
//! feature's CPU cost per request.
//!
//! Every process started here lives in its own process group and is killed with it when its
//! guard drops, on success, error or panic (see [`process`]). All traffic stays on 127.0.0.1.

pub mod idle;
pub mod policies;
pub mod process;
pub mod proxies;
mod report;

pub use idle::IdleMemory;
pub use process::kill_children_on_signal;
pub use proxies::Kind;
pub use report::CompareReport;

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::load::{self, ConnectionMode, Latency, RunConfig, Target};
use crate::origin::{Mode, Origin, OriginConfig, OriginTls};
use crate::tls::{CertificateFiles, TestCertificates};
use process::{cpu_ns, own_threads_cpu_ns, process_tree, TempDir};
use proxies::Proxy;

/// Measured time of each run by default.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Warm-up before each run by default: connections open, pools fill, caches warm.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(2);
/// Connections of the load by default (kept alive, or open at once in the new-connection runs).
pub const DEFAULT_CONNECTIONS: usize = 64;
/// Idle connections of the memory measurement by default.
pub const DEFAULT_IDLE_CONNECTIONS: usize = 4000;
/// The fixed rate, when not given, as a share of the lowest closed-loop proxy throughput.
pub const DEFAULT_RATE_SHARE: f64 = 0.5;
/// The load generator's delay between the call and the start of its connections
/// (`load::START_DELAY`), used to line the CPU window up with the measured window.
const LOAD_START_DELAY: Duration = Duration::from_millis(50);
/// The names the https scenario's server certificate is for; the load sends the first as
/// SNI, as a browser would.
const HTTPS_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];
/// Prefix of the names of the load generator's threads, whose CPU is read as the load's.
const LOAD_THREAD_PREFIX: &str = "loadtest-";

/// Origin response bodies compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// 13 bytes ("Hello, world!"): the proxy's per-request overhead.
    Small,
    /// 16 KiB: adds the copying of a body that still fits one buffer.
    Body16k,
    /// coregate only, small bodies: plain, with an HS256 JWT and a rate limit, and with an
    /// ES256 JWT and the rate limit (see [`policies`]).
    Policies,
    /// coregate only, small bodies: plain and with its access log on.
    AccessLog,
    /// Small bodies over HTTPS, TLS terminated by the proxy: keep-alive, new full handshakes
    /// and resumed handshakes.
    Https,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [
        Scenario::Small,
        Scenario::Body16k,
        Scenario::Policies,
        Scenario::AccessLog,
        Scenario::Https,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Small => "small",
            Scenario::Body16k => "16k",
            Scenario::Policies => "policies",
            Scenario::AccessLog => "access-log",
            Scenario::Https => "https",
        }
    }

    pub fn body_bytes(self) -> usize {
        match self {
            Scenario::Body16k => 16 * 1024,
            _ => crate::origin::DEFAULT_BODY_BYTES,
        }
    }

    /// The proxies the scenario runs, given those found, in the order of its tables: the
    /// forwarder and every proxy for small and 16k, every proxy for https (the baseline
    /// coregate among them, when given), coregate and its variants otherwise.
    pub fn proxies(self) -> &'static [Kind] {
        match self {
            Scenario::Small | Scenario::Body16k => &[
                Kind::Forwarder,
                Kind::Coregate,
                Kind::Baseline,
                Kind::Nginx,
                Kind::Haproxy,
            ],
            Scenario::Https => &[Kind::Coregate, Kind::Baseline, Kind::Nginx, Kind::Haproxy],
            Scenario::Policies => &[Kind::Coregate, Kind::CoregatePolicies, Kind::CoregateEs256],
            Scenario::AccessLog => &[Kind::Coregate, Kind::CoregateAccessLog],
        }
    }

    /// Whether the clients speak TLS to the targets.
    pub fn tls(self) -> bool {
        self == Scenario::Https
    }

    /// Whether it measures coregate against itself rather than against nginx and HAProxy.
    pub fn coregate_only(self) -> bool {
        matches!(self, Scenario::Policies | Scenario::AccessLog)
    }

    pub fn parse(name: &str) -> Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown scenario {name:?} (expected small, 16k, https, policies or \
                     access-log)"
                )
            })
    }
}

/// How to run a comparison.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// The coregate binary; None looks beside this executable, then on PATH.
    pub coregate: Option<PathBuf>,
    /// A second coregate binary measured beside the first (target `coregate-baseline`), or
    /// None.
    pub baseline: Option<PathBuf>,
    /// Targets to measure, when available; the origin alone is always measured.
    pub targets: Vec<Kind>,
    pub scenarios: Vec<Scenario>,
    /// Measured time of each run. Default [`DEFAULT_DURATION`].
    pub duration: Duration,
    /// Warm-up before each run. Default [`DEFAULT_WARMUP`].
    pub warmup: Duration,
    /// Connections of the load: kept alive, or (scenario https) open at once when each request
    /// gets a new one. Default [`DEFAULT_CONNECTIONS`].
    pub connections: usize,
    /// The open-loop rate (requests per second); None takes [`DEFAULT_RATE_SHARE`] of the
    /// lowest closed-loop proxy throughput of the scenario.
    pub rate: Option<f64>,
    /// Cores of the proxies (each proxy's whole process tree). Default core 0.
    pub proxy_cores: Vec<usize>,
    /// Cores of the origin and of the load generator (one thread of each per core).
    /// Default core 1.
    pub other_cores: Vec<usize>,
    /// Rounds over all targets, of closed-loop runs and then of open-loop runs. Default 1.
    pub rounds: usize,
    /// Idle keep-alive connections of the memory measurement; 0 skips it.
    /// Default [`DEFAULT_IDLE_CONNECTIONS`].
    pub idle_connections: usize,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            coregate: None,
            baseline: None,
            targets: Kind::ALL.to_vec(),
            scenarios: vec![Scenario::Small, Scenario::Body16k],
            duration: DEFAULT_DURATION,
            warmup: DEFAULT_WARMUP,
            connections: DEFAULT_CONNECTIONS,
            rate: None,
            proxy_cores: vec![0],
            other_cores: vec![1],
            rounds: 1,
            idle_connections: DEFAULT_IDLE_CONNECTIONS,
        }
    }
}

/// One run against one target.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub responses: u64,
    pub throughput_rps: f64,
    /// Failed requests plus responses outside 2xx.
    pub errors: u64,
    pub latency: Latency,
    /// CPU time of the target over the measured window (for the origin alone: of the origin's
    /// threads).
    pub cpu_ns: u64,
    /// Length of the window over which `cpu_ns` was taken.
    pub window_ns: u64,
    /// CPU time of the load generator's threads over the same window.
    pub load_cpu_ns: u64,
    /// The load generator's threads (one per core).
    pub load_threads: usize,
    /// Connections opened for counted requests, and their TLS handshakes, full and resumed.
    pub connections: u64,
    pub handshakes_full: u64,
    pub handshakes_resumed: u64,
}

impl Measurement {
    /// CPU microseconds per counted response.
    pub fn cpu_us_per_request(&self) -> f64 {
        if self.responses == 0 {
            return f64::NAN;
        }
        self.cpu_ns as f64 / 1000.0 / self.responses as f64
    }

    /// Share of one core the target used over the window: near 1.0 means it was the
    /// bottleneck of the closed loop.
    pub fn core_share(&self) -> f64 {
        self.cpu_ns as f64 / self.window_ns.max(1) as f64
    }

    /// Share of its cores the load generator used over the window: near 1.0 means the
    /// generator, not the target, bounded the closed loop.
    pub fn load_core_share(&self) -> f64 {
        self.load_cpu_ns as f64 / (self.window_ns.max(1) as f64 * self.load_threads.max(1) as f64)
    }

    /// Share of the handshakes that resumed a session.
    pub fn resumed_share(&self) -> f64 {
        let handshakes = self.handshakes_full + self.handshakes_resumed;
        if handshakes == 0 {
            return f64::NAN;
        }
        self.handshakes_resumed as f64 / handshakes as f64
    }
}

/// All runs against one target in one scenario.
#[derive(Debug, Clone)]
pub struct TargetResult {
    pub kind: Kind,
    /// Closed-loop runs, one per round.
    pub closed: Vec<Measurement>,
    /// Open-loop runs at the scenario's rate, one per round.
    pub open: Vec<Measurement>,
    /// Scenario https: closed-loop runs with a new connection and a full handshake per
    /// request, one per round.
    pub new: Vec<Measurement>,
    /// Scenario https: closed-loop runs with a new connection per request resuming a session,
    /// one per round.
    pub resumed: Vec<Measurement>,
}

impl TargetResult {
    fn new(kind: Kind) -> Self {
        TargetResult {
            kind,
            closed: Vec::new(),
            open: Vec::new(),
            new: Vec::new(),
            resumed: Vec::new(),
        }
    }

    /// The closed-loop run of median throughput (the lower middle one for an even count).
    pub fn closed_median(&self) -> Option<&Measurement> {
        throughput_median(&self.closed)
    }

    /// The run of `runs` of median throughput (the lower middle one for an even count).
    pub fn median(runs: &[Measurement]) -> Option<&Measurement> {
        throughput_median(runs)
    }

    /// The open-loop run of median p99 latency (the lower middle one for an even count).
    pub fn open_median(&self) -> Option<&Measurement> {
        let mut runs: Vec<&Measurement> = self.open.iter().collect();
        runs.sort_by_key(|m| m.latency.p99_us);
        runs.get(runs.len().saturating_sub(1) / 2).copied()
    }

    /// The median of the closed-loop CPU microseconds per request.
    pub fn closed_cpu_us_median(&self) -> Option<f64> {
        cpu_us_median(&self.closed)
    }
}

fn throughput_median(runs: &[Measurement]) -> Option<&Measurement> {
    let mut runs: Vec<&Measurement> = runs.iter().collect();
    runs.sort_by(|a, b| a.throughput_rps.total_cmp(&b.throughput_rps));
    runs.get(runs.len().saturating_sub(1) / 2).copied()
}

/// The median of the CPU microseconds per request of `runs`.
pub fn cpu_us_median(runs: &[Measurement]) -> Option<f64> {
    let mut values: Vec<f64> = runs.iter().map(Measurement::cpu_us_per_request).collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len().saturating_sub(1) / 2).copied()
}

/// One scenario's results.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub scenario: Scenario,
    /// The open-loop rate used.
    pub rate: f64,
    pub targets: Vec<TargetResult>,
}

/// Where the load of a run goes and whose CPU it counts.
struct RunTarget {
    kind: Kind,
    addr: std::net::SocketAddr,
    cpu: CpuSource,
    /// Header fields every request carries.
    headers: Vec<(String, String)>,
    /// It speaks HTTPS, with a certificate that chains to this CA file.
    ca_file: Option<PathBuf>,
}

#[derive(Clone, Copy)]
enum CpuSource {
    /// Every process descended from this pid, itself included.
    Tree(u32),
    /// The origin threads of this process.
    OriginThreads,
}

impl CpuSource {
    /// A reader of the current CPU total, with the process tree resolved up front so that a
    /// reading costs only the /proc reads of its threads.
    fn reader(self) -> impl Fn() -> u64 + Send {
        let pids = match self {
            CpuSource::Tree(pid) => process_tree(pid),
            CpuSource::OriginThreads => Vec::new(),
        };
        move || match self {
            CpuSource::Tree(_) => cpu_ns(&pids),
            CpuSource::OriginThreads => own_threads_cpu_ns("origin-"),
        }
    }
}

/// Runs the comparison; `log` gets a line per step for people watching.
pub fn run(cfg: &CompareConfig, mut log: impl FnMut(&str)) -> io::Result<CompareReport> {
    validate(cfg)?;
    let open_files = process::raise_open_files_limit();
    let mut report = CompareReport::new(cfg, open_files);

    // Which proxies can run here, and why the others cannot.
    let mut programs = Vec::new();
    for kind in [
        Kind::Forwarder,
        Kind::Coregate,
        Kind::Baseline,
        Kind::Nginx,
        Kind::Haproxy,
    ] {
        // The baseline is asked for by its binary, not by --targets.
        let wanted = match kind {
            Kind::Baseline => cfg.baseline.is_some(),
            _ => cfg.targets.contains(&kind),
        };
        if !wanted {
            continue;
        }
        let program = match kind {
            Kind::Forwarder => std::env::current_exe().ok(),
            Kind::Coregate => proxies::coregate_program(cfg.coregate.as_deref()),
            Kind::Baseline => cfg.baseline.clone(),
            _ => process::find_program(kind.name()),
        };
        match program {
            Some(path) => {
                report
                    .versions
                    .push((kind, report::version_of(kind, &path)));
                programs.push((kind, path));
            }
            None => report
                .skipped
                .push((kind, format!("{} not found", kind.name()))),
        }
    }

    // The idle-memory measurement speaks plain HTTP: it runs with the first scenario that does.
    let mut idle_pending = cfg.idle_connections > 0;
    for (index, &scenario) in cfg.scenarios.iter().enumerate() {
        // The proxies of this scenario: the coregate variants run the coregate binary.
        let scenario_programs: Vec<(Kind, PathBuf)> = scenario
            .proxies()
            .iter()
            .filter_map(|&kind| {
                let wanted = if kind.is_coregate_variant() {
                    Kind::Coregate
                } else {
                    kind
                };
                programs
                    .iter()
                    .find(|(found, _)| *found == wanted)
                    .map(|(_, path)| (kind, path.clone()))
            })
            .collect();
        if scenario.coregate_only() && scenario_programs.is_empty() {
            log(&format!(
                "scenario {}: skipped: it measures coregate, which is not available",
                scenario.name()
            ));
            continue;
        }
        log(&format!(
            "scenario {}: origin body {} bytes",
            scenario.name(),
            scenario.body_bytes()
        ));
        let mut origin_cfg = OriginConfig::new("origin", Mode::Fixed);
        origin_cfg.body_bytes = scenario.body_bytes();
        origin_cfg.threads = cfg.other_cores.len();
        origin_cfg.cores = cfg.other_cores.clone();
        let origin = Origin::start(origin_cfg.clone())?;

        // Scenario https: a CA and a server certificate made for this run, and the origin
        // alone serving HTTPS with them (the proxies stay in front of the plain origin).
        // Declared before the proxies, so dropped after them.
        let https = if scenario.tls() {
            let dir = TempDir::new("https")?;
            let files = TestCertificates::generate(&HTTPS_NAMES)?.write(dir.path())?;
            origin_cfg.tls = Some(OriginTls {
                cert_file: files.cert_file.clone(),
                key_file: files.key_file.clone(),
            });
            let tls_origin = Origin::start(origin_cfg)?;
            Some((tls_origin, files, dir))
        } else {
            None
        };
        let certificates: Option<&CertificateFiles> = https.as_ref().map(|(_, files, _)| files);

        // Declared after the origin, so dropped before it.
        let mut running: Vec<Proxy> = Vec::new();
        for (kind, program) in &scenario_programs {
            match proxies::start(
                *kind,
                program,
                origin.addr(),
                &cfg.proxy_cores,
                certificates,
            ) {
                Ok(proxy) => running.push(proxy),
                Err(e) => {
                    log(&format!(
                        "{} (scenario {}): not measured: {e}",
                        kind.name(),
                        scenario.name()
                    ));
                    if index == 0 {
                        report.skipped.push((*kind, e.to_string()));
                    } else if !report.skipped.iter().any(|(skipped, _)| skipped == kind) {
                        report
                            .skipped
                            .push((*kind, format!("scenario {}: {e}", scenario.name())));
                    }
                }
            }
        }

        if idle_pending && !scenario.tls() {
            idle_pending = false;
            for proxy in running
                .iter()
                .filter(|p| !p.kind.is_coregate_variant() && !p.kind.is_floor())
            {
                match idle::measure(proxy.child.pid(), proxy.addr, cfg.idle_connections) {
                    Ok(memory) => {
                        log(&format!(
                            "{}: {:.0} bytes of RSS per idle connection",
                            proxy.kind.name(),
                            memory.bytes_per_connection()
                        ));
                        report.idle.push((proxy.kind, Ok(memory)));
                    }
                    Err(e) => {
                        log(&format!(
                            "{}: idle memory not measured: {e}",
                            proxy.kind.name()
                        ));
                        report.idle.push((proxy.kind, Err(e.to_string())));
                    }
                }
            }
        }

        let ca_file = certificates.map(|files| files.ca_file.clone());
        let mut targets = vec![RunTarget {
            kind: Kind::Origin,
            addr: match &https {
                Some((tls_origin, _, _)) => tls_origin.addr(),
                None => origin.addr(),
            },
            cpu: CpuSource::OriginThreads,
            headers: Vec::new(),
            ca_file: ca_file.clone(),
        }];
        targets.extend(running.iter().map(|proxy| RunTarget {
            kind: proxy.kind,
            addr: proxy.addr,
            cpu: CpuSource::Tree(proxy.child.pid()),
            headers: proxy.headers.clone(),
            ca_file: ca_file.clone(),
        }));
        let mut results: Vec<TargetResult> = targets
            .iter()
            .map(|target| TargetResult::new(target.kind))
            .collect();

        // Closed loops: keep-alive, then (https) new full handshakes and resumed ones.
        let mut closed_runs = vec![ConnectionMode::KeepAlive];
        if scenario.tls() {
            closed_runs.extend([ConnectionMode::New, ConnectionMode::Resume]);
        }
        for conn in closed_runs {
            for round in 0..cfg.rounds {
                for step in 0..targets.len() {
                    let i = (round + step) % targets.len();
                    let m = measure(cfg, &targets[i], None, conn)?;
                    let handshakes = if conn == ConnectionMode::KeepAlive {
                        String::new()
                    } else {
                        format!(
                            ", {} connections ({} full, {} resumed handshakes)",
                            m.connections, m.handshakes_full, m.handshakes_resumed,
                        )
                    };
                    log(&format!(
                        "{} {} closed{} round {}/{}: {:.0} req/s, {:.2} us CPU/req, {:.0}% of a \
                         core, load {:.0}% of its cores{handshakes}, {} errors",
                        scenario.name(),
                        targets[i].kind.name(),
                        match conn {
                            ConnectionMode::KeepAlive => "",
                            ConnectionMode::New => " new-handshake",
                            ConnectionMode::Resume => " resumed-handshake",
                        },
                        round + 1,
                        cfg.rounds,
                        m.throughput_rps,
                        m.cpu_us_per_request(),
                        m.core_share() * 100.0,
                        m.load_core_share() * 100.0,
                        m.errors
                    ));
                    let runs = match conn {
                        ConnectionMode::KeepAlive => &mut results[i].closed,
                        ConnectionMode::New => &mut results[i].new,
                        ConnectionMode::Resume => &mut results[i].resumed,
                    };
                    runs.push(m);
                    check_alive(&mut running)?;
                    empty_access_logs(&running, &mut log);
                }
            }
        }

        let rate = cfg.rate.unwrap_or_else(|| {
            let proxies_min = results
                .iter()
                .filter(|r| !r.kind.is_floor())
                .filter_map(|r| r.closed_median().map(|m| m.throughput_rps))
                .fold(f64::INFINITY, f64::min);
            let floor = if proxies_min.is_finite() {
                proxies_min
            } else {
                results[0].closed_median().map_or(1.0, |m| m.throughput_rps)
            };
            (floor * DEFAULT_RATE_SHARE).max(1.0).round()
        });
        for round in 0..cfg.rounds {
            for step in 0..targets.len() {
                let i = (round + step) % targets.len();
                let m = measure(cfg, &targets[i], Some(rate), ConnectionMode::KeepAlive)?;
                log(&format!(
                    "{} {} open at {rate:.0} req/s round {}/{}: p50 {} us, p99 {} us, \
                     p99.9 {} us, {:.2} us CPU/req, {} errors",
                    scenario.name(),
                    targets[i].kind.name(),
                    round + 1,
                    cfg.rounds,
                    m.latency.p50_us,
                    m.latency.p99_us,
                    m.latency.p999_us,
                    m.cpu_us_per_request(),
                    m.errors
                ));
                results[i].open.push(m);
                check_alive(&mut running)?;
                empty_access_logs(&running, &mut log);
            }
        }
        report.scenarios.push(ScenarioResult {
            scenario,
            rate,
            targets: results,
        });
        // The proxies stop here, then the origins and the certificates.
        drop(running);
        drop(https);
        drop(origin);
    }
    Ok(report)
}

fn validate(cfg: &CompareConfig) -> io::Result<()> {
    let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    if cfg.connections == 0 || cfg.rounds == 0 || cfg.duration.is_zero() {
        return invalid("connections, rounds and duration must be above zero".to_owned());
    }
    if cfg.proxy_cores.is_empty() || cfg.other_cores.is_empty() {
        return invalid("the proxy and the load each need at least one core".to_owned());
    }
    if cfg.scenarios.is_empty() {
        return invalid("no scenario to run".to_owned());
    }
    let allowed = process::allowed_cores();
    for core in cfg.proxy_cores.iter().chain(&cfg.other_cores) {
        if !allowed.contains(core) {
            return invalid(format!(
                "core {core} is not one this process may run on ({allowed:?})"
            ));
        }
    }
    Ok(())
}

/// An error when a proxy died during a run: its figures would be meaningless.
fn check_alive(running: &mut [Proxy]) -> io::Result<()> {
    running
        .iter_mut()
        .try_for_each(|proxy| proxy.child.check_running())
}

/// Logs the size of each access log and empties it, so that the runs do not fill the disk
/// (coregate appends, so it goes on writing from the start).
fn empty_access_logs(running: &[Proxy], log: &mut impl FnMut(&str)) {
    for path in running.iter().filter_map(|proxy| proxy.access_log.as_ref()) {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        if size == 0 {
            continue;
        }
        log(&format!(
            "access log: {size} bytes since last emptied; emptied"
        ));
        if let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|file| file.set_len(0))
        {
            log(&format!("access log {}: not emptied: {e}", path.display()));
        }
    }
}

/// One closed-loop (`rate` None) or open-loop run against `target`, with connections used
/// as `conn` says, and the CPU time of the target and of the load generator read at the start
/// and at the end of the measured window.
fn measure(
    cfg: &CompareConfig,
    target: &RunTarget,
    rate: Option<f64>,
    conn: ConnectionMode,
) -> io::Result<Measurement> {
    let tls = target.ca_file.is_some();
    let mut run_cfg = RunConfig::new(Target {
        addr: target.addr,
        authority: target.addr.to_string(),
        path: "/".to_owned(),
        tls,
        host: target.addr.ip().to_string(),
    });
    run_cfg.connections = cfg.connections;
    run_cfg.duration = cfg.duration;
    run_cfg.warmup = cfg.warmup;
    run_cfg.threads = cfg.other_cores.len();
    run_cfg.cores = cfg.other_cores.clone();
    run_cfg.rate = rate;
    run_cfg.headers = target.headers.clone();
    run_cfg.conn = conn;
    run_cfg.ca = target.ca_file.clone();
    if tls {
        run_cfg.sni = Some(HTTPS_NAMES[0].to_owned());
    }

    let read_cpu = target.cpu.reader();
    let window_start = Instant::now() + LOAD_START_DELAY + cfg.warmup;
    let duration = cfg.duration;
    let sampler = std::thread::Builder::new()
        .name("compare-cpu".to_owned())
        .spawn(move || {
            std::thread::sleep(window_start.saturating_duration_since(Instant::now()));
            let (from, cpu_from) = (Instant::now(), read_cpu());
            let load_from = own_threads_cpu_ns(LOAD_THREAD_PREFIX);
            std::thread::sleep((from + duration).saturating_duration_since(Instant::now()));
            let cpu_to = read_cpu();
            let load_to = own_threads_cpu_ns(LOAD_THREAD_PREFIX);
            let window = from.elapsed();
            (
                cpu_to.saturating_sub(cpu_from),
                load_to.saturating_sub(load_from),
                window,
            )
        })?;
    let report = load::run(&run_cfg, |_| {})?;
    let (cpu_ns, load_cpu_ns, window) = sampler
        .join()
        .map_err(|_| io::Error::other("the CPU sampler panicked"))?;
    let non_2xx: u64 = report
        .statuses
        .iter()
        .filter(|(status, _)| !(200..300).contains(status))
        .map(|(_, count)| count)
        .sum();
    Ok(Measurement {
        responses: report.responses,
        throughput_rps: report.throughput_rps,
        errors: report.errors.total() + non_2xx,
        latency: report.latency,
        cpu_ns,
        window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
        load_cpu_ns,
        load_threads: report.threads,
        connections: report.connections_opened,
        handshakes_full: report.handshakes_full,
        handshakes_resumed: report.handshakes_resumed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(rps: f64, cpu_ns: u64) -> Measurement {
        Measurement {
            responses: (rps * 10.0) as u64,
            throughput_rps: rps,
            errors: 0,
            latency: Latency {
                p50_us: 1,
                p90_us: 1,
                p99_us: 1,
                p999_us: 1,
                max_us: 1,
                mean_us: 1.0,
            },
            cpu_ns,
            window_ns: 10_000_000_000,
            load_cpu_ns: 5_000_000_000,
            load_threads: 1,
            connections: 10,
            handshakes_full: 1,
            handshakes_resumed: 3,
        }
    }

    #[test]
    fn medians_and_per_request_cpu() {
        let m = measurement(1000.0, 5_000_000_000);
        assert_eq!(m.cpu_us_per_request(), 500.0);
        assert_eq!(m.core_share(), 0.5);
        assert_eq!(m.load_core_share(), 0.5);
        assert_eq!(m.resumed_share(), 0.75);
        let result = TargetResult {
            kind: Kind::Coregate,
            closed: vec![
                measurement(300.0, 1_000_000),
                measurement(100.0, 3_000_000),
                measurement(200.0, 2_000_000),
            ],
            open: vec![measurement(10.0, 1), measurement(20.0, 2)],
            new: vec![measurement(50.0, 5_000_000), measurement(70.0, 3_500_000)],
            resumed: Vec::new(),
        };
        assert_eq!(
            TargetResult::median(&result.new).unwrap().throughput_rps,
            50.0
        );
        assert_eq!(cpu_us_median(&result.new), Some(5.0));
        assert_eq!(TargetResult::median(&result.resumed), None);
        assert_eq!(result.open_median().unwrap().throughput_rps, 10.0);
        assert_eq!(result.closed_median().unwrap().throughput_rps, 200.0);
        assert_eq!(result.closed_cpu_us_median(), Some(1.0));
    }

    #[test]
    fn scenarios_parse() {
        assert_eq!(Scenario::parse("16k"), Ok(Scenario::Body16k));
        assert_eq!(Scenario::Body16k.body_bytes(), 16384);
        assert_eq!(Scenario::parse("policies"), Ok(Scenario::Policies));
        assert_eq!(Scenario::parse("access-log"), Ok(Scenario::AccessLog));
        assert_eq!(Scenario::parse("https"), Ok(Scenario::Https));
        assert!(Scenario::Https.tls() && !Scenario::Https.coregate_only());
        assert_eq!(Scenario::Https.body_bytes(), 13);
        // The baseline build's row follows coregate's, where it runs at all (--baseline).
        assert_eq!(
            Scenario::Https.proxies(),
            &[Kind::Coregate, Kind::Baseline, Kind::Nginx, Kind::Haproxy]
        );
        assert!(!Scenario::Policies.proxies().contains(&Kind::Baseline));
        // The forwarder comes first, so that its row sits between the origin's and
        // coregate's; it speaks no TLS and is no coregate.
        assert_eq!(
            Scenario::Small.proxies()[..2],
            [Kind::Forwarder, Kind::Coregate]
        );
        assert_eq!(Scenario::Body16k.proxies(), Scenario::Small.proxies());
        assert!(!Scenario::Policies.proxies().contains(&Kind::Forwarder));
        assert!(!Scenario::AccessLog.proxies().contains(&Kind::Forwarder));
        assert_eq!(Scenario::Policies.body_bytes(), 13);
        assert!(Scenario::Policies.coregate_only() && !Scenario::Small.coregate_only());
        assert_eq!(
            Scenario::AccessLog.proxies(),
            &[Kind::Coregate, Kind::CoregateAccessLog]
        );
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::parse(scenario.name()), Ok(scenario));
        }
        assert!(Scenario::parse("huge").unwrap_err().contains("access-log"));
    }
}

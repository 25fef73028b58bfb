//! The load generator behind `loadtest run`: HTTP/1.1 over plain TCP or TLS, closed or open
//! loop, from `threads` OS threads each running its own monoio runtime.
//!
//! - Connections ([`ConnectionMode`]): kept alive (one connect and handshake each, then
//!   request after request), or a new one per request (`Connection: close` sent, the
//!   connection dropped after the response): with https, either a full handshake every time
//!   (no session kept) or a resumption of the session of an earlier connection (a TLS 1.3
//!   ticket or a TLS 1.2 session). Each thread has its own TLS client and session cache; see
//!   [`crate::tls`] for what a handshake costs the generator.
//! - Closed loop: each connection sends its next request as soon as the previous response
//!   has ended. Latency runs from the write of the request to the end of the response (from
//!   the start of the connect, with a new connection per request).
//! - Open loop (`rate`): each connection sends on a fixed schedule, `connections / rate`
//!   seconds apart, the connections' schedules interleaved. Latency runs from the *scheduled*
//!   send time, as wrk2 measures, so a server that stalls is charged for the requests that
//!   queued behind the stall (coordinated omission). One refinement over wrk2: when a
//!   connection is idle at its scheduled time, latency runs from the actual send, because the
//!   monoio timer wakes up to a millisecond late and that lateness is the generator's, not the
//!   server's. Requests never pipeline: when behind, they wait on their connection. A
//!   connection whose interval is under the timer's millisecond tick runs behind its
//!   schedule by design and inherits that lateness, so give it at least a few milliseconds
//!   (`connections` ≥ a few × `rate` / 1000) when sub-millisecond latency matters.
//!
//! Only requests sent (closed loop) or scheduled (open loop) after the warm-up count; at the
//! end of the run, requests still in flight are dropped uncounted. Per request the generator
//! allocates nothing: the request is a prebuilt `Bytes`, buffers are reused, the
//! measurements go to a thread-local hdrhistogram, and progress counts are thread-local
//! cells that a task copies to shared atomics every 100 ms.
//!
//! Measured side by side with Debian's wrk on the project's 2-core VM (one generator thread
//! pinned to core 1, a one-thread Fixed origin pinned to core 0, 50 keep-alive connections,
//! alternating 5 s runs): 5.4-5.9 µs of CPU per request against wrk's 6.3-7.3 µs, and 1.1 to
//! 1.3 times wrk's throughput.
//!
//! Failed requests are counted by [`ErrorKind`], a failed or timed-out TLS handshake as its
//! own kind; connections opened and handshakes (full or resumed) are counted beside them.

mod client;
mod report;
mod stats;

pub use report::{Latency, Report};
pub use stats::{ErrorCounts, ErrorKind, Stats};

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::runtime::{self, Driver};
use crate::tls::{ClientSessions, ClientSetup, Handshake, TlsClient};
use client::Connection;

/// Default connections.
pub const DEFAULT_CONNECTIONS: usize = 10;
/// Default measured duration.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time given to the threads to build their runtimes before the run starts together.
const START_DELAY: Duration = Duration::from_millis(50);
/// Pause before reconnecting after a failed connect or handshake in the closed loop, so that
/// a refused port or a misconfigured server is not hammered in a tight loop.
const CONNECT_RETRY_BACKOFF: Duration = Duration::from_millis(10);
/// Interval of the progress callback.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// How often a thread copies its counts to its [`ThreadProgress`].
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

/// Where requests go: an `http://` or `https://host:port/path` URL resolved once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// The URL's authority, sent as the Host header.
    pub authority: String,
    /// The path and query, sent as the request target.
    pub path: String,
    /// An https URL: requests go over TLS.
    pub tls: bool,
    /// The URL's host without port or brackets: the default TLS server name.
    pub host: String,
}

impl Target {
    /// Parses `http[s]://host[:port][/path]`; the host may be an IP address, `[v6]`, or a
    /// name that resolves (once, here). The port defaults to 80, or 443 for https.
    pub fn parse(url: &str) -> Result<Target, String> {
        let (rest, tls) = if let Some(rest) = url.strip_prefix("http://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (rest, true)
        } else {
            return Err(format!(
                "{url}: only http:// and https:// URLs are supported"
            ));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        let port_colon = match authority.rfind(':') {
            Some(colon) if !authority[colon..].contains(']') => Some(colon),
            _ => None,
        };
        let host = match port_colon {
            Some(colon) => &authority[..colon],
            None => authority,
        };
        let with_port = match port_colon {
            Some(_) => authority.to_owned(),
            None => format!("{authority}:{}", if tls { 443 } else { 80 }),
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("{url}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: host has no address"))?;
        Ok(Target {
            addr,
            authority: authority.to_owned(),
            path,
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        })
    }

    /// The URL again, from its parts.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.authority, self.path)
    }
}

/// How requests use connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionMode {
    /// One connection (and one handshake) per connection slot, kept alive for request after
    /// request.
    KeepAlive,
    /// A new connection per request, with a full TLS handshake: no session is kept.
    New,
    /// A new connection per request, resuming the TLS session of an earlier one (for plain
    /// http, the same as `New`).
    Resume,
}

impl ConnectionMode {
    pub fn name(self) -> &'static str {
        match self {
            ConnectionMode::KeepAlive => "keep-alive",
            ConnectionMode::New => "new",
            ConnectionMode::Resume => "resume",
        }
    }

    pub fn parse(name: &str) -> Result<ConnectionMode, String> {
        [
            ConnectionMode::KeepAlive,
            ConnectionMode::New,
            ConnectionMode::Resume,
        ]
        .into_iter()
        .find(|mode| mode.name() == name)
        .ok_or_else(|| {
            format!("unknown connection mode {name:?} (expected keep-alive, new or resume)")
        })
    }
}

/// How to run the load.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    /// Open connections, spread over the threads. Default [`DEFAULT_CONNECTIONS`].
    pub connections: usize,
    /// Measured time, after the warm-up. Default [`DEFAULT_DURATION`].
    pub duration: Duration,
    /// Load sent before the measured time, not counted. Default none.
    pub warmup: Duration,
    /// Generator threads, each with its own runtime. Default 1; never more than connections.
    pub threads: usize,
    /// Cores to pin the threads to, round-robin; empty pins nothing.
    pub cores: Vec<usize>,
    pub method: String,
    /// Extra header fields; a Host field here replaces the URL's.
    pub headers: Vec<(String, String)>,
    /// Request body size (bytes of filler text); 0 sends no body.
    pub body_bytes: usize,
    /// Open loop: total requests per second. None runs a closed loop.
    pub rate: Option<f64>,
    /// A request without a complete response this long after it was sent is a timeout.
    /// Default [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// Keep-alive (the default) or a new connection per request.
    pub conn: ConnectionMode,
    /// https: the PEM file of the trust anchors the server's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// https: the server name sent (SNI) and verified; default the URL's host.
    pub sni: Option<String>,
}

impl RunConfig {
    /// A closed-loop GET of `target` with the defaults above.
    pub fn new(target: Target) -> Self {
        RunConfig {
            target,
            connections: DEFAULT_CONNECTIONS,
            duration: DEFAULT_DURATION,
            warmup: Duration::ZERO,
            threads: 1,
            cores: Vec::new(),
            method: "GET".to_owned(),
            headers: Vec::new(),
            body_bytes: 0,
            rate: None,
            timeout: DEFAULT_TIMEOUT,
            conn: ConnectionMode::KeepAlive,
            ca: None,
            sni: None,
        }
    }

    /// The request every connection sends, built once.
    pub fn request(&self) -> Vec<u8> {
        let mut request = format!("{} {} HTTP/1.1\r\n", self.method, self.target.path);
        let has_host = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("host"));
        if !has_host {
            request.push_str(&format!("Host: {}\r\n", self.target.authority));
        }
        for (name, value) in &self.headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        // RFC 9112 §9.6: a client that will not send another request on the connection says
        // so, and the server closes it after the response.
        let has_connection = self
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("connection"));
        if self.conn != ConnectionMode::KeepAlive && !has_connection {
            request.push_str("Connection: close\r\n");
        }
        // RFC 9110 §8.6: a POST or PUT without a body still says so.
        let sends_length =
            self.body_bytes > 0 || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH");
        if sends_length {
            request.push_str(&format!("Content-Length: {}\r\n", self.body_bytes));
        }
        request.push_str("\r\n");
        let mut request = request.into_bytes();
        let filler = b"0123456789abcdef";
        request.extend((0..self.body_bytes).map(|i| filler[i % filler.len()]));
        request
    }
}

/// Progress of the run, reported about once a second.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Time since the start, warm-up included.
    pub elapsed: Duration,
    /// Still in the warm-up.
    pub warmup: bool,
    /// Responses per second over the last interval.
    pub responses_per_second: f64,
    /// Failed requests over the last interval.
    pub errors: u64,
}

/// Counters a thread publishes for progress lines, refreshed every
/// [`PUBLISH_INTERVAL`] from its thread-local counts; the alignment keeps threads off each
/// other's cache lines.
#[derive(Default)]
#[repr(align(64))]
struct ThreadProgress {
    responses: AtomicU64,
    errors: AtomicU64,
}

/// What every thread of a run shares, fixed at start.
struct Plan {
    addr: SocketAddr,
    /// https: what each thread builds its TLS client from.
    tls: Option<ClientSetup>,
    /// Drop the connection after every response.
    new_connections: bool,
    request: Bytes,
    head_request: bool,
    /// The start of the run: connections open, warm-up begins.
    start: Instant,
    /// The end of the warm-up: what is sent from here on counts.
    measure_from: Instant,
    end: Instant,
    /// Open loop: the request rate, and the interval between one connection's requests.
    schedule: Option<(f64, Duration)>,
    timeout: Duration,
}

/// Runs the load and returns the merged measurements; `on_progress` is called from this
/// thread about once a second while it runs.
pub fn run(cfg: &RunConfig, mut on_progress: impl FnMut(&Progress)) -> io::Result<Report> {
    let invalid = |message: &str| io::Error::new(io::ErrorKind::InvalidInput, message.to_owned());
    if cfg.connections == 0 {
        return Err(invalid("at least one connection is needed"));
    }
    if cfg.duration.is_zero() {
        return Err(invalid("the duration must be above zero"));
    }
    if let Some(rate) = cfg.rate {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(invalid("the rate must be a positive number"));
        }
    }
    let tls = if cfg.target.tls {
        let ca = cfg
            .ca
            .as_deref()
            .ok_or_else(|| invalid("https needs the trust anchors of the server (--ca FILE)"))?;
        let server_name = cfg.sni.as_deref().unwrap_or(&cfg.target.host);
        let sessions = match cfg.conn {
            ConnectionMode::New => ClientSessions::Forget,
            ConnectionMode::KeepAlive | ConnectionMode::Resume => ClientSessions::Resume,
        };
        Some(ClientSetup::new(ca, server_name, sessions)?)
    } else {
        None
    };
    let threads = cfg.threads.clamp(1, cfg.connections);
    let start = Instant::now() + START_DELAY;
    let measure_from = start + cfg.warmup;
    let plan = Arc::new(Plan {
        addr: cfg.target.addr,
        tls,
        new_connections: cfg.conn != ConnectionMode::KeepAlive,
        request: Bytes::from(cfg.request()),
        head_request: cfg.method == "HEAD",
        start,
        measure_from,
        end: measure_from + cfg.duration,
        schedule: cfg.rate.map(|rate| {
            let interval = Duration::from_secs_f64(cfg.connections as f64 / rate);
            (rate, interval)
        }),
        timeout: cfg.timeout,
    });
    let progress: Arc<Vec<ThreadProgress>> =
        Arc::new((0..threads).map(|_| ThreadProgress::default()).collect());

    let mut handles = Vec::with_capacity(threads);
    for index in 0..threads {
        // Connections are numbered across threads; thread i takes an even share.
        let first = cfg.connections * index / threads;
        let last = cfg.connections * (index + 1) / threads;
        let core = (!cfg.cores.is_empty()).then(|| cfg.cores[index % cfg.cores.len()]);
        let plan = plan.clone();
        let progress = progress.clone();
        let handle = std::thread::Builder::new()
            .name(format!("loadtest-{index}"))
            .spawn(move || run_thread(plan, first..last, core, progress, index))?;
        handles.push(handle);
    }

    let mut last = (start, 0u64, 0u64);
    let mut tick = start + PROGRESS_INTERVAL;
    while tick <= plan.end {
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
        let responses: u64 = progress
            .iter()
            .map(|p| p.responses.load(Ordering::Relaxed))
            .sum();
        let errors: u64 = progress
            .iter()
            .map(|p| p.errors.load(Ordering::Relaxed))
            .sum();
        let seconds = tick.duration_since(last.0).as_secs_f64();
        on_progress(&Progress {
            elapsed: tick.duration_since(start),
            warmup: tick <= measure_from,
            responses_per_second: (responses - last.1) as f64 / seconds,
            errors: errors - last.2,
        });
        last = (tick, responses, errors);
        tick += PROGRESS_INTERVAL;
    }

    let mut stats = Stats::default();
    let mut driver = Driver::UringTuned;
    for handle in handles {
        let (thread_stats, thread_driver) = handle
            .join()
            .map_err(|_| io::Error::other("a load thread panicked"))??;
        stats.merge(&thread_stats);
        // Threads build alike; should one differ, report the least tuned.
        driver = driver.max(thread_driver);
    }
    Ok(Report::new(cfg, threads, driver, &stats))
}

/// Body of a generator thread: its share of the connections until the end of the run.
/// Returns its measurements and the driver it ran on.
fn run_thread(
    plan: Arc<Plan>,
    connections: Range<usize>,
    core: Option<usize>,
    progress: Arc<Vec<ThreadProgress>>,
    index: usize,
) -> io::Result<(Stats, Driver)> {
    if let Some(id) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    let (mut runtime, driver) = runtime::build()?;
    let tls = match &plan.tls {
        Some(setup) => Some(setup.client(connections.len())?),
        None => None,
    };
    runtime.block_on(async move {
        let local = Rc::new(Local::new(tls));
        monoio::time::sleep_until(monoio::time::Instant::from_std(plan.start)).await;
        let tasks: Vec<_> = connections
            .map(|connection| {
                let plan = plan.clone();
                let local = local.clone();
                monoio::spawn(async move {
                    match plan.schedule {
                        Some(schedule) => open_loop(&plan, connection, schedule, &local).await,
                        None => closed_loop(&plan, &local).await,
                    }
                })
            })
            .collect();
        let publisher = {
            let local = local.clone();
            let end = plan.end;
            monoio::spawn(async move {
                let mine = &progress[index];
                loop {
                    mine.responses
                        .store(local.responses.get(), Ordering::Relaxed);
                    mine.errors.store(local.errors.get(), Ordering::Relaxed);
                    if Instant::now() >= end {
                        return;
                    }
                    monoio::time::sleep(PUBLISH_INTERVAL).await;
                }
            })
        };
        for task in tasks {
            task.await;
        }
        publisher.await;
        Ok((local.stats.take(), driver))
    })
}

/// What the connections of one thread share.
struct Local {
    stats: RefCell<Stats>,
    /// Responses and errors so far, warm-up included, for progress lines.
    responses: Cell<u64>,
    errors: Cell<u64>,
    /// https: this thread's TLS client.
    tls: Option<TlsClient>,
}

impl Local {
    fn new(tls: Option<TlsClient>) -> Self {
        Local {
            stats: RefCell::default(),
            responses: Cell::new(0),
            errors: Cell::new(0),
            tls,
        }
    }

    fn connected(&self, counted: bool, handshake: Option<Handshake>) {
        if !counted {
            return;
        }
        let mut stats = self.stats.borrow_mut();
        stats.connections += 1;
        match handshake {
            Some(Handshake::Full) => stats.handshakes_full += 1,
            Some(Handshake::Resumed) => stats.handshakes_resumed += 1,
            None => {}
        }
    }

    fn response(&self, counted: bool, status: u16, latency: Duration) {
        self.responses.set(self.responses.get() + 1);
        if counted {
            let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
            self.stats.borrow_mut().record_response(status, latency_us);
        }
    }

    fn error(&self, counted: bool, kind: ErrorKind) {
        self.errors.set(self.errors.get() + 1);
        if counted {
            self.stats.borrow_mut().record_error(kind);
        }
    }

    fn bytes_read(&self, counted: bool, connection: &mut Connection) {
        let bytes = connection.take_bytes_read();
        if counted {
            self.stats.borrow_mut().bytes_read += bytes;
        }
    }
}

/// What a request was doing when it timed out.
#[derive(Clone, Copy)]
enum Phase {
    Connect,
    Handshake,
    Exchange,
}

/// Sends one request on `connection`, opening it first when there is none, and gives up at
/// `deadline`. Returns the response and when the request began: when it was written (after
/// any reconnect) on kept-alive connections, when its connect began when each request gets a
/// new connection, whose connect and handshake are then part of its latency. None when the
/// end of the run cut the request short. The connection is
/// dropped after an error, after a response that closes it, and after every response when
/// each request gets a new connection. `counted`: the bytes read and the connection opened
/// go into the report.
async fn exchange(
    plan: &Plan,
    local: &Local,
    connection: &mut Option<Connection>,
    deadline: Instant,
    counted: bool,
) -> Option<Result<(client::Response, Instant), ErrorKind>> {
    let phase = Cell::new(Phase::Exchange);
    let attempt = async {
        let began = Instant::now();
        if connection.is_none() {
            phase.set(Phase::Connect);
            let tcp = client::connect(plan.addr)
                .await
                .map_err(|_| ErrorKind::Connect)?;
            let (opened, handshake) = match &local.tls {
                Some(tls) => {
                    phase.set(Phase::Handshake);
                    let (stream, handshake) =
                        tls.connect(tcp).await.map_err(|_| ErrorKind::Handshake)?;
                    (Connection::tls(stream), Some(handshake))
                }
                None => (Connection::plain(tcp), None),
            };
            phase.set(Phase::Exchange);
            local.connected(counted, handshake);
            *connection = Some(opened);
        }
        match connection {
            Some(open) => {
                let sent = if plan.new_connections {
                    began
                } else {
                    Instant::now()
                };
                let result = open.exchange(plan.request.clone(), plan.head_request).await;
                local.bytes_read(counted, open);
                result.map(|response| (response, sent))
            }
            None => Err(ErrorKind::Connect),
        }
    };
    let deadline_monoio = monoio::time::Instant::from_std(deadline);
    let result = match monoio::time::timeout_at(deadline_monoio, attempt).await {
        Ok(result) => result,
        Err(_) if deadline >= plan.end => return None,
        Err(_) => Err(match phase.get() {
            Phase::Connect => ErrorKind::Connect,
            Phase::Handshake => ErrorKind::Handshake,
            Phase::Exchange => ErrorKind::Timeout,
        }),
    };
    let keep = matches!(result, Ok((response, _)) if response.keep_alive);
    if !keep || plan.new_connections {
        // Also after a timeout, whose cancelled read took the connection's buffer with it.
        *connection = None;
    }
    Some(result)
}

/// Closed loop: the next request goes out as soon as the previous response has ended.
async fn closed_loop(plan: &Plan, local: &Local) {
    let mut connection = None;
    loop {
        let now = Instant::now();
        if now >= plan.end {
            return;
        }
        let counted = now >= plan.measure_from;
        let deadline = (now + plan.timeout).min(plan.end);
        let Some(result) = exchange(plan, local, &mut connection, deadline, counted).await else {
            return;
        };
        match result {
            Ok((response, sent)) => local.response(counted, response.status, sent.elapsed()),
            Err(kind) => {
                local.error(counted, kind);
                if matches!(kind, ErrorKind::Connect | ErrorKind::Handshake) {
                    monoio::time::sleep(CONNECT_RETRY_BACKOFF).await;
                }
            }
        }
    }
}

/// Open loop: request `k` of connection `index` is due at
/// `start + index / rate + k * interval`; latency runs from that time unless the connection
/// sat idle waiting for it (see the module doc).
async fn open_loop(plan: &Plan, index: usize, (rate, interval): (f64, Duration), local: &Local) {
    let mut connection = None;
    let mut due = plan.start + Duration::from_secs_f64(index as f64 / rate);
    while due < plan.end {
        let idle = Instant::now() < due;
        if idle {
            monoio::time::sleep_until(monoio::time::Instant::from_std(due)).await;
        }
        let counted = due >= plan.measure_from;
        let deadline = (Instant::now() + plan.timeout).min(plan.end);
        let Some(result) = exchange(plan, local, &mut connection, deadline, counted).await else {
            return;
        };
        match result {
            Ok((response, sent)) => {
                let latency_from = if idle { sent } else { due };
                local.response(counted, response.status, latency_from.elapsed())
            }
            Err(kind) => local.error(counted, kind),
        }
        due += interval;
    }
}

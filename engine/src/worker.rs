//! Worker threads: one per core, each pinned with core_affinity, each running its own runtime
//! (`coregate-rt`) and accepting on its own SO_REUSEPORT listeners.
//!
//! The runtime is built on io_uring with `COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN`
//! (task work runs only when the worker asks for completions, so the kernel never interrupts
//! it mid-request); when the kernel refuses those flags it retries plain io_uring, and when
//! io_uring is unavailable altogether (sysctl `kernel.io_uring_disabled`, seccomp) it falls back
//! to the runtime's epoll driver and says so. Everything a worker owns — connections, buffers,
//! pools, balancer state — lives in its [`Worker`] and is touched by no other thread.
//!
//! A worker adopts a newly published snapshot itself, between requests ([`Worker::view`]):
//! the new [`View`] takes over the circuit breakers of endpoints whose upstream and address
//! the reload left alone and the verified-token caches of JWT policies whose keys and checks
//! it left alone, so a reload during an outage does not send traffic back to dead endpoints.
//!
//! Its housekeeping task (every 50 ms) sends stats, sweeps the upstream pools, wakes
//! connections whose coarse deadline passed (the drain slots double as the coarse timer of
//! connections waiting between requests), and, once the worker has served nothing for a
//! second, calls the allocator's release hook so a quiet worker does not keep a burst's freed
//! pages. The deadlines of single reads and writes inside a request are the worker's
//! [`Timer`], with a ticker task of its own.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use coregate_rt::net::bind_reuseport;
use coregate_rt::time::sleep;
use coregate_rt::{spawn, Runtime, TcpListener};

use crate::access_log;
use crate::policy::breaker::{Breaker, BreakerConfig, State as BreakerState};
use crate::policy::jwt::{self, TokenCache};
use crate::policy::ratelimit::{Decision, Key, LimiterConfig, LocalLimiter, Rule, ShareUpdate};
use crate::proxy::{Conn, Outcome};
use crate::shared::{AccessLogBatch, Report, Shared};
use crate::snapshot::{Health, Snapshot};
use crate::stale::StaleCache;
use crate::stats::{
    latency_histogram, BreakerReport, Rejection, RouteStats, StatsReport, TlsCounters,
    REPORT_INTERVAL_MS,
};
use crate::timer::Timer;
use crate::transform::RequestIds;
use crate::upstream::balancer::BalancerState;
use crate::upstream::pool::Pools;
use coregate_config::BreakerSettings;
use std::hash::BuildHasher;

/// io_uring submission queue size per worker.
const URING_ENTRIES: u32 = 4096;
/// Listen backlog of each worker's listener.
const LISTEN_BACKLOG: i32 = 4096;
/// How often a worker looks at the drain flag (and, every few times, sends stats and closes
/// expired idle upstream connections).
const DRAIN_POLL_MS: u64 = 50;
/// Pause before retrying accept after an error such as EMFILE, so the loop does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 20;
/// Largest read buffer kept in a worker's free list; larger ones (grown for a big head) are
/// dropped when returned.
const BUFFER_KEEP_BYTES_MAX: usize = 64 * 1024;
/// Buffers kept in a worker's free list.
const BUFFER_FREE_MAX: usize = 64;
/// Size a fresh buffer starts with. One size for every pooled buffer: the response read
/// wants 32 KiB (a 16 KiB body and its head in one read and one write: 4.05 io_uring
/// operations per request on the 16k scenario against 6.0 with 16 KiB), and with two sizes in
/// one LIFO pool the buffers swapped roles from request to request, so the response buffer
/// was grown by `realloc`, which copied the old 16 KiB, on most requests (2.2 % of the
/// worker's CPU in a perf profile of the small scenario).
pub(crate) const BUFFER_BYTES: usize = 32 * 1024;

/// The retry budget's window: its counts halve this often.
pub(crate) const RETRY_WINDOW_MS: u64 = 10_000;
/// Retries a route may make in a window beyond its percentage, so one that sees few
/// requests can still retry.
const RETRY_BUDGET_FLOOR: u64 = 3;

/// Which I/O driver a worker ended up with.
pub use coregate_rt::DriverKind as Driver;

/// What a started worker reports back before it starts serving.
#[derive(Debug)]
pub struct WorkerStarted {
    pub index: usize,
    pub core: Option<usize>,
    pub driver: Driver,
}

/// A running worker thread.
pub struct WorkerHandle {
    pub started: WorkerStarted,
    pub thread: JoinHandle<()>,
    /// Where the control side sends this worker its rate-limit shares.
    pub shares: Sender<ShareUpdate>,
}

/// The cores this process may run on (its affinity mask), in order.
pub fn available_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

/// Starts `count` workers (0 = one per available core), worker i pinned to the i-th
/// available core (wrapping when there are more workers than cores). Returns once every
/// worker has bound its listeners, or the first error.
pub fn start_workers(
    count: usize,
    shared: Arc<Shared>,
    reports: Sender<Report>,
) -> io::Result<Vec<WorkerHandle>> {
    probe_listeners(&shared)?;
    let cores = available_cores();
    let count = if count == 0 {
        cores.len().max(1)
    } else {
        count
    };
    let mut handles = Vec::with_capacity(count);
    for index in 0..count {
        let core = if cores.is_empty() {
            None
        } else {
            Some(cores[index % cores.len()])
        };
        let (tx, rx) = std::sync::mpsc::channel::<io::Result<Driver>>();
        let (shares, shares_rx) = std::sync::mpsc::channel::<ShareUpdate>();
        let shared = shared.clone();
        let reports = reports.clone();
        let lanes = Lanes {
            index,
            workers: count,
            reports,
            shares: shares_rx,
        };
        let thread = std::thread::Builder::new()
            .name(format!("coregate-w{index}"))
            .spawn(move || {
                if let Some(id) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                run_worker(lanes, shared, tx);
            })?;
        let driver = rx
            .recv()
            .map_err(|_| io::Error::other(format!("worker {index} exited during start-up")))??;
        handles.push(WorkerHandle {
            started: WorkerStarted {
                index,
                core,
                driver,
            },
            thread,
            shares,
        });
    }
    check_sole_listeners(&shared, count)?;
    Ok(handles)
}

/// Refuses to run when, once every worker has bound its listeners, a listener's address has
/// more listening sockets than workers: another process bound it with SO_REUSEPORT between
/// [`probe_listeners`] and the workers' binds (two gateways started at the same moment on one
/// address), and the kernel would split connections between them. Read from
/// /proc/net/tcp{,6}, which list this network namespace's sockets; where they cannot be read
/// the check is skipped.
fn check_sole_listeners(shared: &Shared, workers: usize) -> io::Result<()> {
    for l in &shared.snapshot.load().config.listeners {
        let Ok(listening) = listening_sockets(l.address) else {
            continue;
        };
        if listening > workers {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "listener {} ({}): address in use: {} other listening socket(s) share \
                     the port through SO_REUSEPORT; refusing to split connections with them",
                    l.name,
                    l.address,
                    listening - workers
                ),
            ));
        }
    }
    Ok(())
}

/// Listening TCP sockets bound to exactly `addr`, from /proc/net/tcp (IPv4) or tcp6, whose
/// local address column is the address's 32-bit words in host byte order, in hex, then the
/// port; state `0A` is LISTEN.
fn listening_sockets(addr: std::net::SocketAddr) -> io::Result<usize> {
    let (file, octets): (&str, Vec<u8>) = match addr.ip() {
        std::net::IpAddr::V4(ip) => ("/proc/net/tcp", ip.octets().to_vec()),
        std::net::IpAddr::V6(ip) => ("/proc/net/tcp6", ip.octets().to_vec()),
    };
    let mut wanted = String::with_capacity(40);
    for word in octets.chunks(4) {
        let word = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]);
        wanted.push_str(&format!("{word:08X}"));
    }
    wanted.push_str(&format!(":{:04X}", addr.port()));
    let table = std::fs::read_to_string(file)?;
    Ok(table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1);
            let state = fields.nth(1);
            local == Some(wanted.as_str()) && state == Some("0A")
        })
        .count())
}

/// Refuses addresses another process already listens on. Workers bind with SO_REUSEPORT,
/// which would otherwise let a second gateway (or anything else with SO_REUSEPORT) silently
/// share the port and half the traffic. A plain bind fails on a listening port.
fn probe_listeners(shared: &Shared) -> io::Result<()> {
    for l in &shared.snapshot.load().config.listeners {
        std::net::TcpListener::bind(l.address).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("listener {} ({}): {e}", l.name, l.address),
            )
        })?;
    }
    Ok(())
}

/// A worker's place among the workers and its channels to the control side.
struct Lanes {
    index: usize,
    workers: usize,
    reports: Sender<Report>,
    shares: Receiver<ShareUpdate>,
}

fn run_worker(
    lanes: Lanes,
    shared: Arc<Shared>,
    ready: std::sync::mpsc::Sender<io::Result<Driver>>,
) {
    let index = lanes.index;
    let mut runtime = match Runtime::new(URING_ENTRIES) {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let driver = runtime.driver();
    let serve = async move {
        let worker = Rc::new(Worker::new(lanes, shared));
        let listeners = match worker.bind_listeners() {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(driver));
        spawn(housekeeping(worker.clone()));
        spawn({
            let worker = worker.clone();
            async move { worker.timer.run().await }
        });
        let mut accepting = Vec::new();
        for (index, listener) in listeners.into_iter().enumerate() {
            accepting.push(spawn(accept_loop(worker.clone(), listener, index)));
        }
        for task in accepting {
            task.await;
        }
        // Draining: the listeners are closed; give in-flight requests until the deadline.
        let timeout_ms = worker.view().snapshot.config.server.drain_timeout_ms;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        while worker.connections.get() > 0 && Instant::now() < deadline {
            sleep(Duration::from_millis(DRAIN_POLL_MS)).await;
        }
        worker.send_stats();
        worker.send_access_log();
        let _ = worker.reports.send(Report::Exited {
            worker: index,
            unfinished: worker.connections.get(),
        });
    };
    runtime.block_on(serve);
}

/// The breaker of one endpoint, from its upstream's settings.
fn breaker_config(settings: &BreakerSettings) -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: settings.consecutive_failures,
        failure_ratio: settings.failure_ratio,
        window_ms: settings.window_ms,
        minimum_requests: settings.minimum_requests,
        cooldown_base_ms: settings.cooldown_ms,
        cooldown_multiplier: settings.cooldown_multiplier,
        cooldown_max_ms: settings.cooldown_max_ms,
        half_open_probes: settings.half_open_probes,
    }
}

/// A worker's own state. Lives in an `Rc` on the worker thread; nothing here is shared.
pub(crate) struct Worker {
    index: usize,
    workers: usize,
    pub shared: Arc<Shared>,
    reports: Sender<Report>,
    shares: Receiver<ShareUpdate>,
    /// Created on first use, so a config without rate limits costs no table.
    limiter: RefCell<Option<LocalLimiter>>,
    view: RefCell<Rc<View>>,
    health: RefCell<Arc<Health>>,
    pub pools: RefCell<Pools>,
    free_buffers: RefCell<Vec<Vec<u8>>>,
    connections: Cell<usize>,
    /// Requests started, ever (wrapping): the quiet watch compares it between looks.
    activity: Cell<u64>,
    stats: RefCell<Gathered>,
    /// Access-log lines not yet sent to the control side.
    access_log: RefCell<Vec<u8>>,
    /// Last good GET responses of routes with `fallback.stale`.
    pub stale: RefCell<StaleCache>,
    pub request_ids: RequestIds,
    pub drain: Drain,
    /// Deadlines of single I/O operations (see [`Timer`]).
    pub timer: Timer,
}

/// A snapshot plus this worker's mutable state derived from it (balancers). Rebuilt when a
/// new snapshot is published; requests in flight keep the one they started with.
pub(crate) struct View {
    pub snapshot: Arc<Snapshot>,
    pub balancers: Vec<RefCell<BalancerState>>,
    /// Per JWT verifier (same index as `policies.jwt`): this worker's verified tokens. A
    /// reload hands a policy's cache on when its name, keys and checks stay the same (see
    /// [`View::new`]).
    pub token_caches: Vec<RefCell<TokenCache>>,
    /// Per upstream, per endpoint: this worker's circuit breakers (empty for an upstream
    /// without `[breaker]`). Shared with the previous view for every endpoint whose upstream
    /// name, address and breaker settings a reload left alone, so that requests still in
    /// flight on the old view report to the same breaker.
    pub breakers: Vec<Box<[Rc<RefCell<Breaker>>]>>,
    /// Per route: (requests, retries) in the current retry-budget window.
    pub retry_budget: Vec<Cell<(u32, u32)>>,
}

impl View {
    /// The view of `snapshot`, taking over from `previous` (the view it replaces, on this
    /// worker) what must outlive a reload, so that a reload during an outage does not send
    /// traffic back to endpoints this worker has cut off, nor check every token again:
    ///
    /// - the breaker of every endpoint keyed by upstream name and endpoint address (indexes
    ///   move when upstreams or endpoints are added or reordered); with the same settings
    ///   the breaker itself is shared, with changed settings its state is carried over
    ///   ([`Breaker::carried_to`]);
    /// - the token cache of every JWT policy keyed by its name, whose verifier has the same
    ///   fingerprint (keys and every check) and whose cache the same size; the cache moves
    ///   and the old view keeps an empty one, as cached entries are only valid for the
    ///   verifier that made them.
    ///
    /// Anything else starts fresh. Runs on the worker that owns both views, at the first
    /// request or tick after the publish, so nothing here is shared or locked.
    fn new(snapshot: Arc<Snapshot>, previous: Option<&View>, now_ms: u64) -> View {
        let balancers = snapshot
            .config
            .upstreams
            .iter()
            .map(|u| RefCell::new(BalancerState::new(u)))
            .collect();
        let token_caches = snapshot
            .config
            .jwt
            .iter()
            .zip(&snapshot.policies.jwt)
            .map(|(auth, verifier)| {
                let carried = previous.and_then(|p| {
                    let old = p.snapshot.config.jwt.iter().position(|a| {
                        a.name == auth.name && a.cache_entries == auth.cache_entries
                    })?;
                    (p.snapshot.policies.jwt[old].fingerprint() == verifier.fingerprint())
                        .then(|| p.token_caches[old].replace(TokenCache::new(0, 0)))
                });
                RefCell::new(carried.unwrap_or_else(|| {
                    TokenCache::new(auth.cache_entries, jwt::DEFAULT_CACHE_MAX_AGE_SECONDS)
                }))
            })
            .collect();
        let old_breakers: HashMap<(&str, SocketAddr), &Rc<RefCell<Breaker>>> = previous
            .map(|p| {
                let upstreams = p.snapshot.config.upstreams.iter().zip(&p.breakers);
                upstreams
                    .flat_map(|(u, breakers)| {
                        let addresses = u.endpoints.iter().map(|e| (u.name.as_str(), e.address));
                        addresses.zip(breakers.iter())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let breakers = snapshot
            .config
            .upstreams
            .iter()
            .map(|u| {
                let Some(settings) = &u.breaker else {
                    return Box::default();
                };
                let config = breaker_config(settings);
                let carry = |address| {
                    let Some(&old) = old_breakers.get(&(u.name.as_str(), address)) else {
                        return Rc::new(RefCell::new(Breaker::new(config)));
                    };
                    if old.borrow().runs_on(&config) {
                        return old.clone();
                    }
                    Rc::new(RefCell::new(old.borrow().carried_to(config, now_ms)))
                };
                u.endpoints.iter().map(|e| carry(e.address)).collect()
            })
            .collect();
        let retry_budget = snapshot
            .config
            .routes
            .iter()
            .map(|_| Cell::new((0, 0)))
            .collect();
        View {
            snapshot,
            balancers,
            token_caches,
            breakers,
            retry_budget,
        }
    }
}

impl Worker {
    fn new(lanes: Lanes, shared: Arc<Shared>) -> Worker {
        let Lanes {
            index,
            workers,
            reports,
            shares,
        } = lanes;
        let view = Rc::new(View::new(shared.snapshot.load(), None, 0));
        let stats = Gathered::new(&view.snapshot);
        let health = shared.health.load();
        Worker {
            index,
            workers,
            shared,
            reports,
            shares,
            limiter: RefCell::new(None),
            view: RefCell::new(view),
            health: RefCell::new(health),
            pools: RefCell::new(Pools::default()),
            free_buffers: RefCell::new(Vec::new()),
            connections: Cell::new(0),
            activity: Cell::new(0),
            stats: RefCell::new(stats),
            access_log: RefCell::new(Vec::new()),
            stale: RefCell::new(StaleCache::default()),
            request_ids: RequestIds::new(
                std::collections::hash_map::RandomState::new().hash_one(index),
            ),
            drain: Drain::default(),
            timer: Timer::default(),
        }
    }

    /// The current view; swaps in a newly published snapshot first if there is one.
    pub fn view(&self) -> Rc<View> {
        let published = self.shared.snapshot.version();
        let mut view = self.view.borrow_mut();
        if view.snapshot.version != published {
            // The old view's lookups are counted before it goes.
            self.count_token_lookups(&view);
            let next = View::new(
                self.shared.snapshot.load(),
                Some(&view),
                self.shared.now_ms(),
            );
            *view = Rc::new(next);
        }
        view.clone()
    }

    /// Picks an endpoint among those the current health snapshot considers up (swapping in
    /// a newly published health snapshot first). Borrows the snapshot instead of cloning its
    /// `Arc`, so no shared reference count is written per request.
    ///
    /// With breakers, an endpoint whose breaker is open is skipped too; the chosen one's
    /// breaker must then admit the request (a half-open breaker admits a bounded number of
    /// probes), else the pick is made again without it.
    pub fn pick_endpoint(
        &self,
        view: &View,
        upstream: usize,
        hash: u64,
        exclude: &[usize],
    ) -> Option<usize> {
        let published = self.shared.health.version();
        if self.health.borrow().version != published {
            *self.health.borrow_mut() = self.shared.health.load();
        }
        let health = self.health.borrow();
        let endpoints = &view.snapshot.config.upstreams[upstream].endpoints;
        let mut balancer = view.balancers[upstream].borrow_mut();
        let breakers = &view.breakers[upstream];
        if breakers.is_empty() {
            return balancer.pick(hash, |i| {
                health.is_up(endpoints[i].address) && !exclude.contains(&i)
            });
        }
        let now_ms = self.shared.now_ms();
        let mut refused: Vec<usize> = Vec::new();
        for _ in 0..endpoints.len() {
            let picked = balancer.pick(hash, |i| {
                health.is_up(endpoints[i].address)
                    && !refused.contains(&i)
                    && !exclude.contains(&i)
                    && match breakers[i].borrow().state() {
                        BreakerState::Open { until_ms } => now_ms >= until_ms,
                        BreakerState::Closed | BreakerState::HalfOpen => true,
                    }
            })?;
            if breakers[picked].borrow_mut().allow(now_ms) {
                return Some(picked);
            }
            refused.push(picked);
        }
        None
    }

    /// Counts a request of a route with retries, for its retry budget.
    pub fn count_request_for_retries(&self, view: &View, route: usize) {
        let cell = &view.retry_budget[route];
        let (requests, retries) = cell.get();
        cell.set((requests.saturating_add(1), retries));
    }

    /// Whether the route's retries may grow by one: retries stay under `percent` of its
    /// requests (plus a small floor, so a quiet route can still retry), per worker, over a
    /// window that halves every [`RETRY_WINDOW_MS`].
    pub fn retry_budget_left(&self, view: &View, route: usize, percent: u32) -> bool {
        let (requests, retries) = view.retry_budget[route].get();
        u64::from(retries) < u64::from(requests) * u64::from(percent) / 100 + RETRY_BUDGET_FLOOR
    }

    /// Counts a retry against the route's budget.
    pub fn spend_retry(&self, view: &View, route: usize) {
        let cell = &view.retry_budget[route];
        let (requests, retries) = cell.get();
        cell.set((requests, retries.saturating_add(1)));
    }

    /// Reports how a request to an endpoint went to its breaker, if it has one.
    pub fn breaker_outcome(&self, view: &View, upstream: usize, endpoint: usize, ok: bool) {
        if let Some(breaker) = view.breakers[upstream].get(endpoint) {
            let mut breaker = breaker.borrow_mut();
            let now_ms = self.shared.now_ms();
            if ok {
                breaker.on_success(now_ms);
            } else {
                breaker.on_failure(now_ms);
            }
        }
    }

    /// Spends a token of `key` under `rule` on this worker's share of the global limit.
    pub fn rate_take(&self, rule: Rule, key: Key, keys_max: usize) -> Decision {
        let now_ms = self.shared.now_ms();
        let mut limiter = self.limiter.borrow_mut();
        let limiter = limiter.get_or_insert_with(|| {
            let mut config = LimiterConfig::new(self.workers);
            config.keys_max = keys_max;
            config.sync_interval_ms = self.rate_sync_interval_ms();
            LocalLimiter::new(self.index, config)
        });
        limiter.take(rule, key, now_ms)
    }

    fn rate_sync_interval_ms(&self) -> u64 {
        self.view
            .borrow()
            .snapshot
            .config
            .server
            .rate_limit_sync_interval_ms
    }

    /// Installs the shares the control side sent, and every sync interval reports this
    /// worker's usage. Off the request path (housekeeping).
    fn sync_rate_limits(&self, last_sync: &mut Instant) {
        let mut limiter = self.limiter.borrow_mut();
        let Some(limiter) = limiter.as_mut() else {
            // Nothing was limited yet; drop shares addressed to no table.
            while self.shares.try_recv().is_ok() {}
            return;
        };
        let now_ms = self.shared.now_ms();
        while let Ok(update) = self.shares.try_recv() {
            limiter.apply(&update, now_ms);
        }
        if last_sync.elapsed() >= Duration::from_millis(self.rate_sync_interval_ms()) {
            *last_sync = Instant::now();
            let _ = self.reports.send(Report::RateUsage(limiter.drain_usage()));
        }
    }

    /// Whether the current config has the access log on.
    pub fn logging(&self) -> bool {
        self.view.borrow().snapshot.config.access_log.is_some()
    }

    /// Appends the access-log line of a finished request (if the log is on and a response
    /// was started), sending the batch when it is large.
    pub(crate) fn log_access(&self, conn: &Conn, outcome: &Outcome) {
        let status = outcome.status.get();
        if status == 0 || !self.logging() {
            return;
        }
        let view = self.view.borrow();
        let route = outcome
            .route
            .get()
            .filter(|_| outcome.version.get() == view.snapshot.version)
            .and_then(|r| view.snapshot.config.routes.get(r))
            .map(|r| r.name.as_str());
        let latency_us = outcome
            .started
            .get()
            .map_or(0, |t| t.elapsed().as_micros() as u64);
        let mut lines = self.access_log.borrow_mut();
        access_log::format_line(
            &mut lines,
            &access_log::Entry {
                time: SystemTime::now(),
                client: conn.client.ip,
                method: &conn.log_method,
                path: &conn.log_target,
                route,
                status,
                upstream: outcome.upstream.get(),
                latency_us,
                bytes: outcome.bytes.get(),
            },
        );
        if lines.len() >= access_log::BATCH_BYTES_MAX {
            drop(lines);
            self.send_access_log();
        }
    }

    /// Sends the pending access-log lines, if any.
    fn send_access_log(&self) {
        let lines = std::mem::take(&mut *self.access_log.borrow_mut());
        if !lines.is_empty() {
            let _ = self.reports.send(Report::AccessLog(AccessLogBatch {
                worker: self.index,
                lines,
            }));
        }
    }

    /// Counts a request for the quiet watch (see [`set_release_memory`]).
    pub(crate) fn note_activity(&self) {
        self.activity.set(self.activity.get().wrapping_add(1));
    }

    /// A client connection closed (it counted in `connections` since its accept).
    pub(crate) fn connection_closed(&self) {
        self.connections.set(self.connections.get() - 1);
    }

    /// Whether this worker is draining: no new requests on kept-alive connections.
    pub fn draining(&self) -> bool {
        self.drain.fired.get()
    }

    /// An empty buffer with at least [`BUFFER_BYTES`] capacity.
    pub fn take_buffer(&self) -> Vec<u8> {
        self.free_buffers
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_BYTES))
    }

    /// Gives a buffer back for reuse.
    pub fn give_buffer(&self, mut buffer: Vec<u8>) {
        let mut free = self.free_buffers.borrow_mut();
        if buffer.capacity() >= BUFFER_BYTES
            && buffer.capacity() <= BUFFER_KEEP_BYTES_MAX
            && free.len() < BUFFER_FREE_MAX
        {
            buffer.clear();
            free.push(buffer);
        }
    }

    /// Counts a request the gateway answered itself.
    pub fn reject(&self, status: u16) {
        let mut stats = self.stats.borrow_mut();
        stats.rejections[Rejection::from_status(status) as usize] += 1;
        stats.dirty = true;
    }

    /// Counts a response a route's JSON filter had to pass unchanged.
    pub fn json_filter_skipped(&self) {
        let mut stats = self.stats.borrow_mut();
        stats.json_filter_skipped += 1;
        stats.dirty = true;
    }

    /// Counts a close-delimited upstream body that ended in an error (see
    /// [`StatsReport::upstream_truncated`]).
    pub(crate) fn upstream_truncated(&self) {
        let mut stats = self.stats.borrow_mut();
        stats.upstream_truncated += 1;
        stats.dirty = true;
    }

    /// Counts a relayed response of `route` in snapshot `version`. Samples from a snapshot
    /// older than the one being gathered (requests that straddled a reload) are dropped.
    pub fn record(&self, version: u64, route: usize, status: u16, total_us: u64, upstream_us: u64) {
        let mut stats = self.stats.borrow_mut();
        if stats.version != version {
            return;
        }
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        let r = &mut stats.routes[route];
        r.responses[class] += 1;
        r.latency_us.saturating_record(total_us.max(1));
        stats
            .upstream_latency_us
            .saturating_record(upstream_us.max(1));
        stats.dirty = true;
    }

    /// Moves the token caches' lookup counts into the next stats report.
    fn count_token_lookups(&self, view: &View) {
        let mut stats = self.stats.borrow_mut();
        for cache in &view.token_caches {
            let (hits, misses) = cache.borrow_mut().take_lookups();
            stats.jwt_cache_hits += hits;
            stats.jwt_cache_misses += misses;
            stats.dirty |= hits + misses > 0;
        }
    }

    /// Counts a TLS event (handshake, failure, redirect) for the next stats report.
    pub(crate) fn count_tls(&self, count: impl FnOnce(&mut TlsCounters)) {
        let mut stats = self.stats.borrow_mut();
        count(&mut stats.tls);
        stats.dirty = true;
    }

    /// Sends what was gathered since the last report, if anything, and starts afresh (on the
    /// current snapshot's routes).
    fn send_stats(&self) {
        let view = self.view();
        self.count_token_lookups(&view);
        let mut stats = self.stats.borrow_mut();
        let breakers = breaker_reports(&view);
        if !stats.dirty && stats.version == view.snapshot.version && breakers == stats.breakers {
            return;
        }
        let fresh = Gathered::new(&view.snapshot);
        let done = std::mem::replace(&mut *stats, fresh);
        stats.breakers.clone_from(&breakers);
        let _ = self.reports.send(Report::Stats(Box::new(StatsReport {
            worker: self.index,
            snapshot_version: done.version,
            routes: done.routes,
            rejections: done.rejections,
            upstream_latency_us: done.upstream_latency_us,
            connections_accepted: done.accepted,
            connections_open: self.connections.get() as u64,
            breakers,
            json_filter_skipped: done.json_filter_skipped,
            upstream_truncated: done.upstream_truncated,
            jwt_cache_hits: done.jwt_cache_hits,
            jwt_cache_misses: done.jwt_cache_misses,
            tls: done.tls,
        })));
    }

    fn bind_listeners(&self) -> io::Result<Vec<TcpListener>> {
        let view = self.view();
        view.snapshot
            .config
            .listeners
            .iter()
            .map(|l| {
                bind_reuseport(l.address, LISTEN_BACKLOG)
                    .and_then(TcpListener::from_std)
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("listener {} ({}): {e}", l.name, l.address),
                        )
                    })
            })
            .collect()
    }
}

/// The state of this worker's breakers.
fn breaker_reports(view: &View) -> Vec<BreakerReport> {
    let mut reports = Vec::new();
    for (upstream, breakers) in view.snapshot.config.upstreams.iter().zip(&view.breakers) {
        for (endpoint, breaker) in upstream.endpoints.iter().zip(breakers.iter()) {
            let breaker = breaker.borrow();
            reports.push(BreakerReport {
                upstream: upstream.name.as_str().into(),
                endpoint: endpoint.address,
                state: match breaker.state() {
                    BreakerState::Closed => "closed",
                    BreakerState::Open { .. } => "open",
                    BreakerState::HalfOpen => "half_open",
                },
                trips: breaker.trips(),
                recoveries: breaker.recoveries(),
            });
        }
    }
    reports
}

/// What a worker gathered since its last report.
struct Gathered {
    version: u64,
    routes: Vec<RouteStats>,
    rejections: [u64; Rejection::COUNT],
    upstream_latency_us: hdrhistogram::Histogram<u64>,
    accepted: u64,
    json_filter_skipped: u64,
    upstream_truncated: u64,
    jwt_cache_hits: u64,
    jwt_cache_misses: u64,
    tls: TlsCounters,
    dirty: bool,
    /// The breaker states last reported, so an unchanged state is not sent again.
    breakers: Vec<BreakerReport>,
}

impl Gathered {
    fn new(snapshot: &Snapshot) -> Gathered {
        Gathered {
            version: snapshot.version,
            routes: snapshot
                .config
                .routes
                .iter()
                .map(|r| RouteStats::new(&r.name))
                .collect(),
            rejections: [0; Rejection::COUNT],
            upstream_latency_us: latency_histogram(),
            accepted: 0,
            json_filter_skipped: 0,
            upstream_truncated: 0,
            jwt_cache_hits: 0,
            jwt_cache_misses: 0,
            tls: TlsCounters::default(),
            dirty: false,
            breakers: Vec::new(),
        }
    }
}

/// This worker's side of a drain: once fired, accept loops end and idle connections close.
/// Tasks waiting for it hold a slot (one per connection or listener, not per request) where
/// their waker is kept.
#[derive(Default)]
pub(crate) struct Drain {
    fired: Cell<bool>,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<usize>>,
}

/// One waiting task's place: its waker, and when it also waits for a deadline, that.
#[derive(Default)]
struct Slot {
    waker: Option<Waker>,
    deadline: Option<Instant>,
    /// The deadline passed (set by the housekeeping tick, so a wait reads no clock).
    expired: bool,
}

/// Why a [`Drain::wait_until`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Woken {
    Drain,
    Deadline,
}

impl Drain {
    /// A slot for one waiting task; give it back with [`Drain::release`].
    pub fn register(&self) -> usize {
        if let Some(slot) = self.free.borrow_mut().pop() {
            return slot;
        }
        let mut slots = self.slots.borrow_mut();
        slots.push(Slot::default());
        slots.len() - 1
    }

    pub fn release(&self, slot: usize) {
        self.slots.borrow_mut()[slot] = Slot::default();
        self.free.borrow_mut().push(slot);
    }

    /// Resolves when the drain fires.
    pub fn wait(&self, slot: usize) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.fired.get() {
                return Poll::Ready(());
            }
            let mut slots = self.slots.borrow_mut();
            match &slots[slot].waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => slots[slot].waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }

    /// Resolves when the drain fires or at the first housekeeping tick ([`DRAIN_POLL_MS`])
    /// at or after `deadline` (so never before it; polling reads no clock): the coarse timer
    /// of a connection waiting between requests. It costs the slot the connection holds
    /// anyway, where a sleep of its own would add a kernel timer (and, on monoio, 640 bytes)
    /// to every idle connection.
    pub fn wait_until(&self, slot: usize, deadline: Instant) -> SlotWait<'_> {
        SlotWait {
            drain: self,
            slot,
            deadline,
        }
    }

    /// Wakes the tasks whose deadline has passed; called on every housekeeping tick.
    fn wake_expired(&self, now: Instant) {
        let mut expired = Vec::new();
        for slot in self.slots.borrow_mut().iter_mut() {
            if slot.deadline.is_some_and(|d| d <= now) {
                slot.deadline = None;
                slot.expired = true;
                expired.extend(slot.waker.take());
            }
        }
        for w in expired {
            w.wake();
        }
    }

    fn fire(&self) {
        self.fired.set(true);
        let wakers: Vec<Waker> = self
            .slots
            .borrow_mut()
            .iter_mut()
            .filter_map(|slot| slot.waker.take())
            .collect();
        for w in wakers {
            w.wake();
        }
    }
}

/// The future of [`Drain::wait_until`]; dropping it takes its deadline back out of the slot.
pub(crate) struct SlotWait<'a> {
    drain: &'a Drain,
    slot: usize,
    deadline: Instant,
}

impl std::future::Future for SlotWait<'_> {
    type Output = Woken;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Woken> {
        if self.drain.fired.get() {
            return Poll::Ready(Woken::Drain);
        }
        let mut slots = self.drain.slots.borrow_mut();
        let slot = &mut slots[self.slot];
        if std::mem::take(&mut slot.expired) {
            return Poll::Ready(Woken::Deadline);
        }
        slot.deadline = Some(self.deadline);
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for SlotWait<'_> {
    fn drop(&mut self) {
        if let Ok(mut slots) = self.drain.slots.try_borrow_mut() {
            slots[self.slot].deadline = None;
            slots[self.slot].expired = false;
        }
    }
}

/// Accepts on one of this worker's listeners (`index` into the config's listeners).
async fn accept_loop(worker: Rc<Worker>, listener: TcpListener, index: usize) {
    let slot = worker.drain.register();
    loop {
        let max = worker
            .view()
            .snapshot
            .config
            .server
            .connections_max_per_worker;
        while worker.connections.get() >= max && !worker.draining() {
            sleep(Duration::from_millis(1)).await;
        }
        let accepted = monoio::select! {
            accepted = listener.accept() => Some(accepted),
            _ = worker.drain.wait(slot) => None,
        };
        match accepted {
            None => break,
            Some(Ok((stream, peer))) => {
                let _ = stream.set_nodelay(true);
                worker.connections.set(worker.connections.get() + 1);
                worker.stats.borrow_mut().accepted += 1;
                spawn(crate::proxy::serve(worker.clone(), stream, peer, index));
            }
            Some(Err(_)) => {
                // EMFILE/ENFILE/ENOBUFS: pause instead of spinning; the error will clear when
                // connections close.
                sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
            }
        }
    }
    worker.drain.release(slot);
}

/// Per-worker periodic work: stats reports, closing expired pooled connections, and noticing
/// a drain request.
async fn housekeeping(worker: Rc<Worker>) {
    let mut quiet = QuietWatch::default();
    let mut last_sweep = Instant::now();
    let mut last_sync = Instant::now();
    let mut last_budget_decay = Instant::now();
    loop {
        let tick_ms = DRAIN_POLL_MS.min(worker.rate_sync_interval_ms());
        sleep(Duration::from_millis(tick_ms)).await;
        worker.sync_rate_limits(&mut last_sync);
        if last_budget_decay.elapsed() >= Duration::from_millis(RETRY_WINDOW_MS) {
            last_budget_decay = Instant::now();
            for cell in &worker.view().retry_budget {
                let (requests, retries) = cell.get();
                cell.set((requests / 2, retries / 2));
            }
        }
        if worker.shared.is_draining() && !worker.draining() {
            worker.drain.fire();
        }
        worker.drain.wake_expired(Instant::now());
        let now = Instant::now();
        if now.duration_since(last_sweep) >= Duration::from_millis(REPORT_INTERVAL_MS) {
            last_sweep = now;
            worker.send_stats();
            worker.send_access_log();
            worker.pools.borrow_mut().sweep(now);
            if quiet.look(worker.activity.get()) {
                if let Some(release) = RELEASE_MEMORY.get() {
                    release();
                }
            }
        }
    }
}

/// Hands freed memory back to the system once a worker has gone quiet (see
/// [`set_release_memory`]).
#[derive(Default)]
struct QuietWatch {
    /// `worker.activity` at the last look.
    seen: u64,
    /// Looks in a row without activity.
    quiet_looks: u32,
}

impl QuietWatch {
    /// Called every [`REPORT_INTERVAL_MS`] with the worker's request count: true (the release
    /// hook should run) once per quiet spell, at its [`QUIET_LOOKS`]th look without a request.
    fn look(&mut self, activity: u64) -> bool {
        if activity != self.seen {
            self.seen = activity;
            self.quiet_looks = 0;
            return false;
        }
        self.quiet_looks = self.quiet_looks.saturating_add(1);
        self.quiet_looks == QUIET_LOOKS
    }
}

/// Looks at [`REPORT_INTERVAL_MS`] without a request before a worker counts as quiet: 1 s.
const QUIET_LOOKS: u32 = 4;

static RELEASE_MEMORY: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Sets what a worker calls, on its own thread, once it has served no request for a second:
/// the allocator's "give freed pages back" (for mimalloc, `mi_collect`). An allocator keeps
/// freed memory for reuse and purges it only on its own later calls, so without this a
/// worker that went quiet after a burst (say, thousands of connections that parked) would
/// keep the burst's memory resident. The engine does not know which allocator the binary
/// chose, hence a hook; the first call wins.
pub fn set_release_memory(release: fn()) {
    let _ = RELEASE_MEMORY.set(release);
}

#[cfg(test)]
mod tests {
    use super::{listening_sockets, QuietWatch, QUIET_LOOKS};

    #[test]
    fn listening_sockets_are_counted_from_proc() {
        let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = a.local_addr().unwrap();
        assert_eq!(listening_sockets(addr).unwrap(), 1);
        // A connected socket on the same port is not a listener.
        let _client = std::net::TcpStream::connect(addr).unwrap();
        assert_eq!(listening_sockets(addr).unwrap(), 1);
        let v6 = std::net::TcpListener::bind("[::1]:0");
        if let Ok(v6) = v6 {
            assert_eq!(listening_sockets(v6.local_addr().unwrap()).unwrap(), 1);
        }
        drop(a);
        assert_eq!(listening_sockets(addr).unwrap(), 0);
    }

    #[test]
    fn the_release_runs_once_per_quiet_spell_and_never_while_busy() {
        let mut watch = QuietWatch::default();
        // Busy: the count moves between looks.
        assert!((1..=20).all(|n| !watch.look(n)));
        // Quiet: once, at the QUIET_LOOKS-th look, then not again.
        let quiet: Vec<bool> = (0..3 * QUIET_LOOKS).map(|_| watch.look(20)).collect();
        assert_eq!(quiet.iter().filter(|r| **r).count(), 1);
        assert!(quiet[QUIET_LOOKS as usize - 1]);
        // A request ends the spell; the next quiet spell releases again.
        assert!(!watch.look(21));
        let again = (0..QUIET_LOOKS).filter(|_| watch.look(21)).count();
        assert_eq!(again, 1);
    }
}

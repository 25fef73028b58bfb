//! Fixture origin servers: the upstreams of the gateway's integration tests, of its `demo`
//! command, and the fast floor of benchmarks.
//!
//! An [`Origin`] runs `threads` OS threads, each with its own monoio runtime and its own
//! SO_REUSEPORT listener on one shared port, and answers HTTP/1.1 and HTTP/1.0 with keep-alive
//! and pipelining (answers in request order) in one of the [`Mode`]s. Request bodies, with
//! Content-Length or chunked, stream through a fixed per-connection buffer and are never held
//! whole: a 10 MiB upload costs the 16 KiB read buffer, echoed or not.
//!
//! With [`OriginConfig::tls`] it serves HTTPS instead (rustls, TLS 1.2 and 1.3, session
//! tickets on; see [`crate::tls`]), in every mode, and counts its handshakes: full and resumed
//! ones apart, so that a test can tell whether a client (the gateway's upstream side, say)
//! resumes its sessions.
//!
//! Being the floor in benchmarks, it reuses per-thread buffers and writes each response with
//! one write (Fixed mode writes a response prebuilt at start). The counters are shared atomics
//! bumped per event: fine for a fixture, not a pattern for the gateway. Never panics on network
//! input: a malformed request gets 400 (431 for an oversized head) and a closed connection.

mod conn;
mod demo;
mod describe;
mod thread;

pub use conn::{HEADERS_MAX, HEAD_BYTES_MAX, READ_BUF_BYTES};

use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use rustls::ServerConfig;

use crate::tls::{self, ServerCounts};

/// Body size of Fixed responses by default: the length of "Hello, world!".
pub const DEFAULT_BODY_BYTES: usize = 13;
/// Delay of Slow origins by default (milliseconds); other modes default to no delay.
pub const DEFAULT_SLOW_DELAY_MS: u64 = 100;
/// Failure rate of Flaky origins by default; other modes default to no failures.
pub const DEFAULT_FLAKY_FAILURE_RATE: f64 = 0.5;

/// What an origin answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 with `body_bytes` bytes of `text/plain`, a response prebuilt at start.
    Fixed,
    /// 200 echoing the request body as it arrives, with the request's framing (Content-Length
    /// for Content-Length, chunked for chunked) and its Content-Type. The echo streams both
    /// ways at once, so a client must read while it writes a large body.
    Echo,
    /// 200 `application/json` describing the request:
    /// `{"origin","method","target","version","headers":[[name,value],..],"body_bytes"}`.
    /// Query parameters shape the answer: `status=NNN` (204 and 304 carry no body),
    /// `bytes=N` (N bytes of `text/plain` instead of the description), `chunked=1` (chunked
    /// framing), `close=1` (close-delimited body, then the connection closes).
    Json,
    /// Json after waiting `delay_ms` on a timer.
    Slow,
    /// Json, except that a `failure_rate` share of requests fail: half of the failures are
    /// answered 500, the other half by closing the connection without an answer. The draws
    /// come from a fixed-seed generator per thread, so a sequence of requests on one thread
    /// fails the same way on every run.
    Flaky,
    /// Small JSON services with fixed records: `GET /users`, `/users/{id}`, `/orders`,
    /// `/orders/{id}`, `/products`, `/products/{id}` (ids 1..=3, else a 404 JSON error).
    Demo,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fixed" => Ok(Mode::Fixed),
            "echo" => Ok(Mode::Echo),
            "json" => Ok(Mode::Json),
            "slow" => Ok(Mode::Slow),
            "flaky" => Ok(Mode::Flaky),
            "demo" => Ok(Mode::Demo),
            _ => Err(format!(
                "unknown mode {s:?} (expected fixed, echo, json, slow, flaky or demo)"
            )),
        }
    }
}

/// How to run an origin. Build it with [`OriginConfig::new`] and change the fields you need.
#[derive(Debug, Clone)]
pub struct OriginConfig {
    /// Sent in every response as `X-Origin: name`, and in Json bodies.
    pub name: String,
    /// Where to listen; port 0 picks an ephemeral port, read it back with [`Origin::addr`].
    pub listen: SocketAddr,
    pub mode: Mode,
    /// Fixed: response body size in bytes. Default [`DEFAULT_BODY_BYTES`].
    pub body_bytes: usize,
    /// Wait before the response head, in milliseconds, in every mode when above 0.
    /// Default [`DEFAULT_SLOW_DELAY_MS`] for Slow, 0 otherwise.
    pub delay_ms: u64,
    /// Flaky: share of requests that fail, 0.0..=1.0. Default
    /// [`DEFAULT_FLAKY_FAILURE_RATE`] for Flaky, 0 otherwise.
    pub failure_rate: f64,
    /// Server threads, each with its own runtime and listener. Default 1.
    pub threads: usize,
    /// Cores to pin the threads to, round-robin; empty (the default) pins nothing.
    pub cores: Vec<usize>,
    /// Serve HTTPS with this certificate and key; None (the default) serves plain HTTP.
    pub tls: Option<OriginTls>,
}

/// The PEM files of an origin that serves HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginTls {
    /// The certificate chain, the server's own certificate first.
    pub cert_file: PathBuf,
    /// Its private key (PKCS#8, SEC1 or PKCS#1).
    pub key_file: PathBuf,
}

impl OriginConfig {
    /// A config listening on 127.0.0.1 on an ephemeral port, with the defaults above.
    pub fn new(name: &str, mode: Mode) -> Self {
        OriginConfig {
            name: name.to_owned(),
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            mode,
            body_bytes: DEFAULT_BODY_BYTES,
            delay_ms: if mode == Mode::Slow {
                DEFAULT_SLOW_DELAY_MS
            } else {
                0
            },
            failure_rate: if mode == Mode::Flaky {
                DEFAULT_FLAKY_FAILURE_RATE
            } else {
                0.0
            },
            threads: 1,
            cores: Vec::new(),
            tls: None,
        }
    }
}

/// What every thread of one origin sees: its settings, the stop flag and the counters.
struct Shared {
    name: String,
    mode: Mode,
    body_bytes: usize,
    delay_ms: u64,
    failure_rate: f64,
    stopping: AtomicBool,
    connections_accepted: AtomicU64,
    requests: AtomicU64,
    body_bytes_received: AtomicU64,
    /// The TLS server config every thread accepts with, when serving HTTPS.
    tls: Option<Arc<ServerConfig>>,
    tls_counts: Arc<ServerCounts>,
}

/// A running origin. Stops on [`Origin::stop`] or when dropped.
pub struct Origin {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// Duplicates of the threads' listening sockets, kept to shut them down from outside:
    /// shutting a listener down fails the accept that its thread waits in.
    listeners: Vec<socket2::Socket>,
}

impl Origin {
    /// Starts the origin's threads and returns once every one of them is listening.
    pub fn start(cfg: OriginConfig) -> io::Result<Origin> {
        if !(0.0..=1.0).contains(&cfg.failure_rate) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("failure_rate {} is outside 0..=1", cfg.failure_rate),
            ));
        }
        let tls_counts = Arc::new(ServerCounts::default());
        let tls = match &cfg.tls {
            Some(files) => Some(tls::server_config(
                &files.cert_file,
                &files.key_file,
                tls_counts.clone(),
            )?),
            None => None,
        };
        let shared = Arc::new(Shared {
            name: cfg.name,
            mode: cfg.mode,
            body_bytes: cfg.body_bytes,
            delay_ms: cfg.delay_ms,
            failure_rate: cfg.failure_rate,
            stopping: AtomicBool::new(false),
            connections_accepted: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            body_bytes_received: AtomicU64::new(0),
            tls,
            tls_counts,
        });
        let mut origin = Origin {
            addr: cfg.listen,
            shared,
            threads: Vec::new(),
            listeners: Vec::new(),
        };
        for index in 0..cfg.threads.max(1) {
            let core = (!cfg.cores.is_empty()).then(|| cfg.cores[index % cfg.cores.len()]);
            let (ready_tx, ready_rx) = mpsc::sync_channel(1);
            // The first thread binds the configured address; the others join its port, which
            // is known only then when the configured port is 0.
            let bind_addr = origin.addr;
            let shared = origin.shared.clone();
            let handle = std::thread::Builder::new()
                .name(format!("origin-{index}"))
                .spawn(move || thread::run(index, bind_addr, core, shared, ready_tx))?;
            origin.threads.push(handle);
            // On an error `origin` is dropped here, which stops the threads already started.
            let (addr, listener) = ready_rx
                .recv()
                .map_err(|_| io::Error::other("origin thread exited before it was listening"))??;
            origin.addr = addr;
            origin.listeners.push(listener);
        }
        Ok(origin)
    }

    /// The address the origin listens on, with the actual port.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted so far.
    pub fn connections_accepted(&self) -> u64 {
        self.shared.connections_accepted.load(Ordering::Relaxed)
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// TLS handshakes completed so far, full and resumed.
    pub fn tls_handshakes(&self) -> u64 {
        self.shared.tls_counts.handshakes.load(Ordering::Relaxed)
    }

    /// Full TLS handshakes so far: those in which the origin signed with its key. A full
    /// handshake that the client then broke off is counted here but not in
    /// [`Origin::tls_handshakes`].
    pub fn tls_full_handshakes(&self) -> u64 {
        self.shared.tls_counts.signatures.load(Ordering::Relaxed)
    }

    /// TLS handshakes so far that resumed an earlier session (a ticket).
    pub fn tls_resumed_handshakes(&self) -> u64 {
        self.tls_handshakes()
            .saturating_sub(self.tls_full_handshakes())
    }

    /// TLS handshakes that failed so far.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.shared.tls_counts.failures.load(Ordering::Relaxed)
    }

    /// Complete request heads received so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Request body bytes received so far (decoded: chunk framing is not counted).
    pub fn body_bytes_received(&self) -> u64 {
        self.shared.body_bytes_received.load(Ordering::Relaxed)
    }

    /// Closes the listeners and every connection and waits for the threads to exit; from then
    /// on a connection to the port is refused. Dropping the origin does the same.
    pub fn stop(self) {}

    fn shutdown(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for listener in self.listeners.drain(..) {
            // The listener leaves the listening state at once (connections to the port are
            // refused from here on) and its thread's pending accept fails.
            let _ = listener.shutdown(Shutdown::Both);
        }
        for handle in self.threads.drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin")
            .field("name", &self.shared.name)
            .field("addr", &self.addr)
            .field("mode", &self.shared.mode)
            .field("tls", &self.is_tls())
            .field("threads", &self.threads.len())
            .finish()
    }
}

//! `loadtest forward`: a bare io_uring byte forwarder, the floor a reverse proxy approaches in
//! `loadtest compare` — a measurement floor, not a proxy. It parses nothing and decides
//! nothing: each accepted client connection gets one upstream TCP connection of its own
//! (TCP_NODELAY on both), and two copy loops run between them, one per direction, each one
//! read into its reused buffer and one write of what that read brought. What is left is the
//! cost of moving the bytes through the kernel and io_uring, which issue #3 put at 0.65–0.75 ×
//! nginx's CPU per request for 1.2–1.45 × its throughput; `loadtest compare` measures it beside
//! the proxies in the same run. Measured so on the project's 2-core VM (proxy core 0, origin and
//! load on core 1, 64 connections, three interleaved rounds of 3 s, medians): 11.8 µs CPU per
//! request against nginx 1.22's 14.8 (0.80 ×) and coregate's 14.6, 1.20 × nginx's throughput;
//! with 16 KiB bodies 15.5 µs against 20.2 (0.77 ×) and 19.4, 1.24 ×.
//!
//! Threads: one per listed core, pinned, each with its own tuned runtime ([`crate::runtime`],
//! the ring flags of the gateway's workers) and its own SO_REUSEPORT listener on one shared
//! port; one thread on no particular core when none is listed. They run until the process
//! exits: the forwarder is a process of its own, stopped by a signal.
//!
//! With `--ring rt` the same copy loops run on coregate's own runtime (`coregate-rt`) instead
//! of monoio's. With `--ring raw[+fixed][+multishot]` ([`raw`]) the same forwarding runs on an
//! io_uring driven directly, with registered files and multishot receives into a
//! provided-buffer ring when asked: the kernel-side ways below this floor, measured.
//!
//! It never holds more than one read per direction, and never answers anything: an upstream
//! that refuses the connection closes the client's, and when either direction ends (end of
//! stream or error) both connections close, the other direction's pending operation cancelled.
//! No pool, no timeouts, no limits: the buffers are allocated per connection, not per request,
//! which the keep-alive load it is measured with makes negligible.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, SyncSender};
use std::time::Duration;

use std::future::Future;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split, Splitable};
use monoio::net::{TcpListener, TcpStream};

use crate::runtime::{self, Driver, Listening};

pub mod raw;

pub use raw::RawRing;

/// Buffer of each direction: a 16 KiB response and its head arrive in one read and leave in one
/// write, as in the gateway, whose upstream read buffer has the same size.
pub const BUF_BYTES: usize = 32 * 1024;
/// Pause after a failed accept (say, out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(5);

/// How to run a forwarder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Where to listen; port 0 picks an ephemeral port, which [`start`] returns.
    pub listen: SocketAddr,
    /// Where every client connection is forwarded to.
    pub upstream: SocketAddr,
    /// Cores to run one pinned thread on each; empty runs one thread on no particular core.
    pub cores: Vec<usize>,
    /// What drives the forwarding.
    pub ring: Ring,
}

/// What drives a forwarder's I/O (`--ring`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ring {
    /// monoio's runtime on the gateway's ring flags, as issue #3 defined the floor.
    #[default]
    Monoio,
    /// The same copy loops on coregate's own runtime (`coregate-rt`).
    Rt,
    /// An io_uring driven directly, with these techniques.
    Raw(RawRing),
}

impl std::fmt::Display for Ring {
    /// The choice as `--ring` takes it: `monoio`, `rt`, or `raw` with `+fixed` and
    /// `+multishot` in that order when on.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ring::Monoio => f.write_str("monoio"),
            Ring::Rt => f.write_str("rt"),
            Ring::Raw(raw) => write!(
                f,
                "raw{}{}",
                if raw.fixed_files { "+fixed" } else { "" },
                if raw.multishot { "+multishot" } else { "" }
            ),
        }
    }
}

/// Parses a `--ring` value: `monoio`, `rt`, or `raw` followed by any of `+fixed` and
/// `+multishot`.
pub fn parse_ring(value: &str) -> Result<Ring, String> {
    let mut parts = value.split('+');
    match parts.next() {
        Some("monoio") if value == "monoio" => return Ok(Ring::Monoio),
        Some("rt") if value == "rt" => return Ok(Ring::Rt),
        Some("raw") => {}
        _ => {
            return Err(format!(
                "--ring {value:?}: monoio, rt, or raw[+fixed][+multishot]"
            ))
        }
    }
    let mut raw = RawRing::default();
    for part in parts {
        match part {
            "fixed" => raw.fixed_files = true,
            "multishot" => raw.multishot = true,
            _ => return Err(format!("--ring {value:?}: unknown technique {part:?}")),
        }
    }
    Ok(Ring::Raw(raw))
}

/// What a thread sends back once it listens: its address and its driver.
type Ready = io::Result<(SocketAddr, Driver)>;

/// Starts the forwarder's threads and returns, once every one of them listens, the address
/// they share and the least tuned driver among theirs. The threads run until the process
/// exits.
pub fn start(cfg: &ForwardConfig) -> io::Result<(SocketAddr, Driver)> {
    let cores: Vec<Option<usize>> = if cfg.cores.is_empty() {
        vec![None]
    } else {
        cfg.cores.iter().copied().map(Some).collect()
    };
    let (mut addr, mut driver) = (cfg.listen, Driver::UringTuned);
    for (index, core) in cores.into_iter().enumerate() {
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        // The first thread binds the configured address; the others join its port, which is
        // known only then when the configured port is 0.
        let (bind_addr, upstream, ring) = (addr, cfg.upstream, cfg.ring);
        std::thread::Builder::new()
            .name(format!("forward-{index}"))
            .spawn(move || match ring {
                Ring::Monoio => run(bind_addr, upstream, core, ready_tx),
                Ring::Rt => run_rt(bind_addr, upstream, core, ready_tx),
                Ring::Raw(raw) => raw::run(bind_addr, upstream, core, raw, ready_tx),
            })?;
        let (bound, thread_driver) = ready_rx
            .recv()
            .map_err(|_| io::Error::other("forwarder thread exited before it was listening"))??;
        addr = bound;
        driver = driver.max(thread_driver);
    }
    Ok((addr, driver))
}

/// Body of a forwarder thread on monoio: accepts and forwards until the process exits.
fn run(bind_addr: SocketAddr, upstream: SocketAddr, core: Option<usize>, ready: SyncSender<Ready>) {
    // Nothing stops the forwarder from outside but the end of the process, so the listener's
    // duplicate is not kept.
    runtime::serve_on(core, bind_addr, ready, |listening, ready| async move {
        let Listening {
            listener,
            addr,
            driver,
            ..
        } = listening;
        if ready.send(Ok((addr, driver))).is_ok() {
            accept_loop::<Monoio>(&listener, upstream).await;
        }
    });
}

/// Body of a forwarder thread on coregate's runtime, as [`run`] on monoio's.
fn run_rt(
    bind_addr: SocketAddr,
    upstream: SocketAddr,
    core: Option<usize>,
    ready: SyncSender<Ready>,
) {
    if let Some(id) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    let started = coregate_rt::Runtime::new(runtime::URING_ENTRIES).and_then(|rt| {
        let (socket, addr) = runtime::bind_reuseport(bind_addr, false)?;
        let listener = coregate_rt::TcpListener::from_std(socket.into())?;
        Ok((rt, listener, addr))
    });
    let (mut rt, listener, addr) = match started {
        Ok(started) => started,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let driver = match rt.driver() {
        coregate_rt::DriverKind::UringTuned => Driver::UringTuned,
        coregate_rt::DriverKind::Uring => Driver::Uring,
        coregate_rt::DriverKind::Epoll => Driver::Epoll,
    };
    if ready.send(Ok((addr, driver))).is_ok() {
        rt.block_on(accept_loop::<Rt>(&listener, upstream));
    }
}

/// What the forwarding loops need of a runtime.
trait Net: 'static {
    type Listener;
    type Stream: AsyncReadRent + AsyncWriteRent + Split + 'static;
    async fn accept(listener: &Self::Listener) -> io::Result<Self::Stream>;
    async fn connect(addr: SocketAddr) -> io::Result<Self::Stream>;
    fn set_nodelay(stream: &Self::Stream);
    fn spawn(task: impl Future<Output = ()> + 'static);
    async fn sleep(wait: Duration);
}

/// monoio's runtime.
enum Monoio {}

impl Net for Monoio {
    type Listener = TcpListener;
    type Stream = TcpStream;
    async fn accept(listener: &TcpListener) -> io::Result<TcpStream> {
        Ok(listener.accept().await?.0)
    }
    async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect_addr(addr).await
    }
    fn set_nodelay(stream: &TcpStream) {
        let _ = stream.set_nodelay(true);
    }
    fn spawn(task: impl Future<Output = ()> + 'static) {
        monoio::spawn(task);
    }
    async fn sleep(wait: Duration) {
        monoio::time::sleep(wait).await
    }
}

/// coregate's own runtime.
enum Rt {}

impl Net for Rt {
    type Listener = coregate_rt::TcpListener;
    type Stream = coregate_rt::TcpStream;
    async fn accept(listener: &Self::Listener) -> io::Result<Self::Stream> {
        Ok(listener.accept().await?.0)
    }
    async fn connect(addr: SocketAddr) -> io::Result<Self::Stream> {
        coregate_rt::TcpStream::connect_addr(addr).await
    }
    fn set_nodelay(stream: &Self::Stream) {
        let _ = stream.set_nodelay(true);
    }
    fn spawn(task: impl Future<Output = ()> + 'static) {
        coregate_rt::spawn(task);
    }
    async fn sleep(wait: Duration) {
        coregate_rt::time::sleep(wait).await
    }
}

async fn accept_loop<N: Net>(listener: &N::Listener, upstream: SocketAddr) {
    loop {
        match N::accept(listener).await {
            Ok(client) => N::spawn(forward::<N>(client, upstream)),
            Err(_) => N::sleep(ACCEPT_ERROR_BACKOFF).await,
        }
    }
}

/// Forwards one client connection over an upstream connection of its own until either
/// direction ends; both connections close on return.
async fn forward<N: Net>(client: N::Stream, upstream: SocketAddr) {
    let Ok(server) = N::connect(upstream).await else {
        return;
    };
    // Each write carries a whole read; Nagle would only hold it back.
    for stream in [&client, &server] {
        N::set_nodelay(stream);
    }
    let (client_rx, client_tx) = client.into_split();
    let (server_rx, server_tx) = server.into_split();
    // The direction that ends first drops the other, whose pending read or write is
    // cancelled; the halves then drop, which shuts down and closes both sockets.
    monoio::select! {
        _ = copy(client_rx, server_tx) => {}
        _ = copy(server_rx, client_tx) => {}
    }
}

/// Moves bytes from `from` to `to` until `from` ends or either fails: one read into the
/// buffer, then one write of what it holds (write_all repeats only after a short write).
async fn copy(mut from: impl AsyncReadRent, mut to: impl AsyncWriteRent) -> io::Result<()> {
    let mut buf = Vec::with_capacity(BUF_BYTES);
    loop {
        // A read fills the buffer from its start and sets its length to what it brought.
        let (read, filled) = from.read(buf).await;
        if read? == 0 {
            return Ok(());
        }
        let (written, drained) = to.write_all(filled).await;
        written?;
        buf = drained;
    }
}

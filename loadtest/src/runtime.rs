//! The monoio runtime of every loadtest thread, origin, forwarder and generator alike: io_uring
//! tuned the way the gateway's workers tune it, so that the floors (origin, forwarder) and the
//! generator pay the same kernel costs as the gateway they measure, with fallbacks for older
//! kernels; and the SO_REUSEPORT listener the servers among them accept on.
//!
//! COOP_TASKRUN and DEFER_TASKRUN let completions wait for the thread's next entry into the
//! kernel instead of interrupting it; SINGLE_ISSUER says only this thread submits. Measured
//! side by side on the project's 2-core VM (Fixed origin, 50 keep-alive connections, origin
//! and client pinned to separate cores, three alternating 5 s rounds): origin CPU per request
//! 5.3-6.4 µs tuned against 8.4-8.5 µs untuned, generator 5.4-5.7 µs tuned against
//! 6.9-7.4 µs untuned (wrk: 6.6-7.1 µs).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::SyncSender;

use monoio::net::TcpListener;
use monoio::time::TimeDriver;
use monoio::{FusionRuntime, IoUringDriver, LegacyDriver, RuntimeBuilder};

/// Submission queue entries per ring.
pub const URING_ENTRIES: u32 = 1024;
/// Pending connections the kernel queues per listener.
const LISTEN_BACKLOG: i32 = 1024;

pub type Runtime = FusionRuntime<TimeDriver<IoUringDriver>, TimeDriver<LegacyDriver>>;

/// Which I/O driver a thread got.
/// Ordered from most to least tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Driver {
    /// io_uring with COOP_TASKRUN, SINGLE_ISSUER and DEFER_TASKRUN.
    UringTuned,
    /// io_uring without those flags (kernel older than 6.1).
    Uring,
    /// epoll, because io_uring is unavailable.
    Epoll,
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::UringTuned => "io_uring",
            Driver::Uring => "io_uring (untuned)",
            Driver::Epoll => "epoll",
        })
    }
}

/// Builds a runtime with a timer, trying the tuned io_uring first.
pub fn build() -> io::Result<(Runtime, Driver)> {
    let mut tuned = io_uring::IoUring::builder();
    tuned
        .setup_coop_taskrun()
        .setup_single_issuer()
        .setup_defer_taskrun();
    if let Ok(runtime) = RuntimeBuilder::<IoUringDriver>::new()
        .with_entries(URING_ENTRIES)
        .uring_builder(tuned)
        .enable_timer()
        .build()
    {
        return Ok((runtime.into(), Driver::UringTuned));
    }
    if let Ok(runtime) = RuntimeBuilder::<IoUringDriver>::new()
        .with_entries(URING_ENTRIES)
        .enable_timer()
        .build()
    {
        return Ok((runtime.into(), Driver::Uring));
    }
    let runtime = RuntimeBuilder::<LegacyDriver>::new()
        .with_entries(URING_ENTRIES)
        .enable_timer()
        .build()?;
    Ok((runtime.into(), Driver::Epoll))
}

/// Binds a listener with SO_REUSEPORT, so that every thread of a server can bind the same port,
/// and returns it with the address it got and a duplicate of its socket (with which another
/// thread can shut it down). Must run inside the runtime of `driver`, which registers the
/// socket.
pub fn listen(
    addr: SocketAddr,
    driver: Driver,
) -> io::Result<(TcpListener, SocketAddr, socket2::Socket)> {
    // The epoll driver needs a non-blocking socket; io_uring does not.
    let (socket, local) = bind_reuseport(addr, driver == Driver::Epoll)?;
    let handle = socket.try_clone()?;
    let listener = TcpListener::from_std(socket.into())?;
    Ok((listener, local, handle))
}

/// A listening socket bound with SO_REUSEPORT (see [`listen`]), and the address it got.
pub fn bind_reuseport(
    addr: SocketAddr,
    nonblocking: bool,
) -> io::Result<(socket2::Socket, SocketAddr)> {
    let listener = coregate_rt::net::bind_reuseport(addr, LISTEN_BACKLOG)?;
    listener.set_nonblocking(nonblocking)?;
    let local = listener.local_addr()?;
    Ok((listener.into(), local))
}

/// What a server thread has once it listens (see [`listen`]).
pub struct Listening {
    pub listener: TcpListener,
    /// The address it got (the port chosen when `bind_addr` had port 0).
    pub addr: SocketAddr,
    /// A duplicate of the listening socket, with which another thread can shut it down.
    pub handle: socket2::Socket,
    pub driver: Driver,
}

/// The body of a server thread, origin and forwarder alike: pins it to `core` (if any),
/// builds its runtime, binds `bind_addr` there and runs `serve` with the listener and `ready`,
/// on which `serve` reports what its caller waits for. A failure before `serve` runs is
/// reported on `ready` here.
pub fn serve_on<T, Fut: Future<Output = ()>>(
    core: Option<usize>,
    bind_addr: SocketAddr,
    ready: SyncSender<io::Result<T>>,
    serve: impl FnOnce(Listening, SyncSender<io::Result<T>>) -> Fut,
) {
    if let Some(id) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    let (mut runtime, driver) = match build() {
        Ok(built) => built,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    runtime.block_on(async move {
        match listen(bind_addr, driver) {
            Ok((listener, addr, handle)) => {
                let listening = Listening {
                    listener,
                    addr,
                    handle,
                    driver,
                };
                serve(listening, ready).await
            }
            Err(e) => {
                let _ = ready.send(Err(e));
            }
        }
    });
}

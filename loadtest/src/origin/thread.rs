//! One origin thread: its monoio runtime, its SO_REUSEPORT listener, the accept loop, and the
//! state its connections share (buffer pool, prebuilt Fixed responses, the Flaky generator,
//! the TLS acceptor of an HTTPS origin, the registry of open connections used to close them
//! at stop).
//!
//! Everything here is thread-local (`Rc`, `Cell`, `RefCell`); only the counters, the stop
//! flag and the TLS server config (whose ticket key every thread must share, so that a client
//! resumes on whichever thread it lands) in [`Shared`] cross threads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use monoio::net::TcpListener;
use monoio_rustls::TlsAcceptor;

use super::conn::{self, Buffers};
use super::{Mode, Shared};
use crate::runtime::{self, Listening};

/// Pause after a failed accept (say, out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(5);
/// How long a stopping thread waits for its shut-down connections to finish.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Buffer sets kept for reuse per thread; more are freed when their connection ends.
const BUFFER_POOL_MAX: usize = 256;
/// Seed of the Flaky failure draws, mixed with the thread index.
const FLAKY_SEED: u64 = 0x5eed_c0de_0bad_f00d;

/// What a thread sends back once it listens: its address and a duplicate of its listener.
type Ready = io::Result<(SocketAddr, socket2::Socket)>;

/// Body of an origin thread: runs until the origin stops.
pub(super) fn run(
    index: usize,
    bind_addr: SocketAddr,
    core: Option<usize>,
    shared: Arc<Shared>,
    ready: SyncSender<Ready>,
) {
    runtime::serve_on(core, bind_addr, ready, |listening, ready| async move {
        let Listening {
            listener,
            addr,
            handle,
            ..
        } = listening;
        if ready.send(Ok((addr, handle))).is_err() {
            return;
        }
        let state = Rc::new(ThreadState::new(index, shared));
        accept_loop(&listener, &state).await;
        drop(listener);
        state.close_connections().await;
    });
}

async fn accept_loop(listener: &TcpListener, state: &Rc<ThreadState>) {
    loop {
        let accepted = listener.accept().await;
        if state.shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, _peer)) => {
                state
                    .shared
                    .connections_accepted
                    .fetch_add(1, Ordering::Relaxed);
                // Responses are single writes; Nagle would only delay them.
                let _ = stream.set_nodelay(true);
                // Registered before the task first runs, so a stop right now still closes it.
                let id = state.register(stream.as_raw_fd());
                match &state.acceptor {
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        monoio::spawn(conn::serve_tls(stream, id, state.clone(), acceptor))
                    }
                    None => monoio::spawn(conn::serve(stream, id, state.clone())),
                };
            }
            Err(_) => monoio::time::sleep(ACCEPT_ERROR_BACKOFF).await,
        }
    }
}

/// Fixed-mode responses, built once per thread and shared by reference count.
pub(super) struct FixedResponses {
    /// HTTP/1.1 request, connection kept alive: no Connection header.
    pub keep_alive: Bytes,
    /// HTTP/1.0 request, connection kept alive: `Connection: keep-alive`.
    pub keep_alive_http10: Bytes,
    /// Connection closing after the response: `Connection: close`.
    pub close: Bytes,
    /// Length of the body, the same in all three: a HEAD answer drops that many bytes.
    pub body_bytes: usize,
}

impl FixedResponses {
    fn new(name: &str, body_bytes: usize) -> Self {
        let build = |connection: &str| {
            let mut out = Vec::with_capacity(128 + body_bytes);
            conn::write_head(
                &mut out,
                200,
                name,
                Some(b"text/plain"),
                conn::OutFraming::Length(body_bytes as u64),
                connection,
            );
            conn::write_filler(&mut out, body_bytes);
            Bytes::from(out)
        };
        FixedResponses {
            keep_alive: build(""),
            keep_alive_http10: build(conn::KEEP_ALIVE),
            close: build(conn::CLOSE),
            body_bytes,
        }
    }
}

/// State shared by the connections of one thread.
pub(super) struct ThreadState {
    pub shared: Arc<Shared>,
    /// Prebuilt responses, in Fixed mode only.
    pub fixed: Option<FixedResponses>,
    /// Completes the handshakes of an origin that serves HTTPS.
    acceptor: Option<TlsAcceptor>,
    rng: Cell<u64>,
    pool: RefCell<Vec<Buffers>>,
    live: RefCell<HashMap<u64, RawFd>>,
    next_id: Cell<u64>,
}

impl ThreadState {
    fn new(index: usize, shared: Arc<Shared>) -> Self {
        let fixed = (shared.mode == Mode::Fixed)
            .then(|| FixedResponses::new(&shared.name, shared.body_bytes));
        let acceptor = shared.tls.clone().map(TlsAcceptor::from);
        ThreadState {
            shared,
            fixed,
            acceptor,
            rng: Cell::new(FLAKY_SEED ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            pool: RefCell::new(Vec::new()),
            live: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
        }
    }

    /// Next draw in 0.0..1.0 of the thread's generator (splitmix64).
    pub fn draw(&self) -> f64 {
        let mut z = self.rng.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.rng.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn take_buffers(&self) -> Buffers {
        self.pool.borrow_mut().pop().unwrap_or_default()
    }

    pub fn put_buffers(&self, mut buffers: Buffers) {
        let mut pool = self.pool.borrow_mut();
        if pool.len() < BUFFER_POOL_MAX {
            buffers.reset();
            pool.push(buffers);
        }
    }

    fn register(&self, fd: RawFd) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.live.borrow_mut().insert(id, fd);
        id
    }

    /// Forgets a connection; its task calls this before its socket is closed.
    pub fn deregister(&self, id: u64) {
        self.live.borrow_mut().remove(&id);
    }

    /// Shuts down every open connection, which ends their pending reads and writes, and gives
    /// their tasks a moment to finish and close their sockets.
    async fn close_connections(&self) {
        for &fd in self.live.borrow().values() {
            // SAFETY: shutdown(2) takes a descriptor number and touches no memory of ours. The
            // descriptor is open: a connection task deregisters before it drops its socket, on
            // this same thread, and nothing else runs while this loop does.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
        let deadline = Instant::now() + CLOSE_GRACE;
        while !self.live.borrow().is_empty() && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

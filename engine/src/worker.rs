//! Worker threads: one per core, each pinned with core_affinity, each running its own monoio
//! runtime and accepting on its own SO_REUSEPORT listeners.
//!
//! The runtime is built on io_uring with `COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN`
//! (task work runs only when the worker asks for completions, so the kernel never interrupts
//! it mid-request); when the kernel refuses those flags it retries plain io_uring, and when
//! io_uring is unavailable altogether (sysctl `kernel.io_uring_disabled`, seccomp) it falls back
//! to monoio's epoll driver and says so. Everything a worker owns — connections, buffers,
//! pools, balancer state — lives in its [`Worker`] and is touched by no other thread.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monoio::net::{ListenerOpts, TcpListener};
use monoio::{FusionRuntime, IoUringDriver, LegacyDriver, RuntimeBuilder};

use crate::snapshot::{Snapshot, SnapshotCell};
use crate::upstream::balancer::BalancerState;
use crate::upstream::pool::Pools;

/// io_uring submission queue size per worker.
const URING_ENTRIES: u32 = 4096;
/// Listen backlog of each worker's listener.
const LISTEN_BACKLOG: i32 = 4096;
/// How often a worker closes expired idle upstream connections.
const SWEEP_INTERVAL_MS: u64 = 1_000;
/// Pause before retrying accept after an error such as EMFILE, so the loop does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 20;
/// Largest read buffer kept in a worker's free list; larger ones (grown for a big head) are
/// dropped when returned.
const BUFFER_KEEP_BYTES_MAX: usize = 64 * 1024;
/// Buffers kept in a worker's free list.
const BUFFER_FREE_MAX: usize = 1024;
/// Size a fresh buffer starts with.
pub(crate) const BUFFER_BYTES: usize = 16 * 1024;

/// Which I/O driver a worker ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// io_uring with COOP_TASKRUN, SINGLE_ISSUER and DEFER_TASKRUN.
    UringTuned,
    /// io_uring without those flags (older kernel).
    Uring,
    /// epoll, because io_uring is unavailable.
    Legacy,
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Driver::UringTuned => "io_uring (coop_taskrun, single_issuer, defer_taskrun)",
            Driver::Uring => "io_uring",
            Driver::Legacy => "epoll (io_uring unavailable)",
        })
    }
}

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
pub fn start_workers(count: usize, cell: Arc<SnapshotCell>) -> io::Result<Vec<WorkerHandle>> {
    probe_listeners(&cell)?;
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
        let cell = cell.clone();
        let thread = std::thread::Builder::new()
            .name(format!("coregate-w{index}"))
            .spawn(move || {
                if let Some(id) = core {
                    core_affinity::set_for_current(core_affinity::CoreId { id });
                }
                run_worker(cell, tx);
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
        });
    }
    Ok(handles)
}

/// Refuses addresses another process already listens on. Workers bind with SO_REUSEPORT,
/// which would otherwise let a second gateway (or anything else with SO_REUSEPORT) silently
/// share the port and half the traffic. A plain bind fails on a listening port.
fn probe_listeners(cell: &SnapshotCell) -> io::Result<()> {
    for l in &cell.load().config.listeners {
        std::net::TcpListener::bind(l.address).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("listener {} ({}): {e}", l.name, l.address),
            )
        })?;
    }
    Ok(())
}

fn run_worker(cell: Arc<SnapshotCell>, ready: std::sync::mpsc::Sender<io::Result<Driver>>) {
    let (mut runtime, driver) = match build_runtime() {
        Ok(built) => built,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let serve = async move {
        let worker = Rc::new(Worker::new(cell));
        let listeners = match worker.bind_listeners() {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(driver));
        monoio::spawn(sweep_loop(worker.clone()));
        let mut accepting = Vec::new();
        for listener in listeners {
            accepting.push(monoio::spawn(accept_loop(worker.clone(), listener)));
        }
        for task in accepting {
            task.await;
        }
    };
    match &mut runtime {
        FusionRuntime::Uring(rt) => rt.block_on(serve),
        FusionRuntime::Legacy(rt) => rt.block_on(serve),
    }
}

type WorkerRuntime =
    FusionRuntime<monoio::time::TimeDriver<IoUringDriver>, monoio::time::TimeDriver<LegacyDriver>>;

fn build_runtime() -> io::Result<(WorkerRuntime, Driver)> {
    let mut tuned = io_uring::IoUring::builder();
    tuned
        .setup_coop_taskrun()
        .setup_single_issuer()
        .setup_defer_taskrun();
    if let Ok(rt) = RuntimeBuilder::<IoUringDriver>::new()
        .with_entries(URING_ENTRIES)
        .uring_builder(tuned)
        .enable_timer()
        .build()
    {
        return Ok((rt.into(), Driver::UringTuned));
    }
    if let Ok(rt) = RuntimeBuilder::<IoUringDriver>::new()
        .with_entries(URING_ENTRIES)
        .enable_timer()
        .build()
    {
        return Ok((rt.into(), Driver::Uring));
    }
    let rt = RuntimeBuilder::<LegacyDriver>::new()
        .with_entries(URING_ENTRIES)
        .enable_timer()
        .build()?;
    Ok((rt.into(), Driver::Legacy))
}

/// A worker's own state. Lives in an `Rc` on the worker thread; nothing here is shared.
pub(crate) struct Worker {
    cell: Arc<SnapshotCell>,
    view: RefCell<Rc<View>>,
    pub pools: RefCell<Pools>,
    free_buffers: RefCell<Vec<Vec<u8>>>,
    connections: Cell<usize>,
}

/// A snapshot plus this worker's mutable state derived from it (balancers). Rebuilt when a
/// new snapshot is published; requests in flight keep the one they started with.
pub(crate) struct View {
    pub snapshot: Arc<Snapshot>,
    pub balancers: Vec<RefCell<BalancerState>>,
}

impl View {
    fn new(snapshot: Arc<Snapshot>) -> View {
        let balancers = snapshot
            .config
            .upstreams
            .iter()
            .map(|u| RefCell::new(BalancerState::new(u)))
            .collect();
        View {
            snapshot,
            balancers,
        }
    }
}

impl Worker {
    fn new(cell: Arc<SnapshotCell>) -> Worker {
        let view = Rc::new(View::new(cell.load()));
        Worker {
            cell,
            view: RefCell::new(view),
            pools: RefCell::new(Pools::default()),
            free_buffers: RefCell::new(Vec::new()),
            connections: Cell::new(0),
        }
    }

    /// The current view; swaps in a newly published snapshot first if there is one.
    pub fn view(&self) -> Rc<View> {
        let published = self.cell.version();
        let mut view = self.view.borrow_mut();
        if view.snapshot.version != published {
            *view = Rc::new(View::new(self.cell.load()));
        }
        view.clone()
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

    fn bind_listeners(&self) -> io::Result<Vec<TcpListener>> {
        let view = self.view();
        let opts = ListenerOpts::new()
            .reuse_port(true)
            .reuse_addr(true)
            .backlog(LISTEN_BACKLOG);
        view.snapshot
            .config
            .listeners
            .iter()
            .map(|l| {
                TcpListener::bind_with_config(l.address, &opts).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("listener {} ({}): {e}", l.name, l.address),
                    )
                })
            })
            .collect()
    }
}

async fn accept_loop(worker: Rc<Worker>, listener: TcpListener) {
    loop {
        let max = worker
            .view()
            .snapshot
            .config
            .server
            .connections_max_per_worker;
        while worker.connections.get() >= max {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                worker.connections.set(worker.connections.get() + 1);
                let w = worker.clone();
                monoio::spawn(async move {
                    crate::proxy::serve_connection(&w, stream, peer).await;
                    w.connections.set(w.connections.get() - 1);
                });
            }
            Err(_) => {
                // EMFILE/ENFILE/ENOBUFS: pause instead of spinning; the error will clear when
                // connections close.
                monoio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
            }
        }
    }
}

async fn sweep_loop(worker: Rc<Worker>) {
    loop {
        monoio::time::sleep(Duration::from_millis(SWEEP_INTERVAL_MS)).await;
        worker.pools.borrow_mut().sweep(Instant::now());
    }
}

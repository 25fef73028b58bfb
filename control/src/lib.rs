//! coregate-control: the control side of the gateway. Never touches a request.
//!
//! [`Gateway::start`] compiles the first snapshot, opens the access log, binds the admin
//! listener and starts the workers. [`Gateway::run`] then hands everything to the control
//! thread (a plain std thread), which
//!
//! - reloads the config on SIGHUP and when the file changes (polled every
//!   50 ms): parse, validate, compile, publish lock-free; a bad file is
//!   logged with its file:line and counted, and the old snapshot keeps serving; a change that
//!   needs a restart (listeners, workers, admin address) rejects the whole reload;
//! - runs the active health checks ([`health`]) and publishes which endpoints are down;
//! - merges the workers' stats reports ([`metrics`]) for the admin listener ([`admin`]);
//! - appends the workers' access-log batches to the file ([`access_log`]);
//! - on SIGTERM/SIGINT asks the workers to drain and returns once they all exited.
//!
//! Signals are blocked in every thread ([`signals::Signals::block`], first thing in `main`)
//! and taken with sigwait on a thread of their own.

pub mod access_log;
pub mod admin;
mod control;
pub mod health;
pub mod metrics;
pub mod signals;

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};

use coregate_config::Config;
use coregate_engine::stats::BreakerReport;
use coregate_engine::{start_workers, Report, Shared, Snapshot, WorkerHandle};

use crate::access_log::AccessLog;
use crate::health::EndpointHealth;
use crate::metrics::Metrics;
use crate::signals::Signals;

/// What the control thread knows, for the admin listener to show.
pub struct Status {
    pub metrics: Metrics,
    /// The snapshot being served.
    pub snapshot: Arc<Snapshot>,
    /// Checked endpoints' health (unchecked endpoints are absent).
    pub health: BTreeMap<SocketAddr, EndpointHealth>,
    pub health_version: u64,
    pub workers: usize,
    pub workers_exited: usize,
    pub draining: bool,
    /// The last rejected reload's reason, cleared by a successful one.
    pub last_reload_error: Option<String>,
    /// Each worker's circuit breakers as last reported, by worker index.
    pub breakers: BTreeMap<usize, Vec<BreakerReport>>,
}

/// A started gateway: workers serving, control side not yet running.
pub struct Gateway {
    shared: Arc<Shared>,
    workers: Vec<WorkerHandle>,
    reports: Receiver<Report>,
    admin: Option<TcpListener>,
    access_log: Option<AccessLog>,
}

/// How a drained gateway ended.
#[derive(Debug)]
pub struct Drained {
    /// Requests still in flight when the drain timeout cut them off.
    pub unfinished: usize,
    /// Whether a signal asked for the drain; false when every worker ended on its own
    /// (which is a failure).
    pub asked: bool,
}

impl Gateway {
    /// Compiles `config`, opens the access log, binds the admin listener and starts the
    /// workers (each binds its listeners); returns once all of them serve. Fails when the
    /// access log cannot be opened, a written admin address cannot be bound, or a worker cannot
    /// start (e.g. an address already in use). The default admin address only warns.
    pub fn start(config: Config) -> io::Result<Gateway> {
        let access_log = match &config.access_log {
            None => None,
            Some(log) => Some(AccessLog::open(&log.path).map_err(|e| {
                io::Error::new(e.kind(), format!("access log {}: {e}", log.path.display()))
            })?),
        };
        let admin = match &config.admin {
            None => None,
            Some(admin) => match TcpListener::bind(admin.address) {
                Ok(listener) => Some(listener),
                Err(e) if admin.required => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("admin listener {}: {e}", admin.address),
                    ))
                }
                Err(e) => {
                    eprintln!(
                        "warning: admin listener {} (the default address): {e}; running \
                         without it (set [admin] address to choose another)",
                        admin.address
                    );
                    None
                }
            },
        };
        let workers = config.server.workers;
        let snapshot = Snapshot::compile(config, 1, None).map_err(io::Error::other)?;
        let shared = Arc::new(Shared::new(snapshot));
        let (tx, reports) = channel();
        let workers = start_workers(workers, shared.clone(), tx)?;
        Ok(Gateway {
            shared,
            workers,
            reports,
            admin,
            access_log,
        })
    }

    /// The running workers, in index order.
    pub fn workers(&self) -> &[WorkerHandle] {
        &self.workers
    }

    /// The snapshot being served.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load()
    }

    /// Where the admin listener listens (the bound port when the config said 0).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Runs the control side until SIGTERM or SIGINT has drained the workers; returns when
    /// every worker thread has ended. `signals` must have been blocked before any thread
    /// started.
    pub fn run(self, signals: Signals) -> io::Result<Drained> {
        let Gateway {
            shared,
            workers,
            reports,
            admin,
            access_log,
        } = self;
        let flags = Arc::new(signals::Flags::default());
        signals.spawn(flags.clone())?;
        let snapshot = shared.snapshot.load();
        let mut metrics = Metrics::new(workers.len());
        metrics.know_routes(snapshot.config.routes.iter().map(|r| r.name.as_str()));
        let status = Arc::new(Mutex::new(Status {
            metrics,
            snapshot,
            health: BTreeMap::new(),
            health_version: shared.health.version(),
            workers: workers.len(),
            workers_exited: 0,
            draining: false,
            last_reload_error: None,
            breakers: BTreeMap::new(),
        }));
        if let Some(listener) = admin {
            admin::spawn(listener, status.clone())?;
        }
        let shares = workers.iter().map(|w| w.shares.clone()).collect();
        let control = std::thread::Builder::new()
            .name("coregate-control".to_owned())
            .spawn(move || {
                control::Control::new(shared, reports, status, flags, access_log, shares).run()
            })?;
        let drained = control
            .join()
            .map_err(|_| io::Error::other("the control thread panicked"))?;
        for w in workers {
            let _ = w.thread.join();
        }
        if !drained.asked {
            return Err(io::Error::other(
                "every worker exited without being asked to",
            ));
        }
        Ok(drained)
    }
}

//! coregate-control: the control side of the gateway.
//!
//! Owns start-up: it compiles the first snapshot from a validated config, publishes it into
//! the [`Shared`] state the workers read, and starts the workers. It never touches a request.
//! (Live reload, health checks, stats and the admin listener build on this; see the README's
//! feature table for what exists.)

use std::io;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;

use coregate_config::Config;
use coregate_engine::{start_workers, Report, Shared, Snapshot, WorkerHandle};

/// A started gateway: the shared state and the running workers.
pub struct Gateway {
    shared: Arc<Shared>,
    workers: Vec<WorkerHandle>,
    reports: Receiver<Report>,
}

impl Gateway {
    /// Compiles `config`, starts the workers (each binds its listeners) and returns once all
    /// of them serve. Fails when a worker cannot start, e.g. an address already in use.
    pub fn start(config: Config) -> io::Result<Gateway> {
        let workers = config.server.workers;
        let shared = Arc::new(Shared::new(Snapshot::compile(config, 1)));
        let (tx, reports) = channel();
        let workers = start_workers(workers, shared.clone(), tx)?;
        Ok(Gateway {
            shared,
            workers,
            reports,
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

    /// Blocks until every worker thread has ended, discarding their reports.
    pub fn wait(self) {
        let Gateway {
            workers, reports, ..
        } = self;
        let drain = std::thread::spawn(move || for _ in reports {});
        for w in workers {
            let _ = w.thread.join();
        }
        let _ = drain.join();
    }
}

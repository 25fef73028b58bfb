//! coregate-control: the control side of the gateway.
//!
//! Owns start-up: it compiles the first snapshot from a validated config, publishes it into
//! the [`SnapshotCell`] the workers read, and starts the workers. It never touches a request.
//! (Live reload, health checks, stats and the admin listener build on this; see the README's
//! feature table for what exists.)

use std::io;
use std::sync::Arc;

use coregate_config::Config;
use coregate_engine::{start_workers, Snapshot, SnapshotCell, WorkerHandle};

/// A started gateway: the published snapshot and the running workers.
pub struct Gateway {
    cell: Arc<SnapshotCell>,
    workers: Vec<WorkerHandle>,
}

impl Gateway {
    /// Compiles `config`, starts the workers (each binds its listeners) and returns once all
    /// of them serve. Fails when a worker cannot start, e.g. an address already in use.
    pub fn start(config: Config) -> io::Result<Gateway> {
        let workers = config.server.workers;
        let cell = Arc::new(SnapshotCell::new(Snapshot::compile(config, 1)));
        let workers = start_workers(workers, cell.clone())?;
        Ok(Gateway { cell, workers })
    }

    /// The running workers, in index order.
    pub fn workers(&self) -> &[WorkerHandle] {
        &self.workers
    }

    /// The snapshot being served.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.cell.load()
    }

    /// Blocks until every worker thread has ended.
    pub fn wait(self) {
        for w in self.workers {
            let _ = w.thread.join();
        }
    }
}

//! The few things the control side and the workers share, and what flows back.
//!
//! Control → workers: the published [`SnapshotCell`] and [`HealthCell`] (read with one atomic
//! load per request) and the drain flag (read by the accept loops and between requests).
//! Workers → control: [`Report`]s over a channel, sent off the request path (stats every
//! [`crate::stats::REPORT_INTERVAL_MS`], access-log batches when full or once a second, and a
//! last word when a worker exits).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::snapshot::{Health, HealthCell, Snapshot, SnapshotCell};
use crate::stats::StatsReport;

/// Shared between the control thread and every worker.
pub struct Shared {
    pub snapshot: SnapshotCell,
    pub health: HealthCell,
    draining: AtomicBool,
}

impl Shared {
    /// Shared state for a first snapshot, with every endpoint considered up.
    pub fn new(first: Snapshot) -> Shared {
        Shared {
            snapshot: SnapshotCell::new(first),
            health: HealthCell::new(Health::new(1, [])),
            draining: AtomicBool::new(false),
        }
    }

    /// Asks every worker to stop accepting, finish what is in flight and exit.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether a drain was asked for.
    #[inline]
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Access-log lines a worker has formatted: one JSON object per line, ready to append.
#[derive(Debug)]
pub struct AccessLogBatch {
    pub worker: usize,
    pub lines: Vec<u8>,
}

/// What workers send to the control side.
#[derive(Debug)]
pub enum Report {
    Stats(Box<StatsReport>),
    AccessLog(AccessLogBatch),
    /// The worker finished draining and its thread is about to end. `unfinished`: requests
    /// still in flight that the drain timeout cut off.
    Exited {
        worker: usize,
        unfinished: usize,
    },
}

//! The few things the control side and the workers share, and what flows back.
//!
//! Control → workers: the published [`SnapshotCell`] and [`HealthCell`] (read with one atomic
//! load per request) and the drain flag (read by the accept loops and between requests).
//! Workers → control: [`Report`]s over a channel, sent off the request path (stats every
//! [`crate::stats::REPORT_INTERVAL_MS`], access-log batches when full or once a second, and a
//! last word when a worker exits).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::policy::ratelimit::{KeyHasher, UsageReport};
use crate::snapshot::{Health, HealthCell, Snapshot, SnapshotCell};
use crate::stats::StatsReport;

/// Shared between the control thread and every worker.
pub struct Shared {
    pub snapshot: SnapshotCell,
    pub health: HealthCell,
    draining: AtomicBool,
    /// Turns rate-limit key bytes into keys; one secret per process, so the workers and the
    /// control thread agree on every key and no client can aim a collision.
    pub rate_keys: KeyHasher,
    /// The monotonic base of the rate limiters' `now_ms`, the same for every thread.
    clock: Instant,
}

impl Shared {
    /// Shared state for a first snapshot, with every endpoint considered up.
    pub fn new(first: Snapshot) -> Shared {
        Shared {
            snapshot: SnapshotCell::new(first),
            health: HealthCell::new(Health::new(1, [])),
            draining: AtomicBool::new(false),
            rate_keys: {
                let secret = RandomState::new();
                KeyHasher::new(secret.hash_one(0x6b30_u64), secret.hash_one(0x6b31_u64))
            },
            clock: Instant::now(),
        }
    }

    /// Milliseconds since start, on the clock the rate limiters share.
    pub fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
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
    /// Rate-limit consumption since the previous sync round.
    RateUsage(UsageReport),
    /// The worker finished draining and its thread is about to end. `unfinished`: requests
    /// still in flight that the drain timeout cut off.
    Exited {
        worker: usize,
        unfinished: usize,
    },
}

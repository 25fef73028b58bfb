//! The immutable snapshot the workers serve from, and the cell that hands it over.
//!
//! The control side compiles a validated [`Config`] into a [`Snapshot`] (router built, limits
//! resolved) and publishes it into a [`SnapshotCell`]. A worker reads the cell's version
//! number (one atomic load, no write, no lock) before each request and only when it changed
//! takes the new `Arc` — so the shared cache line is written once per reload, never per
//! request. A request keeps the snapshot it started with until it ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use coregate_config::Config;

use crate::http::Limits;
use crate::router::Router;

/// Everything a worker needs to serve requests, compiled once per config load.
pub struct Snapshot {
    /// Increases by one with every publish; 1 for the first.
    pub version: u64,
    pub config: Config,
    pub router: Router,
    pub limits: Limits,
    /// Per upstream (same index as `config.upstreams`): the `Host` value sent when the client
    /// sent none (HTTP/1.0): the first endpoint's address.
    pub default_hosts: Vec<Box<[u8]>>,
}

impl Snapshot {
    /// Compiles a validated config. Cannot fail: everything that could be wrong was rejected
    /// by validation.
    pub fn compile(config: Config, version: u64) -> Snapshot {
        let router = Router::new(&config.routes);
        let limits = Limits {
            request_line_bytes_max: config.server.request_line_bytes_max,
            header_bytes_max: config.server.header_bytes_max,
            header_count_max: config.server.header_count_max,
        };
        let default_hosts = config
            .upstreams
            .iter()
            .map(|u| {
                u.endpoints[0]
                    .address
                    .to_string()
                    .into_bytes()
                    .into_boxed_slice()
            })
            .collect();
        Snapshot {
            version,
            config,
            router,
            limits,
            default_hosts,
        }
    }
}

/// Where the control side publishes snapshots and workers pick them up without locks.
pub struct SnapshotCell {
    version: AtomicU64,
    current: ArcSwap<Snapshot>,
}

impl SnapshotCell {
    pub fn new(first: Snapshot) -> SnapshotCell {
        SnapshotCell {
            version: AtomicU64::new(first.version),
            current: ArcSwap::from_pointee(first),
        }
    }

    /// Makes `next` the snapshot every new request uses. Its version must be higher than the
    /// current one's.
    pub fn publish(&self, next: Snapshot) {
        debug_assert!(next.version > self.version.load(Ordering::Relaxed));
        let version = next.version;
        self.current.store(Arc::new(next));
        // Release pairs with the Acquire in `version`: a worker that sees the new number
        // finds the new snapshot in `current`.
        self.version.store(version, Ordering::Release);
    }

    /// The version of the newest snapshot: what a worker compares with the one it holds.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The newest snapshot. Called by a worker only when `version` changed.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }
}

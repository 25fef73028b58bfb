//! coregate-engine: the data plane.
//!
//! Owns the worker threads (one `coregate-rt` runtime pinned per core, each with its own
//! SO_REUSEPORT listener), the HTTP/1.1 codec ([`http`]), the router ([`router`]), upstream
//! balancing and keep-alive pools ([`upstream`]), and the proxy loop that ties them together.
//! Workers share nothing: per-core state is `Rc`/`RefCell` or owned, and the only thing they
//! read from other threads is the current [`snapshot::Snapshot`], taken without a lock.
//! Never blocks a worker: no file reads, no DNS, no locks on the request path.

pub mod access_log;
mod aggregate;
pub mod http;
// Public for the fuzz targets (`fuzz/`), not an API.
#[doc(hidden)]
pub mod json_filter;
pub mod policy;
mod proxy;
pub mod router;
pub mod shared;
pub mod snapshot;
mod stale;
pub mod stats;
pub mod stream;
mod timer;
pub mod tls;
pub mod transform;
pub mod upstream;
mod worker;

pub use shared::{AccessLogBatch, Report, Shared};
pub use snapshot::{Health, HealthCell, Published, Snapshot, SnapshotCell};
pub use worker::{
    available_cores, set_release_memory, start_workers, Driver, WorkerHandle, WorkerStarted,
};

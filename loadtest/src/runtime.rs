//! The monoio runtime of every loadtest thread, origin and generator alike: io_uring tuned the
//! way the gateway's workers tune it, so that the origin floor and the generator pay the same
//! kernel costs as the gateway they measure, with fallbacks for older kernels.
//!
//! COOP_TASKRUN and DEFER_TASKRUN let completions wait for the thread's next entry into the
//! kernel instead of interrupting it; SINGLE_ISSUER says only this thread submits. Measured
//! side by side on the project's 2-core VM (Fixed origin, 50 keep-alive connections, origin
//! and client pinned to separate cores, three alternating 5 s rounds): origin CPU per request
//! 5.3-6.4 µs tuned against 8.4-8.5 µs untuned, generator 5.4-5.7 µs tuned against
//! 6.9-7.4 µs untuned (wrk: 6.6-7.1 µs).

use std::fmt;
use std::io;

use monoio::time::TimeDriver;
use monoio::{FusionRuntime, IoUringDriver, LegacyDriver, RuntimeBuilder};

/// Submission queue entries per ring.
const URING_ENTRIES: u32 = 1024;

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

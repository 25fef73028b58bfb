//! `coregate-rt`: a lean single-threaded io_uring runtime, one per pinned thread.
//!
//! Why it exists: issue #3 measured a bare byte forwarder under wrk at 12.30 µs of CPU per
//! request on monoio and 10.60–10.87 µs on an io_uring driven directly, the same operations
//! either way. This runtime keeps the async/await model (tasks, wakers, rent-style buffers,
//! so code written against monoio's `AsyncReadRent`/`AsyncWriteRent` traits runs on it
//! unchanged) and drops everything else per operation: no cancel registry, no per-op timer
//! wheel, no cross-thread waker machinery.
//!
//! What each module owns:
//! - [`executor`]: tasks, their wakers and the run queue; [`Runtime`], [`spawn`].
//! - [`driver`]: which driver a thread has, and [`Op`], the future of one operation on
//!   either, which owns the operation's buffers until the kernel is done with them, also
//!   when the future is dropped early.
//! - `uring`: the ring (tuned flags, falling back to none), the table of operations in
//!   flight, submission and completion.
//! - `epoll`: the fallback where io_uring is unavailable: readiness, then the syscall.
//! - [`net`]: [`TcpListener`] and [`TcpStream`] over those operations.
//! - [`time`]: [`time::sleep`] and [`time::timeout`], on the ring's own timeout operation.
//!
//! Everything is thread-local: a runtime runs on the thread that built it, and its wakers must
//! not leave that thread (the same contract as monoio without its `sync` feature).

pub mod driver;
mod epoll;
pub mod executor;
pub mod net;
pub mod time;
mod uring;

pub use driver::{DriverKind, Op};
pub use executor::{spawn, JoinHandle, Runtime};
pub use net::{TcpListener, TcpStream};

//! coregate-loadtest: fixture origin servers and the load harness.
//!
//! [`origin`] serves the gateway's tests, its `demo` command and benchmarks; [`load`] is the
//! load generator behind `loadtest run`; [`compare`] runs coregate against nginx and HAProxy
//! behind `loadtest compare`, with [`forward`] (a bare io_uring byte forwarder) as the floor a
//! proxy approaches; [`chunked`] is the streaming chunked-body decoder both
//! share, and [`tls`] the TLS both speak (rustls with ring, certificates made at run time);
//! [`cli`] and [`signal`] serve the `loadtest` binary, which is glue over them. Nothing
//! here is on the gateway's data path, so shared atomic counters are allowed; speed still
//! matters, since the origin is the floor of every benchmark and the generator must not be the
//! bottleneck of one.

pub mod chunked;
pub mod cli;
pub mod compare;
pub mod forward;
pub mod load;
pub mod origin;
pub mod runtime;
pub mod signal;
pub mod tls;

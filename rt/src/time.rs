//! Sleeps and timeouts on the ring's own timeout operation (a kernel timer per sleep).
//!
//! They are meant for the occasional wait (a housekeeping tick, a handshake's limit), not for
//! per-request deadlines: a worker keeps those on its own coarse timer, which arms none.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use io_uring::{opcode, types};

use crate::driver::Op;

/// Resolves once its duration has passed (cancelled in the kernel if dropped first).
pub struct Sleep(Op<Box<types::Timespec>>);

/// A sleep of `duration`, starting now.
pub fn sleep(duration: Duration) -> Sleep {
    let spec = Box::new(
        types::Timespec::new()
            .sec(duration.as_secs())
            .nsec(duration.subsec_nanos()),
    );
    let sqe = opcode::Timeout::new(&*spec).build();
    Sleep(Op::submit(sqe, spec))
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // `ETIME` is the timer's normal end; nothing else ends it but a cancellation.
        let _ = ready!(Pin::new(&mut self.0).poll(cx));
        Poll::Ready(())
    }
}

/// The error of a [`timeout`] whose future did not finish in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Runs `future` for `duration` at most. The timer is armed only if the future does not
/// finish on its first poll, and counts from then.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Result<F::Output, Elapsed> {
    let mut future = pin!(future);
    let mut timer: Option<Sleep> = None;
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let timer = timer.get_or_insert_with(|| sleep(duration));
        Pin::new(timer).poll(cx).map(|()| Err(Elapsed))
    })
    .await
}

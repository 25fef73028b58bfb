//! Sleeps and timeouts: on io_uring the ring's own timeout operation (a kernel timer per
//! sleep), under epoll a deadline the poller's wait ends at.
//!
//! They are meant for the occasional wait (a housekeeping tick, a handshake's limit), not for
//! per-request deadlines: a worker keeps those on its own coarse timer, which arms none.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use io_uring::{opcode, types};

use crate::driver::{Driver, Op};

/// Resolves once its duration has passed (cancelled if dropped first).
pub struct Sleep(Timer);

enum Timer {
    Uring(Op<Box<types::Timespec>>),
    /// The deadline, and its key once the poller keeps it.
    Epoll(Instant, Option<u64>),
}

/// A sleep of `duration`, starting now.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep(match Driver::current() {
        Driver::Uring(_) => {
            let spec = Box::new(
                types::Timespec::new()
                    .sec(duration.as_secs())
                    .nsec(duration.subsec_nanos()),
            );
            let sqe = opcode::Timeout::new(&*spec).build();
            Timer::Uring(Op::submit(sqe, spec))
        }
        Driver::Epoll(_) => Timer::Epoll(Instant::now() + duration, None),
    })
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Timer::Uring(op) => {
                // `ETIME` is the timer's normal end; nothing else ends it but a cancellation.
                let _ = ready!(Pin::new(op).poll(cx));
                Poll::Ready(())
            }
            Timer::Epoll(deadline, key) => {
                let Driver::Epoll(poller) = Driver::current() else {
                    unreachable!("an epoll sleep under io_uring");
                };
                let pending = match key {
                    Some(k) => poller.timer_pending(*deadline, *k, cx.waker()),
                    None if Instant::now() < *deadline => {
                        *key = Some(poller.add_timer(*deadline, cx.waker()));
                        true
                    }
                    None => false,
                };
                if pending {
                    return Poll::Pending;
                }
                *key = None;
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Timer::Epoll(deadline, Some(key)) = self.0 {
            if let Driver::Epoll(poller) = Driver::current() {
                poller.remove_timer(deadline, key);
            }
        }
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

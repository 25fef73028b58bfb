//! The thread's driver (io_uring, or epoll where io_uring is unavailable) and [`Op`], the
//! future of one I/O operation on either.
//!
//! An operation is described once for both: the submission io_uring takes, and the
//! non-blocking syscall epoll's readiness calls for. Its future owns the operation's buffers
//! and hands them back with the result (rent-style), so they outlive the kernel's use of them
//! whatever the driver.

use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use io_uring::squeue;

use crate::epoll::{Interest, Poller};
use crate::uring::Ring;

/// Which driver a runtime got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DriverKind {
    /// io_uring with COOP_TASKRUN, SINGLE_ISSUER and DEFER_TASKRUN.
    UringTuned,
    /// io_uring without those flags (a kernel older than 6.1).
    Uring,
    /// epoll, because io_uring is unavailable.
    Epoll,
}

impl fmt::Display for DriverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DriverKind::UringTuned => "io_uring (coop_taskrun, single_issuer, defer_taskrun)",
            DriverKind::Uring => "io_uring",
            DriverKind::Epoll => "epoll (io_uring unavailable)",
        })
    }
}

// One per thread, for the thread's life: the size of the larger variant costs nothing, and a
// box would cost an indirection per operation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Driver {
    Uring(Ring),
    Epoll(Poller),
}

thread_local! {
    /// The driver of the runtime running on this thread (null outside
    /// [`crate::Runtime::block_on`]).
    static CURRENT: Cell<*const Driver> = const { Cell::new(std::ptr::null()) };
}

impl Driver {
    /// io_uring with `entries` submission entries if the kernel allows it, else epoll.
    pub(crate) fn new(entries: u32) -> io::Result<Driver> {
        match Ring::new(entries) {
            Ok(ring) => Ok(Driver::Uring(ring)),
            Err(_) => Ok(Driver::Epoll(Poller::new()?)),
        }
    }

    /// epoll, whatever the kernel offers.
    pub(crate) fn epoll() -> io::Result<Driver> {
        Ok(Driver::Epoll(Poller::new()?))
    }

    pub(crate) fn kind(&self) -> DriverKind {
        match self {
            Driver::Uring(ring) if ring.tuned() => DriverKind::UringTuned,
            Driver::Uring(_) => DriverKind::Uring,
            Driver::Epoll(_) => DriverKind::Epoll,
        }
    }

    /// Runs `f` with this driver as the thread's current one.
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Reset(*const Driver);
        impl Drop for Reset {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _reset = Reset(CURRENT.with(|c| c.replace(self)));
        f()
    }

    /// The driver of the runtime running on this thread.
    ///
    /// # Panics
    /// Outside [`crate::Runtime::block_on`].
    pub(crate) fn current<'a>() -> &'a Driver {
        Driver::try_current().expect("coregate-rt: no runtime on this thread")
    }

    fn try_current<'a>() -> Option<&'a Driver> {
        let driver = CURRENT.with(Cell::get);
        // SAFETY: set only while `enter` runs on this thread, with a driver that outlives it.
        (!driver.is_null()).then(|| unsafe { &*driver })
    }

    /// Submits what is queued and takes what is ready; waits for something first when
    /// `wait` (the executor has nothing to run).
    pub(crate) fn park(&self, wait: bool) -> io::Result<()> {
        match self {
            Driver::Uring(ring) => ring.park(wait),
            Driver::Epoll(poller) => poller.park(wait),
        }
    }

    /// Every waker the driver keeps, for a runtime going away.
    pub(crate) fn take_wakers(&self) -> Vec<Waker> {
        match self {
            Driver::Uring(ring) => ring.take_wakers(),
            Driver::Epoll(poller) => poller.take_wakers(),
        }
    }

    /// `fd` is about to be closed.
    pub(crate) fn forget(fd: RawFd) {
        if let Some(Driver::Epoll(poller)) = Driver::try_current() {
            poller.forget(fd);
        }
    }
}

/// The non-blocking syscall an operation makes under epoll: a count, `WouldBlock` to wait
/// for readiness, or the error.
pub(crate) type Syscall<T> = fn(RawFd, &mut T) -> io::Result<u32>;

/// How an operation is carried out.
enum How<T> {
    /// Submitted; its slot in the ring's table.
    Uring(u32),
    /// Tried when polled, after readiness.
    Epoll {
        fd: RawFd,
        interest: Interest,
        syscall: Syscall<T>,
        cancelled: Cell<bool>,
    },
}

/// An I/O operation and the buffers it uses: resolves to the kernel's result (a count, or
/// the error) and the buffers back.
///
/// Everything the submission points at must be owned by `data` (on the heap, where moving
/// the future does not move it) or outlive the operation.
pub struct Op<T: 'static> {
    how: How<T>,
    data: Option<T>,
}

// The future never hands out a pinned reference into `data`, whose pointers are into the heap.
impl<T> Unpin for Op<T> {}

impl<T: 'static> Op<T> {
    /// Starts an operation on `fd`: under io_uring the submission `sqe` makes of the
    /// buffers; under epoll `syscall`, tried once `fd` is ready for `interest`.
    pub(crate) fn start(
        fd: RawFd,
        interest: Interest,
        mut data: T,
        sqe: impl FnOnce(&mut T) -> squeue::Entry,
        syscall: Syscall<T>,
    ) -> Op<T> {
        let how = match Driver::current() {
            Driver::Uring(ring) => How::Uring(ring.submit(sqe(&mut data))),
            Driver::Epoll(_) => How::Epoll {
                fd,
                interest,
                syscall,
                cancelled: Cell::new(false),
            },
        };
        Op {
            how,
            data: Some(data),
        }
    }

    /// Submits `sqe` on io_uring, which must be the driver (an operation epoll has no
    /// syscall for, such as a timeout).
    pub(crate) fn submit(sqe: squeue::Entry, data: T) -> Op<T> {
        match Driver::current() {
            Driver::Uring(ring) => Op {
                how: How::Uring(ring.submit(sqe)),
                data: Some(data),
            },
            Driver::Epoll(_) => unreachable!("an io_uring-only operation under epoll"),
        }
    }

    /// Asks for the operation to be cancelled: it still resolves, with `ECANCELED` or with
    /// the result it reached first.
    pub fn cancel(&self) {
        if self.data.is_none() {
            return;
        }
        match &self.how {
            How::Uring(index) => {
                if let Driver::Uring(ring) = Driver::current() {
                    ring.cancel(*index);
                }
            }
            How::Epoll { cancelled, .. } => cancelled.set(true),
        }
    }
}

impl<T: 'static> Future for Op<T> {
    type Output = (io::Result<u32>, T);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let result = match &this.how {
            How::Uring(index) => {
                let Driver::Uring(ring) = Driver::current() else {
                    unreachable!("an io_uring operation under epoll");
                };
                match ring.poll_op(*index, cx.waker()) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) if result < 0 => Err(io::Error::from_raw_os_error(-result)),
                    Poll::Ready(result) => Ok(result as u32),
                }
            }
            How::Epoll {
                fd,
                interest,
                syscall,
                cancelled,
            } => {
                let data = this
                    .data
                    .as_mut()
                    .expect("operation polled after it resolved");
                match try_syscall(*fd, *interest, *syscall, cancelled.get(), data, cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => result,
                }
            }
        };
        let data = this
            .data
            .take()
            .expect("operation polled after it resolved");
        Poll::Ready((result, data))
    }
}

/// Under epoll: makes the syscall, again after an interruption; when it would block, the
/// operation ends if it was cancelled, else its task waits for `fd`'s readiness.
fn try_syscall<T>(
    fd: RawFd,
    interest: Interest,
    syscall: Syscall<T>,
    cancelled: bool,
    data: &mut T,
    cx: &Context<'_>,
) -> Poll<io::Result<u32>> {
    loop {
        match syscall(fd, data) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            other => return Poll::Ready(other),
        }
    }
    if cancelled {
        return Poll::Ready(Err(io::Error::from_raw_os_error(libc::ECANCELED)));
    }
    let Driver::Epoll(poller) = Driver::current() else {
        unreachable!("an epoll operation under io_uring");
    };
    match poller.wait(fd, interest, cx.waker()) {
        Ok(()) => Poll::Pending,
        Err(e) => Poll::Ready(Err(e)),
    }
}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        let (How::Uring(index), Some(data)) = (&self.how, self.data.take()) else {
            return;
        };
        match Driver::try_current() {
            Some(Driver::Uring(ring)) => ring.abandon(*index, Box::new(data) as Box<dyn Any>),
            // Off the runtime (a task dropped after it stopped): the ring may still own the
            // operation, so its buffers are leaked rather than freed under it.
            _ => std::mem::forget(data),
        }
    }
}

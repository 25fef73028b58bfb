//! The ring and the operations in flight on it.
//!
//! An operation is a slot in a table indexed by the submission's `user_data`. Its [`Op`]
//! future owns the operation's buffers (`data`) and hands them back with the result, so the
//! kernel never writes into memory the program has freed: a future dropped while its
//! operation is in flight moves `data` into the slot as an orphan, asks the kernel to cancel,
//! and the slot is freed, and `data` dropped, only when the completion arrives.
//!
//! Submissions are batched: nothing enters the kernel until the executor has run every ready
//! task ([`Ring::park`]), when one `io_uring_enter` submits them all and, if nothing is left
//! to run, waits for the first completion.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use io_uring::{opcode, squeue, IoUring};

/// `user_data` of submissions whose completion nobody waits for (cancellations).
const UNWATCHED: u64 = u64::MAX;
/// `IORING_ENTER_GETEVENTS`: with `DEFER_TASKRUN`, completions are posted only on an enter
/// that asks for them.
const ENTER_GETEVENTS: u32 = 1;

/// One operation's state.
enum Slot {
    /// Free; the index of the next free slot (or `u32::MAX`).
    Vacant(u32),
    /// Submitted; the waker of the task awaiting it, once polled.
    Waiting(Option<Waker>),
    /// Completed: the raw result and the completion flags, until the future takes them.
    Done(i32),
    /// Its future is gone: the buffers wait here for the kernel to finish with them.
    Orphan(Box<dyn Any>),
}

/// The table of operations in flight.
struct Slots {
    slots: Vec<Slot>,
    free: u32,
}

impl Slots {
    fn insert(&mut self) -> u32 {
        if self.free == u32::MAX {
            self.slots.push(Slot::Waiting(None));
            return (self.slots.len() - 1) as u32;
        }
        let index = self.free;
        match std::mem::replace(&mut self.slots[index as usize], Slot::Waiting(None)) {
            Slot::Vacant(next) => self.free = next,
            _ => unreachable!("free list points at a used slot"),
        }
        index
    }

    fn remove(&mut self, index: u32) -> Slot {
        let slot = std::mem::replace(&mut self.slots[index as usize], Slot::Vacant(self.free));
        self.free = index;
        slot
    }
}

/// A thread's ring and its operations.
pub struct Ring {
    uring: RefCell<IoUring>,
    slots: RefCell<Slots>,
    /// Whether the ring got COOP_TASKRUN, SINGLE_ISSUER and DEFER_TASKRUN.
    tuned: bool,
}

thread_local! {
    /// The ring of the runtime running on this thread (null outside [`crate::Runtime::block_on`]).
    static CURRENT: Cell<*const Ring> = const { Cell::new(std::ptr::null()) };
}

impl Ring {
    /// A ring of `entries` submission entries, with the flags that let one thread own it
    /// (COOP_TASKRUN, SINGLE_ISSUER, DEFER_TASKRUN: completions are posted when the thread
    /// asks, without interrupts), or without them on kernels older than 6.1.
    pub fn new(entries: u32) -> io::Result<Ring> {
        let mut tuned = IoUring::builder();
        tuned
            .setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun();
        let (uring, tuned) = match tuned.build(entries) {
            Ok(uring) => (uring, true),
            Err(_) => (IoUring::new(entries)?, false),
        };
        Ok(Ring {
            uring: RefCell::new(uring),
            slots: RefCell::new(Slots {
                slots: Vec::with_capacity(entries as usize),
                free: u32::MAX,
            }),
            tuned,
        })
    }

    /// Whether the ring got the single-thread flags.
    pub fn tuned(&self) -> bool {
        self.tuned
    }

    /// Runs `f` with this ring as the thread's current one.
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Reset(*const Ring);
        impl Drop for Reset {
            fn drop(&mut self) {
                CURRENT.with(|c| c.set(self.0));
            }
        }
        let _reset = Reset(CURRENT.with(|c| c.replace(self)));
        f()
    }

    /// The ring of the runtime running on this thread.
    ///
    /// # Panics
    /// Outside [`crate::Runtime::block_on`].
    pub(crate) fn current<'a>() -> &'a Ring {
        Ring::try_current().expect("coregate-rt: no runtime on this thread")
    }

    fn try_current<'a>() -> Option<&'a Ring> {
        let ring = CURRENT.with(Cell::get);
        // SAFETY: set only while `enter` runs on this thread, with a ring that outlives it.
        (!ring.is_null()).then(|| unsafe { &*ring })
    }

    /// Queues one submission, entering the kernel first only if the queue is full.
    fn push(&self, sqe: &squeue::Entry) {
        let mut uring = self.uring.borrow_mut();
        loop {
            // SAFETY: every submission's buffers are owned by its slot until it completes.
            if unsafe { uring.submission().push(sqe) }.is_ok() {
                return;
            }
            // Full: hand the queue to the kernel (completions wait in the CQ, which the
            // kernel never drops from).
            let _ = uring.submit();
        }
    }

    /// Submits everything queued and reaps the completions; waits for one first when `wait`
    /// (the executor has nothing to run).
    pub(crate) fn park(&self, wait: bool) -> io::Result<()> {
        {
            let mut uring = self.uring.borrow_mut();
            let result = if wait {
                uring.submit_and_wait(1)
            } else {
                let queued = uring.submission().len() as u32;
                // SAFETY: no argument is passed.
                unsafe {
                    uring
                        .submitter()
                        .enter::<libc::sigset_t>(queued, 0, ENTER_GETEVENTS, None)
                }
            };
            match result {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EBUSY | libc::EAGAIN | libc::ETIME)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        self.reap();
        Ok(())
    }

    /// Hands every completion to its operation and wakes the task awaiting it.
    fn reap(&self) {
        loop {
            let cqe = {
                let mut uring = self.uring.borrow_mut();
                let next = uring.completion().next();
                match next {
                    Some(cqe) => cqe,
                    None => return,
                }
            };
            let index = cqe.user_data();
            if index == UNWATCHED {
                continue;
            }
            let index = index as u32;
            let mut slots = self.slots.borrow_mut();
            match &mut slots.slots[index as usize] {
                Slot::Waiting(waker) => {
                    let waker = waker.take();
                    slots.slots[index as usize] = Slot::Done(cqe.result());
                    drop(slots);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                }
                Slot::Orphan(_) => {
                    if let Slot::Orphan(data) = slots.remove(index) {
                        // Dropped outside the borrow: a buffer's drop may be anything.
                        drop(slots);
                        drop(data);
                    }
                }
                Slot::Vacant(_) | Slot::Done(_) => {
                    unreachable!("completion for an operation not in flight")
                }
            }
        }
    }

    /// Takes the wakers of every operation awaited, so a runtime going away can drop the
    /// tasks they hold (each holds its waker's task, and the task its operation: a cycle).
    pub(crate) fn take_wakers(&self) -> Vec<Waker> {
        let mut slots = self.slots.borrow_mut();
        slots
            .slots
            .iter_mut()
            .filter_map(|slot| match slot {
                Slot::Waiting(waker) => waker.take(),
                _ => None,
            })
            .collect()
    }

    /// Asks the kernel to cancel the operation in slot `index`, whose completion still comes.
    fn cancel(&self, index: u32) {
        self.push(
            &opcode::AsyncCancel::new(u64::from(index))
                .build()
                .user_data(UNWATCHED),
        );
    }
}

/// An operation in flight and the buffers it uses: resolves to the kernel's result (a count,
/// or the error) and the buffers back.
///
/// Everything `sqe` points at must be owned by `data` (on the heap, where moving the future
/// does not move it) or outlive the operation.
pub struct Op<T: 'static> {
    index: u32,
    data: Option<T>,
}

// The future never hands out a pinned reference into `data`, whose pointers are into the heap.
impl<T> Unpin for Op<T> {}

impl<T: 'static> Op<T> {
    /// Submits `sqe` (its `user_data` is set here) with the buffers it points into.
    pub fn submit(sqe: squeue::Entry, data: T) -> Op<T> {
        let ring = Ring::current();
        let index = ring.slots.borrow_mut().insert();
        ring.push(&sqe.user_data(u64::from(index)));
        Op {
            index,
            data: Some(data),
        }
    }

    /// Asks the kernel to cancel the operation; it still completes (with `ECANCELED`, or with
    /// the result it reached first), and the future resolves then.
    pub fn cancel(&self) {
        if self.data.is_some() {
            Ring::current().cancel(self.index);
        }
    }
}

impl<T: 'static> Future for Op<T> {
    type Output = (io::Result<u32>, T);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ring = Ring::current();
        let mut slots = ring.slots.borrow_mut();
        match &mut slots.slots[self.index as usize] {
            Slot::Waiting(waker) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Slot::Done(result) => {
                let result = *result;
                slots.remove(self.index);
                drop(slots);
                let data = self
                    .data
                    .take()
                    .expect("operation polled after it resolved");
                let result = if result < 0 {
                    Err(io::Error::from_raw_os_error(-result))
                } else {
                    Ok(result as u32)
                };
                Poll::Ready((result, data))
            }
            Slot::Vacant(_) | Slot::Orphan(_) => unreachable!("operation polled after it resolved"),
        }
    }
}

impl<T: 'static> Drop for Op<T> {
    fn drop(&mut self) {
        let Some(data) = self.data.take() else {
            return;
        };
        let Some(ring) = Ring::try_current() else {
            // Off the runtime (a task dropped after it stopped): the ring may still own the
            // operation, so its buffers are leaked rather than freed under it.
            std::mem::forget(data);
            return;
        };
        let mut slots = ring.slots.borrow_mut();
        if let Slot::Done(_) = slots.slots[self.index as usize] {
            slots.remove(self.index);
            return;
        }
        slots.slots[self.index as usize] = Slot::Orphan(Box::new(data));
        drop(slots);
        ring.cancel(self.index);
    }
}

//! The io_uring driver: the ring and the table of operations in flight on it.
//!
//! An operation is a slot in a table indexed by the submission's `user_data`. Its future
//! ([`crate::driver::Op`]) owns the operation's buffers and hands them back with the result,
//! so the kernel never writes into memory the program has freed: a future dropped while its
//! operation is in flight moves them into the slot as an orphan, asks the kernel to cancel,
//! and the slot is freed, and the buffers dropped, only when the completion arrives.
//!
//! Submissions are batched: nothing enters the kernel until the executor has run every ready
//! task ([`Ring::park`]), when one `io_uring_enter` submits them all and, if nothing is left
//! to run, waits for the first completion.

use std::any::Any;
use std::cell::RefCell;
use std::io;
use std::task::Waker;

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
pub(crate) struct Ring {
    uring: RefCell<IoUring>,
    slots: RefCell<Slots>,
    /// Whether the ring got COOP_TASKRUN, SINGLE_ISSUER and DEFER_TASKRUN.
    tuned: bool,
}

impl Ring {
    /// A ring of `entries` submission entries, with the flags that let one thread own it
    /// (COOP_TASKRUN, SINGLE_ISSUER, DEFER_TASKRUN: completions are posted when the thread
    /// asks, without interrupts), or without them on kernels older than 6.1.
    pub(crate) fn new(entries: u32) -> io::Result<Ring> {
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
    pub(crate) fn tuned(&self) -> bool {
        self.tuned
    }

    /// Queues one submission, entering the kernel first only if the queue is full.
    fn push(&self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: every submission's buffers are owned by its slot until it completes.
            if unsafe { self.uring.borrow_mut().submission().push(sqe) }.is_ok() {
                return;
            }
            // Full: hand the queue to the kernel, and take the completions too, so that a
            // kernel that refuses submissions while completions overflow (EBUSY) gets room.
            self.park(false)
                .expect("coregate-rt: io_uring_enter failed with the submission queue full");
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
    ///
    /// The slot's index is the whole `user_data`: a cancellation queued for an operation
    /// that completes before the kernel sees it cannot hit the next operation to take the
    /// slot, because that one is queued after it, and the kernel consumes the queue in order.
    pub(crate) fn cancel(&self, index: u32) {
        self.push(
            &opcode::AsyncCancel::new(u64::from(index))
                .build()
                .user_data(UNWATCHED),
        );
    }

    /// Starts an operation: `sqe` with its `user_data` set to a new slot.
    pub(crate) fn submit(&self, sqe: squeue::Entry) -> u32 {
        let index = self.slots.borrow_mut().insert();
        self.push(&sqe.user_data(u64::from(index)));
        index
    }

    /// The result of the operation in slot `index` (freeing the slot), or `Pending` with the
    /// task's waker kept.
    pub(crate) fn poll_op(&self, index: u32, waker: &Waker) -> std::task::Poll<i32> {
        let mut slots = self.slots.borrow_mut();
        match &mut slots.slots[index as usize] {
            Slot::Waiting(kept) => {
                match kept {
                    Some(w) if w.will_wake(waker) => {}
                    _ => *kept = Some(waker.clone()),
                }
                std::task::Poll::Pending
            }
            Slot::Done(result) => {
                let result = *result;
                slots.remove(index);
                std::task::Poll::Ready(result)
            }
            Slot::Vacant(_) | Slot::Orphan(_) => unreachable!("operation polled after it resolved"),
        }
    }

    /// The future of the operation in slot `index` is gone, its buffers with `data`: freed
    /// now if it has completed, else kept in the slot until it does, and the kernel asked to
    /// cancel it.
    pub(crate) fn abandon(&self, index: u32, data: Box<dyn Any>) {
        let mut slots = self.slots.borrow_mut();
        if let Slot::Done(_) = slots.slots[index as usize] {
            slots.remove(index);
            drop(slots);
            drop(data);
            return;
        }
        slots.slots[index as usize] = Slot::Orphan(data);
        drop(slots);
        self.cancel(index);
    }
}

//! The epoll driver, for where io_uring is unavailable (a kernel built without it, the
//! `kernel.io_uring_disabled` sysctl, a seccomp profile that refuses it).
//!
//! Sockets are non-blocking. An operation tries its syscall when polled; on `EAGAIN` its task
//! waits here for the socket's readiness, and tries again when woken. Each socket is
//! registered once, edge-triggered for both directions, on the first wait; it has one waiting
//! reader and one waiting writer at most (a split stream's two halves). An edge is never
//! missed: the syscall that saw `EAGAIN` and the registration of the waiter happen in the same
//! poll, before the thread next asks the kernel for events. Sleeps are deadlines in an ordered
//! map; the wait for events ends at the first of them.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::task::Waker;
use std::time::Instant;

/// Events taken from the kernel per wait.
const EVENTS_MAX: usize = 256;

/// What an operation waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// The tasks waiting on one socket.
#[derive(Default)]
struct Waiters {
    registered: bool,
    read: Option<Waker>,
    write: Option<Waker>,
}

pub(crate) struct Poller {
    epoll: OwnedFd,
    /// Indexed by descriptor.
    fds: RefCell<Vec<Waiters>>,
    /// Sleeps, by deadline and a sequence number that tells equal deadlines apart.
    timers: RefCell<BTreeMap<(Instant, u64), Waker>>,
    next_timer: Cell<u64>,
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        // SAFETY: plain syscall; the descriptor it returns is owned here.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Poller {
            // SAFETY: a new descriptor, owned by nothing else.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            fds: RefCell::new(Vec::new()),
            timers: RefCell::new(BTreeMap::new()),
            next_timer: Cell::new(0),
        })
    }

    /// Keeps `waker` to be woken when `fd` becomes ready for `interest`; the caller has just
    /// seen `EAGAIN` from it.
    pub(crate) fn wait(&self, fd: RawFd, interest: Interest, waker: &Waker) -> io::Result<()> {
        let mut fds = self.fds.borrow_mut();
        let index = fd as usize;
        if fds.len() <= index {
            fds.resize_with(index + 1, Waiters::default);
        }
        let waiters = &mut fds[index];
        if !waiters.registered {
            let mut event = libc::epoll_event {
                events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
                u64: fd as u64,
            };
            // SAFETY: the event outlives the call.
            if unsafe {
                libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event)
            } < 0
            {
                return Err(io::Error::last_os_error());
            }
            waiters.registered = true;
        }
        let slot = match interest {
            Interest::Read => &mut waiters.read,
            Interest::Write => &mut waiters.write,
        };
        match slot {
            Some(kept) if kept.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
        Ok(())
    }

    /// `fd` is about to be closed: its waiters go, and a socket that gets the number next
    /// registers afresh.
    pub(crate) fn forget(&self, fd: RawFd) {
        let gone = self
            .fds
            .borrow_mut()
            .get_mut(fd as usize)
            .map(std::mem::take);
        drop(gone);
    }

    /// Wakes `waker` at `deadline`; returns the key [`Poller::remove_timer`] takes.
    pub(crate) fn add_timer(&self, deadline: Instant, waker: &Waker) -> u64 {
        let key = self.next_timer.get();
        self.next_timer.set(key + 1);
        self.timers
            .borrow_mut()
            .insert((deadline, key), waker.clone());
        key
    }

    /// Whether the timer is still pending (not yet fired), in which case its waker is
    /// updated to `waker`.
    pub(crate) fn timer_pending(&self, deadline: Instant, key: u64, waker: &Waker) -> bool {
        match self.timers.borrow_mut().get_mut(&(deadline, key)) {
            Some(kept) => {
                if !kept.will_wake(waker) {
                    *kept = waker.clone();
                }
                true
            }
            None => false,
        }
    }

    pub(crate) fn remove_timer(&self, deadline: Instant, key: u64) {
        let gone = self.timers.borrow_mut().remove(&(deadline, key));
        drop(gone);
    }

    /// Waits for readiness (until the next deadline, when `wait`; not at all otherwise) and
    /// wakes the tasks it concerns, then those whose deadline has passed.
    pub(crate) fn park(&self, wait: bool) -> io::Result<()> {
        let timeout_ms = if !wait {
            0
        } else {
            match self.timers.borrow().keys().next() {
                None => -1,
                Some((deadline, _)) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    // Rounded up, so the wait never ends before the deadline.
                    left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
                }
            }
        };
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS_MAX];
        // SAFETY: the kernel writes at most EVENTS_MAX events into the array.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                EVENTS_MAX as i32,
                timeout_ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for event in &events[..n.max(0) as usize] {
            let flags = event.events as i32;
            let fd = event.u64 as usize;
            let (reader, writer) = {
                let mut fds = self.fds.borrow_mut();
                let Some(waiters) = fds.get_mut(fd) else {
                    continue;
                };
                let failed = flags & (libc::EPOLLERR | libc::EPOLLHUP) != 0;
                let readable = failed || flags & (libc::EPOLLIN | libc::EPOLLRDHUP) != 0;
                let writable = failed || flags & libc::EPOLLOUT != 0;
                (
                    readable.then(|| waiters.read.take()).flatten(),
                    writable.then(|| waiters.write.take()).flatten(),
                )
            };
            reader.into_iter().chain(writer).for_each(Waker::wake);
        }
        let now = Instant::now();
        loop {
            let due = {
                let mut timers = self.timers.borrow_mut();
                match timers.first_entry() {
                    Some(entry) if entry.key().0 <= now => entry.remove(),
                    _ => break,
                }
            };
            due.wake();
        }
        Ok(())
    }

    /// Every waker kept, for a runtime going away (see [`crate::Runtime`]'s drop).
    pub(crate) fn take_wakers(&self) -> Vec<Waker> {
        let mut wakers: Vec<Waker> = std::mem::take(&mut *self.timers.borrow_mut())
            .into_values()
            .collect();
        for waiters in self.fds.borrow_mut().iter_mut() {
            wakers.extend(waiters.read.take());
            wakers.extend(waiters.write.take());
        }
        wakers
    }
}

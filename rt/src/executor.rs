//! Tasks, their wakers and the run queue of one thread.
//!
//! A task is one allocation: its future, its output once done, and a flag that keeps it in
//! the queue at most once. Its waker is the task's own `Rc` (cloning it counts a reference),
//! so waking costs a queue push and nothing is shared between threads: wakers must stay on
//! the runtime's thread.
//!
//! [`Runtime::block_on`] runs the queue until it is empty (or a budget is spent, so completions
//! are reaped even when tasks keep waking each other), then enters the kernel once: to submit
//! what the tasks queued and, when nothing is left to run, to wait for a completion.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::mem::ManuallyDrop;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use crate::driver::{Driver, DriverKind};

/// Tasks run between two entries into the kernel at most.
const RUN_BUDGET: usize = 256;

thread_local! {
    /// Tasks woken and not yet run.
    static QUEUE: RefCell<VecDeque<Rc<dyn Runnable>>> = const { RefCell::new(VecDeque::new()) };
    /// Whether the future given to `block_on` was woken since it was last polled.
    static MAIN_WOKEN: Cell<bool> = const { Cell::new(false) };
}

trait Runnable {
    fn run(self: Rc<Self>);
}

/// What a task is at: running, done with its output waiting, or done and its output taken.
enum Stage<F: Future> {
    Running(F),
    Done(F::Output),
    Taken,
}

struct Task<F: Future> {
    /// In the queue (woken and not yet run).
    queued: Cell<bool>,
    stage: RefCell<Stage<F>>,
    /// The task awaiting this one's [`JoinHandle`].
    joiner: Cell<Option<Waker>>,
}

impl<F: Future + 'static> Task<F> {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(
        Self::clone_waker,
        Self::wake,
        Self::wake_by_ref,
        Self::drop_waker,
    );

    fn schedule(self: Rc<Self>) {
        if !self.queued.replace(true) {
            QUEUE.with(|q| q.borrow_mut().push_back(self));
        }
    }

    // SAFETY (all four): `data` is an `Rc<Task<F>>` turned into a raw pointer, whose count
    // includes this waker.
    unsafe fn clone_waker(data: *const ()) -> RawWaker {
        Rc::increment_strong_count(data.cast::<Self>());
        RawWaker::new(data, &Self::VTABLE)
    }

    unsafe fn wake(data: *const ()) {
        Rc::from_raw(data.cast::<Self>()).schedule();
    }

    unsafe fn wake_by_ref(data: *const ()) {
        Rc::increment_strong_count(data.cast::<Self>());
        Rc::from_raw(data.cast::<Self>()).schedule();
    }

    unsafe fn drop_waker(data: *const ()) {
        drop(Rc::from_raw(data.cast::<Self>()));
    }
}

impl<F: Future + 'static> Runnable for Task<F> {
    fn run(self: Rc<Self>) {
        self.queued.set(false);
        // Borrows the queue's reference rather than counting one of its own.
        // SAFETY: the pointer is a live `Rc<Task<F>>`'s, and ManuallyDrop keeps the count.
        let waker = ManuallyDrop::new(unsafe {
            Waker::from_raw(RawWaker::new(Rc::as_ptr(&self).cast(), &Self::VTABLE))
        });
        let mut cx = Context::from_waker(&waker);
        let mut stage = self.stage.borrow_mut();
        let Stage::Running(future) = &mut *stage else {
            return;
        };
        // SAFETY: the future lives in the task's allocation, which never moves, and is
        // replaced only once it has completed.
        if let Poll::Ready(output) = unsafe { Pin::new_unchecked(future) }.poll(&mut cx) {
            *stage = Stage::Done(output);
            drop(stage);
            if let Some(joiner) = self.joiner.take() {
                joiner.wake();
            }
        }
    }
}

/// What a [`JoinHandle`] sees of its task.
trait Join<T> {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<T>;
}

impl<F: Future + 'static> Join<F::Output> for Task<F> {
    fn poll_join(&self, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut stage = self.stage.borrow_mut();
        match std::mem::replace(&mut *stage, Stage::Taken) {
            Stage::Done(output) => Poll::Ready(output),
            Stage::Running(future) => {
                *stage = Stage::Running(future);
                self.joiner.set(Some(cx.waker().clone()));
                Poll::Pending
            }
            Stage::Taken => panic!("JoinHandle polled after it resolved"),
        }
    }
}

/// Resolves to a spawned task's output. Dropping it detaches the task, which runs on.
pub struct JoinHandle<T> {
    task: Rc<dyn Join<T>>,
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.task.poll_join(cx)
    }
}

/// Runs `future` as a task of this thread's runtime.
pub fn spawn<F: Future + 'static>(future: F) -> JoinHandle<F::Output> {
    let task = Rc::new(Task {
        queued: Cell::new(true),
        stage: RefCell::new(Stage::Running(future)),
        joiner: Cell::new(None),
    });
    QUEUE.with(|q| q.borrow_mut().push_back(task.clone()));
    JoinHandle { task }
}

const MAIN_VTABLE: RawWakerVTable = RawWakerVTable::new(
    |_| RawWaker::new(std::ptr::null(), &MAIN_VTABLE),
    |_| MAIN_WOKEN.with(|w| w.set(true)),
    |_| MAIN_WOKEN.with(|w| w.set(true)),
    |_| {},
);

/// A thread's runtime: its driver and the tasks on it.
pub struct Runtime {
    driver: Driver,
}

impl Runtime {
    /// A runtime on io_uring with `entries` submission entries (with the single-thread flags
    /// where the kernel has them), or on epoll where io_uring is unavailable.
    pub fn new(entries: u32) -> io::Result<Runtime> {
        Ok(Runtime {
            driver: Driver::new(entries)?,
        })
    }

    /// A runtime on epoll, whatever the kernel offers.
    pub fn epoll() -> io::Result<Runtime> {
        Ok(Runtime {
            driver: Driver::epoll()?,
        })
    }

    /// The driver it got.
    pub fn driver(&self) -> DriverKind {
        self.driver.kind()
    }

    /// Runs `future` to completion, and the tasks it spawns meanwhile.
    ///
    /// # Panics
    /// If the driver fails (`io_uring_enter` or `epoll_wait` with an error other than an
    /// interruption).
    pub fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        let driver = &self.driver;
        driver.enter(|| {
            let mut future = pin!(future);
            // SAFETY: the vtable ignores the data pointer.
            let waker = unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &MAIN_VTABLE)) };
            let mut cx = Context::from_waker(&waker);
            MAIN_WOKEN.with(|w| w.set(true));
            loop {
                if MAIN_WOKEN.with(|w| w.replace(false)) {
                    if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                        return output;
                    }
                }
                let mut budget = RUN_BUDGET;
                while budget > 0 {
                    let Some(task) = QUEUE.with(|q| q.borrow_mut().pop_front()) else {
                        break;
                    };
                    task.run();
                    budget -= 1;
                }
                let idle = QUEUE.with(|q| q.borrow().is_empty()) && !MAIN_WOKEN.with(|w| w.get());
                driver.park(idle).expect("coregate-rt: the driver failed");
            }
        })
    }
}

impl Drop for Runtime {
    /// Drops the tasks left (woken or waiting on an operation) while the driver is still
    /// this thread's, so their operations are cancelled and their buffers kept until the
    /// ring goes.
    fn drop(&mut self) {
        self.driver.enter(|| {
            let queued: Vec<_> = QUEUE.with(|q| q.borrow_mut().drain(..).collect());
            drop(queued);
            drop(self.driver.take_wakers());
        });
    }
}

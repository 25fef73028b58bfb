//! The worker's coarse timer: the deadlines of single I/O operations (a read of the next
//! bytes of a response, a write to a slow client, a connect), which almost never fire.
//!
//! A runtime sleep per operation costs a kernel timer (on monoio, when this was measured: a
//! timer-wheel insert and removal, a clock read on every poll, and 640 bytes inside every
//! future that waits, of which the request's state machine carried several). Here an operation's deadline is an entry in a per-worker slab, counted
//! in ticks: arming it is a slab push and reads no clock, disarming it a slab pop, and the
//! future adds 24 bytes to its operation. A ticker task (one per worker, [`Timer::run`])
//! sleeps [`TICK_MS`] at a time while any deadline is armed, and not at all otherwise; each
//! time it wakes it counts a tick and fires the entries whose tick has come. A deadline of
//! `wait` fires on the tick after `ceil(wait / TICK_MS)` more have passed: since ticks are at
//! least [`TICK_MS`] apart, never before `wait`, and at most about two ticks after it; what
//! pingora's `fast_timeout` does with its 10 ms wheel.
//!
//! The ticker also keeps a coarse clock ([`Timer::coarse_deadline`]) for deadlines elsewhere
//! that are as coarse, so that the request path reads the clock only for what it measures.
//!
//! Owned by one worker thread (`RefCell`s, no locks).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How often armed deadlines are checked: a timeout fires at most about two of these late.
const TICK_MS: u64 = 10;
const TICK: Duration = Duration::from_millis(TICK_MS);

/// The slab of armed deadlines of one worker.
#[derive(Default)]
pub(crate) struct Timer {
    inner: RefCell<Slab>,
    /// Entries armed and not yet fired: the ticker sleeps while there are none.
    armed: Cell<usize>,
    /// The ticker, while it waits for a first deadline.
    ticker: Cell<Option<Waker>>,
    /// Ticks counted since the worker started (only while deadlines were armed).
    ticks: Cell<u64>,
    /// The clock at the last tick, or when the first deadline after a quiet spell was armed:
    /// while any deadline is armed, at most about one tick old.
    now: Cell<Option<Instant>>,
}

#[derive(Default)]
struct Slab {
    entries: Vec<Entry>,
    free: Vec<usize>,
}

struct Entry {
    /// The tick on which it fires.
    deadline: u64,
    waker: Option<Waker>,
    fired: bool,
}

/// The operation did not finish before its deadline.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Elapsed;

impl Timer {
    /// `op`, bounded by `wait` from its first poll that does not finish it.
    pub(crate) fn timeout<F: Future>(&self, wait: Duration, op: F) -> Timeout<'_, F> {
        Timeout {
            timer: self,
            wait,
            slot: None,
            op,
        }
    }

    /// The ticker: runs for the worker's life.
    pub(crate) async fn run(&self) {
        loop {
            std::future::poll_fn(|cx| {
                if self.armed.get() > 0 {
                    Poll::Ready(())
                } else {
                    self.ticker.set(Some(cx.waker().clone()));
                    Poll::Pending
                }
            })
            .await;
            coregate_rt::time::sleep(TICK).await;
            self.now.set(Some(Instant::now()));
            self.ticks.set(self.ticks.get() + 1);
            self.fire_expired(self.ticks.get());
        }
    }

    /// A deadline `wait` from now on the coarse clock, for waits as coarse as the timer's:
    /// never before `wait` has passed, at most about two ticks after. Reads no clock while
    /// deadlines are armed (see [`Timer::coarse_now`]).
    pub(crate) fn coarse_deadline(&self, wait: Duration) -> Instant {
        // The reading may be up to a tick old: one tick more keeps the deadline from coming
        // early.
        self.coarse_now() + wait + TICK
    }

    /// Now, give or take about one tick: the clock read at the last tick while deadlines are
    /// armed (the busy case: no clock read), else read now.
    fn coarse_now(&self) -> Instant {
        match self.now.get() {
            Some(now) if self.armed.get() > 0 => now,
            _ => {
                let now = Instant::now();
                self.now.set(Some(now));
                now
            }
        }
    }

    /// Fires the entries whose tick is `tick` or earlier.
    fn fire_expired(&self, tick: u64) {
        let mut inner = self.inner.borrow_mut();
        for entry in inner.entries.iter_mut() {
            if !entry.fired && entry.waker.is_some() && entry.deadline <= tick {
                entry.fired = true;
                self.armed.set(self.armed.get() - 1);
                if let Some(waker) = entry.waker.take() {
                    // Waking only queues the task: nothing runs inside this borrow.
                    waker.wake();
                }
            }
        }
    }

    /// Arms a deadline `wait` from now. The tick under way may be nearly over, so a wait of
    /// `n` ticks fires on the `n + 1`th tick from now.
    fn arm(&self, wait: Duration, waker: &Waker) -> usize {
        let ticks = wait.as_nanos().div_ceil(TICK.as_nanos());
        let ticks = u64::try_from(ticks).unwrap_or(u64::MAX / 2);
        if self.armed.get() == 0 {
            // The first deadline after a quiet spell: the coarse clock starts afresh.
            self.now.set(Some(Instant::now()));
        }
        let entry = Entry {
            deadline: self.ticks.get().saturating_add(ticks + 1),
            waker: Some(waker.clone()),
            fired: false,
        };
        let slot = {
            let mut inner = self.inner.borrow_mut();
            match inner.free.pop() {
                Some(slot) => {
                    inner.entries[slot] = entry;
                    slot
                }
                None => {
                    inner.entries.push(entry);
                    inner.entries.len() - 1
                }
            }
        };
        self.armed.set(self.armed.get() + 1);
        if self.armed.get() == 1 {
            if let Some(ticker) = self.ticker.take() {
                ticker.wake();
            }
        }
        slot
    }

    /// Whether the entry fired; else makes sure it wakes `waker`.
    fn check(&self, slot: usize, waker: &Waker) -> bool {
        let mut inner = self.inner.borrow_mut();
        let entry = &mut inner.entries[slot];
        if entry.fired {
            return true;
        }
        match &entry.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => entry.waker = Some(waker.clone()),
        }
        false
    }

    fn disarm(&self, slot: usize) {
        let mut inner = self.inner.borrow_mut();
        let entry = &mut inner.entries[slot];
        if !entry.fired {
            self.armed.set(self.armed.get() - 1);
        }
        entry.fired = false;
        entry.waker = None;
        inner.free.push(slot);
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Timer::timeout`]. Dropping it disarms its deadline (and drops the
    /// operation, which the runtime cancels).
    pub(crate) struct Timeout<'a, F> {
        timer: &'a Timer,
        wait: Duration,
        slot: Option<usize>,
        #[pin]
        op: F,
    }

    impl<F> PinnedDrop for Timeout<'_, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(slot) = this.slot.take() {
                this.timer.disarm(slot);
            }
        }
    }
}

impl<F: Future> Future for Timeout<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // An operation that finished is taken even when its deadline fired meanwhile.
        if let Poll::Ready(out) = this.op.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match *this.slot {
            None => *this.slot = Some(this.timer.arm(*this.wait, cx.waker())),
            Some(slot) => {
                if this.timer.check(slot, cx.waker()) {
                    return Poll::Ready(Err(Elapsed));
                }
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `test` on a timer whose ticker runs beside it.
    fn with_timer<F: Future<Output = ()>>(test: impl FnOnce(std::rc::Rc<Timer>) -> F) {
        let mut runtime = coregate_rt::Runtime::new(64).unwrap();
        runtime.block_on(async {
            let timer = std::rc::Rc::new(Timer::default());
            coregate_rt::spawn({
                let timer = timer.clone();
                async move { timer.run().await }
            });
            test(timer).await;
        });
    }

    #[test]
    fn an_operation_that_finishes_first_is_not_timed_out_and_disarms() {
        with_timer(|timer| async move {
            let op = coregate_rt::time::sleep(Duration::from_millis(5));
            assert_eq!(timer.timeout(Duration::from_secs(5), op).await, Ok(()));
            assert_eq!(timer.armed.get(), 0);
            assert_eq!(timer.inner.borrow().free.len(), 1);
        });
    }

    #[test]
    fn a_deadline_fires_after_its_wait_and_not_before() {
        with_timer(|timer| async move {
            let started = Instant::now();
            let never = std::future::pending::<()>();
            assert_eq!(
                timer.timeout(Duration::from_millis(30), never).await,
                Err(Elapsed)
            );
            assert!(started.elapsed() >= Duration::from_millis(30));
            assert_eq!(timer.armed.get(), 0);
            // The slot is reused by the next deadline.
            let never = std::future::pending::<()>();
            assert!(timer
                .timeout(Duration::from_millis(1), never)
                .await
                .is_err());
            assert_eq!(timer.inner.borrow().entries.len(), 1);
        });
    }

    #[test]
    fn many_deadlines_fire_independently() {
        with_timer(|timer| async move {
            let short = timer.timeout(Duration::from_millis(10), std::future::pending::<()>());
            let long = timer.timeout(
                Duration::from_secs(60),
                coregate_rt::time::sleep(Duration::from_millis(50)),
            );
            let (short, long) = monoio::join!(short, long);
            assert_eq!(short, Err(Elapsed));
            assert_eq!(long, Ok(()));
            assert_eq!(timer.armed.get(), 0);
        });
    }

    #[test]
    fn the_coarse_clock_is_read_only_while_nothing_is_armed() {
        // No ticker here: the coarse clock moves only when read afresh.
        let timer = Timer::default();
        let quiet = timer.coarse_now();
        std::thread::sleep(Duration::from_millis(2));
        let later = timer.coarse_now();
        assert!(
            later >= quiet + Duration::from_millis(2),
            "nothing armed: read afresh"
        );

        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut armed = std::pin::pin!(timer.timeout(TICK, std::future::pending::<()>()));
        let before = Instant::now();
        assert!(armed.as_mut().poll(&mut cx).is_pending());
        let at_arm = timer.coarse_now();
        assert!(
            at_arm >= before,
            "the first deadline after a quiet spell reads the clock"
        );
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(
            timer.coarse_now(),
            at_arm,
            "while armed, the tick's reading is kept"
        );
        // Armed for one tick: it fires on the second tick from now, not the first.
        assert_eq!(timer.inner.borrow().entries[0].deadline, 2);
    }

    #[test]
    fn dropping_a_pending_timeout_disarms_it_and_the_ticker_goes_quiet() {
        with_timer(|timer| async move {
            let first_poll = timer.timeout(Duration::from_millis(20), std::future::pending::<()>());
            // Polled once (armed), then dropped by select when the sleep finishes first.
            monoio::select! {
                _ = first_poll => unreachable!("never finishes"),
                _ = coregate_rt::time::sleep(Duration::from_millis(1)) => {}
            }
            assert_eq!(timer.armed.get(), 0);
            assert_eq!(timer.inner.borrow().free, vec![0]);
            // The dropped deadline never fires into a later one that reuses its slot.
            coregate_rt::time::sleep(Duration::from_millis(40)).await;
            let op = coregate_rt::time::sleep(Duration::from_millis(5));
            assert_eq!(timer.timeout(Duration::from_secs(5), op).await, Ok(()));
        });
    }
}

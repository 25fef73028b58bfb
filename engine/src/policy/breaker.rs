//! Circuit breaker: one per upstream endpoint per worker, no cross-core sync.
//!
//! Owns the closed → open → half-open → closed state machine of [`Breaker`]:
//!
//! - **Closed** lets everything through and trips to *open* on `consecutive_failures`
//!   failures in a row, or when the failure ratio over the rolling `window_ms` reaches
//!   `failure_ratio` with at least `minimum_requests` outcomes in the window.
//! - **Open** refuses everything for a cool-down. The cool-down starts at
//!   `cooldown_base_ms` and is multiplied by `cooldown_multiplier` (up to `cooldown_max_ms`)
//!   on every trip that follows a recovery too soon (closed for less than `window_ms`) or a
//!   failed probe; it falls back to the base once the endpoint has stayed closed for a whole
//!   window.
//! - **Half-open** (the first [`Breaker::allow`] after the cool-down) lets at most
//!   `half_open_probes` requests through. When that many probes have succeeded the breaker
//!   closes (a *recovery*); any failure re-opens it with the longer cool-down.
//!
//! The caller must report the outcome of every request `allow` admitted (a timeout or a
//! reset is a failure), or a half-open breaker keeps waiting for its probes. Outcomes that
//! arrive while open (requests admitted before the trip) are ignored.
//!
//! A breaker outlives a reload that leaves its endpoint alone: the worker keeps using it when
//! the settings are unchanged ([`Breaker::runs_on`]) and carries its state over to new
//! settings otherwise ([`Breaker::carried_to`]).
//!
//! The rolling window is a ring of [`WINDOW_BUCKETS`] time buckets of `window_ms / 10`
//! each, updated in place. **Never**: allocates, locks, reads a clock (time comes in as
//! `now_ms`), or panics on any sequence of calls or times (time may even go backwards).
//! Measured (`cargo bench --bench policies`, shared 2-core VM at load 3–5, three runs):
//! `allow` + `on_success` on a closed breaker, 4.2–6.9 ns/op.

/// Failures in a row that trip the breaker (default; 0 disables the trigger).
pub const CONSECUTIVE_FAILURES_DEFAULT: u32 = 5;
/// Failure ratio over the window that trips the breaker (default; outside (0, 1] disables).
pub const FAILURE_RATIO_DEFAULT: f64 = 0.5;
/// Length of the rolling window in milliseconds (default).
pub const WINDOW_MS_DEFAULT: u64 = 10_000;
/// Outcomes needed in the window before the ratio can trip (default).
pub const MINIMUM_REQUESTS_DEFAULT: u32 = 20;
/// First cool-down in milliseconds (default).
pub const COOLDOWN_BASE_MS_DEFAULT: u64 = 1_000;
/// Growth of the cool-down on repeated trips (default).
pub const COOLDOWN_MULTIPLIER_DEFAULT: f64 = 2.0;
/// Longest cool-down in milliseconds (default).
pub const COOLDOWN_MAX_MS_DEFAULT: u64 = 60_000;
/// Probe requests let through when half-open (default).
pub const HALF_OPEN_PROBES_DEFAULT: u32 = 3;
/// Time buckets in the rolling window.
pub const WINDOW_BUCKETS: usize = 10;

/// When a [`Breaker`] trips and how it recovers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Failures in a row that trip it; 0 disables. Default [`CONSECUTIVE_FAILURES_DEFAULT`].
    pub consecutive_failures: u32,
    /// Failure ratio over the window that trips it, in (0, 1]; any other value disables.
    /// Default [`FAILURE_RATIO_DEFAULT`].
    pub failure_ratio: f64,
    /// Rolling window in milliseconds (at least [`WINDOW_BUCKETS`]). Default
    /// [`WINDOW_MS_DEFAULT`].
    pub window_ms: u64,
    /// Outcomes needed in the window before the ratio counts (at least 1). Default
    /// [`MINIMUM_REQUESTS_DEFAULT`].
    pub minimum_requests: u32,
    /// First cool-down in milliseconds (at least 1). Default [`COOLDOWN_BASE_MS_DEFAULT`].
    pub cooldown_base_ms: u64,
    /// Cool-down growth per repeated trip (at least 1). Default
    /// [`COOLDOWN_MULTIPLIER_DEFAULT`].
    pub cooldown_multiplier: f64,
    /// Longest cool-down in milliseconds (at least the base). Default
    /// [`COOLDOWN_MAX_MS_DEFAULT`].
    pub cooldown_max_ms: u64,
    /// Probes let through when half-open (at least 1). Default [`HALF_OPEN_PROBES_DEFAULT`].
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: CONSECUTIVE_FAILURES_DEFAULT,
            failure_ratio: FAILURE_RATIO_DEFAULT,
            window_ms: WINDOW_MS_DEFAULT,
            minimum_requests: MINIMUM_REQUESTS_DEFAULT,
            cooldown_base_ms: COOLDOWN_BASE_MS_DEFAULT,
            cooldown_multiplier: COOLDOWN_MULTIPLIER_DEFAULT,
            cooldown_max_ms: COOLDOWN_MAX_MS_DEFAULT,
            half_open_probes: HALF_OPEN_PROBES_DEFAULT,
        }
    }
}

impl BreakerConfig {
    /// The first problem with these values, for the config loader to report with the file
    /// and line. [`Breaker::new`] clamps whatever it is given, so this is advice, not safety.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.window_ms < WINDOW_BUCKETS as u64 {
            return Err("window_ms must be at least 10");
        }
        if self.minimum_requests == 0 {
            return Err("minimum_requests must be at least 1");
        }
        if self.cooldown_base_ms == 0 {
            return Err("cooldown_base_ms must be at least 1");
        }
        if !(self.cooldown_multiplier.is_finite() && self.cooldown_multiplier >= 1.0) {
            return Err("cooldown_multiplier must be a number of at least 1");
        }
        if self.cooldown_max_ms < self.cooldown_base_ms {
            return Err("cooldown_max_ms must be at least cooldown_base_ms");
        }
        if self.half_open_probes == 0 {
            return Err("half_open_probes must be at least 1");
        }
        Ok(())
    }

    fn sanitized(self) -> BreakerConfig {
        let cooldown_base_ms = self.cooldown_base_ms.max(1);
        BreakerConfig {
            consecutive_failures: self.consecutive_failures,
            failure_ratio: self.failure_ratio,
            window_ms: self.window_ms.max(WINDOW_BUCKETS as u64),
            minimum_requests: self.minimum_requests.max(1),
            cooldown_base_ms,
            cooldown_multiplier: if self.cooldown_multiplier.is_finite() {
                self.cooldown_multiplier.max(1.0)
            } else {
                1.0
            },
            cooldown_max_ms: self.cooldown_max_ms.max(cooldown_base_ms),
            half_open_probes: self.half_open_probes.max(1),
        }
    }

    fn ratio_enabled(&self) -> bool {
        self.failure_ratio > 0.0 && self.failure_ratio <= 1.0
    }
}

/// Where a [`Breaker`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Requests flow; outcomes are counted.
    Closed,
    /// Requests are refused until `until_ms`.
    Open {
        /// End of the cool-down (same time base as `now_ms`).
        until_ms: u64,
    },
    /// A bounded number of probe requests flow.
    HalfOpen,
}

/// Outcomes in one slice of the rolling window.
#[derive(Clone, Copy, Debug, Default)]
struct WindowBucket {
    /// `now_ms / bucket_ms` of the slice these counts belong to.
    index: u64,
    successes: u32,
    failures: u32,
}

/// One endpoint's circuit breaker on one worker (see the module doc).
#[derive(Clone, Debug)]
pub struct Breaker {
    config: BreakerConfig,
    bucket_ms: u64,
    state: State,
    /// Failures in a row while closed.
    consecutive: u32,
    window: [WindowBucket; WINDOW_BUCKETS],
    /// The cool-down the next trip will use.
    cooldown_ms: u64,
    /// When the breaker last closed (0 at creation).
    closed_since_ms: u64,
    probes_admitted: u32,
    probes_succeeded: u32,
    trips: u64,
    recoveries: u64,
}

impl Breaker {
    /// A closed breaker. Out-of-range settings are clamped (see [`BreakerConfig::validate`]).
    pub fn new(config: BreakerConfig) -> Breaker {
        let config = config.sanitized();
        Breaker {
            bucket_ms: config.window_ms / WINDOW_BUCKETS as u64,
            state: State::Closed,
            consecutive: 0,
            window: [WindowBucket::default(); WINDOW_BUCKETS],
            cooldown_ms: config.cooldown_base_ms,
            closed_since_ms: 0,
            probes_admitted: 0,
            probes_succeeded: 0,
            trips: 0,
            recoveries: 0,
            config,
        }
    }

    /// Whether this breaker runs on `config` (after the clamping [`Breaker::new`] does): a
    /// reload that left the endpoint's settings alone keeps using this very breaker.
    pub fn runs_on(&self, config: &BreakerConfig) -> bool {
        self.config == config.sanitized()
    }

    /// This breaker's state carried over to new settings (a reload changed the endpoint's
    /// `[breaker]`): an open breaker stays open until the end of its cool-down, a half-open
    /// one opens until `now_ms` so that the new settings' probes start with the next request
    /// (the probes in flight report to the old breaker), and a closed one starts a fresh
    /// window. Trip and recovery counts carry over; the next cool-down is clamped to the
    /// new bounds.
    pub fn carried_to(&self, config: BreakerConfig, now_ms: u64) -> Breaker {
        let mut carried = Breaker::new(config);
        carried.state = match self.state {
            State::Closed => State::Closed,
            State::Open { until_ms } => State::Open { until_ms },
            State::HalfOpen => State::Open { until_ms: now_ms },
        };
        carried.cooldown_ms = self.cooldown_ms.clamp(
            carried.config.cooldown_base_ms,
            carried.config.cooldown_max_ms,
        );
        carried.closed_since_ms = self.closed_since_ms;
        carried.trips = self.trips;
        carried.recoveries = self.recoveries;
        carried.check_invariants();
        carried
    }

    /// Whether a request may go to this endpoint now. When half-open, an admitted request
    /// is a probe and counts against `half_open_probes`.
    pub fn allow(&mut self, now_ms: u64) -> bool {
        let allowed = match self.state {
            State::Closed => true,
            State::Open { until_ms } => {
                if now_ms >= until_ms {
                    self.state = State::HalfOpen;
                    self.probes_admitted = 1;
                    self.probes_succeeded = 0;
                    true
                } else {
                    false
                }
            }
            State::HalfOpen => {
                if self.probes_admitted < self.config.half_open_probes {
                    self.probes_admitted += 1;
                    true
                } else {
                    false
                }
            }
        };
        self.check_invariants();
        allowed
    }

    /// Reports a successful response.
    pub fn on_success(&mut self, now_ms: u64) {
        match self.state {
            State::Closed => {
                self.consecutive = 0;
                let bucket = self.bucket(now_ms);
                bucket.successes = bucket.successes.saturating_add(1);
            }
            State::Open { .. } => {}
            State::HalfOpen => {
                // More successes than probes are late answers to requests admitted before
                // the trip: they say nothing about the endpoint now.
                if self.probes_succeeded < self.probes_admitted {
                    self.probes_succeeded += 1;
                    if self.probes_succeeded >= self.config.half_open_probes {
                        self.close(now_ms);
                    }
                }
            }
        }
        self.check_invariants();
    }

    /// Reports a failed request (error status, connect failure, timeout, reset).
    pub fn on_failure(&mut self, now_ms: u64) {
        match self.state {
            State::Closed => {
                self.consecutive = self.consecutive.saturating_add(1);
                let bucket = self.bucket(now_ms);
                bucket.failures = bucket.failures.saturating_add(1);
                let streak = self.config.consecutive_failures > 0
                    && self.consecutive >= self.config.consecutive_failures;
                if streak || self.ratio_exceeded(now_ms) {
                    self.trip(now_ms);
                }
            }
            State::Open { .. } => {}
            // A probe failed (or a late answer from before the trip did: either way the
            // endpoint is not known to be healthy).
            State::HalfOpen => self.trip(now_ms),
        }
        self.check_invariants();
    }

    /// The current state. An open breaker whose cool-down has passed still reads `Open`
    /// until the next [`Breaker::allow`] turns it half-open.
    pub fn state(&self) -> State {
        self.state
    }

    /// Times the breaker opened (from closed or from a failed probe).
    pub fn trips(&self) -> u64 {
        self.trips
    }

    /// Times the breaker closed again after its probes succeeded.
    pub fn recoveries(&self) -> u64 {
        self.recoveries
    }

    /// The cool-down the next trip will use, in milliseconds.
    pub fn next_cooldown_ms(&self) -> u64 {
        self.cooldown_ms
    }

    /// The window slice for `now_ms`, reset if it holds an older slice's counts.
    fn bucket(&mut self, now_ms: u64) -> &mut WindowBucket {
        let index = now_ms / self.bucket_ms;
        let bucket = &mut self.window[(index % WINDOW_BUCKETS as u64) as usize];
        // A slice from the future (the caller's clock stepped back) keeps its counts.
        if bucket.index < index {
            *bucket = WindowBucket {
                index,
                successes: 0,
                failures: 0,
            };
        }
        bucket
    }

    fn ratio_exceeded(&self, now_ms: u64) -> bool {
        if !self.config.ratio_enabled() {
            return false;
        }
        let current = now_ms / self.bucket_ms;
        let (mut total, mut failures) = (0u64, 0u64);
        for bucket in &self.window {
            if bucket.index.saturating_add(WINDOW_BUCKETS as u64) > current {
                total += u64::from(bucket.successes) + u64::from(bucket.failures);
                failures += u64::from(bucket.failures);
            }
        }
        total >= u64::from(self.config.minimum_requests)
            && failures as f64 >= self.config.failure_ratio * total as f64
    }

    fn trip(&mut self, now_ms: u64) {
        if self.state == State::Closed
            && now_ms.saturating_sub(self.closed_since_ms) >= self.config.window_ms
        {
            // Healthy for a whole window since the last recovery: this is a fresh trip.
            self.cooldown_ms = self.config.cooldown_base_ms;
        }
        self.state = State::Open {
            until_ms: now_ms.saturating_add(self.cooldown_ms),
        };
        self.trips += 1;
        // `as` saturates, so a huge product lands on the cap.
        let grown = (self.cooldown_ms as f64 * self.config.cooldown_multiplier) as u64;
        self.cooldown_ms = grown.clamp(self.config.cooldown_base_ms, self.config.cooldown_max_ms);
        self.reset_counts();
    }

    fn close(&mut self, now_ms: u64) {
        self.state = State::Closed;
        self.recoveries += 1;
        self.closed_since_ms = now_ms;
        self.reset_counts();
    }

    fn reset_counts(&mut self) {
        self.consecutive = 0;
        self.window = [WindowBucket::default(); WINDOW_BUCKETS];
        self.probes_admitted = 0;
        self.probes_succeeded = 0;
    }

    fn check_invariants(&self) {
        let config = &self.config;
        debug_assert!(
            (config.cooldown_base_ms..=config.cooldown_max_ms).contains(&self.cooldown_ms),
            "cool-down {} outside [{}, {}]",
            self.cooldown_ms,
            config.cooldown_base_ms,
            config.cooldown_max_ms
        );
        debug_assert!(self.recoveries <= self.trips, "recovered more than tripped");
        match self.state {
            State::Closed => {
                debug_assert!(
                    config.consecutive_failures == 0
                        || self.consecutive < config.consecutive_failures,
                    "closed with {} consecutive failures",
                    self.consecutive
                );
                debug_assert_eq!(self.probes_admitted, 0);
            }
            State::Open { .. } => {
                debug_assert!(self.trips > 0, "open without a trip");
                debug_assert_eq!(self.consecutive, 0);
                debug_assert_eq!(self.probes_admitted, 0);
            }
            State::HalfOpen => {
                debug_assert!(self.trips > 0, "half-open without a trip");
                debug_assert!(
                    self.probes_succeeded <= self.probes_admitted
                        && self.probes_admitted <= config.half_open_probes
                        && self.probes_admitted >= 1,
                    "half-open with {} of {} probes succeeded (max {})",
                    self.probes_succeeded,
                    self.probes_admitted,
                    config.half_open_probes
                );
                debug_assert!(self.probes_succeeded < config.half_open_probes);
            }
        }
        if self.state != State::HalfOpen {
            debug_assert_eq!(self.probes_succeeded, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            failure_ratio: 0.5,
            window_ms: 1_000,
            minimum_requests: 10,
            cooldown_base_ms: 100,
            cooldown_multiplier: 2.0,
            cooldown_max_ms: 350,
            half_open_probes: 2,
        }
    }

    fn fail_n(breaker: &mut Breaker, n: u32, now_ms: u64) {
        for _ in 0..n {
            assert!(breaker.allow(now_ms));
            breaker.on_failure(now_ms);
        }
    }

    /// Opens `breaker` at `now_ms` through the consecutive trigger.
    fn trip(breaker: &mut Breaker, now_ms: u64) {
        fail_n(breaker, 3, now_ms);
        assert!(matches!(breaker.state(), State::Open { .. }));
    }

    #[test]
    fn starts_closed_and_lets_everything_through() {
        let mut breaker = Breaker::new(config());
        assert_eq!(breaker.state(), State::Closed);
        for now_ms in 0..1_000 {
            assert!(breaker.allow(now_ms));
            breaker.on_success(now_ms);
        }
        assert_eq!((breaker.trips(), breaker.recoveries()), (0, 0));
    }

    #[test]
    fn consecutive_failures_trip_and_a_success_resets_the_streak() {
        let mut breaker = Breaker::new(BreakerConfig {
            failure_ratio: 0.0,
            ..config()
        });
        fail_n(&mut breaker, 2, 0);
        breaker.on_success(0);
        fail_n(&mut breaker, 2, 0);
        assert_eq!(breaker.state(), State::Closed);
        fail_n(&mut breaker, 1, 5);
        assert_eq!(breaker.state(), State::Open { until_ms: 105 });
        assert_eq!(breaker.trips(), 1);
        assert!(!breaker.allow(5));
        assert!(!breaker.allow(104));
    }

    #[test]
    fn the_failure_ratio_trips_once_the_window_has_enough_requests() {
        let mut breaker = Breaker::new(BreakerConfig {
            consecutive_failures: 0,
            ..config()
        });
        // Alternate: 50 % failures, never two in a row. Below 10 outcomes nothing trips.
        for i in 0..9 {
            assert!(breaker.allow(i));
            if i % 2 == 0 {
                breaker.on_failure(i);
            } else {
                breaker.on_success(i);
            }
        }
        assert_eq!(breaker.state(), State::Closed, "5 of 9, under the minimum");
        breaker.on_success(9);
        assert_eq!(
            breaker.state(),
            State::Closed,
            "5 of 10 only counts on a failure"
        );
        breaker.on_failure(10);
        assert_eq!(breaker.state(), State::Open { until_ms: 110 });
    }

    #[test]
    fn the_ratio_forgets_outcomes_older_than_the_window() {
        let ratio_only = || {
            let mut breaker = Breaker::new(BreakerConfig {
                consecutive_failures: 0,
                ..config()
            });
            // 10 successes then 9 failures: 9 of 19 is under 50 %.
            for _ in 0..10 {
                breaker.on_success(0);
            }
            for _ in 0..9 {
                breaker.on_failure(0);
            }
            assert_eq!(breaker.state(), State::Closed);
            breaker
        };
        // Within the window the old failures count: 10 of 20 trips.
        let mut recent = ratio_only();
        recent.on_failure(500);
        assert_eq!(recent.state(), State::Open { until_ms: 600 });
        // 1.2 s later they have left the 1 s window: 1 failure in 11 does not.
        let mut later = ratio_only();
        for _ in 0..10 {
            later.on_success(1_200);
        }
        later.on_failure(1_200);
        assert_eq!(later.state(), State::Closed);
    }

    #[test]
    fn ratio_and_streak_are_independent_triggers() {
        // A streak trips with the ratio disabled, and the ratio trips with the streak
        // disabled; with both on, whichever comes first wins.
        let mut both = Breaker::new(config());
        fail_n(&mut both, 3, 0);
        assert_eq!(
            both.trips(),
            1,
            "3 in a row, though under the minimum requests"
        );
        let mut ratio_only = Breaker::new(BreakerConfig {
            consecutive_failures: 0,
            ..config()
        });
        fail_n(&mut ratio_only, 9, 0);
        assert_eq!(ratio_only.state(), State::Closed);
        fail_n(&mut ratio_only, 1, 0);
        assert_eq!(ratio_only.trips(), 1);
        let mut neither = Breaker::new(BreakerConfig {
            consecutive_failures: 0,
            failure_ratio: 1.5,
            ..config()
        });
        fail_n(&mut neither, 1_000, 0);
        assert_eq!(neither.state(), State::Closed);
    }

    #[test]
    fn half_open_admits_a_bounded_number_of_probes() {
        let mut breaker = Breaker::new(config());
        trip(&mut breaker, 0);
        assert!(!breaker.allow(99));
        assert!(breaker.allow(100), "first probe");
        assert_eq!(breaker.state(), State::HalfOpen);
        assert!(breaker.allow(100), "second probe");
        for now_ms in 100..200 {
            assert!(!breaker.allow(now_ms), "no third probe");
        }
    }

    #[test]
    fn successful_probes_close_the_breaker() {
        let mut breaker = Breaker::new(config());
        trip(&mut breaker, 0);
        assert!(breaker.allow(100));
        breaker.on_success(110);
        assert_eq!(breaker.state(), State::HalfOpen, "one of two probes");
        assert!(breaker.allow(120));
        breaker.on_success(130);
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!((breaker.trips(), breaker.recoveries()), (1, 1));
        // Closed again: the streak starts from zero.
        fail_n(&mut breaker, 2, 140);
        assert_eq!(breaker.state(), State::Closed);
    }

    #[test]
    fn successes_beyond_the_probes_admitted_do_not_close() {
        let mut breaker = Breaker::new(config());
        trip(&mut breaker, 0);
        assert!(breaker.allow(100));
        // Late answers from before the trip: ignored while open, capped while half-open.
        breaker.on_success(100);
        breaker.on_success(100);
        breaker.on_success(100);
        assert_eq!(breaker.state(), State::HalfOpen);
        assert!(breaker.allow(101));
        breaker.on_success(102);
        assert_eq!(breaker.state(), State::Closed);
    }

    #[test]
    fn outcomes_while_open_are_ignored() {
        let mut breaker = Breaker::new(config());
        trip(&mut breaker, 0);
        breaker.on_failure(10);
        breaker.on_success(20);
        assert_eq!(breaker.state(), State::Open { until_ms: 100 });
        assert_eq!(breaker.trips(), 1);
    }

    #[test]
    fn a_failed_probe_reopens_with_a_growing_cooldown_up_to_the_max() {
        let mut breaker = Breaker::new(config());
        trip(&mut breaker, 0);
        assert_eq!(breaker.state(), State::Open { until_ms: 100 });
        let mut now_ms = 100;
        for expected_ms in [200, 350, 350] {
            assert!(breaker.allow(now_ms));
            breaker.on_failure(now_ms);
            assert_eq!(
                breaker.state(),
                State::Open {
                    until_ms: now_ms + expected_ms
                }
            );
            now_ms += expected_ms;
        }
        assert_eq!(breaker.trips(), 4);
        assert_eq!(breaker.recoveries(), 0);
    }

    #[test]
    fn the_cooldown_keeps_growing_after_a_short_recovery_and_resets_after_a_long_one() {
        let mut breaker = Breaker::new(config());
        trip(&mut breaker, 0);
        let recover = |breaker: &mut Breaker, now_ms: u64| {
            assert!(breaker.allow(now_ms));
            assert!(breaker.allow(now_ms));
            breaker.on_success(now_ms);
            breaker.on_success(now_ms);
            assert_eq!(breaker.state(), State::Closed);
        };
        recover(&mut breaker, 100);
        // Trips again 50 ms after recovering: flapping, the cool-down grows.
        trip(&mut breaker, 150);
        assert_eq!(breaker.state(), State::Open { until_ms: 350 });
        recover(&mut breaker, 350);
        // Healthy for a whole window (1 s): the next trip starts from the base again.
        trip(&mut breaker, 1_350);
        assert_eq!(breaker.state(), State::Open { until_ms: 1_450 });
        assert_eq!((breaker.trips(), breaker.recoveries()), (3, 2));
    }

    #[test]
    fn any_sequence_of_calls_keeps_the_invariants() {
        // A deterministic pseudo-random walk through every call, with the clock jumping
        // forwards and backwards; the debug assertions check each step.
        let mut breaker = Breaker::new(config());
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut now_ms = 1_000u64;
        for _ in 0..100_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            now_ms = match state % 16 {
                0 => now_ms.saturating_sub(state >> 60),
                1 => now_ms + 400,
                _ => now_ms + (state >> 62),
            };
            match (state >> 8) % 4 {
                0 | 1 => {
                    breaker.allow(now_ms);
                }
                2 => breaker.on_success(now_ms),
                _ => breaker.on_failure(now_ms),
            }
        }
        assert!(breaker.trips() > 0 && breaker.recoveries() > 0);
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let mut breaker = Breaker::new(BreakerConfig {
            window_ms: 10,
            ..config()
        });
        for now_ms in [u64::MAX, 0, u64::MAX - 1, u64::MAX] {
            breaker.on_success(now_ms);
            breaker.on_failure(now_ms);
            breaker.allow(now_ms);
        }
        fail_n(&mut breaker, 3, u64::MAX);
        assert_eq!(breaker.state(), State::Open { until_ms: u64::MAX });
        assert!(breaker.allow(u64::MAX));
    }

    #[test]
    fn new_settings_keep_an_open_breaker_open_and_restart_probing() {
        let mut breaker = Breaker::new(config());
        assert!(breaker.runs_on(&config()));
        let longer = BreakerConfig {
            cooldown_base_ms: 1_000,
            cooldown_max_ms: 5_000,
            ..config()
        };
        assert!(!breaker.runs_on(&longer));
        // Closed: closed under the new settings, counts kept.
        let closed = breaker.carried_to(longer, 0);
        assert_eq!(closed.state(), State::Closed);
        assert!(closed.runs_on(&longer));
        // Open: open until the same instant, trips kept, next cool-down within new bounds.
        trip(&mut breaker, 0);
        let open = breaker.carried_to(longer, 50);
        assert_eq!(open.state(), State::Open { until_ms: 100 });
        assert_eq!(open.trips(), 1);
        assert_eq!(open.next_cooldown_ms(), 1_000);
        // Half-open with its probes in flight: open until now, so the next request probes.
        assert!(breaker.allow(100));
        assert!(breaker.allow(100));
        assert!(!breaker.allow(100), "both probes are out");
        let mut carried = breaker.carried_to(longer, 120);
        assert_eq!(carried.state(), State::Open { until_ms: 120 });
        assert!(carried.allow(120));
        assert_eq!(carried.state(), State::HalfOpen);
    }

    #[test]
    fn validation_names_the_bad_field_and_new_clamps() {
        assert_eq!(BreakerConfig::default().validate(), Ok(()));
        let bad = BreakerConfig {
            cooldown_max_ms: 10,
            ..config()
        };
        assert!(bad.validate().is_err_and(|e| e.contains("cooldown_max_ms")));
        let zeroes = BreakerConfig {
            consecutive_failures: 1,
            failure_ratio: f64::NAN,
            window_ms: 0,
            minimum_requests: 0,
            cooldown_base_ms: 0,
            cooldown_multiplier: f64::NAN,
            cooldown_max_ms: 0,
            half_open_probes: 0,
        };
        assert!(zeroes.validate().is_err());
        let mut breaker = Breaker::new(zeroes);
        breaker.on_failure(0);
        assert_eq!(breaker.state(), State::Open { until_ms: 1 });
        assert!(breaker.allow(1));
        breaker.on_success(1);
        assert_eq!(breaker.state(), State::Closed);
    }
}

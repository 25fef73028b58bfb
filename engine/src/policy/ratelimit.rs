//! Rate limiting: per-core token buckets that sync periodically into one accurate global
//! limit.
//!
//! Owns three pieces, all pure (no I/O, no async, no clock read: time comes in as `now_ms`,
//! milliseconds on one monotonic base shared by the workers and the control thread):
//!
//! - [`LocalLimiter`], one per worker, `&mut self`, not `Sync`. [`LocalLimiter::take`] is the
//!   per-request check: a hash lookup, an LRU relink and a token-bucket refill on this
//!   worker's *share* of the key's budget. It counts demand (admitted + refused) and
//!   admissions per key since the last sync.
//! - [`GlobalLimiter`], owned by the control thread. Every `sync_interval_ms` it merges one
//!   [`UsageReport`] per worker ([`LocalLimiter::drain_usage`], [`GlobalLimiter::merge`]),
//!   keeps the one true bucket per key, and [`GlobalLimiter::allocate`]s the next shares,
//!   which each worker installs with [`LocalLimiter::apply`].
//! - [`KeyHasher`], which turns the key bytes (client IP, API-key consumer, JWT claim, header
//!   value) into a [`Key`].
//!
//! **Accounting.** The global bucket is the only ledger: each round its level gains
//! `rate × elapsed` and loses exactly what the workers report as admitted, capped at the
//! burst, and it may go negative (debt) when workers admitted more than it held (a share
//! installed late, a provisional allowance). The level is then handed out in full as
//! immediate tokens, and the rate as drip rates, in proportion to each worker's recent
//! demand (EWMA, α = [`DEMAND_EWMA_ALPHA`]) plus an even floor of
//! [`SHARE_FLOOR_FRACTION`]. So per interval the tokens handed out are exactly the global
//! refill plus the unused burst; while in debt the drip is cut until the debt is repaid.
//! Shares *replace* a worker's local bucket, so nothing is counted twice, and whatever a
//! worker does not spend stays in the global level for the next round. Because workers drip
//! their rate share between syncs, a late or missed sync degrades to the last known split of
//! the configured rate instead of starving or overshooting. A key whose bucket is full and
//! quiet gets its share once more and is then not resent until something changes.
//!
//! **Accuracy** (unit tests, fake clock, one key offered at 10× its limit for 10 s, sync
//! every 100 ms, rate 1 000/s, burst 100, so rate × 10 s + burst = 10 100): 2 workers split
//! 90/10 admit 10 098 (−0.02 %); 3 workers split 70/20/10 admit 10 097 (−0.03 %); the same
//! with shares landing 20 ms after each drain, 10 098 and 10 097; demand moving 90/10 →
//! 10/90 → 50/50, 10 098; 50/s with burst 10 split 90/10, 509 of 510 (−0.2 %).
//!
//! **New keys.** A key a worker has no share for yet gets the provisional allowance
//! burst / workers (at least one token) refilling at rate / workers: all workers together
//! can never exceed the rule before the first sync, and the first requests are not refused.
//!
//! **Bounds.** `keys_max` keys per worker and globally. Keys without demand for
//! `idle_intervals` sync rounds are evicted at the next drain / allocate. When a table is
//! full, the least recently used key is evicted, unless it was used in the current interval
//! (evicting it would lose usage not yet reported): then the new key is *not* tracked. A
//! worker serves untracked keys from one shared overflow bucket holding the provisional
//! allowance, so a flood of fresh keys can neither evict active keys nor pass unlimited; the
//! control side leaves untracked keys on their last share (whose rates sum to the rule).
//!
//! **Keys.** A [`Key`] is a 64-bit keyed SipHash-1-3 of the key bytes (xor a mix of the rule's
//! zone), with one 128-bit secret per process shared by all workers and the control thread.
//! The key bytes are not stored: a client who does not know the secret cannot aim a
//! collision at another client's bucket, and the chance of an accidental collision among
//! `n` tracked keys is about n² / 2⁶⁵ (3 × 10⁻¹⁰ for 10⁵ keys). Its effect would be two clients
//! sharing one bucket — stricter, never looser. This saves a copy of every key and an
//! allocation per new key.
//!
//! **Never**: locks, allocates per request (the tables are sized for `keys_max` at
//! construction; a new key reuses a slot), reads a clock, or panics on traffic. The one
//! impure function is [`KeyHasher::random`], called once at start-up.
//!
//! Measured (`cargo bench --bench policies`, shared 2-core VM at load 3–5, so ranges over
//! three runs): `take` on an existing key among 10 000, 27–34 ns/op; [`KeyHasher::key`] of
//! an IPv4 address, 15–23 ns; a full sync round with 10 000 active keys on 2 workers
//! (drain ×2, merge ×2, allocate, apply ×2), 1.7–2.6 ms, i.e. 2–3 % of the control thread
//! at the default 100 ms interval, mostly cache misses in `merge` and `apply` lookups.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// How often workers report usage and receive shares, in milliseconds (default).
pub const SYNC_INTERVAL_MS_DEFAULT: u64 = 100;
/// Sync rounds without demand after which a key is forgotten (default): 5 s at 100 ms.
pub const IDLE_INTERVALS_DEFAULT: u32 = 50;
/// Keys tracked per worker and by the control side (default).
pub const KEYS_MAX_DEFAULT: usize = 100_000;
/// Weight of the latest interval in a worker's smoothed demand for a key.
pub const DEMAND_EWMA_ALPHA: f64 = 0.5;
/// Part of each key's budget split evenly among the workers that use it, so a worker whose
/// demand is just starting is not starved while its average catches up.
pub const SHARE_FLOOR_FRACTION: f64 = 0.05;

/// End of an LRU list, and "no slot".
const NIL: u32 = u32::MAX;

/// A rate-limit key: the keyed hash of the key bytes and the rule's zone (see the module
/// doc for why 64 bits are enough).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key(u64);

impl Key {
    /// A key from a hash computed elsewhere (tests, benches, a future Redis sync).
    pub const fn from_raw(raw: u64) -> Key {
        Key(raw)
    }

    /// The 64-bit value.
    pub const fn raw(self) -> u64 {
        self.0
    }
}

/// Keyed SipHash-1-3 of key bytes. Create one per process from a random 128-bit secret and
/// give copies to every worker and to the control thread: all must agree on the keys.
#[derive(Clone, Copy, Debug)]
pub struct KeyHasher {
    k0: u64,
    k1: u64,
}

impl KeyHasher {
    /// A hasher with the secret `(k0, k1)`.
    pub const fn new(k0: u64, k1: u64) -> KeyHasher {
        KeyHasher { k0, k1 }
    }

    /// A hasher with a secret from the OS's random source (through std's `RandomState`,
    /// which draws its SipHash keys from it). Call once at start-up on the control thread,
    /// never on a worker: it is the one function here that is not pure.
    pub fn random() -> KeyHasher {
        use std::hash::BuildHasher;
        let state = std::collections::hash_map::RandomState::new();
        KeyHasher::new(state.hash_one(0x6b30_u64), state.hash_one(0x6b31_u64))
    }

    /// The key for `bytes` under the rule zone `zone` (a route or limit-zone id, so the same
    /// client IP has separate buckets under separate rules).
    pub fn key(&self, zone: u32, bytes: &[u8]) -> Key {
        Key(siphash::<1, 3>(self.k0, self.k1, bytes) ^ fmix64(u64::from(zone) + 1))
    }
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// SipHash-C-D (Aumasson & Bernstein 2012) of `bytes`, 64-bit output.
fn siphash<const C: usize, const D: usize>(k0: u64, k1: u64, bytes: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let compress = |v: &mut [u64; 4], m: u64| {
        v[3] ^= m;
        for _ in 0..C {
            sip_round(v);
        }
        v[0] ^= m;
    };
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut le = [0; 8];
        le.copy_from_slice(word);
        compress(&mut v, u64::from_le_bytes(le));
    }
    // The last word: the remaining bytes little-endian, the length's low byte on top.
    let tail = words
        .remainder()
        .iter()
        .rev()
        .fold(0, |word, &byte| (word << 8) | u64::from(byte));
    compress(&mut v, tail | ((bytes.len() as u64) << 56));
    v[2] ^= 0xff;
    for _ in 0..D {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// murmur3's 64-bit finaliser.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// A route's limit: `rate_per_s` tokens per second, at most `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    rate_per_s: f64,
    burst: u32,
}

impl Rule {
    /// `None` unless `rate_per_s` is finite and positive and `burst` is at least 1 (the config
    /// rejects such values at load time; this keeps the buckets' arithmetic total).
    pub fn new(rate_per_s: f64, burst: u32) -> Option<Rule> {
        (rate_per_s.is_finite() && rate_per_s > 0.0 && burst >= 1)
            .then_some(Rule { rate_per_s, burst })
    }

    /// Tokens added per second.
    pub fn rate_per_s(&self) -> f64 {
        self.rate_per_s
    }

    /// Bucket capacity in tokens.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

/// Sizes and cadence shared by [`LocalLimiter`] and [`GlobalLimiter`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Number of workers (at least 1).
    pub workers: usize,
    /// Keys tracked per worker and globally (at least 1; default [`KEYS_MAX_DEFAULT`]).
    pub keys_max: usize,
    /// Sync period in milliseconds (default [`SYNC_INTERVAL_MS_DEFAULT`]).
    pub sync_interval_ms: u64,
    /// Sync rounds without demand before a key is evicted (default
    /// [`IDLE_INTERVALS_DEFAULT`]).
    pub idle_intervals: u32,
}

impl LimiterConfig {
    /// Defaults for `workers` workers.
    pub fn new(workers: usize) -> LimiterConfig {
        LimiterConfig {
            workers,
            keys_max: KEYS_MAX_DEFAULT,
            sync_interval_ms: SYNC_INTERVAL_MS_DEFAULT,
            idle_intervals: IDLE_INTERVALS_DEFAULT,
        }
    }

    /// Raises every field to its minimum so the limiters' arithmetic is total.
    fn sanitized(self) -> LimiterConfig {
        LimiterConfig {
            workers: self.workers.max(1),
            keys_max: self.keys_max.clamp(1, NIL as usize - 1),
            sync_interval_ms: self.sync_interval_ms.max(1),
            idle_intervals: self.idle_intervals.max(1),
        }
    }
}

/// The outcome of [`LocalLimiter::take`], with what the `RateLimit-*` and `Retry-After`
/// headers need. The figures are this worker's view: `remaining` counts only this worker's
/// share, which understates the global remainder when a client's requests spread over
/// several workers (never the other way round once shares have converged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// `RateLimit-Limit`: the rule's burst.
    pub limit: u32,
    /// `RateLimit-Remaining`: whole tokens left in this worker's share (never negative).
    pub remaining: u32,
    /// Absolute time (same base as `now_ms`, always later than it) when a token will be
    /// available (refused) or the share will be full again (allowed).
    pub reset_ms: u64,
    /// `Retry-After` in whole seconds: 0 when allowed, at least 1 when refused.
    pub retry_after_s: u32,
}

impl Decision {
    /// `RateLimit-Reset`: whole seconds from `now_ms` to `reset_ms`, rounded up.
    pub fn reset_after_s(&self, now_ms: u64) -> u64 {
        self.reset_ms.saturating_sub(now_ms).div_ceil(1000)
    }
}

/// One key's consumption on one worker since the previous drain.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    /// The key.
    pub key: Key,
    /// The rule the requests carried (the control side learns rate and burst from it, so a
    /// reload needs no separate message).
    pub rule: Rule,
    /// Requests seen: admitted plus refused.
    pub demand: u32,
    /// Requests admitted.
    pub admitted: u32,
}

/// What a worker sends to the control side every sync interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UsageReport {
    /// The worker index.
    pub worker: usize,
    /// One entry per key used since the previous drain.
    pub entries: Vec<Usage>,
}

/// One key's budget for one worker until the next share.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Share {
    /// The key.
    pub key: Key,
    /// Tokens available at once (replaces the worker's current level).
    pub tokens: f64,
    /// This worker's part of the refill rate, tokens per second.
    pub rate_per_s: f64,
    /// This worker's cap (its part of the burst, at least one token).
    pub burst: f64,
}

/// The shares for one worker, from [`GlobalLimiter::allocate`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShareUpdate {
    /// The worker index.
    pub worker: usize,
    /// Shares of the keys this worker uses.
    pub entries: Vec<Share>,
}

/// Counters of a [`LocalLimiter`], for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalStats {
    /// Keys tracked now.
    pub keys: usize,
    /// Keys evicted after `idle_intervals` rounds without demand.
    pub evicted_idle: u64,
    /// Keys evicted to make room for a new one.
    pub evicted_lru: u64,
    /// Requests served from the overflow bucket because the table was full of active keys.
    pub overflowed: u64,
}

/// Counters of a [`GlobalLimiter`], for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalStats {
    /// Keys tracked now.
    pub keys: usize,
    /// Keys evicted after `idle_intervals` rounds without demand.
    pub evicted_idle: u64,
    /// Keys evicted to make room for a new one.
    pub evicted_lru: u64,
    /// Usage entries dropped because the table was full of keys active this round.
    pub untracked: u64,
}

/// Passes the key's 64 bits through: keys are already uniform keyed hashes.
#[derive(Default, Clone, Copy)]
struct KeyIdHasher(u64);

impl Hasher for KeyIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed; keep a total fallback rather than a panic.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Slot<T> {
    key: u64,
    prev: u32,
    next: u32,
    value: T,
}

/// A bounded map from key to `T` in least-recently-used order, sized once: slots live in a
/// preallocated slab linked by index, and the index map is reserved at twice the capacity so
/// hashbrown always rehashes in place (it does so while at most half full) rather than
/// growing. Insert, lookup, touch and remove never allocate. Reserving is cheap until used:
/// the slab's pages are only touched as slots fill (about 80 bytes per local key), the index
/// costs one control byte per bucket up front (256 KiB for the default 100 000 keys).
struct LruTable<T> {
    index: HashMap<u64, u32, BuildHasherDefault<KeyIdHasher>>,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    capacity: usize,
}

impl<T> LruTable<T> {
    fn new(capacity: usize) -> LruTable<T> {
        LruTable {
            index: HashMap::with_capacity_and_hasher(capacity * 2, Default::default()),
            slots: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            head: NIL,
            tail: NIL,
            capacity,
        }
    }

    fn len(&self) -> usize {
        self.index.len()
    }

    fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    fn get(&self, key: u64) -> Option<u32> {
        self.index.get(&key).copied()
    }

    fn key(&self, slot: u32) -> u64 {
        self.slots[slot as usize].key
    }

    fn value(&self, slot: u32) -> &T {
        &self.slots[slot as usize].value
    }

    fn value_mut(&mut self, slot: u32) -> &mut T {
        &mut self.slots[slot as usize].value
    }

    fn next(&self, slot: u32) -> u32 {
        self.slots[slot as usize].next
    }

    fn unlink(&mut self, slot: u32) {
        let (prev, next) = {
            let s = &self.slots[slot as usize];
            (s.prev, s.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.slots[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slots[next as usize].prev = prev;
        }
    }

    fn push_front(&mut self, slot: u32) {
        let old = self.head;
        {
            let s = &mut self.slots[slot as usize];
            s.prev = NIL;
            s.next = old;
        }
        if old == NIL {
            self.tail = slot;
        } else {
            self.slots[old as usize].prev = slot;
        }
        self.head = slot;
    }

    /// Marks `slot` most recently used.
    fn touch(&mut self, slot: u32) {
        if self.head != slot {
            self.unlink(slot);
            self.push_front(slot);
        }
    }

    /// Inserts a key known to be absent, as most recently used. `None` when full.
    fn insert(&mut self, key: u64, value: T) -> Option<u32> {
        if self.is_full() {
            return None;
        }
        let fresh = Slot {
            key,
            prev: NIL,
            next: NIL,
            value,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = fresh;
                slot
            }
            None => {
                let slot = self.slots.len() as u32;
                self.slots.push(fresh);
                slot
            }
        };
        self.index.insert(key, slot);
        self.push_front(slot);
        debug_assert!(self.len() <= self.capacity);
        Some(slot)
    }

    fn remove(&mut self, slot: u32) {
        self.unlink(slot);
        let key = self.slots[slot as usize].key;
        self.index.remove(&key);
        self.free.push(slot);
    }

    #[cfg(test)]
    fn capacities(&self) -> (usize, usize, usize) {
        (
            self.index.capacity(),
            self.slots.capacity(),
            self.free.capacity(),
        )
    }
}

/// A worker's bucket for one key: its share of the global budget.
#[derive(Clone, Copy, Debug)]
struct LocalBucket {
    rule: Rule,
    /// Tokens available now (as of `refill_ms`), in `[0, cap]`.
    level: f64,
    rate_per_ms: f64,
    cap: f64,
    refill_ms: u64,
    demand: u32,
    admitted: u32,
    /// The drain epoch of the last take; equal to the current epoch iff the key is in the
    /// dirty list.
    last_epoch: u64,
}

impl LocalBucket {
    /// The provisional allowance: an even split of the rule across workers.
    fn provisional(rule: Rule, workers: usize, now_ms: u64) -> LocalBucket {
        let cap = (f64::from(rule.burst) / workers as f64).max(1.0);
        LocalBucket {
            rule,
            level: cap,
            rate_per_ms: rule.rate_per_s / 1000.0 / workers as f64,
            cap,
            refill_ms: now_ms,
            demand: 0,
            admitted: 0,
            last_epoch: u64::MAX,
        }
    }

    fn take(&mut self, rule: Rule, now_ms: u64, workers: usize) -> Decision {
        self.rule = rule;
        let elapsed_ms = now_ms.saturating_sub(self.refill_ms) as f64;
        self.level = (self.level + self.rate_per_ms * elapsed_ms).min(self.cap);
        self.refill_ms = self.refill_ms.max(now_ms);
        self.demand = self.demand.saturating_add(1);
        let allowed = self.level >= 1.0;
        if allowed {
            self.level -= 1.0;
            self.admitted = self.admitted.saturating_add(1);
        }
        debug_assert!(
            self.level >= 0.0 && self.level <= self.cap,
            "bucket level {} outside [0, {}]",
            self.level,
            self.cap
        );
        self.decision(allowed, now_ms, workers)
    }

    fn decision(&self, allowed: bool, now_ms: u64, workers: usize) -> Decision {
        // While the share's drip is cut (global debt) the provisional rate is the honest
        // guess of when this worker will next have a token.
        let rate_per_ms = if self.rate_per_ms > 0.0 {
            self.rate_per_ms
        } else {
            self.rule.rate_per_s / 1000.0 / workers as f64
        };
        let missing = if allowed {
            self.cap - self.level
        } else {
            1.0 - self.level
        };
        let wait_ms = ceil_u64(missing / rate_per_ms).max(1);
        let retry_after_s = if allowed {
            0
        } else {
            wait_ms.div_ceil(1000).clamp(1, u64::from(u32::MAX)) as u32
        };
        Decision {
            allowed,
            limit: self.rule.burst,
            // Truncation is `floor` for the non-negative level (and `f64::floor` is a libm
            // call on baseline x86-64).
            remaining: self.level as u32,
            reset_ms: now_ms.saturating_add(wait_ms),
            retry_after_s,
        }
    }

    /// Installs a share from the control side, replacing whatever was left.
    fn apply(&mut self, share: &Share, now_ms: u64) {
        // `max` and `min` map NaN to their other operand, so a corrupt share cannot poison
        // the bucket; no share may exceed the rule's burst.
        self.cap = share.burst.min(f64::from(self.rule.burst)).max(1.0);
        self.level = share.tokens.max(0.0).min(self.cap);
        self.rate_per_ms = share.rate_per_s.max(0.0) / 1000.0;
        self.refill_ms = now_ms;
        debug_assert!(self.level >= 0.0 && self.level <= self.cap);
    }

    /// Re-provisions the overflow bucket for `rule` without refilling it.
    fn reprovision(&mut self, rule: Rule, workers: usize) {
        if self.rule != rule {
            let fresh = LocalBucket::provisional(rule, workers, self.refill_ms);
            self.rule = rule;
            self.cap = fresh.cap;
            self.rate_per_ms = fresh.rate_per_ms;
            self.level = self.level.min(self.cap);
        }
    }
}

/// `x` rounded up, saturating (`as` saturates and maps NaN to 0, so a tiny rate cannot wrap
/// a wait). Avoids `f64::ceil`, a libm call on baseline x86-64.
fn ceil_u64(x: f64) -> u64 {
    let truncated = x as u64;
    if (truncated as f64) < x {
        truncated.saturating_add(1)
    } else {
        truncated
    }
}

/// One worker's rate limiter: per-key shares of the global budget (see the module doc).
pub struct LocalLimiter {
    worker: usize,
    workers: usize,
    idle_intervals: u32,
    table: LruTable<LocalBucket>,
    /// Slots taken since the last drain, each once.
    dirty: Vec<u32>,
    /// Drain epoch: incremented by every [`LocalLimiter::drain_usage`].
    epoch: u64,
    /// Shared by keys the full table could not track; created on first use.
    overflow: Option<LocalBucket>,
    stats: LocalStats,
}

impl LocalLimiter {
    /// The limiter of worker `worker` (0-based, below `config.workers`).
    pub fn new(worker: usize, config: LimiterConfig) -> LocalLimiter {
        let config = config.sanitized();
        debug_assert!(worker < config.workers);
        LocalLimiter {
            worker,
            workers: config.workers,
            idle_intervals: config.idle_intervals,
            table: LruTable::new(config.keys_max),
            dirty: Vec::with_capacity(config.keys_max),
            epoch: 0,
            overflow: None,
            stats: LocalStats::default(),
        }
    }

    /// This limiter's worker index.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Spends one token of `key` under `rule` at `now_ms`. Never allocates, never locks.
    pub fn take(&mut self, rule: Rule, key: Key, now_ms: u64) -> Decision {
        let slot = match self.table.get(key.0) {
            Some(slot) => {
                self.table.touch(slot);
                slot
            }
            None => match self.track(rule, key, now_ms) {
                Some(slot) => slot,
                None => {
                    self.stats.overflowed += 1;
                    let workers = self.workers;
                    let overflow = self
                        .overflow
                        .get_or_insert_with(|| LocalBucket::provisional(rule, workers, now_ms));
                    overflow.reprovision(rule, workers);
                    return overflow.take(rule, now_ms, workers);
                }
            },
        };
        let epoch = self.epoch;
        let bucket = self.table.value_mut(slot);
        if bucket.last_epoch != epoch {
            bucket.last_epoch = epoch;
            // Within capacity: at most one entry per tracked slot.
            self.dirty.push(slot);
        }
        bucket.take(rule, now_ms, self.workers)
    }

    /// Starts tracking `key` with the provisional allowance, evicting the least recently
    /// used key if it is idle this interval. `None` when every tracked key is active.
    fn track(&mut self, rule: Rule, key: Key, now_ms: u64) -> Option<u32> {
        if self.table.is_full() {
            let lru = self.table.tail;
            if lru == NIL || self.table.value(lru).last_epoch == self.epoch {
                return None;
            }
            self.table.remove(lru);
            self.stats.evicted_lru += 1;
        }
        self.table
            .insert(key.0, LocalBucket::provisional(rule, self.workers, now_ms))
    }

    /// Hands over the usage since the previous drain and evicts keys idle for
    /// `idle_intervals` rounds. Call once per sync interval (allocates the report: once per
    /// interval, not per request).
    pub fn drain_usage(&mut self) -> UsageReport {
        let mut entries = Vec::with_capacity(self.dirty.len());
        for &slot in &self.dirty {
            let key = Key(self.table.key(slot));
            let bucket = self.table.value_mut(slot);
            entries.push(Usage {
                key,
                rule: bucket.rule,
                demand: bucket.demand,
                admitted: bucket.admitted,
            });
            bucket.demand = 0;
            bucket.admitted = 0;
        }
        self.dirty.clear();
        // The LRU tail is the key taken longest ago: idle keys sit at the end.
        let closing = self.epoch;
        while self.table.tail != NIL {
            let lru = self.table.tail;
            let idle = closing.saturating_sub(self.table.value(lru).last_epoch);
            if idle < u64::from(self.idle_intervals) {
                break;
            }
            self.table.remove(lru);
            self.stats.evicted_idle += 1;
        }
        self.epoch += 1;
        UsageReport {
            worker: self.worker,
            entries,
        }
    }

    /// Installs this worker's shares; `now_ms` starts their refill. Shares of keys this
    /// worker no longer tracks are ignored (the key comes back provisional if seen again).
    pub fn apply(&mut self, update: &ShareUpdate, now_ms: u64) {
        debug_assert_eq!(update.worker, self.worker, "share for another worker");
        if update.worker != self.worker {
            return;
        }
        for share in &update.entries {
            if let Some(slot) = self.table.get(share.key.0) {
                self.table.value_mut(slot).apply(share, now_ms);
            }
        }
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> LocalStats {
        LocalStats {
            keys: self.table.len(),
            ..self.stats
        }
    }
}

/// One worker's demand for one key, on the control side.
#[derive(Clone, Copy, Debug, Default)]
struct WorkerDemand {
    /// Demand reported since the last allocate.
    pending: u64,
    /// Smoothed demand per interval.
    ewma: f64,
    /// The last round this worker reported the key, if any.
    last_round: Option<u64>,
}

/// The global bucket of one key.
#[derive(Clone, Copy, Debug)]
struct GlobalBucket {
    rate_per_s: f64,
    burst: f64,
    /// Tokens not yet handed out or spent; negative while workers owe tokens.
    level: f64,
    /// When `level` was last refilled; `None` until the first allocate after the key
    /// appeared.
    refill_ms: Option<u64>,
    /// Admitted since the last allocate, all workers.
    admitted: u64,
    /// The last round with demand from any worker.
    last_round: u64,
    /// Non-zero when the last share was handed out with the bucket full and no demand: the
    /// number of active workers then. While that holds, the next shares would equal the
    /// last ones (smoothed demands all decay alike), so they are not sent again.
    settled_active: usize,
}

/// The control thread's ledger of every key's global bucket (see the module doc).
pub struct GlobalLimiter {
    workers: usize,
    sync_interval_ms: u64,
    idle_intervals: u32,
    table: LruTable<GlobalBucket>,
    /// `workers` entries per slot, grown as slots are first used.
    demand: Vec<WorkerDemand>,
    /// The round being collected: incremented by every allocate.
    round: u64,
    last_allocate_ms: Option<u64>,
    /// Per worker, the number of shares handed out last round (to size the next vectors).
    last_share_counts: Vec<usize>,
    stats: GlobalStats,
}

impl GlobalLimiter {
    /// The ledger for `config.workers` workers.
    pub fn new(config: LimiterConfig) -> GlobalLimiter {
        let config = config.sanitized();
        GlobalLimiter {
            workers: config.workers,
            sync_interval_ms: config.sync_interval_ms,
            idle_intervals: config.idle_intervals,
            table: LruTable::new(config.keys_max),
            demand: Vec::new(),
            round: 0,
            last_allocate_ms: None,
            last_share_counts: vec![0; config.workers],
            stats: GlobalStats::default(),
        }
    }

    /// Adds one worker's usage to the round being collected.
    pub fn merge(&mut self, report: &UsageReport) {
        let worker = report.worker;
        debug_assert!(worker < self.workers, "report from unknown worker {worker}");
        if worker >= self.workers {
            return;
        }
        for usage in &report.entries {
            if usage.demand == 0 && usage.admitted == 0 {
                continue;
            }
            let Some(slot) = self.slot_for(usage) else {
                self.stats.untracked += 1;
                continue;
            };
            let bucket = self.table.value_mut(slot);
            bucket.rate_per_s = usage.rule.rate_per_s;
            bucket.burst = f64::from(usage.rule.burst);
            bucket.admitted += u64::from(usage.admitted);
            bucket.last_round = self.round;
            let demand = &mut self.demand[slot as usize * self.workers + worker];
            demand.pending += u64::from(usage.demand);
            demand.last_round = Some(self.round);
        }
    }

    fn slot_for(&mut self, usage: &Usage) -> Option<u32> {
        if let Some(slot) = self.table.get(usage.key.0) {
            self.table.touch(slot);
            return Some(slot);
        }
        if self.table.is_full() {
            let lru = self.table.tail;
            if lru == NIL || self.table.value(lru).last_round == self.round {
                return None;
            }
            self.table.remove(lru);
            self.stats.evicted_lru += 1;
        }
        let burst = f64::from(usage.rule.burst);
        let slot = self.table.insert(
            usage.key.0,
            GlobalBucket {
                rate_per_s: usage.rule.rate_per_s,
                burst,
                // The workers started this key on provisional allowances summing to the
                // burst; the ledger starts there too.
                level: burst,
                refill_ms: None,
                admitted: 0,
                last_round: self.round,
                settled_active: 0,
            },
        )?;
        let first = slot as usize * self.workers;
        if self.demand.len() < first + self.workers {
            self.demand
                .resize(first + self.workers, WorkerDemand::default());
        }
        self.demand[first..first + self.workers].fill(WorkerDemand::default());
        Some(slot)
    }

    /// Closes the round: settles every key's ledger, evicts idle keys and returns the next
    /// shares, one [`ShareUpdate`] per worker (index = worker).
    pub fn allocate(&mut self, now_ms: u64) -> Vec<ShareUpdate> {
        let workers = self.workers;
        let mut updates: Vec<ShareUpdate> = (0..workers)
            .map(|worker| ShareUpdate {
                worker,
                entries: Vec::with_capacity(self.last_share_counts[worker]),
            })
            .collect();
        let interval_s = self.sync_interval_ms as f64 / 1000.0;
        // A key first reported this round appeared after the previous allocate; its
        // provisional allowances have been refilling since then.
        let new_key_origin_ms = self
            .last_allocate_ms
            .unwrap_or_else(|| now_ms.saturating_sub(self.sync_interval_ms));
        let mut slot = self.table.head;
        while slot != NIL {
            let next = self.table.next(slot);
            let round = self.round;
            let key = Key(self.table.key(slot));
            let bucket = self.table.value_mut(slot);
            let origin_ms = bucket.refill_ms.unwrap_or(new_key_origin_ms);
            let elapsed_s = now_ms.saturating_sub(origin_ms) as f64 / 1000.0;
            // Capping after subtracting: tokens spent in this interval were spent from a
            // bucket that was being refilled meanwhile.
            bucket.level = (bucket.level + bucket.rate_per_s * elapsed_s - bucket.admitted as f64)
                .min(bucket.burst);
            bucket.refill_ms = Some(now_ms.max(origin_ms));
            bucket.admitted = 0;
            if round - bucket.last_round >= u64::from(self.idle_intervals) {
                self.table.remove(slot);
                self.stats.evicted_idle += 1;
                slot = next;
                continue;
            }
            let demands = &mut self.demand[slot as usize * workers..(slot as usize + 1) * workers];
            let mut active = 0usize;
            let mut ewma_sum = 0.0;
            let mut quiet = true;
            for demand in demands.iter_mut() {
                quiet &= demand.pending == 0;
                demand.ewma = DEMAND_EWMA_ALPHA * demand.pending as f64
                    + (1.0 - DEMAND_EWMA_ALPHA) * demand.ewma;
                demand.pending = 0;
                if is_active(demand, round, self.idle_intervals) {
                    active += 1;
                    ewma_sum += demand.ewma;
                }
            }
            debug_assert!(active > 0, "a key with recent demand has an active worker");
            let settled = quiet && bucket.level >= bucket.burst;
            if settled && bucket.settled_active == active {
                slot = next;
                continue;
            }
            bucket.settled_active = if settled { active } else { 0 };
            let bucket = *bucket;
            let tokens = bucket.level.max(0.0);
            let rate_per_s = if bucket.level >= 0.0 {
                bucket.rate_per_s
            } else {
                // Repay the debt within one interval by cutting the drip.
                (bucket.rate_per_s + bucket.level / interval_s).max(0.0)
            };
            let mut fraction_sum = 0.0;
            for (worker, demand) in demands.iter().enumerate() {
                if !is_active(demand, round, self.idle_intervals) {
                    continue;
                }
                let fraction = if ewma_sum > 0.0 {
                    (1.0 - SHARE_FLOOR_FRACTION) * demand.ewma / ewma_sum
                        + SHARE_FLOOR_FRACTION / active as f64
                } else {
                    1.0 / active as f64
                };
                fraction_sum += fraction;
                updates[worker].entries.push(Share {
                    key,
                    tokens: fraction * tokens,
                    rate_per_s: fraction * rate_per_s,
                    burst: (fraction * bucket.burst).max(1.0),
                });
            }
            debug_assert!(
                active == 0 || (fraction_sum - 1.0).abs() < 1e-9,
                "shares of a key sum to {fraction_sum}, not 1"
            );
            slot = next;
        }
        for update in &updates {
            self.last_share_counts[update.worker] = update.entries.len();
        }
        self.round += 1;
        self.last_allocate_ms = Some(now_ms);
        updates
    }

    /// Counters for `/metrics`.
    pub fn stats(&self) -> GlobalStats {
        GlobalStats {
            keys: self.table.len(),
            ..self.stats
        }
    }
}

/// Whether a worker reported the key within the idle window (and so still tracks it).
fn is_active(demand: &WorkerDemand, round: u64, idle_intervals: u32) -> bool {
    demand
        .last_round
        .is_some_and(|last| round - last < u64::from(idle_intervals))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASHER: KeyHasher = KeyHasher::new(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);

    fn rule(rate_per_s: f64, burst: u32) -> Rule {
        Rule::new(rate_per_s, burst).expect("valid test rule")
    }

    fn config(workers: usize) -> LimiterConfig {
        LimiterConfig {
            workers,
            keys_max: 1_000,
            sync_interval_ms: 100,
            idle_intervals: 10,
        }
    }

    /// Checks what the headers are built from.
    fn check_decision(decision: &Decision, now_ms: u64) {
        assert!(decision.remaining <= decision.limit, "{decision:?}");
        assert!(decision.reset_ms > now_ms, "{decision:?} at {now_ms}");
        if decision.allowed {
            assert_eq!(decision.retry_after_s, 0, "{decision:?}");
        } else {
            assert!(decision.retry_after_s >= 1, "{decision:?}");
            assert_eq!(decision.remaining, 0, "{decision:?}");
        }
        assert!(decision.reset_after_s(now_ms) >= 1);
    }

    /// A deterministic cluster: `workers` local limiters and one global, a fake clock in ms.
    struct Cluster {
        locals: Vec<LocalLimiter>,
        global: GlobalLimiter,
        /// Shares computed but not yet installed, with the time they land.
        in_flight: Vec<(u64, Vec<ShareUpdate>)>,
    }

    impl Cluster {
        fn new(config: LimiterConfig) -> Cluster {
            Cluster {
                locals: (0..config.workers)
                    .map(|worker| LocalLimiter::new(worker, config))
                    .collect(),
                global: GlobalLimiter::new(config),
                in_flight: Vec::new(),
            }
        }

        /// One sync round at `now_ms`; the shares land `lag_ms` later.
        fn sync(&mut self, now_ms: u64, lag_ms: u64) {
            for local in &mut self.locals {
                let report = local.drain_usage();
                self.global.merge(&report);
            }
            let updates = self.global.allocate(now_ms);
            self.in_flight.push((now_ms + lag_ms, updates));
            self.land(now_ms);
        }

        fn land(&mut self, now_ms: u64) {
            let mut i = 0;
            while i < self.in_flight.len() {
                if self.in_flight[i].0 <= now_ms {
                    let (_, updates) = self.in_flight.remove(i);
                    for update in &updates {
                        self.locals[update.worker].apply(update, now_ms);
                    }
                } else {
                    i += 1;
                }
            }
        }
    }

    struct Outcome {
        admitted: u64,
        refused: u64,
        per_worker: Vec<u64>,
    }

    /// Offers `offered_per_s[w]` requests per second of one key to worker `w` for
    /// `seconds`, syncing every 100 ms; returns what was admitted.
    fn simulate(r: Rule, offered_per_s: &[u64], seconds: u64, lag_ms: u64) -> Outcome {
        simulate_phases(r, &[(seconds, offered_per_s)], lag_ms)
    }

    /// Like [`simulate`], through successive `(seconds, offered_per_s)` phases.
    fn simulate_phases(r: Rule, phases: &[(u64, &[u64])], lag_ms: u64) -> Outcome {
        let workers = phases[0].1.len();
        let mut cluster = Cluster::new(config(workers));
        let key = HASHER.key(1, b"203.0.113.7");
        let mut outcome = Outcome {
            admitted: 0,
            refused: 0,
            per_worker: vec![0; workers],
        };
        let total_ms: u64 = phases.iter().map(|(seconds, _)| seconds * 1000).sum();
        for now_ms in 0..total_ms {
            cluster.land(now_ms);
            let mut phase_end_ms = 0;
            let offered_per_s = phases
                .iter()
                .find(|(seconds, _)| {
                    phase_end_ms += seconds * 1000;
                    now_ms < phase_end_ms
                })
                .map_or(phases[0].1, |(_, offered)| *offered);
            for (worker, &rate) in offered_per_s.iter().enumerate() {
                let due = (now_ms + 1) * rate / 1000 - now_ms * rate / 1000;
                for _ in 0..due {
                    let decision = cluster.locals[worker].take(r, key, now_ms);
                    check_decision(&decision, now_ms);
                    if decision.allowed {
                        outcome.admitted += 1;
                        outcome.per_worker[worker] += 1;
                    } else {
                        outcome.refused += 1;
                    }
                }
            }
            if (now_ms + 1) % 100 == 0 {
                cluster.sync(now_ms + 1, lag_ms);
            }
        }
        outcome
    }

    fn assert_within(admitted: u64, expected: f64, tolerance: f64, what: &str) {
        let error = (admitted as f64 - expected) / expected;
        println!("{what}: admitted {admitted}, expected {expected}, error {error:+.4}");
        assert!(
            error.abs() <= tolerance,
            "{what}: admitted {admitted}, expected {expected} ± {tolerance}"
        );
    }

    #[test]
    fn two_workers_90_10_converge_to_the_global_rate() {
        let r = rule(1_000.0, 100);
        let outcome = simulate(r, &[9_000, 1_000], 10, 0);
        assert_within(outcome.admitted, 1_000.0 * 10.0 + 100.0, 0.05, "90/10");
        // The busy worker gets most of the budget.
        assert!(outcome.per_worker[0] > 4 * outcome.per_worker[1]);
    }

    #[test]
    fn three_workers_70_20_10_converge_to_the_global_rate() {
        let r = rule(1_000.0, 100);
        let outcome = simulate(r, &[7_000, 2_000, 1_000], 10, 0);
        assert_within(outcome.admitted, 1_000.0 * 10.0 + 100.0, 0.05, "70/20/10");
    }

    #[test]
    fn late_shares_still_converge() {
        // Shares land 20 ms after the drain: workers keep spending the old share meanwhile,
        // and the ledger's debt pays it back.
        let r = rule(1_000.0, 100);
        let outcome = simulate(r, &[9_000, 1_000], 10, 20);
        assert_within(
            outcome.admitted,
            1_000.0 * 10.0 + 100.0,
            0.05,
            "90/10 lag 20 ms",
        );
        let outcome = simulate(r, &[7_000, 2_000, 1_000], 10, 20);
        assert_within(
            outcome.admitted,
            1_000.0 * 10.0 + 100.0,
            0.05,
            "70/20/10 lag 20 ms",
        );
    }

    #[test]
    fn demand_moving_between_workers_still_converges() {
        let r = rule(1_000.0, 100);
        let outcome = simulate_phases(
            r,
            &[
                (3, &[9_000, 1_000]),
                (4, &[1_000, 9_000]),
                (3, &[5_000, 5_000]),
            ],
            0,
        );
        assert_within(
            outcome.admitted,
            1_000.0 * 10.0 + 100.0,
            0.05,
            "moving demand",
        );
        assert!(outcome.per_worker[1] > outcome.per_worker[0]);
    }

    #[test]
    fn slow_rates_converge_too() {
        let r = rule(50.0, 10);
        let outcome = simulate(r, &[900, 100], 10, 0);
        assert_within(outcome.admitted, 50.0 * 10.0 + 10.0, 0.05, "50/s 90/10");
    }

    #[test]
    fn a_key_under_the_limit_is_never_refused() {
        let r = rule(100.0, 20);
        // 80 % of the limit, split 70/30, then 50/50 on three workers.
        let outcome = simulate(r, &[56, 24], 10, 0);
        assert_eq!(outcome.refused, 0);
        assert_eq!(outcome.admitted, 800);
        let outcome = simulate(r, &[27, 27, 26], 10, 0);
        assert_eq!(outcome.refused, 0);
    }

    #[test]
    fn a_burst_is_allowed_then_limited() {
        let r = rule(10.0, 20);
        let mut local = LocalLimiter::new(0, config(1));
        let key = HASHER.key(1, b"client");
        let allowed = (0..50)
            .filter(|_| {
                let decision = local.take(r, key, 1_000);
                check_decision(&decision, 1_000);
                decision.allowed
            })
            .count();
        assert_eq!(allowed, 20);
        let refused = local.take(r, key, 1_000);
        assert!(!refused.allowed);
        assert_eq!(refused.reset_ms, 1_100, "one token at 10/s takes 100 ms");
        assert_eq!(refused.retry_after_s, 1);
        // 100 ms later one token has dripped back.
        assert!(local.take(r, key, 1_100).allowed);
        assert!(!local.take(r, key, 1_100).allowed);
    }

    #[test]
    fn a_new_key_gets_the_provisional_allowance_on_each_worker() {
        let r = rule(10.0, 20);
        let mut cluster = Cluster::new(config(2));
        let key = HASHER.key(1, b"client");
        for local in &mut cluster.locals {
            let allowed = (0..50).filter(|_| local.take(r, key, 0).allowed).count();
            assert_eq!(allowed, 10, "burst / workers before any share");
        }
    }

    #[test]
    fn the_burst_follows_recent_demand() {
        // After a while of traffic only on worker 0, an idle-then-bursting key finds almost
        // all of its burst on worker 0.
        let r = rule(10.0, 100);
        let mut cluster = Cluster::new(config(2));
        let key = HASHER.key(1, b"client");
        cluster.locals[1].take(r, key, 0);
        let mut now_ms = 0;
        for _ in 0..5 {
            cluster.locals[0].take(r, key, now_ms);
            now_ms += 100;
            cluster.sync(now_ms, 0);
        }
        // Let the global bucket refill while worker 0 keeps a trickle going.
        for _ in 0..5 {
            now_ms += 1_000;
            cluster.locals[0].take(r, key, now_ms);
            cluster.sync(now_ms, 0);
        }
        let allowed = (0..200)
            .filter(|_| cluster.locals[0].take(r, key, now_ms).allowed)
            .count();
        assert!(allowed >= 90, "burst on the busy worker: {allowed}");
    }

    #[test]
    fn idle_keys_are_evicted_locally_and_globally() {
        let r = rule(10.0, 20);
        let mut cluster = Cluster::new(config(2));
        let key = HASHER.key(1, b"client");
        cluster.locals[0].take(r, key, 0);
        cluster.sync(100, 0);
        assert_eq!(cluster.locals[0].stats().keys, 1);
        assert_eq!(cluster.global.stats().keys, 1);
        // Nine more quiet rounds: still tracked (idle_intervals = 10).
        for round in 2..=10 {
            cluster.sync(round * 100, 0);
        }
        assert_eq!(cluster.locals[0].stats().keys, 1);
        assert_eq!(cluster.global.stats().keys, 1);
        cluster.sync(1_100, 0);
        assert_eq!(cluster.locals[0].stats().keys, 0);
        assert_eq!(cluster.locals[0].stats().evicted_idle, 1);
        assert_eq!(cluster.global.stats().keys, 0);
        assert_eq!(cluster.global.stats().evicted_idle, 1);
    }

    #[test]
    fn a_full_table_evicts_the_lru_key_or_overflows() {
        let r = rule(10.0, 4);
        let mut local = LocalLimiter::new(
            0,
            LimiterConfig {
                keys_max: 2,
                ..config(1)
            },
        );
        let (a, b, c) = (
            HASHER.key(1, b"a"),
            HASHER.key(1, b"b"),
            HASHER.key(1, b"c"),
        );
        local.take(r, a, 0);
        local.take(r, b, 0);
        // Both keys are active this interval: `c` is served by the overflow bucket.
        let overflowed = (0..10).filter(|_| local.take(r, c, 0).allowed).count();
        assert_eq!(
            overflowed, 4,
            "the overflow bucket holds one provisional allowance"
        );
        assert_eq!(local.stats().overflowed, 10);
        assert_eq!(local.stats().keys, 2);
        let report = local.drain_usage();
        assert_eq!(report.entries.len(), 2);
        // Next interval: `b` is used, then `c` evicts `a`, the least recently used.
        local.take(r, b, 100);
        local.take(r, c, 100);
        assert_eq!(local.stats().evicted_lru, 1);
        let report = local.drain_usage();
        let keys: Vec<Key> = report.entries.iter().map(|usage| usage.key).collect();
        assert_eq!(keys, vec![b, c]);
    }

    #[test]
    fn a_full_global_table_evicts_the_lru_key_or_leaves_new_keys_untracked() {
        let r = rule(10.0, 4);
        let mut global = GlobalLimiter::new(LimiterConfig {
            keys_max: 1,
            ..config(1)
        });
        let report = |key| UsageReport {
            worker: 0,
            entries: vec![Usage {
                key,
                rule: r,
                demand: 1,
                admitted: 1,
            }],
        };
        let (a, b) = (HASHER.key(1, b"a"), HASHER.key(1, b"b"));
        global.merge(&report(a));
        global.merge(&report(b));
        assert_eq!(global.stats().untracked, 1, "a is active this round");
        let updates = global.allocate(100);
        assert_eq!(updates[0].entries.len(), 1);
        assert_eq!(updates[0].entries[0].key, a);
        global.merge(&report(b));
        assert_eq!(global.stats().evicted_lru, 1, "a was idle this round");
        let updates = global.allocate(200);
        assert_eq!(updates[0].entries[0].key, b);
        assert_eq!(global.stats().keys, 1);
    }

    #[test]
    fn requests_never_grow_the_tables() {
        let r = rule(10.0, 4);
        let mut local = LocalLimiter::new(
            0,
            LimiterConfig {
                keys_max: 64,
                ..config(1)
            },
        );
        let before = (local.table.capacities(), local.dirty.capacity());
        for round in 0..50u64 {
            for i in 0..200u64 {
                let key = HASHER.key(1, &(round * 1_000 + i).to_le_bytes());
                local.take(r, key, round * 100);
            }
            local.drain_usage();
        }
        assert_eq!((local.table.capacities(), local.dirty.capacity()), before);
    }

    #[test]
    fn usage_reports_count_demand_and_admissions() {
        let r = rule(10.0, 4);
        let mut local = LocalLimiter::new(1, config(2));
        let key = HASHER.key(1, b"k");
        for _ in 0..5 {
            local.take(r, key, 0);
        }
        let report = local.drain_usage();
        assert_eq!(report.worker, 1);
        assert_eq!(
            report.entries,
            vec![Usage {
                key,
                rule: r,
                demand: 5,
                admitted: 2,
            }]
        );
        assert!(local.drain_usage().entries.is_empty());
    }

    #[test]
    fn shares_hand_out_the_refill_plus_unused_burst() {
        let r = rule(1_000.0, 100);
        let mut global = GlobalLimiter::new(config(2));
        let key = HASHER.key(1, b"k");
        let usage = |worker, demand, admitted| UsageReport {
            worker,
            entries: vec![Usage {
                key,
                rule: r,
                demand,
                admitted,
            }],
        };
        global.merge(&usage(0, 900, 60));
        global.merge(&usage(1, 100, 40));
        let updates = global.allocate(100);
        let tokens: f64 = updates.iter().map(|u| u.entries[0].tokens).sum();
        let rate: f64 = updates.iter().map(|u| u.entries[0].rate_per_s).sum();
        // 100 burst + 100 refilled - 100 admitted, capped at the burst.
        assert!((tokens - 100.0).abs() < 1e-9, "{tokens}");
        assert!((rate - 1_000.0).abs() < 1e-9, "{rate}");
        let share0 = updates[0].entries[0];
        assert!(share0.tokens > 80.0 && share0.tokens < 90.0, "{share0:?}");
        // Workers overspent by 150: the debt cuts the next drip, and no tokens are handed
        // out until it is repaid.
        global.merge(&usage(0, 900, 200));
        global.merge(&usage(1, 100, 50));
        let updates = global.allocate(200);
        let tokens: f64 = updates.iter().map(|u| u.entries[0].tokens).sum();
        let rate: f64 = updates.iter().map(|u| u.entries[0].rate_per_s).sum();
        assert_eq!(tokens, 0.0);
        assert!((rate - 500.0).abs() < 1e-6, "{rate}");
    }

    #[test]
    fn settled_keys_are_not_resent() {
        let r = rule(10.0, 20);
        let mut cluster = Cluster::new(config(2));
        let key = HASHER.key(1, b"k");
        cluster.locals[0].take(r, key, 0);
        let shares = |cluster: &mut Cluster, now_ms| {
            let reports: Vec<UsageReport> =
                cluster.locals.iter_mut().map(|l| l.drain_usage()).collect();
            for report in &reports {
                cluster.global.merge(report);
            }
            let updates = cluster.global.allocate(now_ms);
            for update in &updates {
                cluster.locals[update.worker].apply(update, now_ms);
            }
            updates.iter().map(|u| u.entries.len()).sum::<usize>()
        };
        assert_eq!(shares(&mut cluster, 100), 1, "demand: a share");
        assert_eq!(
            shares(&mut cluster, 200),
            1,
            "full and quiet: the share once more"
        );
        assert_eq!(shares(&mut cluster, 300), 0, "unchanged: nothing to send");
        assert_eq!(shares(&mut cluster, 400), 0);
        cluster.locals[0].take(r, key, 450);
        assert_eq!(shares(&mut cluster, 500), 1, "demand again: a share");
        // The local bucket kept refilling on its last share meanwhile.
        let allowed = (0..30)
            .filter(|_| cluster.locals[0].take(r, key, 2_000).allowed)
            .count();
        assert_eq!(allowed, 20, "the whole burst, now all on worker 0");
    }

    #[test]
    fn key_hash_is_siphash() {
        // The reference SipHash-2-4 vector (key 00..0f, message 00..0e) checks the
        // implementation; production uses the 1-3 rounds of std's HashMap.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(siphash::<2, 4>(k0, k1, &[]), 0x726f_db47_dd0e_0e31);
        let message: Vec<u8> = (0..15).collect();
        for len in 0..=message.len() {
            #[allow(deprecated)]
            let mut reference = std::hash::SipHasher::new_with_keys(k0, k1);
            reference.write(&message[..len]);
            assert_eq!(siphash::<2, 4>(k0, k1, &message[..len]), reference.finish());
        }
        let a = HASHER.key(1, b"198.51.100.1");
        assert_eq!(a, HASHER.key(1, b"198.51.100.1"));
        assert_ne!(a, HASHER.key(2, b"198.51.100.1"), "zones separate buckets");
        assert_ne!(a, HASHER.key(1, b"198.51.100.2"));
        assert_ne!(a, KeyHasher::new(1, 2).key(1, b"198.51.100.1"));
        assert_ne!(a, KeyHasher::random().key(1, b"198.51.100.1"));
    }

    #[test]
    fn ceil_rounds_up_and_saturates() {
        assert_eq!(ceil_u64(0.0), 0);
        assert_eq!(ceil_u64(0.2), 1);
        assert_eq!(ceil_u64(1.0), 1);
        assert_eq!(ceil_u64(99.000_001), 100);
        assert_eq!(ceil_u64(f64::NAN), 0);
        assert_eq!(ceil_u64(-3.5), 0);
        assert_eq!(ceil_u64(1e300), u64::MAX);
        assert_eq!(ceil_u64(f64::INFINITY), u64::MAX);
    }

    #[test]
    fn rules_reject_nonsense() {
        assert!(Rule::new(0.0, 1).is_none());
        assert!(Rule::new(-1.0, 1).is_none());
        assert!(Rule::new(f64::NAN, 1).is_none());
        assert!(Rule::new(f64::INFINITY, 1).is_none());
        assert!(Rule::new(1.0, 0).is_none());
        assert_eq!(rule(0.5, 3).rate_per_s(), 0.5);
        assert_eq!(rule(0.5, 3).burst(), 3);
    }

    #[test]
    fn corrupt_shares_and_clock_steps_do_not_break_invariants() {
        let r = rule(10.0, 4);
        let mut local = LocalLimiter::new(0, config(1));
        let key = HASHER.key(1, b"k");
        local.take(r, key, 1_000);
        local.apply(
            &ShareUpdate {
                worker: 0,
                entries: vec![Share {
                    key,
                    tokens: f64::NAN,
                    rate_per_s: f64::NAN,
                    burst: f64::NAN,
                }],
            },
            1_000,
        );
        check_decision(&local.take(r, key, 1_000), 1_000);
        local.apply(
            &ShareUpdate {
                worker: 0,
                entries: vec![Share {
                    key,
                    tokens: f64::INFINITY,
                    rate_per_s: f64::INFINITY,
                    burst: f64::INFINITY,
                }],
            },
            1_000,
        );
        let decision = local.take(r, key, 1_000);
        check_decision(&decision, 1_000);
        assert_eq!(decision.remaining, 3, "capped at the rule's burst");
        // Time going backwards and a zero-rate share: still total, still consistent.
        for now_ms in [900, 500, 2_000] {
            let decision = local.take(r, key, now_ms);
            check_decision(&decision, now_ms);
        }
    }
}

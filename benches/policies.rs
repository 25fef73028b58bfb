//! Criterion benches of the per-request policies that keep state: the rate limiter's
//! per-request `take` on an existing key, a full rate-limit sync round (drain on 2 workers,
//! merge, allocate, apply) with 10 000 active keys, and the circuit breaker's
//! `allow` + `on_success` on a closed breaker.
//!
//! Run: `cargo bench --bench policies`. Figures are quoted in the modules' docs and perf.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use coregate_engine::policy::breaker::{Breaker, BreakerConfig};
use coregate_engine::policy::ratelimit::{
    GlobalLimiter, Key, KeyHasher, LimiterConfig, LocalLimiter, Rule,
};
use criterion::{criterion_group, criterion_main, Criterion};

const HASHER: KeyHasher = KeyHasher::new(0x5eed_0000_0000_0001, 0x5eed_0000_0000_0002);
const ACTIVE_KEYS: u64 = 10_000;

fn rule() -> Rule {
    Rule::new(1_000.0, 100).expect("a valid rule")
}

fn key(i: u64) -> Key {
    HASHER.key(1, format!("198.51.{}.{}", i / 256, i % 256).as_bytes())
}

fn take(c: &mut Criterion) {
    let rule = rule();
    let mut local = LocalLimiter::new(0, LimiterConfig::new(2));
    let hot = key(7);
    // Other keys in the table, so the lookup is not into a one-entry map.
    for i in 0..ACTIVE_KEYS {
        local.take(rule, key(i), 0);
    }
    let mut now_ms = 0u64;
    c.bench_function("ratelimit_take_existing_key", |b| {
        b.iter(|| {
            // Advance the clock every call so the refill arithmetic runs.
            now_ms += 1;
            black_box(local.take(rule, black_box(hot), now_ms))
        })
    });
    c.bench_function("ratelimit_hash_key_ipv4", |b| {
        b.iter(|| black_box(HASHER.key(1, black_box(b"203.0.113.254"))))
    });
}

fn sync_round(c: &mut Criterion) {
    let rule = rule();
    let config = LimiterConfig::new(2);
    let mut workers: Vec<LocalLimiter> = (0..2).map(|w| LocalLimiter::new(w, config)).collect();
    let mut global = GlobalLimiter::new(config);
    let keys: Vec<Key> = (0..ACTIVE_KEYS).map(key).collect();
    let mut now_ms = 0u64;
    let mut group = c.benchmark_group("ratelimit_sync_round");
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("10000_keys_2_workers", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                // Traffic between rounds (not timed): every key on both workers.
                now_ms += 100;
                for local in &mut workers {
                    for &key in &keys {
                        local.take(rule, key, now_ms);
                    }
                }
                let start = Instant::now();
                for local in &mut workers {
                    let report = local.drain_usage();
                    global.merge(&report);
                }
                let updates = global.allocate(now_ms);
                for update in &updates {
                    workers[update.worker].apply(update, now_ms);
                }
                elapsed += start.elapsed();
                black_box(&updates);
            }
            elapsed
        })
    });
    group.finish();
}

fn breaker(c: &mut Criterion) {
    let mut breaker = Breaker::new(BreakerConfig::default());
    let mut now_ms = 0u64;
    c.bench_function("breaker_allow_on_success", |b| {
        b.iter(|| {
            now_ms += 1;
            let allowed = breaker.allow(black_box(now_ms));
            breaker.on_success(now_ms);
            black_box(allowed)
        })
    });
}

criterion_group!(benches, take, sync_round, breaker);
criterion_main!(benches);

//! ratebound vs its peers, measured in the same run with fake clocks.
//!
//! Each group holds `ratebound*` functions and their peer (`governor`,
//! `atomic_cas`); `benches/report.py` turns the estimates into the ratio table
//! in `benches/README.md`.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter as Governor};
use ratebound_core::backoff::{Backoff, Jitter};
use ratebound_core::budget::{Admission, Budget, BudgetConfig, BudgetState, Usage};
use ratebound_core::{
    AtomicGcra, Duration, Gcra, GcraState, Instant, SlidingCounter, SlidingCounterState,
    SlidingLog, SlidingLogState,
};
use ratebound_std::clock::ManualClock;
use ratebound_std::keyed::{KeyedConfig, KeyedLimiter, OnFull};

const T0: u64 = 1_795_392_000_000_000;

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("nonzero")
}

/// The simplest correct lock-free GCRA over nanoseconds: the floor any
/// implementation pays (no remaining/reset/retry computed).
struct BareCas {
    tat: AtomicU64,
    t: u64,
    tau: u64,
}

impl BareCas {
    #[inline]
    fn check(&self, now: u64) -> bool {
        let mut cur = self.tat.load(Ordering::Acquire);
        loop {
            let next = cur.max(now) + self.t;
            if next - now > self.tau {
                return false;
            }
            match self
                .tat
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(a) => cur = a,
            }
        }
    }
}

fn gcra_single(c: &mut Criterion) {
    // Allow path: 1000 burst at 1 000 000/s, the clock advancing 1 µs per call.
    let mut g = c.benchmark_group("gcra_check_allow");
    g.bench_function("ratebound_pure", |b| {
        let gcra = Gcra::new(1_000, 1_000_000, Duration::from_secs(1)).unwrap();
        let mut s = GcraState::default();
        let mut now = T0;
        b.iter(|| {
            now += 1;
            black_box(
                gcra.check(&mut s, Instant::from_micros(now), 1)
                    .unwrap()
                    .allowed,
            )
        });
    });
    g.bench_function("ratebound_atomic", |b| {
        let l =
            AtomicGcra::new(Gcra::new(1_000, 1_000_000, Duration::from_secs(1)).unwrap()).unwrap();
        let clock = AtomicU64::new(T0);
        b.iter(|| {
            let now = clock.fetch_add(1, Ordering::Relaxed) + 1;
            black_box(l.check(Instant::from_micros(now), 1).unwrap().allowed)
        });
    });
    g.bench_function("governor", |b| {
        let clock = FakeRelativeClock::default();
        let l = Governor::direct_with_clock(
            Quota::per_second(nz(1_000_000)).allow_burst(nz(1_000)),
            clock.clone(),
        );
        b.iter(|| {
            clock.advance(StdDuration::from_micros(1));
            black_box(l.check().is_ok())
        });
    });
    g.bench_function("atomic_cas", |b| {
        let l = BareCas {
            tat: AtomicU64::new(0),
            t: 1_000,
            tau: 1_000_000,
        };
        let clock = AtomicU64::new(T0 * 1_000);
        b.iter(|| {
            let now = clock.fetch_add(1_000, Ordering::Relaxed) + 1_000;
            black_box(l.check(now))
        });
    });
    g.finish();

    // Deny path: the bucket is empty and the clock stands still.
    let mut g = c.benchmark_group("gcra_check_deny");
    g.bench_function("ratebound_pure", |b| {
        let gcra = Gcra::per_second(10).unwrap();
        let mut s = GcraState::default();
        let now = Instant::from_micros(T0);
        gcra.check(&mut s, now, 10).unwrap();
        // black_box: the same denial every call, which the compiler could
        // otherwise hoist out of the loop (governor's state is atomic).
        b.iter(|| {
            black_box(
                gcra.check(black_box(&mut s), black_box(now), 1)
                    .unwrap()
                    .allowed,
            )
        });
    });
    g.bench_function("ratebound_atomic", |b| {
        let l = AtomicGcra::new(Gcra::per_second(10).unwrap()).unwrap();
        let clock = AtomicU64::new(T0);
        l.check(Instant::from_micros(T0), 10).unwrap();
        b.iter(|| {
            black_box(
                l.check(Instant::from_micros(clock.load(Ordering::Relaxed)), 1)
                    .unwrap()
                    .allowed,
            )
        });
    });
    g.bench_function("governor", |b| {
        let l =
            Governor::direct_with_clock(Quota::per_second(nz(10)), FakeRelativeClock::default());
        for _ in 0..10 {
            let _ = l.check();
        }
        b.iter(|| black_box(l.check().is_ok()));
    });
    g.bench_function("atomic_cas", |b| {
        let l = BareCas {
            tat: AtomicU64::new(0),
            t: 100_000_000,
            tau: 1_000_000_000,
        };
        let now = T0 * 1_000;
        while l.check(now) {}
        b.iter(|| black_box(l.check(now)));
    });
    g.finish();
}

/// Two threads checking one limiter; time for `iters` checks in total.
fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("contended_2_threads");
    g.bench_function("ratebound_atomic", |b| {
        b.iter_custom(|iters| {
            // Huge burst so every call is an admitted write (the contended case).
            let l = Arc::new(
                AtomicGcra::new(Gcra::new(1 << 40, 1_000_000_000, Duration::from_secs(1)).unwrap())
                    .unwrap(),
            );
            let start = StdInstant::now();
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let l = l.clone();
                    std::thread::spawn(move || {
                        for _ in 0..iters / 2 {
                            black_box(l.check(Instant::from_micros(T0), 1).unwrap().allowed);
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            start.elapsed()
        });
    });
    g.bench_function("governor", |b| {
        b.iter_custom(|iters| {
            let l = Arc::new(Governor::direct_with_clock(
                Quota::per_second(nz(1_000_000_000)).allow_burst(nz(u32::MAX)),
                FakeRelativeClock::default(),
            ));
            let start = StdInstant::now();
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let l = l.clone();
                    std::thread::spawn(move || {
                        for _ in 0..iters / 2 {
                            black_box(l.check().is_ok());
                        }
                    })
                })
                .collect();
            hs.into_iter().for_each(|h| h.join().unwrap());
            start.elapsed()
        });
    });
    g.finish();
}

fn keyed(c: &mut Criterion) {
    for (name, n) in [("keyed_1k", 1_000u64), ("keyed_1m", 1_000_000u64)] {
        let mut g = c.benchmark_group(name);
        g.sample_size(if n > 1_000 { 20 } else { 100 });
        g.bench_function("ratebound", |b| {
            let clock = ManualClock::new(Instant::from_micros(T0));
            let store = KeyedLimiter::new(
                Gcra::per_second(1_000_000).unwrap(),
                KeyedConfig::default()
                    .with_max_keys(n as usize)
                    .with_shards(64)
                    .with_on_full(OnFull::DenyNewKeys),
                clock.clone(),
            )
            .unwrap();
            for k in 0..n {
                store.check(&k, 1).unwrap();
            }
            let mut k = 0u64;
            b.iter(|| {
                k = (k + 7_919) % n;
                clock.advance(Duration::from_micros(1));
                black_box(store.check(&k, 1).unwrap().allowed)
            });
        });
        g.bench_function("governor", |b| {
            let clock = FakeRelativeClock::default();
            let l = Governor::dashmap_with_clock(Quota::per_second(nz(1_000_000)), clock.clone());
            for k in 0..n {
                let _ = l.check_key(&k);
            }
            let mut k = 0u64;
            b.iter(|| {
                k = (k + 7_919) % n;
                clock.advance(StdDuration::from_micros(1));
                black_box(l.check_key(&k).is_ok())
            });
        });
        g.finish();
    }
}

/// Keys under a unique-key flood: every check is a key never seen before,
/// in a store already full. The limit is 1,000/s, so a key used once is
/// idle (forgettable) a millisecond later; the fake clock advances 1 µs a
/// call. ratebound's store is bounded at 100,000 keys and evicts idle keys
/// to make room; governor's grows until `retain_recent` drops idle keys,
/// called every 100,000 keys as its docs advise doing periodically.
const FLOOD_KEYS: u64 = 100_000;

fn flood_store(on_full: OnFull, rate: Gcra) -> (ManualClock, KeyedLimiter<u64, Gcra, ManualClock>) {
    let clock = ManualClock::new(Instant::from_micros(T0));
    let store = KeyedLimiter::new(
        rate,
        KeyedConfig::default()
            .with_max_keys(FLOOD_KEYS as usize)
            .with_on_full(on_full),
        clock.clone(),
    )
    .unwrap();
    (clock, store)
}

fn keyed_flood(c: &mut Criterion) {
    let mut g = c.benchmark_group("keyed_flood");
    g.bench_function("ratebound", |b| {
        let (clock, store) = flood_store(OnFull::DenyNewKeys, Gcra::per_second(1_000).unwrap());
        let mut k = 0u64;
        b.iter(|| {
            k += 1;
            clock.advance(Duration::from_micros(1));
            black_box(store.check(&k, 1).unwrap().allowed)
        });
        assert!(store.len() <= FLOOD_KEYS as usize);
    });
    // No key is ever idle: EvictLru drops a key not used recently for each
    // new one; DenyNewKeys refuses the new key (and sweeps now and then).
    g.bench_function("ratebound_active_evict_lru", |b| {
        let (clock, store) = flood_store(OnFull::EvictLru, Gcra::per_minute(10).unwrap());
        let mut k = 0u64;
        b.iter(|| {
            k += 1;
            clock.advance(Duration::from_micros(1));
            black_box(store.check(&k, 1).unwrap().allowed)
        });
    });
    g.bench_function("ratebound_active_deny_new_keys", |b| {
        let (clock, store) = flood_store(OnFull::DenyNewKeys, Gcra::per_minute(10).unwrap());
        let mut k = 0u64;
        b.iter(|| {
            k += 1;
            clock.advance(Duration::from_micros(1));
            black_box(store.check(&k, 1).is_ok())
        });
    });
    g.bench_function("governor", |b| {
        let clock = FakeRelativeClock::default();
        let l = Governor::dashmap_with_clock(Quota::per_second(nz(1_000)), clock.clone());
        let mut k = 0u64;
        b.iter(|| {
            k += 1;
            clock.advance(StdDuration::from_micros(1));
            if k.is_multiple_of(FLOOD_KEYS) {
                l.retain_recent();
            }
            black_box(l.check_key(&k).is_ok())
        });
    });
    g.finish();
}

/// Two threads checking keys of one store: spread over 10^6 held keys
/// (no clock movement: every key has a burst of 10^6), and under a
/// unique-key flood (the clock advances 64 µs every 64 calls per thread).
fn keyed_threads(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let mut g = c.benchmark_group("keyed_1m_2_threads");
    g.sample_size(20);
    g.bench_function("ratebound", |b| {
        let store = Arc::new(
            KeyedLimiter::new(
                Gcra::per_second(1_000_000).unwrap(),
                KeyedConfig::default()
                    .with_max_keys(N as usize)
                    .with_shards(64),
                ManualClock::new(Instant::from_micros(T0)),
            )
            .unwrap(),
        );
        for k in 0..N {
            store.check(&k, 1).unwrap();
        }
        b.iter_custom(|iters| {
            run_2_threads(iters, |t, i| {
                black_box(
                    store
                        .check(&((i * 7_919 + t * 500_009) % N), 1)
                        .unwrap()
                        .allowed,
                );
            })
        });
    });
    g.bench_function("governor", |b| {
        let l = Governor::dashmap_with_clock(
            Quota::per_second(nz(1_000_000)),
            FakeRelativeClock::default(),
        );
        for k in 0..N {
            let _ = l.check_key(&k);
        }
        b.iter_custom(|iters| {
            run_2_threads(iters, |t, i| {
                black_box(l.check_key(&((i * 7_919 + t * 500_009) % N)).is_ok());
            })
        });
    });
    g.finish();

    let mut g = c.benchmark_group("keyed_flood_2_threads");
    g.bench_function("ratebound", |b| {
        let (clock, store) = flood_store(OnFull::DenyNewKeys, Gcra::per_second(1_000).unwrap());
        let next = AtomicU64::new(0);
        b.iter_custom(|iters| {
            run_2_threads(iters, |_, i| {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if i.is_multiple_of(64) {
                    clock.advance(Duration::from_micros(64));
                }
                black_box(store.check(&k, 1).unwrap().allowed);
            })
        });
        assert!(store.len() <= FLOOD_KEYS as usize);
    });
    g.bench_function("governor", |b| {
        let clock = FakeRelativeClock::default();
        let l = Governor::dashmap_with_clock(Quota::per_second(nz(1_000)), clock.clone());
        let next = AtomicU64::new(0);
        b.iter_custom(|iters| {
            run_2_threads(iters, |_, i| {
                let k = next.fetch_add(1, Ordering::Relaxed);
                if i.is_multiple_of(64) {
                    clock.advance(StdDuration::from_micros(64));
                }
                if k.is_multiple_of(FLOOD_KEYS) {
                    l.retain_recent();
                }
                black_box(l.check_key(&k).is_ok());
            })
        });
    });
    g.finish();
}

/// Time for `iters` calls of `f(thread, i)` split over two threads.
fn run_2_threads(iters: u64, f: impl Fn(u64, u64) + Sync) -> std::time::Duration {
    let start = StdInstant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let f = &f;
            s.spawn(move || (0..iters / 2).for_each(|i| f(t, i)));
        }
    });
    start.elapsed()
}

fn windows_budget_backoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("windows");
    g.bench_function("sliding_log_64", |b| {
        let l: SlidingLog<64> = SlidingLog::new(50, Duration::from_millis(1)).unwrap();
        let mut s = SlidingLogState::<64>::default();
        let mut now = T0;
        b.iter(|| {
            now += 10;
            black_box(
                l.check(&mut s, Instant::from_micros(now), 1)
                    .unwrap()
                    .allowed,
            )
        });
    });
    g.bench_function("sliding_counter", |b| {
        let l = SlidingCounter::new(50, Duration::from_millis(1)).unwrap();
        let mut s = SlidingCounterState::default();
        let mut now = T0;
        b.iter(|| {
            now += 10;
            black_box(
                l.check(&mut s, Instant::from_micros(now), 1)
                    .unwrap()
                    .allowed,
            )
        });
    });
    g.bench_function("gcra_same_rate", |b| {
        let l = Gcra::new(50, 50, Duration::from_millis(1)).unwrap();
        let mut s = GcraState::default();
        let mut now = T0;
        b.iter(|| {
            now += 10;
            black_box(
                l.check(&mut s, Instant::from_micros(now), 1)
                    .unwrap()
                    .allowed,
            )
        });
    });
    g.finish();

    let mut g = c.benchmark_group("budget");
    g.bench_function("reserve_settle", |b| {
        let budget = Budget::new(
            BudgetConfig::new()
                .tokens_per_minute(1 << 40)
                .tokens_per_day(1 << 45)
                .cost_per_day(1 << 45)
                .alert_threshold_bp(8_000),
        )
        .unwrap();
        let mut st = BudgetState::<16>::default();
        let mut now = T0;
        b.iter(|| {
            now += 1;
            let t = Instant::from_micros(now);
            let r = budget
                .reserve(&mut st, t, Usage::request(1_000, 2_000))
                .unwrap();
            if let Admission::Granted(h) = r.admission {
                black_box(
                    budget
                        .settle(&mut st, t, h, Usage::request(900, 1_800))
                        .unwrap(),
                );
            }
        });
    });
    g.finish();

    let mut g = c.benchmark_group("backoff");
    g.bench_function("next_full_jitter", |b| {
        let p = Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
            .unwrap()
            .with_jitter(Jitter::Full)
            .with_max_retries(8);
        b.iter_batched(
            || p.start(Instant::from_micros(T0), 7),
            |mut st| black_box(p.next(&mut st, Instant::from_micros(T0), None)),
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

/// One read of each clock the std crate offers, against the standard
/// library's monotonic clock (the figures `ratebound_std::clock` quotes).
fn clocks(c: &mut Criterion) {
    use ratebound_std::clock::{Clock, MonotonicClock, SystemClock};
    let mut g = c.benchmark_group("clock_read");
    let monotonic = MonotonicClock::new();
    g.bench_function("monotonic", |b| b.iter(|| black_box(monotonic.now())));
    g.bench_function("system", |b| b.iter(|| black_box(SystemClock.now())));
    g.bench_function("std_instant", |b| {
        b.iter(|| black_box(std::time::Instant::now()))
    });
    g.finish();
}

criterion_group!(
    benches,
    clocks,
    gcra_single,
    contended,
    keyed,
    keyed_flood,
    keyed_threads,
    windows_budget_backoff
);
criterion_main!(benches);

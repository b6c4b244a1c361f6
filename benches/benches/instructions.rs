//! Instruction counts (gungraun over valgrind's callgrind) for the core
//! operations and the governor peer: repeatable on noisy machines, so a
//! regression shows as a changed count. Each benchmark runs 1000 operations.
//!
//! `cargo install gungraun-runner --version 0.20.0`, then
//! `cargo bench -p ratebound-benches --bench instructions`.
// The gungraun macros generate undocumented modules.
#![allow(missing_docs)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration as StdDuration;

use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter as Governor};
use gungraun::{library_benchmark, library_benchmark_group, main};
use ratebound_core::backoff::{Backoff, Jitter};
use ratebound_core::budget::{Admission, Budget, BudgetConfig, BudgetState, Usage};
use ratebound_core::{Duration, Gcra, GcraState, Instant, SlidingCounter, SlidingCounterState};

const T0: u64 = 1_795_392_000_000_000;
const OPS: u64 = 1_000;

#[library_benchmark]
fn gcra_allow_ratebound() -> u64 {
    let g = Gcra::new(1_000, 1_000_000, Duration::from_secs(1)).expect("valid");
    let mut s = GcraState::default();
    let mut ok = 0;
    for i in 0..OPS {
        ok += u64::from(
            g.check(&mut s, Instant::from_micros(T0 + i), 1)
                .expect("fits")
                .allowed,
        );
    }
    black_box(ok)
}

#[library_benchmark]
fn gcra_allow_governor() -> u64 {
    let clock = FakeRelativeClock::default();
    let l = Governor::direct_with_clock(
        Quota::per_second(NonZeroU32::new(1_000_000).expect("nz"))
            .allow_burst(NonZeroU32::new(1_000).expect("nz")),
        clock.clone(),
    );
    let mut ok = 0;
    for _ in 0..OPS {
        clock.advance(StdDuration::from_micros(1));
        ok += u64::from(l.check().is_ok());
    }
    black_box(ok)
}

#[library_benchmark]
fn gcra_deny_ratebound() -> u64 {
    let g = Gcra::per_second(10).expect("valid");
    let mut s = GcraState::default();
    let now = Instant::from_micros(T0);
    g.check(&mut s, now, 10).expect("fits");
    let mut ok = 0;
    for _ in 0..OPS {
        // black_box: the same denial every time, which the compiler would
        // otherwise hoist out of the loop once `check` is inlined.
        ok += u64::from(
            g.check(black_box(&mut s), black_box(now), 1)
                .expect("fits")
                .allowed,
        );
    }
    black_box(ok)
}

#[library_benchmark]
fn gcra_deny_governor() -> u64 {
    let l = Governor::direct_with_clock(
        Quota::per_second(NonZeroU32::new(10).expect("nz")),
        FakeRelativeClock::default(),
    );
    let mut ok = 0;
    for _ in 0..OPS + 10 {
        ok += u64::from(l.check().is_ok());
    }
    black_box(ok)
}

#[library_benchmark]
fn sliding_counter_check() -> u64 {
    let c = SlidingCounter::new(50, Duration::from_millis(1)).expect("valid");
    let mut s = SlidingCounterState::default();
    let mut ok = 0;
    for i in 0..OPS {
        ok += u64::from(
            c.check(&mut s, Instant::from_micros(T0 + i * 10), 1)
                .expect("fits")
                .allowed,
        );
    }
    black_box(ok)
}

#[library_benchmark]
fn budget_reserve_settle() -> u64 {
    let b = Budget::new(
        BudgetConfig::new()
            .tokens_per_minute(1 << 40)
            .cost_per_day(1 << 45)
            .alert_threshold_bp(8_000),
    )
    .expect("valid");
    let mut st = BudgetState::<16>::default();
    let mut n = 0;
    for i in 0..OPS {
        let t = Instant::from_micros(T0 + i);
        if let Admission::Granted(h) = b
            .reserve(&mut st, t, Usage::request(1_000, 2_000))
            .expect("fits")
            .admission
        {
            n += b
                .settle(&mut st, t, h, Usage::request(900, 1_800))
                .expect("held")
                .charged
                .tokens;
        }
    }
    black_box(n)
}

#[library_benchmark]
fn backoff_next() -> u64 {
    let p = Backoff::new(Duration::from_millis(100), Duration::from_secs(30))
        .expect("valid")
        .with_jitter(Jitter::Full)
        .without_max_retries();
    let mut st = p.start(Instant::from_micros(T0), 7);
    let mut sum = 0;
    for _ in 0..OPS {
        if let ratebound_core::backoff::Step::Retry { delay, .. } =
            p.next(&mut st, Instant::from_micros(T0), None)
        {
            sum += delay.as_micros();
        }
    }
    black_box(sum)
}

library_benchmark_group!(
    name = core_ops,
    benchmarks = [
        gcra_allow_ratebound,
        gcra_allow_governor,
        gcra_deny_ratebound,
        gcra_deny_governor,
        sliding_counter_check,
        budget_reserve_settle,
        backoff_next
    ]
);

main!(library_benchmark_groups = core_ops);

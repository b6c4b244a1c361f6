#![allow(missing_docs)]
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration as StdDuration, Instant as StdInstant};
use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter as Governor};
use ratebound_core::{Duration, Gcra, Instant};
use ratebound_std::clock::ManualClock;
use ratebound_std::keyed::{KeyedConfig, KeyedLimiter, OnFull};
const T0: u64 = 1_795_392_000_000_000;
fn main() {
    let n: u64 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1000);
    let ops = 2_000_000u64;
    let clock = ManualClock::new(Instant::from_micros(T0));
    let store = KeyedLimiter::new(Gcra::per_second(1_000_000).unwrap(),
        KeyedConfig::default().with_max_keys(n as usize).with_shards(64).with_on_full(OnFull::DenyNewKeys), clock.clone()).unwrap();
    for k in 0..n { store.check(&k, 1).unwrap(); }
    let gclock = FakeRelativeClock::default();
    let l = Governor::dashmap_with_clock(Quota::per_second(NonZeroU32::new(1_000_000).unwrap()), gclock.clone());
    for k in 0..n { let _ = l.check_key(&k); }
    let (mut best_r, mut best_g) = (f64::MAX, f64::MAX);
    for _ in 0..15 {
        let mut k = 0u64;
        let t = StdInstant::now();
        for _ in 0..ops { k = (k + 7_919) % n; clock.advance(Duration::from_micros(1)); black_box(store.check(&k, 1).unwrap().allowed); }
        best_r = best_r.min(t.elapsed().as_nanos() as f64 / ops as f64);
        let t = StdInstant::now();
        for _ in 0..ops { k = (k + 7_919) % n; gclock.advance(StdDuration::from_micros(1)); black_box(l.check_key(&k).is_ok()); }
        best_g = best_g.min(t.elapsed().as_nanos() as f64 / ops as f64);
    }
    println!("n={n} ratebound {best_r:.1} ns governor {best_g:.1} ns ratio {:.2}", best_r / best_g);
}

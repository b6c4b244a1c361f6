//! Heap bytes per key of ratebound's keyed store (GCRA and sliding-counter
//! states, bounded at 100 000 keys, one shard, full) vs governor's keyed
//! limiter (100 000 `u64` keys), measured with a counting allocator. Prints JSON.
// The counting allocator needs `unsafe impl GlobalAlloc`; measurement only.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicIsize, Ordering};

use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter};
use ratebound_core::{Duration, Gcra, Instant, Limiter, SlidingCounter};
use ratebound_std::clock::ManualClock;
use ratebound_std::keyed::{KeyedConfig, KeyedLimiter};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const N: u64 = 100_000;

/// Heap bytes per key of a full ratebound store of `limiter`'s states.
fn ratebound_bytes<L: Limiter + Clone>(limiter: L) -> f64
where
    L::State: Default,
{
    let before = LIVE.load(Ordering::SeqCst);
    let ours = KeyedLimiter::new(
        limiter,
        KeyedConfig::default()
            .with_max_keys(N as usize)
            .with_shards(1),
        ManualClock::new(Instant::from_secs(1_795_392_000)),
    )
    .expect("valid");
    for k in 0..N {
        ours.check(&k, 1).expect("room for every key");
    }
    assert_eq!(ours.len() as u64, N);
    (LIVE.load(Ordering::SeqCst) - before) as f64 / N as f64
}

fn main() {
    let gcra = ratebound_bytes(Gcra::per_second(10).expect("valid"));
    let counter = ratebound_bytes(SlidingCounter::new(10, Duration::from_secs(1)).expect("valid"));

    let before = LIVE.load(Ordering::SeqCst);
    let gov = RateLimiter::dashmap_with_clock(
        Quota::per_second(NonZeroU32::new(10).expect("nonzero")),
        FakeRelativeClock::default(),
    );
    for k in 0..N {
        let _ = gov.check_key(&k);
    }
    let governor = (LIVE.load(Ordering::SeqCst) - before) as f64 / N as f64;
    assert_eq!(gov.len() as u64, N);
    println!("{{\"keys\": {N}, \"ratebound_bytes_per_key\": {gcra:.1}, \"ratebound_sliding_counter_bytes_per_key\": {counter:.1}, \"governor_bytes_per_key\": {governor:.1}, \"ratebound_bounded\": true, \"governor_bounded\": false}}");
}

//! Heap bytes per key of ratebound's keyed store vs governor's keyed limiter
//! (100 000 `u64` keys each), measured with a counting allocator. Prints JSON.
// The counting allocator needs `unsafe impl GlobalAlloc`; measurement only.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicIsize, Ordering};

use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter};
use ratebound_core::{Gcra, Instant};
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

fn main() {
    let before = LIVE.load(Ordering::SeqCst);
    let ours = KeyedLimiter::new(
        Gcra::per_second(10).expect("valid"),
        KeyedConfig::default()
            .with_max_keys(N as usize)
            .with_shards(1),
        ManualClock::new(Instant::from_secs(1_795_392_000)),
    )
    .expect("valid");
    for k in 0..N {
        ours.check(&k, 1).expect("room for every key");
    }
    let ratebound = (LIVE.load(Ordering::SeqCst) - before) as f64 / N as f64;
    drop(ours);

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
    println!("{{\"keys\": {N}, \"ratebound_bytes_per_key\": {ratebound:.1}, \"governor_bytes_per_key\": {governor:.1}, \"ratebound_bounded\": true, \"governor_bounded\": false}}");
}

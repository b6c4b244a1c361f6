//! One governor direct limiter (`no_std`, a clock reading the same timer) in a
//! bare-metal loop: the peer of `ratebound-atomic`.
#![no_std]
#![no_main]
#![allow(unsafe_code)]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::num::NonZeroU32;

use governor::clock::Clock;
use governor::nanos::Nanos;
use governor::{Quota, RateLimiter};
use ratebound_embedded_size::{output, tick};

/// governor's `no_std` build links `alloc` (for its keyed maps); the direct
/// limiter never allocates, so this allocator is never called and the
/// optimizer drops it.
struct NoAlloc;
unsafe impl GlobalAlloc for NoAlloc {
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
}
#[global_allocator]
static ALLOC: NoAlloc = NoAlloc;

/// The timer as governor's clock.
#[derive(Clone, Default)]
struct Timer(Cell<u64>);
impl Clock for Timer {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        let mut now = self.0.get();
        let us = tick(&mut now);
        self.0.set(now);
        Nanos::from(us * 1_000)
    }
}

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let (Some(rate), Some(burst)) = (NonZeroU32::new(5), NonZeroU32::new(10)) else {
        loop {}
    };
    let limiter = RateLimiter::direct_with_clock(
        Quota::per_second(rate).allow_burst(burst),
        Timer::default(),
    );
    loop {
        output(limiter.check().is_ok() as u32);
    }
}

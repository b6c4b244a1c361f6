//! One ratebound `Gcra` (the caller holds the state) in a bare-metal loop.
#![no_std]
#![no_main]
#![allow(unsafe_code)]

use ratebound_core::{Duration, Gcra, GcraState, Instant};
use ratebound_embedded_size::{output, tick};

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let Ok(limiter) = Gcra::new(10, 5, Duration::from_secs(1)) else {
        loop {}
    };
    let mut state = GcraState::default();
    let mut now = 0;
    loop {
        // The verdict only, as governor's image writes: the same work asked of both.
        output(
            limiter
                .check(&mut state, Instant::from_micros(tick(&mut now)), 1)
                .is_ok_and(|d| d.allowed) as u32,
        );
    }
}

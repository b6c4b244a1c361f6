//! One ratebound `AtomicGcra` (shareable, like governor's direct limiter) in a
//! bare-metal loop.
#![no_std]
#![no_main]
#![allow(unsafe_code)]

use ratebound_core::{AtomicGcra, Duration, Gcra, Instant};
use ratebound_embedded_size::{output, tick};

static LIMITER: AtomicGcra = match Gcra::new(10, 5, Duration::from_secs(1)) {
    Ok(g) => match AtomicGcra::new(g) {
        Ok(a) => a,
        Err(_) => panic!("limiter"),
    },
    Err(_) => panic!("limiter"),
};

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let mut now = 0;
    loop {
        // The verdict only, as governor's image writes: the same work asked of both.
        output(
            LIMITER
                .check(Instant::from_micros(tick(&mut now)), 1)
                .is_ok_and(|d| d.allowed) as u32,
        );
    }
}

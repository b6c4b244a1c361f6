//! One ratebound `Gcra` built in a `const`: the rate's arithmetic (lowest
//! terms, tolerance) is evaluated at compile time and its divisions fold into
//! the code, as they do for the `static` `AtomicGcra`.
#![no_std]
#![no_main]
#![allow(unsafe_code)]

use ratebound_core::{Duration, Gcra, GcraState, Instant};
use ratebound_embedded_size::{output, tick};

const LIMITER: Gcra = match Gcra::new(10, 5, Duration::from_secs(1)) {
    Ok(g) => g,
    Err(_) => panic!("limiter"),
};

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let mut state = GcraState::default();
    let mut now = 0;
    loop {
        // The verdict only, as governor's image writes: the same work asked of both.
        output(
            LIMITER
                .check(&mut state, Instant::from_micros(tick(&mut now)), 1)
                .is_ok_and(|d| d.allowed) as u32,
        );
    }
}

//! One GCRA limiter in a bare-metal loop: reads a timer register, decides,
//! writes the verdict to a GPIO-like register. Exists to be measured.
#![no_std]
#![no_main]
// Volatile MMIO is the only way to keep the optimizer honest here.
#![allow(unsafe_code)]

use core::panic::PanicInfo;

use ratebound_core::{Duration, Gcra, GcraState, Instant};

const TIMER: *const u32 = 0xE000_E018 as *const u32; // SysTick current value
const OUT: *mut u32 = 0x4800_0014 as *mut u32; // a GPIO output register

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let Ok(limiter) = Gcra::new(10, 5, Duration::from_secs(1)) else { loop {} };
    let mut state = GcraState::default();
    let mut now: u64 = 0;
    loop {
        now = now.wrapping_add(u64::from(unsafe { core::ptr::read_volatile(TIMER) }));
        let allowed = match limiter.check(&mut state, Instant::from_micros(now), 1) {
            Ok(d) => d.allowed as u32 | (d.remaining as u32) << 1,
            Err(_) => 0,
        };
        unsafe { core::ptr::write_volatile(OUT, allowed) };
    }
}

//! What every image shares: a timer to read, a register to write the verdict
//! to, and a panic handler. Volatile MMIO keeps the optimizer from deleting
//! the limiter; the images are measured, never run.
#![no_std]
// Volatile MMIO is the only way to keep the optimizer honest here.
#![allow(unsafe_code)]

use core::panic::PanicInfo;

const TIMER: *const u32 = 0xE000_E018 as *const u32; // e.g. SysTick's current value
const OUT: *mut u32 = 0x4800_0014 as *mut u32; // e.g. a GPIO output register

/// Advances `now` (µs) by what the timer reads.
#[inline(always)]
pub fn tick(now: &mut u64) -> u64 {
    *now = now.wrapping_add(u64::from(unsafe { core::ptr::read_volatile(TIMER) }));
    *now
}

/// Writes a verdict.
#[inline(always)]
pub fn output(v: u32) {
    unsafe { core::ptr::write_volatile(OUT, v) };
}

#[panic_handler]
fn panic(_: &PanicInfo) -> ! {
    loop {}
}

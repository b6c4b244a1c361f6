//! An embassy-time driver on the Cortex-M SysTick: a 1 kHz interrupt counts
//! milliseconds and wakes the timers that are due; `now` adds the counter's
//! progress within the current millisecond, so the clock reads in µs.
use core::cell::{Cell, RefCell};
use core::task::Waker;

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;
use critical_section::{CriticalSection, Mutex};
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

/// The mps2-an386 board's system clock, which SysTick counts.
const CLOCK_HZ: u32 = 25_000_000;
const TICKS_PER_MS: u32 = CLOCK_HZ / 1_000;
const TICKS_PER_US: u32 = CLOCK_HZ / 1_000_000;

struct SysTickDriver {
    ms: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    ms: Mutex::new(Cell::new(0)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

impl SysTickDriver {
    fn now_in(&self, cs: CriticalSection<'_>) -> u64 {
        let ms = self.ms.borrow(cs).get();
        // The counter may wrap while interrupts are off: its interrupt is
        // then pending and the millisecond not yet counted. Read it before and
        // after the pending flag, and use the reading that matches the flag.
        let before = SYST::get_current();
        let wrapped = SCB::is_pendst_pending();
        let after = SYST::get_current();
        let (ms, current) = if wrapped {
            (ms + 1, after)
        } else {
            (ms, before)
        };
        ms * 1_000 + u64::from((TICKS_PER_MS - 1 - current) / TICKS_PER_US)
    }
}

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.now_in(cs))
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        // Due timers are woken by the next tick, at most 1 ms away.
        critical_section::with(|cs| {
            self.queue.borrow_ref_mut(cs).schedule_wake(at, waker);
        });
    }
}

/// Starts the clock at 0 with a 1 ms SysTick.
pub(crate) fn start() {
    let Some(mut p) = cortex_m::Peripherals::take() else {
        panic!("the core peripherals were already taken");
    };
    p.SYST.set_clock_source(SystClkSource::Core);
    p.SYST.set_reload(TICKS_PER_MS - 1);
    p.SYST.clear_current();
    p.SYST.enable_interrupt();
    p.SYST.enable_counter();
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let ms = DRIVER.ms.borrow(cs);
        ms.set(ms.get() + 1);
        let now = DRIVER.now_in(cs);
        DRIVER.queue.borrow_ref_mut(cs).next_expiration(now);
    });
}

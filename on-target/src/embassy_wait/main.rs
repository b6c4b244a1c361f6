//! Two embassy tasks share one `AtomicGcra` (3 at once, 20 per second) on a
//! Cortex-M4F: one checks and, when denied, sleeps with `embassy_time::Timer`
//! until the decision's `retry_at`; the other waits with core's
//! `embassy::acquire`. The run checks that each of the first task's wakes
//! comes at or after `retry_at` (never early) and within the driver's 1 ms
//! tick of it, that it slept at least once per admission past the burst (so
//! those checks ran), and that both tasks' admissions together follow the
//! rate: neither sooner nor later than the limiter allows. Exits non-zero
//! otherwise (a fault too).
#![no_std]
#![no_main]

mod systick_driver;

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m_rt::{exception, ExceptionFrame};
use embassy_executor::Spawner;
use ratebound_core::embassy::{acquire, wait_until};
use ratebound_core::{AtomicGcra, Duration, Gcra, Instant};
use semihosting::{println, process};

/// Admissions each task asks for.
const PER_TASK: u32 = 15;
/// Burst and rate of the shared limiter.
const BURST: u64 = 3;
const INTERVAL_US: u64 = 50_000;
/// A wake may come this long after `retry_at`: the driver's 1 ms tick plus
/// the executor's turn.
const LATE_US: u64 = 1_500;
/// From the clock's start to the first check.
const START_SLACK_US: u64 = 1_000;

static LIMITER: AtomicGcra = match Gcra::new(BURST, 20, Duration::from_secs(1)) {
    Ok(g) => match AtomicGcra::new(g) {
        Ok(a) => a,
        Err(_) => panic!("limiter"),
    },
    Err(_) => panic!("limiter"),
};
static DONE: AtomicU32 = AtomicU32::new(0);

fn now() -> Instant {
    embassy_time::Instant::now().into()
}

fn fail(what: &str) -> ! {
    println!("embassy wait on Cortex-M4F: FAILED: {what}");
    process::exit(1)
}

/// Checks; on a denial sleeps until `retry_at` and checks the wake.
#[embassy_executor::task]
async fn checker() {
    let (mut waits, mut latest) = (0u32, 0u64);
    let mut admitted = 0;
    while admitted < PER_TASK {
        let d = match LIMITER.check(now(), 1) {
            Ok(d) => d,
            Err(_) => fail("a cost of 1 must fit"),
        };
        if d.allowed {
            admitted += 1;
            yield_now().await;
            continue;
        }
        wait_until(d.retry_at).await;
        let woke = now();
        if woke < d.retry_at {
            println!(
                "woke at {} µs, retry_at {} µs",
                woke.as_micros(),
                d.retry_at.as_micros()
            );
            fail("woke before retry_at");
        }
        let late = woke.as_micros() - d.retry_at.as_micros();
        if late > LATE_US {
            println!("woke {late} µs after retry_at");
            fail("woke too long after retry_at");
        }
        waits += 1;
        latest = latest.max(late);
    }
    // Past the shared burst, a token is there only at a denial's `retry_at`:
    // the checker finds one right after its own admission only within the burst.
    if u64::from(waits) < u64::from(PER_TASK) - BURST {
        println!("{waits} sleeps for {PER_TASK} admissions");
        fail("too few sleeps: the wake checks did not run");
    }
    println!("  checker: {PER_TASK} admitted, {waits} sleeps until retry_at, each woke 0..={latest} µs after it");
    finish().await;
}

/// Waits with core's `acquire`.
#[embassy_executor::task]
async fn acquirer() {
    for _ in 0..PER_TASK {
        match acquire(&LIMITER, 1).await {
            Ok(d) if d.allowed => {}
            _ => fail("acquire returned without admitting"),
        }
    }
    println!("  acquirer: {PER_TASK} admitted through embassy::acquire");
    finish().await;
}

/// The last task to finish checks the pace of the whole run and exits.
async fn finish() {
    if DONE.fetch_add(1, Ordering::SeqCst) + 1 < 2 {
        return;
    }
    let end = now().as_micros();
    // The first BURST admissions come at once, then one per interval: the
    // last of 2·PER_TASK can come no sooner than this, and with both tasks
    // always asking, no later than this plus a wake's lateness.
    let due = (u64::from(2 * PER_TASK) - BURST) * INTERVAL_US;
    println!(
        "embassy wait on Cortex-M4F: {} admissions by {} µs (the rate allows the last at {due} µs)",
        2 * PER_TASK,
        end
    );
    if end < due {
        fail("admitted faster than the rate");
    }
    if end > due + START_SLACK_US + LATE_US {
        fail("admitted slower than the rate");
    }
    process::exit(0)
}

/// Lets the other task run between two admissions.
async fn yield_now() {
    embassy_time::Timer::after(embassy_time::Duration::from_ticks(0)).await
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    println!("hard fault at pc {:#010x}", frame.pc());
    process::exit(3)
}

#[embassy_executor::main]
async fn main(spawner: Spawner) {
    systick_driver::start();
    spawner.spawn(checker().unwrap_or_else(|_| fail("spawn checker")));
    spawner.spawn(acquirer().unwrap_or_else(|_| fail("spawn acquirer")));
}

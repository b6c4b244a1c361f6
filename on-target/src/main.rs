//! Replays every trace fixture (`fixtures/traces`) on the chip it runs on and
//! exits 0 only if every step's result and state equal core's recorded ones.
//! Output and exit status travel over semihosting; a panic or a fault exits
//! non-zero too.
#![no_std]
#![no_main]

mod board;
mod calls;
mod keyed_store;
mod records;
mod replay;
mod tally;

use semihosting::println;

/// The fixtures, as `build.rs` wrote them.
static IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fixtures.bin"));

/// Runs the replay; the board's entry point exits with what this returns.
fn run() -> i32 {
    println!(
        "on-target replay on {}: {} bytes of fixtures",
        board::NAME,
        IMAGE.len()
    );
    let tally = replay::all(IMAGE);
    for (machine, steps, mismatches) in tally.lines() {
        println!("  {machine}: {steps} steps, {mismatches} mismatches");
    }
    println!(
        "on-target replay on {}: {} steps, {} mismatches",
        board::NAME,
        tally.steps(),
        tally.mismatches()
    );
    if tally.passed() {
        0
    } else {
        1
    }
}

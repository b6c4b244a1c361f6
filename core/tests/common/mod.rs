//! A fake clock for scenario tests.
#![allow(dead_code)]

use ratebound_core::{Duration, Instant};

/// A manual clock: time only moves when told to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FakeClock(pub Instant);

impl FakeClock {
    /// Starting at a realistic Unix time in µs (2026-11-23T00:00:00Z).
    pub(crate) fn new() -> Self {
        FakeClock(Instant::from_secs(1_795_392_000))
    }
    pub(crate) fn now(&self) -> Instant {
        self.0
    }
    pub(crate) fn advance(&mut self, d: Duration) -> Instant {
        self.0 += d;
        self.0
    }
    pub(crate) fn set(&mut self, t: Instant) {
        self.0 = t;
    }
}

//! `embassy` feature: conversions from `embassy_time` and waiting with its `Timer`.
//!
//! `embassy_time::Instant` counts from boot, not from the Unix epoch: fine for
//! limiters that live in one device, not for state shared with servers.
//!
//! [`acquire`] waits on a [`crate::AtomicGcra`] and needs the
//! `atomic` feature too (default; on thumbv6m / riscv32imc with
//! `critical-section`); the conversions and [`wait_until`] need only `embassy`.
//!
//! ```no_run
//! use ratebound_core::{AtomicGcra, Gcra};
//! # async fn task(limiter: &AtomicGcra) -> Result<(), ratebound_core::CostError> {
//! // In an embassy task: wait for a token, then do the work.
//! let d = ratebound_core::embassy::acquire(limiter, 1).await?;
//! assert!(d.allowed);
//! # Ok(()) }
//! ```

#[cfg(feature = "atomic")]
use crate::{AtomicGcra, CostError, Decision};
use crate::{Duration, Instant};

impl From<embassy_time::Instant> for Instant {
    fn from(i: embassy_time::Instant) -> Instant {
        Instant::from_micros(i.as_micros())
    }
}

impl From<embassy_time::Duration> for Duration {
    fn from(d: embassy_time::Duration) -> Duration {
        Duration::from_micros(d.as_micros())
    }
}

impl From<Instant> for embassy_time::Instant {
    fn from(i: Instant) -> embassy_time::Instant {
        embassy_time::Instant::from_micros(i.as_micros())
    }
}

/// Sleep until `at` (for example a decision's `retry_at`) with `embassy_time::Timer`.
pub async fn wait_until(at: Instant) {
    embassy_time::Timer::at(at.into()).await
}

/// Wait until `limiter` admits `cost`, then consume it. Reads the embassy
/// clock for each attempt and sleeps until each denial's `retry_at`.
/// Errors at once (without waiting) when `cost` can never fit.
#[cfg(feature = "atomic")]
#[cfg_attr(docsrs, doc(cfg(feature = "atomic")))]
pub async fn acquire(limiter: &AtomicGcra, cost: u64) -> Result<Decision, CostError> {
    loop {
        let d = limiter.check(embassy_time::Instant::now().into(), cost)?;
        if d.allowed {
            return Ok(d);
        }
        wait_until(d.retry_at).await;
    }
}

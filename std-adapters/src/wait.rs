//! Turning core's "retry at" into sleeps: the one acquire loop every shell uses.

use ratebound_core::{CostError, Decision, Duration, Instant};

use crate::clock::Clock;

/// Why an `acquire` returned without admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AcquireError {
    /// The cost can never fit; waiting would not help.
    #[error(transparent)]
    Cost(#[from] CostError),
    /// The next chance (`retry_at`) lies beyond the caller's deadline.
    #[error("rate limited: next chance at {retry_at} is past the deadline {deadline}")]
    WouldWait {
        /// When the cost could be admitted.
        retry_at: Instant,
        /// The caller's deadline.
        deadline: Instant,
    },
    /// A keyed store is full of active keys and refuses new ones.
    #[error("keyed store full: all {capacity} slots hold active keys; new keys are refused")]
    StoreFull {
        /// The store's key capacity.
        capacity: usize,
    },
}

/// Time from `clock`'s now until `at`, at least 1 µs so no loop can spin.
fn wait_for<C: Clock + ?Sized>(clock: &C, at: Instant) -> std::time::Duration {
    std::time::Duration::from_micros(at.duration_after(clock.now()).as_micros().max(1))
}

fn give_up(d: &Decision, deadline: Option<Instant>) -> Result<(), AcquireError> {
    match deadline {
        Some(deadline) if d.retry_at > deadline => Err(AcquireError::WouldWait {
            retry_at: d.retry_at,
            deadline,
        }),
        _ => Ok(()),
    }
}

/// Check until admitted, sleeping (tokio) until each denial's `retry_at`.
///
/// Cancellation-safe as long as `check` consumes only when it returns an
/// admitted decision (true of every core state machine).
pub(crate) async fn acquire_loop<C: Clock + ?Sized>(
    clock: &C,
    max_wait: Option<std::time::Duration>,
    mut check: impl FnMut(Instant) -> Result<Decision, AcquireError>,
) -> Result<Decision, AcquireError> {
    let deadline = max_wait.map(|w| clock.now() + Duration::from(w));
    loop {
        let d = check(clock.now())?;
        if d.allowed {
            return Ok(d);
        }
        give_up(&d, deadline)?;
        tracing::trace!(
            wait_us = d.retry_at.duration_after(clock.now()).as_micros(),
            "rate limited; waiting"
        );
        tokio::time::sleep(wait_for(clock, d.retry_at)).await;
    }
}

/// [`acquire_loop`] sleeping the thread instead of a task.
pub(crate) fn acquire_loop_blocking<C: Clock + ?Sized>(
    clock: &C,
    max_wait: Option<std::time::Duration>,
    mut check: impl FnMut(Instant) -> Result<Decision, AcquireError>,
) -> Result<Decision, AcquireError> {
    let deadline = max_wait.map(|w| clock.now() + Duration::from(w));
    loop {
        let d = check(clock.now())?;
        if d.allowed {
            return Ok(d);
        }
        give_up(&d, deadline)?;
        std::thread::sleep(wait_for(clock, d.retry_at));
    }
}

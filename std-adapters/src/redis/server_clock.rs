//! Redis's clock as the client knows it, for call deadlines.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration as StdDuration, Instant};

use redis::Value;

use super::StoreError;

/// How often the store learns Redis's clock again (for call deadlines).
const CLOCK_SYNC: StdDuration = StdDuration::from_secs(10);

/// Redis's clock as seen from here: `redis_us ≈ local_us + offset`, where
/// `local_us` counts from `origin` on the monotonic clock. The offset is a
/// lower bound (server time read minus the local time the reply arrived),
/// so a deadline built from it is never later than the caller's own.
pub(super) struct ServerClock {
    origin: Instant,
    offset: AtomicI64,
    /// Local µs of the last sync, plus one; 0: never synced.
    synced: AtomicU64,
    /// A call is syncing a stale clock (the others use the last offset).
    syncing: AtomicBool,
}

/// Frees [`ServerClock::syncing`] when the sync ends or is cancelled.
pub(super) struct Syncing<'a>(&'a AtomicBool);

impl Drop for Syncing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl ServerClock {
    pub(super) fn new() -> Self {
        ServerClock {
            origin: Instant::now(),
            offset: AtomicI64::new(0),
            synced: AtomicU64::new(0),
            syncing: AtomicBool::new(false),
        }
    }

    fn local_us(&self, at: Instant) -> i64 {
        at.saturating_duration_since(self.origin).as_micros() as i64
    }

    /// When the offset is older than [`CLOCK_SYNC`], the one call that
    /// gets to refresh it (a clock never synced has no connection yet:
    /// connecting syncs it).
    pub(super) fn claim_sync(&self, now: Instant) -> Option<Syncing<'_>> {
        let synced = self.synced.load(Ordering::Acquire);
        let stale =
            synced != 0 && self.local_us(now) + 1 - synced as i64 > CLOCK_SYNC.as_micros() as i64;
        (stale
            && self
                .syncing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok())
        // Lazily: a guard built and dropped would free the claim.
        .then(|| Syncing(&self.syncing))
    }

    /// Learns the offset from a `TIME` reply that arrived at `received`.
    pub(super) fn record(&self, reply: &Value, received: Instant) -> Result<(), StoreError> {
        let us = match reply {
            Value::Array(v) => match v.as_slice() {
                [s, u] => redis::from_redis_value::<i64>(s.clone())
                    .ok()
                    .zip(redis::from_redis_value::<i64>(u.clone()).ok())
                    .map(|(s, u)| s.saturating_mul(1_000_000).saturating_add(u)),
                _ => None,
            },
            _ => None,
        }
        .ok_or_else(|| StoreError::Protocol(format!("unexpected TIME reply {reply:?}")))?;
        let local = self.local_us(received);
        self.offset.store(us - local, Ordering::Release);
        self.synced.store(local as u64 + 1, Ordering::Release);
        Ok(())
    }

    /// The Redis time (µs) by which a call started at `started` is given up.
    pub(super) fn deadline(&self, started: Instant, timeout: StdDuration) -> u64 {
        let local = self
            .local_us(started)
            .saturating_add(timeout.as_micros() as i64);
        local
            .saturating_add(self.offset.load(Ordering::Acquire))
            .max(0) as u64
    }
}

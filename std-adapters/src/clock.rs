//! Clocks: where shells get the `now` they hand to core.
//!
//! Every clock reports microseconds since the **Unix epoch**, so state made
//! by one process means the same in another, in Redis, or in JavaScript.
//!
//! | Clock | Reads | Use |
//! |---|---|---|
//! | [`SystemClock`] | `SystemTime` | state shared across processes; may step if the OS clock is set |
//! | [`MonotonicClock`] | the CPU's time-stamp counter ([quanta](https://docs.rs/quanta); the OS monotonic clock where there is none), anchored to Unix time once | one process, hot paths (benches `clock_read`, 2-core VM: 9.6 ns a read, against 23.3 for `std::time::Instant` and 35.5 for `SystemClock`); never reads before its anchor, and goes back no more than the CPU's counter does (never, where the counters agree across cores: invariant TSCs); the first clock in a process calibrates the counter once |
//! | [`TokioClock`] | `tokio::time::Instant`, anchored once | honours `tokio::time::pause()` / `advance()` in tests |
//! | [`ManualClock`] | a shared counter you set | deterministic tests |
//!
//! Core tolerates a clock that steps backwards (it never grants extra
//! capacity for it), so any of these is safe.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ratebound_core::{Duration, Instant};

/// A source of `now` for core decisions.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Instant;
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

fn unix_now() -> Instant {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    Instant::from_micros(u64::try_from(us).unwrap_or(u64::MAX))
}

/// Wall-clock time: `SystemTime::now()` as Unix microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        unix_now()
    }
}

/// Unix time read once, then advanced by a monotonic clock (quanta's
/// calibrated time-stamp counter, which governor also reads): never reads
/// before its anchor, goes back only if the CPU's counter does, drifts from
/// wall time only as the two clocks do. It reads the
/// counter itself, so quanta's mock clocks do not move it: tests use
/// [`ManualClock`] or [`TokioClock`].
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    base: Instant,
    /// The counter's raw reading at `base`.
    start: u64,
    counter: &'static quanta::Clock,
}

/// The process's calibrated counter. Held here rather than read through
/// `quanta::Instant::now`, which looks up a thread-local override (a mock
/// clock) on every read first.
fn counter() -> &'static quanta::Clock {
    static COUNTER: std::sync::OnceLock<quanta::Clock> = std::sync::OnceLock::new();
    COUNTER.get_or_init(quanta::Clock::new)
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl MonotonicClock {
    /// Anchored at the current Unix time.
    pub fn new() -> Self {
        let counter = counter();
        MonotonicClock {
            base: unix_now(),
            start: counter.raw(),
            counter,
        }
    }
}

impl Clock for MonotonicClock {
    // Inlined into the (generic) stores that read it on every decision,
    // rather than called across crates.
    #[inline]
    fn now(&self) -> Instant {
        // Scaled to nanoseconds; 0 if this core's counter reads behind
        // the one that set `start` (never before `base`).
        let elapsed = self.counter.delta_as_nanos(self.start, self.counter.raw());
        Instant::from_micros(self.base.as_micros().saturating_add(elapsed / 1_000))
    }
}

/// Tokio's clock anchored to Unix time at construction; follows
/// `tokio::time::pause()` and `advance()`, so tests of waiting are instant
/// and exact. Construct it inside a runtime when time is paused.
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    base: Instant,
    start: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl TokioClock {
    /// Anchored at the current Unix time.
    pub fn new() -> Self {
        Self::anchored_at(unix_now())
    }
    /// Anchored so that "now" reads `base` (deterministic tests).
    pub fn anchored_at(base: Instant) -> Self {
        TokioClock {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        self.base + Duration::from(self.start.elapsed())
    }
}

/// A clock that moves only when told to. Clones share the same time.
///
/// ```
/// use ratebound_std::clock::{Clock, ManualClock};
/// use ratebound_core::{Duration, Instant};
/// let c = ManualClock::new(Instant::from_secs(10));
/// let c2 = c.clone();
/// c.advance(Duration::from_secs(1));
/// assert_eq!(c2.now(), Instant::from_secs(11));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// Reading `at`.
    pub fn new(at: Instant) -> Self {
        ManualClock(Arc::new(AtomicU64::new(at.as_micros())))
    }
    /// Jump to `at` (backwards is allowed: that is a test case too).
    pub fn set(&self, at: Instant) {
        self.0.store(at.as_micros(), Ordering::SeqCst);
    }
    /// Move forward by `d`.
    pub fn advance(&self, d: Duration) -> Instant {
        let step = |t: u64| Some(t.saturating_add(d.as_micros()));
        let prev = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, step)
            .unwrap_or_default();
        Instant::from_micros(prev) + d
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        Instant::from_micros(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_and_monotonic_are_unix_based() {
        let s = SystemClock.now();
        assert!(s > Instant::from_secs(1_700_000_000));
        let m = MonotonicClock::new();
        let a = m.now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = m.now();
        let wall = SystemClock.now();
        assert!(b >= a + Duration::from_millis(20), "{a:?} then {b:?}");
        assert!(a.saturating_duration_since(s) < Duration::from_secs(5));
        // It keeps pace with wall time (within scheduling noise).
        let drift = wall
            .saturating_duration_since(b)
            .max(b.saturating_duration_since(wall));
        assert!(drift < Duration::from_millis(50), "{drift:?}");
    }

    #[test]
    fn monotonic_reads_never_go_back_on_one_thread_nor_before_the_anchor() {
        let m = MonotonicClock::new();
        let anchor = m.base;
        let mut last = m.now();
        assert!(last >= anchor);
        for _ in 0..100_000 {
            let now = m.now();
            assert!(now >= last, "{last:?} then {now:?}");
            last = now;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = TokioClock::anchored_at(Instant::from_secs(100));
        tokio::time::advance(std::time::Duration::from_millis(1_500)).await;
        assert_eq!(c.now(), Instant::from_millis(101_500));
    }
}

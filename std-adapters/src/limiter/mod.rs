//! Shared limiters: any core state machine, safe across threads and tasks,
//! with `check`, `peek`, and waiting `acquire`.
//!
//! The decision is always core's; this module only stores state (an atomic
//! word or a mutex) and waits for the `retry_at` core returns.
//!
//! ```
//! use ratebound_std::limiter::RateLimiter;
//! use ratebound_std::clock::TokioClock;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 10 per second, bursts of 10; lock-free.
//! let limiter = RateLimiter::gcra(10, 10, std::time::Duration::from_secs(1), TokioClock::new())?;
//! for _ in 0..10 {
//!     assert!(limiter.check(1)?.allowed);
//! }
//! // Waits (here: virtual time) until a token is back, then takes it.
//! let d = limiter.acquire(1).await?;
//! assert!(d.allowed);
//! # Ok(()) }
//! ```

mod any;
pub use any::{AnyLimiter, AnyState, CONFIG_LOG_SLOTS};
mod set;
pub use set::{LimitSet, SetState, MAX_SET_MEMBERS};

use std::sync::Mutex;

use ratebound_core::{AtomicGcra, ConfigError, CostError, Decision, Gcra, Instant, Limiter};

use crate::clock::Clock;
use crate::wait::{acquire_loop, acquire_loop_blocking, AcquireError};

/// A thread-safe decision maker: core's `check`/`peek` over shared state.
pub trait SharedLimiter: Send + Sync {
    /// Consume `cost` at `now` if allowed.
    fn check(&self, now: Instant, cost: u64) -> Result<Decision, CostError>;
    /// What `check` would say, consuming nothing.
    fn peek(&self, now: Instant, cost: u64) -> Result<Decision, CostError>;
}

impl SharedLimiter for AtomicGcra {
    fn check(&self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        AtomicGcra::check(self, now, cost)
    }
    fn peek(&self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        AtomicGcra::peek(self, now, cost)
    }
}

/// Any core [`Limiter`] with its state behind a mutex.
#[derive(Debug)]
pub struct MutexLimiter<L: Limiter> {
    limiter: L,
    state: Mutex<L::State>,
}

impl<L: Limiter> MutexLimiter<L> {
    /// A fresh state for `limiter`.
    pub fn new(limiter: L) -> Self {
        MutexLimiter {
            limiter,
            state: Mutex::new(L::State::default()),
        }
    }
    /// Start from a saved state.
    pub fn with_state(limiter: L, state: L::State) -> Self {
        MutexLimiter {
            limiter,
            state: Mutex::new(state),
        }
    }
    /// The core limiter.
    pub fn limiter(&self) -> &L {
        &self.limiter
    }
    /// Run `f` on the state under the lock (e.g. to snapshot or refund).
    /// `f` must not call back into this limiter (the lock is not re-entrant).
    pub fn with<R>(&self, f: impl FnOnce(&L, &mut L::State) -> R) -> R {
        // A panic in another thread while holding the lock cannot leave a
        // core state half-written (core never panics mid-update), so the
        // poisoned value is still valid.
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&self.limiter, &mut g)
    }
}

impl<L> SharedLimiter for MutexLimiter<L>
where
    L: Limiter + Send + Sync,
    L::State: Send,
{
    fn check(&self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        self.with(|l, s| l.check(s, now, cost))
    }
    fn peek(&self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        self.with(|l, s| l.peek(s, now, cost))
    }
}

/// A shared GCRA bucket: lock-free when the rate packs into one atomic word
/// (see [`AtomicGcra`]), otherwise behind a mutex. Same decisions either way.
#[derive(Debug)]
pub enum SharedGcra {
    /// Lock-free.
    Atomic(AtomicGcra),
    /// Mutex-protected (rates whose reduced denominator exceeds 2048).
    Mutex(MutexLimiter<Gcra>),
}

impl SharedGcra {
    /// The best representation for `gcra`.
    pub fn new(gcra: Gcra) -> Self {
        match AtomicGcra::new(gcra) {
            Ok(a) => SharedGcra::Atomic(a),
            Err(_) => SharedGcra::Mutex(MutexLimiter::new(gcra)),
        }
    }
    /// Give back up to `n` tokens at `now`, never above full.
    pub fn refund(&self, now: Instant, n: u64) -> Decision {
        match self {
            SharedGcra::Atomic(a) => a.refund(now, n),
            SharedGcra::Mutex(l) => l.with(|g, s| g.refund(s, now, n)),
        }
    }
    /// Take up to `n` tokens at `now`.
    pub fn check_at_most(&self, now: Instant, n: u64) -> ratebound_core::Taken {
        match self {
            SharedGcra::Atomic(a) => a.check_at_most(now, n),
            SharedGcra::Mutex(l) => l.with(|g, s| g.check_at_most(s, now, n)),
        }
    }
}

impl SharedLimiter for SharedGcra {
    fn check(&self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        match self {
            SharedGcra::Atomic(a) => a.check(now, cost),
            SharedGcra::Mutex(l) => l.check(now, cost),
        }
    }
    fn peek(&self, now: Instant, cost: u64) -> Result<Decision, CostError> {
        match self {
            SharedGcra::Atomic(a) => a.peek(now, cost),
            SharedGcra::Mutex(l) => l.peek(now, cost),
        }
    }
}

/// A limiter with a clock: `check` now, or `acquire` (wait until allowed).
///
/// Share it with `Arc`. Waiting is cancellation-safe: tokens are taken only
/// in the same poll that returns the admitted decision, so dropping an
/// `acquire` future never consumes anything.
///
/// Waiters are not queued: each sleeps until its own `retry_at` and checks
/// again, so a large-cost waiter can be overtaken by small ones that keep
/// taking tokens first (bound that with `max_wait`). Async waits sleep on
/// tokio's timer: use a clock that moves with real or tokio time
/// ([`SystemClock`](crate::clock::SystemClock), [`TokioClock`](crate::clock::TokioClock)),
/// not a [`ManualClock`](crate::clock::ManualClock). The `*_blocking`
/// variants block the thread: do not call them on a tokio worker.
#[derive(Debug)]
pub struct RateLimiter<D, C> {
    inner: D,
    clock: C,
}

impl<C: Clock> RateLimiter<SharedGcra, C> {
    /// A GCRA bucket of `capacity`, refilled with `amount` per `period`.
    pub fn gcra(
        capacity: u64,
        amount: u64,
        period: std::time::Duration,
        clock: C,
    ) -> Result<Self, ConfigError> {
        let g = Gcra::new(capacity, amount, period.into())?;
        Ok(RateLimiter::new(SharedGcra::new(g), clock))
    }
    /// Give back up to `n` tokens (for admitted work that did not happen).
    pub fn refund(&self, n: u64) -> Decision {
        self.inner.refund(self.clock.now(), n)
    }
}

impl<D: SharedLimiter, C: Clock> RateLimiter<D, C> {
    /// Wrap a decider and a clock.
    pub fn new(inner: D, clock: C) -> Self {
        RateLimiter { inner, clock }
    }
    /// The decider.
    pub fn inner(&self) -> &D {
        &self.inner
    }
    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }
    /// Consume `cost` now if allowed; a denial carries `retry_at`.
    pub fn check(&self, cost: u64) -> Result<Decision, CostError> {
        self.inner.check(self.clock.now(), cost)
    }
    /// What `check` would say now.
    pub fn peek(&self, cost: u64) -> Result<Decision, CostError> {
        self.inner.peek(self.clock.now(), cost)
    }

    /// Wait until `cost` is admitted, however long that takes. Errors at
    /// once when `cost` can never fit.
    pub async fn acquire(&self, cost: u64) -> Result<Decision, AcquireError> {
        self.acquire_with(cost, None).await
    }

    /// Wait until `cost` is admitted, but not longer than `max_wait`: if the
    /// next chance lies beyond it, fail at once with
    /// [`AcquireError::WouldWait`] instead of sleeping in vain.
    pub async fn acquire_with(
        &self,
        cost: u64,
        max_wait: Option<std::time::Duration>,
    ) -> Result<Decision, AcquireError> {
        acquire_loop(&self.clock, max_wait, |now| {
            Ok(self.inner.check(now, cost)?)
        })
        .await
    }

    /// [`acquire_with`](RateLimiter::acquire_with) for threads without an
    /// async runtime: sleeps the thread.
    pub fn acquire_blocking(
        &self,
        cost: u64,
        max_wait: Option<std::time::Duration>,
    ) -> Result<Decision, AcquireError> {
        acquire_loop_blocking(&self.clock, max_wait, |now| {
            Ok(self.inner.check(now, cost)?)
        })
    }
}

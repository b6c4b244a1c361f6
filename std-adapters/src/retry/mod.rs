//! The retry executor: run an operation again per core's [`Backoff`], with
//! error classification, server hints, a shared retry budget, an `on_retry`
//! hook, max elapsed time, cancellation and `tracing` events.
//!
//! ```
//! use ratebound_std::retry::{Classify, RetryPolicy};
//! use ratebound_core::backoff::{Backoff, Jitter};
//! use ratebound_core::Duration;
//!
//! #[derive(Debug)]
//! enum ApiError { Overloaded { retry_after_ms: u64 }, BadRequest }
//! impl std::fmt::Display for ApiError {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{self:?}") }
//! }
//! impl Classify for ApiError {
//!     fn is_retryable(&self) -> bool { matches!(self, ApiError::Overloaded { .. }) }
//!     fn retry_after(&self) -> Option<std::time::Duration> {
//!         match self { ApiError::Overloaded { retry_after_ms } => Some(std::time::Duration::from_millis(*retry_after_ms)), _ => None }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let policy = RetryPolicy::new(Backoff::new(Duration::from_millis(100), Duration::from_secs(5)).unwrap().with_jitter(Jitter::None));
//! let mut calls = 0;
//! let answer: Result<u32, _> = policy.run(|| { calls += 1; let n = calls; async move {
//!     if n < 3 { Err(ApiError::Overloaded { retry_after_ms: 250 }) } else { Ok(42) }
//! }}).await;
//! assert_eq!(answer.unwrap(), 42);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ratebound_core::backoff::{Backoff, GiveUp, RetryBudget, RetryBudgetState, Step};
use ratebound_core::Duration;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, TokioClock};

mod classify;
pub use classify::{is_retryable_error, wrap_retryable, Classify, RetryableError, RetryableErrors};

/// Why a retried operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RetryError<E> {
    /// The error was classified as not retryable.
    #[error("failed after {attempts} attempt(s), not retryable: {error}")]
    NotRetryable {
        /// The error.
        error: E,
        /// Attempts made.
        attempts: u32,
    },
    /// The policy gave up (retries, elapsed time, hint beyond cap, retry budget).
    #[error("gave up after {attempts} attempt(s) ({reason:?}): {error}")]
    GaveUp {
        /// The last error.
        error: E,
        /// Attempts made.
        attempts: u32,
        /// Why.
        reason: GiveUp,
    },
    /// The cancellation token fired (`attempts` includes one cut short).
    #[error("cancelled after {attempts} attempt(s)")]
    Cancelled {
        /// The last error, if an attempt had failed.
        last: Option<E>,
        /// Attempts made.
        attempts: u32,
    },
}

impl<E> RetryError<E> {
    /// The last error, if any.
    pub fn into_inner(self) -> Option<E> {
        match self {
            RetryError::NotRetryable { error, .. } | RetryError::GaveUp { error, .. } => {
                Some(error)
            }
            RetryError::Cancelled { last, .. } => last,
        }
    }
    /// Attempts made.
    pub fn attempts(&self) -> u32 {
        match self {
            RetryError::NotRetryable { attempts, .. }
            | RetryError::GaveUp { attempts, .. }
            | RetryError::Cancelled { attempts, .. } => *attempts,
        }
    }
}

/// A [`RetryBudget`] shared by many calls (one atomic word), so a failing
/// dependency cannot be hammered by every caller's retries at once.
#[derive(Debug)]
pub struct SharedRetryBudget {
    budget: RetryBudget,
    spent: AtomicU64,
}

impl SharedRetryBudget {
    /// A full budget.
    pub fn new(budget: RetryBudget) -> Self {
        SharedRetryBudget {
            budget,
            spent: AtomicU64::new(0),
        }
    }
    fn update(&self, f: impl Fn(&mut RetryBudgetState) -> bool) -> bool {
        let mut cur = self.spent.load(Ordering::Acquire);
        loop {
            let mut st = RetryBudgetState { spent_milli: cur };
            let out = f(&mut st);
            match self.spent.compare_exchange_weak(
                cur,
                st.spent_milli,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return out,
                Err(actual) => cur = actual,
            }
        }
    }
    /// Record a failure; true when a retry is allowed.
    pub fn on_failure(&self) -> bool {
        self.update(|st| self.budget.on_failure(st))
    }
    /// Record a success.
    pub fn on_success(&self) {
        self.update(|st| {
            self.budget.on_success(st);
            true
        });
    }
    /// True while retries are allowed.
    pub fn can_retry(&self) -> bool {
        self.budget.can_retry(&RetryBudgetState {
            spent_milli: self.spent.load(Ordering::Acquire),
        })
    }
}

/// What the `on_retry` hook sees.
pub struct RetryEvent<'a> {
    /// The retry about to happen (1 for the first retry).
    pub attempt: u32,
    /// The failed attempt's error.
    pub error: &'a dyn fmt::Display,
    /// How long until the retry.
    pub delay: std::time::Duration,
}

impl fmt::Debug for RetryEvent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryEvent")
            .field("attempt", &self.attempt)
            .field("error", &format_args!("{}", self.error))
            .field("delay", &self.delay)
            .finish()
    }
}

type OnRetry = Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>;

/// A retry policy: core's [`Backoff`] plus the shell's options. Cheap to clone.
#[derive(Clone)]
pub struct RetryPolicy {
    backoff: Backoff,
    budget: Option<Arc<SharedRetryBudget>>,
    on_retry: Option<OnRetry>,
    cancel: Option<CancellationToken>,
    seed: Option<u64>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("backoff", &self.backoff)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicy {
    /// [`Backoff::llm_default`]: 1 s doubling to 30 s, full jitter, 3 retries.
    fn default() -> Self {
        RetryPolicy::new(Backoff::llm_default())
    }
}

impl RetryPolicy {
    /// Retry per `backoff`, sleeping on tokio's clock.
    pub fn new(backoff: Backoff) -> Self {
        RetryPolicy {
            backoff,
            budget: None,
            on_retry: None,
            cancel: None,
            seed: None,
            clock: Arc::new(TokioClock::new()),
        }
    }
    /// Share a retry budget across calls.
    pub fn with_budget(mut self, budget: Arc<SharedRetryBudget>) -> Self {
        self.budget = Some(budget);
        self
    }
    /// Call `f` before each retry (Go `policy`'s `OnRetry(attempt, err, delay)`).
    pub fn on_retry(mut self, f: impl Fn(&RetryEvent<'_>) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(Arc::new(f));
        self
    }
    /// Stop (between or during attempts) when `token` is cancelled.
    pub fn with_cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }
    /// Seed the jitter generator (deterministic tests); default: random per run.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// The clock used for elapsed-time limits (default [`TokioClock`]).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }
    /// The backoff.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(|| {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::time::SystemTime::now())
        })
    }

    /// Decide what follows a retryable failure.
    fn step(
        &self,
        st: &mut ratebound_core::backoff::BackoffState,
        hint: Option<std::time::Duration>,
    ) -> Step {
        if let Some(b) = &self.budget {
            if !b.on_failure() {
                return Step::GiveUp(GiveUp::RetryBudget);
            }
        }
        self.backoff
            .next(st, self.clock.now(), hint.map(Duration::from))
    }

    fn announce<E: fmt::Display>(&self, attempt: u32, error: &E, delay: std::time::Duration) {
        tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %error, "retrying");
        if let Some(f) = &self.on_retry {
            f(&RetryEvent {
                attempt,
                error,
                delay,
            });
        }
    }

    /// Run `op` until it succeeds, fails for good, or the policy gives up.
    /// Generic in the success type (Go `policy`'s `DoWithResultTyped`).
    pub async fn run<T, E, F, Fut>(&self, op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + fmt::Display,
    {
        self.run_with(op, |e: &E| e.is_retryable().then(|| e.retry_after()))
            .await
    }

    /// [`run`](RetryPolicy::run) for any error type, retrying the errors
    /// `retryable` picks (no server hints; [`run_with`](RetryPolicy::run_with)
    /// takes them too):
    /// `policy.run_if(|| call(), |e: &MyError| e.is_transient())`.
    pub async fn run_if<T, E, F, Fut>(
        &self,
        op: F,
        retryable: impl Fn(&E) -> bool,
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        self.run_with(op, |e| retryable(e).then_some(None)).await
    }

    /// [`run`](RetryPolicy::run) with a classifier closure instead of the
    /// [`Classify`] trait: `None` means "do not retry", `Some(hint)` retry
    /// (waiting at least `hint` when given).
    pub async fn run_with<T, E, F, Fut>(
        &self,
        mut op: F,
        classify: impl Fn(&E) -> Option<Option<std::time::Duration>>,
    ) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: fmt::Display,
    {
        let mut st = self.backoff.start(self.clock.now(), self.seed());
        let cancel = self.cancel.clone().unwrap_or_default();
        let mut attempts = 0u32;
        let mut last: Option<E> = None;
        loop {
            if cancel.is_cancelled() {
                return Err(RetryError::Cancelled { last, attempts });
            }
            attempts += 1; // counts the attempt in flight if cancelled during it
            let result = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(RetryError::Cancelled { last, attempts }),
                r = op() => r,
            };
            let error = match result {
                Ok(v) => {
                    if let Some(b) = &self.budget {
                        b.on_success();
                    }
                    tracing::debug!(attempts, "succeeded");
                    return Ok(v);
                }
                Err(e) => e,
            };
            let Some(hint) = classify(&error) else {
                tracing::debug!(attempts, %error, "not retryable");
                return Err(RetryError::NotRetryable { error, attempts });
            };
            match self.step(&mut st, hint) {
                Step::GiveUp(reason) => {
                    tracing::warn!(attempts, ?reason, %error, "giving up");
                    return Err(RetryError::GaveUp {
                        error,
                        attempts,
                        reason,
                    });
                }
                Step::Retry { delay, attempt, .. } => {
                    let delay: std::time::Duration = delay.into();
                    self.announce(attempt, &error, delay);
                    last = Some(error);
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return Err(RetryError::Cancelled { last, attempts }),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// The blocking twin of [`run`](RetryPolicy::run): sleeps the thread
    /// between attempts; the cancellation token is checked between attempts.
    pub fn run_blocking<T, E, F>(&self, mut op: F) -> Result<T, RetryError<E>>
    where
        F: FnMut() -> Result<T, E>,
        E: Classify + fmt::Display,
    {
        let mut st = self.backoff.start(self.clock.now(), self.seed());
        let mut attempts = 0u32;
        let mut last: Option<E> = None;
        loop {
            if self
                .cancel
                .as_ref()
                .is_some_and(CancellationToken::is_cancelled)
            {
                return Err(RetryError::Cancelled { last, attempts });
            }
            attempts += 1;
            let error = match op() {
                Ok(v) => {
                    if let Some(b) = &self.budget {
                        b.on_success();
                    }
                    return Ok(v);
                }
                Err(e) => e,
            };
            if !error.is_retryable() {
                return Err(RetryError::NotRetryable { error, attempts });
            }
            match self.step(&mut st, error.retry_after()) {
                Step::GiveUp(reason) => {
                    return Err(RetryError::GaveUp {
                        error,
                        attempts,
                        reason,
                    })
                }
                Step::Retry { delay, attempt, .. } => {
                    let delay: std::time::Duration = delay.into();
                    self.announce(attempt, &error, delay);
                    last = Some(error);
                    std::thread::sleep(delay);
                }
            }
        }
    }
}

/// Retry `op` per `backoff` with defaults (no budget, no hook).
pub async fn retry<T, E, F, Fut>(backoff: Backoff, op: F) -> Result<T, RetryError<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + fmt::Display,
{
    RetryPolicy::new(backoff).run(op).await
}

//! Go `policy`'s `Manager`: a budget, a rate limiter and a retry policy used
//! together around each LLM call.
//!
//! ```
//! use std::sync::Arc;
//! use ratebound_std::{budget::BudgetManager, limiter::RateLimiter, manager::Manager, clock::TokioClock};
//! use ratebound_core::budget::{BudgetConfig, Usage};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let clock = TokioClock::new();
//! let manager = Manager::new()
//!     .with_budget(Arc::new(BudgetManager::new(BudgetConfig::new().tokens_per_minute(10_000), clock)?))
//!     .with_limiter(Arc::new(RateLimiter::gcra(5, 5, std::time::Duration::from_secs(1), clock)?));
//! manager.pre_check(1_000, 0).await?;               // waits for the limiter, checks the budget
//! // Or: wait, then hold the estimate so concurrent calls cannot overshoot.
//! if let Some(hold) = manager.admit(Usage::request(2_000, 0)).await? {
//!     hold.settle(Usage::request(1_500, 0)); // charge what the call really used
//! }
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ratebound_core::budget::Usage;
use ratebound_core::Decision;

use crate::budget::{BudgetDenied, BudgetHold, BudgetManager, UsageRecord};
use crate::clock::Clock;
use crate::limiter::{RateLimiter, SharedLimiter};
use crate::retry::RetryPolicy;
use crate::wait::AcquireError;

/// Something callers can wait on (Go `policy`'s `BlockingRateLimiter.Wait`).
pub trait Wait: Send + Sync {
    /// Wait until `cost` is admitted.
    fn wait(
        &self,
        cost: u64,
    ) -> Pin<Box<dyn Future<Output = Result<Decision, AcquireError>> + Send + '_>>;
}

impl<D: SharedLimiter + 'static, C: Clock> Wait for RateLimiter<D, C> {
    fn wait(
        &self,
        cost: u64,
    ) -> Pin<Box<dyn Future<Output = Result<Decision, AcquireError>> + Send + '_>> {
        Box::pin(self.acquire(cost))
    }
}

/// Why a pre-check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreCheckError {
    /// The rate limiter refused (the cost can never fit).
    #[error(transparent)]
    RateLimit(#[from] AcquireError),
    /// The budget refused.
    #[error(transparent)]
    Budget(#[from] BudgetDenied),
}

/// Budget + rate limiter + retry policy (each optional).
pub struct Manager<C: Clock> {
    budget: Option<Arc<BudgetManager<C>>>,
    limiter: Option<Arc<dyn Wait>>,
    retry: RetryPolicy,
}

impl<C: Clock> Default for Manager<C> {
    fn default() -> Self {
        Manager {
            budget: None,
            limiter: None,
            retry: RetryPolicy::default(),
        }
    }
}

impl<C: Clock> std::fmt::Debug for Manager<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("budget", &self.budget)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl<C: Clock> Manager<C> {
    /// No budget, no limiter, the default retry policy.
    pub fn new() -> Self {
        Self::default()
    }
    /// Use `budget`.
    pub fn with_budget(mut self, budget: Arc<BudgetManager<C>>) -> Self {
        self.budget = Some(budget);
        self
    }
    /// Wait on `limiter` (cost 1 per call) before each call.
    pub fn with_limiter(mut self, limiter: Arc<dyn Wait>) -> Self {
        self.limiter = Some(limiter);
        self
    }
    /// Use `retry` for [`Manager::retry`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    /// The budget, if any.
    pub fn budget(&self) -> Option<&Arc<BudgetManager<C>>> {
        self.budget.as_ref()
    }
    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Go `policy`'s `PreCheck`: fail fast if the budget cannot fit the
    /// estimate, then wait on the rate limiter. Consumes no budget (and the
    /// budget may change during the wait); use [`admit`](Manager::admit) when
    /// concurrent calls must not overshoot.
    pub async fn pre_check(
        &self,
        estimated_tokens: u64,
        estimated_cost: u64,
    ) -> Result<(), PreCheckError> {
        if let Some(b) = &self.budget {
            b.check_budget(estimated_tokens, estimated_cost)?;
        }
        if let Some(l) = &self.limiter {
            l.wait(1).await?;
        }
        Ok(())
    }

    /// Hold `estimate` in the budget, then wait on the rate limiter. Settle
    /// the returned hold with the actual usage (or drop it to release). If
    /// the wait fails or is cancelled, the hold is released; a budget denial
    /// consumes no limiter token. `None` when the manager has no budget.
    pub async fn admit(
        &self,
        estimate: Usage,
    ) -> Result<Option<BudgetHold<'_, C, 256>>, PreCheckError> {
        let hold = match &self.budget {
            Some(b) => Some(b.reserve(estimate)?),
            None => None,
        };
        if let Some(l) = &self.limiter {
            l.wait(1).await?; // on error `hold` drops here and releases
        }
        Ok(hold)
    }

    /// Go `policy`'s `RecordUsage`.
    pub fn record_usage(&self, record: &UsageRecord) {
        if let Some(b) = &self.budget {
            b.record_usage(record);
        }
    }
}

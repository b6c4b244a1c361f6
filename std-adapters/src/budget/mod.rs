//! The budget manager: core's [`Budget`] shared across threads, with the
//! API of Go's `policy` package (`check_budget`, `record_usage`, `status`, `reset`, alert
//! handlers) and reservations that make concurrent requests unable to
//! overshoot between check and record.
//!
//! ```
//! use ratebound_std::budget::{BudgetManager, UsageRecord};
//! use ratebound_std::clock::ManualClock;
//! use ratebound_core::budget::{BudgetConfig, Usage};
//! use ratebound_core::Instant;
//!
//! let clock = ManualClock::new(Instant::from_secs(1_795_392_000));
//! let budget = BudgetManager::new(
//!     BudgetConfig::new().tokens_per_minute(10_000).cost_per_day(2_000_000).alert_threshold_bp(8_000),
//!     clock,
//! )?;
//! let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
//! let s = seen.clone();
//! budget.on_alert(move |a| s.lock().unwrap().push(a.alert_type()));
//!
//! // Two-phase: hold the estimate, then settle the actual usage.
//! let hold = budget.reserve(Usage::request(6_000, 50_000))?;
//! hold.settle(Usage::request(8_500, 70_000));
//! budget.wait_alerts_blocking();
//! assert_eq!(*seen.lock().unwrap(), ["token_minute_threshold"]);
//!
//! // A pre-check and a record, as in Go's `policy`.
//! assert!(budget.check_budget(2_000, 0).is_err());
//! budget.record_usage(&UsageRecord { tokens: 100, cost: 1_000, model: "gpt-4o".into(), ..Default::default() });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use ratebound_core::budget::{
    Admission, Alert, Budget, BudgetConfig, BudgetError, BudgetState, BudgetStatus, Denial,
    Reservation, Settled, Usage,
};
use ratebound_core::{ConfigError, Instant};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;

/// One call's usage, as Go `policy`'s `UsageRecord`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UsageRecord {
    /// Tokens used.
    pub tokens: u64,
    /// Cost in micro-units of currency.
    pub cost: u64,
    /// Model name.
    pub model: String,
    /// Request id.
    pub request_id: String,
    /// User id.
    pub user_id: String,
    /// Agent id.
    pub agent_id: String,
    /// When it happened; `None` for the manager's clock.
    pub timestamp: Option<Instant>,
}

/// Why a budget check or reservation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetDenied {
    /// Not now: retry at `denial.retry_at`.
    #[error("budget exhausted ({:?}); retry at {}", .0.reason, .0.retry_at)]
    Denied(Denial),
    /// Never: the request exceeds a per-request or whole-window maximum.
    #[error(transparent)]
    Invalid(#[from] BudgetError),
}

mod alerts;
mod scoped;
mod spec;
#[cfg(feature = "redis")]
pub use scoped::UnsettledBudget;
pub use scoped::{
    Payer, Scope, ScopedAlert, ScopedBackend, ScopedBudgetConfig, ScopedBudgets, ScopedConfigError,
    ScopedDenied, ScopedHold,
};
pub use spec::BudgetSpec;
#[cfg(feature = "redis")]
mod backend;
#[cfg(feature = "redis")]
mod redis;
pub(crate) use alerts::AlertHub;
pub use alerts::AlertsPending;
#[cfg(feature = "redis")]
pub use backend::{AnyBudgetHold, AnyBudgetManager, BudgetBackend};
#[cfg(feature = "redis")]
pub use redis::{RedisBudgetError, RedisBudgetHold, RedisBudgetManager};

/// A thread-safe budget: core's [`Budget`] with its [`BudgetState`] behind a
/// mutex, a clock, and alert delivery. `R` bounds concurrent reservations.
pub struct BudgetManager<C: Clock, const R: usize = 256> {
    /// The budget with its state: a config change swaps the budget under
    /// the lock every decision takes.
    held: Mutex<Held<R>>,
    clock: C,
    /// Shared with a Redis budget whose local fallback this is: its
    /// alerts reach that budget's handlers and subscribers.
    hub: Arc<AlertHub>,
}

struct Held<const R: usize> {
    budget: Budget,
    state: BudgetState<R>,
}

impl<C: Clock, const R: usize> std::fmt::Debug for BudgetManager<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetManager")
            .field("budget", &self.lock().budget)
            .finish_non_exhaustive()
    }
}

/// A held reservation. Settle it with the actual usage; dropping it
/// unsettled releases the hold (the call never ran).
#[must_use = "dropping a hold releases it; settle it with the actual usage"]
pub struct BudgetHold<'a, C: Clock, const R: usize> {
    manager: &'a BudgetManager<C, R>,
    reservation: Option<Reservation>,
}

impl<C: Clock, const R: usize> BudgetHold<'_, C, R> {
    /// What is held.
    pub fn usage(&self) -> Usage {
        self.reservation
            .as_ref()
            .map(|r| r.usage)
            .unwrap_or_default()
    }
    /// Charge `actual` and drop the hold. `None` if the hold was unknown to
    /// the state (for example after a [`BudgetManager::reset`]).
    pub fn settle(mut self, actual: Usage) -> Option<Settled> {
        let r = self.reservation.take()?;
        self.manager.settle(r, actual)
    }

    /// The reservation, no longer released on drop: the caller settles or
    /// releases it through the manager.
    pub(crate) fn detach(mut self) -> Option<Reservation> {
        self.reservation.take()
    }
}

impl<C: Clock, const R: usize> Drop for BudgetHold<'_, C, R> {
    fn drop(&mut self) {
        if let Some(r) = self.reservation.take() {
            self.manager.release(r);
        }
    }
}

impl<C: Clock> BudgetManager<C> {
    /// Validate `config` and start with a fresh state holding up to 256
    /// concurrent reservations.
    pub fn new(config: BudgetConfig, clock: C) -> Result<Self, ConfigError> {
        Self::with_hold_capacity(config, clock)
    }
}

impl<C: Clock, const R: usize> BudgetManager<C, R> {
    /// Like [`new`](BudgetManager::new) with room for `R` concurrent
    /// reservations (`BudgetManager::<_, 4096>::with_hold_capacity(..)`).
    pub fn with_hold_capacity(config: BudgetConfig, clock: C) -> Result<Self, ConfigError> {
        Ok(Self::from_budget(Budget::new(config)?, clock))
    }

    /// A manager of `budget` (already validated; one from
    /// [`Budget::reconfigure`] keeps the chain its states are read by) with
    /// a fresh state.
    pub fn from_budget(budget: Budget, clock: C) -> Self {
        BudgetManager {
            held: Mutex::new(Held {
                budget,
                state: BudgetState::default(),
            }),
            clock,
            hub: Arc::new(AlertHub::new()),
        }
    }

    /// [`new`](Self::new), delivering its alerts through `hub`.
    #[cfg(feature = "redis")]
    pub(crate) fn with_hub(
        config: BudgetConfig,
        clock: C,
        hub: Arc<AlertHub>,
    ) -> Result<Self, ConfigError> {
        let mut m = Self::with_hold_capacity(config, clock)?;
        m.hub = hub;
        Ok(m)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held<R>> {
        // Core never panics mid-update, so a poisoned state is still valid.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The validated budget (a copy: [`reconfigure`](Self::reconfigure)
    /// may replace it).
    pub fn budget(&self) -> Budget {
        self.lock().budget.clone()
    }

    /// Change the config now, keeping the usage, holds and throttling
    /// (core's [`Budget::reconfigure`]: the new limits read them and alerts
    /// are re-evaluated). Holds taken before the change settle as usual.
    /// Errors, changing nothing, when `config` is invalid or has another
    /// UTC offset.
    ///
    /// ```
    /// use ratebound_std::{budget::BudgetManager, clock::ManualClock};
    /// use ratebound_core::{budget::{BudgetConfig, Usage}, Instant};
    /// let m = BudgetManager::new(BudgetConfig::new().tokens_per_day(1_000), ManualClock::new(Instant::from_secs(1_800_000_000)))?;
    /// m.reserve(Usage::request(900, 0))?.settle(Usage::request(900, 0));
    /// assert!(m.check_budget(200, 0).is_err());
    /// m.reconfigure(BudgetConfig::new().tokens_per_day(5_000))?;
    /// assert!(m.check_budget(4_100, 0).is_ok()); // 900 used of 5 000
    /// assert!(m.reconfigure(BudgetConfig::new().tokens_per_day(5_000).utc_offset_secs(3_600)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn reconfigure(&self, config: BudgetConfig) -> Result<(), ConfigError> {
        let mut held = self.lock();
        held.budget = held.budget.reconfigure(config)?;
        Ok(())
    }

    /// Its clock's now.
    #[cfg(feature = "redis")]
    pub(crate) fn now(&self) -> ratebound_core::Instant {
        self.clock.now()
    }

    /// Would a call estimated at `tokens` / `cost` fit now? Consumes nothing
    /// (Go `policy`'s `CheckBudget`). Concurrent callers should [`reserve`](Self::reserve) instead.
    pub fn check_budget(
        &self,
        estimated_tokens: u64,
        estimated_cost: u64,
    ) -> Result<(), BudgetDenied> {
        let held = self.lock();
        match held.budget.peek(
            &held.state,
            self.clock.now(),
            Usage::request(estimated_tokens, estimated_cost),
        )? {
            None => Ok(()),
            Some(d) => Err(BudgetDenied::Denied(d)),
        }
    }

    /// Hold `estimate` until the returned guard is settled or dropped.
    pub fn reserve(&self, estimate: Usage) -> Result<BudgetHold<'_, C, R>, BudgetDenied> {
        let r = {
            let Held { budget, state } = &mut *self.lock();
            budget.reserve(state, self.clock.now(), estimate)?
        };
        self.hub.publish(&r.alerts);
        match r.admission {
            Admission::Granted(res) => Ok(BudgetHold {
                manager: self,
                reservation: Some(res),
            }),
            Admission::Denied(d) => Err(BudgetDenied::Denied(d)),
        }
    }

    pub(crate) fn settle(&self, r: Reservation, actual: Usage) -> Option<Settled> {
        let s = {
            let Held { budget, state } = &mut *self.lock();
            budget.settle(state, self.clock.now(), r, actual)
        };
        self.hub.settled(s)
    }

    pub(crate) fn release(&self, r: Reservation) {
        let Held { budget, state } = &mut *self.lock();
        if let Err(e) = budget.release(state, self.clock.now(), r) {
            tracing::debug!(error = %e, "release of an unknown reservation");
        }
    }

    /// Charge a call's usage without a reservation (Go `policy`'s `RecordUsage`).
    /// `rec.timestamp` is honoured up to the clock's now (later ones are
    /// clamped); usage is charged to the window current at that time or later.
    pub fn record_usage(&self, rec: &UsageRecord) {
        // A timestamp from the future would move the budget's clock forward
        // for good; past ones are charged to the current window.
        let now = self.clock.now();
        let now = rec.timestamp.map_or(now, |t| t.min(now));
        let alerts = {
            let Held { budget, state } = &mut *self.lock();
            budget.record(state, now, Usage::request(rec.tokens, rec.cost))
        };
        tracing::debug!(tokens = rec.tokens, cost = rec.cost, model = %rec.model, user = %rec.user_id, request = %rec.request_id, "usage recorded");
        self.hub.publish(&alerts);
    }

    /// A snapshot (Go `policy`'s `GetStatus`).
    pub fn status(&self) -> BudgetStatus {
        let held = self.lock();
        held.budget.status(&held.state, self.clock.now())
    }

    /// Forget all usage and holds (Go `policy`'s `Reset`).
    pub fn reset(&self) {
        let Held { budget, state } = &mut *self.lock();
        budget.reset(state);
    }

    /// Run `handler` for each alert, on the alert thread (never on the caller's).
    ///
    /// Handlers run one at a time on one thread (started with the first
    /// handler): a handler must not block for long, nor call
    /// [`wait_alerts`](Self::wait_alerts) itself; one that holds an `Arc` of
    /// this manager keeps it (and the thread) alive.
    pub fn on_alert(&self, handler: impl Fn(&Alert) + Send + Sync + 'static) {
        self.hub.on_alert(handler);
    }

    /// A channel receiving every alert from now on.
    pub fn subscribe(&self) -> mpsc::Receiver<Alert> {
        self.hub.subscribe()
    }

    /// Wait until every alert handler dispatched so far has returned.
    pub async fn wait_alerts(&self) {
        self.hub.wait().await;
    }

    /// [`wait_alerts`](Self::wait_alerts) until `stop` completes: a deadline
    /// (`tokio::time::sleep(..)`) or a cancellation (`token.cancelled()`).
    /// `Err` says how many alerts were still being handled then (Go's
    /// `WaitAlerts(ctx)` returning the context's error).
    ///
    /// ```
    /// # use ratebound_std::{budget::BudgetManager, clock::ManualClock};
    /// # use ratebound_core::{budget::{BudgetConfig, Usage}, Instant};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let budget = BudgetManager::new(BudgetConfig::new().tokens_per_minute(100).alert_threshold_bp(5_000),
    ///     ManualClock::new(Instant::from_secs(1_795_392_000)))?;
    /// budget.on_alert(|_| std::thread::sleep(std::time::Duration::from_millis(300))); // a slow webhook
    /// budget.reserve(Usage::request(60, 0))?.settle(Usage::request(60, 0));
    /// let stop = tokio::time::sleep(std::time::Duration::from_millis(10));
    /// assert_eq!(budget.wait_alerts_until(stop).await.unwrap_err().alerts, 1);
    /// let token = tokio_util::sync::CancellationToken::new();
    /// budget.wait_alerts_until(token.cancelled()).await?; // returns once delivered
    /// # Ok(()) }
    /// ```
    pub async fn wait_alerts_until(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), AlertsPending> {
        self.hub.wait_until(stop).await
    }

    /// [`wait_alerts`](Self::wait_alerts) for threads without a runtime.
    pub fn wait_alerts_blocking(&self) {
        self.hub.wait_blocking();
    }

    /// [`wait_alerts_blocking`](Self::wait_alerts_blocking), giving up after
    /// `timeout` with how many alerts were still being handled.
    pub fn wait_alerts_blocking_for(
        &self,
        timeout: std::time::Duration,
    ) -> Result<(), AlertsPending> {
        self.hub.wait_blocking_for(timeout)
    }
}

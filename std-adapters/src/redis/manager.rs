//! The budget manager over Redis, and one manager type that takes either
//! backend by config.

use std::sync::mpsc;

use ratebound_core::budget::{
    Admission, Alert, Budget, BudgetConfig, BudgetStatus, Settled, Usage,
};
use ratebound_core::ConfigError;

use super::{Breaker, OnUnavailable, RedisBudget, RedisLimitError, RedisStore, Source};
use crate::budget::{
    AlertHub, AlertsPending, BudgetDenied, BudgetHold, BudgetManager, UsageRecord,
};
use crate::clock::{Clock, SystemClock};

/// Why a Redis budget call gave no answer, or said no.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisBudgetError {
    /// The budget refused (or the usage can never fit).
    #[error(transparent)]
    Denied(#[from] BudgetDenied),
    /// Redis was unavailable or answered an error.
    #[error(transparent)]
    Redis(#[from] RedisLimitError),
}

/// [`BudgetManager`]'s API with the budget kept in Redis, so every server
/// draws on the same budget (one per `budget_key`: a team, a user, a
/// project). Alerts fire where the call that crossed the threshold ran
/// (once per window across all servers) and are delivered like
/// [`BudgetManager`]'s.
///
/// While Redis is unavailable the failure policy decides
/// ([`with_failure_policy`](Self::with_failure_policy); default
/// [`OnUnavailable::Closed`]: an error): `Open` admits and records nothing,
/// `Local` runs the same budget in this process until Redis is back. Each
/// hold says where it was decided ([`RedisBudgetHold::source`]).
pub struct RedisBudgetManager<C: Clock = SystemClock> {
    budget: RedisBudget,
    key: Vec<u8>,
    hub: AlertHub,
    on_unavailable: OnUnavailable,
    local: Option<BudgetManager<C>>,
    breaker: Breaker,
}

impl<C: Clock> std::fmt::Debug for RedisBudgetManager<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBudgetManager")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

const NAME: &str = "budget";

/// A reservation held in Redis (or by the failure policy): settle it with
/// the actual usage; dropping it releases it (in the background, when a
/// tokio runtime is there; otherwise it lapses after the hold TTL).
#[must_use = "dropping a hold releases it; settle it with the actual usage"]
pub struct RedisBudgetHold<'a, C: Clock = SystemClock> {
    manager: &'a RedisBudgetManager<C>,
    held: Option<(u64, Usage)>,
    local: Option<BudgetHold<'a, C, 256>>,
    source: Source,
    usage: Usage,
}

impl<C: Clock> RedisBudgetHold<'_, C> {
    /// What it holds.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Where it was decided.
    pub fn source(&self) -> Source {
        self.source
    }

    /// Charge the actual usage. `None` if the reservation was unknown
    /// (released elsewhere, or the budget was reset), or admitted open.
    pub async fn settle(mut self, actual: Usage) -> Result<Option<Settled>, RedisLimitError> {
        if let Some(h) = self.local.take() {
            return Ok(h.settle(actual));
        }
        let Some((id, _)) = self.held.take() else {
            return Ok(None);
        };
        let m = self.manager;
        let r = m.budget.settle(&m.key, NAME, id, actual).await?;
        Ok(match r.value {
            Ok(s) => {
                m.hub.publish(&s.alerts);
                Some(s)
            }
            Err(e) => {
                // The state is gone (reset, or expired long after the hold
                // lapsed): charge the usage anyway, never undercount.
                tracing::warn!(error = %e, "settle of an unknown reservation: charged as recorded usage");
                let r = m.budget.record(&m.key, NAME, actual).await?;
                if let Ok(alerts) = r.value {
                    m.hub.publish(&alerts);
                }
                None
            }
        })
    }
}

impl<C: Clock> Drop for RedisBudgetHold<'_, C> {
    fn drop(&mut self) {
        if let Some((id, _)) = self.held.take() {
            let (b, key) = (self.manager.budget.clone(), self.manager.key.clone());
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    if let Err(e) = b.release(&key, NAME, id).await {
                        tracing::debug!(error = %e, "could not release a dropped hold; it lapses");
                    }
                });
            }
        }
    }
}

impl RedisBudgetManager {
    /// The budget `config` under `budget_key` in `store`, with up to
    /// `hold_slots` reservations at once; refuses while Redis is unavailable.
    pub fn new(
        store: RedisStore,
        config: BudgetConfig,
        budget_key: impl AsRef<[u8]>,
        hold_slots: usize,
    ) -> Result<Self, ConfigError> {
        Ok(RedisBudgetManager {
            budget: RedisBudget::new(store, Budget::new(config)?, hold_slots),
            key: budget_key.as_ref().to_vec(),
            hub: AlertHub::new(),
            on_unavailable: OnUnavailable::Closed,
            local: None,
            breaker: Breaker::default(),
        })
    }
}

impl<C: Clock> RedisBudgetManager<C> {
    /// The same budget with a failure policy; `clock` runs the in-memory
    /// budget of [`OnUnavailable::Local`].
    pub fn with_failure_policy<D: Clock>(
        self,
        on_unavailable: OnUnavailable,
        clock: D,
    ) -> Result<RedisBudgetManager<D>, ConfigError> {
        let local = match on_unavailable {
            OnUnavailable::Local => Some(BudgetManager::new(
                self.budget.budget().config().clone(),
                clock,
            )?),
            _ => None,
        };
        Ok(RedisBudgetManager {
            budget: self.budget,
            key: self.key,
            hub: self.hub,
            on_unavailable,
            local,
            breaker: Breaker::default(),
        })
    }

    /// The failure policy's answer to Redis being unavailable: `Ok(None)`
    /// to admit open, `Ok(Some(local))` to decide in memory, or the error.
    fn fallback(&self, e: RedisLimitError) -> Result<Option<&BudgetManager<C>>, RedisBudgetError> {
        match (self.on_unavailable, &self.local) {
            (OnUnavailable::Open, _) => Ok(None),
            (OnUnavailable::Local, Some(l)) => Ok(Some(l)),
            _ => Err(e.into()),
        }
    }

    /// Run `f` against Redis, recording health: `Ok(Err(e))` means Redis is
    /// unavailable and the failure policy applies.
    async fn redis<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, RedisLimitError>>,
    ) -> Result<Result<T, RedisLimitError>, RedisLimitError> {
        if self.breaker.skipping() {
            return Ok(Err(RedisLimitError::Timeout(self.budget.store_timeout())));
        }
        match f.await {
            Ok(v) => {
                self.breaker.mark(true, None, "budgets");
                Ok(Ok(v))
            }
            Err(e) if e.is_unavailable() => {
                self.breaker.mark(false, Some(&e), "budgets");
                Ok(Err(e))
            }
            Err(e) => Err(e),
        }
    }

    /// The seed's `CheckBudget`: would a call of this size be admitted now?
    pub async fn check_budget(
        &self,
        estimated_tokens: u64,
        estimated_cost: u64,
    ) -> Result<(), RedisBudgetError> {
        let u = Usage::request(estimated_tokens, estimated_cost);
        match self.redis(self.budget.peek(&self.key, NAME, u)).await? {
            Ok(r) => match r.value.map_err(BudgetDenied::from)? {
                None => Ok(()),
                Some(d) => Err(BudgetDenied::Denied(d).into()),
            },
            Err(e) => match self.fallback(e)? {
                None => Ok(()),
                Some(l) => Ok(l.check_budget(estimated_tokens, estimated_cost)?),
            },
        }
    }

    /// Hold `estimate` until settled (or dropped).
    pub async fn reserve(
        &self,
        estimate: Usage,
    ) -> Result<RedisBudgetHold<'_, C>, RedisBudgetError> {
        let r = match self
            .redis(self.budget.reserve(&self.key, NAME, estimate))
            .await?
        {
            Ok(r) => r,
            Err(e) => {
                return match self.fallback(e)? {
                    None => Ok(RedisBudgetHold {
                        manager: self,
                        held: None,
                        local: None,
                        source: Source::FailOpen,
                        usage: estimate,
                    }),
                    Some(l) => {
                        let h = l.reserve(estimate)?;
                        Ok(RedisBudgetHold {
                            manager: self,
                            held: None,
                            usage: h.usage(),
                            local: Some(h),
                            source: Source::Local,
                        })
                    }
                };
            }
        };
        let r = r.value.map_err(BudgetDenied::from)?;
        self.hub.publish(&r.alerts);
        match r.admission {
            Admission::Granted(res) => Ok(RedisBudgetHold {
                manager: self,
                held: Some((res.id, res.usage)),
                local: None,
                source: Source::Redis,
                usage: res.usage,
            }),
            Admission::Denied(d) => Err(BudgetDenied::Denied(d).into()),
        }
    }

    /// The seed's `RecordUsage` (dropped under `Open` while Redis is down).
    pub async fn record_usage(&self, rec: &UsageRecord) -> Result<(), RedisBudgetError> {
        let u = Usage::request(rec.tokens, rec.cost);
        match self.redis(self.budget.record(&self.key, NAME, u)).await? {
            Ok(r) => {
                if let Ok(alerts) = r.value {
                    self.hub.publish(&alerts);
                }
                Ok(())
            }
            Err(e) => {
                if let Some(l) = self.fallback(e)? {
                    l.record_usage(rec);
                }
                Ok(())
            }
        }
    }

    /// The seed's `GetStatus` (the local budget's while it stands in).
    pub async fn status(&self) -> Result<BudgetStatus, RedisBudgetError> {
        match self.redis(self.budget.status(&self.key, NAME)).await? {
            Ok(r) => Ok(r.value.map_err(BudgetDenied::from)?),
            Err(e) => match (self.on_unavailable, &self.local) {
                (OnUnavailable::Local, Some(l)) => Ok(l.status()),
                _ => Err(e.into()),
            },
        }
    }

    /// Forget all usage and holds.
    pub async fn reset(&self) -> Result<(), RedisBudgetError> {
        Ok(self.budget.reset(&self.key, NAME).await?)
    }

    /// Run `handler` for each alert on the alert thread (as [`BudgetManager::on_alert`]).
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

    /// See [`BudgetManager::wait_alerts_until`].
    pub async fn wait_alerts_until(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), AlertsPending> {
        self.hub.wait_until(stop).await
    }
}

/// Where a budget lives.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // a config value, built once
pub enum BudgetBackend {
    /// In this process.
    Memory,
    /// In Redis under a key, shared by every server.
    Redis {
        /// The connection.
        store: RedisStore,
        /// Which budget (a team, a user…).
        key: Vec<u8>,
        /// Concurrent reservations.
        hold_slots: usize,
        /// While Redis is unavailable.
        on_unavailable: OnUnavailable,
    },
}

/// A budget manager on either backend, chosen by config: the same calls
/// (async) whether the budget is in memory or in Redis.
#[derive(Debug)]
pub enum AnyBudgetManager<C: Clock> {
    /// In memory.
    Memory(Box<BudgetManager<C>>),
    /// In Redis.
    Redis(Box<RedisBudgetManager<C>>),
}

/// A hold from an [`AnyBudgetManager`].
#[must_use = "dropping a hold releases it; settle it with the actual usage"]
pub enum AnyBudgetHold<'a, C: Clock> {
    /// In memory.
    Memory(BudgetHold<'a, C, 256>),
    /// In Redis.
    Redis(RedisBudgetHold<'a, C>),
}

impl<C: Clock> AnyBudgetHold<'_, C> {
    /// Charge the actual usage.
    pub async fn settle(self, actual: Usage) -> Result<Option<Settled>, RedisBudgetError> {
        match self {
            AnyBudgetHold::Memory(h) => Ok(h.settle(actual)),
            AnyBudgetHold::Redis(h) => Ok(h.settle(actual).await?),
        }
    }

    /// What it holds.
    pub fn usage(&self) -> Usage {
        match self {
            AnyBudgetHold::Memory(h) => h.usage(),
            AnyBudgetHold::Redis(h) => h.usage(),
        }
    }
}

impl<C: Clock> AnyBudgetManager<C> {
    /// A manager for `config` on `backend`.
    pub fn new(
        config: BudgetConfig,
        backend: BudgetBackend,
        clock: C,
    ) -> Result<Self, ConfigError> {
        Ok(match backend {
            BudgetBackend::Memory => {
                AnyBudgetManager::Memory(Box::new(BudgetManager::new(config, clock)?))
            }
            BudgetBackend::Redis {
                store,
                key,
                hold_slots,
                on_unavailable,
            } => AnyBudgetManager::Redis(Box::new(
                RedisBudgetManager::new(store, config, key, hold_slots)?
                    .with_failure_policy(on_unavailable, clock)?,
            )),
        })
    }

    /// See [`BudgetManager::check_budget`].
    pub async fn check_budget(
        &self,
        estimated_tokens: u64,
        estimated_cost: u64,
    ) -> Result<(), RedisBudgetError> {
        match self {
            AnyBudgetManager::Memory(m) => Ok(m.check_budget(estimated_tokens, estimated_cost)?),
            AnyBudgetManager::Redis(m) => m.check_budget(estimated_tokens, estimated_cost).await,
        }
    }

    /// See [`BudgetManager::reserve`].
    pub async fn reserve(&self, estimate: Usage) -> Result<AnyBudgetHold<'_, C>, RedisBudgetError> {
        match self {
            AnyBudgetManager::Memory(m) => Ok(AnyBudgetHold::Memory(m.reserve(estimate)?)),
            AnyBudgetManager::Redis(m) => Ok(AnyBudgetHold::Redis(m.reserve(estimate).await?)),
        }
    }

    /// See [`BudgetManager::record_usage`].
    pub async fn record_usage(&self, rec: &UsageRecord) -> Result<(), RedisBudgetError> {
        match self {
            AnyBudgetManager::Memory(m) => {
                m.record_usage(rec);
                Ok(())
            }
            AnyBudgetManager::Redis(m) => m.record_usage(rec).await,
        }
    }

    /// See [`BudgetManager::status`].
    pub async fn status(&self) -> Result<BudgetStatus, RedisBudgetError> {
        match self {
            AnyBudgetManager::Memory(m) => Ok(m.status()),
            AnyBudgetManager::Redis(m) => m.status().await,
        }
    }

    /// See [`BudgetManager::on_alert`].
    pub fn on_alert(&self, handler: impl Fn(&Alert) + Send + Sync + 'static) {
        match self {
            AnyBudgetManager::Memory(m) => m.on_alert(handler),
            AnyBudgetManager::Redis(m) => m.on_alert(handler),
        }
    }

    /// See [`BudgetManager::subscribe`].
    pub fn subscribe(&self) -> mpsc::Receiver<Alert> {
        match self {
            AnyBudgetManager::Memory(m) => m.subscribe(),
            AnyBudgetManager::Redis(m) => m.subscribe(),
        }
    }

    /// See [`BudgetManager::wait_alerts_until`].
    pub async fn wait_alerts_until(
        &self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), AlertsPending> {
        match self {
            AnyBudgetManager::Memory(m) => m.wait_alerts_until(stop).await,
            AnyBudgetManager::Redis(m) => m.wait_alerts_until(stop).await,
        }
    }
}

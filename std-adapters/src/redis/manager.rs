//! The budget manager over Redis, and one manager type that takes either
//! backend by config.

use std::sync::mpsc;

use ratebound_core::budget::{
    Admission, Alert, Budget, BudgetConfig, BudgetStatus, Settled, Usage,
};
use ratebound_core::ConfigError;

use super::{RedisBudget, RedisLimitError, RedisStore};
use crate::budget::{AlertHub, BudgetDenied, BudgetHold, BudgetManager, UsageRecord};
use crate::clock::Clock;

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
pub struct RedisBudgetManager {
    budget: RedisBudget,
    key: Vec<u8>,
    hub: AlertHub,
}

impl std::fmt::Debug for RedisBudgetManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBudgetManager")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

const NAME: &str = "budget";

/// A reservation held in Redis: settle it with the actual usage; dropping
/// it releases it (in the background, when a tokio runtime is there;
/// otherwise it lapses after the hold TTL).
#[must_use = "dropping a hold releases it; settle it with the actual usage"]
pub struct RedisBudgetHold<'a> {
    manager: &'a RedisBudgetManager,
    held: Option<(u64, Usage)>,
}

impl RedisBudgetHold<'_> {
    /// What it holds.
    pub fn usage(&self) -> Usage {
        self.held.map(|(_, u)| u).unwrap_or_default()
    }

    /// Charge the actual usage. `None` if the reservation was unknown
    /// (released elsewhere, or the budget was reset).
    pub async fn settle(mut self, actual: Usage) -> Result<Option<Settled>, RedisLimitError> {
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

impl Drop for RedisBudgetHold<'_> {
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
    /// `hold_slots` reservations at once.
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
        })
    }

    /// The seed's `CheckBudget`: would a call of this size be admitted now?
    pub async fn check_budget(
        &self,
        estimated_tokens: u64,
        estimated_cost: u64,
    ) -> Result<(), RedisBudgetError> {
        let r = self
            .budget
            .peek(
                &self.key,
                NAME,
                Usage::request(estimated_tokens, estimated_cost),
            )
            .await?;
        match r.value.map_err(BudgetDenied::from)? {
            None => Ok(()),
            Some(d) => Err(BudgetDenied::Denied(d).into()),
        }
    }

    /// Hold `estimate` until settled (or dropped).
    pub async fn reserve(&self, estimate: Usage) -> Result<RedisBudgetHold<'_>, RedisBudgetError> {
        let r = self.budget.reserve(&self.key, NAME, estimate).await?;
        let r = r.value.map_err(BudgetDenied::from)?;
        self.hub.publish(&r.alerts);
        match r.admission {
            Admission::Granted(res) => Ok(RedisBudgetHold {
                manager: self,
                held: Some((res.id, res.usage)),
            }),
            Admission::Denied(d) => Err(BudgetDenied::Denied(d).into()),
        }
    }

    /// The seed's `RecordUsage`.
    pub async fn record_usage(&self, rec: &UsageRecord) -> Result<(), RedisBudgetError> {
        let r = self
            .budget
            .record(&self.key, NAME, Usage::request(rec.tokens, rec.cost))
            .await?;
        if let Ok(alerts) = r.value {
            self.hub.publish(&alerts);
        }
        Ok(())
    }

    /// The seed's `GetStatus`.
    pub async fn status(&self) -> Result<BudgetStatus, RedisBudgetError> {
        Ok(self
            .budget
            .status(&self.key, NAME)
            .await?
            .value
            .map_err(BudgetDenied::from)?)
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
    },
}

/// A budget manager on either backend, chosen by config: the same calls
/// (async) whether the budget is in memory or in Redis.
#[derive(Debug)]
pub enum AnyBudgetManager<C: Clock> {
    /// In memory.
    Memory(Box<BudgetManager<C>>),
    /// In Redis.
    Redis(Box<RedisBudgetManager>),
}

/// A hold from an [`AnyBudgetManager`].
#[must_use = "dropping a hold releases it; settle it with the actual usage"]
pub enum AnyBudgetHold<'a, C: Clock> {
    /// In memory.
    Memory(BudgetHold<'a, C, 256>),
    /// In Redis.
    Redis(RedisBudgetHold<'a>),
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
            } => AnyBudgetManager::Redis(Box::new(RedisBudgetManager::new(
                store, config, key, hold_slots,
            )?)),
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
}

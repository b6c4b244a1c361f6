//! The budget manager's seam: one type over the in-memory and the Redis
//! manager, chosen at run time, with the same (async) calls.

use std::sync::mpsc;

use ratebound_core::budget::{Alert, BudgetConfig, BudgetStatus, Settled, Usage};
use ratebound_core::ConfigError;

use super::{
    AlertsPending, BudgetHold, BudgetManager, RedisBudgetError, RedisBudgetHold,
    RedisBudgetManager, UsageRecord,
};
use crate::clock::Clock;
use crate::fallback::FailoverOptions;
use crate::redis::RedisStore;

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
        failover: FailoverOptions,
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
                failover,
            } => AnyBudgetManager::Redis(Box::new(
                RedisBudgetManager::new(store, config, key, hold_slots)?
                    .with_failover(failover, clock)?,
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

    /// See [`BudgetManager::reconfigure`] and [`RedisBudgetManager::reconfigure`].
    pub fn reconfigure(&self, config: BudgetConfig) -> Result<(), ConfigError> {
        match self {
            AnyBudgetManager::Memory(m) => m.reconfigure(config),
            AnyBudgetManager::Redis(m) => m.reconfigure(config),
        }
    }

    /// The budget's config (a copy).
    pub fn budget(&self) -> ratebound_core::budget::Budget {
        match self {
            AnyBudgetManager::Memory(m) => m.budget(),
            AnyBudgetManager::Redis(m) => m.budget(),
        }
    }

    /// See [`BudgetManager::reset`].
    pub async fn reset(&self) -> Result<(), RedisBudgetError> {
        match self {
            AnyBudgetManager::Memory(m) => {
                m.reset();
                Ok(())
            }
            AnyBudgetManager::Redis(m) => m.reset().await,
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

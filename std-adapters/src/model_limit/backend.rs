//! The model limits' seam: [`AdmitRequests`], which the in-memory and the
//! Redis limiter both implement, and [`AnyModelLimiter`], either one chosen
//! at run time (e.g. from config) behind one type.

use super::{
    AdmitError, AdmitRequests, Admitted, Identity, InFlight, ModelDecision, ModelLimiter,
    ModelQuota, Outcome,
};
use crate::clock::Clock;

/// Model limits in memory or in Redis, chosen at run time: the layer and
/// the tests take one type whichever backend the config names.
#[derive(Debug)]
pub enum AnyModelLimiter<C: Clock + Clone> {
    /// In this process.
    Memory(Box<ModelLimiter<C>>),
    /// In Redis, shared by every replica.
    #[cfg(feature = "redis")]
    Redis(Box<super::RedisModelLimiter<C>>),
}

/// A request admitted by an [`AnyModelLimiter`].
#[derive(Debug)]
#[must_use = "settle the request with its outcome; dropping it counts as a failure"]
pub enum AnyInFlight<C: Clock> {
    /// In memory.
    Memory(Box<InFlight<C>>),
    /// In Redis (or its fail-over).
    #[cfg(feature = "redis")]
    Redis(Box<super::RedisInFlight<C>>),
}

impl<C: Clock + Clone> Admitted for AnyInFlight<C> {
    fn decision(&self) -> &ModelDecision {
        match self {
            AnyInFlight::Memory(a) => a.decision(),
            #[cfg(feature = "redis")]
            AnyInFlight::Redis(a) => a.decision(),
        }
    }
    fn quota(&self) -> &ModelQuota {
        match self {
            AnyInFlight::Memory(a) => a.quota(),
            #[cfg(feature = "redis")]
            AnyInFlight::Redis(a) => a.quota(),
        }
    }
    async fn settle(self, outcome: Outcome) {
        match self {
            AnyInFlight::Memory(a) => a.settle(outcome),
            #[cfg(feature = "redis")]
            AnyInFlight::Redis(a) => Admitted::settle(*a, outcome).await,
        }
    }
}

impl<C: Clock + Clone> AdmitRequests for AnyModelLimiter<C> {
    type Request = AnyInFlight<C>;

    fn enabled(&self) -> bool {
        match self {
            AnyModelLimiter::Memory(m) => m.enabled(),
            #[cfg(feature = "redis")]
            AnyModelLimiter::Redis(r) => r.enabled(),
        }
    }

    async fn admit(&self, who: &Identity, model: &str) -> Result<AnyInFlight<C>, AdmitError> {
        Ok(match self {
            AnyModelLimiter::Memory(m) => AnyInFlight::Memory(Box::new(m.admit(who, model)?)),
            #[cfg(feature = "redis")]
            AnyModelLimiter::Redis(r) => AnyInFlight::Redis(Box::new(r.admit(who, model).await?)),
        })
    }

    fn store_retry_after(&self) -> Option<std::time::Duration> {
        match self {
            AnyModelLimiter::Memory(m) => m.store_retry_after(),
            #[cfg(feature = "redis")]
            AnyModelLimiter::Redis(r) => r.store_retry_after(),
        }
    }
}

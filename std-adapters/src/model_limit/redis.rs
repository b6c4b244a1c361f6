//! Model-level limits kept in Redis, shared by every gateway replica, with
//! the fail-over of [`crate::fallback`].

use std::future::Future;

use ratebound_core::Decision;

use super::{
    state_tag, validate, AdmitError, AdmitRequests, Admitted, Identity, InFlight, ModelDecision,
    ModelLimitConfig, ModelLimitError, ModelLimiter, ModelLimits, ModelQuota, Outcome,
};
use crate::clock::Clock;
use crate::fallback::{Failover, FailoverOptions, Fallback, OnUnavailable, Source};
use crate::keyed::KeyedConfig;
use crate::redis::{RedisModelQuotas, RedisStore, StoreError};

/// Model-level limits ([`crate::model_limit`]) kept in Redis: the same
/// config, keys and decisions as [`ModelLimiter`], shared by every server.
/// Under [`OnUnavailable::Local`] a replica decides alone on its share of
/// every limit ([`FailoverOptions::replicas`]).
pub struct RedisModelLimiter<C: Clock + Clone> {
    quotas: RedisModelQuotas,
    limits: ModelLimits,
    failover: Failover,
    /// The in-memory fallback on this replica's share (`local` only).
    local: Option<ModelLimiter<C>>,
    clock: C,
}

impl<C: Clock + Clone> std::fmt::Debug for RedisModelLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisModelLimiter")
            .field("quotas", &self.quotas)
            .field("failover", self.failover.options())
            .finish()
    }
}

impl<C: Clock + Clone> RedisModelLimiter<C> {
    /// Limits from `config` in `store`. `clock` serves the fail-over (the
    /// in-memory share, the fail-open answers); the config's
    /// `hold_ttl_secs` bounds how long a request in flight holds its success
    /// slot if its server dies before settling.
    pub fn new(
        store: RedisStore,
        config: ModelLimitConfig,
        failover: FailoverOptions,
        clock: C,
    ) -> Result<Self, ModelLimitError> {
        failover
            .validate()
            .map_err(|error| ModelLimitError::Limits {
                scope: "failover".into(),
                error,
            })?;
        let limits = ModelLimits::new(config)?;
        let local = match failover.on_unavailable {
            OnUnavailable::Local => Some(ModelLimiter::with_limits(
                limits.share(failover.replicas)?,
                KeyedConfig::default(),
                clock.clone(),
            )?),
            _ => None,
        };
        let down = store.down_flag("model limits");
        Ok(RedisModelLimiter {
            quotas: RedisModelQuotas::new(store),
            limits,
            failover: Failover::new(failover, "model limits", down),
            local,
            clock,
        })
    }

    /// The failure policy.
    pub fn failover(&self) -> &FailoverOptions {
        self.failover.options()
    }

    /// The validated limits.
    pub fn limits(&self) -> &ModelLimits {
        &self.limits
    }

    async fn admit_redis(
        &self,
        tag: String,
        quota: &ModelQuota,
    ) -> Result<(ModelDecision, Option<Settle>), StoreError> {
        let (decision, _) = self.quotas.admit(tag.as_bytes(), quota).await?;
        let settle = decision.hold.map(|hold| Settle {
            quotas: self.quotas.clone(),
            tag,
            hold,
            quota: *quota,
        });
        Ok((decision, settle))
    }
}

/// What settling a Redis admission needs.
#[derive(Debug)]
struct Settle {
    quotas: RedisModelQuotas,
    tag: String,
    hold: u64,
    quota: ModelQuota,
}

impl Settle {
    async fn run(self, outcome: Outcome) -> Result<(), StoreError> {
        self.quotas
            .settle(self.tag.as_bytes(), &self.quota, self.hold, outcome)
            .await
            .map(|_| ())
    }
}

/// A request admitted (or denied) by a [`RedisModelLimiter`] or its
/// fail-over. Dropping it unsettled settles it as a failure in the
/// background (when a tokio runtime is there; otherwise its hold lapses
/// after the hold TTL).
#[derive(Debug)]
#[must_use = "settle the request with its outcome; dropping it counts as a failure"]
pub struct RedisInFlight<C: Clock> {
    decision: ModelDecision,
    quota: ModelQuota,
    source: Source,
    settle: Option<Settle>,
    local: Option<InFlight<C>>,
}

impl<C: Clock> RedisInFlight<C> {
    /// Where the decision came from.
    pub fn source(&self) -> Source {
        self.source
    }
}

impl<C: Clock> Drop for RedisInFlight<C> {
    fn drop(&mut self) {
        if let Some(s) = self.settle.take() {
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(async move {
                    if let Err(e) = s.run(Outcome::Failure).await {
                        tracing::debug!(error = %e, "could not settle a dropped request; its hold lapses");
                    }
                });
            }
        }
    }
}

impl<C: Clock + Clone> Admitted for RedisInFlight<C> {
    fn decision(&self) -> &ModelDecision {
        &self.decision
    }
    fn quota(&self) -> &ModelQuota {
        &self.quota
    }
    fn settle(mut self, outcome: Outcome) -> impl Future<Output = ()> + Send {
        let settle = self.settle.take();
        if let Some(local) = self.local.take() {
            local.settle(outcome);
        }
        async move {
            if let Some(s) = settle {
                if let Err(e) = s.run(outcome).await {
                    tracing::warn!(error = %e, "could not settle in redis; the hold lapses after its TTL");
                }
            }
        }
    }
}

impl<C: Clock + Clone> AdmitRequests for RedisModelLimiter<C> {
    type Request = RedisInFlight<C>;

    fn enabled(&self) -> bool {
        self.limits.config().enabled
    }

    fn store_retry_after(&self) -> Option<std::time::Duration> {
        Some(self.failover.options().retry_after)
    }

    async fn admit(&self, who: &Identity, model: &str) -> Result<RedisInFlight<C>, AdmitError> {
        validate(&self.limits, who, model)?;
        let quota = *self.limits.quota_for(who, model);
        let tag = state_tag(self.limits.config().key_by, who, model);
        let shared = self.admit_redis(tag, &quota);
        let routed = self.failover.call(shared).await.map_err(|e| {
            if e.is_unavailable() {
                AdmitError::Unavailable(e.to_string())
            } else {
                AdmitError::StoreError(e.to_string())
            }
        })?;
        Ok(match routed {
            Ok((decision, settle)) => RedisInFlight {
                decision,
                quota,
                source: Source::Redis,
                settle,
                local: None,
            },
            Err(Fallback::Open) => {
                let now = self.clock.now();
                let open = |max: u64| Decision::uncounted(now, max, 0);
                RedisInFlight {
                    decision: ModelDecision {
                        total: quota.total_max().map(open),
                        success: open(quota.success_max()),
                        now,
                        hold: None,
                        in_flight: 0,
                        blocked: None,
                    },
                    quota,
                    source: Source::FailOpen,
                    settle: None,
                    local: None,
                }
            }
            Err(Fallback::Local) => {
                let Some(local) = &self.local else {
                    return Err(AdmitError::Unavailable("no local fallback".into()));
                };
                let a = local.admit(who, model)?;
                RedisInFlight {
                    decision: *a.decision(),
                    quota: *a.quota(),
                    source: Source::Local,
                    settle: None,
                    local: Some(a),
                }
            }
        })
    }
}

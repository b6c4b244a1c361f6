//! A keyed limiter whose states live in Redis, shared by every server,
//! with the fail-over of [`crate::fallback`].

use ratebound_core::{CostError, Decision};

use super::{KeyedConfig, KeyedDecision, KeyedError, KeyedLimiter};
use crate::clock::Clock;
use crate::fallback::{Failover, FailoverOptions, Fallback, OnUnavailable, Source};
use crate::limiter::AnyLimiter;
use crate::redis::{Charge, RedisSpec, RedisStore, StoreError};

/// The Redis spec of a config limiter.
pub(crate) fn spec_of(l: &AnyLimiter) -> RedisSpec {
    match l {
        AnyLimiter::Gcra(g) => RedisSpec::Gcra(*g),
        AnyLimiter::SlidingLog(s) => RedisSpec::sliding_log(s),
        AnyLimiter::SlidingCounter(c) => RedisSpec::SlidingCounter(*c),
    }
}

/// One replica's share of `l` (see [`ratebound_core::share`]).
pub(crate) fn replica_share(
    l: &AnyLimiter,
    replicas: u32,
) -> Result<AnyLimiter, ratebound_core::ConfigError> {
    Ok(match l {
        AnyLimiter::Gcra(g) => AnyLimiter::Gcra(g.share(replicas)?),
        AnyLimiter::SlidingLog(s) => AnyLimiter::SlidingLog(s.share(replicas)?),
        AnyLimiter::SlidingCounter(c) => AnyLimiter::SlidingCounter(c.share(replicas)?),
    })
}

/// A limiter (from config: GCRA, sliding log or counter) whose per-key state
/// lives in Redis under `prefix{key}:name`. While Redis is unavailable the
/// [`FailoverOptions`] decide: refuse, admit uncounted, or decide in this
/// process on this replica's share of the limit. Recovery is automatic.
pub struct RedisKeyedLimiter<C: Clock + Clone> {
    store: RedisStore,
    name: String,
    limiter: AnyLimiter,
    spec: RedisSpec,
    failover: Failover,
    /// This replica's share, in memory (`local` only).
    local: Option<KeyedLimiter<Vec<u8>, AnyLimiter, C>>,
    clock: C,
}

impl<C: Clock + Clone> std::fmt::Debug for RedisKeyedLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKeyedLimiter")
            .field("name", &self.name)
            .field("limiter", &self.limiter)
            .field("failover", self.failover.options())
            .finish()
    }
}

impl<C: Clock + Clone> RedisKeyedLimiter<C> {
    /// `limiter` named `name` in `store`; `local` sizes the in-memory
    /// fallback and `clock` serves it (and the fail-open answers).
    pub fn new(
        store: RedisStore,
        name: impl Into<String>,
        limiter: AnyLimiter,
        failover: FailoverOptions,
        local: KeyedConfig,
        clock: C,
    ) -> Result<Self, StoreError> {
        let name = name.into();
        store.key(b"", &name)?; // the name is valid
        failover.validate().map_err(|_| {
            StoreError::Invalid("failover: replicas 1 or more, retry_after at most a day")
        })?;
        let local = match failover.on_unavailable {
            OnUnavailable::Local => {
                let share = replica_share(&limiter, failover.replicas).map_err(|_| {
                    StoreError::Invalid("the limiter cannot be divided among that many replicas")
                })?;
                Some(
                    KeyedLimiter::new(share, local, clock.clone())
                        .map_err(|_| StoreError::Invalid("local fallback sizing"))?,
                )
            }
            _ => None,
        };
        Ok(RedisKeyedLimiter {
            spec: spec_of(&limiter),
            local,
            store,
            name,
            limiter,
            failover: Failover::new(failover, "limits"),
            clock,
        })
    }

    /// Check `cost` for `key`. Errors for bad input (a cost that never
    /// fits, an oversized key) and, under `closed`, while Redis is
    /// unavailable.
    pub async fn check(&self, key: &[u8], cost: u64) -> Result<KeyedDecision, KeyedError> {
        self.run(key, cost, true).await
    }

    /// What [`check`](Self::check) would decide, changing nothing.
    pub async fn peek(&self, key: &[u8], cost: u64) -> Result<KeyedDecision, KeyedError> {
        self.run(key, cost, false).await
    }

    async fn run(&self, key: &[u8], cost: u64, take: bool) -> Result<KeyedDecision, KeyedError> {
        let cap = self.limiter.capacity();
        if cost > cap {
            return Err(CostError::InsufficientCapacity {
                cost,
                capacity: cap,
            }
            .into());
        }
        let m = [Charge {
            name: &self.name,
            spec: &self.spec,
            cost,
        }];
        let shared = async {
            if take {
                self.store.check(key, &m).await
            } else {
                self.store.peek(key, &m).await
            }
        };
        let (decision, source) = match self.failover.call(shared).await? {
            Ok(d) => (d.decision.decision, Source::Redis),
            Err(Fallback::Open) => (
                Decision::uncounted(self.clock.now(), cap, cost),
                Source::FailOpen,
            ),
            Err(Fallback::Local) => {
                let Some(local) = &self.local else {
                    return Err(StoreError::Invalid("no local fallback").into());
                };
                let share = local.limiter().capacity();
                let d = if cost > share {
                    // Fits the whole limit, never this replica's share:
                    // only the shared store can decide it.
                    let now = self.clock.now();
                    let retry = ratebound_core::Duration::from_micros(
                        self.failover.options().retry_after.as_micros() as u64,
                    );
                    Decision::refused(now, share, now + retry)
                } else if take {
                    local.check(&key.to_vec(), cost)?
                } else {
                    local.peek(&key.to_vec(), cost)?
                };
                (d, Source::Local)
            }
        };
        Ok(KeyedDecision { decision, source })
    }

    /// The limiter.
    pub fn limiter(&self) -> &AnyLimiter {
        &self.limiter
    }
}

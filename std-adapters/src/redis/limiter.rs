//! One limiter in Redis, keyed, with a failure policy.

use ratebound_core::Decision;

use super::{Breaker, Member, OnUnavailable, RedisLimitError, RedisSpec, RedisStore, Source};
use crate::clock::Clock;
use crate::config::AnyLimiter;
use crate::keyed::{KeyedConfig, KeyedLimiter};

/// A decision and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The decision.
    pub decision: Decision,
    /// Redis, or the failure policy's answer.
    pub source: Source,
}

/// A limiter (from config: GCRA, sliding log or counter) whose per-key state
/// lives in Redis under `prefix{key}:name`, with a failure policy: while
/// Redis is unavailable, refuse ([`OnUnavailable::Closed`], an error),
/// admit ([`OnUnavailable::Open`]) or decide in memory with the same config
/// ([`OnUnavailable::Local`]). Recovery is automatic.
pub struct RedisLimiter<C: Clock + Clone> {
    store: RedisStore,
    name: String,
    limiter: AnyLimiter,
    spec: RedisSpec,
    on_unavailable: OnUnavailable,
    local: KeyedLimiter<Vec<u8>, AnyLimiter, C>,
    clock: C,
    breaker: Breaker,
}

impl<C: Clock + Clone> std::fmt::Debug for RedisLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("name", &self.name)
            .field("limiter", &self.limiter)
            .field("on_unavailable", &self.on_unavailable)
            .finish()
    }
}

impl<C: Clock + Clone> RedisLimiter<C> {
    /// `limiter` named `name` in `store`; `clock` and `local` size the
    /// in-memory fallback.
    pub fn new(
        store: RedisStore,
        name: impl Into<String>,
        limiter: AnyLimiter,
        on_unavailable: OnUnavailable,
        local: KeyedConfig,
        clock: C,
    ) -> Result<Self, RedisLimitError> {
        let name = name.into();
        store.key(b"", &name)?; // the name is valid
        Ok(RedisLimiter {
            spec: RedisSpec::from(&limiter),
            local: KeyedLimiter::new(limiter, local, clock.clone())
                .map_err(|_| RedisLimitError::Invalid("local fallback sizing"))?,
            store,
            name,
            limiter,
            on_unavailable,
            clock,
            breaker: Breaker::default(),
        })
    }

    /// Check `cost` for `key`. Errors for bad input (a cost that never
    /// fits, an oversized key) and, under [`OnUnavailable::Closed`], while
    /// Redis is unavailable.
    pub async fn check(&self, key: &[u8], cost: u64) -> Result<Verdict, RedisLimitError> {
        self.run(key, cost, true).await
    }

    /// What [`check`](RedisLimiter::check) would decide, changing nothing.
    pub async fn peek(&self, key: &[u8], cost: u64) -> Result<Verdict, RedisLimitError> {
        self.run(key, cost, false).await
    }

    async fn run(&self, key: &[u8], cost: u64, take: bool) -> Result<Verdict, RedisLimitError> {
        let m = [Member {
            name: &self.name,
            spec: &self.spec,
            cost,
        }];
        let err = if self.breaker.skipping() {
            RedisLimitError::Timeout(self.store.opts.timeout)
        } else {
            let r = if take {
                self.store.check(key, &m).await
            } else {
                self.store.peek(key, &m).await
            };
            match r {
                Ok(d) => {
                    self.breaker.mark(true, None, "limits");
                    return Ok(Verdict {
                        decision: d.decision.decision,
                        source: Source::Redis,
                    });
                }
                Err(e) if e.is_unavailable() => {
                    self.breaker.mark(false, Some(&e), "limits");
                    e
                }
                Err(e) => return Err(e),
            }
        };
        match self.on_unavailable {
            OnUnavailable::Closed => Err(err),
            OnUnavailable::Open => {
                let now = self.clock.now();
                let cap = match &self.limiter {
                    AnyLimiter::Gcra(g) => g.capacity(),
                    AnyLimiter::SlidingLog(l) => l.limit(),
                    AnyLimiter::SlidingCounter(c) => c.limit(),
                };
                if cost > cap {
                    return Err(RedisLimitError::Cost {
                        member: 0,
                        name: self.name.clone(),
                        cost,
                        capacity: cap,
                    });
                }
                Ok(Verdict {
                    decision: Decision {
                        allowed: true,
                        remaining: cap - cost,
                        limit: cap,
                        reset_at: now,
                        retry_at: now,
                    },
                    source: Source::FailOpen,
                })
            }
            OnUnavailable::Local => {
                let d = if take {
                    self.local.check(&key.to_vec(), cost).map_err(|e| match e {
                        crate::AcquireError::Cost(c) => cost_error(&self.name, cost, c),
                        _ => RedisLimitError::Invalid("the local fallback store is full"),
                    })?
                } else {
                    self.local
                        .peek(&key.to_vec(), cost)
                        .map_err(|c| cost_error(&self.name, cost, c))?
                };
                Ok(Verdict {
                    decision: d,
                    source: Source::Local,
                })
            }
        }
    }

    /// The limiter.
    pub fn limiter(&self) -> &AnyLimiter {
        &self.limiter
    }
}

fn cost_error(name: &str, cost: u64, e: ratebound_core::CostError) -> RedisLimitError {
    let capacity = match e {
        ratebound_core::CostError::InsufficientCapacity { capacity, .. } => capacity,
        _ => 0,
    };
    RedisLimitError::Cost {
        member: 0,
        name: name.to_owned(),
        cost,
        capacity,
    }
}

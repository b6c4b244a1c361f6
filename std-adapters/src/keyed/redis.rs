//! A keyed limiter whose states live in Redis, shared by every server,
//! with the fail-over of [`crate::fallback`].

use ratebound_core::Decision;

use super::memory::{memory_decision, MemoryKeyed};
use super::{KeyedConfig, KeyedDecision, KeyedError};
use crate::clock::Clock;
use crate::fallback::{Failover, FailoverOptions, Fallback, OnUnavailable, Source};
use crate::limiter::{AnyLimiter, LimitSet};
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

/// Limits (from config: GCRA, sliding log or counter; one, or a
/// [`LimitSet`] decided all or nothing) whose per-key state lives in Redis
/// under `prefix{key}:name`, one key per member. While Redis is unavailable
/// the [`FailoverOptions`] decide: refuse, admit uncounted, or decide in
/// this process on this replica's share of each limit. Recovery is
/// automatic.
pub struct RedisKeyedLimiter<C: Clock + Clone> {
    store: RedisStore,
    limits: LimitSet,
    specs: Vec<RedisSpec>,
    failover: Failover,
    /// This replica's share, in memory (`local` only).
    local: Option<MemoryKeyed<C>>,
    clock: C,
}

impl<C: Clock + Clone> std::fmt::Debug for RedisKeyedLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisKeyedLimiter")
            .field("limits", &self.limits)
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
        let limits = LimitSet::one(name, limiter).map_err(|_| {
            StoreError::Invalid("a limiter name is 1 to 64 bytes of printable ASCII but { } \" \\")
        })?;
        Self::with_set(store, limits, failover, local, clock)
    }

    /// Every member of `limits` per key in `store`, decided all or nothing
    /// in one round trip; otherwise as [`new`](Self::new).
    pub fn with_set(
        store: RedisStore,
        limits: LimitSet,
        failover: FailoverOptions,
        local: KeyedConfig,
        clock: C,
    ) -> Result<Self, StoreError> {
        for (name, _) in limits.members() {
            store.key(b"", name)?; // the name is valid
        }
        failover.validate().map_err(|_| {
            StoreError::Invalid("failover: replicas 1 or more, retry_after at most a day")
        })?;
        let local = match failover.on_unavailable {
            OnUnavailable::Local => {
                let share = limits
                    .try_map(|l| replica_share(l, failover.replicas))
                    .map_err(|_| {
                        StoreError::Invalid(
                            "the limiter cannot be divided among that many replicas",
                        )
                    })?;
                Some(
                    MemoryKeyed::new(share, local, clock.clone())
                        .map_err(|_| StoreError::Invalid("local fallback sizing"))?,
                )
            }
            _ => None,
        };
        Ok(RedisKeyedLimiter {
            specs: limits.members().map(|(_, l)| spec_of(l)).collect(),
            local,
            store,
            limits,
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
        self.limits.fits(cost).map_err(|(_, e)| e)?;
        let m: Vec<Charge<'_>> = self
            .limits
            .members()
            .zip(&self.specs)
            .map(|((name, _), spec)| Charge { name, spec, cost })
            .collect();
        let shared = async {
            if take {
                self.store.check(key, &m).await
            } else {
                self.store.peek(key, &m).await
            }
        };
        match self.failover.call(shared).await? {
            Ok(d) => Ok(KeyedDecision {
                decision: d.decision.decision,
                binding: d.decision.binding.unwrap_or(0),
                binding_remaining: d
                    .members
                    .get(d.decision.binding.unwrap_or(0))
                    .map_or(d.decision.decision.remaining, |m| m.decision.remaining),
                binding_reset_at: d
                    .members
                    .get(d.decision.binding.unwrap_or(0))
                    .map_or(d.decision.decision.reset_at, |m| m.decision.reset_at),
                source: Source::Redis,
                now: d.now,
            }),
            Err(Fallback::Open) => {
                let now = self.clock.now();
                let decision = Decision::uncounted(now, self.limits.capacity(), cost);
                Ok(KeyedDecision {
                    decision,
                    binding: 0,
                    binding_remaining: decision.remaining,
                    binding_reset_at: decision.reset_at,
                    source: Source::FailOpen,
                    now,
                })
            }
            Err(Fallback::Local) => {
                let Some(local) = &self.local else {
                    return Err(StoreError::Invalid("no local fallback").into());
                };
                if let Err((member, _)) = local.limits().fits(cost) {
                    // Fits the whole limit, never this replica's share:
                    // only the shared store can decide it.
                    let now = self.clock.now();
                    let retry = ratebound_core::Duration::from_micros(
                        self.failover.options().retry_after.as_micros() as u64,
                    );
                    let share = local.limits().limiter(member).map_or(0, |l| l.capacity());
                    return Ok(KeyedDecision {
                        decision: Decision::refused(now, share, now + retry),
                        binding: member,
                        binding_remaining: 0,
                        binding_reset_at: now + retry,
                        source: Source::Local,
                        now,
                    });
                }
                let d = memory_decision(local, &key.into(), cost, take)?;
                Ok(KeyedDecision {
                    source: Source::Local,
                    ..d
                })
            }
        }
    }

    /// The limits held per key.
    pub fn limits(&self) -> &LimitSet {
        &self.limits
    }

    /// Keys held by the in-memory fallback (`local` only; else 0).
    pub fn local_keys_held(&self) -> usize {
        self.local.as_ref().map_or(0, MemoryKeyed::held)
    }
}
